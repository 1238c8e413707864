import Glibc

extension Mount {
    /// Builds the overlay over the image layer as a detached mount, in the
    /// most capable way the kernel accepts (see ``Mount``).
    struct OverlayBuilder {
        /// The detached EROFS mount.
        let lower: FileDescriptor
        let target: FilePath
        let options: Options
        let environment: Environment

        struct Built {
            /// A detached mount of the overlay; the caller attaches and closes it.
            var fd: FileDescriptor
            var imageLayer: Route.ImageLayer
            var options: Route.OverlayOptions
            var verity: Bool
        }

        /// The image layer as overlayfs sees it: the mount descriptor's
        /// magic link resolves to the mount itself, attached or not.
        var lowerPath: FilePath { lower.procPath }

        func build() throws(Error) -> Built {
            if environment.forceLegacyOptions { return try buildLegacy() }
            let context = try FilesystemContext("overlay")
            // An overlayfs that predates its own option parsing (before
            // 6.5) takes any key through the generic legacy wrapper and
            // only checks at creation; it needs a mount(2) option string.
            if context.trySet("unsupported", "unsupported") == nil {
                environment.note("overlayfs does not check options given through fsconfig: using a mount(2) option string")
                return try buildLegacy()
            }
            _ = context.messages()
            if !environment.forcePrivateNamespace {
                guard let verity = try configure(context) else { return try buildLegacy() }
                guard let e = context.tryCreate() else {
                    return Built(
                        fd: try context.mount(readOnly: options.readOnly), imageLayer: .detached,
                        options: .fsconfig, verity: verity)
                }
                let log = context.messages()
                guard e == .invalidArgument else { throw .kernel(.createOverlay(inPrivateNamespace: false), errno: e, log: log) }
                environment.note(
                    "overlayfs refused the detached image layer (\(([e.description] + log).joined(separator: "; "))): attaching it in a private mount namespace"
                )
            }
            let builder = self
            let built = try PrivateMountNamespace.run { () throws(Error) -> Built? in
                try builder.attachImageLayer()
                let context = try FilesystemContext("overlay")
                guard let verity = try builder.configure(context) else { return nil }
                if let e = context.tryCreate() {
                    throw context.failure(.createOverlay(inPrivateNamespace: true), e)
                }
                return Built(
                    fd: try context.mount(readOnly: builder.options.readOnly), imageLayer: .privateNamespace,
                    options: .fsconfig, verity: verity)
            }
            if let built { return built }
            return try buildLegacy()
        }

        /// In a private mount namespace: the image layer attached over
        /// the namespace's root directory. Path lookups start at the
        /// thread's root, beneath that mount, so no path given in the
        /// options is hidden by it; overlayfs reaches the layer through
        /// `lowerPath`.
        func attachImageLayer() throws(Error) {
            try attach(lower, at: "/", step: .attachImageLayer)
        }

        /// Sets every option through `fsconfig`. Returns whether
        /// verity=require is set, or nil when the kernel has no
        /// `lowerdir+`/`datadir+` (before 6.7) and needs an option string.
        func configure(_ context: FilesystemContext) throws(Error) -> Bool? {
            try context.set("source", "composefs")
            if options.userXattr {
                // Data-only layers alone enable data redirects (6.16): the
                // only form of metacopy userxattr allows.
                try context.setFlag("userxattr")
            } else {
                try context.set("metacopy", "on")
                try context.set("redirect_dir", "on")
            }
            var verity = false
            if options.requireVerity {
                if let e = context.trySet("verity", "require") {
                    if e == .invalidArgument { throw .verityUnsupported }
                    throw context.failure(.setOption(filesystem: "overlay", key: "verity", value: Array("require".utf8)), e)
                }
                verity = true
            } else if options.tryVerity {
                verity = context.trySet("verity", "require") == nil
            }
            var layers: [(String, [UInt8])] = [("lowerdir+", lowerPath.bytes)] + options.basedirs.map { ("datadir+", $0.bytes) }
            // overlayfs removes backslash escapes from upperdir and workdir
            // (not from lowerdir+ and datadir+), through fsconfig too.
            if let upper = options.upperdir, let work = options.workdir {
                layers += [
                    ("upperdir", LegacyOverlayOptions.escape(upper)),
                    ("workdir", LegacyOverlayOptions.escape(work))
                ]
            }
            for (key, value) in layers {
                if let e = context.trySet(key, value) {
                    let log = context.messages()
                    // Unknown keys (lowerdir+, datadir+ before 6.7) and
                    // other refusals: the option string may still work.
                    guard e == .invalidArgument else {
                        throw .kernel(.setOption(filesystem: "overlay", key: key, value: value), errno: e, log: log)
                    }
                    environment.note(
                        "overlayfs refused \(key) through fsconfig (\(([e.description] + log).joined(separator: "; "))): using a mount(2) option string"
                    )
                    return nil
                }
            }
            return verity
        }

        /// The overlay from a mount(2) option string, mounted at the target
        /// in a private mount namespace where the image layer is attached,
        /// then cloned out as a detached mount (`open_tree`).
        /// Data-only layers (`::`) first, plain lower layers (`:`) when the
        /// kernel rejects those. `tryverity` is not offered here (a
        /// rejected option cannot be told apart from other errors).
        func buildLegacy() throws(Error) -> Built {
            // With user xattrs the overlay follows no metacopy or redirect
            // from ordinary lower layers: data-only layers or nothing.
            let forms = options.userXattr ? [true] : environment.forcePlainLowerLayers ? [false] : [true, false]
            let builder = self
            let (options, target, environment, lowerPath) = (options, target, environment, lowerPath)
            func mount(_ data: [UInt8], readOnly: Bool, silent: Bool) -> Errno? {
                do {
                    try MountNamespace.mountOverlay(source: "composefs", at: target, readOnly: readOnly, silent: silent, options: data)
                } catch {
                    return error
                }
                return nil
            }
            return try PrivateMountNamespace.run { () throws(Error) -> Built in
                try builder.attachImageLayer()
                var last = Errno(0)
                for dataOnly in forms {
                    let data = LegacyOverlayOptions.string(
                        lower: lowerPath, options: options,
                        dataOnlyLayers: dataOnly, verity: options.requireVerity)
                    guard let e = mount(data, readOnly: options.readOnly, silent: dataOnly) else {
                        let clone: FileDescriptor
                        do throws(Errno) { clone = try .cloneMount(at: target) } catch {
                            throw .kernel(.cloneOverlay, errno: error, log: [])
                        }
                        return Built(
                            fd: clone, imageLayer: .privateNamespace,
                            options: .legacy(dataOnlyLayers: dataOnly), verity: options.requireVerity)
                    }
                    last = e
                    guard e == .invalidArgument else { break }
                    if dataOnly {
                        environment.note("overlayfs rejected data-only lower layers (\(e)): trying plain lower layers")
                    }
                }
                if last == .notPermitted { throw .notPermitted }
                // Whether verity=require is what the kernel rejects: the
                // same mount without it, made here and dropped at once
                // (this namespace is nobody else's), tells.
                if last == .invalidArgument && options.requireVerity {
                    for dataOnly in forms {
                        let data = LegacyOverlayOptions.string(
                            lower: lowerPath, options: options,
                            dataOnlyLayers: dataOnly, verity: false)
                        if mount(data, readOnly: true, silent: true) == nil {
                            try? MountNamespace.unmount(target, detach: true)
                            throw .verityUnsupported
                        }
                    }
                }
                throw .kernel(.legacyOverlay, errno: last, log: [])
            }
        }
    }

    /// The option string of a mount(2) overlay. Paths are escaped with a
    /// backslash before `\`, `,` (the option separator) and `:` (the
    /// layer separator), which overlayfs removes again.
    enum LegacyOverlayOptions {
        static func string(lower: FilePath, options: Options, dataOnlyLayers: Bool, verity: Bool) -> [UInt8] {
            let separator = Array((dataOnlyLayers ? "::" : ":").utf8)
            var s =
                Array((options.userXattr ? "userxattr," : "metacopy=on,redirect_dir=on,").utf8) + Array("lowerdir=".utf8) + escape(lower)
            for dir in options.basedirs { s += separator + escape(dir) }
            if let upper = options.upperdir, let work = options.workdir {
                s += Array(",upperdir=".utf8) + escape(upper) + Array(",workdir=".utf8) + escape(work)
            }
            if verity { s += Array(",verity=require".utf8) }
            return s
        }

        static func escape(_ path: FilePath) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(path.bytes.count)
            for c in path.bytes {
                if c == UInt8(ascii: "\\") || c == UInt8(ascii: ",") || c == UInt8(ascii: ":") { out.append(UInt8(ascii: "\\")) }
                out.append(c)
            }
            return out
        }
    }
}

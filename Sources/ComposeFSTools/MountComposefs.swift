import ComposeFS
import Glibc

/// The mount(8) helper: `mount -t composefs IMAGE DIR -o OPTIONS` runs
/// `mount.composefs IMAGE DIR [-sfnv] [-o OPTIONS] [-t composefs]`.
enum MountComposefs: Tool {
    static let name = "mount.composefs"

    enum Flag {
        static let type = Arguments.Option.valued(nil, short: "t", "TYPE")
        static let options = Arguments.Option.valued(nil, short: "o", "OPTIONS")
        static let sloppy = Arguments.Option.flag(nil, short: "s")
        static let fake = Arguments.Option.flag(nil, short: "f")
        static let noMtab = Arguments.Option.flag(nil, short: "n")
        static let verbose = Arguments.Option.flag(nil, short: "v")
        static let namespace = Arguments.Option.valued(nil, short: "N", "NAMESPACE")
    }

    static let options = [Flag.type, Flag.options, Flag.sloppy, Flag.fake, Flag.noMtab, Flag.verbose, Flag.namespace]

    static let usage = "usage: mount.composefs [-t composefs] [-o OPTIONS] IMAGE MOUNTPOINT\n"

    static let help = """
        Mount a composefs image.

        usage: mount.composefs [-t composefs] [-o OPTIONS] IMAGE MOUNTPOINT

        Options:
          -t TYPE      Filesystem type (composefs)
          -o OPTIONS   Mount options (the last -o counts): basedir=PATH[:PATH...],
                       digest=DIGEST, verity, tryverity, noverity, upperdir=PATH,
                       workdir=PATH, idmap=PATH, ro, rw, fuse (serve through FUSE;
                       also taken by itself where the user may not mount EROFS)
          -v           Print each fallback taken and the way the kernel accepted
          -N NAMESPACE Mount in this mount namespace (a path such as
                       /proc/PID/ns/mnt, or a PID), as mount(8) --namespace asks
          -s, -f, -n   Sloppy, fake (check the command line only), no mtab
          -h, --help   Show this help
          --version    Show the version

        """

    static func failure(_ message: String, usage showUsage: Bool = false) -> ToolFailure {
        ToolFailure(text: "mount.composefs: \(message)\n" + (showUsage ? usage : ""))
    }

    static func run(_ arguments: Arguments) throws(ToolFailure) {
        if let type = arguments.lastText(Flag.type), type != "composefs" { throw failure("Unsupported fs type '\(type)'") }
        let paths = arguments.operands.map { FilePath(bytes: $0) }
        guard paths.count >= 2 else {
            throw failure(paths.isEmpty ? "No source path specified" : "No mount point specified", usage: true)
        }
        guard paths.count == 2 else { throw failure("Too many arguments", usage: true) }
        let (image, target) = (paths[0], paths[1])
        let parsed: Mount.Options
        do {
            parsed = try Mount.Options.parse(bytes: arguments.last(Flag.options) ?? [])
        } catch {
            throw failure("\(error)", usage: error == .noBasedir)
        }
        if arguments.has(Flag.fake) { return }
        if let namespace = arguments.last(Flag.namespace) {
            // Every path is then looked up there, as mount(8) makes its
            // own mount(2) calls in the namespace it is given.
            let path =
                namespace.allSatisfy({ (0x30...0x39).contains($0) }) && !namespace.isEmpty
                ? FilePath("/proc/\(String(decoding: namespace, as: UTF8.self))/ns/mnt") : FilePath(bytes: namespace)
            do { try Mount.enterNamespace(path) } catch { throw failure("\(error)") }
        }
        let verbose = arguments.has(Flag.verbose)
        var environment = Mount.Environment()
        if verbose { environment.trace = { Terminal.error("mount.composefs: \($0)\n") } }
        if parsed.fuse { return try mountFuse(image: image, target: target, options: parsed, route: .full, verbose: verbose) }
        // EROFS mounts need root of the initial user namespace: others go
        // straight to FUSE (the root of a user namespace to the overlay on it).
        guard CurrentProcess.effectiveUserID == 0 && CurrentProcess.isInInitialUserNamespace else {
            let route: FuseService.Route = CurrentProcess.effectiveUserID == 0 ? .overlayLower(userXattr: true) : .full
            if verbose { Terminal.error("mount.composefs: not root of the initial user namespace: serving through FUSE\n") }
            return try mountFuse(image: image, target: target, options: parsed, route: route, verbose: verbose)
        }
        let route: Mount.Route
        do {
            route = try Mount.mount(image: image, target: target, options: parsed, environment: environment)
        } catch {
            // Without the privilege to mount EROFS (a user, root of a user
            // namespace) or the means (no EROFS, no loop devices): FUSE.
            guard let fallback = fuseRoute(after: error) else { throw failure("Failed to mount composefs \(image): \(error)") }
            if verbose { Terminal.error("mount.composefs: the kernel route failed (\(error)): serving through FUSE\n") }
            return try mountFuse(image: image, target: target, options: parsed, route: fallback, verbose: verbose)
        }
        if verbose { Terminal.error("mount.composefs: mounted \(image) on \(target) (\(route))\n") }
    }

    /// The FUSE route to take after the kernel route failed with `error`,
    /// or nil when FUSE would not help.
    static func fuseRoute(after error: Mount.Error) -> FuseService.Route? {
        let root = CurrentProcess.effectiveUserID == 0
        switch error {
        case .notPermitted:
            // Root without CAP_SYS_ADMIN (a restricted container).
            return root ? .overlayLower(userXattr: false) : .full
        case .kernelLacks(filesystem: "erofs"),
            .kernel(.openLoopControl, _, _), .kernel(.findFreeLoop, _, _), .kernel(.openLoop, _, _), .kernel(.configureLoop, _, _):
            return root ? .overlayLower(userXattr: false) : .full
        default:
            return nil
        }
    }

    /// Serves the image through FUSE (FuseService) as a daemon; the
    /// overlay route falls back to full FUSE where the kernel refuses its
    /// overlay (before user xattrs with data-only layers, 6.16). The
    /// daemon's trace lines reach the terminal only in the foreground;
    /// the parent prints the mounted line.
    static func mountFuse(
        image: FilePath, target: FilePath, options: Mount.Options, route: FuseService.Route,
        verbose: Bool
    ) throws(ToolFailure) {
        if route == .full {
            if options.idmap != nil { throw failure("idmap= needs the kernel route (EROFS and overlayfs); not with FUSE") }
            if options.upperdir != nil { throw failure("upperdir= needs a kernel overlay; the FUSE route here is read-only") }
        } else if options.idmap != nil {
            throw failure("idmap= needs the kernel route (EROFS and overlayfs); not with FUSE")
        }
        var c = FuseService.Configuration(image: image, target: target)
        c.basedirs = options.basedirs
        c.digest = options.digest
        // FUSE can always check in userspace: tryverity is verity there.
        c.verity = options.requireVerity || options.tryVerity
        c.route = route
        c.overlay = options
        if case .overlayLower(let user) = route { c.overlay.userXattr = user }
        c.log = { line in CurrentProcess.logToSystem("mount.composefs", line) }
        if verbose { c.mounted = { "mount.composefs: mounted \(image) on \(target) (\($0))\n" } }
        if verbose { c.trace = { "mount.composefs: \($0)\n" } }
        c.failed = { "mount.composefs: Failed to mount composefs \(image): \($0)\n" }
        do { try FuseService.run(c) } catch { throw failure("Failed to mount composefs \(image): \(error)") }
    }
}

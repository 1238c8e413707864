import Glibc

/// A composefs image served through FUSE until it is unmounted: what
/// composefs-fuse and mount.composefs's FUSE routes run.
///
/// - `.full`: FUSE serves names, attributes and data at the target (any
///   user; through fusermount3 for users who may not mount).
/// - `.overlayLower`: FUSE serves the metadata only, as a detached mount,
///   and a kernel overlayfs at the target stacks on it, with the object
///   stores as data-only layers (and `verity=require` when verity is
///   asked): the kernel reads and checks the data. Its xattrs are the
///   overlay's in `user.overlay.` (`userXattr`, for a user namespace) or
///   `trusted.overlay.`.
///
/// Unless in the foreground, the process becomes a daemon first; the
/// parent exits once the mount is in place (status 0), or prints why it
/// failed (status 1). Signals TERM, INT and HUP unmount.
public enum FuseService {
    public enum Route: Equatable, Sendable {
        case full
        case overlayLower(userXattr: Bool)
    }

    public struct Configuration: Sendable {
        public var image: FilePath
        public var target: FilePath
        public var basedirs: [FilePath] = []
        public var digest: [UInt8]? = nil
        public var verity = false
        public var allowOther = false
        public var fsname: String? = nil
        public var route = Route.full
        /// For `.overlayLower`: the overlay's own options (ro, upperdir…).
        public var overlay = Mount.Options()
        public var foreground = false
        public var threads = max(2, CurrentProcess.availableCPUs)
        /// Microseconds one server thread keeps polling after a request
        /// (`Fuse.Server.busyPoll`; 0: none).
        public var busyPoll: UInt64 = ComposefsFileSystem.MountOptions.defaultBusyPoll
        /// Lines about refused objects (foreground: standard error; else
        /// the system log), and in the foreground the `mounted` line.
        public var log: @Sendable (String) -> Void = { _ in }
        public var debug: (@Sendable (String) -> Void)? = nil
        /// For `.overlayLower`: serve everything through FUSE where the
        /// kernel refuses the overlay (before 6.16 in a user namespace).
        public var fallBackToFull = true
        /// Formats a line about a fallback taken (`-v`); the line goes to
        /// standard error (by the parent of a daemon).
        public var trace: (@Sendable (String) -> String)? = nil
        /// Makes the line printed once the mount is in place (by the
        /// parent of a daemon), from how it was made.
        public var mounted: (@Sendable (String) -> String)? = nil
        /// Formats the message of a failure in the daemon (printed by its parent).
        public var failed: (@Sendable (Error) -> String)? = nil

        public init(image: FilePath, target: FilePath) {
            self.image = image
            self.target = target
        }
    }

    public enum Error: Swift.Error, CustomStringConvertible {
        case image(Mount.Error)
        case filesystem(ComposefsFileSystem.Error)
        case mount(Fuse.Mount.Error)
        case overlay(Mount.Error)
        case daemon(Errno)
        /// The daemon failed after the fork; its message.
        case inDaemon(String)

        public var description: String {
            switch self {
            case .image(let e): "\(e)"
            case .filesystem(let e): "\(e)"
            case .mount(let e): "\(e)"
            case .overlay(let e): "\(e)"
            case .daemon(let e): "cannot become a daemon: \(e)"
            case .inDaemon(let text): text
            }
        }
    }

    /// Mounts and serves; returns when the filesystem is unmounted (in the
    /// foreground), or in the daemon. In the parent of a daemon it does not
    /// return: the process exits.
    public static func run(_ given: Configuration) throws(Error) {
        var c = given
        let image: FuseImage
        do { image = try FuseImage.open(c.image, digest: c.digest) } catch { throw .image(error) }
        // The kernel overlay checks fs-verity only where the objects have
        // it; elsewhere FUSE checks every byte itself.
        if c.verity, case .overlayLower = c.route, !objectsHaveVerity(c, image: image) {
            c.route = .full
        }
        let fs = try fileSystem(c, image: image)
        var daemon: CurrentProcess.Daemon? = nil
        if !c.foreground {
            // The daemon works from `/`: the paths it uses later must not
            // depend on where it was started.
            do {
                c.target = try c.target.absolute()
                c.overlay.basedirs = try c.overlay.basedirs.map { p throws(Errno) in try p.absolute() }
                c.overlay.upperdir = try c.overlay.upperdir?.absolute()
                c.overlay.workdir = try c.overlay.workdir?.absolute()
            } catch {
                throw .daemon(error)
            }
            do { daemon = try CurrentProcess.daemonize() } catch { throw .daemon(error) }
        }
        let config = c
        func serving() -> Error? {
            do { try serve(config, fs: fs, image: image, daemon: daemon) } catch { return error }
            return nil
        }
        guard let daemon else {
            if let error = serving() { throw error }
            return
        }
        // The daemon serves on a new thread; the one that forked only waits.
        // The Swift runtime keeps the forking thread's id from before the
        // fork for its own locks (`swift_once`, metadata caches), and where
        // that thread met another in one, both spun forever on the PI futex
        // (ESRCH, EPERM).
        let failure = Locked<Error?>(nil)
        Signals.block(Self.signals)   // in the waiting thread too
        if let thread = try? SystemThread({ let e = serving(); failure.withLock { $0 = e } }) {
            thread.join()
        } else {
            failure.withLock { $0 = serving() }
        }
        if let error = failure.withLock({ $0 }) {
            daemon.fail(c.failed?(error) ?? "\(error)\n")
            CurrentProcess.exit(1)
        }
    }

    /// Whether the first object the image names (in its first directories)
    /// has kernel fs-verity.
    static func objectsHaveVerity(_ c: Configuration, image: FuseImage) -> Bool {
        guard let view = try? ImageView(image.reader), let root = try? view.inode(view.rootNid) else { return false }
        var queue = [root]
        var visited = 0
        while !queue.isEmpty && visited < 4096 {
            let dir = queue.removeFirst()
            var found: [UInt8]? = nil
            try? view.forEachEntry(of: dir, from: 0) { entry in
                visited += 1
                guard entry.name != [0x2E] && entry.name != [0x2E, 0x2E], let child = try? view.inode(entry.nid) else {
                    return visited < 4096
                }
                if child.type == .directory { queue.append(child) }
                if child.type == .regular, let r = try? view.xattr(ComposefsFileSystem.redirectKey, of: child) {
                    found = Array(r.drop { $0 == UInt8(ascii: "/") })
                    return false
                }
                return visited < 4096
            }
            guard let payload = found else { continue }
            for dir in c.basedirs {
                guard let fd = try? FileDescriptor.open(dir.appending(payload), .readOnly, options: [.noFollow]) else { continue }
                defer { try? fd.close() }
                if case .digest = (try? FsVerity.measure(fd: fd)) ?? .unavailable(.ioError) { return true }
                return false
            }
            return false
        }
        return false
    }

    /// The filesystem the route serves (metadata only for the overlay).
    static func fileSystem(_ c: Configuration, image: FuseImage) throws(Error) -> ComposefsFileSystem {
        var options = ComposefsFileSystem.Options()
        options.basedirs = c.basedirs
        options.verity = c.verity
        options.log = c.log
        if case .overlayLower(let user) = c.route {
            options.metadataOnly = true
            options.overlayXattrPrefix = user ? "user.overlay." : "trusted.overlay."
        }
        do { return try ComposefsFileSystem(image: image.reader, imagePath: c.image, options: options) } catch { throw .filesystem(error) }
    }

    /// Lines for standard error: written at once in the foreground,
    /// handed to the parent of a daemon with its result.
    final class Notes: @unchecked Sendable {
        let format: (@Sendable (String) -> String)?
        let daemon: Bool
        private let held = Locked<String>("")

        init(_ format: (@Sendable (String) -> String)?, daemon: Bool) {
            self.format = format
            self.daemon = daemon
        }

        func note(_ line: String) {
            guard let format else { return }
            let text = format(line)
            if daemon { held.withLock { $0 += text } } else { try? FileDescriptor.standardError.writeAll(Array(text.utf8)) }
        }

        var text: String { held.withLock { $0 } }
    }

    /// What ends a server cleanly (unmounted first); blocked in every
    /// thread of it and waited for by one.
    static let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    static func serve(
        _ c: Configuration, fs: ComposefsFileSystem, image: FuseImage, daemon: CurrentProcess.Daemon?,
        notes given: Notes? = nil
    ) throws(Error) {
        let notes = given ?? Notes(c.trace, daemon: daemon != nil)
        let signals = Self.signals
        Signals.block(signals)
        var mountOptions = Fuse.Mount.Options(source: c.fsname ?? c.image.description)
        mountOptions.allowOther = c.allowOther
        let connection: FileDescriptor
        let fuseMount: Fuse.Mount?
        let server: Fuse.Server
        var threads: SystemThread? = nil
        var how = ""
        switch c.route {
        case .full:
            do { fuseMount = try Fuse.Mount.mount(at: c.target, options: mountOptions) } catch { throw .mount(error) }
            connection = fuseMount!.device
            server = Fuse.Server(device: connection, busyPoll: c.busyPoll * 1000, debug: c.debug)
            how = "FUSE (\(fuseMount!.method == .kernel ? "mounted by this process" : "mounted by fusermount3"))"
        case .overlayLower:
            // The overlay looks the lower layer up while it is made: the
            // server runs first, on its own threads.
            let detached: Fuse.DetachedMount
            do { detached = try Fuse.DetachedMount(options: mountOptions) } catch { throw .mount(error) }
            connection = detached.device
            fuseMount = nil
            server = Fuse.Server(device: connection, busyPoll: c.busyPoll * 1000, debug: c.debug)
            threads = try? SystemThread { server.run(threads: c.threads) { _ in fs.makeWorker() } }
            do {
                var environment = Mount.Environment()
                environment.trace = { notes.note($0) }
                let route = try Mount.mountOverlay(lower: detached.mount, target: c.target, options: c.overlay, environment: environment)
                how = "FUSE metadata with a kernel overlay (\(route))"
            } catch {
                // Dropping the layer ends the connection, and the threads.
                server.stop()
                try? detached.mount.close()
                threads?.join()
                try? connection.close()
                guard c.fallBackToFull, error == .verityUnsupported || { if case .kernel = error { true } else { false } }() else {
                    throw .overlay(error)
                }
                notes.note("the kernel refused the overlay on FUSE (\(error)): serving everything through FUSE")
                var full = c
                full.route = .full
                return try serve(full, fs: try fileSystem(full, image: image), image: image, daemon: daemon, notes: notes)
            }
            // The overlay holds the layer now; when it goes, the FUSE
            // filesystem goes with it and the server's reads end.
            try? detached.mount.close()
        }
        let unmount: @Sendable () -> Void = { fuseMount?.unmount() }
        _ = try? SystemThread {
            _ = Signals.wait(signals)
            server.stop()
            if fuseMount != nil { unmount() } else { try? MountNamespace.unmount(c.target, detach: true) }
        }
        let note = notes.text + (c.mounted?(how) ?? "")
        if let daemon { daemon.ready(note: note) } else if !note.isEmpty { try? FileDescriptor.standardError.writeAll(Array(note.utf8)) }
        withExtendedLifetime(image) {
            if let threads { threads.join() } else { server.run(threads: c.threads) { _ in fs.makeWorker() } }
        }
        unmount()
    }
}

import ComposeFS
import Glibc

/// `composefs-fuse`: a composefs image mounted through FUSE, by any user.
enum ComposefsFuse: Tool {
    static let name = "composefs-fuse"

    enum Flag {
        static let options = Arguments.Option.valued(nil, short: "o", "OPTIONS")
        static let foreground = Arguments.Option.flag(nil, short: "f")
        static let debug = Arguments.Option.flag(nil, short: "d")
        static let singleThread = Arguments.Option.flag(nil, short: "s")
        static let version = Arguments.Option.flag(nil, short: "V")
    }

    static let options = [Flag.options, Flag.foreground, Flag.debug, Flag.singleThread, Flag.version]

    static let usage = "usage: composefs-fuse [-f] [-d] [-s] -o source=IMAGE,basedir=DIR[:DIR...][,OPTIONS] MOUNTPOINT\n"

    static let help = """
        Mount a composefs image through FUSE, as any user.

        usage: composefs-fuse [-f] [-d] [-s] -o source=IMAGE,basedir=DIR[:DIR...][,OPTIONS] MOUNTPOINT

        Options (-o, comma-separated, may be repeated):
          source=IMAGE         The composefs image
          basedir=DIR[:DIR]    Object stores, searched in order
          digest=DIGEST        The image must have this fs-verity digest (implies verity)
          verity               Serve no byte that is not the image's: every object is
                               checked against its fs-verity digest, and every block read
          noacl                Report no ACL support
          busy_poll=USEC       Keep polling for the next request this long (default 50; 0: never)
          allow_other          Let other users than the mounting one use the mount
          ro, default_permissions, auto_unmount   Always so
        Flags:
          -f           Stay in the foreground
          -d           Debug: foreground, one line per request
          -s           One thread
          -h, --help   Show this help
          -V, --version  Show the version

        """

    static func failure(_ message: String, usage showUsage: Bool = false) -> ToolFailure {
        ToolFailure(text: "composefs-fuse: \(message)\n" + (showUsage ? usage : ""))
    }

    static func run(_ arguments: Arguments) throws(ToolFailure) {
        if arguments.has(Flag.version) {
            Terminal.output("composefs-fuse (swift-composefs) \(ComposeFS.version)\nFUSE kernel interface version 7.31\n")
            return
        }
        guard let target = arguments.operands.first.map({ FilePath(bytes: $0) }) else {
            throw failure("no mount point specified", usage: true)
        }
        guard arguments.operands.count == 1 else { throw failure("too many arguments", usage: true) }
        var options = ComposefsFileSystem.MountOptions()
        do { for o in arguments.all(Flag.options) { try options.parse(o) } } catch { throw failure("\(error)") }
        guard let source = options.source else { throw failure("no image: -o source=IMAGE is required", usage: true) }
        guard !options.basedirs.isEmpty else { throw failure("No object dirs specified: -o basedir=DIR is required", usage: true) }
        let debug = options.debug || arguments.has(Flag.debug)
        let foreground = debug || arguments.has(Flag.foreground)
        let threads = arguments.has(Flag.singleThread) ? 1 : max(2, CurrentProcess.availableCPUs)
        try serve(source: source, target: target, options: options, foreground: foreground, debug: debug, threads: threads)
    }

    /// Mounts and serves until unmounted (FuseService), as a daemon unless
    /// in the foreground.
    static func serve(
        source: FilePath, target: FilePath, options: ComposefsFileSystem.MountOptions,
        foreground: Bool, debug: Bool, threads: Int
    ) throws(ToolFailure) {
        var c = FuseService.Configuration(image: source, target: target)
        c.basedirs = options.basedirs
        c.digest = options.digest
        c.verity = options.verity
        c.allowOther = options.allowOther
        c.fsname = options.fsname
        c.foreground = foreground
        c.threads = threads
        c.busyPoll = options.busyPoll
        c.log = log(foreground: foreground)
        if debug { c.debug = { (line: String) in Terminal.error("composefs-fuse: \(line)\n") } }
        c.failed = { "composefs-fuse: \($0)\n" }
        do { try FuseService.run(c) } catch {
            if case .image = error { throw failure("Failed to mount composefs \(source): \(error)") }
            throw failure("\(error)")
        }
    }

    /// Where a server's lines go: standard error in the foreground, the
    /// system log for a daemon.
    static func log(foreground: Bool) -> @Sendable (String) -> Void {
        if foreground { return { line in Terminal.error("composefs-fuse: \(line)\n") } }
        return { line in CurrentProcess.logToSystem("composefs-fuse", line) }
    }
}

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
                       workdir=PATH, idmap=PATH, ro, rw
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
        let route: Mount.Route
        do {
            route = try Mount.mount(image: image, target: target, options: parsed, environment: environment)
        } catch {
            throw failure("Failed to mount composefs \(image): \(error)")
        }
        if verbose { Terminal.error("mount.composefs: mounted \(image) on \(target) (\(route))\n") }
    }
}

import ArgumentParser
import ComposeFS
import ToolSupport
import Glibc

/// The mount(8) helper: `mount -t composefs IMAGE DIR -o OPTIONS` runs
/// `mount.composefs IMAGE DIR [-sfnv] [-o OPTIONS] [-t composefs]`.
@main
struct MountComposefs: Tool {
    static let configuration = CommandConfiguration(
        commandName: "mount.composefs",
        abstract: "Mount a composefs image.",
        usage: "mount.composefs [-t composefs] [-o OPTIONS] IMAGE MOUNTPOINT"
    )

    @Option(name: .customShort("t"), help: ArgumentHelp("Filesystem type (composefs).", valueName: "TYPE"))
    var type: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options (the last -o counts).", valueName: "OPTIONS"))
    var options: [String] = []

    @Flag(name: .customShort("s"), help: "Tolerate sloppy options (accepted for mount(8)).")
    var sloppy = false

    @Flag(name: .customShort("f"), help: "Fake: check everything but do not mount.")
    var fake = false

    @Flag(name: .customShort("n"), help: "Do not write /etc/mtab (accepted for mount(8)).")
    var noMtab = false

    @Flag(name: .customShort("v"), help: "Verbose.")
    var verbose = false

    @Argument(help: "The image file, then the mount point.")
    var paths: [String] = []

    static func main() { runMain() }

    static var usageText: String { usage }

    static let usage = "usage: mount.composefs [-t composefs] [-o OPTIONS] IMAGE MOUNTPOINT\n"

    struct Failure: ToolError {
        var message: String
        var usage = false
        var stderrText: String { "mount.composefs: \(message)\n" + (usage ? MountComposefs.usage : "") }
    }

    func execute() throws {
        if let type, type != "composefs" { throw Failure(message: "Unsupported fs type '\(type)'") }
        guard paths.count >= 2 else {
            throw Failure(message: paths.isEmpty ? "No source path specified" : "No mount point specified", usage: true)
        }
        guard paths.count == 2 else { throw Failure(message: "Too many arguments", usage: true) }
        let (image, target) = (paths[0], paths[1])
        let parsed: Mount.Options
        do {
            parsed = try Mount.Options.parse(options.last ?? "")
        } catch {
            throw Failure(message: "\(error)", usage: error == .noBasedir)
        }
        if fake { return }
        var environment = Mount.Environment()
        if verbose { environment.trace = { Terminal.error("mount.composefs: \($0)\n") } }
        let route: Mount.Route
        do {
            route = try Mount.mount(image: image, target: target, options: parsed, environment: environment)
        } catch {
            throw Failure(message: "Failed to mount composefs \(image): \(error)")
        }
        if verbose { Terminal.error("mount.composefs: mounted \(image) on \(target) (\(route))\n") }
    }
}

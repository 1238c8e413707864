import ComposeFS
import Glibc

/// One command-line tool of the multi-call program: its options, the
/// usage text printed after a command-line error, the `--help` text, and
/// the work. Options, messages and exit status are upstream's.
protocol Tool {
    static var name: String { get }
    static var options: [Arguments.Option] { get }
    /// Printed on standard error after a command-line error.
    static var usage: String { get }
    /// Printed on standard output for `--help` / `-h`.
    static var help: String { get }
    static func run(_ arguments: Arguments) throws(ToolFailure)
}

/// Ends a tool with exit status 1 and exactly this text on standard error.
struct ToolFailure: Error {
    var text: String
}

extension Tool {
    /// Parses, runs, maps failures to messages; returns the exit status.
    static func main(_ arguments: [[UInt8]]) -> Int32 {
        if wantsHelp(arguments) {
            Terminal.output(help)
            return 0
        }
        if wantsVersion(arguments) {
            Terminal.output("\(name) (swift-composefs) \(ComposeFS.version)\n")
            return 0
        }
        let parsed: Arguments
        do {
            parsed = try Arguments(bytes: arguments, options: options)
        } catch {
            Terminal.error("\(name): \(error)\n\(usage)")
            return 1
        }
        do {
            try run(parsed)
        } catch {
            Terminal.error(error.text)
            return 1
        }
        return 0
    }

    /// `--help` or `-h` anywhere before `--`.
    static func wantsHelp(_ arguments: [[UInt8]]) -> Bool {
        for a in arguments {
            if a == Array("--".utf8) { return false }
            if a == Array("--help".utf8) || a == Array("-h".utf8) { return true }
        }
        return false
    }

    /// `--version` (exactly, with no value) anywhere before `--`.
    static func wantsVersion(_ arguments: [[UInt8]]) -> Bool {
        for a in arguments {
            if a == Array("--".utf8) { return false }
            if a == Array("--version".utf8) { return true }
        }
        return false
    }

    static func wantsHelp(_ arguments: [String]) -> Bool { wantsHelp(arguments.map { Array($0.utf8) }) }
}

/// The multi-call program: the tool is the name it was called by
/// (`mkcomposefs`, `composefs-info`, `mount.composefs`, installed as links
/// to one file), or else its first argument (`composefs mkcomposefs ...`).
public enum MultiCall {
    static let names = [
        MkComposefs.name, ComposefsInfo.name, MountComposefs.name, ComposefsStore.name, ComposefsFuse.name, ComposefsDump.name
    ]

    /// Runs the tool called `name`; nil when there is no such tool.
    static func run(_ name: String, _ arguments: [[UInt8]]) -> Int32? {
        switch name {
        case MkComposefs.name: MkComposefs.main(arguments)
        case ComposefsInfo.name: ComposefsInfo.main(arguments)
        case MountComposefs.name: MountComposefs.main(arguments)
        case ComposefsStore.name: ComposefsStore.main(arguments)
        case ComposefsFuse.name: ComposefsFuse.main(arguments)
        case ComposefsDump.name: ComposefsDump.main(arguments)
        default: nil
        }
    }

    public static func main() -> Never {
        // The arguments as the kernel passed them: bytes, not Strings.
        let raw = (0..<Int(CommandLine.argc)).map { i -> [UInt8] in
            guard let p = CommandLine.unsafeArgv[i] else { return [] }
            return Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
        }
        let argv = raw.map { String(decoding: $0, as: UTF8.self) }
        let called = argv.first.map { base($0) } ?? ""
        if let status = run(called, Array(raw.dropFirst())) { Terminal.exit(status) }
        if argv.count >= 2, let status = run(argv[1], Array(raw.dropFirst(2))) { Terminal.exit(status) }
        let text =
            "usage: \(called.isEmpty ? "composefs" : called) TOOL [ARGUMENTS]...\n"
            + "TOOL is one of \(names.joined(separator: ", ")); or call this program by one of those names.\n"
        if argv.count == 2 && (argv[1] == "--help" || argv[1] == "-h") {
            Terminal.output(text)
            Terminal.exit(0)
        }
        Terminal.error(argv.count >= 2 ? "\(called): unknown tool '\(argv[1])'\n" + text : text)
        Terminal.exit(1)
    }

    static func base(_ path: String) -> String {
        String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
    }
}

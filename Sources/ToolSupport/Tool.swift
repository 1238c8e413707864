import ArgumentParser
import ComposeFS

/// An error that ends a tool with exit status 1 and this exact text on stderr.
public protocol ToolError: Error {
    var stderrText: String { get }
}

/// The shape every command line here shares: parse the arguments, run,
/// map errors to upstream's messages and exit status 1 (never a trace).
public protocol Tool: ParsableCommand {
    /// Printed after a command-line error found by the argument parser.
    static var usageText: String { get }
    func execute() throws
}

extension Tool {
    public static func runMain() -> Never {
        do {
            try parse().execute()
            Terminal.exit(0)
        } catch let failure as ToolError {
            Terminal.error(failure.stderrText)
            Terminal.exit(1)
        } catch {
            if exitCode(for: error) == .success {
                print(helpMessage())
                Terminal.exit(0)
            }
            Terminal.error("\(configuration.commandName ?? "error"): \(message(for: error))\n\(usageText)")
            Terminal.exit(1)
        }
    }
}

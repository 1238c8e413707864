import ComposeFS
import Glibc

/// Standard output and error for the tools, without the C `stdout` and
/// `stderr` globals (not concurrency-safe in Swift 6).
enum Terminal {
    static func error(_ text: String) { writeAll(2, Array(text.utf8)) }

    static func output(_ text: String) { writeAll(1, Array(text.utf8)) }

    static func exit(_ code: Int32) -> Never { CurrentProcess.exit(code) }

    static func isTerminal(_ fd: Int32) -> Bool { FileDescriptor(rawValue: fd).isTerminal }

    /// Best effort: a message that cannot be written is dropped.
    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        try? FileDescriptor(rawValue: fd).writeAll(bytes)
    }
}

/// Buffered standard output; a closed pipe ends the program quietly.
struct Output {
    var buffer: [UInt8] = []
    let tool: String

    init(tool: String) { self.tool = tool }

    mutating func write(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { flush() }
    }

    /// Writes `bytes` out now, after what is buffered (no copy).
    mutating func writeNow(_ bytes: [UInt8]) {
        flush()
        let saved = buffer
        buffer = bytes
        flush()
        buffer = saved
    }

    mutating func flush() {
        do {
            try FileDescriptor.standardOutput.writeAll(buffer)
        } catch {
            if error != .brokenPipe { Terminal.error("\(tool): cannot write to standard output: \(error)\n") }
            Terminal.exit(1)
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

import Glibc
import Testing

@testable import ComposeFS

/// A program a test starts (through Subprocess): only its standard input,
/// output and error come from the test, never another descriptor of the
/// test process. (Foundation's Process leaves a socket of each running
/// child open in every child started after it, and waits until all
/// holders closed it: a daemon, or a server another test started, would
/// hold up an unrelated test.)
final class Child {
    let pid: pid_t
    let path: String
    private var status: Int32?

    /// Starts `program` (a path, or a name looked up in PATH) with
    /// `arguments`; standard input, output and error from the files named
    /// (each /dev/null when not given); `stderrToStdout`: both through
    /// one descriptor, so that their lines keep their order.
    init(
        _ program: String, _ arguments: [String], environment: [String: String?] = [:],
        stdin: String? = nil, stdout: String? = nil, stderr: String? = nil, stderrToStdout: Bool = false
    ) throws {
        path = try program.hasPrefix("/") ? program : #require(Subprocess.find(program)?.description, "\(program) not in PATH")
        let input = try FileDescriptor.open(FilePath(stdin ?? "/dev/null"), .readOnly)
        defer { try? input.close() }
        let output = try FileDescriptor.open(FilePath(stdout ?? "/dev/null"), .writeOnly)
        defer { try? output.close() }
        let error = stderrToStdout ? output : try FileDescriptor.open(FilePath(stderr ?? "/dev/null"), .writeOnly)
        defer { if !stderrToStdout { try? error.close() } }
        pid = try Subprocess.spawn(
            FilePath(path), [path] + arguments, environment: environment,
            standardInput: input, standardOutput: output, standardError: error
        ).pid
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            _ = wait()
        }
    }

    /// Whether it has not ended yet (it is reaped once it has).
    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        let r = waitpid(pid, &raw, WNOHANG)
        if r < 0 && errno == ECHILD {
            status = -1   // reaped elsewhere: never signal that pid again
            return false
        }
        guard r == pid else { return true }
        status = Self.decode(raw)
        return false
    }

    func signal(_ number: Int32) { if isRunning { kill(pid, number) } }
    func terminate() { signal(SIGTERM) }

    /// Waits for it to end: its exit status, or 128 + the signal that ended it.
    @discardableResult
    func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let s = Self.decode(raw)
        status = s
        return s
    }

    private static func decode(_ raw: Int32) -> Int32 { raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f) }
}

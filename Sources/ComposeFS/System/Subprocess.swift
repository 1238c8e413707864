import CComposeFSShims
import Glibc

/// Another program, started with `posix_spawn` (no fork of this process),
/// and waited for.
public struct Subprocess {
    public let pid: pid_t

    /// Starts `path` with `arguments` (the first is argv[0]) and the
    /// environment changed by `environment` (a nil value removes the
    /// variable). Standard input, output and error
    /// are ours unless given; of our other descriptors only those in
    /// `inherit` are open in it, at the same numbers.
    public static func spawn(
        _ path: FilePath, _ arguments: [String], environment: [String: String?] = [:],
        inherit: [FileDescriptor] = [], standardInput: FileDescriptor? = nil,
        standardOutput: FileDescriptor? = nil, standardError: FileDescriptor? = nil
    ) throws(Errno) -> Subprocess {
        for fd in inherit { try fd.setInheritable() }
        var env = CurrentProcess.environmentStrings().filter { entry in
            !environment.keys.contains { entry.hasPrefix($0 + "=") }
        }
        env += environment.compactMap { name, value in value.map { "\(name)=\($0)" } }
        var pid: pid_t = 0
        let keep = inherit.map(\.rawValue)
        let rc = path.withCString { p in
            withCStrings(arguments) { argv in
                withCStrings(env) { envp in
                    cfs_spawn(
                        &pid, p, argv, envp, standardInput?.rawValue ?? -1, standardOutput?.rawValue ?? -1,
                        standardError?.rawValue ?? -1, keep, Int32(keep.count))
                }
            }
        }
        guard rc == 0 else { throw Errno(rc) }
        return Subprocess(pid: pid)
    }

    /// Waits for it to end: its exit status, or 128 + the signal that ended it.
    public func wait() throws(Errno) -> Int32 {
        var status: Int32 = 0
        _ = try FileDescriptor.retrying { waitpid(pid, &status, 0) }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }

    /// The first `name` in the directories of `PATH` (or the default search
    /// path) that is an executable file.
    public static func find(_ name: String) -> FilePath? {
        let path = CurrentProcess.environment("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = FilePath(String(dir) + "/" + name)
            if candidate.withCString({ access($0, X_OK) }) == 0 { return candidate }
        }
        return nil
    }
}

/// `body` with the strings as a NULL-terminated `char *[]`.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

extension CurrentProcess {
    /// `NAME=VALUE` of every environment variable.
    static func environmentStrings() -> [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            out.append(String(cString: entry))
            p += 1
        }
        return out
    }

    /// Becomes a daemon, as a FUSE server does once its filesystem is
    /// mounted: the process forks; the parent waits until the child says
    /// it is ready (`Daemon.ready()`) and exits with status 0, or 1 when
    /// the child ended first. The child starts a new session, moves to `/`
    /// and has /dev/null as standard input, output and error. Must run
    /// before any thread is started.
    public static func daemonize() throws(Errno) -> Daemon {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw Errno.current }
        // Never inherited (fusermount3 stays for auto_unmount; the parent
        // waits for the end of this pipe).
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid = fork()
        guard pid >= 0 else { throw Errno.current }
        if pid > 0 {
            close(fds[1])
            // A byte 0 (ready) or 1 (failed), then text for standard error.
            var message: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fds[0], &buffer, buffer.count)
                if n <= 0 { break }
                message += buffer[0..<n]
            }
            if message.count > 1 { _ = message[1...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) } }
            Glibc._exit(message.first == 0 ? 0 : 1)
        }
        close(fds[0])
        _ = setsid()
        _ = chdir("/")
        let null = open("/dev/null", O_RDWR)
        if null >= 0 {
            for target: Int32 in [0, 1, 2] { _ = dup2(null, target) }
            if null > 2 { close(null) }
        }
        return Daemon(readyFD: fds[1])
    }

    /// A daemon's promise to its parent.
    public struct Daemon: Sendable {
        let readyFD: Int32

        /// Tells the waiting parent to print `note` (if any) and exit with status 0.
        public func ready(note: String = "") { finish(0, note) }

        /// Tells the waiting parent to print `message` and exit with status 1.
        public func fail(_ message: String) { finish(1, message) }

        private func finish(_ status: UInt8, _ text: String) {
            let bytes = [status] + Array(text.utf8)
            _ = bytes.withUnsafeBytes { write(readyFD, $0.baseAddress, $0.count) }
            close(readyFD)
        }
    }
}

/// Signals taken synchronously: blocked in every thread (call before
/// starting any) and waited for by one.
public enum Signals {
    /// Blocks `signals` in this thread and the threads it starts later.
    public static func block(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for one of `signals` (blocked beforehand); returns it.
    public static func wait(_ signals: [Int32]) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received
    }

    /// Sends `signal` to this process (to wake a thread in `wait`).
    public static func raise(_ signal: Int32) { kill(getpid(), signal) }
}

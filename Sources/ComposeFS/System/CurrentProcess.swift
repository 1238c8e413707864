import CComposeFSShims
import Glibc

/// What the library and the tools ask of the running process: its ids,
/// environment, CPUs and descriptor limit, and how it ends.
public enum CurrentProcess {
    public static var effectiveUserID: uid_t { geteuid() }
    public static var effectiveGroupID: gid_t { getegid() }
    public static var id: pid_t { getpid() }

    /// The machine's hardware name (`uname -m`: `x86_64`, `aarch64`).
    public static var machine: String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown" }
        return withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Whether this process is in the initial user namespace (its uid map
    /// is the identity over the whole range), where root may mount EROFS.
    public static var isInInitialUserNamespace: Bool {
        guard let fd = try? FileDescriptor.open("/proc/self/uid_map", .readOnly) else { return true }
        defer { try? fd.close() }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = (try? withMutableBytes(&buffer) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try fd.readAll(into: b, at: 0) }) ?? 0
        let fields = String(decoding: buffer[0..<n], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        return fields == ["0", "0", "4294967295"]
    }

    /// An environment variable's value (as bytes become a String: lossy
    /// only for invalid UTF-8, which no variable read here carries).
    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// `sched_yield(2)`: lets the threads waiting for this CPU run first.
    public static func yield() { _ = sched_yield() }

    /// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC`).
    public static var monotonicNanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// One line to the system log (LOG_DAEMON, error priority), as `ident`.
    public static func logToSystem(_ ident: String, _ line: String) {
        cfs_syslog(ident, 3, line)   // LOG_ERR
    }

    /// Ends the process with `status`, without unwinding.
    public static func exit(_ status: Int32) -> Never { Glibc.exit(status) }

    /// CPUs in this process's affinity mask (what `--threads` defaults to).
    public static var availableCPUs: Int {
        let n = Int(cfs_affinity_cpu_count())
        if n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Raises the soft limit on open descriptors to the hard one; the soft
    /// limit in force afterwards (capped at 2^20: RLIM_INFINITY is the
    /// largest value), nil when it cannot be read.
    public static func raiseOpenFileLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(min(limit.rlim_cur, 1 << 20))
    }
}

extension FileDescriptor {
    /// Whether this is a terminal (`isatty(3)`).
    public var isTerminal: Bool { isatty(rawValue) != 0 }
}

/// A thread of its own (a plain pthread: no pool, no runtime beyond libc),
/// running `body`; `join()` waits for it.
public final class SystemThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false

    /// Starts `body` on a new thread; EAGAIN and the like when none is to be had.
    public init(_ body: @escaping () -> Void) throws(Errno) {
        let job = Unmanaged.passRetained(Job(body)).toOpaque()
        let rc = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Job>.fromOpaque(context!).takeRetainedValue().work()
                return nil
            }, job)
        guard rc == 0 else {
            Unmanaged<Job>.fromOpaque(job).release()
            throw Errno(rc)
        }
    }

    /// Waits for the thread to end.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    /// A thread nobody joins runs on, detached.
    deinit { if !joined { pthread_detach(thread) } }

    private final class Job: @unchecked Sendable {
        let work: () -> Void
        init(_ work: @escaping () -> Void) { self.work = work }
    }
}

import Glibc
import Synchronization

/// The system calls the library makes, by what they do: fault injection
/// chooses by these.
enum SystemCall: String, Sendable, CaseIterable {
    case open, close, read, write, stat, readLink, listXattrs, getXattr
    case mkdir, link, rename, unlink, sync, chmod, copy, lock, mount, ioctl
}

/// A test hook that makes chosen system calls fail as if the kernel had
/// refused them: every wrapper in the system layer asks it first (one
/// relaxed atomic load while it is off). The rule sees the call and the
/// path when there is one.
enum SystemFaults {
    struct Call: Sendable {
        var call: SystemCall
        /// The path the call names, if any.
        var path: FilePath?
        /// The descriptor it works on, if any.
        var descriptor: FileDescriptor?

        /// The file the call is about: its path, else where its descriptor
        /// points (`/proc/self/fd/N`; an anonymous file shows its
        /// directory and "(deleted)").
        var file: FilePath? {
            if let path, path.bytes.first == UInt8(ascii: "/") { return path }
            guard let descriptor, descriptor.rawValue >= 0 || descriptor.rawValue == AT_FDCWD else { return path }
            var buf = [UInt8](repeating: 0, count: 4096)
            let link: FilePath = descriptor.rawValue == AT_FDCWD ? "/proc/self/cwd" : descriptor.procPath
            let n = link.withCString { p in
                buf.withUnsafeMutableBytes { readlink(p, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            }
            guard n > 0 else { return path }
            let where_ = FilePath(bytes: Array(buf[0..<n]))
            return path.map { where_.appending($0.bytes) } ?? where_
        }
    }

    typealias Rule = @Sendable (Call) -> Errno?

    private static let enabled = Atomic<Bool>(false)
    private static let rule = Locked<Rule?>(nil)

    /// Until `clear()`, every system call `rule` returns an errno for fails
    /// with it (without being made).
    static func inject(_ rule: @escaping Rule) {
        self.rule.withLock { $0 = rule }
        enabled.store(true, ordering: .sequentiallyConsistent)
    }

    static func clear() {
        enabled.store(false, ordering: .sequentiallyConsistent)
        rule.withLock { $0 = nil }
    }

    @inline(__always)
    static func check(_ call: SystemCall, _ path: FilePath? = nil, _ descriptor: FileDescriptor? = nil) throws(Errno) {
        guard enabled.load(ordering: .relaxed) else { return }
        if let e = rule.withLock({ $0 })?(Call(call: call, path: path, descriptor: descriptor)) { throw e }
    }
}

import CComposeFSShims
import Glibc

/// Sockets and descriptors passed between processes, vectored writes.
extension FileDescriptor {
    /// `socketpair(AF_UNIX, SOCK_STREAM)`, both ends close-on-exec.
    public static func socketPair() throws(Errno) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        _ = try withMutableBytes(&fds) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in
            try retrying {
                socketpair(
                    AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0,
                    b.baseAddress!.assumingMemoryBound(to: Int32.self))
            }
        }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// Receives a descriptor sent over this socket (`SCM_RIGHTS`).
    public func receiveDescriptor() throws(Errno) -> FileDescriptor {
        try SystemFaults.check(.read, nil, self)
        return FileDescriptor(rawValue: try Self.retrying { cfs_recv_fd(rawValue) })
    }

    /// Clears close-on-exec, so a child started by `Subprocess` inherits it.
    public func setInheritable() throws(Errno) {
        let flags = try Self.retrying { fcntl(rawValue, F_GETFD) }
        _ = try Self.retrying { fcntl(rawValue, F_SETFD, flags & ~FD_CLOEXEC) }
    }

    /// One `writev(2)` of all `parts` (a message that must go in one write,
    /// as replies to /dev/fuse do): the bytes written.
    public func write(vector parts: [UnsafeRawBufferPointer]) throws(Errno) -> Int {
        try SystemFaults.check(.write, nil, self)
        return try withUnsafeTemporaryAllocation(of: iovec.self, capacity: parts.count) {
            (iov: UnsafeMutableBufferPointer<iovec>) throws(Errno) -> Int in
            for (i, p) in parts.enumerated() {
                iov[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: p.baseAddress), iov_len: p.count)
            }
            return try Self.retrying { writev(rawValue, iov.baseAddress, Int32(parts.count)) }
        }
    }

    /// `FUSE_DEV_IOC_CLONE`: this (a new `/dev/fuse` descriptor) joins the
    /// connection of `session`, so one thread reads each.
    public func joinFuseConnection(of session: FileDescriptor) throws(Errno) {
        _ = try Self.retrying { cfs_fuse_clone(rawValue, session.rawValue) }
    }
}

import CComposeFSShims
import Glibc

extension FsVerity {
    /// What the kernel says about a file's fs-verity digest.
    public enum Measurement: Equatable, Sendable {
        case digest([UInt8])
        /// The file has no fs-verity, or the kernel or filesystem lacks it
        /// (ENODATA, EOPNOTSUPP, ENOTTY).
        case unavailable(Errno)
    }

    /// `FS_IOC_MEASURE_VERITY`: the one place the ioctl is wrapped.
    /// Throws for errors other than "no verity here".
    public static func measure(fd: FileDescriptor, path: FilePath = "") throws(Error) -> Measurement {
        var buf = [UInt8](repeating: 0, count: 64)
        var alg: UInt16 = 0
        let n = buf.withUnsafeMutableBufferPointer { cfs_measure_verity(fd.rawValue, $0.baseAddress, 64, &alg) }
        if n < 0 {
            let e = Errno.current
            if e == .noData || e == .notSupported || e == .notTTY { return .unavailable(e) }
            throw .io(path: path, errno: e)
        }
        guard n == digestSize else { throw .io(path: path, errno: .invalidArgument) }
        return .digest(Array(buf[0..<Int(n)]))
    }

    /// `FS_IOC_ENABLE_VERITY` (SHA-256, 4096-byte blocks, no salt).
    /// Returns the errno on failure (callers decide whether it matters).
    @discardableResult
    public static func enable(fd: FileDescriptor) -> Errno? {
        cfs_enable_verity(fd.rawValue) == 0 ? nil : Errno.current
    }

    /// The kernel's digest where it has one, otherwise computed in
    /// userspace from the contents (as `composefs-info measure-file`).
    public static func measureOrCompute(fd: FileDescriptor, path: FilePath = "") throws(Error) -> [UInt8] {
        switch try measure(fd: fd, path: path) {
        case .digest(let d): return d
        case .unavailable: return try digest(fd: fd, path: path)
        }
    }
}

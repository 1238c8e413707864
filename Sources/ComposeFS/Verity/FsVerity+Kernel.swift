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
        let measured: [UInt8]
        do { measured = try fd.measureVerity().digest } catch {
            if error == .noData || error == .notSupported || error == .inappropriateIOCTLForDevice { return .unavailable(error) }
            throw .io(path: path, errno: error)
        }
        guard measured.count == digestSize else { throw .io(path: path, errno: .invalidArgument) }
        return .digest(measured)
    }

    /// `FS_IOC_ENABLE_VERITY` (SHA-256, 4096-byte blocks, no salt).
    /// Returns the errno on failure (callers decide whether it matters).
    @discardableResult
    public static func enable(fd: FileDescriptor) -> Errno? {
        do { try fd.enableVerity() } catch { return error }
        return nil
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

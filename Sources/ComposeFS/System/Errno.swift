import Glibc

/// An error number from a system call, as a type: errors carry this, never
/// a bare `Int32`; its text is strerror(3)'s.
public struct Errno: Swift.Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno` now.
    public static var current: Errno { Errno(Glibc.errno) }

    public var description: String { String(cString: strerror(rawValue)) }

    public static let notPermitted = Errno(EPERM)
    public static let noSuchFileOrDirectory = Errno(ENOENT)
    public static let interrupted = Errno(EINTR)
    public static let ioError = Errno(EIO)
    public static let badFileDescriptor = Errno(EBADF)
    public static let fileExists = Errno(EEXIST)
    public static let improperLink = Errno(EXDEV)
    public static let operationNotSupportedByDevice = Errno(ENODEV)
    public static let notDirectory = Errno(ENOTDIR)
    public static let isDirectory = Errno(EISDIR)
    public static let invalidArgument = Errno(EINVAL)
    public static let inappropriateIOCTLForDevice = Errno(ENOTTY)
    public static let noSpace = Errno(ENOSPC)
    public static let brokenPipe = Errno(EPIPE)
    public static let outOfRange = Errno(ERANGE)
    public static let fileNameTooLong = Errno(ENAMETOOLONG)
    public static let noFunction = Errno(ENOSYS)
    public static let noData = Errno(ENODATA)
    public static let notSupported = Errno(EOPNOTSUPP)
    public static let notBlockDevice = Errno(ENOTBLK)
    public static let resourceBusy = Errno(EBUSY)
    public static let illegalByteSequence = Errno(EILSEQ)
    public static let wouldBlock = Errno(EWOULDBLOCK)
    public static let directoryNotEmpty = Errno(ENOTEMPTY)
    public static let permissionDenied = Errno(EACCES)
    public static let readOnlyFileSystem = Errno(Glibc.EROFS)
    public static let tooManySymbolicLinkLevels = Errno(ELOOP)
    public static let noSuchAddressOrDevice = Errno(ENXIO)
    public static let protocolError = Errno(EPROTO)
    public static let connectionAbort = Errno(ECONNABORTED)
}

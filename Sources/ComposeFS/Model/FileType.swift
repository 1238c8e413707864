/// File types by their `st_mode` type bits (`mode & 0o170000`).
public enum FileType: UInt32, Sendable, CaseIterable {
    case fifo = 0o010000
    case characterDevice = 0o020000
    case directory = 0o040000
    case blockDevice = 0o060000
    case regular = 0o100000
    case symlink = 0o120000
    case socket = 0o140000

    public static let mask: UInt32 = 0o170000

    /// The type of a full mode, or nil when the type bits name none of the seven.
    public init?(mode: UInt32) { self.init(rawValue: mode & Self.mask) }

    /// EROFS directory-entry file type code.
    public var direntType: UInt8 {
        switch self {
        case .regular: 1
        case .directory: 2
        case .characterDevice: 3
        case .blockDevice: 4
        case .fifo: 5
        case .socket: 6
        case .symlink: 7
        }
    }
}

/// Seconds and nanoseconds, compared as a pair with signed seconds.
public struct Timespec: Hashable, Comparable, Sendable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static let zero = Timespec(seconds: 0, nanoseconds: 0)

    public static func < (a: Timespec, b: Timespec) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// One extended attribute: key and value are bytes.
public struct Xattr: Hashable, Sendable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }

    public init(_ key: String, _ value: [UInt8]) {
        self.key = Array(key.utf8)
        self.value = value
    }

    /// Hashes the bytes in bulk (the synthesized version feeds the hasher
    /// one byte at a time, which dominated shared-xattr counting).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(key.count)
        key.withUnsafeBytes { hasher.combine(bytes: $0) }
        value.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

import Glibc

/// A file system path as bytes: names need not be UTF-8, so paths are never
/// `String`s inside the library. Shown to people with invalid UTF-8
/// repaired.
public struct FilePath: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { bytes = Array(string.utf8) }
    public init(stringLiteral value: String) { self.init(value) }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
    public var isEmpty: Bool { bytes.isEmpty }

    /// `self/name` (just `name` when self is empty).
    public func appending(_ name: [UInt8]) -> FilePath {
        guard !bytes.isEmpty else { return FilePath(bytes: name) }
        var out = bytes
        if out.last != UInt8(ascii: "/") { out.append(UInt8(ascii: "/")) }
        out.append(contentsOf: name)
        return FilePath(bytes: out)
    }

    public func appending(_ name: String) -> FilePath { appending(Array(name.utf8)) }

    /// The directory part (`.` for a bare name, `/` for the root).
    public var directory: FilePath {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return slash == 0 ? "/" : FilePath(bytes: Array(bytes[..<slash]))
    }

    /// The last component.
    public var lastComponent: [UInt8] {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return bytes }
        return Array(bytes[(slash + 1)...])
    }

    /// The working directory (`getcwd(3)`).
    public static func currentDirectory() throws(Errno) -> FilePath {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { throw Errno.current }
        return FilePath(bytes: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) })
    }

    /// `chdir(2)` to this path.
    /// This path made absolute against the working directory, as it is
    /// now (a daemon changes to `/` before it uses its paths).
    public func absolute() throws(Errno) -> FilePath {
        guard bytes.first != UInt8(ascii: "/") else { return self }
        return try Self.currentDirectory().appending(bytes)
    }

    public func makeCurrentDirectory() throws(Errno) {
        try withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            _ = try FileDescriptor.retrying { chdir(p) }
        }
    }

    /// The path as a NUL-terminated C string for the duration of `body`:
    /// the one place byte paths become C strings.
    public func withCString<R, E: Swift.Error>(_ body: (UnsafePointer<CChar>) throws(E) -> R) throws(E) -> R {
        try bytes.withCString(body)
    }
}

extension Array where Element == UInt8 {
    /// The bytes as a NUL-terminated C string for the duration of `body`
    /// (no copy when there is room; a NUL inside cuts the string, as C does).
    func withCString<R, E: Swift.Error>(_ body: (UnsafePointer<CChar>) throws(E) -> R) throws(E) -> R {
        let n = count
        return try withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) {
            (buf: UnsafeMutableBufferPointer<CChar>) throws(E) -> R in
            withUnsafeBytes { raw in
                if n > 0 { UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: n) }
            }
            buf[n] = 0
            return try body(buf.baseAddress!)
        }
    }
}

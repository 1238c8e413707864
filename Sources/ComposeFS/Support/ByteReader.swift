/// Bounds-checked little-endian reads from an untrusted buffer. Every read
/// of image bytes goes through here: an out-of-range access throws
/// instead of trapping, which is where "never crash on a hostile image" is won.
public struct ByteReader {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case outOfBounds(offset: Int, length: Int, size: Int)

        public var description: String {
            switch self {
            case let .outOfBounds(offset, length, size):
                return "read of \(length) bytes at offset \(offset) is past the end of the image (\(size) bytes)"
            }
        }
    }

    public let data: [UInt8]

    public init(_ data: [UInt8]) { self.data = data }

    public var size: Int { data.count }

    @inlinable
    public func check(_ offset: Int, _ length: Int) throws(Error) {
        guard offset >= 0, length >= 0, offset <= data.count, length <= data.count - offset else {
            throw .outOfBounds(offset: offset, length: length, size: data.count)
        }
    }

    @inlinable public func u8(at o: Int) throws(Error) -> UInt8 {
        try check(o, 1)
        return data[o]
    }

    @inlinable public func u16(at o: Int) throws(Error) -> UInt16 {
        try check(o, 2)
        return UInt16(data[o]) | UInt16(data[o + 1]) << 8
    }

    @inlinable public func u32(at o: Int) throws(Error) -> UInt32 {
        try check(o, 4)
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(data[o + i]) << (8 * i) }
        return v
    }

    @inlinable public func u64(at o: Int) throws(Error) -> UInt64 {
        try check(o, 8)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(data[o + i]) << (8 * i) }
        return v
    }

    @inlinable public func bytes(at o: Int, count n: Int) throws(Error) -> [UInt8] {
        try check(o, n)
        return Array(data[o..<(o + n)])
    }

    @inlinable public func slice(at o: Int, count n: Int) throws(Error) -> ArraySlice<UInt8> {
        try check(o, n)
        return data[o..<(o + n)]
    }
}

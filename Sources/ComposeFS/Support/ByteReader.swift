import Glibc

/// Bounds-checked little-endian reads from an untrusted image, held in
/// memory or read from a file on demand through a small block cache (so
/// walking a large image needs little memory). Every read of image bytes
/// goes through here: an out-of-range access throws instead of trapping,
/// which is where "never crash on a hostile image" is won.
public struct ByteReader {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case outOfBounds(offset: Int, length: Int, size: Int)
        case io(offset: Int, errno: Errno)

        public var description: String {
            switch self {
            case .outOfBounds(let offset, let length, let size):
                "read of \(length) bytes at offset \(offset) is past the end of the image (\(size) bytes)"
            case .io(let offset, let e):
                "read at offset \(offset) failed: \(e)"
            }
        }
    }

    /// The bytes, when they are all in memory (kept alive by `owner`),
    /// else nil and reads go through `blocks`.
    let base: UnsafeRawPointer?
    let owner: AnyObject?
    let blocks: FileBlocks?
    public let size: Int

    /// Whether every byte is in memory (reads never touch the file).
    public var isInMemory: Bool { base != nil || size == 0 }

    public init(_ data: [UInt8]) {
        let buffer = Buffer(copying: data)
        owner = buffer
        base = UnsafeRawPointer(buffer.base)
        blocks = nil
        size = data.count
    }

    /// Reads `fd` (a regular file of `size` bytes) on demand, through a
    /// cache of `cacheBlocks` blocks of 4096 bytes.
    public init(fd: FileDescriptor, size: Int, cacheBlocks: Int = 64) {
        blocks = FileBlocks(fd: fd.rawValue, size: size, slots: cacheBlocks)
        owner = nil
        base = nil
        self.size = size
    }

    private init(base: UnsafeRawPointer?, owner: AnyObject?, blocks: FileBlocks?, size: Int) {
        self.base = base
        self.owner = owner
        self.blocks = blocks
        self.size = size
    }

    /// A reader of the same bytes that another thread may use: memory is
    /// shared (it is never written), a file gets a cache of its own.
    public func copy() -> ByteReader {
        ByteReader(base: base, owner: owner, blocks: blocks.map { FileBlocks(fd: $0.fd, size: $0.size, slots: $0.slots) }, size: size)
    }

    /// Reads the whole of `fd` (`size` bytes) into memory now.
    public init(readingAll fd: FileDescriptor, size: Int) throws(Error) {
        let buffer = Buffer(capacity: size)
        try FileBlocks.read(fd: fd.rawValue, into: buffer.base, at: 0, count: size)
        owner = buffer
        base = UnsafeRawPointer(buffer.base)
        blocks = nil
        self.size = size
    }

    /// Memory owned by a reader.
    final class Buffer {
        let base: UnsafeMutableRawPointer

        init(capacity: Int) { base = .allocate(byteCount: Swift.max(capacity, 1), alignment: 16) }

        convenience init(copying data: [UInt8]) {
            self.init(capacity: data.count)
            data.withUnsafeBytes { if let b = $0.baseAddress { base.copyMemory(from: b, byteCount: $0.count) } }
        }

        deinit { base.deallocate() }
    }

    @inline(__always)
    public func check(_ offset: Int, _ length: Int) throws(Error) {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else {
            throw .outOfBounds(offset: offset, length: length, size: size)
        }
    }

    /// Calls `body` with the `n` bytes at `o`.
    @inline(__always)
    public func withBytes<R>(at o: Int, count n: Int, _ body: (UnsafeRawBufferPointer) -> R) throws(Error) -> R {
        try check(o, n)
        if let base { return body(UnsafeRawBufferPointer(start: base + o, count: n)) }
        guard let blocks else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try blocks.withBytes(at: o, count: n, body)
    }

    @inline(__always)
    func load<T: FixedWidthInteger>(_ o: Int, as: T.Type) throws(Error) -> T {
        try check(o, MemoryLayout<T>.size)
        if let base { return T(littleEndian: base.loadUnaligned(fromByteOffset: o, as: T.self)) }
        return try withBytes(at: o, count: MemoryLayout<T>.size) { T(littleEndian: $0.loadUnaligned(as: T.self)) }
    }

    public func u8(at o: Int) throws(Error) -> UInt8 { try load(o, as: UInt8.self) }
    public func u16(at o: Int) throws(Error) -> UInt16 { try load(o, as: UInt16.self) }
    public func u32(at o: Int) throws(Error) -> UInt32 { try load(o, as: UInt32.self) }
    public func u64(at o: Int) throws(Error) -> UInt64 { try load(o, as: UInt64.self) }

    public func bytes(at o: Int, count n: Int) throws(Error) -> [UInt8] {
        try withBytes(at: o, count: n) { Array($0) }
    }

    public func slice(at o: Int, count n: Int) throws(Error) -> ArraySlice<UInt8> {
        try bytes(at: o, count: n)[...]
    }
}

/// A direct-mapped cache of 4096-byte blocks of a file, filled with pread.
final class FileBlocks {
    static let blockSize = 4096
    let slots: Int
    let fd: Int32
    let size: Int
    let cache: UnsafeMutableRawPointer
    @exclusivity(unchecked) var tags: [Int]

    init(fd: Int32, size: Int, slots: Int = 64) {
        self.fd = fd
        self.size = size
        self.slots = max(1, slots)
        cache = UnsafeMutableRawPointer.allocate(byteCount: self.slots * Self.blockSize, alignment: 4096)
        tags = [Int](repeating: -1, count: self.slots)
    }

    deinit { cache.deallocate() }

    private func read(into p: UnsafeMutableRawPointer, at offset: Int, count: Int) throws(ByteReader.Error) {
        try Self.read(fd: fd, into: p, at: offset, count: count)
    }

    static func read(fd: Int32, into p: UnsafeMutableRawPointer, at offset: Int, count: Int) throws(ByteReader.Error) {
        let n: Int
        do { n = try FileDescriptor(rawValue: fd).readAll(into: UnsafeMutableRawBufferPointer(start: p, count: count), at: offset) } catch {
            throw .io(offset: offset, errno: error)
        }
        if n < count { throw .io(offset: offset + n, errno: .ioError) }   // the file shrank
    }

    /// The cached block holding `block`, read in if needed.
    private func block(_ block: Int) throws(ByteReader.Error) -> UnsafeMutableRawPointer {
        let slot = block % slots
        let p = cache + slot * Self.blockSize
        if tags[slot] != block {
            tags[slot] = -1
            let start = block * Self.blockSize
            try read(into: p, at: start, count: min(Self.blockSize, size - start))
            tags[slot] = block
        }
        return p
    }

    func withBytes<R>(at o: Int, count n: Int, _ body: (UnsafeRawBufferPointer) -> R) throws(ByteReader.Error) -> R {
        let first = o / Self.blockSize
        if n == 0 { return body(UnsafeRawBufferPointer(start: cache, count: 0)) }
        if (o + n - 1) / Self.blockSize == first {
            let p = try block(first)
            return body(UnsafeRawBufferPointer(start: p + (o - first * Self.blockSize), count: n))
        }
        let tmp = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 8)
        defer { tmp.deallocate() }
        try read(into: tmp, at: o, count: n)
        return body(UnsafeRawBufferPointer(start: tmp, count: n))
    }
}

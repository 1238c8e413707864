/// Appends little-endian integers and raw bytes to a growing buffer.
/// Every on-disk structure is encoded field by field through this type;
/// nothing relies on Swift's struct memory layout: each integer is stored
/// on its own, converted to little-endian first.
///
/// Noncopyable: it owns its buffer, and encoders take it `inout`.
public struct ByteWriter: ~Copyable {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private var used = 0

    public init(capacity: Int = 0) {
        self.capacity = Swift.max(capacity, 64)
        base = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    /// Bytes already handed out by `drain()`.
    public private(set) var drained = 0

    /// Absolute offset of the next byte (drained + buffered).
    public var count: Int { drained + used }

    /// The buffered bytes.
    public var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: used)) }

    /// Hands out the buffered bytes and keeps the offset counting.
    public mutating func drain() -> [UInt8] {
        let out = bytes
        drained += used
        used = 0
        return out
    }

    /// Room for `n` more bytes.
    @inline(__always)
    private mutating func reserve(_ n: Int) {
        if used + n > capacity { grow(used + n) }
    }

    private mutating func grow(_ needed: Int) {
        var c = capacity
        while c < needed { c *= 2 }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 16)
        bigger.copyMemory(from: base, byteCount: used)
        base.deallocate()
        base = bigger
        capacity = c
    }

    @inline(__always)
    private mutating func store<T: FixedWidthInteger>(_ v: T) {
        reserve(MemoryLayout<T>.size)
        base.storeBytes(of: v.littleEndian, toByteOffset: used, as: T.self)
        used += MemoryLayout<T>.size
    }

    public mutating func u8(_ v: UInt8) { store(v) }
    public mutating func u16(_ v: UInt16) { store(v) }
    public mutating func u32(_ v: UInt32) { store(v) }
    public mutating func u64(_ v: UInt64) { store(v) }

    public mutating func append(_ v: UnsafeRawBufferPointer) {
        guard v.count > 0 else { return }
        reserve(v.count)
        (base + used).copyMemory(from: v.baseAddress!, byteCount: v.count)
        used += v.count
    }

    public mutating func append(_ v: [UInt8]) {
        v.withUnsafeBytes { append($0) }
    }

    public mutating func append(_ v: ArraySlice<UInt8>) {
        v.withUnsafeBytes { append($0) }
    }

    public mutating func zeros(_ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (base + used).initializeMemory(as: UInt8.self, repeating: 0, count: n)
        used += n
    }

    /// Zero-fill up to the next multiple of `alignment` (a power of two).
    public mutating func pad(to alignment: Int) {
        zeros(roundUp(count, alignment) - count)
    }

    public consuming func finish() -> [UInt8] { bytes }

    /// The buffered bytes, without a copy, for the duration of `body`.
    public func withUnsafeBytes<R, E: Swift.Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: used))
    }

    /// Empties the buffer (keeping its memory) and restarts the offset.
    public mutating func removeAll() {
        used = 0
        drained = 0
    }
}

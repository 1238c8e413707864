/// Appends little-endian integers and raw bytes to a growing buffer.
/// Every on-disk structure is encoded field by field through this type;
/// nothing relies on Swift's struct memory layout.
public struct ByteWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Bytes already handed out by `drain()`.
    public private(set) var drained = 0

    /// Absolute offset of the next byte (drained + buffered).
    public var count: Int { drained + bytes.count }

    /// Hands out the buffered bytes and keeps the offset counting.
    public mutating func drain() -> [UInt8] {
        let out = bytes
        drained += bytes.count
        bytes.removeAll(keepingCapacity: true)
        return out
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }

    public mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    public mutating func u32(_ v: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    public mutating func u64(_ v: UInt64) {
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    public mutating func append(_ v: some Collection<UInt8>) { bytes.append(contentsOf: v) }

    public mutating func zeros(_ n: Int) {
        if n > 0 { bytes.append(contentsOf: repeatElement(0, count: n)) }
    }

    /// Zero-fill up to the next multiple of `alignment` (a power of two).
    public mutating func pad(to alignment: Int) {
        zeros(roundUp(count, alignment) - count)
    }

    public consuming func finish() -> [UInt8] { bytes }
}

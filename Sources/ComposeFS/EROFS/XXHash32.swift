/// 32-bit xxHash (the Linux kernel's `xxh32`), used for the EROFS xattr
/// name filter (FORMAT.md §11.5).
public enum XXHash32 {
    static let p1: UInt32 = 2_654_435_761
    static let p2: UInt32 = 2_246_822_519
    static let p3: UInt32 = 3_266_489_917
    static let p4: UInt32 = 668_265_263
    static let p5: UInt32 = 374_761_393

    @inline(__always)
    static func rotl(_ x: UInt32, _ r: UInt32) -> UInt32 { (x << r) | (x >> (32 - r)) }

    @inline(__always)
    static func le32(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    public static func hash(_ data: [UInt8], seed: UInt32) -> UInt32 {
        data.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ data: ArraySlice<UInt8>, seed: UInt32) -> UInt32 {
        data.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ data: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        let len = data.count
        var i = data.startIndex
        let end = data.endIndex
        var h: UInt32
        if len >= 16 {
            var v1 = seed &+ p1 &+ p2
            var v2 = seed &+ p2
            var v3 = seed
            var v4 = seed &- p1
            @inline(__always) func round(_ v: UInt32, _ lane: UInt32) -> UInt32 {
                rotl(v &+ lane &* p2, 13) &* p1
            }
            while i + 16 <= end {
                v1 = round(v1, le32(data, i))
                v2 = round(v2, le32(data, i + 4))
                v3 = round(v3, le32(data, i + 8))
                v4 = round(v4, le32(data, i + 12))
                i += 16
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
        } else {
            h = seed &+ p5
        }
        h = h &+ UInt32(truncatingIfNeeded: len)
        while i + 4 <= end {
            h = rotl(h &+ le32(data, i) &* p3, 17) &* p4
            i += 4
        }
        while i < end {
            h = rotl(h &+ UInt32(data[i]) &* p5, 11) &* p1
            i += 1
        }
        h ^= h >> 15
        h = h &* p2
        h ^= h >> 13
        h = h &* p3
        h ^= h >> 16
        return h
    }
}

import Testing

@testable import ComposeFS

/// xxh32, used for the EROFS xattr name filter (FORMAT.md §11.5).
@Suite struct XXHashTests {
    static let prime32: UInt32 = 2_654_435_761

    @Test func overlayOpaqueCheckValue() {
        // trusted.overlay.opaque: index 4, suffix "overlay.opaque" → bit 20.
        let h = XXHash32.hash(b("overlay.opaque"), seed: 0x25BB_E08F + 4)
        #expect(h & 31 == 20)
        #expect(h == 0x4CE0_A7F4)
        #expect(0xFFFF_FFFF & ~(UInt32(1) << (h & 31)) == 0xFFEF_FFFF)
    }

    @Test func standardVectors() {
        #expect(XXHash32.hash([], seed: 0) == 0x02CC_5D05)
        #expect(XXHash32.hash(b("a"), seed: 0) == 0x550D_7456)
        #expect(XXHash32.hash(b("abc"), seed: 0) == 0x32D1_53FF)
        // Longer than one 16-byte stripe.
        #expect(XXHash32.hash(b("Nobody inspects the spammish repetition"), seed: 0) == 0xE229_3B2F)
    }

    /// xxHash's own sanity check (xxhsum): a generated buffer hashed at
    /// lengths 1, 14 and 222, with seeds 0 and PRIME32.
    @Test func xxhsumSanityBuffer() {
        var buffer: [UInt8] = []
        var gen = UInt64(Self.prime32)
        for _ in 0..<222 {
            buffer.append(UInt8(truncatingIfNeeded: gen >> 56))
            gen = gen &* 11_400_714_785_074_694_797
        }
        let cases: [(Int, UInt32, UInt32)] = [
            (1, 0xCF65_B03E, 0xB454_5AA4),
            (14, 0x1208_E7E2, 0x6AF1_D1FE),
            (222, 0x5BD1_1DBD, 0x5880_3C5F)
        ]
        for (length, seed0, seedPrime) in cases {
            let data = Array(buffer[0..<length])
            #expect(XXHash32.hash(data, seed: 0) == seed0, "length \(length)")
            #expect(XXHash32.hash(data, seed: Self.prime32) == seedPrime, "length \(length), seed PRIME32")
        }
    }

    @Test func everyLengthAroundTheStripeSizeIsDistinct() {
        // Lengths 0…40 cover the <16, stripe and tail paths; every prefix
        // hashes differently, and the seed matters.
        let data = (0..<40).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }
        var seen = Set<UInt32>()
        for n in 0...40 { seen.insert(XXHash32.hash(Array(data[0..<n]), seed: 0)) }
        #expect(seen.count == 41)
        #expect(XXHash32.hash(data, seed: 1) != XXHash32.hash(data, seed: 0))
    }
}

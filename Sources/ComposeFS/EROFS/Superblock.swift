extension EROFS {
    /// The 128-byte EROFS superblock at offset 1024 (FORMAT.md §4).
    public struct Superblock: Equatable, Sendable {
        public var magic: UInt32 = EROFS.superblockMagic
        public var checksum: UInt32 = 0
        public var featureCompat: UInt32 = EROFS.featureCompatMTime | EROFS.featureCompatXattrFilter
        public var blockSizeBits: UInt8 = EROFS.blockSizeBits
        public var extensionSlots: UInt8 = 0
        public var rootNid: UInt16 = 0
        public var inodeCount: UInt64 = 0
        public var buildTime: UInt64 = 0
        public var buildTimeNsec: UInt32 = 0
        public var blocks: UInt32 = 0
        public var metaBlockAddress: UInt32 = 0
        public var xattrBlockAddress: UInt32 = 0
        public var featureIncompat: UInt32 = 0

        public init() {}

        public func encode(into w: inout ByteWriter) {
            let start = w.count
            w.u32(magic)   // 0
            w.u32(checksum)   // 4
            w.u32(featureCompat)   // 8
            w.u8(blockSizeBits)   // 12
            w.u8(extensionSlots)   // 13
            w.u16(rootNid)   // 14
            w.u64(inodeCount)   // 16
            w.u64(buildTime)   // 24
            w.u32(buildTimeNsec)   // 32
            w.u32(blocks)   // 36
            w.u32(metaBlockAddress)   // 40
            w.u32(xattrBlockAddress)   // 44
            w.zeros(16)   // 48: uuid
            w.zeros(16)   // 64: volume_name
            w.u32(featureIncompat)   // 80
            // 84: compression, extra devices, devt slot, dirblkbits, long
            // xattr prefixes, packed nid, xattr filter reserved: all zero.
            w.zeros(EROFS.superblockSize - (w.count - start))
        }

        public init(decoding r: ByteReader, at o: Int = EROFS.superblockOffset) throws(ByteReader.Error) {
            try r.check(o, EROFS.superblockSize)
            magic = try r.u32(at: o)
            checksum = try r.u32(at: o + 4)
            featureCompat = try r.u32(at: o + 8)
            blockSizeBits = try r.u8(at: o + 12)
            extensionSlots = try r.u8(at: o + 13)
            rootNid = try r.u16(at: o + 14)
            inodeCount = try r.u64(at: o + 16)
            buildTime = try r.u64(at: o + 24)
            buildTimeNsec = try r.u32(at: o + 32)
            blocks = try r.u32(at: o + 36)
            metaBlockAddress = try r.u32(at: o + 40)
            xattrBlockAddress = try r.u32(at: o + 44)
            featureIncompat = try r.u32(at: o + 80)
        }
    }
}

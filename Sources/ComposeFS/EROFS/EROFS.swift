/// The EROFS on-disk format as composefs writes it.
///
/// ```
///  offset 0      composefs header (32 bytes), zeros to 1024
///  1024          EROFS superblock (128 bytes)
///  1152          inode table: inodes in breadth-first order, 32-byte
///                aligned; each inode is followed by its xattr area and
///                its inline tail (never crossing a 4096 boundary)
///  inodes_end    shared xattr table (packed entries), zeros to 4096
///  data_start    4096-byte data blocks: directory blocks, file and
///                symlink blocks, in inode order
/// ```
///
/// nids count 32-byte slots from file offset 0 (meta_blkaddr is 0), so the
/// first inode, at 1152, is nid 36. All integers are little-endian. The
/// exact algorithm is FORMAT.md §2–§12.
public enum EROFS {
    public static let blockSize = 4096
    public static let blockSizeBits: UInt8 = 12
    public static let superblockOffset = 1024
    public static let superblockSize = 128
    public static let inodeTableOffset = superblockOffset + superblockSize
    public static let slotSize = 32
    public static let superblockMagic: UInt32 = 0xE0F5_E1E2

    /// `i_format` data layouts.
    public enum DataLayout: UInt16, Sendable {
        case flatPlain = 0
        case compressedFull = 1
        case flatInline = 2
        case compressedCompact = 3
        case chunkBased = 4
    }

    /// Chunk index entry value for a hole.
    public static let nullAddress: UInt32 = 0xFFFF_FFFF

    static let featureCompatMTime: UInt32 = 0x2
    static let featureCompatXattrFilter: UInt32 = 0x4

    /// Xattr name prefixes by `e_name_index` (§11.2, §15.3).
    static let xattrPrefixes: [[UInt8]] = [
        [],
        Array("user.".utf8),
        Array("system.posix_acl_access".utf8),
        Array("system.posix_acl_default".utf8),
        Array("trusted.".utf8),
        Array("lustre.".utf8),
        Array("security.".utf8)
    ]

    /// The order the writer tries prefixes in (it never uses `lustre.`).
    static let writerPrefixOrder: [Int] = [1, 2, 3, 4, 6]

    /// Seed of the per-inode xattr name filter (bloom filter) hash.
    static let xattrFilterSeed: UInt32 = 0x25BB_E08F
}

/// The 32-byte composefs header at offset 0 (FORMAT.md §3).
public struct ComposefsHeader: Equatable, Sendable {
    public static let magic: UInt32 = 0xD078_629A
    public static let headerVersion: UInt32 = 1
    public static let flagHasACL: UInt32 = 1
    /// Highest format version this implementation writes.
    public static let maxFormatVersion: UInt32 = 1
    public static let size = 32

    public var magic: UInt32 = ComposefsHeader.magic
    public var version: UInt32 = ComposefsHeader.headerVersion
    public var flags: UInt32 = 0
    /// The composefs format version (0 or 1).
    public var composefsVersion: UInt32 = 0

    public init(flags: UInt32 = 0, composefsVersion: UInt32 = 0) {
        self.flags = flags
        self.composefsVersion = composefsVersion
    }

    public var hasACL: Bool { flags & Self.flagHasACL != 0 }

    public func encode(into w: inout ByteWriter) {
        w.u32(magic)   // 0
        w.u32(version)   // 4
        w.u32(flags)   // 8
        w.u32(composefsVersion)   // 12
        w.zeros(16)   // 16: unused[4]
    }

    public init(decoding r: ByteReader, at o: Int = 0) throws(ByteReader.Error) {
        magic = try r.u32(at: o)
        version = try r.u32(at: o + 4)
        flags = try r.u32(at: o + 8)
        composefsVersion = try r.u32(at: o + 12)
    }
}

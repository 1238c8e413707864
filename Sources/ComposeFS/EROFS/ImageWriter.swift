/// Writes a tree as a composefs image, byte-identical to the reference
/// `mkcomposefs` for the same tree and version range (FORMAT.md §5–§12).
public enum ImageWriter {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalidVersion(min: UInt32, max: UInt32)
        case rootNotDirectory
        case invalidMode(path: [UInt8], mode: UInt32)
        case childrenOnNonDirectory(path: [UInt8])
        case fileTooLarge(path: [UInt8], size: UInt64)
        case contentSizeMismatch(path: [UInt8], content: Int, size: UInt64)
        case contentTooLarge(path: [UInt8], size: Int)
        case invalidDigest(path: [UInt8])
        case payloadTooLong(path: [UInt8])
        case invalidSymlink(path: [UInt8])
        case xattr(path: [UInt8], Node.Error)
        case tooManyXattrs(path: [UInt8])
        case hardlinkLoop(path: [UInt8])
        case hardlinkTargetMissing(path: [UInt8])
        case rootNidTooLarge
        case imageTooLarge

        /// The reference reports these as errno values; the message keeps
        /// that text first and adds what and where.
        public var description: String {
            switch self {
            case .invalidVersion(let min, let max):
                "Invalid argument (format version range \(min)...\(max); versions 0 and 1 exist)"
            case .rootNotDirectory: "Not a directory (the root must be a directory)"
            case .invalidMode(let p, let m): "Invalid argument (\(show(p)): invalid file type in mode \(String(m, radix: 8)))"
            case .childrenOnNonDirectory(let p): "Invalid argument (\(show(p)) has children but is not a directory)"
            case .fileTooLarge(let p, let s): "File too large (\(show(p)): \(s) bytes is more than 1024 chunks)"
            case .contentSizeMismatch(let p, let c, let s): "Invalid argument (\(show(p)): \(c) bytes of content for size \(s))"
            case .contentTooLarge(let p, let s): "Invalid argument (\(show(p)): inline content of \(s) bytes exceeds 5000)"
            case .invalidDigest(let p): "Invalid argument (\(show(p)): a digest must be 32 bytes)"
            case .payloadTooLong(let p): "File name too long (\(show(p)): payload of 4096 bytes or more)"
            case .invalidSymlink(let p): "Invalid argument (\(show(p)): symlink target must be 1 to 4095 bytes)"
            case .xattr(let p, let e): "Numerical result out of range (\(show(p)): \(e))"
            case .tooManyXattrs(let p): "Numerical result out of range (\(show(p)): xattr area too large)"
            case .hardlinkLoop(let p): "Too many levels of symbolic links (hardlink loop at \(show(p)))"
            case .hardlinkTargetMissing(let p): "Invalid argument (\(show(p)): hardlink target is not in the tree)"
            case .rootNidTooLarge: "Invalid argument (root inode beyond the 16-bit nid range)"
            case .imageTooLarge: "File too large (image exceeds 2^32 blocks)"
            }
        }

        private func show(_ p: [UInt8]) -> String { String(bytes: p) }
    }

    public struct Options: Sendable {
        /// Lowest format version to write (the version unless an upgrade is needed).
        public var minVersion: UInt32
        /// Highest format version allowed (§1.3).
        public var maxVersion: UInt32

        public init(minVersion: UInt32 = 0, maxVersion: UInt32 = 1) {
            self.minVersion = minVersion
            self.maxVersion = maxVersion
        }
    }

    /// The image bytes for `root`.
    public static func write(_ root: Node, options: Options = Options()) throws(Error) -> [UInt8] {
        let image = try prepare(root, options: options)
        var out: [UInt8] = []
        out.reserveCapacity(image.size)
        image.serialize { out += $0 }
        return out
    }

    /// Every decision about the image (order, placement, shared xattrs),
    /// made before a byte is written; the caller's tree is not modified.
    public static func prepare(_ root: Node, options: Options = Options()) throws(Error) -> PreparedImage {
        let version = try ImageLayout.resolveVersion(root: root, min: options.minVersion, max: options.maxVersion)
        return PreparedImage(layout: try ImageLayout(root: root, version: version))
    }

    /// An image ready to be written, in chunks, to any sink.
    public struct PreparedImage {
        let layout: ImageLayout

        /// Size of the image in bytes (a multiple of 4096).
        public var size: Int { layout.imageSize }
        /// The format version that will be written (§1.3).
        public var formatVersion: UInt32 { layout.version }

        /// Emits the image in order, in chunks of about 1 MiB.
        public func serialize<E: Swift.Error>(into sink: ([UInt8]) throws(E) -> Void) throws(E) {
            try ImageWriter.serialize(layout, sink)
        }
    }

    static let chunkSize = 1 << 20

    static func serialize<E: Swift.Error>(_ layout: ImageLayout, _ sink: ([UInt8]) throws(E) -> Void) throws(E) {
        try layout.items.withUnsafeBufferPointer { (items: UnsafeBufferPointer<ImageLayout.Item>) throws(E) in
            try serialize(layout, items, sink)
        }
    }

    /// The image in order (§2): header and superblock, the inode table,
    /// the shared xattr table, the data blocks. `items` are the layout's,
    /// read in place.
    static func serialize<E: Swift.Error>(
        _ layout: ImageLayout, _ items: UnsafeBufferPointer<ImageLayout.Item>,
        _ sink: ([UInt8]) throws(E) -> Void
    ) throws(E) {
        var w = ByteWriter(capacity: min(layout.imageSize, chunkSize + 2 * EROFS.blockSize))
        func flush(_ force: Bool = false) throws(E) {
            if force || w.count - w.drained >= chunkSize { try sink(w.drain()) }
        }
        encodeHeaders(layout, items, into: &w)

        // Inode table (§10).
        var block = layout.dataStart / EROFS.blockSize
        for index in items.indices {
            encodeInode(layout, items, index, block: &block, into: &w)
            try flush()
        }
        w.pad(to: EROFS.slotSize)
        assert(w.count == layout.inodesEnd)

        // Shared xattr table (§11.4), then padding to the data area.
        for g in layout.sharedTable {
            let group = layout.groups[g]
            encodeXattr(layout.xattr(of: group), group, into: &w)
            try flush()
        }
        w.zeros(layout.dataStart - w.count)

        // Data blocks (§12.4), in inode order.
        for index in items.indices where items[index].nBlocks > 0 {
            encodeDataBlocks(items, index, into: &w)
            try flush()
        }
        assert(w.count == layout.imageSize)
        try flush(true)
    }

    /// The composefs header (§3), then the EROFS superblock at 1024 (§4).
    static func encodeHeaders(
        _ layout: ImageLayout, _ items: UnsafeBufferPointer<ImageLayout.Item>,
        into w: inout ByteWriter
    ) {
        ComposefsHeader(
            flags: layout.hasACL ? ComposefsHeader.flagHasACL : 0,
            composefsVersion: layout.version
        ).encode(into: &w)
        w.zeros(EROFS.superblockOffset - w.count)
        var sb = EROFS.Superblock()
        sb.rootNid = UInt16(items[0].nid)
        sb.inodeCount = UInt64(items.count)
        sb.buildTime = UInt64(bitPattern: layout.minMtime.seconds)
        sb.buildTimeNsec = layout.minMtime.nanoseconds
        sb.blocks = UInt32(layout.imageSize / EROFS.blockSize)
        sb.metaBlockAddress = 0
        sb.xattrBlockAddress = UInt32(layout.inodesEnd / EROFS.blockSize)
        sb.encode(into: &w)
    }

    /// One inode (§10): its padding, the inode, its xattr area and its
    /// inline tail. `block` is the next free data block; the inode takes
    /// its blocks from there.
    static func encodeInode(
        _ layout: ImageLayout, _ items: UnsafeBufferPointer<ImageLayout.Item>, _ index: Int,
        block: inout Int, into w: inout ByteWriter
    ) {
        w.zeros(items[index].ipad)
        assert(w.count == items[index].nid * EROFS.slotSize)
        var u: UInt32 = 0
        let type = items[index].type
        let nBlocks = items[index].nBlocks
        if (type == .directory || type == .regular || type == .symlink) && nBlocks > 0 {
            u = UInt32(block)
            block += nBlocks
        }
        if type == .characterDevice || type == .blockDevice { u = items[index].rdev }
        if items[index].external { u = (u & 0xFFFF_0000) | UInt32(items[index].chunkBits - 12) }
        let size: UInt64 =
            switch type {
            case .directory, .regular, .symlink: items[index].size
            default: 0
            }
        let xattrSize = items[index].xattrSize
        EROFS.Inode(
            extended: !items[index].compact, layout: items[index].layout.rawValue,
            xattrCount: xattrSize == 0 ? 0 : UInt16((xattrSize - 12) / 4 + 1),
            mode: UInt16(truncatingIfNeeded: items[index].mode), nlink: items[index].nlink, size: size, u: u,
            ino: UInt32(truncatingIfNeeded: index), uid: items[index].uid, gid: items[index].gid,
            mtime: items[index].mtime
        ).encode(into: &w)
        if xattrSize > 0 {
            encodeXattrArea(layout, items, index, sharedBase: layout.inodesEnd % EROFS.blockSize, into: &w)
        }
        let tail = items[index].tail
        guard tail > 0 else { return }
        switch type {
        case .directory:
            let chunks = items[index].dirChunks
            encodeDirents(items, items[index].entries, chunks[chunks.count - 1], into: &w)
        case .symlink:
            w.append(items[index].target)
        case .regular:
            if let content = items[index].content {
                w.append(content[(content.count - tail)...])
            } else {
                for _ in 0..<items[index].chunkCount { w.u32(EROFS.nullAddress) }
            }
        default:
            break
        }
    }

    /// An inode's data blocks (§12.4): full directory blocks, the head of
    /// an inline file, a symlink target moved out of the inode, or the
    /// null chunk indexes of an external file.
    static func encodeDataBlocks(
        _ items: UnsafeBufferPointer<ImageLayout.Item>, _ index: Int,
        into w: inout ByteWriter
    ) {
        let bs = EROFS.blockSize
        let start = w.count
        switch items[index].type {
        case .directory:
            let entries = items[index].entries
            for (k, chunk) in items[index].dirChunks.enumerated() where k < items[index].nBlocks {
                encodeDirents(items, entries, chunk, into: &w)
                w.pad(to: bs)
            }
        case .regular:
            if let content = items[index].content {
                w.append(content[0..<min(content.count, bs)])
            } else {
                for _ in 0..<(bs / 4) { w.u32(EROFS.nullAddress) }
            }
        case .symlink:
            w.append(items[index].target)
        default:
            break
        }
        w.pad(to: bs)
        assert(w.count - start == items[index].nBlocks * bs)
    }

    /// An item's xattr area (§11.1): the name filter, the shared ids
    /// (§7 step 5), then the inline entries, in sorted key order.
    static func encodeXattrArea(
        _ layout: ImageLayout, _ items: UnsafeBufferPointer<ImageLayout.Item>, _ index: Int,
        sharedBase: Int, into w: inout ByteWriter
    ) {
        let start = w.count
        let sharedCount = items[index].sharedCount
        let first = items[index].xattrStart
        let count = items[index].xattrs.entries.count
        w.u32(items[index].filter)   // 0: h_name_filter
        w.u8(UInt8(sharedCount))   // 4: h_shared_count
        w.zeros(7)   // 5: h_reserved2
        var shared = 0
        for k in 0..<count {   // 12: h_shared_xattrs
            let g = layout.groups[Int(layout.xattrGroups[first + k])]
            if shared < sharedCount && g.offset >= 0 {
                w.u32(UInt32((sharedBase + Int(g.offset)) / 4))
                shared += 1
            }
        }
        shared = 0
        for k in 0..<count {
            let g = layout.groups[Int(layout.xattrGroups[first + k])]
            if shared < sharedCount && g.offset >= 0 {
                shared += 1
            } else {
                encodeXattr(items[index].xattrs.entries[k], g, into: &w)
            }
        }
        w.zeros(items[index].xattrSize - (w.count - start))
    }

    /// One xattr entry (§11.3), with its group's prefix and size.
    static func encodeXattr(_ x: Xattr, _ g: ImageLayout.XattrGroup, into w: inout ByteWriter) {
        let n = x.key.count - Int(g.prefixLength)
        w.u8(UInt8(truncatingIfNeeded: n))   // 0: e_name_len
        w.u8(g.nameIndex)   // 1: e_name_index
        w.u16(UInt16(truncatingIfNeeded: x.value.count))   // 2: e_value_size
        w.append(x.key[Int(g.prefixLength)...])   // 4
        w.append(x.value)
        w.zeros(Int(g.entrySize) - 4 - n - x.value.count)
    }

    /// One directory block or inline tail (§12.1): the 12-byte headers,
    /// then the names packed end to end.
    static func encodeDirents(
        _ items: UnsafeBufferPointer<ImageLayout.Item>, _ entries: [ImageLayout.Entry],
        _ range: Range<Int>, into w: inout ByteWriter
    ) {
        guard !range.isEmpty else { return }
        var nameOffset = 12 * range.count
        for k in range {
            let target = entries[k].target
            w.u64(UInt64(items[target].nid))   // 0: nid
            w.u16(UInt16(nameOffset))   // 8: nameoff
            w.u8(FileType(mode: items[target].mode)!.direntType)   // 10: file_type
            w.u8(0)   // 11: reserved
            nameOffset += entries[k].name.count
        }
        for k in range { w.append(entries[k].name) }
    }
}

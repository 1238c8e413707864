/// An image read on demand: an inode by its nid, a directory's entries from
/// a position, one name looked up, an inode's xattrs, a symlink's target,
/// an inline file's bytes. What a FUSE server answers from, so start-up and
/// memory do not grow with the image. Every read is bounds-checked through
/// `ByteReader`; a damaged image gives `ImageReader.Error`, never a trap.
/// (`ImageReader` loads or walks a whole image instead.)
public struct ImageView {
    public typealias Error = ImageReader.Error

    public let reader: ByteReader
    public let header: ComposefsHeader
    public let rootNid: UInt64
    let meta: Int
    let xattrBase: Int
    let buildTime: Timespec

    public init(_ reader: ByteReader) throws(Error) {
        self.reader = reader
        let geometry = try ImageReader.run { try ImageReader.Loader(reader) }
        header = geometry.header
        rootNid = UInt64(geometry.superblock.rootNid)
        meta = geometry.meta
        xattrBase = geometry.xattrBase
        buildTime = geometry.buildTime
    }

    /// A copy reading through its own block cache (one per thread).
    public func copy() -> ImageView { ImageView(copying: self) }

    private init(copying other: ImageView) {
        reader = other.reader.copy()
        header = other.header
        rootNid = other.rootNid
        meta = other.meta
        xattrBase = other.xattrBase
        buildTime = other.buildTime
    }

    // MARK: Inodes

    /// One inode, decoded, with where its parts are.
    public struct Inode: Sendable {
        public var nid: UInt64
        public var raw: EROFS.Inode
        public var type: FileType
        /// Byte offsets in the image.
        public var offset: Int
        var xattrStart: Int
        var xattrSize: Int
        var tailOffset: Int
        var tailLength: Int

        public var mode: UInt32 { UInt32(raw.mode) }
        public var size: UInt64 { raw.size }
        /// Device number (character and block devices).
        public var rdev: UInt32 { type == .characterDevice || type == .blockDevice ? raw.u : 0 }
        /// An overlay whiteout: a character or block device 0:0.
        public var isWhiteout: Bool { (type == .characterDevice || type == .blockDevice) && raw.u == 0 }
        var isFlat: Bool { raw.layout == EROFS.DataLayout.flatPlain.rawValue || raw.layout == EROFS.DataLayout.flatInline.rawValue }
        var isTailPacked: Bool { raw.layout == EROFS.DataLayout.flatInline.rawValue }
    }

    public func inode(_ nid: UInt64) throws(Error) -> Inode {
        try ImageReader.run { () throws -> Inode in
            guard nid <= UInt64(reader.size / EROFS.slotSize) else { throw Error.corrupt(offset: 0, "nid \(nid) outside the image") }
            let o = meta + Int(nid) * EROFS.slotSize
            let raw = try EROFS.Inode(decoding: reader, at: o, buildTime: buildTime)
            guard let type = FileType(mode: UInt32(raw.mode)) else {
                throw Error.corrupt(offset: o, "invalid file type in mode \(String(raw.mode, radix: 8))")
            }
            let xattrStart = o + raw.encodedSize
            let xattrSize = raw.xattrAreaSize
            try reader.check(xattrStart, xattrSize)
            var tailLength = 0
            if raw.layout == EROFS.DataLayout.flatInline.rawValue {
                tailLength = Int(raw.size % UInt64(EROFS.blockSize))
                try reader.check(xattrStart + xattrSize, tailLength)
            }
            return Inode(
                nid: nid, raw: raw, type: type, offset: o, xattrStart: xattrStart, xattrSize: xattrSize,
                tailOffset: xattrStart + xattrSize, tailLength: tailLength)
        }
    }

    // MARK: Data

    /// The `count` bytes at `offset` of a flat inode's data (its blocks,
    /// then its inline tail), cut at its size.
    public func data(of inode: Inode, offset: UInt64, count: Int) throws(Error) -> [UInt8] {
        guard inode.isFlat else { throw .corrupt(offset: inode.offset, "unsupported data layout \(inode.raw.layout)") }
        guard offset < inode.size, count > 0 else { return [] }
        let end = min(inode.size, offset + UInt64(count))
        let inBlocks = inode.size - UInt64(inode.tailLength)
        return try ImageReader.run { () throws -> [UInt8] in
            var out: [UInt8] = []
            out.reserveCapacity(Int(end - offset))
            if offset < inBlocks {
                let blocksEnd = min(end, inBlocks)
                let (start, overflow) = (Int(inode.raw.u)).multipliedReportingOverflow(by: EROFS.blockSize)
                guard !overflow, let first = Int(exactly: offset), let n = Int(exactly: blocksEnd - offset) else {
                    throw Error.corrupt(offset: inode.offset, "data block address overflows")
                }
                out += try reader.slice(at: start + first, count: n)
            }
            if end > inBlocks {
                let from = Int(max(offset, inBlocks) - inBlocks)
                out += try reader.slice(at: inode.tailOffset + from, count: Int(end - inBlocks) - from)
            }
            return out
        }
    }

    /// A symbolic link's target.
    public func symlinkTarget(_ inode: Inode) throws(Error) -> [UInt8] {
        guard inode.type == .symlink, inode.size > 0, inode.size <= UInt64(Node.maxPathLength) else {
            throw .corrupt(offset: inode.offset, "symlink target of \(inode.size) bytes")
        }
        return try data(of: inode, offset: 0, count: Int(inode.size))
    }

    // MARK: Directories

    /// One directory entry, at byte `position` of the directory's data;
    /// `next` is where the following one is (after the last entry of a
    /// block, the next block).
    public struct DirectoryEntry {
        public var nid: UInt64
        public var name: [UInt8]
        public var fileType: UInt8
        public var position: Int
        public var next: Int
    }

    /// Calls `body` for each entry from byte position `from` on, `.` and
    /// `..` included, in on-disk order, until it returns false.
    public func forEachEntry(of dir: Inode, from: Int, _ body: (DirectoryEntry) -> Bool) throws(Error) {
        let blocks = try directoryBlocks(dir)
        guard from >= 0 else { return }
        var b = from / EROFS.blockSize
        while b < blocks.count {
            let (start, length) = blocks[b]
            let base = b * EROFS.blockSize
            let entries = try dirents(at: start, length: length)
            var i = from > base ? (from - base + 11) / 12 : 0
            while i < entries.count {
                var e = entries[i]
                e.position = base + 12 * i
                e.next = i + 1 < entries.count ? e.position + 12 : base + EROFS.blockSize
                if !body(e) { return }
                i += 1
            }
            b += 1
        }
    }

    /// The nid of `name` in `dir` (binary search over the blocks, then in
    /// the block: names are sorted), or nil.
    public func lookup(_ name: [UInt8], in dir: Inode) throws(Error) -> UInt64? {
        let blocks = try directoryBlocks(dir)
        var low = 0
        var high = blocks.count - 1
        while low <= high {
            let mid = low + (high - low) / 2
            let entries = try dirents(at: blocks[mid].start, length: blocks[mid].length)
            guard let first = entries.first, let last = entries.last else { return nil }
            if compareBytes(name, first.name) < 0 {
                high = mid - 1
            } else if compareBytes(name, last.name) > 0 {
                low = mid + 1
            } else {
                var lo = 0
                var hi = entries.count - 1
                while lo <= hi {
                    let m = lo + (hi - lo) / 2
                    let c = compareBytes(name, entries[m].name)
                    if c == 0 { return entries[m].nid }
                    if c < 0 { hi = m - 1 } else { lo = m + 1 }
                }
                return nil
            }
        }
        return nil
    }

    /// Where each block of a directory's data is: (offset, length).
    func directoryBlocks(_ dir: Inode) throws(Error) -> [(start: Int, length: Int)] {
        guard dir.type == .directory else { throw .corrupt(offset: dir.offset, "not a directory") }
        guard dir.isFlat else { throw .corrupt(offset: dir.offset, "unsupported data layout \(dir.raw.layout) for a directory") }
        let bs = UInt64(EROFS.blockSize)
        let count = dir.size / bs + (dir.size % bs == 0 ? 0 : 1)
        guard count <= UInt64(reader.size) / bs + 1 else {
            throw .corrupt(offset: dir.offset, "directory size \(dir.size) larger than the image")
        }
        var out: [(Int, Int)] = []
        out.reserveCapacity(Int(count))
        for b in 0..<Int(count) {
            if dir.isTailPacked && b == Int(count) - 1 {
                out.append((dir.tailOffset, dir.tailLength))
            } else {
                let (block, overflow) = dir.raw.u.addingReportingOverflow(UInt32(truncatingIfNeeded: b))
                let start = Int(block) * EROFS.blockSize
                guard !overflow, start <= reader.size - EROFS.blockSize else {
                    throw .corrupt(offset: dir.offset, "directory block outside the image")
                }
                let length = !dir.isTailPacked && b == Int(count) - 1 && dir.size % bs != 0 ? Int(dir.size % bs) : EROFS.blockSize
                out.append((start, length))
            }
        }
        return out
    }

    /// The entries of one directory block or tail.
    func dirents(at start: Int, length: Int) throws(Error) -> [DirectoryEntry] {
        try ImageReader.run { () throws -> [DirectoryEntry] in
            guard length >= 12 else { throw Error.corrupt(offset: start, "directory chunk of \(length) bytes") }
            let first = Int(try reader.u16(at: start + 8))
            guard first % 12 == 0, first >= 12, first <= length else {
                throw Error.corrupt(offset: start, "invalid first name offset \(first)")
            }
            let count = first / 12
            var out: [DirectoryEntry] = []
            out.reserveCapacity(count)
            for i in 0..<count {
                let h = start + 12 * i
                let nameStart = Int(try reader.u16(at: h + 8))
                var nameEnd: Int
                if i + 1 < count {
                    nameEnd = Int(try reader.u16(at: h + 12 + 8))
                } else {
                    guard nameStart < length else { throw Error.corrupt(offset: h, "name offset \(nameStart) past its block") }
                    nameEnd =
                        nameStart
                        + (try reader.withBytes(at: start + nameStart, count: length - nameStart) { $0.firstIndex(of: 0) ?? $0.count })
                }
                guard nameStart >= first, nameStart < nameEnd, nameEnd <= length else {
                    throw Error.corrupt(offset: h, "invalid directory entry name range \(nameStart)..<\(nameEnd)")
                }
                out.append(
                    DirectoryEntry(
                        nid: try reader.u64(at: h), name: try reader.bytes(at: start + nameStart, count: nameEnd - nameStart),
                        fileType: try reader.u8(at: h + 10), position: 0, next: 0))
            }
            return out
        }
    }

    // MARK: Xattrs

    /// Calls `body` with each xattr's full key and value, inline ones
    /// first, then shared ones, as stored (no translation).
    public func forEachXattr(of inode: Inode, _ body: (_ key: [UInt8], _ value: [UInt8]) -> Void) throws(Error) {
        guard inode.xattrSize > 0 else { return }
        let start = inode.xattrStart
        let end = start + inode.xattrSize
        let shared = Int(try ImageReader.run { try reader.u8(at: start + 4) })
        guard 12 + 4 * shared <= inode.xattrSize else {
            throw .corrupt(offset: start, "\(shared) shared xattrs do not fit the xattr area")
        }
        var o = start + 12 + 4 * shared
        while o < end {
            let e = try EROFS.XattrEntry.decode(reader, at: o, end: end)
            body(e.key, e.value)
            o += e.size
        }
        for k in 0..<shared {
            let id = Int(try ImageReader.run { try reader.u32(at: start + 12 + 4 * k) })
            let e = try EROFS.XattrEntry.decode(reader, at: xattrBase + 4 * id, end: reader.size)
            body(e.key, e.value)
        }
    }

    /// The value of the xattr `key`, as stored, or nil.
    public func xattr(_ key: [UInt8], of inode: Inode) throws(Error) -> [UInt8]? {
        var found: [UInt8]? = nil
        try forEachXattr(of: inode) { k, v in if found == nil && k == key { found = v } }
        return found
    }
}

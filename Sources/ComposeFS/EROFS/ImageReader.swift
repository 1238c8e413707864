/// Loads a composefs image (ours or the reference's) back into a tree,
/// as the reference loader does (FORMAT.md §15). Every offset, size, count
/// and name is checked against the image: a damaged image is an error
/// naming the offset, never a crash, and never a loop (each inode is
/// loaded once; a second path to it becomes a hardlink entry).
public enum ImageReader {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case tooSmall(size: Int)
        case notComposefs(magic: UInt32)
        case unsupportedHeaderVersion(UInt32)
        case notEROFS(magic: UInt32)
        case unsupportedBlockSize(bits: UInt8)
        case truncated(ByteReader.Error)
        case corrupt(offset: Int, String)
        case invalidFilter([UInt8])

        public var description: String {
            switch self {
            case .tooSmall(let s): "Invalid argument (image of \(s) bytes is smaller than one block)"
            case .notComposefs(let m): "Invalid argument (not a composefs image: magic 0x\(String(m, radix: 16)))"
            case .unsupportedHeaderVersion(let v): "Operation not supported (composefs header version \(v))"
            case .notEROFS(let m): "Invalid argument (no EROFS superblock: magic 0x\(String(m, radix: 16)))"
            case .unsupportedBlockSize(let b): "Operation not supported (EROFS block size 2^\(b))"
            case .truncated(let e): "Invalid argument (\(e))"
            case .corrupt(let o, let why): "Invalid argument (corrupt image at offset \(o): \(why))"
            case .invalidFilter(let f): "Filter must be a single name: \(String(bytes: f))"
            }
        }
    }

    public struct Image {
        public var header: ComposefsHeader
        public var superblock: EROFS.Superblock
        public var root: Node
    }

    /// Loads the whole image, or with `filter` only the root entries whose
    /// names are in it (with everything below them).
    public static func load(_ data: [UInt8], filter: Set<[UInt8]>? = nil) throws(Error) -> Image {
        try load(ByteReader(data), filter: filter)
    }

    public static func load(_ reader: ByteReader, filter: Set<[UInt8]>? = nil) throws(Error) -> Image {
        try run {
            let loader = try Loader(reader)
            var byNid: [Int: Node] = [:]
            var root: Node? = nil
            try loader.traverse(filter: filter) { event in
                switch event {
                case .root(let node, let nid):
                    root = node
                    byNid[nid] = node
                case .entry(let node, let nid, let parent, _):
                    try parent.addChild(node)
                    byNid[nid] = node
                case .hardlink(let name, let nid, let parent, _):
                    guard let target = byNid[nid] else { throw Error.corrupt(offset: 0, "hardlink to an unloaded inode") }
                    try parent.addChild(Node(name: name, hardlinkTo: target))
                }
            }
            return Image(header: loader.header, superblock: loader.superblock, root: root!)
        }
    }

    /// One entry met by `walk`, in the order `composefs-info` prints them.
    public struct Entry {
        /// `/` for the root, otherwise `/a/b`.
        public var path: [UInt8]
        /// The entry's attributes (for a hardlink: its target's). No children.
        public var node: Node
        /// For the second and later paths to an inode: the first path.
        public var hardlinkTarget: [UInt8]?
    }

    /// Visits every entry depth-first with children in name order, without
    /// building the tree: memory stays proportional to the directory depth
    /// and the number of inodes, whatever the image size.
    public static func walk(_ reader: ByteReader, filter: Set<[UInt8]>? = nil, _ visit: (Entry) -> Void) throws(Error) {
        try run {
            let loader = try Loader(reader)
            try loader.traverse(filter: filter) { event in
                switch event {
                case .root(let node, _):
                    visit(Entry(path: [UInt8(ascii: "/")], node: node, hardlinkTarget: nil))
                case .entry(let node, _, _, let path):
                    visit(Entry(path: path, node: node, hardlinkTarget: nil))
                case .hardlink(_, let nid, _, let path):
                    guard let target = try loader.loadInode(nid: UInt64(nid), name: [], from: 0) else { return }
                    visit(Entry(path: path, node: target.node, hardlinkTarget: try loader.path(of: nid)))
                }
            }
        }
    }

    /// Maps the errors of the layers below to `ImageReader.Error`.
    static func run<T>(_ body: () throws -> T) throws(Error) -> T {
        do {
            return try body()
        } catch let e as Error {
            throw e
        } catch let e as ByteReader.Error {
            throw .truncated(e)
        } catch let e as Node.Error {
            throw .corrupt(offset: 0, "\(e)")
        } catch {
            throw .corrupt(offset: 0, "\(error)")
        }
    }

    /// Just the header (what mount checks).
    public static func header(_ data: [UInt8]) throws(Error) -> ComposefsHeader {
        let r = ByteReader(data)
        guard data.count >= ComposefsHeader.size else { throw .tooSmall(size: data.count) }
        let h: ComposefsHeader
        do { h = try ComposefsHeader(decoding: r) } catch { throw .truncated(error) }
        guard h.magic == ComposefsHeader.magic else { throw .notComposefs(magic: h.magic) }
        return h
    }

    final class Loader {
        let r: ByteReader
        let header: ComposefsHeader
        let superblock: EROFS.Superblock
        let meta: Int
        let xattrBase: Int
        let buildTime: Timespec
        /// First path to each inode: its directory's nid and its name's place.
        var records: [Int: (parent: Int, nameOffset: Int, nameLength: Int)] = [:]

        init(_ reader: ByteReader) throws {
            r = reader
            guard r.size >= EROFS.blockSize else { throw Error.tooSmall(size: r.size) }
            header = try ComposefsHeader(decoding: r)
            guard header.magic == ComposefsHeader.magic else { throw Error.notComposefs(magic: header.magic) }
            guard header.version == ComposefsHeader.headerVersion else {
                throw Error.unsupportedHeaderVersion(header.version)
            }
            superblock = try EROFS.Superblock(decoding: r)
            guard superblock.magic == EROFS.superblockMagic else { throw Error.notEROFS(magic: superblock.magic) }
            guard superblock.blockSizeBits == EROFS.blockSizeBits else {
                throw Error.unsupportedBlockSize(bits: superblock.blockSizeBits)
            }
            meta = Int(superblock.metaBlockAddress) * EROFS.blockSize
            xattrBase = Int(superblock.xattrBlockAddress) * EROFS.blockSize
            guard meta < r.size else { throw Error.corrupt(offset: 1024 + 40, "meta_blkaddr outside the image") }
            guard xattrBase < r.size else { throw Error.corrupt(offset: 1024 + 44, "xattr_blkaddr outside the image") }
            buildTime = Timespec(seconds: Int64(bitPattern: superblock.buildTime), nanoseconds: superblock.buildTimeNsec)
        }

        func inodeOffset(_ nid: UInt64, from: Int) throws -> Int {
            guard nid <= UInt64(r.size / EROFS.slotSize) else {
                throw Error.corrupt(offset: from, "nid \(nid) outside the image")
            }
            let o = meta + Int(nid) * EROFS.slotSize
            try r.check(o, EROFS.Inode.compactSize)
            return o
        }

        /// A decoded inode with its node, before its directory entries are read.
        struct Loaded {
            var node: Node
            var inode: EROFS.Inode
            var offset: Int
            var tailOffset: Int
            var tailLength: Int
        }

        /// The inode `nid` as a node named `name` (§15.2): attributes,
        /// xattrs, a symlink's target, an inline file's content. Nil for a
        /// whiteout (hidden, as the reference loader does).
        func loadInode(nid: UInt64, name: [UInt8], from: Int) throws -> Loaded? {
            let o = try inodeOffset(nid, from: from)
            let inode = try EROFS.Inode(decoding: r, at: o, buildTime: buildTime)
            let mode = UInt32(inode.mode)
            guard let type = FileType(mode: mode) else {
                throw Error.corrupt(offset: o, "invalid file type in mode \(String(mode, radix: 8))")
            }
            if type == .characterDevice && inode.u == 0 { return nil }   // whiteouts are hidden
            let node = Node(name: name, mode: mode)
            node.nlink = inode.nlink
            node.uid = inode.uid
            node.gid = inode.gid
            node.mtime = inode.mtime
            node.size = inode.size
            if type == .characterDevice || type == .blockDevice { node.rdev = inode.u }

            let xattrStart = o + inode.encodedSize
            let xattrSize = inode.xattrAreaSize
            try r.check(xattrStart, xattrSize)
            let tailOffset = xattrStart + xattrSize
            var tailLength = 0
            if inode.layout == EROFS.DataLayout.flatInline.rawValue {
                tailLength = Int(inode.size % UInt64(EROFS.blockSize))
                try r.check(tailOffset, tailLength)
            }
            if xattrSize > 0 { try loadXattrs(node, type: type, at: xattrStart, size: xattrSize) }
            let loaded = Loaded(node: node, inode: inode, offset: o, tailOffset: tailOffset, tailLength: tailLength)
            switch type {
            case .symlink: node.payload = try symlinkTarget(loaded)
            case .regular where inode.size > 0: node.content = try inlineContent(loaded)
            default: break
            }
            return loaded
        }

        /// A symlink's target: its inline tail, or its one data block.
        func symlinkTarget(_ l: Loaded) throws -> [UInt8] {
            if l.inode.layout == EROFS.DataLayout.flatInline.rawValue {
                return try r.bytes(at: l.tailOffset, count: l.tailLength)
            }
            guard l.inode.size < UInt64(EROFS.blockSize) else {
                throw Error.corrupt(offset: l.offset, "symlink target of \(l.inode.size) bytes")
            }
            return try r.bytes(at: try blockOffset(l.inode.u, from: l.offset), count: Int(l.inode.size))
        }

        /// An inline file's content (its blocks, then its tail); nil for an
        /// external (chunk-based) file, whose data is in the object store.
        func inlineContent(_ l: Loaded) throws -> [UInt8]? {
            switch l.inode.layout {
            case EROFS.DataLayout.flatPlain.rawValue, EROFS.DataLayout.flatInline.rawValue:
                guard l.inode.size <= UInt64(Node.maxInlineContent) else {
                    throw Error.corrupt(offset: l.offset, "inline file of \(l.inode.size) bytes")
                }
                let size = Int(l.inode.size)
                let inBlocks = size - l.tailLength
                var content: [UInt8] = []
                content.reserveCapacity(size)
                if inBlocks > 0 {
                    content += try r.slice(at: try blockOffset(l.inode.u, from: l.offset), count: inBlocks)
                }
                content += try r.slice(at: l.tailOffset, count: l.tailLength)
                return content
            case EROFS.DataLayout.chunkBased.rawValue:
                return nil
            default:
                throw Error.corrupt(offset: l.offset, "unsupported data layout \(l.inode.layout) for a regular file")
            }
        }

        func blockOffset(_ block: UInt32, from: Int) throws -> Int {
            let o = Int(block) * EROFS.blockSize
            guard o < r.size else { throw Error.corrupt(offset: from, "block \(block) outside the image") }
            return o
        }

        /// Inline entries first, then shared ones, translated as in §15.3.
        func loadXattrs(_ node: Node, type: FileType, at start: Int, size: Int) throws {
            let sharedCount = Int(try r.u8(at: start + 4))
            let end = start + size
            guard 12 + 4 * sharedCount <= size else {
                throw Error.corrupt(offset: start, "\(sharedCount) shared xattrs do not fit the xattr area")
            }
            var o = start + 12 + 4 * sharedCount
            while o < end {
                let e = try EROFS.XattrEntry.decode(r, at: o, end: end)
                try apply(node, type: type, key: e.key, value: e.value)
                o += e.size
            }
            for k in 0..<sharedCount {
                let id = Int(try r.u32(at: start + 12 + 4 * k))
                let eo = xattrBase + 4 * id
                let e = try EROFS.XattrEntry.decode(r, at: eo, end: r.size)
                try apply(node, type: type, key: e.key, value: e.value)
            }
        }

        static let overlay = Array("trusted.overlay.".utf8)
        static let escaped = Array("trusted.overlay.overlay.".utf8)

        func apply(_ node: Node, type: FileType, key: [UInt8], value: [UInt8]) throws {
            if key.starts(with: Self.overlay) {
                if key == ImageLayout.redirectKey {
                    if type == .regular, value.count > 1, value[0] == UInt8(ascii: "/") {
                        // The true payload (the reference over-reads two bytes here).
                        node.payload = Array(value[1...]).cutAtNUL()
                    }
                    return
                }
                if key == ImageLayout.metacopyKey {
                    if type == .regular, value.count == 36 { node.digest = Array(value[4..<36]) }
                    return
                }
                if key == ImageLayout.escapedWhiteout && type == .regular {
                    node.mode = (node.mode & ~FileType.mask) | FileType.characterDevice.rawValue
                    node.rdev = 0
                    node.size = 0
                    node.content = nil
                    return
                }
                if key == ImageLayout.escapedWhiteouts { return }
                if key.starts(with: Self.escaped) {
                    try node.setXattr(Self.overlay + key[Self.escaped.count...], value, limit: Node.loadedXattrBudgetLimit)
                }
                return
            }
            if key == ImageLayout.userWhiteout || key == ImageLayout.userWhiteouts { return }
            try node.setXattr(key, value, limit: Node.loadedXattrBudgetLimit)
        }

        typealias Dirent = (nid: UInt64, name: [UInt8], nameOffset: Int)

        /// One directory block or tail: its entries, `.` and `..` skipped.
        func dirents(at start: Int, length: Int) throws -> [Dirent] {
            guard length >= 12 else { throw Error.corrupt(offset: start, "directory chunk of \(length) bytes") }
            let first = Int(try r.u16(at: start + 8))
            guard first % 12 == 0, first >= 12, first <= length else {
                throw Error.corrupt(offset: start, "invalid first name offset \(first)")
            }
            let count = first / 12
            var out: [Dirent] = []
            out.reserveCapacity(count)
            for i in 0..<count {
                let h = start + 12 * i
                let nid = try r.u64(at: h)
                let nameStart = Int(try r.u16(at: h + 8))
                let nameEnd: Int
                if i + 1 < count {
                    nameEnd = Int(try r.u16(at: h + 12 + 8))
                } else {
                    // The last name runs to the first NUL or the end of the chunk.
                    guard nameStart < length else {
                        throw Error.corrupt(offset: h, "directory entry name offset \(nameStart) past its block")
                    }
                    nameEnd =
                        nameStart
                        + (try r.withBytes(at: start + nameStart, count: length - nameStart) { b in
                            b.firstIndex(of: 0) ?? b.count
                        })
                }
                guard nameStart >= first, nameStart < nameEnd, nameEnd <= length else {
                    throw Error.corrupt(offset: h, "invalid directory entry name range \(nameStart)..<\(nameEnd)")
                }
                let name = try r.bytes(at: start + nameStart, count: nameEnd - nameStart)
                if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                guard name.count <= Node.maxNameLength, !name.contains(0x2F), !name.contains(0) else {
                    throw Error.corrupt(offset: h, "invalid file name in directory entry")
                }
                out.append((nid, name, start + nameStart))
            }
            return out
        }

        /// All entries of a directory, block by block, sorted by name.
        func entries(of dir: Loaded) throws -> [Dirent] {
            let size = dir.inode.size
            let bs = UInt64(EROFS.blockSize)
            let blocks = size / bs + (size % bs == 0 ? 0 : 1)
            let inline = dir.inode.layout == EROFS.DataLayout.flatInline.rawValue
            guard dir.inode.layout == EROFS.DataLayout.flatPlain.rawValue || inline else {
                throw Error.corrupt(offset: dir.offset, "unsupported data layout \(dir.inode.layout) for a directory")
            }
            guard blocks <= UInt64(r.size) / bs + 1 else {
                throw Error.corrupt(offset: dir.offset, "directory size \(size) larger than the image")
            }
            var all: [Dirent] = []
            for b in 0..<Int(blocks) {
                if inline && b == Int(blocks) - 1 {
                    all += try dirents(at: dir.tailOffset, length: dir.tailLength)
                } else {
                    let (blk, overflow) = dir.inode.u.addingReportingOverflow(UInt32(truncatingIfNeeded: b))
                    guard !overflow else { throw Error.corrupt(offset: dir.offset, "directory block address overflows") }
                    let o = try blockOffset(blk, from: dir.offset)
                    try r.check(o, EROFS.blockSize)
                    all += try dirents(at: o, length: EROFS.blockSize)
                }
            }
            // Written sorted; a damaged image may not be. Names must be unique.
            var sorted = true
            for k in all.indices.dropFirst() where compareBytes(all[k - 1].name, all[k].name) >= 0 {
                sorted = false
                break
            }
            if !sorted {
                all.sort { [UInt8].byteOrderLess($0.name, $1.name) }
                for k in all.indices.dropFirst() where all[k - 1].name == all[k].name {
                    throw Error.corrupt(offset: dir.offset, "duplicate name \"\(String(bytes: all[k].name))\" in a directory")
                }
            }
            return all
        }

        enum Event {
            case root(Node, nid: Int)
            case entry(Node, nid: Int, parent: Node, path: [UInt8])
            case hardlink(name: [UInt8], nid: Int, parent: Node, path: [UInt8])
        }

        /// Depth-first, children in name order (a subdirectory is finished
        /// before its next sibling), with an explicit stack: a hostile image
        /// may nest without bound. Each inode is decoded once; later paths to
        /// it are reported as hardlinks, so cycles end.
        func traverse(filter: Set<[UInt8]>?, _ handle: (Event) throws -> Void) throws {
            let rootNid = Int(superblock.rootNid)
            guard let root = try loadInode(nid: UInt64(rootNid), name: [], from: EROFS.superblockOffset + 14),
                root.node.isDirectory
            else {
                throw Error.corrupt(offset: EROFS.superblockOffset + 14, "the root inode is not a directory")
            }
            records[rootNid] = (-1, 0, 0)
            try handle(.root(root.node, nid: rootNid))
            var rootEntries = try entries(of: root)
            if let filter { rootEntries = rootEntries.filter { filter.contains($0.name) } }
            var stack: [(dir: Loaded, nid: Int, path: [UInt8], entries: [Dirent], next: Int)] =
                [(root, rootNid, [], rootEntries, 0)]
            while !stack.isEmpty {
                let top = stack.count - 1
                let k = stack[top].next
                guard k < stack[top].entries.count else {
                    stack.removeLast()
                    continue
                }
                stack[top].next = k + 1
                let (nid64, name, nameOffset) = stack[top].entries[k]
                let nid = Int(truncatingIfNeeded: nid64)
                let dir = stack[top].dir
                let path = stack[top].path + [UInt8(ascii: "/")] + name
                if records[nid] != nil {
                    try handle(.hardlink(name: name, nid: nid, parent: dir.node, path: path))
                    continue
                }
                guard let child = try loadInode(nid: nid64, name: name, from: dir.offset) else { continue }
                records[nid] = (stack[top].nid, nameOffset, name.count)
                try handle(.entry(child.node, nid: nid, parent: dir.node, path: path))
                if child.node.isDirectory {
                    stack.append((child, nid, path, try entries(of: child), 0))
                }
            }
        }

        /// The first path by which `nid` was reached.
        func path(of nid: Int) throws -> [UInt8] {
            var names: [[UInt8]] = []
            var n = nid
            while let rec = records[n], rec.parent >= 0 {
                names.append(try r.bytes(at: rec.nameOffset, count: rec.nameLength))
                n = rec.parent
            }
            if names.isEmpty { return [UInt8(ascii: "/")] }
            var out: [UInt8] = []
            for name in names.reversed() {
                out.append(UInt8(ascii: "/"))
                out.append(contentsOf: name)
            }
            return out
        }
    }
}

/// Tree preparation, inode order and placement: everything the writer
/// decides before it emits a byte (FORMAT.md §5–§9). The caller's tree is
/// never modified; overlay xattrs, whiteout conversion, `.`/`..` entries
/// and the root's 256 whiteouts exist only in this layout.
struct ImageLayout {
    /// A directory entry: its name and the inode it points at.
    struct Entry {
        var name: [UInt8]
        var target: Int
    }

    /// One inode in breadth-first order.
    struct Item {
        var node: Node?            // nil for the root's synthetic whiteouts
        var parent: Int
        var mode: UInt32
        var nlink: UInt32
        var uid: UInt32
        var gid: UInt32
        var rdev: UInt32
        var size: UInt64
        var mtime: Timespec
        var xattrs: XattrList

        /// For messages: the entry's path in the source tree.
        var path: [UInt8] { node?.path ?? [] }

        var type: FileType { FileType(mode: mode)! }
        // Regular files
        var content: [UInt8]? = nil
        var external = false
        var chunkBits = 0
        var chunkCount = 0
        // Symlinks
        var target: [UInt8] = []
        // Directories
        var entries: [Entry] = []
        /// Entry index ranges of each full directory block, then the remainder.
        var dirChunks: [Range<Int>] = []

        // Placement
        var nBlocks = 0
        var tail = 0
        var compact = true
        var xattrSize = 0
        /// How many of the (sorted) xattrs are stored as shared references.
        var sharedCount = 0
        var filter: UInt32 = 0xFFFF_FFFF
        var ipad = 0
        var nid = 0

        var layout: EROFS.DataLayout {
            if external { return .chunkBased }
            return tail > 0 ? .flatInline : .flatPlain
        }
    }

    var items: [Item] = []
    var version: UInt32 = 0
    var hasACL = false
    var minMtime = Timespec.zero
    var sharedTable: [(xattr: Xattr, offset: Int)] = []
    var sharedOffsets: [Xattr: Int] = [:]
    var sharedSize = 0
    var inodesEnd = 0
    var dataStart = 0
    var dataBlocks = 0

    var imageSize: Int { dataStart + EROFS.blockSize * dataBlocks }

    static let overlayPrefix = Array("trusted.overlay.".utf8)
    static let escapedOverlayPrefix = Array("trusted.overlay.overlay.".utf8)
    static let metacopyKey = Array("trusted.overlay.metacopy".utf8)
    static let redirectKey = Array("trusted.overlay.redirect".utf8)
    static let opaqueKey = Array("trusted.overlay.opaque".utf8)
    static let escapedWhiteout = Array("trusted.overlay.overlay.whiteout".utf8)
    static let escapedWhiteouts = Array("trusted.overlay.overlay.whiteouts".utf8)
    static let escapedOpaque = Array("trusted.overlay.overlay.opaque".utf8)
    static let userWhiteout = Array("user.overlay.whiteout".utf8)
    static let userWhiteouts = Array("user.overlay.whiteouts".utf8)
    static let userOpaque = Array("user.overlay.opaque".utf8)
    static let selinuxKey = Array("security.selinux".utf8)
    static let aclAccessKey = Array("system.posix_acl_access".utf8)
    static let aclDefaultKey = Array("system.posix_acl_default".utf8)

    static func isWhiteout(_ n: Node) -> Bool {
        n.mode & FileType.mask == FileType.characterDevice.rawValue && n.rdev == 0
    }

    // MARK: Version (§1.3)

    static func resolveVersion(root: Node, min: UInt32, max: UInt32) throws(ImageWriter.Error) -> UInt32 {
        guard min <= ComposefsHeader.maxFormatVersion, max <= ComposefsHeader.maxFormatVersion else {
            throw .invalidVersion(min: min, max: max)
        }
        var version = min
        let maxVersion = Swift.max(max, version)
        if version < 1 && maxVersion >= 1 && containsWhiteout(root) { version = 1 }
        return version
    }

    static func containsWhiteout(_ root: Node) -> Bool {
        var stack = [root]
        while let n = stack.popLast() {
            if isWhiteout(n) { return true }
            for c in n.children where !c.isHardlink { stack.append(c) }
        }
        return false
    }

    // MARK: Building

    init(root: Node, version: UInt32) throws(ImageWriter.Error) {
        self.version = version
        guard root.isDirectory, !root.isHardlink else { throw .rootNotDirectory }
        try collect(root: root)
        finishInodes()
        try shareXattrs()
        try place()
    }

    /// Breadth-first walk: one item per inode, with its prepared metadata.
    private mutating func collect(root: Node) throws(ImageWriter.Error) {
        var index: [ObjectIdentifier: Int] = [:]
        var whiteoutParents: [Int] = []
        var total = 1
        var walk = [root]
        while let n = walk.popLast() {
            for c in n.children where !c.isHardlink {
                total += 1
                walk.append(c)
            }
        }
        items.reserveCapacity(total + 256)
        index.reserveCapacity(total)
        items.append(try Self.prepare(root, parent: 0))
        index[ObjectIdentifier(root)] = 0
        var cursor = 0
        // Pending hardlink entries: (directory item, entry index, node).
        var links: [(Int, Int, Node)] = []
        while cursor < items.count {
            let i = cursor
            cursor += 1
            guard let node = items[i].node else { continue }
            if !node.isDirectory {
                guard node.children.isEmpty else { throw .childrenOnNonDirectory(path: items[i].path) }
                if Self.isWhiteout(node) { whiteoutParents.append(items[i].parent) }
                continue
            }
            // Entries: children, `.`, `..`, and for the root the whiteouts 00..ff.
            var names: [(name: [UInt8], node: Node?, special: Int)] = node.children.map { ($0.name, $0, 0) }
            func insert(_ name: [UInt8], _ special: Int) {
                var lo = 0, hi = names.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if compareBytes(names[mid].name, name) < 0 { lo = mid + 1 } else { hi = mid }
                }
                if lo < names.count && names[lo].name == name { return }
                names.insert((name, nil, special), at: lo)
            }
            insert([UInt8(ascii: ".")], 1)
            insert([UInt8(ascii: "."), UInt8(ascii: ".")], 2)
            if i == 0 {
                let hex = Array("0123456789abcdef".utf8)
                for b in 0..<256 { insert([hex[b >> 4], hex[b & 15]], 3) }
            }
            var entries: [Entry] = []
            entries.reserveCapacity(names.count)
            for (name, child, special) in names {
                switch special {
                case 1: entries.append(Entry(name: name, target: i))
                case 2: entries.append(Entry(name: name, target: items[i].parent))
                case 3:
                    entries.append(Entry(name: name, target: items.count))
                    items.append(Self.rootWhiteout(root: items[0]))
                default:
                    let child = child!
                    if child.isHardlink {
                        links.append((i, entries.count, child))
                        entries.append(Entry(name: name, target: -1))
                    } else {
                        index[ObjectIdentifier(child)] = items.count
                        entries.append(Entry(name: name, target: items.count))
                        items.append(try Self.prepare(child, parent: i))
                    }
                }
            }
            items[i].entries = entries
            items[i].nlink = 2 + UInt32(truncatingIfNeeded: node.children.lazy.filter { $0.isDirectory }.count)
        }
        // Hardlink entries point at the inode their chain ends at (§6.1).
        for (dir, e, link) in links {
            let path = link.path
            var target = link
            var steps = 0
            while target.isHardlink {
                guard let next = target.hardlinkTarget else { throw .hardlinkTargetMissing(path: path) }
                target = next
                steps += 1
                if target === link || steps > items.count + 1 { throw .hardlinkLoop(path: path) }
            }
            guard let t = index[ObjectIdentifier(target)] else { throw .hardlinkTargetMissing(path: path) }
            items[dir].entries[e].target = t
        }
        // Whiteout markers on the parents (§5.3 step 4).
        for p in whiteoutParents {
            try Self.mark(&items[p], Self.escapedWhiteouts, [])
            try Self.mark(&items[p], Self.userWhiteouts, [])
            if version >= 1 {
                try Self.mark(&items[p], Self.escapedOpaque, [UInt8(ascii: "x")])
                try Self.mark(&items[p], Self.userOpaque, [UInt8(ascii: "x")])
            }
        }
        // Root finishing (§5.4): a real overlay xattr, never escaped.
        try Self.mark(&items[0], Self.opaqueKey, [UInt8(ascii: "y")])
    }

    private static func mark(_ item: inout Item, _ key: [UInt8], _ value: [UInt8]) throws(ImageWriter.Error) {
        do {
            try item.xattrs.set(key, value, limit: Node.xattrBudgetLimit)
        } catch {
            throw .xattr(path: item.path, error)
        }
    }

    /// Per-node preparation (§5.3): validation, overlay escaping, the
    /// metacopy/redirect xattrs of external files, whiteout conversion.
    private static func prepare(_ node: Node, parent: Int) throws(ImageWriter.Error) -> Item {
        var path: [UInt8] { node.path }
        guard let type = FileType(mode: node.mode) else { throw .invalidMode(path: path, mode: node.mode) }
        var xattrs = node.xattrList
        xattrs.mapKeys { key in
            key.starts(with: overlayPrefix) ? escapedOverlayPrefix + key[overlayPrefix.count...] : key
        }
        var item = Item(node: node, parent: parent, mode: node.mode, nlink: node.nlink, uid: node.uid,
                        gid: node.gid, rdev: node.rdev, size: node.size, mtime: node.mtime,
                        xattrs: xattrs)
        switch type {
        case .regular:
            if let content = node.content, !content.isEmpty {
                guard UInt64(content.count) == node.size else {
                    throw .contentSizeMismatch(path: path, content: content.count, size: node.size)
                }
                guard content.count <= Node.maxInlineContent else {
                    throw .contentTooLarge(path: path, size: content.count)
                }
                item.content = content
            } else if node.size > 0 {
                item.external = true
                var bits = node.size - 1 == 0 ? 1 : 64 - (node.size - 1).leadingZeroBitCount
                bits = Swift.min(Swift.max(bits, 12), 12 + 31)
                let chunk: UInt64 = 1 << UInt64(bits)
                let count = node.size / chunk + (node.size % chunk == 0 ? 0 : 1)
                guard count <= 1024 else { throw .fileTooLarge(path: path, size: node.size) }
                item.chunkBits = bits
                item.chunkCount = Int(count)
                var metacopy: [UInt8] = []
                if let digest = node.digest {
                    guard digest.count == 32 else { throw .invalidDigest(path: path) }
                    metacopy = [0, 36, 0, 1] + digest
                }
                try mark(&item, metacopyKey, metacopy)
                if let payload = node.payload, !payload.isEmpty {
                    guard payload.count < Node.maxPathLength else { throw .payloadTooLong(path: path) }
                    try mark(&item, redirectKey, [UInt8(ascii: "/")] + payload)
                }
            }
        case .symlink:
            guard let target = node.payload, !target.isEmpty, target.count < Node.maxPathLength else {
                throw .invalidSymlink(path: path)
            }
            item.target = target
            item.size = UInt64(target.count)
        case .characterDevice where node.rdev == 0:
            item.mode = (node.mode & ~FileType.mask) | FileType.regular.rawValue
            item.size = 0
            try mark(&item, escapedWhiteout, [])
            try mark(&item, userWhiteout, [])
        case .directory, .characterDevice, .blockDevice, .fifo, .socket:
            break
        }
        return item
    }

    /// One of the 256 whiteouts composefs adds to the root (§5.4).
    private static func rootWhiteout(root: Item) -> Item {
        var xattrs = XattrList()
        if let label = root.node?.xattr(selinuxKey) {
            try? xattrs.set(selinuxKey, label, limit: Node.loadedXattrBudgetLimit)
        }
        return Item(node: nil, parent: 0, mode: FileType.characterDevice.rawValue | 0o644, nlink: 1,
                    uid: root.uid, gid: root.gid, rdev: 0, size: 0, mtime: root.mtime,
                    xattrs: xattrs)
    }

    /// Sorted xattrs, minimum mtime, ACL flag (§6.1).
    private mutating func finishInodes() {
        minMtime = items[0].mtime
        for i in items.indices {
            items[i].xattrs.sortByKey()
            if items[i].mtime < minMtime { minMtime = items[i].mtime }
            if !hasACL {
                for x in items[i].xattrs.entries where x.key == Self.aclAccessKey || x.key == Self.aclDefaultKey {
                    hasACL = true
                }
            }
        }
    }

    // MARK: Shared xattrs (§7)

    private mutating func shareXattrs() throws(ImageWriter.Error) {
        var counts: [Xattr: Int] = [:]
        for item in items {
            for x in item.xattrs.entries { counts[x, default: 0] += 1 }
        }
        var shared = counts.filter { $0.value > 1 }.map(\.key)
        shared.sort { a, b in
            let k = compareBytes(a.key, b.key)
            if k != 0 { return k > 0 }
            if a.value.count != b.value.count { return a.value.count > b.value.count }
            return compareBytes(a.value, b.value) > 0
        }
        var offset = 0
        for x in shared {
            sharedOffsets[x] = offset
            sharedTable.append((x, offset))
            offset += EROFS.XattrEntry.encodedSize(key: x.key, valueLength: x.value.count)
        }
        sharedSize = offset
        for i in items.indices {
            var filter: UInt32 = 0
            var refs = 0
            var inlineBytes = 0
            for x in items[i].xattrs.entries {
                let entry = EROFS.XattrEntry(key: x.key, value: x.value)
                filter |= 1 << entry.filterBit
                if refs < 128, sharedOffsets[x] != nil {
                    refs += 1
                } else {
                    inlineBytes += entry.encodedSize
                }
            }
            let size = refs == 0 && inlineBytes == 0 ? 0 : roundUp(12 + 4 * refs + inlineBytes, 4)
            guard size == 0 || (size - 12) / 4 + 1 <= Int(UInt16.max) else {
                throw .tooManyXattrs(path: items[i].path)
            }
            items[i].filter = ~filter
            items[i].sharedCount = refs
            items[i].xattrSize = size
        }
    }

    /// The xattr area of an item: shared ids (§7 step 5) and inline entries,
    /// in sorted key order.
    func xattrArea(_ it: Item) -> (shared: [UInt32], inline: [EROFS.XattrEntry]) {
        var shared: [UInt32] = []
        var inline: [EROFS.XattrEntry] = []
        let base = inodesEnd % EROFS.blockSize
        for x in it.xattrs.entries {
            if shared.count < it.sharedCount, let o = sharedOffsets[x] {
                shared.append(UInt32((base + o) / 4))
            } else {
                inline.append(EROFS.XattrEntry(key: x.key, value: x.value))
            }
        }
        return (shared, inline)
    }

    // MARK: Sizing and placement (§8, §9)

    private mutating func place() throws(ImageWriter.Error) {
        var pos = EROFS.inodeTableOffset
        let bs = EROFS.blockSize
        for i in items.indices {
            var it = items[i]
            var sizeForCompact: UInt64 = it.size
            switch it.type {
            case .directory:
                var blocks = 0, cur = 0, chunkStart = 0
                var chunks: [Range<Int>] = []
                for (k, e) in it.entries.enumerated() {
                    let len = 12 + e.name.count
                    if cur + len > bs {
                        blocks += 1
                        chunks.append(chunkStart..<k)
                        chunkStart = k
                        cur = 0
                    }
                    cur += len
                }
                chunks.append(chunkStart..<it.entries.count)
                if cur > bs / 2 { blocks += 1; cur = 0 }
                it.dirChunks = chunks
                it.nBlocks = blocks
                it.tail = cur
                sizeForCompact = UInt64(blocks * bs + cur)
            case .symlink:
                it.tail = it.target.count
            case .regular:
                if let content = it.content {
                    it.nBlocks = content.count / bs
                    it.tail = content.count % bs
                    if it.tail > bs / 2 { it.nBlocks += 1; it.tail = 0 }
                } else if it.external {
                    it.tail = 4 * it.chunkCount
                }
            default:
                break
            }
            it.compact = it.mtime == minMtime && it.nlink <= 0xFFFF && it.uid <= 0xFFFF
                && it.gid <= 0xFFFF && sizeForCompact <= 0xFFFF_FFFF
            let isz = it.compact ? EROFS.Inode.compactSize : EROFS.Inode.extendedSize
            let xsz = it.xattrSize
            let start = roundUp(pos, EROFS.slotSize)
            it.ipad = start - pos
            pos = start
            let extra = Self.tailPadding(&it, pos: pos, isz: isz, xsz: xsz)
            it.ipad += extra
            pos += extra
            it.nid = pos / EROFS.slotSize
            if it.type == .directory { it.size = UInt64(it.nBlocks * bs + it.tail) }
            dataBlocks += it.nBlocks
            pos += isz + xsz + it.tail
            items[i] = it
        }
        guard items[0].nid <= Int(UInt16.max) else { throw .rootNidTooLarge }
        inodesEnd = roundUp(pos, EROFS.slotSize)
        dataStart = roundUp(inodesEnd + sharedSize, bs)
        guard (dataStart / bs) + dataBlocks <= Int(UInt32.max) else { throw .imageTooLarge }
    }

    /// Keeps an inline tail inside one 4096-byte block (§9.2). May move the
    /// tail into a data block; returns the padding to put before the inode.
    static func tailPadding(_ it: inout Item, pos: Int, isz: Int, xsz: Int) -> Int {
        let bs = EROFS.blockSize
        if it.type == .symlink {
            let total = isz + xsz + it.tail
            if total / bs > 0 {
                it.nBlocks = 1
                it.tail = 0
            }
            return pos / bs != (pos + total - 1) / bs ? roundUp(pos, bs) - pos : 0
        }
        guard it.tail > 0 else { return 0 }
        let rem = bs - ((pos + isz + xsz) % bs)
        if rem >= it.tail { return 0 }
        let pad = roundUp(rem, EROFS.slotSize)
        let rem2 = bs - ((pos + isz + xsz + pad) % bs)
        if it.tail <= rem2 { return pad }
        it.nBlocks += 1
        it.tail = 0
        return roundUp(pos, bs) - pos
    }
}

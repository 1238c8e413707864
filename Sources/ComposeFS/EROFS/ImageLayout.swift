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
        var node: Node?   // nil for the root's synthetic whiteouts
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
        /// Where this item's xattrs start in `xattrGroups`.
        var xattrStart = 0
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
    /// Distinct xattrs (§7): each item's xattrs, in order, by group.
    var groups: [XattrGroup] = []
    var xattrGroups: [Int32] = []
    /// The shared table: groups in table order.
    var sharedTable: [Int] = []
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

    /// Breadth-first walk: one item per inode, with its prepared metadata
    /// (§6.1); then hardlink entries resolved, whiteout parents marked and
    /// the root finished.
    private mutating func collect(root: Node) throws(ImageWriter.Error) {
        items.reserveCapacity(Self.inodeCount(root) + 256)
        items.append(try Self.prepare(root, parent: 0))
        var whiteoutParents: [Int] = []
        var links: [PendingLink] = []
        var cursor = 0
        while cursor < items.count {
            let i = cursor
            cursor += 1
            guard let node = items[i].node else { continue }
            if node.isDirectory {
                try addEntries(of: node, at: i, links: &links)
            } else {
                guard node.children.isEmpty else { throw .childrenOnNonDirectory(path: items[i].path) }
                if Self.isWhiteout(node) { whiteoutParents.append(items[i].parent) }
            }
        }
        try resolve(links)
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

    /// A hardlink entry waiting for its target's item: the directory
    /// item, the entry's index there, and the hardlink node.
    struct PendingLink {
        var directory: Int
        var entry: Int
        var node: Node
    }

    /// Inodes in the tree (hardlink entries are not inodes).
    static func inodeCount(_ root: Node) -> Int {
        var total = 1
        var walk = [root]
        while let n = walk.popLast() {
            for c in n.children where !c.isHardlink {
                total += 1
                walk.append(c)
            }
        }
        return total
    }

    /// The entries of directory item `i`: its children merged with `.`,
    /// `..` and, for the root, the whiteouts 00..ff (a child of the same
    /// name wins); a new item for each child that is an inode.
    private mutating func addEntries(of node: Node, at i: Int, links: inout [PendingLink]) throws(ImageWriter.Error) {
        let specials = i == 0 ? Self.rootSpecialNames : Self.specialNames
        var entries: [Entry] = []
        entries.reserveCapacity(node.children.count + specials.count)
        var subdirectories: UInt32 = 0
        var s = 0
        for child in node.children {
            while s < specials.count {
                let c = compareBytes(specials[s], child.name)
                if c > 0 { break }
                if c < 0 { try appendSpecial(s, of: i, into: &entries) }
                s += 1
            }
            if child.isDirectory { subdirectories += 1 }
            if child.isHardlink {
                links.append(PendingLink(directory: i, entry: entries.count, node: child))
                entries.append(Entry(name: child.name, target: -1))
            } else {
                entries.append(Entry(name: child.name, target: items.count))
                items.append(try Self.prepare(child, parent: i))
            }
        }
        while s < specials.count {
            try appendSpecial(s, of: i, into: &entries)
            s += 1
        }
        items[i].entries = entries
        items[i].nlink = 2 &+ subdirectories
    }

    /// Hardlink entries point at the inode their chain ends at (§6.1).
    private mutating func resolve(_ links: [PendingLink]) throws(ImageWriter.Error) {
        guard !links.isEmpty else { return }
        var index: [ObjectIdentifier: Int] = [:]
        index.reserveCapacity(items.count)
        for k in items.indices { if let n = items[k].node { index[ObjectIdentifier(n)] = k } }
        for link in links {
            let path = link.node.path
            var target = link.node
            var steps = 0
            while target.isHardlink {
                guard let next = target.hardlinkTarget else { throw .hardlinkTargetMissing(path: path) }
                target = next
                steps += 1
                if target === link.node || steps > items.count + 1 { throw .hardlinkLoop(path: path) }
            }
            guard let t = index[ObjectIdentifier(target)] else { throw .hardlinkTargetMissing(path: path) }
            items[link.directory].entries[link.entry].target = t
        }
    }

    /// `.` and `..`, and for the root also the 256 whiteouts `00`..`ff`
    /// (§5.4), in byte order.
    static let specialNames: [[UInt8]] = [[0x2E], [0x2E, 0x2E]]
    static let rootSpecialNames: [[UInt8]] = {
        let hex = Array("0123456789abcdef".utf8)
        return (specialNames + (0..<256).map { [hex[$0 >> 4], hex[$0 & 15]] }).sorted(by: [UInt8].byteOrderLess)
    }()

    /// Appends special entry `s` of directory item `dir`: `.` is the
    /// directory, `..` its parent, a root whiteout a new item.
    private mutating func appendSpecial(_ s: Int, of dir: Int, into entries: inout [Entry]) throws(ImageWriter.Error) {
        let name = dir == 0 ? Self.rootSpecialNames[s] : Self.specialNames[s]
        if name.count == 1 && name[0] == 0x2E {
            entries.append(Entry(name: name, target: dir))
        } else if name.count == 2 && name[0] == 0x2E && name[1] == 0x2E {
            entries.append(Entry(name: name, target: items[dir].parent))
        } else {
            entries.append(Entry(name: name, target: items.count))
            items.append(Self.rootWhiteout(root: items[0]))
        }
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
        if xattrs.entries.contains(where: { hasPrefix($0.key, overlayPrefix) }) {
            xattrs.mapKeys { key in
                hasPrefix(key, overlayPrefix) ? escapedOverlayPrefix + key[overlayPrefix.count...] : key
            }
        }
        var item = Item(
            node: node, parent: parent, mode: node.mode, nlink: node.nlink, uid: node.uid,
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
                try prepareExternal(&item, node)
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

    /// A file whose data is in the object store (§8.3, §5.3): chunk size
    /// and count, the metacopy xattr (with the digest when known) and the
    /// redirect to the object.
    private static func prepareExternal(_ item: inout Item, _ node: Node) throws(ImageWriter.Error) {
        item.external = true
        var bits = node.size - 1 == 0 ? 1 : 64 - (node.size - 1).leadingZeroBitCount
        bits = Swift.min(Swift.max(bits, 12), 12 + 31)
        let chunk: UInt64 = 1 << UInt64(bits)
        let count = node.size / chunk + (node.size % chunk == 0 ? 0 : 1)
        guard count <= 1024 else { throw .fileTooLarge(path: node.path, size: node.size) }
        item.chunkBits = bits
        item.chunkCount = Int(count)
        var metacopy: [UInt8] = []
        if let digest = node.digest {
            guard digest.count == 32 else { throw .invalidDigest(path: node.path) }
            metacopy = [0, 36, 0, 1] + digest
        }
        try mark(&item, metacopyKey, metacopy)
        if let payload = node.payload, !payload.isEmpty {
            guard payload.count < Node.maxPathLength else { throw .payloadTooLong(path: node.path) }
            try mark(&item, redirectKey, [UInt8(ascii: "/")] + payload)
        }
    }

    /// One of the 256 whiteouts composefs adds to the root (§5.4).
    private static func rootWhiteout(root: Item) -> Item {
        var xattrs = XattrList()
        if let label = root.node?.xattr(selinuxKey) {
            try? xattrs.set(selinuxKey, label, limit: Node.loadedXattrBudgetLimit)
        }
        return Item(
            node: nil, parent: 0, mode: FileType.characterDevice.rawValue | 0o644, nlink: 1,
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

    /// One distinct xattr: where to find its bytes (its first
    /// occurrence), how often it occurs, and what encoding it needs.
    struct XattrGroup {
        var item: Int32
        var entry: Int32
        var hash: UInt64
        var count: Int32 = 1
        /// Offset in the shared table, or -1 when stored inline.
        var offset: Int32 = -1
        var nameIndex: UInt8
        var prefixLength: UInt8
        var filterBit: UInt8
        var entrySize: Int32
    }

    func xattr(of group: XattrGroup) -> Xattr {
        items[Int(group.item)].xattrs.entries[Int(group.entry)]
    }

    /// Shares the xattrs used more than once (§7): finds the distinct
    /// ones, orders the shared table, sizes each item's xattr area.
    private mutating func shareXattrs() throws(ImageWriter.Error) {
        groupXattrs()
        var table = groups.indices.filter { groups[$0].count > 1 }
        table.sort { a, b in
            let x = xattr(of: groups[a])
            let y = xattr(of: groups[b])
            let k = compareBytes(x.key, y.key)
            if k != 0 { return k > 0 }
            if x.value.count != y.value.count { return x.value.count > y.value.count }
            return compareBytes(x.value, y.value) > 0
        }
        sharedTable = table
        var offset = 0
        for g in sharedTable {
            groups[g].offset = Int32(offset)
            offset += Int(groups[g].entrySize)
        }
        sharedSize = offset
        for i in items.indices { try sizeXattrArea(i) }
    }

    /// Every item's xattrs by group: an open-addressing table keyed by a
    /// fast hash, each hit confirmed byte by byte.
    private mutating func groupXattrs() {
        var total = 0
        for i in items.indices {
            items[i].xattrStart = total
            total += items[i].xattrs.entries.count
        }
        xattrGroups = [Int32](repeating: -1, count: total)
        var capacity = 64
        while capacity < 2 * total { capacity *= 2 }
        let mask = capacity - 1
        var slots = [Int32](repeating: -1, count: capacity)
        groups.reserveCapacity(total)
        for i in items.indices {
            for (k, x) in items[i].xattrs.entries.enumerated() {
                let h = Self.hash(x)
                var slot = Int(truncatingIfNeeded: h) & mask
                var found: Int32 = -1
                while slots[slot] >= 0 {
                    let g = Int(slots[slot])
                    if groups[g].hash == h && xattr(of: groups[g]) == x {
                        found = Int32(g)
                        break
                    }
                    slot = (slot + 1) & mask
                }
                if found < 0 {
                    found = Int32(groups.count)
                    slots[slot] = found
                    groups.append(Self.group(x, item: i, entry: k, hash: h))
                } else {
                    groups[Int(found)].count += 1
                }
                xattrGroups[items[i].xattrStart + k] = found
            }
        }
    }

    /// A new group for `x`: its name prefix (§11.2), filter bit (§11.5)
    /// and entry size (§11.3).
    static func group(_ x: Xattr, item: Int, entry: Int, hash: UInt64) -> XattrGroup {
        let (index, prefixLength) = EROFS.XattrEntry.prefix(of: x.key)
        let bit = x.key.withUnsafeBytes {
            XXHash32.hash(UnsafeRawBufferPointer(rebasing: $0[prefixLength...]), seed: EROFS.xattrFilterSeed &+ UInt32(index)) & 31
        }
        return XattrGroup(
            item: Int32(item), entry: Int32(entry), hash: hash, nameIndex: index,
            prefixLength: UInt8(prefixLength), filterBit: UInt8(bit),
            entrySize: Int32(
                EROFS.XattrEntry.encodedSize(
                    suffixLength: x.key.count - prefixLength,
                    valueLength: x.value.count)))
    }

    /// An item's name filter and xattr area size: up to 128 shared
    /// references, the rest inline (§8.5, §11.1).
    private mutating func sizeXattrArea(_ i: Int) throws(ImageWriter.Error) {
        var filter: UInt32 = 0
        var refs = 0
        var inlineBytes = 0
        let start = items[i].xattrStart
        for k in 0..<items[i].xattrs.entries.count {
            let g = groups[Int(xattrGroups[start + k])]
            filter |= 1 << UInt32(g.filterBit)
            if refs < 128, g.offset >= 0 {
                refs += 1
            } else {
                inlineBytes += Int(g.entrySize)
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

    /// A 64-bit hash of an xattr for the distinct-xattr table (in memory
    /// only; equal hashes are confirmed by comparing the bytes).
    static func hash(_ x: Xattr) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15
        x.key.withUnsafeBytes { h = mixBytes(h, $0) }
        x.value.withUnsafeBytes { h = mixBytes(h, $0) }
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        return h
    }

    @inline(__always)
    static func mixBytes(_ seed: UInt64, _ b: UnsafeRawBufferPointer) -> UInt64 {
        @inline(__always) func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
            ((h << 5 | h >> 59) ^ w) &* 0x517C_C1B7_2722_0A95
        }
        var h = seed
        var i = 0
        let n = b.count
        while i + 8 <= n {
            h = mix(h, b.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(b[i]) << shift
            shift += 8
            i += 1
        }
        return mix(mix(h, tail), UInt64(n))
    }

    // MARK: Sizing and placement (§8, §9)

    private mutating func place() throws(ImageWriter.Error) {
        var pos = EROFS.inodeTableOffset
        let minMtime = minMtime
        var dataBlocks = 0
        items.withUnsafeMutableBufferPointer { items in
            for i in items.indices {
                let sizeForCompact = Self.size(&items[i])
                Self.place(&items[i], at: &pos, minMtime: minMtime, sizeForCompact: sizeForCompact)
                dataBlocks += items[i].nBlocks
            }
        }
        self.dataBlocks = dataBlocks
        guard items[0].nid <= Int(UInt16.max) else { throw .rootNidTooLarge }
        inodesEnd = roundUp(pos, EROFS.slotSize)
        dataStart = roundUp(inodesEnd + sharedSize, EROFS.blockSize)
        guard (dataStart / EROFS.blockSize) + dataBlocks <= Int(UInt32.max) else { throw .imageTooLarge }
    }

    /// Data blocks and inline tail of an item (§8.1–§8.3); returns the
    /// size that decides between a compact and an extended inode.
    static func size(_ it: inout Item) -> UInt64 {
        let bs = EROFS.blockSize
        switch it.type {
        case .directory:
            var blocks = 0
            var cur = 0
            var chunkStart = 0
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
            if cur > bs / 2 {
                blocks += 1
                cur = 0
            }
            it.dirChunks = chunks
            it.nBlocks = blocks
            it.tail = cur
            return UInt64(blocks * bs + cur)
        case .symlink:
            it.tail = it.target.count
        case .regular:
            if let count = it.content?.count {
                it.nBlocks = count / bs
                it.tail = count % bs
                if it.tail > bs / 2 {
                    it.nBlocks += 1
                    it.tail = 0
                }
            } else if it.external {
                it.tail = 4 * it.chunkCount
            }
        default:
            break
        }
        return it.size
    }

    /// The inode's format (§8.4), slot and padding (§9.1): `pos` is where
    /// the previous inode ended and moves past this one.
    static func place(_ it: inout Item, at pos: inout Int, minMtime: Timespec, sizeForCompact: UInt64) {
        it.compact =
            it.mtime == minMtime && it.nlink <= 0xFFFF && it.uid <= 0xFFFF
            && it.gid <= 0xFFFF && sizeForCompact <= 0xFFFF_FFFF
        let isz = it.compact ? EROFS.Inode.compactSize : EROFS.Inode.extendedSize
        let start = roundUp(pos, EROFS.slotSize)
        it.ipad = start - pos
        pos = start
        let extra = tailPadding(&it, pos: pos, isz: isz, xsz: it.xattrSize)
        it.ipad += extra
        pos += extra
        it.nid = pos / EROFS.slotSize
        if it.type == .directory { it.size = UInt64(it.nBlocks * EROFS.blockSize + it.tail) }
        pos += isz + it.xattrSize + it.tail
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

import Glibc

/// One tar layer read into a tree: the tree `mkcomposefs` would scan
/// (FORMAT.md §19.2) from the directory GNU tar extracts the layer into as
/// root (`tar -x --xattrs --xattrs-include='*' --numeric-owner -p`).
///
/// What extraction does, and so what this does:
/// * Names: leading `/` removed (with a warning); a name with a `..`
///   component is refused. A later entry for a path replaces the earlier
///   one; a directory entry over a directory only updates its metadata and
///   adds its xattrs; nothing replaces a non-empty directory.
/// * A hard link becomes a copy of its target as it is then (each path is
///   its own inode in a directory scan); a link to itself changes nothing.
/// * Symbolic links are `0777`, their targets verbatim; `user.*` xattrs
///   exist only on regular files and directories (the kernel refuses them
///   elsewhere), and only the xattr namespaces Linux knows are kept.
/// * Directories take their entry's metadata whatever comes after them
///   (GNU tar restores directory times after their contents).
///
/// Where extraction has no reproducible answer, this one is documented
/// (mkcomposefs(1)): directories without an entry of their own, the root
/// included, are `0755`, owner 0:0, mtime 0, no xattrs (extraction gives
/// them the time of the run); an entry below a symbolic link is refused
/// (extraction writes through it, or fails).
///
/// Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are recorded for `OCILayers`, or
/// in overlay mode become overlay whiteouts and opaque xattrs in place.
public final class TarLayer {
    public enum Whiteouts: Sendable {
        /// OCI: markers delete from the layers below and are left out.
        case oci
        /// overlayfs: `.wh.NAME` becomes the character device 0:0 `NAME`,
        /// `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
        case overlay
    }

    public struct Options {
        public var useEpoch = false
        public var skipDevices = false
        public var skipXattrs = false
        public var userXattrsOnly = false
        public var whiteouts = Whiteouts.oci
        /// Where external files go while the layer streams (nil: digests only).
        public var store: ObjectStore? = nil
        /// Longest regular file accepted (the image format's limit, §5.3).
        public var maxFileSize: UInt64 = 1 << 53
        /// Told about names that were changed, once per kind, as GNU tar warns.
        public var warn: ((String) -> Void)? = nil

        public init() {}
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case tar(TarReader.Error)
        /// An entry that cannot be taken, named as the archive names it.
        case entry(source: FilePath, path: [UInt8], reason: String)
        case store(source: FilePath, path: [UInt8], ObjectStore.Error)
        case overlayNeedsOneLayer

        public var description: String {
            switch self {
            case .tar(let e): "\(e)"
            case .entry(let source, let path, let reason): "\(source): \(String(bytes: path)): \(reason)"
            case .store(let source, let path, let e): "\(source): \(String(bytes: path)): cannot fill store: \(e)"
            case .overlayNeedsOneLayer: "overlay whiteouts can be kept for exactly one layer"
            }
        }
    }

    /// Files up to this size are inline in the image, never in the store (§19.2).
    public static let inlineLimit = DirectoryScanner.inlineLimit
    static let whiteoutPrefix: [UInt8] = Array(".wh.".utf8)
    static let opaqueMarker: [UInt8] = Array(".wh..wh..opq".utf8)
    static let reservedPrefix: [UInt8] = Array(".wh..wh.".utf8)
    static let opaqueXattr: [UInt8] = Array("trusted.overlay.opaque".utf8)

    public let root: Node
    /// Directories without an entry of their own (parents of entries, and
    /// the root when the archive has no `./`). The sets of nodes hold them
    /// (an identifier of a freed node could be reused by a new one).
    private(set) var implicit: [ObjectIdentifier: Node] = [:]
    /// OCI whiteouts: a directory path and the name to delete in it.
    private(set) var whiteouts: [(directory: [[UInt8]], name: [UInt8])] = []
    /// OCI opaque directories: their lower contents are hidden.
    private(set) var opaques: [[[UInt8]]] = []

    private let options: Options
    let source: FilePath
    /// The flattened layers below (hard links may point into them).
    private let below: Node?
    /// Overlay whiteouts made from markers (a real entry of the same name wins).
    private var markers: [ObjectIdentifier: Node] = [:]
    private var warned: Set<String> = []
    /// Digests and store writes, on a second thread.
    private let objects: ObjectPipeline

    /// The root, or a directory no entry describes: `0755`, 0:0, mtime 0.
    static func defaultDirectory(_ name: [UInt8] = []) -> Node {
        Node(name: name, mode: FileType.directory.rawValue | 0o755)
    }

    private init(source: FilePath, options: Options, below: Node?) {
        self.source = source
        self.options = options
        self.below = below
        objects = ObjectPipeline(store: options.store, source: source)
        root = Self.defaultDirectory()
        implicit[ObjectIdentifier(root)] = root
    }

    /// Reads every entry of `reader`. `below` is the tree of the layers
    /// underneath, for hard links to files in them.
    public static func read(_ reader: TarReader, options: Options = Options(), below: Node? = nil) throws(Error) -> TarLayer {
        let layer = TarLayer(source: reader.source, options: options, below: below)
        do throws(Error) {
            while true {
                let entry: TarReader.Entry?
                do { entry = try reader.next() } catch { throw .tar(error) }
                guard let entry else { break }
                try layer.add(entry, reader)
            }
            try layer.objects.wait()
        } catch {
            layer.objects.drain()
            throw error
        }
        return layer
    }

    func isImplicit(_ node: Node) -> Bool { implicit[ObjectIdentifier(node)] != nil }

    // MARK: Names

    enum Normalized: Equatable {
        case path([[UInt8]])
        case dotDot
    }

    /// GNU tar's member names: leading slashes dropped (reported through
    /// `stripped`), `.` and empty components skipped, `..` refused.
    static func normalize(_ name: [UInt8], stripped: inout Bool) -> Normalized {
        let slash = UInt8(ascii: "/")
        stripped = name.first == slash
        var parts: [[UInt8]] = []
        for part in name.split(separator: slash, omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.allSatisfy({ $0 == UInt8(ascii: ".") }) { return .dotDot }
            parts.append(Array(part))
        }
        return .path(parts)
    }

    private func components(_ name: [UInt8], entry: [UInt8], link: Bool) throws(Error) -> [[UInt8]] {
        var stripped = false
        switch Self.normalize(name, stripped: &stripped) {
        case .dotDot:
            throw .entry(source: source, path: entry, reason: link ? "hard link target contains '..'" : "name contains '..'")
        case .path(let parts):
            if stripped {
                let what = link ? "hard link targets" : "member names"
                if warned.insert(what).inserted { options.warn?("\(source): Removing leading `/' from \(what)") }
            }
            return parts
        }
    }

    // MARK: Entries

    private func fail(_ entry: TarReader.Entry, _ reason: String) -> Error {
        .entry(source: source, path: entry.path, reason: reason)
    }

    private func add(_ entry: TarReader.Entry, _ reader: TarReader) throws(Error) {
        let parts = try components(entry.path, entry: entry.path, link: false)
        if let last = parts.last, last.starts(with: Self.whiteoutPrefix) {
            return try whiteout(entry, parts)
        }
        guard let name = parts.last else {
            // `./`: the root's own entry.
            guard entry.hardlink == nil, entry.type == FileType.directory.rawValue else {
                throw fail(entry, "the root can only be a directory")
            }
            try describe(root, entry)
            return
        }
        let parent = try directory(Array(parts.dropLast()), entry, create: true)!
        let existing = parent.child(named: name)
        if let target = entry.hardlink {
            let node = try linkTarget(target, entry)
            if node === existing { return }   // linked to itself: extraction keeps it
            if objects.isPending(node) { try objects.wait() }   // the copy needs its digest
            guard !node.isDirectory else { throw fail(entry, "hard link to a directory") }
            try makeRoom(parent, existing, entry)
            try insert(Self.copy(node, name: name), into: parent, entry)
            return
        }
        if entry.type == FileType.directory.rawValue, let existing, existing.isDirectory {
            return try describe(existing, entry)
        }
        let node = try makeNode(name, entry, reader)
        try makeRoom(parent, existing, entry)
        try insert(node, into: parent, entry)
    }

    private func insert(_ node: Node, into parent: Node, _ entry: TarReader.Entry) throws(Error) {
        do { try parent.addChild(node) } catch { throw fail(entry, "\(error)") }
    }

    /// Clears `name` for a new entry, as extraction unlinks (or removes an
    /// empty directory) before it creates.
    private func makeRoom(_ parent: Node, _ existing: Node?, _ entry: TarReader.Entry) throws(Error) {
        guard let existing else { return }
        if existing.isDirectory && !existing.children.isEmpty {
            throw fail(entry, "cannot replace a directory that is not empty")
        }
        parent.removeChild(named: existing.name)
    }

    /// Walks to the directory at `parts`; missing directories are made
    /// (implicit) when `create`, else nil. Never follows a symbolic link.
    private func directory(_ parts: [[UInt8]], _ entry: TarReader.Entry, create: Bool) throws(Error) -> Node? {
        var dir = root
        for (i, part) in parts.enumerated() {
            if let next = dir.child(named: part) {
                guard next.isDirectory else {
                    let path = String(bytes: Array(parts[0...i].joined(separator: [UInt8(ascii: "/")])))
                    if next.fileType == .symlink { throw fail(entry, "cannot extract through the symbolic link '\(path)'") }
                    throw fail(entry, "'\(path)' is not a directory")
                }
                dir = next
            } else {
                guard create else { return nil }
                let made = Self.defaultDirectory(part)
                try insert(made, into: dir, entry)
                implicit[ObjectIdentifier(made)] = made
                dir = made
            }
        }
        return dir
    }

    /// The node a hard link names: in this layer so far, else below.
    private func linkTarget(_ target: [UInt8], _ entry: TarReader.Entry) throws(Error) -> Node {
        let parts = try components(target, entry: entry.path, link: true)
        for tree in [root, below].compactMap({ $0 }) {
            var node = tree
            var found = true
            for (i, part) in parts.enumerated() {
                guard let next = node.child(named: part) else {
                    found = false
                    break
                }
                if i < parts.count - 1 && !next.isDirectory {
                    if next.fileType == .symlink {
                        throw fail(
                            entry,
                            "cannot link through the symbolic link '\(String(bytes: Array(parts[0...i].joined(separator: [UInt8(ascii: "/")]))))'"
                        )
                    }
                    found = false
                    break
                }
                node = next
            }
            if found { return node }
        }
        throw fail(entry, "hard link target '\(String(bytes: target))' not found")
    }

    /// A directory entry's metadata on an existing directory: mode, owner
    /// and time replaced, xattrs added (extraction keeps the ones it has).
    private func describe(_ dir: Node, _ entry: TarReader.Entry) throws(Error) {
        dir.mode = FileType.directory.rawValue | entry.permissions
        try setOwnerAndTime(dir, entry)
        try setXattrs(dir, entry)
        implicit[ObjectIdentifier(dir)] = nil
    }

    private func setOwnerAndTime(_ node: Node, _ entry: TarReader.Entry) throws(Error) {
        guard let uid = UInt32(exactly: entry.uid) else { throw fail(entry, "uid \(entry.uid) out of range") }
        guard let gid = UInt32(exactly: entry.gid) else { throw fail(entry, "gid \(entry.gid) out of range") }
        node.uid = uid
        node.gid = gid
        node.mtime = entry.mtime
    }

    static let knownNamespaces: [[UInt8]] = ["user.", "trusted.", "security.", "system."].map { Array($0.utf8) }
    static let userPrefix: [UInt8] = Array("user.".utf8)

    /// The xattrs extraction can set, under the scanner's options and budget.
    private func setXattrs(_ node: Node, _ entry: TarReader.Entry) throws(Error) {
        guard !options.skipXattrs else { return }
        let type = node.fileType
        for x in entry.xattrs {
            let user = x.key.starts(with: Self.userPrefix)
            if options.userXattrsOnly && !user { continue }
            // The kernel refuses user.* except on files and directories,
            // and namespaces it does not know; GNU tar warns and goes on.
            if user && type != .regular && type != .directory { continue }
            guard Self.knownNamespaces.contains(where: { x.key.starts(with: $0) }) else { continue }
            do { try node.setXattr(x.key, x.value) } catch { throw fail(entry, "\(error)") }
        }
    }

    private func makeNode(_ name: [UInt8], _ entry: TarReader.Entry, _ reader: TarReader) throws(Error) -> Node {
        let type = FileType(mode: entry.type) ?? .regular
        let node = Node(name: name, mode: type.rawValue | entry.permissions)
        try setOwnerAndTime(node, entry)
        switch type {
        case .symlink:
            let target = entry.symlink ?? []
            guard !target.isEmpty else { throw fail(entry, "symbolic link with an empty target") }
            guard target.count < Node.maxPathLength else {
                throw fail(entry, "symbolic link target of \(target.count) bytes (the limit is \(Node.maxPathLength - 1))")
            }
            node.mode = type.rawValue | 0o777   // what lstat shows for any symlink
            node.payload = target
            node.size = UInt64(target.count)
        case .characterDevice, .blockDevice:
            node.rdev = Self.deviceNumber(major: entry.deviceMajor, minor: entry.deviceMinor)
        case .regular:
            try readData(node, entry, reader)
        default:
            break
        }
        try setXattrs(node, entry)
        return node
    }

    /// glibc's `makedev`, truncated to 32 bits as `st_rdev` is (§5.1).
    static func deviceNumber(major: UInt64, minor: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & 0xFFF00) << 12))
    }

    /// Streams a regular file's data: inline up to 64 bytes, else hashed
    /// (and written to the store) block by block.
    private func readData(_ node: Node, _ entry: TarReader.Entry, _ reader: TarReader) throws(Error) {
        guard entry.size >= 0, UInt64(entry.size) <= options.maxFileSize else {
            throw fail(entry, "file size \(entry.size) out of range")
        }
        let size = UInt64(entry.size)
        node.size = size
        guard size > 0 else { return }
        var got: UInt64 = 0
        if size <= Self.inlineLimit {
            var content: [UInt8] = []
            while let block = try nextBlock(reader) {
                switch block {
                case .data(let d): content.append(contentsOf: d)
                case .hole(let n): content.append(contentsOf: repeatElement(0, count: Int(min(n, Self.inlineLimit + 1))))
                }
                guard content.count <= Int(size) else { break }
            }
            got = UInt64(content.count)
            node.content = content
        } else {
            try objects.begin(entry: entry.path, size: size)
            while let block = try nextBlock(reader) {
                switch block {
                case .data(let d):
                    try objects.append(d)
                    got += UInt64(d.count)
                case .hole(let n):
                    try objects.hole(n)
                    got += n
                }
            }
            guard got == size else { throw fail(entry, "\(got) bytes of data for a file of \(size)") }
            try objects.end(node)
        }
        guard got == size else { throw fail(entry, "\(got) bytes of data for a file of \(size)") }
    }

    private func nextBlock(_ reader: TarReader) throws(Error) -> TarReader.Block? {
        do { return try reader.nextBlock() } catch { throw .tar(error) }
    }

    /// A separate inode with everything of `node` (a hard link in a scan).
    static func copy(_ node: Node, name: [UInt8]) -> Node {
        let n = Node(name: name, mode: node.mode)
        n.uid = node.uid
        n.gid = node.gid
        n.rdev = node.rdev
        n.size = node.size
        n.mtime = node.mtime
        n.payload = node.payload
        n.content = node.content
        n.digest = node.digest
        n.xattrList = node.xattrList
        return n
    }

    // MARK: Whiteouts

    private func whiteout(_ entry: TarReader.Entry, _ parts: [[UInt8]]) throws(Error) {
        let name = parts.last!
        let dirParts = Array(parts.dropLast())
        if name == Self.opaqueMarker {
            switch options.whiteouts {
            case .oci: opaques.append(dirParts)
            case .overlay:
                let dir = try directory(dirParts, entry, create: true)!
                if !options.skipXattrs && !options.userXattrsOnly {
                    do { try dir.setXattr(Self.opaqueXattr, [UInt8(ascii: "y")]) } catch { throw fail(entry, "\(error)") }
                }
            }
            return
        }
        if name.starts(with: Self.reservedPrefix) { return }   // other `.wh..wh.` metadata (aufs): not files
        let target = Array(name.dropFirst(Self.whiteoutPrefix.count))
        guard !target.isEmpty, target != [UInt8(ascii: ".")], target != [UInt8(ascii: "."), UInt8(ascii: ".")] else {
            throw fail(entry, "whiteout of an invalid name")
        }
        switch options.whiteouts {
        case .oci:
            whiteouts.append((dirParts, target))
        case .overlay:
            let dir = try directory(dirParts, entry, create: true)!
            if let existing = dir.child(named: target) {
                guard markers[ObjectIdentifier(existing)] != nil else { return }   // the layer's own entry wins
                dir.removeChild(named: target)
            }
            let node = Node(name: target, mode: FileType.characterDevice.rawValue)
            try setOwnerAndTime(node, entry)
            try insert(node, into: dir, entry)
            markers[ObjectIdentifier(node)] = node
        }
    }
}

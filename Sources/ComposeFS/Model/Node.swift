/// One entry of a composefs tree: a file, directory, symlink, device,
/// fifo, socket, or a hardlink entry pointing at another node.
///
/// Names, payloads, contents and xattrs are bytes. Children are always kept
/// sorted in unsigned byte order (FORMAT.md §5.1), so a tree built in any
/// order serialises the same way.
public final class Node {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case notDirectory(name: [UInt8])
        case invalidName(name: [UInt8])
        case nameTooLong(name: [UInt8])
        case exists(name: [UInt8])
        case xattrKeyLength(key: [UInt8])
        case xattrValueTooLarge(key: [UInt8], size: Int)
        case xattrBudget(key: [UInt8], total: Int, limit: Int)

        public var description: String {
            switch self {
            case .notDirectory(let n): "cannot add \"\(String(bytes: n))\": the parent is not a directory"
            case .invalidName(let n): "invalid file name \"\(String(bytes: n))\""
            case .nameTooLong(let n): "file name longer than 255 bytes: \"\(String(bytes: Array(n.prefix(40))))…\""
            case .exists(let n): "\"\(String(bytes: n))\" already exists in its directory"
            case .xattrKeyLength(let k): "xattr key must be 1 to 255 bytes: \"\(String(bytes: Array(k.prefix(40))))\""
            case .xattrValueTooLarge(let k, let s): "xattr \(String(bytes: k)) value of \(s) bytes exceeds 65535"
            case .xattrBudget(let k, let t, let l):
                "xattr \(String(bytes: Array(k.prefix(40)))) would make the xattrs of this file \(t) bytes, over the limit of \(l)"
            }
        }
    }

    /// Per-file xattr budget (§16) for dump input, directory scans and the
    /// overlay xattrs composefs adds.
    public static let xattrBudgetLimit = 32767
    /// The budget when loading an existing image.
    public static let loadedXattrBudgetLimit = 65535
    public static let maxNameLength = 255
    public static let maxXattrKeyLength = 255
    public static let maxXattrValueLength = 65535
    /// Longest symlink target or payload (exclusive: lengths are < 4096).
    public static let maxPathLength = 4096
    /// Longest inline content accepted from a dump (§14.5).
    public static let maxInlineContent = 5000

    /// The name in the parent directory; empty for the root.
    public let name: [UInt8]
    /// Full `st_mode` (only the low 16 bits reach the image).
    public var mode: UInt32
    public var nlink: UInt32 = 1
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    /// Linux `dev_t` truncated to 32 bits; used for character and block devices.
    public var rdev: UInt32 = 0
    public var size: UInt64 = 0
    public var mtime: Timespec = .zero
    /// Symlink target, or the object path of an external regular file.
    public var payload: [UInt8]?
    /// Inline data of a regular file (its size equals `size`).
    public var content: [UInt8]?
    /// Expected fs-verity SHA-256 digest of an external file (32 bytes).
    public var digest: [UInt8]?
    /// Set when this entry is a hardlink to another node of the same tree.
    /// Weak: the tree owns its nodes, and a link to an ancestor (a
    /// directory linked from inside itself, in a hostile dump or image)
    /// must not make a reference cycle.
    public weak var hardlinkTarget: Node? {
        didSet { isHardlink = hardlinkTarget != nil }
    }

    /// Whether this entry is a hardlink (stays true if its target is gone:
    /// writing such a tree is then an error, not a silent change).
    public private(set) var isHardlink = false

    public private(set) var children: [Node] = []
    public private(set) weak var parent: Node?

    public init(name: [UInt8] = [], mode: UInt32) {
        self.name = name
        self.mode = mode
    }

    /// A hardlink entry named `name` pointing at `target`.
    public convenience init(name: [UInt8], hardlinkTo target: Node, mode: UInt32 = 0) {
        self.init(name: name, mode: mode)
        self.hardlinkTarget = target
        self.isHardlink = true
    }

    public var fileType: FileType? { FileType(mode: mode) }
    public var isDirectory: Bool { mode & FileType.mask == FileType.directory.rawValue }

    // MARK: Children

    /// Index of the child named `name`, or the insertion point.
    func search(_ name: [UInt8]) -> (index: Int, found: Bool) {
        // Children usually arrive in order: check the end first.
        if let last = children.last {
            let c = compareBytes(last.name, name)
            if c < 0 { return (children.count, false) }
            if c == 0 { return (children.count - 1, true) }
        } else {
            return (0, false)
        }
        var lo = 0
        var hi = children.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let c = compareBytes(children[mid].name, name)
            if c == 0 { return (mid, true) }
            if c < 0 { lo = mid + 1 } else { hi = mid }
        }
        return (lo, false)
    }

    public func child(named name: [UInt8]) -> Node? {
        let (i, found) = search(name)
        return found ? children[i] : nil
    }

    /// Adds `child` at its sorted place. Names must be 1...255 bytes, hold
    /// no `/` or NUL, not be `.` or `..`, and be unique in this directory.
    public func addChild(_ child: Node) throws(Error) {
        guard isDirectory else { throw .notDirectory(name: child.name) }
        let n = child.name
        guard !n.isEmpty, !n.contains(0), !n.contains(UInt8(ascii: "/")),
            n != [UInt8(ascii: ".")], n != [UInt8(ascii: "."), UInt8(ascii: ".")]
        else { throw .invalidName(name: n) }
        guard n.count <= Node.maxNameLength else { throw .nameTooLong(name: n) }
        let (i, found) = search(n)
        guard !found else { throw .exists(name: n) }
        child.parent = self
        children.insert(child, at: i)
    }

    @discardableResult
    public func removeChild(named name: [UInt8]) -> Node? {
        let (i, found) = search(name)
        guard found else { return nil }
        let c = children.remove(at: i)
        c.parent = nil
        return c
    }

    /// Walks `/`-separated components from this node (empty components are
    /// skipped; `.` and `..` are ordinary names that are never found).
    public func lookup(path: some Collection<UInt8>) -> Node? {
        var node = self
        for component in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            guard let next = node.child(named: Array(component)) else { return nil }
            node = next
        }
        return node
    }

    /// `/a/b` from the root; `/` for the root itself.
    public var path: [UInt8] {
        var parts: [[UInt8]] = []
        var n: Node? = self
        while let cur = n, let p = cur.parent {
            parts.append(cur.name)
            n = p
        }
        if parts.isEmpty { return [UInt8(ascii: "/")] }
        var out: [UInt8] = []
        for part in parts.reversed() {
            out.append(UInt8(ascii: "/"))
            out.append(contentsOf: part)
        }
        return out
    }

    /// The node a chain of hardlink entries ends at (self if not a hardlink);
    /// nil if the chain loops or ends at a target that no longer exists.
    public var resolvedTarget: Node? {
        var n = self
        var steps = 0
        while n.isHardlink {
            guard let t = n.hardlinkTarget else { return nil }
            n = t
            steps += 1
            if n === self || steps > 1 << 20 { return nil }
        }
        return n
    }

    // MARK: Xattrs

    /// The xattrs in the order they were set, with their §16 budget.
    public internal(set) var xattrList = XattrList()
    public var xattrs: [Xattr] { xattrList.entries }

    public func xattr(_ key: [UInt8]) -> [UInt8]? { xattrList.value(for: key) }

    /// Sets (or replaces) an xattr with the budget accounting of §16.
    public func setXattr(_ key: [UInt8], _ value: [UInt8], limit: Int = Node.xattrBudgetLimit) throws(Error) {
        try xattrList.set(key, value, limit: limit)
    }

    @discardableResult
    public func removeXattr(_ key: [UInt8]) -> Bool { xattrList.remove(key) }
}

import Glibc

/// Parses composefs-dump(5) text into a tree (FORMAT.md §14), byte by byte.
///
/// Lenient by default, as the reference is; `strict` (the tools turn it on
/// when `CFS_PARSE_STRICT` is set) adds the checks of §14.4–§14.5.
public enum DumpParser {
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        /// 1-based line number (0 when the problem is the input as a whole).
        public var line: Int
        public var reason: Reason

        public var description: String { line > 0 ? "line \(line): \(reason)" : "\(reason)" }
    }

    /// The rule a line broke; descriptions are the reference's messages.
    public enum Reason: Swift.Error, CustomStringConvertible, Equatable, Sendable {
        case noFiles
        case emptyPath
        case embeddedNUL(position: Int)
        case missingTrailingNewline
        case escape(DumpEscaping.Error)
        case invalidInteger([UInt8])
        case invalidMode(UInt32)
        case rootNotDirectory
        case multipleRoots
        case rootMissing
        case parentMissing([UInt8])
        case parentNotDirectory([UInt8])
        case dotName([UInt8])
        case cannotAddChild([UInt8], Node.Error)
        case directoryHardlink
        case contentSizeMismatch(content: Int, size: UInt64)
        case nonZeroDevnum
        case invalidSymlink
        case symlinkSizeMismatch(target: Int, size: UInt64)
        case symlinkContent
        case invalidPayload
        case inlineContentTooLarge(Int)
        case invalidDigest([UInt8])
        case tooManyXattrs
        case missingEqual
        case cannotSetXattr(Node.Error)
        case noHardlinkTarget
        case hardlinkTargetMissing([UInt8])
        case selfHardlink([UInt8])

        public var description: String {
            func s(_ b: [UInt8]) -> String { String(bytes: b) }
            switch self {
            case .noFiles: return "No files in dump file"
            case .emptyPath: return "Invalid empty path"
            case .embeddedNUL(let p): return "Invalid embedded NUL character at position \(p)"
            case .missingTrailingNewline: return "Missing trailing newline"
            case .escape(let e): return e.description
            case .invalidInteger(let t): return "Invalid integer \(s(t))"
            case .invalidMode(let m): return "Invalid mode \(String(m, radix: 8))"
            case .rootNotDirectory: return "Root must be a directory"
            case .multipleRoots: return "Can't have multiple roots"
            case .rootMissing: return "Root node not present"
            case .parentMissing(let p): return "Parent directory missing for \(s(p))"
            case .parentNotDirectory(let p): return "Parent must be a directory for \(s(p))"
            case .dotName(let p): return "Invalid . or .. in path: \(s(p))"
            case .cannotAddChild(let p, let e): return "Can't add child: \(s(p)): \(e)"
            case .directoryHardlink: return "Directories can't be hardlinked"
            case .contentSizeMismatch(let c, let sz): return "Invalid content size \(c), must match size \(Int64(bitPattern: sz))"
            case .nonZeroDevnum: return "Non-zero devnum on non-device"
            case .invalidSymlink: return "Invalid symlink"
            case .symlinkSizeMismatch(let t, let sz): return "Invalid symlink size \(t), must match size \(Int64(bitPattern: sz))"
            case .symlinkContent: return "Symlink cannot have content"
            case .invalidPayload: return "Invalid payload"
            case .inlineContentTooLarge(let n): return "Inline content size \(n) exceeds maximum \(Node.maxInlineContent)"
            case .invalidDigest(let d): return "Invalid digest \(s(d)): must be 64 hex digits"
            case .tooManyXattrs: return "Too many xattrs"
            case .missingEqual: return "Missing = in xattr"
            case .cannotSetXattr(let e): return "Can't set xattr: \(e)"
            case .noHardlinkTarget: return "No target path for the hardlink"
            case .hardlinkTargetMissing(let p): return "No target at \(s(p)) for hardlink"
            case .selfHardlink(let p): return "Self-referential hardlink \(s(p))"
            }
        }
    }

    /// Longest xattr text after the 11 fixed fields.
    static let maxXattrText = 65535

    public static func parse(_ data: [UInt8], strict: Bool = false) throws(Error) -> Node {
        var parser = Incremental(strict: strict)
        var failure: Error? = nil
        data.withUnsafeBytes { raw in
            do throws(Error) { try parser.feed(raw) } catch { failure = error }
        }
        if let failure { throw failure }
        return try parser.finish()
    }

    /// Parses input that arrives in pieces (a file or pipe read in chunks),
    /// so memory follows the tree, not the size of the text.
    public struct Incremental {
        var state: State
        var partial: [UInt8] = []
        var line = 0

        public init(strict: Bool = false) { state = State(strict: strict) }

        public mutating func feed(_ chunk: UnsafeRawBufferPointer) throws(Error) {
            guard let base = chunk.baseAddress?.assumingMemoryBound(to: UInt8.self), chunk.count > 0 else { return }
            let buf = UnsafeBufferPointer(start: base, count: chunk.count)
            var start = 0
            while start < buf.count {
                guard let p = memchr(base + start, 0x0A, buf.count - start) else {
                    partial.append(contentsOf: buf[start...])
                    return
                }
                let end = base.distance(to: p.assumingMemoryBound(to: UInt8.self))
                if partial.isEmpty {
                    try parseLine(UnsafeBufferPointer(rebasing: buf[start..<end]))
                } else {
                    partial.append(contentsOf: buf[start..<end])
                    let whole = partial
                    partial.removeAll(keepingCapacity: true)
                    try whole.withUnsafeBufferPointer { (b: UnsafeBufferPointer<UInt8>) throws(Error) in try parseLine(b) }
                }
                start = end + 1
            }
        }

        mutating func parseLine(_ text: UnsafeBufferPointer<UInt8>) throws(Error) {
            line += 1
            state.line = line
            do throws(Reason) {
                try state.parseLine(text)
            } catch {
                throw Error(line: line, reason: error)
            }
        }

        /// Ends the input: the last line may lack its newline (an error in
        /// strict mode); hardlinks are resolved; the root is returned.
        public mutating func finish() throws(Error) -> Node {
            if !partial.isEmpty {
                if state.strict { throw Error(line: line + 1, reason: .missingTrailingNewline) }
                let whole = partial
                partial = []
                try whole.withUnsafeBufferPointer { (b: UnsafeBufferPointer<UInt8>) throws(Error) in try parseLine(b) }
            }
            guard let root = state.root else { throw Error(line: 0, reason: .noFiles) }
            // Hardlinks are resolved once every path exists, last line first.
            for fix in state.hardlinks.reversed() {
                guard let target = fix.target else { throw Error(line: fix.line, reason: .noHardlinkTarget) }
                guard let node = root.lookup(path: target) else {
                    throw Error(line: fix.line, reason: .hardlinkTargetMissing(target))
                }
                guard node !== fix.node else { throw Error(line: fix.line, reason: .selfHardlink(target)) }
                fix.node.hardlinkTarget = node
            }
            return root
        }
    }

    struct State {
        let strict: Bool
        var root: Node?
        var line = 1
        var hardlinks: [(node: Node, target: [UInt8]?, line: Int)] = []
        /// The directory of the previous line: consecutive entries of one
        /// directory skip the walk from the root.
        var lastParent: Node?
        var lastParentPath: [UInt8] = []

        init(strict: Bool) { self.strict = strict }

        mutating func parseLine(_ text: UnsafeBufferPointer<UInt8>) throws(Reason) {
            if let nul = text.firstIndex(of: 0) { throw .embeddedNUL(position: nul) }
            guard !text.isEmpty else { throw .emptyPath }
            // The 11 fixed fields (missing trailing ones read as empty, as
            // in the reference), then the xattr text.
            var fields: [Slice<UnsafeBufferPointer<UInt8>>] = []
            fields.reserveCapacity(11)
            var pos = 0
            var xattrText: Slice<UnsafeBufferPointer<UInt8>>? = nil
            while fields.count < 11 {
                guard pos <= text.count else {
                    fields.append(text[text.count...])
                    continue
                }
                var e = pos
                while e < text.count && text[e] != 0x20 { e += 1 }
                fields.append(text[pos..<e])
                pos = e + 1
            }
            if pos <= text.count { xattrText = text[pos...] }

            let path = try unescape(fields[0]).cutAtNUL()
            guard !path.isEmpty else { throw .emptyPath }

            var modeField = fields[2]
            let isHardlink = modeField.first == UInt8(ascii: "@")
            if isHardlink { modeField = modeField.dropFirst() }
            let mode = UInt32(truncatingIfNeeded: try integer(modeField, base: 8))
            guard FileType(mode: mode) != nil else { throw .invalidMode(mode) }

            let node = try insert(path: path, mode: mode)

            if isHardlink {
                guard !node.isDirectory else { throw .directoryHardlink }
                hardlinks.append((node, try optional(fields[8])?.cutAtNUL(), line))
                return
            }

            let size = try integer(fields[1])
            let nlink = try integer(fields[3])
            let uid = try integer(fields[4])
            // The reference checks GID and RDEV only when UID is 0 (§14.5 step 6).
            let gid = uid == 0 ? try integer(fields[5]) : (try? integer(fields[5])) ?? 0
            let rdev = uid == 0 ? try integer(fields[6]) : (try? integer(fields[6])) ?? 0
            let mtimeField = fields[7]
            let dot = mtimeField.firstIndex(of: UInt8(ascii: "."))
            let seconds = try integer(mtimeField[mtimeField.startIndex..<(dot ?? mtimeField.endIndex)])
            let nanos = try integer(dot.map { mtimeField[($0 + 1)...] } ?? mtimeField[mtimeField.endIndex...])

            let payload = try optional(fields[8])?.cutAtNUL()
            let content = try optional(fields[9])
            // An empty digest field (a short line) means no digest.
            let digestText = try optional(fields[10])?.cutAtNUL().nilIfEmpty
            if let content, UInt64(content.count) != size {
                throw .contentSizeMismatch(content: content.count, size: size)
            }

            let type = FileType(mode: mode)!
            if type != .symlink { node.size = size }
            node.nlink = UInt32(truncatingIfNeeded: nlink)
            node.uid = UInt32(truncatingIfNeeded: uid)
            node.gid = UInt32(truncatingIfNeeded: gid)
            if type == .characterDevice || type == .blockDevice {
                node.rdev = UInt32(truncatingIfNeeded: rdev)
            } else if strict && rdev != 0 {
                throw .nonZeroDevnum
            }
            node.mtime = Timespec(seconds: Int64(bitPattern: seconds), nanoseconds: UInt32(truncatingIfNeeded: nanos))

            if type == .symlink {
                guard let target = payload, !target.isEmpty, target.count < Node.maxPathLength else {
                    throw .invalidSymlink
                }
                node.payload = target
                node.size = UInt64(target.count)
                if strict {
                    guard size == UInt64(target.count) else { throw .symlinkSizeMismatch(target: target.count, size: size) }
                    guard content?.isEmpty ?? true else { throw .symlinkContent }
                }
            } else {
                if let payload, payload.count >= Node.maxPathLength { throw .invalidPayload }
                node.payload = payload
                if let content, content.count > Node.maxInlineContent {
                    throw .inlineContentTooLarge(content.count)
                }
                node.content = content?.isEmpty == false ? content : nil
            }

            if let digestText {
                guard digestText.count == 64, let digest = [UInt8](hexDigits: digestText) else {
                    throw .invalidDigest(digestText)
                }
                node.digest = digest
            }

            guard let xattrText, !xattrText.isEmpty else { return }
            guard xattrText.count <= DumpParser.maxXattrText else { throw .tooManyXattrs }
            var x = xattrText.startIndex
            let end = xattrText.endIndex
            while x < end {
                var e = x
                while e < end && text[e] != 0x20 { e += 1 }
                let piece = text[x..<e]
                guard let eq = piece.firstIndex(of: UInt8(ascii: "=")) else { throw .missingEqual }
                let key = try unescape(text[x..<eq]).cutAtNUL()
                let value = try unescape(text[(eq + 1)..<e])
                do {
                    try node.setXattr(key, value)
                } catch {
                    throw .cannotSetXattr(error)
                }
                x = e + 1
            }
        }

        /// Creates the node for `path` under its (existing) parent (§14.5 step 4).
        mutating func insert(path: [UInt8], mode: UInt32) throws(Reason) -> Node {
            let isDir = mode & FileType.mask == FileType.directory.rawValue
            if path == [UInt8(ascii: "/")] {
                guard isDir else { throw .rootNotDirectory }
                guard root == nil else { throw .multipleRoots }
                let r = Node(mode: mode)
                root = r
                return r
            }
            guard let root else { throw .rootMissing }
            let slash = UInt8(ascii: "/")
            var start = 0
            while start < path.count && path[start] == slash { start += 1 }
            let lastSlash = path.lastIndex(of: slash)
            let nameStart = lastSlash.map { $0 + 1 } ?? 0
            let name = Array(path[nameStart...])
            var parent = root
            let dirPart = lastSlash.map { path[start..<max(start, $0)] } ?? path[start..<start]
            if let lp = lastParent, lp.isDirectory, dirPart.elementsEqual(lastParentPath) {
                parent = lp
            } else {
                for component in dirPart.split(separator: slash, omittingEmptySubsequences: true) {
                    guard let next = parent.child(named: Array(component)) else { throw .parentMissing(path) }
                    parent = next
                }
                guard parent.isDirectory else { throw .parentNotDirectory(path) }
                lastParent = parent
                lastParentPath = Array(dirPart)
            }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                throw .dotName(path)
            }
            let node = Node(name: name, mode: mode)
            do {
                try parent.addChild(node)
            } catch {
                throw .cannotAddChild(path, error)
            }
            return node
        }

        func unescape(_ field: Slice<UnsafeBufferPointer<UInt8>>) throws(Reason) -> [UInt8] {
            do {
                return try DumpEscaping.unescape(ArraySlice(field))
            } catch {
                throw .escape(error)
            }
        }

        /// `-` means absent.
        func optional(_ field: Slice<UnsafeBufferPointer<UInt8>>) throws(Reason) -> [UInt8]? {
            if field.count == 1 && field.first == UInt8(ascii: "-") { return nil }
            return try unescape(field)
        }

        func integer(_ field: Slice<UnsafeBufferPointer<UInt8>>, base: UInt64 = 10) throws(Reason) -> UInt64 {
            guard let v = DumpParser.strtoull(field, base: base) else { throw .invalidInteger(Array(field)) }
            return v
        }
    }

    /// C `strtoull` on a whole field (§14.3): leading white space, an
    /// optional sign (a negative value wraps), at least one digit, nothing
    /// after; an out-of-range value clamps to `UInt64.max`.
    static func strtoull(_ field: some Collection<UInt8>, base: UInt64) -> UInt64? {
        var i = field.startIndex
        let end = field.endIndex
        while i < end, [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D].contains(field[i]) { i = field.index(after: i) }
        var negative = false
        if i < end, field[i] == UInt8(ascii: "+") || field[i] == UInt8(ascii: "-") {
            negative = field[i] == UInt8(ascii: "-")
            i = field.index(after: i)
        }
        var value: UInt64 = 0
        var digits = 0
        var overflow = false
        while i < end {
            let c = field[i]
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9"), UInt64(c - UInt8(ascii: "0")) < base else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: base)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            if o1 || o2 { overflow = true }
            value = a
            digits += 1
            i = field.index(after: i)
        }
        guard digits > 0 else { return nil }
        if overflow { return UInt64.max }
        return negative ? 0 &- value : value
    }
}

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

        /// One line, without its newline (§14.4, §14.5). The fields are
        /// byte ranges of the line; each is decoded only when needed, and
        /// the checks run in the reference's order: path, mode, the place
        /// in the tree, attributes, payload/content/digest text, their
        /// consistency, the digest, the xattrs.
        mutating func parseLine(_ text: UnsafeBufferPointer<UInt8>) throws(Reason) {
            guard let base = text.baseAddress, !text.isEmpty else { throw .emptyPath }
            if let nul = memchr(base, 0, text.count) {
                throw .embeddedNUL(position: base.distance(to: nul.assumingMemoryBound(to: UInt8.self)))
            }
            let line = Line(base: base, count: text.count)
            let path = try line.decoded(0).cutAtNUL()
            guard !path.isEmpty else { throw .emptyPath }
            let (mode, type, isHardlink) = try Self.mode(line)
            let node = try insert(path: path, mode: mode)
            if isHardlink {
                guard !node.isDirectory else { throw .directoryHardlink }
                hardlinks.append((node, try line.optional(8)?.cutAtNUL(), self.line))
                return
            }
            let attributes = try Attributes(line)
            let data = try DataFields(line)
            if let content = data.content, UInt64(content.count) != attributes.size {
                throw .contentSizeMismatch(content: content.count, size: attributes.size)
            }
            try apply(attributes, to: node, type: type)
            try apply(data, size: attributes.size, to: node, type: type)
            node.digest = try data.digest()
            try Self.setXattrs(line, on: node)
        }

        /// The mode field: octal, `@` first for a hardlink entry.
        static func mode(_ line: Line) throws(Reason) -> (UInt32, FileType, isHardlink: Bool) {
            var field = line.field(2)
            let isHardlink = field.first == UInt8(ascii: "@")
            if isHardlink { field = field.dropFirst() }
            let mode = UInt32(truncatingIfNeeded: try integer(field, base: 8))
            guard let type = FileType(mode: mode) else { throw .invalidMode(mode) }
            return (mode, type, isHardlink)
        }

        /// SIZE, NLINK, UID, GID, RDEV, MTIME.
        struct Attributes {
            var size, nlink, uid, gid, rdev, seconds, nanoseconds: UInt64

            init(_ line: Line) throws(Reason) {
                size = try integer(line.field(1))
                nlink = try integer(line.field(3))
                uid = try integer(line.field(4))
                // The reference checks GID and RDEV only when UID is 0 (§14.5 step 6).
                gid = uid == 0 ? try integer(line.field(5)) : (try? integer(line.field(5))) ?? 0
                rdev = uid == 0 ? try integer(line.field(6)) : (try? integer(line.field(6))) ?? 0
                let mtime = line.field(7)
                let dot = mtime.firstIndex(of: UInt8(ascii: "."))
                seconds = try integer(mtime[mtime.startIndex..<(dot ?? mtime.endIndex)])
                nanoseconds = try integer(dot.map { mtime[($0 + 1)...] } ?? mtime[mtime.endIndex...])
            }
        }

        /// PAYLOAD, CONTENT and DIGEST, unescaped (so an escape error shows
        /// here); a plain digest stays a range of the line until checked.
        struct DataFields {
            var payload: [UInt8]?
            var content: [UInt8]?
            var digestField: Slice<UnsafeBufferPointer<UInt8>>
            var digestText: [UInt8]?
            var digestIsPlain: Bool

            init(_ line: Line) throws(Reason) {
                payload = try line.optional(8)?.cutAtNUL()
                content = try line.optional(9)
                digestField = line.field(10)
                digestIsPlain = line.find(UInt8(ascii: "\\"), from: digestField.startIndex, end: digestField.endIndex) == nil
                if !digestIsPlain { digestText = try line.optional(10)?.cutAtNUL() }
            }

            /// The digest: 64 hex digits; an empty field (a short line) or
            /// `-` means none.
            func digest() throws(Reason) -> [UInt8]? {
                if digestIsPlain {
                    if digestField.isEmpty || (digestField.count == 1 && digestField.first == UInt8(ascii: "-")) { return nil }
                    guard let digest = State.hexDigest(digestField) else { throw .invalidDigest(Array(digestField)) }
                    return digest
                }
                guard let digestText, !digestText.isEmpty else { return nil }
                guard digestText.count == 64, let digest = [UInt8](hexDigits: digestText) else {
                    throw .invalidDigest(digestText)
                }
                return digest
            }
        }

        func apply(_ a: Attributes, to node: Node, type: FileType) throws(Reason) {
            if type != .symlink { node.size = a.size }
            node.nlink = UInt32(truncatingIfNeeded: a.nlink)
            node.uid = UInt32(truncatingIfNeeded: a.uid)
            node.gid = UInt32(truncatingIfNeeded: a.gid)
            if type == .characterDevice || type == .blockDevice {
                node.rdev = UInt32(truncatingIfNeeded: a.rdev)
            } else if strict && a.rdev != 0 {
                throw .nonZeroDevnum
            }
            node.mtime = Timespec(seconds: Int64(bitPattern: a.seconds), nanoseconds: UInt32(truncatingIfNeeded: a.nanoseconds))
        }

        /// A symlink's target, or a file's payload and inline content.
        func apply(_ d: DataFields, size: UInt64, to node: Node, type: FileType) throws(Reason) {
            if type == .symlink {
                guard let target = d.payload, !target.isEmpty, target.count < Node.maxPathLength else {
                    throw .invalidSymlink
                }
                node.payload = target
                node.size = UInt64(target.count)
                if strict {
                    guard size == UInt64(target.count) else { throw .symlinkSizeMismatch(target: target.count, size: size) }
                    guard d.content?.isEmpty ?? true else { throw .symlinkContent }
                }
                return
            }
            if let payload = d.payload, payload.count >= Node.maxPathLength { throw .invalidPayload }
            node.payload = d.payload
            if let content = d.content, content.count > Node.maxInlineContent {
                throw .inlineContentTooLarge(content.count)
            }
            node.content = d.content?.isEmpty == false ? d.content : nil
        }

        /// KEY=VALUE pairs after the fixed fields, separated by spaces.
        static func setXattrs(_ line: Line, on node: Node) throws(Reason) {
            guard let text = line.rest, !text.isEmpty else { return }
            guard text.count <= DumpParser.maxXattrText else { throw .tooManyXattrs }
            var x = text.startIndex
            let end = text.endIndex
            while x < end {
                let e = line.nextSpace(from: x, end: end)
                guard let eq = line.find(UInt8(ascii: "="), from: x, end: e) else { throw .missingEqual }
                let key = try line.decoded(x..<eq).cutAtNUL()
                let value = try line.decoded((eq + 1)..<e)
                do {
                    try node.setXattr(key, value)
                } catch {
                    throw .cannotSetXattr(error)
                }
                x = e + 1
            }
        }

        /// 64 hex digits as 32 bytes; nil for anything else.
        static func hexDigest(_ text: Slice<UnsafeBufferPointer<UInt8>>) -> [UInt8]? {
            guard text.count == 64 else { return nil }
            var valid = true
            let digest = [UInt8](unsafeUninitializedCapacity: 32) { out, n in
                var i = text.startIndex
                for k in 0..<32 {
                    guard let h = hexValue(text[i]), let l = hexValue(text[i + 1]) else {
                        valid = false
                        break
                    }
                    out[k] = h << 4 | l
                    i += 2
                }
                n = valid ? 32 : 0
            }
            return valid ? digest : nil
        }

        /// Creates the node for `path` under its (existing) parent (§14.5 step 4).
        mutating func insert(path: [UInt8], mode: UInt32) throws(Reason) -> Node {
            let isDir = mode & FileType.mask == FileType.directory.rawValue
            let slash = UInt8(ascii: "/")
            if path.count == 1 && path[0] == slash {
                guard isDir else { throw .rootNotDirectory }
                guard root == nil else { throw .multipleRoots }
                let r = Node(mode: mode)
                root = r
                return r
            }
            guard let root else { throw .rootMissing }
            return try path.withUnsafeBufferPointer { (p: UnsafeBufferPointer<UInt8>) throws(Reason) -> Node in
                var start = 0
                while start < p.count && p[start] == slash { start += 1 }
                var lastSlash = p.count - 1
                while lastSlash >= 0 && p[lastSlash] != slash { lastSlash -= 1 }
                let nameStart = lastSlash + 1
                let dirEnd = max(start, lastSlash)
                let dirCount = lastSlash >= 0 ? dirEnd - start : 0
                var parent = root
                if let lp = lastParent, lp.isDirectory, dirCount == lastParentPath.count,
                    dirCount == 0
                        || lastParentPath.withUnsafeBufferPointer({ memcmp($0.baseAddress!, p.baseAddress! + start, dirCount) == 0 })
                {
                    parent = lp
                } else {
                    var c = start
                    let stop = start + dirCount
                    while c < stop {
                        var e = c
                        while e < stop && p[e] != slash { e += 1 }
                        if e > c {
                            guard let next = parent.child(named: Array(UnsafeBufferPointer(rebasing: p[c..<e]))) else {
                                throw .parentMissing(path)
                            }
                            parent = next
                        }
                        c = e + 1
                    }
                    guard parent.isDirectory else { throw .parentNotDirectory(path) }
                    lastParent = parent
                    lastParentPath = Array(UnsafeBufferPointer(rebasing: p[start..<stop]))
                }
                let nameCount = p.count - nameStart
                let dot = UInt8(ascii: ".")
                if (nameCount == 1 && p[nameStart] == dot) || (nameCount == 2 && p[nameStart] == dot && p[nameStart + 1] == dot) {
                    throw .dotName(path)
                }
                let node = Node(name: Array(UnsafeBufferPointer(rebasing: p[nameStart...])), mode: mode)
                do throws(Node.Error) {
                    try parent.addChild(node)
                } catch {
                    throw .cannotAddChild(path, error)
                }
                return node
            }
        }

        static func integer(_ field: Slice<UnsafeBufferPointer<UInt8>>, base: UInt64 = 10) throws(Reason) -> UInt64 {
            guard let v = DumpParser.strtoull(field, base: base) else { throw .invalidInteger(Array(field)) }
            return v
        }
    }

    /// One line's fields as byte ranges: the 11 fixed fields (missing
    /// trailing ones read as empty, as in the reference) split on single
    /// spaces, then the xattr text.
    struct Line {
        let text: UnsafeBufferPointer<UInt8>
        var bounds = InlineArray<22, Int>(repeating: 0)
        /// The text after the 11th field's space; nil when there is none.
        var rest: Slice<UnsafeBufferPointer<UInt8>>?

        init(base: UnsafePointer<UInt8>, count: Int) {
            text = UnsafeBufferPointer(start: base, count: count)
            var pos = 0
            for f in 0..<11 {
                if pos > count {
                    bounds[2 * f] = count
                    bounds[2 * f + 1] = count
                    continue
                }
                let e = nextSpace(from: pos, end: count)
                bounds[2 * f] = pos
                bounds[2 * f + 1] = e
                pos = e + 1
            }
            rest = pos <= count ? text[pos...] : nil
        }

        func field(_ f: Int) -> Slice<UnsafeBufferPointer<UInt8>> { text[bounds[2 * f]..<bounds[2 * f + 1]] }

        func nextSpace(from i: Int, end: Int) -> Int { find(0x20, from: i, end: end) ?? end }

        func find(_ byte: UInt8, from i: Int, end: Int) -> Int? {
            guard i < end, let p = memchr(text.baseAddress! + i, Int32(byte), end - i) else { return nil }
            return text.baseAddress!.distance(to: p.assumingMemoryBound(to: UInt8.self))
        }

        /// A field unescaped (§14.2); the bytes as they are when there is
        /// no backslash.
        func decoded(_ range: Range<Int>) throws(Reason) -> [UInt8] {
            if find(UInt8(ascii: "\\"), from: range.lowerBound, end: range.upperBound) == nil {
                return Array(UnsafeBufferPointer(rebasing: text[range]))
            }
            do {
                return try DumpEscaping.unescape(ArraySlice(text[range]))
            } catch {
                throw .escape(error)
            }
        }

        func decoded(_ f: Int) throws(Reason) -> [UInt8] { try decoded(bounds[2 * f]..<bounds[2 * f + 1]) }

        /// `-` means absent.
        func optional(_ f: Int) throws(Reason) -> [UInt8]? {
            let field = field(f)
            if field.count == 1 && field.first == UInt8(ascii: "-") { return nil }
            return try decoded(f)
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

/// The members of an uncompressed tar archive holding an image (what
/// `skopeo copy … oci-archive:` and `docker save`/`podman save` write),
/// found by reading its headers only: each member is a byte range of the
/// archive file, read in place, never extracted.
///
/// Hostile archives get an error naming the member or offset: a header
/// with a bad checksum, a size past the end of the file, a name with a
/// `..` component, a member given twice, links that leave the archive or
/// loop.
public struct ArchiveIndex: Sendable {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case read(path: FilePath, errno: Errno)
        case header(path: FilePath, offset: Int64, message: String)
        case truncated(path: FilePath, member: [UInt8], size: Int64)
        case unsafeName(path: FilePath, member: [UInt8])
        case duplicate(path: FilePath, member: [UInt8])
        case link(path: FilePath, member: [UInt8], message: String)

        public var description: String {
            switch self {
            case .read(let p, let e): "cannot read '\(p)': \(e)"
            case .header(let p, let o, let m): "\(p): tar header at offset \(o): \(m)"
            case .truncated(let p, let m, let size):
                "\(p): member '\(String(bytes: m))' (\(size) bytes) runs past the end of the archive"
            case .unsafeName(let p, let m): "\(p): member name '\(String(bytes: m))' leaves the archive (a '..' component)"
            case .duplicate(let p, let m): "\(p): member '\(String(bytes: m))' appears twice"
            case .link(let p, let m, let message): "\(p): member '\(String(bytes: m))': \(message)"
            }
        }
    }

    /// A member's data: `size` bytes at `offset` of the archive.
    public struct Member: Equatable, Sendable {
        public var offset: Int64
        public var size: Int64
    }

    public let path: FilePath
    /// Regular files by normalized name (`a/b`, no `./`).
    private(set) var files: [[UInt8]: Member] = [:]
    /// Links by normalized name: target, and whether symbolic.
    private(set) var links: [[UInt8]: (target: [UInt8], symbolic: Bool)] = [:]

    /// Every normalized member name (files and links), for listings.
    public var names: [[UInt8]] { Array(files.keys) + Array(links.keys) }

    /// Reads the headers of the archive `fd` (`size` bytes).
    public init(fd: FileDescriptor, size: Int64, path: FilePath) throws(Error) {
        try self.init(size: size, path: path) { (offset, count) throws(Errno) in try fd.read(count: count, at: Int(offset)) }
    }

    /// Reads the headers of an archive of `size` bytes through `read`
    /// (up to `count` bytes at an offset; fewer only at the end).
    public init(size: Int64, path: FilePath, read: (Int64, Int) throws(Errno) -> [UInt8]) throws(Error) {
        self.path = path
        var offset: Int64 = 0
        var header = [UInt8](repeating: 0, count: 512)
        var pending = Extensions()
        var seen = Set<[UInt8]>()
        while offset + 512 <= size {
            try Self.read(read, into: &header, at: offset, path: path)
            if header.allSatisfy({ $0 == 0 }) { break }   // the end-of-archive blocks
            let member = try Self.extent(header, at: offset, archiveSize: size, pending: pending, path: path)
            let next = member.offset + ((member.size + 511) / 512) * 512
            defer { offset = next }
            if try pending.take(header[156], member, headerOffset: offset, read: read, path: path) { continue }
            let (raw, linkTarget) = Self.names(header, pending)
            pending = Extensions()
            try record(raw, type: header[156], link: linkTarget, member: member, seen: &seen)
        }
    }

    /// Names and size that pax (`x`) and GNU (`L`, `K`) headers give the
    /// member after them.
    struct Extensions {
        var path: [UInt8]? = nil
        var link: [UInt8]? = nil
        var size: Int64? = nil

        /// Takes in the extension header of `type` whose data is `member`;
        /// false for any other type (a member).
        mutating func take(
            _ type: UInt8, _ member: Member, headerOffset: Int64, read: (Int64, Int) throws(Errno) -> [UInt8], path: FilePath
        ) throws(Error) -> Bool {
            switch type {
            case UInt8(ascii: "x"):
                guard member.size <= 1 << 20 else { throw .header(path: path, offset: headerOffset, message: "pax header over 1 MiB") }
                var data = [UInt8](repeating: 0, count: Int(member.size))
                try ArchiveIndex.read(read, into: &data, at: member.offset, path: path)
                for (key, value) in try ArchiveIndex.paxRecords(data, path: path, offset: headerOffset) {
                    switch key {
                    case Array("path".utf8): self.path = value
                    case Array("linkpath".utf8): link = value
                    case Array("size".utf8):
                        guard let v = ArchiveIndex.decimal(value) else {
                            throw .header(path: path, offset: headerOffset, message: "bad pax size")
                        }
                        size = v
                    default: break
                    }
                }
                return true
            case UInt8(ascii: "g"):
                return true   // global pax headers: nothing a blob's name needs
            case UInt8(ascii: "L"), UInt8(ascii: "K"):
                guard member.size <= 1 << 16 else { throw .header(path: path, offset: headerOffset, message: "long name over 64 KiB") }
                var data = [UInt8](repeating: 0, count: Int(member.size))
                try ArchiveIndex.read(read, into: &data, at: member.offset, path: path)
                let name = Array(data.prefix { $0 != 0 })
                if type == UInt8(ascii: "L") { self.path = self.path ?? name } else { link = link ?? name }
                return true
            default:
                return false
            }
        }
    }

    /// Where the data of the member whose header is at `offset` lies
    /// (its size from a pax header where one came first).
    static func extent(_ header: [UInt8], at offset: Int64, archiveSize: Int64, pending: Extensions, path: FilePath)
        throws(Error) -> Member
    {
        guard Self.checksumMatches(header) else { throw .header(path: path, offset: offset, message: "bad checksum") }
        guard var memberSize = Self.number(header[124..<136]) else {
            throw .header(path: path, offset: offset, message: "bad size field")
        }
        if let s = pending.size { memberSize = s }
        let dataOffset = offset + 512
        let (_, overflow) = memberSize.addingReportingOverflow(511)
        guard !overflow, memberSize >= 0, dataOffset + memberSize <= archiveSize else {
            throw .truncated(path: path, member: Self.field(header[0..<100]), size: memberSize)
        }
        return Member(offset: dataOffset, size: memberSize)
    }

    /// A member's name (with a ustar prefix) and link target, extended
    /// ones first.
    static func names(_ header: [UInt8], _ pending: Extensions) -> (name: [UInt8], link: [UInt8]) {
        var raw = pending.path ?? Self.field(header[0..<100])
        if pending.path == nil && Array(header[257..<263]) == Array("ustar\0".utf8) {
            let prefix = Self.field(header[345..<500])
            if !prefix.isEmpty { raw = prefix + [UInt8(ascii: "/")] + raw }
        }
        return (raw, pending.link ?? Self.field(header[157..<257]))
    }

    /// Records a regular file or a link; directories and other types are
    /// not blobs.
    mutating func record(_ raw: [UInt8], type: UInt8, link: [UInt8], member: Member, seen: inout Set<[UInt8]>) throws(Error) {
        guard let name = Self.normalize(raw) else { throw .unsafeName(path: path, member: raw) }
        if name.isEmpty { return }   // "./": the archive's root
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "1"), UInt8(ascii: "2"):
            guard seen.insert(name).inserted else { throw .duplicate(path: path, member: name) }
            if type == UInt8(ascii: "1") || type == UInt8(ascii: "2") {
                links[name] = (link, type == UInt8(ascii: "2"))
            } else {
                files[name] = member
            }
        default:
            return
        }
    }

    /// The file member `name` (a relative path), following links inside
    /// the archive; nil when there is none.
    public func member(_ name: [UInt8]) throws(Error) -> Member? {
        guard var current = Self.normalize(name) else { throw .unsafeName(path: path, member: name) }
        for _ in 0..<16 {
            if let m = files[current] { return m }
            guard let link = links[current] else { return nil }
            var target = link.target
            if link.symbolic && target.first != UInt8(ascii: "/") {
                // Relative to the link's own directory.
                let dir = current.lastIndex(of: UInt8(ascii: "/")).map { Array(current[..<$0]) } ?? []
                target = dir.isEmpty ? target : dir + [UInt8(ascii: "/")] + target
            }
            guard let resolved = Self.resolve(target) else {
                throw .link(path: path, member: current, message: "its target '\(String(bytes: link.target))' leaves the archive")
            }
            current = resolved
        }
        throw .link(path: path, member: name, message: "too many links (a loop?)")
    }

    // MARK: Parsing

    static func read(
        _ read: (Int64, Int) throws(Errno) -> [UInt8], into buffer: inout [UInt8], at offset: Int64, path: FilePath
    ) throws(Error) {
        let got: [UInt8]
        do { got = try read(offset, buffer.count) } catch { throw .read(path: path, errno: error) }
        guard got.count == buffer.count else { throw .header(path: path, offset: offset, message: "the archive ends inside a member") }
        buffer = got
    }

    /// A NUL-terminated header field.
    static func field(_ bytes: ArraySlice<UInt8>) -> [UInt8] { Array(bytes.prefix { $0 != 0 }) }

    /// An octal field (spaces and NULs around it) or GNU base-256.
    static func number(_ bytes: ArraySlice<UInt8>) -> Int64? {
        guard let first = bytes.first else { return nil }
        if first & 0x80 != 0 {
            // Base-256, big-endian, positive only.
            guard first == 0x80 else { return nil }
            var v: Int64 = 0
            for b in bytes.dropFirst() {
                guard v < (Int64.max >> 8) else { return nil }
                v = v << 8 | Int64(b)
            }
            return v
        }
        var v: Int64 = 0
        var digits = 0
        for b in bytes {
            if b == 0 || b == 0x20 {
                if digits > 0 { break }
                continue
            }
            guard b >= 0x30 && b <= 0x37, v < (Int64.max >> 3) else { return nil }
            v = v << 3 | Int64(b - 0x30)
            digits += 1
        }
        return v
    }

    static func decimal(_ bytes: [UInt8]) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
        var v: Int64 = 0
        for b in bytes {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            v = v * 10 + Int64(b - 0x30)
        }
        return v
    }

    /// The header's checksum field against the sum of its bytes (the field
    /// itself counted as spaces), unsigned or, as old writers made it, signed.
    static func checksumMatches(_ h: [UInt8]) -> Bool {
        guard let stored = number(h[148..<156]) else { return false }
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (i, b) in h.enumerated() {
            let v = (148..<156).contains(i) ? 0x20 : b
            unsigned += Int64(v)
            signed += Int64(Int8(bitPattern: v))
        }
        return stored == unsigned || stored == signed
    }

    /// `LEN KEY=VALUE\n` records.
    static func paxRecords(_ data: [UInt8], path: FilePath, offset: Int64) throws(Error) -> [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        var i = 0
        while i < data.count {
            if data[i] == 0 { break }
            guard let space = data[i...].firstIndex(of: 0x20), let length = decimal(Array(data[i..<space])),
                length > 0, i + Int(length) <= data.count, data[i + Int(length) - 1] == 0x0A,
                let eq = data[(space + 1)..<(i + Int(length) - 1)].firstIndex(of: UInt8(ascii: "="))
            else { throw .header(path: path, offset: offset, message: "bad pax record") }
            out.append((Array(data[(space + 1)..<eq]), Array(data[(eq + 1)..<(i + Int(length) - 1)])))
            i += Int(length)
        }
        return out
    }

    /// `a/./b/` → `a/b`; a leading `/` or `./` dropped; nil for a `..`.
    static func normalize(_ name: [UInt8]) -> [UInt8]? {
        var parts: [ArraySlice<UInt8>] = []
        for part in name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.elementsEqual([UInt8(ascii: ".")]) { continue }
            if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { return nil }
            parts.append(part)
        }
        return Array(parts.joined(separator: [UInt8(ascii: "/")]))
    }

    /// A link target: `..` may climb, but not above the archive's root.
    static func resolve(_ target: [UInt8]) -> [UInt8]? {
        var parts: [ArraySlice<UInt8>] = []
        for part in target.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.elementsEqual([UInt8(ascii: ".")]) { continue }
            if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
                continue
            }
            parts.append(part)
        }
        return Array(parts.joined(separator: [UInt8(ascii: "/")]))
    }
}

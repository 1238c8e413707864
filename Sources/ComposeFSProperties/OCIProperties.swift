import ComposeFS

extension Properties {
    /// fuzz-oci-json: an index, manifest or config. `JSON.parse` never
    /// traps; what it accepts, written out again canonically, parses to
    /// the same value; descriptors and diff_ids read from it never trap.
    public static func checkOCIDocument(_ input: [UInt8], report: (String) -> Void) {
        guard let value = try? JSON.parse(input) else { return }
        let again = encode(value)
        guard let reparsed = try? JSON.parse(again) else {
            report("the canonical form does not parse: \(String(decoding: again.prefix(200), as: UTF8.self))")
            return
        }
        if reparsed != value { report("the canonical form parses to another value") }
        var stack = [value]
        var visited = 0
        while let v = stack.popLast(), visited < 100_000 {
            visited += 1
            switch v {
            case .object(let members):
                _ = try? OCI.Descriptor.parse(v)
                stack.append(contentsOf: members.map(\.value))
            case .array(let items): stack.append(contentsOf: items)
            case .number: _ = v.int64
            default: break
            }
        }
        _ = try? OCIImage.diffIDs(value, what: "fuzz")
    }

    /// JSON text for a value: no spaces, members in order, strings with
    /// only the escapes JSON requires.
    static func encode(_ v: JSON) -> [UInt8] {
        var out: [UInt8] = []
        func string(_ s: [UInt8]) {
            out.append(UInt8(ascii: "\""))
            for c in s {
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), c]
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    out += Array("\\u00".utf8) + [hex[Int(c >> 4)], hex[Int(c & 15)]]
                default: out.append(c)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
        func walk(_ v: JSON) {
            switch v {
            case .null: out += Array("null".utf8)
            case .bool(let b): out += Array((b ? "true" : "false").utf8)
            case .number(let n): out += n
            case .string(let s): string(s)
            case .array(let items):
                out.append(UInt8(ascii: "["))
                for (i, item) in items.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    walk(item)
                }
                out.append(UInt8(ascii: "]"))
            case .object(let members):
                out.append(UInt8(ascii: "{"))
                for (i, m) in members.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    string(m.key)
                    out.append(UInt8(ascii: ":"))
                    walk(m.value)
                }
                out.append(UInt8(ascii: "}"))
            }
        }
        walk(v)
        return out
    }

    /// fuzz-oci-archive: an image archive's member index. Reading the
    /// headers never traps; every member it lists lies inside the archive;
    /// looking up each name (and the usual ones) follows links to an end.
    public static func checkOCIArchive(_ input: [UInt8], report: (String) -> Void) {
        let size = Int64(input.count)
        let index: ArchiveIndex
        do {
            index = try ArchiveIndex(size: size, path: "fuzz") { (offset, count) throws(Errno) in
                guard offset >= 0, offset <= size else { return [] }
                return Array(input[Int(offset)..<min(input.count, Int(offset) + count)])
            }
        } catch {
            _ = error.description
            return
        }
        let names = index.names + ["index.json", "oci-layout", "manifest.json"].map { Array($0.utf8) }
        for name in names {
            guard let member = try? index.member(name) else { continue }
            if member.offset < 0 || member.size < 0 || member.offset + member.size > size {
                report("member '\(String(decoding: name, as: UTF8.self))' at \(member.offset)+\(member.size) is outside \(size) bytes")
            }
        }
    }
}

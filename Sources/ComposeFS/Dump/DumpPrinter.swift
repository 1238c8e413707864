/// Prints a loaded tree as `composefs-info` does: the dump format, the
/// `ls` listing and the object list (FORMAT.md §17).
public enum DumpPrinter {
    /// Pre-order, children in sorted order, with an explicit stack.
    static func walk(_ root: Node, _ visit: (Node, [UInt8]) -> Void) {
        var stack: [(Node, [UInt8])] = [(root, [UInt8(ascii: "/")])]
        while let (node, path) = stack.popLast() {
            visit(node, path)
            guard !node.isHardlink else { continue }
            for child in node.children.reversed() {
                var p = path
                if p.count > 1 { p.append(UInt8(ascii: "/")) }
                p.append(contentsOf: child.name)
                stack.append((child, p))
            }
        }
    }

    /// composefs-dump(5) text of the tree, one line per entry.
    public static func dump(_ root: Node, emit: ([UInt8]) -> Void) {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 17)
        walk(root) { node, path in
            if node.isHardlink, let target = node.resolvedTarget {
                line(target, path: path, hardlinkTarget: target.path, into: &out)
            } else {
                line(node, path: path, hardlinkTarget: nil, into: &out)
            }
            if out.count >= 1 << 16 {
                emit(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        if !out.isEmpty { emit(out) }
    }

    public static func dump(_ root: Node) -> [UInt8] {
        var all: [UInt8] = []
        dump(root) { all += $0 }
        return all
    }

    /// One dump line. For a hardlink entry, `node` is its target and
    /// `hardlinkTarget` the target's path.
    public static func line(_ target: Node, path: [UInt8], hardlinkTarget: [UInt8]?, into out: inout [UInt8]) {
        let hardlink = hardlinkTarget != nil
        DumpEscaping.escape(path, into: &out)
        out.append(0x20)
        appendDecimal(target.size, into: &out)
        out.append(0x20)
        if hardlink { out.append(UInt8(ascii: "@")) }
        appendOctal(target.mode, into: &out)
        out.append(0x20)
        appendDecimal(UInt64(target.nlink), into: &out)
        out.append(0x20)
        appendDecimal(UInt64(target.uid), into: &out)
        out.append(0x20)
        appendDecimal(UInt64(target.gid), into: &out)
        out.append(0x20)
        appendDecimal(UInt64(target.rdev), into: &out)
        out.append(0x20)
        if target.mtime.seconds < 0 { out.append(UInt8(ascii: "-")) }
        appendDecimal(target.mtime.seconds.magnitude, into: &out)
        out.append(UInt8(ascii: "."))
        appendDecimal(UInt64(target.mtime.nanoseconds), into: &out)
        out.append(0x20)
        if let hardlinkTarget {
            DumpEscaping.escape(hardlinkTarget, mode: .escapeLoneDash, into: &out)
        } else {
            DumpEscaping.escapeOptional(target.payload, mode: .escapeLoneDash, into: &out)
        }
        out.append(0x20)
        DumpEscaping.escapeOptional(target.content, mode: .escapeLoneDash, into: &out)
        out.append(0x20)
        if let d = target.digest {
            for b in d {
                out.append(DumpEscaping.hexDigit(b >> 4))
                out.append(DumpEscaping.hexDigit(b & 15))
            }
        } else {
            out.append(UInt8(ascii: "-"))
        }
        for x in target.xattrs {
            out.append(0x20)
            DumpEscaping.escape(x.key, mode: .escapeEqual, into: &out)
            out.append(UInt8(ascii: "="))
            DumpEscaping.escape(x.value, mode: .escapeEqual, into: &out)
        }
        out.append(0x0A)
    }

    /// The `ls` listing: every entry but the root.
    public static func list(_ root: Node, emit: ([UInt8]) -> Void) {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 17)
        walk(root) { node, path in
            guard node !== root else { return }
            listLine(node, path: path, isHardlink: node.isHardlink, into: &out)
            if out.count >= 1 << 16 {
                emit(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        if !out.isEmpty { emit(out) }
    }

    /// One `ls` line; hardlink entries get no suffix.
    public static func listLine(_ node: Node, path: [UInt8], isHardlink: Bool, into out: inout [UInt8]) {
        DumpEscaping.escape(path, mode: .keepSpace, into: &out)
        switch isHardlink ? nil : node.fileType {
        case .directory?:
            out.append(UInt8(ascii: "/"))
            out.append(0x09)
        case .symlink?:
            out.append(contentsOf: [0x09, 0x2D, 0x3E, 0x20])   // "\t-> "
            DumpEscaping.escape(node.payload ?? [], into: &out)
        case .regular? where node.payload != nil:
            out.append(contentsOf: [0x09, 0x40, 0x20])   // "\t@ "
            DumpEscaping.escape(node.payload!, into: &out)
        default:
            break
        }
        out.append(0x0A)
    }

    /// Payloads of the regular files (hardlink entries skipped).
    public static func objects(_ root: Node) -> [[UInt8]] {
        var out: [[UInt8]] = []
        walk(root) { node, _ in
            if !node.isHardlink, node.fileType == .regular, let p = node.payload { out.append(p) }
        }
        return out
    }

    static func appendOctal(_ v: UInt32, into out: inout [UInt8]) {
        var digits = 1
        while v >> (3 * UInt32(digits)) != 0 && digits < 11 { digits += 1 }
        for k in stride(from: digits - 1, through: 0, by: -1) {
            out.append(UInt8(ascii: "0") + UInt8((v >> (3 * UInt32(k))) & 7))
        }
    }

    @inline(__always)
    static func appendDecimal(_ v: UInt64, into out: inout [UInt8]) {
        if v < 10 {
            out.append(UInt8(ascii: "0") + UInt8(v))
            return
        }
        var buf: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes, enough for 20 digits
        withUnsafeMutableBytes(of: &buf) { b in
            var i = b.count
            var x = v
            while x > 0 {
                i -= 1
                b[i] = UInt8(ascii: "0") + UInt8(x % 10)
                x /= 10
            }
            out.append(contentsOf: b[i...])
        }
    }
}

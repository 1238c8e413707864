import ComposeFS

extension Properties {
    /// fuzz-fuse's input: a little-endian u32 N, then N bytes of one raw
    /// request handled last, then the image (an input shorter than 4
    /// bytes, or whose N runs past its end, is all image).
    public static func checkFuseInput(_ data: [UInt8], report: (String) -> Void) {
        guard data.count >= 4 else { return checkFuseServer(data, wellFormed: false, report: report) }
        let n = (0..<4).reduce(0) { $0 | Int(data[$1]) << (8 * $1) }
        guard n <= data.count - 4 else { return checkFuseServer(data, wellFormed: false, report: report) }
        let extra = n == 0 ? nil : Array(data[4..<(4 + n)])
        checkFuseServer(Array(data[(4 + n)...]), extra: extra, wellFormed: false, report: report)
    }

    /// The FUSE server's request handlers on an arbitrary image, without a
    /// kernel: INIT, then every node reachable from the root is looked up,
    /// stat'ed, listed (READDIR and READDIRPLUS from every offset the
    /// replies name), its xattrs read and listed, its link read, its data
    /// opened, read and sought. Each reply must be an error or a payload
    /// that decodes; nothing may trap or loop. `extra` (a raw request, as
    /// the fuzzer makes them) is handled last, as sent. For a `wellFormed`
    /// image (one a writer made) LOOKUP must also find each node READDIR
    /// lists; a hostile directory may name one entry twice, or out of
    /// order, and then the two may rightly differ.
    public static func checkFuseServer(
        _ image: [UInt8], extra: [UInt8]? = nil, wellFormed: Bool = true, report: (String) -> Void
    ) {
        guard let fs = try? ComposefsFileSystem(image: ByteReader(image), imagePath: "fuzz", options: .init()) else { return }
        let worker = fs.makeWorker()
        var last: (error: Int32, body: [UInt8]) = (0, [])
        var reply = Fuse.Reply(capture: { last = ($0, $1) })
        var unique: UInt64 = 0
        func call(_ opcode: Fuse.Opcode, _ node: UInt64, _ body: [UInt8] = []) -> (Int32, [UInt8])? {
            unique += 1
            last = (Int32.min, [])
            let bytes = Fuse.Request.encode(opcode, unique: unique, node: node, body: body)
            bytes.withUnsafeBytes { raw in
                guard let request = Fuse.Request(raw) else { return }
                reply.reset()
                worker.handle(request, &reply)
            }
            if last.error == Int32.min { return nil }   // no reply
            if last.error > 0 || last.error < -4095 { report("\(opcode): reply error \(last.error) is not -errno") }
            return last
        }
        func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func u64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * $1) } }
        func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }

        guard let (e, initOut) = call(.initialize, 0, le32(7) + le32(38) + le32(1 << 17) + le32(0xFFFF_FFFF)), e == 0 else {
            report("INIT failed")
            return
        }
        if initOut.count != 64 { report("INIT reply of \(initOut.count) bytes") }

        var queue: [UInt64] = [1]
        var seen: Set<UInt64> = [1]
        var requests = 0
        while let node = queue.popLast(), requests < 20_000 {
            requests += 1
            if let (e, out) = call(.getattr, node, le32(0) + le32(0) + le64(0)), e == 0, out.count != 104 {
                report("GETATTR reply of \(out.count) bytes")
            }
            _ = call(.readlink, node)
            for size: UInt32 in [0, 1 << 16] {
                _ = call(.getxattr, node, le32(size) + le32(0) + Array("user.a".utf8) + [0])
                _ = call(.getxattr, node, le32(size) + le32(0) + Array("system.posix_acl_access".utf8) + [0])
                _ = call(.listxattr, node, le32(size) + le32(0))
            }
            if let (e, out) = call(.open, node, le32(0) + le32(0)), e == 0, out.count == 16 {
                let fh = u64(out, 0)
                for (offset, size) in [(UInt64(0), UInt32(4096)), (1, 100), (1 << 40, 4096)] {
                    _ = call(.read, node, le64(fh) + le64(offset) + le32(size) + le32(0) + le64(0) + le32(0) + le32(0))
                }
                _ = call(.lseek, node, le64(fh) + le64(0) + le32(3) + le32(0))
                _ = call(.release, node, le64(fh) + le32(0) + le32(0) + le64(0))
            }
            // ENOSYS: the kernel would open it itself (no-opendir support offered).
            guard let (oe, _) = call(.opendir, node, le32(0) + le32(0)), oe == 0 || oe == -Errno.noFunction.rawValue else { continue }
            for opcode in [Fuse.Opcode.readdir, .readdirplus] {
                var offset: UInt64 = 0
                var rounds = 0
                while rounds < 256 {
                    rounds += 1
                    guard let (e, out) = call(opcode, node, le64(0) + le64(offset) + le32(4096) + le32(0) + le64(0) + le32(0) + le32(0)),
                        e == 0, !out.isEmpty
                    else { break }
                    var p = 0
                    var next = offset
                    while p < out.count {
                        let start = opcode == .readdirplus ? p + 128 : p
                        guard start + 24 <= out.count else {
                            report("\(opcode): a truncated entry")
                            break
                        }
                        let ino = u64(out, start)
                        next = u64(out, start + 8)
                        let length = Int(u32(out, start + 16))
                        guard start + 24 + length <= out.count else {
                            report("\(opcode): a name past the reply")
                            break
                        }
                        let name = Array(out[(start + 24)..<(start + 24 + length)])
                        if opcode == .readdir, name != [0x2E], name != [0x2E, 0x2E] {
                            if let (le, entry) = call(.lookup, node, name + [0]), le == 0 {
                                if entry.count != 128 { report("LOOKUP reply of \(entry.count) bytes") }
                                let child = u64(entry, 0)
                                if child != ino && wellFormed { report("LOOKUP gives node \(child), READDIR \(ino)") }
                                if seen.insert(child).inserted && seen.count < 4096 { queue.append(child) }
                            }
                        }
                        p = (start + 24 + length + 7) & ~7
                    }
                    guard next > offset else { break }   // the offsets must advance
                    offset = next
                }
            }
            _ = call(.releasedir, node, le64(0) + le32(0) + le32(0) + le64(0))
        }
        _ = call(.statfs, 1)
        _ = call(.lookup, 1, Array("no such name".utf8) + [0])
        _ = call(.lookup, 999_999_999, Array("x".utf8) + [0])
        _ = call(.getattr, UInt64.max, le32(0) + le32(0) + le64(0))
        if let extra {
            extra.withUnsafeBytes { raw in
                guard let request = Fuse.Request(raw) else { return }
                reply.reset()
                worker.handle(request, &reply)
            }
        }
    }
}

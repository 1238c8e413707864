import Foundation
import Glibc
import Testing

@testable import ComposeFS

// The trees the root-only scanner and store tests scan.

enum ScanTrees {
    /// Every file type, size class, owner, mode, time, xattr namespace and
    /// odd name the scanner must carry over. With `sparse`, also a file of
    /// 4 GiB + 4097 bytes that is one hole.
    static func build(_ root: String, sparse: Bool = false) throws {
        func p(_ rel: String) -> [UInt8] { ScanFS.path(root, rel) }
        func pb(_ dir: String, _ name: [UInt8]) -> [UInt8] { ScanFS.path(root, dir) + [0x2F] + name }
        try ScanFS.mkdirs(Array(root.utf8))

        // Sizes around the inline limit and the block size.
        try ScanFS.mkdir(p("sizes"))
        for (i, size) in [0, 1, 2, 63, 64, 65, 100, 4095, 4096, 4097, 3 * 4096 + 1, 129 * 4096 + 7].enumerated() {
            try ScanFS.write(p("sizes/s\(size)"), pseudoRandomBytes(size, seed: 100 + UInt64(i)))
        }
        try ScanFS.write(p("sizes/nul64"), [UInt8](repeating: 0, count: 64))
        try ScanFS.write(p("sizes/nul65"), [UInt8](repeating: 0, count: 65))
        try ScanFS.write(p("sizes/same-a"), pseudoRandomBytes(200, seed: 7))
        try ScanFS.write(p("sizes/same-b"), pseudoRandomBytes(200, seed: 7))
        if sparse {
            try ScanFS.sparse(p("sizes/sparse"), size: (1 << 32) + 4097)
        }

        // 50 levels deep.
        var deep = "deep"
        try ScanFS.mkdir(p(deep))
        for level in 1...50 {
            deep += "/d\(level)"
            try ScanFS.mkdir(p(deep))
        }
        try ScanFS.write(p(deep + "/leaf"), pseudoRandomBytes(100, seed: 50))
        try ScanFS.write(p(deep + "/small"), b("bottom\n"))

        // 300 entries wide (290 files of every size class, 10 directories);
        // every tenth file shares an xattr (the shared xattr table).
        try ScanFS.mkdir(p("wide"))
        for i in 0..<290 {
            let name = String(format: "entry-%03d", i)
            try ScanFS.write(p("wide/\(name)"), pseudoRandomBytes((i * 7) % 150, seed: 1000 + UInt64(i)))
            if i % 10 == 0 { try ScanFS.setXattr(p("wide/\(name)"), "user.common", b("shared value")) }
        }
        for i in 0..<10 { try ScanFS.mkdir(p("wide/sub\(i)")) }
        try ScanFS.mkdir(p("wide/sub3/inner"))

        // Symlinks, never followed.
        try ScanFS.mkdir(p("links"))
        try ScanFS.symlink(b("a"), p("links/short"))
        let longTarget = Array(String(repeating: "d/", count: 2047).utf8) + [UInt8(ascii: "e")]
        #expect(longTarget.count == 4095)
        try ScanFS.symlink(longTarget, p("links/long"))
        try ScanFS.symlink(b("../deep"), p("links/to-dir"))
        try ScanFS.symlink(b("../sizes/s4097"), p("links/to-file"))
        try ScanFS.symlink(b("nowhere/at/all"), p("links/dangling"))
        try ScanFS.symlink(b("/etc/passwd"), p("links/absolute"))
        try ScanFS.symlink([0x74, 0x0A, 0xFF, 0x3D, 0x5C, 0x20], p("links/odd-target"))
        try ScanFS.setXattr(p("links/absolute"), "trusted.on-the-link", b("not the target's"))
        try ScanFS.chown(p("links/short"), 1234, 5678)

        // Special files.
        try ScanFS.mkdir(p("special"))
        try ScanFS.check(ScanFS.withC(p("special/fifo")) { mkfifo($0, 0o640) }, "mkfifo", p("special/fifo"))
        try ScanFS.mknod(p("special/socket"), S_IFSOCK | 0o755)
        try ScanFS.mknod(p("special/null"), S_IFCHR | 0o666, ScanFS.makedev(1, 3))
        try ScanFS.mknod(p("special/disk"), S_IFBLK | 0o660, ScanFS.makedev(8, 1))
        try ScanFS.mknod(p("special/biggest"), S_IFCHR | 0o600, ScanFS.makedev(4095, 1_048_575))
        try ScanFS.mknod(p("special/whiteout"), S_IFCHR | 0o600, 0)
        try ScanFS.setXattr(p("special/disk"), "trusted.device", b("xattr on a device"))
        try ScanFS.chown(p("special/biggest"), 7, 8)

        // A whiteout next to ordinary entries, in its own directory.
        try ScanFS.mkdir(p("wh"))
        try ScanFS.mknod(p("wh/gone"), S_IFCHR | 0o644, 0)
        try ScanFS.write(p("wh/kept"), b("kept\n"))
        try ScanFS.hardlink(p("wh/gone"), p("wh/gone-too"))

        // Hardlinks: each path is its own inode in the image.
        try ScanFS.mkdir(p("hard"))
        try ScanFS.write(p("hard/big"), pseudoRandomBytes(300, seed: 9))
        try ScanFS.hardlink(p("hard/big"), p("hard/big-link"))
        try ScanFS.write(p("hard/small"), b("small"))
        try ScanFS.hardlink(p("hard/small"), p("hard/small-link"))
        try ScanFS.hardlink(p("hard/small"), p("wide/sub1/small-link-elsewhere"))
        try ScanFS.check(ScanFS.withC(p("hard/fifo")) { mkfifo($0, 0o600) }, "mkfifo", p("hard/fifo"))
        try ScanFS.hardlink(p("hard/fifo"), p("hard/fifo-link"))
        try ScanFS.symlink(b("big"), p("hard/sym"))
        try ScanFS.hardlink(p("hard/sym"), p("hard/sym-link"))
        try ScanFS.write(p("hard/empty"), [])
        try ScanFS.hardlink(p("hard/empty"), p("hard/empty-link"))

        // Xattrs in every namespace root can write.
        try ScanFS.mkdir(p("xattr"))
        let file = p("xattr/file")
        try ScanFS.write(file, pseudoRandomBytes(100, seed: 11))
        try ScanFS.setXattr(file, "user.a", b("1"))
        try ScanFS.setXattr(file, "user.empty", [])
        try ScanFS.setXattr(file, "user.binary", [0, 1, 2, 0xFF, 0x0A, 0])
        try ScanFS.setXattr(file, "trusted.t", b("trusted value"))
        try ScanFS.setXattr(file, "security.s", b("security value"))
        try ScanFS.setXattr(file, "trusted.overlay.custom", b("escaped in the image"))
        try ScanFS.write(p("xattr/inline"), b("inline\n"))
        try ScanFS.setXattr(p("xattr/inline"), "user.on-inline", b("v"))
        try ScanFS.setXattr(p("xattr/inline"), "security.x", b("y"))
        try ScanFS.write(p("xattr/big-value"), [])
        try ScanFS.setXattr(p("xattr/big-value"), "user.big", pseudoRandomBytes(2000, seed: 12))
        try ScanFS.write(p("xattr/many"), b("m"))
        for i in 0..<30 { try ScanFS.setXattr(p("xattr/many"), "user.key\(i)", b("value \(i)")) }
        try ScanFS.mkdir(p("xattr/dir"))
        try ScanFS.setXattr(p("xattr/dir"), "user.d", b("on a directory"))
        try ScanFS.setXattr(p("xattr/dir"), "trusted.overlay.opaque", b("y"))
        try ScanFS.setXattr(p("xattr/dir"), "security.d", b("dir label"))
        try ScanFS.setXattr(Array(root.utf8), "user.root", b("on the root"))
        try ScanFS.setXattr(Array(root.utf8), "trusted.root", b("trusted on the root"))

        // Names.
        try ScanFS.mkdir(p("names"))
        let names: [[UInt8]] = [
            Array(repeating: UInt8(ascii: "n"), count: 255),
            b("tab\there"), b("new\nline"), [0xFF, 0x66, 0x6F], [0xFF], b("a=b"), b("back\\slash"),
            b("with space"), b(" "), b("-"), b("+"), b("..."), b(".hidden"), b("caf\u{e9}"), b("x\u{1}y")
        ]
        for (i, name) in names.enumerated() {
            try ScanFS.write(pb("names", name), b("name \(i)\n"))
        }
        try ScanFS.mkdir(pb("names", Array(repeating: UInt8(ascii: "D"), count: 255)))
        try ScanFS.symlink(b("tab\there"), pb("names", b("link\twith\ntab")))
        try ScanFS.write(p("00"), b("a root entry named like a whiteout\n"))

        // Modes and owners (chown before chmod: chown clears set-id bits).
        try ScanFS.mkdir(p("modes"))
        try ScanFS.write(p("modes/suid"), b("s"))
        try ScanFS.write(p("modes/sgid"), pseudoRandomBytes(70, seed: 13))
        try ScanFS.write(p("modes/none"), b("0"))
        try ScanFS.write(p("modes/all"), b("7777"))
        try ScanFS.mkdir(p("modes/sticky"))
        try ScanFS.mkdir(p("modes/closed"))
        try ScanFS.chown(p("modes/sgid"), 70000, 80000)
        try ScanFS.chown(p("modes/closed"), 65534, 65534)
        try ScanFS.chmod(p("modes/suid"), 0o4755)
        try ScanFS.chmod(p("modes/sgid"), 0o2711)
        try ScanFS.chmod(p("modes/none"), 0)
        try ScanFS.chmod(p("modes/all"), 0o7777)
        try ScanFS.chmod(p("modes/sticky"), 0o1777)
        try ScanFS.chmod(p("modes/closed"), 0)
        try ScanFS.mkdir(p("owners"))
        try ScanFS.write(p("owners/u1000"), b("u"))
        try ScanFS.write(p("owners/big-ids"), pseudoRandomBytes(80, seed: 14))
        try ScanFS.mkdir(p("owners/dir"))
        try ScanFS.chown(p("owners/u1000"), 1000, 1000)
        try ScanFS.chown(p("owners/big-ids"), 4_000_000_000, 123_456)
        try ScanFS.chown(p("owners/dir"), 1, 2)

        // Times, set last (adding entries changes a directory's mtime).
        try ScanFS.mkdir(p("times"))
        try ScanFS.write(p("times/ns"), b("t"))
        try ScanFS.write(p("times/future"), pseudoRandomBytes(90, seed: 15))
        try ScanFS.write(p("times/epoch"), b("e"))
        try ScanFS.mkdir(p("times/dir"))
        try ScanFS.symlink(b("ns"), p("times/link"))
        try ScanFS.setMtime(p("times/ns"), 1_234_567_890, 123_456_789)
        try ScanFS.setMtime(p("times/future"), 4_102_444_800, 999_999_999)
        try ScanFS.setMtime(p("times/epoch"), 0, 0)
        try ScanFS.setMtime(p("times/dir"), 1_000_000_000, 500_000_000)
        try ScanFS.setMtime(p("times/link"), 1_500_000_000, 1)
        try ScanFS.setMtime(p("modes/closed"), 1_600_000_000, 0)
    }

    /// Trees that overlap: `shared` files in every tree, and `own` files
    /// that only tree `index` has (used by the store tests).
    static func buildOverlapping(_ root: String, index: Int, shared: Int = 120, own: Int = 30) throws {
        try ScanFS.mkdirs(Array(root.utf8))
        try ScanFS.mkdir(ScanFS.path(root, "shared"))
        try ScanFS.mkdir(ScanFS.path(root, "own"))
        for i in 0..<shared {
            try ScanFS.write(ScanFS.path(root, "shared/f\(i)"), pseudoRandomBytes(65 + (i * 997) % 20000, seed: 5000 + UInt64(i)))
        }
        // The same content under another name, and a neighbour's files.
        try ScanFS.write(ScanFS.path(root, "copy-of-f0"), pseudoRandomBytes(65, seed: 5000))
        for i in 0..<own {
            try ScanFS.write(
                ScanFS.path(root, "own/g\(i)"),
                pseudoRandomBytes(100 + i * 300, seed: 9000 + UInt64(index) * 1000 + UInt64(i)))
            try ScanFS.write(
                ScanFS.path(root, "own/n\(i)"),
                pseudoRandomBytes(100 + i * 300, seed: 9000 + UInt64((index + 1) % 4) * 1000 + UInt64(i)))
        }
        try ScanFS.write(ScanFS.path(root, "inline"), b("only inline\n"))
        try ScanFS.write(ScanFS.path(root, "empty"), [])
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Bad layers and command lines: one message naming the entry or the
// offset, exit 1, no image left behind, and a store holding only valid
// objects.

@Suite struct TarErrorTests {
    typealias E = TestTar.Entry

    /// Runs --from-tar on `archive` into an image and a store; expects
    /// exactly `message` (after "mkcomposefs: LAYER: ").
    func expectRejected(_ archive: [UInt8], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layer = try dir.write("layer.tar", archive)
        let store = dir.file("store")
        let r = try Tools.mkcomposefs(["--digest-store=" + store, "--from-tar", layer, dir.file("out.cfs")])
        #expect(r.status == 1, sourceLocation: sourceLocation)
        #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
        #expect(r.err == "mkcomposefs: \(layer): \(message)\n", sourceLocation: sourceLocation)
        #expect(try dir.contents() == ["layer.tar", "store"], sourceLocation: sourceLocation)
        // Whatever reached the store is a complete object under its digest.
        for (name, digest) in try TarCompare.storeContents(store) {
            #expect(String(bytes: FsVerity.objectPath([UInt8](hexDigits: Array(digest.utf8))!)) == name, sourceLocation: sourceLocation)
        }
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: store).allSatisfy { !$0.hasPrefix(".") },
            sourceLocation: sourceLocation)
        let d = try Tools.mkcomposefs(["--print-digest-only", "--from-tar", "-"], stdin: archive)
        #expect(d.status == 1 && d.err == "mkcomposefs: <stdin>: \(message)\n", "\(d.err)", sourceLocation: sourceLocation)
    }

    static let two = TestTar([.file("first", pseudoRandomBytes(5000, seed: 1)), .file("second", pseudoRandomBytes(3000, seed: 2))])

    @Test func truncatedArchives() throws {
        let archive = Self.two.archive
        // Inside the second file's data, and inside its header.
        try expectRejected(Array(archive.prefix(512 * 12 + 700)), "second: Truncated tar archive")
        try expectRejected(Array(archive.prefix(512 * 11 + 100)), "at offset 5632 (after 'first'): Truncated tar archive")
        try expectRejected(Array(archive.prefix(512 + 1000)), "first: Truncated tar archive")
    }

    @Test func truncatedCompressedArchives() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let plain = try dir.write("plain.tar", Self.two.archive)
        // The whole (small) stream is decompressed before the first header.
        for (tool, message) in [
            ("gzip", "at offset 0: truncated gzip input"), ("zstd -q", "at offset 0: Truncated zstd input"),
            ("xz", "at offset 0: Lzma library error:  No progress is possible")
        ] {
            try TarTools.shell("\(tool) -c \(TarTools.quote(plain)) > \(TarTools.quote(dir.file("c")))")
            let whole = try ScanFS.readFile(dir.file("c"))
            let r = try Tools.mkcomposefs(["--print-digest-only", "--from-tar", "-"], stdin: Array(whole.prefix(whole.count - 20)))
            #expect(r.status == 1, "\(tool)")
            #expect(r.err == "mkcomposefs: <stdin>: \(message)\n", "\(tool)")
        }
    }

    @Test func corruptHeaders() throws {
        var archive = Self.two.archive
        archive[512 * 11 + 3] ^= 0x40   // the second header's name: its checksum no longer matches
        try expectRejected(archive, "at offset 5632 (after 'first'): Damaged tar archive")
        try expectRejected(pseudoRandomBytes(10_000, seed: 9), "at offset 0: Unrecognized archive format")
        var size = Self.two.archive
        size.replaceSubrange(124..<136, with: b("7777777777x\u{0}"))
        try expectRejected(size, "at offset 0: Unrecognized archive format")
    }

    @Test func namesThatClimbOutAreRejected() throws {
        for (name, shown) in [("../etc/passwd", "../etc/passwd"), ("a/../../b", "a/../../b"), ("/x/..", "/x/.."), ("a/b/..", "a/b/..")] {
            try expectRejected(TestTar([.file("ok", b("ok")), .file(name, b("x"))]).archive, "\(shown): name contains '..'")
        }
        try expectRejected(TestTar([.file("ok", b("ok")), .hardlink("l", "../ok")]).archive, "l: hard link target contains '..'")
    }

    @Test func badLinksAndReplacements() throws {
        try expectRejected(TestTar([.file("a", b("a")), .hardlink("x", "nope")]).archive, "x: hard link target 'nope' not found")
        try expectRejected(TestTar([.dir("d"), .hardlink("x", "d")]).archive, "x: hard link to a directory")
        try expectRejected(
            TestTar([.dir("d"), .file("d/f", b("f")), .file("d", b("over"))]).archive,
            "d: cannot replace a directory that is not empty")
        try expectRejected(
            TestTar([.dir("real"), .symlink("s", "real"), .file("s/x", b("x"))]).archive,
            "s/x: cannot extract through the symbolic link 's'")
        try expectRejected(TestTar([.file("f", b("f")), .file("f/x", b("x"))]).archive, "f/x: 'f' is not a directory")
        try expectRejected(TestTar([.file(".", b("x"))]).archive, ".: the root can only be a directory")
        try expectRejected(TestTar([.symlink("s", "")]).archive, "s: symbolic link with an empty target")
        try expectRejected(
            TestTar([.file(String(repeating: "n", count: 256), b("x"))]).archive,
            "\(String(repeating: "n", count: 256)): file name longer than 255 bytes: \"\(String(repeating: "n", count: 40))…\"")
        var big = E.file("big", [])
        big.xattrs = [("user.big", pseudoRandomBytes(40_000, seed: 1))]
        try expectRejected(
            TestTar([big]).archive,
            "big: xattr user.big would make the xattrs of this file 40027 bytes, over the limit of 32767")
    }

    @Test func commandLineErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let layer = try dir.write("layer.tar", Self.two.archive)
        func expect(_ args: [String], _ message: String, usage: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try Tools.mkcomposefs(args)
            #expect(r.status == 1, sourceLocation: sourceLocation)
            if usage {
                #expect(r.err.hasPrefix(message + "\nusage: mkcomposefs"), "\(r.err)", sourceLocation: sourceLocation)
            } else {
                #expect(r.err == "mkcomposefs: " + message + "\n", sourceLocation: sourceLocation)
            }
        }
        try expect(["--from-tar", layer], "No destination path specified", usage: true)
        try expect(["--from-tar", layer, "a.cfs", "b.cfs"], "Too many arguments", usage: true)
        try expect(
            ["--print-digest-only", "--from-tar", layer, "a.cfs"],
            "Cannot specify destination path with --print-digest-only", usage: true)
        try expect(["--from-file", "--from-tar", layer, "a.cfs"], "--from-tar and --from-file cannot be used together", usage: true)
        try expect(["--tar-whiteouts=oci", dir.path, "a.cfs"], "--tar-whiteouts needs --from-tar", usage: true)
        try expect(["--tar-whiteouts=aufs", "--from-tar", layer, "a.cfs"], "Invalid --tar-whiteouts mode aufs (oci or overlay)")
        try expect(
            ["--tar-whiteouts=overlay", "--from-tar", layer, "--from-tar", layer, "--print-digest-only"],
            "--tar-whiteouts=overlay takes exactly one --from-tar layer")
        try expect(["--from-tar", "-", "--from-tar", "-", "--print-digest-only"], "standard input ('-') can be only one layer")
        try expect(
            ["--from-tar", dir.file("missing.tar"), "--print-digest-only"],
            "cannot open '\(dir.file("missing.tar"))': No such file or directory")
        #expect(try dir.contents() == ["layer.tar"])
        // An empty input is an empty layer: the root alone, with its defaults.
        let empty = try Tools.mkcomposefs(["--print-digest-only", "--from-tar", "-"], stdin: [])
        let root = try Tools.mkcomposefs(["--print-digest-only", "--from-file", "-"], stdin: b("/ 4096 40755 2 0 0 0 0.0 - - -\n"))
        #expect(empty.status == 0 && empty.out == root.out)
    }

    /// A store that cannot take an object: the entry is named, and no
    /// image, digest or standard output appears in any output mode.
    @Test func storeRefusalLeavesNoOutput() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let content = pseudoRandomBytes(9_000, seed: 5)
        let layer = try dir.write("layer.tar", TestTar([.file("f", content)]).archive)
        let h = FsVerity.Hasher()
        h.update(content)
        let object = dir.file("store") + "/" + String(bytes: FsVerity.objectPath(h.finalize()))
        try FileManager.default.createDirectory(atPath: object, withIntermediateDirectories: true)
        for output in [["out.cfs"], ["-"], []] {
            let digestOnly = output.isEmpty ? ["--print-digest-only"] : []
            let r = try Tools.mkcomposefs(
                digestOnly + ["--digest-store=" + dir.file("store"), "--from-tar", layer]
                    + output.map { $0 == "-" ? $0 : dir.file($0) })
            #expect(r.status == 1)
            #expect(r.stdout.isEmpty, "nothing on standard output before the store is done")
            #expect(r.err == "mkcomposefs: \(layer): f: cannot fill store: File exists (\(object) exists and is not a regular file)\n")
            #expect(try dir.contents() == ["layer.tar", "store"])
        }
    }
}

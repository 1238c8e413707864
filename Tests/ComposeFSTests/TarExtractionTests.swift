import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Archives written entry by entry (TestTar) for what real trees never
// hold: the same path twice, links over files, names GNU tar rewrites,
// entries without parents. Each is extracted by GNU tar as root and the
// image compared with --from-tar's.

@Suite(.serialized) struct TarExtractionTests {
    typealias E = TestTar.Entry

    /// Writes `entries`, extracts them with GNU tar, sets the documented
    /// defaults on `implicit` (directories no entry describes), compares.
    static func expectLikeExtraction(
        _ entries: [E], implicit: [String] = [], label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let scratch = try RootScratch("tar-\(label)")
        defer { scratch.remove() }
        let layer = try scratch.writeLayer("layer.tar", entries)
        let x = scratch.file("x")
        try TarTools.extract(layer, into: x)
        for dir in implicit { try TarTools.setDefaults(dir.isEmpty ? x : x + "/" + dir) }
        try TarCompare.expectSame(layers: [layer], extracted: x, in: scratch, label: label, sourceLocation: sourceLocation)
    }

    @Test(.root) func laterEntriesReplaceEarlierOnesAsGNUTarDoes() throws {
        var d1 = E.dir("d", mode: 0o700, mtime: 5)
        d1.xattrs = [("user.a", b("1")), ("trusted.b", b("1"))]
        var d2 = E.dir("d", mode: 0o750, mtime: 7)
        d2.xattrs = [("user.a", b("2")), ("security.c", b("3"))]
        d2.nanoseconds = 123_456_789
        var owned = E.file("owned", pseudoRandomBytes(500, seed: 1), mode: 0o4711)
        owned.uid = 1234
        owned.gid = 5678
        owned.nanoseconds = 1
        owned.xattrs = [("user.x", b("on the file")), ("trusted.overlay.opaque", b("y"))]
        var linkWithOwnMetadata = E.hardlink("owned-link", "owned")
        linkWithOwnMetadata.mode = 0o600
        linkWithOwnMetadata.uid = 99
        linkWithOwnMetadata.mtime = 42
        try Self.expectLikeExtraction(
            [
                .dir("./", mode: 0o711, mtime: 1_600_000_000),
                d1, .file("d/x", pseudoRandomBytes(100, seed: 2)), d2,   // directory over directory
                .file("f", b("file")), .dir("f", mode: 0o701),   // directory over file
                .dir("g"), .file("g", pseudoRandomBytes(70, seed: 3)),   // file over empty directory
                .file("s", b("was a file")), .symlink("s", "target"),   // symlink over file
                .file("t", b("T")), .symlink("u", "t"), .file("u", b("file over symlink")),
                .file("a", pseudoRandomBytes(200, seed: 4)), .file("b", b("B")), .hardlink("b", "a"),   // link over file
                .hardlink("a", "a"),   // link to itself
                .file("old", b("old contents")), .hardlink("old-link", "old"), .file("old", b("new contents")),
                .symlink("sym", "somewhere/else"), .hardlink("sym-link", "sym"),   // link to a symlink
                .fifo("fifo"), .hardlink("fifo-link", "fifo"),
                owned, linkWithOwnMetadata,
                .file("same", pseudoRandomBytes(300, seed: 5)), .file("same", pseudoRandomBytes(300, seed: 6))
            ], label: "replace")
    }

    @Test(.root) func directoriesWithoutEntriesGetTheDocumentedDefaults() throws {
        try Self.expectLikeExtraction(
            [
                .file("p/q/file", pseudoRandomBytes(80, seed: 1)),
                .file("top", b("top")),
                .dir("p/q/r", mode: 0o700),
                .dir("later/", mode: 0o700, mtime: 9), .file("later/x", b("x"))
            ], implicit: ["", "p", "p/q"], label: "implicit")
    }

    @Test(.root) func leadingSlashesAreRemovedWithAWarning() throws {
        let entries: [E] = [
            .dir("./"), .file("/abs/file", pseudoRandomBytes(90, seed: 1)), .file("//abs/two", b("2")),
            .hardlink("linked", "/abs/file"), .symlink("/abs/sym", "/etc/passwd"), .file("./a/./b", b("dots"))
        ]
        try Self.expectLikeExtraction(entries, implicit: ["abs", "a"], label: "absolute")
        let scratch = try RootScratch("tar-warn")
        defer { scratch.remove() }
        let layer = try scratch.writeLayer("layer.tar", entries)
        let r = try Tools.mkcomposefs(["--print-digest-only", "--from-tar", layer])
        #expect(r.status == 0)
        #expect(
            r.err == "mkcomposefs: \(layer): Removing leading `/' from member names\n"
                + "mkcomposefs: \(layer): Removing leading `/' from hard link targets\n")
    }

    @Test(.root) func subSecondTimesAndOwnersOfEveryType() throws {
        var entries: [E] = [.dir("./", mode: 0o755, mtime: 1)]
        var types: [E] = [
            .file("reg", pseudoRandomBytes(65, seed: 1)), .file("inline", b("12")), .file("empty", []),
            .dir("dir"), .symlink("sym", "reg"), .fifo("fifo"), .char("null", 1, 3),
            .char("big-numbers", 4095, 1_048_575), .char("whiteout", 0, 0)
        ]
        var blk = E(name: b("disk"), type: UInt8(ascii: "4"), mode: 0o660, major: 8, minor: 17)
        blk.xattrs = [("trusted.dev", b("t")), ("user.dropped", b("kernel refuses user.* here"))]
        types.append(blk)
        for (i, var e) in types.enumerated() {
            e.uid = 1000 + i
            e.gid = 2000 + i
            e.mtime = 1_500_000_000 + i
            e.nanoseconds = 999_999_999 - i
            e.xattrs += [("user.u", b("u\(i)")), ("trusted.t", b("t\(i)")), ("unknown.namespace", b("dropped"))]
            entries.append(e)
        }
        try Self.expectLikeExtraction(entries, label: "types")
    }

    @Test(.root) func longNamesAndTargets() throws {
        let dir = String(repeating: "d", count: 255)
        let deep = (0..<6).map { "level\($0)-" + String(repeating: "x", count: 90) }.joined(separator: "/")
        try Self.expectLikeExtraction(
            [
                .dir("./"), .dir(dir), .file(dir + "/" + String(repeating: "n", count: 255), pseudoRandomBytes(1000, seed: 1)),
                .symlink(dir + "/link", String(repeating: "a/", count: 1000) + "end"),
                .hardlink(dir + "/hard", dir + "/" + String(repeating: "n", count: 255)),
                .file(deep + "/leaf", b("deep"))
            ], implicit: (1...6).map { n in (0..<n).map { "level\($0)-" + String(repeating: "x", count: 90) }.joined(separator: "/") },
            label: "long")
    }
}

extension RootScratch {
    /// Writes a TestTar archive of `entries` into the scratch directory.
    func writeLayer(_ name: String, _ entries: [TestTar.Entry]) throws -> String {
        let path = file(name)
        try Data(TestTar(entries).archive).write(to: URL(fileURLWithPath: path))
        return path
    }
}

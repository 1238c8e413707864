import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Several layers flattened by the OCI rules, and single layers with
// overlay whiteouts, compared with scripts/oci-apply (Python's tarfile,
// no code shared) applying the same layers to a directory; plus the
// library's reader and layer rules on their own.

@Suite(.serialized) struct TarLayersTests {
    typealias E = TestTar.Entry

    static func withXattrs(_ e: E, _ xattrs: [(String, [UInt8])]) -> E {
        var e = e
        e.xattrs = xattrs
        return e
    }

    static let lower: [E] = [
        .dir("a", mode: 0o755, mtime: 100), .dir("a/b", mode: 0o750, mtime: 101),
        .file("a/x", pseudoRandomBytes(100, seed: 1)), .file("a/b/y", pseudoRandomBytes(2000, seed: 2)), .file("a/keep", b("keep")),
        .dir("c", mtime: 102), .file("c/gone", pseudoRandomBytes(300, seed: 3)), .dir("c/sub"),
        .dir("d", mtime: 103), .file("d/hidden", pseudoRandomBytes(400, seed: 4)), .dir("d/hidden-dir"), .file("d/hidden-dir/z", b("z")),
        .file("f", b("a file that becomes a directory")),
        withXattrs(.dir("e", mode: 0o700, mtime: 104), [("user.lower", b("1")), ("trusted.both", b("lower"))]),
        .file("e/content", pseudoRandomBytes(500, seed: 5)),
        .symlink("link", "a/x"), .file("shared", pseudoRandomBytes(5000, seed: 6))
    ]
    static let middle: [E] = [
        .file("a/.wh.x", []), .file(".wh.c", []),
        .dir("d", mode: 0o711, mtime: 200), .file("d/.wh..wh..opq", []), .file("d/new", pseudoRandomBytes(600, seed: 7)),
        .dir("a", mode: 0o705, mtime: 201),
        .dir("f", mode: 0o755, mtime: 202), .file("f/inside", b("in")),
        withXattrs(.dir("e", mode: 0o755, mtime: 203), [("user.upper", b("2")), ("trusted.both", b("upper"))]),
        .file("a/b/z", pseudoRandomBytes(700, seed: 8)),   // a/b has no entry: keeps its metadata
        .file("p/q/new", pseudoRandomBytes(800, seed: 9)),   // p, p/q new without entries: defaults
        .file("a/.wh..wh.plnk", []),   // aufs metadata: ignored
        .file("same-layer", b("kept")), .file(".wh.same-layer", []),   // no effect on its own layer
        .file(".wh.never-existed", [])
    ]
    static let upper: [E] = [
        .file(".wh.link", []), .symlink("link", "shared"),
        .file("e", pseudoRandomBytes(900, seed: 10)),   // a file over a non-empty lower directory
        .hardlink("shared-again", "shared"),   // a link to a lower layer's file
        .file("a/b/.wh.y", []), .file("p/.wh..wh..opq", []),
        .dir("./", mode: 0o700, mtime: 300)
    ]

    @Test(.root) func threeLayersFlattenLikeTheReference() throws {
        let scratch = try RootScratch("tar-layers")
        defer { scratch.remove() }
        let layers = try [("1.tar", Self.lower), ("2.tar", Self.middle), ("3.tar", Self.upper)].map { try scratch.writeLayer($0.0, $0.1) }
        // One of them compressed: layers are read alike.
        try TarTools.shell("gzip -c \(TarTools.quote(layers[1])) > \(TarTools.quote(scratch.file("2.tar.gz")))")
        let reference = scratch.file("applied")
        try TarTools.shell(
            "python3 \(TarTools.quote(TarTools.ociApply)) \(TarTools.quote(reference)) "
                + layers.map(TarTools.quote).joined(separator: " "))
        try TarCompare.expectSame(
            layers: [layers[0], scratch.file("2.tar.gz"), layers[2]], extracted: reference,
            in: scratch, label: "three")
        // Spot checks, so the comparison cannot pass vacuously.
        let image = try ImageReader.load(try ScanFS.readFile(scratch.file("tar-three.cfs"))).root
        #expect(image.lookup(path: b("a/x")) == nil && image.lookup(path: b("c")) == nil)
        #expect(image.lookup(path: b("a/keep")) != nil && image.lookup(path: b("same-layer")) != nil)
        #expect(image.lookup(path: b("d"))?.children.filter { $0.name != b(".") && $0.name != b("..") }.map(\.name) == [b("new")])
        #expect(image.lookup(path: b("a/b"))?.mode == 0o040750)
        #expect(image.lookup(path: b("e"))?.fileType == .regular)
        #expect(image.lookup(path: b("link"))?.payload == b("shared"))
        #expect(image.mode == 0o040700)
        // Each prefix of the stack too (the root then has the defaults).
        for n in 1...2 {
            let partial = scratch.file("applied-\(n)")
            try TarTools.shell(
                "python3 \(TarTools.quote(TarTools.ociApply)) \(TarTools.quote(partial)) "
                    + layers.prefix(n).map(TarTools.quote).joined(separator: " "))
            try TarCompare.expectSame(layers: Array(layers.prefix(n)), extracted: partial, in: scratch, label: "prefix-\(n)")
        }
    }

    @Test(.root) func overlayWhiteoutsForOneLayer() throws {
        let scratch = try RootScratch("tar-overlay")
        defer { scratch.remove() }
        var wh = E.file("a/.wh.gone", [])
        wh.uid = 7
        wh.gid = 8
        wh.mtime = 1234
        let layer = try scratch.writeLayer(
            "layer.tar",
            [
                .dir("a", mtime: 50), wh, .file("a/.wh..wh..opq", []), .file("a/here", pseudoRandomBytes(100, seed: 1)),
                .file("o/.wh..wh..opq", []), .file("o/file", b("in an opaque directory without whiteouts")),
                .file(".wh.top", []), .file("x/.wh.deep", []),   // x has no entry: defaults
                .file(".wh.both", []), .file("both", b("the real entry wins")),
                .file("also", b("real first")), .file(".wh.also", []),
                .file("a/.wh..wh.plnk", [])
            ])
        let reference = scratch.file("applied")
        try TarTools.shell("python3 \(TarTools.quote(TarTools.ociApply)) --overlay \(TarTools.quote(reference)) \(TarTools.quote(layer))")
        try TarCompare.expectSame(
            layers: [layer], extracted: reference, in: scratch, tarOptions: ["--tar-whiteouts=overlay"], label: "overlay")
        let image = try ImageReader.load(try ScanFS.readFile(scratch.file("tar-overlay.cfs"))).root
        let gone = try #require(image.lookup(path: b("a/gone")))
        #expect(gone.mode == 0o020000 && gone.rdev == 0 && gone.uid == 7 && gone.gid == 8 && gone.mtime.seconds == 1234)
        #expect(image.lookup(path: b("top"))?.mode == 0o020000 && image.lookup(path: b("x/deep"))?.mode == 0o020000)
        #expect(image.lookup(path: b("both"))?.content == b("the real entry wins"))
        #expect(image.lookup(path: b("also"))?.content == b("real first"))
        // The image writer marks directories holding whiteouts opaque "x"
        // itself (FORMAT.md §5.3), over the layer's "y".
        #expect(image.lookup(path: b("o"))?.xattr(b("trusted.overlay.opaque")) == b("y"))
        #expect(image.lookup(path: b("a"))?.xattr(b("trusted.overlay.opaque")) == b("x"))
        // In OCI mode the same layer has no whiteouts at all.
        let ociImage = scratch.file("oci.cfs")
        let r = try Tools.mkcomposefs(["--from-tar", layer, ociImage])
        #expect(r.status == 0)
        let oci = try ImageReader.load(try ScanFS.readFile(ociImage)).root
        #expect(oci.lookup(path: b("a/gone")) == nil && oci.lookup(path: b("top")) == nil && oci.lookup(path: b("x")) == nil)
        #expect(oci.lookup(path: b("a"))?.xattr(b("trusted.overlay.opaque")) == nil)
        #expect(oci.lookup(path: b("a"))?.children.contains { $0.name.starts(with: b(".wh.")) } == false)
    }

    // MARK: The library on its own

    @Test func readerReportsSparseHolesInOrder() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        // Data at 0, a hole, data at 1 MiB + 100, a trailing hole: GNU sparse format.
        let src = try dir.write("sparse", [])
        let fd = open(src, O_WRONLY | O_CLOEXEC)
        ftruncate(fd, 3 << 20)
        for (offset, seed) in [(0, UInt64(1)), (1 << 20 | 100, 2)] {
            let data = pseudoRandomBytes(5000, seed: seed)
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, data.count, off_t(offset)) }
        }
        close(fd)
        try TarTools.shell("tar --format=gnu -S -cf \(TarTools.quote(dir.file("s.tar"))) -C \(TarTools.quote(dir.path)) sparse")
        let archive = try ScanFS.readFile(dir.file("s.tar"))
        try archive.withUnsafeBytes { raw in
            let reader = try TarReader(memory: raw, source: "s.tar")
            let entry = try #require(try reader.next())
            #expect(entry.path == b("sparse") && entry.size == 3 << 20)
            var blocks: [(String, Int)] = []
            var contents: [UInt8] = []
            while let block = try reader.nextBlock() {
                switch block {
                case .data(let d):
                    contents += d
                    if blocks.last?.0 == "data" { blocks[blocks.count - 1].1 += d.count } else { blocks.append(("data", d.count)) }
                case .hole(let n):
                    contents += [UInt8](repeating: 0, count: Int(n))
                    blocks.append(("hole", Int(n)))
                }
            }
            #expect(blocks.map(\.0) == ["data", "hole", "data", "hole"])
            #expect(contents == (try ScanFS.readFile(src)))
            #expect(try reader.next() == nil)
        }
    }

    @Test func namesAreNormalizedAsGNUTarDoes() {
        func n(_ s: String) -> (TarLayer.Normalized, Bool) {
            var stripped = false
            let r = TarLayer.normalize(b(s), stripped: &stripped)
            return (r, stripped)
        }
        #expect(n("a/b") == (.path([b("a"), b("b")]), false))
        #expect(n("./a//./b/") == (.path([b("a"), b("b")]), false))
        #expect(n("/abs") == (.path([b("abs")]), true))
        #expect(n("//") == (.path([]), true))
        #expect(n(".") == (.path([]), false))
        #expect(n("a/..x/.y") == (.path([b("a"), b("..x"), b(".y")]), false))
        #expect(n("a/../b").0 == .dotDot)
        #expect(n("..").0 == .dotDot)
    }

    @Test func deviceNumbersAreTheKernelsEncoding() {
        #expect(TarLayer.deviceNumber(major: 1, minor: 3) == 0x103)
        #expect(TarLayer.deviceNumber(major: 8, minor: 17) == 0x811)
        #expect(TarLayer.deviceNumber(major: 4095, minor: 1_048_575) == UInt32(truncatingIfNeeded: ScanFS.makedev(4095, 1_048_575)))
    }

    @Test func flatteningInMemory() throws {
        let layers = [TestTar(Self.lower).archive, TestTar(Self.middle).archive]
        var flattened = OCILayers()
        for layer in layers {
            try layer.withUnsafeBytes { raw in try flattened.add(try TarReader(memory: raw, source: "layer")) }
        }
        let root = flattened.finish()
        #expect(root.lookup(path: b("c")) == nil && root.lookup(path: b("a/x")) == nil)
        #expect(root.lookup(path: b("d/hidden")) == nil && root.lookup(path: b("d/new")) != nil)
        #expect(root.lookup(path: b("a/b/y")) != nil && root.lookup(path: b("a/b"))?.mode == 0o040750)
        #expect(root.lookup(path: b("e"))?.xattrs.map { $0.key.text }.sorted() == ["trusted.both", "user.lower", "user.upper"])
        #expect(root.lookup(path: b("e"))?.xattr(b("trusted.both")) == b("upper"))
        #expect(root.lookup(path: b("p/q"))?.mode == 0o040755 && root.lookup(path: b("p/q"))?.mtime == .zero)
        #expect(root.mode == 0o040755 && root.uid == 0 && root.mtime == .zero)
        let f = try #require(root.lookup(path: b("a/b/z")))
        #expect(f.digest == FsVerity.digest(pseudoRandomBytes(700, seed: 8)) && f.content == nil)
        #expect(root.lookup(path: b("a/keep"))?.content == b("keep"))
        _ = try ImageWriter.write(root)
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Real trees archived and extracted by GNU tar as root: `mkcomposefs
// --from-tar LAYER` must make the image (bytes, digest) and the store that
// `mkcomposefs` makes from the extracted tree.

@Suite(.serialized) struct TarRoundTripTests {
    /// ScanTrees' tree (every file type, xattr namespace, odd and 255-byte
    /// names, 50-deep paths, hardlinks, devices, fifos) plus long names past
    /// ustar's 100 bytes, a >255-byte path and a sparse file.
    static func buildTree(_ root: String) throws {
        try ScanTrees.build(root)
        let long = String(repeating: "L", count: 150)
        try ScanFS.mkdir(ScanFS.path(root, long))
        try ScanFS.write(ScanFS.path(root, long + "/" + String(repeating: "f", count: 200)), pseudoRandomBytes(3000, seed: 77))
        try ScanFS.symlink(b(String(repeating: "t", count: 300)), ScanFS.path(root, long + "/long-target"))
        try ScanFS.hardlink(ScanFS.path(root, long + "/" + String(repeating: "f", count: 200)), ScanFS.path(root, long + "/hard"))
        // Data, a 1 MiB hole, data, a trailing hole.
        let sparse = ScanFS.path(root, "sizes/sparse")
        try ScanFS.sparse(sparse, size: 3 << 20)
        let fd = ScanFS.withC(sparse) { open($0, O_WRONLY | O_CLOEXEC) }
        defer { close(fd) }
        for (offset, seed) in [(0, UInt64(1)), (1 << 20 | 100, 2)] {
            let data = pseudoRandomBytes(5000, seed: seed)
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, data.count, off_t(offset)) }
        }
        try ScanFS.setMtime(Array(root.utf8), 1_700_000_000, 5)
    }

    @Test(.root) func everyKindOfEntryRoundTripsInEachTarFormat() throws {
        let scratch = try RootScratch("tar-all")
        defer { scratch.remove() }
        try Self.buildTree(scratch.file("src"))
        // tar has no sockets (GNU tar leaves them out with a warning).
        _ = ScanFS.withC(ScanFS.path(scratch.file("src"), "special/socket")) { unlink($0) }
        try ScanFS.setMtime(ScanFS.path(scratch.file("src"), "special"), 1_600_000_000, 0)
        var digests: Set<String> = []
        for format in ["pax", "gnu"] {
            let layer = scratch.file("layer-\(format).tar")
            try TarTools.create(layer, from: scratch.file("src"), format: format, sparse: true)
            try TarTools.extract(layer, into: scratch.file("x-\(format)"))
            digests.insert(
                try TarCompare.expectSame(
                    layers: [layer], extracted: scratch.file("x-\(format)"),
                    in: scratch, label: format))
        }
        // GNU format has no sub-second times, so only pax matches the source.
        let source = try Tools.mkcomposefs(["--print-digest-only", scratch.file("src")])
        #expect(digests.contains(source.out))
        #expect(digests.count == 2)
    }

    @Test(.root) func ustarArchive() throws {
        let scratch = try RootScratch("tar-ustar")
        defer { scratch.remove() }
        let src = scratch.file("src")
        try ScanFS.mkdirs(Array(src.utf8))
        try ScanFS.write(ScanFS.path(src, "small"), b("small\n"))
        try ScanFS.write(ScanFS.path(src, "big"), pseudoRandomBytes(100_000, seed: 3))
        try ScanFS.hardlink(ScanFS.path(src, "big"), ScanFS.path(src, "big-link"))
        try ScanFS.mkdir(ScanFS.path(src, "d"), 0o700)
        try ScanFS.symlink(b("../big"), ScanFS.path(src, "d/up"))
        try ScanFS.mknod(ScanFS.path(src, "d/tty"), S_IFCHR | 0o620, ScanFS.makedev(4, 1))
        try ScanFS.chown(ScanFS.path(src, "small"), 1000, 100)
        let layer = scratch.file("layer.tar")
        try TarTools.create(layer, from: src, format: "ustar")
        try TarTools.extract(layer, into: scratch.file("x"))
        try TarCompare.expectSame(layers: [layer], extracted: scratch.file("x"), in: scratch, label: "ustar")
    }

    @Test(.root) func compressedLayersAndStandardInput() throws {
        let scratch = try RootScratch("tar-compressed")
        defer { scratch.remove() }
        let src = scratch.file("src")
        try ScanTrees.buildOverlapping(src, index: 0, shared: 40, own: 10)
        let layer = scratch.file("layer.tar")
        try TarTools.create(layer, from: src)
        try TarTools.extract(layer, into: scratch.file("x"))
        let digest = try TarCompare.expectSame(layers: [layer], extracted: scratch.file("x"), in: scratch, label: "plain")
        let q = TarTools.quote
        // Named misleadingly on purpose: the data says what it is.
        for (tool, name) in [("gzip -c", "layer.zst"), ("zstd -q -c", "layer.xz"), ("xz -c", "layer.gz")] {
            let compressed = scratch.file(name)
            try TarTools.shell("\(tool) \(q(layer)) > \(q(compressed))")
            let r = try Tools.mkcomposefs(["--print-digest-only", "--from-tar", compressed])
            #expect(r.status == 0 && r.out == digest, "\(tool): \(r.err)")
            let store = scratch.file("store-\(name)")
            let image = scratch.file("\(name).cfs")
            let s = try Tools.mkcomposefs(["--digest-store=" + store, "--from-tar", compressed, image])
            #expect(s.status == 0, "\(tool): \(s.err)")
            #expect(try ScanFS.readFile(image) == ScanFS.readFile(scratch.file("tar-plain.cfs")))
            #expect(try TarCompare.storeContents(store) == TarCompare.storeContents(scratch.file("store-tar-plain")))
        }
        // Standard input, plain and compressed.
        let zst = try ScanFS.readFile(scratch.file("layer.xz"))
        for input in [try ScanFS.readFile(layer), zst] {
            let r = try Tools.mkcomposefs(["--print-digest-only", "--from-tar", "-"], stdin: input)
            #expect(r.status == 0 && r.out == digest, "stdin: \(r.err)")
        }
        let image = scratch.file("stdin.cfs")
        let r = try Tools.mkcomposefs(
            ["--print-digest", "--digest-store", scratch.file("store-stdin"), "--from-tar", "-", image], stdin: zst)
        #expect(r.status == 0 && r.out == digest)
        #expect(try ScanFS.readFile(image) == ScanFS.readFile(scratch.file("tar-plain.cfs")))
    }

    /// --use-epoch, --skip-devices, --skip-xattrs, --user-xattrs and the
    /// version options do to a layer what they do to the extracted tree.
    @Test(.root) func scannerOptionsApplyAlike() throws {
        let scratch = try RootScratch("tar-options")
        defer { scratch.remove() }
        try ScanTrees.build(scratch.file("src"))
        let layer = scratch.file("layer.tar")
        try TarTools.create(layer, from: scratch.file("src"))
        try TarTools.extract(layer, into: scratch.file("x"))
        var digests: Set<String> = []
        for (i, options) in [
            ["--use-epoch"], ["--skip-devices"], ["--skip-xattrs"], ["--user-xattrs"],
            ["--min-version=1"], ["--max-version=0"], ["--use-epoch", "--skip-devices", "--user-xattrs"]
        ].enumerated() {
            digests.insert(
                try TarCompare.expectSame(
                    layers: [layer], extracted: scratch.file("x"), in: scratch,
                    options: options, label: "options-\(i)"))
        }
        #expect(digests.count == 7)
        let r = try Tools.mkcomposefs(["--skip-xattrs", "--user-xattrs", "--print-digest-only", "--from-tar", layer])
        #expect(r.status == 1)
        #expect(r.err == "mkcomposefs: error accessing \(layer): Invalid argument (--skip-xattrs and --user-xattrs together)\n")
    }

    /// A second run into the same store adds nothing and changes nothing;
    /// objects are published with the store's rules (mode 0644).
    @Test(.root) func secondRunIntoTheSameStore() throws {
        let scratch = try RootScratch("tar-rerun")
        defer { scratch.remove() }
        try ScanTrees.buildOverlapping(scratch.file("src"), index: 1)
        let layer = scratch.file("layer.tar")
        try TarTools.create(layer, from: scratch.file("src"))
        let store = scratch.file("store")
        for image in ["a.cfs", "b.cfs"] {
            let r = try Tools.mkcomposefs(["--digest-store=" + store, "--from-tar", layer, scratch.file(image)])
            #expect(r.status == 0, "\(r.err)")
        }
        #expect(try ScanFS.readFile(scratch.file("a.cfs")) == ScanFS.readFile(scratch.file("b.cfs")))
        let objects = try TarCompare.storeContents(store)
        #expect(objects.count == 180)   // 120 shared, 30 own, 30 a neighbour's; copy-of-f0 is f0's
        for name in objects.keys {
            var st = stat()
            #expect(lstat(store + "/" + name, &st) == 0 && st.st_mode == S_IFREG | 0o644)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasPrefix(".") }.isEmpty)
    }
}

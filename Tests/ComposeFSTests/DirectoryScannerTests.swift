import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Root-only tests of `mkcomposefs SOURCEDIR` (FORMAT.md §19.2): real trees
// with every file type, owner, mode, time, xattr namespace and odd name,
// built as root, then compared entry by entry with the image loaded back.
// The expected values come from lstat/llistxattr/lgetxattr/readlink and
// the file contents (digests from libfsverity), never from
// DirectoryScanner. Helpers: ScannerSupport.swift (syscalls on byte
// paths, scratch directories), ScannerTrees.swift (the trees),
// ScannerExpectations.swift (both sides of the comparison). The refusals are
// in DirectoryScannerErrorTests.swift.

@Suite struct DirectoryScannerTests {
    static func run(_ args: [String]) throws -> Tools.Result { try Tools.mkcomposefs(args) }

    /// The big tree (with the 4 GiB sparse file) round-trips field by field,
    /// and its dump rebuilds the same image.
    @Test(.root) func everyKindOfEntryRoundTripsThroughTheImage() throws {
        let dir = try RootScratch("scan-all")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src, sparse: true)
        let expected = try ScanSnapshot.take(src)
        // Sanity of the expectations themselves.
        #expect(expected[b("/sizes/sparse")]?.size == UInt64((1 << 32) + 4097))
        #expect(expected[b("/hard/big")]?.nlink == UInt32(1))
        #expect(expected[b("/wide")]?.nlink == UInt32(2 + 10))
        #expect(expected[b("/special/whiteout")]?.rdev == UInt32(0))
        #expect(expected[b("/special/biggest")]?.rdev == UInt32(0xFFFF_FFFF))
        #expect(expected[b("/wh")]?.xattrs[b("user.overlay.opaque")] == b("x"))
        #expect(expected[b("/xattr/file")]?.xattrs.count == Int(6))

        let image = dir.file("all.cfs")
        let r = try Self.run([src, image])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.stdout.isEmpty && r.stderr.isEmpty)
        try ScanImage.expectMatches(image, expected, "default options")
        try Self.comparisonIsNotVacuous(try ScanFS.readFile(image), expected)

        // The image marks the whiteouts' parents: version 1.
        let bytes = try ScanFS.readFile(image)
        #expect(le(bytes, 12, 4) == 1, "a tree with whiteouts gives a version 1 image")

        // composefs-info dump | mkcomposefs --from-file - gives the same bytes.
        let dump = try Tools.info(["dump", image])
        #expect(dump.status == 0, "\(dump.err)")
        let again = dir.file("again.cfs")
        let r2 = try Tools.mkcomposefs(["--from-file", "-", again], stdin: dump.stdout)
        #expect(r2.status == 0, "\(r2.err)")
        #expect(firstDifference(try ScanFS.readFile(again), bytes) == nil)
    }

    /// Each kind of difference the comparison must notice, noticed.
    static func comparisonIsNotVacuous(_ image: [UInt8], _ expected: [[UInt8]: ScanSnapshot.Entry]) throws {
        let changes: [(String, (inout [[UInt8]: ScanSnapshot.Entry]) -> Void)] = [
            ("mode", { $0[b("/modes/suid")]!.mode ^= 0o4000 }),
            ("uid", { $0[b("/owners/big-ids")]!.uid += 1 }),
            ("gid", { $0[b("/owners/dir")]!.gid += 1 }),
            ("nlink", { $0[b("/deep")]!.nlink += 1 }),
            ("mtime", { $0[b("/times/ns")]!.mtime.nanoseconds += 1 }),
            ("size", { $0[b("/sizes/sparse")]!.size! += 1 }),
            ("rdev", { $0[b("/special/null")]!.rdev += 1 }),
            ("target", { $0[b("/links/long")]!.target!.removeLast() }),
            ("content", { $0[b("/sizes/s64")]!.content![10] ^= 1 }),
            ("digest", { $0[b("/sizes/s65")]!.digest![0] ^= 1 }),
            ("xattr value", { $0[b("/xattr/file")]!.xattrs[b("user.binary")]!.append(0) }),
            ("xattr key", { $0[b("/special/disk")]!.xattrs[b("trusted.device")] = nil }),
            ("whiteout marker", { $0[b("/wh")]!.xattrs[b("user.overlay.opaque")] = nil }),
            ("entry", { $0[b("/names/a=b")] = nil })
        ]
        for (what, change) in changes {
            var broken = expected
            change(&broken)
            // A digest shows twice: as the digest and in the payload.
            #expect(try ScanImage.mismatches(image, broken).count == (what == "digest" ? 2 : 1), "a changed \(what) is noticed")
        }
    }

    @Test func zeroDigestByHandAgreesWithLibfsverity() throws {
        for size in [1, 4096, 4097, 128 * 4096, 128 * 4096 + 1, 129 * 4096 + 5, 128 * 128 * 4096 + 4097] {
            let zeros = [UInt8](repeating: 0, count: size)
            #expect(ZeroDigest.of(size: UInt64(size)) == (try FsVerityTests.libfsverityDigest(zeros)), "size \(size)")
        }
    }

    /// --use-epoch, --skip-devices, --skip-xattrs, --user-xattrs and their
    /// combinations, each checked entry by entry.
    @Test(.root) func scannerOptions() throws {
        let dir = try RootScratch("scan-options")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        typealias O = ScanSnapshot.Options
        let cases: [(args: [String], options: O)] = [
            ([], O()),
            (["--use-epoch"], O(useEpoch: true)),
            (["--skip-devices"], O(skipDevices: true)),
            (["--skip-xattrs"], O(skipXattrs: true)),
            (["--user-xattrs"], O(userXattrsOnly: true)),
            (["--use-epoch", "--skip-devices", "--user-xattrs"], O(useEpoch: true, skipDevices: true, userXattrsOnly: true)),
            (["--skip-devices", "--skip-xattrs"], O(skipDevices: true, skipXattrs: true))
        ]
        for (i, c) in cases.enumerated() {
            let image = dir.file("image-\(i).cfs")
            let r = try Self.run(c.args + [src, image])
            #expect(r.status == 0, "\(c.args): \(r.err)")
            let expected = try ScanSnapshot.take(src, c.options)
            try ScanImage.expectMatches(image, expected, "\(c.args)")
            let entries = try ScanImage.entries(try ScanFS.readFile(image))
            if c.options.useEpoch {
                #expect(entries.values.allSatisfy { $0.mtime == Timespec(seconds: 0, nanoseconds: 0) }, "\(c.args)")
            }
            if c.options.skipDevices {
                #expect(
                    entries.values.allSatisfy { $0.fileType != .characterDevice && $0.fileType != .blockDevice },
                    "\(c.args): no device and no whiteout")
                #expect(entries[b("/special/fifo")] != nil && entries[b("/special/socket")] != nil)
                #expect(le(try ScanFS.readFile(image), 12, 4) == 0, "no whiteouts: version 0")
            } else {
                #expect(entries[b("/special/whiteout")]?.fileType == .characterDevice)
                #expect(entries[b("/special/whiteout")]?.rdev == 0)
            }
            if c.options.skipXattrs {
                // Only the writer's own whiteout markers remain.
                let own: Set<[UInt8]> = [b("trusted.overlay.opaque"), b("user.overlay.opaque")]
                #expect(entries.values.allSatisfy { Set($0.xattrs.map(\.key)).isSubset(of: own) }, "\(c.args)")
            }
            if c.options.userXattrsOnly {
                #expect(
                    entries.values.allSatisfy { n in
                        n.xattrs.allSatisfy { $0.key.starts(with: b("user.")) || $0.key == b("trusted.overlay.opaque") }
                    }, "\(c.args)")
                #expect(entries[b("/xattr/file")]?.xattrs.count == 3)
            }
        }

        // A trailing slash changes nothing.
        let slash = dir.file("slash.cfs")
        #expect(try Self.run([src + "/", slash]).status == 0)
        #expect(try ScanFS.readFile(slash) == (try ScanFS.readFile(dir.file("image-0.cfs"))))

        // Both xattr options together: an error, and no image.
        let image = dir.file("both.cfs")
        let r = try Self.run(["--skip-xattrs", "--user-xattrs", src, image])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        // §19.1: `error accessing SRC: Invalid argument`, naming the source
        // path as every other scanner error does (fails while the message
        // says "error accessing source: …").
        #expect(r.err.hasPrefix("mkcomposefs: error accessing \(src): Invalid argument"), "stderr: \(r.err)")
        #expect(!ScanFS.exists(image))
        var options = DirectoryScanner.Options()
        options.skipXattrs = true
        options.userXattrsOnly = true
        #expect(throws: DirectoryScanner.Error.invalidOptions(source: FilePath(src))) { try DirectoryScanner.scan(src, options: options) }
    }

    /// mkcomposefs DIR A, then composefs-info dump A | mkcomposefs
    /// --from-file - B: the same bytes, also for the other versions.
    @Test(.root) func dumpOfADirectoryImageRebuildsTheSameImage() throws {
        let dir = try RootScratch("scan-dump")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        for versions in [[], ["--min-version=0", "--max-version=0"], ["--min-version=1", "--max-version=1"]] {
            let a = dir.file("a.cfs")
            let bPath = dir.file("b.cfs")
            let r = try Self.run(versions + [src, a])
            #expect(r.status == 0, "\(r.err)")
            let dump = try Tools.info(["dump", a])
            #expect(dump.status == 0, "\(dump.err)")
            #expect(!dump.stdout.isEmpty)
            let r2 = try Tools.mkcomposefs(
                versions + ["--from-file", "-", bPath], stdin: dump.stdout,
                environment: ["CFS_PARSE_STRICT": "1"])
            #expect(r2.status == 0, "\(versions): \(r2.err)")
            let imageA = try ScanFS.readFile(a)
            let imageB = try ScanFS.readFile(bPath)
            #expect(firstDifference(imageA, imageB) == nil, "\(versions): images differ")
            try FileManager.default.removeItem(atPath: a)
            try FileManager.default.removeItem(atPath: bPath)
        }
    }

    /// The tree is built before the parallel file pass: the thread count
    /// never changes the image (§19.4).
    @Test(.root) func threadCountDoesNotChangeTheImage() throws {
        let dir = try RootScratch("scan-threads")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        var images: [[UInt8]] = []
        var digests: [String] = []
        for threads in [1, 8] {
            let image = dir.file("t\(threads).cfs")
            let r = try Self.run(["--threads=\(threads)", "--print-digest", "--digest-store=\(dir.file("store\(threads)"))", src, image])
            #expect(r.status == 0, "\(r.err)")
            images.append(try ScanFS.readFile(image))
            digests.append(r.out)
        }
        #expect(firstDifference(images[0], images[1]) == nil)
        #expect(digests[0] == digests[1])
        #expect(digests[0] == FsVerity.digest(images[0]).hexString + "\n")
        // The library gives the same image in process.
        for threads in [1, 8] {
            var options = DirectoryScanner.Options()
            options.threads = threads
            let image = try ImageWriter.write(try DirectoryScanner.scan(src, options: options))
            #expect(firstDifference(image, images[0]) == nil, "library, \(threads) threads")
        }
    }

    /// §21: path depth is unlimited. A tree whose relative paths are longer
    /// than PATH_MAX (4096) scans like any other. (Fails while the scanner
    /// opens every directory and file by its whole path from the root fd,
    /// which gives ENAMETOOLONG, instead of relative to its parent's fd.)
    @Test(.root) func pathsLongerThanPathMax() throws {
        let dir = try RootScratch("scan-longpath")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdir(Array(src.utf8))
        // 20 levels of 250-byte names: 5020 bytes of relative path.
        var fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(fd >= 0)
        for level in 0..<20 {
            let name = Array(String(repeating: String(Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(level)))), count: 250).utf8)
            try ScanFS.check(ScanFS.withC(name) { mkdirat(fd, $0, 0o755) }, "mkdirat", name)
            let next = ScanFS.withC(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
            try #require(next >= 0)
            close(fd)
            fd = next
        }
        for (name, content) in [("inline", b("deep inline\n")), ("external", pseudoRandomBytes(5000, seed: 77))] {
            let f = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            try #require(f >= 0)
            _ = content.withUnsafeBytes { write(f, $0.baseAddress, $0.count) }
            close(f)
        }
        close(fd)
        let expected = try ScanSnapshot.take(src)
        #expect(expected.count == 1 + 20 + 2)
        let image = dir.file("long.cfs")
        let store = dir.file("store")
        let r = try Self.run(["--digest-store=\(store)", src, image])
        #expect(r.status == 0, "stderr: \(String(r.err.prefix(300)))")
        guard r.status == 0 else { return }
        try ScanImage.expectMatches(image, expected, "long paths")
        let digest = FsVerity.digest(pseudoRandomBytes(5000, seed: 77))
        #expect(ScanFS.exists(store + "/" + String(decoding: FsVerity.objectPath(digest), as: UTF8.self)))
    }

    /// An empty SOURCEDIR: the smallest image, the root alone.
    @Test(.root) func emptySourceDirectory() throws {
        let dir = try RootScratch("scan-empty")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdir(Array(src.utf8), 0o700)
        try ScanFS.chown(Array(src.utf8), 42, 43)
        try ScanFS.setMtime(Array(src.utf8), 1_700_000_000, 7)
        let image = dir.file("empty.cfs")
        let r = try Self.run([src, image])
        #expect(r.status == 0, "\(r.err)")
        let bytes = try ScanFS.readFile(image)
        #expect(bytes.count == 16384)
        try ScanImage.expectMatches(image, try ScanSnapshot.take(src), "empty directory")
        #expect(try ImageReader.load(bytes).root.children.isEmpty)
    }
}

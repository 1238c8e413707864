import Foundation
import Testing

@testable import ComposeFS

/// Scans that fail (FORMAT.md §19.2): a message naming the path, exit 1,
/// and no image or temporary file left behind.
extension DirectoryScannerTests {
    /// Xattrs over the per-inode budget (§16) abort the scan (§19.2 step
    /// 4). On a tmpfs, which holds xattrs that ext4 cannot.
    @Test(.root) func xattrsOverTheBudgetAbortTheScan() throws {
        let dir = try RootScratch("scan-budget")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdir(Array(src.utf8))
        try ScanFS.mountTmpfs(src, size: "1m")
        defer { ScanFS.unmount(src) }
        let file = ScanFS.path(src, "f")
        try ScanFS.write(file, b("x"))
        for i in 0..<3 { try ScanFS.setXattr(file, "trusted.big\(i)", pseudoRandomBytes(12_000, seed: UInt64(i))) }
        let image = dir.file("out.cfs")
        let r = try Self.run([src, image])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: error accessing \(src)/f: Numerical result out of range"), "stderr: \(r.err)")
        #expect(!ScanFS.exists(image))
        // Without xattrs the same tree is fine.
        let r2 = try Self.run(["--skip-xattrs", src, image])
        #expect(r2.status == 0, "\(r2.err)")
    }

    @Test(.root) func missingSourceDirectory() throws {
        let dir = try RootScratch("scan-missing")
        defer { dir.remove() }
        let missing = dir.file("does-not-exist")
        let image = dir.file("out.cfs")
        let r = try Self.run([missing, image])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.err == "mkcomposefs: error accessing \(missing): No such file or directory\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty, "no image, no temporary file")
        #expect(throws: DirectoryScanner.Error.access(path: FilePath(missing), errno: .noSuchFileOrDirectory)) {
            try DirectoryScanner.scan(missing)
        }
    }

    /// SOURCEDIR itself is lstat'ed: a symlink to a directory is not
    /// followed, and a non-directory root fails with ENOTDIR (§19.2 step 1).
    @Test(.root) func symlinkedSourceIsNotFollowed() throws {
        let dir = try RootScratch("scan-symroot")
        defer { dir.remove() }
        let real = dir.file("real")
        try ScanFS.mkdir(Array(real.utf8))
        try ScanFS.write(ScanFS.path(real, "file"), pseudoRandomBytes(100, seed: 1))
        let link = dir.file("link")
        try ScanFS.symlink(b("real"), Array(link.utf8))
        let regular = dir.file("regular")
        try ScanFS.write(Array(regular.utf8), b("not a directory\n"))
        for source in [link, regular] {
            let image = dir.file("out.cfs")
            let store = dir.file("store")
            let r = try Self.run(["--digest-store=\(store)", source, image])
            #expect(r.status == 1, "\(source)")
            #expect(r.stdout.isEmpty)
            #expect(r.err.hasPrefix("mkcomposefs: "))
            #expect(r.err.contains("Not a directory"), "stderr: \(r.err)")
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["link", "real", "regular"],
                "no image, no temporary file, no store")
        }
        // The real directory works.
        let ok = try Self.run([real, dir.file("ok.cfs")])
        #expect(ok.status == 0, "\(ok.err)")
    }
}

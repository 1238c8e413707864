import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// Upstream's random FUSE scenario (tests/test-random-fuse.sh) with this
/// project's tools alone, on the scanner's tree of every file type, size
/// class, odd name and xattr namespace: tree → image; the image read and
/// written again (composefs-dump) and dumped and rebuilt (composefs-info
/// dump | mkcomposefs --from-file), both the same bytes; mounted through
/// FUSE, the source's tree; an image of that mount, mounted again, the
/// same tree as the first mount.
@Suite(.serialized) struct FuseScenarioTests {
    static let listing = "python3 '\(OutputTargetTests.package)/scripts/tree-listing'"

    @Test(.fuse) func treeImageMountImageMount() throws {
        let dir = try RootScratch("fuse-scenario")
        defer { dir.remove() }
        let source = dir.file("src")
        let store = dir.file("objects")
        let target = dir.file("mnt")
        try ScanTrees.build(source)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        let a = dir.file("a.cfs")
        var r = try Tools.mkcomposefs(["--digest-store=\(store)", source, a])
        try #require(r.status == 0, "\(r.err)")
        let image = try ScanFS.readFile(a)

        r = try Tools.run("composefs-dump", [a, dir.file("b.cfs")])
        #expect(r.status == 0, "\(r.err)")
        #expect(try ScanFS.readFile(dir.file("b.cfs")) == image, "composefs-dump writes the same bytes")
        let dump = try Tools.info(["dump", a])
        r = try Tools.mkcomposefs(["--from-file", "-", dir.file("c.cfs")], stdin: dump.stdout)
        #expect(r.status == 0, "\(r.err)")
        #expect(try ScanFS.readFile(dir.file("c.cfs")) == image, "dump | mkcomposefs --from-file writes the same bytes")

        var mount = try FuseRun(options: "source=\(a),basedir=\(store)", target: target)
        let first = try sh("\(Self.listing) '\(target)'")
        try Self.expectSourceTree(
            source: try sh("\(Self.listing) --portable '\(source)'"), mounted: try sh("\(Self.listing) --portable '\(target)'"))
        let d = dir.file("d.cfs")
        r = try Tools.mkcomposefs(["--digest-store=\(store)", target, d])
        #expect(r.status == 0, "\(r.err)")
        #expect(try mount.unmount() == 0)

        mount = try FuseRun(options: "source=\(d),basedir=\(store)", target: target)
        let second = try sh("\(Self.listing) '\(target)'")
        #expect(try mount.unmount() == 0)
        #expect(first == second, "the image of the mount mounts as the same tree")
        #expect(first.split(separator: "\n").count > 400)
    }

    /// The source's listing against the mount's, line by line. What an
    /// image makes of the source on purpose is taken out: a whiteout (a
    /// character device 0:0) is a file with `user.overlay.whiteout` in the
    /// mount, and directories gain the overlay's `user.overlay.*` markers.
    static func expectSourceTree(source: String, mounted: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        func fields(_ line: Substring) -> [Substring] { line.split(separator: " ", omittingEmptySubsequences: false) }
        func withoutOverlayXattrs(_ f: [Substring]) -> String {
            var f = f
            let kept = f[9].split(separator: ",").filter { !$0.hasPrefix("user.overlay.") }
            f[9] = kept.isEmpty ? "-" : Substring(kept.joined(separator: ","))
            return f.joined(separator: " ")
        }
        let sourceLines = source.split(separator: "\n").map(fields)
        let whiteouts = Set(sourceLines.filter { $0[1] == "20000" || ($0[1].hasPrefix("20") && $0[5] == "0:0") }.map { $0[0] })
        #expect(whiteouts.count == 3, "the tree's whiteouts: \(whiteouts)", sourceLocation: sourceLocation)
        let want = sourceLines.filter { !whiteouts.contains($0[0]) }.map(withoutOverlayXattrs)
        let mountedLines = mounted.split(separator: "\n").map(fields)
        let got = mountedLines.filter { !whiteouts.contains($0[0]) }.map(withoutOverlayXattrs)
        #expect(got.count == want.count, "\(got.count) paths mounted, \(want.count) in the source", sourceLocation: sourceLocation)
        for (g, w) in zip(got, want) where g != w {
            Issue.record("mounted \(g), source \(w)", sourceLocation: sourceLocation)
        }
        for line in mountedLines where whiteouts.contains(line[0]) {
            #expect(
                line[1] == "100644" || line[1].hasPrefix("100"), "a whiteout is a file in the mount: \(line)",
                sourceLocation: sourceLocation)
            #expect(line[9].contains("user.overlay.whiteout="), "\(line)", sourceLocation: sourceLocation)
        }
    }
}

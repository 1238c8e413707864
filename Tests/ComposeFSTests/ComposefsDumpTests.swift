import Foundation
import Testing

@testable import ComposeFS

/// composefs-dump SRC DEST: the image loaded and written again.
@Suite struct ComposefsDumpTests {
    /// composefs-dump writes what upstream's does, for every fixture image.
    @Test func composefsDumpIsUpstreams() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var cases = (0..<12).map { ("cstorage", String(format: "cstorage-%02d", $0), [String]()) }
        for v in Vector.all { cases.append(("vectors", v.name, try v.args)) }
        for (folder, name, args) in cases {
            let image = dir.file("\(name).cfs")
            #expect(try Tools.mkcomposefs(args + ["--from-file", Fixtures.url("\(folder)/\(name).dump").path, image]).status == 0)
            let r = try Tools.run("composefs-dump", [image, "-"])
            #expect(r.status == 0, "\(r.err)")
            #expect(SHA256Reference.hex(r.stdout) == (try Fixtures.token("\(folder)/\(name).composefs-dump.sha256")), "\(name)")
        }
        let r = try Tools.run("composefs-dump", [dir.file("none.cfs"), dir.file("out.cfs")])
        #expect(r.status == 1 && r.err == "composefs-dump: Failed to open '\(dir.file("none.cfs"))': No such file or directory\n")
        #expect(try Tools.run("composefs-dump", []).err == "No source path specified\nusage: composefs-dump SRC DEST\n")
    }

    /// DEST is written as mkcomposefs writes IMAGE (OutputFile): a file
    /// through a symbolic link stays a link; an unreadable SRC leaves no DEST.
    @Test func destinationIsWrittenAsMkcomposefsWritesIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let image = dir.file("a.cfs")
        #expect(try Tools.mkcomposefs(["--from-file", Fixtures.url("cstorage/cstorage-00.dump").path, image]).status == 0)
        try FileManager.default.createSymbolicLink(atPath: dir.file("link.cfs"), withDestinationPath: "target.cfs")
        var r = try Tools.run("composefs-dump", [image, dir.file("link.cfs")])
        #expect(r.status == 0, "\(r.err)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir.file("link.cfs")) == "target.cfs")
        #expect(
            SHA256Reference.hex(try ScanFS.readFile(dir.file("target.cfs")))
                == (try Fixtures.token("cstorage/cstorage-00.composefs-dump.sha256")))
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir.file("bad.cfs")))
        r = try Tools.run("composefs-dump", [dir.file("bad.cfs"), dir.file("out.cfs")])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("composefs-dump: Failed to load '\(dir.file("bad.cfs"))': "), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.cfs")))
        #expect(try Tools.run("composefs-dump", [image]).err == "No destination path specified\nusage: composefs-dump SRC DEST\n")
    }
}

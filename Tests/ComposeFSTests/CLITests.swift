import Foundation
import Testing

@testable import ComposeFS

/// The built `mkcomposefs` and `composefs-info` executables, run as a
/// user would (FORMAT.md §17, §19.1).
enum Tools {
    /// The build directory holding the multi-call program `composefs`:
    /// the one the test bundle runs from (any scratch path, debug or
    /// release), else the usual scratch paths of this package. The tool
    /// names are made there as links to it, as scripts/build makes them.
    static let directory: String? = {
        var candidates: [URL] = []
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(dir)
            dir = dir.deletingLastPathComponent()
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        let package = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for scratch in [".build-tests", ".build"] {
            for config in ["debug", "release"] {
                candidates.append(package.appendingPathComponent(scratch).appendingPathComponent(config))
            }
        }
        let fm = FileManager.default
        guard let found = candidates.first(where: { fm.isExecutableFile(atPath: $0.appendingPathComponent("composefs").path) })
        else { return nil }
        for tool in ["mkcomposefs", "composefs-info", "mount.composefs", "composefs-store", "composefs-fuse", "composefs-dump"] {
            let link = found.appendingPathComponent(tool).path
            if (try? fm.destinationOfSymbolicLink(atPath: link)) != "composefs" {
                try? fm.removeItem(atPath: link)
                try? fm.createSymbolicLink(atPath: link, withDestinationPath: "composefs")
            }
        }
        return found.path
    }()

    struct Result {
        var status: Int32
        var stdout: [UInt8]
        var stderr: [UInt8]
        var out: String { stdout.text }
        var err: String { stderr.text }
    }

    /// Runs a tool; output is captured in files (no pipe can fill up).
    static func run(
        _ tool: String, _ arguments: [String], stdin: [UInt8]? = nil,
        environment: [String: String] = [:]
    ) throws -> Result {
        let bin = try #require(directory, "mkcomposefs and composefs-info not found next to the test bundle")
        let io = try TemporaryDirectory()
        defer { io.remove() }
        let executable = tool.hasPrefix("/") ? tool : bin + "/" + tool
        var env: [String: String?] = ["CFS_PARSE_STRICT": nil]
        env.merge(environment.mapValues { $0 }) { $1 }
        let outPath = try io.write("stdout", [])
        let errPath = try io.write("stderr", [])
        let inPath = try io.write("stdin", stdin ?? [])
        let status = try Child(executable, arguments, environment: env, stdin: inPath, stdout: outPath, stderr: errPath).wait()
        return Result(
            status: status,
            stdout: [UInt8](try Data(contentsOf: URL(fileURLWithPath: outPath))),
            stderr: [UInt8](try Data(contentsOf: URL(fileURLWithPath: errPath))))
    }

    static func mkcomposefs(_ arguments: [String], stdin: [UInt8]? = nil, environment: [String: String] = [:]) throws -> Result {
        try run("mkcomposefs", arguments, stdin: stdin, environment: environment)
    }

    static func info(_ arguments: [String]) throws -> Result {
        try run("composefs-info", arguments)
    }
}

@Suite struct CLITests {
    static let infoUsage = "usage: composefs-info [--basedir=path] [ls|objects|dump|missing-objects|measure-file] IMAGES...\n"
    static let workedExampleDigest = "8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682"

    @Test func toolsAreFound() {
        #expect(Tools.directory != nil)
    }

    // MARK: mkcomposefs argument errors

    /// Exit 1, the message as the first stderr line, then the usage text.
    func expectUsageError(_ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try Tools.mkcomposefs(arguments)
        #expect(r.status == 1, sourceLocation: sourceLocation)
        #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
        let lines = r.err.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first.map(String.init) == message, sourceLocation: sourceLocation)
        #expect(lines.count > 1 && lines[1].hasPrefix("usage: mkcomposefs"), "usage follows: \(r.err)", sourceLocation: sourceLocation)
    }

    @Test func mkcomposefsArgumentErrors() throws {
        try expectUsageError([], "No source path specified")
        try expectUsageError(["--from-file"], "No source path specified")
        try expectUsageError(["--from-file", "a", "b", "c"], "Too many arguments")
        try expectUsageError(["--from-file", "a"], "No destination path specified")
        try expectUsageError(
            ["--from-file", "--print-digest-only", "a", "b"],
            "Cannot specify destination path with --print-digest-only")
    }

    @Test func mkcomposefsInvalidVersions() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let input = try dir.write("in.dump", b(rootLine))
        let out = dir.file("out.cfs")
        var r = try Tools.mkcomposefs(["--min-version=x", "--from-file", input, out])
        #expect(r.status == 1)
        #expect(r.err == "mkcomposefs: Invalid min version x\n")
        r = try Tools.mkcomposefs(["--max-version=1x", "--from-file", input, out])
        #expect(r.status == 1)
        #expect(r.err == "mkcomposefs: Invalid max version 1x\n")
        // Parsed fine, refused by the writer (EINVAL).
        r = try Tools.mkcomposefs(["--max-version=2", "--from-file", input, out])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: cannot write file: Invalid argument"))
        r = try Tools.mkcomposefs(["--min-version=-1", "--from-file", input, out])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: cannot write file: Invalid argument"))
        #expect(try dir.contents() == ["in.dump"])
    }

    @Test func mkcomposefsEmptySource() throws {
        let r = try Tools.mkcomposefs(["--from-file", "", "out.cfs"])
        #expect(r.status == 1)
        #expect(r.err == "mkcomposefs: Empty source path specified\n")
    }

    // MARK: mkcomposefs output

    @Test func printDigestOnly() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let input = try dir.write("in.dump", b(rootLine))
        var r = try Tools.mkcomposefs(["--from-file", "--print-digest-only", input])
        #expect(r.status == 0)
        #expect(r.out == Self.workedExampleDigest + "\n")
        #expect(r.stderr.isEmpty)
        // From standard input.
        r = try Tools.mkcomposefs(["--print-digest-only", "--from-file", "-"], stdin: b(rootLine))
        #expect(r.status == 0)
        #expect(r.out == Self.workedExampleDigest + "\n")
        #expect(try dir.contents() == ["in.dump"])
    }

    @Test func printDigestAndWriteTheImage() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let input = try dir.write("in.dump", b(rootLine))
        let out = dir.file("out.cfs")
        let r = try Tools.mkcomposefs(["--print-digest", "--from-file", input, out])
        #expect(r.status == 0)
        #expect(r.out == Self.workedExampleDigest + "\n")
        let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(firstDifference(image, try ImageWriter.write(try parseDump(rootLine))) == nil)
        #expect(try dir.contents() == ["in.dump", "out.cfs"])
    }

    @Test func imageToStandardOutput() throws {
        let r = try Tools.mkcomposefs(["--from-file", "-", "-"], stdin: b(rootLine))
        #expect(r.status == 0)
        #expect(r.stdout.count == 16384)
        #expect(FsVerity.digest(r.stdout).hexString == Self.workedExampleDigest)
    }

    @Test func goldenImageInStrictMode() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let out = dir.file("special.cfs")
        let r = try Tools.mkcomposefs(
            [
                "--min-version=0", "--max-version=0", "--from-file",
                Fixtures.url("upstream/special.dump").path, out
            ],
            environment: ["CFS_PARSE_STRICT": "1"])
        #expect(r.status == 0)
        #expect(r.stderr.isEmpty)
        let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(SHA256Reference.hex(image) == (try Fixtures.token("upstream/special.dump.sha256")))
    }

    @Test func strictModeComesFromTheEnvironment() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let input = Fixtures.url("upstream/no-newline.dump").path
        let out = dir.file("out.cfs")
        // no-newline.dump's root has rdev 10: strict mode fails on line 1.
        let strict = try Tools.mkcomposefs(
            ["--min-version=0", "--max-version=0", "--from-file", input, out],
            environment: ["CFS_PARSE_STRICT": "1"])
        #expect(strict.status == 1)
        #expect(strict.err.hasPrefix("mkcomposefs: "))
        #expect(strict.err.contains("line 1: Non-zero devnum on non-device"))
        #expect(try dir.contents() == [])
        let unterminated = try dir.write("unterminated.dump", b(String(rootLine.dropLast())))
        let missing = try Tools.mkcomposefs(["--from-file", unterminated, out], environment: ["CFS_PARSE_STRICT": ""])
        #expect(missing.status == 1)
        #expect(missing.err.contains("Missing trailing newline"))
        #expect(try dir.contents() == ["unterminated.dump"])
        try FileManager.default.removeItem(atPath: unterminated)
        let lenient = try Tools.mkcomposefs(["--min-version=0", "--max-version=0", "--from-file", input, out])
        #expect(lenient.status == 0)
        let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(SHA256Reference.hex(image) == (try Fixtures.token("upstream/no-newline.dump.sha256")))
    }

    @Test(arguments: [
        ("big-inline", "Inline content size 5004 exceeds maximum 5000"),
        ("dir-hardlink", "Directories can't be hardlinked"),
        ("dot-name", "Invalid . or .. in path: /."),
        ("dotdot-name", "Invalid . or .. in path: /.."),
        ("empty-link-name", "Invalid symlink"),
        ("empty-name", "Can't add child"),
        ("empty-xattr-key", "Can't set xattr"),
        ("long-link", "Invalid symlink"),
        ("no-ftype", "Invalid mode 0"),
        ("self-hardlink", "Self-referential hardlink /037blockdev"),
        ("too-big", "cannot write file: File too large")
    ])
    func shouldFailLeavesNoImage(name: String, message: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let out = dir.file("image.cfs")
        let r = try Tools.mkcomposefs(["--from-file", Fixtures.url("should-fail/should-fail-\(name).dump").path, out])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: "))
        #expect(r.err.contains(message), "stderr: \(r.err)")
        #expect(r.stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try dir.contents() == [], "nothing left behind, not even a temporary file")
    }

    @Test func missingSourceFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let r = try Tools.mkcomposefs(["--from-file", dir.file("nope.dump"), dir.file("out.cfs")])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: "))
        #expect(r.err.contains("No such file or directory"))
        #expect(try dir.contents() == [])
    }

    // MARK: composefs-info errors

    @Test func infoUsageErrors() throws {
        var r = try Tools.info([])
        #expect(r.status == 1)
        #expect(r.err == "composefs-info: No command specified\n" + Self.infoUsage)
        r = try Tools.info(["frob"])
        #expect(r.status == 1)
        #expect(r.err == "composefs-info: Unknown command 'frob'\n\n")
        r = try Tools.info(["dump"])
        #expect(r.status == 1)
        #expect(r.err == "composefs-info: No image path specified\n" + Self.infoUsage)
        r = try Tools.info(["measure-file"])
        #expect(r.status == 1)
        #expect(r.err == "composefs-info: No files specified\n" + Self.infoUsage)
        r = try Tools.info(["--filter=a/b", "dump", "x.cfs"])
        #expect(r.status == 1)
        #expect(r.err == "composefs-info: Filter must be a single name: a/b: Invalid argument\n")
        #expect(r.stdout.isEmpty)
    }

    @Test func missingObjectsNeedsABasedir() throws {
        let r = try Tools.info(["missing-objects", Fixtures.url("vectors/small-128.cfs").path])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.err.hasPrefix("composefs-info: "))
        #expect(r.err.contains("--basedir"))
        #expect(r.err.hasSuffix(Self.infoUsage))
    }

    @Test func imagesThatCannotBeOpenedOrLoaded() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let missing = dir.file("missing.cfs")
        var r = try Tools.info(["dump", missing])
        #expect(r.status == 1)
        #expect(r.err == "composefs-info: Failed to open '\(missing)': No such file or directory\n")
        let junk = try dir.write("junk.cfs", [UInt8](repeating: 0x41, count: 8192))
        r = try Tools.info(["ls", junk])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("composefs-info: Failed to load '\(junk)': Invalid argument"))
        // A damaged image prints nothing at all, not a partial listing.
        var image = try ImageWriter.write(try DumpParser.parse(try Fixtures.bytes("upstream/special.dump")))
        image.removeLast(4096)
        let truncated = try dir.write("truncated.cfs", image)
        for command in ["dump", "ls"] {
            r = try Tools.info([command, truncated])
            #expect(r.status == 1)
            #expect(r.stdout.isEmpty)
            #expect(r.err.hasPrefix("composefs-info: Failed to load '\(truncated)': "))
        }
        let tiny = try dir.write("tiny.cfs", [1, 2, 3])
        r = try Tools.info(["objects", tiny])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("composefs-info: Failed to load '\(tiny)': Invalid argument"))
    }

    // MARK: composefs-info output

    @Test func dumpAndLsOfUpstreamImage() throws {
        let image = Fixtures.url("vectors/small-128.cfs").path
        let dump = try Tools.info(["dump", image])
        #expect(dump.status == 0)
        #expect(dump.out == (try Fixtures.text("vectors/small-128.info-dump")))
        let ls = try Tools.info(["ls", image])
        #expect(ls.status == 0)
        #expect(ls.out == (try Fixtures.text("vectors/small-128.info-ls")))
        let objects = try Tools.info(["objects", image])
        #expect(objects.status == 0)
        #expect(objects.out == (try Fixtures.text("vectors/small-128.info-objects")))
    }

    @Test func objectsAreSortedAndMergedAcrossImages() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let first = Fixtures.url("vectors/small-128.cfs").path
        let second = try dir.write("small-187.cfs", try Vector(name: "small-187").upstreamImage())
        let r = try Tools.info(["objects", first, second, first])
        #expect(r.status == 0)
        var expected = Set<String>()
        for name in ["small-128", "small-187"] {
            for line in try Fixtures.text("vectors/\(name).info-objects").split(separator: "\n") { expected.insert(String(line)) }
        }
        #expect(expected.count == 9)   // 5 + 4, none shared
        #expect(r.out == expected.sorted().map { $0 + "\n" }.joined())
    }

    @Test func missingObjectsListsOnlyAbsentObjects() throws {
        let store = try TemporaryDirectory()
        defer { store.remove() }
        let objects = try Fixtures.text("vectors/small-128.info-objects").split(separator: "\n").map(String.init)
        #expect(objects.count == 5)
        // Put the first and the last object in the store.
        for o in [objects[0], objects[4]] {
            let parts = o.split(separator: "/")
            try FileManager.default.createDirectory(atPath: store.file(String(parts[0])), withIntermediateDirectories: true)
            try store.write(o, b("object"))
        }
        let image = Fixtures.url("vectors/small-128.cfs").path
        let r = try Tools.info(["--basedir=\(store.path)", "missing-objects", image])
        #expect(r.status == 0)
        #expect(r.out == objects[1...3].map { $0 + "\n" }.joined())
        // An empty store misses all of them.
        let empty = try TemporaryDirectory()
        defer { empty.remove() }
        let all = try Tools.info(["--basedir", empty.path, "missing-objects", image])
        #expect(all.out == objects.map { $0 + "\n" }.joined())
    }

    @Test func measureFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let hello = try dir.write("hello", b("hello world\n"))
        let empty = try dir.write("empty", [])
        let big = try dir.write("big", pseudoRandomBytes(3 * 4096 + 1, seed: 3))
        let r = try Tools.info(["measure-file", hello, empty, big])
        #expect(r.status == 0)
        #expect(
            r.out == """
                37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92
                3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95
                \(FsVerity.digest(pseudoRandomBytes(3 * 4096 + 1, seed: 3)).hexString)

                """)
        #expect(r.stderr.isEmpty)
        let missing = dir.file("missing")
        let m = try Tools.info(["measure-file", missing])
        #expect(m.status == 1)
        #expect(m.err == "composefs-info: Failed to open '\(missing)': No such file or directory\n")
    }

    @Test func filterLoadsOnlyNamedTopLevelEntries() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let image = try dir.write(
            "f.cfs",
            try ImageWriter.write(
                try parseDump(
                    rootLine + """
                        /a 4096 40755 2 0 0 0 0.0 - - -
                        /a/x 1 100644 1 0 0 0 0.0 aa/xx - -
                        /b 1 100644 1 0 0 0 0.0 bb/yy - -
                        /c 1 100644 1 0 0 0 0.0 cc/zz - -

                        """)))
        let r = try Tools.info(["--filter=a", "--filter", "c", "dump", image])
        #expect(r.status == 0)
        #expect(
            r.out == """
                / 4096 40755 3 0 0 0 0.0 - - -
                /a 40 40755 2 0 0 0 0.0 - - -
                /a/x 1 100644 1 0 0 0 0.0 aa/xx - -
                /c 1 100644 1 0 0 0 0.0 cc/zz - -

                """)
        let objects = try Tools.info(["--filter=b", "objects", image])
        #expect(objects.out == "bb/yy\n")
    }

    @Test func redirectReadBackPrintsTheTruePayload() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let image = try dir.write("r.cfs", try ImageWriter.write(try parseDump(rootLine + "/f 10 100644 1 0 0 0 0.0 a/b - -\n")))
        let r = try Tools.info(["dump", image])
        #expect(r.status == 0)
        #expect(r.stdout == b(rootLine + "/f 10 100644 1 0 0 0 0.0 a/b - -\n"))
        #expect(try Tools.info(["objects", image]).stdout == b("a/b\n"))
    }

    @Test func dumpPipedBackIntoMkcomposefsGivesTheSameImage() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let v = Vector(name: "small-187")
        let image = try v.upstreamImage()
        let original = try dir.write("orig.cfs", image)
        let dump = try Tools.info(["dump", original])
        #expect(dump.status == 0)
        let out = dir.file("again.cfs")
        let r = try Tools.mkcomposefs(
            try v.args + ["--from-file", "-", out], stdin: dump.stdout,
            environment: ["CFS_PARSE_STRICT": "1"])
        #expect(r.status == 0, "\(r.err)")
        #expect(firstDifference([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))), image) == nil)
    }
}

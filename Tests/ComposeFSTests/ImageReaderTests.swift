import Glibc
import Testing

@testable import ComposeFS

/// The image reader (FORMAT.md §15): upstream's `composefs-info` outputs,
/// round trips, the redirect read-back fix, filters, and damaged images.
@Suite struct ImageReaderTests {
    func dump(_ image: [UInt8]) throws -> String {
        DumpPrinter.dump(try ImageReader.load(image).root).text
    }

    func ls(_ image: [UInt8]) throws -> String {
        var out: [UInt8] = []
        DumpPrinter.list(try ImageReader.load(image).root) { out += $0 }
        return out.text
    }

    /// `composefs-info objects`: sorted, without duplicates.
    func objects(_ images: [[UInt8]]) throws -> String {
        var all: [[UInt8]] = []
        for image in images { all += DumpPrinter.objects(try ImageReader.load(image).root) }
        all.sort(by: [UInt8].byteOrderLess)
        var out = ""
        var previous: [UInt8]?
        for o in all where o != previous {
            previous = o
            out += o.text + "\n"
        }
        return out
    }

    func loadError(_ image: [UInt8]) -> ImageReader.Error? {
        do {
            _ = try ImageReader.load(image)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Upstream's composefs-info outputs

    @Test func upstreamImageFileMatchesRecordedOutputs() throws {
        let image = try Fixtures.bytes("vectors/small-128.cfs")
        #expect(SHA256Reference.hex(image) == (try Fixtures.token("vectors/small-128.sha256")))
        #expect(try dump(image) == (try Fixtures.text("vectors/small-128.info-dump")))
        #expect(try ls(image) == (try Fixtures.text("vectors/small-128.info-ls")))
        #expect(try objects([image]) == (try Fixtures.text("vectors/small-128.info-objects")))
    }

    @Test(arguments: Vector.all)
    func vectorOutputs(vector: Vector) throws {
        let image = try vector.upstreamImage()
        #expect(try dump(image) == (try Fixtures.text("vectors/\(vector.name).info-dump")))
        #expect(try ls(image) == (try Fixtures.text("vectors/\(vector.name).info-ls")))
        #expect(try objects([image]) == (try Fixtures.text("vectors/\(vector.name).info-objects")))
    }

    @Test func headerAndSuperblockAreExposed() throws {
        let image = try Vector(name: "small-336").upstreamImage()
        let loaded = try ImageReader.load(image)
        #expect(loaded.header.magic == 0xD078_629A)
        #expect(loaded.header.version == 1)
        #expect(loaded.header.composefsVersion == 1)   // upgraded: the vector has a whiteout
        #expect(loaded.superblock.magic == 0xE0F5_E1E2)
        #expect(loaded.superblock.blocks == UInt32(image.count / 4096))
        #expect(try ImageReader.header(image) == loaded.header)
    }

    // MARK: Round trips (§24.3)

    @Test(arguments: [(UInt32(0), UInt32(0)), (1, 1), (0, 1)])
    func specialRoundTrip(min: UInt32, max: UInt32) throws {
        let options = ImageWriter.Options(minVersion: min, maxVersion: max)
        let image = try ImageWriter.write(try DumpParser.parse(try Fixtures.bytes("upstream/special.dump")), options: options)
        let text = DumpPrinter.dump(try ImageReader.load(image).root)
        let again = try ImageWriter.write(try DumpParser.parse(text, strict: true), options: options)
        #expect(firstDifference(again, image) == nil)
    }

    /// dump → mkcomposefs gives the same image, except where a hardlink
    /// target is not the first path to its inode: the reader makes the first
    /// path the real node, which moves the inode in BFS order (small-128).
    /// The dump is always a fixed point, and a second round trip is too.
    @Test(arguments: Vector.all)
    func vectorRoundTrip(vector: Vector) throws {
        let image = try vector.upstreamImage()
        let text = DumpPrinter.dump(try ImageReader.load(image).root)
        let again = try ImageWriter.write(try DumpParser.parse(text, strict: true), options: try vector.options)
        if vector.name == "small-128" {
            #expect(firstDifference(again, image) != nil)
        } else {
            #expect(firstDifference(again, image) == nil)
        }
        #expect(DumpPrinter.dump(try ImageReader.load(again).root) == text)
        let third = try ImageWriter.write(
            try DumpParser.parse(DumpPrinter.dump(try ImageReader.load(again).root), strict: true),
            options: try vector.options)
        #expect(firstDifference(third, again) == nil)
    }

    @Test func specialDumpReadsBackAsUpstreamPrintsIt() throws {
        let image = try ImageWriter.write(
            try DumpParser.parse(try Fixtures.bytes("upstream/special.dump")),
            options: .init(minVersion: 0, maxVersion: 0))
        let lines = try dump(image).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first == "/ 4096 40555 2 0 0 0 1633950376.0 - - - trusted.foo1=bar-1 user.foo2=bar-2")
        #expect(lines.contains("/blockdev 0 60777 1 0 0 107690 1633950376.0 - - - trusted.bar=bar-2"))
        // Inline xattrs first, then shared ones (user.foo=bar-2 is on several files).
        #expect(
            lines.contains(
                #"/escaped-xattr 0 100777 1 0 0 0 1633950376.0 - - - trusted.overlay.redirect=/foo\n user.overlay.redirect=/foo\n user.foo=bar-2"#
            ))
        #expect(lines.contains(#"/inline 15 100777 1 0 0 0 1633950376.0 - FOOBAR\nINAFILE\n - user.foo=bar-2"#))
        #expect(lines.contains("/whiteout 0 20777 1 0 0 0 1633950376.0 - - - trusted.foo=bar-2"))
        #expect(lines.last == "")
    }

    // MARK: Redirect read-back (§15.3, fixed in this project)

    @Test func redirectWithoutPaddingReadsBackTheTruePayload() throws {
        let root = try parseDump(rootLine + "/f 10 100644 1 0 0 0 0.0 a/b - -\n")
        let image = try ImageWriter.write(root)
        // The redirect entry "/a/b" is 24 bytes with no padding, and the
        // chunk index FF FF FF FF follows it: the reference over-reads that.
        let entry = [16, 4, 4, 0] + b("overlay.redirect") + b("/a/b")
        let at = try #require(firstIndex(of: entry, in: image))
        #expect(Array(image[(at + entry.count)..<(at + entry.count + 4)]) == [0xFF, 0xFF, 0xFF, 0xFF])
        let f = try #require(try ImageReader.load(image).root.child(named: b("f")))
        #expect(f.payload == b("a/b"))
        #expect(try dump(image) == rootLine + "/f 10 100644 1 0 0 0 0.0 a/b - -\n")
        #expect(try ls(image) == "/f\t@ a/b\n")
        #expect(try objects([image]) == "a/b\n")
    }

    @Test func redirectPayloadsOfEveryPaddingLength() throws {
        for n in 1...9 {
            let payload = String(repeating: "p", count: n)
            let image = try ImageWriter.write(try parseDump(rootLine + "/f 10 100644 1 0 0 0 0.0 \(payload) - -\n"))
            #expect(try ImageReader.load(image).root.child(named: b("f"))?.payload == b(payload), "length \(n)")
        }
    }

    func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }

    // MARK: Hardlinks

    @Test func firstPathToAnInodeIsTheRealNode() throws {
        let image = try ImageWriter.write(
            try parseDump(
                rootLine + """
                    /a 0 @100644 1 0 0 0 0.0 /z - -
                    /d 4096 40755 2 0 0 0 0.0 - - -
                    /d/m 0 @100644 1 0 0 0 0.0 /z - -
                    /z 5 100644 3 0 0 0 0.0 ab/cd - -

                    """))
        #expect(
            try dump(image) == """
                / 4096 40755 3 0 0 0 0.0 - - -
                /a 5 100644 3 0 0 0 0.0 ab/cd - -
                /d 40 40755 2 0 0 0 0.0 - - -
                /d/m 5 @100644 3 0 0 0 0.0 /a - -
                /z 5 @100644 3 0 0 0 0.0 /a - -

                """)
        #expect(try objects([image]) == "ab/cd\n")
    }

    // MARK: Filter

    @Test func filterLoadsOnlyNamedRootEntries() throws {
        let image = try ImageWriter.write(
            try parseDump(
                rootLine + """
                    /a 4096 40755 2 0 0 0 0.0 - - -
                    /a/x 0 100644 1 0 0 0 0.0 - - -
                    /b 0 100644 1 0 0 0 0.0 - - -
                    /c 4096 40755 2 0 0 0 0.0 - - -
                    /c/a 0 100644 1 0 0 0 0.0 - - -

                    """))
        let root = try ImageReader.load(image, filter: [b("a"), b("b"), b("nope")]).root
        #expect(
            DumpPrinter.dump(root).text == """
                / 4096 40755 4 0 0 0 0.0 - - -
                /a 40 40755 2 0 0 0 0.0 - - -
                /a/x 0 100644 1 0 0 0 0.0 - - -
                /b 0 100644 1 0 0 0 0.0 - - -

                """)
        #expect(try ImageReader.load(image, filter: []).root.children.isEmpty)
    }

    // MARK: Container errors

    @Test func imagesSmallerThanOneBlock() throws {
        #expect(loadError([]) == .tooSmall(size: 0))
        #expect(loadError([UInt8](repeating: 0, count: 4095)) == .tooSmall(size: 4095))
        let image = try ImageWriter.write(try parseDump(rootLine))
        #expect(loadError(Array(image[0..<4095])) == .tooSmall(size: 4095))
    }

    @Test func wrongMagicAndVersions() throws {
        let image = try ImageWriter.write(try parseDump(rootLine))
        var badMagic = image
        badMagic[0] = 0x9B
        #expect(loadError(badMagic) == .notComposefs(magic: 0xD078_629B))
        #expect(throws: ImageReader.Error.notComposefs(magic: 0xD078_629B)) { try ImageReader.header(badMagic) }
        var badVersion = image
        badVersion[4] = 2
        #expect(loadError(badVersion) == .unsupportedHeaderVersion(2))
        var badEROFS = image
        badEROFS[1024] = 0
        #expect(loadError(badEROFS) == .notEROFS(magic: 0xE0F5_E100))
        var badBlockSize = image
        badBlockSize[1024 + 12] = 13
        #expect(loadError(badBlockSize) == .unsupportedBlockSize(bits: 13))
        // The composefs_version field is not checked.
        var otherFormat = image
        otherFormat[12] = 7
        #expect(loadError(otherFormat) == nil)
        #expect(loadError([UInt8](repeating: 0, count: 4096)) == .notComposefs(magic: 0))
        #expect(ImageReader.Error.unsupportedHeaderVersion(2).description.hasPrefix("Operation not supported"))
        #expect(ImageReader.Error.tooSmall(size: 1).description.hasPrefix("Invalid argument"))
    }

    @Test func outOfRangeRootAndMetadata() throws {
        let image = try ImageWriter.write(try parseDump(rootLine))
        var badRoot = image
        badRoot[1024 + 14] = 0xFF
        badRoot[1024 + 15] = 0xFF
        #expect(loadError(badRoot) != nil)
        var badMeta = image
        badMeta[1024 + 40] = 0xFF
        #expect(loadError(badMeta) != nil)
        var rootNotDir = image
        rootNotDir[0x480 + 5] = 0x81   // root mode 0100755
        #expect(loadError(rootNotDir) != nil)
    }

    // MARK: Robustness: damaged images never crash or hang

    static func sampleImage() throws -> [UInt8] {
        try ImageWriter.write(
            try DumpParser.parse(try Fixtures.bytes("upstream/special.dump")),
            options: .init(minVersion: 1, maxVersion: 1))
    }

    @Test(.timeLimit(.minutes(1)))
    func truncatedImages() throws {
        let image = try Self.sampleImage()
        var cuts = Array(stride(from: 0, to: image.count, by: 512))
        cuts += [1, 31, 32, 1023, 1024, 1100, 1151, 1152, 1153, 4097, 5000, 12287, 12289, image.count - 1]
        // The last data block holds inline-large3's content, so every cut
        // loses something the reader needs.
        for cut in cuts {
            #expect(loadError(Array(image[0..<cut])) != nil, "cut at \(cut)")
        }
        #expect(loadError(image) == nil)
    }

    /// 2000 damaged images in four parallel parts: half are loaded into a
    /// tree, half walked and printed the way composefs-info does. Each must
    /// either succeed or throw ImageReader.Error (a crash ends the run).
    @Test(.timeLimit(.minutes(1)), arguments: 0..<4)
    func bitFlips(part: Int) throws {
        let image = try Self.sampleImage()
        let expected = try dump(image)
        var rng = SplitMix64(seed: 0xC0FF_EE00_1234_5678 &+ UInt64(part))
        // Damage the metadata (header, superblock, inodes, shared xattrs,
        // directory blocks) more often than the tail of the file.
        let metadataEnd = min(image.count, 20480)
        var loaded = 0
        var walked = 0
        var failed = 0
        for iteration in 0..<500 {
            var damaged = image
            let flips = 1 + Int(rng.next() % 4)
            for _ in 0..<flips {
                let range = iteration % 4 == 3 ? image.count : metadataEnd
                let offset = Int(rng.next() % UInt64(range))
                damaged[offset] ^= UInt8(1) << UInt8(rng.next() % 8)
            }
            do throws(ImageReader.Error) {
                if iteration % 2 == 0 {
                    _ = try ImageReader.load(damaged)
                    loaded += 1
                } else {
                    _ = try walkDump(ByteReader(damaged))
                    walked += 1
                }
            } catch {
                failed += 1
            }
        }
        #expect(loaded + walked + failed == 500)
        #expect(failed > 0)
        #expect(loaded > 0)
        #expect(walked > 0)
        // The pristine image is untouched by all this.
        #expect(try dump(image) == expected)
    }

    @Test(.timeLimit(.minutes(1)))
    func truncatedImagesWalked() throws {
        let image = try Self.sampleImage()
        for cut in stride(from: 0, to: image.count, by: 512) {
            #expect(throws: ImageReader.Error.self) { try walkDump(ByteReader(Array(image[0..<cut]))) }
        }
    }

    // MARK: The streaming walk (what composefs-info uses)

    /// `composefs-info dump` through `ImageReader.walk`.
    func walkDump(_ reader: ByteReader, filter: Set<[UInt8]>? = nil) throws(ImageReader.Error) -> String {
        var out: [UInt8] = []
        try ImageReader.walk(reader, filter: filter) { entry in
            DumpPrinter.line(entry.node, path: entry.path, hardlinkTarget: entry.hardlinkTarget, into: &out)
        }
        return out.text
    }

    @Test(arguments: Vector.all)
    func walkPrintsWhatLoadPrints(vector: Vector) throws {
        let image = try vector.upstreamImage()
        let expected = try Fixtures.text("vectors/\(vector.name).info-dump")
        #expect(try walkDump(ByteReader(image)) == expected)
        // Read on demand from a file, as the tool does.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write("image.cfs", image)
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(try walkDump(ByteReader(fd: fd, size: image.count)) == expected)
    }

    @Test func walkWithFilter() throws {
        let image = try ImageWriter.write(
            try parseDump(
                rootLine + """
                    /a 4096 40755 2 0 0 0 0.0 - - -
                    /a/x 0 100644 1 0 0 0 0.0 - - -
                    /b 0 @100644 1 0 0 0 0.0 /a/x - -

                    """))
        #expect(
            try walkDump(ByteReader(image), filter: [b("b")]) == """
                / 4096 40755 3 0 0 0 0.0 - - -
                /b 0 100644 1 0 0 0 0.0 - - -

                """)
        #expect(try walkDump(ByteReader(image)) == (try dump(image)))
    }

    @Test func hostileDirectoryEntriesDoNotLoop() throws {
        let image = try ImageWriter.write(try parseDump(rootLine + "/d 4096 40755 2 0 0 0 0.0 - - -\n/d/x 0 100644 1 0 0 0 0.0 - - -\n"))
        #expect(try ImageReader.load(image).root.child(named: b("d"))?.child(named: b("x")) != nil)
        // /d's inline directory tail: three 12-byte headers, then the names
        // ".", ".." and "x". Point x's entry at the root's nid: the second
        // path to the root must become a hardlink entry, not a cycle.
        let names = try #require(firstIndex(of: b("...x"), in: image))
        let xHeader = names - 12
        #expect(le(image, xHeader + 8, 2) == 39)   // nameoff of "x"
        let rootNid = le(image, 1024 + 14, 2)
        var hostile = image
        for k in 0..<8 { hostile[xHeader + k] = UInt8(truncatingIfNeeded: rootNid >> (8 * UInt64(k))) }
        let loaded = try ImageReader.load(hostile)
        let x = try #require(loaded.root.child(named: b("d"))?.child(named: b("x")))
        #expect(x.hardlinkTarget === loaded.root)
        #expect(DumpPrinter.dump(loaded.root).text.hasSuffix("/d/x 4096 @40755 3 0 0 0 0.0 / - -\n"))
    }
}

import Testing

@testable import ComposeFS

/// The EROFS writer: the worked example of FORMAT.md §24.6 byte by byte,
/// upstream's golden images, version selection and the writer's checks.
@Suite struct ImageWriterTests {
    func write(_ text: String, min: UInt32 = 0, max: UInt32 = 1) throws -> [UInt8] {
        try ImageWriter.write(try parseDump(text), options: .init(minVersion: min, maxVersion: max))
    }

    func readBack(_ image: [UInt8]) throws -> String {
        DumpPrinter.dump(try ImageReader.load(image).root).text
    }

    func headerVersion(_ image: [UInt8]) -> UInt64 { le(image, 12, 4) }

    // MARK: Worked example (§24.6)

    @Test func workedExampleSizeAndDigest() throws {
        let image = try write(rootLine)
        #expect(image.count == 16384)
        #expect(FsVerity.digest(image).hexString == "8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682")
    }

    @Test func workedExampleHeaderAndSuperblock() throws {
        let image = try write(rootLine)
        #expect(Array(image[0..<32]) == hexBytes("9a6278d0 01000000 00000000 00000000") + [UInt8](repeating: 0, count: 16))
        #expect(image[32..<1024].allSatisfy { $0 == 0 })
        let sb = Array(image[1024..<1152])
        let expected =
            hexBytes(
                """
                e2e1f5e0 00000000 06000000 0c 00 2400
                0101000000000000 0000000000000000 00000000
                04000000 00000000 02000000
                """) + [UInt8](repeating: 0, count: 80)
        #expect(sb == expected)
        // Field by field, for a readable failure.
        #expect(le(image, 1024, 4) == 0xE0F5_E1E2)
        #expect(le(image, 1024 + 8, 4) == 6)   // feature_compat
        #expect(image[1024 + 12] == 12)   // blkszbits
        #expect(le(image, 1024 + 14, 2) == 36)   // root_nid
        #expect(le(image, 1024 + 16, 8) == 257)   // inos
        #expect(le(image, 1024 + 24, 8) == 0)   // build_time
        #expect(le(image, 1024 + 36, 4) == 4)   // blocks
        #expect(le(image, 1024 + 40, 4) == 0)   // meta_blkaddr
        #expect(le(image, 1024 + 44, 4) == 2)   // xattr_blkaddr
        #expect(le(image, 1024 + 80, 4) == 0)   // feature_incompat
    }

    @Test func workedExampleRootInodeAndXattrs() throws {
        let image = try write(rootLine)
        #expect(Array(image[0x480..<0x4A0]) == hexBytes("0000 0600 ed41 0200 00100000 00000000 03000000 00000000 0000 0000 00000000"))
        let xattrArea = hexBytes("ffffefff 00 00000000000000 0e040100") + b("overlay.opaque") + [0x79, 0x00]
        #expect(xattrArea.count == 32)
        #expect(Array(image[0x4A0..<0x4C0]) == xattrArea)
        // The filter bit of trusted.overlay.opaque is 20 (§11.5).
        #expect(le(image, 0x4A0, 4) == 0xFFEF_FFFF)
    }

    @Test func workedExampleWhiteoutInodes() throws {
        let image = try write(rootLine)
        for i in 0..<256 {
            let o = 0x4C0 + 32 * i   // nid 38 + i
            // compact, FLAT_PLAIN, no xattrs, mode 020644, nlink 1, size 0, rdev 0, ino 1 + i
            var expected = hexBytes("0000 0000 a421 0100 00000000 00000000 00000000")
            expected += [UInt8(truncatingIfNeeded: i + 1), UInt8((i + 1) >> 8), 0, 0]
            expected += [UInt8](repeating: 0, count: 8)
            #expect(Array(image[o..<(o + 32)]) == expected, "whiteout \(i)")
        }
        let inodesEnd = 0x4C0 + 32 * 256
        #expect(inodesEnd == 9408)
        #expect(image[inodesEnd..<12288].allSatisfy { $0 == 0 })
    }

    @Test func workedExampleRootDirectoryBlock() throws {
        let image = try write(rootLine)
        let block = Array(image[12288..<16384])
        // 258 entries: ".", "..", "00"…"ff"; names start at 12 × 258.
        var expected: [UInt8] = []
        func dirent(nid: UInt64, nameoff: Int, type: UInt8) {
            for k in 0..<8 { expected.append(UInt8(truncatingIfNeeded: nid >> (8 * UInt64(k)))) }
            expected += [UInt8(nameoff & 0xFF), UInt8(nameoff >> 8), type, 0]
        }
        dirent(nid: 36, nameoff: 3096, type: 2)
        dirent(nid: 36, nameoff: 3097, type: 2)
        for i in 0..<256 { dirent(nid: 38 + UInt64(i), nameoff: 3099 + 2 * i, type: 3) }
        expected += b("...")
        let hex = Array("0123456789abcdef".utf8)
        for i in 0..<256 { expected += [hex[i >> 4], hex[i & 15]] }
        expected += [UInt8](repeating: 0, count: 4096 - expected.count)
        #expect(block == expected)
    }

    // MARK: Golden images (§24.4) and vectors

    @Test(arguments: [
        ("upstream/special.dump", UInt32(0), UInt32(0), "upstream/special.dump.sha256", true, 28672),
        ("upstream/special.dump", 1, 1, "upstream/special_v1.dump.sha256", true, 28672),
        ("upstream/no-newline.dump", 0, 0, "upstream/no-newline.dump.sha256", false, 16384)
    ])
    func upstreamGoldenImages(dump: String, min: UInt32, max: UInt32, sha: String, strict: Bool, size: Int) throws {
        let root = try DumpParser.parse(try Fixtures.bytes(dump), strict: strict)
        let image = try ImageWriter.write(root, options: .init(minVersion: min, maxVersion: max))
        #expect(image.count == size)
        #expect(SHA256Reference.hex(image) == (try Fixtures.token(sha)))
    }

    @Test(arguments: Vector.all)
    func conformanceVectors(vector: Vector) throws {
        let image = try ImageWriter.write(try DumpParser.parse(try vector.dump), options: try vector.options)
        #expect(SHA256Reference.hex(image) == (try vector.sha256))
        #expect(FsVerity.digest(image).hexString == (try vector.digest))
    }

    @Test func smallVectorImageIsByteIdenticalToUpstreamFile() throws {
        let v = Vector(name: "small-128")
        let upstream = try Fixtures.bytes("vectors/small-128.cfs")
        let image = try ImageWriter.write(try DumpParser.parse(try v.dump), options: try v.options)
        #expect(firstDifference(image, upstream) == nil)
    }

    // MARK: Version selection (§1.3)

    static let plainTree = rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n"
    static let whiteoutTree = rootLine + "/w 0 20644 1 0 0 0 0.0 - - -\n"

    @Test func versionDefaultsAndLimits() throws {
        #expect(headerVersion(try write(Self.plainTree)) == 0)   // defaults 0...1
        #expect(headerVersion(try write(Self.plainTree, min: 0, max: 0)) == 0)   // only --max-version=0
        #expect(headerVersion(try write(Self.plainTree, min: 1, max: 1)) == 1)
        #expect(headerVersion(try write(Self.plainTree, min: 1, max: 0)) == 1)   // only --min-version=1: max raised
    }

    @Test func versionUpgradesForWhiteouts() throws {
        #expect(headerVersion(try write(Self.whiteoutTree)) == 1)
        #expect(headerVersion(try write(Self.whiteoutTree, min: 0, max: 0)) == 0)
        #expect(headerVersion(try write(Self.whiteoutTree, min: 1, max: 0)) == 1)
        // A character device with rdev ≠ 0 is not a whiteout.
        #expect(headerVersion(try write(rootLine + "/c 0 20644 1 0 0 5 0.0 - - -\n")) == 0)
    }

    @Test func versionsAboveOneAreInvalid() throws {
        let root = try parseDump(Self.plainTree)
        #expect(throws: ImageWriter.Error.invalidVersion(min: 2, max: 2)) {
            try ImageWriter.write(root, options: .init(minVersion: 2, maxVersion: 2))
        }
        #expect(throws: ImageWriter.Error.invalidVersion(min: 0, max: 2)) {
            try ImageWriter.write(root, options: .init(minVersion: 0, maxVersion: 2))
        }
        #expect(throws: ImageWriter.Error.invalidVersion(min: 2, max: 0)) {
            try ImageWriter.write(root, options: .init(minVersion: 2, maxVersion: 0))
        }
        // A negative version becomes a huge unsigned one.
        #expect(throws: ImageWriter.Error.invalidVersion(min: UInt32.max, max: 0)) {
            try ImageWriter.write(root, options: .init(minVersion: UInt32.max, maxVersion: 0))
        }
        #expect(ImageWriter.Error.invalidVersion(min: 2, max: 2).description.hasPrefix("Invalid argument"))
    }

    @Test func versionsWithoutWhiteoutsDifferOnlyInTheHeaderVersion() throws {
        let v0 = try write(Self.plainTree, min: 0, max: 0)
        let v1 = try write(Self.plainTree, min: 1, max: 1)
        #expect(v0.count == v1.count)
        let differing = v0.indices.filter { v0[$0] != v1[$0] }
        #expect(differing == [12])
        #expect(v1[12] == 1 && v0[12] == 0)
    }

    // MARK: Whiteouts (§5.3, §5.4)

    @Test func whiteoutsReadBackAsCharacterDevices() throws {
        let v1 = try write(Self.whiteoutTree)
        #expect(
            try readBack(v1) == """
                / 4096 40755 2 0 0 0 0.0 - - - trusted.overlay.opaque=x user.overlay.opaque=x
                /w 0 20644 1 0 0 0 0.0 - - -

                """)
        let v0 = try write(Self.whiteoutTree, min: 0, max: 0)
        #expect(
            try readBack(v0) == """
                / 4096 40755 2 0 0 0 0.0 - - -
                /w 0 20644 1 0 0 0 0.0 - - -

                """)
        // On disk the whiteout is a regular file with escaped markers.
        #expect(contains(v1, b("overlay.overlay.whiteout")))
        #expect(contains(v1, b("overlay.overlay.opaque")))
        #expect(!contains(v0, b("overlay.overlay.opaque")))
    }

    @Test func whiteoutInASubdirectoryMarksItsParent() throws {
        let image = try write(rootLine + "/d 4096 40755 2 0 0 0 0.0 - - -\n/d/w 0 20000 1 0 0 0 0.0 - - -\n")
        #expect(
            try readBack(image) == """
                / 4096 40755 3 0 0 0 0.0 - - -
                /d 40 40755 2 0 0 0 0.0 - - - trusted.overlay.opaque=x user.overlay.opaque=x
                /d/w 0 20000 1 0 0 0 0.0 - - -

                """)
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return true }
        }
        return false
    }

    @Test func rootWhiteoutsAreHiddenOnReadBack() throws {
        let image = try write(rootLine)
        let loaded = try ImageReader.load(image)
        #expect(loaded.root.children.isEmpty)
        #expect(loaded.superblock.inodeCount == 257)
        #expect(DumpPrinter.dump(loaded.root).text == rootLine)
    }

    @Test func existingRootNamesAreNotWhiteouted() throws {
        let image = try write(rootLine + "/00 0 100644 1 0 0 0 0.0 - - -\n/ff 4096 40755 2 0 0 0 0.0 - - -\n")
        let loaded = try ImageReader.load(image)
        #expect(loaded.superblock.inodeCount == 1 + 2 + 254)
        #expect(loaded.root.children.map(\.name) == [b("00"), b("ff")])
        #expect(loaded.root.child(named: b("00"))?.fileType == .regular)
        #expect(loaded.root.child(named: b("ff"))?.fileType == .directory)
    }

    @Test func rootSELinuxLabelIsCopiedToTheWhiteouts() throws {
        let image = try write(#"/ 4096 40755 2 0 0 0 0.0 - - - security.selinux=system_u:object_r:usr_t:s0\x00"# + "\n")
        // Shared (count > 1): the label appears once, in the shared table.
        let label = b("selinux") + b("system_u:object_r:usr_t:s0") + [0]
        var count = 0
        for i in 0...(image.count - label.count) where image[i] == label[0] && Array(image[i..<(i + label.count)]) == label {
            count += 1
        }
        #expect(count == 1)
        let root = try ImageReader.load(image).root
        #expect(root.xattrs == [Xattr("security.selinux", b("system_u:object_r:usr_t:s0") + [0])])
    }

    // MARK: Xattr handling

    @Test func overlayXattrsAreEscaped() throws {
        let image = try write(file("/f 0 100644 1 0 0 0 0.0 - - - trusted.overlay.foo=1 user.overlay.bar=2"))
        #expect(contains(image, b("overlay.overlay.foo")))
        #expect(!contains(image, b("overlay.overlay.bar")))
        let f = try #require(try ImageReader.load(image).root.child(named: b("f")))
        #expect(f.xattrs == [Xattr("trusted.overlay.foo", b("1")), Xattr("user.overlay.bar", b("2"))])
    }

    func file(_ line: String) -> String { rootLine + line + "\n" }

    @Test func aclFlag() throws {
        let acl = try write(file(#"/f 0 100644 1 0 0 0 0.0 - - - system.posix_acl_access=\x02\x00\x00\x00"#))
        #expect(le(acl, 8, 4) == 1)
        let aclDefault = try write(String(rootLine.dropLast()) + #" system.posix_acl_default=\x02\x00\x00\x00"# + "\n")
        #expect(le(aclDefault, 8, 4) == 1)
        let other = try write(file(#"/f 0 100644 1 0 0 0 0.0 - - - system.posix_acl_access2=x user.a=b"#))
        #expect(le(other, 8, 4) == 0)
    }

    @Test func externalFilesGetMetacopyAndRedirect() throws {
        let digest = "91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b"
        let image = try write(
            rootLine + """
                /a 4097 100644 1 0 0 0 0.0 91/e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b - \(digest)
                /b 10 100644 1 0 0 0 0.0 /abs - -
                /c 10 100644 1 0 0 0 0.0 - - -
                /i 3 100644 1 0 0 0 0.0 ignored abc \(digest)

                """)
        #expect(contains(image, [0, 36, 0, 1] + hexBytes(digest)))   // metacopy value
        #expect(contains(image, b("//abs")))   // "/" + payload, always
        #expect(
            try readBack(image) == rootLine + """
                /a 4097 100644 1 0 0 0 0.0 91/e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b - \(digest)
                /b 10 100644 1 0 0 0 0.0 /abs - -
                /c 10 100644 1 0 0 0 0.0 - - -
                /i 3 100644 1 0 0 0 0.0 - abc -

                """)
    }

    // MARK: Errors

    @Test func hardlinkToANodeOutsideTheTree() throws {
        let root = Node(mode: 0o40755)
        let d = Node(name: b("d"), mode: 0o40755)
        try root.addChild(d)
        let orphan = Node(name: b("o"), mode: 0o100644)
        try d.addChild(Node(name: b("l"), hardlinkTo: orphan, mode: 0o100644))
        #expect(throws: ImageWriter.Error.hardlinkTargetMissing(path: b("/d/l"))) { try ImageWriter.write(root) }
    }

    @Test func hardlinkLoops() throws {
        let root = Node(mode: 0o40755)
        let d = Node(name: b("d"), mode: 0o40755)
        try root.addChild(d)
        let a = Node(name: b("a"), mode: 0o100644)
        let bNode = Node(name: b("b"), hardlinkTo: a, mode: 0o100644)
        a.hardlinkTarget = bNode
        try d.addChild(a)
        try d.addChild(bNode)
        #expect(throws: ImageWriter.Error.hardlinkLoop(path: b("/d/a"))) { try ImageWriter.write(root) }
        // Parsed loops fail the same way.
        let parsed = try parseDump(rootLine + "/x 0 @100644 1 0 0 0 0.0 /y - -\n/y 0 @100644 1 0 0 0 0.0 /x - -\n")
        #expect(throws: ImageWriter.Error.self) { try ImageWriter.write(parsed) }
        #expect(ImageWriter.Error.hardlinkLoop(path: b("/x")).description.hasPrefix("Too many levels of symbolic links"))
    }

    /// The error path of an entry directly in the root.
    @Test func hardlinkErrorPathsInTheRoot() throws {
        let root = Node(mode: 0o40755)
        try root.addChild(Node(name: b("l"), hardlinkTo: Node(name: b("o"), mode: 0o100644), mode: 0o100644))
        #expect(throws: ImageWriter.Error.hardlinkTargetMissing(path: b("/l"))) { try ImageWriter.write(root) }
        let loop = try parseDump(rootLine + "/x 0 @100644 1 0 0 0 0.0 /y - -\n/y 0 @100644 1 0 0 0 0.0 /x - -\n")
        #expect(throws: ImageWriter.Error.hardlinkLoop(path: b("/x"))) { try ImageWriter.write(loop) }
    }

    @Test func fileSizeLimit() throws {
        let limit: UInt64 = 1 << 53
        #expect(throws: ImageWriter.Error.fileTooLarge(path: b("/big"), size: limit + 1)) {
            try write(file("/big \(limit + 1) 100644 1 0 0 0 0.0 x/y - -"))
        }
        let image = try write(file("/big \(limit) 100644 1 0 0 0 0.0 x/y - -"))
        #expect(try readBack(image) == file("/big 9007199254740992 100644 1 0 0 0 0.0 x/y - -"))
        #expect(ImageWriter.Error.fileTooLarge(path: b("/big"), size: 1).description.hasPrefix("File too large"))
    }

    @Test func structuralErrors() throws {
        #expect(throws: ImageWriter.Error.rootNotDirectory) { try ImageWriter.write(Node(mode: 0o100644)) }
        let root = Node(mode: 0o40755)
        let x = Node(name: b("x"), mode: 0o170644)
        try root.addChild(x)
        #expect(throws: ImageWriter.Error.invalidMode(path: b("/x"), mode: 0o170644)) { try ImageWriter.write(root) }
        let root2 = Node(mode: 0o40755)
        let d = Node(name: b("d"), mode: 0o40755)
        try root2.addChild(d)
        try d.addChild(Node(name: b("c"), mode: 0o100644))
        d.mode = 0o100644
        #expect(throws: ImageWriter.Error.childrenOnNonDirectory(path: b("/d"))) { try ImageWriter.write(root2) }
    }

    // MARK: Determinism

    @Test func theCallersTreeIsNotModified() throws {
        let root = try DumpParser.parse(try Fixtures.bytes("upstream/special.dump"), strict: true)
        let before = DumpPrinter.dump(root)
        let first = try ImageWriter.write(root, options: .init(minVersion: 0, maxVersion: 0))
        let second = try ImageWriter.write(root, options: .init(minVersion: 0, maxVersion: 0))
        #expect(firstDifference(first, second) == nil)
        #expect(DumpPrinter.dump(root) == before)
        #expect(root.child(named: b(".")) == nil && root.child(named: b("00")) == nil)
        #expect(root.child(named: b("whiteout"))?.fileType == .characterDevice)
        #expect(root.child(named: b("escaped-xattr"))?.xattrs.first?.key == b("trusted.overlay.redirect"))
        #expect(root.xattr(b("trusted.overlay.opaque")) == nil)
        // And a v1 write after a v0 write is the v1 golden image.
        let v1 = try ImageWriter.write(root, options: .init(minVersion: 1, maxVersion: 1))
        #expect(SHA256Reference.hex(v1) == (try Fixtures.token("upstream/special_v1.dump.sha256")))
    }

    @Test func insertionOrderDoesNotMatter() throws {
        func tree(_ names: [String]) throws -> Node {
            let root = Node(mode: 0o40755)
            for n in names {
                let f = Node(name: b(n), mode: 0o100644)
                f.size = 5
                f.payload = b("ab/" + n)
                try root.addChild(f)
            }
            return root
        }
        let a = try ImageWriter.write(try tree(["a", "b", "c", "\u{e9}", "B"]))
        let z = try ImageWriter.write(try tree(["\u{e9}", "c", "B", "b", "a"]))
        #expect(firstDifference(a, z) == nil)
    }

    @Test func largeIdsAndTimesUseExtendedInodes() throws {
        let image = try write(
            rootLine + """
                /big-uid 0 100644 70000 70000 70000 0 0.0 - - -
                /late 0 100644 1 0 0 0 -12345.999999999 - - -
                /huge 5000000000 100644 1 0 0 0 0.0 x/y - -

                """)
        #expect(
            try readBack(image) == """
                / 4096 40755 2 0 0 0 0.0 - - -
                /big-uid 0 100644 70000 70000 70000 0 0.0 - - -
                /huge 5000000000 100644 1 0 0 0 0.0 x/y - -
                /late 0 100644 1 0 0 0 -12345.999999999 - - -

                """)
        // build_time is the smallest mtime.
        #expect(Int64(bitPattern: le(image, 1024 + 24, 8)) == -12345)
        #expect(le(image, 1024 + 32, 4) == 999_999_999)
    }
}

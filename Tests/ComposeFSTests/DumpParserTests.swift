import Testing
@testable import ComposeFS

/// Every rule of the composefs-dump(5) parser (FORMAT.md §14), with the
/// reference's message and the line it is reported on.
@Suite struct DumpParserTests {
    /// Asserts that `text` fails on `line` with exactly `message`.
    func expectError(_ text: String, line: Int, _ message: String, strict: Bool = false,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        let e = parseError(text, strict: strict)
        #expect(e != nil, "expected \"\(message)\"", sourceLocation: sourceLocation)
        #expect(e?.line == line, sourceLocation: sourceLocation)
        #expect(e?.reason.description == message, sourceLocation: sourceLocation)
    }

    func expectError(_ data: [UInt8], line: Int, _ message: String, strict: Bool = false,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        let e = parseError(data, strict: strict)
        #expect(e?.line == line, sourceLocation: sourceLocation)
        #expect(e?.reason.description == message, sourceLocation: sourceLocation)
    }

    /// A regular file line under the standard root.
    func file(_ rest: String) -> String { rootLine + rest + "\n" }

    // MARK: Basic lines

    @Test func minimalRoot() throws {
        let root = try parseDump(rootLine)
        #expect(root.mode == 0o40755)
        #expect(root.isDirectory)
        #expect(root.nlink == 2)
        #expect(root.size == 4096)
        #expect(root.uid == 0 && root.gid == 0 && root.rdev == 0)
        #expect(root.mtime == Timespec(seconds: 0, nanoseconds: 0))
        #expect(root.payload == nil && root.content == nil && root.digest == nil)
        #expect(root.children.isEmpty)
        #expect(root.xattrs.isEmpty)
    }

    @Test func allFieldsOfARegularFile() throws {
        let digest = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"
        let root = try parseDump(file(#"/f\x20x 3 100640 7 11 12 0 1.2 ab/cd a\nb \#(digest) user.a=1 trusted.b=x\x3dy=z"#))
        let f = try #require(root.child(named: b("f x")))
        #expect(f.name == b("f x"))
        #expect(f.path == b("/f x"))
        #expect(f.size == 3)
        #expect(f.mode == 0o100640)
        #expect(f.fileType == .regular)
        #expect(f.nlink == 7)
        #expect(f.uid == 11)
        #expect(f.gid == 12)
        #expect(f.rdev == 0)
        #expect(f.mtime == Timespec(seconds: 1, nanoseconds: 2))
        #expect(f.payload == b("ab/cd"))
        #expect(f.content == b("a\nb"))
        #expect(f.digest == hexBytes(digest.lowercased()))
        #expect(f.xattrs == [Xattr("user.a", b("1")), Xattr("trusted.b", b("x=y=z"))])
        #expect(!f.isHardlink)
    }

    @Test func everyFileType() throws {
        let root = try parseDump(rootLine + """
            /blk 0 60600 1 0 0 2049 0.0 - - -
            /chr 0 20600 1 0 0 259 0.0 - - -
            /dir 4096 40700 2 0 0 0 0.0 - - -
            /fifo 0 10644 1 0 0 0 0.0 - - -
            /reg 0 100644 1 0 0 0 0.0 - - -
            /sock 0 140755 1 0 0 0 0.0 - - -
            /sym 3 120777 1 0 0 0 0.0 abc - -

            """)
        let types = root.children.map { $0.fileType }
        #expect(types == [.blockDevice, .characterDevice, .directory, .fifo, .regular, .socket, .symlink])
        #expect(root.child(named: b("blk"))?.rdev == 2049)
        #expect(root.child(named: b("chr"))?.rdev == 259)
    }

    // MARK: Escapes in fields

    @Test func badEscapesReportTheirLine() {
        expectError(file(#"/a\q 0 100644 1 0 0 0 0.0 - - -"#), line: 2, "Unsupported escape type q")
        expectError(file(#"/a 0 100644 1 0 0 0 0.0 x\ - -"#), line: 2, "No character after escape")
        expectError(file(#"/a 1 100644 1 0 0 0 0.0 - \x4 -"#), line: 2, "No hex characters after hex escape")
        expectError(file(#"/a 0 100644 1 0 0 0 0.0 - - - user.a\xzz=1"#), line: 2, "Invalid hex characters after hex escape")
        expectError(file(#"/a 0 100644 1 0 0 0 0.0 - - - user.a=\p"#), line: 2, "Unsupported escape type p")
        expectError(rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n" + #"/b\ 0 100644 1 0 0 0 0.0 - - -"# + "\n",
                    line: 3, "No character after escape")
    }

    @Test func escapedNamesAndNULCut() throws {
        let root = try parseDump(rootLine + #"""
            /a\x00junk 0 100644 1 0 0 0 0.0 - - -
            /\xff\t 0 100644 1 0 0 0 0.0 - - -
            /s 1 120777 1 0 0 0 0.0 x\x00y - -
            /p 5 100644 1 0 0 0 0.0 p\x00q - - user.k\x00ey=v\x00w

            """#)
        #expect(root.children.map(\.name) == [b("a"), b("p"), b("s"), [0xFF, 0x09]])
        #expect(root.child(named: b("s"))?.payload == b("x"))
        let p = try #require(root.child(named: b("p")))
        #expect(p.payload == b("p"))
        // Keys are cut at NUL, values are length-counted.
        #expect(p.xattrs == [Xattr(key: b("user.k"), value: [0x76, 0x00, 0x77])])
    }

    @Test func emptyPathAfterUnescaping() {
        expectError(file(#"\x00 0 100644 1 0 0 0 0.0 - - -"#), line: 2, "Invalid empty path")
    }

    // MARK: Integers (§14.3)

    @Test func integerOverflowClampsWithoutError() throws {
        let root = try parseDump(file("/f 99999999999999999999999 100644 99999999999999999999999 0 0 0 184467440737095516150.0 - - -"))
        let f = try #require(root.child(named: b("f")))
        #expect(f.size == UInt64.max)
        #expect(f.nlink == UInt32.max)                 // clamped to 2^64-1, then truncated to 32 bits
        #expect(f.mtime.seconds == -1)                  // 2^64-1 as a signed value
        let exact = try parseDump(file("/f 18446744073709551615 100644 1 0 0 0 0.0 - - -"))
        #expect(exact.child(named: b("f"))?.size == UInt64.max)
        let over = try parseDump(file("/f 18446744073709551616 100644 1 0 0 0 0.0 - - -"))
        #expect(over.child(named: b("f"))?.size == UInt64.max)
    }

    @Test func negativeNumbersWrap() throws {
        let root = try parseDump(file("/f -1 100644 1 -1 0 0 -5.7 - - -"))
        let f = try #require(root.child(named: b("f")))
        #expect(f.mtime == Timespec(seconds: -5, nanoseconds: 7))
        #expect(f.size == UInt64.max)
        #expect(f.uid == UInt32.max)
        let zero = try parseDump(file("/f -0 100644 1 0 0 0 -0.0 - - -"))
        #expect(zero.child(named: b("f"))?.size == 0)
    }

    @Test func signAndLeadingWhitespaceAccepted() throws {
        let root = try parseDump(file("/f +5 +100644 +1 +5 \t7 0 \t+3.+4 - - -"))
        let f = try #require(root.child(named: b("f")))
        #expect(f.size == 5)
        #expect(f.mode == 0o100644)
        #expect(f.uid == 5)
        #expect(f.gid == 7)
        #expect(f.mtime == Timespec(seconds: 3, nanoseconds: 4))
    }

    @Test func invalidIntegers() {
        expectError(file("/f 0 100644 1 x 0 0 0.0 - - -"), line: 2, "Invalid integer x")
        expectError(file("/f 5x 100644 1 0 0 0 0.0 - - -"), line: 2, "Invalid integer 5x")
        expectError(file("/f + 100644 1 0 0 0 0.0 - - -"), line: 2, "Invalid integer +")
        expectError(file("/f 0 100644 y 0 0 0 0.0 - - -"), line: 2, "Invalid integer y")
        expectError(file("/f 0 100648 1 0 0 0 0.0 - - -"), line: 2, "Invalid integer 100648")  // octal
        expectError(file("/f 0 @x 1 0 0 0 0.0 /a - -"), line: 2, "Invalid integer x")
        // Two spaces make an empty field, and an empty integer is invalid.
        expectError(file("/f  100644 1 0 0 0 0.0 - - -"), line: 2, "Invalid integer ")
    }

    @Test func mtimeNeedsADot() {
        expectError(file("/f 0 100644 1 0 0 0 5 - - -"), line: 2, "Invalid integer ")
        expectError(file("/f 0 100644 1 0 0 0 5. - - -"), line: 2, "Invalid integer ")
        expectError(file("/f 0 100644 1 0 0 0 .5 - - -"), line: 2, "Invalid integer ")
        expectError(file("/f 0 100644 1 0 0 0 1.2.3 - - -"), line: 2, "Invalid integer 2.3")
        expectError(file("/f 0 100644 1 0 0 0 a.1 - - -"), line: 2, "Invalid integer a")
    }

    @Test func nanosecondsAreNotRangeChecked() throws {
        let root = try parseDump(file("/f 0 100644 1 0 0 0 1.4294967295 - - -"))
        #expect(root.child(named: b("f"))?.mtime == Timespec(seconds: 1, nanoseconds: UInt32.max))
        let wrapped = try parseDump(file("/f 0 100644 1 0 0 0 1.4294967296 - - -"))
        #expect(wrapped.child(named: b("f"))?.mtime.nanoseconds == 0)   // truncated to 32 bits
    }

    // MARK: Short lines

    @Test func shortLinesReadMissingFieldsAsEmpty() throws {
        // A 9-field symlink line: no CONTENT, no DIGEST. The missing
        // CONTENT is an empty (present) value, so SIZE must be 0 to match;
        // the symlink's size then becomes the target length.
        let root = try parseDump(rootLine + "/l 0 120777 1 0 0 0 0.0 abc\n/f 0 100644 1 0 0 0 0.0 - -\n")
        let l = try #require(root.child(named: b("l")))
        #expect(l.fileType == .symlink)
        #expect(l.payload == b("abc"))
        #expect(l.size == 3)
        #expect(l.content == nil && l.digest == nil)
        let f = try #require(root.child(named: b("f")))
        #expect(f.digest == nil && f.payload == nil)
        expectError(file("/l 3 120777 1 0 0 0 0.0 abc"), line: 2, "Invalid content size 0, must match size 3")
        // upstream's honggfuzz-longlink-unterminated: 9 fields, no final newline.
        let fuzz = try parseDump("/ 4096 40555 2 0 0 0 0.0 - - -\n/chardev 0 20720777 1 0 0 0 0.0 aaaa")
        #expect(fuzz.child(named: b("chardev"))?.fileType == .symlink)
        // Missing NLINK reads as an empty integer.
        expectError(file("/f 0 100644"), line: 2, "Invalid integer ")
    }

    // MARK: Paths and the tree (§14.5 step 4)

    @Test func rootMustComeFirst() {
        expectError("/a 0 100644 1 0 0 0 0.0 - - -\n", line: 1, "Root node not present")
        expectError("a 0 100644 1 0 0 0 0.0 - - -\n", line: 1, "Root node not present")
    }

    @Test func relativePathsAfterTheRootHangOffTheRoot() throws {
        let root = try parseDump(rootLine + "d 4096 40755 2 0 0 0 0.0 - - -\nd/x 0 100644 1 0 0 0 0.0 - - -\n")
        let d = try #require(root.child(named: b("d")))
        #expect(d.child(named: b("x"))?.path == b("/d/x"))
    }

    @Test func rootRules() {
        expectError("/ 0 100644 1 0 0 0 0.0 - - -\n", line: 1, "Root must be a directory")
        expectError(rootLine + rootLine, line: 2, "Can't have multiple roots")
    }

    @Test func parentsMustExistAndBeDirectories() {
        expectError(file("/a/b 0 100644 1 0 0 0 0.0 - - -"), line: 2, "Parent directory missing for /a/b")
        expectError(file("/./x 0 100644 1 0 0 0 0.0 - - -"), line: 2, "Parent directory missing for /./x")
        expectError(file(#"/a\x20b/c 0 100644 1 0 0 0 0.0 - - -"#), line: 2, "Parent directory missing for /a b/c")
        expectError(rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n",
                    line: 3, "Parent must be a directory for /a/b")
        expectError(rootLine + "/a 1 120777 1 0 0 0 0.0 / - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n",
                    line: 3, "Parent must be a directory for /a/b")
    }

    @Test func repeatedSlashesAreDropped() throws {
        let root = try parseDump(rootLine + "//d 4096 40755 2 0 0 0 0.0 - - -\n/d//x 0 100644 1 0 0 0 0.0 - - -\n")
        let d = try #require(root.child(named: b("d")))
        #expect(d.children.map(\.name) == [b("x")])
    }

    @Test func dotAndDotDotNames() throws {
        expectError(file("/. 4096 40555 2 0 0 0 0.0 - - -"), line: 2, "Invalid . or .. in path: /.")
        expectError(file("/.. 4096 40555 2 0 0 0 0.0 - - -"), line: 2, "Invalid . or .. in path: /..")
        expectError(rootLine + "/d 4096 40755 2 0 0 0 0.0 - - -\n/d/.. 0 100644 1 0 0 0 0.0 - - -\n",
                    line: 3, "Invalid . or .. in path: /d/..")
        let root = try parseDump(file("/... 0 100644 1 0 0 0 0.0 - - -"))
        #expect(root.child(named: b("...")) != nil)
    }

    @Test func duplicatePaths() throws {
        let e = try #require(parseError(rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/a 4096 40755 2 0 0 0 0.0 - - -\n"))
        #expect(e.line == 3)
        #expect(e.reason == .cannotAddChild(b("/a"), .exists(name: b("a"))))
        #expect(e.reason.description.hasPrefix("Can't add child"))
    }

    @Test func emptyNames() throws {
        let e = try #require(parseError(file("// 4096 40555 2 0 0 0 0.0 - - -")))
        #expect(e.line == 2)
        #expect(e.reason == .cannotAddChild(b("//"), .invalidName(name: [])))
        #expect(e.reason.description.hasPrefix("Can't add child"))
        let t = try #require(parseError(rootLine + "/d 4096 40755 2 0 0 0 0.0 - - -\n/d/ 0 100644 1 0 0 0 0.0 - - -\n"))
        #expect(t.line == 3)
        #expect(t.reason == .cannotAddChild(b("/d/"), .invalidName(name: [])))
    }

    @Test func nameLengthLimit() throws {
        let n255 = String(repeating: "n", count: 255)
        let root = try parseDump(file("/\(n255) 0 100644 1 0 0 0 0.0 - - -"))
        #expect(root.children.first?.name.count == 255)
        let n256 = String(repeating: "n", count: 256)
        let e = try #require(parseError(file("/\(n256) 0 100644 1 0 0 0 0.0 - - -")))
        #expect(e.line == 2)
        #expect(e.reason == .cannotAddChild(b("/" + n256), .nameTooLong(name: b(n256))))
        #expect(e.reason.description.hasPrefix("Can't add child"))
    }

    @Test func childrenAreSortedByBytes() throws {
        let root = try parseDump(rootLine + #"""
            /b 0 100644 1 0 0 0 0.0 - - -
            /\xc3\xa9 0 100644 1 0 0 0 0.0 - - -
            /a 0 100644 1 0 0 0 0.0 - - -
            /B 0 100644 1 0 0 0 0.0 - - -
            /- 0 100644 1 0 0 0 0.0 - - -
            /+ 0 100644 1 0 0 0 0.0 - - -
            /ab 0 100644 1 0 0 0 0.0 - - -

            """#)
        #expect(root.children.map(\.name) == [b("+"), b("-"), b("B"), b("a"), b("ab"), b("b"), [0xC3, 0xA9]])
    }

    // MARK: Modes

    @Test func invalidModes() throws {
        expectError(file("/f 0 170644 1 0 0 0 0.0 - - -"), line: 2, "Invalid mode 170644")
        expectError(file("/f 3 0 1 0 0 0 0.0 foo - -"), line: 2, "Invalid mode 0")
        expectError(file("/f 0 644 1 0 0 0 0.0 - - -"), line: 2, "Invalid mode 644")
        // The type test uses the 32-bit value: 20720777 is a symlink.
        let root = try parseDump(file("/l 1 20720777 1 0 0 0 0.0 x - -"))
        let l = try #require(root.child(named: b("l")))
        #expect(l.mode == 0o20720777)
        #expect(l.fileType == .symlink)
    }

    // MARK: Hardlinks

    @Test func hardlinkErrors() {
        expectError(file("/h 0 @100644 1 0 0 0 0.0 /nope - -"), line: 2, "No target at /nope for hardlink")
        expectError(file("/x 0 @100644 1 0 0 0 0.0 /x - -"), line: 2, "Self-referential hardlink /x")
        expectError(file("/d 4096 @40755 2 0 0 0 0.0 / - -"), line: 2, "Directories can't be hardlinked")
        expectError(file("/h 0 @100644 1 0 0 0 0.0 - - -"), line: 2, "No target path for the hardlink")
        // Fix-ups run last line first: the later bad line is the one reported.
        expectError(rootLine + "/h1 0 @100644 1 0 0 0 0.0 /nope1 - -\n/h2 0 @100644 1 0 0 0 0.0 /nope2 - -\n",
                    line: 3, "No target at /nope2 for hardlink")
    }

    @Test func hardlinkChainsAndForwardReferences() throws {
        let root = try parseDump(rootLine + """
            /c 0 @100644 1 0 0 0 0.0 /b - -
            /b 0 @100644 1 0 0 0 0.0 /a - -
            /a 5 100644 3 0 0 0 0.0 xx/yy - -

            """)
        let a = try #require(root.child(named: b("a")))
        let bNode = try #require(root.child(named: b("b")))
        let c = try #require(root.child(named: b("c")))
        #expect(bNode.hardlinkTarget === a)
        #expect(c.hardlinkTarget === bNode)
        #expect(c.resolvedTarget === a)
        #expect(a.nlink == 3)               // hardlinks do not add to the target's nlink
        #expect(c.mode == 0o100644)
    }

    @Test func hardlinkLinesIgnoreTheOtherFields() throws {
        let root = try parseDump(rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n"
            + #"/h x @100644 y z w v q /a \q \q user.no-equal"# + "\n")
        let h = try #require(root.child(named: b("h")))
        #expect(h.hardlinkTarget === root.child(named: b("a")))
        #expect(h.xattrs.isEmpty)
    }

    @Test func hardlinkTargetsAreLookedUpLikePaths() throws {
        let root = try parseDump(rootLine + #"""
            /d 4096 40755 2 0 0 0 0.0 - - -
            /d/a\x20b 0 100644 1 0 0 0 0.0 - - -
            /h1 0 @100644 1 0 0 0 0.0 /d/a\x20b - -
            /h2 0 @100644 1 0 0 0 0.0 //d//a\x20b - -
            /h3 0 @100644 1 0 0 0 0.0 / - -

            """#)
        let target = root.child(named: b("d"))?.child(named: b("a b"))
        #expect(target != nil)
        #expect(root.child(named: b("h1"))?.hardlinkTarget === target)
        #expect(root.child(named: b("h2"))?.hardlinkTarget === target)
        // A non-directory entry may point at a directory (§6.1 quirk).
        #expect(root.child(named: b("h3"))?.hardlinkTarget === root)
    }

    @Test func hardlinkLoopsParseAndHaveNoResolvedTarget() throws {
        let root = try parseDump(rootLine + "/a 0 @100644 1 0 0 0 0.0 /b - -\n/b 0 @100644 1 0 0 0 0.0 /a - -\n")
        let a = try #require(root.child(named: b("a")))
        #expect(a.hardlinkTarget === root.child(named: b("b")))
        #expect(a.resolvedTarget == nil)
    }

    // MARK: Symlinks, payloads, content

    @Test func symlinkTargets() throws {
        expectError(file("/l 0 120777 1 0 0 0 0.0 - - -"), line: 2, "Invalid symlink")
        expectError(file("/l 0 120777 1 0 0 0 0.0  - -"), line: 2, "Invalid symlink")
        expectError(file(#"/l 0 120777 1 0 0 0 0.0 \x00abc - -"#), line: 2, "Invalid symlink")
        let t4096 = String(repeating: "t", count: 4096)
        expectError(file("/l 4096 120777 1 0 0 0 0.0 \(t4096) - -"), line: 2, "Invalid symlink")
        let t4095 = String(repeating: "t", count: 4095)
        let root = try parseDump(file("/l 1 120777 1 0 0 0 0.0 \(t4095) - -"))
        let l = try #require(root.child(named: b("l")))
        #expect(l.payload == b(t4095))
        #expect(l.size == 4095)          // SIZE is replaced by the target length
    }

    @Test func payloadLength() throws {
        let p4096 = String(repeating: "p", count: 4096)
        expectError(file("/f 1 100644 1 0 0 0 0.0 \(p4096) - -"), line: 2, "Invalid payload")
        let p4095 = String(repeating: "p", count: 4095)
        let root = try parseDump(file("/f 1 100644 1 0 0 0 0.0 \(p4095) - -"))
        #expect(root.child(named: b("f"))?.payload?.count == 4095)
    }

    @Test func contentMustMatchSize() throws {
        expectError(file("/f 3 100644 1 0 0 0 0.0 - ab -"), line: 2, "Invalid content size 2, must match size 3")
        expectError(file("/f 2 100644 1 0 0 0 0.0 - abc -"), line: 2, "Invalid content size 3, must match size 2")
        // An empty (present) content counts as none.
        let root = try parseDump(file("/f 0 100644 1 0 0 0 0.0 -  -"))
        #expect(root.child(named: b("f"))?.content == nil)
    }

    @Test func inlineContentLimit() throws {
        let c5001 = String(repeating: "c", count: 5001)
        expectError(file("/f 5001 100644 1 0 0 0 0.0 - \(c5001) -"), line: 2, "Inline content size 5001 exceeds maximum 5000")
        let c5000 = String(repeating: "c", count: 5000)
        let root = try parseDump(file("/f 5000 100644 1 0 0 0 0.0 - \(c5000) -"))
        #expect(root.child(named: b("f"))?.content == b(c5000))
    }

    @Test func digests() throws {
        let hex = "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"
        let root = try parseDump(file("/f 1 100644 1 0 0 0 0.0 - - \(hex.uppercased())"))
        #expect(root.child(named: b("f"))?.digest == hexBytes(hex))
        // Not 64 hex digits: rejected (the reference would use undefined bytes).
        let e = try #require(parseError(file("/f 1 100644 1 0 0 0 0.0 - - abc")))
        #expect(e.line == 2)
        #expect(e.reason == .invalidDigest(b("abc")))
        let g = String(repeating: "g", count: 64)
        #expect(parseError(file("/f 1 100644 1 0 0 0 0.0 - - \(g)"))?.reason == .invalidDigest(b(g)))
    }

    // MARK: Xattrs

    @Test func xattrTextLimit() throws {
        // "user.a=" plus a value: the text after field 11 is 65536 bytes.
        let v = String(repeating: "v", count: 65536 - 7)
        expectError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=\(v)"), line: 2, "Too many xattrs")
        // 65535 bytes pass this check (and fail the per-file budget instead).
        let e = try #require(parseError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=\(v.dropLast())")))
        #expect(e.reason.description.hasPrefix("Can't set xattr"))
    }

    @Test func missingEqualInXattr() throws {
        expectError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a"), line: 2, "Missing = in xattr")
        expectError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=1 b"), line: 2, "Missing = in xattr")
        // Two trailing spaces make an empty xattr.
        expectError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=1  "), line: 2, "Missing = in xattr")
        // One trailing space is harmless.
        let root = try parseDump(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=1 ") + "/g 0 100644 1 0 0 0 0.0 - - - \n")
        #expect(root.child(named: b("f"))?.xattrs == [Xattr("user.a", b("1"))])
        #expect(root.child(named: b("g"))?.xattrs == [])
    }

    @Test func xattrValueSplitsAtFirstEqual() throws {
        let root = try parseDump(file("/f 0 100644 1 0 0 0 0.0 - - - user.a==b= user.e="))
        #expect(root.child(named: b("f"))?.xattrs == [Xattr("user.a", b("=b=")), Xattr("user.e", [])])
    }

    @Test func xattrKeyLength() throws {
        let empty = try #require(parseError(file("/f 0 100644 1 0 0 0 0.0 - - - =somevalue")))
        #expect(empty.line == 2)
        #expect(empty.reason == .cannotSetXattr(.xattrKeyLength(key: [])))
        #expect(empty.reason.description.hasPrefix("Can't set xattr"))
        let k256 = "user." + String(repeating: "k", count: 251)
        let long = try #require(parseError(file("/f 0 100644 1 0 0 0 0.0 - - - \(k256)=v")))
        #expect(long.reason == .cannotSetXattr(.xattrKeyLength(key: b(k256))))
        #expect(long.reason.description.hasPrefix("Can't set xattr"))
        let k255 = String(k256.dropLast())
        let root = try parseDump(file("/f 0 100644 1 0 0 0 0.0 - - - \(k255)=v"))
        #expect(root.child(named: b("f"))?.xattrs.first?.key.count == 255)
    }

    @Test func xattrBudget() throws {
        // First xattr: 12 + 7 + len(key) + len(value) <= 32767.
        let fits = String(repeating: "v", count: 32767 - 12 - 7 - 6)
        let root = try parseDump(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=\(fits)"))
        let f = try #require(root.child(named: b("f")))
        #expect(f.xattrs.first?.value.count == 32742)
        #expect(f.xattrList.budget == 32767)
        let e = try #require(parseError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=\(fits)v")))
        #expect(e.line == 2)
        #expect(e.reason == .cannotSetXattr(.xattrBudget(key: b("user.a"), total: 32768, limit: 32767)))
        #expect(e.reason.description.hasPrefix("Can't set xattr"))
        // The budget adds up over several xattrs (12 only once).
        let half = String(repeating: "w", count: (32767 - 12 - 2 * 13) / 2)   // 16364
        let two = try parseDump(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=\(half) user.b=\(half)w"))
        #expect(two.child(named: b("f"))?.xattrList.budget == 32767)
        let over = try #require(parseError(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=\(half)w user.b=\(half)w")))
        #expect(over.reason == .cannotSetXattr(.xattrBudget(key: b("user.b"), total: 32768, limit: 32767)))
    }

    @Test func xattrValueLimitAtTheNodeLevel() throws {
        // A 65536-byte value cannot be written in a dump (the text limit
        // hits first); the node API rejects it by its length.
        let node = Node(mode: 0o100644)
        #expect(throws: Node.Error.xattrValueTooLarge(key: b("user.v"), size: 65536)) {
            try node.setXattr(b("user.v"), [UInt8](repeating: 1, count: 65536), limit: 1 << 20)
        }
        try node.setXattr(b("user.v"), [UInt8](repeating: 1, count: 65535), limit: 1 << 20)
        #expect(node.xattrs.first?.value.count == 65535)
    }

    @Test func repeatedXattrKeyReplaces() throws {
        let root = try parseDump(file("/f 0 100644 1 0 0 0 0.0 - - - user.a=1 user.b=2 user.a=333"))
        let f = try #require(root.child(named: b("f")))
        #expect(f.xattrs == [Xattr("user.a", b("333")), Xattr("user.b", b("2"))])
        #expect(f.xattrList.budget == 12 + (7 + 6 + 3) + (7 + 6 + 1))
    }

    // MARK: Strict mode

    @Test func missingTrailingNewline() throws {
        let text = rootLine + "/a 0 100644 1 0 0 0 0.0 - - -"
        expectError(text, line: 2, "Missing trailing newline", strict: true)
        expectError(String(rootLine.dropLast()), line: 1, "Missing trailing newline", strict: true)
        let root = try parseDump(text)
        #expect(root.child(named: b("a")) != nil)
    }

    @Test func nonZeroDevnumOnNonDevice() throws {
        let text = file("/f 0 100644 1 0 0 5 0.0 - - -")
        expectError(text, line: 2, "Non-zero devnum on non-device", strict: true)
        let root = try parseDump(text)
        #expect(root.child(named: b("f"))?.rdev == 0)
        // Devices keep theirs in both modes.
        let dev = try parseDump(file("/c 0 20644 1 0 0 1234 0.0 - - -"), strict: true)
        #expect(dev.child(named: b("c"))?.rdev == 1234)
    }

    @Test func symlinkSizeMustMatchInStrictMode() throws {
        let text = file("/l 5 120777 1 0 0 0 0.0 abc - -")
        expectError(text, line: 2, "Invalid symlink size 3, must match size 5", strict: true)
        let root = try parseDump(text)
        #expect(root.child(named: b("l"))?.size == 3)
    }

    @Test func symlinkContentInStrictMode() throws {
        let text = file("/l 3 120777 1 0 0 0 0.0 abc abc -")
        expectError(text, line: 2, "Symlink cannot have content", strict: true)
        let root = try parseDump(text)
        #expect(root.child(named: b("l"))?.payload == b("abc"))
        #expect(root.child(named: b("l"))?.content == nil)
    }

    // MARK: Lines

    @Test func embeddedNUL() {
        expectError(b(rootLine) + [0x2F, 0x61, 0x00] + b("b 0 100644 1 0 0 0 0.0 - - -\n"),
                    line: 2, "Invalid embedded NUL character at position 2")
        expectError([0x00, 0x0A], line: 1, "Invalid embedded NUL character at position 0")
    }

    @Test func emptyLines() {
        expectError(rootLine + "\n/a 0 100644 1 0 0 0 0.0 - - -\n", line: 2, "Invalid empty path")
        expectError("\n" + rootLine, line: 1, "Invalid empty path")
        expectError(rootLine + "\n", line: 2, "Invalid empty path")
    }

    @Test func emptyInput() {
        expectError("", line: 0, "No files in dump file")
        #expect(parseError("")?.description == "No files in dump file")
        expectError("", line: 0, "No files in dump file", strict: true)
    }

    @Test func errorDescriptionCarriesTheLine() throws {
        let e = try #require(parseError(file("/f 0 100644 1 x 0 0 0.0 - - -")))
        #expect(e.description == "line 2: Invalid integer x")
    }

    @Test func gidAndRdevAreOnlyCheckedWhenUidIsZero() throws {
        let root = try parseDump(file("/b 0 60644 1 5 x y 0.0 - - -"))
        let blk = try #require(root.child(named: b("b")))
        #expect(blk.uid == 5)
        #expect(blk.gid == 0)
        #expect(blk.rdev == 0)
        expectError(file("/b 0 60644 1 0 x 0 0.0 - - -"), line: 2, "Invalid integer x")
        expectError(file("/b 0 60644 1 0 0 y 0.0 - - -"), line: 2, "Invalid integer y")
        // NLINK and UID themselves are always checked.
        expectError(file("/b 0 60644 z 5 0 0 0.0 - - -"), line: 2, "Invalid integer z")
    }

    // MARK: Upstream's should-fail assets (§14.7)

    @Test(arguments: [
        ("big-inline", 2, "Inline content size 5004 exceeds maximum 5000"),
        ("dir-hardlink", 2, "Directories can't be hardlinked"),
        ("dot-name", 2, "Invalid . or .. in path: /."),
        ("dotdot-name", 2, "Invalid . or .. in path: /.."),
        ("empty-link-name", 2, "Invalid symlink"),
        ("empty-name", 2, "Can't add child"),
        ("empty-xattr-key", 2, "Can't set xattr"),
        ("long-link", 2, "Invalid symlink"),
        ("no-ftype", 2, "Invalid mode 0"),
        ("self-hardlink", 2, "Self-referential hardlink /037blockdev"),
    ])
    func shouldFailAssets(name: String, line: Int, message: String) throws {
        let data = try Fixtures.bytes("should-fail/should-fail-\(name).dump")
        let e = try #require(parseError(data))
        #expect(e.line == line)
        let text = e.reason.description
        #expect(text == message || (message.hasPrefix("Can't") && text.hasPrefix(message)), "got \(text)")
    }

    @Test func bigInlineInStrictModeReportsTheNewline() throws {
        let data = try Fixtures.bytes("should-fail/should-fail-big-inline.dump")
        #expect(parseError(data, strict: true)?.reason == .missingTrailingNewline)
    }

    /// Equivalents of the three big should-fail assets (kept out of Fixtures).
    @Test func bigShouldFailEquivalents() throws {
        let head = "/ 4096 40555 2 0 0 0 1633950376.0 - - -\n"
        let key = String(repeating: "a", count: 123_000)
        let longKey = try #require(parseError(head + "/longxattr 0 100644 1 0 0 0 0.0 - - - \(key)\n"))
        #expect(longKey.reason == .tooManyXattrs)
        let longValue = try #require(parseError(head + "/longxattr-value 0 644 1 0 0 0 0.0 - - - foo=\(key)\n"))
        #expect(longValue.reason.description == "Invalid mode 644")
        var fuzz = b("/ 4096 40555 2 0 0 0 1633950376.0 - - - trusted.foo1=bar-1 user.foo2=")
        fuzz += [UInt8](repeating: 0xF3, count: 34_000)
        let budget = try #require(parseError(fuzz))
        #expect(budget.line == 1)
        #expect(budget.reason.description.hasPrefix("Can't set xattr"))
    }

    @Test func tooBigParsesButCannotBeWritten() throws {
        let root = try DumpParser.parse(try Fixtures.bytes("should-fail/should-fail-too-big.dump"))
        let big = try #require(root.child(named: b("bigfile")))
        #expect(big.size == 9_500_000_000_000_000)
        #expect(throws: ImageWriter.Error.fileTooLarge(path: b("/bigfile"), size: 9_500_000_000_000_000)) {
            try ImageWriter.write(root)
        }
    }

    @Test func upstreamSpecialDumpParsesStrictly() throws {
        let root = try DumpParser.parse(try Fixtures.bytes("upstream/special.dump"), strict: true)
        #expect(root.children.map(\.name.text) == [
            "blockdev", "chardev", "escaped-xattr", "fifo", "inline", "inline-large1", "inline-large2",
            "inline-large3", "whiteout",
        ])
        #expect(root.xattrs == [Xattr("trusted.foo1", b("bar-1")), Xattr("user.foo2", b("bar-2"))])
        #expect(root.child(named: b("inline"))?.content == b("FOOBAR\nINAFILE\n"))
        #expect(root.child(named: b("blockdev"))?.rdev == 107690)
        #expect(root.child(named: b("whiteout"))?.rdev == 0)
        #expect(root.child(named: b("escaped-xattr"))?.xattrs.first == Xattr("trusted.overlay.redirect", b("/foo\n")))
        #expect(root.child(named: b("inline-large3"))?.content?.count == 4097)
    }
}

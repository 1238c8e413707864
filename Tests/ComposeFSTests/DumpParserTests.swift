import Testing

@testable import ComposeFS

/// Every rule of the composefs-dump(5) parser (FORMAT.md §14), with the
/// reference's message and the line it is reported on. This file: lines and
/// fields; DumpParserTreeTests.swift: paths, hardlinks, symlinks, payloads
/// and xattrs; DumpParserStrictTests.swift: strict mode and upstream's
/// should-fail assets.
@Suite struct DumpParserTests {
    /// Asserts that `text` fails on `line` with exactly `message`.
    func expectError(
        _ text: String, line: Int, _ message: String, strict: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let e = parseError(text, strict: strict)
        #expect(e != nil, "expected \"\(message)\"", sourceLocation: sourceLocation)
        #expect(e?.line == line, sourceLocation: sourceLocation)
        #expect(e?.reason.description == message, sourceLocation: sourceLocation)
    }

    func expectError(
        _ data: [UInt8], line: Int, _ message: String, strict: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
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
        let root = try parseDump(
            rootLine + """
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
        expectError(
            rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n" + #"/b\ 0 100644 1 0 0 0 0.0 - - -"# + "\n",
            line: 3, "No character after escape")
    }

    @Test func escapedNamesAndNULCut() throws {
        let root = try parseDump(
            rootLine + #"""
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
        #expect(f.nlink == UInt32.max)   // clamped to 2^64-1, then truncated to 32 bits
        #expect(f.mtime.seconds == -1)   // 2^64-1 as a signed value
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
        expectError(file("/f 0 100648 1 0 0 0 0.0 - - -"), line: 2, "Invalid integer 100648")   // octal
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

    // MARK: Lines

    @Test func embeddedNUL() {
        expectError(
            b(rootLine) + [0x2F, 0x61, 0x00] + b("b 0 100644 1 0 0 0 0.0 - - -\n"),
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
}

import Testing

@testable import ComposeFS

/// The composefs-dump(5) parser's strict mode (`CFS_PARSE_STRICT`), and
/// upstream's should-fail assets (FORMAT.md §14.7).
extension DumpParserTests {
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
        ("self-hardlink", 2, "Self-referential hardlink /037blockdev")
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
        #expect(
            root.children.map(\.name.text) == [
                "blockdev", "chardev", "escaped-xattr", "fifo", "inline", "inline-large1", "inline-large2",
                "inline-large3", "whiteout"
            ])
        #expect(root.xattrs == [Xattr("trusted.foo1", b("bar-1")), Xattr("user.foo2", b("bar-2"))])
        #expect(root.child(named: b("inline"))?.content == b("FOOBAR\nINAFILE\n"))
        #expect(root.child(named: b("blockdev"))?.rdev == 107690)
        #expect(root.child(named: b("whiteout"))?.rdev == 0)
        #expect(root.child(named: b("escaped-xattr"))?.xattrs.first == Xattr("trusted.overlay.redirect", b("/foo\n")))
        #expect(root.child(named: b("inline-large3"))?.content?.count == 4097)
    }
}

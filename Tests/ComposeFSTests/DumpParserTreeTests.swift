import Testing

@testable import ComposeFS

/// composefs-dump(5) parser rules about the tree (FORMAT.md §14.5): paths,
/// hardlinks, symlink targets, payloads, inline content and xattrs.
extension DumpParserTests {
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
        expectError(
            rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n",
            line: 3, "Parent must be a directory for /a/b")
        expectError(
            rootLine + "/a 1 120777 1 0 0 0 0.0 / - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n",
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
        expectError(
            rootLine + "/d 4096 40755 2 0 0 0 0.0 - - -\n/d/.. 0 100644 1 0 0 0 0.0 - - -\n",
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
        let root = try parseDump(
            rootLine + #"""
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

    // MARK: Hardlinks

    @Test func hardlinkErrors() {
        expectError(file("/h 0 @100644 1 0 0 0 0.0 /nope - -"), line: 2, "No target at /nope for hardlink")
        expectError(file("/x 0 @100644 1 0 0 0 0.0 /x - -"), line: 2, "Self-referential hardlink /x")
        expectError(file("/d 4096 @40755 2 0 0 0 0.0 / - -"), line: 2, "Directories can't be hardlinked")
        expectError(file("/h 0 @100644 1 0 0 0 0.0 - - -"), line: 2, "No target path for the hardlink")
        // Fix-ups run last line first: the later bad line is the one reported.
        expectError(
            rootLine + "/h1 0 @100644 1 0 0 0 0.0 /nope1 - -\n/h2 0 @100644 1 0 0 0 0.0 /nope2 - -\n",
            line: 3, "No target at /nope2 for hardlink")
    }

    @Test func hardlinkChainsAndForwardReferences() throws {
        let root = try parseDump(
            rootLine + """
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
        #expect(a.nlink == 3)   // hardlinks do not add to the target's nlink
        #expect(c.mode == 0o100644)
    }

    @Test func hardlinkLinesIgnoreTheOtherFields() throws {
        let root = try parseDump(
            rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n"
                + #"/h x @100644 y z w v q /a \q \q user.no-equal"# + "\n")
        let h = try #require(root.child(named: b("h")))
        #expect(h.hardlinkTarget === root.child(named: b("a")))
        #expect(h.xattrs.isEmpty)
    }

    @Test func hardlinkTargetsAreLookedUpLikePaths() throws {
        let root = try parseDump(
            rootLine + #"""
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
        #expect(l.size == 4095)   // SIZE is replaced by the target length
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
}

import Testing

@testable import ComposeFS

/// `composefs-info dump`, `ls` and `objects` printing (FORMAT.md §17).
@Suite struct DumpPrinterTests {
    static let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

    /// A tree with every printing rule in it.
    static let input = #"""
        / 4096 40755 3 0 0 0 1.5 - - - user.x=a\x3db
        /c 0 20644 1 0 0 1234 0.0 - - -
        /d 4096 40700 2 5 6 0 10.000000009 - - -
        /d/f 10 100644 2 0 0 0 0.0 ab/cdef - \#(digest) user.e=
        /dash 1 100644 1 0 0 0 0.0 - \x2d -
        /h 0 @100644 1 0 0 0 0.0 /d/f - -
        /l 3 120777 1 0 0 0 -5.7 \x2d\x20x - -
        /ld 1 120777 1 0 0 0 0.0 \x2d - -
        /n\tm 4 100644 1 0 0 0 0.0 - -\n\xff= - user.k\x3dx=v\x3dw
        /sp\x20ace 0 100644 1 4294967295 0 0 0.0 - - -
        /z 5 100644 1 0 0 0 0.0 ab/cdef - -

        """#

    @Test func dumpLines() throws {
        let root = try parseDump(Self.input)
        let expected = #"""
            / 4096 40755 3 0 0 0 1.5 - - - user.x=a\x3db
            /c 0 20644 1 0 0 1234 0.0 - - -
            /d 4096 40700 2 5 6 0 10.9 - - -
            /d/f 10 100644 2 0 0 0 0.0 ab/cdef - \#(Self.digest) user.e=
            /dash 1 100644 1 0 0 0 0.0 - \x2d -
            /h 10 @100644 2 0 0 0 0.0 /d/f - \#(Self.digest) user.e=
            /l 3 120777 1 0 0 0 -5.7 -\x20x - -
            /ld 1 120777 1 0 0 0 0.0 \x2d - -
            /n\tm 4 100644 1 0 0 0 0.0 - -\n\xff= - user.k\x3dx=v\x3dw
            /sp\x20ace 0 100644 1 4294967295 0 0 0.0 - - -
            /z 5 100644 1 0 0 0 0.0 ab/cdef - -

            """#
        #expect(DumpPrinter.dump(root).text == expected)
    }

    @Test func emptyButPresentValuesPrintNothing() throws {
        // An empty payload field is present-but-empty: it prints as an empty field.
        let root = try parseDump(rootLine + "/e 0 100644 1 0 0 0 0.0  - - user.a=\n")
        #expect(DumpPrinter.dump(root).text == rootLine + "/e 0 100644 1 0 0 0 0.0  - - user.a=\n")
    }

    @Test func hardlinkToADirectoryIsNotDescended() throws {
        let root = try parseDump(
            rootLine + """
                /d 4096 40700 2 0 0 0 0.0 - - -
                /d/x 0 100644 1 0 0 0 0.0 - - -
                /h 0 @100644 1 0 0 0 0.0 /d - -

                """)
        #expect(
            DumpPrinter.dump(root).text == rootLine + """
                /d 4096 40700 2 0 0 0 0.0 - - -
                /d/x 0 100644 1 0 0 0 0.0 - - -
                /h 4096 @40700 2 0 0 0 0.0 /d - -

                """)
    }

    @Test func lsListing() throws {
        let root = try parseDump(Self.input)
        var out: [UInt8] = []
        DumpPrinter.list(root) { out += $0 }
        let expected =
            "/c\n"
            + "/d/\t\n"
            + "/d/f\t@ ab/cdef\n"
            + "/dash\n"
            + "/h\n"
            + "/l\t-> -\\x20x\n"
            + "/ld\t-> -\n"
            + "/n\\tm\n"
            + "/sp ace\n"
            + "/z\t@ ab/cdef\n"
        #expect(out.text == expected)
    }

    @Test func objectsAreRegularFilePayloadsInTreeOrder() throws {
        let root = try parseDump(Self.input)
        // Symlink targets and hardlink entries are not objects; duplicates
        // stay (composefs-info sorts and merges them).
        #expect(DumpPrinter.objects(root) == [b("ab/cdef"), b("ab/cdef")])
    }

    @Test func dumpParsesBackToTheSameDump() throws {
        let root = try parseDump(Self.input)
        let first = DumpPrinter.dump(root)
        let again = try DumpParser.parse(first, strict: true)
        #expect(DumpPrinter.dump(again) == first)
    }

    @Test func streamedChunksEqualTheWholeDump() throws {
        var text = rootLine
        for i in 0..<3000 {
            text += "/file-\(i)-with-a-longer-name 0 100644 1 0 0 0 \(i).\(i) - - - user.i=\(i)\n"
        }
        let root = try parseDump(text)
        var chunks: [[UInt8]] = []
        DumpPrinter.dump(root) { chunks.append($0) }
        #expect(chunks.count > 1)
        let whole = DumpPrinter.dump(root)
        #expect(chunks.flatMap { $0 } == whole)
        #expect(whole.count > 1 << 16)
        var listed: [UInt8] = []
        DumpPrinter.list(root) { listed += $0 }
        #expect(listed.text.split(separator: "\n").count == 3000)
    }
}

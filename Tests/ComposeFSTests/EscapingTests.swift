import Testing

@testable import ComposeFS

/// The escapes of composefs-dump(5): parser side (FORMAT.md §14.2) and
/// printer side (§17.1).
@Suite struct EscapingTests {
    func unescape(_ s: String) throws(DumpEscaping.Error) -> [UInt8] {
        try DumpEscaping.unescape(ArraySlice(b(s)))
    }

    func unescapeError(_ s: String) -> DumpEscaping.Error? {
        do {
            _ = try unescape(s)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Unescape

    @Test func plainTextIsUnchanged() throws {
        #expect(try unescape("") == [])
        #expect(try unescape("abc=-/ \u{7F}") == b("abc=-/ \u{7F}"))
        #expect(try unescape("-") == [0x2D])
        // Bytes that the printer escapes are accepted raw.
        #expect(try DumpEscaping.unescape([0x09, 0x0D, 0xFF, 0x80]) == [0x09, 0x0D, 0xFF, 0x80])
    }

    @Test func everyEscape() throws {
        #expect(try unescape(#"\\"#) == [0x5C])
        #expect(try unescape(#"\n"#) == [0x0A])
        #expect(try unescape(#"\r"#) == [0x0D])
        #expect(try unescape(#"\t"#) == [0x09])
        #expect(try unescape(#"\x41"#) == [0x41])
        #expect(try unescape(#"\x4a"#) == [0x4A])
        #expect(try unescape(#"\x4A"#) == [0x4A])
        #expect(try unescape(#"\xff"#) == [0xFF])
        #expect(try unescape(#"\xFF"#) == [0xFF])
        #expect(try unescape(#"\xaB"#) == [0xAB])
        #expect(try unescape(#"\x00"#) == [0x00])
        #expect(try unescape(#"\x3d\x2d"#) == b("=-"))
        #expect(try unescape(#"a\\b\nc\x20d\te\rf"#) == b("a\\b\nc d\te\rf"))
        #expect(try unescape(#"\\\\x41"#) == b(#"\\x41"#))
    }

    @Test func allByteValuesViaHex() throws {
        for v in 0...255 {
            let upper = "\\x" + String(format2(v)).uppercased()
            let lower = "\\x" + String(format2(v))
            #expect(try unescape(lower) == [UInt8(v)])
            #expect(try unescape(upper) == [UInt8(v)])
        }
    }

    func format2(_ v: Int) -> String {
        let s = String(v, radix: 16)
        return s.count == 1 ? "0" + s : s
    }

    @Test func unsupportedEscape() {
        #expect(unescapeError(#"\q"#) == .unsupportedEscape(UInt8(ascii: "q")))
        #expect(unescapeError(#"\q"#)?.description == "Unsupported escape type q")
        #expect(unescapeError(#"ab\a"#)?.description == "Unsupported escape type a")
        #expect(unescapeError(#"\X41"#)?.description == "Unsupported escape type X")
        #expect(unescapeError(#"\0"#)?.description == "Unsupported escape type 0")
    }

    @Test func noCharacterAfterEscape() {
        #expect(unescapeError(#"\"#) == .noCharacterAfterEscape)
        #expect(unescapeError(#"abc\"#)?.description == "No character after escape")
    }

    @Test func noHexCharactersAfterHexEscape() {
        #expect(unescapeError(#"\x"#) == .noHexAfterHexEscape)
        #expect(unescapeError(#"\x4"#) == .noHexAfterHexEscape)
        #expect(unescapeError(#"ab\xf"#)?.description == "No hex characters after hex escape")
    }

    @Test func invalidHexCharactersAfterHexEscape() {
        #expect(unescapeError(#"\xg1"#) == .invalidHex)
        #expect(unescapeError(#"\x1g"#) == .invalidHex)
        #expect(unescapeError(#"\x -"#) == .invalidHex)
        #expect(unescapeError(#"\xzz"#)?.description == "Invalid hex characters after hex escape")
    }

    // MARK: Escape

    /// The rule of §17.1 written out independently, byte by byte.
    func expectedEscape(_ byte: UInt8, equal: Bool = false, keepSpace: Bool = false) -> [UInt8] {
        switch byte {
        case 0x5C: return b(#"\\"#)
        case 0x0A: return b(#"\n"#)
        case 0x0D: return b(#"\r"#)
        case 0x09: return b(#"\t"#)
        case 0x3D where equal: return b(#"\x3d"#)
        default:
            let low: UInt8 = keepSpace ? 0x20 : 0x21
            if byte >= low && byte <= 0x7E { return [byte] }
            return b("\\x" + format2(Int(byte)))
        }
    }

    @Test func standardModeEveryByte() {
        for v in 0...255 {
            let byte = UInt8(v)
            #expect(DumpEscaping.escaped([byte]) == expectedEscape(byte), "byte \(v)")
        }
        // Spot checks of the rule itself.
        #expect(DumpEscaping.escaped([0x20]) == b(#"\x20"#))
        #expect(DumpEscaping.escaped([0x21]) == b("!"))
        #expect(DumpEscaping.escaped([0x7E]) == b("~"))
        #expect(DumpEscaping.escaped([0x7F]) == b(#"\x7f"#))
        #expect(DumpEscaping.escaped([0xAB]) == b(#"\xab"#))
        #expect(DumpEscaping.escaped([0x00]) == b(#"\x00"#))
        #expect(DumpEscaping.escaped(b("a=b")) == b("a=b"))
        #expect(DumpEscaping.escaped(b("a b\\c\nd\re\tf")) == b(#"a\x20b\\c\nd\re\tf"#))
    }

    @Test func keepSpaceModeForLs() {
        for v in 0...255 {
            let byte = UInt8(v)
            #expect(DumpEscaping.escaped([byte], mode: .keepSpace) == expectedEscape(byte, keepSpace: true), "byte \(v)")
        }
        #expect(DumpEscaping.escaped(b("a b\tc"), mode: .keepSpace) == b(#"a b\tc"#))
        #expect(DumpEscaping.escaped([0x1F, 0x7F], mode: .keepSpace) == b(#"\x1f\x7f"#))
    }

    @Test func escapeEqualMode() {
        for v in 0...255 {
            let byte = UInt8(v)
            #expect(DumpEscaping.escaped([byte], mode: .escapeEqual) == expectedEscape(byte, equal: true), "byte \(v)")
        }
        #expect(DumpEscaping.escaped(b("k=v=w"), mode: .escapeEqual) == b(#"k\x3dv\x3dw"#))
    }

    @Test func loneDash() {
        #expect(DumpEscaping.escaped(b("-"), mode: .escapeLoneDash) == b(#"\x2d"#))
        #expect(DumpEscaping.escaped(b("-")) == b("-"))
        #expect(DumpEscaping.escaped(b("--"), mode: .escapeLoneDash) == b("--"))
        #expect(DumpEscaping.escaped(b("-a"), mode: .escapeLoneDash) == b("-a"))
        #expect(DumpEscaping.escaped(b(""), mode: .escapeLoneDash) == [])
    }

    @Test func optionalValues() {
        var out: [UInt8] = []
        DumpEscaping.escapeOptional(nil, into: &out)
        #expect(out == b("-"))
        out = []
        DumpEscaping.escapeOptional([], into: &out)
        #expect(out == [])
        out = []
        DumpEscaping.escapeOptional(b("-"), mode: .escapeLoneDash, into: &out)
        #expect(out == b(#"\x2d"#))
        out = []
        DumpEscaping.escapeOptional(b("a b"), mode: .escapeLoneDash, into: &out)
        #expect(out == b(#"a\x20b"#))
        // Appends rather than replaces.
        out = b("x")
        DumpEscaping.escapeOptional(nil, into: &out)
        #expect(out == b("x-"))
    }

    @Test func escapeThenUnescapeIsIdentity() throws {
        let all = (0...255).map { UInt8($0) }
        let modes: [DumpEscaping.Mode] = [[], .escapeEqual, .keepSpace, [.escapeEqual, .escapeLoneDash]]
        for mode in modes {
            #expect(try DumpEscaping.unescape(ArraySlice(DumpEscaping.escaped(all, mode: mode))) == all)
        }
        #expect(try DumpEscaping.unescape(ArraySlice(DumpEscaping.escaped(b("-"), mode: .escapeLoneDash))) == b("-"))
        // STANDARD output never holds a space, LF or NUL: it is one dump field.
        let escaped = DumpEscaping.escaped(all)
        #expect(!escaped.contains(0x20) && !escaped.contains(0x0A) && !escaped.contains(0))
    }
}

import Testing

@testable import ComposeFSTools

/// The command-line parser follows GNU getopt_long, as the reference tools do.
@Suite struct ArgumentsTests {
    static let store = Arguments.Option.valued("digest-store", "PATH")
    static let digest = Arguments.Option.flag("print-digest")
    static let digestOnly = Arguments.Option.flag("print-digest-only")
    static let threads = Arguments.Option.valued("threads", "N")
    static let o = Arguments.Option.valued(nil, short: "o", "OPTIONS")
    static let v = Arguments.Option.flag(nil, short: "v")
    static let s = Arguments.Option.flag(nil, short: "s")
    static let all = [store, digest, digestOnly, threads, o, v, s]

    func parse(_ args: [String], permute: Bool = true) throws(Arguments.Error) -> Arguments {
        try Arguments(args, options: Self.all, permute: permute)
    }

    @Test func longOptionsWithValuesBothWays() throws {
        let a = try parse(["--digest-store=/a", "src", "--threads", "3", "img"])
        #expect(a.lastText(Self.store) == "/a")
        #expect(a.lastText(Self.threads) == "3")
        #expect(a.operandTexts == ["src", "img"])
    }

    @Test func valuesMayStartWithADash() throws {
        #expect(try parse(["--threads", "-1"]).lastText(Self.threads) == "-1")
        #expect(try parse(["-o", "-x"]).lastText(Self.o) == "-x")
        #expect(try parse(["--digest-store="]).lastText(Self.store) == "")
    }

    @Test func theLastValueCounts() throws {
        let a = try parse(["-o", "a", "-o", "b"])
        #expect(a.lastText(Self.o) == "b")
        #expect(a.all(Self.o) == [b("a"), b("b")])
    }

    @Test func uniquePrefixesAbbreviate() throws {
        #expect(try parse(["--digest-s=/x"]).lastText(Self.store) == "/x")
        #expect(try parse(["--th", "2"]).lastText(Self.threads) == "2")
        // An exact name wins over longer names it is a prefix of.
        let a = try parse(["--print-digest"])
        #expect(a.has(Self.digest) && !a.has(Self.digestOnly))
        #expect(throws: Arguments.Error.ambiguous("--print-d", candidates: ["print-digest", "print-digest-only"])) {
            try parse(["--print-d"])
        }
    }

    @Test func shortOptionsCluster() throws {
        let a = try parse(["img", "dir", "-sv", "-obasedir=/x"])
        #expect(a.has(Self.s) && a.has(Self.v))
        #expect(a.lastText(Self.o) == "basedir=/x")
        #expect(a.operandTexts == ["img", "dir"])
        #expect(try parse(["-vo", "ro"]).lastText(Self.o) == "ro")
    }

    @Test func doubleDashEndsOptionsAndDashIsAnOperand() throws {
        let a = try parse(["-", "--", "--threads", "-v"])
        #expect(a.operandTexts == ["-", "--threads", "-v"])
        #expect(a.given.isEmpty)
    }

    @Test func withoutPermutationOptionsEndAtTheFirstOperand() throws {
        let a = try parse(["-v", "img", "-s"], permute: false)
        #expect(a.has(Self.v) && !a.has(Self.s))
        #expect(a.operandTexts == ["img", "-s"])
    }

    @Test func errorsNameTheOption() {
        #expect(throws: Arguments.Error.unknown("--frob")) { try parse(["--frob"]) }
        #expect(throws: Arguments.Error.unknown("-x")) { try parse(["-vx"]) }
        #expect(throws: Arguments.Error.missingValue(Self.threads)) { try parse(["a", "--threads"]) }
        #expect(throws: Arguments.Error.missingValue(Self.o)) { try parse(["-o"]) }
        #expect(throws: Arguments.Error.unexpectedValue("--print-digest", value: "1")) { try parse(["--print-digest=1"]) }
        #expect(Arguments.Error.missingValue(Self.store).description == "Missing value for '--digest-store <PATH>'")
        #expect(Arguments.Error.missingValue(Self.o).description == "Missing value for '-o <OPTIONS>'")
        #expect(Arguments.Error.unknown("--frob").description == "Unknown option '--frob'")
    }

    @Test func helpAnywhereBeforeDoubleDash() {
        #expect(MkComposefs.wantsHelp(["a", "--help"]))
        #expect(MkComposefs.wantsHelp(["-h"]))
        #expect(!MkComposefs.wantsHelp(["--", "--help"]))
    }
}

extension Arguments {
    var operandTexts: [String] { operands.map { String(decoding: $0, as: UTF8.self) } }
}

import Foundation
import Testing

@testable import ComposeFS

/// The pieces of `--from-oci` that read untrusted bytes, each refusal with
/// its message: the JSON reader, digests, platforms, references and the
/// member index of image archives.
@Suite struct OCIUnitTests {
    static func parse(_ text: String) -> Result<JSON, JSON.Error> {
        Result { () throws(JSON.Error) in try JSON.parse(Array(text.utf8)) }
    }

    @Test func jsonValues() throws {
        let v = try JSON.parse(Array(#" {"a": [1, -2.5e3, true, false, null], "b": "x\u00e9\ud83d\ude00\n\"\\\/"} "#.utf8))
        #expect(v["a"]?.array?.count == 5)
        #expect(v["a"]?.array?[0].int64 == 1)
        #expect(v["a"]?.array?[1].int64 == nil, "not an integer")
        #expect(v["b"]?.stringBytes == Array("x\u{e9}\u{1F600}\n\"\\/".utf8))
        #expect(try JSON.parse(Array("9223372036854775807".utf8)).int64 == Int64.max)
        #expect(try JSON.parse(Array("9223372036854775808".utf8)).int64 == nil, "past Int64")
        #expect(try JSON.parse(Array("-9223372036854775808".utf8)).int64 == Int64.min)
    }

    @Test(arguments: [
        ("", "invalid JSON at byte 0: a value was expected, the text ended"),
        ("{\"a\":1,\"a\":2}", "invalid JSON at byte 7: the member \"a\" is given twice"),
        ("[1,]", "invalid JSON at byte 3: a value was expected"),
        ("{\"a\" 1}", "invalid JSON at byte 5: ':' was expected"),
        ("\"\\x\"", "invalid JSON at byte 3: unknown escape"),
        ("\"\\ud800\"", "invalid JSON at byte 7: a lone high surrogate"),
        ("\"\\udc00\"", "invalid JSON at byte 7: a lone low surrogate"),
        ("\"a\u{01}\"", "invalid JSON at byte 2: a control character in a string"),
        ("01", "invalid JSON at byte 1: text after the value"),
        ("1.", "invalid JSON at byte 2: a digit was expected after '.'"),
        ("tru", "invalid JSON at byte 0: unknown word"),
        ("[1] [2]", "invalid JSON at byte 4: text after the value"),
        ("\"abc", "invalid JSON at byte 4: the string is not closed")
    ])
    func jsonRefusals(_ text: String, _ message: String) {
        switch Self.parse(text) {
        case .success(let v): Issue.record("accepted \(text): \(v)")
        case .failure(let e): #expect(e.description == message)
        }
    }

    @Test func jsonRefusesInvalidUTF8AndDeepNesting() {
        #expect(throws: JSON.Error.syntax(offset: 1, message: "invalid UTF-8")) { try JSON.parse([0x22, 0xC0, 0x80, 0x22]) }
        #expect(throws: JSON.Error.syntax(offset: 1, message: "invalid UTF-8")) { try JSON.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSON.Error.tooDeep(offset: 64)) { try JSON.parse(Array(deep.utf8)) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? JSON.parse(Array(ok.utf8))) != nil)
    }

    @Test func digests() {
        let hex = String(repeating: "ab", count: 32)
        #expect(OCI.Digest(Array("sha256:\(hex)".utf8))?.hex == hex)
        #expect(OCI.Digest(Array("sha256:\(hex.uppercased())".utf8)) == nil, "lowercase only")
        #expect(OCI.Digest(Array("sha512:\(hex)".utf8)) == nil)
        #expect(OCI.Digest(Array("sha256:\(hex.dropLast())".utf8)) == nil)
        #expect(OCI.Digest(Array("sha256:\(hex)".utf8))?.blobPath == Array("blobs/sha256/\(hex)".utf8))
    }

    @Test func platforms() {
        #expect(OCI.Platform(parsing: "linux/arm64/v8") == OCI.Platform(os: "linux", architecture: "arm64", variant: "v8"))
        #expect(OCI.Platform(parsing: "linux") == nil)
        #expect(OCI.Platform(parsing: "linux//v8") == nil)
        #expect(OCI.Platform(parsing: "a/b/c/d") == nil)
        let arm = OCI.Platform(os: "linux", architecture: "arm64", variant: "v8")
        #expect(arm.accepts(OCI.Platform(os: "linux", architecture: "arm64")))
        #expect(
            !OCI.Platform(os: "linux", architecture: "arm", variant: "v7").accepts(
                OCI.Platform(os: "linux", architecture: "arm", variant: "v6")))
        #expect(CurrentProcess.machine != "x86_64" || OCI.Platform.current.description == "linux/amd64")
    }

    @Test func descriptors() throws {
        let hex = String(repeating: "0f", count: 32)
        let d = try OCI.Descriptor.parse(
            try JSON.parse(
                Array(
                    #"{"mediaType":"m","digest":"sha256:\#(hex)","size":12,"platform":{"os":"linux","architecture":"amd64"},"annotations":{"org.opencontainers.image.ref.name":"v1"}}"#
                        .utf8)))
        #expect(d.size == 12 && d.refName == "v1" && d.platform?.description == "linux/amd64")
        for (text, message) in [
            (#"{"digest":"sha256:\#(hex)"}"#, "descriptor sha256:\(hex) has no valid size"),
            (#"{"digest":"sha256:\#(hex)","size":-1}"#, "descriptor sha256:\(hex) has no valid size"),
            (#"{"digest":"md5:00","size":1}"#, "unsupported digest 'md5:00' (sha256: and 64 lowercase hex digits)"),
            (#"{"size":1}"#, "a descriptor has no digest"),
            (#"[]"#, "a descriptor is not an object")
        ] {
            #expect(throws: OCI.Descriptor.Invalid.self) { try OCI.Descriptor.parse(try JSON.parse(Array(text.utf8))) }
            do { _ = try OCI.Descriptor.parse(try JSON.parse(Array(text.utf8))) } catch let e as OCI.Descriptor.Invalid {
                #expect(e.message == message)
            }
        }
    }

    @Test func references() throws {
        let r = try OCIImage.Reference(parsing: Array("oci:/a/b:sha256:00".utf8))
        #expect(r == OCIImage.Reference(transport: .ociLayout, path: "/a/b", ref: "sha256:00"))
        #expect(try OCIImage.Reference(parsing: Array("docker-archive:x.tar:busybox:latest".utf8)).ref == "busybox:latest")
        #expect(try OCIImage.Reference(parsing: Array("oci-archive:x.tar".utf8)).ref == nil)
        #expect(throws: OCIImage.Error.source("oci: needs a path ('oci:PATH[:REF]')")) {
            try OCIImage.Reference(parsing: Array("oci:".utf8))
        }
        #expect(throws: OCIImage.Error.source("an empty image reference after 'x:'")) {
            try OCIImage.Reference(parsing: Array("oci:x:".utf8))
        }
        #expect(throws: OCIImage.Error.open(path: "/nonexistent/x", errno: .noSuchFileOrDirectory)) {
            try OCIImage.Reference(parsing: Array("/nonexistent/x".utf8))
        }
    }

    // MARK: Archive members

    static func index(_ bytes: [UInt8]) throws(ArchiveIndex.Error) -> ArchiveIndex {
        try ArchiveIndex(size: Int64(bytes.count), path: "a.tar") { (offset, count) throws(Errno) in
            Array(bytes[Int(offset)..<min(bytes.count, Int(offset) + count)])
        }
    }

    @Test func archiveMembers() throws {
        let long = "d/" + String(repeating: "n", count: 150) + "/blob"
        let tar = TestTar([
            .dir("./"), .file("./oci-layout", Array("{}".utf8)), .file(long, Array("long".utf8)),
            .symlink("blobs/link", "../" + long), .hardlink("hard", "oci-layout"),
            .symlink("a/up", "../../etc/passwd"), .symlink("loop1", "loop2"), .symlink("loop2", "loop1")
        ]).archive
        let index = try Self.index(tar)
        let layout = try #require(try index.member(Array("oci-layout".utf8)))
        #expect(Array(tar[Int(layout.offset)..<Int(layout.offset + layout.size)]) == Array("{}".utf8))
        let viaLink = try #require(try index.member(Array("blobs/link".utf8)))
        #expect(Array(tar[Int(viaLink.offset)..<Int(viaLink.offset + viaLink.size)]) == Array("long".utf8))
        #expect(try index.member(Array("./hard".utf8)) == layout)
        #expect(try index.member(Array("missing".utf8)) == nil)
        #expect(
            throws: ArchiveIndex.Error.link(
                path: "a.tar", member: Array("a/up".utf8), message: "its target '../../etc/passwd' leaves the archive")
        ) {
            try index.member(Array("a/up".utf8))
        }
        #expect(throws: ArchiveIndex.Error.link(path: "a.tar", member: Array("loop1".utf8), message: "too many links (a loop?)")) {
            try index.member(Array("loop1".utf8))
        }
        #expect(throws: ArchiveIndex.Error.unsafeName(path: "a.tar", member: Array("../x".utf8))) { try index.member(Array("../x".utf8)) }
    }

    @Test func archiveRefusals() throws {
        #expect(throws: ArchiveIndex.Error.unsafeName(path: "a.tar", member: Array("a/../../b".utf8))) {
            try Self.index(TestTar([.file("a/../../b", [1])]).archive)
        }
        #expect(throws: ArchiveIndex.Error.duplicate(path: "a.tar", member: Array("x".utf8))) {
            try Self.index(TestTar([.file("x", [1]), .file("./x", [2])]).archive)
        }
        var tar = TestTar([.file("big", [UInt8](repeating: 7, count: 3000))]).bytes
        tar.removeLast(1024)   // the data ends early
        #expect(throws: ArchiveIndex.Error.truncated(path: "a.tar", member: Array("big".utf8), size: 3000)) { try Self.index(tar) }
        var bad = TestTar([.file("x", [1])]).archive
        bad[0] ^= 1   // the checksum no longer matches
        #expect(throws: ArchiveIndex.Error.header(path: "a.tar", offset: 0, message: "bad checksum")) { try Self.index(bad) }
        // A huge base-256 size.
        var huge = TestTar([.file("x", [1])]).archive
        huge.replaceSubrange(124..<136, with: [0x80] + [UInt8](repeating: 0xFF, count: 11))
        let sum = huge[0..<512].enumerated().reduce(0) { $0 + Int((148..<156).contains($1.offset) ? 0x20 : $1.element) }
        huge.replaceSubrange(148..<156, with: Array(String(format: "%06o\0 ", sum).utf8))
        #expect(throws: ArchiveIndex.Error.self) { try Self.index(huge) }
    }
}

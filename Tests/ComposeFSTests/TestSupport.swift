import Foundation
import Testing

@testable import ComposeFS

// Shared helpers of the test suite: fixtures, byte/text conversions, dump
// snippets, a reference SHA-256, and a runner for the built executables.

/// UTF-8 bytes of a string literal.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

extension Array where Element == UInt8 {
    /// The bytes as text (for messages and comparisons of ASCII output).
    var text: String { String(decoding: self, as: UTF8.self) }
}

/// Decodes hex text with optional spaces (for byte-exact expectations).
func hexBytes(_ s: String) -> [UInt8] {
    let digits = Array(s.utf8).filter { $0 != 0x20 && $0 != 0x0A }
    precondition(digits.count % 2 == 0, "odd hex string")
    return [UInt8](hexDigits: digits)!
}

/// The root line used by most parser tests.
let rootLine = "/ 4096 40755 2 0 0 0 0.0 - - -\n"

/// Parses text as a dump file.
func parseDump(_ text: String, strict: Bool = false) throws(DumpParser.Error) -> Node {
    try DumpParser.parse(b(text), strict: strict)
}

/// The parse error for `data`, or nil if it parses.
func parseError(_ data: [UInt8], strict: Bool = false) -> DumpParser.Error? {
    do {
        _ = try DumpParser.parse(data, strict: strict)
        return nil
    } catch {
        return error
    }
}

func parseError(_ text: String, strict: Bool = false) -> DumpParser.Error? {
    parseError(b(text), strict: strict)
}

/// Reads a little-endian integer out of an image.
func le(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<count { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
    return v
}

/// A deterministic pseudo-random generator (SplitMix64), so every run
/// exercises the same inputs.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Deterministic pseudo-random bytes.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var g = SplitMix64(seed: seed)
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var w = g.next()
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: w)
            w >>= 8
            i += 1
        }
    }
    return out
}

// MARK: - Fixtures

/// Test data copied from upstream composefs and the conformance vectors
/// (see Fixtures/): the suite does not need ../shared.
enum Fixtures {
    static var directory: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    }

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(name)))
    }

    static func text(_ name: String) throws -> String { try bytes(name).text }

    /// First whitespace-separated token of a file (the `.sha256`, `.digest` files).
    static func token(_ name: String) throws -> String {
        try text(name).split(whereSeparator: { $0 == " " || $0 == "\n" }).first.map(String.init) ?? ""
    }
}

/// One of the copied conformance vectors: a dump, its mkcomposefs
/// arguments, and upstream's results.
struct Vector: CustomStringConvertible, Sendable {
    var name: String
    var description: String { name }

    static let all = ["small-128", "small-133", "small-187", "small-336"].map(Vector.init)

    func file(_ ext: String) throws -> [UInt8] { try Fixtures.bytes("vectors/\(name).\(ext)") }
    var dump: [UInt8] { get throws { try file("dump") } }
    var sha256: String { get throws { try Fixtures.token("vectors/\(name).sha256") } }
    var digest: String { get throws { try Fixtures.token("vectors/\(name).digest") } }
    var args: [String] {
        get throws { try Fixtures.text("vectors/\(name).args").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) }
    }

    /// The writer options that mkcomposefs derives from `args` (§1.3).
    var options: ImageWriter.Options {
        get throws { try versionOptions(args) }
    }

    /// The image written by this project, checked to be upstream's image
    /// (same sha256), so reader tests can use it like upstream's `.cfs`.
    func upstreamImage() throws -> [UInt8] {
        let image = try ImageWriter.write(try DumpParser.parse(try dump), options: try options)
        try #require(SHA256Reference.hex(image) == (try sha256), "\(name): written image differs from upstream's")
        return image
    }
}

/// The version range mkcomposefs uses for these arguments (§1.3).
func versionOptions(_ args: [String]) throws -> ImageWriter.Options {
    var minV: UInt32?
    var maxV: UInt32?
    for a in args {
        if a.hasPrefix("--min-version=") {
            let v: UInt32 = try #require(UInt32(a.dropFirst("--min-version=".count)))
            minV = v
        }
        if a.hasPrefix("--max-version=") {
            let v: UInt32 = try #require(UInt32(a.dropFirst("--max-version=".count)))
            maxV = v
        }
    }
    if minV == nil && maxV == nil { return .init(minVersion: 0, maxVersion: 1) }
    return .init(minVersion: minV ?? 0, maxVersion: maxV ?? 0)
}

// MARK: - SHA-256 (FIPS 180-4), independent of the library's libcrypto use

enum SHA256Reference {
    static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2
    ]

    @inline(__always) static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    static func hash(_ data: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19]
        var msg = data
        let bitLength = UInt64(data.count) &* 8
        msg.append(0x80)
        while msg.count % 64 != 56 { msg.append(0) }
        for i in (0..<8).reversed() { msg.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: msg.count, by: 64) {
            for i in 0..<16 {
                let o = chunk + 4 * i
                w[i] = UInt32(msg[o]) << 24 | UInt32(msg[o + 1]) << 16 | UInt32(msg[o + 2]) << 8 | UInt32(msg[o + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h[0]
            var b = h[1]
            var c = h[2]
            var d = h[3]
            var e = h[4]
            var f = h[5]
            var g = h[6]
            var hh = h[7]
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                hh = g
                g = f
                f = e
                e = d &+ t1
                d = c
                c = b
                b = a
                a = t1 &+ t2
            }
            h[0] &+= a
            h[1] &+= b
            h[2] &+= c
            h[3] &+= d
            h[4] &+= e
            h[5] &+= f
            h[6] &+= g
            h[7] &+= hh
        }
        var out: [UInt8] = []
        for v in h {
            out += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
        }
        return out
    }

    static func hex(_ data: [UInt8]) -> String { hash(data).hexString }
}

// MARK: - Temporary directories

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let url: URL
    var path: String { url.path }

    /// Where every test's directory starts.
    static var prefix: String { FileManager.default.temporaryDirectory.appendingPathComponent("composefs-tests-").path }

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("composefs-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func contents() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted()
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// The first offset where two byte strings differ (nil when equal), so a
/// failed image comparison names an offset instead of printing both images.
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    let n = min(a.count, b.count)
    for i in 0..<n where a[i] != b[i] { return i }
    return a.count == b.count ? nil : n
}

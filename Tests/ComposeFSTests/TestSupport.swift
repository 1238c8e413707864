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
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    @inline(__always) static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    static func hash(_ data: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
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
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d
            h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
        var out: [UInt8] = []
        for v in h { out += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
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

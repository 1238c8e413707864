// Writes the generated seed corpora: Fuzz/Corpus/fuzz-dump/gen-*.dump (random
// dumps covering every file type, escapes, xattrs, whiteouts, hardlinks),
// Fuzz/Corpus/fuzz-image/gen-*.cfs (those dumps written as images, v0 and
// v1), Fuzz/Corpus/fuzz-fuse/gen-*.in (the same images in fuzz-fuse's input
// form) and Fuzz/Corpus/fuzz-mount-options/gen-*.txt. Deterministic.
//
//     swift run --package-path Fuzz fuzz-seedgen Fuzz/Corpus
import ComposeFS

#if canImport(Glibc)
    import Glibc
#endif

struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ p: Int) -> Bool { int(100) < p }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
}

let safe = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+/".utf8))
func esc(_ b: [UInt8]) -> String {
    var s = ""
    for c in b {
        if safe.contains(c) {
            s.unicodeScalars.append(Unicode.Scalar(c))
        } else if c == 0x5C {
            s += "\\\\"
        } else {
            s += "\\x" + (c < 16 ? "0" : "") + String(c, radix: 16)
        }
    }
    return s
}
func hex(_ b: [UInt8]) -> String { b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

var rng = SplitMix64(state: 0xC0FF_EE15_C0DE)

func randomBytes(_ n: Int, printable: Bool) -> [UInt8] {
    (0..<n).map { _ in printable ? UInt8(0x21 + rng.int(94)) : UInt8(truncatingIfNeeded: rng.next()) }
}
func randomName() -> [UInt8] {
    switch rng.int(10) {
    case 0: return Array(repeating: UInt8(ascii: "L"), count: 1 + rng.int(255))
    case 1: return randomBytes(1 + rng.int(12), printable: false).map { $0 == 0 || $0 == 0x2F ? 0x41 : $0 }
    case 2: return Array("-".utf8) + randomBytes(rng.int(3), printable: true).map { $0 == 0x2F ? 0x42 : $0 }
    default: return Array((0..<(1 + rng.int(10))).map { _ in rng.pick(Array("abcdefxyz0123_".utf8)) })
    }
}
func xattrs() -> String {
    var out = ""
    var used = Set<[UInt8]>()
    for _ in 0..<rng.int(4) {
        let key: [UInt8]
        switch rng.int(8) {
        case 0: key = Array("trusted.overlay.opaque".utf8)
        case 1: key = Array("user.overlay.redirect".utf8)
        case 2: key = Array("security.selinux".utf8)
        case 3: key = Array("trusted.overlay.metacopy".utf8)
        case 4: key = Array("security.capability".utf8)
        case 5: key = Array("trusted.overlay.overlay.x".utf8)
        default: key = Array("user.".utf8) + randomBytes(1 + rng.int(6), printable: true).map { $0 == 0x3D ? 0x61 : $0 }
        }
        guard used.insert(key).inserted else { continue }
        let value = rng.chance(20) ? [] : randomBytes(rng.int(24), printable: rng.chance(60))
        out += " " + esc(key) + "=" + esc(value)
    }
    return out
}
func attrs() -> (String, String) {
    let uid = rng.pick([0, 0, 1000, 65534, Int(UInt32.max)])
    let gid = rng.pick([0, 1000, 65534, 123_456_789])
    let secs: Int64 = rng.pick([0, 1_700_000_000, -1, 1_633_950_376, 9_999_999_999])
    let nsec = rng.chance(50) ? 0 : rng.int(1_000_000_000)
    return ("\(uid) \(gid)", "\(secs).\(nsec)")
}

func generateDump(entries: Int) -> String {
    var lines: [String] = []
    var dirs: [[UInt8]] = [Array("/".utf8)]
    var files: [[UInt8]] = []
    var taken = Set<[UInt8]>()
    func line(
        _ path: [UInt8], size: UInt64, mode: String, nlink: Int, rdev: Int = 0,
        payload: String = "-", content: String = "-", digest: String = "-", xattr: Bool = true
    ) {
        let (ids, mtime) = attrs()
        lines.append(
            "\(esc(path)) \(size) \(mode) \(nlink) \(ids) \(rdev) \(mtime) \(payload) \(content) \(digest)"
                + (xattr ? xattrs() : ""))
    }
    let perm = { rng.pick([0o755, 0o644, 0o700, 0o777, 0o4755, 0o1777, 0o0]) }
    func m(_ type: Int, _ p: Int) -> String { String(type | p, radix: 8) }
    line(Array("/".utf8), size: 4096, mode: m(0o040000, perm()), nlink: 2)
    for _ in 0..<entries {
        let parent = rng.pick(dirs)
        var path = parent
        if path.count > 1 { path.append(UInt8(ascii: "/")) }
        path += randomName()
        guard path.count < 1024, taken.insert(path).inserted else { continue }
        switch rng.int(12) {
        case 0, 1:
            dirs.append(path)
            line(path, size: 4096, mode: m(0o040000, perm()), nlink: 2)
        case 2:
            let n = rng.int(rng.chance(10) ? 5000 : 80)
            let c = randomBytes(n, printable: rng.chance(50))
            files.append(path)
            line(path, size: UInt64(n), mode: m(0o100000, perm()), nlink: 1, content: n == 0 ? "-" : esc(c))
        case 3, 4:
            let d = randomBytes(32, printable: false)
            let h = hex(d)
            let size: UInt64 = rng.pick([1, 4095, 4096, 4097, 1 << 20, 5_000_000_000])
            let payload =
                rng.chance(80) ? String(h.prefix(2)) + "/" + String(h.dropFirst(2)) : esc(randomBytes(1 + rng.int(30), printable: true))
            files.append(path)
            line(path, size: size, mode: m(0o100000, perm()), nlink: 1, payload: payload, digest: rng.chance(80) ? h : "-")
        case 5:
            files.append(path)
            line(path, size: 0, mode: m(0o100000, perm()), nlink: 1)
        case 6:
            let t =
                rng.chance(10)
                ? Array(repeating: UInt8(ascii: "t"), count: 1 + rng.int(4000)) : randomBytes(1 + rng.int(40), printable: true)
            line(path, size: UInt64(t.count), mode: "120777", nlink: 1, payload: esc(t))
        case 7:
            // Whiteout (0/0 char device) or a real device.
            let rdev = rng.chance(50) ? 0 : rng.pick([259, 1 << 8 | 3, 0xFFFF_FFFF])
            line(path, size: 0, mode: m(rng.chance(50) ? 0o020000 : 0o060000, perm()), nlink: 1, rdev: rdev)
        case 8:
            line(path, size: 0, mode: m(rng.chance(50) ? 0o010000 : 0o140000, perm()), nlink: 1)
        default:
            if let target = files.isEmpty ? nil : rng.pick(files) {
                let (ids, mtime) = attrs()
                lines.append("\(esc(path)) 0 @100644 1 \(ids) 0 \(mtime) \(esc(target)) - -")
            } else {
                files.append(path)
                line(path, size: 0, mode: "100644", nlink: 1)
            }
        }
    }
    return lines.joined(separator: "\n") + "\n"
}

func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

func save(_ bytes: [UInt8], _ path: String) {
    guard let f = fopen(path, "wb") else { fatalError("cannot write \(path)") }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

let out = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Fuzz/Corpus"
for t in ["fuzz-dump", "fuzz-image", "fuzz-mount-options", "fuzz-fuse"] { mkdir(out + "/" + t, 0o755) }

var dumps = 0
var images = 0
var rejected = 0
for i in 0..<48 {
    let text = Array(generateDump(entries: i < 8 ? 2 + i : 4 + rng.int(28)).utf8)
    let tree: Node
    do { tree = try DumpParser.parse(text) } catch {
        rejected += 1
        if rejected < 6 { print("rejected: \(error)") }
        continue
    }
    let name = "gen-" + String(1000 + i).dropFirst()
    if text.count <= 16 << 10 {
        save(text, "\(out)/fuzz-dump/\(name).dump")
        dumps += 1
    }
    let options = i % 3 == 0 ? ImageWriter.Options(minVersion: 1, maxVersion: 1) : ImageWriter.Options()
    if let image = try? ImageWriter.write(tree, options: options), image.count <= 32 << 10, i % 2 == 0 {
        save(image, "\(out)/fuzz-image/\(name).cfs")
        // fuzz-fuse: no extra request (N = 0), then the image; every
        // fourth one with a LOOKUP of "a" under the root as the extra request.
        var request: [UInt8] = []
        if i % 8 == 0 { request = Fuse.Request.encode(.lookup, unique: 99, node: 1, body: Array("a".utf8) + [0]) }
        save(le32(UInt32(request.count)) + request + image, "\(out)/fuzz-fuse/\(name).in")
        images += 1
    }
}

let mountSeeds = [
    "basedir=/objects",
    "basedir=/a:/b:/c,ro",
    "basedir=/o,digest=" + String(repeating: "ab", count: 32),
    "basedir=/o,verity,tryverity",
    "basedir=/o,tryverity,noverity",
    "basedir=/o,upperdir=/u,workdir=/w,rw",
    "basedir=/o,idmap=/proc/1/ns/user",
    "basedir=/with\\,comma:/x\\:y,ro",
    "basedir=a::b",
    "basedir=",
    "digest=" + String(repeating: "0", count: 63) + "g,basedir=/o",
    ",,basedir=/o,,",
    "basedir=/o,upperdir=/u",
    "basedir=/o,unknown=1",
    "basedir=/o\\",
    "basedir=/\u{e9}t\u{e9},workdir=/w,upperdir=/\u{1F600}"
]
for (i, s) in mountSeeds.enumerated() {
    save(Array(s.utf8), "\(out)/fuzz-mount-options/gen-\(String(100 + i).dropFirst()).txt")
}
print("seedgen: \(dumps) dumps, \(images) images, \(mountSeeds.count) option strings (\(rejected) dumps rejected)")

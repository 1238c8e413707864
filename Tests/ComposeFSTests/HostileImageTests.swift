import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// Systematic corruption of valid images (FORMAT.md §15; never crash on a
/// hostile image): header and superblock fields, every field of every
/// inode, xattr areas, directory entries pointing outside the image, into
/// the middle of other structures or back up the tree, truncation at every
/// boundary, and random bit flips. Every corrupted image goes through the
/// reader (tree and streaming walk) and the printers: each must end with
/// output or an `ImageReader.Error`, quickly. A crash would kill the test
/// process, so reaching the count assertion is the proof.
@Suite struct HostileImageTests {
    /// The valid images to corrupt: the copied vectors and upstream asset
    /// (committed fixtures, so the count does not depend on ../shared).
    static let bases: [(String, [UInt8])] = {
        var out: [(String, [UInt8])] = []
        for v in Vector.all {
            if let img = try? ImageWriter.write(try DumpParser.parse(try v.dump), options: try v.options) {
                out.append((v.name, img))
            }
        }
        if let special = try? Fixtures.bytes("upstream/special.dump"),
            let img = try? ImageWriter.write(try DumpParser.parse(special), options: .init(minVersion: 0, maxVersion: 0))
        {
            out.append(("special", img))
        }
        return out
    }()

    /// Reads an image every way composefs-info does. Returns whether it loaded.
    @discardableResult
    static func exercise(_ image: [UInt8]) -> Bool {
        var loaded = false
        if let img = try? ImageReader.load(image) {
            loaded = true
            _ = DumpPrinter.dump(img.root)
            DumpPrinter.list(img.root) { _ in }
            _ = DumpPrinter.objects(img.root)
        }
        var line: [UInt8] = []
        _ = try? ImageReader.walk(ByteReader(image)) { entry in
            line.removeAll(keepingCapacity: true)
            DumpPrinter.line(entry.node, path: entry.path, hardlinkTarget: entry.hardlinkTarget, into: &line)
        }
        return loaded
    }

    /// Inodes of a valid image: (offset, extended) for each, from a walk.
    static func inodes(_ image: [UInt8]) throws -> [(offset: Int, extended: Bool)] {
        let loader = try ImageReader.Loader(ByteReader(image))
        var nids: [Int] = []
        try loader.traverse(filter: nil) { event in
            switch event {
            case .root(_, let nid), .entry(_, let nid, _, _): nids.append(nid)
            case .hardlink: break
            }
        }
        return nids.map { nid in
            let o = loader.meta + nid * 32
            return (o, image[o] & 1 != 0)
        }
    }

    static func put(_ image: inout [UInt8], _ offset: Int, _ width: Int, _ value: UInt64) {
        for i in 0..<width where offset + i < image.count {
            image[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i))
        }
    }

    static func get(_ image: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<width where offset + i < image.count { v |= UInt64(image[offset + i]) << (8 * i) }
        return v
    }

    /// 0, all ones, and one off the original in both directions.
    static func values(_ original: UInt64, width: Int) -> [UInt64] {
        let max: UInt64 = width == 8 ? .max : (1 << UInt64(8 * width)) - 1
        return [0, max, (original &+ 1) & max, (original &- 1) & max]
    }

    /// Corruptions per base image: the systematic ones, topped up with
    /// random bit flips.
    static let perBase = 2_000

    /// Every corruption of one base image.
    static func corruptions(of image: [UInt8], seed: UInt64) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        func field(_ offset: Int, _ width: Int) {
            let original = get(image, offset, width)
            for v in values(original, width: width) where v != original {
                var c = image
                put(&c, offset, width, v)
                out.append(c)
            }
        }
        // Header and superblock.
        for (o, w) in [
            (0, 4), (4, 4), (8, 4), (12, 4), (1024, 4), (1032, 4), (1036, 1), (1037, 1), (1038, 2),
            (1040, 8), (1048, 8), (1056, 4), (1060, 4), (1064, 4), (1068, 4), (1104, 4), (1115, 1)
        ] {
            field(o, w)
        }
        // Every field of every inode, and its xattr area.
        let root = Int(get(image, 1038, 2))
        for (o, extended) in try inodes(image) {
            let fields: [(Int, Int)] =
                extended
                ? [(0, 2), (2, 2), (4, 2), (8, 8), (16, 4), (20, 4), (24, 4), (28, 4), (32, 8), (40, 4), (44, 4)]
                : [(0, 2), (2, 2), (4, 2), (6, 2), (8, 4), (16, 4), (20, 4), (24, 2), (26, 2)]
            for (f, w) in fields { field(o + f, w) }
            let isize = extended ? 64 : 32
            let icount = Int(get(image, o + 2, 2))
            let xsize = icount == 0 ? 0 : 12 + 4 * (icount - 1)
            if icount > 0 {
                field(o + isize + 4, 1)   // h_shared_count
                if get(image, o + isize + 4, 1) > 0 { field(o + isize + 12, 4) }   // first shared id
                let entry = o + isize + 12 + 4 * Int(get(image, o + isize + 4, 1))
                if entry + 4 <= o + isize + xsize {
                    field(entry, 1)   // e_name_len
                    field(entry + 1, 1)   // e_name_index
                    field(entry + 2, 2)   // e_value_size
                }
            }
            // Directory entries: nids pointing at the root (a cycle), at
            // themselves, past the image, into the middle of an inode.
            let mode = get(image, o + 4, 2)
            if mode & 0o170000 == 0o040000 {
                let layout = (get(image, o, 2) >> 1) & 7
                var chunk = -1
                if layout == 2 {
                    chunk = o + isize + xsize
                } else if layout == 0 {
                    chunk = Int(get(image, o + 16, 4)) * 4096
                }
                if chunk >= 0 && chunk + 12 <= image.count {
                    let count = Int(get(image, chunk + 8, 2)) / 12
                    for k in 0..<min(count, 6) {
                        let h = chunk + 12 * k
                        let own = UInt64(o / 32)
                        for v: UInt64 in [UInt64(root), own, own + 1, UInt64(image.count / 32) + 5, 1 << 40] {
                            var c = image
                            put(&c, h, 8, v)
                            out.append(c)
                        }
                        field(h + 8, 2)   // nameoff
                        field(h + 10, 1)   // file type
                    }
                }
            }
        }
        // Truncation at every 512-byte boundary and at odd places.
        var cut = 0
        while cut < image.count {
            out.append(Array(image[0..<cut]))
            cut += 512
        }
        for k in [1, 31, 33, 1151, 1153, 4095, 4097] where k < image.count { out.append(Array(image[0..<k])) }
        // Random bit flips, one to eight per image.
        var g = SplitMix64(seed: seed)
        while out.count < perBase {
            var c = image
            for _ in 0..<Int(g.next() % 8 + 1) {
                let at = Int(g.next() % UInt64(c.count))
                c[at] ^= 1 << UInt8(g.next() % 8)
            }
            out.append(c)
        }
        return out
    }

    @Test(arguments: 0..<5)
    func corruptedImagesNeverCrash(part: Int) throws {
        let bases = Self.bases
        try #require(bases.count >= 5, "base images")
        guard part < bases.count else { return }
        let (name, image) = bases[part]
        try #require(Self.exercise(image), "\(name) itself loads")
        let cases = try Self.corruptions(of: image, seed: UInt64(part) + 0xC0FFEE)
        var slowest = 0.0
        var loaded = 0
        for c in cases {
            let start = DispatchTime.now().uptimeNanoseconds
            if Self.exercise(c) { loaded += 1 }
            slowest = max(slowest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        #expect(slowest < 1.0, "\(name): slowest corrupted image took \(slowest) s")
        #expect(cases.count >= Self.perBase, "\(name): \(cases.count) corruptions")
        print("hostile images from \(name): \(cases.count) corrupted, \(loaded) still loaded, slowest \(String(format: "%.3f", slowest)) s")
    }

    /// The total over all parts (Swift Testing runs the parts in parallel).
    @Test func atLeastTenThousandCorruptions() throws {
        var total = 0
        for (k, (_, image)) in Self.bases.enumerated() {
            total += try Self.corruptions(of: image, seed: UInt64(k) + 0xC0FFEE).count
        }
        #expect(total >= 10_000, "only \(total) corrupted images")
    }

    /// The real tool on a sample: exit 0 or 1 (never a signal), with a
    /// message on failure, well under a second each.
    @Test func composefsInfoOnCorruptedImages() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (_, image) = try #require(Self.bases.first)
        var cases = try Self.corruptions(of: image, seed: 7)
        var g = SplitMix64(seed: 99)
        cases.shuffle(using: &g)
        for (k, c) in cases.prefix(60).enumerated() {
            let path = try dir.write("c\(k).cfs", c)
            for command in ["dump", "ls", "objects"] {
                let start = Date()
                let r = try Tools.info([command, path])
                let elapsed = Date().timeIntervalSince(start)
                #expect(r.status == 0 || r.status == 1, "composefs-info \(command) on case \(k): status \(r.status)")
                if r.status != 0 { #expect(r.err.hasPrefix("composefs-info: Failed to load"), "message: \(r.err)") }
                #expect(elapsed < 1.0, "composefs-info \(command) took \(elapsed) s")
            }
        }
    }
}

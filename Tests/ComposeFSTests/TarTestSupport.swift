import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Helpers of the tar tests: a small tar writer (archives with exactly the
// entries a test needs, hostile ones included), GNU tar and the OCI
// reference script run as processes, and the comparison of `mkcomposefs
// --from-tar` with `mkcomposefs` of the same layers extracted.

/// Writes ustar archives, with a pax header for what ustar cannot hold
/// (long names and link targets, xattrs, sub-second times).
struct TestTar {
    struct Entry {
        var name: [UInt8]
        var type: UInt8 = UInt8(ascii: "0")
        var mode: UInt32 = 0o644
        var uid = 0
        var gid = 0
        var mtime = 1_000_000
        /// Written as a pax `mtime=SEC.NANOS` record when set.
        var nanoseconds: Int? = nil
        var link: [UInt8] = []
        var data: [UInt8] = []
        var xattrs: [(String, [UInt8])] = []
        var major = 0
        var minor = 0

        static func file(_ name: String, _ data: [UInt8], mode: UInt32 = 0o644, mtime: Int = 1_000_000) -> Entry {
            Entry(name: b(name), mode: mode, mtime: mtime, data: data)
        }
        static func dir(_ name: String, mode: UInt32 = 0o755, mtime: Int = 1_000_000) -> Entry {
            Entry(name: b(name), type: UInt8(ascii: "5"), mode: mode, mtime: mtime)
        }
        static func symlink(_ name: String, _ target: String) -> Entry {
            Entry(name: b(name), type: UInt8(ascii: "2"), mode: 0o777, link: b(target))
        }
        static func hardlink(_ name: String, _ target: String) -> Entry {
            Entry(name: b(name), type: UInt8(ascii: "1"), link: b(target))
        }
        static func fifo(_ name: String) -> Entry { Entry(name: b(name), type: UInt8(ascii: "6")) }
        static func char(_ name: String, _ major: Int, _ minor: Int) -> Entry {
            Entry(name: b(name), type: UInt8(ascii: "3"), major: major, minor: minor)
        }
    }

    private(set) var bytes: [UInt8] = []

    init(_ entries: [Entry] = []) {
        for e in entries { add(e) }
    }

    mutating func add(_ e: Entry) {
        var records: [UInt8] = []
        func record(_ key: String, _ value: [UInt8]) {
            let body = b(" \(key)=") + value + [0x0A]
            var n = body.count + 1
            while String(n).count + body.count != n { n += 1 }
            records += b(String(n)) + body
        }
        if e.name.count > 100 { record("path", e.name) }
        if e.link.count > 100 { record("linkpath", e.link) }
        if let ns = e.nanoseconds { record("mtime", b(String(e.mtime) + "." + String(format: "%09d", ns))) }
        for (k, v) in e.xattrs { record("SCHILY.xattr." + k, v) }
        if !records.isEmpty {
            bytes += Self.header(name: b("PaxHeaders/x"), type: UInt8(ascii: "x"), mode: 0o644, size: records.count)
            bytes += Self.padded(records)
        }
        bytes += Self.header(
            name: Array(e.name.prefix(100)), type: e.type, mode: e.mode, uid: e.uid, gid: e.gid,
            size: e.data.count, mtime: e.mtime, link: Array(e.link.prefix(100)),
            major: e.major, minor: e.minor)
        bytes += Self.padded(e.data)
    }

    /// The archive with its end (two zero blocks).
    var archive: [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }

    static func padded(_ data: [UInt8]) -> [UInt8] {
        data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    static func header(
        name: [UInt8], type: UInt8, mode: UInt32, uid: Int = 0, gid: Int = 0, size: Int,
        mtime: Int = 1_000_000, link: [UInt8] = [], major: Int = 0, minor: Int = 0
    ) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ offset: Int, _ value: [UInt8]) { h.replaceSubrange(offset..<(offset + value.count), with: value) }
        func octal(_ offset: Int, _ width: Int, _ v: Int) {
            put(offset, b(String(repeating: "0", count: max(0, width - 1 - String(v, radix: 8).count)) + String(v, radix: 8)))
        }
        put(0, name)
        octal(100, 8, Int(mode))
        octal(108, 8, uid)
        octal(116, 8, gid)
        octal(124, 12, size)
        octal(136, 12, mtime)
        h[156] = type
        put(157, link)
        put(257, b("ustar\u{0}00"))
        octal(329, 8, major)
        octal(337, 8, minor)
        put(148, [UInt8](repeating: 0x20, count: 8))
        let sum = h.reduce(0) { $0 + Int($1) }
        octal(148, 7, sum)
        return h
    }
}

/// Processes the tar tests run: GNU tar, the OCI reference script.
enum TarTools {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Runs `command` through /bin/sh with umask 022 (what implicit
    /// directories of an extraction get); returns status and stderr.
    @discardableResult
    static func shell(_ command: String, check: Bool = true) throws -> (status: Int32, stderr: String) {
        let io = try TemporaryDirectory()
        defer { io.remove() }
        let errPath = try io.write("stderr", [])
        let status = try Child("/bin/sh", ["-c", "umask 022; " + command], stderr: errPath).wait()
        let text = try ScanFS.readFile(errPath).text
        if check && status != 0 {
            throw Failure(description: "`\(command)` exited \(status): \(text)")
        }
        return (status, text)
    }

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// `tar -x` as the issue states it, as root.
    static func extract(_ archive: String, into dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try shell("tar -x --xattrs --xattrs-include='*' --numeric-owner -p -f \(quote(archive)) -C \(quote(dir))")
    }

    /// A tar of `dir`'s contents (with its `./` entry) by GNU tar.
    static func create(_ archive: String, from dir: String, format: String = "pax", sparse: Bool = false) throws {
        let xattrs = format == "pax" ? "--xattrs --xattrs-include='*' " : ""   // GNU tar: POSIX archives only
        try shell("tar \(xattrs)--format=\(format) \(sparse ? "-S " : "")-cf \(quote(archive)) -C \(quote(dir)) .")
    }

    /// The reference applier of OCI layers (Python's tarfile).
    static var ociApply: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/oci-apply").path
    }

    /// What mkcomposefs documents for directories no entry describes
    /// (extraction gives them the run's time instead).
    static func setDefaults(_ path: String) throws {
        let p = Array(path.utf8)
        try ScanFS.chown(p, 0, 0)
        try ScanFS.chmod(p, 0o755)
        try ScanFS.setMtime(p, 0, 0)
    }
}

/// `mkcomposefs --from-tar` against `mkcomposefs` of the extracted tree.
enum TarCompare {
    /// Every object file of a store: relative name → fs-verity digest of
    /// its contents (the library's digest, itself checked against
    /// libfsverity in FsVerityTests).
    static func storeContents(_ store: String) throws -> [String: String] {
        var out: [String: String] = [:]
        let fm = FileManager.default
        guard fm.fileExists(atPath: store) else { return out }
        for dir in try fm.contentsOfDirectory(atPath: store) where !dir.hasPrefix(".") {
            for name in try fm.contentsOfDirectory(atPath: store + "/" + dir) {
                out[dir + "/" + name] = FsVerity.digest(try ScanFS.readFile(store + "/" + dir + "/" + name)).hexString
            }
        }
        return out
    }

    /// Both ways with their own stores: the same image bytes, the same
    /// `--print-digest-only`, the same store. Returns the digest.
    @discardableResult
    static func expectSame(
        layers: [String], extracted: String, in scratch: RootScratch, options: [String] = [],
        tarOptions: [String] = [], label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String {
        let tarArgs = tarOptions + layers.flatMap { ["--from-tar", $0] }
        let storeA = scratch.file("store-tar-\(label)")
        let storeB = scratch.file("store-dir-\(label)")
        let imageA = scratch.file("tar-\(label).cfs")
        let imageB = scratch.file("dir-\(label).cfs")
        let a = try Tools.mkcomposefs(options + ["--digest-store=" + storeA] + tarArgs + [imageA])
        let b = try Tools.mkcomposefs(options + ["--digest-store=" + storeB, extracted, imageB])
        try #require(a.status == 0, "\(label): --from-tar failed: \(a.err)", sourceLocation: sourceLocation)
        try #require(b.status == 0, "\(label): directory failed: \(b.err)", sourceLocation: sourceLocation)
        let x = try ScanFS.readFile(imageA)
        let y = try ScanFS.readFile(imageB)
        #expect(x == y, "\(label): images differ at offset \(firstDifference(x, y) ?? -1)", sourceLocation: sourceLocation)
        let da = try Tools.mkcomposefs(options + ["--print-digest-only"] + tarArgs)
        let db = try Tools.mkcomposefs(options + ["--print-digest-only", extracted])
        #expect(
            da.status == 0 && da.out == db.out && da.out.count == 65, "\(label): digests \(da.out) \(db.out) \(da.err)",
            sourceLocation: sourceLocation)
        #expect(da.out == FsVerity.digest(x).hexString + "\n", sourceLocation: sourceLocation)
        let sa = try storeContents(storeA)
        let sb = try storeContents(storeB)
        #expect(sa.keys.sorted() == sb.keys.sorted(), "\(label): store names differ", sourceLocation: sourceLocation)
        #expect(sa == sb, "\(label): store contents differ", sourceLocation: sourceLocation)
        for (name, digest) in sa {
            #expect(
                String(bytes: FsVerity.objectPath([UInt8](hexDigits: Array(digest.utf8))!)) == name,
                "\(label): object \(name) is not its digest", sourceLocation: sourceLocation)
        }
        return da.out
    }
}

import CComposeFSShims
import Foundation
import Glibc
import Testing

@testable import ComposeFS

// The two sides the directory-scanner tests compare: what the source tree
// holds (from lstat/llistxattr/lgetxattr/readlink and the file contents,
// never from DirectoryScanner) and what the image loaded back holds.

// MARK: - Expected image contents, from the tree itself

enum ScanSnapshot {
    struct Options {
        var useEpoch = false
        var skipDevices = false
        var skipXattrs = false
        var userXattrsOnly = false
    }

    struct Entry {
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var nlink: UInt32
        /// nil for directories (the writer sizes them).
        var size: UInt64?
        var mtime: Timespec
        var rdev: UInt32 = 0
        var target: [UInt8]? = nil
        var content: [UInt8]? = nil
        var digest: [UInt8]? = nil
        var xattrs: [[UInt8]: [UInt8]] = [:]
        /// Where the entry is in the tree (absolute; may exceed PATH_MAX).
        var source: [UInt8]
        var type: mode_t { mode_t(mode) & S_IFMT }
    }

    /// Files bigger than this must be all holes (their digest is computed
    /// without reading them).
    static let readLimit: UInt64 = 256 << 20

    /// What the image of `root` must hold, per path (`/`, `/a`, `/a/b`…).
    static func take(_ root: String, _ o: Options = Options()) throws -> [[UInt8]: Entry] {
        var out: [[UInt8]: Entry] = [:]
        let src = Array(root.utf8)
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ScanFS.Failure("open \(root): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        try ScanFS.check(lstat(root, &st), "lstat", src)
        var rootEntry = entry(st, o, source: src)
        rootEntry.xattrs = try xattrs(src, o)
        let (subdirs, whiteouts) = try visit(fd, path: [], source: src, o, &out)
        rootEntry.nlink = 2 + subdirs
        if whiteouts { addOpaque(&rootEntry) }
        out[[0x2F]] = rootEntry
        return out
    }

    static func entry(_ st: stat, _ o: Options, source: [UInt8]) -> Entry {
        Entry(
            mode: UInt32(st.st_mode), uid: st.st_uid, gid: st.st_gid, nlink: 1,
            size: UInt64(st.st_size),
            mtime: o.useEpoch
                ? Timespec(seconds: 0, nanoseconds: 0)
                : Timespec(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
            source: source)
    }

    /// The writer marks the parent of a whiteout opaque in a version 1
    /// image (§5.3 step 4); the reader keeps both markers (§15.3).
    static func addOpaque(_ e: inout Entry) {
        e.xattrs[Array("trusted.overlay.opaque".utf8)] = Array("x".utf8)
        e.xattrs[Array("user.overlay.opaque".utf8)] = Array("x".utf8)
    }

    /// Returns (number of subdirectories, whether a whiteout is kept).
    static func visit(
        _ dirfd: Int32, path: [UInt8], source: [UInt8], _ o: Options,
        _ out: inout [[UInt8]: Entry]
    ) throws -> (UInt32, Bool) {
        var subdirs: UInt32 = 0
        var whiteouts = false
        for name in try ScanFS.names(dirfd: dirfd, path) {
            let childPath = path + [0x2F] + name
            let childSource = source + [0x2F] + name
            var st = stat()
            try ScanFS.check(ScanFS.withC(name) { fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }, "fstatat", childSource)
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR { subdirs += 1 }
            if o.skipDevices && (type == S_IFCHR || type == S_IFBLK) { continue }
            var e = entry(st, o, source: childSource)
            e.xattrs = try xattrs(Array("/proc/self/fd/\(dirfd)/".utf8) + name, o)
            switch type {
            case S_IFDIR:
                e.size = nil
                let sub = ScanFS.withC(name) { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                guard sub >= 0 else { throw ScanFS.Failure("open \(ScanFS.show(childSource)): \(String(cString: strerror(errno)))") }
                defer { close(sub) }
                let (n, w) = try visit(sub, path: childPath, source: childSource, o, &out)
                e.nlink = 2 + n
                if w { addOpaque(&e) }
            case S_IFLNK:
                var buf = [UInt8](repeating: 0, count: 8192)
                let n = ScanFS.withC(name) { np in
                    buf.withUnsafeMutableBytes { readlinkat(dirfd, np, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
                }
                guard n >= 0 else { throw ScanFS.Failure("readlink \(ScanFS.show(childSource))") }
                e.target = Array(buf[0..<n])
            case S_IFREG where st.st_size > 0:
                let f = ScanFS.withC(name) { openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
                guard f >= 0 else { throw ScanFS.Failure("open \(ScanFS.show(childSource)): \(String(cString: strerror(errno)))") }
                defer { close(f) }
                let size = UInt64(st.st_size)
                if size > readLimit {
                    // SEEK_DATA (3) finds no data: the file is one hole.
                    errno = 0
                    let data = lseek(f, 0, 3)
                    guard data == -1 && errno == ENXIO else {
                        throw ScanFS.Failure("\(ScanFS.show(childSource)) is too big to read and not sparse")
                    }
                    e.digest = ZeroDigest.of(size: size)
                } else {
                    let bytes = try ScanFS.readAll(fd: f, childSource)
                    guard UInt64(bytes.count) == size else { throw ScanFS.Failure("short read of \(ScanFS.show(childSource))") }
                    if size <= 64 {
                        e.content = bytes
                    } else {
                        e.digest = try FsVerityTests.libfsverityDigest(bytes)
                    }
                }
            case S_IFCHR, S_IFBLK:
                e.rdev = UInt32(truncatingIfNeeded: st.st_rdev)
                if type == S_IFCHR && st.st_rdev == 0 { whiteouts = true }
            default:
                break
            }
            out[childPath] = e
        }
        return (subdirs, whiteouts)
    }

    /// llistxattr/lgetxattr of the entry itself, filtered as the options say.
    static func xattrs(_ p: [UInt8], _ o: Options) throws -> [[UInt8]: [UInt8]] {
        if o.skipXattrs { return [:] }
        let size = ScanFS.withC(p) { llistxattr($0, nil, 0) }
        if size < 0 {
            if errno == ENOTSUP { return [:] }
            throw ScanFS.Failure("llistxattr \(ScanFS.show(p)): \(String(cString: strerror(errno)))")
        }
        var list = [UInt8](repeating: 0, count: size + 1)
        let n = ScanFS.withC(p) { cp in
            list.withUnsafeMutableBytes { llistxattr(cp, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        }
        guard n >= 0 else { throw ScanFS.Failure("llistxattr \(ScanFS.show(p))") }
        var out: [[UInt8]: [UInt8]] = [:]
        for keyBytes in list[0..<n].split(separator: 0) {
            let key = Array(keyBytes)
            if o.userXattrsOnly && !key.starts(with: Array("user.".utf8)) { continue }
            let vsize = ScanFS.withC(p) { cp in ScanFS.withC(key) { lgetxattr(cp, $0, nil, 0) } }
            guard vsize >= 0 else { throw ScanFS.Failure("lgetxattr \(ScanFS.show(key)) of \(ScanFS.show(p))") }
            var value = [UInt8](repeating: 0, count: vsize)
            let m = ScanFS.withC(p) { cp in
                ScanFS.withC(key) { k in value.withUnsafeMutableBytes { lgetxattr(cp, k, $0.baseAddress, $0.count) } }
            }
            guard m == vsize else { throw ScanFS.Failure("lgetxattr \(ScanFS.show(key)) of \(ScanFS.show(p))") }
            out[key] = value
        }
        return out
    }
}

// MARK: - The image side

enum ScanImage {
    /// Every entry of a loaded image by path (`/`, `/a`, …).
    static func entries(_ image: [UInt8]) throws -> [[UInt8]: Node] {
        let loaded = try ImageReader.load(image)
        var out: [[UInt8]: Node] = [[0x2F]: loaded.root]
        func walk(_ n: Node, _ path: [UInt8]) {
            for c in n.children {
                let p = path + [0x2F] + c.name
                out[p] = c
                if c.isDirectory && !c.isHardlink { walk(c, p) }
            }
        }
        walk(loaded.root, [])
        return out
    }

    static func octal(_ v: UInt32) -> String { String(v, radix: 8) }

    /// Differences between an image and what it must hold.
    static func mismatches(_ image: [UInt8], _ expected: [[UInt8]: ScanSnapshot.Entry]) throws -> [String] {
        let actual = try entries(image)
        var out: [String] = []
        for p in Set(expected.keys).subtracting(actual.keys).sorted(by: { compareBytes($0, $1) < 0 }) {
            out.append("missing from the image: \(ScanFS.show(p))")
        }
        for p in Set(actual.keys).subtracting(expected.keys).sorted(by: { compareBytes($0, $1) < 0 }) {
            out.append("not in the tree: \(ScanFS.show(p))")
        }
        for (p, e) in expected.sorted(by: { compareBytes($0.key, $1.key) < 0 }) {
            guard let n = actual[p] else { continue }
            let s = ScanFS.show(p)
            func diff<T: Equatable>(_ what: String, _ a: T, _ b: T) {
                if a != b { out.append("\(s): \(what) is \(a), expected \(b)") }
            }
            if n.isHardlink {
                out.append("\(s): a hardlink entry (the scanner makes none)")
                continue
            }
            if n.mode != e.mode { out.append("\(s): mode \(octal(n.mode)), expected \(octal(e.mode))") }
            diff("uid", n.uid, e.uid)
            diff("gid", n.gid, e.gid)
            diff("nlink", n.nlink, e.nlink)
            diff("mtime", "\(n.mtime.seconds).\(n.mtime.nanoseconds)", "\(e.mtime.seconds).\(e.mtime.nanoseconds)")
            if let size = e.size { diff("size", n.size, size) }
            let xa = Dictionary(n.xattrs.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            if xa != e.xattrs {
                func render(_ d: [[UInt8]: [UInt8]]) -> String {
                    d.sorted { compareBytes($0.key, $1.key) < 0 }
                        .map { "\(ScanFS.show($0.key))=\(ScanFS.show($0.value))" }.joined(separator: ", ")
                }
                out.append("\(s): xattrs [\(render(xa))], expected [\(render(e.xattrs))]")
            }
            switch e.type {
            case S_IFCHR, S_IFBLK:
                diff("rdev", n.rdev, e.rdev)
            case S_IFLNK:
                if n.payload != e.target {
                    out.append(
                        "\(s): symlink target of \(n.payload?.count ?? -1) bytes \(ScanFS.show(Array((n.payload ?? []).prefix(60)))), expected \(e.target?.count ?? -1) bytes"
                    )
                }
            case S_IFREG:
                if let content = e.content {
                    if n.content != content {
                        out.append("\(s): inline content \(n.content.map { ScanFS.show($0) } ?? "nil"), expected \(ScanFS.show(content))")
                    }
                    if n.payload != nil { out.append("\(s): inline file has a payload \(ScanFS.show(n.payload!))") }
                    if n.digest != nil { out.append("\(s): inline file has a digest") }
                } else if let digest = e.digest {
                    if n.content != nil { out.append("\(s): external file has inline content") }
                    if n.payload != FsVerity.objectPath(digest) {
                        out.append(
                            "\(s): payload \(n.payload.map { ScanFS.show($0) } ?? "nil"), expected \(ScanFS.show(FsVerity.objectPath(digest)))"
                        )
                    }
                    if n.digest != digest { out.append("\(s): digest \(n.digest?.hexString ?? "nil"), expected \(digest.hexString)") }
                } else {
                    // Empty file: nothing but its attributes.
                    if !(n.content ?? []).isEmpty || n.payload != nil || n.digest != nil {
                        out.append("\(s): empty file has content, payload or digest")
                    }
                }
            default:
                break
            }
        }
        return out
    }

    /// Checks an image file against a snapshot of its source.
    static func expectMatches(
        _ imagePath: String, _ expected: [[UInt8]: ScanSnapshot.Entry], _ label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let image = try ScanFS.readFile(imagePath)
        let m = try mismatches(image, expected)
        #expect(
            m.isEmpty, "\(label): \(m.count) differences:\n\(m.prefix(40).joined(separator: "\n"))",
            sourceLocation: sourceLocation)
    }
}

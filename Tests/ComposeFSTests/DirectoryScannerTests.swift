import CComposeFSShims
import CFSVerity
import Foundation
import Glibc
import Testing
@testable import ComposeFS

// Root-only tests of `mkcomposefs SOURCEDIR` (FORMAT.md §19.2): real trees
// with every file type, owner, mode, time, xattr namespace and odd name,
// built as root, then compared entry by entry with the image loaded back.
// The expected values come from lstat/llistxattr/lgetxattr/readlink and
// the file contents (digests from libfsverity), never from
// DirectoryScanner.

// MARK: - File system helpers on byte paths

/// Thin wrappers of the syscalls that build test trees, on byte paths (the
/// trees hold names that are not UTF-8).
enum ScanFS {
    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func show(_ p: [UInt8]) -> String {
        String(reflecting: String(decoding: p, as: UTF8.self))
    }

    static func withC<T>(_ p: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try (p + [0]).withUnsafeBufferPointer { buf in
            try buf.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    static func check(_ rc: Int32, _ what: String, _ p: [UInt8]) throws {
        if rc != 0 { throw Failure("\(what) \(show(p)): \(String(cString: strerror(errno)))") }
    }

    static func path(_ root: String, _ rel: String) -> [UInt8] { Array((root + "/" + rel).utf8) }

    static func mkdir(_ p: [UInt8], _ mode: mode_t = 0o755) throws {
        try check(withC(p) { Glibc.mkdir($0, mode) }, "mkdir", p)
    }

    static func mkdirs(_ p: [UInt8]) throws {
        var prefix: [UInt8] = []
        for part in p.split(separator: 0x2F, omittingEmptySubsequences: true) {
            prefix += [0x2F] + part
            var st = stat()
            if withC(prefix, { lstat($0, &st) }) != 0 { try mkdir(prefix) }
        }
    }

    static func write(_ p: [UInt8], _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = withC(p) { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode) }
        guard fd >= 0 else { throw Failure("create \(show(p)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, bytes.count - off) }
            guard n > 0 else { throw Failure("write \(show(p)): \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    /// A file of `size` bytes that is one hole (ftruncate).
    static func sparse(_ p: [UInt8], size: Int64) throws {
        let fd = withC(p) { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw Failure("create \(show(p)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try check(ftruncate(fd, off_t(size)), "ftruncate", p)
    }

    static func symlink(_ target: [UInt8], _ p: [UInt8]) throws {
        try check(withC(target) { t in withC(p) { Glibc.symlink(t, $0) } }, "symlink", p)
    }

    static func mknod(_ p: [UInt8], _ mode: mode_t, _ dev: dev_t = 0) throws {
        try check(withC(p) { Glibc.mknod($0, mode, dev) }, "mknod", p)
    }

    static func hardlink(_ existing: [UInt8], _ p: [UInt8]) throws {
        try check(withC(existing) { e in withC(p) { linkat(AT_FDCWD, e, AT_FDCWD, $0, 0) } }, "link", p)
    }

    static func setXattr(_ p: [UInt8], _ key: String, _ value: [UInt8]) throws {
        let rc = withC(p) { cp in value.withUnsafeBytes { lsetxattr(cp, key, $0.baseAddress, value.count, 0) } }
        try check(rc, "lsetxattr \(key)", p)
    }

    static func chown(_ p: [UInt8], _ uid: uid_t, _ gid: gid_t) throws {
        try check(withC(p) { fchownat(AT_FDCWD, $0, uid, gid, AT_SYMLINK_NOFOLLOW) }, "chown", p)
    }

    static func chmod(_ p: [UInt8], _ mode: mode_t) throws {
        try check(withC(p) { fchmodat(AT_FDCWD, $0, mode, 0) }, "chmod", p)
    }

    static func setMtime(_ p: [UInt8], _ sec: Int, _ nsec: Int) throws {
        var ts = [timespec(tv_sec: sec, tv_nsec: nsec), timespec(tv_sec: sec, tv_nsec: nsec)]
        try check(withC(p) { utimensat(AT_FDCWD, $0, &ts, AT_SYMLINK_NOFOLLOW) }, "utimensat", p)
    }

    /// glibc's makedev.
    static func makedev(_ major: UInt64, _ minor: UInt64) -> dev_t {
        let high: UInt64 = ((major & 0xFFFF_F000) << 32) | ((minor & 0xFFFF_FF00) << 12)
        let low: UInt64 = ((major & 0xFFF) << 8) | (minor & 0xFF)
        return dev_t(high | low)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func readAll(fd: Int32, _ what: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure("read \(show(what)): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    /// Names in a directory (byte strings, `.`/`..` left out), through an fd.
    static func names(dirfd: Int32, _ what: [UInt8]) throws -> [[UInt8]] {
        let fd = dup(dirfd)
        guard fd >= 0, let d = fdopendir(fd) else { throw Failure("opendir \(show(what)): \(String(cString: strerror(errno)))") }
        defer { closedir(d) }
        var out: [[UInt8]] = []
        while let ent = readdir(d) {
            let name: [UInt8] = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            out.append(name)
        }
        return out
    }

    /// Every path below `root` (relative, byte strings), found with `find`
    /// semantics (no symlink is followed).
    static func listRelative(_ root: String) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        func walk(_ fd: Int32, _ rel: [UInt8]) throws {
            for name in try names(dirfd: fd, rel) {
                let child = rel.isEmpty ? name : rel + [0x2F] + name
                out.append(child)
                var st = stat()
                try check(withC(name) { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) }, "fstatat", child)
                if st.st_mode & S_IFMT == S_IFDIR {
                    let sub = withC(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                    guard sub >= 0 else { throw Failure("open \(show(child)): \(String(cString: strerror(errno)))") }
                    defer { close(sub) }
                    try walk(sub, child)
                }
            }
        }
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("open \(root): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try walk(fd, [])
        return out
    }

    /// Removes a tree whatever its names (FileManager needs UTF-8 names).
    static func removeTree(_ path: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/rm")
        p.arguments = ["-rf", "--one-file-system", path]
        try? p.run()
        p.waitUntilExit()
    }

    /// A tmpfs at `path` (mount(2)); `ro` mounts it read-only.
    static func mountTmpfs(_ path: String, size: String, readOnly: Bool = false) throws {
        guard Glibc.mount("tmpfs", path, "tmpfs", readOnly ? UInt(MS_RDONLY) : 0, "size=\(size),mode=0755") == 0 else {
            throw Failure("mount tmpfs on \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func unmount(_ path: String) {
        if umount2(path, 0) != 0 { _ = umount2(path, Int32(MNT_DETACH)) }
    }
}

/// A scratch directory for root tests, removed with `rm -rf` (its trees
/// hold names FileManager cannot remove).
struct RootScratch {
    let path: String

    init(_ label: String) throws {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/composefs-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { ScanFS.removeTree(path) }
}

// MARK: - fs-verity of a file of zeros (for the sparse file), by hand

enum ZeroDigest {
    /// fs-verity digest of `size` zero bytes (§13) without reading them:
    /// every Merkle level is made of identical digests except its last one.
    static func of(size: UInt64) -> [UInt8] {
        precondition(size > 0)
        var n = (size + 4095) / 4096
        var common = SHA256Reference.hash([UInt8](repeating: 0, count: 4096))
        var last = common
        while n > 1 {
            let blocks = (n + 127) / 128
            let inLast = Int(n - (blocks - 1) * 128)
            var tail: [UInt8] = []
            for _ in 0..<(inLast - 1) { tail += common }
            tail += last
            tail += [UInt8](repeating: 0, count: 4096 - tail.count)
            last = SHA256Reference.hash(tail)
            var full: [UInt8] = []
            for _ in 0..<128 { full += common }
            common = SHA256Reference.hash(full)
            n = blocks
        }
        var descriptor = [UInt8](repeating: 0, count: 256)
        descriptor[0] = 1      // version
        descriptor[1] = 1      // SHA-256
        descriptor[2] = 12     // log2(4096)
        for i in 0..<8 { descriptor[8 + i] = UInt8(truncatingIfNeeded: size >> (8 * UInt64(i))) }
        descriptor.replaceSubrange(16..<48, with: last)
        return SHA256Reference.hash(descriptor)
    }
}

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
        Entry(mode: UInt32(st.st_mode), uid: st.st_uid, gid: st.st_gid, nlink: 1,
              size: UInt64(st.st_size),
              mtime: o.useEpoch ? Timespec(seconds: 0, nanoseconds: 0)
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
    static func visit(_ dirfd: Int32, path: [UInt8], source: [UInt8], _ o: Options,
                      _ out: inout [[UInt8]: Entry]) throws -> (UInt32, Bool) {
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
        let n = ScanFS.withC(p) { cp in list.withUnsafeMutableBytes { llistxattr(cp, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) } }
        guard n >= 0 else { throw ScanFS.Failure("llistxattr \(ScanFS.show(p))") }
        var out: [[UInt8]: [UInt8]] = [:]
        for keyBytes in list[0..<n].split(separator: 0) {
            let key = Array(keyBytes)
            if o.userXattrsOnly && !key.starts(with: Array("user.".utf8)) { continue }
            let vsize = ScanFS.withC(p) { cp in ScanFS.withC(key) { lgetxattr(cp, $0, nil, 0) } }
            guard vsize >= 0 else { throw ScanFS.Failure("lgetxattr \(ScanFS.show(key)) of \(ScanFS.show(p))") }
            var value = [UInt8](repeating: 0, count: vsize)
            let m = ScanFS.withC(p) { cp in ScanFS.withC(key) { k in value.withUnsafeMutableBytes { lgetxattr(cp, k, $0.baseAddress, $0.count) } } }
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
            if n.isHardlink { out.append("\(s): a hardlink entry (the scanner makes none)"); continue }
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
                    out.append("\(s): symlink target of \(n.payload?.count ?? -1) bytes \(ScanFS.show(Array((n.payload ?? []).prefix(60)))), expected \(e.target?.count ?? -1) bytes")
                }
            case S_IFREG:
                if let content = e.content {
                    if n.content != content { out.append("\(s): inline content \(n.content.map { ScanFS.show($0) } ?? "nil"), expected \(ScanFS.show(content))") }
                    if n.payload != nil { out.append("\(s): inline file has a payload \(ScanFS.show(n.payload!))") }
                    if n.digest != nil { out.append("\(s): inline file has a digest") }
                } else if let digest = e.digest {
                    if n.content != nil { out.append("\(s): external file has inline content") }
                    if n.payload != FsVerity.objectPath(digest) {
                        out.append("\(s): payload \(n.payload.map { ScanFS.show($0) } ?? "nil"), expected \(ScanFS.show(FsVerity.objectPath(digest)))")
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
    static func expectMatches(_ imagePath: String, _ expected: [[UInt8]: ScanSnapshot.Entry], _ label: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let image = try ScanFS.readFile(imagePath)
        let m = try mismatches(image, expected)
        #expect(m.isEmpty, "\(label): \(m.count) differences:\n\(m.prefix(40).joined(separator: "\n"))",
                sourceLocation: sourceLocation)
    }
}

// MARK: - Test trees

enum ScanTrees {
    /// Every file type, size class, owner, mode, time, xattr namespace and
    /// odd name the scanner must carry over. With `sparse`, also a file of
    /// 4 GiB + 4097 bytes that is one hole.
    static func build(_ root: String, sparse: Bool = false) throws {
        func p(_ rel: String) -> [UInt8] { ScanFS.path(root, rel) }
        func pb(_ dir: String, _ name: [UInt8]) -> [UInt8] { ScanFS.path(root, dir) + [0x2F] + name }
        try ScanFS.mkdirs(Array(root.utf8))

        // Sizes around the inline limit and the block size.
        try ScanFS.mkdir(p("sizes"))
        for (i, size) in [0, 1, 2, 63, 64, 65, 100, 4095, 4096, 4097, 3 * 4096 + 1, 129 * 4096 + 7].enumerated() {
            try ScanFS.write(p("sizes/s\(size)"), pseudoRandomBytes(size, seed: 100 + UInt64(i)))
        }
        try ScanFS.write(p("sizes/nul64"), [UInt8](repeating: 0, count: 64))
        try ScanFS.write(p("sizes/nul65"), [UInt8](repeating: 0, count: 65))
        try ScanFS.write(p("sizes/same-a"), pseudoRandomBytes(200, seed: 7))
        try ScanFS.write(p("sizes/same-b"), pseudoRandomBytes(200, seed: 7))
        if sparse {
            try ScanFS.sparse(p("sizes/sparse"), size: (1 << 32) + 4097)
        }

        // 50 levels deep.
        var deep = "deep"
        try ScanFS.mkdir(p(deep))
        for level in 1...50 {
            deep += "/d\(level)"
            try ScanFS.mkdir(p(deep))
        }
        try ScanFS.write(p(deep + "/leaf"), pseudoRandomBytes(100, seed: 50))
        try ScanFS.write(p(deep + "/small"), b("bottom\n"))

        // 300 entries wide (290 files of every size class, 10 directories);
        // every tenth file shares an xattr (the shared xattr table).
        try ScanFS.mkdir(p("wide"))
        for i in 0..<290 {
            let name = String(format: "entry-%03d", i)
            try ScanFS.write(p("wide/\(name)"), pseudoRandomBytes((i * 7) % 150, seed: 1000 + UInt64(i)))
            if i % 10 == 0 { try ScanFS.setXattr(p("wide/\(name)"), "user.common", b("shared value")) }
        }
        for i in 0..<10 { try ScanFS.mkdir(p("wide/sub\(i)")) }
        try ScanFS.mkdir(p("wide/sub3/inner"))

        // Symlinks, never followed.
        try ScanFS.mkdir(p("links"))
        try ScanFS.symlink(b("a"), p("links/short"))
        let longTarget = Array(String(repeating: "d/", count: 2047).utf8) + [UInt8(ascii: "e")]
        #expect(longTarget.count == 4095)
        try ScanFS.symlink(longTarget, p("links/long"))
        try ScanFS.symlink(b("../deep"), p("links/to-dir"))
        try ScanFS.symlink(b("../sizes/s4097"), p("links/to-file"))
        try ScanFS.symlink(b("nowhere/at/all"), p("links/dangling"))
        try ScanFS.symlink(b("/etc/passwd"), p("links/absolute"))
        try ScanFS.symlink([0x74, 0x0A, 0xFF, 0x3D, 0x5C, 0x20], p("links/odd-target"))
        try ScanFS.setXattr(p("links/absolute"), "trusted.on-the-link", b("not the target's"))
        try ScanFS.chown(p("links/short"), 1234, 5678)

        // Special files.
        try ScanFS.mkdir(p("special"))
        try ScanFS.check(ScanFS.withC(p("special/fifo")) { mkfifo($0, 0o640) }, "mkfifo", p("special/fifo"))
        try ScanFS.mknod(p("special/socket"), S_IFSOCK | 0o755)
        try ScanFS.mknod(p("special/null"), S_IFCHR | 0o666, ScanFS.makedev(1, 3))
        try ScanFS.mknod(p("special/disk"), S_IFBLK | 0o660, ScanFS.makedev(8, 1))
        try ScanFS.mknod(p("special/biggest"), S_IFCHR | 0o600, ScanFS.makedev(4095, 1_048_575))
        try ScanFS.mknod(p("special/whiteout"), S_IFCHR | 0o600, 0)
        try ScanFS.setXattr(p("special/disk"), "trusted.device", b("xattr on a device"))
        try ScanFS.chown(p("special/biggest"), 7, 8)

        // A whiteout next to ordinary entries, in its own directory.
        try ScanFS.mkdir(p("wh"))
        try ScanFS.mknod(p("wh/gone"), S_IFCHR | 0o644, 0)
        try ScanFS.write(p("wh/kept"), b("kept\n"))
        try ScanFS.hardlink(p("wh/gone"), p("wh/gone-too"))

        // Hardlinks: each path is its own inode in the image.
        try ScanFS.mkdir(p("hard"))
        try ScanFS.write(p("hard/big"), pseudoRandomBytes(300, seed: 9))
        try ScanFS.hardlink(p("hard/big"), p("hard/big-link"))
        try ScanFS.write(p("hard/small"), b("small"))
        try ScanFS.hardlink(p("hard/small"), p("hard/small-link"))
        try ScanFS.hardlink(p("hard/small"), p("wide/sub1/small-link-elsewhere"))
        try ScanFS.check(ScanFS.withC(p("hard/fifo")) { mkfifo($0, 0o600) }, "mkfifo", p("hard/fifo"))
        try ScanFS.hardlink(p("hard/fifo"), p("hard/fifo-link"))
        try ScanFS.symlink(b("big"), p("hard/sym"))
        try ScanFS.hardlink(p("hard/sym"), p("hard/sym-link"))
        try ScanFS.write(p("hard/empty"), [])
        try ScanFS.hardlink(p("hard/empty"), p("hard/empty-link"))

        // Xattrs in every namespace root can write.
        try ScanFS.mkdir(p("xattr"))
        let file = p("xattr/file")
        try ScanFS.write(file, pseudoRandomBytes(100, seed: 11))
        try ScanFS.setXattr(file, "user.a", b("1"))
        try ScanFS.setXattr(file, "user.empty", [])
        try ScanFS.setXattr(file, "user.binary", [0, 1, 2, 0xFF, 0x0A, 0])
        try ScanFS.setXattr(file, "trusted.t", b("trusted value"))
        try ScanFS.setXattr(file, "security.s", b("security value"))
        try ScanFS.setXattr(file, "trusted.overlay.custom", b("escaped in the image"))
        try ScanFS.write(p("xattr/inline"), b("inline\n"))
        try ScanFS.setXattr(p("xattr/inline"), "user.on-inline", b("v"))
        try ScanFS.setXattr(p("xattr/inline"), "security.x", b("y"))
        try ScanFS.write(p("xattr/big-value"), [])
        try ScanFS.setXattr(p("xattr/big-value"), "user.big", pseudoRandomBytes(2000, seed: 12))
        try ScanFS.write(p("xattr/many"), b("m"))
        for i in 0..<30 { try ScanFS.setXattr(p("xattr/many"), "user.key\(i)", b("value \(i)")) }
        try ScanFS.mkdir(p("xattr/dir"))
        try ScanFS.setXattr(p("xattr/dir"), "user.d", b("on a directory"))
        try ScanFS.setXattr(p("xattr/dir"), "trusted.overlay.opaque", b("y"))
        try ScanFS.setXattr(p("xattr/dir"), "security.d", b("dir label"))
        try ScanFS.setXattr(Array(root.utf8), "user.root", b("on the root"))
        try ScanFS.setXattr(Array(root.utf8), "trusted.root", b("trusted on the root"))

        // Names.
        try ScanFS.mkdir(p("names"))
        let names: [[UInt8]] = [
            Array(repeating: UInt8(ascii: "n"), count: 255),
            b("tab\there"), b("new\nline"), [0xFF, 0x66, 0x6F], [0xFF], b("a=b"), b("back\\slash"),
            b("with space"), b(" "), b("-"), b("+"), b("..."), b(".hidden"), b("caf\u{e9}"), b("x\u{1}y"),
        ]
        for (i, name) in names.enumerated() {
            try ScanFS.write(pb("names", name), b("name \(i)\n"))
        }
        try ScanFS.mkdir(pb("names", Array(repeating: UInt8(ascii: "D"), count: 255)))
        try ScanFS.symlink(b("tab\there"), pb("names", b("link\twith\ntab")))
        try ScanFS.write(p("00"), b("a root entry named like a whiteout\n"))

        // Modes and owners (chown before chmod: chown clears set-id bits).
        try ScanFS.mkdir(p("modes"))
        try ScanFS.write(p("modes/suid"), b("s"))
        try ScanFS.write(p("modes/sgid"), pseudoRandomBytes(70, seed: 13))
        try ScanFS.write(p("modes/none"), b("0"))
        try ScanFS.write(p("modes/all"), b("7777"))
        try ScanFS.mkdir(p("modes/sticky"))
        try ScanFS.mkdir(p("modes/closed"))
        try ScanFS.chown(p("modes/sgid"), 70000, 80000)
        try ScanFS.chown(p("modes/closed"), 65534, 65534)
        try ScanFS.chmod(p("modes/suid"), 0o4755)
        try ScanFS.chmod(p("modes/sgid"), 0o2711)
        try ScanFS.chmod(p("modes/none"), 0)
        try ScanFS.chmod(p("modes/all"), 0o7777)
        try ScanFS.chmod(p("modes/sticky"), 0o1777)
        try ScanFS.chmod(p("modes/closed"), 0)
        try ScanFS.mkdir(p("owners"))
        try ScanFS.write(p("owners/u1000"), b("u"))
        try ScanFS.write(p("owners/big-ids"), pseudoRandomBytes(80, seed: 14))
        try ScanFS.mkdir(p("owners/dir"))
        try ScanFS.chown(p("owners/u1000"), 1000, 1000)
        try ScanFS.chown(p("owners/big-ids"), 4_000_000_000, 123_456)
        try ScanFS.chown(p("owners/dir"), 1, 2)

        // Times, set last (adding entries changes a directory's mtime).
        try ScanFS.mkdir(p("times"))
        try ScanFS.write(p("times/ns"), b("t"))
        try ScanFS.write(p("times/future"), pseudoRandomBytes(90, seed: 15))
        try ScanFS.write(p("times/epoch"), b("e"))
        try ScanFS.mkdir(p("times/dir"))
        try ScanFS.symlink(b("ns"), p("times/link"))
        try ScanFS.setMtime(p("times/ns"), 1_234_567_890, 123_456_789)
        try ScanFS.setMtime(p("times/future"), 4_102_444_800, 999_999_999)
        try ScanFS.setMtime(p("times/epoch"), 0, 0)
        try ScanFS.setMtime(p("times/dir"), 1_000_000_000, 500_000_000)
        try ScanFS.setMtime(p("times/link"), 1_500_000_000, 1)
        try ScanFS.setMtime(p("modes/closed"), 1_600_000_000, 0)
    }

    /// Trees that overlap: `shared` files in every tree, and `own` files
    /// that only tree `index` has (used by the store tests).
    static func buildOverlapping(_ root: String, index: Int, shared: Int = 120, own: Int = 30) throws {
        try ScanFS.mkdirs(Array(root.utf8))
        try ScanFS.mkdir(ScanFS.path(root, "shared"))
        try ScanFS.mkdir(ScanFS.path(root, "own"))
        for i in 0..<shared {
            try ScanFS.write(ScanFS.path(root, "shared/f\(i)"), pseudoRandomBytes(65 + (i * 997) % 20000, seed: 5000 + UInt64(i)))
        }
        // The same content under another name, and a neighbour's files.
        try ScanFS.write(ScanFS.path(root, "copy-of-f0"), pseudoRandomBytes(65, seed: 5000))
        for i in 0..<own {
            try ScanFS.write(ScanFS.path(root, "own/g\(i)"),
                             pseudoRandomBytes(100 + i * 300, seed: 9000 + UInt64(index) * 1000 + UInt64(i)))
            try ScanFS.write(ScanFS.path(root, "own/n\(i)"),
                             pseudoRandomBytes(100 + i * 300, seed: 9000 + UInt64((index + 1) % 4) * 1000 + UInt64(i)))
        }
        try ScanFS.write(ScanFS.path(root, "inline"), b("only inline\n"))
        try ScanFS.write(ScanFS.path(root, "empty"), [])
    }
}

// MARK: - Tests

@Suite struct DirectoryScannerTests {
    static func run(_ args: [String]) throws -> Tools.Result { try Tools.mkcomposefs(args) }

    /// The big tree (with the 4 GiB sparse file) round-trips field by field,
    /// and its dump rebuilds the same image.
    @Test func everyKindOfEntryRoundTripsThroughTheImage() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-all")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src, sparse: true)
        let expected = try ScanSnapshot.take(src)
        // Sanity of the expectations themselves.
        #expect(expected[b("/sizes/sparse")]?.size == UInt64((1 << 32) + 4097))
        #expect(expected[b("/hard/big")]?.nlink == UInt32(1))
        #expect(expected[b("/wide")]?.nlink == UInt32(2 + 10))
        #expect(expected[b("/special/whiteout")]?.rdev == UInt32(0))
        #expect(expected[b("/special/biggest")]?.rdev == UInt32(0xFFFF_FFFF))
        #expect(expected[b("/wh")]?.xattrs[b("user.overlay.opaque")] == b("x"))
        #expect(expected[b("/xattr/file")]?.xattrs.count == Int(6))

        let image = dir.file("all.cfs")
        let r = try Self.run([src, image])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.stdout.isEmpty && r.stderr.isEmpty)
        try ScanImage.expectMatches(image, expected, "default options")
        try Self.comparisonIsNotVacuous(try ScanFS.readFile(image), expected)

        // The image marks the whiteouts' parents: version 1.
        let bytes = try ScanFS.readFile(image)
        #expect(le(bytes, 12, 4) == 1, "a tree with whiteouts gives a version 1 image")

        // composefs-info dump | mkcomposefs --from-file - gives the same bytes.
        let dump = try Tools.info(["dump", image])
        #expect(dump.status == 0, "\(dump.err)")
        let again = dir.file("again.cfs")
        let r2 = try Tools.mkcomposefs(["--from-file", "-", again], stdin: dump.stdout)
        #expect(r2.status == 0, "\(r2.err)")
        #expect(firstDifference(try ScanFS.readFile(again), bytes) == nil)
    }

    /// Each kind of difference the comparison must notice, noticed.
    static func comparisonIsNotVacuous(_ image: [UInt8], _ expected: [[UInt8]: ScanSnapshot.Entry]) throws {
        let changes: [(String, (inout [[UInt8]: ScanSnapshot.Entry]) -> Void)] = [
            ("mode", { $0[b("/modes/suid")]!.mode ^= 0o4000 }),
            ("uid", { $0[b("/owners/big-ids")]!.uid += 1 }),
            ("gid", { $0[b("/owners/dir")]!.gid += 1 }),
            ("nlink", { $0[b("/deep")]!.nlink += 1 }),
            ("mtime", { $0[b("/times/ns")]!.mtime.nanoseconds += 1 }),
            ("size", { $0[b("/sizes/sparse")]!.size! += 1 }),
            ("rdev", { $0[b("/special/null")]!.rdev += 1 }),
            ("target", { $0[b("/links/long")]!.target!.removeLast() }),
            ("content", { $0[b("/sizes/s64")]!.content![10] ^= 1 }),
            ("digest", { $0[b("/sizes/s65")]!.digest![0] ^= 1 }),
            ("xattr value", { $0[b("/xattr/file")]!.xattrs[b("user.binary")]!.append(0) }),
            ("xattr key", { $0[b("/special/disk")]!.xattrs[b("trusted.device")] = nil }),
            ("whiteout marker", { $0[b("/wh")]!.xattrs[b("user.overlay.opaque")] = nil }),
            ("entry", { $0[b("/names/a=b")] = nil }),
        ]
        for (what, change) in changes {
            var broken = expected
            change(&broken)
            // A digest shows twice: as the digest and in the payload.
            #expect(try ScanImage.mismatches(image, broken).count == (what == "digest" ? 2 : 1), "a changed \(what) is noticed")
        }
    }

    @Test func zeroDigestByHandAgreesWithLibfsverity() throws {
        for size in [1, 4096, 4097, 128 * 4096, 128 * 4096 + 1, 129 * 4096 + 5, 128 * 128 * 4096 + 4097] {
            let zeros = [UInt8](repeating: 0, count: size)
            #expect(ZeroDigest.of(size: UInt64(size)) == (try FsVerityTests.libfsverityDigest(zeros)), "size \(size)")
        }
    }

    /// --use-epoch, --skip-devices, --skip-xattrs, --user-xattrs and their
    /// combinations, each checked entry by entry.
    @Test func scannerOptions() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-options")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        typealias O = ScanSnapshot.Options
        let cases: [(args: [String], options: O)] = [
            ([], O()),
            (["--use-epoch"], O(useEpoch: true)),
            (["--skip-devices"], O(skipDevices: true)),
            (["--skip-xattrs"], O(skipXattrs: true)),
            (["--user-xattrs"], O(userXattrsOnly: true)),
            (["--use-epoch", "--skip-devices", "--user-xattrs"], O(useEpoch: true, skipDevices: true, userXattrsOnly: true)),
            (["--skip-devices", "--skip-xattrs"], O(skipDevices: true, skipXattrs: true)),
        ]
        for (i, c) in cases.enumerated() {
            let image = dir.file("image-\(i).cfs")
            let r = try Self.run(c.args + [src, image])
            #expect(r.status == 0, "\(c.args): \(r.err)")
            let expected = try ScanSnapshot.take(src, c.options)
            try ScanImage.expectMatches(image, expected, "\(c.args)")
            let entries = try ScanImage.entries(try ScanFS.readFile(image))
            if c.options.useEpoch {
                #expect(entries.values.allSatisfy { $0.mtime == Timespec(seconds: 0, nanoseconds: 0) }, "\(c.args)")
            }
            if c.options.skipDevices {
                #expect(entries.values.allSatisfy { $0.fileType != .characterDevice && $0.fileType != .blockDevice },
                        "\(c.args): no device and no whiteout")
                #expect(entries[b("/special/fifo")] != nil && entries[b("/special/socket")] != nil)
                #expect(le(try ScanFS.readFile(image), 12, 4) == 0, "no whiteouts: version 0")
            } else {
                #expect(entries[b("/special/whiteout")]?.fileType == .characterDevice)
                #expect(entries[b("/special/whiteout")]?.rdev == 0)
            }
            if c.options.skipXattrs {
                // Only the writer's own whiteout markers remain.
                let own: Set<[UInt8]> = [b("trusted.overlay.opaque"), b("user.overlay.opaque")]
                #expect(entries.values.allSatisfy { Set($0.xattrs.map(\.key)).isSubset(of: own) }, "\(c.args)")
            }
            if c.options.userXattrsOnly {
                #expect(entries.values.allSatisfy { n in
                    n.xattrs.allSatisfy { $0.key.starts(with: b("user.")) || $0.key == b("trusted.overlay.opaque") }
                }, "\(c.args)")
                #expect(entries[b("/xattr/file")]?.xattrs.count == 3)
            }
        }

        // A trailing slash changes nothing.
        let slash = dir.file("slash.cfs")
        #expect(try Self.run([src + "/", slash]).status == 0)
        #expect(try ScanFS.readFile(slash) == (try ScanFS.readFile(dir.file("image-0.cfs"))))

        // Both xattr options together: an error, and no image.
        let image = dir.file("both.cfs")
        let r = try Self.run(["--skip-xattrs", "--user-xattrs", src, image])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        // §19.1: `error accessing SRC: Invalid argument`, naming the source
        // path as every other scanner error does (fails while the message
        // says "error accessing source: …").
        #expect(r.err.hasPrefix("mkcomposefs: error accessing \(src): Invalid argument"), "stderr: \(r.err)")
        #expect(!ScanFS.exists(image))
        var options = DirectoryScanner.Options()
        options.skipXattrs = true
        options.userXattrsOnly = true
        #expect(throws: DirectoryScanner.Error.invalidOptions(source: FilePath(src))) { try DirectoryScanner.scan(src, options: options) }
    }

    /// mkcomposefs DIR A, then composefs-info dump A | mkcomposefs
    /// --from-file - B: the same bytes, also for the other versions.
    @Test func dumpOfADirectoryImageRebuildsTheSameImage() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-dump")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        for versions in [[], ["--min-version=0", "--max-version=0"], ["--min-version=1", "--max-version=1"]] {
            let a = dir.file("a.cfs")
            let bPath = dir.file("b.cfs")
            let r = try Self.run(versions + [src, a])
            #expect(r.status == 0, "\(r.err)")
            let dump = try Tools.info(["dump", a])
            #expect(dump.status == 0, "\(dump.err)")
            #expect(!dump.stdout.isEmpty)
            let r2 = try Tools.mkcomposefs(versions + ["--from-file", "-", bPath], stdin: dump.stdout,
                                           environment: ["CFS_PARSE_STRICT": "1"])
            #expect(r2.status == 0, "\(versions): \(r2.err)")
            let imageA = try ScanFS.readFile(a)
            let imageB = try ScanFS.readFile(bPath)
            #expect(firstDifference(imageA, imageB) == nil, "\(versions): images differ")
            try FileManager.default.removeItem(atPath: a)
            try FileManager.default.removeItem(atPath: bPath)
        }
    }

    /// The tree is built before the parallel file pass: the thread count
    /// never changes the image (§19.4).
    @Test func threadCountDoesNotChangeTheImage() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-threads")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        var images: [[UInt8]] = []
        var digests: [String] = []
        for threads in [1, 8] {
            let image = dir.file("t\(threads).cfs")
            let r = try Self.run(["--threads=\(threads)", "--print-digest", "--digest-store=\(dir.file("store\(threads)"))", src, image])
            #expect(r.status == 0, "\(r.err)")
            images.append(try ScanFS.readFile(image))
            digests.append(r.out)
        }
        #expect(firstDifference(images[0], images[1]) == nil)
        #expect(digests[0] == digests[1])
        #expect(digests[0] == FsVerity.digest(images[0]).hexString + "\n")
        // The library gives the same image in process.
        for threads in [1, 8] {
            var options = DirectoryScanner.Options()
            options.threads = threads
            let image = try ImageWriter.write(try DirectoryScanner.scan(src, options: options))
            #expect(firstDifference(image, images[0]) == nil, "library, \(threads) threads")
        }
    }

    /// §21: path depth is unlimited. A tree whose relative paths are longer
    /// than PATH_MAX (4096) scans like any other. (Fails while the scanner
    /// opens every directory and file by its whole path from the root fd,
    /// which gives ENAMETOOLONG, instead of relative to its parent's fd.)
    @Test func pathsLongerThanPathMax() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-longpath")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdir(Array(src.utf8))
        // 20 levels of 250-byte names: 5020 bytes of relative path.
        var fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(fd >= 0)
        for level in 0..<20 {
            let name = Array(String(repeating: String(Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(level)))), count: 250).utf8)
            try ScanFS.check(ScanFS.withC(name) { mkdirat(fd, $0, 0o755) }, "mkdirat", name)
            let next = ScanFS.withC(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
            try #require(next >= 0)
            close(fd)
            fd = next
        }
        for (name, content) in [("inline", b("deep inline\n")), ("external", pseudoRandomBytes(5000, seed: 77))] {
            let f = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            try #require(f >= 0)
            _ = content.withUnsafeBytes { write(f, $0.baseAddress, $0.count) }
            close(f)
        }
        close(fd)
        let expected = try ScanSnapshot.take(src)
        #expect(expected.count == 1 + 20 + 2)
        let image = dir.file("long.cfs")
        let store = dir.file("store")
        let r = try Self.run(["--digest-store=\(store)", src, image])
        #expect(r.status == 0, "stderr: \(String(r.err.prefix(300)))")
        guard r.status == 0 else { return }
        try ScanImage.expectMatches(image, expected, "long paths")
        let digest = FsVerity.digest(pseudoRandomBytes(5000, seed: 77))
        #expect(ScanFS.exists(store + "/" + String(decoding: FsVerity.objectPath(digest), as: UTF8.self)))
    }

    /// An empty SOURCEDIR: the smallest image, the root alone.
    @Test func emptySourceDirectory() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-empty")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdir(Array(src.utf8), 0o700)
        try ScanFS.chown(Array(src.utf8), 42, 43)
        try ScanFS.setMtime(Array(src.utf8), 1_700_000_000, 7)
        let image = dir.file("empty.cfs")
        let r = try Self.run([src, image])
        #expect(r.status == 0, "\(r.err)")
        let bytes = try ScanFS.readFile(image)
        #expect(bytes.count == 16384)
        try ScanImage.expectMatches(image, try ScanSnapshot.take(src), "empty directory")
        #expect(try ImageReader.load(bytes).root.children.isEmpty)
    }

    // MARK: Errors

    /// Xattrs over the per-inode budget (§16) abort the scan (§19.2 step
    /// 4). On a tmpfs, which holds xattrs that ext4 cannot.
    @Test func xattrsOverTheBudgetAbortTheScan() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-budget")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdir(Array(src.utf8))
        try ScanFS.mountTmpfs(src, size: "1m")
        defer { ScanFS.unmount(src) }
        let file = ScanFS.path(src, "f")
        try ScanFS.write(file, b("x"))
        for i in 0..<3 { try ScanFS.setXattr(file, "trusted.big\(i)", pseudoRandomBytes(12_000, seed: UInt64(i))) }
        let image = dir.file("out.cfs")
        let r = try Self.run([src, image])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: error accessing \(src)/f: Numerical result out of range"), "stderr: \(r.err)")
        #expect(!ScanFS.exists(image))
        // Without xattrs the same tree is fine.
        let r2 = try Self.run(["--skip-xattrs", src, image])
        #expect(r2.status == 0, "\(r2.err)")
    }

    @Test func missingSourceDirectory() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-missing")
        defer { dir.remove() }
        let missing = dir.file("does-not-exist")
        let image = dir.file("out.cfs")
        let r = try Self.run([missing, image])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.err == "mkcomposefs: error accessing \(missing): No such file or directory\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty, "no image, no temporary file")
        #expect(throws: DirectoryScanner.Error.access(path: FilePath(missing), errno: .noSuchFileOrDirectory)) { try DirectoryScanner.scan(missing) }
    }

    /// SOURCEDIR itself is lstat'ed: a symlink to a directory is not
    /// followed, and a non-directory root fails with ENOTDIR (§19.2 step 1).
    @Test func symlinkedSourceIsNotFollowed() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("scan-symroot")
        defer { dir.remove() }
        let real = dir.file("real")
        try ScanFS.mkdir(Array(real.utf8))
        try ScanFS.write(ScanFS.path(real, "file"), pseudoRandomBytes(100, seed: 1))
        let link = dir.file("link")
        try ScanFS.symlink(b("real"), Array(link.utf8))
        let regular = dir.file("regular")
        try ScanFS.write(Array(regular.utf8), b("not a directory\n"))
        for source in [link, regular] {
            let image = dir.file("out.cfs")
            let store = dir.file("store")
            let r = try Self.run(["--digest-store=\(store)", source, image])
            #expect(r.status == 1, "\(source)")
            #expect(r.stdout.isEmpty)
            #expect(r.err.hasPrefix("mkcomposefs: "))
            #expect(r.err.contains("Not a directory"), "stderr: \(r.err)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["link", "real", "regular"],
                    "no image, no temporary file, no store")
        }
        // The real directory works.
        let ok = try Self.run([real, dir.file("ok.cfs")])
        #expect(ok.status == 0, "\(ok.err)")
    }
}

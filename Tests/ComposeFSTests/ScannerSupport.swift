import CComposeFSShims
import Foundation
import Glibc

@testable import ComposeFS

// Helpers of the root-only directory-scanner tests (DirectoryScannerTests,
// ObjectStoreTests): syscalls on byte paths, scratch directories, and the
// fs-verity digest of a file of zeros computed by hand.

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
        _ = try? Child("/bin/rm", ["-rf", "--one-file-system", path]).wait()
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
        descriptor[0] = 1   // version
        descriptor[1] = 1   // SHA-256
        descriptor[2] = 12   // log2(4096)
        for i in 0..<8 { descriptor[8 + i] = UInt8(truncatingIfNeeded: size >> (8 * UInt64(i))) }
        descriptor.replaceSubrange(16..<48, with: last)
        return SHA256Reference.hash(descriptor)
    }
}

import CComposeFSShims
import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Helpers of the mount tests (MountTests, MountRouteTests): the shared
// fixture, mount-table and loop-device queries, the tree comparison, and
// a shell runner.

extension MountTests {
    /// One tree, image and store, and a mount point, removed at the end.
    final class Fixture {
        let dir: TemporaryDirectory
        var source: String { dir.file("src") }
        var store: String { dir.file("objects") }
        var image: String { dir.file("image.cfs") }
        var target: String { dir.file("mnt") }

        init() throws {
            dir = try TemporaryDirectory()
            try FileManager.default.createDirectory(atPath: dir.file("mnt"), withIntermediateDirectories: true)
        }

        deinit {
            // Never leave a mount behind, even when a test failed half way.
            for _ in 0..<4 where Mounts.isMountPoint(target) { umount2(target, Int32(MNT_DETACH)) }
            dir.remove()
        }

        /// Builds a tree with every file type the overlay can show.
        func buildTree() throws {
            try sh(
                """
                set -e
                cd '\(dir.path)'
                mkdir -p src/sub/deeper src/empty-dir
                printf 'hello\\n' > src/small
                : > src/empty
                head -c 64 /dev/urandom > src/s64
                head -c 65 /dev/urandom > src/s65
                head -c 4096 /dev/urandom > src/s4096
                head -c 4097 /dev/urandom > src/s4097
                head -c 1000000 /dev/urandom > src/sub/big
                head -c 200000 /dev/urandom > src/sub/deeper/other
                cp src/sub/big src/sub/big-copy
                ln src/s4097 src/hardlink
                ln -s small src/link
                ln -s "$(printf 'x%.0s' $(seq 1 300))" src/long-link
                mkfifo src/fifo
                mknod src/chardev c 1 3
                mknod src/blockdev b 7 200
                name=$(printf 'n%.0s' $(seq 1 255))
                printf 'long name\\n' > "src/$name"
                printf 'odd\\n' > "$(printf 'src/odd name\\twith=bytes\\377')"
                setfattr -n user.note -v 'some value' src/small
                setfattr -n user.empty src/s65
                setfattr -n trusted.secret -v 0x00ff10 src/sub/big
                setfattr -n user.dir -v d src/sub
                chown 1234:5678 src/s64
                chown 1:2 src/sub/deeper
                chmod 0640 src/s65
                chmod 4755 src/s4096
                touch -h -d '2001-02-03 04:05:06.123456789' src/link
                touch -d '1999-12-31 23:59:59.5' src/sub/deeper/other
                """)
        }

        func makeImage(_ extra: [String] = []) throws {
            let r = try Tools.mkcomposefs(extra + ["--digest-store=\(store)", source, image])
            #expect(r.status == 0, "mkcomposefs: \(r.err)")
        }

        func mountCLI(_ options: String) throws -> Tools.Result {
            try Tools.run("mount.composefs", ["-o", options, image, target])
        }
    }
}

extension Trait where Self == Requirement {
    /// Root, a kernel with EROFS and overlayfs, and mount.composefs built.
    static var mounting: Requirement {
        Requirement(met: { Mounts.canMount }, why: "needs root, EROFS and overlayfs in the kernel, and mount.composefs built")
    }
}

/// Mount-table and loop-device queries, and the root/kernel requirement.
enum Mounts {
    static var canMount: Bool {
        let filesystems = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
        return Privilege.isRoot && filesystems.contains("\terofs") && filesystems.contains("\toverlay")
            && (Tools.directory.map { access($0 + "/mount.composefs", X_OK) == 0 } ?? false)
    }

    /// Filesystem types mounted exactly at `path` (from /proc/self/mountinfo).
    static func entries(at path: String) -> [String] {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return info.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count,
                fields[4].replacingOccurrences(of: "\\040", with: " ") == real
            else { return nil }
            return String(fields[dash + 1])
        }
    }

    static func isMountPoint(_ path: String) -> Bool { !entries(at: path).isEmpty }

    /// Unmounts, retrying briefly on EBUSY: a process spawned by a test
    /// running in parallel may hold an inherited descriptor for a moment.
    static func unmount(_ path: String) throws {
        var rc = umount2(path, 0)
        var e = errno
        for _ in 0..<50 where rc != 0 && e == EBUSY {
            usleep(20_000)
            rc = umount2(path, 0)
            e = errno
        }
        try #require(rc == 0, "umount \(path): \(errnoText(e))")
    }

    /// Loop devices whose backing file is `image`.
    static func loopDevices(backing image: String) -> [String] {
        let real = URL(fileURLWithPath: image).resolvingSymlinksInPath().path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.filter { name in
            guard name.hasPrefix("loop"),
                let backing = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8)
            else { return false }
            return backing.trimmingCharacters(in: .whitespacesAndNewlines) == real
        }
    }

    /// This namespace's mount table: mount point and filesystem type per
    /// line, leaving out the mounts of other tests running meanwhile (in
    /// their own temporary directories).
    static func table(for fixture: MountTests.Fixture) -> [String] {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let mine = fixture.dir.path
        return info.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            let point = fields.count > 4 ? String(fields[4]) : ""
            if point.hasPrefix(TemporaryDirectory.prefix) && !point.hasPrefix(mine) { return nil }
            let type = fields.firstIndex(of: "-").flatMap { $0 + 1 < fields.count ? fields[$0 + 1] : nil } ?? ""
            return "\(point) \(type)"
        }
    }

    /// The superblock options of the mount at `path`.
    static func mountOptions(at path: String) throws -> String {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let info = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        for line in info.split(separator: "\n").reversed() {
            let fields = line.split(separator: " ")
            if fields.count > 4, fields[4] == real, let last = fields.last { return String(last) }
        }
        return ""
    }

    /// Auto-clear frees a loop device shortly after its last user goes.
    static func waitForNoLoopDevices(backing image: String) -> Bool {
        for _ in 0..<50 {
            if loopDevices(backing: image).isEmpty { return true }
            usleep(20_000)
        }
        return false
    }
}

/// Compares a source tree with its mounted image: names, types, modes,
/// owners, mtimes, xattrs (user. and trusted., overlay's own hidden),
/// symlink targets, device numbers and every byte of every file.
enum TreeComparison {
    struct Entry: Equatable, CustomStringConvertible {
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var mtime: Timespec
        var rdev: UInt64
        var target: [UInt8]?
        var xattrs: [String: [UInt8]]
        var contentDigest: [UInt8]?

        var description: String {
            "mode \(String(mode, radix: 8)) uid \(uid) gid \(gid) mtime \(mtime.seconds).\(mtime.nanoseconds) rdev \(rdev) target \(target.map { String(bytes: $0) } ?? "-") xattrs \(xattrs.keys.sorted()) content \(contentDigest?.hexString ?? "-")"
        }
    }

    static func expectEqual(source: String, mounted: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = try collect(source)
        let b = try collect(mounted)
        #expect(
            a.keys.sorted(by: [UInt8].byteOrderLess) == b.keys.sorted(by: [UInt8].byteOrderLess),
            "the same names", sourceLocation: sourceLocation)
        for (path, want) in a.sorted(by: { [UInt8].byteOrderLess($0.key, $1.key) }) {
            let got = b[path]
            #expect(
                got == want, "\(String(bytes: path)): source \(want), mounted \(got.map(\.description) ?? "missing")",
                sourceLocation: sourceLocation)
        }
    }

    /// Every entry below `root` by its relative path (bytes: names need not be UTF-8).
    static func collect(_ root: String) throws -> [[UInt8]: Entry] {
        var out: [[UInt8]: Entry] = [:]
        var stack: [[UInt8]] = [[]]
        while let rel = stack.popLast() {
            let full = Array(root.utf8) + (rel.isEmpty ? [] : [UInt8(ascii: "/")] + rel)
            let cpath = full + [0]
            var st = stat()
            let rc = cpath.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &st) } }
            try #require(rc == 0, "lstat \(String(bytes: full))")
            let type = st.st_mode & S_IFMT
            var e = Entry(
                mode: st.st_mode, uid: st.st_uid, gid: st.st_gid,
                mtime: Timespec(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
                rdev: (type == S_IFCHR || type == S_IFBLK) ? UInt64(st.st_rdev) : 0,
                target: nil, xattrs: xattrs(cpath), contentDigest: nil)
            if type == S_IFLNK {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { cp in
                        buf.withUnsafeMutableBytes {
                            readlink(cp.baseAddress!, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count)
                        }
                    }
                }
                e.target = Array(buf[0..<max(0, n)])
            } else if type == S_IFREG {
                let fd = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_RDONLY | O_CLOEXEC) }
                }
                try #require(fd >= 0, "open \(String(bytes: full))")
                defer { close(fd) }
                e.contentDigest = try FsVerity.digest(fd: fd)
            } else if type == S_IFDIR {
                let dir = cpath.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { opendir($0.baseAddress!) } }
                let handle = try #require(dir, "opendir \(String(bytes: full))")
                defer { closedir(handle) }
                while let ent = readdir(handle) {
                    let name: [UInt8] = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                    if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                    stack.append(rel.isEmpty ? name : rel + [UInt8(ascii: "/")] + name)
                }
            }
            if rel.isEmpty { e.mtime = .zero }   // the mount point root's own times may differ
            out[rel] = e
        }
        return out
    }

    /// user.* and trusted.* xattrs (overlay's own and security.* left out).
    static func xattrs(_ cpath: [UInt8]) -> [String: [UInt8]] {
        cpath.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { path -> [String: [UInt8]] in
                var list = [CChar](repeating: 0, count: 65536)
                let n = llistxattr(path.baseAddress!, &list, list.count)
                guard n > 0 else { return [:] }
                var out: [String: [UInt8]] = [:]
                for raw in list[0..<n].split(separator: 0) {
                    let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    if name.hasPrefix("trusted.overlay.") || name.hasPrefix("security.") { continue }
                    var value = [UInt8](repeating: 0, count: 65536)
                    let m = lgetxattr(path.baseAddress!, name, &value, value.count)
                    out[name] = m >= 0 ? Array(value[0..<m]) : nil
                }
                return out
            }
        }
    }
}

/// Runs a shell command; its stdout, or an error with its stderr.
@discardableResult
func sh(_ command: String) throws -> String {
    let r = try Tools.run("/bin/sh", ["-c", command])
    guard r.status == 0 else {
        throw ShellError(command: command, status: r.status, stderr: r.err)
    }
    return r.out
}

struct ShellError: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var stderr: String
    var description: String { "sh -c '\(command.prefix(200))' exited \(status): \(stderr)" }
}

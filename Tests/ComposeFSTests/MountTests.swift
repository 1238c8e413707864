import Foundation
import CComposeFSShims
import Glibc
import Testing
@testable import ComposeFS

/// Real mounts through `mount.composefs` and the library (FORMAT.md §20):
/// root only; under CI=true they fail instead of skipping.
@Suite(.serialized) struct MountTests {
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
            try sh("""
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

    // MARK: Mounting and comparing

    @Test func mountShowsTheSourceTree() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let r = try f.mountCLI("basedir=\(f.store)")
        try #require(r.status == 0, "mount.composefs: \(r.err)")
        #expect(r.err.isEmpty)
        #expect(Mounts.entries(at: f.target) == ["overlay"], "exactly one mount, the overlay")
        try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        try Mounts.unmount(f.target)
        #expect(!Mounts.isMountPoint(f.target))
        #expect(Mounts.loopDevices(backing: f.image).isEmpty)
    }

    @Test func objectsSplitAcrossTwoBasedirs() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        // Move every other object into a second store.
        let second = f.dir.file("objects2")
        try sh("""
            set -e
            cd '\(f.store)'
            i=0
            for o in */*; do
                i=$((i+1))
                if [ $((i % 2)) = 0 ]; then mkdir -p "\(second)/${o%%/*}"; mv "$o" "\(second)/$o"; fi
            done
            """)
        let r = try f.mountCLI("basedir=\(f.store):\(second)")
        try #require(r.status == 0, "mount.composefs: \(r.err)")
        try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        try Mounts.unmount(f.target)
    }

    @Test func readOnlyMount() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        try #require(try f.mountCLI("basedir=\(f.store),ro").status == 0)
        let fd = open(f.target + "/newfile", O_WRONLY | O_CREAT, 0o644)
        let e = errno
        if fd >= 0 { close(fd) }
        #expect(fd < 0 && e == EROFS)
        try Mounts.unmount(f.target)
    }

    @Test func writableMountWithUpperdir() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let upper = f.dir.file("upper"), work = f.dir.file("work")
        try sh("mkdir -p '\(upper)' '\(work)'")
        let imageBefore = try Data(contentsOf: URL(fileURLWithPath: f.image))
        let storeBefore = try sh("cd '\(f.store)' && find . -type f | sort | xargs sha256sum")
        try #require(try f.mountCLI("basedir=\(f.store),upperdir=\(upper),workdir=\(work)").status == 0)
        try sh("""
            set -e
            cd '\(f.target)'
            printf 'new\\n' > created
            printf 'changed\\n' >> small
            rm s65
            """)
        #expect(try String(contentsOfFile: f.target + "/small", encoding: .utf8) == "hello\nchanged\n")
        try Mounts.unmount(f.target)
        #expect(try String(contentsOfFile: upper + "/created", encoding: .utf8) == "new\n")
        #expect(try String(contentsOfFile: upper + "/small", encoding: .utf8) == "hello\nchanged\n")
        #expect(try Data(contentsOf: URL(fileURLWithPath: f.image)) == imageBefore, "the image is untouched")
        #expect(try sh("cd '\(f.store)' && find . -type f | sort | xargs sha256sum") == storeBefore, "the store is untouched")
    }

    @Test func idmappedMountShiftsOwners() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        // A user namespace mapping 0..65535 to 100000..165535, held by a sleeper.
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        sleeper.arguments = ["--user", "sleep", "60"]
        try sleeper.run()
        defer {
            kill(sleeper.processIdentifier, SIGKILL)
            sleeper.waitUntilExit()
        }
        let pid = sleeper.processIdentifier
        var mapped = false
        for _ in 0..<100 {
            if (try? sh("readlink /proc/\(pid)/ns/user")) != (try? sh("readlink /proc/self/ns/user")) {
                mapped = true
                break
            }
            usleep(20_000)
        }
        try #require(mapped, "the helper process entered a new user namespace")
        try sh("echo '0 100000 65536' > /proc/\(pid)/uid_map && echo '0 100000 65536' > /proc/\(pid)/gid_map")
        let r = try f.mountCLI("basedir=\(f.store),idmap=/proc/\(pid)/ns/user")
        try #require(r.status == 0, "mount.composefs: \(r.err)")
        var st = stat()
        #expect(lstat(f.target + "/small", &st) == 0)
        #expect(st.st_uid == 100000 && st.st_gid == 100000)
        #expect(lstat(f.target + "/s64", &st) == 0)
        #expect(st.st_uid == 101234 && st.st_gid == 105678)
        #expect(try String(contentsOfFile: f.target + "/small", encoding: .utf8) == "hello\n")
        try Mounts.unmount(f.target)
    }

    @Test func mountTypeComposefsThroughTheHelper() throws {
        guard Mounts.requireMountSupport() else { return }
        let helper = "/sbin/mount.composefs"
        var installed = false
        if access(helper, F_OK) != 0 {
            let built = try #require(Tools.directory) + "/mount.composefs"
            try #require(symlink(built, helper) == 0, "installing \(helper)")
            installed = true
        }
        defer { if installed { unlink(helper) } }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        try sh("mount -t composefs -o basedir='\(f.store)' '\(f.image)' '\(f.target)'")
        #expect(try String(contentsOfFile: f.target + "/small", encoding: .utf8) == "hello\n")
        #expect(Mounts.entries(at: f.target) == ["overlay"])
        try sh("umount '\(f.target)'")
        #expect(!Mounts.isMountPoint(f.target))
    }

    @Test func loopDeviceFallback() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        var options = Mount.Options()
        options.basedirPaths = [f.store]
        try Mount.mount(image: f.image, target: f.target, options: options,
                        environment: Mount.Environment(forceLoopDevice: true))
        #expect(Mounts.loopDevices(backing: f.image).count == 1, "the EROFS layer sits on a loop device")
        try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        try Mounts.unmount(f.target)
        // Auto-clear frees the device once the mount is gone.
        var freed = false
        for _ in 0..<50 {
            if Mounts.loopDevices(backing: f.image).isEmpty { freed = true; break }
            usleep(20_000)
        }
        #expect(freed, "no loop device left after umount")
    }

    @Test func missingObjectIsAnIOError() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let digest = try FsVerity.digest(path: f.source + "/sub/big")
        let object = f.store + "/" + String(bytes: FsVerity.objectPath(digest))
        try #require(unlink(object) == 0, "removing \(object)")
        try #require(try f.mountCLI("basedir=\(f.store)").status == 0)
        defer { try? Mounts.unmount(f.target) }
        let fd = open(f.target + "/sub/big", O_RDONLY)
        var e: Int32 = 0
        if fd >= 0 {
            var buf = [UInt8](repeating: 0, count: 4096)
            if read(fd, &buf, buf.count) < 0 { e = errno }
            close(fd)
        } else {
            e = errno
        }
        // The kernel's lazy lowerdata lookup fails the open (ENOENT here;
        // EIO on some kernels): an error, never wrong data.
        #expect(e == EIO || e == ENOENT, "reading a file whose object is missing fails, got \(errnoText(e))")
        // Other files still read fine.
        #expect(try String(contentsOfFile: f.target + "/small", encoding: .utf8) == "hello\n")
    }

    // MARK: Refusals: a message, exit 1, nothing mounted

    func expectRefusal(_ f: Fixture, _ arguments: [String], _ message: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try Tools.run("mount.composefs", arguments)
        #expect(r.status == 1, sourceLocation: sourceLocation)
        #expect(r.err.contains(message), "stderr: \(r.err)", sourceLocation: sourceLocation)
        #expect(!Mounts.isMountPoint(f.target), "nothing mounted", sourceLocation: sourceLocation)
    }

    @Test func refusals() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let notImage = try f.dir.write("not-an-image", [UInt8](repeating: 7, count: 8192))
        try expectRefusal(f, ["-o", "basedir=\(f.store)", notImage, f.target],
                          "Failed to mount composefs \(notImage): \(notImage) is not a composefs image (bad header)")
        let digest = try #require(try Tools.mkcomposefs(["--print-digest-only", f.source]).out.split(separator: "\n").first)
        try expectRefusal(f, ["-o", "basedir=\(f.store),digest=\(digest)", f.image, f.target], "Image has no fs-verity")
        try expectRefusal(f, ["-o", "basedir=\(f.store),bogus", f.image, f.target], "mount.composefs: Unsupported option bogus")
        try expectRefusal(f, ["-o", "ro", f.image, f.target], "mount.composefs: No object dirs specified")
        try expectRefusal(f, ["-o", "basedir=\(f.dir.file("nope"))", f.image, f.target], "object directory \(f.dir.file("nope")): No such file or directory")
        try expectRefusal(f, ["-o", "basedir=\(f.store)", f.dir.file("missing.cfs"), f.target], "Failed to open \(f.dir.file("missing.cfs")): No such file or directory")
        try expectRefusal(f, ["-o", "basedir=\(f.store)", f.image, f.dir.file("no-such-dir")], "mount point \(f.dir.file("no-such-dir")): No such file or directory")
        try expectRefusal(f, ["-o", "basedir=\(f.store)", f.image, f.image], "mount point \(f.image): Not a directory")
        try expectRefusal(f, ["-o", "basedir=\(f.store),upperdir=/tmp", f.image, f.target], "Both workdir and upperdir must be specified if used")
        try expectRefusal(f, ["-t", "ext4", "-o", "basedir=\(f.store)", f.image, f.target], "Unsupported fs type 'ext4'")
    }

    /// A wrong digest, through an injected measurement: this kernel has no
    /// fs-verity, so the mismatch path is reached at the one place the
    /// ioctl is wrapped.
    @Test func wrongDigestIsRefused() throws {
        guard Mounts.requireMountSupport() else { return }
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        var options = try Mount.Options.parse("basedir=\(f.store),digest=\(String(repeating: "ab", count: 32))")
        #expect(options.requireVerity)
        let actual = [UInt8](repeating: 0xcd, count: 32)
        let environment = Mount.Environment(measure: { _ in .digest(actual) })
        #expect(throws: Mount.Error.wrongVerity(path: FilePath(f.image), expected: [UInt8](repeating: 0xab, count: 32), actual: actual)) {
            try Mount.mount(image: f.image, target: f.target, options: options, environment: environment)
        }
        #expect(!Mounts.isMountPoint(f.target))
        // The matching digest passes the check (verity=require is then set,
        // so the objects, which have no fs-verity here, fail to open).
        options.digest = actual
        options.requireVerity = false
        try Mount.mount(image: f.image, target: f.target, options: options, environment: environment)
        #expect(Mounts.isMountPoint(f.target))
        try Mounts.unmount(f.target)
    }
}

/// Option strings (§20.1), no mounting involved.
@Suite struct MountOptionTests {
    @Test func parsesEveryOption() throws {
        let o = try Mount.Options.parse("basedir=/a:/b\\,c,digest=\(String(repeating: "0f", count: 32)),upperdir=/u,workdir=/w,idmap=/proc/1/ns/user,ro")
        #expect(o.basedirs == ["/a", "/b,c"])
        #expect(o.digest == [UInt8](repeating: 0x0f, count: 32))
        #expect(o.requireVerity && !o.tryVerity)
        #expect(o.upperdir == "/u" && o.workdir == "/w" && o.idmap == "/proc/1/ns/user" && o.readOnly)
        #expect(try Mount.Options.parse("basedir=/a,tryverity").tryVerity)
        #expect(try !Mount.Options.parse("basedir=/a,verity,tryverity").tryVerity)
        #expect(try !Mount.Options.parse("basedir=/a,noverity").requireVerity)
        #expect(try !Mount.Options.parse("basedir=/a,ro,rw").readOnly)
    }

    @Test func rejectsBadOptions() {
        #expect(throws: Mount.OptionError.unsupported("signed")) { try Mount.Options.parse("basedir=/a,signed") }
        #expect(throws: Mount.OptionError.missingValue("basedir")) { try Mount.Options.parse("basedir") }
        #expect(throws: Mount.OptionError.missingValue("digest")) { try Mount.Options.parse("basedir=/a,digest=") }
        #expect(throws: Mount.OptionError.badBasedir("/a::/b")) { try Mount.Options.parse("basedir=/a::/b") }
        #expect(throws: Mount.OptionError.badBasedir(":/a")) { try Mount.Options.parse("basedir=:/a") }
        #expect(throws: Mount.OptionError.badDigest("abc")) { try Mount.Options.parse("basedir=/a,digest=abc") }
        #expect(throws: Mount.OptionError.noBasedir) { try Mount.Options.parse("ro") }
        #expect(throws: Mount.OptionError.upperWithoutWork) { try Mount.Options.parse("basedir=/a,workdir=/w") }
        #expect(Mount.OptionError.missingValue("idmap").description == "No value specified for idmap option")
        #expect(Mount.OptionError.badBasedir("x").description == "Value for basedir option has incorrect format")
    }
}

/// Mount-table and loop-device queries, and the root/kernel requirement.
enum Mounts {
    static func requireMountSupport(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        guard Privilege.requireRoot(sourceLocation: sourceLocation) else { return false }
        let filesystems = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
        return Privilege.require(filesystems.contains("\terofs") && filesystems.contains("\toverlay"),
                                 "the kernel needs EROFS and overlayfs", sourceLocation: sourceLocation)
            && Privilege.require(Tools.directory.map { access($0 + "/mount.composefs", X_OK) == 0 } ?? false,
                                 "mount.composefs is not built", sourceLocation: sourceLocation)
    }

    /// Filesystem types mounted exactly at `path` (from /proc/self/mountinfo).
    static func entries(at path: String) -> [String] {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return info.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count,
                  fields[4].replacingOccurrences(of: "\\040", with: " ") == real else { return nil }
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
        #expect(a.keys.sorted(by: [UInt8].byteOrderLess) == b.keys.sorted(by: [UInt8].byteOrderLess),
                "the same names", sourceLocation: sourceLocation)
        for (path, want) in a.sorted(by: { [UInt8].byteOrderLess($0.key, $1.key) }) {
            let got = b[path]
            #expect(got == want, "\(String(bytes: path)): source \(want), mounted \(got.map(\.description) ?? "missing")",
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
            var e = Entry(mode: st.st_mode, uid: st.st_uid, gid: st.st_gid,
                          mtime: Timespec(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
                          rdev: (type == S_IFCHR || type == S_IFBLK) ? UInt64(st.st_rdev) : 0,
                          target: nil, xattrs: xattrs(cpath), contentDigest: nil)
            if type == S_IFLNK {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { cp in
                        buf.withUnsafeMutableBytes { readlink(cp.baseAddress!, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
                    }
                }
                e.target = Array(buf[0..<max(0, n)])
            } else if type == S_IFREG {
                let fd = cpath.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_RDONLY | O_CLOEXEC) } }
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

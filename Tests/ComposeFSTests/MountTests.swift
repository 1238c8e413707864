import CComposeFSShims
import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// Real mounts through `mount.composefs` and the library (FORMAT.md §20):
/// root only; under CI=true they fail instead of skipping.
@Suite(.serialized) struct MountTests {
    // MARK: Mounting and comparing

    @Test(.mounting) func mountShowsTheSourceTree() throws {
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

    @Test(.mounting) func objectsSplitAcrossTwoBasedirs() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        // Move every other object into a second store.
        let second = f.dir.file("objects2")
        try sh(
            """
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

    @Test(.mounting) func readOnlyMount() throws {
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

    @Test(.mounting) func writableMountWithUpperdir() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let upper = f.dir.file("upper")
        let work = f.dir.file("work")
        try sh("mkdir -p '\(upper)' '\(work)'")
        let imageBefore = try Data(contentsOf: URL(fileURLWithPath: f.image))
        let storeBefore = try sh("cd '\(f.store)' && find . -type f | sort | xargs sha256sum")
        try #require(try f.mountCLI("basedir=\(f.store),upperdir=\(upper),workdir=\(work)").status == 0)
        try sh(
            """
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

    @Test(.mounting) func idmappedMountShiftsOwners() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        // A user namespace mapping 0..65535 to 100000..165535, held by a sleeper.
        let sleeper = try Child("/usr/bin/unshare", ["--user", "sleep", "60"])
        defer { sleeper.signal(SIGKILL) }
        let pid = sleeper.pid
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

    @Test(.mounting) func mountTypeComposefsThroughTheHelper() throws {
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

    @Test(.mounting) func loopDeviceFallback() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        var options = Mount.Options()
        options.basedirPaths = [f.store]
        try Mount.mount(
            image: f.image, target: f.target, options: options,
            environment: Mount.Environment(forceLoopDevice: true))
        #expect(Mounts.loopDevices(backing: f.image).count == 1, "the EROFS layer sits on a loop device")
        try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        try Mounts.unmount(f.target)
        // Auto-clear frees the device once the mount is gone.
        var freed = false
        for _ in 0..<50 {
            if Mounts.loopDevices(backing: f.image).isEmpty {
                freed = true
                break
            }
            usleep(20_000)
        }
        #expect(freed, "no loop device left after umount")
    }

    @Test(.mounting) func missingObjectIsAnIOError() throws {
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

    func expectRefusal(
        _ f: Fixture, _ arguments: [String], _ message: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let r = try Tools.run("mount.composefs", arguments)
        #expect(r.status == 1, sourceLocation: sourceLocation)
        #expect(r.err.contains(message), "stderr: \(r.err)", sourceLocation: sourceLocation)
        #expect(!Mounts.isMountPoint(f.target), "nothing mounted", sourceLocation: sourceLocation)
    }

    @Test(.mounting) func refusals() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let notImage = try f.dir.write("not-an-image", [UInt8](repeating: 7, count: 8192))
        try expectRefusal(
            f, ["-o", "basedir=\(f.store)", notImage, f.target],
            "Failed to mount composefs \(notImage): \(notImage) is not a composefs image (bad header)")
        let digest = try #require(try Tools.mkcomposefs(["--print-digest-only", f.source]).out.split(separator: "\n").first)
        try expectRefusal(f, ["-o", "basedir=\(f.store),digest=\(digest)", f.image, f.target], "Image has no fs-verity")
        try expectRefusal(f, ["-o", "basedir=\(f.store),bogus", f.image, f.target], "mount.composefs: Unsupported option bogus")
        try expectRefusal(f, ["-o", "ro", f.image, f.target], "mount.composefs: No object dirs specified")
        try expectRefusal(
            f, ["-o", "basedir=\(f.dir.file("nope"))", f.image, f.target],
            "object directory \(f.dir.file("nope")): No such file or directory")
        try expectRefusal(
            f, ["-o", "basedir=\(f.store)", f.dir.file("missing.cfs"), f.target],
            "Failed to open \(f.dir.file("missing.cfs")): No such file or directory")
        try expectRefusal(
            f, ["-o", "basedir=\(f.store)", f.image, f.dir.file("no-such-dir")],
            "mount point \(f.dir.file("no-such-dir")): No such file or directory")
        try expectRefusal(f, ["-o", "basedir=\(f.store)", f.image, f.image], "mount point \(f.image): Not a directory")
        try expectRefusal(
            f, ["-o", "basedir=\(f.store),upperdir=/tmp", f.image, f.target], "Both workdir and upperdir must be specified if used")
        try expectRefusal(f, ["-t", "ext4", "-o", "basedir=\(f.store)", f.image, f.target], "Unsupported fs type 'ext4'")
    }

    /// A wrong digest, through an injected measurement: this kernel has no
    /// fs-verity, so the mismatch path is reached at the one place the
    /// ioctl is wrapped.
    @Test(.mounting) func wrongDigestIsRefused() throws {
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
        let o = try Mount.Options.parse(
            "basedir=/a:/b\\,c,digest=\(String(repeating: "0f", count: 32)),upperdir=/u,workdir=/w,idmap=/proc/1/ns/user,ro")
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

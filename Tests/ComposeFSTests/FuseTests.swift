import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// composefs-fuse and mount.composefs's FUSE routes, mounted for real.
@Suite(.serialized) struct FuseTests {
    static let package = OutputTargetTests.package
    static let nobody: uid_t = 65534

    /// The 16 fixture images, mounted: what they show is exactly what
    /// upstream's composefs-fuse showed for them (the `.fuse-listing` files
    /// were written by scripts/tree-listing over upstream's mounts).
    @Test(.fuse) func showsWhatUpstreamShows() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("mnt"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.file("objects"), withIntermediateDirectories: true)
        var cases = (0..<12).map { ("cstorage", String(format: "cstorage-%02d", $0), [String]()) }
        for v in Vector.all { cases.append(("vectors", v.name, try v.args)) }
        for (folder, name, args) in cases {
            let image = dir.file("\(name).cfs")
            let r = try Tools.mkcomposefs(args + ["--from-file", Fixtures.url("\(folder)/\(name).dump").path, image])
            try #require(r.status == 0, "\(r.err)")
            let mount = try FuseRun(options: "source=\(image),basedir=\(dir.file("objects"))", target: dir.file("mnt"))
            let listing = try sh("python3 '\(Self.package)/scripts/tree-listing' '\(dir.file("mnt"))'")
            #expect(try mount.unmount() == 0)
            #expect(listing == (try Fixtures.text("\(folder)/\(name).fuse-listing")), "\(name)")
        }
    }

    /// An unprivileged user mounts a tree's image through fusermount3: the
    /// tree is the source's (diff -r finds nothing; user xattrs, owners,
    /// times, devices, links agree); fusermount3 -u ends the server.
    @Test(.fuse) func anyUserMountsATree() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try sh("chmod -R a+rX '\(f.dir.path)' && chown \(Self.nobody) '\(f.target)'")
        try f.makeImage()
        try withDevFuseForEveryone {
            let mount = try FuseRun(options: "source=\(f.image),basedir=\(f.store)", target: f.target, user: Self.nobody)
            let asNobody = "setpriv --reuid=\(Self.nobody) --regid=\(Self.nobody) --clear-groups"
            let diff = try sh(
                "\(asNobody) diff -r --no-dereference '\(f.source)' '\(f.target)' 2>&1 | grep -v -e 'is a fifo while' -e 'special file while' || true"
            )
            #expect(diff == "", "diff -r: \(diff)")
            let listing = "/usr/bin/python3 '\(Self.package)/scripts/tree-listing' --portable"
            #expect(try sh("\(asNobody) \(listing) '\(f.source)'") == (try sh("\(asNobody) \(listing) '\(f.target)'")))
            #expect(try sh("findmnt -n -o FSTYPE,OPTIONS '\(f.target)'").hasPrefix("fuse.composefs ro,nosuid,nodev"))
            #expect(try mount.unmount(asUser: Self.nobody) == 0)
            #expect(!Mounts.isMountPoint(f.target))
        }
    }

    /// The server's shapes serve the same tree: the polling thread on the
    /// only descriptor (-s), on a clone beside a sleeping reader (the
    /// default), and no polling (busy_poll=0). Bad values are refused.
    @Test(.fuse) func everyServerShapeServesTheTree() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let listing = "/usr/bin/python3 '\(Self.package)/scripts/tree-listing' --portable"
        let expected = try sh("\(listing) '\(f.source)'")
        for (options, flags) in [("", ["-s"]), ("", []), (",busy_poll=0", []), (",busy_poll=0", ["-s"]), (",busy_poll=1000000", [])] {
            let mount = try FuseRun(
                options: "source=\(f.image),basedir=\(f.store)\(options)", target: f.target, tool: ["composefs-fuse", "-f"] + flags)
            #expect(try sh("\(listing) '\(f.target)'") == expected, "\(options) \(flags)")
            #expect(try sh("cmp '\(f.source)/sub/big' '\(f.target)/sub/big' && echo same") == "same\n")
            #expect(try mount.unmount() == 0)
        }
        for bad in ["busy_poll=", "busy_poll=-1", "busy_poll=1000001", "busy_poll=5us"] {
            let r = try Tools.run("composefs-fuse", ["-o", "source=\(f.image),basedir=\(f.store),\(bad)", f.target])
            #expect(r.status != 0 && r.err.hasPrefix("composefs-fuse: "), "\(bad): \(r.err)")
        }
    }

    /// The same image through the kernel (mount.composefs) and through
    /// FUSE: the same tree, but for the xattrs FUSE does not show.
    @Test(.fuse, .mounting) func sameTreeAsTheKernelMount() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let kernel = f.dir.file("kernel")
        try FileManager.default.createDirectory(atPath: kernel, withIntermediateDirectories: true)
        try #require(try Tools.run("mount.composefs", ["-o", "basedir=\(f.store)", f.image, kernel]).status == 0)
        defer { try? Mounts.unmount(kernel) }
        let mount = try FuseRun(options: "source=\(f.image),basedir=\(f.store)", target: f.target)
        try TreeComparison.expectEqualUserXattrs(source: kernel, mounted: f.target)
        #expect(try mount.unmount() == 0)
    }

    /// A daemon started with relative paths (image, objects, mount point)
    /// mounts where they pointed when it started, not below `/`.
    @Test(.fuse) func relativePathsAreTheStartingDirectorys() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let bin = try #require(Tools.directory)
        try sh("cd '\(f.dir.path)' && '\(bin)/composefs-fuse' -o source=image.cfs,basedir=objects mnt")
        #expect(FuseRun.isFuseMount(f.target))
        try TreeComparison.expectEqualUserXattrs(source: f.source, mounted: f.target)
        try sh("umount '\(f.target)'")
        try MountFuseTests.expectNoServerLeft("source=image.cfs,basedir=objects")
    }

    /// umount, SIGTERM and the kernel dropping the connection: the server
    /// ends, nothing stays mounted, nothing runs.
    @Test(.fuse) func theServerEndsCleanly() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let options = "source=\(f.image),basedir=\(f.store)"
        var mount = try FuseRun(options: options, target: f.target)
        #expect(try mount.unmount() == 0, "umount ends the server")
        mount = try FuseRun(options: options, target: f.target)
        mount.process.terminate()
        #expect(mount.waitForExit() == 0, "SIGTERM: \(mount.stderr)")
        #expect(!Mounts.isMountPoint(f.target), "SIGTERM unmounts")
        mount.unmounted = true
        // The kernel drops the connection (fusectl's abort): the server ends
        // and unmounts.
        mount = try FuseRun(options: options, target: f.target)
        try sh("mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections")
        var st = stat()
        #expect(stat(f.target, &st) == 0)
        try sh("echo 1 > /sys/fs/fuse/connections/\(UInt32(st.st_dev) & 0xff | (UInt32(st.st_dev >> 12) & ~0xff))/abort")
        #expect(mount.waitForExit() == 0, "abort: \(mount.stderr)")
        #expect(!Mounts.isMountPoint(f.target), "nothing left mounted after an abort")
        mount.unmounted = true
        // Its own fusermount3 only: other suites' mounts run meanwhile.
        let left = try sh(
            "ps -eo stat=,args= | awk '$1 !~ /^Z/' | grep -F -- 'fusermount3' | grep -F -- '\(f.target)' | grep -v -e grep -e awk || true")
        #expect(left == "", "nothing left running")
    }

    /// Corrupted images (HostileImageTests' corruptions, a sample) mounted
    /// for real: whatever a walk asks (every name, attribute, xattr, link
    /// and byte), the server answers and survives, and unmounts cleanly.
    @Test(.fuse) func corruptedImagesAreServedWithoutACrash() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("mnt"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.file("objects"), withIntermediateDirectories: true)
        let (name, base) = HostileImageTests.bases[0]
        var mounted = 0
        for (k, bad) in try HostileImageTests.corruptions(of: base, seed: 11).enumerated() where k % 40 == 0 {
            let image = try dir.write("bad.cfs", bad)
            let mount: FuseRun
            do { mount = try FuseRun(options: "source=\(image),basedir=\(dir.file("objects"))", target: dir.file("mnt")) } catch {
                continue   // refused at start (an image that does not load): fine, if said so
            }
            mounted += 1
            _ = try? sh(
                "cd '\(dir.file("mnt"))' && find . -exec stat {} + > /dev/null 2>&1; find . -type f -exec cat {} + > /dev/null 2>&1; getfattr -R -d -m - . > /dev/null 2>&1; find . -type l -exec readlink {} + > /dev/null 2>&1; true"
            )
            #expect(mount.process.isRunning, "\(name) #\(k): the server ended: \(mount.stderr)")
            #expect(try mount.unmount() == 0, "\(name) #\(k): \(mount.stderr)")
        }
        #expect(mounted > 20, "\(mounted) corrupted images mounted")
    }
}

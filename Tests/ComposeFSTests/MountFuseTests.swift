import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// mount.composefs where the kernel route is not allowed: a user (full
/// FUSE through fusermount3), the root of a user namespace (the image's
/// metadata from FUSE under a kernel overlay with user xattrs where the
/// kernel takes that, 6.16 and later; else full FUSE), and root asking for
/// FUSE (`-o fuse`).
@Suite(.serialized) struct MountFuseTests {
    static let nobody: uid_t = 65534
    static let asNobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    /// A fixture every user can read, its target owned by nobody.
    static func fixture() throws -> MountTests.Fixture {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try sh("chmod -R a+rX '\(f.dir.path)' && chown \(nobody) '\(f.target)'")
        try f.makeImage()
        return f
    }

    static func mountComposefs(_ arguments: [String], as prefix: [String] = []) throws -> Tools.Result {
        let tool = try #require(Tools.directory) + "/mount.composefs"
        return prefix.isEmpty ? try Tools.run(tool, arguments) : try Tools.run(prefix[0], Array(prefix.dropFirst()) + [tool] + arguments)
    }

    @Test(.fuse) func aUserMountsThroughFuse() throws {
        let f = try Self.fixture()
        try withDevFuseForEveryone {
            let r = try Self.mountComposefs(["-v", "-o", "basedir=\(f.store)", f.image, f.target], as: Self.asNobody)
            #expect(r.status == 0, "\(r.err)")
            #expect(
                r.err == """
                    mount.composefs: not root of the initial user namespace: serving through FUSE
                    mount.composefs: mounted \(f.image) on \(f.target) (FUSE (mounted by fusermount3))

                    """)
            #expect(try sh("findmnt -n -o FSTYPE,SOURCE,OPTIONS '\(f.target)'").hasPrefix("fuse.composefs \(f.image) ro,nosuid,nodev"))
            let diff = try sh(
                "\(Self.asNobody.joined(separator: " ")) diff -r --no-dereference '\(f.source)' '\(f.target)' 2>&1 | grep -v -e 'is a fifo while' -e 'special file while' || true"
            )
            #expect(diff == "", "diff -r: \(diff)")
            try Self.expectSameTreeForNobody(f)
            // The user unmounts; the server ends with it.
            _ = try sh("\(Self.asNobody.joined(separator: " ")) fusermount3 -u '\(f.target)'")
            #expect(!Mounts.isMountPoint(f.target))
            try Self.expectNoServerLeft(f.image)
        }
    }

    /// What full FUSE cannot do is refused before anything is mounted.
    @Test(.fuse) func aUserCannotAskForWhatFuseCannotDo() throws {
        let f = try Self.fixture()
        try withDevFuseForEveryone {
            for (options, message) in [
                ("basedir=\(f.store),upperdir=/tmp/u,workdir=/tmp/w", "upperdir= needs a kernel overlay; the FUSE route here is read-only"),
                ("basedir=\(f.store),idmap=/proc/1/ns/user", "idmap= needs the kernel route (EROFS and overlayfs); not with FUSE")
            ] {
                let r = try Self.mountComposefs(["-o", options, f.image, f.target], as: Self.asNobody)
                #expect(r.status == 1)
                #expect(r.err == "mount.composefs: \(message)\n")
                #expect(!Mounts.isMountPoint(f.target))
            }
            // A user who may not write the mount point: fusermount3's refusal, named.
            try sh("chown 0 '\(f.target)' && chmod 755 '\(f.target)'")
            let r = try Self.mountComposefs(["-o", "basedir=\(f.store)", f.image, f.target], as: Self.asNobody)
            #expect(r.status == 1)
            #expect(r.err.hasPrefix("mount.composefs: Failed to mount composefs \(f.image): "), "\(r.err)")
            #expect(!Mounts.isMountPoint(f.target))
        }
    }

    /// `-o verity` as a user where the objects have no fs-verity: the
    /// server checks every object against its digest itself.
    @Test(.fuse) func aUserGetsVerityChecksFromTheServer() throws {
        let f = try Self.fixture()
        // The object of sub/big, which sub/big-copy shares.
        let digest = try FsVerity.digest(path: FilePath(f.source + "/sub/big"))
        let object = f.store + "/" + String(decoding: FsVerity.objectPath(digest), as: UTF8.self)
        try withDevFuseForEveryone {
            var r = try Self.mountComposefs(["-o", "basedir=\(f.store),verity", f.image, f.target], as: Self.asNobody)
            #expect(r.status == 0, "\(r.err)")
            try Self.expectSameTreeForNobody(f)
            _ = try sh("umount '\(f.target)'")
            try Self.expectNoServerLeft(f.image)
            // One object damaged: its file fails with EIO; the rest reads.
            try FuseVerityTests.damage(object, "flip")
            r = try Self.mountComposefs(["-o", "basedir=\(f.store),verity", f.image, f.target], as: Self.asNobody)
            #expect(r.status == 0, "\(r.err)")
            let reads = try sh(
                "\(Self.asNobody.joined(separator: " ")) find '\(f.target)' -type f -exec sh -c 'cat \"$1\" > /dev/null 2>&1 || echo \"${1#\(f.target)/}\"' _ {} \\; | sort"
            )
            #expect(reads == "sub/big\nsub/big-copy\n", "unreadable: \(reads)")
            _ = try sh("umount '\(f.target)'")
            try Self.expectNoServerLeft(f.image)
        }
    }

    /// The root of a user namespace: the overlay over FUSE (6.16 and
    /// later) or full FUSE; either way the source's tree.
    @Test(.fuse) func rootOfAUserNamespace() throws {
        let f = try Self.fixture()
        let overlay = Kernel.version >= 6016
        let listing = "python3 '\(OutputTargetTests.package)/scripts/tree-listing' --portable"
        let script = """
            set -e
            '\(try #require(Tools.directory))/mount.composefs' -v -o basedir='\(f.store)' '\(f.image)' '\(f.target)'
            findmnt -n -o FSTYPE '\(f.target)'
            \(listing) '\(f.target)' > '\(f.dir.path)/mounted'
            umount '\(f.target)'
            """
        let r = try Tools.run("/usr/bin/unshare", ["-Urm", "/bin/sh", "-c", script])
        #expect(r.status == 0, "\(r.err)")
        let route =
            overlay
            ? "FUSE metadata with a kernel overlay (the image's metadata from FUSE; detached image layer; overlay options by fsconfig (lowerdir+, datadir+); no verity checks)"
            : "FUSE (mounted by this process)"
        #expect(r.out == (overlay ? "overlay\n" : "fuse.composefs\n"))
        #expect(r.err.hasSuffix("mount.composefs: mounted \(f.image) on \(f.target) (\(route))\n"), "\(r.err)")
        // Owners as the namespace sees them: all outside its one mapped id
        // are nobody there; compare with the source seen the same way.
        let source = try Tools.run("/usr/bin/unshare", ["-Ur", "/bin/sh", "-c", "\(listing) '\(f.source)'"])
        #expect(try ScanFS.readFile(f.dir.file("mounted")).text == source.out)
        try Self.expectNoServerLeft(f.image)
    }

    /// The root of a user namespace asks for verity, and one object was
    /// replaced (by a changed copy: the test bed's objects have fs-verity):
    /// the overlay route (6.16 and later) mounts with `verity=require` and
    /// the kernel refuses the object; full FUSE (older kernels) has the
    /// server refuse it. Either way the other files read.
    @Test(.fuse, .kernelTestBed) func rootOfAUserNamespaceWithVerity() throws {
        let f = try Self.fixture()
        let overlay = Kernel.version >= 6016
        let digest = try FsVerity.digest(path: FilePath(f.source + "/sub/big"))
        let object = f.store + "/" + String(decoding: FsVerity.objectPath(digest), as: UTF8.self)
        #expect(FuseVerityTests.hasVerity(object), "the test bed's objects have fs-verity")
        try FuseVerityTests.damage(object, "flip")
        let script = """
            set -e
            '\(try #require(Tools.directory))/mount.composefs' -v -o basedir='\(f.store)',verity '\(f.image)' '\(f.target)'
            findmnt -n -o FSTYPE '\(f.target)'
            cat '\(f.target)/small'
            if cat '\(f.target)/sub/big' > /dev/null 2>&1; then echo served; else echo refused; fi
            umount '\(f.target)'
            """
        let r = try Tools.run("/usr/bin/unshare", ["-Urm", "/bin/sh", "-c", script])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out == (overlay ? "overlay\n" : "fuse.composefs\n") + "hello\nrefused\n", "\(r.err)")
        if overlay { #expect(r.err.contains("; verity=require))\n"), "\(r.err)") }
        try Self.expectNoServerLeft(f.image)
    }

    /// Root asks for FUSE: served by this program, mounted by the kernel
    /// API, the same tree as the kernel route shows.
    @Test(.fuse, .mounting) func rootAsksForFuse() throws {
        let f = try Self.fixture()
        let r = try Self.mountComposefs(["-v", "-o", "fuse,basedir=\(f.store)", f.image, f.target])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err == "mount.composefs: mounted \(f.image) on \(f.target) (FUSE (mounted by this process))\n")
        #expect(try sh("findmnt -n -o FSTYPE '\(f.target)'") == "fuse.composefs\n")
        try TreeComparison.expectEqualUserXattrs(source: f.source, mounted: f.target)
        _ = try sh("umount '\(f.target)'")
        try Self.expectNoServerLeft(f.image)
    }

    /// The mount as nobody sees it (a user's FUSE mount is not open to
    /// others, root included) is the source's tree.
    static func expectSameTreeForNobody(_ f: MountTests.Fixture, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let listing = "\(asNobody.joined(separator: " ")) /usr/bin/python3 '\(OutputTargetTests.package)/scripts/tree-listing' --portable"
        #expect(
            try sh("\(listing) '\(f.source)'") == (try sh("\(listing) '\(f.target)'")), sourceLocation: sourceLocation)
    }

    /// No server of `image` still runs (it ends with its mount).
    static func expectNoServerLeft(_ image: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var left = ""
        for _ in 0..<1000 {   // 10 s: a server built with a sanitizer ends slowly
            left = try sh("ps -eo stat=,args= | awk '$1 !~ /^Z/' | grep -F -- '\(image)' | grep -v -e grep -e awk || true")
            if left.isEmpty { return }
            usleep(10_000)
        }
        Issue.record("still running: \(left)", sourceLocation: sourceLocation)
    }
}

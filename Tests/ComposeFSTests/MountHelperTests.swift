import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// mount.composefs as mount(8) runs it (`mount.composefs SOURCE TARGET
/// [-sfnv] [-N NS] -o OPTIONS`), and the command-line forms upstream's
/// accepts.
@Suite(.serialized) struct MountHelperTests {
    /// The fixture with `/sbin/mount.composefs` linked to the build, for
    /// as long as `body` runs.
    static func withHelper(_ body: (MountTests.Fixture) throws -> Void) throws {
        let helper = "/sbin/mount.composefs"
        var installed = false
        if access(helper, F_OK) != 0 {
            try #require(symlink(try #require(Tools.directory) + "/mount.composefs", helper) == 0)
            installed = true
        }
        defer { if installed { unlink(helper) } }
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        try body(f)
    }

    /// The mount's own flags (not its superblock's options).
    static func mountFlags(_ target: String) throws -> String {
        try sh("findmnt -n -o VFS-OPTIONS '\(target)'")
    }

    @Test(.mounting) func optionFormsOfTheHelper() throws {
        try Self.withHelper { f in
            // Options after the mount point, flags mount(8) passes, the last -o counting.
            var r = try Tools.run("mount.composefs", [f.image, f.target, "-n", "-s", "-v", "-o", "ro", "-o", "basedir=\(f.store)"])
            #expect(r.status == 0, "\(r.err)")
            // -v: the fallbacks this kernel needs, then the way it took.
            #expect(
                r.err.split(separator: "\n").last?.hasPrefix("mount.composefs: mounted \(f.image) on \(f.target) (") == true, "\(r.err)")
            #expect(try String(contentsOfFile: f.target + "/small", encoding: .utf8) == "hello\n")
            #expect(try Self.mountFlags(f.target).hasPrefix("rw,"), "the first -o does not count")
            try Mounts.unmount(f.target)
            r = try Tools.run("mount.composefs", ["-o", "basedir=\(f.store)", "-o", "ro", f.image, f.target])
            #expect(r.status == 1 && r.err.hasPrefix("mount.composefs: No object dirs specified\n"), "\(r.err)")
            // -f checks the command line and mounts nothing.
            r = try Tools.run("mount.composefs", ["-f", "-o", "basedir=\(f.store)", f.image, f.target])
            #expect(r.status == 0 && r.err.isEmpty && !Mounts.isMountPoint(f.target))
            r = try Tools.run("mount.composefs", ["-x", f.image, f.target])
            #expect(r.status == 1 && r.err.hasPrefix("mount.composefs: Unknown option '-x'\nusage: mount.composefs"), "\(r.err)")
            r = try Tools.run("mount.composefs", ["--version"])
            #expect(r.status == 0 && r.out == "mount.composefs (swift-composefs) \(ComposeFS.version)\n")
            // mount(8) itself, with the flags it hands on.
            try sh("mount -n -v -t composefs -o basedir='\(f.store)',ro '\(f.image)' '\(f.target)'")
            #expect(try Self.mountFlags(f.target).hasPrefix("ro,"))
            try sh("umount '\(f.target)'")
            try sh("mount -f -t composefs -o basedir='\(f.store)' '\(f.image)' '\(f.target)'")
            #expect(!Mounts.isMountPoint(f.target))
        }
    }

    /// `mount --namespace` passes `-N`: the mount is made in that mount
    /// namespace only.
    @Test(.mounting) func anotherMountNamespace() throws {
        try Self.withHelper { f in
            let holder = try Child("/usr/bin/unshare", ["--mount", "--propagation", "private", "sleep", "infinity"])
            defer { holder.signal(SIGKILL) }
            let pid = holder.pid
            var entered = false
            for _ in 0..<100 {
                if (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt"))
                    != (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt"))
                {
                    entered = true
                    break
                }
                usleep(20_000)
            }
            try #require(entered, "unshare made its namespace")
            try sh("mount --namespace \(pid) -t composefs -o basedir='\(f.store)' '\(f.image)' '\(f.target)'")
            #expect(!Mounts.isMountPoint(f.target), "not in this namespace")
            #expect(try sh("nsenter -t \(pid) -m cat '\(f.target)/small'") == "hello\n")
            let r = try Tools.run("mount.composefs", ["-N", "\(pid)", "-o", "basedir=\(f.store)", f.image, f.dir.file("src")])
            #expect(r.status == 0, "\(r.err)")
            #expect(try sh("nsenter -t \(pid) -m findmnt -n -o FSTYPE '\(f.dir.file("src"))'") == "overlay\n")
            let bad = try Tools.run("mount.composefs", ["-N", "/nonexistent", "-o", "basedir=\(f.store)", f.image, f.target])
            #expect(
                bad.status == 1 && bad.err == "mount.composefs: Failed to enter mount namespace /nonexistent: No such file or directory\n")
        }
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// What only a kernel with fs-verity shows (this machine's has none): run
/// in every guest of the kernel test bed, on ext4 with fs-verity.
@Suite(.serialized, .kernelTestBed) struct KernelVerityTests {
    typealias Fixture = MountTests.Fixture

    /// Every file under `store` (objects), by path relative to it.
    static func objects(_ store: String) throws -> [String] {
        try FileManager.default.subpathsOfDirectory(atPath: store).filter { $0.count == 65 }.sorted()
    }

    static func measure(_ path: String) throws -> FsVerity.Measurement {
        let fd = try FileDescriptor.open(FilePath(path), .readOnly)
        defer { try? fd.close() }
        return try FsVerity.measure(fd: fd)
    }

    /// fs-verity on a file written and closed.
    static func enableVerity(_ path: String) throws {
        let fd = try FileDescriptor.open(FilePath(path), .readOnly)
        defer { try? fd.close() }
        if let e = FsVerity.enable(fd: fd) { throw e }
    }

    static func printedDigest(_ source: String) throws -> String {
        let r = try Tools.mkcomposefs(["--print-digest-only", source])
        try #require(r.status == 0, "\(r.err)")
        return String(r.out.dropLast())
    }

    /// mkcomposefs --digest-store enables fs-verity on every object; the
    /// kernel's measurement of each is its name, and so is
    /// composefs-info measure-file's.
    @Test func everyObjectHasVerityAndMeasuresItsName() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let objects = try Self.objects(f.store)
        #expect(objects.count == 5)
        for o in objects {
            let name = o.replacingOccurrences(of: "/", with: "")
            #expect(try Self.measure(f.store + "/" + o) == .digest(hexBytes(name)), "\(o)")
            let r = try Tools.info(["measure-file", f.store + "/" + o])
            #expect(r.status == 0 && r.out == name + "\n", "\(o): \(r.out)\(r.err)")
        }
    }

    /// The image with fs-verity measures what --print-digest-only printed.
    @Test func theImageMeasuresItsPrintedDigest() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let digest = try Self.printedDigest(f.source)
        try Self.enableVerity(f.image)
        #expect(try Self.measure(f.image) == .digest(hexBytes(digest)))
        let r = try Tools.info(["measure-file", f.image])
        #expect(r.out == digest + "\n", "\(r.err)")
    }

    /// digest= and verity mount and show the tree where overlayfs can
    /// enforce verity (6.6); before, they are refused, never made without.
    @Test(arguments: ["digest", "verity", "tryverity"]) func verityMounts(_ kind: String) throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let digest = try Self.printedDigest(f.source)
        try Self.enableVerity(f.image)
        let option = kind == "digest" ? "digest=\(digest)" : kind
        let r = try Tools.run("mount.composefs", ["-v", "-o", "basedir=\(f.store),\(option)", f.image, f.target])
        if Kernel.overlayEnforcesVerity || kind == "tryverity" {
            try #require(r.status == 0, "\(r.err)")
            defer { try? Mounts.unmount(f.target) }
            let verity = r.err.hasSuffix("; verity=require)\n")
            #expect(verity == Kernel.overlayEnforcesVerity, "\(r.err)")
            try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        } else {
            #expect(r.status == 1 && r.err.contains("cannot enforce fs-verity"), "\(r.err)")
            #expect(!Mounts.isMountPoint(f.target))
        }
    }

    @Test func aWrongDigestIsRefused() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        try Self.enableVerity(f.image)
        let wrong = String((try Self.printedDigest(f.source)).map { $0 == "0" ? "1" : "0" })
        let r = try f.mountCLI("basedir=\(f.store),digest=\(wrong)")
        #expect(r.status == 1 && r.err.contains("Image has wrong fs-verity"), "\(r.err)")
        #expect(!Mounts.isMountPoint(f.target))
    }

    /// An object replaced by other bytes (without fs-verity) is never
    /// served under verity: the mount is refused, or reading fails.
    @Test func aTamperedObjectIsNeverServed() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        let big = FsVerity.objectPath(try FsVerity.digest(path: f.source + "/sub/big"))
        let victim = f.store + "/" + String(decoding: big, as: UTF8.self)
        try sh("rm -f '\(victim)' && head -c 1000000 /dev/zero > '\(victim)'")
        let r = try f.mountCLI("basedir=\(f.store),verity")
        guard r.status == 0 else {
            #expect(!Mounts.isMountPoint(f.target), "refused (\(r.err)) and nothing mounted")
            return
        }
        defer { try? Mounts.unmount(f.target) }
        let fd = open(f.target + "/sub/big", O_RDONLY | O_CLOEXEC)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = fd >= 0 ? read(fd, &buffer, buffer.count) : -1
        if fd >= 0 { close(fd) }
        #expect(n < 0, "no byte of the tampered object is read")
        #expect(try String(contentsOfFile: f.target + "/small", encoding: .utf8) == "hello\n")
    }

    /// composefs-store on objects with fs-verity: fsck takes the kernel's
    /// measurement, the repair moves a bad object aside, the next
    /// mkcomposefs writes it anew with fs-verity, gc keeps the image's.
    @Test func storeMaintenanceUnderVerity() throws {
        let f = try Fixture()
        try f.buildTree()
        try f.makeImage()
        var r = try Tools.run("composefs-store", ["fsck", f.store, f.image])
        #expect(r.status == 0, "clean store: \(r.out)\(r.err)")
        let big = f.store + "/" + String(decoding: FsVerity.objectPath(try FsVerity.digest(path: f.source + "/sub/big")), as: UTF8.self)
        let other =
            f.store + "/" + String(decoding: FsVerity.objectPath(try FsVerity.digest(path: f.source + "/sub/deeper/other")), as: UTF8.self)
        try sh("rm -f '\(big)' && cp '\(other)' '\(big)'")
        try Self.enableVerity(big)
        r = try Tools.run("composefs-store", ["fsck", f.store, f.image])
        #expect(r.status != 0 && r.out.contains(": fs-verity digest "), "the kernel's measurement: \(r.out)\(r.err)")
        r = try Tools.run("composefs-store", ["fsck", "--repair", f.store, f.image])
        #expect(r.out.contains("moved 1 bad objects aside"), "\(r.out)\(r.err)")
        #expect(try Tools.mkcomposefs(["--digest-store=\(f.store)", f.source, f.dir.file("again.cfs")]).status == 0)
        #expect(try Self.measure(big) != .unavailable(.noData), "written anew with fs-verity")
        r = try Tools.run("composefs-store", ["fsck", f.store, f.image])
        #expect(r.out.contains("0 bad, 0 other entries, 0 missing; 1 moved aside earlier"), "\(r.out)\(r.err)")
        r = try Tools.run("composefs-store", ["gc", f.store, f.image])
        #expect(r.status == 0, "\(r.err)")
        r = try Tools.info(["--basedir=\(f.store)", "missing-objects", f.image])
        #expect(r.status == 0 && r.out.isEmpty, "gc kept every object of the image: \(r.out)")
    }

    /// containers/storage's two calls (scripts/cstorage-invoke): fs-verity
    /// enabled through its second descriptor measures upstream's digest,
    /// and the blob mounts as storage mounts it (from the file from 6.12,
    /// through a loop device before).
    @Test(arguments: ["fd3", "stdout"]) func containersStorageWithVerity(_ mode: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let e = try OutputTargetTests.Expected("cstorage-11")
        let via = Kernel.version >= 6012 ? "file" : "loop /dev/loop"
        let r = try OutputTargetTests.bash(
            """
            python3 "$INVOKE" \(mode) "$MK" "$D" blob
            fsverity measure blob | cut -d' ' -f1
            mkdir m; python3 "$INVOKE" mount blob m | sed 's/[0-9]* noacl$/ noacl/'
            find m -printf . | wc -c; umount m
            """, in: dir.path, e)
        #expect(r.status == 0, "\(r.err)")
        let lines = try Fixtures.text("cstorage/cstorage-11.dump").split(separator: "\n").count
        #expect(r.out == "verity: enabled\nsha256: \(e.sha256)\nsha256:\(e.digest)\nmounted: \(via) noacl\n\(lines + 256)\n")
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// composefs-fuse `-o verity` where the object store has no fs-verity (this
/// machine): every object is checked against its digest before its first
/// byte, and every block read against the tree built then. A changed,
/// truncated, replaced or missing object gives EIO and a line naming the
/// file and both digests, never a wrong byte: not through a second open,
/// not after the page cache is dropped, not through mmap.
@Suite(.serialized) struct FuseVerityTests {
    final class Setup {
        let f: MountTests.Fixture
        let mount: FuseRun
        /// The object of sub/big and its digest.
        let object: String
        let digest: String

        init(extra: String = "") throws {
            f = try MountTests.Fixture()
            try f.buildTree()
            try f.makeImage()
            let d = try FsVerity.digest(path: FilePath(f.source + "/sub/big"))
            digest = d.hexString
            object = f.store + "/" + String(decoding: FsVerity.objectPath(d), as: UTF8.self)
            mount = try FuseRun(options: "source=\(f.image),basedir=\(f.store),verity\(extra)", target: f.target)
        }

        var big: String { f.target + "/sub/big" }
    }

    /// Reads a whole file through read(2): its bytes, or the errno.
    static func read(_ path: String) -> Result<[UInt8], Errno> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Errno.current) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 { return .failure(Errno.current) }
            if n == 0 { return .success(out) }
            out += buffer[0..<n]
        }
    }

    /// What a read gave, in words (so a failure prints no megabyte).
    static func outcome(_ r: Result<[UInt8], Errno>, image: [UInt8]) -> String {
        switch r {
        case .success(let bytes): bytes == image ? "the image's bytes" : "other bytes (\(bytes.count))"
        case .failure(let e): "\(e)"
        }
    }

    /// Drops the file's pages from the page cache (so the next read asks
    /// the server again).
    static func evict(_ path: String) throws {
        try sh("sync; echo 3 > /proc/sys/vm/drop_caches")
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
        }
    }

    /// Whether the file has fs-verity (the kernel test bed's objects do:
    /// their bytes cannot be changed in place).
    static func hasVerity(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(FilePath(path), .readOnly) else { return false }
        defer { try? fd.close() }
        if case .digest = try? FsVerity.measure(fd: fd) { return true }
        return false
    }

    /// Damages `object` (`flip` a byte, `truncate` it, or `missing`: remove
    /// it): in place where its file can be written, else (fs-verity) a
    /// changed copy renamed over it.
    static func damage(_ object: String, _ how: String) throws {
        func change(_ path: String) -> String {
            switch how {
            case "flip": "printf '\\\\377' | dd of='\(path)' bs=1 seek=500000 conv=notrunc status=none"
            case "truncate": "truncate -s 999999 '\(path)'"
            case "flip20k": "printf '\\\\377' | dd of='\(path)' bs=1 seek=15000 conv=notrunc status=none"
            default: "rm '\(path)'"
            }
        }
        if hasVerity(object) && how != "missing" {
            try sh("cp '\(object)' '\(object).new' && \(change(object + ".new")) && mv -f '\(object).new' '\(object)'")
        } else {
            try sh(change(object))
        }
    }

    /// A small object's bytes are kept from its check while the file is
    /// open, and its reads are served from them: the bytes that hashed to
    /// the digest, whatever happens to the object afterwards. A new open
    /// reads the object again, each block checked: EIO.
    @Test(.fuse) func aSmallObjectIsServedAsItWasChecked() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        let good = pseudoRandomBytes(20_000, seed: 7)
        try #require(good[15_000] != 0xff, "the damage below changes a byte")
        try Data(good).write(to: URL(fileURLWithPath: f.source + "/sub/small-object"))
        try f.makeImage()
        let d = try FsVerity.digest(path: FilePath(f.source + "/sub/small-object"))
        let object = f.store + "/" + String(decoding: FsVerity.objectPath(d), as: UTF8.self)
        let mount = try FuseRun(options: "source=\(f.image),basedir=\(f.store),verity", target: f.target)
        let path = f.target + "/sub/small-object"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        var first = [UInt8](repeating: 0, count: 100)
        #expect(Glibc.read(fd, &first, 100) == 100 && first == Array(good[0..<100]))
        try Self.damage(object, "flip20k")
        try Self.evict(path)
        var rest = [UInt8](repeating: 0, count: 30_000)
        let n = pread(fd, &rest, rest.count, 0)
        #expect(n == 20_000 && Array(rest[0..<max(0, n)]) == good, "the open file reads the checked bytes")
        try Self.evict(path)
        #expect(Self.read(path) == .failure(.ioError), "a new open checks the changed object")
        #expect(mount.stderr.contains("composefs-fuse: /sub/small-object: "), "\(mount.stderr)")
    }

    @Test(.fuse) func intactObjectsAreServed() throws {
        let s = try Setup()
        try TreeComparison.expectEqualUserXattrs(source: s.f.source, mounted: s.f.target)
        #expect(s.mount.stderr == "")
    }

    @Test(.fuse, arguments: ["flip", "truncate", "missing"]) func aDamagedObjectIsNeverServed(_ damage: String) throws {
        let s = try Setup()
        try Self.damage(s.object, damage)
        #expect(Self.read(s.big) == .failure(.ioError))
        #expect(try String(contentsOfFile: s.f.target + "/small", encoding: .utf8) == "hello\n", "other files still read")
        let log = s.mount.stderr
        #expect(log.contains("composefs-fuse: /sub/big: object "), "\(log)")
        if damage == "missing" {
            #expect(log.contains(" is missing (No such file or directory), expected digest \(s.digest)\n"), "\(log)")
        } else {
            #expect(log.contains(" has digest "), "\(log)")
            #expect(log.contains(", expected \(s.digest)\n"), "\(log)")
        }
    }

    /// Checked at the first open; then the object is replaced by other
    /// bytes (another file renamed over it; one with fs-verity of its own
    /// where the filesystem has it) or changed in place. What was read and
    /// cached was the image's; every read that reaches the server
    /// afterwards (a new open, the page cache dropped, mmap) fails. An
    /// object with fs-verity cannot be changed in place: the kernel refuses
    /// the write and the image's bytes are still read.
    @Test(.fuse, arguments: ["replaced", "changed in place"]) func anObjectChangedAfterTheCheck(_ how: String) throws {
        let s = try Setup()
        let good = try ScanFS.readFile(s.f.source + "/sub/big")
        #expect(Self.outcome(Self.read(s.big), image: good) == "the image's bytes")
        if how == "replaced" {
            try sh(
                "head -c 1000000 /dev/zero > '\(s.object).new' && (fsverity enable '\(s.object).new' 2>/dev/null || true) && mv '\(s.object).new' '\(s.object)'"
            )
        } else if Self.hasVerity(s.object) {
            #expect(throws: ShellError.self) { try sh("printf 'X' | dd of='\(s.object)' bs=1 seek=4096 conv=notrunc status=none") }
            try Self.evict(s.big)
            #expect(Self.outcome(Self.read(s.big), image: good) == "the image's bytes", "the kernel kept the object as it was")
            return
        } else {
            try sh("printf 'X' | dd of='\(s.object)' bs=1 seek=4096 conv=notrunc status=none")
        }
        // Without eviction the kernel may answer from the pages it has,
        // which are the image's bytes; whatever reaches the server fails.
        let cached = Self.outcome(Self.read(s.big), image: good)
        #expect(cached == "the image's bytes" || cached == "\(Errno.ioError)", "a read before eviction: the image's bytes or EIO")
        try Self.evict(s.big)
        #expect(Self.read(s.big) == .failure(.ioError), "a read after the cache was dropped")
        // mmap: the page fault gets EIO, which is SIGBUS.
        let r = try Tools.run(
            "/usr/bin/python3",
            [
                "-c",
                """
                import mmap, os
                fd = os.open('\(s.big)', os.O_RDONLY)
                m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
                print(m[4096:4100])
                """
            ])
        #expect(r.status != 0 && r.out.isEmpty, "mmap never sees the bytes (status \(r.status): \(r.out)\(r.err))")
        // A block that no longer hashes to the tree kept at the check, or
        // (a new open of a replaced object) the object's digest itself.
        let log = s.mount.stderr
        #expect(log.contains("composefs-fuse: /sub/big: bytes ") || log.contains("composefs-fuse: /sub/big: object "), "\(log)")
    }

    @Test(.fuse) func theImageDigestIsChecked() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let digest = String(try Tools.mkcomposefs(["--print-digest-only", f.source]).out.dropLast())
        let wrong = String(digest.map { $0 == "0" ? "1" : "0" })
        var r = try Tools.run("composefs-fuse", ["-o", "source=\(f.image),basedir=\(f.store),digest=\(wrong)", f.target])
        #expect(r.status == 1)
        #expect(
            r.err
                == "composefs-fuse: Failed to mount composefs \(f.image): Image has wrong fs-verity (\(f.image): digest \(digest), expected \(wrong))\n"
        )
        #expect(!Mounts.isMountPoint(f.target))
        r = try Tools.run("composefs-fuse", ["-o", "source=\(f.image),basedir=\(f.store),digest=\(digest)", f.target])
        #expect(r.status == 0, "\(r.err)")
        try TreeComparison.expectEqualUserXattrs(source: f.source, mounted: f.target)
        try sh("umount '\(f.target)'")
    }
}

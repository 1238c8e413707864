import Foundation
import Glibc
import Testing
@testable import ComposeFS

// The object store behind `mkcomposefs --digest-store` (FORMAT.md §19.3):
// every object named by its fs-verity digest, verified copies, nothing
// half-written or temporary left behind, also when runs race or the disk
// fills up. The kernel here may lack fs-verity; the store must not care.

// MARK: - Store inspection

enum StoreWalk {
    struct Object {
        var ino: UInt64
        var size: Int64
    }

    static func isHex(_ s: String, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Every object of `store` (`xx/yyyy…` → inode), and what is wrong:
    /// anything that is not a `xx/` directory of objects (temporary files
    /// included), objects whose digest is not their name (checked with
    /// FsVerity, libfsverity and, if installed, `fsverity digest`), modes
    /// other than 0644.
    static func inspect(_ store: String) throws -> (objects: [String: Object], problems: [String]) {
        var objects: [String: Object] = [:]
        var problems: [String] = []
        let fm = FileManager.default
        for top in try fm.contentsOfDirectory(atPath: store).sorted() {
            var st = stat()
            try ScanFS.check(lstat(store + "/" + top, &st), "lstat", b(top))
            guard isHex(top, count: 2), st.st_mode & S_IFMT == S_IFDIR else {
                problems.append("unexpected entry in the store: \(top)")
                continue
            }
            for name in try fm.contentsOfDirectory(atPath: store + "/" + top).sorted() {
                let rel = top + "/" + name
                let path = store + "/" + rel
                try ScanFS.check(lstat(path, &st), "lstat", b(path))
                guard isHex(name, count: 62), st.st_mode & S_IFMT == S_IFREG else {
                    problems.append("unexpected entry in the store: \(rel)")
                    continue
                }
                if st.st_mode & 0o7777 != 0o644 { problems.append("\(rel): mode \(String(st.st_mode & 0o7777, radix: 8))") }
                if st.st_nlink != 1 { problems.append("\(rel): \(st.st_nlink) links") }
                let hex = top + name
                let digest = try FsVerity.digest(path: path).hexString
                if digest != hex { problems.append("\(rel): holds data with digest \(digest)") }
                let bytes = try ScanFS.readFile(path)
                if try FsVerityTests.libfsverityDigest(bytes).hexString != hex {
                    problems.append("\(rel): libfsverity disagrees")
                }
                if Int64(bytes.count) != st.st_size { problems.append("\(rel): size changed while read") }
                objects[rel] = Object(ino: UInt64(st.st_ino), size: Int64(st.st_size))
            }
        }
        // fsverity-utils' own view, in batches.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/fsverity") || FileManager.default.isExecutableFile(atPath: "/usr/local/bin/fsverity") {
            let names = objects.keys.sorted()
            var i = 0
            while i < names.count {
                let batch = Array(names[i..<min(i + 200, names.count)])
                i += batch.count
                let (status, out) = try command(["fsverity", "digest"] + batch.map { store + "/" + $0 })
                if status != 0 { problems.append("fsverity digest failed: \(out)"); break }
                for line in out.split(separator: "\n") {
                    let parts = line.split(separator: " ", maxSplits: 1)
                    guard parts.count == 2, parts[0].hasPrefix("sha256:") else { problems.append("fsverity: \(line)"); continue }
                    let hex = String(parts[0].dropFirst("sha256:".count))
                    let rel = String(parts[1].dropFirst(store.count + 1))
                    if hex != rel.replacingOccurrences(of: "/", with: "") {
                        problems.append("\(rel): fsverity digest says \(hex)")
                    }
                }
            }
        }
        return (objects, problems)
    }

    /// Object path (`xx/yyyy…`) → the source file holding its bytes, for
    /// every external file of a tree snapshot.
    static func expectedObjects(_ snapshots: [[[UInt8]: ScanSnapshot.Entry]]) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for snapshot in snapshots {
            for e in snapshot.values {
                if let d = e.digest { out[String(decoding: FsVerity.objectPath(d), as: UTF8.self)] = e.source }
            }
        }
        return out
    }

    /// The store holds exactly the expected objects, each with the bytes of
    /// its source file, and nothing else.
    static func expectComplete(_ store: String, _ expected: [String: [UInt8]], _ label: String,
                               sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Object] {
        let (objects, problems) = try inspect(store)
        #expect(problems.isEmpty, "\(label): \(problems.prefix(30).joined(separator: "\n"))", sourceLocation: sourceLocation)
        let missing = Set(expected.keys).subtracting(objects.keys)
        let extra = Set(objects.keys).subtracting(expected.keys)
        #expect(missing.isEmpty, "\(label): missing objects \(missing.sorted().prefix(10))", sourceLocation: sourceLocation)
        #expect(extra.isEmpty, "\(label): unexpected objects \(extra.sorted().prefix(10))", sourceLocation: sourceLocation)
        for (rel, source) in expected where objects[rel] != nil {
            let object = try ScanFS.readFile(store + "/" + rel)
            let original = try ScanFS.readFile(String(decoding: source, as: UTF8.self))
            #expect(object == original, "\(label): \(rel) differs from \(ScanFS.show(source))", sourceLocation: sourceLocation)
        }
        return objects
    }

    /// Runs a command (PATH lookup through env), stdout and stderr together.
    static func command(_ args: [String]) throws -> (Int32, String) {
        let io = try TemporaryDirectory()
        defer { io.remove() }
        let outPath = try io.write("out", [])
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try handle.close()
        return (p.terminationStatus, try ScanFS.readFile(outPath).text)
    }
}

/// A tool started without waiting for it (for concurrent runs).
final class RunningTool {
    let process = Process()
    let io: TemporaryDirectory
    let outPath: String
    let errPath: String
    let outHandle: FileHandle
    let errHandle: FileHandle

    init(_ tool: String, _ arguments: [String]) throws {
        let bin = try #require(Tools.directory, "mkcomposefs and composefs-info not found next to the test bundle")
        io = try TemporaryDirectory()
        outPath = try io.write("stdout", [])
        errPath = try io.write("stderr", [])
        outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.executableURL = URL(fileURLWithPath: bin).appendingPathComponent(tool)
        process.arguments = arguments
        process.standardOutput = outHandle
        process.standardError = errHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    func wait() throws -> Tools.Result {
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        defer { io.remove() }
        return Tools.Result(status: process.terminationStatus,
                            stdout: try ScanFS.readFile(outPath), stderr: try ScanFS.readFile(errPath))
    }
}

// MARK: - Tests

@Suite struct ObjectStoreTests {
    /// Every object is named by its digest, holds its source's bytes, has
    /// mode 0644; missing-objects finds nothing missing; a warm run copies
    /// nothing and gives the same image; a lost object comes back.
    @Test func digestStoreHoldsEveryExternalFileUnderItsDigest() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("store-fill")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        let snapshot = try ScanSnapshot.take(src)
        let expected = StoreWalk.expectedObjects([snapshot])
        #expect(expected.count > 100)
        let store = dir.file("store/nested")      // created with its parents
        let image = dir.file("image.cfs")
        let r = try Tools.mkcomposefs(["--digest-store=\(store)/", src, image])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.stderr.isEmpty)
        try ScanImage.expectMatches(image, snapshot, "with --digest-store")
        let cold = try StoreWalk.expectComplete(store, expected, "cold run")

        let missing = try Tools.info(["missing-objects", "--basedir=\(store)", image])
        #expect(missing.status == 0, "\(missing.err)")
        #expect(missing.out == "", "missing: \(missing.out.prefix(300))")
        let objects = try Tools.info(["objects", image])
        #expect(objects.out == expected.keys.sorted().map { $0 + "\n" }.joined())

        // Warm: same image, nothing copied (the same inodes).
        let warmImage = dir.file("warm.cfs")
        let warm = try Tools.mkcomposefs(["--digest-store=\(store)", src, warmImage])
        #expect(warm.status == 0, "\(warm.err)")
        #expect(firstDifference(try ScanFS.readFile(warmImage), try ScanFS.readFile(image)) == nil)
        let after = try StoreWalk.expectComplete(store, expected, "warm run")
        #expect(after.mapValues(\.ino) == cold.mapValues(\.ino), "a warm run replaced objects")

        // A lost object is copied again; the others stay.
        let lost = try #require(expected.keys.sorted().first)
        try FileManager.default.removeItem(atPath: store + "/" + lost)
        let repair = try Tools.mkcomposefs(["--digest-store=\(store)", src, warmImage])
        #expect(repair.status == 0, "\(repair.err)")
        let repaired = try StoreWalk.expectComplete(store, expected, "after losing \(lost)")
        #expect(repaired.filter { $0.key != lost }.mapValues(\.ino) == cold.filter { $0.key != lost }.mapValues(\.ino))
        #expect(try Tools.info(["missing-objects", "--basedir=\(store)", warmImage]).out == "")
    }

    /// Four mkcomposefs runs into one store at once, twice: all succeed and
    /// the store is complete, correct and free of temporary files.
    @Test func concurrentRunsShareOneStore() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("store-race")
        defer { dir.remove() }
        var snapshots: [[[UInt8]: ScanSnapshot.Entry]] = []
        for i in 0..<4 {
            try ScanTrees.buildOverlapping(dir.file("tree\(i)"), index: i)
            snapshots.append(try ScanSnapshot.take(dir.file("tree\(i)")))
        }
        let expected = StoreWalk.expectedObjects(snapshots)
        #expect(expected.count == 120 + 4 * 30)
        for round in 0..<2 {
            let store = dir.file("store\(round)")
            let threads = round == 0 ? [] : ["--threads=3"]
            let running = try (0..<4).map { i in
                try RunningTool("mkcomposefs", threads + ["--digest-store=\(store)", dir.file("tree\(i)"), dir.file("image\(round)-\(i).cfs")])
            }
            let results = try running.map { try $0.wait() }
            for (i, r) in results.enumerated() {
                #expect(r.status == 0, "round \(round), run \(i): \(r.err)")
            }
            _ = try StoreWalk.expectComplete(store, expected, "round \(round)")
            for i in 0..<4 {
                let image = dir.file("image\(round)-\(i).cfs")
                try ScanImage.expectMatches(image, snapshots[i], "round \(round), tree \(i)")
                let missing = try Tools.info(["missing-objects", "--basedir=\(store)", image])
                #expect(missing.status == 0 && missing.out == "", "round \(round), image \(i): \(missing.out.prefix(200))")
            }
        }
    }

    /// The store and the image on a 2 MiB tmpfs that the tree overflows:
    /// exit 1 with ENOSPC, no image, no temporary file, and whatever objects
    /// were published are whole.
    @Test func fullFilesystemLeavesNoImageAndOnlyWholeObjects() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("store-full")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdirs(Array(src.utf8))
        // 700 one-page objects, then two big files in a subdirectory.
        for i in 0..<700 {
            try ScanFS.write(ScanFS.path(src, "f\(i)"), pseudoRandomBytes(65 + (i * 37) % 4000, seed: 20_000 + UInt64(i)))
        }
        try ScanFS.mkdir(ScanFS.path(src, "big"))
        try ScanFS.write(ScanFS.path(src, "big/1"), pseudoRandomBytes(600_000, seed: 1))
        try ScanFS.write(ScanFS.path(src, "big/2"), pseudoRandomBytes(600_000, seed: 2))
        let snapshot = try ScanSnapshot.take(src)
        let expected = StoreWalk.expectedObjects([snapshot])

        for threads in ["1", "4"] {
            let mnt = dir.file("full-\(threads)")
            try ScanFS.mkdir(Array(mnt.utf8))
            try ScanFS.mountTmpfs(mnt, size: "2m")
            defer { ScanFS.unmount(mnt) }
            let store = mnt + "/store"
            let image = mnt + "/image.cfs"
            let r = try Tools.mkcomposefs(["--threads=\(threads)", "--digest-store=\(store)", src, image])
            #expect(r.status == 1, "threads \(threads)")
            #expect(r.stdout.isEmpty)
            #expect(r.err.hasPrefix("mkcomposefs: "), "stderr: \(r.err)")
            #expect(r.err.contains("No space left on device"), "stderr: \(r.err)")
            #expect(!ScanFS.exists(image))
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt) == ["store"], "no image or temporary file beside the store")
            let (objects, problems) = try StoreWalk.inspect(store)
            #expect(problems.isEmpty, "threads \(threads): \(problems.prefix(20).joined(separator: "\n"))")
            #expect(Set(objects.keys).isSubset(of: Set(expected.keys)))
            #expect(objects.count < expected.count, "the tree overflows the store")
            // How many objects were published before the disk filled up
            // depends on the batch size; each one present must be whole.
            for rel in objects.keys {
                if let source = expected[rel] {
                    #expect(try ScanFS.readFile(store + "/" + rel) == (try ScanFS.readFile(String(decoding: source, as: UTF8.self))))
                }
            }
        }
    }

    /// The store fits, the image does not: the store is complete (it was
    /// committed first) and no image or temporary file is left.
    @Test func fullImageDirectoryLeavesNoImage() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("store-fullimage")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        let snapshot = try ScanSnapshot.take(src)
        let mnt = dir.file("tiny")
        try ScanFS.mkdir(Array(mnt.utf8))
        try ScanFS.mountTmpfs(mnt, size: "8k")
        defer { ScanFS.unmount(mnt) }
        let store = dir.file("store")
        let image = mnt + "/image.cfs"
        let r = try Tools.mkcomposefs(["--digest-store=\(store)", src, image])
        #expect(r.status == 1)
        #expect(r.err == "mkcomposefs: cannot write file \(image): No space left on device\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: mnt) == [], "no image, no temporary file")
        _ = try StoreWalk.expectComplete(store, StoreWalk.expectedObjects([snapshot]), "store of a failed run")
    }

    /// A store that cannot be written: a regular file, or on a read-only
    /// mount. A clear message, exit 1, no image.
    @Test func unwritableStore() throws {
        guard Privilege.requireRoot() else { return }
        let dir = try RootScratch("store-ro")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanFS.mkdirs(Array(src.utf8))
        try ScanFS.write(ScanFS.path(src, "external"), pseudoRandomBytes(1000, seed: 3))
        try ScanFS.write(ScanFS.path(src, "inline"), b("inline\n"))
        let image = dir.file("out.cfs")

        let file = dir.file("store-is-a-file")
        try ScanFS.write(Array(file.utf8), b("not a directory\n"))
        var r = try Tools.mkcomposefs(["--digest-store=\(file)", src, image])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: cannot fill store: "), "stderr: \(r.err)")
        #expect(r.err.contains("Not a directory"), "stderr: \(r.err)")
        #expect(!ScanFS.exists(image))
        #expect(try ScanFS.readFile(file) == b("not a directory\n"))

        let ro = dir.file("ro")
        try ScanFS.mkdir(Array(ro.utf8))
        try ScanFS.mountTmpfs(ro, size: "64k", readOnly: true)
        defer { ScanFS.unmount(ro) }
        for store in [ro, ro + "/store"] {
            r = try Tools.mkcomposefs(["--digest-store=\(store)", src, image])
            #expect(r.status == 1, "\(store)")
            #expect(r.err.hasPrefix("mkcomposefs: cannot fill store: "), "stderr: \(r.err)")
            #expect(r.err.contains("Read-only file system"), "stderr: \(r.err)")
            #expect(!ScanFS.exists(image))
            #expect(try FileManager.default.contentsOfDirectory(atPath: ro) == [])
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["ro", "src", "store-is-a-file"])
    }

    // MARK: The library: staging, verification, commit

    final class Scratch {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        deinit { buffer.deallocate() }
    }

    static func openSource(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0, "open \(path)")
        return fd
    }

    @Test func stagedObjectsAppearOnlyAtCommit() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let data = pseudoRandomBytes(10_000, seed: 4)
        let source = try dir.write("source", data)
        let digest = FsVerity.digest(data)
        let name = FsVerity.objectPath(digest)
        let store = try ObjectStore(path: dir.file("store"))
        let scratch = Scratch()
        let fd = try Self.openSource(source)
        defer { close(fd) }
        try store.insert(source: fd, sourcePath: source, digest: digest, size: UInt64(data.count), scratch: scratch.buffer)
        #expect(try store.contains(name) == false, "visible before its data is durable")
        try store.commit()
        #expect(try store.contains(name))
        let object = dir.file("store/" + String(decoding: name, as: UTF8.self))
        #expect(try ScanFS.readFile(object) == data)
        var st = stat()
        #expect(lstat(object, &st) == 0 && st.st_mode & 0o7777 == 0o644)
        // Present: not copied again.
        let ino = st.st_ino
        try store.insert(source: fd, sourcePath: source, digest: digest, size: UInt64(data.count), scratch: scratch.buffer)
        try store.commit()
        #expect(lstat(object, &st) == 0 && st.st_ino == ino)
        let (_, problems) = try StoreWalk.inspect(dir.file("store"))
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func aCopyThatDoesNotMatchItsDigestIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let data = pseudoRandomBytes(5000, seed: 5)
        let source = try dir.write("source", data)
        let store = try ObjectStore(path: dir.file("store"))
        let scratch = Scratch()
        let fd = try Self.openSource(source)
        defer { close(fd) }
        // Wrong digest.
        let wrong = FsVerity.digest(pseudoRandomBytes(5000, seed: 6))
        #expect(throws: ObjectStore.Error.changed(source: FilePath(source))) {
            try store.insert(source: fd, sourcePath: source, digest: wrong, size: UInt64(data.count), scratch: scratch.buffer)
        }
        // Right digest, wrong size.
        let right = FsVerity.digest(data)
        #expect(throws: ObjectStore.Error.changed(source: FilePath(source))) {
            try store.insert(source: fd, sourcePath: source, digest: right, size: UInt64(data.count + 10), scratch: scratch.buffer)
        }
        try store.commit()
        #expect(try store.contains(FsVerity.objectPath(wrong)) == false)
        #expect(try store.contains(FsVerity.objectPath(right)) == false)
        let (objects, problems) = try StoreWalk.inspect(dir.file("store"))
        #expect(objects.isEmpty)
        #expect(problems.isEmpty, "no temporary file left: \(problems)")
    }

    @Test func discardedObjectsAreNeverPublished() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let data = pseudoRandomBytes(3000, seed: 8)
        let source = try dir.write("source", data)
        let digest = FsVerity.digest(data)
        do {
            let store = try ObjectStore(path: dir.file("store"))
            let scratch = Scratch()
            let fd = try Self.openSource(source)
            defer { close(fd) }
            try store.insert(source: fd, sourcePath: source, digest: digest, size: UInt64(data.count), scratch: scratch.buffer)
            store.discardPending()
            try store.commit()
            #expect(try store.contains(FsVerity.objectPath(digest)) == false)
        }
        // Dropping a store with staged objects publishes nothing either.
        do {
            let store = try ObjectStore(path: dir.file("store"))
            let scratch = Scratch()
            let fd = try Self.openSource(source)
            defer { close(fd) }
            try store.insert(source: fd, sourcePath: source, digest: digest, size: UInt64(data.count), scratch: scratch.buffer)
        }
        let (objects, problems) = try StoreWalk.inspect(dir.file("store"))
        #expect(objects.isEmpty)
        #expect(problems.isEmpty, "\(problems)")
    }

    // MARK: Staging areas (fan-out directories the store does not have yet)

    /// Inserts `data` (hashed here) and returns its object path.
    static func insert(_ data: [UInt8], into store: ObjectStore) throws -> String {
        let digest = FsVerity.digest(data)
        try data.withUnsafeBytes { raw in try store.insert(contents: raw, digest: digest) }
        return String(decoding: FsVerity.objectPath(digest), as: UTF8.self)
    }

    /// Data whose object lands in fan-out directory `first`.
    static func data(inFanOut first: UInt8, seed: UInt64) -> [UInt8] {
        var s = seed
        while true {
            let d = pseudoRandomBytes(2000, seed: s)
            if FsVerity.digest(d)[0] == first { return d }
            s += 1000
        }
    }

    static func topLevel(_ store: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: store).sorted()
    }

    /// The store holds only correct objects (`count` of them, when given)
    /// and nothing else.
    static func expectClean(_ store: String, objects count: Int? = nil,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (objects, problems) = try StoreWalk.inspect(store)
        if let count { #expect(objects.count == count, sourceLocation: sourceLocation) }
        #expect(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)
    }

    /// A new store: objects wait in a staging area (`.tmp-*`, where the
    /// store's namespace does not show them) and their fan-out directories
    /// move in whole at the commit.
    @Test func newFanOutDirectoriesMoveInWhole() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try ObjectStore(path: dir.file("store"))
        let a = try Self.insert(Self.data(inFanOut: 0x3c, seed: 1), into: store)
        let b = try Self.insert(Self.data(inFanOut: 0x3c, seed: 2), into: store)
        let c = try Self.insert(Self.data(inFanOut: 0xa7, seed: 3), into: store)
        let before = try Self.topLevel(dir.file("store"))
        #expect(before.count == 1 && before[0].hasPrefix(".tmp-"), "only the staging area: \(before)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("store/\(before[0])")).sorted() == ["3c", "a7"])
        for o in [a, b, c] { #expect(try !store.contains(Array(o.utf8)), "\(o) visible before its commit") }
        try store.commit()
        #expect(try Self.topLevel(dir.file("store")) == ["3c", "a7"])
        for o in [a, b, c] { #expect(try store.contains(Array(o.utf8))) }
        try Self.expectClean(dir.file("store"), objects: 3)
    }

    /// Another run makes a fan-out directory while this one stages into
    /// it: the commit links the objects in one by one, and an object the
    /// other run already published stays as it is.
    @Test func fanOutDirectoryMadeMeanwhile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try ObjectStore(path: dir.file("store"))
        let first = Self.data(inFanOut: 0x51, seed: 4), second = Self.data(inFanOut: 0x51, seed: 5)
        let a = try Self.insert(first, into: store)
        let b = try Self.insert(second, into: store)
        // The other run: fan-out 51 with `a` in it.
        let other = try ObjectStore(path: dir.file("store"))
        #expect(try Self.insert(first, into: other) == a)
        try other.commit()
        var st = stat()
        #expect(lstat(dir.file("store/" + a), &st) == 0)
        let theirs = st.st_ino
        try store.commit()
        #expect(lstat(dir.file("store/" + a), &st) == 0 && st.st_ino == theirs, "the first name wins")
        #expect(try ScanFS.readFile(dir.file("store/" + b)) == second)
        #expect(try Self.topLevel(dir.file("store")) == ["51"])
        try Self.expectClean(dir.file("store"), objects: 2)
    }

    /// After a commit moved a fan-out directory in, later objects of it go
    /// there directly, and new fan-out directories to a new area.
    @Test func batchesAfterAMove() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try ObjectStore(path: dir.file("store"))
        let a = try Self.insert(Self.data(inFanOut: 0x07, seed: 6), into: store)
        try store.commit()
        let b = try Self.insert(Self.data(inFanOut: 0x07, seed: 7), into: store)
        let c = try Self.insert(Self.data(inFanOut: 0xee, seed: 8), into: store)
        let staged = try Self.topLevel(dir.file("store"))
        #expect(staged.count == 2 && staged[0].hasPrefix(".tmp-") && staged[1] == "07", "\(staged)")
        try store.commit()
        #expect(try Self.topLevel(dir.file("store")) == ["07", "ee"])
        for o in [a, b, c] { #expect(try store.contains(Array(o.utf8))) }
        try Self.expectClean(dir.file("store"))
    }

    /// Temporaries of runs that died (a staging area with objects in it, a
    /// named temporary file) go when a writer opens the store, and in a
    /// collection; those of a live run (it holds their lock) stay.
    @Test(arguments: [false, true]) func abandonedTemporariesAreRemoved(byCollection: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let root = dir.file("store")
        let object = String(repeating: "ab", count: 31)
        for area in [".tmp-deadarea0000", ".tmp-livearea0000"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(area)/5e", withIntermediateDirectories: true)
            _ = try dir.write("store/\(area)/5e/\(object)", [1, 2, 3])
        }
        _ = try dir.write("store/.tmp-deadfile0000", [4])
        _ = try dir.write("store/.tmp-livefile0000", [5])
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for live in [".tmp-livearea0000", ".tmp-livefile0000"] {
            let fd = open("\(root)/\(live)", O_RDONLY)
            #expect(fd >= 0 && flock(fd, LOCK_SH) == 0)
            held.append(fd)
        }
        if byCollection {
            try FileManager.default.createDirectory(atPath: dir.file("images"), withIntermediateDirectories: true)
            let result = try StoreMaintenance.collectGarbage(store: FilePath(root), roots: [FilePath(dir.file("images"))])
            #expect(result.temporariesRemoved == 2)
        } else {
            _ = try ObjectStore(path: FilePath(root))
        }
        #expect(try Self.topLevel(root) == [".tmp-livearea0000", ".tmp-livefile0000"])
        #expect(try ScanFS.readFile("\(root)/.tmp-livearea0000/5e/\(object)") == [1, 2, 3])
    }

    /// A fan-out directory that is a symbolic link (or a file) is never
    /// written through; a temporary's name on a FIFO is never opened.
    @Test func nothingIsWrittenThroughAFanOutSymlink() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let root = dir.file("store")
        try FileManager.default.createDirectory(atPath: dir.file("elsewhere"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        #expect(symlink(dir.file("elsewhere"), root + "/3c") == 0)
        #expect(mkfifo(root + "/.tmp-fifo00000000", 0o644) == 0)
        let store = try ObjectStore(path: FilePath(root))
        #expect(throws: ObjectStore.Error.store(path: FilePath(root + "/3c"), operation: .checking, errno: .notDirectory)) {
            _ = try Self.insert(Self.data(inFanOut: 0x3c, seed: 9), into: store)
        }
        try store.commit()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("elsewhere")).isEmpty)
        #expect(try Self.topLevel(root) == [".tmp-fifo00000000", "3c"])
    }
}

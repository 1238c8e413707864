import Foundation
import Glibc
import Testing

@testable import ComposeFS

// The object store behind `mkcomposefs --digest-store` (FORMAT.md §19.3):
// every object named by its fs-verity digest, verified copies, nothing
// half-written or temporary left behind, also when runs race or the disk
// fills up. The kernel here may lack fs-verity; the store must not care.

// MARK: - Tests

@Suite struct ObjectStoreTests {
    /// Every object is named by its digest, holds its source's bytes, has
    /// mode 0644; missing-objects finds nothing missing; a warm run copies
    /// nothing and gives the same image; a lost object comes back.
    @Test(.root) func digestStoreHoldsEveryExternalFileUnderItsDigest() throws {
        let dir = try RootScratch("store-fill")
        defer { dir.remove() }
        let src = dir.file("src")
        try ScanTrees.build(src)
        let snapshot = try ScanSnapshot.take(src)
        let expected = StoreWalk.expectedObjects([snapshot])
        #expect(expected.count > 100)
        let store = dir.file("store/nested")   // created with its parents
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
    @Test(.root) func concurrentRunsShareOneStore() throws {
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
                try RunningTool(
                    "mkcomposefs", threads + ["--digest-store=\(store)", dir.file("tree\(i)"), dir.file("image\(round)-\(i).cfs")])
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
    @Test(.root) func fullFilesystemLeavesNoImageAndOnlyWholeObjects() throws {
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
    @Test(.root) func fullImageDirectoryLeavesNoImage() throws {
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
    @Test(.root) func unwritableStore() throws {
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
}

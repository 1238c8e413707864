import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// Staging areas: objects of fan-out directories the store does not have
/// yet wait under their names in a `.tmp-*` directory, invisible to the
/// store's namespace, and move in whole at the commit (FORMAT.md §19.3).
@Suite struct StagingAreaTests {
    /// The writers' temporary-name prefix, as the store spells it.
    static let tmp = String(decoding: StoreDirectory.temporaryPrefix, as: UTF8.self)

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
    static func expectClean(
        _ store: String, objects count: Int? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
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
        #expect(before.count == 1 && before[0].hasPrefix(Self.tmp), "only the staging area: \(before)")
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
        let first = Self.data(inFanOut: 0x51, seed: 4)
        let second = Self.data(inFanOut: 0x51, seed: 5)
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
        #expect(staged.count == 2 && staged[0].hasPrefix(Self.tmp) && staged[1] == "07", "\(staged)")
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
        for area in ["\(Self.tmp)deadarea0000", "\(Self.tmp)livearea0000"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(area)/5e", withIntermediateDirectories: true)
            _ = try dir.write("store/\(area)/5e/\(object)", [1, 2, 3])
        }
        _ = try dir.write("store/\(Self.tmp)deadfile0000", [4])
        _ = try dir.write("store/\(Self.tmp)livefile0000", [5])
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for live in ["\(Self.tmp)livearea0000", "\(Self.tmp)livefile0000"] {
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
        #expect(try Self.topLevel(root) == ["\(Self.tmp)livearea0000", "\(Self.tmp)livefile0000"])
        #expect(try ScanFS.readFile("\(root)/\(Self.tmp)livearea0000/5e/\(object)") == [1, 2, 3])
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
        #expect(mkfifo(root + "/\(Self.tmp)fifo00000000", 0o644) == 0)
        let store = try ObjectStore(path: FilePath(root))
        #expect(throws: ObjectStore.Error.store(path: FilePath(root + "/3c"), operation: .checking, errno: .notDirectory)) {
            _ = try Self.insert(Self.data(inFanOut: 0x3c, seed: 9), into: store)
        }
        try store.commit()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("elsewhere")).isEmpty)
        #expect(try Self.topLevel(root) == ["\(Self.tmp)fifo00000000", "3c"])
    }
}

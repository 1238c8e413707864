import Foundation
import Glibc
import Testing

@testable import ComposeFS

// ObjectStore.Writer, the streaming insert the tar reader uses: the digest
// of what was written, objects held in memory or spilled to a staged file,
// holes, duplicates, and nothing visible before the commit.

@Suite struct TarStoreWriterTests {
    /// Writes `pieces` (bytes, or a hole of zeros) through one writer.
    static func write(_ store: ObjectStore, _ pieces: [Either]) throws -> (digest: [UInt8], contents: [UInt8]) {
        let w = store.makeWriter()
        var contents: [UInt8] = []
        for piece in pieces {
            switch piece {
            case .bytes(let b):
                try b.withUnsafeBytes { try w.write($0) }
                contents += b
            case .hole(let n):
                try w.writeZeros(UInt64(n))
                contents += [UInt8](repeating: 0, count: n)
            }
        }
        #expect(w.length == UInt64(contents.count))
        return (try w.finish(), contents)
    }

    enum Either {
        case bytes([UInt8])
        case hole(Int)
    }

    @Test func objectsAreTheirDigestsInMemoryAndSpilled() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try ObjectStore(path: dir.file("store"))
        let limit = ObjectStore.Writer.memoryLimit
        let cases: [[Either]] = [
            [.bytes(pseudoRandomBytes(100, seed: 1))],   // in memory
            [.bytes(pseudoRandomBytes(4096, seed: 2)), .hole(5000), .bytes(b("tail"))],   // in memory, a hole
            [.bytes(pseudoRandomBytes(limit, seed: 3)), .bytes(pseudoRandomBytes(10, seed: 4))],   // spills
            [.bytes(b("head")), .hole(3 * limit), .bytes(pseudoRandomBytes(7000, seed: 5))],   // spills in a hole
            [.bytes(pseudoRandomBytes(70, seed: 6)), .hole(2 * limit + 1)]   // ends in a hole
        ]
        var names: [String] = []
        for pieces in cases {
            let (digest, contents) = try Self.write(store, pieces)
            #expect(digest == FsVerity.digest(contents))
            let name = String(bytes: FsVerity.objectPath(digest))
            names.append(name)
            #expect(!ScanFS.exists(dir.file("store/" + name)), "visible before the commit")
        }
        try store.commit()
        for (pieces, name) in zip(cases, names) {
            let data = try ScanFS.readFile(dir.file("store/" + name))
            let (_, contents) = try Self.write(try ObjectStore(path: dir.file("other")), pieces)
            #expect(data == contents, "\(name)")
            var st = stat()
            #expect(lstat(dir.file("store/" + name), &st) == 0 && st.st_mode == S_IFREG | 0o644)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("store")).allSatisfy { !$0.hasPrefix(".") })
    }

    @Test func duplicatesAndDiscardsLeaveNothingExtra() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try ObjectStore(path: dir.file("store"))
        let data = pseudoRandomBytes(2 * ObjectStore.Writer.memoryLimit + 3, seed: 8)
        let (first, _) = try Self.write(store, [.bytes(data)])
        let (second, _) = try Self.write(store, [.bytes(data)])   // staged once only
        #expect(first == second)
        let dropped = store.makeWriter()
        try data.withUnsafeBytes { try dropped.write($0) }
        dropped.discard()
        let (replaced, _) = try Self.write(store, [.bytes(pseudoRandomBytes(500, seed: 9))])
        // Only objects the tree still names are published.
        store.discardPending(keeping: [FsVerity.objectPath(first)])
        try store.commit()
        let objects = try TarCompare.storeContents(dir.file("store"))
        #expect(objects.keys.sorted() == [String(bytes: FsVerity.objectPath(first))])
        #expect(objects[String(bytes: FsVerity.objectPath(first))] == first.hexString)
        #expect(!ScanFS.exists(dir.file("store/" + String(bytes: FsVerity.objectPath(replaced)))))
        // Present already: nothing staged, the digest all the same.
        let (again, _) = try Self.write(store, [.bytes(data)])
        #expect(again == first)
    }
}

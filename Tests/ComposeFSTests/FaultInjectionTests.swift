import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// Faults during a store fill: sources that change or vanish, a directory
/// where an object belongs, a run killed half way. Afterwards every object
/// under a final name is complete and correct, no temporary file remains,
/// and no partial image exists.
@Suite(.serialized) struct FaultInjectionTests {
    /// Every object in `store` is a regular file whose fs-verity digest is
    /// its name; nothing else is in the store.
    /// Every name in `store` is a fan-out directory of correct objects;
    /// with `temporaries`, a writer's temporary (`.tmp-*`: a staging area
    /// a killed run left, which the next writer removes) may be there too.
    static func expectStoreCorrect(
        _ store: String, mayBeAbsent: Bool = false, temporaries: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let fm = FileManager.default
        if mayBeAbsent && !fm.fileExists(atPath: store) { return }   // killed before it was created
        for top in try fm.contentsOfDirectory(atPath: store) {
            if temporaries && top.hasPrefix(StagingAreaTests.tmp) { continue }
            #expect(top.count == 2 && top.allSatisfy(\.isHexDigit), "unexpected \(top) in the store", sourceLocation: sourceLocation)
            for name in try fm.contentsOfDirectory(atPath: store + "/" + top) {
                let digest = try FsVerity.digest(path: "\(store)/\(top)/\(name)")
                #expect(
                    digest.hexString == top + name, "object \(top)/\(name) has digest \(digest.hexString)",
                    sourceLocation: sourceLocation)
            }
        }
    }

    static func digestOf(_ bytes: [UInt8]) -> [UInt8] { FsVerity.digest(bytes) }

    /// The store is asked for the object of `original`, while the source
    /// file holds `current`: it must refuse, and publish nothing.
    static func expectCopyRejected(original: [UInt8], current: [UInt8]) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.write("source", current)
        let store = try ObjectStore(path: dir.file("objects"))
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { scratch.deallocate() }
        #expect(throws: ObjectStore.Error.changed(source: FilePath(path))) {
            try store.insert(
                source: fd, sourcePath: path, digest: digestOf(original),
                size: UInt64(original.count), scratch: scratch)
        }
        try store.commit()
        #expect(try !store.contains(FsVerity.objectPath(digestOf(original))))
        try expectStoreCorrect(dir.file("objects"))
    }

    /// The file shrinks between its digest and its copy.
    @Test func sourceThatShrinksIsRejected() throws {
        let original = pseudoRandomBytes(100_000, seed: 1)
        try Self.expectCopyRejected(original: original, current: Array(original[0..<50_000]))
    }

    /// The file keeps its size but its bytes change.
    @Test func sourceThatChangesContentIsRejected() throws {
        let original = pseudoRandomBytes(70_000, seed: 2)
        var changed = original
        changed[12_345] ^= 0xFF
        try Self.expectCopyRejected(original: original, current: changed)
    }

    @Test func sourceThatVanishesFailsTheRun() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = dir.file("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        for k in 0..<40 { try dir.write("src/f\(k)", pseudoRandomBytes(5_000 + k, seed: UInt64(k))) }
        var options = DirectoryScanner.Options()
        options.digestStore = FilePath(dir.file("objects"))
        options.threads = 2
        // The file disappears after the walk listed it, before its data is read.
        // (The file pass's workers start only after the walk here.)
        var scanner = try DirectoryScanner.Scanner(source: FilePath(src), options: options)
        defer { try? scanner.root?.close() }
        let files = DirectoryScanner.FilePass(scanner: scanner)
        _ = try scanner.walk(files)
        #expect(unlink(src + "/f9") == 0)
        let failure: DirectoryScanner.Error?
        do throws(DirectoryScanner.Error) {
            files.start()
            try files.finish()
            failure = nil
        } catch {
            failure = error
        }
        #expect(failure == .access(path: FilePath(src + "/f9"), errno: .noSuchFileOrDirectory))
        try Self.expectStoreCorrect(dir.file("objects"))
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir.file("objects")).contains { $0.hasPrefix(".tmp") }))
    }

    @Test func directoryWhereAnObjectBelongs() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let content = pseudoRandomBytes(9_000, seed: 3)
        try FileManager.default.createDirectory(atPath: dir.file("src"), withIntermediateDirectories: true)
        try dir.write("src/file", content)
        let object = dir.file("objects") + "/" + String(bytes: FsVerity.objectPath(Self.digestOf(content)))
        try FileManager.default.createDirectory(atPath: object, withIntermediateDirectories: true)
        let out = dir.file("image.cfs")
        let r = try Tools.mkcomposefs(["--digest-store=\(dir.file("objects"))", dir.file("src"), out])
        #expect(r.status == 1)
        #expect(r.err == "mkcomposefs: cannot fill store: File exists (\(object) exists and is not a regular file)\n")
        #expect(access(out, F_OK) != 0, "no image")
    }

    @Test func killedRunThenNormalRun() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = dir.file("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        for k in 0..<300 { try dir.write("src/f\(k)", pseudoRandomBytes(200_000 + k, seed: UInt64(100 + k))) }
        let store = dir.file("objects")
        let out = dir.file("image.cfs")
        let bin = try #require(Tools.directory)
        // A kill may land after the image was put in place (a run on a
        // filled store is quick, and exiting takes a while under the
        // sanitizers): an image that exists must then be the whole one.
        var survivors: [[UInt8]] = []
        for delay in [20_000, 80_000, 200_000] as [useconds_t] {
            unlink(out)
            let p = try Child(bin + "/mkcomposefs", ["--digest-store=\(store)", src, out])
            usleep(delay)
            p.signal(SIGKILL)
            p.wait()
            if access(out, F_OK) == 0 { survivors.append([UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))) }
            try Self.expectStoreCorrect(store, mayBeAbsent: true, temporaries: true)
        }
        let r = try Tools.mkcomposefs(["--digest-store=\(store)", src, out])
        #expect(r.status == 0, "normal run: \(r.err)")
        let whole = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        for image in survivors { #expect(image == whole, "no partial image after a kill") }
        try Self.expectStoreCorrect(store)   // and what killed runs left is gone
        let missing = try Tools.info(["--basedir=\(store)", "missing-objects", out])
        #expect(missing.status == 0 && missing.out.isEmpty, "every object present: \(missing.out)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "no temporary image files: \(leftovers)")
    }
}

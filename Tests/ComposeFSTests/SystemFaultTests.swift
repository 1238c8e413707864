import Foundation
import Glibc
import Testing

@testable import ComposeFS
@testable import ComposeFSTools

/// Failures injected into the system layer (`SystemFaults`): a full disk
/// while objects are written, a source that cannot be read, a failed
/// sync, link or rename. Each must end in the right error, with a store
/// that holds only complete, correct objects and no temporary files, and
/// no image. Rules only hit files under each test's own directory, so
/// tests running meanwhile are not disturbed.
@Suite(.serialized) struct SystemFaultTests {
    /// A source tree of `count` files of 5,000 to 5,000 + count bytes.
    static func makeTree(_ dir: TemporaryDirectory, count: Int = 24) throws -> String {
        let src = dir.file("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        for k in 0..<count { try dir.write("src/f\(k)", pseudoRandomBytes(5_000 + k, seed: UInt64(k))) }
        return src
    }

    /// Makes the `nth` (1-based) call of `kind` on a file under `dir` fail
    /// with `errno`, then every later one too when `sticky`.
    static func inject(
        _ kind: SystemCall, under dir: TemporaryDirectory, nth: Int = 1, sticky: Bool = false,
        matching: String = "", errno: Errno
    ) -> Locked<Int> {
        let seen = Locked<Int>(0)
        let prefix = dir.path
        SystemFaults.inject { call in
            guard call.call == kind, let file = call.file?.description,
                file.hasPrefix(prefix), matching.isEmpty || file.contains(matching)
            else { return nil }
            let n = seen.withLock { n -> Int in
                n += 1
                return n
            }
            return n == nth || (sticky && n > nth) ? errno : nil
        }
        return seen
    }

    static func scan(_ src: String, store: String, threads: Int = 2) throws(DirectoryScanner.Error) -> Node {
        var options = DirectoryScanner.Options()
        options.digestStore = FilePath(store)
        options.threads = threads
        return try DirectoryScanner.scan(FilePath(src), options: options)
    }

    static func temporaries(in store: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: store)) ?? []).filter { $0.hasPrefix(".") }
    }

    @Test func fullDiskWhileWritingObjects() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = try Self.makeTree(dir)
        let store = dir.file("objects")
        _ = Self.inject(.write, under: dir, nth: 5, sticky: true, matching: "/objects", errno: .noSpace)
        defer { SystemFaults.clear() }
        #expect(throws: DirectoryScanner.Error.store(.store(path: FilePath(store), operation: .writing, errno: .noSpace))) {
            _ = try Self.scan(src, store: store)
        }
        SystemFaults.clear()
        try FaultInjectionTests.expectStoreCorrect(store)
        #expect(Self.temporaries(in: store).isEmpty)
        // With space again, a normal run completes the store.
        _ = try Self.scan(src, store: store)
        try FaultInjectionTests.expectStoreCorrect(store)
        let objects = try FileManager.default.subpathsOfDirectory(atPath: store).filter { $0.count == 65 }
        #expect(objects.count == 24)
    }

    /// Another writer may take a staging area for abandoned between its
    /// `mkdir` and its lock, and remove it: the run makes another one and
    /// completes (the race a concurrent run hit once).
    @Test func stagingAreaRemovedBeforeItsLock() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = try Self.makeTree(dir)
        let store = dir.file("objects")
        let removed = Locked<Int>(0)
        SystemFaults.inject { call in
            guard call.call == .open, call.path?.description.hasPrefix(".tmp-") == true,
                let file = call.file?.description, file.hasPrefix(store + "/.tmp-"),
                removed.withLock({ n in
                    n += 1
                    return n == 1
                })
            else { return nil }
            rmdir(file)   // as removeIfAbandoned does, before the writer opens it
            return nil
        }
        defer { SystemFaults.clear() }
        _ = try Self.scan(src, store: store)
        SystemFaults.clear()
        #expect(removed.withLock { $0 } >= 2, "the staging area was not made again")
        try FaultInjectionTests.expectStoreCorrect(store)
        let objects = try FileManager.default.subpathsOfDirectory(atPath: store).filter { $0.count == 65 }
        #expect(objects.count == 24)
        #expect(Self.temporaries(in: store).isEmpty)
    }

    @Test func unreadableSourceFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = try Self.makeTree(dir)
        let store = dir.file("objects")
        _ = Self.inject(.read, under: dir, matching: "/src/f7", errno: .ioError)
        defer { SystemFaults.clear() }
        #expect(throws: DirectoryScanner.Error.digest(path: FilePath(src + "/f7"), errno: .ioError)) {
            _ = try Self.scan(src, store: store)
        }
        SystemFaults.clear()
        try FaultInjectionTests.expectStoreCorrect(store, mayBeAbsent: true)
        #expect(Self.temporaries(in: store).isEmpty)
    }

    @Test func failedSyncPublishesNothing() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = try Self.makeTree(dir)
        let store = dir.file("objects")
        let seen = Self.inject(.sync, under: dir, errno: .ioError)
        defer { SystemFaults.clear() }
        #expect(throws: DirectoryScanner.Error.store(.store(path: FilePath(store), operation: .syncing, errno: .ioError))) {
            _ = try Self.scan(src, store: store)
        }
        SystemFaults.clear()
        #expect(seen.withLock { $0 } == 1)
        // Data never made durable never gets a name.
        let objects = try FileManager.default.subpathsOfDirectory(atPath: store).filter { $0.count == 65 }
        #expect(objects.isEmpty, "objects published without a sync: \(objects)")
        #expect(Self.temporaries(in: store).isEmpty)
    }

    /// mkcomposefs --from-tar makes the store's last batch durable while
    /// the image is written, and waits for it before the image goes in
    /// place: a failed sync there is the run's error.
    @Test func failedBackgroundCommitIsTheRunsError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try ObjectStore(path: FilePath(dir.file("objects")))
        let content = pseudoRandomBytes(5_000, seed: 9)
        let h = FsVerity.Hasher()
        h.update(content)
        let digest = h.finalize()
        var staged: ObjectStore.Error? = nil
        content.withUnsafeBytes { raw in
            do throws(ObjectStore.Error) { try store.insertOnce(contents: raw, digest: digest) } catch { staged = error }
        }
        #expect(staged == nil)
        _ = Self.inject(.sync, under: dir, sticky: true, errno: .ioError)
        defer { SystemFaults.clear() }
        let pending = MkComposefs.PendingCommit(store)
        let expected =
            "mkcomposefs: cannot fill store: \(ObjectStore.Error.store(path: FilePath(dir.file("objects")), operation: .syncing, errno: .ioError))\n"
        for _ in 0..<2 {   // every wait reports it
            var text: String? = nil
            do { try pending.wait() } catch { text = error.text }
            #expect(text == expected)
        }
        SystemFaults.clear()
        let objects = try FileManager.default.subpathsOfDirectory(atPath: dir.file("objects")).filter { $0.count == 65 }
        #expect(objects.isEmpty, "objects published without a sync: \(objects)")
    }

    /// Publishing fails: on a new store the move of a staged fan-out
    /// directory (a rename), on a store that has its fan-out directories
    /// the link of an anonymous object file.
    @Test(arguments: [SystemCall.rename, .link]) func failedPublishIsAnError(_ kind: SystemCall) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let src = try Self.makeTree(dir, count: 3)
        let store = dir.file("objects")
        if kind == .link {
            for i in 0..<256 {
                try FileManager.default.createDirectory(atPath: store + "/" + [UInt8(i)].hexString, withIntermediateDirectories: true)
            }
        }
        _ = Self.inject(kind, under: dir, sticky: true, errno: .noSpace)
        defer { SystemFaults.clear() }
        let failure: DirectoryScanner.Error?
        do {
            _ = try Self.scan(src, store: store)
            failure = nil
        } catch { failure = error }
        SystemFaults.clear()
        guard case .store(.store(let path, .linking, .noSpace))? = failure else {
            Issue.record("expected a linking error, got \(String(describing: failure))")
            return
        }
        #expect(path.description.hasPrefix(store + "/"))
        try FaultInjectionTests.expectStoreCorrect(store)
        #expect(Self.temporaries(in: store).isEmpty)
        let objects = try FileManager.default.subpathsOfDirectory(atPath: store).filter { $0.count == 65 }
        #expect(objects.isEmpty, "nothing published: \(objects)")
    }

    /// The image: a full disk half way, then a failed rename. Neither
    /// leaves an image or a temporary file.
    @Test(arguments: [SystemCall.write, .rename, .sync]) func imageOutputFailures(_ kind: SystemCall) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let root = try DumpParser.parse(try Fixtures.bytes("upstream/special.dump"))
        let out = FilePath(dir.file("image.cfs"))
        _ = Self.inject(kind, under: dir, nth: 1, sticky: true, errno: kind == .rename ? .improperLink : .noSpace)
        defer { SystemFaults.clear() }
        let prepared = try ImageWriter.prepare(root)
        let failure: OutputFile.Error?
        do throws(OutputFile.Error) {
            let file = try OutputFile(out)
            try prepared.serialize { (chunk: [UInt8]) throws(OutputFile.Error) in try file.write(chunk) }
            try file.commit()
            failure = nil
        } catch {
            failure = error
        }
        SystemFaults.clear()
        #expect(failure == .write(path: out, errno: kind == .rename ? .improperLink : .noSpace))
        let left = try dir.contents()
        #expect(left.isEmpty, "no image, no temporary file: \(left)")
    }
}

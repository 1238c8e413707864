import Dispatch
import Glibc
import Synchronization

/// A content-addressed object store: each object lives at `xx/yyyy…`, its
/// fs-verity digest in hex (FORMAT.md §19.3).
///
/// Opened for reading (`init(readingAt:)`: nothing is created, changed or
/// removed) or for adding objects (`init(path:)`). Crash safety of
/// additions: an object is written where the store's namespace does not
/// show it (an anonymous file in its fan-out directory, `O_TMPFILE`, or a
/// named `.tmp-*` file where the filesystem lacks it; in a staging area
/// when the store has no such fan-out directory yet, see `StagingArea`),
/// its contents are checked against the digest, and it gets its final name
/// only after its data is durable. Durability is batched: one `syncfs`
/// covers a batch of objects before they are linked (or moved) in, and one
/// more makes the new names durable, instead of an `fsync` per object.
/// Objects already present are not copied again; concurrent writers of the
/// same object are harmless (the first name wins, the content is the same).
public final class ObjectStore: @unchecked Sendable {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case store(path: FilePath, operation: Operation, errno: Errno)
        case copy(source: FilePath, errno: Errno)
        case changed(source: FilePath)
        case notAnObject(path: FilePath)

        public var description: String {
            switch self {
            case .store(let path, let op, let e): "\(e) (\(op.rawValue) \(path))"
            case .copy(let source, let e): "\(e) (copying \(source))"
            case .changed(let source): "\(Errno.ioError) (\(source) changed while it was copied)"
            case .notAnObject(let path): "\(Errno.fileExists) (\(path) exists and is not a regular file)"
            }
        }
    }

    /// What was being done to the store when it failed.
    public enum Operation: String, Sendable {
        case opening = "opening"
        case checking = "checking"
        case creating = "creating"
        case creatingTemporary = "creating a temporary file in"
        case writing = "writing to"
        case syncing = "syncing"
        case changingMode = "chmod"
        case linking = "linking"
        case locking = "locking"
        case reading = "reading"
        case removing = "removing"
        case moving = "moving"
    }

    public let path: FilePath
    /// Whether objects can be added (opened with `init(path:)`).
    public let isWritable: Bool
    /// A writer's shared store lock, held while this object lives (and
    /// while anyone keeps it).
    public let lock: Lock?
    /// The store on disk: the only way its names change.
    let directory: StoreDirectory
    /// Where new objects go, and what this run claimed.
    let staging: StagingAreas
    /// Objects staged but not yet published, and their bytes: anonymous
    /// files (each holds its descriptor) and files in staging areas.
    private let pending = Locked<Pending>(Pending())
    private struct Pending {
        var objects: [Staged] = []
        var inAreas: [(area: StagingArea, name: FilePath)] = []
        var bytes: UInt64 = 0
    }
    /// Serialises batch commits (staging goes on meanwhile); counts them.
    private let committing = Locked<Int>(0)
    private let writebackRunning = Atomic<Bool>(false)

    /// Objects per durability batch (each staged object holds a file
    /// descriptor until its batch is committed), and bytes. One `syncfs`
    /// costs a journal commit, so batches are as large as the descriptor
    /// limit comfortably allows.
    private let batchObjects: Int
    static let batchBytes: UInt64 = 2 << 30

    /// Raises the soft descriptor limit to the hard one and returns a batch
    /// size that leaves room for everything else the process has open.
    static func chooseBatchSize() -> Int {
        guard let available = CurrentProcess.raiseOpenFileLimit() else { return 256 }
        return max(16, min(4096, (available - 256) / 4))
    }

    /// A new object's file until it is named.
    struct Staged {
        var fd: FileDescriptor
        var name: FilePath
        var tempName: FilePath?   // named fallback
        /// Whether the file still needs `fchmod` to 0644 (a named
        /// temporary file is made 0600; an anonymous one 0644 minus umask).
        var needsMode = true
        /// Set for a file in a staging area, at `name` there (this run is
        /// one of the area's writers until the file is staged or dropped).
        var area: StagingArea? = nil
    }

    static func trimmed(_ path: FilePath) -> FilePath {
        var p = path.bytes
        while p.count > 1 && p.last == UInt8(ascii: "/") { p.removeLast() }
        return FilePath(bytes: p)
    }

    /// Opens (creating it, mode 0755, if needed) the store at `path` for
    /// adding objects, and removes temporary files abandoned by dead runs.
    /// With `holdUntilCommit`, no object is published before `commit()`:
    /// every new one waits, named, in a staging area (a run that fails, or
    /// is killed, leaves the store as it was; see `discardPending()`).
    public init(path: FilePath, holdUntilCommit: Bool = false) throws(Error) {
        let p = Self.trimmed(path)
        self.path = p
        try Self.makeDirectories(p)
        lock = try Lock(store: p, .shared)
        directory = try StoreDirectory(p, writable: true)
        staging = StagingAreas(directory, holdsAll: holdUntilCommit)
        isWritable = true
        batchObjects = Self.chooseBatchSize()
        // Named temporary files (the fallback for filesystems without
        // O_TMPFILE) and staging areas of writers that died.
        for name in (try? directory.entries()) ?? [] where hasPrefix(name, StoreDirectory.temporaryPrefix) {
            _ = directory.removeIfAbandoned(FilePath(bytes: name))
        }
    }

    /// Opens an existing store to look objects up: nothing is created,
    /// changed or removed.
    public init(readingAt path: FilePath) throws(Error) {
        let p = Self.trimmed(path)
        self.path = p
        directory = try StoreDirectory(p, writable: false)
        staging = StagingAreas(directory)
        isWritable = false
        lock = nil
        batchObjects = 0
    }

    deinit { discardPending() }

    static func makeDirectories(_ path: FilePath) throws(Error) {
        var prefix: [UInt8] = path.bytes.first == UInt8(ascii: "/") ? [UInt8(ascii: "/")] : []
        for part in path.bytes.split(separator: UInt8(ascii: "/")) {
            if !prefix.isEmpty && prefix.last != UInt8(ascii: "/") { prefix.append(UInt8(ascii: "/")) }
            prefix.append(contentsOf: part)
            do { try FileDescriptor.currentDirectory.makeDirectory(FilePath(bytes: prefix), mode: 0o755) } catch let error
                where error != .fileExists
            {
                throw .store(path: FilePath(bytes: prefix), operation: .creating, errno: error)
            } catch {}
        }
    }

    /// Whether the object for `payload` (`xx/yyyy…`) is present. Something
    /// else under that name (a directory, a symlink) is an error, never
    /// taken for the object.
    public func contains(_ payload: [UInt8]) throws(Error) -> Bool {
        try directory.containsObject(payload)
    }

    /// Adds the contents of `source` (open for reading) as the object named
    /// by `digest`, unless present. The copy is verified against `digest`
    /// and `size`: a source that changes meanwhile is an error, never a
    /// wrong object. The object becomes visible at the next batch commit
    /// (at the latest in `commit()`).
    public func insert(
        source: FileDescriptor, sourcePath: FilePath, digest: [UInt8], size: UInt64,
        scratch: UnsafeMutableRawBufferPointer, hasher: FsVerity.Hasher = FsVerity.Hasher()
    ) throws(Error) {
        let name = FsVerity.objectPath(digest)
        if try contains(name) { return }
        let staged = try createObjectFile(name, fanOut: digest[0])
        do throws(Error) {
            try directory.copy(from: source, to: staged.fd, size: size, sourcePath: sourcePath, scratch: scratch)
            // Verify what will be published: the object must hash to its name.
            let check: [UInt8]
            do { check = try FsVerity.digest(fd: staged.fd, path: sourcePath, buffer: scratch, hasher: hasher) } catch {
                throw .copy(source: sourcePath, errno: .ioError)
            }
            guard let st = try? staged.fd.stat(), UInt64(st.st_size) == size, check == digest else {
                throw .changed(source: sourcePath)
            }
        } catch {
            discard(staged)
            throw error
        }
        try stage(staged, as: name, size: size)
    }

    /// Adds `contents` (already hashed by the caller to `digest`) as an
    /// object, unless present: the bytes written are the bytes hashed, so
    /// no verification read is needed.
    public func insert(contents: UnsafeRawBufferPointer, digest: [UInt8]) throws(Error) {
        let name = FsVerity.objectPath(digest)
        if try contains(name) { return }
        try stage(contents, as: name, fanOut: digest[0])
    }

    /// Writes `contents` to a new file and stages it as `name`.
    func stage(_ contents: UnsafeRawBufferPointer, as name: [UInt8], fanOut: UInt8) throws(Error) {
        let staged = try createObjectFile(name, fanOut: fanOut)
        do { try staged.fd.writeAll(contents) } catch {
            discard(staged)
            throw .store(path: path, operation: .writing, errno: error)
        }
        try stage(staged, as: name, size: UInt64(contents.count))
    }

    /// Gives a complete temporary file the object's mode (and fs-verity
    /// where it works) and queues it, named `name`, for the next batch;
    /// on failure it is dropped.
    func stage(_ staged: Staged, as name: [UInt8], size: UInt64) throws(Error) {
        var s = staged
        do throws(Error) { try directory.finishObject(&s) } catch {
            discard(s)
            throw error
        }
        s.name = FilePath(bytes: name)
        try stage(s, size: size)
    }

    /// Queues a complete object for the next durability batch. A file in
    /// a staging area is closed (it needs no descriptor to be published).
    private func stage(_ staged: Staged, size: UInt64) throws(Error) {
        if staged.area != nil { try? staged.fd.close() }
        let (full, early) = pending.withLock { p -> (Bool, Bool) in
            if let area = staged.area { p.inAreas.append((area, staged.name)) } else { p.objects.append(staged) }
            p.bytes += size
            let early = p.bytes / Self.writebackStep != (p.bytes - size) / Self.writebackStep
            return (p.objects.count >= batchObjects || p.bytes >= Self.batchBytes, early)
        }
        staged.area?.writers.leave()   // before a commit, which waits for the area's writers
        // Held objects are all in staging areas, closed: nothing to free.
        if full && !staging.holdsAll { try commit() } else if early || full { startWriteback() }
    }

    /// Every `writebackStep` bytes staged, the data starts on its way to
    /// the disk while staging goes on: a sync of the file system on another
    /// thread, one at a time. It publishes nothing and its result is not
    /// used (the commit's own sync is what makes objects durable); the
    /// commit then finds little left to write.
    static let writebackStep: UInt64 = 8 << 20
    private func startWriteback() {
        guard writebackRunning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        DispatchQueue.global().async {
            try? self.directory.syncFilesystem()
            self.writebackRunning.store(false, ordering: .releasing)
        }
    }

    /// Makes every staged object durable and visible under its final name.
    public func commit() throws(Error) {
        try committing.withLock { commits throws(Error) in
            commits += 1
            // Objects staged from here on go to a new area, and the next batch.
            let area = staging.takeArea()
            let (batch, inArea) = pending.withLock { p -> ([Staged], [FilePath]) in
                let mine = p.inAreas.filter { $0.area === area }.map(\.name)
                p.inAreas.removeAll { $0.area === area }
                defer { p.objects = [] }
                p.bytes = 0
                return (p.objects, mine)
            }
            guard !batch.isEmpty || !inArea.isEmpty else {
                area?.remove(from: directory)
                return
            }
            var failure: Error? = nil
            // 1. Data durable before any name appears.
            do throws(Error) { try directory.syncFilesystem() } catch { failure = error }
            // 2. Names: the area's fan-out directories, then each
            // anonymous file on every CPU (each is a directory update of its
            // own; closing the files goes along).
            if let area {
                if failure == nil {
                    do throws(Error) { try staging.publish(area, objects: inArea) } catch { failure = error }
                } else {
                    area.remove(from: directory)
                }
            }
            let linkFailure = Locked<Error?>(nil)
            let staged = UncheckedSendable(batch)
            let linking = failure == nil
            Parallel.forEach(count: batch.count, threads: Parallel.availableCPUs) { i, _ in
                if linking && linkFailure.withLock({ $0 == nil }) {
                    do throws(Error) { try self.directory.name(staged.value[i]) } catch {
                        linkFailure.withLock { if $0 == nil { $0 = error } }
                    }
                }
                self.discard(staged.value[i])
            }
            if failure == nil { failure = linkFailure.withLock { $0 } }
            // 3. Names durable.
            if failure == nil {
                do throws(Error) { try directory.syncFilesystem() } catch { failure = error }
            }
            if let failure { throw failure }
        }
    }

    /// Drops the staged objects whose names `keep` does not hold (objects
    /// of files that a later tar entry or layer replaced), before they are
    /// committed. Published objects are never removed: a concurrent run
    /// may already use them.
    public func discardPending(keeping keep: Set<[UInt8]>) {
        let (dropped, droppedInAreas) = pending.withLock { p in
            let dropped = p.objects.filter { !keep.contains($0.name.bytes) }
            p.objects.removeAll { !keep.contains($0.name.bytes) }
            let inAreas = p.inAreas.filter { !keep.contains($0.name.bytes) }
            p.inAreas.removeAll { !keep.contains($0.name.bytes) }
            return (dropped, inAreas)
        }
        for s in dropped { discard(s) }
        for f in droppedInAreas { f.area.unlink(f.name) }
    }

    /// Drops staged objects without publishing them (after a failure), and
    /// the staging area.
    public func discardPending() {
        let (batch, inAreas) = pending.withLock { p in
            defer { p = Pending() }
            return (p.objects, p.inAreas)
        }
        for s in batch { discard(s) }
        for f in inAreas { f.area.unlink(f.name) }
        staging.discardCurrent()
    }

    // MARK: Internals

    /// A new file for the object `name` (`xx/yyyy…`): an anonymous one in
    /// the store's fan-out directory `first`, or one named `name` in the
    /// staging area when the store has no such directory yet.
    func createObjectFile(_ name: [UInt8], fanOut first: UInt8) throws(Error) -> Staged {
        guard isWritable else { throw .store(path: path, operation: .writing, errno: .badFileDescriptor) }
        switch try staging.destination(first) {
        case .store: return try directory.createObjectFile(fanOut: first)
        case .area: return try staging.createInArea(name, fanOut: first)
        }
    }

    /// Drops a new object's file (it is not published).
    func discard(_ s: Staged) {
        if let area = s.area {
            area.unlink(s.name)
            try? s.fd.close()
            area.writers.leave()
            return
        }
        directory.discard(s)
    }
}

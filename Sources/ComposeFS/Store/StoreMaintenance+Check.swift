import Glibc
import Synchronization

extension StoreMaintenance {
    /// What `check` found.
    public struct Check: Sendable {
        public struct Bad: Sendable, Equatable {
            public var id: ObjectID
            public var reason: String
        }

        public var checked = Amount()
        /// Objects whose contents are not what their names say.
        public var bad: [Bad] = []
        /// Entries that are not objects (see `ObjectStore.Contents`).
        public var foreign: [FilePath] = []
        /// Per image given: the objects it refers to that are missing.
        public var missing: [(image: FilePath, objects: [ObjectID])] = []
        /// With `repair`: the bad objects moved aside, and where to
        /// (relative to the store).
        public var movedAside: [(id: ObjectID, to: FilePath)] = []
        /// Objects moved aside by earlier repairs (`xx/yyyy….damaged`).
        public var damaged: [FilePath] = []

        public var isClean: Bool { bad.isEmpty && foreign.isEmpty && missing.allSatisfy(\.objects.isEmpty) }
    }

    /// Reads every object in full, on `threads` threads: its fs-verity
    /// digest must be its name (measured by the kernel and enforced on
    /// every read when fs-verity is on, computed otherwise). Reports names
    /// that are not objects and, for each image given, the objects it
    /// needs that are missing. `repair` (under the store's exclusive lock)
    /// moves bad objects aside. `progress` gets (objects, bytes) done.
    public static func check(
        store path: FilePath, images: [FilePath] = [], repair: Bool = false,
        threads: Int = CurrentProcess.availableCPUs,
        progress: (@Sendable (Int, UInt64) -> Void)? = nil
    ) throws(Error) -> Check {
        let store: ObjectStore
        do { store = try ObjectStore(readingAt: path) } catch { throw .store(error) }
        var lock: ObjectStore.Lock? = nil
        if repair {
            do { lock = try ObjectStore.Lock(store: store.path, .exclusive) } catch { throw .store(error) }
        }
        defer { withExtendedLifetime(lock) {} }
        let contents: ObjectStore.Contents
        do { contents = try store.contents(sizes: true) } catch { throw .store(error) }
        var result = Check()
        result.foreign = contents.foreign
        result.damaged = contents.damaged
        result.bad = verify(contents.objects, in: store, threads: threads, progress: progress)
        for o in contents.objects { result.checked.add(o.size) }
        if !images.isEmpty {
            let present = Set(contents.objects.map(\.id))
            for (i, set) in try objects(of: images).enumerated() {
                result.missing.append((images[i], set.filter { !present.contains($0) }.sorted()))
            }
        }
        if repair && !result.bad.isEmpty {
            result.movedAside = try moveAside(result.bad.map(\.id), in: store)
        }
        return result
    }

    static func verify(
        _ objects: [ObjectStore.Contents.Object], in store: ObjectStore, threads: Int,
        progress: (@Sendable (Int, UInt64) -> Void)?
    ) -> [Check.Bad] {
        let workers = max(1, threads)
        let buffers = (0..<workers).map { _ in
            UncheckedSendable(UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096))
        }
        defer { for b in buffers { b.value.deallocate() } }
        let hashers = (0..<workers).map { _ in UncheckedSendable(FsVerity.Hasher()) }
        let bad = Locked<[Check.Bad]>([])
        let done = Atomic<Int>(0)
        let bytes = Atomic<UInt64>(0)
        let objects = UncheckedSendable(objects)
        let store = UncheckedSendable(store)
        Parallel.forEach(count: objects.value.count, threads: workers) { i, worker in
            let object = objects.value[i]
            if let reason = verify(object.id, in: store.value, buffer: buffers[worker].value, hasher: hashers[worker].value) {
                bad.withLock { $0.append(Check.Bad(id: object.id, reason: reason)) }
            }
            let d = done.add(1, ordering: .relaxed).newValue
            let b = bytes.add(object.size, ordering: .relaxed).newValue
            progress?(d, b)
        }
        return bad.withLock { $0 }.sorted { $0.id < $1.id }
    }

    /// Why the object is bad, or nil when its contents are its name.
    static func verify(
        _ id: ObjectID, in store: ObjectStore, buffer: UnsafeMutableRawBufferPointer,
        hasher: FsVerity.Hasher
    ) -> String? {
        let fd: FileDescriptor
        do { fd = try store.directory.openObject(id) } catch {
            return "cannot open: \(error)"
        }
        defer { try? fd.close() }
        let measured: FsVerity.Measurement
        do { measured = try FsVerity.measure(fd: fd) } catch { return "cannot measure: \(error)" }
        let expected = id.digest
        if case .digest(let d) = measured, d != expected {
            return "fs-verity digest \(d.hexString)"
        }
        // Every byte is read: with fs-verity on, the kernel checks each
        // block against the digest as it reads; without, it is hashed here.
        let actual: [UInt8]
        do { actual = try FsVerity.digest(fd: fd, buffer: buffer, hasher: hasher) } catch {
            if case .io(_, let e) = error { return "cannot read: \(e)" }
            return "cannot read"
        }
        if case .digest = measured { return nil }
        return actual == expected ? nil : "contents have digest \(actual.hexString)"
    }

    /// Renames each bad object to `xx/yyyy….damaged` (`.damaged.2`, … when
    /// taken): out of the objects' names, so the next writer stores them
    /// anew; kept, never deleted; and inside its fan-out directory, which
    /// every image hides, so it never shows in a mount.
    static func moveAside(_ ids: [ObjectID], in store: ObjectStore) throws(Error) -> [(id: ObjectID, to: FilePath)] {
        var moved: [(id: ObjectID, to: FilePath)] = []
        for id in ids {
            do { moved.append((id, try store.directory.moveObjectAside(id))) } catch { throw .store(error) }
        }
        return moved
    }
}

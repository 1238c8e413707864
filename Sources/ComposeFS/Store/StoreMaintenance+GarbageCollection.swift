import Glibc

extension StoreMaintenance {
    /// What a garbage collection found and did.
    public struct Collection: Sendable {
        public var kept = 0
        /// Objects no root refers to: removed, or with `dryRun` to be.
        public var removed: [ObjectID] = []
        public var removedBytes: UInt64 = 0
        /// Temporary files of writers that died, removed.
        public var temporariesRemoved = 0
        /// Entries that are not objects: reported, never touched.
        public var foreign: [FilePath] = []
        /// The images found (after the lock was taken) and what was passed over.
        public var roots = Roots()
    }

    /// Removes every object of the store that none of the images at
    /// `roots` (files, or directories searched as `findImages` does)
    /// refers to.
    ///
    /// The store's lock is taken exclusively first (waiting for writers,
    /// or failing at once without `wait`), and only then are the roots
    /// searched, so every image written for the objects present is among
    /// them, and the roots' filesystems synced; then every image is read in
    /// full (one that cannot be read ends the run before anything is
    /// removed); then the unreferenced objects go, one `unlink` each (a run
    /// killed half way leaves a store the next run finishes). Nothing is
    /// followed out of the store; anything that is not an object is
    /// reported and left alone. `dryRun` removes nothing.
    public static func collectGarbage(
        store path: FilePath, roots: [FilePath], dryRun: Bool = false,
        wait: Bool = true
    ) throws(Error) -> Collection {
        let store: ObjectStore
        do { store = try ObjectStore(readingAt: path) } catch { throw .store(error) }
        let lock: ObjectStore.Lock
        do { lock = try ObjectStore.Lock(store: store.path, .exclusive, wait: wait) } catch {
            if case .store(_, .locking, let e) = error, e == .wouldBlock { throw .busy(store: path) }
            throw .store(error)
        }
        defer { withExtendedLifetime(lock) {} }
        var result = Collection()
        result.roots = try findImages(roots)
        if !dryRun { try makeDurable(roots) }
        var referenced = Set<ObjectID>()
        // An image removed since it was found is gone: its objects may go.
        let sets = try objects(of: result.roots.images, removedIsGone: true)
        for (image, set) in zip(result.roots.images, sets) {
            if let set { referenced.formUnion(set) } else { result.roots.skipped.append((image, "removed while the collection ran")) }
        }
        result.roots.images = zip(result.roots.images, sets).compactMap { $1 == nil ? nil : $0 }
        let contents: ObjectStore.Contents
        do { contents = try store.contents() } catch { throw .store(error) }

        result.foreign = contents.foreign
        for object in contents.objects {
            if referenced.contains(object.id) {
                result.kept += 1
                continue
            }
            if dryRun {
                result.removedBytes += store.directory.status(FilePath(bytes: object.id.path)).map { UInt64($0.st_size) } ?? 0
            } else {
                do { result.removedBytes += try store.directory.removeObject(object.id) } catch { throw .store(error) }
            }
            result.removed.append(object.id)
        }
        if !dryRun { result.temporariesRemoved = removeAbandoned(contents.temporaries, in: store) }
        return result
    }

    /// Makes the roots as they were found durable before any object goes
    /// (`syncfs` of each root's filesystem): an image removed just before
    /// this run must not come back after a power cut without the objects
    /// removed because it was gone. On the store's own journaled
    /// filesystem the journal already orders the removal first; images on
    /// another filesystem have no such order.
    static func makeDurable(_ roots: [FilePath]) throws(Error) {
        var synced = Set<UInt64>()
        for root in roots {
            do {
                let fd = try FileDescriptor.open(root, .readOnly)
                defer { try? fd.close() }
                guard synced.insert(UInt64(try fd.stat().st_dev)).inserted else { continue }
                try fd.syncFilesystem()
            } catch {
                throw .access(path: root, errno: error)
            }
        }
    }

    /// Temporary files and staging areas no live writer holds (their
    /// writers lock them).
    static func removeAbandoned(_ temporaries: [FilePath], in store: ObjectStore) -> Int {
        temporaries.filter { store.directory.removeIfAbandoned($0) }.count
    }
}

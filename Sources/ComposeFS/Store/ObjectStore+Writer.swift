import Glibc

extension ObjectStore {
    /// Streams one object into the store whose digest is known only at the
    /// end (a file read from a tar layer): every chunk is hashed and written
    /// in one pass, and `finish` names the object by its digest.
    ///
    /// Objects up to `memoryLimit` bytes are held in memory until `finish`,
    /// so one the store already has costs no temporary file; larger ones
    /// go to a staged temporary file as they arrive. Either way the bytes
    /// written are the bytes hashed, so no verification read is needed, and
    /// the object becomes durable and visible with the store's next batch
    /// commit, like every other insert.
    public final class Writer {
        public static let memoryLimit = 1 << 20
        let store: ObjectStore
        let hasher: FsVerity.Hasher
        private var buffer: [UInt8] = []
        private var staged: Staged? = nil
        public private(set) var length: UInt64 = 0
        private var finished = false
        /// The staged file ends in a hole (a seek, not yet its length).
        private var endsInHole = false

        init(store: ObjectStore, hasher: FsVerity.Hasher) {
            self.store = store
            self.hasher = hasher
            hasher.reset()
        }

        deinit { discard() }

        public func write(_ chunk: UnsafeRawBufferPointer) throws(Error) {
            guard !chunk.isEmpty else { return }
            hasher.update(chunk)
            length += UInt64(chunk.count)
            if staged == nil && buffer.count + chunk.count <= Writer.memoryLimit {
                buffer.append(contentsOf: chunk)
                return
            }
            try spill()
            try writeAll(chunk)
            endsInHole = false
        }

        /// A hole of `count` zero bytes (a sparse file's): hashed as zeros,
        /// and left as a hole in a staged file.
        public func writeZeros(_ count: UInt64) throws(Error) {
            hasher.updateZeros(count)
            length += count
            if staged == nil && UInt64(buffer.count) + count <= UInt64(Writer.memoryLimit) {
                buffer.append(contentsOf: repeatElement(0, count: Int(count)))
                return
            }
            try spill()
            guard let fd = staged?.fd, let n = Int(exactly: count) else {
                throw .store(path: store.path, operation: .writing, errno: .invalidArgument)
            }
            do { try fd.seek(by: n) } catch { throw .store(path: store.path, operation: .writing, errno: error) }
            endsInHole = count > 0
        }

        /// The object's digest. Unless the store has it (or this run staged
        /// it already), the object is staged for the next batch commit.
        public func finish() throws(Error) -> [UInt8] {
            precondition(!finished, "ObjectStore.Writer.finish called twice")
            finished = true
            let digest = hasher.finalize()
            guard var s = staged else {
                // Never spilled: the bytes are all in memory.
                defer { buffer = [] }
                try withBytes(buffer) { (b: UnsafeRawBufferPointer) throws(Error) in try store.insertOnce(contents: b, digest: digest) }
                return digest
            }
            let name = FsVerity.objectPath(digest)
            guard try store.staging.claim(name, fanOut: digest[0]) else {
                discard()
                return digest
            }
            staged = nil
            // A trailing hole: the file must still have its full length.
            if endsInHole {
                do { try s.fd.truncate(to: Int(length)) } catch {
                    store.discard(s)
                    throw .store(path: store.path, operation: .writing, errno: error)
                }
            }
            // Written before its name was known: into the staging area now
            // if that is where its fan-out directory is.
            if try store.staging.destination(digest[0]) == .area { s = try store.staging.moveToArea(s, as: name, fanOut: digest[0]) }
            try store.stage(s, as: name, size: length)
            return digest
        }

        /// Drops what was written (the object is not published).
        public func discard() {
            if let s = staged { store.discard(s) }
            staged = nil
            buffer = []
        }

        /// Moves the in-memory part to a staged temporary file.
        private func spill() throws(Error) {
            guard staged == nil else { return }
            staged = try store.directory.createObjectFile(fanOut: nil)
            let held = buffer
            buffer = []
            try withBytes(held) { (b: UnsafeRawBufferPointer) throws(Error) in try writeAll(b) }
        }

        /// Writes all of `data` to the staged file.
        private func writeAll(_ data: UnsafeRawBufferPointer) throws(Error) {
            guard let fd = staged?.fd, !data.isEmpty else { return }
            do { try fd.writeAll(data) } catch { throw .store(path: store.path, operation: .writing, errno: error) }
        }
    }

    /// Adds bytes the caller hashed to `digest` (a whole file of a tar
    /// layer), written straight from its buffer, once per run.
    public func insertOnce(contents: UnsafeRawBufferPointer, digest: [UInt8]) throws(Error) {
        let name = FsVerity.objectPath(digest)
        guard try staging.claim(name, fanOut: digest[0]) else { return }
        try stage(contents, as: name, fanOut: digest[0])
    }

    /// A writer for one object; `hasher` is reset and reused (one per thread).
    public func makeWriter(hasher: FsVerity.Hasher = FsVerity.Hasher()) -> Writer {
        Writer(store: self, hasher: hasher)
    }
}

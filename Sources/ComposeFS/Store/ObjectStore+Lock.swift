import Glibc

extension ObjectStore {
    /// The store's lock, a flock(2) on the store directory itself, by
    /// which adding objects and removing them never overlap:
    ///
    /// - a writer (`mkcomposefs --digest-store`, or any program adding
    ///   objects) holds it **shared** from before it looks for its first
    ///   object until the image that references them is in place (renamed
    ///   to its final path); many writers run at once;
    /// - garbage collection holds it **exclusive**, and looks for its root
    ///   images only then, so it sees every image any object was added for.
    ///
    /// The lock adds no entry to the store: on kernels before 6.5 the store
    /// is an ordinary lower layer of the overlay, and everything in its top
    /// directory but the fan-out directories shows in every mount.
    ///
    /// Other programs follow the same protocol: open the store directory
    /// (`O_RDONLY | O_DIRECTORY`), `flock(fd, LOCK_SH)` before looking for
    /// or adding objects, keep the descriptor open until the image is
    /// written. The lock goes with the descriptor, also when the process
    /// dies. From a shell: `flock --shared STORE COMMAND`.
    public final class Lock: @unchecked Sendable {
        public enum Kind: Sendable {
            case shared, exclusive
        }

        let fd: FileDescriptor
        public let kind: Kind

        /// Takes the lock of the store at `store` (which must exist).
        /// With `wait` false, a lock held by another fails at once with
        /// EWOULDBLOCK.
        public init(store: FilePath, _ kind: Kind, wait: Bool = true) throws(Error) {
            do {
                fd = try .open(store, .readOnly, options: [.directory])
            } catch {
                throw .store(path: store, operation: .opening, errno: error)
            }
            do {
                try fd.lock(exclusive: kind == .exclusive, wait: wait)
            } catch {
                try? fd.close()
                throw .store(path: store, operation: .locking, errno: error)
            }
            self.kind = kind
        }

        deinit { try? fd.close() }
    }
}

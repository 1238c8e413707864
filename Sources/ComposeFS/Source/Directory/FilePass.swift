import Glibc
import Synchronization

extension DirectoryScanner {
    /// The scanner's second pass over regular files with data, on worker
    /// threads that take files as the walk finds them: xattrs read from the
    /// open file, files of up to 64 bytes inlined, the others digested and,
    /// with a store, copied into it. The tree's shape is fixed by the walk,
    /// so the image never depends on the thread count or the order here.
    final class FilePass: @unchecked Sendable {
        struct Job {
            var node: Node
            var rel: [UInt8]
        }

        let scanner: Scanner
        /// The store, opened (and created) when the first object needs it.
        private let storeState = Locked<(store: ObjectStore?, opened: Bool)>((nil, false))
        var store: ObjectStore? { storeState.withLock { $0.store } }
        let threads: Int
        let queue = JobQueue<Job>()
        let workers = Workers()
        /// Per worker: a read buffer and a hasher, reused for every file.
        let scratch: [UnsafeMutableRawBufferPointer]
        let hashers: [FsVerity.Hasher]
        /// Objects some worker is already storing (files with equal contents).
        let claimed = Locked<Set<[UInt8]>>([])
        let failure = Locked<Error?>(nil)
        let done = Atomic<Int>(0)
        let bytes = Atomic<UInt64>(0)

        init(scanner: Scanner) {
            self.scanner = scanner
            threads = max(1, scanner.options.threads)
            scratch = (0..<threads).map { _ in
                UnsafeMutableRawBufferPointer.allocate(byteCount: DirectoryScanner.wholeFileLimit + 1, alignment: 4096)
            }
            hashers = (0..<threads).map { _ in FsVerity.Hasher() }
        }

        deinit { for s in scratch { s.deallocate() } }

        /// The object store, if there is one; a tree without external
        /// files never creates it.
        func openStore() throws(Error) -> ObjectStore? {
            guard let dir = scanner.options.digestStore else { return nil }
            return try storeState.withLock { state throws(Error) -> ObjectStore? in
                if !state.opened {
                    do throws(ObjectStore.Error) { state.store = try ObjectStore(path: dir) } catch { throw .store(error) }
                    state.opened = true
                }
                return state.store
            }
        }

        func start() {
            workers.start(count: threads) { [self] worker in
                while let job = queue.take() {
                    do throws(Error) {
                        try process(job, worker: worker)
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                        queue.stop()
                        return
                    }
                }
            }
        }

        func add(_ batch: [Job]) { queue.add(batch) }

        /// Whether a worker failed (the walk can stop early).
        var isStopped: Bool { queue.isStopped }

        /// After a failed walk: stop, wait, drop what was staged.
        func abort() {
            queue.stop()
            workers.join()
            store?.discardPending()
        }

        /// After the walk: the remaining files, then the store's last batch.
        func finish() throws(Error) {
            queue.finish()
            workers.join()
            if let error = failure.withLock({ $0 }) {
                store?.discardPending()
                throw error
            }
            if let store {
                do throws(ObjectStore.Error) { try store.commit() } catch {
                    store.discardPending()
                    throw .store(error)
                }
            }
        }

        func process(_ job: Job, worker: Int) throws(Error) {
            let node = job.node
            let shown = scanner.display(job.rel)
            guard let root = scanner.root else { return }
            let fd: FileDescriptor
            do { fd = try DirectoryScanner.open(job.rel, under: root, options: [.noFollow]) } catch {
                throw .access(path: shown, errno: error)
            }
            defer { try? fd.close() }
            if !scanner.options.skipXattrs { try scanner.readXattrs(into: node, from: .descriptor(fd), display: shown) }
            let buf = scratch[worker]
            if node.size <= DirectoryScanner.inlineLimit {
                let size = Int(node.size)
                let n: Int
                do { n = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<(size + 1)]), at: 0) } catch {
                    throw .access(path: shown, errno: error)
                }
                guard n == size else { throw .changed(path: shown, expected: node.size, found: UInt64(n)) }
                node.content = Array(UnsafeRawBufferPointer(rebasing: buf[0..<size]))
            } else {
                try digest(node, fd: fd, shown: shown, worker: worker)
            }
            let d = done.add(1, ordering: .relaxed).newValue
            let b = bytes.add(node.size, ordering: .relaxed).newValue
            scanner.options.progress?(d, b)
        }

        /// The digest and payload of an external file, and its object.
        /// Files up to `wholeFileLimit` are read once into the worker's
        /// buffer, hashed there and, when the store lacks them, written from
        /// it: one read, no copy to verify. Larger ones stream.
        func digest(_ node: Node, fd: FileDescriptor, shown: FilePath, worker: Int) throws(Error) {
            let buf = scratch[worker]
            let hasher = hashers[worker]
            let digest: [UInt8]
            var contents: UnsafeRawBufferPointer? = nil
            if node.size <= UInt64(DirectoryScanner.wholeFileLimit) {
                // Ask for one byte more than listed: a file that grew shows.
                let size = Int(node.size)
                let got: Int
                do { got = try fd.readAll(into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<(size + 1)]), at: 0) } catch {
                    throw .digest(path: shown, errno: error)
                }
                guard got == size else { throw .changed(path: shown, expected: node.size, found: UInt64(got)) }
                let data = UnsafeRawBufferPointer(rebasing: buf[0..<size])
                hasher.reset()
                hasher.update(data)
                digest = hasher.finalize()
                contents = data
            } else {
                let count: UInt64
                do throws(FsVerity.Error) {
                    (digest, count) = try FsVerity.digestAndLength(
                        fd: fd, path: shown,
                        buffer: UnsafeMutableRawBufferPointer(rebasing: buf[0..<(1 << 20)]),
                        hasher: hasher)
                } catch {
                    switch error {
                    case .io(let path, let e): throw .digest(path: path, errno: e)
                    }
                }
                guard count == node.size else { throw .changed(path: shown, expected: node.size, found: count) }
            }
            node.digest = digest
            let payload = FsVerity.objectPath(digest)
            node.payload = payload
            guard let store = try openStore(), claimed.withLock({ $0.insert(payload).inserted }) else { return }
            do throws(ObjectStore.Error) {
                if let contents {
                    try store.insert(contents: contents, digest: digest)
                } else {
                    try store.insert(
                        source: fd, sourcePath: shown, digest: digest, size: node.size,
                        scratch: UnsafeMutableRawBufferPointer(rebasing: buf[0..<(1 << 20)]),
                        hasher: hasher)
                }
            } catch {
                throw .store(error)
            }
        }
    }
}

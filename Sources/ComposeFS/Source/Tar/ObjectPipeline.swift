import Dispatch

/// Digests (and store writes) of a layer's files on other threads while
/// the reader goes on: libarchive parses and decompresses on one core,
/// hashing and the store's system calls (several per object) run beside
/// it. A layer is still read once, in order. Files that fit one chunk go
/// out in batches (up to `batchFiles` files or `batchLimit` bytes, one
/// hand-over and wake-up each), and batches run concurrently; a larger or
/// sparse file goes through as copied chunks, in order, on one serial
/// queue.
///
/// The tree never depends on it: a file's digest and object path are set
/// when its last chunk is done, and `wait` ends every job (the layer waits
/// before anything reads digests, and before it copies a hard link's
/// target that is still in flight).
final class ObjectPipeline: @unchecked Sendable {
    private let queue = DispatchQueue(label: "composefs.tar.objects")
    private let whole = DispatchQueue(label: "composefs.tar.small-objects", attributes: .concurrent)
    private let jobs = DispatchGroup()
    /// Hashers of the concurrent jobs, reused.
    private let hashers = Locked<[FsVerity.Hasher]>([])
    /// Chunks and batches in flight: bounds memory (at most this many of up
    /// to `chunkSize` bytes), and lets the reader run ahead of the writer.
    private let slots = DispatchSemaphore(value: 16)
    static let chunkSize = 1 << 20
    private let store: ObjectStore?
    private let source: FilePath

    // Used on the queue only.
    private let hasher = FsVerity.Hasher()
    private var writer: ObjectStore.Writer? = nil
    private var entry: [UInt8] = []

    /// The first failure, or a stop after a failure elsewhere: later jobs
    /// are skipped.
    private let state = Locked<(failure: TarLayer.Error?, stopped: Bool)>((nil, false))

    /// Reader side: the chunk being filled, whether the current file went
    /// to the serial queue, and the files in flight.
    private var chunk: [UInt8] = []
    private var serial = false
    private var current: [UInt8] = []
    /// Bytes of the current file still to come (sizes the next chunk).
    private var remaining: UInt64 = 0
    private var inFlight: Set<ObjectIdentifier> = []

    init(store: ObjectStore?, source: FilePath) {
        self.store = store
        self.source = source
    }

    // MARK: Reader side (one thread)

    /// Starts the data, `size` bytes, of the file the archive names `entry`.
    func begin(entry: [UInt8], size: UInt64) throws(TarLayer.Error) {
        try check()
        serial = false
        current = entry
        remaining = size
        reserve()
    }

    /// Room for the next chunk, no more than the file still needs (a
    /// megabyte per small file would cost a mapping each).
    private func reserve() {
        chunk.reserveCapacity(Int(min(remaining, UInt64(Self.chunkSize))))
    }

    /// Sends the current file to the serial queue (it spans chunks or has holes).
    private func goSerial() {
        guard !serial else { return }
        serial = true
        let entry = current
        enqueue { p in
            p.entry = entry
            p.hasher.reset()
            p.writer = p.store?.makeWriter(hasher: p.hasher)
        }
    }

    func append(_ data: UnsafeRawBufferPointer) throws(TarLayer.Error) {
        var rest = data
        while !rest.isEmpty {
            let n = min(rest.count, Self.chunkSize - chunk.count)
            chunk.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<n]))
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            remaining -= min(remaining, UInt64(n))
            if chunk.count == Self.chunkSize {
                goSerial()
                try flush()
            }
        }
    }

    func hole(_ count: UInt64) throws(TarLayer.Error) {
        goSerial()
        remaining -= min(remaining, count)
        try flush()
        enqueue { p throws(ObjectStore.Error) in
            if let w = p.writer { try w.writeZeros(count) } else { p.hasher.updateZeros(count) }
        }
    }

    /// Ends a file: its digest and object path go to `node`.
    func end(_ node: Node) throws(TarLayer.Error) {
        inFlight.insert(ObjectIdentifier(node))
        let target = UncheckedSendable(node)
        guard serial else { return try submitWhole(target) }
        try flush()
        enqueue { p throws(ObjectStore.Error) in
            let digest = try p.writer?.finish() ?? p.hasher.finalize()
            p.writer = nil
            target.value.digest = digest
            target.value.payload = FsVerity.objectPath(digest)
        }
    }

    /// Whether `node`'s digest may still be on its way.
    func isPending(_ node: Node) -> Bool { inFlight.contains(ObjectIdentifier(node)) }

    /// Files held in one chunk each, waiting to go out as one job.
    private var batch: [(node: UncheckedSendable<Node>, entry: [UInt8], data: [UInt8])] = []
    private var batchBytes = 0
    /// A job takes up to this many small files (or bytes): one hand-over
    /// and one wake-up per batch, not per file.
    static let batchFiles = 32
    static let batchLimit = 1 << 20

    /// A file held in one chunk: hashed and stored by a concurrent job,
    /// with other small files.
    private func submitWhole(_ target: UncheckedSendable<Node>) throws(TarLayer.Error) {
        try check()
        batchBytes += chunk.count
        batch.append((target, current, chunk))
        chunk = []
        if batch.count >= Self.batchFiles || batchBytes >= Self.batchLimit { submitBatch() }
    }

    /// Sends the waiting small files to the concurrent queue.
    private func submitBatch() {
        guard !batch.isEmpty else { return }
        let files = UncheckedSendable(batch)
        batch = []
        batchBytes = 0
        slots.wait()
        whole.async(group: jobs) { [self] in
            defer { slots.signal() }
            let h = hashers.withLock { $0.popLast() } ?? FsVerity.Hasher()
            defer { hashers.withLock { $0.append(h) } }
            for file in files.value {
                guard state.withLock({ $0.failure == nil && !$0.stopped }) else { return }
                var failed: ObjectStore.Error? = nil
                var digest: [UInt8] = []
                file.data.withUnsafeBytes { raw in
                    h.reset()
                    h.update(raw)
                    digest = h.finalize()
                    do throws(ObjectStore.Error) { try store?.insertOnce(contents: raw, digest: digest) } catch { failed = error }
                }
                if let failed {
                    let e = TarLayer.Error.store(source: source, path: file.entry, failed)
                    state.withLock { if $0.failure == nil { $0.failure = e } }
                    return
                }
                file.node.value.digest = digest
                file.node.value.payload = FsVerity.objectPath(digest)
            }
        }
    }

    /// Every job done; the first failure, if any.
    func wait() throws(TarLayer.Error) {
        submitBatch()
        jobs.wait()
        inFlight.removeAll()
        try check()
    }

    /// Ends every job after a failure elsewhere (nothing is staged after it).
    func drain() {
        state.withLock { $0.stopped = true }
        batch = []
        jobs.wait()
        writer?.discard()
        writer = nil
    }

    private func check() throws(TarLayer.Error) {
        if let e = state.withLock({ $0.failure }) { throw e }
    }

    private func flush() throws(TarLayer.Error) {
        guard !chunk.isEmpty else { return }
        try check()
        let data = UncheckedSendable(chunk)
        chunk = []
        reserve()
        enqueue { p throws(ObjectStore.Error) in
            var failed: ObjectStore.Error? = nil
            data.value.withUnsafeBytes { raw in
                do throws(ObjectStore.Error) {
                    if let w = p.writer { try w.write(raw) } else { p.hasher.update(raw) }
                } catch { failed = error }
            }
            if let failed { throw failed }
        }
    }

    private func enqueue(_ work: @escaping (ObjectPipeline) throws(ObjectStore.Error) -> Void) {
        slots.wait()
        let job = UncheckedSendable(work)
        queue.async(group: jobs) { [self] in
            defer { slots.signal() }
            guard state.withLock({ $0.failure == nil && !$0.stopped }) else { return }
            do throws(ObjectStore.Error) { try job.value(self) } catch {
                writer?.discard()
                writer = nil
                let e = TarLayer.Error.store(source: source, path: entry, error)
                state.withLock { if $0.failure == nil { $0.failure = e } }
            }
        }
    }
}

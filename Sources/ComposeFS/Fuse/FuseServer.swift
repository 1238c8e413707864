import Glibc
import Synchronization

extension Fuse {
    /// One request read from the device: its header fields and its
    /// arguments (valid until the thread reads the next request).
    public struct Request {
        public var opcode: UInt32
        public var unique: UInt64
        public var node: UInt64
        public var uid: UInt32
        public var gid: UInt32
        public var pid: UInt32
        /// The opcode's arguments.
        public var body: UnsafeRawBufferPointer

        /// Decodes a request; nil when `bytes` is not one.
        public init?(_ bytes: UnsafeRawBufferPointer) {
            guard bytes.count >= Fuse.inHeaderSize else { return nil }
            let length = Int(bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian)
            guard length >= Fuse.inHeaderSize, length <= bytes.count else { return nil }
            opcode = bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
            unique = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
            node = bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian
            uid = bytes.loadUnaligned(fromByteOffset: 24, as: UInt32.self).littleEndian
            gid = bytes.loadUnaligned(fromByteOffset: 28, as: UInt32.self).littleEndian
            pid = bytes.loadUnaligned(fromByteOffset: 32, as: UInt32.self).littleEndian
            body = UnsafeRawBufferPointer(rebasing: bytes[Fuse.inHeaderSize..<length])
        }

        /// A request as the kernel writes it (for tests and fuzzing):
        /// `fuse_in_header` and `body`.
        public static func encode(_ opcode: Opcode, unique: UInt64, node: UInt64, body: [UInt8] = []) -> [UInt8] {
            var w = ByteWriter(capacity: Fuse.inHeaderSize + body.count)
            w.u32(UInt32(Fuse.inHeaderSize + body.count))   // 0: len
            w.u32(opcode.rawValue)   // 4: opcode
            w.u64(unique)   // 8: unique
            w.u64(node)   // 16: nodeid
            w.u32(0)   // 24: uid
            w.u32(0)   // 28: gid
            w.u32(0)   // 32: pid
            w.u32(0)   // 36: total_extlen, padding
            w.append(body)
            return w.finish()
        }

        /// The little-endian integer at `offset` of the arguments; nil past their end.
        public func u32(_ offset: Int) -> UInt32? {
            guard offset >= 0, offset + 4 <= body.count else { return nil }
            return body.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
        }

        public func u64(_ offset: Int) -> UInt64? {
            guard offset >= 0, offset + 8 <= body.count else { return nil }
            return body.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
        }

        /// The NUL-terminated name at `offset` of the arguments (a lookup's,
        /// a getxattr's); nil without a NUL.
        public func name(at offset: Int) -> [UInt8]? {
            guard offset >= 0, offset <= body.count else { return nil }
            let rest = body[offset...]
            guard let nul = rest.firstIndex(of: 0) else { return nil }
            return Array(rest[..<nul])
        }
    }

    /// What a filesystem answers with; each worker thread of the server
    /// has its own (no state shared but what the filesystem shares).
    public protocol Worker: AnyObject {
        /// Answers `request` through `reply` (exactly once, or not at all
        /// for requests that take no reply).
        func handle(_ request: Request, _ reply: inout Reply)
    }

    /// The reply to one request, encoded in the worker's buffer.
    public struct Reply: ~Copyable {
        let device: FileDescriptor
        var payload = ByteWriter(capacity: 1 << 16)
        var unique: UInt64 = 0
        var sent = false
        /// Instead of the device (tests, fuzzing): gets each reply's error
        /// (0 or -errno) and bytes after the header.
        let capture: ((Int32, [UInt8]) -> Void)?

        init(device: FileDescriptor) {
            self.device = device
            capture = nil
        }

        public init(capture: @escaping (Int32, [UInt8]) -> Void) {
            device = FileDescriptor(rawValue: -1)
            self.capture = capture
        }

        /// Makes this the reply to a new request.
        public mutating func reset() {
            sent = false
            payload.removeAll()
        }

        /// Sends `payload` (built by the handler) as the reply.
        public mutating func send() {
            let (device, unique, capture) = (self.device, self.unique, self.capture)
            payload.withUnsafeBytes { body in Reply.write(device, capture, unique: unique, error: 0, body: body, extra: nil) }
            sent = true
        }

        /// Sends `payload` followed by `data` (a read's bytes, no copy).
        public mutating func send(data: UnsafeRawBufferPointer) {
            let (device, unique, capture) = (self.device, self.unique, self.capture)
            payload.withUnsafeBytes { body in Reply.write(device, capture, unique: unique, error: 0, body: body, extra: data) }
            sent = true
        }

        /// Answers with an error.
        public mutating func fail(_ e: Errno) {
            Reply.write(device, capture, unique: unique, error: -e.rawValue, body: UnsafeRawBufferPointer(start: nil, count: 0), extra: nil)
            sent = true
        }

        /// The payload being built.
        public var writer: ByteWriter {
            _read { yield payload }
            _modify { yield &payload }
        }

        static func write(
            _ device: FileDescriptor, _ capture: ((Int32, [UInt8]) -> Void)?, unique: UInt64, error: Int32,
            body: UnsafeRawBufferPointer, extra: UnsafeRawBufferPointer?
        ) {
            if let capture {
                capture(error, Array(body) + (extra.map { Array($0) } ?? []))
                return
            }
            let length = Fuse.outHeaderSize + body.count + (extra?.count ?? 0)
            withUnsafeTemporaryAllocation(byteCount: Fuse.outHeaderSize, alignment: 8) { header in
                header.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 0, as: UInt32.self)
                header.storeBytes(of: error.littleEndian, toByteOffset: 4, as: Int32.self)
                header.storeBytes(of: unique.littleEndian, toByteOffset: 8, as: UInt64.self)
                var parts = [UnsafeRawBufferPointer(header)]
                if !body.isEmpty { parts.append(body) }
                if let extra, !extra.isEmpty { parts.append(extra) }
                // ENOENT: the request was interrupted meanwhile; nothing to do.
                _ = try? device.write(vector: parts)
            }
        }
    }

    /// Serves a mounted connection: `threads` threads read requests from
    /// `device` and hand each to their worker, until the kernel ends the
    /// connection (unmounted: ENODEV) or `stop()`.
    public final class Server: @unchecked Sendable {
        let device: FileDescriptor
        private let stopping = Atomic<Bool>(false)
        /// The largest request this server takes (names, xattr names: small;
        /// it never accepts writes).
        static let requestBufferSize = 64 << 10

        /// With debugging on: a line per request. Fixed before any thread
        /// starts (the threads read it without a lock).
        public let debug: (@Sendable (String) -> Void)?

        /// How long (ns) one thread keeps reading the device without
        /// sleeping after each request (0: never). A request arriving
        /// meanwhile is taken at once, without the wake-up of a sleeping
        /// reader, which is most of a request's cost: the caller of a
        /// walk or of reads waits for one reply after another.
        public let busyPoll: UInt64

        public init(device: FileDescriptor, busyPoll: UInt64 = 0, debug: (@Sendable (String) -> Void)? = nil) {
            self.device = device
            self.busyPoll = busyPoll
            self.debug = debug
        }

        /// Runs until the connection ends; `makeWorker` is called once per thread.
        /// Every thread but the first reads from its own clone of the
        /// connection (`FUSE_DEV_IOC_CLONE`, as libfuse's `clone_fd`): the
        /// kernel then keeps a queue of requests in progress per
        /// descriptor. Where a clone cannot be had, the thread shares
        /// `device`.
        ///
        /// Every server thread is a new one; the calling thread only waits.
        /// A daemon's calling thread is the one that forked, and the Swift
        /// runtime keeps its thread id from before the fork for its locks
        /// (`swift_once`, metadata): where it met another thread in one,
        /// both spun forever (ESRCH/EPERM from the PI futex) when the
        /// connection ended and both built their first error value.
        public func run(threads: Int, makeWorker: @escaping (Int) -> any Worker) {
            let workers = Workers()
            defer { workers.join() }
            workers.start(count: max(1, threads)) { index in
                let clone = index == 0 ? nil : Self.clone(of: self.device)
                defer { try? clone?.close() }
                let fd = clone ?? self.device
                // One thread polls: the second, on its own clone (non-blocking
                // is a property of the open file, which the others must not
                // share), or the only one. The others sleep in read.
                var polls = false
                // With one CPU, polling would only keep the caller from running.
                let poller = threads == 1 ? index == 0 : index == 1 && clone != nil
                if self.busyPoll > 0, poller, CurrentProcess.availableCPUs > 1, let flags = try? fd.statusFlags() {
                    polls = (try? fd.setStatusFlags(flags | O_NONBLOCK)) != nil
                }
                self.loop(makeWorker(index), device: fd, polls: polls)
            }
        }

        static func clone(of device: FileDescriptor) -> FileDescriptor? {
            guard let fd = try? FileDescriptor.open("/dev/fuse", .readWrite) else { return nil }
            do { try fd.joinFuseConnection(of: device) } catch {
                try? fd.close()
                return nil
            }
            return fd
        }

        public func stop() { stopping.store(true, ordering: .relaxed) }

        private func loop(_ worker: any Worker, device: FileDescriptor, polls: Bool) {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.requestBufferSize, alignment: 16)
            defer { buffer.deallocate() }
            var reply = Reply(device: device)
            var failures = 0
            var last: UInt64 = 0
            while !stopping.load(ordering: .relaxed) {
                let n: Int
                do { n = try device.read(into: buffer) } catch {
                    if polls && error == .wouldBlock {
                        if CurrentProcess.monotonicNanoseconds &- last > busyPoll {
                            try? device.waitUntilReadable()
                            last = CurrentProcess.monotonicNanoseconds
                        } else {
                            // Polite: where other threads wait for this CPU
                            // (the caller among them), they run first.
                            CurrentProcess.yield()
                        }
                        continue
                    }
                    // ENOENT: a request interrupted before it was read; EAGAIN: another took it.
                    if error == .noSuchFileOrDirectory || error == .wouldBlock || error == .interrupted { continue }
                    // ENODEV: unmounted; ECONNABORTED: aborted. Anything else
                    // may pass (EIO: a request the kernel dropped while it was
                    // copied); only a run of failures ends the thread.
                    failures += 1
                    if error == .operationNotSupportedByDevice || error == .connectionAbort || error == .badFileDescriptor || failures > 100
                    {
                        return
                    }
                    continue
                }
                failures = 0
                guard n > 0, let request = Request(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) else { continue }
                if let debug {
                    let name = Opcode(rawValue: request.opcode).map { "\($0)" } ?? "opcode \(request.opcode)"
                    debug("unique \(request.unique): \(name) node \(request.node), \(request.body.count) bytes, pid \(request.pid)")
                }
                reply.unique = request.unique
                reply.reset()
                worker.handle(request, &reply)
                if polls { last = CurrentProcess.monotonicNanoseconds }
                if request.opcode == Opcode.destroy.rawValue { stop() }
            }
        }
    }
}

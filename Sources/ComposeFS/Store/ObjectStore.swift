import CComposeFSShims
import Glibc
import Synchronization

/// A content-addressed object store: each object lives at `xx/yyyy…`, its
/// fs-verity digest in hex (FORMAT.md §19.3).
///
/// Crash safety: an object is written to an anonymous file in the store
/// (`O_TMPFILE`, or a named `.tmp-*` file where the filesystem lacks it),
/// its contents are checked against the digest, and it gets its final
/// name only after its data is durable. Durability is batched: one
/// `syncfs` covers a batch of objects before they are linked in, and one
/// more makes the new names durable, instead of an `fsync` per object.
/// Objects already present are not copied again; concurrent writers of the
/// same object are harmless (the first link wins, the content is the same).
public final class ObjectStore: @unchecked Sendable {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case store(path: String, operation: String, errno: Int32)
        case copy(source: String, errno: Int32)
        case changed(source: String)
        case notAnObject(path: String)

        public var description: String {
            switch self {
            case let .store(path, op, e): "\(errnoDescription(e)) (\(op) \(path))"
            case let .copy(source, e): "\(errnoDescription(e)) (copying \(source))"
            case let .changed(source): "\(errnoDescription(EIO)) (\(source) changed while it was copied)"
            case let .notAnObject(path): "\(errnoDescription(EEXIST)) (\(path) exists and is not a regular file)"
            }
        }
    }

    public let path: String
    let fd: Int32
    /// Objects staged but not yet linked, and their bytes.
    private let pending = Locked<(objects: [Staged], bytes: UInt64)>(([], 0))
    /// Serialises batch commits (staging goes on meanwhile).
    private let committing = Locked<Void>(())
    private let knownDirs = Locked<Set<UInt8>>([])
    /// Fan-out directories this run created: they held no object before it
    /// (one a concurrent run adds meanwhile shows as EEXIST when linking).
    let createdDirs = Locked<Set<UInt8>>([])
    /// Objects a `Writer` or `insertOnce` claimed in this run.
    let written = Locked<Set<[UInt8]>>([])
    private let tmpfileWorks = Atomic<Bool>(true)
    private let copyFileRangeWorks = Atomic<Bool>(true)
    private let verityMayWork = Atomic<Bool>(true)

    /// Objects per durability batch (each staged object holds a file
    /// descriptor until its batch is committed), and bytes. One `syncfs`
    /// costs a journal commit, so batches are as large as the descriptor
    /// limit comfortably allows.
    let batchObjects: Int
    static let batchBytes: UInt64 = 2 << 30

    /// Raises the soft descriptor limit to the hard one and returns a batch
    /// size that leaves room for everything else the process has open.
    static func chooseBatchSize() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 256 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let available = Int(min(limit.rlim_cur, 1 << 20))   // RLIM_INFINITY is the maximum value
        return max(16, min(4096, (available - 256) / 4))
    }

    struct Staged {
        var fd: Int32
        var name: [UInt8]
        var tempName: [UInt8]?   // named fallback
    }

    /// Opens (creating it, mode 0755, if needed) the store at `path`.
    public init(path: String) throws(Error) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        self.path = p
        try Self.makeDirectories(p)
        let fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .store(path: p, operation: "opening", errno: errno) }
        self.fd = fd
        batchObjects = Self.chooseBatchSize()
        removeAbandonedTemporaries()
    }

    /// Named temporary files (the fallback for filesystems without
    /// O_TMPFILE) carry a shared lock while their run is alive; one that can
    /// be locked exclusively was left by a run that died, and is removed.
    private func removeAbandonedTemporaries() {
        guard let dir = fdopendir(dup(fd)) else { return }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            let name: [UInt8] = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            guard name.starts(with: Array(".tmp-".utf8)) else { continue }
            (name + [0]).withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: CChar.self) { cname in
                    let t = openat(fd, cname.baseAddress!, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                    guard t >= 0 else { return }
                    defer { close(t) }
                    if flock(t, LOCK_EX | LOCK_NB) == 0 { unlinkat(fd, cname.baseAddress!, 0) }
                }
            }
        }
    }

    deinit {
        discardPending()
        close(fd)
    }

    static func makeDirectories(_ path: String) throws(Error) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += prefix.isEmpty || prefix.hasSuffix("/") ? String(part) : "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw .store(path: prefix, operation: "creating", errno: errno)
            }
        }
    }

    /// Whether the object for `payload` (`xx/yyyy…`) is present. Something
    /// else under that name (a directory, a symlink) is an error, never
    /// taken for the object.
    public func contains(_ payload: [UInt8]) throws(Error) -> Bool {
        var st = stat()
        let rc = (payload + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { fstatat(fd, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) }
        }
        if rc != 0 {
            guard errno == ENOENT else { throw .store(path: path + "/" + String(bytes: payload), operation: "checking", errno: errno) }
            return false
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notAnObject(path: path + "/" + String(bytes: payload)) }
        return true
    }

    /// Adds the contents of `source` (open for reading) as the object named
    /// by `digest`, unless present. The copy is verified against `digest`
    /// and `size`: a source that changes meanwhile is an error, never a
    /// wrong object. The object becomes visible at the next batch commit
    /// (at the latest in `commit()`).
    public func insert(source: Int32, sourcePath: String, digest: [UInt8], size: UInt64,
                       scratch: UnsafeMutableRawBufferPointer, hasher: FsVerity.Hasher = FsVerity.Hasher()) throws(Error) {
        let name = FsVerity.objectPath(digest)
        if try contains(name) { return }
        try ensureDirectory(digest[0])
        var staged = try createTemporary()
        do throws(Error) {
            try copy(from: source, to: staged.fd, size: size, sourcePath: sourcePath, scratch: scratch)
            guard fchmod(staged.fd, 0o644) == 0 else { throw .store(path: path, operation: "chmod", errno: errno) }
            // Verify what will be published: the object must hash to its name.
            let check: [UInt8]
            do { check = try FsVerity.digest(fd: staged.fd, path: sourcePath, buffer: scratch, hasher: hasher) } catch {
                throw .copy(source: sourcePath, errno: EIO)
            }
            var st = stat()
            guard fstat(staged.fd, &st) == 0, UInt64(st.st_size) == size, check == digest else {
                throw .changed(source: sourcePath)
            }
            try enableVerity(&staged)
        } catch {
            discard(staged)
            throw error
        }
        staged.name = name
        try stage(staged, size: size)
    }

    /// Adds `contents` (already hashed by the caller to `digest`) as an
    /// object, unless present: the bytes written are the bytes hashed, so
    /// no verification read is needed.
    public func insert(contents: UnsafeRawBufferPointer, digest: [UInt8]) throws(Error) {
        let name = FsVerity.objectPath(digest)
        if try contains(name) { return }
        try ensureDirectory(digest[0])
        var staged = try createTemporary()
        do throws(Error) {
            var off = 0
            while off < contents.count {
                let n = write(staged.fd, contents.baseAddress! + off, contents.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .store(path: path, operation: "writing to", errno: errno)
                }
                off += n
            }
            guard fchmod(staged.fd, 0o644) == 0 else { throw .store(path: path, operation: "chmod", errno: errno) }
            try enableVerity(&staged)
        } catch {
            discard(staged)
            throw error
        }
        staged.name = name
        try stage(staged, size: UInt64(contents.count))
    }

    /// Queues a complete object for the next durability batch.
    func stage(_ staged: Staged, size: UInt64) throws(Error) {
        let full = pending.withLock { p -> Bool in
            p.objects.append(staged)
            p.bytes += size
            return p.objects.count >= batchObjects || p.bytes >= Self.batchBytes
        }
        if full { try commit() }
    }

    /// Makes every staged object durable and visible under its final name.
    public func commit() throws(Error) {
        try committing.withLock { _ throws(Error) in
            let batch = pending.withLock { p -> [Staged] in
                let b = p.objects
                p = ([], 0)
                return b
            }
            guard !batch.isEmpty else { return }
            var failure: Error? = nil
            // 1. Data durable before any name appears.
            if cfs_syncfs(fd) != 0 { failure = .store(path: path, operation: "syncing", errno: errno) }
            // 2. Names.
            for s in batch {
                if failure == nil {
                    do throws(Error) { try link(s) } catch { failure = error }
                }
                discard(s)
            }
            // 3. Names durable.
            if failure == nil && cfs_syncfs(fd) != 0 {
                failure = .store(path: path, operation: "syncing", errno: errno)
            }
            if let failure { throw failure }
        }
    }

    /// Drops the staged objects whose names `keep` does not hold (objects
    /// of files that a later tar entry or layer replaced), before they are
    /// committed. Published objects are never removed: a concurrent run
    /// may already use them.
    public func discardPending(keeping keep: Set<[UInt8]>) {
        let dropped = pending.withLock { p -> [Staged] in
            let (kept, dropped) = (p.objects.filter { keep.contains($0.name) }, p.objects.filter { !keep.contains($0.name) })
            p.objects = kept
            return dropped
        }
        for s in dropped { discard(s) }
    }

    /// Drops staged objects without publishing them (after a failure).
    public func discardPending() {
        let batch = pending.withLock { p -> [Staged] in
            let b = p.objects
            p = ([], 0)
            return b
        }
        for s in batch { discard(s) }
    }

    // MARK: Internals

    func ensureDirectory(_ first: UInt8) throws(Error) {
        if knownDirs.withLock({ $0.contains(first) }) { return }
        let name = [first].hexString
        if mkdirat(fd, name, 0o755) == 0 {
            createdDirs.withLock { _ = $0.insert(first) }
        } else if errno != EEXIST {
            throw .store(path: path + "/" + name, operation: "creating", errno: errno)
        }
        knownDirs.withLock { _ = $0.insert(first) }
    }

    func createTemporary() throws(Error) -> Staged {
        if tmpfileWorks.load(ordering: .relaxed) {
            let t = openat(fd, ".", cfs_o_tmpfile() | O_RDWR | O_CLOEXEC, 0o600)
            if t >= 0 { return Staged(fd: t, name: [], tempName: nil) }
            let e = errno
            guard e == EOPNOTSUPP || e == EISDIR || e == EINVAL || e == ENOENT else {
                throw .store(path: path, operation: "creating a temporary file in", errno: e)
            }
            tmpfileWorks.store(false, ordering: .relaxed)
        }
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        for _ in 0..<100 {
            let name = Array(".tmp-".utf8) + (0..<12).map { _ in letters.randomElement()! }
            let t = (name + [0]).withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: CChar.self) { openat(fd, $0.baseAddress!, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
            }
            if t >= 0 {
                _ = flock(t, LOCK_SH)   // held (shared) until the file is renamed or removed
                return Staged(fd: t, name: [], tempName: name)
            }
            if errno != EEXIST { throw .store(path: path, operation: "creating a temporary file in", errno: errno) }
        }
        throw .store(path: path, operation: "creating a temporary file in", errno: EEXIST)
    }

    func discard(_ s: Staged) {
        if let t = s.tempName {
            _ = (t + [0]).withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: CChar.self) { unlinkat(fd, $0.baseAddress!, 0) }
            }
        }
        close(s.fd)
    }

    /// Best effort: fs-verity on the new object (it needs a read-only
    /// descriptor and no writer). Once the kernel or filesystem says it has
    /// no fs-verity, later objects skip the attempt.
    func enableVerity(_ staged: inout Staged) throws(Error) {
        guard verityMayWork.load(ordering: .relaxed) else { return }
        staged.fd = try reopenReadOnly(staged.fd)
        let e = FsVerity.enable(fd: staged.fd)
        if e == ENOTTY || e == EOPNOTSUPP { verityMayWork.store(false, ordering: .relaxed) }
    }

    private func reopenReadOnly(_ rw: Int32) throws(Error) -> Int32 {
        let ro = open("/proc/self/fd/\(rw)", O_RDONLY | O_CLOEXEC)
        guard ro >= 0 else { return rw }   // keep the writable fd; verity is best effort
        _ = flock(ro, LOCK_SH)   // keep a named temporary file claimed across the reopen
        close(rw)
        return ro
    }

    private func link(_ s: Staged) throws(Error) {
        let rc: Int32 = (s.name + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { dest in
                if let t = s.tempName {
                    return (t + [0]).withUnsafeBufferPointer { tp in
                        tp.withMemoryRebound(to: CChar.self) { renameat(fd, $0.baseAddress!, fd, dest.baseAddress!) }
                    }
                }
                return linkat(AT_FDCWD, "/proc/self/fd/\(s.fd)", fd, dest.baseAddress!, AT_SYMLINK_FOLLOW)
            }
        }
        if rc != 0 {
            guard errno == EEXIST else {
                throw .store(path: path + "/" + String(bytes: s.name), operation: "linking", errno: errno)
            }
            // Another writer got there first; it must be the object.
            _ = try contains(s.name)
        }
    }

    /// Reflink, then copy_file_range, then read/write.
    private func copy(from src: Int32, to dst: Int32, size: UInt64, sourcePath: String,
                      scratch: UnsafeMutableRawBufferPointer) throws(Error) {
        if cfs_ficlone(dst, src) == 0 { return }
        var done: UInt64 = 0
        guard lseek(src, 0, SEEK_SET) == 0 else { throw .copy(source: sourcePath, errno: errno) }
        if copyFileRangeWorks.load(ordering: .relaxed) {
            while done < size {
                let n = cfs_copy_file_range(src, dst, Int(min(size - done, 1 << 30)))
                if n > 0 {
                    done += UInt64(n)
                    continue
                }
                if n == 0 { break }   // source shorter than expected: the check finds it
                let e = errno
                if e == EINTR { continue }
                if e == ENOSYS || e == EXDEV { copyFileRangeWorks.store(false, ordering: .relaxed) }
                if e == ENOSYS || e == EXDEV || e == EOPNOTSUPP || e == EPERM || e == EINVAL || e == EBADF { break }
                throw .copy(source: sourcePath, errno: e)
            }
            if done >= size { return }
        }
        // read/write from where copy_file_range stopped.
        guard lseek(src, off_t(done), SEEK_SET) >= 0, lseek(dst, off_t(done), SEEK_SET) >= 0 else {
            throw .copy(source: sourcePath, errno: errno)
        }
        while true {
            let n = read(src, scratch.baseAddress, scratch.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw .copy(source: sourcePath, errno: errno)
            }
            if n == 0 { return }
            var off = 0
            while off < n {
                let w = write(dst, scratch.baseAddress! + off, n - off)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw .store(path: path, operation: "writing to", errno: errno)
                }
                off += w
            }
        }
    }
}

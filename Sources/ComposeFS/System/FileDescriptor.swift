import CComposeFSShims
import Glibc

/// An open file descriptor. Every system call on files goes through here:
/// each is retried on EINTR in one place, fails with a typed `Errno`, and
/// asks `SystemFaults` first. Closing is explicit.
public struct FileDescriptor: Hashable, Sendable {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let standardInput = FileDescriptor(rawValue: 0)
    public static let standardOutput = FileDescriptor(rawValue: 1)
    public static let standardError = FileDescriptor(rawValue: 2)
    /// `AT_FDCWD`: names relative to it are relative to the working directory.
    public static let currentDirectory = FileDescriptor(rawValue: AT_FDCWD)

    /// How a file is opened for access (swift-system's names).
    public struct AccessMode: RawRepresentable, Sendable, Hashable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let readOnly = AccessMode(rawValue: O_RDONLY)
        public static let writeOnly = AccessMode(rawValue: O_WRONLY)
        public static let readWrite = AccessMode(rawValue: O_RDWR)
    }

    /// `open(2)` flags (swift-system's names; `path` and `temporaryFile`
    /// are Linux's `O_PATH` and `O_TMPFILE`). Every descriptor is opened
    /// close-on-exec.
    public struct OpenOptions: OptionSet, Sendable, Hashable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let append = OpenOptions(rawValue: O_APPEND)
        public static let create = OpenOptions(rawValue: O_CREAT)
        public static let truncate = OpenOptions(rawValue: O_TRUNC)
        public static let exclusiveCreate = OpenOptions(rawValue: O_EXCL)
        public static let noFollow = OpenOptions(rawValue: O_NOFOLLOW)
        public static let directory = OpenOptions(rawValue: O_DIRECTORY)
        public static let nonBlocking = OpenOptions(rawValue: O_NONBLOCK)
        public static let noControllingTerminal = OpenOptions(rawValue: O_NOCTTY)
        public static let path = OpenOptions(rawValue: cfs_o_path())
        public static let temporaryFile = OpenOptions(rawValue: cfs_o_tmpfile())
    }

    /// Calls `body` until it does not fail with EINTR: -1 and errno mean failure.
    @inline(__always)
    static func retrying<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = Errno.current
            if e != .interrupted { throw e }
        }
    }

    /// `openat(2)`; `relativeTo` nil means the working directory.
    /// `permissions` (before the umask) apply to a file it creates.
    public static func open(
        _ path: FilePath, _ mode: AccessMode, options: OpenOptions = [], permissions: mode_t = 0o666,
        relativeTo dir: FileDescriptor? = nil
    ) throws(Errno) -> FileDescriptor {
        try SystemFaults.check(.open, path, dir)
        let fd = try path.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try retrying { openat(dir?.rawValue ?? AT_FDCWD, p, mode.rawValue | options.rawValue | O_CLOEXEC, permissions) }
        }
        return FileDescriptor(rawValue: fd)
    }

    /// `close(2)`. The descriptor is gone afterwards whatever the result
    /// (not retried on EINTR); an error reports a deferred write failure,
    /// which matters for a file just written, not for one just read
    /// (`try?` there).
    public func close() throws(Errno) {
        try SystemFaults.check(.close, nil, self)
        if Glibc.close(rawValue) != 0 { throw Errno.current }
    }

    /// Runs `body`, then closes the descriptor (swift-system's name); an
    /// error of `body` wins over one of closing.
    public func closeAfter<R, E: Swift.Error>(_ body: () throws(E) -> R) throws(E) -> R {
        defer { try? close() }
        return try body()
    }

    /// A stream connection to the Unix-domain socket bound at `path`.
    public static func connect(socket path: FilePath) throws(Errno) -> FileDescriptor {
        try SystemFaults.check(.open, path, nil)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.bytes.count < capacity, !path.bytes.contains(0) else { throw Errno.fileNameTooLong }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.bytes)
        }
        let fd = FileDescriptor(rawValue: try retrying { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        // Not retried: a connect interrupted goes on in the background.
        let rc = withUnsafePointer(to: &address) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let e = Errno.current
            try? fd.close()
            throw e
        }
        return fd
    }

    /// `fcntl(F_GETFL)`: the access mode and status flags it was opened with.
    public func statusFlags() throws(Errno) -> Int32 {
        try Self.retrying { fcntl(rawValue, F_GETFL) }
    }

    /// `fcntl(F_SETFL)`: sets the status flags (`O_NONBLOCK`, …).
    public func setStatusFlags(_ flags: Int32) throws(Errno) {
        _ = try Self.retrying { fcntl(rawValue, F_SETFL, flags) }
    }

    /// Waits until the descriptor can be read (`poll(2)` for `POLLIN`;
    /// also returns on an error or hang-up, which the next read reports).
    public func waitUntilReadable() throws(Errno) {
        var p = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        _ = try Self.retrying { poll(&p, 1, -1) }
    }

    public func duplicate() throws(Errno) -> FileDescriptor {
        FileDescriptor(rawValue: try Self.retrying { fcntl(rawValue, F_DUPFD_CLOEXEC, 0) })
    }

    /// `/proc/self/fd/N`: the file itself, by a path any call accepts.
    public var procPath: FilePath { FilePath("/proc/self/fd/\(rawValue)") }

    // MARK: Reading and writing

    /// One `read(2)`: the byte count, 0 at the end.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try SystemFaults.check(.read, nil, self)
        return try Self.retrying { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// One `pread(2)` at `offset`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        try SystemFaults.check(.read, nil, self)
        return try Self.retrying { pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Up to `count` bytes at `offset` (fewer at the end of the file).
    public func read(count: Int, at offset: Int) throws(Errno) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        defer { buffer.deallocate() }
        let n = try readAll(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: offset)
        return Array(buffer[0..<n])
    }

    /// Reads at `offset` until `buffer` is full or the file ends; the count.
    public func readAll(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: offset + done)
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes every byte (short writes continue).
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(Errno) {
        var done = 0
        while done < bytes.count {
            try SystemFaults.check(.write, nil, self)
            done += try Self.retrying { Glibc.write(rawValue, bytes.baseAddress! + done, bytes.count - done) }
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        try withBytes(bytes) { (b: UnsafeRawBufferPointer) throws(Errno) in try writeAll(b) }
    }

    /// The file position (`lseek(2)` by 0 from the current one).
    public func position() throws(Errno) -> Int {
        Int(try Self.retrying { lseek(rawValue, 0, SEEK_CUR) })
    }

    /// `lseek(2)` with `whence` (`SEEK_DATA`, `SEEK_HOLE`, …): the new offset.
    public func seek(offset: Int64, whence: Int32) throws(Errno) -> Int64 {
        Int64(try Self.retrying { lseek(rawValue, off_t(offset), whence) })
    }

    public func seek(to offset: Int) throws(Errno) {
        _ = try Self.retrying { lseek(rawValue, off_t(offset), SEEK_SET) }
    }

    /// Moves the file position forward by `count` bytes (past the end it
    /// leaves a hole).
    public func seek(by count: Int) throws(Errno) {
        _ = try Self.retrying { lseek(rawValue, off_t(count), SEEK_CUR) }
    }

    /// `ftruncate(2)`.
    public func truncate(to length: Int) throws(Errno) {
        try SystemFaults.check(.write, nil, self)
        _ = try Self.retrying { ftruncate(rawValue, off_t(length)) }
    }

    // MARK: Metadata

    public func stat() throws(Errno) -> Glibc.stat {
        try SystemFaults.check(.stat, nil, self)
        var st = Glibc.stat()
        _ = try Self.retrying { fstat(rawValue, &st) }
        return st
    }

    /// `fstatat(2)` of `name` in this directory, symlinks not followed.
    public func stat(_ name: FilePath) throws(Errno) -> Glibc.stat {
        try SystemFaults.check(.stat, name, self)
        var st = Glibc.stat()
        _ = try name.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { fstatat(rawValue, p, &st, AT_SYMLINK_NOFOLLOW) }
        }
        return st
    }

    /// `fstatat(2)` of `name` in this directory, following symlinks.
    public func stat(following name: FilePath) throws(Errno) -> Glibc.stat {
        try SystemFaults.check(.stat, name, self)
        var st = Glibc.stat()
        _ = try name.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { fstatat(rawValue, p, &st, 0) }
        }
        return st
    }

    /// `fstatfs(2)`'s `f_type`: which kind of filesystem holds this file.
    public func filesystemType() throws(Errno) -> Int {
        try SystemFaults.check(.stat, nil, self)
        return try Self.retrying { cfs_filesystem_type(rawValue) }
    }

    /// `faccessat(2)` with the effective ids: whether this process may
    /// write `name` in this directory (following symlinks); the reason
    /// when it may not.
    public func checkWritable(_ name: FilePath) throws(Errno) {
        try SystemFaults.check(.stat, name, self)
        _ = try name.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { faccessat(rawValue, p, W_OK, AT_EACCESS) }
        }
    }

    /// The target of the symbolic link `name` in this directory.
    public func readLink(_ name: FilePath) throws(Errno) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let n = try withMutableBytes(&buffer) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try readLink(name, into: b) }
        guard n < buffer.count else { throw Errno.fileNameTooLong }
        return Array(buffer[0..<n])
    }

    /// `readlinkat(2)` of `name` in this directory into `buffer`; the length.
    public func readLink(_ name: FilePath, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try SystemFaults.check(.readLink, name, self)
        return try name.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { readlinkat(rawValue, p, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), buffer.count) }
        }
    }

    public func changeMode(_ mode: mode_t) throws(Errno) {
        try SystemFaults.check(.chmod, nil, self)
        _ = try Self.retrying { fchmod(rawValue, mode) }
    }

    public func changeOwner(user: uid_t, group: gid_t) throws(Errno) {
        try SystemFaults.check(.chmod, nil, self)
        _ = try Self.retrying { fchown(rawValue, user, group) }
    }

    // MARK: Durability

    public func sync() throws(Errno) {
        try SystemFaults.check(.sync, nil, self)
        _ = try Self.retrying { fsync(rawValue) }
    }

    /// `syncfs(2)`: everything of the filesystem holding this file.
    public func syncFilesystem() throws(Errno) {
        try SystemFaults.check(.sync, nil, self)
        _ = try Self.retrying { cfs_syncfs(rawValue) }
    }

    /// `flock(2)`; with `wait` false, EWOULDBLOCK when another holds it.
    public func lock(exclusive: Bool, wait: Bool = true) throws(Errno) {
        try SystemFaults.check(.lock, nil, self)
        let op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)
        _ = try Self.retrying { flock(rawValue, op) }
    }

    // MARK: Names in a directory

    public func makeDirectory(_ name: FilePath, mode: mode_t) throws(Errno) {
        try SystemFaults.check(.mkdir, name, self)
        _ = try name.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { mkdirat(rawValue, p, mode) }
        }
    }

    public func unlink(_ name: FilePath, directory: Bool = false) throws(Errno) {
        try SystemFaults.check(.unlink, name, self)
        _ = try name.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { unlinkat(rawValue, p, directory ? AT_REMOVEDIR : 0) }
        }
    }

    /// Renames `from` in this directory to `to` in `directory`.
    public func rename(_ from: FilePath, to: FilePath, in directory: FileDescriptor) throws(Errno) {
        try SystemFaults.check(.rename, to, directory)
        _ = try from.withCString { (f: UnsafePointer<CChar>) throws(Errno) in
            try to.withCString { (t: UnsafePointer<CChar>) throws(Errno) in
                try Self.retrying { renameat(rawValue, f, directory.rawValue, t) }
            }
        }
    }

    /// Renames `from` in this directory to `to` in `directory`, failing
    /// with EEXIST instead of replacing what is there (EINVAL where the
    /// filesystem cannot promise that).
    public func renameNoReplace(_ from: FilePath, to: FilePath, in directory: FileDescriptor) throws(Errno) {
        try SystemFaults.check(.rename, to, directory)
        _ = try from.withCString { (f: UnsafePointer<CChar>) throws(Errno) in
            try to.withCString { (t: UnsafePointer<CChar>) throws(Errno) in
                try Self.retrying { cfs_rename_noreplace(rawValue, f, directory.rawValue, t) }
            }
        }
    }

    /// A second name, `to` in `directory`, for the file `from` in this
    /// directory (EEXIST when `to` exists).
    public func link(_ from: FilePath, to: FilePath, in directory: FileDescriptor) throws(Errno) {
        try SystemFaults.check(.link, to, directory)
        _ = try from.withCString { (f: UnsafePointer<CChar>) throws(Errno) in
            try to.withCString { (t: UnsafePointer<CChar>) throws(Errno) in
                try Self.retrying { linkat(rawValue, f, directory.rawValue, t, 0) }
            }
        }
    }

    /// Gives this open file (an anonymous `O_TMPFILE` one, say) the name
    /// `name` in `directory`.
    public func link(as name: FilePath, in directory: FileDescriptor?) throws(Errno) {
        try SystemFaults.check(.link, name, directory)
        _ = try procPath.withCString { (src: UnsafePointer<CChar>) throws(Errno) in
            try name.withCString { (dst: UnsafePointer<CChar>) throws(Errno) in
                try Self.retrying { linkat(AT_FDCWD, src, directory?.rawValue ?? AT_FDCWD, dst, AT_SYMLINK_FOLLOW) }
            }
        }
    }

    // MARK: Copies

    /// Shares `source`'s extents (a reflink).
    public func cloneContents(of source: FileDescriptor) throws(Errno) {
        try SystemFaults.check(.copy, nil, self)
        _ = try Self.retrying { cfs_ficlone(rawValue, source.rawValue) }
    }

    /// One `copy_file_range(2)` from the current offsets: bytes copied.
    public func copyRange(from source: FileDescriptor, length: Int) throws(Errno) -> Int {
        try SystemFaults.check(.copy, nil, self)
        return try Self.retrying { cfs_copy_file_range(source.rawValue, rawValue, length) }
    }
}

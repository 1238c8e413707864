import Glibc

/// Whole-file reads and crash-safe writes, with errno-carrying errors.
public enum FileIO {
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public var operation: String
        public var path: String
        public var errno: Int32

        public init(_ operation: String, _ path: String, _ errno: Int32) {
            self.operation = operation
            self.path = path
            self.errno = errno
        }

        public var strerror: String { errnoDescription(errno) }
        public var description: String { "\(operation) '\(path)': \(strerror)" }
    }

    /// Reads a whole file; `-` reads standard input.
    public static func read(path: String) throws(Error) -> [UInt8] {
        if path == "-" { return try read(fd: 0, path: "<stdin>") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error("cannot open", path, errno) }
        defer { close(fd) }
        return try read(fd: fd, path: path)
    }

    public static func read(fd: Int32, path: String) throws(Error) -> [UInt8] {
        var st = stat()
        var capacity = 1 << 16
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 {
            capacity = Int(st.st_size) + 1
        }
        var out = [UInt8]()
        out.reserveCapacity(capacity)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Error("cannot read", path, errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Writes all bytes to `fd`, retrying short writes.
    public static func write(fd: Int32, _ bytes: [UInt8], path: String) throws(Error) {
        try bytes.withUnsafeBufferPointer { (buf: UnsafeBufferPointer<UInt8>) throws(Error) in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Error("cannot write", path, errno)
                }
                off += n
            }
        }
    }

    /// Creates `path` with `bytes`, all or nothing: the data goes to a
    /// temporary file in the same directory, is synced, and is renamed over
    /// `path` only when complete. On failure nothing is left behind.
    /// The file gets mode 0666 minus the umask, as fopen(3) would give it.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws(Error) {
        let (fd, temp) = try createTemporary(beside: path)
        do throws(Error) {
            try write(fd: fd, bytes, path: path)
            guard fsync(fd) == 0 else { throw Error("cannot write", path, errno) }
            guard close(fd) == 0 else {
                unlink(temp)
                throw Error("cannot write", path, errno)
            }
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        guard rename(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            throw Error("cannot write", path, e)
        }
    }

    /// An exclusive new file `.NAME.XXXXXX` next to `path`.
    static func createTemporary(beside path: String) throws(Error) -> (Int32, String) {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        for _ in 0..<100 {
            var suffix = ""
            for _ in 0..<8 { suffix.append(letters.randomElement()!) }
            let temp = "\(dir).\(base).\(suffix).tmp"
            let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 { return (fd, temp) }
            if errno != EEXIST { throw Error("cannot create", path, errno) }
        }
        throw Error("cannot create", path, EEXIST)
    }
}

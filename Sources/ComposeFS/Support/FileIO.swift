import CComposeFSShims
import Glibc

/// Complete writes and crash-safe output files, with errno-carrying errors.
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

    /// A file that appears at its path complete or not at all: the data goes
    /// to a temporary file in the same directory, is synced, and is renamed
    /// over the path by `commit()`. Dropped without `commit()`, it leaves
    /// nothing behind. The file gets mode 0666 minus the umask, as fopen(3)
    /// would give it.
    public final class AtomicFile {
        public let path: String
        /// The named temporary file; nil while the data is in an anonymous
        /// (`O_TMPFILE`) file, which a killed run cannot leave behind.
        var temp: String?
        var fd: Int32

        public init(path: String) throws(Error) {
            self.path = path
            let slash = path.lastIndex(of: "/")
            let dir = slash.map { path[...$0].isEmpty ? "/" : String(path[...$0]) } ?? "."
            let anonymous = open(dir, cfs_o_tmpfile() | O_WRONLY | O_CLOEXEC, 0o666)
            if anonymous >= 0 {
                fd = anonymous
                temp = nil
            } else {
                let (named, name) = try FileIO.createTemporary(beside: path)
                fd = named
                temp = name
            }
        }

        deinit { abort() }

        public func write(_ bytes: [UInt8]) throws(Error) {
            try FileIO.write(fd: fd, bytes, path: path)
        }

        public func commit() throws(Error) {
            guard fd >= 0 else { throw Error("cannot write", path, EBADF) }
            guard fsync(fd) == 0 else { throw Error("cannot write", path, errno) }
            if temp == nil {
                // Give the anonymous file a name only for the rename.
                for _ in 0..<100 {
                    let name = FileIO.temporaryName(beside: path)
                    if linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0 {
                        temp = name
                        break
                    }
                    if errno != EEXIST { throw Error("cannot write", path, errno) }
                }
                guard temp != nil else { throw Error("cannot write", path, EEXIST) }
            }
            let named = temp!
            let rc = close(fd)
            fd = -1
            guard rc == 0 else {
                let e = errno
                unlink(named)
                throw Error("cannot write", path, e)
            }
            guard rename(named, path) == 0 else {
                let e = errno
                unlink(named)
                throw Error("cannot write", path, e)
            }
        }

        /// Removes the temporary file (a no-op after `commit()`).
        public func abort() {
            guard fd >= 0 else { return }
            close(fd)
            fd = -1
            if let temp { unlink(temp) }
        }
    }

    /// `.NAME.XXXXXXXX.tmp` next to `path`.
    static func temporaryName(beside path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var suffix = ""
        for _ in 0..<8 { suffix.append(letters.randomElement()!) }
        return "\(dir).\(base).\(suffix).tmp"
    }

    /// An exclusive new file next to `path` (where O_TMPFILE is unavailable).
    static func createTemporary(beside path: String) throws(Error) -> (Int32, String) {
        for _ in 0..<100 {
            let temp = temporaryName(beside: path)
            let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 { return (fd, temp) }
            if errno != EEXIST { throw Error("cannot create", path, errno) }
        }
        throw Error("cannot create", path, EEXIST)
    }
}

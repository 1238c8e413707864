import Glibc

/// Complete writes and crash-safe output files.
public enum FileIO {
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public enum Operation: String, Sendable {
            case write = "cannot write"
            case create = "cannot create"
        }

        public var operation: Operation
        public var path: FilePath
        public var errno: Errno

        public init(_ operation: Operation, _ path: FilePath, _ errno: Errno) {
            self.operation = operation
            self.path = path
            self.errno = errno
        }

        public var description: String { "\(operation.rawValue) '\(path)': \(errno)" }
    }

    /// Writes all bytes to `fd`, retrying short writes.
    public static func write(_ fd: FileDescriptor, _ bytes: [UInt8], path: FilePath) throws(Error) {
        do { try fd.writeAll(bytes) } catch { throw Error(.write, path, error) }
    }

    /// A file that appears at its path complete or not at all: the data goes
    /// to a temporary file in the same directory, is synced, and is renamed
    /// over the path by `commit()`. Dropped without `commit()`, it leaves
    /// nothing behind. The file gets mode 0666 minus the umask, as fopen(3)
    /// would give it.
    public final class AtomicFile {
        public let path: FilePath
        /// The named temporary file; nil while the data is in an anonymous
        /// (`O_TMPFILE`) file, which a killed run cannot leave behind.
        var temp: FilePath?
        var fd: FileDescriptor?

        public init(path: FilePath) throws(Error) {
            self.path = path
            if let anonymous = try? FileDescriptor.open(path.directory, FileDescriptor.temporaryFile | O_WRONLY, mode: 0o666) {
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
            guard let fd else { throw Error(.write, path, .badFileDescriptor) }
            try FileIO.write(fd, bytes, path: path)
        }

        public func commit() throws(Error) {
            guard let fd else { throw Error(.write, path, .badFileDescriptor) }
            do throws(Errno) {
                try fd.sync()
                if temp == nil {
                    // Give the anonymous file a name only for the rename.
                    for _ in 0..<100 where temp == nil {
                        let name = FileIO.temporaryName(beside: path)
                        do {
                            try fd.link(as: name, in: nil)
                            temp = name
                        } catch where error == .fileExists {
                            continue
                        }
                    }
                    guard temp != nil else { throw Errno.fileExists }
                }
            } catch {
                throw Error(.write, path, error)
            }
            let named = temp!
            let rc = Glibc.close(fd.rawValue)
            let closeError = Errno.current
            self.fd = nil
            let cwd = FileDescriptor(rawValue: AT_FDCWD)
            guard rc == 0 else {
                try? cwd.unlink(named)
                throw Error(.write, path, closeError)
            }
            do { try cwd.rename(named, to: path, in: cwd) } catch {
                try? cwd.unlink(named)
                throw Error(.write, path, error)
            }
        }

        /// Removes the temporary file (a no-op after `commit()`).
        public func abort() {
            guard let fd else { return }
            fd.close()
            self.fd = nil
            if let temp { try? FileDescriptor(rawValue: AT_FDCWD).unlink(temp) }
        }
    }

    /// `.NAME.XXXXXXXX.tmp` next to `path`.
    static func temporaryName(beside path: FilePath) -> FilePath {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        let name = [UInt8(ascii: ".")] + path.lastComponent + [UInt8(ascii: ".")]
            + (0..<8).map { _ in letters.randomElement()! } + Array(".tmp".utf8)
        let slash = path.bytes.lastIndex(of: UInt8(ascii: "/"))
        return FilePath(bytes: slash.map { Array(path.bytes[...$0]) + name } ?? name)
    }

    /// Whether a file name has the form of `temporaryName(beside:)`.
    static func isTemporaryName(_ name: [UInt8]) -> Bool {
        let suffix = Array(".tmp".utf8)
        return name.count > 14 && name.first == UInt8(ascii: ".") && name.suffix(4).elementsEqual(suffix)
            && name[name.count - 13] == UInt8(ascii: ".")
    }

    /// An exclusive new file next to `path` (where O_TMPFILE is unavailable).
    static func createTemporary(beside path: FilePath) throws(Error) -> (FileDescriptor, FilePath) {
        for _ in 0..<100 {
            let temp = temporaryName(beside: path)
            do {
                return (try FileDescriptor.open(temp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o666), temp)
            } catch where error == .fileExists {
                continue
            } catch {
                throw Error(.create, path, error)
            }
        }
        throw Error(.create, path, .fileExists)
    }
}

import Glibc

/// A file the user named for output (`mkcomposefs ... IMAGE`), written the
/// way its target calls for. How is decided once, here, from what the path
/// resolves to (symbolic links followed, as `fopen(3)` follows them), never
/// from its spelling:
///
/// - A new file, or an existing regular file in a directory this process
///   can write: the data goes to a temporary file beside the final one (the
///   symbolic link's target, not the link), which is synced and renamed
///   over it only when complete. Nothing is ever half written; an existing
///   file keeps its mode (and, for root, its owner).
/// - Everything else is written in place, with no rename and no new
///   directory entry, as upstream's `fopen(path, "we")` writes: standard
///   output (`-`); a descriptor's file (`/proc/self/fd/N`, `/dev/fd/N`,
///   `/dev/stdout`: any path through a `/proc` magic link), so that the
///   caller's descriptors still refer to the image; character and block
///   devices, FIFOs and sockets; and an existing regular file whose
///   directory cannot be written. Writing in place truncates (as "w"
///   does), and a failure truncates a regular file back to zero length.
///   Callers write in place only once the whole image is ready, so a
///   reader of a pipe or device never sees a valid-looking prefix.
public final class OutputFile {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case open(path: FilePath, errno: Errno)
        case write(path: FilePath, errno: Errno)

        public var errno: Errno {
            switch self {
            case .open(_, let e), .write(_, let e): e
            }
        }

        public var description: String {
            switch self {
            case .open(let path, let e): "failed to open output file \(path): \(e)"
            case .write(let path, let e): "cannot write file \(path): \(e)"
            }
        }
    }

    /// What the output path turned out to be.
    public enum Target: Equatable, Sendable, CustomStringConvertible {
        /// A regular file, new or existing, replaced whole at this path
        /// (the end of any symbolic links).
        case replacedFile(FilePath)
        /// Standard output (`-`).
        case standardOutput
        /// The file an open descriptor refers to, reached through a `/proc`
        /// magic link (`/proc/self/fd/N`, `/dev/fd/N`, `/dev/stdout`).
        case descriptor
        /// An existing regular file whose directory this process cannot write.
        case fileInPlace
        case characterDevice, blockDevice, fifo, socket

        /// Written where it is (no temporary file, no rename).
        public var isInPlace: Bool {
            if case .replacedFile = self { return false }
            return true
        }

        public var description: String {
            switch self {
            case .replacedFile(let p): "a new file renamed over \(p)"
            case .standardOutput: "standard output"
            case .descriptor: "an open descriptor's file"
            case .fileInPlace: "an existing file, in place"
            case .characterDevice: "a character device"
            case .blockDevice: "a block device"
            case .fifo: "a FIFO"
            case .socket: "a socket"
            }
        }
    }

    /// The path as the user gave it (`-` for standard output).
    public let path: FilePath
    public let target: Target
    private var fd: FileDescriptor?
    /// The temporary file's name while it has one (none for an anonymous
    /// `O_TMPFILE` file, which a killed run cannot leave behind).
    private var temporary: FilePath?
    /// For a regular file written in place, the length a failure truncates
    /// it back to (zero, or where standard output started).
    private var restoreLength: Int? = nil
    private var finished = false

    /// Opens the output at `path` (`-`: standard output; a terminal there
    /// is refused by the caller, as upstream refuses it).
    public init(_ path: FilePath) throws(Error) {
        self.path = path
        if path == "-" {
            target = .standardOutput
            fd = .standardOutput
            restoreLength = Self.writingStart(.standardOutput)
            return
        }
        let resolved: Resolved
        do { resolved = try Self.resolve(path) } catch { throw .open(path: path, errno: error) }
        switch resolved {
        case .regular(let final, let existing):
            // A file this process may not write is refused, as opening it
            // for writing would refuse it.
            if existing != nil {
                do { try FileDescriptor.currentDirectory.checkWritable(final) } catch { throw .open(path: path, errno: error) }
            }
            do throws(Errno) {
                // A sticky directory (/tmp) lets only a file's owner replace it.
                if let existing, Self.stickyForbidsReplacing(existing, in: final.directory) { throw Errno.notPermitted }
                (fd, temporary) = try Self.createTemporary(beside: final, like: existing)
                target = .replacedFile(final)
            } catch let error where existing != nil && Self.refusedDirectory.contains(error) {
                target = .fileInPlace
                fd = try Self.openInPlace(path)
                restoreLength = 0
            } catch {
                throw .open(path: path, errno: error)
            }
        case .special(let kind):
            target = kind
            fd = kind == .socket ? try Self.connect(path) : try Self.openInPlace(path)
        case .descriptor(let link):
            target = .descriptor
            (fd, restoreLength) = try Self.openDescriptorFile(path, link: link)
        }
    }

    deinit { discard() }

    /// What a directory answers when a new file or a rename there is not
    /// allowed: an existing file in it is then written in place.
    static let refusedDirectory: Set<Errno> = [.permissionDenied, .notPermitted, .readOnlyFileSystem]

    /// Writes every byte of `bytes`.
    public func write(_ bytes: [UInt8]) throws(Error) {
        guard let fd else { throw .write(path: path, errno: .badFileDescriptor) }
        do { try fd.writeAll(bytes) } catch { throw .write(path: path, errno: error) }
    }

    /// The output is complete: a temporary file is synced and renamed into
    /// place; a file written in place is synced and closed.
    public func commit() throws(Error) {
        guard let fd, !finished else { throw .write(path: path, errno: .badFileDescriptor) }
        switch target {
        case .replacedFile(let final):
            do throws(Errno) {
                try fd.sync()
                // An anonymous file gets a name only for the rename.
                if temporary == nil { temporary = try Self.link(fd, beside: final) }
                self.fd = nil
                try fd.close()
                try FileDescriptor.currentDirectory.rename(temporary!, to: final, in: .currentDirectory)
                temporary = nil
                // The new name durable too: once this returns, a power cut
                // cannot take the image back. Where a directory cannot be
                // opened or synced (no read permission, a filesystem that
                // answers EINVAL) only an I/O error counts.
                do {
                    let dir = try FileDescriptor.open(final.directory, .readOnly, options: [.directory])
                    defer { try? dir.close() }
                    try dir.sync()
                } catch let error where error != .ioError {}
            } catch {
                throw .write(path: path, errno: error)
            }
        case .standardOutput:
            // Standard output stays open for what follows (a digest).
            if restoreLength != nil { try syncInPlace(fd) }
        default:
            if restoreLength != nil { try syncInPlace(fd) }
            self.fd = nil
            do { try fd.close() } catch { throw .write(path: path, errno: error) }
        }
        finished = true
    }

    private func syncInPlace(_ fd: FileDescriptor) throws(Error) {
        do { try fd.sync() } catch let error where error != .invalidArgument {
            throw .write(path: path, errno: error)
        } catch {}
    }

    /// The output failed: a temporary file is removed, a regular file
    /// written in place truncated to zero length. A no-op after `commit()`.
    public func discard() {
        guard !finished else { return }
        finished = true
        if let restoreLength, let fd { try? fd.truncate(to: restoreLength) }
        if let fd, target != .standardOutput { try? fd.close() }
        fd = nil
        if let temporary { try? FileDescriptor.currentDirectory.unlink(temporary) }
        temporary = nil
    }

    // MARK: Resolving the path

    enum Resolved {
        /// A regular file at this path (no symbolic link), and its status
        /// when it exists.
        case regular(FilePath, stat?)
        case special(Target)
        /// A `/proc` magic link (this path): only the kernel knows what it
        /// refers to.
        case descriptor(FilePath)
    }

    /// Follows symbolic links by name, as the kernel does, to what `path`
    /// names; stops at a `/proc` magic link, whose target is an open file
    /// rather than a name.
    static func resolve(_ path: FilePath) throws(Errno) -> Resolved {
        let cwd = FileDescriptor.currentDirectory
        guard !path.isEmpty else { throw Errno.noSuchFileOrDirectory }
        var current = path
        for _ in 0..<40 {   // the kernel's limit on links followed (MAXSYMLINKS)
            let st: stat
            do { st = try cwd.stat(current) } catch let error where error == .noSuchFileOrDirectory {
                // A new file; a trailing slash asks for a directory.
                if current.bytes.last == UInt8(ascii: "/") { throw Errno.isDirectory }
                return .regular(current, nil)
            }
            switch st.st_mode & S_IFMT {
            case S_IFLNK:
                if try isProcLink(current) { return .descriptor(current) }
                let target = try cwd.readLink(current)
                current = target.first == UInt8(ascii: "/") ? FilePath(bytes: target) : current.directory.appending(target)
            case S_IFREG: return .regular(current, st)
            case S_IFDIR: throw Errno.isDirectory
            case S_IFCHR: return .special(.characterDevice)
            case S_IFBLK: return .special(.blockDevice)
            case S_IFIFO: return .special(.fifo)
            case S_IFSOCK: return .special(.socket)
            default: throw Errno.invalidArgument
            }
        }
        throw Errno.tooManySymbolicLinkLevels
    }

    /// Whether the symbolic link at `path` lives in procfs (`/proc/self/fd/N`
    /// and its kin): following it by name would miss deleted files, pipes
    /// and files of other mount namespaces.
    static func isProcLink(_ path: FilePath) throws(Errno) -> Bool {
        let link = try FileDescriptor.open(path, .readOnly, options: [.path, .noFollow])
        defer { try? link.close() }
        return try link.filesystemType() == procSuperMagic
    }

    static let procSuperMagic = 0x9fa0

    /// Whether `directory` is sticky and neither it nor the file belongs to
    /// this process's user (who is not root): a rename over the file would
    /// then be refused.
    static func stickyForbidsReplacing(_ file: stat, in directory: FilePath) -> Bool {
        let me = CurrentProcess.effectiveUserID
        guard me != 0, file.st_uid != me, let dir = try? FileDescriptor.currentDirectory.stat(following: directory) else { return false }
        return dir.st_mode & S_ISVTX != 0 && dir.st_uid != me
    }

    static func isRegularFile(_ fd: FileDescriptor) -> Bool {
        ((try? fd.stat().st_mode & S_IFMT) ?? 0) == S_IFREG
    }

    /// Where writes to the descriptor `fd`, open already, start in its
    /// file: its end when it appends (`>>`), else its position. Nil when
    /// it is not a regular file. Only what this run adds goes on failure.
    static func writingStart(_ fd: FileDescriptor) -> Int? {
        guard let st = try? fd.stat(), st.st_mode & S_IFMT == S_IFREG else { return nil }
        if let flags = try? fd.statusFlags(), flags & O_APPEND != 0 { return Int(st.st_size) }
        return try? fd.position()
    }

    // MARK: Opening

    /// As `fopen(path, "we")` opens it.
    static func openInPlace(_ path: FilePath) throws(Error) -> FileDescriptor {
        do { return try .open(path, .writeOnly, options: [.create, .truncate]) } catch { throw .open(path: path, errno: error) }
    }

    /// A descriptor's file: reopened through its magic link `link` (reached
    /// from `path`) as upstream reopens it (truncated, written from its
    /// start); where that is refused (a sandboxed user handed a descriptor
    /// to a file it may not open, a socket, which cannot be opened by path)
    /// and `link` is one of this process's own descriptors open for writing,
    /// a duplicate of it, written from its position as standard output is.
    /// Returns the descriptor and where a failure truncates a regular file
    /// back to.
    static func openDescriptorFile(_ path: FilePath, link: FilePath) throws(Error) -> (FileDescriptor, Int?) {
        do {
            let fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate])
            return (fd, isRegularFile(fd) ? 0 : nil)
        } catch let error where [.permissionDenied, .notPermitted, .noSuchAddressOrDevice, .readOnlyFileSystem].contains(error) {
            guard let own = ownDescriptor(link), let flags = try? own.statusFlags(),
                flags & O_ACCMODE == O_WRONLY || flags & O_ACCMODE == O_RDWR
            else { throw .open(path: path, errno: error) }
            do {
                let fd = try own.duplicate()
                return (fd, writingStart(fd))
            } catch {
                throw .open(path: path, errno: error)
            }
        } catch {
            throw .open(path: path, errno: error)
        }
    }

    /// N of `/proc/self/fd/N` or `/dev/fd/N`, when `path` names one of this
    /// process's descriptors.
    static func ownDescriptor(_ path: FilePath) -> FileDescriptor? {
        for prefix in ["/proc/self/fd/", "/dev/fd/", "/proc/\(CurrentProcess.id)/fd/"] {
            let p = Array(prefix.utf8)
            guard path.bytes.starts(with: p), let n = Int32(String(decoding: path.bytes.dropFirst(p.count), as: UTF8.self)),
                n >= 0
            else { continue }
            return FileDescriptor(rawValue: n)
        }
        return nil
    }

    static func connect(_ path: FilePath) throws(Error) -> FileDescriptor {
        do { return try .connect(socket: path) } catch { throw .open(path: path, errno: error) }
    }

    /// A new file in the directory of `final`: anonymous (`O_TMPFILE`) where
    /// the filesystem has it, else `.NAME.XXXXXXXX.tmp`. It gets the mode
    /// (and for root the owner) of `existing`, the file it will replace.
    static func createTemporary(beside final: FilePath, like existing: stat?) throws(Errno) -> (FileDescriptor, FilePath?) {
        let (fd, name): (FileDescriptor, FilePath?)
        do {
            fd = try FileDescriptor.open(final.directory, .writeOnly, options: [.temporaryFile], permissions: 0o666)
            name = nil
        } catch let error where error == .notSupported || error == .isDirectory || error == .invalidArgument {
            (fd, name) = try createNamed(beside: final)
        }
        if let existing {
            do throws(Errno) {
                try fd.changeMode(existing.st_mode & 0o777)
                if CurrentProcess.effectiveUserID == 0 { try fd.changeOwner(user: existing.st_uid, group: existing.st_gid) }
            } catch {
                try? fd.close()
                if let name { try? FileDescriptor.currentDirectory.unlink(name) }
                throw error
            }
        }
        return (fd, name)
    }

    static func createNamed(beside final: FilePath) throws(Errno) -> (FileDescriptor, FilePath) {
        for _ in 0..<100 {
            let name = temporaryName(beside: final)
            do {
                return (try FileDescriptor.open(name, .writeOnly, options: [.create, .exclusiveCreate], permissions: 0o666), name)
            } catch let error where error == .fileExists {
                continue
            }
        }
        throw Errno.fileExists
    }

    /// Gives the anonymous file `fd` a temporary name beside `final`.
    static func link(_ fd: FileDescriptor, beside final: FilePath) throws(Errno) -> FilePath {
        for _ in 0..<100 {
            let name = temporaryName(beside: final)
            do {
                try fd.link(as: name, in: nil)
                return name
            } catch let error where error == .fileExists {
                continue
            }
        }
        throw Errno.fileExists
    }

    /// `.NAME.XXXXXXXX.tmp` next to `path`.
    static func temporaryName(beside path: FilePath) -> FilePath {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        let name =
            [UInt8(ascii: ".")] + path.lastComponent + [UInt8(ascii: ".")]
            + (0..<8).map { _ in letters.randomElement()! } + Array(".tmp".utf8)
        let slash = path.bytes.lastIndex(of: UInt8(ascii: "/"))
        return FilePath(bytes: slash.map { Array(path.bytes[...$0]) + name } ?? name)
    }

    /// Whether a file name has the form of `temporaryName(beside:)`.
    public static func isTemporaryName(_ name: [UInt8]) -> Bool {
        let suffix = Array(".tmp".utf8)
        return name.count > 14 && name.first == UInt8(ascii: ".") && name.suffix(4).elementsEqual(suffix)
            && name[name.count - 13] == UInt8(ascii: ".")
    }
}

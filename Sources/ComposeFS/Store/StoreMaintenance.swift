import Glibc

/// Keeping an object store over many images: which objects the images
/// need, garbage collection, checking, and what each image costs.
public enum StoreMaintenance {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case store(ObjectStore.Error)
        case image(path: FilePath, ImageReader.Error)
        case access(path: FilePath, errno: Errno)
        /// `--no-wait` and a writer holds the store.
        case busy(store: FilePath)

        public var description: String {
            switch self {
            case .store(let e): "\(e)"
            case .image(let path, let e): "cannot read image \(path): \(e)"
            case .access(let path, let e): "\(path): \(e)"
            case .busy(let store): "\(store) is in use (a writer holds its lock); not waiting"
            }
        }
    }

    // MARK: Roots

    /// Images found among paths, and what was passed over.
    public struct Roots: Sendable {
        public var images: [FilePath] = []
        /// Files that are not composefs images, and directory symlinks.
        public var skipped: [(path: FilePath, reason: String)] = []
    }

    /// The given paths as roots: a file is an image (an error if it is
    /// not one); a directory is searched recursively for images, and the
    /// files there that are not images are named and skipped. A symlink to
    /// a file counts as that file; symlinked directories are not entered.
    public static func findImages(_ paths: [FilePath]) throws(Error) -> Roots {
        var roots = Roots()
        let cwd = FileDescriptor(rawValue: AT_FDCWD)
        for path in paths {
            let st: stat
            do { st = try cwd.stat(path) } catch { throw .access(path: path, errno: error) }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                try search(path, into: &roots)
            } else {
                roots.images.append(path)   // read (and checked) later
            }
        }
        return roots
    }

    private static func search(_ dir: FilePath, into roots: inout Roots) throws(Error) {
        var pending = [dir]
        while let d = pending.popLast() {
            var names: [[UInt8]] = []
            do {
                var stream = try DirectoryStream(try .open(d, .readOnly, options: [.directory, .noFollow]))
                while let name = try stream.next() { names.append(Array(name)) }
            } catch {
                throw .access(path: d, errno: error)
            }
            names.sort { compareBytes($0, $1) < 0 }
            for name in names {
                let path = d.appending(name)
                guard let st = try? FileDescriptor(rawValue: AT_FDCWD).stat(path) else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    pending.append(path)
                case S_IFREG where OutputFile.isTemporaryName(name):
                    roots.skipped.append((path, "a temporary file (being written, or left by a run that died)"))
                case S_IFREG:
                    if isImage(path) { roots.images.append(path) } else { roots.skipped.append((path, "not a composefs image")) }
                case S_IFLNK:
                    if let target = try? FileDescriptor.open(path, .readOnly), let tst = try? target.stat() {
                        defer { try? target.close() }
                        if (tst.st_mode & S_IFMT) == S_IFREG && isImage(path) {
                            roots.images.append(path)
                        } else {
                            roots.skipped.append(
                                (path, (tst.st_mode & S_IFMT) == S_IFDIR ? "symlink to a directory" : "not a composefs image"))
                        }
                    } else {
                        roots.skipped.append((path, "dangling symlink"))
                    }
                default:
                    roots.skipped.append((path, "not a composefs image"))
                }
            }
        }
    }

    /// Whether `path` starts with a composefs header.
    static func isImage(_ path: FilePath) -> Bool {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return false }
        defer { try? fd.close() }
        var header = [UInt8](repeating: 0, count: ComposefsHeader.size)
        let n = try? withMutableBytes(&header) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try fd.readAll(into: b, at: 0) }
        guard n == ComposefsHeader.size, let h = try? ImageReader.header(header) else { return false }
        return h.magic == ComposefsHeader.magic
    }

    /// The objects an image refers to (its regular files' payloads that
    /// name objects). The whole image is read and checked: a damaged one
    /// is an error.
    public static func objects(of image: FilePath) throws(Error) -> Set<ObjectID> {
        let fd: FileDescriptor
        let size: Int
        do throws(Errno) {
            fd = try .open(image, .readOnly)
            do { size = Int(try fd.stat().st_size) } catch {
                try? fd.close()
                throw error
            }
        } catch {
            throw .access(path: image, errno: error)
        }
        defer { try? fd.close() }
        var out = Set<ObjectID>()
        let reader: ByteReader
        do { reader = try ByteReader(readingAll: fd, size: size) } catch { throw .image(path: image, .truncated(error)) }
        do {
            try ImageReader.walk(reader) { entry in
                if entry.hardlinkTarget == nil, entry.node.fileType == .regular,
                    let p = entry.node.payload, let id = ObjectID(path: p)
                {
                    out.insert(id)
                }
            }
        } catch {
            throw .image(path: image, error)
        }
        return out
    }

    /// `objects(of:)` of every image, on up to `threads` threads; the
    /// first error (in image order) is thrown.
    public static func objects(of images: [FilePath], threads: Int = CurrentProcess.availableCPUs)
        throws(Error) -> [Set<ObjectID>]
    {
        try objects(of: images, threads: threads, removedIsGone: false).map { $0 ?? [] }
    }

    /// As `objects(of:threads:)`; with `removedIsGone`, an image removed
    /// since it was found (ENOENT when it is opened) gives nil instead of
    /// an error.
    static func objects(of images: [FilePath], threads: Int = CurrentProcess.availableCPUs, removedIsGone: Bool)
        throws(Error) -> [Set<ObjectID>?]
    {
        let results = Locked<[Result<Set<ObjectID>, Error>?]>(Array(repeating: nil, count: images.count))
        Parallel.forEach(count: images.count, threads: threads) { i, _ in
            let r: Result<Set<ObjectID>, Error>
            do throws(Error) { r = .success(try objects(of: images[i])) } catch { r = .failure(error) }
            results.withLock { $0[i] = r }
        }
        var out: [Set<ObjectID>?] = []
        for r in results.withLock({ $0 }) {
            switch r! {
            case .success(let s): out.append(s)
            case .failure(.access(_, let e)) where removedIsGone && e == .noSuchFileOrDirectory: out.append(nil)
            case .failure(let e): throw e
            }
        }
        return out
    }
}

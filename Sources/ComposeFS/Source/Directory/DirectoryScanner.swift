import Glibc
import Synchronization

/// Builds a tree from a real directory, as `mkcomposefs SOURCEDIR` does
/// (FORMAT.md §19.2): `lstat` semantics (symlinks are never followed),
/// xattrs of every readable namespace, files of 1 to 64 bytes inlined,
/// larger ones named by their fs-verity digest and optionally copied into
/// an object store. Like the reference, hardlinks are not detected and
/// every file gets nlink 1.
public enum DirectoryScanner {
    public struct Options: Sendable {
        public var useEpoch = false
        public var skipDevices = false
        public var skipXattrs = false
        public var userXattrsOnly = false
        public var threads = DirectoryScanner.defaultThreadCount
        public var digestStore: FilePath? = nil
        /// Called from worker threads with (files done, bytes done) as the
        /// file pass goes on.
        public var progress: (@Sendable (Int, UInt64) -> Void)? = nil

        public init() {}
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case access(path: FilePath, errno: Errno)
        case invalidOptions(source: FilePath)
        case xattr(path: FilePath, Node.Error)
        case changed(path: FilePath, expected: UInt64, found: UInt64)
        case digest(path: FilePath, errno: Errno)
        case store(ObjectStore.Error)

        public var description: String {
            switch self {
            case .access(let p, let e): "error accessing \(p): \(e)"
            case .invalidOptions(let source):
                "error accessing \(source): \(Errno.invalidArgument) (skipping xattrs and reading only user xattrs, together)"
            case .xattr(let p, let e): "error accessing \(p): \(Errno.outOfRange) (\(e))"
            case .changed(let p, let want, let got):
                "error accessing \(p): file changed during the scan (\(want) bytes when listed, \(got) when read)"
            case .digest(let p, let e): "error computing digest: \(e) (\(p))"
            case .store(let e): "cannot fill store: \(e)"
            }
        }
    }

    /// Worker threads by default: the CPUs this process may run on.
    public static var defaultThreadCount: Int { Parallel.availableCPUs }

    /// Files whose contents are inlined rather than referenced (§19.2).
    public static let inlineLimit: UInt64 = 64

    /// Files up to this size are read into memory once (digest and store
    /// copy from the same bytes); larger ones are streamed.
    static let wholeFileLimit = 8 << 20

    /// Scans `source` into a tree; with `options.digestStore` the external
    /// files are also copied into that store.
    ///
    /// The walk (metadata, in one thread) and the file pass (contents:
    /// inline data, digests, store copies; on `options.threads` threads)
    /// overlap: files are handed to the workers as the walk finds them.
    public static func scan(_ source: FilePath, options: Options = Options()) throws(Error) -> Node {
        try scanHoldingStore(source, options: options).root
    }

    /// `scan`, also returning the store's shared lock when objects were
    /// added: keep it until the image that references them is in place,
    /// so garbage collection cannot remove them meanwhile
    /// (`ObjectStore.Lock`).
    public static func scanHoldingStore(_ source: FilePath, options: Options = Options()) throws(Error)
        -> (root: Node, storeLock: ObjectStore.Lock?)
    {
        if options.skipXattrs && options.userXattrsOnly { throw .invalidOptions(source: source) }
        var scanner = try Scanner(source: source, options: options)
        defer { try? scanner.root?.close() }
        let files = FilePass(scanner: scanner)
        files.start()
        let root: Node
        do {
            root = try scanner.walk(files)
        } catch {
            files.abort()
            throw error
        }
        try files.finish()
        return (root, files.store?.lock)
    }

    struct Scanner {
        let source: FilePath
        let options: Options
        /// The source directory; nil when the source is not one.
        let root: FileDescriptor?
        let rootStat: stat

        init(source: FilePath, options: Options) throws(Error) {
            self.source = source
            self.options = options
            let cwd = FileDescriptor(rawValue: AT_FDCWD)
            do { rootStat = try cwd.stat(source) } catch { throw .access(path: source, errno: error) }
            if (rootStat.st_mode & S_IFMT) == S_IFDIR {
                do { root = try .open(source, .readOnly, options: [.directory, .noFollow]) } catch {
                    throw .access(path: source, errno: error)
                }
            } else {
                root = nil
            }
        }

        /// How a path below the source shows in messages.
        func display(_ rel: [UInt8]) -> FilePath {
            rel.isEmpty ? source : source.appending(rel)
        }

        func makeNode(name: [UInt8], _ st: stat) -> Node {
            let node = Node(name: name, mode: UInt32(st.st_mode))
            node.uid = st.st_uid
            node.gid = st.st_gid
            node.rdev = UInt32(truncatingIfNeeded: st.st_rdev)
            node.size = UInt64(st.st_size)
            node.nlink = 1
            if !options.useEpoch {
                node.mtime = Timespec(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(truncatingIfNeeded: st.st_mtim.tv_nsec))
            }
            return node
        }

        /// Directories depth-first; regular files with data go to `files`
        /// (which also reads their xattrs, from the open file), everything
        /// else is complete when the walk is.
        mutating func walk(_ files: FilePass) throws(Error) -> Node {
            let rootNode = makeNode(name: [], rootStat)
            guard let root else {   // the writer reports a non-directory root
                if !options.skipXattrs { try readXattrs(into: rootNode, from: .path(source), display: source) }
                return rootNode
            }
            if !options.skipXattrs { try readXattrs(into: rootNode, from: .descriptor(root), display: source) }
            var batch: [FilePass.Job] = []
            var stack: [(Node, [UInt8])] = [(rootNode, [])]
            while let (dir, rel) = stack.popLast() {
                if files.isStopped { break }
                try scanDirectory(dir, rel: rel, under: root) { node, childRel in
                    if node.isDirectory {
                        stack.append((node, childRel))
                    } else {
                        batch.append(FilePass.Job(node: node, rel: childRel))
                        if batch.count >= 64 {
                            files.add(batch)
                            batch.removeAll(keepingCapacity: true)
                        }
                    }
                }
                files.add(batch)
                batch.removeAll(keepingCapacity: true)
            }
            return rootNode
        }

        /// One directory: its xattrs, then a node for each entry, added to
        /// `dir`. Subdirectories and regular files with data are passed to
        /// `found` with their paths (their contents come later).
        func scanDirectory(
            _ dir: Node, rel: [UInt8], under root: FileDescriptor,
            found: (Node, [UInt8]) -> Void
        ) throws(Error) {
            let shown = display(rel)
            let dfd: FileDescriptor
            do {
                dfd =
                    rel.isEmpty
                    ? try root.duplicate()
                    : try DirectoryScanner.open(rel, under: root, options: [.directory, .noFollow])
            } catch {
                throw .access(path: shown, errno: error)
            }
            var entries: DirectoryStream
            do { entries = try DirectoryStream(dfd) } catch { throw .access(path: shown, errno: error) }
            if !rel.isEmpty && !options.skipXattrs { try readXattrs(into: dir, from: .descriptor(dfd), display: shown) }
            var linkBuffer = [UInt8](repeating: 0, count: Node.maxPathLength)
            while true {
                let next: UnsafeBufferPointer<UInt8>?
                do { next = try entries.next() } catch { throw .access(path: shown, errno: error) }
                guard let entry = next else { break }
                let name = Array(entry)
                let childRel = rel.isEmpty ? name : rel + [UInt8(ascii: "/")] + name
                guard let node = try entryNode(name, in: dfd, shown: display(childRel), linkBuffer: &linkBuffer) else { continue }
                do { try dir.addChild(node) } catch { throw .access(path: display(childRel), errno: .invalidArgument) }
                if node.isDirectory || (node.fileType == .regular && node.size > 0) { found(node, childRel) }
            }
        }

        /// The node of directory entry `name` from `lstat`, with a
        /// symlink's target; its xattrs unless it is a directory or a file
        /// with data (read later, from their descriptors). Nil for a device
        /// left out by `skipDevices`.
        func entryNode(
            _ name: [UInt8], in dfd: FileDescriptor, shown: FilePath,
            linkBuffer: inout [UInt8]
        ) throws(Error) -> Node? {
            let local = FilePath(bytes: name)
            let st: stat
            do { st = try dfd.stat(local) } catch { throw .access(path: shown, errno: error) }
            let type = st.st_mode & S_IFMT
            if options.skipDevices && (type == S_IFBLK || type == S_IFCHR) { return nil }
            let node = makeNode(name: name, st)
            if type == S_IFLNK {
                let n: Int
                do {
                    n = try withMutableBytes(&linkBuffer) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in
                        try dfd.readLink(local, into: b)
                    }
                } catch {
                    throw .access(path: shown, errno: error)
                }
                guard n > 0, n < Node.maxPathLength else { throw .access(path: shown, errno: .fileNameTooLong) }
                node.payload = Array(linkBuffer[0..<n])
                node.size = UInt64(n)
            }
            let hasData = type == S_IFREG && node.size > 0
            if !options.skipXattrs && type != S_IFDIR && !hasData {
                // "/proc/self/fd/N/NAME": the entry itself, whatever it is.
                try readXattrs(into: node, from: .path(dfd.procPath.appending(name)), display: shown)
            }
            return node
        }

        /// Every xattr (or only the `user.` ones) of the entry.
        func readXattrs(into node: Node, from source: Xattrs.Source, display: FilePath) throws(Error) {
            var value = [UInt8](repeating: 0, count: 256)
            var found: [(key: [UInt8], value: [UInt8])] = []
            do throws(Errno) {
                for key in try Xattrs.names(source) {
                    if options.userXattrsOnly && !hasPrefix(key, DirectoryScanner.userPrefix) { continue }
                    guard let v = try Xattrs.value(source, key, buffer: &value) else { continue }
                    found.append((key, v))
                }
            } catch {
                throw .access(path: display, errno: error)
            }
            for x in found {
                do { try node.setXattr(x.key, x.value) } catch { throw .xattr(path: display, error) }
            }
        }
    }

    static let userPrefix = Array("user.".utf8)

    /// `openat(dir, rel)` for a relative path of any length: one that
    /// does not fit PATH_MAX is opened a few components at a time (the
    /// tree's depth is unlimited, FORMAT.md §21). Symlinks are never
    /// followed.
    static func open(_ rel: [UInt8], under dir: FileDescriptor, options: FileDescriptor.OpenOptions) throws(Errno) -> FileDescriptor {
        let limit = 3072
        if rel.count < limit { return try .open(FilePath(bytes: rel), .readOnly, options: options, relativeTo: dir) }
        let parts = rel.split(separator: UInt8(ascii: "/"))
        var fd = dir
        defer { if fd != dir { try? fd.close() } }
        var segment: [UInt8] = []
        for (k, part) in parts.enumerated() {
            if !segment.isEmpty && segment.count + 1 + part.count >= limit {
                let next = try FileDescriptor.open(
                    FilePath(bytes: segment), .readOnly, options: [.path, .directory, .noFollow],
                    relativeTo: fd)
                if fd != dir { try? fd.close() }
                fd = next
                segment = []
            }
            if !segment.isEmpty { segment.append(UInt8(ascii: "/")) }
            segment.append(contentsOf: part)
            if k == parts.count - 1 { return try .open(FilePath(bytes: segment), .readOnly, options: options, relativeTo: fd) }
        }
        throw .noSuchFileOrDirectory
    }
}

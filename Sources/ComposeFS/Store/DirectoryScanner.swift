import CComposeFSShims
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
        public var threads = Parallel.availableCPUs
        public var digestStore: String? = nil
        /// Called from worker threads with (files done, bytes done) as the
        /// file pass goes on.
        public var progress: (@Sendable (Int, UInt64) -> Void)? = nil

        public init() {}
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case access(path: String, errno: Int32)
        case invalidOptions(source: String)
        case xattr(path: String, Node.Error)
        case changed(path: String, expected: UInt64, found: UInt64)
        case digest(path: String, errno: Int32)
        case store(ObjectStore.Error)

        public var description: String {
            switch self {
            case let .access(p, e): "error accessing \(p): \(errnoDescription(e))"
            case let .invalidOptions(source): "error accessing \(source): \(errnoDescription(EINVAL)) (--skip-xattrs and --user-xattrs together)"
            case let .xattr(p, e): "error accessing \(p): \(errnoDescription(ERANGE)) (\(e))"
            case let .changed(p, want, got):
                "error accessing \(p): file changed during the scan (\(want) bytes when listed, \(got) when read)"
            case let .digest(p, e): "error computing digest: \(errnoDescription(e)) (\(p))"
            case let .store(e): "cannot fill store: \(e)"
            }
        }
    }

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
    public static func scan(_ source: String, options: Options = Options()) throws(Error) -> Node {
        if options.skipXattrs && options.userXattrsOnly { throw .invalidOptions(source: source) }
        var scanner = try Scanner(source: source, options: options)
        defer { close(scanner.rootfd) }
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
        return root
    }

    struct Scanner {
        let source: String
        let options: Options
        let rootfd: Int32
        let rootStat: stat

        init(source: String, options: Options) throws(Error) {
            self.source = source
            self.options = options
            var st = stat()
            guard lstat(source, &st) == 0 else { throw .access(path: source, errno: errno) }
            rootStat = st
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let fd = Glibc.open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw .access(path: source, errno: errno) }
                rootfd = fd
            } else {
                rootfd = -1
            }
        }

        func display(_ rel: [UInt8]) -> String {
            rel.isEmpty ? source : (source.hasSuffix("/") ? source : source + "/") + String(bytes: rel)
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
            let root = makeNode(name: [], rootStat)
            guard rootfd >= 0 else {   // the writer reports a non-directory root
                if !options.skipXattrs { try readXattrs(into: root, path: Array(source.utf8), display: source) }
                return root
            }
            if !options.skipXattrs { try readXattrs(into: root, fd: rootfd, display: source) }
            var batch: [FilePass.Job] = []
            var linkBuffer = [UInt8](repeating: 0, count: Node.maxPathLength)
            var stack: [(Node, [UInt8])] = [(root, [])]
            while let (dir, rel) = stack.popLast() {
                if files.isStopped { break }
                let shown = display(rel)
                let dfd = rel.isEmpty
                    ? dup(rootfd)
                    : DirectoryScanner.open(rel, under: rootfd, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard dfd >= 0, let handle = fdopendir(dfd) else {
                    let e = errno
                    throw .access(path: shown, errno: e)
                }
                defer { closedir(handle) }
                if !rel.isEmpty && !options.skipXattrs { try readXattrs(into: dir, fd: dfd, display: shown) }
                // "/proc/self/fd/N/NAME", NUL-terminated, for the entries
                // that are neither directories nor files with data.
                let procDir = Array("/proc/self/fd/\(dfd)/".utf8)
                var procPath = procDir
                while true {
                    errno = 0
                    guard let ent = readdir(handle) else {
                        if errno != 0 { throw .access(path: shown, errno: errno) }
                        break
                    }
                    // d_name, NUL included, straight from the dirent.
                    let cname: [CChar] = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                        let n = raw.firstIndex(of: 0) ?? raw.count
                        return [CChar](unsafeUninitializedCapacity: n + 1) { out, count in
                            for k in 0..<n { out[k] = CChar(bitPattern: raw[k]) }
                            out[n] = 0
                            count = n + 1
                        }
                    }
                    let nameLength = cname.count - 1
                    if cname[0] == 0x2E && (nameLength == 1 || (nameLength == 2 && cname[1] == 0x2E)) { continue }
                    let name = cname[0..<nameLength].map { UInt8(bitPattern: $0) }
                    func childRel() -> [UInt8] { rel.isEmpty ? name : rel + [UInt8(ascii: "/")] + name }
                    var st = stat()
                    guard fstatat(dfd, cname, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                        throw .access(path: display(childRel()), errno: errno)
                    }
                    let type = st.st_mode & S_IFMT
                    if options.skipDevices && (type == S_IFBLK || type == S_IFCHR) { continue }
                    let node = makeNode(name: name, st)
                    if type == S_IFLNK {
                        let n = linkBuffer.withUnsafeMutableBytes {
                            readlinkat(dfd, cname, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count)
                        }
                        guard n >= 0 else { throw .access(path: display(childRel()), errno: errno) }
                        guard n > 0, n < Node.maxPathLength else { throw .access(path: display(childRel()), errno: ENAMETOOLONG) }
                        node.payload = Array(linkBuffer[0..<n])
                        node.size = UInt64(n)
                    }
                    let hasData = type == S_IFREG && node.size > 0
                    if !options.skipXattrs && type != S_IFDIR && !hasData {
                        procPath.removeSubrange(procDir.count...)
                        procPath.append(contentsOf: name)
                        try readXattrs(into: node, path: procPath, display: display(childRel()))
                    }
                    do { try dir.addChild(node) } catch { throw .access(path: display(childRel()), errno: EINVAL) }
                    if type == S_IFDIR {
                        stack.append((node, childRel()))
                    } else if hasData {
                        batch.append(FilePass.Job(node: node, rel: childRel()))
                        if batch.count >= 64 {
                            files.add(batch)
                            batch.removeAll(keepingCapacity: true)
                        }
                    }
                }
                files.add(batch)
                batch.removeAll(keepingCapacity: true)
            }
            return root
        }

        /// xattrs of an open file or directory (`flistxattr`/`fgetxattr`).
        func readXattrs(into node: Node, fd: Int32, display: String) throws(Error) {
            try readXattrs(into: node, display: display,
                           list: { flistxattr(fd, $0, $1) },
                           get: { fgetxattr(fd, $0, $1, $2) })
        }

        /// `llistxattr`/`lgetxattr` on `path` (the entry itself, never a
        /// symlink's target). A filesystem without xattrs has none.
        func readXattrs(into node: Node, path: [UInt8], display: String) throws(Error) {
            let cpath = path + [0]
            try cpath.withUnsafeBufferPointer { (p: UnsafeBufferPointer<UInt8>) throws(Error) in
                try p.withMemoryRebound(to: CChar.self) { (pp: UnsafeBufferPointer<CChar>) throws(Error) in
                    let path = pp.baseAddress!
                    try readXattrs(into: node, display: display,
                                   list: { llistxattr(path, $0, $1) },
                                   get: { lgetxattr(path, $0, $1, $2) })
                }
            }
        }

        /// Every xattr (or the `user.` ones) through `list` and `get`
        /// (listxattr/getxattr calls), each value read with a buffer that
        /// grows when the value does.
        func readXattrs(into node: Node, display: String,
                        list: (UnsafeMutablePointer<CChar>?, Int) -> Int,
                        get: (UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int) throws(Error) {
            var names = [CChar](repeating: 0, count: 4096)
            var n = 0
            while true {
                n = names.withUnsafeMutableBufferPointer { list($0.baseAddress, $0.count) }
                if n >= 0 { break }
                let e = errno
                if e == ENOTSUP || e == EOPNOTSUPP { return }
                guard e == ERANGE else { throw .access(path: display, errno: e) }
                let need = list(nil, 0)
                guard need >= 0 else { throw .access(path: display, errno: errno) }
                names = [CChar](repeating: 0, count: need + 1024)
            }
            guard n > 0 else { return }
            var value = [UInt8](repeating: 0, count: 256)
            var start = 0
            while start < n {
                var end = start
                while end < n && names[end] != 0 { end += 1 }
                defer { start = end + 1 }
                guard end > start else { continue }
                let key = names[start..<end].map { UInt8(bitPattern: $0) }
                if options.userXattrsOnly && !hasPrefix(key, DirectoryScanner.userPrefix) { continue }
                var got = -1
                while true {
                    got = names.withUnsafeBufferPointer { k in
                        value.withUnsafeMutableBytes { get(k.baseAddress! + start, $0.baseAddress, $0.count) }
                    }
                    if got >= 0 { break }
                    let e = errno
                    if e == ENODATA { break }   // removed since it was listed
                    guard e == ERANGE else { throw .access(path: display, errno: e) }
                    let need = names.withUnsafeBufferPointer { get($0.baseAddress! + start, nil, 0) }
                    guard need >= 0 else { throw .access(path: display, errno: errno) }
                    value = [UInt8](repeating: 0, count: need + 256)
                }
                guard got >= 0 else { continue }
                do { try node.setXattr(key, Array(value[0..<got])) } catch { throw .xattr(path: display, error) }
            }
        }

    }

    static let userPrefix = Array("user.".utf8)

    /// `openat(dirfd, rel)` for a relative path of any length: one that
    /// does not fit PATH_MAX is opened a few components at a time (the
    /// tree's depth is unlimited, FORMAT.md §21). Symlinks are never
    /// followed. -1 with errno on failure.
    static func open(_ rel: [UInt8], under dirfd: Int32, flags: Int32) -> Int32 {
        func openat(_ fd: Int32, _ path: [UInt8], _ flags: Int32) -> Int32 {
            (path + [0]).withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: CChar.self) { Glibc.openat(fd, $0.baseAddress!, flags) }
            }
        }
        let limit = 3072
        if rel.count < limit { return openat(dirfd, rel, flags) }
        let parts = rel.split(separator: UInt8(ascii: "/"))
        var fd = dirfd
        var segment: [UInt8] = []
        for (k, part) in parts.enumerated() {
            let last = k == parts.count - 1
            if !segment.isEmpty && segment.count + 1 + part.count >= limit {
                let next = openat(fd, segment, LinuxConstants.O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                let e = errno
                if fd != dirfd { close(fd) }
                guard next >= 0 else { errno = e; return -1 }
                fd = next
                segment = []
            }
            if !segment.isEmpty { segment.append(UInt8(ascii: "/")) }
            segment.append(contentsOf: part)
            if last {
                let result = openat(fd, segment, flags)
                let e = errno
                if fd != dirfd { close(fd) }
                errno = e
                return result
            }
        }
        return -1
    }
}

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
    public static func scan(_ source: String, options: Options = Options()) throws(Error) -> Node {
        if options.skipXattrs && options.userXattrsOnly { throw .invalidOptions(source: source) }
        var scanner = try Scanner(source: source, options: options)
        defer { close(scanner.rootfd) }
        let root = try scanner.walk()
        try scanner.fillFiles()
        return root
    }

    struct Scanner {
        let source: String
        let options: Options
        let rootfd: Int32
        let rootStat: stat
        var files: [(node: Node, rel: [UInt8])] = []

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

        mutating func walk() throws(Error) -> Node {
            let root = makeNode(name: [], rootStat)
            if !options.skipXattrs { try readXattrs(into: root, path: Array(source.utf8), display: source) }
            guard rootfd >= 0 else { return root }   // the writer reports a non-directory root
            var stack: [(Node, [UInt8])] = [(root, [])]
            while let (dir, rel) = stack.popLast() {
                let shown = display(rel)
                let dfd = rel.isEmpty
                    ? dup(rootfd)
                    : DirectoryScanner.open(rel, under: rootfd, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard dfd >= 0, let handle = fdopendir(dfd) else {
                    let e = errno
                    throw .access(path: shown, errno: e)
                }
                defer { closedir(handle) }
                let procDir = Array("/proc/self/fd/\(dfd)/".utf8)
                while true {
                    errno = 0
                    guard let ent = readdir(handle) else {
                        if errno != 0 { throw .access(path: shown, errno: errno) }
                        break
                    }
                    let name: [UInt8] = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                        Array(raw.prefix { $0 != 0 })
                    }
                    if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                    let childRel = rel.isEmpty ? name : rel + [UInt8(ascii: "/")] + name
                    var st = stat()
                    let rc = (name + [0]).withUnsafeBufferPointer { p in
                        p.withMemoryRebound(to: CChar.self) { fstatat(dfd, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) }
                    }
                    guard rc == 0 else { throw .access(path: display(childRel), errno: errno) }
                    let type = st.st_mode & S_IFMT
                    if options.skipDevices && (type == S_IFBLK || type == S_IFCHR) { continue }
                    let node = makeNode(name: name, st)
                    if type == S_IFLNK {
                        var buf = [UInt8](repeating: 0, count: Node.maxPathLength)
                        let n = (name + [0]).withUnsafeBufferPointer { p in
                            p.withMemoryRebound(to: CChar.self) { np in
                                buf.withUnsafeMutableBytes { readlinkat(dfd, np.baseAddress!, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
                            }
                        }
                        guard n >= 0 else { throw .access(path: display(childRel), errno: errno) }
                        guard n > 0, n < Node.maxPathLength else { throw .access(path: display(childRel), errno: ENAMETOOLONG) }
                        node.payload = Array(buf[0..<n])
                        node.size = UInt64(n)
                    }
                    if !options.skipXattrs {
                        try readXattrs(into: node, path: procDir + name, display: display(childRel))
                    }
                    do { try dir.addChild(node) } catch { throw .access(path: display(childRel), errno: EINVAL) }
                    if type == S_IFDIR {
                        stack.append((node, childRel))
                    } else if type == S_IFREG && node.size > 0 {
                        files.append((node, childRel))
                    }
                }
            }
            return root
        }

        /// `llistxattr`/`lgetxattr` on `path` (the entry itself, never a
        /// symlink's target). A filesystem without xattrs has none.
        func readXattrs(into node: Node, path: [UInt8], display: String) throws(Error) {
            let cpath = path + [0]
            var list = [UInt8](repeating: 0, count: 4096)
            var n = 0
            while true {
                n = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { pp in
                        list.withUnsafeMutableBytes { llistxattr(pp.baseAddress!, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
                    }
                }
                if n >= 0 { break }
                let e = errno
                if e == ENOTSUP || e == EOPNOTSUPP { return }
                guard e == ERANGE else { throw .access(path: display, errno: e) }
                let need = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { llistxattr($0.baseAddress!, nil, 0) }
                }
                guard need >= 0 else { throw .access(path: display, errno: errno) }
                list = [UInt8](repeating: 0, count: need + 1024)
            }
            guard n > 0 else { return }
            let user = Array("user.".utf8)
            for key in list[0..<n].split(separator: 0) {
                let k = Array(key)
                if options.userXattrsOnly && !k.starts(with: user) { continue }
                guard let value = try readXattr(cpath, k, display: display) else { continue }
                do { try node.setXattr(k, value) } catch { throw .xattr(path: display, error) }
            }
        }

        func readXattr(_ cpath: [UInt8], _ key: [UInt8], display: String) throws(Error) -> [UInt8]? {
            let ckey = key + [0]
            var buf = [UInt8](repeating: 0, count: 256)
            while true {
                let n = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { pp in
                        ckey.withUnsafeBufferPointer { k in
                            k.withMemoryRebound(to: CChar.self) { kp in
                                buf.withUnsafeMutableBytes { lgetxattr(pp.baseAddress!, kp.baseAddress!, $0.baseAddress, $0.count) }
                            }
                        }
                    }
                }
                if n >= 0 { return Array(buf[0..<n]) }
                let e = errno
                if e == ENODATA { return nil }   // removed since it was listed
                guard e == ERANGE else { throw .access(path: display, errno: e) }
                let need = cpath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { pp in
                        ckey.withUnsafeBufferPointer { k in
                            k.withMemoryRebound(to: CChar.self) { lgetxattr(pp.baseAddress!, $0.baseAddress!, nil, 0) }
                        }
                    }
                }
                guard need >= 0 else { throw .access(path: display, errno: errno) }
                buf = [UInt8](repeating: 0, count: need + 256)
            }
        }

        /// Second pass, in parallel: inline small files, digest the others,
        /// fill the store. The tree's shape is fixed by now, so the image
        /// never depends on the thread count.
        func fillFiles() throws(Error) {
            guard !files.isEmpty else { return }
            var store: ObjectStore? = nil
            if let dir = options.digestStore {
                do throws(ObjectStore.Error) { store = try ObjectStore(path: dir) } catch { throw .store(error) }
            }
            let threads = max(1, options.threads)
            // Files up to this size are read once into the worker's buffer,
            // hashed there and, when the store lacks them, written from it:
            // one read, no copy to verify. Larger ones stream.
            let whole = DirectoryScanner.wholeFileLimit
            let scratch = (0..<threads).map { _ in
                UncheckedSendable(UnsafeMutableRawBufferPointer.allocate(byteCount: whole + 1, alignment: 4096))
            }
            // One hasher per worker, reused: no allocation per file.
            let hashers = (0..<threads).map { _ in UncheckedSendable(FsVerity.Hasher()) }
            defer { for s in scratch { s.value.deallocate() } }
            let work = UncheckedSendable(files)
            let rootfd = self.rootfd
            let shown = UncheckedSendable(self)
            let done = Atomic<Int>(0)
            let bytes = Atomic<UInt64>(0)
            let progress = options.progress
            let claimed = Locked<Set<[UInt8]>>([])
            let sharedStore = UncheckedSendable(store)
            do throws(Error) {
                try Parallel.forEach(count: files.count, threads: threads) { (i, worker) throws(Error) in
                    let (node, rel) = work.value[i]
                    let fd = DirectoryScanner.open(rel, under: rootfd, flags: O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                    guard fd >= 0 else { throw .access(path: shown.value.display(rel), errno: errno) }
                    defer { close(fd) }
                    let buf = scratch[worker].value
                    if node.size <= DirectoryScanner.inlineLimit {
                        let size = Int(node.size)
                        let n = pread(fd, buf.baseAddress, size + 1, 0)
                        guard n >= 0 else { throw .access(path: shown.value.display(rel), errno: errno) }
                        guard n == size else { throw .changed(path: shown.value.display(rel), expected: node.size, found: UInt64(n)) }
                        node.content = Array(UnsafeRawBufferPointer(rebasing: buf[0..<size]))
                    } else {
                        let shownPath = shown.value.display(rel)
                        let hasher = hashers[worker].value
                        let digest: [UInt8]
                        var contents: UnsafeRawBufferPointer? = nil
                        if node.size <= UInt64(whole) {
                            // Ask for one byte more than listed: a file that grew shows.
                            let size = Int(node.size)
                            var got = 0
                            while got <= size {
                                let n = pread(fd, buf.baseAddress! + got, size + 1 - got, off_t(got))
                                if n < 0 {
                                    if errno == EINTR { continue }
                                    throw .digest(path: shownPath, errno: errno)
                                }
                                if n == 0 { break }
                                got += n
                            }
                            guard got == size else { throw .changed(path: shownPath, expected: node.size, found: UInt64(got)) }
                            let data = UnsafeRawBufferPointer(rebasing: buf[0..<size])
                            hasher.reset()
                            hasher.update(data)
                            digest = hasher.finalize()
                            contents = data
                        } else {
                            let count: UInt64
                            do throws(FsVerity.Error) {
                                (digest, count) = try FsVerity.digestAndLength(fd: fd, path: shownPath,
                                                                               buffer: UnsafeMutableRawBufferPointer(rebasing: buf[0..<(1 << 20)]),
                                                                               hasher: hasher)
                            } catch {
                                switch error {
                                case let .io(path, e): throw .digest(path: path, errno: e)
                                }
                            }
                            guard count == node.size else {
                                throw .changed(path: shownPath, expected: node.size, found: count)
                            }
                        }
                        node.digest = digest
                        let payload = FsVerity.objectPath(digest)
                        node.payload = payload
                        if let store = sharedStore.value, claimed.withLock({ $0.insert(payload).inserted }) {
                            do throws(ObjectStore.Error) {
                                if let contents {
                                    try store.insert(contents: contents, digest: digest)
                                } else {
                                    try store.insert(source: fd, sourcePath: shownPath, digest: digest, size: node.size,
                                                     scratch: UnsafeMutableRawBufferPointer(rebasing: buf[0..<(1 << 20)]),
                                                     hasher: hasher)
                                }
                            } catch {
                                throw .store(error)
                            }
                        }
                    }
                    let d = done.add(1, ordering: .relaxed).newValue
                    let b = bytes.add(node.size, ordering: .relaxed).newValue
                    progress?(d, b)
                }
                if let store {
                    do throws(ObjectStore.Error) { try store.commit() } catch { throw .store(error) }
                }
            } catch {
                store?.discardPending()
                throw error
            }
        }
    }


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

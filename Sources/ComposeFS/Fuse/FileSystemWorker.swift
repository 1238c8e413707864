import Glibc
import Synchronization

/// One server thread's view and buffers.
final class FileSystemWorker: Fuse.Worker {
    let fs: ComposefsFileSystem
    let view: ImageView
    /// Reads: up to 1 MiB requested, aligned out to blocks when checked.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: (1 << 20) + 2 * FsVerity.blockSize, alignment: 4096)
    /// Open files by handle (handles are per connection; this table is
    /// shared through the filesystem).
    static let openFiles = Locked<[UInt64: ComposefsFileSystem.OpenFile]>([:])
    static let nextHandle = Atomic<UInt64>(1)

    init(_ fs: ComposefsFileSystem) {
        self.fs = fs
        view = fs.view.copy()
    }

    deinit { scratch.deallocate() }

    var timeout: UInt64 { fs.options.timeout }

    func handle(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let opcode = Fuse.Opcode(rawValue: request.opcode) else { return reply.fail(.noFunction) }
        switch opcode {
        case .initialize: initialize(request, &reply)
        case .lookup: lookup(request, &reply)
        case .forget, .batchForget, .interrupt: return   // no reply; nothing is counted
        case .getattr: getattr(request, &reply)
        case .readlink: readlink(request, &reply)
        case .open: open(request, &reply)
        case .read: read(request, &reply)
        case .release: release(request, &reply)
        case .opendir: opendir(request, &reply)
        case .readdir: readdir(request, &reply, plus: false)
        case .readdirplus: readdir(request, &reply, plus: true)
        case .releasedir, .destroy: reply.send()
        case .getxattr: getxattr(request, &reply)
        case .listxattr: listxattr(request, &reply)
        case .statfs:
            Fuse.encodeStatfs(into: &reply.writer)
            reply.send()
        case .lseek: lseek(request, &reply)
        case .setattr, .symlink, .mknod, .mkdir, .unlink, .rmdir, .rename, .link, .write, .setxattr, .removexattr,
            .create, .rename2, .fallocate, .tmpfile, .copyFileRange:
            reply.fail(.readOnlyFileSystem)
        default:
            reply.fail(.noFunction)
        }
    }

    /// The inode of a request's node; nil (and EIO replied) for a damaged image.
    func inode(_ node: UInt64, _ reply: inout Fuse.Reply) -> ImageView.Inode? {
        do { return try view.inode(fs.nid(node)) } catch {
            reply.fail(.ioError)
            return nil
        }
    }

    func initialize(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let major = request.u32(0), let minor = request.u32(4), let readahead = request.u32(8),
            let offered = request.u32(12)
        else { return reply.fail(.invalidArgument) }
        guard major == Fuse.major, minor >= 26 else {
            // Older than 7.26 (Linux 4.15): too old for this server.
            fs.log("the kernel's FUSE protocol \(major).\(minor) is not supported (7.26 or later is needed)")
            return reply.fail(.protocolError)
        }
        var wanted =
            Fuse.InitFlag.asyncRead | Fuse.InitFlag.exportSupport | Fuse.InitFlag.doReaddirplus
            | Fuse.InitFlag.parallelDirops | Fuse.InitFlag.maxPages | Fuse.InitFlag.cacheSymlinks
        if fs.hasACL { wanted |= Fuse.InitFlag.posixACL }
        fs.opensDirectories.store(offered & Fuse.InitFlag.noOpendirSupport != 0, ordering: .relaxed)
        reply.writer.u32(Fuse.major)   // 0
        reply.writer.u32(Fuse.minor)   // 4
        reply.writer.u32(readahead)   // 8: max_readahead
        reply.writer.u32(offered & wanted)   // 12: flags
        reply.writer.u16(0)   // 16: max_background (the kernel's default)
        reply.writer.u16(0)   // 18: congestion_threshold
        reply.writer.u32(4096)   // 20: max_write (nothing is written)
        reply.writer.u32(1)   // 24: time_gran
        reply.writer.u16(256)   // 28: max_pages (1 MiB reads)
        reply.writer.u16(0)   // 30: map_alignment
        reply.writer.zeros(32)   // 32: flags2, unused
        reply.send()
    }

    func lookup(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let name = request.name(at: 0) else { return reply.fail(.invalidArgument) }
        guard let dir = inode(request.node, &reply) else { return }
        guard dir.type == .directory else { return reply.fail(.notDirectory) }
        do {
            guard let nid = try view.lookup(name, in: dir) else { return reply.fail(.noSuchFileOrDirectory) }
            let child = try view.inode(nid)
            if child.isWhiteout && !fs.options.metadataOnly { return reply.fail(.noSuchFileOrDirectory) }
            fs.remember(nid, parent: dir.nid, name: name)
            Fuse.encodeEntry(fs.attributes(child), timeout: timeout, into: &reply.writer)
            reply.send()
        } catch {
            reply.fail(.ioError)
        }
    }

    func getattr(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let node = inode(request.node, &reply) else { return }
        Fuse.encodeAttributes(fs.attributes(node), timeout: timeout, into: &reply.writer)
        reply.send()
    }

    func readlink(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let node = inode(request.node, &reply) else { return }
        guard node.type == .symlink else { return reply.fail(.invalidArgument) }
        do {
            reply.writer.append(try view.symlinkTarget(node))
            reply.send()
        } catch {
            reply.fail(.ioError)
        }
    }

    func open(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let flags = request.u32(0) else { return reply.fail(.invalidArgument) }
        if Int32(bitPattern: flags) & O_ACCMODE != O_RDONLY { return reply.fail(.readOnlyFileSystem) }
        guard let node = inode(request.node, &reply) else { return }
        guard node.type == .regular else { return reply.fail(node.type == .directory ? .isDirectory : .invalidArgument) }
        let file: ComposefsFileSystem.OpenFile
        if fs.options.metadataOnly {
            file = ComposefsFileSystem.OpenFile(object: nil, tree: nil)
        } else {
            switch fs.openObject(node, view: view, scratch: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(1 << 20)])) {
            case .success(let f): file = f
            case .failure(let e): return reply.fail(e)
            }
        }
        let handle = Self.nextHandle.add(1, ordering: .relaxed).oldValue
        Self.openFiles.withLock { $0[handle] = file }
        reply.writer.u64(handle)   // 0: fh
        reply.writer.u32(Fuse.OpenFlag.keepCache)   // 8: open_flags
        reply.writer.u32(0)   // 12: padding
        reply.send()
    }

    func release(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        if let handle = request.u64(0) { _ = Self.openFiles.withLock { $0.removeValue(forKey: handle) } }
        reply.send()
    }

    func read(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let handle = request.u64(0), let offset = request.u64(8), let size32 = request.u32(16) else {
            return reply.fail(.invalidArgument)
        }
        let size = min(Int(size32), 1 << 20)
        guard let file = Self.openFiles.withLock({ $0[handle] }) else { return reply.fail(.badFileDescriptor) }
        guard let object = file.object else {
            // Bytes in the image (inline), or none (an empty file).
            guard let node = inode(request.node, &reply) else { return }
            if fs.options.metadataOnly && node.raw.layout == EROFS.DataLayout.chunkBased.rawValue { return reply.fail(.ioError) }
            guard node.raw.layout != EROFS.DataLayout.chunkBased.rawValue else { return reply.send() }
            do {
                reply.writer.append(try view.data(of: node, offset: offset, count: size))
                reply.send()
            } catch {
                reply.fail(.ioError)
            }
            return
        }
        if let bytes = file.verified {
            guard offset < UInt64(bytes.count) else { return reply.send() }
            let from = Int(offset)
            return bytes.withUnsafeBytes { reply.send(data: UnsafeRawBufferPointer(rebasing: $0[from..<min(bytes.count, from + size)])) }
        }
        guard let tree = file.tree else {
            switch readFully(object, into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<size]), at: offset) {
            case .success(let n): reply.send(data: UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
            case .failure(let e): reply.fail(e)
            }
            return
        }
        // Checked: whole blocks around the range, each against the tree.
        guard offset < tree.size else { return reply.send() }
        let bs = UInt64(FsVerity.blockSize)
        let start = offset / bs * bs
        let end = min(tree.size, (offset + UInt64(size) + bs - 1) / bs * bs)
        let length = Int(end - start)
        switch readFully(object, into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<length]), at: start) {
        case .failure(let e): reply.fail(e)
        case .success(let n):
            let data = UnsafeRawBufferPointer(rebasing: scratch[0..<n])
            guard n == length, tree.verify(data, at: start) else {
                fs.log("\(fs.path(of: fs.nid(request.node))): bytes \(start)..<\(end) of its object do not match its fs-verity digest")
                return reply.fail(.ioError)
            }
            let from = Int(offset - start)
            let to = min(n, from + size)
            reply.send(data: UnsafeRawBufferPointer(rebasing: scratch[from..<to]))
        }
    }

    /// Reads until `buffer` is full or the file ends.
    func readFully(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Result<Int, Errno> {
        guard let start = Int(exactly: offset) else { return .failure(.invalidArgument) }
        do { return .success(try fd.readAll(into: buffer, at: start)) } catch { return .failure(error) }
    }

    func opendir(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        // The kernel then opens every directory without a request, its
        // listings kept (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, as below).
        if fs.opensDirectories.load(ordering: .relaxed) { return reply.fail(.noFunction) }
        guard let node = inode(request.node, &reply) else { return }
        guard node.type == .directory else { return reply.fail(.notDirectory) }
        reply.writer.u64(0)
        reply.writer.u32(Fuse.OpenFlag.keepCache | Fuse.OpenFlag.cacheDirectory)
        reply.writer.u32(0)
        reply.send()
    }

    func readdir(_ request: Fuse.Request, _ reply: inout Fuse.Reply, plus: Bool) {
        guard let offset = request.u64(8), let size = request.u32(16) else { return reply.fail(.invalidArgument) }
        guard let dir = inode(request.node, &reply) else { return }
        guard dir.type == .directory else { return reply.fail(.notDirectory) }
        guard offset < UInt64(Int.max) else { return reply.send() }
        var room = Int(size)
        var failed = false
        let fs = self.fs
        let metadataOnly = fs.options.metadataOnly
        do {
            try view.forEachEntry(of: dir, from: Int(offset)) { entry in
                let isDot = entry.name == [0x2E] || entry.name == [0x2E, 0x2E]
                var attributes: Fuse.Attributes? = nil
                if plus || (entry.fileType == 3 && !metadataOnly) {
                    guard let child = try? self.view.inode(entry.nid) else {
                        failed = true
                        return false
                    }
                    if child.isWhiteout && entry.fileType == 3 && !metadataOnly { return true }   // hidden
                    if plus { attributes = fs.attributes(child) }
                    if !isDot { fs.remember(entry.nid, parent: dir.nid, name: entry.name) }
                }
                let type = UInt32(ComposefsFileSystem.direntType(entry.fileType))
                let before = reply.writer.count
                guard
                    Fuse.encodeDirent(
                        name: entry.name, ino: fs.node(entry.nid), type: type, next: UInt64(entry.next),
                        plus: attributes, timeout: self.timeout, room: room, into: &reply.writer)
                else { return false }
                room -= reply.writer.count - before
                return true
            }
        } catch {
            failed = true
        }
        if failed && reply.writer.count == 0 { return reply.fail(.ioError) }
        reply.send()
    }

    func getxattr(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let size = request.u32(0), let name = request.name(at: 8) else { return reply.fail(.invalidArgument) }
        guard let node = inode(request.node, &reply) else { return }
        if ComposefsFileSystem.aclNames.contains(name) {
            // No ACL is ever shown; an image without them says so.
            return reply.fail(fs.hasACL ? .noData : .notSupported)
        }
        var value: [UInt8]? = nil
        do {
            try view.forEachXattr(of: node) { key, v in
                if value == nil, fs.shownName(key) == name { value = v }
            }
        } catch {
            return reply.fail(.ioError)
        }
        guard let value else { return reply.fail(.noData) }
        if size == 0 {
            reply.writer.u32(UInt32(value.count))
            reply.writer.u32(0)
        } else if Int(size) < value.count {
            return reply.fail(.outOfRange)
        } else {
            reply.writer.append(value)
        }
        reply.send()
    }

    func listxattr(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let size = request.u32(0) else { return reply.fail(.invalidArgument) }
        guard let node = inode(request.node, &reply) else { return }
        var names: [UInt8] = []
        do {
            try view.forEachXattr(of: node) { key, _ in
                if let shown = fs.shownName(key) { names += shown + [0] }
            }
        } catch {
            return reply.fail(.ioError)
        }
        if size == 0 {
            reply.writer.u32(UInt32(names.count))
            reply.writer.u32(0)
        } else if Int(size) < names.count {
            return reply.fail(.outOfRange)
        } else {
            reply.writer.append(names)
        }
        reply.send()
    }

    func lseek(_ request: Fuse.Request, _ reply: inout Fuse.Reply) {
        guard let handle = request.u64(0), let offset = request.u64(8), let whence = request.u32(16) else {
            return reply.fail(.invalidArgument)
        }
        guard let file = Self.openFiles.withLock({ $0[handle] }) else { return reply.fail(.badFileDescriptor) }
        let result: Int64
        if let object = file.object {
            do { result = try object.seek(offset: Int64(bitPattern: offset), whence: Int32(bitPattern: whence)) } catch {
                return reply.fail(error)
            }
        } else {
            guard let node = inode(request.node, &reply) else { return }
            let size = node.size
            guard offset < size else { return reply.fail(.noSuchAddressOrDevice) }
            switch Int32(bitPattern: whence) {
            case 3: result = Int64(offset)   // SEEK_DATA
            case 4: result = Int64(size)   // SEEK_HOLE
            default: return reply.fail(.invalidArgument)
            }
        }
        reply.writer.u64(UInt64(bitPattern: result))
        reply.send()
    }
}

extension ComposefsFileSystem {
    /// `DT_*` of an EROFS directory entry's file type.
    static func direntType(_ fileType: UInt8) -> UInt8 {
        switch fileType {
        case 1: 8   // regular
        case 2: 4   // directory
        case 3: 2   // character device
        case 4: 6   // block device
        case 5: 1   // FIFO
        case 6: 12   // socket
        case 7: 10   // symlink
        default: 0
        }
    }
}

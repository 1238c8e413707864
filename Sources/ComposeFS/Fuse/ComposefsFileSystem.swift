import Glibc
import Synchronization

/// A composefs image served over FUSE, metadata from the image (read on
/// demand through `ImageView`), data from the object store.
///
/// What it shows is what upstream's composefs-fuse shows: every inode of
/// the image but overlay whiteouts (character devices 0:0); inode numbers
/// are nids (the root is 1); compact inodes carry the image's build time;
/// only `user.*` xattrs (the ACL names fail with EOPNOTSUPP on an image
/// without ACLs, as they do there). Where upstream is wrong this is not:
/// an inline file read at an offset gives the bytes at that offset, a
/// symlink whose target is in a data block reads.
///
/// With `verity`, no byte that is not the image's is ever served: a file
/// with a digest opens only when its object has that digest, measured by
/// the kernel (which then checks every page) or, where the object's
/// filesystem has no fs-verity, computed here; then every block read is
/// hashed again against the tree built at the check, so an object changed
/// or replaced later gives EIO, never its bytes. A missing or wrong object
/// gives EIO and one line through `log`.
///
/// `metadataOnly` serves the image as the lower layer of a kernel overlay
/// (`userxattr`): the overlay xattrs the image carries as `trusted.overlay.*`
/// show as `user.overlay.*`, whiteouts show, and no file data is served
/// (the overlay reads it from the object store, checking fs-verity).
public final class ComposefsFileSystem: @unchecked Sendable {
    public struct Options: Sendable {
        public var basedirs: [FilePath] = []
        public var verity = false
        public var metadataOnly = false
        /// With `metadataOnly`: the namespace the overlay reads its own
        /// xattrs from (`user.overlay.` for `userxattr`, or `trusted.overlay.`).
        public var overlayXattrPrefix = "user.overlay."
        /// How long the kernel may cache names and attributes (the image
        /// never changes): one hour, as upstream.
        public var timeout: UInt64 = 3600
        /// One line per refused object (path and digests).
        public var log: (@Sendable (String) -> Void)? = nil

        public init() {}
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case image(path: FilePath, ImageReader.Error)
        case open(path: FilePath, errno: Errno)

        public var description: String {
            switch self {
            case .image(let path, let e): "\(path): \(e)"
            case .open(let path, let e): "\(path): \(e)"
            }
        }
    }

    let view: ImageView
    let options: Options
    let objectDirectories: [FileDescriptor]
    let hasACL: Bool
    /// The kernel opens directories itself (FUSE_NO_OPENDIR_SUPPORT): two
    /// requests fewer per directory listed.
    let opensDirectories = Atomic<Bool>(false)
    /// Trees of objects checked in userspace, by nid.
    private let trees = Locked<[UInt64: FsVerity.Tree]>([:])
    /// The first name and parent each node was looked up by (for messages).
    private let names = Locked<[UInt64: (parent: UInt64, name: [UInt8])]>([:])

    /// Serves the image `reader` with objects from `options.basedirs`
    /// (searched in order).
    public init(image reader: ByteReader, imagePath: FilePath, options: Options) throws(Error) {
        do { view = try ImageView(reader) } catch { throw .image(path: imagePath, error) }
        self.options = options
        hasACL = view.header.hasACL
        var dirs: [FileDescriptor] = []
        for dir in options.basedirs {
            do { dirs.append(try .open(dir, .readOnly, options: [.path, .directory])) } catch {
                for d in dirs { try? d.close() }
                throw .open(path: dir, errno: error)
            }
        }
        objectDirectories = dirs
    }

    deinit { for d in objectDirectories { try? d.close() } }

    /// A worker for one server thread (its own block cache and buffers).
    public func makeWorker() -> any Fuse.Worker { FileSystemWorker(self) }

    // MARK: Nodes

    /// FUSE node ids are nids, the root's nid swapped with 1.
    func node(_ nid: UInt64) -> UInt64 {
        nid == view.rootNid ? Fuse.rootNode : (nid == Fuse.rootNode ? view.rootNid : nid)
    }

    func nid(_ node: UInt64) -> UInt64 { self.node(node) }

    func remember(_ nid: UInt64, parent: UInt64, name: [UInt8]) {
        names.withLock { if $0[nid] == nil { $0[nid] = (parent, name) } }
    }

    /// The path a node was reached by, for messages.
    func path(of nid: UInt64) -> String {
        var parts: [[UInt8]] = []
        var n = nid
        names.withLock { names in
            while n != view.rootNid, let entry = names[n], parts.count < 4096 {
                parts.append(entry.name)
                n = entry.parent
            }
        }
        return "/" + parts.reversed().map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
    }

    func attributes(_ inode: ImageView.Inode) -> Fuse.Attributes {
        var a = Fuse.Attributes(ino: node(inode.nid))
        a.size = inode.size
        a.mtime = inode.raw.mtime
        a.mode = inode.mode
        a.nlink = inode.raw.nlink
        a.uid = inode.raw.uid
        a.gid = inode.raw.gid
        a.rdev = inode.rdev
        return a
    }

    // MARK: Objects

    static let redirectKey = Array("trusted.overlay.redirect".utf8)
    static let metacopyKey = Array("trusted.overlay.metacopy".utf8)

    /// An open regular file: its object (nil for a file whose bytes are in
    /// the image), and the tree to check reads against (verity, no kernel
    /// fs-verity on the object).
    final class OpenFile {
        let object: FileDescriptor?
        let tree: FsVerity.Tree?
        /// A small object's bytes as they were read and hashed when its
        /// tree was built (they are the ones the digest was checked
        /// against): its reads are served from here, not read and hashed
        /// a second time.
        let verified: [UInt8]?

        init(object: FileDescriptor?, tree: FsVerity.Tree?, verified: [UInt8]? = nil) {
            self.object = object
            self.tree = tree
            self.verified = verified
        }

        /// Objects up to this size keep their checked bytes while open.
        static let keptBytes = 128 << 10

        deinit { try? object?.close() }
    }

    /// Opens the object of a regular file, checked under verity.
    func openObject(_ inode: ImageView.Inode, view: ImageView, scratch: UnsafeMutableRawBufferPointer) -> Result<OpenFile, Errno> {
        let redirect: [UInt8]?
        let metacopy: [UInt8]?
        do {
            redirect = try view.xattr(Self.redirectKey, of: inode)
            metacopy = try view.xattr(Self.metacopyKey, of: inode)
        } catch {
            return .failure(.ioError)
        }
        guard var payload = redirect else { return .success(OpenFile(object: nil, tree: nil)) }
        while payload.first == UInt8(ascii: "/") { payload.removeFirst() }
        let expected: [UInt8]? = metacopy.flatMap { $0.count == 36 ? Array($0[4..<36]) : nil }
        if options.verity && expected == nil {
            log("\(path(of: inode.nid)): no fs-verity digest in the image; not served under verity")
            return .failure(.ioError)
        }
        var object: FileDescriptor? = nil
        var lastError = Errno.noSuchFileOrDirectory
        for dir in objectDirectories {
            do {
                object = try .open(FilePath(bytes: payload), .readOnly, options: [.noFollow, .noControllingTerminal], relativeTo: dir)
                break
            } catch {
                lastError = error
                if error != .noSuchFileOrDirectory { break }
            }
        }
        guard let object else {
            if options.verity {
                log(
                    "\(path(of: inode.nid)): object \(String(decoding: payload, as: UTF8.self)) is missing (\(lastError)), expected digest \(expected!.hexString)"
                )
                return .failure(.ioError)
            }
            return .failure(lastError)
        }
        guard options.verity, let expected else { return .success(OpenFile(object: object, tree: nil)) }
        let refuse = { (actual: String) -> Result<OpenFile, Errno> in
            try? object.close()
            self.log(
                "\(self.path(of: inode.nid)): object \(String(decoding: payload, as: UTF8.self)) has digest \(actual), expected \(expected.hexString)"
            )
            return .failure(.ioError)
        }
        switch (try? FsVerity.measure(fd: object)) ?? .unavailable(.ioError) {
        case .digest(let measured):
            // The kernel checks every page of this file from here on.
            return measured == expected ? .success(OpenFile(object: object, tree: nil)) : refuse(measured.hexString)
        case .unavailable:
            if let tree = trees.withLock({ $0[inode.nid] }) { return .success(OpenFile(object: object, tree: tree)) }
            do {
                let tree = try FsVerity.Tree.build(fd: object, expected: expected, buffer: scratch)
                trees.withLock { $0[inode.nid] = tree }
                // Built in one pass of the buffer: it holds all the bytes hashed.
                let kept = tree.size <= UInt64(min(OpenFile.keptBytes, scratch.count)) ? Array(scratch[0..<Int(tree.size)]) : nil
                return .success(OpenFile(object: object, tree: tree, verified: kept))
            } catch {
                switch error {
                case .digest(let actual): return refuse(actual.hexString)
                case .read(let e): return refuse("unreadable (\(e))")
                }
            }
        }
    }

    func log(_ line: String) { options.log?(line) }

    // MARK: Xattrs

    static let userPrefix = Array("user.".utf8)
    static let trustedOverlay = Array("trusted.overlay.".utf8)
    static let trustedEscaped = Array("trusted.overlay.overlay.".utf8)
    static let userOverlay = Array("user.overlay.".utf8)
    static let aclNames = [Array("system.posix_acl_access".utf8), Array("system.posix_acl_default".utf8)]

    /// The name an image xattr shows under, or nil when it is hidden.
    func shownName(_ key: [UInt8]) -> [UInt8]? {
        guard options.metadataOnly else { return key.starts(with: Self.userPrefix) ? key : nil }
        let overlay = Array(options.overlayXattrPrefix.utf8)
        if overlay == Self.trustedOverlay { return key }   // as the kernel reads the image
        // user.overlay.: the image's own overlay xattrs move there; a file's
        // user.overlay.* is escaped (overlayfs shows it unescaped); a file's
        // trusted.* cannot be shown in a user namespace.
        if key.starts(with: Self.trustedEscaped) { return nil }
        if key.starts(with: Self.trustedOverlay) { return overlay + key[Self.trustedOverlay.count...] }
        if key.starts(with: Self.userOverlay) { return Self.userOverlay + Array("overlay.".utf8) + key[Self.userOverlay.count...] }
        return key.starts(with: Self.userPrefix) ? key : nil
    }
}

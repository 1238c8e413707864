/// The kernel's FUSE protocol (include/uapi/linux/fuse.h), the part a
/// read-only filesystem needs, spoken directly over `/dev/fuse`: requests
/// are decoded and replies encoded field by field, little-endian (the
/// protocol is the host's byte order; this project runs on little-endian
/// hosts only), with every read of a request bounds-checked.
///
/// ```
///  request: fuse_in_header (40 bytes) | opcode's arguments
///  reply:   fuse_out_header (16 bytes) | payload      (error = -errno, or 0)
/// ```
public enum Fuse {
    /// Protocol version spoken: 7.31 (everything used here is older).
    static let major: UInt32 = 7
    static let minor: UInt32 = 31
    static let rootNode: UInt64 = 1

    public enum Opcode: UInt32, Sendable {
        case lookup = 1, forget = 2, getattr = 3, setattr = 4, readlink = 5, symlink = 6
        case mknod = 8, mkdir = 9, unlink = 10, rmdir = 11, rename = 12, link = 13
        case open = 14, read = 15, write = 16, statfs = 17, release = 18, fsync = 20
        case setxattr = 21, getxattr = 22, listxattr = 23, removexattr = 24, flush = 25
        case initialize = 26, opendir = 27, readdir = 28, releasedir = 29, fsyncdir = 30
        case getlk = 31, setlk = 32, setlkw = 33, access = 34, create = 35, interrupt = 36
        case bmap = 37, destroy = 38, ioctl = 39, poll = 40, notifyReply = 41, batchForget = 42
        case fallocate = 43, readdirplus = 44, rename2 = 45, lseek = 46, copyFileRange = 47
        case syncfs = 50, tmpfile = 51, statx = 52
    }

    /// `fuse_init_out.flags` this server may ask for.
    enum InitFlag {
        static let asyncRead: UInt32 = 1 << 0
        static let exportSupport: UInt32 = 1 << 4
        static let bigWrites: UInt32 = 1 << 5
        static let doReaddirplus: UInt32 = 1 << 13
        static let readdirplusAuto: UInt32 = 1 << 14
        static let parallelDirops: UInt32 = 1 << 18
        static let posixACL: UInt32 = 1 << 20
        static let maxPages: UInt32 = 1 << 22
        static let cacheSymlinks: UInt32 = 1 << 23
        /// The kernel opens directories without asking when OPENDIR
        /// answers ENOSYS (keeping their listings cached).
        static let noOpendirSupport: UInt32 = 1 << 24
    }

    /// `fuse_open_out.open_flags`.
    public enum OpenFlag {
        public static let keepCache: UInt32 = 1 << 1
        public static let cacheDirectory: UInt32 = 1 << 3
    }

    static let inHeaderSize = 40
    static let outHeaderSize = 16
    static let entryOutSize = 128
    static let attrOutSize = 104
    static let attrSize = 88
    static let direntHeaderSize = 24

    /// What a node looks like (`fuse_attr`).
    public struct Attributes: Equatable, Sendable {
        public var ino: UInt64
        public var size: UInt64 = 0
        public var blocks: UInt64 = 0
        public var mtime = Timespec.zero
        public var mode: UInt32 = 0
        public var nlink: UInt32 = 1
        public var uid: UInt32 = 0
        public var gid: UInt32 = 0
        public var rdev: UInt32 = 0

        public init(ino: UInt64) { self.ino = ino }

        /// 88 bytes; atime and ctime are the mtime (an image keeps one time).
        func encode(into w: inout ByteWriter) {
            let seconds = UInt64(bitPattern: mtime.seconds)
            w.u64(ino)   // 0
            w.u64(size)   // 8
            w.u64(blocks)   // 16
            w.u64(seconds)   // 24: atime
            w.u64(seconds)   // 32: mtime
            w.u64(seconds)   // 40: ctime
            w.u32(mtime.nanoseconds)   // 48
            w.u32(mtime.nanoseconds)   // 52
            w.u32(mtime.nanoseconds)   // 56
            w.u32(mode)   // 60
            w.u32(nlink)   // 64
            w.u32(uid)   // 68
            w.u32(gid)   // 72
            w.u32(rdev)   // 76
            w.u32(0)   // 80: blksize (the kernel's default)
            w.u32(0)   // 84: flags
        }
    }

    /// A looked-up name: `fuse_entry_out` (128 bytes).
    static func encodeEntry(_ attributes: Attributes, timeout: UInt64, into w: inout ByteWriter) {
        w.u64(attributes.ino)   // 0: nodeid
        w.u64(0)   // 8: generation
        w.u64(timeout)   // 16: entry_valid
        w.u64(timeout)   // 24: attr_valid
        w.u32(0)   // 32: entry_valid_nsec
        w.u32(0)   // 36: attr_valid_nsec
        attributes.encode(into: &w)   // 40
    }

    /// `fuse_attr_out` (104 bytes).
    static func encodeAttributes(_ attributes: Attributes, timeout: UInt64, into w: inout ByteWriter) {
        w.u64(timeout)   // 0: attr_valid
        w.u32(0)   // 8: attr_valid_nsec
        w.u32(0)   // 12: dummy
        attributes.encode(into: &w)   // 16
    }

    /// One `fuse_dirent` (`plus`: preceded by its `fuse_entry_out`), padded
    /// to 8 bytes; nil when it does not fit in `room`.
    static func encodeDirent(
        name: [UInt8], ino: UInt64, type: UInt32, next: UInt64,
        plus: Attributes?, timeout: UInt64, room: Int, into w: inout ByteWriter
    ) -> Bool {
        let unpadded = (plus == nil ? 0 : entryOutSize) + direntHeaderSize + name.count
        let size = (unpadded + 7) & ~7
        guard size <= room else { return false }
        if let plus { encodeEntry(plus, timeout: timeout, into: &w) }
        w.u64(ino)   // 0: ino
        w.u64(next)   // 8: off (of the next entry)
        w.u32(UInt32(name.count))   // 16: namelen
        w.u32(type)   // 20: type (DT_*)
        w.append(name)   // 24
        w.zeros(size - unpadded)
        return true
    }

    /// `fuse_kstatfs` in `fuse_statfs_out` (80 bytes), as libfuse answers
    /// when a filesystem does not: a 512-byte block size, names of 255 bytes.
    static func encodeStatfs(into w: inout ByteWriter) {
        w.zeros(40)   // blocks, bfree, bavail, files, ffree
        w.u32(512)   // 40: bsize
        w.u32(255)   // 44: namelen
        w.u32(0)   // 48: frsize
        w.zeros(28)   // 52: padding, spare
    }
}

extension EROFS {
    /// The fields of an on-disk inode, compact (32 bytes) or extended
    /// (64 bytes) (FORMAT.md §10.4–§10.5).
    public struct Inode: Equatable, Sendable {
        public static let compactSize = 32
        public static let extendedSize = 64

        public var extended: Bool
        public var layout: UInt16
        public var xattrCount: UInt16
        public var mode: UInt16
        public var nlink: UInt32
        public var size: UInt64
        /// `i_u`: raw block address, rdev, or chunk format.
        public var u: UInt32
        public var ino: UInt32
        public var uid: UInt32
        public var gid: UInt32
        /// Extended inodes only; compact ones use the superblock build time.
        public var mtime: Timespec

        public init(
            extended: Bool, layout: UInt16, xattrCount: UInt16, mode: UInt16, nlink: UInt32,
            size: UInt64, u: UInt32, ino: UInt32, uid: UInt32, gid: UInt32, mtime: Timespec
        ) {
            self.extended = extended
            self.layout = layout
            self.xattrCount = xattrCount
            self.mode = mode
            self.nlink = nlink
            self.size = size
            self.u = u
            self.ino = ino
            self.uid = uid
            self.gid = gid
            self.mtime = mtime
        }

        public var encodedSize: Int { extended ? Self.extendedSize : Self.compactSize }
        public var format: UInt16 { layout << 1 | (extended ? 1 : 0) }

        /// Bytes of the xattr area that follows the inode (§8.5, §15.2).
        public var xattrAreaSize: Int { xattrCount == 0 ? 0 : 12 + 4 * (Int(xattrCount) - 1) }

        public func encode(into w: inout ByteWriter) {
            if extended {
                w.u16(format)   // 0: i_format
                w.u16(xattrCount)   // 2: i_xattr_icount
                w.u16(mode)   // 4: i_mode
                w.u16(0)   // 6: i_reserved
                w.u64(size)   // 8: i_size
                w.u32(u)   // 16: i_u
                w.u32(ino)   // 20: i_ino
                w.u32(uid)   // 24: i_uid
                w.u32(gid)   // 28: i_gid
                w.u64(UInt64(bitPattern: mtime.seconds))   // 32: i_mtime
                w.u32(mtime.nanoseconds)   // 40: i_mtime_nsec
                w.u32(nlink)   // 44: i_nlink
                w.zeros(16)   // 48: i_reserved2
            } else {
                w.u16(format)   // 0: i_format
                w.u16(xattrCount)   // 2: i_xattr_icount
                w.u16(mode)   // 4: i_mode
                w.u16(UInt16(truncatingIfNeeded: nlink))   // 6: i_nlink
                w.u32(UInt32(truncatingIfNeeded: size))   // 8: i_size
                w.u32(0)   // 12: i_reserved
                w.u32(u)   // 16: i_u
                w.u32(ino)   // 20: i_ino
                w.u16(UInt16(truncatingIfNeeded: uid))   // 24: i_uid
                w.u16(UInt16(truncatingIfNeeded: gid))   // 26: i_gid
                w.u32(0)   // 28: i_reserved2
            }
        }

        /// Decodes the inode at byte offset `o`. Compact inodes take their
        /// mtime from `buildTime`.
        public init(decoding r: ByteReader, at o: Int, buildTime: Timespec) throws(ByteReader.Error) {
            let format = try r.u16(at: o)
            extended = format & 1 != 0
            layout = (format >> 1) & 7
            xattrCount = try r.u16(at: o + 2)
            mode = try r.u16(at: o + 4)
            if extended {
                try r.check(o, Self.extendedSize)
                size = try r.u64(at: o + 8)
                u = try r.u32(at: o + 16)
                ino = try r.u32(at: o + 20)
                uid = try r.u32(at: o + 24)
                gid = try r.u32(at: o + 28)
                mtime = Timespec(
                    seconds: Int64(bitPattern: try r.u64(at: o + 32)),
                    nanoseconds: try r.u32(at: o + 40))
                nlink = try r.u32(at: o + 44)
            } else {
                try r.check(o, Self.compactSize)
                nlink = UInt32(try r.u16(at: o + 6))
                size = UInt64(try r.u32(at: o + 8))
                u = try r.u32(at: o + 16)
                ino = try r.u32(at: o + 20)
                uid = UInt32(try r.u16(at: o + 24))
                gid = UInt32(try r.u16(at: o + 26))
                mtime = buildTime
            }
        }
    }
}

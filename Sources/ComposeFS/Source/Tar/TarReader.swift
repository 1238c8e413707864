import CArchive
import Glibc

/// Reads a tar archive (ustar, GNU or pax; plain, gzip, xz or zstd, told
/// apart by the data) through libarchive, one entry at a time, in one pass.
/// Nothing is extracted: an entry's data arrives as blocks that point into
/// libarchive's read buffer, with the holes of a sparse file reported as
/// such.
///
/// Names, link targets and xattrs stay bytes. The process never calls
/// setlocale, so libarchive hands over pax UTF-8 names unconverted (with a
/// warning that is ignored), the same bytes GNU tar would create.
public final class TarReader {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case open(source: FilePath, errno: Errno)
        /// The archive cannot be read on at this offset of its
        /// (uncompressed) stream: a corrupt or truncated header. `after`
        /// names the last entry read.
        case header(source: FilePath, offset: Int64, after: [UInt8]? = nil, message: String)
        /// The data of this entry cannot be read.
        case data(source: FilePath, entry: [UInt8], message: String)

        public var description: String {
            switch self {
            case .open(let source, let e): "cannot open '\(source)': \(e)"
            case .header(let source, let offset, let after?, let message):
                "\(source): at offset \(offset) (after '\(String(bytes: after))'): \(message)"
            case .header(let source, let offset, nil, let message): "\(source): at offset \(offset): \(message)"
            case .data(let source, let entry, let message): "\(source): \(String(bytes: entry)): \(message)"
            }
        }
    }

    /// One archive member as the archive states it (names not yet normalized).
    public struct Entry {
        public var path: [UInt8]
        /// Set for a hard link: the name of the member it links to.
        public var hardlink: [UInt8]?
        /// Set for a symbolic link: its target.
        public var symlink: [UInt8]?
        /// `st_mode` type bits (`FileType`), regular for unknown types.
        public var type: UInt32
        /// Permission bits, 0o7777.
        public var permissions: UInt32
        public var uid: Int64
        public var gid: Int64
        public var mtime: Timespec
        /// The file's length (of a sparse file: including its holes).
        public var size: Int64
        public var deviceMajor: UInt64
        public var deviceMinor: UInt64
        /// `SCHILY.xattr.*` (and libarchive's own) pax records, in order.
        public var xattrs: [Xattr]
        /// Where its header starts in the uncompressed stream.
        public var offset: Int64
    }

    /// A piece of an entry's data, in file order.
    public enum Block {
        /// Bytes inside libarchive's buffer, valid until the next call.
        case data(UnsafeRawBufferPointer)
        /// A run of zero bytes that the archive does not store.
        case hole(UInt64)
    }

    public let source: FilePath
    private let archive: OpaquePointer
    /// Data position within the current entry, and its length.
    private var position: Int64 = 0
    private var entrySize: Int64 = 0
    private var entryPath: [UInt8] = []
    /// A data block read ahead while a hole before it was reported.
    private var pending: UnsafeRawBufferPointer? = nil
    private var dataDone = true

    /// Reads from `fd` (a file or a pipe; not closed here).
    public init(fd: FileDescriptor, source: FilePath) throws(Error) {
        self.source = source
        archive = try Self.makeArchive(source)
        // Large reads: one system call per MiB, blocks handed out in place.
        // A failure here (no format recognized) leaves the archive to deinit.
        guard archive_read_open_fd(archive, fd.rawValue, 1 << 20) == ARCHIVE_OK else {
            throw .header(source: source, offset: 0, message: Self.message(archive))
        }
    }

    /// Reads an archive held in memory; `bytes` must outlive the reader.
    public init(memory bytes: UnsafeRawBufferPointer, source: FilePath) throws(Error) {
        self.source = source
        archive = try Self.makeArchive(source)
        guard archive_read_open_memory(archive, bytes.baseAddress, bytes.count) == ARCHIVE_OK else {
            throw .header(source: source, offset: 0, message: Self.message(archive))
        }
    }

    /// Reads an uncompressed tar stream that `open` attaches to the archive
    /// (with `archive_read_open` and callbacks of its own; the caller keeps
    /// what they use alive while the reader lives).
    init(source: FilePath, uncompressed open: (OpaquePointer) -> Int32) throws(Error) {
        self.source = source
        archive = try Self.makeArchive(source, filters: false)
        guard open(archive) == ARCHIVE_OK else {
            throw .header(source: source, offset: 0, message: Self.message(archive))
        }
    }

    deinit { archive_read_free(archive) }

    private static func makeArchive(_ source: FilePath, filters: Bool = true) throws(Error) -> OpaquePointer {
        guard let a = archive_read_new() else { throw .open(source: source, errno: Errno(ENOMEM)) }
        // Only these: each one linked in is code that reads hostile input.
        if filters {
            archive_read_support_filter_gzip(a)
            archive_read_support_filter_xz(a)
            archive_read_support_filter_zstd(a)
        }
        archive_read_support_format_tar(a)
        archive_read_support_format_empty(a)
        return a
    }

    private static func message(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "unreadable archive"
    }

    /// Bytes of the uncompressed stream consumed so far.
    private var consumed: Int64 { archive_filter_bytes(archive, 0) }

    /// The next entry, or nil at the end of the archive. Data of the
    /// previous entry that was not read is skipped.
    public func next() throws(Error) -> Entry? {
        var e: OpaquePointer? = nil
        let at = consumed
        let rc = archive_read_next_header(archive, &e)
        if rc == ARCHIVE_EOF { return nil }
        // Warnings (a name libarchive could not convert, which it then
        // keeps as raw bytes) are not errors; anything else is, including
        // ARCHIVE_RETRY (a damaged header libarchive would skip).
        guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN, let e else {
            throw .header(source: source, offset: at, after: entryPath.nilIfEmpty, message: Self.message(archive))
        }
        let offset = archive_read_header_position(archive)
        guard let name = archive_entry_pathname(e) else {
            throw .header(source: source, offset: offset, after: entryPath.nilIfEmpty, message: "entry without a name")
        }
        let path = Self.bytes(name)
        var entry = Entry(
            path: path,
            hardlink: archive_entry_hardlink(e).map(Self.bytes),
            symlink: nil,
            type: UInt32(archive_entry_filetype(e)),
            permissions: UInt32(archive_entry_perm(e)) & 0o7777,
            uid: archive_entry_uid(e),
            gid: archive_entry_gid(e),
            mtime: Timespec(
                seconds: Int64(archive_entry_mtime(e)),
                nanoseconds: UInt32(clamping: archive_entry_mtime_nsec(e))),
            size: archive_entry_size(e),
            deviceMajor: UInt64(archive_entry_rdevmajor(e)),
            deviceMinor: UInt64(archive_entry_rdevminor(e)),
            xattrs: [],
            offset: offset)
        if entry.type == FileType.symlink.rawValue {
            entry.symlink = archive_entry_symlink(e).map(Self.bytes) ?? []
        }
        if FileType(mode: entry.type) == nil { entry.type = FileType.regular.rawValue }
        if archive_entry_xattr_reset(e) > 0 {
            var key: UnsafePointer<CChar>? = nil
            var value: UnsafeRawPointer? = nil
            var size = 0
            while archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK {
                guard let key else { continue }
                let v = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                entry.xattrs.append(Xattr(key: Self.bytes(key), value: v))
            }
        }
        position = 0
        entrySize = max(0, entry.size)
        entryPath = path
        pending = nil
        dataDone = false
        return entry
    }

    /// The next block of the current entry's data, or nil after the last.
    /// Holes come in file order, including one that ends the file.
    public func nextBlock() throws(Error) -> Block? {
        if let p = pending {
            pending = nil
            position += Int64(p.count)
            return .data(p)
        }
        guard !dataDone else { return nil }
        var buffer: UnsafeRawPointer? = nil
        var size = 0
        var offset: Int64 = 0
        let rc = archive_read_data_block(archive, &buffer, &size, &offset)
        if rc == ARCHIVE_EOF {
            dataDone = true
            if position < entrySize {
                defer { position = entrySize }
                return .hole(UInt64(entrySize - position))
            }
            return nil
        }
        guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN else {
            dataDone = true
            throw .data(source: source, entry: entryPath, message: Self.message(archive))
        }
        // A hostile sparse map must not move backwards or past the length:
        // the length is what the image records.
        let (end, overflow) = offset.addingReportingOverflow(Int64(size))
        guard offset >= position, !overflow, end <= entrySize else {
            dataDone = true
            throw .data(source: source, entry: entryPath, message: "data at offset \(offset) outside the file's \(entrySize) bytes")
        }
        let block = UnsafeRawBufferPointer(start: buffer, count: buffer == nil ? 0 : size)
        if offset > position {
            pending = block
            defer { position = offset }
            return .hole(UInt64(offset - position))
        }
        position += Int64(block.count)
        return .data(block)
    }

    private static func bytes(_ p: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }
}

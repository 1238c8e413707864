import CArchive
import Glibc

/// One layer blob read once, verified on the way: its bytes (compressed as
/// stored) are counted and hashed for the blob's digest, decompressed
/// (gzip, zstd, xz, or none: the data tells), and the uncompressed tar
/// stream hashed for the config's `diff_id` while a `TarReader` parses it.
///
/// Two libarchive readers are chained: the first only decompresses (its
/// "raw" format hands out the whole stream as one entry) and pulls the
/// blob's bytes through a callback; the second parses tar and pulls its
/// bytes from the first. `finish()` reads what the tar reader left (the
/// padding after the end-of-archive blocks, anything after the compressed
/// stream) so that both digests cover every byte.
final class LayerStream {
    let region: ImageBlobs.Region
    let what: String
    /// Blob bytes read so far, and their hash.
    private var position: Int64 = 0
    private let blobHash = SHA256()
    private let tarHash = SHA256()
    private let decompressor: OpaquePointer
    private var decompressorEmpty = false
    private var decompressorDone = false
    private let inBuffer: UnsafeMutableRawBufferPointer
    private let outBuffer: UnsafeMutableRawBufferPointer
    /// The first failure inside a callback (libarchive sees only -1).
    private(set) var failure: OCIImage.Error? = nil

    static let chunk = 1 << 20

    init(region: ImageBlobs.Region, what: String) throws(OCIImage.Error) {
        self.region = region
        self.what = what
        inBuffer = .allocate(byteCount: Self.chunk, alignment: 16)
        outBuffer = .allocate(byteCount: Self.chunk, alignment: 16)
        guard let a = archive_read_new() else {
            inBuffer.deallocate()
            outBuffer.deallocate()
            throw .read(what: what, errno: Errno(ENOMEM))
        }
        decompressor = a
        archive_read_support_filter_gzip(a)
        archive_read_support_filter_zstd(a)
        archive_read_support_filter_xz(a)
        archive_read_support_format_raw(a)
        archive_read_support_format_empty(a)
    }

    /// Opens the decompressor, which reads the blob's first bytes (to
    /// tell its compression and the stream's start).
    func start() throws(OCIImage.Error) {
        let a = decompressor
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard archive_read_open(a, context, nil, layerStreamReadBlob, nil) == ARCHIVE_OK else {
            throw failure ?? .layerData(what: what, message: Self.message(a))
        }
        var entry: OpaquePointer? = nil
        switch archive_read_next_header(a, &entry) {
        case ARCHIVE_OK, ARCHIVE_WARN: break
        case ARCHIVE_EOF: decompressorEmpty = true
        default: throw failure ?? .layerData(what: what, message: Self.message(a))
        }
    }

    deinit {
        archive_read_free(decompressor)
        inBuffer.deallocate()
        outBuffer.deallocate()
    }

    static func message(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "unreadable data"
    }

    /// The tar reader over the uncompressed stream (one per stream).
    func makeReader(source: FilePath) throws(OCIImage.Error) -> TarReader {
        let context = Unmanaged.passUnretained(self).toOpaque()
        do {
            return try TarReader(source: source) { archive in archive_read_open(archive, context, nil, layerStreamReadTar, nil) }
        } catch {
            throw failure ?? .layer(what: what, message: "\(error)")
        }
    }

    // MARK: Callbacks

    /// The decompressor's source: the next blob bytes, hashed.
    fileprivate func nextBlobBytes(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        let left = region.size - position
        guard left > 0 else { return 0 }
        let want = Int(min(Int64(Self.chunk), left))
        let n: Int
        do {
            n = try region.fd.read(
                into: UnsafeMutableRawBufferPointer(rebasing: inBuffer[0..<want]), at: Int(region.offset + position))
        } catch {
            if failure == nil { failure = .read(what: what, errno: error) }
            return -1
        }
        guard n > 0 else {
            if failure == nil { failure = .read(what: what, errno: .ioError) }   // shorter than it was
            return -1
        }
        blobHash.update(UnsafeRawBufferPointer(rebasing: inBuffer[0..<n]))
        position += Int64(n)
        out.pointee = UnsafeRawPointer(inBuffer.baseAddress)
        return n
    }

    /// The tar reader's source: the next uncompressed bytes, hashed.
    fileprivate func nextTarBytes(_ archive: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        let n = nextTarBytes()
        if n < 0 {
            cfs_archive_set_message(archive, EIO, failure?.description ?? "cannot decompress")
            return -1
        }
        out.pointee = UnsafeRawPointer(outBuffer.baseAddress)
        return n
    }

    private func nextTarBytes() -> Int {
        guard !decompressorEmpty, !decompressorDone else { return 0 }
        let n = archive_read_data(decompressor, outBuffer.baseAddress, outBuffer.count)
        if n < 0 {
            if failure == nil { failure = .layerData(what: what, message: Self.message(decompressor)) }
            return -1
        }
        if n == 0 {
            decompressorDone = true
            return 0
        }
        tarHash.update(UnsafeRawBufferPointer(rebasing: outBuffer[0..<n]))
        return n
    }

    // MARK: The end

    /// After the layer could not be read: the blob's own length or digest
    /// mismatch, if it has one (the rest of the blob is hashed for that).
    func blobMismatch(_ digest: OCI.Digest?, size: Int64?) -> OCIImage.Error? {
        var out: UnsafeRawPointer? = nil
        while position < region.size {
            if nextBlobBytes(&out) <= 0 { return nil }
        }
        if let size, position != size { return .sizeMismatch(what: what, expected: size, actual: position) }
        let actual = OCI.Digest(sha256: blobHash.finalize())
        if let digest, actual != digest { return .digestMismatch(what: what, expected: digest, actual: actual) }
        return nil
    }

    /// Reads what is left of both streams and checks the blob's length and
    /// digest (when known) and the uncompressed stream's digest.
    func finish(blobDigest: OCI.Digest?, blobSize: Int64?, diffID: OCI.Digest) throws(OCIImage.Error) {
        while true {
            let n = nextTarBytes()
            if n < 0 { throw failure ?? .layerData(what: what, message: "cannot decompress") }
            if n == 0 { break }
        }
        // Bytes after the compressed stream still belong to the blob.
        var out: UnsafeRawPointer? = nil
        while position < region.size {
            let n = nextBlobBytes(&out)
            if n <= 0 { throw failure ?? .read(what: what, errno: .ioError) }
        }
        if let blobSize, position != blobSize {
            throw .sizeMismatch(what: what, expected: blobSize, actual: position)
        }
        let blob = OCI.Digest(sha256: blobHash.finalize())
        if let blobDigest, blob != blobDigest {
            throw .digestMismatch(what: what, expected: blobDigest, actual: blob)
        }
        let tar = OCI.Digest(sha256: tarHash.finalize())
        guard tar == diffID else { throw .diffIDMismatch(what: what, expected: diffID, actual: tar) }
    }
}

/// libarchive's read callbacks (C function pointers: no captures); the
/// client data is the `LayerStream`.
private func layerStreamReadBlob(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> Int {
    guard let context, let out else { return -1 }
    return Unmanaged<LayerStream>.fromOpaque(context).takeUnretainedValue().nextBlobBytes(out)
}

private func layerStreamReadTar(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> Int {
    guard let context, let out else { return -1 }
    return Unmanaged<LayerStream>.fromOpaque(context).takeUnretainedValue().nextTarBytes(archive, out)
}

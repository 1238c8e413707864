/// The image a FUSE server serves from, opened and, when a digest is
/// asked for, checked first: by the kernel's fs-verity measurement where
/// the image has fs-verity (the kernel then guards every page of it), else
/// by computing it over the whole image, which is then served from memory
/// (so the bytes checked are the bytes served). Without a digest it is
/// read on demand, through a block cache per server thread.
public final class FuseImage: @unchecked Sendable {
    public let reader: ByteReader
    private let fd: FileDescriptor

    private init(reader: ByteReader, fd: FileDescriptor) {
        self.reader = reader
        self.fd = fd
    }

    deinit { try? fd.close() }

    /// Blocks of 4096 bytes each server thread caches of an image read on demand.
    static let cacheBlocks = 1024

    public static func open(_ path: FilePath, digest expected: [UInt8]?) throws(Mount.Error) -> FuseImage {
        let fd: FileDescriptor
        let size: Int
        do throws(Errno) {
            fd = try .open(path, .readOnly)
            size = Int(try fd.stat().st_size)
        } catch {
            throw .openImage(path: path, errno: error)
        }
        do throws(Mount.Error) {
            guard let expected else { return FuseImage(reader: ByteReader(fd: fd, size: size, cacheBlocks: cacheBlocks), fd: fd) }
            let measured: FsVerity.Measurement
            do { measured = try FsVerity.measure(fd: fd, path: path) } catch {
                if case .io(_, let e) = error { throw .measure(path: path, errno: e) }
                throw .measure(path: path, errno: .ioError)
            }
            switch measured {
            case .digest(let d):
                guard d == expected else { throw .wrongVerity(path: path, expected: expected, actual: d) }
                return FuseImage(reader: ByteReader(fd: fd, size: size, cacheBlocks: cacheBlocks), fd: fd)
            case .unavailable:
                let reader: ByteReader
                do { reader = try ByteReader(readingAll: fd, size: size) } catch {
                    if case .io(_, let e) = error { throw .measure(path: path, errno: e) }
                    throw .measure(path: path, errno: .ioError)
                }
                let hasher = FsVerity.Hasher()
                _ = try? reader.withBytes(at: 0, count: size) { hasher.update($0) }
                let actual: [UInt8] = hasher.finalize()
                guard actual == expected else { throw .wrongVerity(path: path, expected: expected, actual: actual) }
                return FuseImage(reader: reader, fd: fd)
            }
        } catch {
            try? fd.close()
            throw error
        }
    }
}

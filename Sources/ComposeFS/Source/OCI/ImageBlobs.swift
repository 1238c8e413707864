import Glibc

/// Where an image's files are: an OCI image layout directory (`oci:`), or
/// the members of an uncompressed tar archive (`oci-archive:`,
/// `docker-archive:`), read in place.
final class ImageBlobs: @unchecked Sendable {
    enum Storage {
        case directory(FileDescriptor)
        case archive(FileDescriptor, ArchiveIndex)
    }

    let storage: Storage
    /// The path the user gave, for messages.
    let path: FilePath

    init(directory path: FilePath) throws(OCIImage.Error) {
        self.path = path
        do {
            storage = .directory(try FileDescriptor.open(path, .readOnly, options: [.directory]))
        } catch {
            throw .open(path: path, errno: error)
        }
    }

    init(archive path: FilePath) throws(OCIImage.Error) {
        self.path = path
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readOnly) } catch { throw .open(path: path, errno: error) }
        do {
            let st = try fd.stat()
            guard st.st_mode & S_IFMT == S_IFREG else { throw Errno.invalidArgument }
            storage = .archive(fd, try ArchiveIndex(fd: fd, size: Int64(st.st_size), path: path))
        } catch let error as Errno {
            try? fd.close()
            throw .open(path: path, errno: error)
        } catch let error as ArchiveIndex.Error {
            try? fd.close()
            throw .archive(error)
        } catch {
            try? fd.close()
            throw .open(path: path, errno: .ioError)
        }
    }

    deinit {
        switch storage {
        case .directory(let fd): try? fd.close()
        case .archive(let fd, _): try? fd.close()
        }
    }

    var isArchive: Bool {
        if case .archive = storage { return true }
        return false
    }

    /// A byte range of one file: a blob, `index.json`, `manifest.json`.
    struct Region {
        let fd: FileDescriptor
        let offset: Int64
        let size: Int64
        /// Closes `fd` when the region is done with (a file of a layout).
        let owner: DescriptorOwner?
    }

    /// Closes a descriptor when the last region using it goes.
    final class DescriptorOwner: @unchecked Sendable {
        let fd: FileDescriptor
        init(_ fd: FileDescriptor) { self.fd = fd }
        deinit { try? fd.close() }
    }

    /// The file `name` (relative, no `..`), or nil when absent.
    func region(_ name: [UInt8]) throws(OCIImage.Error) -> Region? {
        switch storage {
        case .archive(let fd, let index):
            let member: ArchiveIndex.Member?
            do { member = try index.member(name) } catch { throw .archive(error) }
            return member.map { Region(fd: fd, offset: $0.offset, size: $0.size, owner: nil) }
        case .directory(let dir):
            guard ArchiveIndex.normalize(name) == name, !name.isEmpty else {
                throw .invalid(what: "'\(String(bytes: name))'", message: "not a plain relative name")
            }
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(FilePath(bytes: name), .readOnly, relativeTo: dir) } catch {
                if error == .noSuchFileOrDirectory { return nil }
                throw .open(path: path.appending(name), errno: error)
            }
            let owner = DescriptorOwner(fd)
            let st: stat
            do { st = try fd.stat() } catch { throw .open(path: path.appending(name), errno: error) }
            guard st.st_mode & S_IFMT == S_IFREG else {
                throw .invalid(what: "'\(path.appending(name))'", message: "not a regular file")
            }
            return Region(fd: fd, offset: 0, size: Int64(st.st_size), owner: owner)
        }
    }

    /// The whole of a small file (a JSON document): at most `limit` bytes.
    func read(_ region: Region, limit: Int, what: String) throws(OCIImage.Error) -> [UInt8] {
        guard region.size <= Int64(limit) else {
            throw .invalid(what: what, message: "\(region.size) bytes, more than the \(limit) a document may have")
        }
        let bytes: [UInt8]
        do { bytes = try region.fd.read(count: Int(region.size), at: Int(region.offset)) } catch { throw .read(what: what, errno: error) }
        guard bytes.count == Int(region.size) else { throw .read(what: what, errno: .ioError) }
        return withExtendedLifetime(region.owner) { bytes }
    }
}

import Glibc

/// A directory's entries (`readdir(3)`), `.` and `..` left out. Owns the
/// descriptor it was made from.
struct DirectoryStream: ~Copyable {
    private let handle: OpaquePointer

    /// Takes `fd` (an open directory); it is closed with the stream.
    init(_ fd: FileDescriptor) throws(Errno) {
        guard let h = fdopendir(fd.rawValue) else {
            let e = Errno.current
            try? fd.close()
            throw e
        }
        handle = h
    }

    deinit { closedir(handle) }

    /// The next entry's name (no NUL), valid until the next call; nil at the end.
    mutating func next() throws(Errno) -> UnsafeBufferPointer<UInt8>? {
        while true {
            errno = 0
            guard let ent = readdir(handle) else {
                if errno != 0 { throw Errno.current }
                return nil
            }
            let name = UnsafeRawPointer(ent).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                .assumingMemoryBound(to: UInt8.self)
            let n = strlen(UnsafeRawPointer(name).assumingMemoryBound(to: CChar.self))
            if name[0] == 0x2E && (n == 1 || (n == 2 && name[1] == 0x2E)) { continue }
            return UnsafeBufferPointer(start: name, count: n)
        }
    }
}

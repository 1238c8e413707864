import CComposeFSShims
import Glibc

/// A filesystem context of the new mount API (`fsopen`), configured key by
/// key with `fsconfig`, then created and turned into a detached mount with
/// `fsmount`. When the kernel rejects something, it leaves its reason in
/// the context ("e overlayfs: failed to clone lowerpath"); errors carry it.
final class FilesystemContext {
    let fd: FileDescriptor
    let filesystem: String

    init(_ filesystem: String) throws(Mount.Error) {
        let raw = cfs_fsopen(filesystem)
        guard raw >= 0 else {
            let e = Errno.current
            switch e {
            case .noDevice: throw .kernelLacks(filesystem: filesystem)
            case .notPermitted: throw .notPermitted
            case .noSystemCall: throw .kernel(.noNewMountAPI(filesystem), errno: e, log: [])
            default: throw .kernel(.openFilesystem(filesystem), errno: e, log: [])
            }
        }
        fd = FileDescriptor(rawValue: raw)
        self.filesystem = filesystem
    }

    deinit { fd.close() }

    /// `fsconfig(FSCONFIG_SET_STRING)`; the errno when the kernel refuses.
    func trySet(_ key: String, _ value: [UInt8]) -> Errno? {
        value.withCString { cfs_fsconfig_string(fd.rawValue, key, $0) } == 0 ? nil : Errno.current
    }

    func trySet(_ key: String, _ value: String) -> Errno? { trySet(key, Array(value.utf8)) }

    func set(_ key: String, _ value: String) throws(Mount.Error) {
        if let e = trySet(key, value) { throw failure(.setOption(filesystem: filesystem, key: key, value: Array(value.utf8)), e) }
    }

    /// `fsconfig(FSCONFIG_SET_FLAG)`.
    func setFlag(_ key: String) throws(Mount.Error) {
        guard cfs_fsconfig_flag(fd.rawValue, key) == 0 else {
            throw failure(.setOption(filesystem: filesystem, key: key, value: nil), Errno.current)
        }
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: the superblock; the errno when refused.
    func tryCreate() -> Errno? {
        cfs_fsconfig_create(fd.rawValue) == 0 ? nil : Errno.current
    }

    /// A detached mount of the created superblock.
    func mount(readOnly: Bool) throws(Mount.Error) -> FileDescriptor {
        let mnt = cfs_fsmount(fd.rawValue, readOnly ? 1 : 0)
        guard mnt >= 0 else { throw failure(.mountFilesystem(filesystem), Errno.current) }
        return FileDescriptor(rawValue: mnt)
    }

    /// An error for `step`, with what the kernel logged in this context.
    func failure(_ step: Mount.Step, _ e: Errno) -> Mount.Error {
        e == .notPermitted ? .notPermitted : .kernel(step, errno: e, log: messages())
    }

    /// Drains the context's log: one message per read, "e ", "w " or "i "
    /// and the text. Only the text is kept.
    func messages() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while out.count < 16 {
            guard let n = try? withMutableBytes(&buf, { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try fd.read(into: b) }),
                  n > 0 else { break }
            var text = buf[0..<n]
            if text.count > 2, text[text.startIndex + 1] == UInt8(ascii: " ") { text = text.dropFirst(2) }
            while text.last == UInt8(ascii: "\n") { text = text.dropLast() }
            out.append(String(decoding: text, as: UTF8.self))
        }
        return out
    }
}

import CComposeFSShims
import Glibc

/// A filesystem context of the new mount API (`fsopen`), configured key by
/// key with `fsconfig`, then created and turned into a detached mount with
/// `fsmount`. When the kernel rejects something, it leaves its reason in
/// the context ("e overlayfs: failed to clone lowerpath"); errors carry it.
final class FilesystemContext {
    let fd: Int32
    let filesystem: String

    init(_ filesystem: String) throws(Mount.Error) {
        let fd = cfs_fsopen(filesystem)
        guard fd >= 0 else {
            let e = errno
            switch e {
            case ENODEV: throw .kernelLacks(filesystem: filesystem)
            case EPERM: throw .notPermitted
            case ENOSYS: throw .kernel(step: "fsopen \(filesystem) (the kernel has no new mount API)", errno: e, log: [])
            default: throw .kernel(step: "fsopen \(filesystem)", errno: e, log: [])
            }
        }
        self.fd = fd
        self.filesystem = filesystem
    }

    deinit { close(fd) }

    /// `fsconfig(FSCONFIG_SET_STRING)`; the errno when the kernel refuses.
    func trySet(_ key: String, _ value: String) -> Int32? {
        cfs_fsconfig_string(fd, key, value) == 0 ? nil : errno
    }

    func set(_ key: String, _ value: String) throws(Mount.Error) {
        if let e = trySet(key, value) { throw failure("\(filesystem) option \(key)=\(value)", e) }
    }

    /// `fsconfig(FSCONFIG_SET_FLAG)`.
    func setFlag(_ key: String) throws(Mount.Error) {
        guard cfs_fsconfig_flag(fd, key) == 0 else { throw failure("\(filesystem) option \(key)", errno) }
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: the superblock; the errno when refused.
    func tryCreate() -> Int32? {
        cfs_fsconfig_create(fd) == 0 ? nil : errno
    }

    /// A detached mount of the created superblock (a mount descriptor).
    func mount(readOnly: Bool) throws(Mount.Error) -> Int32 {
        let mnt = cfs_fsmount(fd, readOnly ? 1 : 0)
        guard mnt >= 0 else { throw failure("fsmount \(filesystem)", errno) }
        return mnt
    }

    /// An error for `step`, with what the kernel logged in this context.
    func failure(_ step: String, _ e: Int32) -> Mount.Error {
        switch e {
        case EPERM: .notPermitted
        default: .kernel(step: step, errno: e, log: messages())
        }
    }

    /// Drains the context's log: one message per read, "e ", "w " or "i "
    /// and the text. Only the text is kept.
    func messages() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while out.count < 16 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            var text = buf[0..<n]
            if text.count > 2, text[text.startIndex + 1] == UInt8(ascii: " ") { text = text.dropFirst(2) }
            while text.last == UInt8(ascii: "\n") { text = text.dropLast() }
            out.append(String(decoding: text, as: UTF8.self))
        }
        return out
    }
}

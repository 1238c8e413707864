import Glibc

/// A filesystem context of the new mount API (`fsopen`), configured key by
/// key with `fsconfig`, then created and turned into a detached mount with
/// `fsmount`. When the kernel rejects something, it leaves its reason in
/// the context ("e overlayfs: failed to clone lowerpath"); errors carry it.
final class FilesystemContext {
    let fd: FileDescriptor
    let filesystem: String

    init(_ filesystem: String) throws(Mount.Error) {
        do {
            fd = try .openFilesystem(filesystem)
        } catch {
            switch error {
            case .operationNotSupportedByDevice: throw .kernelLacks(filesystem: filesystem)
            case .notPermitted: throw .notPermitted
            case .noFunction: throw .kernel(.noNewMountAPI(filesystem), errno: error, log: [])
            default: throw .kernel(.openFilesystem(filesystem), errno: error, log: [])
            }
        }
        self.filesystem = filesystem
    }

    deinit { try? fd.close() }

    /// `fsconfig(FSCONFIG_SET_STRING)`; the errno when the kernel refuses.
    func trySet(_ key: String, _ value: [UInt8]) -> Errno? {
        do { try fd.setFilesystemOption(key, value) } catch { return error }
        return nil
    }

    func trySet(_ key: String, _ value: String) -> Errno? { trySet(key, Array(value.utf8)) }

    func set(_ key: String, _ value: String) throws(Mount.Error) {
        if let e = trySet(key, value) { throw failure(.setOption(filesystem: filesystem, key: key, value: Array(value.utf8)), e) }
    }

    /// `fsconfig(FSCONFIG_SET_FLAG)`.
    func setFlag(_ key: String) throws(Mount.Error) {
        do { try fd.setFilesystemFlag(key) } catch {
            throw failure(.setOption(filesystem: filesystem, key: key, value: nil), error)
        }
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: the superblock; the errno when refused.
    func tryCreate() -> Errno? {
        do { try fd.createFilesystem() } catch { return error }
        return nil
    }

    /// A detached mount of the created superblock.
    func mount(readOnly: Bool) throws(Mount.Error) -> FileDescriptor {
        do { return try fd.mountFilesystem(readOnly: readOnly) } catch { throw failure(.mountFilesystem(filesystem), error) }
    }

    /// An error for `step`, with what the kernel logged in this context.
    func failure(_ step: Mount.Step, _ e: Errno) -> Mount.Error {
        e == .notPermitted ? .notPermitted : .kernel(step, errno: e, log: messages())
    }

    /// Drains the context's log: one message per read, "e ", "w " or "i "
    /// and the text. Only the text is kept.
    func messages() -> [String] { Self.drainLog(fd) }

    /// Drains a filesystem context's log (`fsopen` descriptor): one message
    /// per read, "e ", "w " or "i " and the text; only the text is kept.
    static func drainLog(_ fd: FileDescriptor) -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while out.count < 16 {
            guard let n = try? withMutableBytes(&buf, { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try fd.read(into: b) }),
                n > 0
            else { break }
            var text = buf[0..<n]
            if text.count > 2, text[text.startIndex + 1] == UInt8(ascii: " ") { text = text.dropFirst(2) }
            while text.last == UInt8(ascii: "\n") { text = text.dropLast() }
            out.append(String(decoding: text, as: UTF8.self))
        }
        return out
    }
}

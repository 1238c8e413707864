import Glibc

/// A read-only, auto-clearing loop device over an image file: it frees
/// itself when its last user (the mount) goes away.
final class LoopDevice {
    let fd: FileDescriptor
    let path: FilePath

    init(backing image: FileDescriptor, name: FilePath) throws(Mount.Error) {
        let control: FileDescriptor
        do { control = try .open("/dev/loop-control", .readWrite) } catch { throw .kernel(.openLoopControl, errno: error, log: []) }
        defer { try? control.close() }
        // Another process may take the free device first: try again.
        for _ in 0..<16 {
            let n: Int
            do { n = try control.freeLoopDevice() } catch { throw .kernel(.findFreeLoop, errno: error, log: []) }
            let path = FilePath("/dev/loop\(n)")
            let fd: FileDescriptor
            do { fd = try .open(path, .readWrite) } catch { throw .kernel(.openLoop(path), errno: error, log: []) }
            let e: Errno
            do {
                try fd.configureLoop(backing: image, name: name.bytes)
                self.fd = fd
                self.path = path
                return
            } catch {
                e = error
            }
            try? fd.close()
            guard e == .resourceBusy else { throw .kernel(.configureLoop(path), errno: e, log: []) }
        }
        throw .kernel(.configureLoop(nil), errno: .resourceBusy, log: [])
    }

    deinit { try? fd.close() }
}

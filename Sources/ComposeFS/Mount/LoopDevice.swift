import CComposeFSShims
import Glibc

/// A read-only, auto-clearing loop device over an image file: it frees
/// itself when its last user (the mount) goes away.
final class LoopDevice {
    let fd: FileDescriptor
    let path: FilePath

    init(backing image: FileDescriptor, name: FilePath) throws(Mount.Error) {
        let control: FileDescriptor
        do { control = try .open("/dev/loop-control", O_RDWR) } catch { throw .kernel(.openLoopControl, errno: error, log: []) }
        defer { control.close() }
        // Another process may take the free device first: try again.
        for _ in 0..<16 {
            let n = cfs_loop_get_free(control.rawValue)
            guard n >= 0 else { throw .kernel(.findFreeLoop, errno: Errno.current, log: []) }
            let path = FilePath("/dev/loop\(n)")
            let fd: FileDescriptor
            do { fd = try .open(path, O_RDWR) } catch { throw .kernel(.openLoop(path), errno: error, log: []) }
            let label = Array(name.bytes.suffix(63))
            if label.withCString({ cfs_loop_configure(fd.rawValue, image.rawValue, $0) }) == 0 {
                self.fd = fd
                self.path = path
                return
            }
            let e = Errno.current
            fd.close()
            guard e == .resourceBusy else { throw .kernel(.configureLoop(path), errno: e, log: []) }
        }
        throw .kernel(.configureLoop(nil), errno: .resourceBusy, log: [])
    }

    deinit { fd.close() }
}

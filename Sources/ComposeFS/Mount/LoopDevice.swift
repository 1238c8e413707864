import CComposeFSShims
import Glibc

/// A read-only, auto-clearing loop device over an image file: it frees
/// itself when its last user (the mount) goes away.
final class LoopDevice {
    let fd: Int32
    let path: String

    init(backing imageFD: Int32, name: String) throws(Mount.Error) {
        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else { throw .system(step: "opening /dev/loop-control", errno: errno) }
        defer { close(control) }
        // Another process may take the free device first: try again.
        for _ in 0..<16 {
            let n = cfs_loop_get_free(control)
            guard n >= 0 else { throw .system(step: "finding a free loop device", errno: errno) }
            let path = "/dev/loop\(n)"
            let fd = open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw .system(step: "opening \(path)", errno: errno) }
            if cfs_loop_configure(fd, imageFD, String(name.suffix(63))) == 0 {
                self.fd = fd
                self.path = path
                return
            }
            let e = errno
            close(fd)
            guard e == EBUSY else { throw .system(step: "configuring \(path)", errno: e) }
        }
        throw .system(step: "configuring a loop device", errno: EBUSY)
    }

    deinit { close(fd) }
}

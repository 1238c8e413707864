import CComposeFSShims
import Glibc

extension Mount {
    /// The image as a detached, read-only EROFS mount (a mount descriptor,
    /// closed with this value). EROFS is given the image file; kernels
    /// that can only mount block devices answer ENOTBLK, and the image is
    /// then mounted through an auto-clearing read-only loop device, which
    /// frees itself when the mount goes away. The owner closes `fd`.
    struct ImageMount {
        let fd: Int32
        let route: Route.Image

        init(imageFD: Int32, imagePath: String, hasACL: Bool, usernsFD: Int32,
             environment: Environment) throws(Error) {
            var loop: LoopDevice? = nil
            if environment.forceLoopDevice {
                loop = try LoopDevice(backing: imageFD, name: imagePath)
            }
            while true {
                let fs = try FilesystemContext("erofs")
                try fs.set("source", loop?.path ?? "/proc/self/fd/\(imageFD)")
                try fs.setFlag("ro")
                if !hasACL { try fs.setFlag("noacl") }
                if let e = fs.tryCreate() {
                    if e == ENOTBLK && loop == nil {
                        loop = try LoopDevice(backing: imageFD, name: imagePath)
                        environment.note("EROFS cannot mount the image file itself (\(errnoDescription(e))): using loop device \(loop!.path)")
                        continue
                    }
                    throw fs.failure("mounting the EROFS image", e)
                }
                let mnt = try fs.mount(readOnly: true)
                if usernsFD >= 0 && cfs_mount_setattr_idmap(mnt, usernsFD) != 0 {
                    let e = errno
                    close(mnt)
                    throw .system(step: "idmapping the EROFS mount", errno: e)
                }
                fd = mnt
                // The mount holds the loop device from here on.
                route = loop.map { .loopDevice($0.path) } ?? .file
                return
            }
        }
    }
}

import Glibc

extension Mount {
    /// The image as a detached, read-only EROFS mount (a mount descriptor,
    /// which the owner closes). EROFS is given the image file; kernels that
    /// can only mount block devices answer ENOTBLK, and the image is then
    /// mounted through an auto-clearing read-only loop device, which frees
    /// itself when the mount goes away.
    struct ImageMount {
        let fd: FileDescriptor
        let route: Route.Image

        init(
            image: FileDescriptor, imagePath: FilePath, hasACL: Bool, userns: FileDescriptor?,
            environment: Environment
        ) throws(Error) {
            var loop: LoopDevice? = nil
            if environment.forceLoopDevice {
                loop = try LoopDevice(backing: image, name: imagePath)
            }
            while true {
                let fs = try FilesystemContext("erofs")
                try fs.set("source", loop?.path.description ?? image.procPath.description)
                try fs.setFlag("ro")
                if !hasACL { try fs.setFlag("noacl") }
                if let e = fs.tryCreate() {
                    if e == .notBlockDevice && loop == nil {
                        let device = try LoopDevice(backing: image, name: imagePath)
                        loop = device
                        environment.note("EROFS cannot mount the image file itself (\(e)): using loop device \(device.path)")
                        continue
                    }
                    throw fs.failure(.mountImage, e)
                }
                let mnt = try fs.mount(readOnly: true)
                if let userns {
                    do { try mnt.setIDMapping(userNamespace: userns) } catch {
                        try? mnt.close()
                        throw .kernel(.idmapImage, errno: error, log: [])
                    }
                }
                fd = mnt
                // The mount holds the loop device from here on.
                route = loop.map { .loopDevice($0.path) } ?? .file
                withExtendedLifetime(loop) {}
                return
            }
        }
    }
}

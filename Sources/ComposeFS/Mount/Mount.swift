import CComposeFSShims
import Glibc

/// Mounting a composefs image (FORMAT.md §20.2): the EROFS image read-only
/// (file-backed, or through an auto-clearing read-only loop device where
/// the kernel cannot mount a file), then overlayfs with the EROFS mount as
/// its only lower layer and the object directories as data-only layers,
/// built with the new mount API and attached at the target with
/// `move_mount`. The EROFS mount stays detached (the overlay holds it), so
/// the target ends up with exactly one mount and nothing is left behind:
/// no temporary directory, and the loop device clears itself at unmount.
public enum Mount {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case openImage(path: String, errno: Int32)
        case notComposefs(path: String)
        case target(path: String, errno: Int32)
        case objectDirectory(path: String, errno: Int32)
        case directory(role: String, path: String, errno: Int32)
        case openUserNamespace(path: String, errno: Int32)
        case noVerity(path: String)
        case wrongVerity(path: String, expected: [UInt8], actual: [UInt8])
        case measure(path: String, errno: Int32)
        case kernelLacks(filesystem: String)
        case notPermitted
        case system(step: String, errno: Int32)

        public var description: String {
            switch self {
            case let .openImage(p, e): "Failed to open \(p): \(errnoDescription(e))"
            case let .notComposefs(p): "\(p) is not a composefs image (bad header)"
            case let .target(p, e): "mount point \(p): \(errnoDescription(e))"
            case let .objectDirectory(p, e): "object directory \(p): \(errnoDescription(e))"
            case let .directory(role, p, e): "\(role) \(p): \(errnoDescription(e))"
            case let .openUserNamespace(p, e): "Failed to open userns \(p): \(errnoDescription(e))"
            case let .noVerity(p):
                "Image has no fs-verity (\(p): the kernel or filesystem has no fs-verity, or it is not enabled on the image; digest= cannot be checked)"
            case let .wrongVerity(p, want, got):
                "Image has wrong fs-verity (\(p): digest \(got.hexString), expected \(want.hexString))"
            case let .measure(p, e): "cannot measure \(p): \(errnoDescription(e))"
            case let .kernelLacks(fs): "the kernel has no \(fs) support (\(errnoDescription(ENODEV)))"
            case .notPermitted: "\(errnoDescription(EPERM)) (mounting needs root or CAP_SYS_ADMIN)"
            case let .system(step, e): "\(step): \(errnoDescription(e))"
            }
        }
    }

    /// Hooks for tests: the image measurement (the kernel's
    /// FS_IOC_MEASURE_VERITY) and forcing the loop-device path.
    public struct Environment: @unchecked Sendable {
        public var measure: (Int32) throws(FsVerity.Error) -> FsVerity.Measurement
        public var forceLoopDevice: Bool

        public init(measure: @escaping (Int32) throws(FsVerity.Error) -> FsVerity.Measurement = { fd throws(FsVerity.Error) in try FsVerity.measure(fd: fd) },
                    forceLoopDevice: Bool = false) {
            self.measure = measure
            self.forceLoopDevice = forceLoopDevice
        }
    }

    /// Mounts `image` at `target`. On failure nothing is left mounted or created.
    public static func mount(image: String, target: String, options: Options,
                             environment: Environment = Environment()) throws(Error) {
        // Everything that can be checked is checked before anything is mounted.
        try requireDirectory(target) { .target(path: target, errno: $0) }
        for dir in options.basedirs { try requireDirectory(dir) { .objectDirectory(path: dir, errno: $0) } }
        if let u = options.upperdir { try requireDirectory(u) { .directory(role: "upperdir", path: u, errno: $0) } }
        if let w = options.workdir { try requireDirectory(w) { .directory(role: "workdir", path: w, errno: $0) } }

        let imageFD = open(image, O_RDONLY | O_CLOEXEC)
        guard imageFD >= 0 else { throw .openImage(path: image, errno: errno) }
        defer { close(imageFD) }

        var usernsFD: Int32 = -1
        if let path = options.idmap {
            usernsFD = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
            guard usernsFD >= 0 else { throw .openUserNamespace(path: path, errno: errno) }
        }
        defer { if usernsFD >= 0 { close(usernsFD) } }

        if let expected = options.digest {
            let measured: FsVerity.Measurement
            do { measured = try environment.measure(imageFD) } catch {
                if case let .io(_, e) = error { throw .measure(path: image, errno: e) }
                throw .measure(path: image, errno: EIO)
            }
            switch measured {
            case .unavailable: throw .noVerity(path: image)
            case .digest(let d) where d != expected: throw .wrongVerity(path: image, expected: expected, actual: d)
            case .digest: break
            }
        }

        var header = [UInt8](repeating: 0, count: ComposefsHeader.size)
        let n = header.withUnsafeMutableBytes { pread(imageFD, $0.baseAddress, $0.count, 0) }
        guard n == ComposefsHeader.size, let h = try? ImageReader.header(header) else { throw .notComposefs(path: image) }

        let erofs = try mountEROFS(imageFD: imageFD, imagePath: image, hasACL: h.hasACL,
                                   usernsFD: usernsFD, forceLoop: environment.forceLoopDevice)
        defer { close(erofs) }
        try mountOverlay(lower: erofs, target: target, options: options)
    }

    static func requireDirectory(_ path: String, _ error: (Int32) -> Error) throws(Error) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw error(errno) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw error(ENOTDIR) }
    }

    static func fail(_ step: String, _ e: Int32, filesystem: String) -> Error {
        switch e {
        case ENODEV: .kernelLacks(filesystem: filesystem)
        case EPERM: .notPermitted
        default: .system(step: step, errno: e)
        }
    }

    /// A detached, read-only EROFS mount of the image (a mount fd).
    static func mountEROFS(imageFD: Int32, imagePath: String, hasACL: Bool, usernsFD: Int32,
                           forceLoop: Bool) throws(Error) -> Int32 {
        var loop: LoopDevice? = nil
        if forceLoop { loop = try LoopDevice(backing: imageFD, name: imagePath) }
        while true {
            let fs = cfs_fsopen("erofs")
            guard fs >= 0 else { throw fail("fsopen erofs", errno, filesystem: "erofs") }
            defer { close(fs) }
            let source = loop?.path ?? "/proc/self/fd/\(imageFD)"
            guard cfs_fsconfig_string(fs, "source", source) == 0 else { throw fail("erofs source", errno, filesystem: "erofs") }
            guard cfs_fsconfig_flag(fs, "ro") == 0 else { throw fail("erofs ro", errno, filesystem: "erofs") }
            if !hasACL && cfs_fsconfig_flag(fs, "noacl") != 0 { throw fail("erofs noacl", errno, filesystem: "erofs") }
            if cfs_fsconfig_create(fs) != 0 {
                let e = errno
                // Kernels that cannot mount a file: go through a loop device.
                if e == ENOTBLK && loop == nil {
                    loop = try LoopDevice(backing: imageFD, name: imagePath)
                    continue
                }
                throw fail("mounting the EROFS image", e, filesystem: "erofs")
            }
            let mnt = cfs_fsmount(fs, 1)
            guard mnt >= 0 else { throw fail("fsmount erofs", errno, filesystem: "erofs") }
            if usernsFD >= 0 && cfs_mount_setattr_idmap(mnt, usernsFD) != 0 {
                let e = errno
                close(mnt)
                throw .system(step: "idmapping the EROFS mount", errno: e)
            }
            return mnt   // the loop device (if any) is held by the mount; autoclear frees it at unmount
        }
    }

    static func mountOverlay(lower: Int32, target: String, options: Options) throws(Error) {
        let fs = cfs_fsopen("overlay")
        guard fs >= 0 else { throw fail("fsopen overlay", errno, filesystem: "overlay") }
        defer { close(fs) }
        func set(_ key: String, _ value: String) throws(Error) {
            guard cfs_fsconfig_string(fs, key, value) == 0 else {
                throw fail("overlay option \(key)=\(value)", errno, filesystem: "overlay")
            }
        }
        try set("source", "composefs")
        try set("metacopy", "on")
        try set("redirect_dir", "on")
        if options.requireVerity {
            try set("verity", "require")
        } else if options.tryVerity {
            _ = cfs_fsconfig_string(fs, "verity", "require")
        }
        try set("lowerdir+", "/proc/self/fd/\(lower)")
        for dir in options.basedirs { try set("datadir+", dir) }
        if let u = options.upperdir, let w = options.workdir {
            try set("upperdir", u)
            try set("workdir", w)
        }
        guard cfs_fsconfig_create(fs) == 0 else { throw fail("creating the overlay", errno, filesystem: "overlay") }
        let mnt = cfs_fsmount(fs, options.readOnly ? 1 : 0)
        guard mnt >= 0 else { throw fail("fsmount overlay", errno, filesystem: "overlay") }
        defer { close(mnt) }
        guard cfs_move_mount(mnt, target) == 0 else { throw fail("attaching at \(target)", errno, filesystem: "overlay") }
    }
}

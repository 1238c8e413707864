import CComposeFSShims
import Glibc

/// The kernel's mount calls: the new mount API (`fsopen`, `fsconfig`,
/// `fsmount`, `move_mount`, `mount_setattr`, `open_tree`), mount
/// namespaces, `mount(2)` and `umount2(2)`. Each returns or throws the
/// `Errno`; policy (what to try next) is the caller's (Mount/).
extension FileDescriptor {
    // MARK: Filesystem contexts

    /// `fsopen(2)`: a new context for a filesystem of `type`.
    public static func openFilesystem(_ type: String) throws(Errno) -> FileDescriptor {
        try SystemFaults.check(.mount, FilePath(type), nil)
        return FileDescriptor(rawValue: try retrying { cfs_fsopen(type) })
    }

    /// `fsconfig(FSCONFIG_SET_STRING)` on a filesystem context.
    public func setFilesystemOption(_ key: String, _ value: [UInt8]) throws(Errno) {
        try SystemFaults.check(.mount, nil, self)
        _ = try value.withCString { (v: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { cfs_fsconfig_string(rawValue, key, v) }
        }
    }

    /// `fsconfig(FSCONFIG_SET_FLAG)`.
    public func setFilesystemFlag(_ key: String) throws(Errno) {
        try SystemFaults.check(.mount, nil, self)
        _ = try Self.retrying { cfs_fsconfig_flag(rawValue, key) }
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: the superblock.
    public func createFilesystem() throws(Errno) {
        try SystemFaults.check(.mount, nil, self)
        _ = try Self.retrying { cfs_fsconfig_create(rawValue) }
    }

    /// `fsmount(2)`: a detached mount of the created superblock.
    public func mountFilesystem(readOnly: Bool) throws(Errno) -> FileDescriptor {
        try SystemFaults.check(.mount, nil, self)
        return FileDescriptor(rawValue: try Self.retrying { cfs_fsmount(rawValue, readOnly ? 1 : 0) })
    }

    // MARK: Mounts as descriptors

    /// `move_mount(2)`: attaches this detached mount at `target`.
    public func attachMount(at target: FilePath) throws(Errno) {
        try SystemFaults.check(.mount, target, self)
        _ = try target.withCString { (t: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { cfs_move_mount(rawValue, t) }
        }
    }

    /// `mount_setattr(MOUNT_ATTR_IDMAP)`: owners seen through this
    /// detached mount are mapped by the user namespace `userNamespace`.
    public func setIDMapping(userNamespace: FileDescriptor) throws(Errno) {
        try SystemFaults.check(.mount, nil, self)
        _ = try Self.retrying { cfs_mount_setattr_idmap(rawValue, userNamespace.rawValue) }
    }

    /// `open_tree(OPEN_TREE_CLONE)`: a detached copy of the mount at `path`.
    public static func cloneMount(at path: FilePath) throws(Errno) -> FileDescriptor {
        try SystemFaults.check(.mount, path, nil)
        return FileDescriptor(
            rawValue: try path.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
                try retrying { cfs_open_tree_clone(p) }
            })
    }

    /// `setns(CLONE_NEWNS)` into the mount namespace this descriptor names
    /// (the calling process must have one thread).
    public func enterMountNamespace() throws(Errno) {
        try SystemFaults.check(.mount, nil, self)
        _ = try Self.retrying { cfs_setns_mount(rawValue) }
    }
}

/// Calls on the calling thread's mount namespace.
public enum MountNamespace {
    /// `unshare(CLONE_NEWNS)`: the calling thread gets a copy of its mount
    /// namespace (only it: a thread's namespace can differ from its
    /// process's).
    public static func unshare() throws(Errno) {
        try SystemFaults.check(.mount, nil, nil)
        _ = try FileDescriptor.retrying { cfs_unshare_mount_namespace() }
    }

    /// Makes every mount under `path` private (nothing propagates out).
    public static func makePrivate(_ path: FilePath) throws(Errno) {
        try SystemFaults.check(.mount, path, nil)
        _ = try path.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
            try FileDescriptor.retrying { cfs_make_mounts_private(p) }
        }
    }

    /// `mount(2)` of an overlay at `target` with an option string (`silent`:
    /// no kernel log for a refusal the caller expects).
    public static func mountOverlay(
        source: String, at target: FilePath, readOnly: Bool, silent: Bool,
        options: [UInt8]
    ) throws(Errno) {
        try SystemFaults.check(.mount, target, nil)
        _ = try target.withCString { (t: UnsafePointer<CChar>) throws(Errno) in
            try options.withCString { (d: UnsafePointer<CChar>) throws(Errno) in
                try FileDescriptor.retrying { cfs_mount_overlay_legacy(source, t, readOnly ? 1 : 0, silent ? 1 : 0, d) }
            }
        }
    }

    /// `umount2(2)`; `detach` is `MNT_DETACH`.
    public static func unmount(_ target: FilePath, detach: Bool = false) throws(Errno) {
        try SystemFaults.check(.mount, target, nil)
        _ = try target.withCString { (t: UnsafePointer<CChar>) throws(Errno) in
            try FileDescriptor.retrying { umount2(t, detach ? Int32(MNT_DETACH) : 0) }
        }
    }
}

extension FileDescriptor {
    // MARK: Loop devices

    /// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: a free device's number.
    public func freeLoopDevice() throws(Errno) -> Int {
        try SystemFaults.check(.ioctl, nil, self)
        return Int(try Self.retrying { cfs_loop_get_free(rawValue) })
    }

    /// `LOOP_CONFIGURE` on a loop device: read-only, auto-clearing, direct
    /// I/O, 4096-byte blocks, over `backing`, labelled `name` (its last 63
    /// bytes).
    public func configureLoop(backing: FileDescriptor, name: [UInt8]) throws(Errno) {
        try SystemFaults.check(.ioctl, nil, self)
        _ = try Array(name.suffix(63)).withCString { (n: UnsafePointer<CChar>) throws(Errno) in
            try Self.retrying { cfs_loop_configure(rawValue, backing.rawValue, n) }
        }
    }

    // MARK: fs-verity

    /// `FS_IOC_ENABLE_VERITY`: SHA-256, 4096-byte blocks, no salt, no
    /// signature (the file must be open read-only, with no writer).
    public func enableVerity() throws(Errno) {
        try SystemFaults.check(.ioctl, nil, self)
        _ = try Self.retrying { cfs_enable_verity(rawValue) }
    }

    /// `FS_IOC_MEASURE_VERITY`: the file's fs-verity digest and algorithm.
    public func measureVerity() throws(Errno) -> (digest: [UInt8], algorithm: UInt16) {
        try SystemFaults.check(.ioctl, nil, self)
        var buffer = [UInt8](repeating: 0, count: 64)
        var algorithm: UInt16 = 0
        let n = try withMutableBytes(&buffer) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in
            try Self.retrying { cfs_measure_verity(rawValue, b.baseAddress!.assumingMemoryBound(to: UInt8.self), 64, &algorithm) }
        }
        return (Array(buffer[0..<Int(n)]), algorithm)
    }
}

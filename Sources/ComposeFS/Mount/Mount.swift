import Glibc

/// Mounting a composefs image (FORMAT.md §20.2): the EROFS image read-only,
/// then overlayfs with the EROFS mount as its lower layer and the object
/// directories as data-only layers, attached at the target. Everything is
/// built as detached mounts and only the finished overlay is attached, so
/// the target ends up with exactly one mount and nothing is left behind,
/// also when a step fails.
///
/// What the kernel accepts is found by trying, most capable first, and
/// the way taken is reported as a ``Route``:
/// - the image: mounted from the file (6.12+), or through an auto-clearing
///   read-only loop device when EROFS says the file is not a block device;
/// - the image layer: passed to overlayfs as a detached mount (about
///   6.15+), or, when overlayfs refuses that, attached in a private mount
///   namespace that exists only while the overlay is created
///   (``PrivateMountNamespace``);
/// - overlay options: `lowerdir+`/`datadir+` through `fsconfig` (6.7+), or
///   a `mount(2)` option string with data-only layers (`lowerdir=A::B`,
///   6.5+), or with plain lower layers (`lowerdir=A:B`) before that.
/// `verity=require` is set whenever verity is asked for; a kernel that
/// cannot enforce it makes the mount fail, it is never made unverified.
public enum Mount {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case openImage(path: FilePath, errno: Errno)
        case notComposefs(path: FilePath)
        case target(path: FilePath, errno: Errno)
        case objectDirectory(path: FilePath, errno: Errno)
        case directory(role: Role, path: FilePath, errno: Errno)
        case openUserNamespace(path: FilePath, errno: Errno)
        case enterNamespace(path: FilePath, errno: Errno)
        case noVerity(path: FilePath)
        case wrongVerity(path: FilePath, expected: [UInt8], actual: [UInt8])
        case measure(path: FilePath, errno: Errno)
        case kernelLacks(filesystem: String)
        case verityUnsupported
        case notPermitted
        /// A mount step the kernel refused, with what it logged about it.
        case kernel(Step, errno: Errno, log: [String])

        public var description: String {
            switch self {
            case .openImage(let p, let e): "Failed to open \(p): \(e)"
            case .notComposefs(let p): "\(p) is not a composefs image (bad header)"
            case .target(let p, let e): "mount point \(p): \(e)"
            case .objectDirectory(let p, let e): "object directory \(p): \(e)"
            case .directory(let role, let p, let e): "\(role.rawValue) \(p): \(e)"
            case .openUserNamespace(let p, let e): "Failed to open userns \(p): \(e)"
            case .enterNamespace(let p, let e): "Failed to enter mount namespace \(p): \(e)"
            case .noVerity(let p):
                "Image has no fs-verity (\(p): the kernel or filesystem has no fs-verity, or it is not enabled on the image; digest= cannot be checked)"
            case .wrongVerity(let p, let want, let got):
                "Image has wrong fs-verity (\(p): digest \(got.hexString), expected \(want.hexString))"
            case .measure(let p, let e): "cannot measure \(p): \(e)"
            case .kernelLacks(let fs): "the kernel has no \(fs) support (\(Errno.operationNotSupportedByDevice))"
            case .verityUnsupported:
                "this kernel's overlayfs cannot enforce fs-verity on the objects (it rejects verity=require, which needs Linux 6.6 or later); not mounting without verification"
            case .notPermitted: "\(Errno.notPermitted) (mounting needs root or CAP_SYS_ADMIN)"
            case .kernel(let step, let e, let log):
                log.isEmpty ? "\(step): \(e)" : "\(step): \(e) (\(log.joined(separator: "; ")))"
            }
        }
    }

    /// The writable layer's two directories.
    public enum Role: String, Sendable {
        case upperdir, workdir
    }

    /// The steps of a mount, as errors name them.
    public enum Step: Equatable, Sendable, CustomStringConvertible {
        case openFilesystem(String)
        case noNewMountAPI(String)
        case setOption(filesystem: String, key: String, value: [UInt8]?)
        case mountImage
        case mountFilesystem(String)
        case idmapImage
        case createOverlay(inPrivateNamespace: Bool)
        case legacyOverlay
        case cloneOverlay
        case attachImageLayer
        case attachOverlay(target: FilePath)
        case unshareMounts
        case makeMountsPrivate
        case startNamespaceThread
        case namespaceThread
        case openLoopControl
        case findFreeLoop
        case openLoop(FilePath)
        case configureLoop(FilePath?)

        public var description: String {
            switch self {
            case .openFilesystem(let fs): "fsopen \(fs)"
            case .noNewMountAPI(let fs): "fsopen \(fs) (the kernel has no new mount API)"
            case .setOption(let fs, let key, let value?): "\(fs) option \(key)=\(String(decoding: value, as: UTF8.self))"
            case .setOption(let fs, let key, nil): "\(fs) option \(key)"
            case .mountImage: "mounting the EROFS image"
            case .mountFilesystem(let fs): "fsmount \(fs)"
            case .idmapImage: "idmapping the EROFS mount"
            case .createOverlay(false): "creating the overlay"
            case .createOverlay(true): "creating the overlay (image layer in a private mount namespace)"
            case .legacyOverlay: "mounting the overlay (mount(2) option string)"
            case .cloneOverlay: "cloning the overlay mount"
            case .attachImageLayer: "attaching the image layer in a private mount namespace"
            case .attachOverlay(let target): "attaching the overlay at \(target)"
            case .unshareMounts: "creating a private mount namespace"
            case .makeMountsPrivate: "making the mounts of the private mount namespace private"
            case .startNamespaceThread: "starting a thread for a private mount namespace"
            case .namespaceThread: "the private mount namespace's thread"
            case .openLoopControl: "opening /dev/loop-control"
            case .findFreeLoop: "finding a free loop device"
            case .openLoop(let p): "opening \(p)"
            case .configureLoop(let p?): "configuring \(p)"
            case .configureLoop(nil): "configuring a loop device"
            }
        }
    }

    /// How a mount was made: the ways the kernel accepted.
    public struct Route: Equatable, Sendable, CustomStringConvertible {
        public enum Image: Equatable, Sendable {
            /// EROFS reads the image file directly.
            case file
            /// Through this auto-clearing, read-only loop device.
            case loopDevice(FilePath)
            /// FUSE serves the image's metadata (composefs-fuse's metadata mode).
            case fuse
        }

        public enum ImageLayer: Equatable, Sendable {
            /// The detached EROFS mount itself is the overlay's lower layer.
            case detached
            /// Attached in a short-lived private mount namespace while the
            /// overlay was created.
            case privateNamespace
        }

        public enum OverlayOptions: Equatable, Sendable {
            /// `lowerdir+` and `datadir+` through `fsconfig`.
            case fsconfig
            /// A `mount(2)` option string: `lowerdir=IMAGE::OBJECTS` when
            /// `dataOnlyLayers`, else `lowerdir=IMAGE:OBJECTS`.
            case legacy(dataOnlyLayers: Bool)
        }

        public var image: Image
        public var imageLayer: ImageLayer
        public var overlayOptions: OverlayOptions
        /// Whether overlayfs checks every object's fs-verity digest.
        public var verity: Bool

        public var description: String {
            let image =
                switch image {
                case .file: "EROFS on the image file"
                case .loopDevice(let dev): "EROFS on loop device \(dev)"
                case .fuse: "the image's metadata from FUSE"
                }
            let layer =
                switch imageLayer {
                case .detached: "detached image layer"
                case .privateNamespace: "image layer attached in a private mount namespace"
                }
            let options =
                switch overlayOptions {
                case .fsconfig: "overlay options by fsconfig (lowerdir+, datadir+)"
                case .legacy(true): "overlay options as a mount(2) string with data-only layers (lowerdir=A::B)"
                case .legacy(false): "overlay options as a mount(2) string with plain lower layers (lowerdir=A:B)"
                }
            return "\(image); \(layer); \(options); \(verity ? "verity=require" : "no verity checks")"
        }
    }

    /// Hooks for tests and diagnostics: the image measurement (the
    /// kernel's FS_IOC_MEASURE_VERITY), forcing each fallback on a kernel
    /// that would not need it, and a trace of the decisions taken.
    public struct Environment: @unchecked Sendable {
        public var measure: (FileDescriptor) throws(FsVerity.Error) -> FsVerity.Measurement
        /// Use a loop device even where EROFS can read the file.
        public var forceLoopDevice: Bool
        /// Attach the image layer in a private namespace without first
        /// offering the detached mount.
        public var forcePrivateNamespace: Bool
        /// Skip `fsconfig` for the overlay options: a mount(2) string.
        public var forceLegacyOptions: Bool
        /// In the option string, go straight to plain lower layers.
        public var forcePlainLowerLayers: Bool
        /// Receives one line per fallback taken (mount.composefs -v).
        public var trace: ((String) -> Void)?

        public init(
            measure: @escaping (FileDescriptor) throws(FsVerity.Error) -> FsVerity.Measurement = { fd throws(FsVerity.Error) in
                try FsVerity.measure(fd: fd)
            },
            forceLoopDevice: Bool = false,
            forcePrivateNamespace: Bool = false,
            forceLegacyOptions: Bool = false,
            forcePlainLowerLayers: Bool = false,
            trace: ((String) -> Void)? = nil
        ) {
            self.measure = measure
            self.forceLoopDevice = forceLoopDevice
            self.forcePrivateNamespace = forcePrivateNamespace
            self.forceLegacyOptions = forceLegacyOptions
            self.forcePlainLowerLayers = forcePlainLowerLayers
            self.trace = trace
        }

        func note(_ line: @autoclosure () -> String) { trace?(line()) }
    }

    /// Mounts `image` at `target`. On failure nothing is left mounted or
    /// created. Returns the way the kernel accepted.
    @discardableResult
    public static func mount(
        image: FilePath, target: FilePath, options: Options,
        environment: Environment = Environment()
    ) throws(Error) -> Route {
        // Everything that can be checked is checked before anything is mounted.
        try requireDirectory(target) { .target(path: target, errno: $0) }
        for dir in options.basedirs { try requireDirectory(dir) { .objectDirectory(path: dir, errno: $0) } }
        if let u = options.upperdir { try requireDirectory(u) { .directory(role: .upperdir, path: u, errno: $0) } }
        if let w = options.workdir { try requireDirectory(w) { .directory(role: .workdir, path: w, errno: $0) } }

        let imageFD: FileDescriptor
        do { imageFD = try .open(image, .readOnly) } catch { throw .openImage(path: image, errno: error) }
        defer { try? imageFD.close() }

        var userns: FileDescriptor? = nil
        if let path = options.idmap {
            do { userns = try .open(path, .readOnly, options: [.noControllingTerminal]) } catch {
                throw .openUserNamespace(path: path, errno: error)
            }
        }
        defer { try? userns?.close() }

        if let expected = options.digest {
            try checkDigest(imageFD: imageFD, image: image, expected: expected, environment: environment)
        }

        var header = [UInt8](repeating: 0, count: ComposefsHeader.size)
        let n = try? withMutableBytes(&header) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try imageFD.readAll(into: b, at: 0) }
        guard n == ComposefsHeader.size, let h = try? ImageReader.header(header) else { throw .notComposefs(path: image) }

        let erofs = try ImageMount(
            image: imageFD, imagePath: image, hasACL: h.hasACL,
            userns: userns, environment: environment)
        defer { try? erofs.fd.close() }
        let overlay = try OverlayBuilder(
            lower: erofs.fd, target: target, options: options,
            environment: environment
        ).build()
        defer { try? overlay.fd.close() }
        try attach(overlay.fd, at: target, step: .attachOverlay(target: target))
        return Route(
            image: erofs.route, imageLayer: overlay.imageLayer,
            overlayOptions: overlay.options, verity: overlay.verity)
    }

    /// The overlay alone, over `lower` (a detached mount of the image's
    /// metadata, served through FUSE), attached at `target`, with the
    /// object directories as data-only layers; `userXattr` for a user
    /// namespace. Returns the way the kernel accepted.
    public static func mountOverlay(
        lower: FileDescriptor, target: FilePath, options: Options,
        environment: Environment = Environment()
    ) throws(Error) -> Route {
        try requireDirectory(target) { .target(path: target, errno: $0) }
        for dir in options.basedirs { try requireDirectory(dir) { .objectDirectory(path: dir, errno: $0) } }
        if let u = options.upperdir { try requireDirectory(u) { .directory(role: .upperdir, path: u, errno: $0) } }
        if let w = options.workdir { try requireDirectory(w) { .directory(role: .workdir, path: w, errno: $0) } }
        let overlay = try OverlayBuilder(lower: lower, target: target, options: options, environment: environment).build()
        defer { try? overlay.fd.close() }
        try attach(overlay.fd, at: target, step: .attachOverlay(target: target))
        return Route(image: .fuse, imageLayer: overlay.imageLayer, overlayOptions: overlay.options, verity: overlay.verity)
    }

    static func checkDigest(
        imageFD: FileDescriptor, image: FilePath, expected: [UInt8],
        environment: Environment
    ) throws(Error) {
        let measured: FsVerity.Measurement
        do { measured = try environment.measure(imageFD) } catch {
            if case .io(_, let e) = error { throw .measure(path: image, errno: e) }
            throw .measure(path: image, errno: .ioError)
        }
        switch measured {
        case .unavailable: throw .noVerity(path: image)
        case .digest(let d) where d != expected: throw .wrongVerity(path: image, expected: expected, actual: d)
        case .digest: break
        }
    }

    static func requireDirectory(_ path: FilePath, _ make: (Errno) -> Error) throws(Error) {
        let st: stat
        do {
            let fd = try FileDescriptor.open(path, .readOnly, options: [.path])
            defer { try? fd.close() }
            st = try fd.stat()
        } catch {
            throw make(error)
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw make(.notDirectory) }
    }

    /// Attaches a detached mount at `target` (`move_mount`).
    static func attach(_ mount: FileDescriptor, at target: FilePath, step: Step) throws(Error) {
        do { try mount.attachMount(at: target) } catch {
            throw error == .notPermitted ? .notPermitted : .kernel(step, errno: error, log: [])
        }
    }
}

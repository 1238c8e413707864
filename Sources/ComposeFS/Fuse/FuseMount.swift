extension Fuse {
    /// A FUSE mount and its connection: made with the new mount API where
    /// this process may mount (root, or root of a user namespace that owns
    /// its mount namespace), else by `fusermount3`, which mounts for
    /// unprivileged users and hands the connection back over a socket.
    public struct Mount: Sendable {
        public enum Error: Swift.Error, CustomStringConvertible, Equatable {
            case openDevice(Errno)
            case mount(target: FilePath, errno: Errno, log: [String])
            case noFusermount
            case fusermount(target: FilePath, status: Int32)
            case handOff(Errno)

            public var description: String {
                switch self {
                case .openDevice(let e): "cannot open /dev/fuse: \(e)"
                case .mount(let target, let e, let log):
                    "cannot mount on \(target): \(e)" + (log.isEmpty ? "" : " (\(log.joined(separator: "; ")))")
                case .noFusermount: "fusermount3 is not installed (it mounts FUSE filesystems for users other than root)"
                case .fusermount(let target, let status): "fusermount3 could not mount on \(target) (exit status \(status))"
                case .handOff(let e): "fusermount3 did not hand over the connection: \(e)"
                }
            }
        }

        /// How it was mounted.
        public enum Method: Sendable, Equatable {
            /// The mount API, by this process.
            case kernel
            /// By fusermount3, which unmounts it too.
            case fusermount
        }

        public struct Options: Sendable {
            /// Shown as the source in the mount table.
            public var source: String
            public var subtype = "composefs"
            public var allowOther = false
            public var readOnly = true
            public var defaultPermissions = true
            /// fusermount3 stays until this process ends, then unmounts:
            /// nothing is left mounted when the server is killed.
            public var autoUnmount = true

            public init(source: String) { self.source = source }
        }

        public let target: FilePath
        public let device: FileDescriptor
        public let method: Method
        /// The socket fusermount3 (staying for `autoUnmount`) watches; it
        /// closes when this process ends.
        let watched: FileDescriptor?

        init(target: FilePath, device: FileDescriptor, method: Method, watched: FileDescriptor? = nil) {
            self.target = target
            self.device = device
            self.method = method
            self.watched = watched
        }

        /// Mounts at `target`: by this process when it may (`.kernel`), else
        /// through fusermount3 (`preferFusermount` asks for that first).
        public static func mount(at target: FilePath, options: Options, preferFusermount: Bool = false) throws(Error) -> Mount {
            if !preferFusermount {
                do { return try mountByKernel(at: target, options: options) } catch {
                    guard case .mount(_, let e, _) = error, e == .notPermitted || e == .permissionDenied else { throw error }
                }
            }
            return try mountByFusermount(at: target, options: options)
        }

        static func mountByKernel(at target: FilePath, options: Options) throws(Error) -> Mount {
            let detached = try DetachedMount(options: options, target: target)
            defer { try? detached.mount.close() }
            do { try detached.mount.attachMount(at: target) } catch {
                try? detached.device.close()
                throw .mount(target: target, errno: error, log: [])
            }
            return Mount(target: target, device: detached.device, method: .kernel)
        }

        /// fusermount3's protocol (libfuse's mount.c): a socket pair, one
        /// end passed as `_FUSE_COMMFD`; fusermount3 opens /dev/fuse,
        /// mounts, sends the descriptor back and exits.
        static func mountByFusermount(at target: FilePath, options: Options) throws(Error) -> Mount {
            guard let fusermount = Subprocess.find("fusermount3") else { throw .noFusermount }
            let (mine, theirs): (FileDescriptor, FileDescriptor)
            do { (mine, theirs) = try FileDescriptor.socketPair() } catch { throw .handOff(error) }
            var list = ["fsname=\(options.source)", "subtype=\(options.subtype)", "nosuid", "nodev"]
            if options.autoUnmount { list.append("auto_unmount") }
            if options.readOnly { list.append("ro") }
            if options.defaultPermissions { list.append("default_permissions") }
            if options.allowOther { list.append("allow_other") }
            let process: Subprocess
            do {
                process = try Subprocess.spawn(
                    fusermount, ["fusermount3", "-o", list.joined(separator: ","), "--", target.description],
                    environment: ["_FUSE_COMMFD": "\(theirs.rawValue)"], inherit: [theirs])
            } catch {
                try? theirs.close()
                try? mine.close()
                throw .handOff(error)
            }
            try? theirs.close()
            let received: Result<FileDescriptor, Errno>
            do { received = .success(try mine.receiveDescriptor()) } catch { received = .failure(error) }
            switch received {
            case .success(let device) where options.autoUnmount:
                // fusermount3 stays, watching `mine`, to unmount when we end.
                return Mount(target: target, device: device, method: .fusermount, watched: mine)
            case .success(let device):
                let status = (try? process.wait()) ?? 1
                try? mine.close()
                guard status == 0 else {
                    try? device.close()
                    throw .fusermount(target: target, status: status)
                }
                return Mount(target: target, device: device, method: .fusermount)
            case .failure(let e):
                let status = (try? process.wait()) ?? 1
                try? mine.close()
                throw status != 0 ? .fusermount(target: target, status: status) : .handOff(e)
            }
        }

        /// Unmounts (lazily: busy files go away with their last user).
        public func unmount() {
            switch method {
            case .kernel:
                try? MountNamespace.unmount(target, detach: true)
            case .fusermount:
                if let fusermount = Subprocess.find("fusermount3"),
                    let p = try? Subprocess.spawn(fusermount, ["fusermount3", "-u", "-q", "-z", "--", target.description])
                {
                    _ = try? p.wait()
                }
            }
        }
    }

    /// A FUSE filesystem made with the mount API and not attached anywhere
    /// (its mount descriptor; the connection's device).
    public struct DetachedMount {
        public let mount: FileDescriptor
        public let device: FileDescriptor

        /// `target` only names the mount in messages.
        public init(options: Fuse.Mount.Options, target: FilePath = "(detached)") throws(Fuse.Mount.Error) {
            (mount, device) = try Self.make(options: options, target: target)
        }

        static func make(options: Fuse.Mount.Options, target: FilePath) throws(Fuse.Mount.Error) -> (FileDescriptor, FileDescriptor) {
            let device: FileDescriptor
            do { device = try .open("/dev/fuse", .readWrite) } catch { throw .openDevice(error) }
            do throws(Fuse.Mount.Error) {
                let context: FileDescriptor
                do { context = try .openFilesystem("fuse") } catch { throw .mount(target: target, errno: error, log: []) }
                defer { try? context.close() }
                var settings: [(String, String?)] = [
                    ("source", options.source), ("subtype", options.subtype), ("fd", "\(device.rawValue)"), ("rootmode", "40000"),
                    ("user_id", "\(CurrentProcess.effectiveUserID)"), ("group_id", "\(CurrentProcess.effectiveGroupID)")
                ]
                if options.defaultPermissions { settings.append(("default_permissions", nil)) }
                if options.allowOther { settings.append(("allow_other", nil)) }
                let mount: FileDescriptor
                do throws(Errno) {
                    for (key, value) in settings {
                        if let value { try context.setFilesystemOption(key, Array(value.utf8)) } else { try context.setFilesystemFlag(key) }
                    }
                    try context.createFilesystem()
                    mount = try context.mountFilesystem(readOnly: options.readOnly)
                } catch {
                    throw .mount(target: target, errno: error, log: FilesystemContext.drainLog(context))
                }
                return (mount, device)
            } catch {
                try? device.close()
                throw error
            }
        }
    }
}

import Glibc

/// Work done in a mount namespace of its own: a new thread unshares its
/// mount namespace (a copy of the caller's, every mount made private so
/// nothing propagates back), runs the body and ends. The namespace, and
/// whatever was attached in it, goes with the thread, also when the
/// process is killed half way. Mounts the body hands back as descriptors
/// (from `fsmount` or `open_tree`) outlive it and can be attached in the
/// caller's namespace.
///
/// Kernels before about 6.15 accept a mount as an overlay layer only when
/// it is attached in the mount namespace of the task creating the overlay;
/// this is where the EROFS layer gets attached for them, invisible to
/// everyone else, with no directory to create and nothing to clean up.
enum PrivateMountNamespace {
    static func run<T>(_ body: @escaping () throws(Mount.Error) -> T) throws(Mount.Error) -> T {
        let outcome = Outcome<T>()
        let thread: SystemThread
        do throws(Errno) {
            thread = try SystemThread {
                do throws(Mount.Error) {
                    do throws(Errno) { try MountNamespace.unshare() } catch { throw .kernel(.unshareMounts, errno: error, log: []) }
                    do throws(Errno) { try MountNamespace.makePrivate("/") } catch {
                        throw .kernel(.makeMountsPrivate, errno: error, log: [])
                    }
                    outcome.result = .success(try body())
                } catch {
                    outcome.result = .failure(error)
                }
            }
        } catch {
            throw .kernel(.startNamespaceThread, errno: error, log: [])
        }
        thread.join()
        guard let result = outcome.result else {
            throw .kernel(.namespaceThread, errno: .interrupted, log: [])
        }
        return try result.get()
    }

    /// Written by the thread, read after it is joined.
    private final class Outcome<T>: @unchecked Sendable {
        var result: Result<T, Mount.Error>?
    }
}

extension Mount {
    /// Moves this process into the mount namespace at `path` (a
    /// `/proc/PID/ns/mnt` file or a bind mount of one), for good: mounts
    /// are then made, and paths looked up, there. The working directory is
    /// the same path there (entering resets it to the namespace's root),
    /// so relative paths mean what they meant. The process must not have
    /// started other threads.
    public static func enterNamespace(_ path: FilePath) throws(Error) {
        do throws(Errno) {
            let cwd = try FilePath.currentDirectory()
            let fd = try FileDescriptor.open(path, .readOnly)
            defer { try? fd.close() }
            try fd.enterMountNamespace()
            try cwd.makeCurrentDirectory()
        } catch {
            throw .enterNamespace(path: path, errno: error)
        }
    }
}

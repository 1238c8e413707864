import Foundation
import Glibc
import Testing

@testable import ComposeFS

extension Trait where Self == Requirement {
    /// Root (to mount FUSE itself and to act as other users), /dev/fuse and fusermount3.
    static var fuse: Requirement {
        Requirement(met: { FuseRun.canMount }, why: "needs root, /dev/fuse and fusermount3")
    }
}

/// composefs-fuse started in the foreground (so the test knows its pid and
/// its messages), as root or as another user.
final class FuseRun {
    let process: Child
    let target: String
    let errPath: String
    let io: TemporaryDirectory
    var unmounted = false

    static var canMount: Bool {
        Privilege.isRoot && access("/dev/fuse", F_OK) == 0 && Subprocess.find("fusermount3") != nil
    }

    /// Starts `composefs-fuse -f -o OPTIONS TARGET` (`user`: through setpriv
    /// as that uid) and waits until TARGET is a mount.
    init(options: String, target: String, user: uid_t? = nil, tool: [String] = ["composefs-fuse", "-f"]) throws {
        let bin = try #require(Tools.directory)
        io = try TemporaryDirectory()
        errPath = try io.write("stderr", [])
        self.target = target
        var command = [bin + "/" + tool[0]] + tool.dropFirst() + ["-o", options, target]
        if let user {
            command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups"] + command
        }
        process = try Child(command[0], Array(command.dropFirst()), stderr: errPath)
        for _ in 0..<500 {
            if Self.isFuseMount(target) { return }
            if !process.isRunning { break }
            usleep(10_000)
        }
        throw ShellError(
            command: command.joined(separator: " "), status: process.isRunning ? -1 : process.wait(),
            stderr: (try? ScanFS.readFile(errPath).text) ?? "")
    }

    deinit {
        if !unmounted { _ = try? unmount() }
        if process.isRunning {
            process.terminate()
            process.wait()
        }
        io.remove()
    }

    var stderr: String { (try? ScanFS.readFile(errPath).text) ?? "" }

    static func isFuseMount(_ path: String) -> Bool {
        Mounts.entries(at: path).contains { $0.hasPrefix("fuse") }
    }

    /// Unmounts (umount; fusermount3 -u for another user) and waits for the
    /// server to end; its exit status.
    @discardableResult
    func unmount(asUser user: uid_t? = nil) throws -> Int32 {
        unmounted = true
        if let user {
            try sh("setpriv --reuid=\(user) --regid=\(user) --clear-groups fusermount3 -u '\(target)'")
        } else {
            try sh("umount '\(target)'")
        }
        return waitForExit()
    }

    /// Waits (up to 10 s) for the server to end; its exit status, or -1.
    func waitForExit() -> Int32 {
        for _ in 0..<1000 where process.isRunning { usleep(10_000) }
        guard !process.isRunning else { return -1 }
        return process.wait()
    }
}

/// /dev/fuse opened to everyone (Debian's udev makes it 0666; this
/// machine's is 0600) for as long as `body` runs.
func withDevFuseForEveryone<T>(_ body: () throws -> T) throws -> T {
    var st = stat()
    try #require(stat("/dev/fuse", &st) == 0)
    let mode = st.st_mode & 0o7777
    chmod("/dev/fuse", 0o666)
    defer { chmod("/dev/fuse", mode) }
    return try body()
}

extension TreeComparison {
    /// Source and mount agree in everything but xattrs outside `user.*`
    /// (FUSE shows only those, as upstream's composefs-fuse does).
    static func expectEqualUserXattrs(source: String, mounted: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var a = try collect(source)
        var b = try collect(mounted)
        for k in a.keys { a[k]!.xattrs = a[k]!.xattrs.filter { $0.key.hasPrefix("user.") } }
        for k in b.keys { b[k]!.xattrs = b[k]!.xattrs.filter { $0.key.hasPrefix("user.") } }
        #expect(
            a.keys.sorted(by: [UInt8].byteOrderLess) == b.keys.sorted(by: [UInt8].byteOrderLess), "the same names",
            sourceLocation: sourceLocation)
        for (path, want) in a.sorted(by: { [UInt8].byteOrderLess($0.key, $1.key) }) {
            #expect(
                b[path] == want, "\(String(bytes: path)): source \(want), mounted \(b[path].map(\.description) ?? "missing")",
                sourceLocation: sourceLocation)
        }
    }
}

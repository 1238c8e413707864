import Foundation
import Glibc
import Testing

@testable import ComposeFS

// Helpers of the object-store tests: walking a store, and tools run
// concurrently.

// MARK: - Store inspection

enum StoreWalk {
    struct Object {
        var ino: UInt64
        var size: Int64
    }

    static func isHex(_ s: String, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Every object of `store` (`xx/yyyy…` → inode), and what is wrong:
    /// anything that is not a `xx/` directory of objects (temporary files
    /// included), objects whose digest is not their name (checked with
    /// FsVerity, libfsverity and, if installed, `fsverity digest`), modes
    /// other than 0644.
    static func inspect(_ store: String) throws -> (objects: [String: Object], problems: [String]) {
        var objects: [String: Object] = [:]
        var problems: [String] = []
        let fm = FileManager.default
        for top in try fm.contentsOfDirectory(atPath: store).sorted() {
            var st = stat()
            try ScanFS.check(lstat(store + "/" + top, &st), "lstat", b(top))
            guard isHex(top, count: 2), st.st_mode & S_IFMT == S_IFDIR else {
                problems.append("unexpected entry in the store: \(top)")
                continue
            }
            for name in try fm.contentsOfDirectory(atPath: store + "/" + top).sorted() {
                let rel = top + "/" + name
                let path = store + "/" + rel
                try ScanFS.check(lstat(path, &st), "lstat", b(path))
                guard isHex(name, count: 62), st.st_mode & S_IFMT == S_IFREG else {
                    problems.append("unexpected entry in the store: \(rel)")
                    continue
                }
                if st.st_mode & 0o7777 != 0o644 { problems.append("\(rel): mode \(String(st.st_mode & 0o7777, radix: 8))") }
                if st.st_nlink != 1 { problems.append("\(rel): \(st.st_nlink) links") }
                let hex = top + name
                let digest = try FsVerity.digest(path: path).hexString
                if digest != hex { problems.append("\(rel): holds data with digest \(digest)") }
                let bytes = try ScanFS.readFile(path)
                if try FsVerityTests.libfsverityDigest(bytes).hexString != hex {
                    problems.append("\(rel): libfsverity disagrees")
                }
                if Int64(bytes.count) != st.st_size { problems.append("\(rel): size changed while read") }
                objects[rel] = Object(ino: UInt64(st.st_ino), size: Int64(st.st_size))
            }
        }
        // fsverity-utils' own view, in batches.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/fsverity")
            || FileManager.default.isExecutableFile(atPath: "/usr/local/bin/fsverity")
        {
            let names = objects.keys.sorted()
            var i = 0
            while i < names.count {
                let batch = Array(names[i..<min(i + 200, names.count)])
                i += batch.count
                let (status, out) = try command(["fsverity", "digest"] + batch.map { store + "/" + $0 })
                if status != 0 {
                    problems.append("fsverity digest failed: \(out)")
                    break
                }
                for line in out.split(separator: "\n") {
                    let parts = line.split(separator: " ", maxSplits: 1)
                    guard parts.count == 2, parts[0].hasPrefix("sha256:") else {
                        problems.append("fsverity: \(line)")
                        continue
                    }
                    let hex = String(parts[0].dropFirst("sha256:".count))
                    let rel = String(parts[1].dropFirst(store.count + 1))
                    if hex != rel.replacingOccurrences(of: "/", with: "") {
                        problems.append("\(rel): fsverity digest says \(hex)")
                    }
                }
            }
        }
        return (objects, problems)
    }

    /// Object path (`xx/yyyy…`) → the source file holding its bytes, for
    /// every external file of a tree snapshot.
    static func expectedObjects(_ snapshots: [[[UInt8]: ScanSnapshot.Entry]]) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for snapshot in snapshots {
            for e in snapshot.values {
                if let d = e.digest { out[String(decoding: FsVerity.objectPath(d), as: UTF8.self)] = e.source }
            }
        }
        return out
    }

    /// The store holds exactly the expected objects, each with the bytes of
    /// its source file, and nothing else.
    static func expectComplete(
        _ store: String, _ expected: [String: [UInt8]], _ label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [String: Object] {
        let (objects, problems) = try inspect(store)
        #expect(problems.isEmpty, "\(label): \(problems.prefix(30).joined(separator: "\n"))", sourceLocation: sourceLocation)
        let missing = Set(expected.keys).subtracting(objects.keys)
        let extra = Set(objects.keys).subtracting(expected.keys)
        #expect(missing.isEmpty, "\(label): missing objects \(missing.sorted().prefix(10))", sourceLocation: sourceLocation)
        #expect(extra.isEmpty, "\(label): unexpected objects \(extra.sorted().prefix(10))", sourceLocation: sourceLocation)
        for (rel, source) in expected where objects[rel] != nil {
            let object = try ScanFS.readFile(store + "/" + rel)
            let original = try ScanFS.readFile(String(decoding: source, as: UTF8.self))
            #expect(object == original, "\(label): \(rel) differs from \(ScanFS.show(source))", sourceLocation: sourceLocation)
        }
        return objects
    }

    /// Runs a command (PATH lookup through env), stdout and stderr together.
    static func command(_ args: [String]) throws -> (Int32, String) {
        let io = try TemporaryDirectory()
        defer { io.remove() }
        let outPath = try io.write("out", [])
        let status = try Child("/usr/bin/env", args, stdout: outPath, stderrToStdout: true).wait()
        return (status, try ScanFS.readFile(outPath).text)
    }
}

/// A tool started without waiting for it (for concurrent runs).
final class RunningTool {
    let process: Child
    let io: TemporaryDirectory
    let outPath: String
    let errPath: String

    init(_ tool: String, _ arguments: [String]) throws {
        let bin = try #require(Tools.directory, "mkcomposefs and composefs-info not found next to the test bundle")
        io = try TemporaryDirectory()
        outPath = try io.write("stdout", [])
        errPath = try io.write("stderr", [])
        process = try Child(bin + "/" + tool, arguments, stdout: outPath, stderr: errPath)
    }

    func wait() throws -> Tools.Result {
        let status = process.wait()
        defer { io.remove() }
        return Tools.Result(
            status: status,
            stdout: try ScanFS.readFile(outPath), stderr: try ScanFS.readFile(errPath))
    }
}

import ArgumentParser
import ComposeFS
import ToolSupport
import Glibc

@main
struct ComposefsInfo: Tool {
    static let configuration = CommandConfiguration(
        commandName: "composefs-info",
        abstract: "Show the contents of composefs images.",
        usage: "composefs-info [--basedir=path] [--filter=NAME]... [ls|objects|dump|missing-objects|measure-file] IMAGES..."
    )

    @Option(name: .customLong("basedir"), help: ArgumentHelp("Object store to check with missing-objects.", valueName: "PATH"))
    var basedir: String?

    @Option(name: .customLong("filter"), help: ArgumentHelp("Load only this top-level entry (repeatable).", valueName: "NAME"))
    var filter: [String] = []

    @Argument(help: "The command (ls, objects, missing-objects, dump, measure-file), then images or files.")
    var arguments: [String] = []

    static func main() { runMain() }

    static var usageText: String { usage }

    static var usage: String { "usage: composefs-info [--basedir=path] [ls|objects|dump|missing-objects|measure-file] IMAGES...\n" }

    struct Failure: ToolError {
        var message: String
        var stderrText: String { message }
        init(_ text: String, usage: Bool = false) {
            message = "composefs-info: \(text)\n" + (usage ? ComposefsInfo.usage : "")
        }
    }

    func execute() throws {
        guard let command = arguments.first else { throw Failure("No command specified", usage: true) }
        let files = Array(arguments.dropFirst())
        let known = ["ls", "objects", "missing-objects", "dump", "measure-file"]
        guard known.contains(command) else { throw Failure("Unknown command '\(command)'\n") }
        if command == "measure-file" {
            guard !files.isEmpty else { throw Failure("No files specified", usage: true) }
            for f in files { try measure(f) }
            return
        }
        guard !files.isEmpty else { throw Failure("No image path specified", usage: true) }
        var names: Set<[UInt8]>? = nil
        if !filter.isEmpty {
            names = []
            for f in filter {
                guard !f.contains("/") else { throw Failure("Filter must be a single name: \(f): \(errnoDescription(EINVAL))") }
                names!.insert(Array(f.utf8))
            }
        }
        var basefd: Int32 = -1
        if command == "missing-objects" {
            guard let basedir else { throw Failure("missing-objects needs --basedir=PATH (the object store to check)", usage: true) }
            basefd = open(basedir, LinuxConstants.O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard basefd >= 0 else { throw Failure("Failed to open '\(basedir)': \(errnoDescription(errno))") }
        }
        var out = Output()
        var objects: [[UInt8]] = []
        for path in files {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw Failure("Failed to open '\(path)': \(errnoDescription(errno))") }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw Failure("Failed to open '\(path)': \(errnoDescription(errno))") }
            // Read on demand: memory stays small whatever the image size.
            let reader = ByteReader(fd: fd, size: Int(st.st_size))
            var line: [UInt8] = []
            do {
                // A first pass checks the whole image, so a damaged one
                // gives an error and no partial listing.
                if command == "dump" || command == "ls" { try ImageReader.walk(reader, filter: names) { _ in } }
                try ImageReader.walk(reader, filter: names) { entry in
                    line.removeAll(keepingCapacity: true)
                    switch command {
                    case "dump":
                        DumpPrinter.line(entry.node, path: entry.path, hardlinkTarget: entry.hardlinkTarget, into: &line)
                    case "ls":
                        guard entry.path != [UInt8(ascii: "/")] else { return }
                        DumpPrinter.listLine(entry.node, path: entry.path, isHardlink: entry.hardlinkTarget != nil, into: &line)
                    default:
                        if entry.hardlinkTarget == nil, entry.node.fileType == .regular, let p = entry.node.payload {
                            objects.append(p)
                        }
                        return
                    }
                    out.write(line)
                }
            } catch {
                out.flush()
                throw Failure("Failed to load '\(path)': \(error)")
            }
        }
        if command == "objects" || command == "missing-objects" {
            objects.sort(by: [UInt8].byteOrderLess)
            var previous: [UInt8]? = nil
            for o in objects where o != previous {
                previous = o
                if basefd >= 0 {
                    var relative = o
                    if relative.first == UInt8(ascii: "/") { relative.removeFirst() }
                    var st = stat()
                    let present = (relative + [0]).withUnsafeBufferPointer { p in
                        p.withMemoryRebound(to: CChar.self) { fstatat(basefd, $0.baseAddress!, &st, LinuxConstants.AT_EMPTY_PATH) == 0 }
                    }
                    if present { continue }
                }
                out.write(o + [0x0A])
            }
        }
        out.flush()
    }

    func measure(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("Failed to open '\(path)': \(errnoDescription(errno))") }
        defer { close(fd) }
        do {
            let d = try FsVerity.measureOrCompute(fd: fd, path: path)
            var out = Output()
            out.write(Array((d.hexString + "\n").utf8))
            out.flush()
        } catch {
            if case let .io(_, e) = error {
                Terminal.error("composefs-info: failed to measure '\(path)': \(errnoDescription(e))")
            }
            Terminal.exit(1)
        }
    }
}

/// Buffered standard output; a closed pipe ends the program quietly.
struct Output {
    var buffer: [UInt8] = []

    mutating func write(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        do {
            try FileIO.write(fd: 1, buffer, path: "<stdout>")
        } catch {
            if error.errno != EPIPE { Terminal.error("composefs-info: \(error.description)\n") }
            Terminal.exit(1)
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

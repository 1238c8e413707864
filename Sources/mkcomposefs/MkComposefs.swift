import ArgumentParser
import ComposeFS
import ToolSupport
import Glibc

@main
struct MkComposefs: Tool {
    static let configuration = CommandConfiguration(
        commandName: "mkcomposefs",
        abstract: "Create a composefs image from a directory tree or a composefs-dump(5) file.",
        usage: "mkcomposefs [OPTIONS] SOURCE IMAGE\n       mkcomposefs --print-digest-only [OPTIONS] SOURCE"
    )

    @Flag(name: .customLong("from-file"), help: "SOURCE is a composefs-dump(5) file ('-' for standard input).")
    var fromFile = false

    @Option(name: .customLong("digest-store"), help: ArgumentHelp("Copy file contents into this object store.", valueName: "PATH"))
    var digestStore: String?

    @Flag(name: .customLong("print-digest"), help: "Print the image's fs-verity digest.")
    var printDigest = false

    @Flag(name: .customLong("print-digest-only"), help: "Print the digest and write no image.")
    var printDigestOnly = false

    @Flag(name: .customLong("use-epoch"), help: "Set every mtime to 0.")
    var useEpoch = false

    @Flag(name: .customLong("skip-devices"), help: "Leave out block and character devices.")
    var skipDevices = false

    @Flag(name: .customLong("skip-xattrs"), help: "Read no extended attributes.")
    var skipXattrs = false

    @Flag(name: .customLong("user-xattrs"), help: "Read only user.* extended attributes.")
    var userXattrs = false

    @Option(name: .customLong("min-version"), help: ArgumentHelp("Lowest format version to write.", valueName: "N"))
    var minVersion: String?

    @Option(name: .customLong("max-version"), help: ArgumentHelp("Highest format version to write.", valueName: "N"))
    var maxVersion: String?

    @Option(name: .customLong("threads"), help: ArgumentHelp("Worker threads for digests and copies.", valueName: "N"))
    var threads: String?

    @Argument(help: "The source directory or dump file, then the image path ('-' for standard output).")
    var paths: [String] = []

    static func main() { runMain() }

    static var usageText: String { "usage: \(configuration.usage!)\nSee 'mkcomposefs --help' or mkcomposefs(1).\n" }

    /// A message for stderr and exit status 1.
    struct Failure: ToolError {
        var message: String
        var usage = false
        /// Argument errors print as upstream's do: the bare message, then usage.
        var stderrText: String {
            usage ? "\(message)\n" + MkComposefs.usageText : "mkcomposefs: \(message)\n"
        }
    }

    /// C `strtol` base 10 on the whole value.
    static func parseVersion(_ text: String?, _ what: String) throws -> UInt32? {
        guard let text else { return nil }
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count, bytes[i] == 0x20 || (0x09...0x0D).contains(bytes[i]) { i += 1 }
        var negative = false
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < bytes.count, bytes[i...].allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw Failure(message: "Invalid \(what) version \(text)")
        }
        // Anything out of range is refused by the writer with EINVAL.
        guard !negative, let v = UInt32(String(decoding: bytes[i...], as: UTF8.self)) else { return UInt32.max }
        return v
    }

    /// Reads and parses the dump in 64 KiB pieces.
    static func parseDump(_ source: String) throws -> Node {
        let name = source == "-" ? "<stdin>" : source
        let fd = source == "-" ? 0 : open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(message: "cannot open '\(source)': \(errnoDescription(errno))") }
        defer { if fd != 0 { close(fd) } }
        var parser = DumpParser.Incremental(strict: ComposeFS.strictParsingRequested)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        do {
            while true {
                let n = read(fd, buffer.baseAddress, buffer.count)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure(message: "cannot read '\(name)': \(errnoDescription(errno))")
                }
                if n == 0 { break }
                try parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            }
            return try parser.finish()
        } catch let error as DumpParser.Error {
            throw Failure(message: "\(name): \(error)")
        }
    }

    func execute() throws {
        var minV = try Self.parseVersion(minVersion, "min")
        var maxV = try Self.parseVersion(maxVersion, "max")
        if minV == nil && maxV == nil {
            minV = 0
            maxV = 1
        }
        var threadCount = Parallel.availableCPUs
        if let threads {
            guard let n = Int(threads), n > 0 else { throw Failure(message: "Invalid threads count \(threads)") }
            threadCount = n
        }
        guard let source = paths.first else { throw Failure(message: "No source path specified", usage: true) }
        guard !source.isEmpty else { throw Failure(message: "Empty source path specified") }
        var image: String? = nil
        if printDigestOnly {
            guard paths.count == 1 else {
                throw Failure(message: "Cannot specify destination path with --print-digest-only", usage: true)
            }
        } else {
            guard paths.count >= 2 else { throw Failure(message: "No destination path specified", usage: true) }
            guard paths.count == 2 else { throw Failure(message: "Too many arguments", usage: true) }
            image = paths[1]
        }
        if image == "-" && isatty(1) != 0 {
            throw Failure(message: "stdout is a tty.  Refusing to use it")
        }

        let root: Node
        if fromFile {
            root = try Self.parseDump(source)
        } else {
            var options = DirectoryScanner.Options()
            options.useEpoch = useEpoch
            options.skipDevices = skipDevices
            options.skipXattrs = skipXattrs
            options.userXattrsOnly = userXattrs
            options.threads = threadCount
            options.digestStore = digestStore
            let progress = Terminal.isTerminal(2) ? ProgressLine() : nil
            if let progress {
                options.progress = { @Sendable (files: Int, bytes: UInt64) in progress.update(files: files, bytes: bytes) }
            }
            defer { progress?.finish() }
            do {
                root = try DirectoryScanner.scan(source, options: options)
            } catch {
                throw Failure(message: "\(error)")
            }
        }

        let prepared: ImageWriter.PreparedImage
        do {
            prepared = try ImageWriter.prepare(root, options: .init(minVersion: minV ?? 0, maxVersion: maxV ?? 0))
        } catch {
            throw Failure(message: "cannot write file: \(error)")
        }
        // The image is streamed to its file (or stdout) and hashed on the way.
        let hasher = (printDigest || printDigestOnly) ? FsVerity.Hasher() : nil
        do {
            if image == "-" {
                try prepared.serialize { (chunk: [UInt8]) throws(FileIO.Error) in
                    hasher?.update(chunk)
                    try FileIO.write(fd: 1, chunk, path: "<stdout>")
                }
            } else if let image {
                let file = try FileIO.AtomicFile(path: image)
                try prepared.serialize { (chunk: [UInt8]) throws(FileIO.Error) in
                    hasher?.update(chunk)
                    try file.write(chunk)
                }
                try file.commit()
            } else {
                prepared.serialize { hasher?.update($0) }
            }
        } catch {
            throw Failure(message: "cannot write file: \(error)")
        }
        if let hasher {
            let line = Array((hasher.finalize().hexString + "\n").utf8)
            do {
                try FileIO.write(fd: 1, line, path: "<stdout>")
            } catch {
                throw Failure(message: "\(error)")
            }
        }
    }
}

import ComposeFS
import Dispatch
import Glibc

/// `mkcomposefs`: an image (and object store) from a directory tree, a
/// composefs-dump(5) file, or tar layers.
enum MkComposefs: Tool {
    static let name = "mkcomposefs"

    enum Flag {
        static let fromFile = Arguments.Option.flag("from-file")
        static let digestStore = Arguments.Option.valued("digest-store", "PATH")
        static let printDigest = Arguments.Option.flag("print-digest")
        static let printDigestOnly = Arguments.Option.flag("print-digest-only")
        static let useEpoch = Arguments.Option.flag("use-epoch")
        static let skipDevices = Arguments.Option.flag("skip-devices")
        static let skipXattrs = Arguments.Option.flag("skip-xattrs")
        static let userXattrs = Arguments.Option.flag("user-xattrs")
        static let minVersion = Arguments.Option.valued("min-version", "N")
        /// What upstream's mkcomposefs(1) calls the base version
        /// (`--version=N`); `--version` alone prints the program's version.
        static let baseVersion = Arguments.Option.valued("version", "N")
        static let maxVersion = Arguments.Option.valued("max-version", "N")
        static let threads = Arguments.Option.valued("threads", "N")
        static let fromTar = Arguments.Option.valued("from-tar", "LAYER")
        static let tarWhiteouts = Arguments.Option.valued("tar-whiteouts", "MODE")
        static let fromOCI = Arguments.Option.valued("from-oci", "SOURCE")
        static let platform = Arguments.Option.valued("platform", "OS/ARCH[/VARIANT]")
        static let verbose = Arguments.Option.flag("verbose", short: "v")
    }

    static let options = [
        Flag.fromFile, Flag.digestStore, Flag.printDigest, Flag.printDigestOnly,
        Flag.useEpoch, Flag.skipDevices, Flag.skipXattrs, Flag.userXattrs,
        Flag.minVersion, Flag.maxVersion, Flag.baseVersion, Flag.threads, Flag.fromTar, Flag.tarWhiteouts,
        Flag.fromOCI, Flag.platform, Flag.verbose
    ]

    static let usage = """
        usage: mkcomposefs [OPTIONS] SOURCE IMAGE
               mkcomposefs --print-digest-only [OPTIONS] SOURCE
               mkcomposefs --from-tar LAYER... [OPTIONS] IMAGE
               mkcomposefs --from-oci SOURCE [OPTIONS] IMAGE
        See 'mkcomposefs --help' or mkcomposefs(1).

        """

    static var help: String {
        """
        Create a composefs image from a directory tree, a composefs-dump(5) file, tar
        layers or a container image.

        usage: mkcomposefs [OPTIONS] SOURCE IMAGE
               mkcomposefs --print-digest-only [OPTIONS] SOURCE
               mkcomposefs --from-tar LAYER [--from-tar LAYER]... [OPTIONS] IMAGE
               mkcomposefs --from-oci SOURCE [--platform OS/ARCH] [OPTIONS] IMAGE

        SOURCE is a directory, or with --from-file a composefs-dump(5) file ('-' for
        standard input). IMAGE is the image file to write ('-' for standard output).
        With --from-tar there is no SOURCE: the image is made from the tar layers,
        lowest first, as if extracted (plain, gzip, xz or zstd; '-' for standard input).
        With --from-oci the image is made from a container image's layers, every blob
        checked against its digest: oci:DIR[:REF], oci-archive:FILE[:REF],
        docker-archive:FILE[:REF], or a path (told apart by what it holds).

        Options:
          --digest-store=PATH   Copy file contents into this object store
          --use-epoch           Make all mtimes zero
          --skip-devices        Leave out block and character devices
          --skip-xattrs         Read no extended attributes
          --user-xattrs         Read only user.* extended attributes
          --print-digest        Print the image's fs-verity digest
          --print-digest-only   Print the digest and write no image
          --from-file           SOURCE is a composefs-dump(5) file
          --from-tar=LAYER      Read a tar layer (repeat for more layers, lowest first)
          --tar-whiteouts=MODE  oci (default): apply .wh. whiteouts across layers;
                                overlay: make them overlay whiteouts (one layer)
          --from-oci=SOURCE     Read a container image (see above)
          --platform=OS/ARCH[/VARIANT]  Which image of a multi-platform index
                                (default: this machine's)
          -v, --verbose         Print the manifest and platform chosen
          --min-version=N       Lowest format version to write (default 0; also --version=N)
          --max-version=N       Highest format version to write (default 1)
          --threads=N           Threads for digests and copies (default \(DirectoryScanner.defaultThreadCount))
          -h, --help            Show this help
          --version             Show the version

        """
    }

    static func failure(_ message: String, usage showUsage: Bool = false) -> ToolFailure {
        // Command-line errors print as upstream's do: the bare message, then usage.
        ToolFailure(text: showUsage ? "\(message)\n" + usage : "mkcomposefs: \(message)\n")
    }

    /// C `strtol` base 10 on the whole value.
    static func parseVersion(_ value: [UInt8]?, _ what: String) throws(ToolFailure) -> UInt32? {
        guard let bytes = value else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        var i = 0
        while i < bytes.count, bytes[i] == 0x20 || (0x09...0x0D).contains(bytes[i]) { i += 1 }
        var negative = false
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < bytes.count, bytes[i...].allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw failure("Invalid \(what) version \(text)")
        }
        // Anything out of range is refused by the writer with EINVAL.
        guard !negative, let v = UInt32(String(decoding: bytes[i...], as: UTF8.self)) else { return UInt32.max }
        return v
    }

    /// Reads and parses the dump in 64 KiB pieces.
    static func parseDump(_ source: FilePath) throws(ToolFailure) -> Node {
        let stdin = source.bytes == [UInt8(ascii: "-")]
        let name: FilePath = stdin ? "<stdin>" : source
        let fd: FileDescriptor
        if stdin {
            fd = .standardInput
        } else {
            do { fd = try .open(source, .readOnly) } catch { throw failure("cannot open '\(source)': \(error)") }
        }
        defer { if !stdin { try? fd.close() } }
        var parser = DumpParser.Incremental(strict: CurrentProcess.environment("CFS_PARSE_STRICT") != nil)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n: Int
            do { n = try fd.read(into: buffer) } catch { throw failure("cannot read '\(name)': \(error)") }
            if n == 0 { break }
            do {
                try parser.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            } catch {
                throw failure("\(name): \(error)")
            }
        }
        do {
            return try parser.finish()
        } catch {
            throw failure("\(name): \(error)")
        }
    }

    static func run(_ arguments: Arguments) throws(ToolFailure) {
        let printDigestOnly = arguments.has(Flag.printDigestOnly)
        let printDigest = printDigestOnly || arguments.has(Flag.printDigest)
        let base = arguments.given.last { $0.option == Flag.minVersion || $0.option == Flag.baseVersion }
        var minV = try parseVersion(base?.value, "min")
        var maxV = try parseVersion(arguments.last(Flag.maxVersion), "max")
        if minV == nil && maxV == nil {
            minV = 0
            maxV = 1
        }
        var threadCount = DirectoryScanner.defaultThreadCount
        if let threads = arguments.lastText(Flag.threads) {
            guard let n = Int(threads), n > 0 else { throw failure("Invalid threads count \(threads)") }
            threadCount = n
        }
        let layers = arguments.all(Flag.fromTar).map { FilePath(bytes: $0) }
        let oci = arguments.last(Flag.fromOCI)
        var paths = arguments.operands.map { FilePath(bytes: $0) }
        if oci != nil {
            if !layers.isEmpty { throw failure("--from-oci and --from-tar cannot be used together", usage: true) }
            if arguments.has(Flag.fromFile) { throw failure("--from-oci and --from-file cannot be used together", usage: true) }
            if arguments.has(Flag.tarWhiteouts) { throw failure("--tar-whiteouts needs --from-tar", usage: true) }
            paths.insert("", at: 0)   // no SOURCE operand: the container image is the source
        } else if !layers.isEmpty {
            if arguments.has(Flag.fromFile) { throw failure("--from-tar and --from-file cannot be used together", usage: true) }
            paths.insert("", at: 0)   // no SOURCE operand: the layers are the source
        } else if arguments.has(Flag.tarWhiteouts) {
            throw failure("--tar-whiteouts needs --from-tar", usage: true)
        }
        if oci == nil && arguments.has(Flag.platform) { throw failure("--platform needs --from-oci", usage: true) }
        guard let source = paths.first else { throw failure("No source path specified", usage: true) }
        guard !source.isEmpty || !layers.isEmpty || oci != nil else { throw failure("Empty source path specified") }
        var image: FilePath? = nil
        if printDigestOnly {
            guard paths.count == 1 else {
                throw failure("Cannot specify destination path with --print-digest-only", usage: true)
            }
        } else {
            guard paths.count >= 2 else { throw failure("No destination path specified", usage: true) }
            guard paths.count == 2 else { throw failure("Too many arguments", usage: true) }
            image = paths[1]
        }
        // The output is opened before the input is read, as upstream opens
        // it: a path that cannot be written fails before any work.
        var output: OutputFile? = nil
        if let image {
            if image == "-" && Terminal.isTerminal(1) { throw failure("stdout is a tty.  Refusing to use it") }
            do { output = try OutputFile(image) } catch { throw failure("\(error)") }
        }

        // The store's shared lock is kept until the process ends, after the
        // image is in place (see ObjectStore.Lock).
        let (root, storeLock, commit) =
            if let oci { try readContainerImage(oci, arguments) } else {
                try makeTree(source, layers: layers, arguments, threads: threadCount)
            }
        defer { withExtendedLifetime(storeLock) {} }
        try write(
            root, to: output, printDigest: printDigest,
            versions: .init(minVersion: minV ?? 0, maxVersion: maxV ?? 0), after: commit)
    }

    /// The store's last batch, made durable on another thread while the
    /// image is laid out and written; the image is put in place (or sent,
    /// or its digest printed) only once this has succeeded.
    final class PendingCommit: @unchecked Sendable {
        private let done = DispatchGroup()
        private var failure: ObjectStore.Error? = nil   // set before `done` is left

        init(_ store: ObjectStore) {
            DispatchQueue.global().async(group: done) {
                do throws(ObjectStore.Error) { try store.commit() } catch { self.failure = error }
            }
        }

        func wait() throws(ToolFailure) {
            done.wait()
            if let failure { throw MkComposefs.failure("cannot fill store: \(failure)") }
        }
    }

    /// The tree to write, from tar layers, a dump or a directory, the
    /// store's lock when objects were added, and the store's commit when
    /// it is still under way.
    static func makeTree(
        _ source: FilePath, layers: [FilePath], _ arguments: Arguments,
        threads: Int
    ) throws(ToolFailure) -> (Node, ObjectStore.Lock?, PendingCommit?) {
        if !layers.isEmpty {
            return try readLayers(layers, arguments)
        } else if arguments.has(Flag.fromFile) {
            return (try parseDump(source), nil, nil)
        } else {
            var options = DirectoryScanner.Options()
            options.useEpoch = arguments.has(Flag.useEpoch)
            options.skipDevices = arguments.has(Flag.skipDevices)
            options.skipXattrs = arguments.has(Flag.skipXattrs)
            options.userXattrsOnly = arguments.has(Flag.userXattrs)
            options.threads = threads
            options.digestStore = arguments.last(Flag.digestStore).map { FilePath(bytes: $0) }
            let progress = Terminal.isTerminal(2) ? ProgressLine() : nil
            if let progress {
                options.progress = { @Sendable (files: Int, bytes: UInt64) in progress.update(files: files, bytes: bytes) }
            }
            defer { progress?.finish() }
            do {
                let scanned = try DirectoryScanner.scanHoldingStore(source, options: options)
                return (scanned.root, scanned.storeLock, nil)
            } catch {
                if case .invalidOptions(let source) = error { throw xattrOptionsConflict(source) }
                throw failure("\(error)")
            }
        }
    }

    /// Upstream's EINVAL for --skip-xattrs with --user-xattrs, naming both.
    static func xattrOptionsConflict(_ source: FilePath) -> ToolFailure {
        failure("error accessing \(source): \(Errno.invalidArgument) (--skip-xattrs and --user-xattrs together)")
    }

    /// Streams the image to its output (or nowhere), hashing it on the way
    /// when the digest is asked for. Nothing reaches an output written in
    /// place (a pipe, a device, a descriptor's file) before the image is
    /// whole and the objects it names are durable.
    static func write(
        _ root: Node, to output: OutputFile?, printDigest: Bool,
        versions: ImageWriter.Options, after commit: PendingCommit? = nil
    ) throws(ToolFailure) {
        let prepared: ImageWriter.PreparedImage
        do {
            prepared = try ImageWriter.prepare(root, options: versions)
        } catch {
            throw failure("cannot write file: \(error)")
        }
        let hasher = printDigest ? FsVerity.Hasher() : nil
        if output?.target.isInPlace == true { try commit?.wait() }
        do throws(OutputFile.Error) {
            try prepared.serialize { (chunk: [UInt8]) throws(OutputFile.Error) in
                hasher?.update(chunk)
                try output?.write(chunk)
            }
        } catch {
            throw failure("\(error)")
        }
        // The image names objects: they are durable first.
        try commit?.wait()
        do { try output?.commit() } catch { throw failure("\(error)") }
        if let hasher {
            do {
                try FileDescriptor.standardOutput.writeAll(Array((hasher.finalize().hexString + "\n").utf8))
            } catch {
                throw failure("cannot write to standard output: \(error)")
            }
        }
        // Done: exit here, with the tree and layout still referenced.
        // Freeing them node by node would cost more than building them.
        Terminal.exit(0)
    }
}

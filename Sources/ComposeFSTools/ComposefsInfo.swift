import ComposeFS
import Glibc

/// `composefs-info`: what is in composefs images.
enum ComposefsInfo: Tool {
    static let name = "composefs-info"

    enum Flag {
        static let basedir = Arguments.Option.valued("basedir", "PATH")
        static let filter = Arguments.Option.valued("filter", "NAME")
    }

    static let options = [Flag.basedir, Flag.filter]

    static let usage = "usage: composefs-info [--basedir=path] [ls|objects|dump|missing-objects|measure-file] IMAGES...\n"

    static let help = """
        Show the contents of composefs images.

        usage: composefs-info [--basedir=PATH] [--filter=NAME]... COMMAND IMAGES...

        Commands:
          ls               List the files, with the object or symlink target of each
          dump             Print the image in composefs-dump(5) format
          objects          List the objects the image refers to
          missing-objects  List the objects not in --basedir
          measure-file     Print the fs-verity digest of each FILE (the kernel's, or computed)

        Options:
          --basedir=PATH   The object store to check (missing-objects)
          --filter=NAME    Only this top-level entry (repeatable)
          -h, --help       Show this help
          --version        Show the version

        """

    static func failure(_ text: String, usage showUsage: Bool = false) -> ToolFailure {
        ToolFailure(text: "composefs-info: \(text)\n" + (showUsage ? usage : ""))
    }

    enum Command: String, CaseIterable {
        case ls, objects, dump
        case missingObjects = "missing-objects"
        case measureFile = "measure-file"
    }

    static func run(_ arguments: Arguments) throws(ToolFailure) {
        guard let first = arguments.operands.first else { throw failure("No command specified", usage: true) }
        let word = String(decoding: first, as: UTF8.self)
        guard let command = Command(rawValue: word) else { throw failure("Unknown command '\(word)'\n") }
        let files = arguments.operands.dropFirst().map { FilePath(bytes: $0) }
        if command == .measureFile {
            guard !files.isEmpty else { throw failure("No files specified", usage: true) }
            var out = Output(tool: name)
            for f in files { try measure(f, into: &out) }
            out.flush()
            return
        }
        guard !files.isEmpty else { throw failure("No image path specified", usage: true) }
        var names: Set<[UInt8]>? = nil
        let filters = arguments.all(Flag.filter)
        if !filters.isEmpty {
            var set = Set<[UInt8]>()
            for f in filters {
                guard !f.contains(UInt8(ascii: "/")) else {
                    throw failure("Filter must be a single name: \(String(decoding: f, as: UTF8.self)): \(Errno.invalidArgument)")
                }
                set.insert(f)
            }
            names = set
        }
        var store: ObjectStore? = nil
        if command == .missingObjects {
            guard let basedir = arguments.last(Flag.basedir).map({ FilePath(bytes: $0) }) else {
                throw failure("missing-objects needs --basedir=PATH (the object store to check)", usage: true)
            }
            do { store = try ObjectStore(readingAt: basedir) } catch {
                guard case .store(_, _, let e) = error else { throw failure("\(error)") }
                throw failure("Failed to open '\(basedir)': \(e)")
            }
        }
        var out = Output(tool: name)
        var objects: [[UInt8]] = []
        for path in files {
            try list(path, command: command, filter: names, objects: &objects, out: &out)
        }
        if command == .objects || command == .missingObjects {
            objects.sort(by: [UInt8].byteOrderLess)
            var previous: [UInt8]? = nil
            for o in objects where o != previous {
                previous = o
                if let store, present(o, in: store) { continue }
                out.write(o + [0x0A])
            }
        }
        out.flush()
    }

    /// One image: `ls` and `dump` lines go out as the walk finds them;
    /// object names are collected.
    static func list(
        _ path: FilePath, command: Command, filter: Set<[UInt8]>?,
        objects: inout [[UInt8]], out: inout Output
    ) throws(ToolFailure) {
        let fd: FileDescriptor
        let st: stat
        do throws(Errno) {
            fd = try .open(path, .readOnly)
            do { st = try fd.stat() } catch {
                try? fd.close()
                throw error
            }
        } catch {
            throw failure("Failed to open '\(path)': \(error)")
        }
        defer { try? fd.close() }
        // An image is read into memory whole (it is all metadata); only
        // very large ones are read on demand through a small block cache.
        let reader: ByteReader
        if st.st_size <= inMemoryLimit {
            do {
                reader = try ByteReader(readingAll: fd, size: Int(st.st_size))
            } catch {
                throw failure("Failed to load '\(path)': \(ImageReader.Error.truncated(error))")
            }
        } else {
            reader = ByteReader(fd: fd, size: Int(st.st_size))
        }
        // A damaged image gives an error and no partial listing: in
        // memory, the listing is kept until the whole image has been read;
        // on demand, a first pass checks the whole image.
        let whole = reader.isInMemory
        var line: [UInt8] = []
        var pending: [UInt8] = []
        do {
            if !whole && (command == .dump || command == .ls) {
                try ImageReader.walk(reader, filter: filter) { _ in }
            }
            try ImageReader.walk(reader, filter: filter) { entry in
                line.removeAll(keepingCapacity: true)
                switch command {
                case .dump:
                    DumpPrinter.line(entry.node, path: entry.path, hardlinkTarget: entry.hardlinkTarget, into: &line)
                case .ls:
                    guard entry.path != [UInt8(ascii: "/")] else { return }
                    DumpPrinter.listLine(entry.node, path: entry.path, isHardlink: entry.hardlinkTarget != nil, into: &line)
                default:
                    if entry.hardlinkTarget == nil, entry.node.fileType == .regular, let p = entry.node.payload {
                        objects.append(p)
                    }
                    return
                }
                if whole { pending.append(contentsOf: line) } else { out.write(line) }
            }
        } catch {
            out.flush()
            throw failure("Failed to load '\(path)': \(error)")
        }
        out.writeNow(pending)
    }

    /// Images up to this size are read into memory whole.
    static let inMemoryLimit = off_t(1) << 30

    /// Whether the store holds the object (a payload may start with `/`);
    /// anything but a regular file under its name does not count.
    static func present(_ object: [UInt8], in store: ObjectStore) -> Bool {
        var relative = object
        if relative.first == UInt8(ascii: "/") { relative.removeFirst() }
        return (try? store.contains(relative)) ?? false
    }

    static func measure(_ path: FilePath, into out: inout Output) throws(ToolFailure) {
        let fd: FileDescriptor
        do { fd = try .open(path, .readOnly) } catch { throw failure("Failed to open '\(path)': \(error)") }
        defer { try? fd.close() }
        do {
            let d = try FsVerity.measureOrCompute(fd: fd, path: path)
            out.write(Array((d.hexString + "\n").utf8))
        } catch {
            out.flush()
            switch error {
            case .io(_, let e): throw ToolFailure(text: "composefs-info: failed to measure '\(path)': \(e)")
            }
        }
    }
}

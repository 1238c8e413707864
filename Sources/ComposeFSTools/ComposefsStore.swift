import ComposeFS
import Glibc

/// `composefs-store`: an object store's garbage collection, check and
/// usage per image.
enum ComposefsStore: Tool {
    static let name = "composefs-store"

    enum Flag {
        static let dryRun = Arguments.Option.flag("dry-run", short: "n")
        static let noWait = Arguments.Option.flag("no-wait")
        static let repair = Arguments.Option.flag("repair")
        static let threads = Arguments.Option.valued("threads", "N")
    }

    static let options = [Flag.dryRun, Flag.noWait, Flag.repair, Flag.threads]

    static let usage = """
        usage: composefs-store gc [--dry-run] [--no-wait] STORE IMAGE|DIR...
               composefs-store fsck [--repair] [--threads=N] STORE [IMAGE...]
               composefs-store du STORE IMAGE...

        """

    static var help: String {
        """
        Maintain a composefs object store.

        usage: composefs-store gc [--dry-run] [--no-wait] STORE IMAGE|DIR...
               composefs-store fsck [--repair] [--threads=N] STORE [IMAGE...]
               composefs-store du STORE IMAGE...

        Commands:
          gc     Remove the objects no given image refers to (directories are searched
                 for images); waits for writers holding the store's lock
          fsck   Check that every object's contents have the digest its name says,
                 report other entries and, for the images given, missing objects
          du     For each image: its objects' bytes, those only it uses (what removing
                 it would free) and those it shares

        Options:
          -n, --dry-run   gc: list what would be removed, remove nothing
          --no-wait       gc: fail at once if a writer holds the store
          --repair        fsck: rename bad objects to STORE/xx/yyyy....damaged (kept, never
                          deleted; the next mkcomposefs --digest-store writes them anew)
          --threads=N     fsck: threads for reading objects (default \(CurrentProcess.availableCPUs))
          -h, --help      Show this help
          --version       Show the version

        """
    }

    static func failure(_ text: String, usage showUsage: Bool = false) -> ToolFailure {
        ToolFailure(text: "composefs-store: \(text)\n" + (showUsage ? usage : ""))
    }

    static func run(_ arguments: Arguments) throws(ToolFailure) {
        guard let first = arguments.operands.first else { throw failure("No command specified", usage: true) }
        let command = String(decoding: first, as: UTF8.self)
        let rest = arguments.operands.dropFirst().map { FilePath(bytes: $0) }
        guard ["gc", "fsck", "du"].contains(command) else { throw failure("Unknown command '\(command)'") }
        guard let store = rest.first else { throw failure("No store specified", usage: true) }
        let roots = Array(rest.dropFirst())
        guard !roots.isEmpty || command == "fsck" else { throw failure("No images specified", usage: true) }
        var out = Output(tool: name)
        defer { out.flush() }
        switch command {
        case "gc": try collect(store, roots, arguments, &out)
        case "fsck": try check(store, roots, arguments, &out)
        default: try usage(store, roots, &out)
        }
    }

    /// A library call; its error ends the tool with its message.
    static func library<T>(_ body: () throws(StoreMaintenance.Error) -> T) throws(ToolFailure) -> T {
        do { return try body() } catch { throw failure("\(error)") }
    }

    static func collect(_ store: FilePath, _ paths: [FilePath], _ arguments: Arguments, _ out: inout Output) throws(ToolFailure) {
        let dryRun = arguments.has(Flag.dryRun)
        let result = try library { () throws(StoreMaintenance.Error) in
            try StoreMaintenance.collectGarbage(
                store: store, roots: paths, dryRun: dryRun,
                wait: !arguments.has(Flag.noWait))
        }
        let roots = result.roots
        for s in roots.skipped { Terminal.error("composefs-store: skipping \(s.path): \(s.reason)\n") }
        for f in result.foreign { Terminal.error("composefs-store: not an object, left alone: \(store.appending(f.bytes))\n") }
        if dryRun { for id in result.removed { out.write(id.path + [0x0A]) } }
        var line = "\(roots.images.count) images: kept \(result.kept) objects, "
        line += dryRun ? "would remove" : "removed"
        line += " \(result.removed.count) objects (\(bytes(result.removedBytes)) \(dryRun ? "to free" : "freed"))"
        if result.temporariesRemoved > 0 { line += ", removed \(result.temporariesRemoved) abandoned temporary files" }
        summary(line, dryRun: dryRun, &out)
    }

    /// The summary goes to stdout, except in a dry run, whose stdout is the list.
    static func summary(_ line: String, dryRun: Bool, _ out: inout Output) {
        if dryRun { Terminal.error(line + "\n") } else { out.write(Array((line + "\n").utf8)) }
    }

    static func check(_ store: FilePath, _ images: [FilePath], _ arguments: Arguments, _ out: inout Output) throws(ToolFailure) {
        var threads = CurrentProcess.availableCPUs
        if let t = arguments.lastText(Flag.threads) {
            guard let n = Int(t), n > 0 else { throw failure("Invalid threads count \(t)") }
            threads = n
        }
        let progress = Terminal.isTerminal(2) ? ProgressLine(unit: "objects") : nil
        let report: (@Sendable (Int, UInt64) -> Void)? = progress.map { p in { @Sendable n, b in p.update(files: n, bytes: b) } }
        let result = try library { () throws(StoreMaintenance.Error) in
            try StoreMaintenance.check(
                store: store, images: images, repair: arguments.has(Flag.repair),
                threads: threads, progress: report)
        }
        progress?.finish()
        for b in result.bad { out.write(Array("bad \(b.id): \(b.reason)\n".utf8)) }
        for f in result.foreign { out.write(Array("not an object: \(store.appending(f.bytes))\n".utf8)) }
        for m in result.missing { for id in m.objects { out.write(Array("missing \(id) (\(m.image))\n".utf8)) } }
        var line =
            "checked \(result.checked.objects) objects (\(bytes(result.checked.bytes))): \(result.bad.count) bad, "
            + "\(result.foreign.count) other entries, \(result.missing.reduce(0) { $0 + $1.objects.count }) missing"
        for m in result.movedAside { out.write(Array("moved \(m.id) to \(store.appending(m.to.bytes))\n".utf8)) }
        if !result.movedAside.isEmpty { line += "; moved \(result.movedAside.count) bad objects aside" }
        if !result.damaged.isEmpty { line += "; \(result.damaged.count) moved aside earlier (*.damaged)" }
        out.write(Array((line + "\n").utf8))
        if !result.isClean {
            out.flush()
            throw ToolFailure(text: "")   // the findings are the output
        }
    }

    static func usage(_ store: FilePath, _ images: [FilePath], _ out: inout Output) throws(ToolFailure) {
        let u = try library { () throws(StoreMaintenance.Error) in try StoreMaintenance.usage(store: store, images: images) }
        for i in u.images {
            var line =
                "\(i.path): \(amount(i.total)); only this image: \(amount(i.exclusive)) (freed by removing it); "
                + "shared: \(amount(i.shared))"
            if i.missing > 0 { line += "; missing: \(i.missing) objects" }
            out.write(Array((line + "\n").utf8))
        }
        out.write(Array("\(store): \(amount(u.store)); used by none of these images: \(amount(u.unreferenced))\n".utf8))
    }

    static func amount(_ a: StoreMaintenance.Amount) -> String { "\(a.objects) objects, \(bytes(a.bytes))" }

    /// Exact bytes, and binary units above a KiB.
    static func bytes(_ n: UInt64) -> String {
        guard n >= 1024 else { return "\(n) bytes" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var v = Double(n) / 1024
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        let tenths = Int((v * 10).rounded())
        return "\(n) bytes (\(tenths / 10).\(tenths % 10) \(units[u]))"
    }
}

import ComposeFS

/// fuzz-dump: the dump parser and the image writer/reader round trip.
///
/// - The input is parsed leniently, and strictly too when its first byte is
///   odd. Errors are fine (their descriptions are rendered, to exercise them).
/// - Strict acceptance implies lenient acceptance of the same tree.
/// - Printing a parsed tree gives a dump the parser accepts and that prints
///   the same again (dump text fixed point).
/// - When the writer accepts the tree: the image loads, and
///   write(parse(dump(load(image)))) == image byte for byte (the image is a
///   fixed point of the load→dump→parse→write round trip).
public enum DumpTarget {
    public static func check(_ data: [UInt8]) {
        let lenient: Node
        do {
            lenient = try DumpParser.parse(data, strict: false)
        } catch {
            _ = error.description
            if data.first.map({ $0 & 1 == 1 }) == true {
                do {
                    _ = try DumpParser.parse(data, strict: true)
                    violation("strict parse accepted a dump the lenient parse rejects (\(error))")
                } catch let e2 { _ = e2.description }
            }
            return
        }
        let text = DumpPrinter.dump(lenient)
        if data.first.map({ $0 & 1 == 1 }) == true {
            do {
                let strictTree = try DumpParser.parse(data, strict: true)
                let strictText = DumpPrinter.dump(strictTree)
                if strictText != text {
                    violation("strict and lenient parses differ:\n\(show(strictText))\n---\n\(show(text))")
                }
            } catch { _ = error.description }
        }
        roundTrip(lenient, text: text)
    }

    static func roundTrip(_ tree: Node, text: [UInt8]) {
        // FORMAT.md §6.1 quirk (upstream-compatible): a hardlink entry may
        // name a directory (even the root). Such a tree writes, but its dump
        // cannot be parsed back ("Directories can't be hardlinked"), so the
        // round trips below do not apply; the writer must still not crash.
        if hasDirectoryHardlink(tree) {
            _ = try? ImageWriter.write(tree)
            return
        }
        // Dump text fixed point.
        let reparsed: Node
        do {
            reparsed = try DumpParser.parse(text, strict: false)
        } catch {
            violation("printed dump does not parse: \(error)\n\(show(text))")
        }
        let text2 = DumpPrinter.dump(reparsed)
        if text2 != text {
            violation("dump → parse → dump changed the text:\n\(show(text))\n---\n\(show(text2))")
        }
        _ = DumpPrinter.objects(tree)
        DumpPrinter.list(tree) { _ in }

        // Image round trip.
        let image: [UInt8]
        do {
            image = try ImageWriter.write(tree)
        } catch {
            _ = error.description
            return
        }
        // First generation: the reader makes the first path (in name order)
        // to an inode its primary entry, and the writer derives directory
        // sizes and nlink, so load(image) may legitimately print differently
        // from the input tree, and image2 may differ from image (inode order
        // follows the primary entry). From there on nothing may change.
        let image2 = regenerate(image, generation: 1)
        if image2 == image { return }
        // The entries (paths) must survive; their attributes may change in
        // this generation: the hardlink primary moves to the first path in
        // name order, and whiteout handling (FORMAT.md §5) then marks a
        // different parent opaque; xattr order follows shared/inline (§15.3).
        let d1 = DumpPrinter.dump(try! ImageReader.load(image).root)
        let d2 = DumpPrinter.dump(try! ImageReader.load(image2).root)
        let image3 = regenerate(image2, generation: 2)
        if paths(d1) != paths(d2) || image3 != image2 {
            let l1 = lines(d1), l2 = lines(d2)
            let first = (0..<min(image2.count, image3.count)).first { image2[$0] != image3[$0] } ?? min(image2.count, image3.count)
            violation((paths(d1) != paths(d2) ? "the entries of load(write(parse(dump(load(image))))) differ from load(image)" :
                    "image is not a fixed point in the second generation (\(image2.count) vs \(image3.count) bytes, first difference at \(first))")
                + "\ninput tree:\n\(show(text, limit: 4000))\n"
                + "lines only in dump(load(image)):\n\(l1.subtracting(l2).sorted().joined(separator: "\n"))\n"
                + "lines only in dump(load(image2)):\n\(l2.subtracting(l1).sorted().joined(separator: "\n"))")
        }
    }

    static func hasDirectoryHardlink(_ root: Node) -> Bool {
        var stack = [root]
        while let n = stack.popLast() {
            if n.isHardlink {
                if n.resolvedTarget?.isDirectory ?? false { return true }
                continue
            }
            stack.append(contentsOf: n.children)
        }
        return false
    }

    /// The path field of each dump line.
    public static func paths(_ text: [UInt8]) -> [ArraySlice<UInt8>] {
        text.split(separator: 0x0A).map { $0.prefix { $0 != 0x20 } }
    }

    /// The dump with each line's xattr fields (after the 11 fixed ones) sorted.
    public static func normalized(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for line in text.split(separator: 0x0A, omittingEmptySubsequences: false) {
            let fields = line.split(separator: 0x20, omittingEmptySubsequences: false)
            let fixed = fields.prefix(11)
            let xattrs = fields.dropFirst(11).map(Array.init).sorted { $0.lexicographicallyPrecedes($1) }
            out += Array(fixed.map(Array.init).joined(separator: [0x20]))
            for x in xattrs { out.append(0x20); out += x }
            out.append(0x0A)
        }
        return out
    }

    static func lines(_ text: [UInt8]) -> Set<String> {
        Set(text.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) })
    }

    /// write(parse(dump(load(image)))); every step must succeed.
    static func regenerate(_ image: [UInt8], generation: Int) -> [UInt8] {
        let loaded: ImageReader.Image
        do { loaded = try ImageReader.load(image) } catch {
            violation("gen \(generation): our own image does not load: \(error)")
        }
        let text = DumpPrinter.dump(loaded.root)
        let tree: Node
        do { tree = try DumpParser.parse(text, strict: false) } catch {
            violation("gen \(generation): dump of a loaded image does not parse: \(error)\n\(show(text))")
        }
        do { return try ImageWriter.write(tree) } catch {
            violation("gen \(generation): tree of a loaded image does not write: \(error)\n\(show(text))")
        }
    }
}

/// fuzz-image: the image reader on arbitrary bytes.
///
/// - load, header, walk (with and without a filter) never crash.
/// - When load succeeds: dump, list and objects of the tree do not crash;
///   walk succeeds too and its entries, printed with DumpPrinter.line, equal
///   DumpPrinter.dump(load(image).root). The same holds with a filter naming
///   the first root entry.
/// - When load succeeds and the writer accepts the loaded tree, the written
///   image loads.
public enum ImageTarget {
    public static func check(_ data: [UInt8]) {
        _ = try? ImageReader.header(data)
        let image: ImageReader.Image
        do {
            image = try ImageReader.load(data)
        } catch {
            _ = error.description
            // Walk must fail (or succeed) cleanly too.
            do { try ImageReader.walk(ByteReader(data)) { _ in } } catch { _ = error.description }
            return
        }
        let root = image.root
        compareWalk(data, root: root, filter: nil)
        DumpPrinter.list(root) { _ in }
        _ = DumpPrinter.objects(root)

        if let first = root.children.first {
            let filter: Set<[UInt8]> = [first.name]
            do {
                let filtered = try ImageReader.load(data, filter: filter)
                compareWalk(data, root: filtered.root, filter: filter)
            } catch {
                violation("load succeeded but load(filter: \(show(first.name))) failed: \(error)")
            }
        }

        // Our writer's output must always be readable by our reader.
        if let rewritten = try? ImageWriter.write(root) {
            do { _ = try ImageReader.load(rewritten) } catch {
                violation("image written from a loaded tree does not load: \(error)")
            }
        }
    }

    static func compareWalk(_ data: [UInt8], root: Node, filter: Set<[UInt8]>?) {
        let expected = DumpPrinter.dump(root)
        var walked: [UInt8] = []
        do {
            try ImageReader.walk(ByteReader(data), filter: filter) { e in
                DumpPrinter.line(e.node, path: e.path, hardlinkTarget: e.hardlinkTarget, into: &walked)
            }
        } catch {
            violation("load succeeded but walk failed (filter \(filter.map { $0.map { show($0) } } ?? [])): \(error)")
        }
        if walked != expected {
            violation("walk and load disagree (filter \(filter.map { $0.map { show($0) } } ?? [])):\n"
                + "load:\n\(show(expected))\n---\nwalk:\n\(show(walked))")
        }
    }
}

/// fuzz-mount-options: Mount.Options.parse on the input (lossy UTF-8).
///
/// Never crashes; accepted options have at least one basedir and no empty
/// basedir, a 32-byte digest only together with requireVerity, never both
/// requireVerity and tryVerity, and upperdir exactly when workdir.
public enum MountOptionsTarget {
    public static func check(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        let o: Mount.Options
        do {
            o = try Mount.Options.parse(text)
        } catch {
            _ = error.description
            return
        }
        if o.basedirs.isEmpty { violation("accepted options without a basedir: \(text.debugDescription)") }
        if o.basedirs.contains(where: \.isEmpty) { violation("accepted an empty basedir: \(text.debugDescription)") }
        if let d = o.digest {
            if d.count != 32 { violation("digest of \(d.count) bytes accepted: \(text.debugDescription)") }
            if !o.requireVerity { violation("digest without requireVerity: \(text.debugDescription)") }
        }
        if o.requireVerity && o.tryVerity { violation("both verity and tryverity: \(text.debugDescription)") }
        if (o.upperdir == nil) != (o.workdir == nil) { violation("upperdir without workdir: \(text.debugDescription)") }
        if o.upperdir?.isEmpty == true || o.workdir?.isEmpty == true || o.idmap?.isEmpty == true {
            violation("empty path value accepted: \(text.debugDescription)")
        }
    }
}

/// fuzz-tar: arbitrary bytes as a tar layer, read in memory (no store).
///
/// - `TarReader`, `TarLayer` and `OCILayers` never crash, with OCI and
///   overlay whiteouts; errors are fine (their descriptions render).
/// - An accepted layer flattens into a tree whose regular files are
///   consistent (inline content of exactly `size` bytes up to 64, else a
///   digest and its object path), the image writer either writes it or
///   refuses with an error, and a written image loads.
/// - The layer applied on top of itself is accepted too (whiteouts and
///   replacements across layers).
public enum TarTarget {
    /// Files past this are refused, so hostile sparse sizes stay fast.
    static let maxFileSize: UInt64 = 1 << 22

    public static func check(_ data: [UInt8]) {
        for whiteouts in [TarLayer.Whiteouts.oci, .overlay] {
            guard let root = flatten(data, copies: 1, whiteouts: whiteouts) else { continue }
            checkTree(root)
            if whiteouts == .oci, flatten(data, copies: 2, whiteouts: .oci) == nil {
                violation("a layer accepted alone was refused on top of itself")
            }
        }
    }

    static func flatten(_ data: [UInt8], copies: Int, whiteouts: TarLayer.Whiteouts) -> Node? {
        var options = TarLayer.Options()
        options.whiteouts = whiteouts
        options.maxFileSize = maxFileSize
        var layers = OCILayers(options: options)
        do {
            for _ in 0..<copies {
                try data.withUnsafeBytes { raw in
                    let reader = try TarReader(memory: raw, source: "fuzz")
                    try layers.add(reader)
                }
            }
        } catch let e as TarReader.Error {
            _ = e.description
            return nil
        } catch let e as TarLayer.Error {
            _ = e.description
            return nil
        } catch {
            violation("unexpected error type \(type(of: error))")
        }
        return layers.finish()
    }

    static func checkTree(_ root: Node) {
        var stack = [root]
        while let dir = stack.popLast() {
            for child in dir.children {
                if child.isDirectory { stack.append(child); continue }
                guard child.fileType == .regular, child.size > 0 else { continue }
                if child.size <= 64 {
                    if child.content?.count != Int(child.size) { violation("inline file of \(child.size) bytes with \(child.content?.count ?? -1)") }
                } else if child.content != nil || child.digest == nil || child.payload != child.digest.map(FsVerity.objectPath) {
                    violation("external file without its digest path")
                }
            }
        }
        let image: [UInt8]
        do { image = try ImageWriter.write(root) } catch { _ = error.description; return }
        do { _ = try ImageReader.load(image) } catch { violation("written image does not load: \(error)") }
    }
}

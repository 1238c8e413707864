import ComposeFS

/// The properties the fuzz targets check (Fuzz/, scripts/fuzz, FUZZING.md),
/// in one place: the fuzz targets run them on every input and trap on a
/// violation, and the tests (FuzzRegressionTests) replay the committed
/// regression inputs through them and record an issue instead.
///
/// Each check takes the raw input and a `report` closure, called with a
/// description for every violation. Errors the library reports for bad
/// input are never violations (their descriptions are rendered, to exercise
/// them); crashes are (the fuzz targets run under ASan). After a report a
/// check stops where later steps depend on the failed one.
public enum Properties {
    /// fuzz-dump: the dump parser and the image writer/reader round trip
    /// (FUZZING.md, "fuzz-dump").
    ///
    /// - The input is parsed leniently, and strictly too when its first byte
    ///   is odd; strict acceptance implies lenient acceptance of a tree that
    ///   prints the same.
    /// - The printed dump of a parsed tree parses and prints the same again
    ///   (dump text fixed point).
    /// - When the writer accepts the tree, `image2 = write(parse(dump(load(image))))`
    ///   succeeds at every step, and either equals `image`, or has the same
    ///   entries (paths) and is itself a fixed point of that round trip (the
    ///   first generation may legitimately change hardlink primaries, opaque
    ///   markers, derived sizes and nlink, and xattr order).
    /// - A tree with a hardlink to a directory (FORMAT.md §6.1 quirk) prints
    ///   a dump that does not parse back; for it only "no crash" applies.
    public static func checkDump(_ input: [UInt8], report: (String) -> Void) {
        let strictToo = input.first.map { $0 & 1 == 1 } ?? false
        let lenient: Node
        do {
            lenient = try DumpParser.parse(input, strict: false)
        } catch {
            _ = error.description
            if strictToo {
                do {
                    _ = try DumpParser.parse(input, strict: true)
                    report("strict parse accepted a dump the lenient parse rejects (\(error))")
                } catch let e2 { _ = e2.description }
            }
            return
        }
        let text = DumpPrinter.dump(lenient)
        if strictToo {
            do {
                let strictText = DumpPrinter.dump(try DumpParser.parse(input, strict: true))
                if strictText != text {
                    report("strict and lenient parses differ:\n\(show(strictText))\n---\n\(show(text))")
                }
            } catch { _ = error.description }
        }
        dumpRoundTrip(lenient, text: text, report: report)
    }

    /// fuzz-image: the image reader on arbitrary bytes (FUZZING.md,
    /// "fuzz-image").
    ///
    /// - `ImageReader.header`, `load` and `walk` never crash.
    /// - When `load` succeeds, `walk` succeeds too, and its entries printed
    ///   with `DumpPrinter.line` equal `DumpPrinter.dump` of the loaded root;
    ///   the same with a filter naming the first root entry.
    /// - When the writer accepts the loaded tree, the image it writes loads.
    public static func checkImage(_ input: [UInt8], report: (String) -> Void) {
        _ = try? ImageReader.header(input)
        let image: ImageReader.Image
        do {
            image = try ImageReader.load(input)
        } catch {
            _ = error.description
            // Walk must fail (or succeed) cleanly too.
            do { try ImageReader.walk(ByteReader(input)) { _ in } } catch { _ = error.description }
            return
        }
        let root = image.root
        compareWalk(input, root: root, filter: nil, report: report)
        DumpPrinter.list(root) { _ in }
        _ = DumpPrinter.objects(root)

        if let first = root.children.first {
            let filter: Set<[UInt8]> = [first.name]
            do {
                let filtered = try ImageReader.load(input, filter: filter)
                compareWalk(input, root: filtered.root, filter: filter, report: report)
            } catch {
                report("load succeeded but load(filter: \(show(first.name))) failed: \(error)")
            }
        }

        // Our writer's output must always be readable by our reader.
        if let rewritten = try? ImageWriter.write(root) {
            do { _ = try ImageReader.load(rewritten) } catch {
                report("image written from a loaded tree does not load: \(error)")
            }
        }
    }

    /// fuzz-mount-options: `Mount.Options.parse` on the input decoded as
    /// lossy UTF-8 (FUZZING.md, "fuzz-mount-options").
    ///
    /// Never crashes; accepted options have at least one basedir and no
    /// empty one, a digest only of 32 bytes and only with `requireVerity`,
    /// never both `requireVerity` and `tryVerity`, `upperdir` exactly when
    /// `workdir`, and no empty `upperdir`, `workdir` or `idmap`.
    public static func checkMountOptions(_ input: [UInt8], report: (String) -> Void) {
        let text = String(decoding: input, as: UTF8.self)
        let o: Mount.Options
        do {
            o = try Mount.Options.parse(text)
        } catch {
            _ = error.description
            return
        }
        let quoted = text.debugDescription
        if o.basedirs.isEmpty { report("accepted options without a basedir: \(quoted)") }
        if o.basedirs.contains(where: \.isEmpty) { report("accepted an empty basedir: \(quoted)") }
        if let d = o.digest {
            if d.count != 32 { report("digest of \(d.count) bytes accepted: \(quoted)") }
            if !o.requireVerity { report("digest without requireVerity: \(quoted)") }
        }
        if o.requireVerity && o.tryVerity { report("both verity and tryverity: \(quoted)") }
        if (o.upperdir == nil) != (o.workdir == nil) { report("upperdir without workdir: \(quoted)") }
        if o.upperdir?.isEmpty == true || o.workdir?.isEmpty == true || o.idmap?.isEmpty == true {
            report("empty path value accepted: \(quoted)")
        }
    }

    /// fuzz-tar: arbitrary bytes as a tar layer, read in memory with no
    /// store (FUZZING.md, "fuzz-tar").
    ///
    /// - `TarReader`, `TarLayer` and `OCILayers` never crash, with OCI and
    ///   overlay whiteouts; errors are fine (their descriptions render).
    /// - An accepted layer flattens into a tree whose regular files are
    ///   consistent (inline content of exactly `size` bytes up to 64, else a
    ///   digest and its object path); the image writer writes it or refuses
    ///   it with an error, and a written image loads.
    /// - A layer accepted alone is accepted on top of itself too (whiteouts
    ///   and replacements across layers).
    public static func checkTar(_ input: [UInt8], report: (String) -> Void) {
        for whiteouts in [TarLayer.Whiteouts.oci, .overlay] {
            guard let root = flattenTar(input, copies: 1, whiteouts: whiteouts) else { continue }
            checkTarTree(root, report: report)
            if whiteouts == .oci, flattenTar(input, copies: 2, whiteouts: .oci) == nil {
                report("a layer accepted alone was refused on top of itself")
            }
        }
    }
}

// MARK: - The steps of the checks

extension Properties {
    static func dumpRoundTrip(_ tree: Node, text: [UInt8], report: (String) -> Void) {
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
            report("printed dump does not parse: \(error)\n\(show(text))")
            return
        }
        let text2 = DumpPrinter.dump(reparsed)
        if text2 != text {
            report("dump → parse → dump changed the text:\n\(show(text))\n---\n\(show(text2))")
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
        guard let image2 = regenerate(image, generation: 1, report: report) else { return }
        if image2 == image { return }
        // The entries (paths) must survive; their attributes may change in
        // this generation: the hardlink primary moves to the first path in
        // name order, and whiteout handling (FORMAT.md §5) then marks a
        // different parent opaque; xattr order follows shared/inline (§15.3).
        // Both images loaded in regenerate, so they load here.
        guard let image3 = regenerate(image2, generation: 2, report: report),
            let d1 = try? DumpPrinter.dump(ImageReader.load(image).root),
            let d2 = try? DumpPrinter.dump(ImageReader.load(image2).root)
        else { return }
        if paths(d1) != paths(d2) || image3 != image2 {
            let l1 = lines(d1)
            let l2 = lines(d2)
            let common = min(image2.count, image3.count)
            let first = (0..<common).first { image2[$0] != image3[$0] } ?? common
            report(
                (paths(d1) != paths(d2)
                    ? "the entries of load(write(parse(dump(load(image))))) differ from load(image)"
                    : "image is not a fixed point in the second generation (\(image2.count) vs \(image3.count) bytes, first difference at \(first))")
                    + "\ninput tree:\n\(show(text, limit: 4000))\n"
                    + "lines only in dump(load(image)):\n\(l1.subtracting(l2).sorted().joined(separator: "\n"))\n"
                    + "lines only in dump(load(image2)):\n\(l2.subtracting(l1).sorted().joined(separator: "\n"))")
        }
    }

    /// write(parse(dump(load(image)))); every step must succeed.
    static func regenerate(_ image: [UInt8], generation: Int, report: (String) -> Void) -> [UInt8]? {
        let loaded: ImageReader.Image
        do { loaded = try ImageReader.load(image) } catch {
            report("gen \(generation): our own image does not load: \(error)")
            return nil
        }
        let text = DumpPrinter.dump(loaded.root)
        let tree: Node
        do { tree = try DumpParser.parse(text, strict: false) } catch {
            report("gen \(generation): dump of a loaded image does not parse: \(error)\n\(show(text))")
            return nil
        }
        do { return try ImageWriter.write(tree) } catch {
            report("gen \(generation): tree of a loaded image does not write: \(error)\n\(show(text))")
            return nil
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

    /// `walk` of the image, printed line by line, against the dump of `root`.
    static func compareWalk(_ data: [UInt8], root: Node, filter: Set<[UInt8]>?, report: (String) -> Void) {
        let expected = DumpPrinter.dump(root)
        let named = filter.map { $0.map { show($0) } } ?? []
        var walked: [UInt8] = []
        do {
            try ImageReader.walk(ByteReader(data), filter: filter) { e in
                DumpPrinter.line(e.node, path: e.path, hardlinkTarget: e.hardlinkTarget, into: &walked)
            }
        } catch {
            report("load succeeded but walk failed (filter \(named)): \(error)")
            return
        }
        if walked != expected {
            report(
                "walk and load disagree (filter \(named)):\n"
                    + "load:\n\(show(expected))\n---\nwalk:\n\(show(walked))")
        }
    }

    /// The path field of each dump line.
    static func paths(_ text: [UInt8]) -> [ArraySlice<UInt8>] {
        text.split(separator: 0x0A).map { $0.prefix { $0 != 0x20 } }
    }

    static func lines(_ text: [UInt8]) -> Set<String> {
        Set(text.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) })
    }

    /// Bytes for a message, cut at `limit`.
    static func show(_ b: [UInt8], limit: Int = 600) -> String {
        let s = String(decoding: b.prefix(limit), as: UTF8.self)
        return b.count > limit ? s + "…(\(b.count) bytes)" : s
    }

    /// Files past this are refused, so hostile sparse sizes stay fast.
    static let maxTarFileSize: UInt64 = 1 << 22

    static func flattenTar(_ input: [UInt8], copies: Int, whiteouts: TarLayer.Whiteouts) -> Node? {
        var options = TarLayer.Options()
        options.whiteouts = whiteouts
        options.maxFileSize = maxTarFileSize
        var layers = OCILayers(options: options)
        let failure: String? = input.withUnsafeBytes { raw -> String? in
            for _ in 0..<copies {
                let reader: TarReader
                do throws(TarReader.Error) { reader = try TarReader(memory: raw, source: "input") } catch { return error.description }
                do throws(TarLayer.Error) { try layers.add(reader) } catch { return error.description }
            }
            return nil
        }
        return failure == nil ? layers.finish() : nil
    }

    static func checkTarTree(_ root: Node, report: (String) -> Void) {
        var stack = [root]
        while let dir = stack.popLast() {
            for child in dir.children {
                if child.isDirectory {
                    stack.append(child)
                    continue
                }
                guard child.fileType == .regular, child.size > 0 else { continue }
                if child.size <= 64 {
                    if child.content?.count != Int(child.size) {
                        report("inline file of \(child.size) bytes with \(child.content?.count ?? -1)")
                    }
                } else if child.content != nil || child.digest == nil || child.payload != child.digest.map(FsVerity.objectPath) {
                    report("external file without its digest path")
                }
            }
        }
        let image: [UInt8]
        do { image = try ImageWriter.write(root) } catch {
            _ = error.description
            return
        }
        do { _ = try ImageReader.load(image) } catch { report("written image does not load: \(error)") }
    }
}

import ComposeFS

/// mkcomposefs's layered sources: tar layers (`--from-tar`) and container
/// images (`--from-oci`), flattened by the OCI rules.
extension MkComposefs {
    /// The tar-layer options the command line sets (shared by both sources).
    static func layerOptions(_ arguments: Arguments) throws(ToolFailure) -> TarLayer.Options {
        var options = TarLayer.Options()
        options.useEpoch = arguments.has(Flag.useEpoch)
        options.skipDevices = arguments.has(Flag.skipDevices)
        options.skipXattrs = arguments.has(Flag.skipXattrs)
        options.userXattrsOnly = arguments.has(Flag.userXattrs)
        options.warn = { Terminal.error("mkcomposefs: \($0)\n") }
        return options
    }

    /// Flattens the tar layers (streamed once each, objects stored on the
    /// way) and starts making the stored objects durable (the image waits
    /// for that before it names them).
    static func readLayers(_ layers: [FilePath], _ arguments: Arguments) throws(ToolFailure) -> (Node, ObjectStore.Lock?, PendingCommit?) {
        var options = try layerOptions(arguments)
        switch arguments.lastText(Flag.tarWhiteouts) {
        case nil, "oci": options.whiteouts = .oci
        case "overlay": options.whiteouts = .overlay
        case let mode?: throw failure("Invalid --tar-whiteouts mode \(mode) (oci or overlay)")
        }
        if options.whiteouts == .overlay && layers.count != 1 {
            throw failure("--tar-whiteouts=overlay takes exactly one --from-tar layer")
        }
        if options.skipXattrs && options.userXattrsOnly {
            throw xattrOptionsConflict(layers[0])
        }
        if layers.filter({ $0 == "-" }).count > 1 { throw failure("standard input ('-') can be only one layer") }
        if let dir = arguments.last(Flag.digestStore) {
            do { options.store = try ObjectStore(path: FilePath(bytes: dir)) } catch { throw failure("cannot fill store: \(error)") }
        }
        var flattened = OCILayers(options: options)
        do throws(ToolFailure) {
            for layer in layers { try readLayer(layer, into: &flattened) }
            let root = flattened.finish()
            if let store = options.store {
                // Files replaced by later entries or layers leave no object
                // (as extracting and scanning would not).
                store.discardPending(keeping: OCILayers.objects(in: root))
                return (root, store.lock, PendingCommit(store))
            }
            return (root, nil, nil)
        } catch {
            options.store?.discardPending()
            throw error
        }
    }

    static func readLayer(_ layer: FilePath, into flattened: inout OCILayers) throws(ToolFailure) {
        let stdin = layer == "-"
        let fd: FileDescriptor
        if stdin {
            fd = .standardInput
        } else {
            do { fd = try .open(layer, .readOnly) } catch { throw failure("cannot open '\(layer)': \(error)") }
        }
        defer { if !stdin { try? fd.close() } }
        let reader: TarReader
        do { reader = try TarReader(fd: fd, source: stdin ? "<stdin>" : layer) } catch { throw failure("\(error)") }
        do { try flattened.add(reader) } catch { throw failure("\(error)") }
    }

    /// Reads a container image (`--from-oci`): every layer streamed once,
    /// each blob checked against its descriptor and diff_id. New objects
    /// are held in a staging area until every layer has passed, so a
    /// damaged image publishes nothing.
    static func readContainerImage(_ source: [UInt8], _ arguments: Arguments) throws(ToolFailure) -> (
        Node, ObjectStore.Lock?, PendingCommit?
    ) {
        var options = try layerOptions(arguments)
        options.whiteouts = .oci
        if options.skipXattrs && options.userXattrsOnly { throw xattrOptionsConflict(FilePath(bytes: source)) }
        var platform = OCI.Platform.current
        if let text = arguments.lastText(Flag.platform) {
            guard let p = OCI.Platform(parsing: text) else { throw failure("Invalid --platform \(text) (OS/ARCH or OS/ARCH/VARIANT)") }
            platform = p
        }
        let image: OCIImage
        do { image = try OCIImage.open(try OCIImage.Reference(parsing: source), platform: platform) } catch {
            throw failure("\(error)")
        }
        if arguments.has(Flag.verbose) {
            let manifest = image.manifestDigest.map { "manifest \($0)" } ?? "manifest.json entry"
            let chosen = image.platform.map { ", platform \($0)" } ?? ""
            let ref = image.reference.ref.map { ":" + $0 } ?? ""
            Terminal.error(
                "mkcomposefs: \(image.reference.transport.rawValue):\(image.reference.path)\(ref): \(manifest)\(chosen), \(image.layers.count) layers\n"
            )
        }
        if let dir = arguments.last(Flag.digestStore) {
            do { options.store = try ObjectStore(path: FilePath(bytes: dir), holdUntilCommit: true) } catch {
                throw failure("cannot fill store: \(error)")
            }
        }
        var flattened = OCILayers(options: options)
        do {
            try image.read(into: &flattened)
        } catch {
            options.store?.discardPending()
            throw failure("\(error)")
        }
        let root = flattened.finish()
        guard let store = options.store else { return (root, nil, nil) }
        store.discardPending(keeping: OCILayers.objects(in: root))
        return (root, store.lock, PendingCommit(store))
    }
}

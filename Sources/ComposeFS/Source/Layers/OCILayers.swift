/// Container image layers flattened into one tree, lowest layer first, by
/// the OCI image specification's rules for applying changesets:
///
/// * `.wh.NAME` deletes NAME (and everything under it) from the layers
///   below; `.wh..wh..opq` deletes everything below in its directory.
///   Whiteouts never touch their own layer's entries, so each layer's
///   whiteouts are applied before its entries. They create nothing.
/// * An entry replaces what the layers below have at its path, except
///   that a directory over a directory merges: the upper directory's
///   metadata wins (its xattrs are added, as extracting over it does) and
///   the contents are merged. A directory the upper layer has no entry for
///   (only a parent of its entries) keeps the lower one's metadata.
///
/// With one layer and `TarLayer.Whiteouts.overlay` the markers were
/// already turned into overlay whiteouts by `TarLayer`.
public struct OCILayers {
    public let options: TarLayer.Options
    private var base: TarLayer? = nil
    private var count = 0

    public init(options: TarLayer.Options = TarLayer.Options()) {
        self.options = options
    }

    /// Reads the next layer up and applies it.
    public mutating func add(_ reader: TarReader) throws(TarLayer.Error) {
        count += 1
        if options.whiteouts == .overlay && count > 1 { throw .overlayNeedsOneLayer }
        let layer = try TarLayer.read(reader, options: options, below: base?.root)
        guard let base else {
            self.base = layer
            return
        }
        for (dir, name) in layer.whiteouts {
            Self.directory(base.root, dir)?.removeChild(named: name)
        }
        for dir in layer.opaques {
            guard let d = Self.directory(base.root, dir) else { continue }
            for child in d.children { d.removeChild(named: child.name) }
        }
        try Self.merge(layer.root, into: base.root, layer)
    }

    /// The flattened tree, with the scanner's `--skip-devices` and
    /// `--use-epoch` applied as a scan of the extracted tree would.
    public func finish() -> Node {
        let root = base?.root ?? TarLayer.defaultDirectory()
        var stack = [root]
        while let dir = stack.popLast() {
            if options.useEpoch { dir.mtime = .zero }
            for child in dir.children {
                let type = child.fileType
                if options.skipDevices && (type == .characterDevice || type == .blockDevice) {
                    dir.removeChild(named: child.name)
                    continue
                }
                if options.useEpoch { child.mtime = .zero }
                if type == .directory { stack.append(child) }
            }
        }
        return root
    }

    /// The object names (payloads) the files of `root` refer to: what the
    /// store must keep of what the layers wrote.
    public static func objects(in root: Node) -> Set<[UInt8]> {
        var out: Set<[UInt8]> = []
        var stack = [root]
        while let dir = stack.popLast() {
            for child in dir.children {
                if child.isDirectory {
                    stack.append(child)
                } else if child.fileType == .regular, child.content == nil, let payload = child.payload {
                    out.insert(payload)
                }
            }
        }
        return out
    }

    /// The directory at `parts` below `root`, through directories only.
    static func directory(_ root: Node, _ parts: [[UInt8]]) -> Node? {
        var node = root
        for part in parts {
            guard let next = node.child(named: part), next.isDirectory else { return nil }
            node = next
        }
        return node
    }

    private static func merge(_ upper: Node, into lower: Node, _ layer: TarLayer) throws(TarLayer.Error) {
        var pairs = [(upper, lower)]
        while let (u, l) = pairs.popLast() {
            if !layer.isImplicit(u) {
                l.mode = u.mode
                l.uid = u.uid
                l.gid = u.gid
                l.mtime = u.mtime
                for x in u.xattrs {
                    do { try l.setXattr(x.key, x.value) } catch {
                        throw .entry(source: layer.source, path: u.path, reason: "\(error)")
                    }
                }
            }
            for child in u.children {
                if let existing = l.child(named: child.name), existing.isDirectory, child.isDirectory {
                    pairs.append((child, existing))
                    continue
                }
                l.removeChild(named: child.name)
                u.removeChild(named: child.name)
                do { try l.addChild(child) } catch {
                    throw .entry(source: layer.source, path: child.path, reason: "\(error)")
                }
            }
        }
    }
}

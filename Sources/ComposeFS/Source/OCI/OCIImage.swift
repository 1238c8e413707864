import Glibc

/// A container image on disk, resolved to the layers of one image: an OCI
/// image layout (`oci:DIR[:REF]`), the same in a tar archive
/// (`oci-archive:FILE[:REF]`), or what `docker save` and `podman save`
/// write (`docker-archive:FILE[:REF]`). Every document on the way (the
/// manifest chosen from the index, nested indexes, the config) is checked
/// against the descriptor that names it; the layers are checked as they
/// stream (`read(into:)`).
public struct OCIImage {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case source(String)
        case open(path: FilePath, errno: Errno)
        case archive(ArchiveIndex.Error)
        case notAnImage(path: FilePath, why: String)
        case json(what: String, error: JSON.Error)
        case invalid(what: String, message: String)
        case missingBlob(what: String, path: FilePath)
        case foreignLayer(what: String)
        case unknownMediaType(what: String, mediaType: String)
        case sizeMismatch(what: String, expected: Int64, actual: Int64)
        case digestMismatch(what: String, expected: OCI.Digest, actual: OCI.Digest)
        case diffIDMismatch(what: String, expected: OCI.Digest, actual: OCI.Digest)
        case noSuchImage(ref: String, path: FilePath, available: [String])
        case ambiguous(path: FilePath, available: [String])
        case noPlatform(wanted: OCI.Platform, available: [String])
        case read(what: String, errno: Errno)
        case layerData(what: String, message: String)
        /// The layer's tar stream is not one (the message names the layer).
        case layer(what: String, message: String)

        public var description: String {
            switch self {
            case .source(let m): m
            case .open(let p, let e): "cannot open '\(p)': \(e)"
            case .archive(let e): "\(e)"
            case .notAnImage(let p, let why): "'\(p)' is not a container image: \(why)"
            case .json(let what, let e): "\(what): \(e)"
            case .invalid(let what, let m): "\(what): \(m)"
            case .missingBlob(let what, let p): "\(what) is not in '\(p)'"
            case .foreignLayer(let what):
                "\(what) is a non-distributable layer that the image does not hold (it must be fetched from elsewhere)"
            case .unknownMediaType(let what, let t): "\(what) has an unsupported media type '\(t)'"
            case .sizeMismatch(let what, let e, let a): "\(what) is \(a) bytes, its descriptor says \(e)"
            case .digestMismatch(let what, let e, let a): "\(what) has digest \(a), its descriptor says \(e)"
            case .diffIDMismatch(let what, let e, let a):
                "\(what) uncompressed has digest \(a), the config's diff_id is \(e)"
            case .noSuchImage(let ref, let p, let available):
                "no image '\(ref)' in '\(p)'" + (available.isEmpty ? "" : " (it has: \(available.joined(separator: ", ")))")
            case .ambiguous(let p, let available):
                "'\(p)' holds \(available.count) images; name one (\(available.joined(separator: ", ")))"
            case .noPlatform(let wanted, let available):
                "no image for \(wanted) (available: \(available.joined(separator: ", ")); choose one with --platform)"
            case .read(let what, let e): "cannot read \(what): \(e)"
            case .layerData(let what, let m): "\(what): \(m)"
            case .layer(_, let m): m
            }
        }
    }

    /// Where the image is: its transport and path, and which image.
    public struct Reference: Equatable, Sendable {
        public enum Transport: String, Sendable {
            case ociLayout = "oci"
            case ociArchive = "oci-archive"
            case dockerArchive = "docker-archive"
        }
        public var transport: Transport
        public var path: FilePath
        /// A tag, a `sha256:` manifest digest, or in a docker archive
        /// `NAME:TAG` or `@N` (the Nth image, from 0).
        public var ref: String?

        public init(transport: Transport, path: FilePath, ref: String? = nil) {
            self.transport = transport
            self.path = path
            self.ref = ref
        }

        /// `TRANSPORT:PATH[:REF]` (split at the first colon after the
        /// transport, as skopeo splits it), or a bare path, recognised by
        /// what it holds: a directory with `oci-layout`, an archive with
        /// `manifest.json` (docker) or `oci-layout`.
        public init(parsing text: [UInt8]) throws(Error) {
            for t in [Transport.ociArchive, .dockerArchive, .ociLayout] {
                let prefix = Array((t.rawValue + ":").utf8)
                guard text.starts(with: prefix) else { continue }
                let rest = text[prefix.count...]
                let colon = rest.firstIndex(of: UInt8(ascii: ":"))
                let path = Array(rest[rest.startIndex..<(colon ?? rest.endIndex)])
                guard !path.isEmpty else { throw .source("\(t.rawValue): needs a path ('\(t.rawValue):PATH[:REF]')") }
                var ref: String? = nil
                if let colon {
                    let r = String(decoding: rest[(colon + 1)...], as: UTF8.self)
                    guard !r.isEmpty else { throw .source("an empty image reference after '\(String(bytes: path)):'") }
                    ref = r
                }
                self.init(transport: t, path: FilePath(bytes: path), ref: ref)
                return
            }
            let path = FilePath(bytes: text)
            let st: stat
            do { st = try FileDescriptor.currentDirectory.stat(following: path) } catch { throw .open(path: path, errno: error) }
            if st.st_mode & S_IFMT == S_IFDIR {
                self.init(transport: .ociLayout, path: path)
                return
            }
            let blobs = try ImageBlobs(archive: path)
            if try blobs.region(Array("manifest.json".utf8)) != nil {
                self.init(transport: .dockerArchive, path: path)
            } else if try blobs.region(Array("oci-layout".utf8)) != nil {
                self.init(transport: .ociArchive, path: path)
            } else {
                throw .notAnImage(path: path, why: "an archive without oci-layout or manifest.json")
            }
        }
    }

    /// One layer: where its blob is, and what it must be.
    public struct Layer {
        /// "layer 2 of 5 (sha256:…)", for messages.
        public var what: String
        let region: ImageBlobs.Region
        public var mediaType: String
        /// The blob's digest and size (unknown for a docker archive's
        /// own layer files, which only the diff_id checks).
        public var digest: OCI.Digest?
        public var size: Int64?
        public var diffID: OCI.Digest
    }

    public let reference: Reference
    /// The manifest chosen (nil for a docker archive without one).
    public let manifestDigest: OCI.Digest?
    /// The platform of the chosen manifest, where an index named one.
    public let platform: OCI.Platform?
    public let layers: [Layer]
    let blobs: ImageBlobs

    /// Limits of what is read whole.
    static let documentLimit = 4 << 20
    static let configLimit = 32 << 20
    static let maxNesting = 8

    /// Opens the image `reference` names, for `platform` where an index
    /// offers several.
    public static func open(_ reference: Reference, platform: OCI.Platform = .current) throws(Error) -> OCIImage {
        switch reference.transport {
        case .ociLayout: return try openLayout(reference, ImageBlobs(directory: reference.path), platform)
        case .ociArchive: return try openLayout(reference, ImageBlobs(archive: reference.path), platform)
        case .dockerArchive: return try openDockerArchive(reference, ImageBlobs(archive: reference.path))
        }
    }

    // MARK: OCI layouts

    static func openLayout(_ reference: Reference, _ blobs: ImageBlobs, _ platform: OCI.Platform) throws(Error) -> OCIImage {
        let path = reference.path
        guard let layoutFile = try blobs.region(Array("oci-layout".utf8)) else {
            throw .notAnImage(path: path, why: "no oci-layout file")
        }
        let layout = try parse(try blobs.read(layoutFile, limit: documentLimit, what: "oci-layout"), what: "oci-layout")
        guard layout["imageLayoutVersion"]?.string != nil else {
            throw .notAnImage(path: path, why: "oci-layout has no imageLayoutVersion")
        }
        guard let indexFile = try blobs.region(Array("index.json".utf8)) else {
            throw .notAnImage(path: path, why: "no index.json")
        }
        let index = try parse(try blobs.read(indexFile, limit: documentLimit, what: "index.json"), what: "index.json")
        let top = try descriptors(index, key: "manifests", what: "index.json")
        func name(_ d: OCI.Descriptor) -> String {
            (d.refName.map { "'\($0)' " } ?? "") + "\(d.digest)" + (d.platform.map { " \($0)" } ?? "")
        }
        var chosen: [OCI.Descriptor]
        if let ref = reference.ref {
            let digestText = ref.hasPrefix("@") ? String(ref.dropFirst()) : ref
            if let digest = OCI.Digest(Array(digestText.utf8)) {
                chosen = top.filter { $0.digest == digest }
                if chosen.isEmpty, let found = try findNested(digest, in: top, blobs: blobs, depth: 0) { chosen = [found] }
            } else {
                chosen = top.filter { $0.refName == ref }
            }
            guard !chosen.isEmpty else { throw .noSuchImage(ref: ref, path: path, available: top.map(name)) }
        } else {
            guard top.count == 1 else {
                if top.isEmpty { throw .notAnImage(path: path, why: "index.json lists no image") }
                throw .ambiguous(path: path, available: top.map(name))
            }
            chosen = top
        }
        // Several entries under one tag: one per platform.
        let descriptor: OCI.Descriptor
        if chosen.count == 1 {
            descriptor = chosen[0]
        } else {
            guard let match = choose(chosen, for: platform) else {
                throw .noPlatform(wanted: platform, available: chosen.map { $0.platform?.description ?? "unnamed" })
            }
            descriptor = match
        }
        return try resolve(descriptor, reference: reference, blobs: blobs, platform: platform, depth: 0)
    }

    /// The first descriptor for `platform`, an exact variant first.
    static func choose(_ candidates: [OCI.Descriptor], for platform: OCI.Platform) -> OCI.Descriptor? {
        candidates.first { $0.platform == platform } ?? candidates.first { $0.platform.map(platform.accepts) ?? false }
    }

    /// A manifest named by digest inside nested indexes.
    static func findNested(_ digest: OCI.Digest, in list: [OCI.Descriptor], blobs: ImageBlobs, depth: Int) throws(Error) -> OCI.Descriptor?
    {
        guard depth < maxNesting else { return nil }
        for d in list where OCI.MediaType.indexes.contains(d.mediaType) {
            let json = try document(d, what: "index \(d.digest)", blobs: blobs)
            let inner = try descriptors(json, key: "manifests", what: "index \(d.digest)")
            if let hit = inner.first(where: { $0.digest == digest }) { return hit }
            if let hit = try findNested(digest, in: inner, blobs: blobs, depth: depth + 1) { return hit }
        }
        return nil
    }

    /// From a descriptor (an index or a manifest) to the image's layers.
    static func resolve(
        _ d: OCI.Descriptor, reference: Reference, blobs: ImageBlobs, platform: OCI.Platform, depth: Int
    ) throws(Error) -> OCIImage {
        guard depth < maxNesting else { throw .invalid(what: "index \(d.digest)", message: "indexes nested more than \(maxNesting) deep") }
        let what = OCI.MediaType.indexes.contains(d.mediaType) ? "index \(d.digest)" : "manifest \(d.digest)"
        let json = try document(d, what: what, blobs: blobs)
        let inner = json["mediaType"]?.string
        if let inner, !d.mediaType.isEmpty, inner != d.mediaType {
            throw .invalid(what: what, message: "its mediaType '\(inner)' is not its descriptor's '\(d.mediaType)'")
        }
        let type = d.mediaType.isEmpty ? (inner ?? (json["manifests"] != nil ? OCI.MediaType.index : OCI.MediaType.manifest)) : d.mediaType
        if OCI.MediaType.indexes.contains(type) {
            let list = try descriptors(json, key: "manifests", what: what)
            guard let match = choose(list, for: platform) else {
                throw .noPlatform(wanted: platform, available: list.map { $0.platform?.description ?? "unnamed" })
            }
            return try resolve(match, reference: reference, blobs: blobs, platform: platform, depth: depth + 1)
        }
        guard OCI.MediaType.manifests.contains(type) else { throw .unknownMediaType(what: what, mediaType: type) }
        guard json["schemaVersion"]?.int64 == 2 else { throw .invalid(what: what, message: "schemaVersion is not 2") }
        guard let configJSON = json["config"] else { throw .invalid(what: what, message: "no config") }
        let config: OCI.Descriptor
        do { config = try OCI.Descriptor.parse(configJSON) } catch { throw .invalid(what: what, message: error.message) }
        guard OCI.MediaType.configs.contains(config.mediaType) else {
            throw .unknownMediaType(what: "config \(config.digest)", mediaType: config.mediaType)
        }
        let layerDescriptors = try descriptors(json, key: "layers", what: what)
        let diffIDs = try self.diffIDs(
            try document(config, what: "config \(config.digest)", blobs: blobs, limit: configLimit), what: "config \(config.digest)")
        guard diffIDs.count == layerDescriptors.count else {
            throw .invalid(what: what, message: "\(layerDescriptors.count) layers, but its config lists \(diffIDs.count) diff_ids")
        }
        var layers: [Layer] = []
        for (i, l) in layerDescriptors.enumerated() {
            let lw = "layer \(i + 1) of \(layerDescriptors.count) (\(l.digest))"
            let foreign = OCI.MediaType.foreignLayers.contains(l.mediaType)
            guard OCI.MediaType.layers.contains(l.mediaType) || foreign else { throw .unknownMediaType(what: lw, mediaType: l.mediaType) }
            guard let region = try blobs.region(l.digest.blobPath) else {
                if foreign { throw .foreignLayer(what: lw) }
                throw .missingBlob(what: lw, path: reference.path)
            }
            guard region.size == l.size else { throw .sizeMismatch(what: lw, expected: l.size, actual: region.size) }
            layers.append(Layer(what: lw, region: region, mediaType: l.mediaType, digest: l.digest, size: l.size, diffID: diffIDs[i]))
        }
        return OCIImage(reference: reference, manifestDigest: d.digest, platform: d.platform, layers: layers, blobs: blobs)
    }

    // MARK: Docker archives

    static func openDockerArchive(_ reference: Reference, _ blobs: ImageBlobs) throws(Error) -> OCIImage {
        let path = reference.path
        guard let manifestFile = try blobs.region(Array("manifest.json".utf8)) else {
            throw .notAnImage(path: path, why: "no manifest.json")
        }
        let manifest = try parse(try blobs.read(manifestFile, limit: documentLimit, what: "manifest.json"), what: "manifest.json")
        guard let entries = manifest.array else { throw .invalid(what: "manifest.json", message: "not a list") }
        func tags(_ e: JSON) -> [String] { e["RepoTags"]?.array?.compactMap(\.string) ?? [] }
        func name(_ i: Int, _ e: JSON) -> String { tags(e).first ?? "@\(i)" }
        var chosen: (Int, JSON)
        if let ref = reference.ref {
            if ref.hasPrefix("@"), let i = Int(ref.dropFirst()), i >= 0, i < entries.count {
                chosen = (i, entries[i])
            } else if let i = entries.firstIndex(where: { tags($0).contains { sameTag($0, ref) } }) {
                chosen = (i, entries[i])
            } else {
                throw .noSuchImage(ref: ref, path: path, available: entries.enumerated().map { name($0, $1) })
            }
        } else {
            guard entries.count == 1 else {
                if entries.isEmpty { throw .notAnImage(path: path, why: "manifest.json lists no image") }
                throw .ambiguous(path: path, available: entries.enumerated().map { name($0, $1) })
            }
            chosen = (0, entries[0])
        }
        let entry = chosen.1
        guard let configName = entry["Config"]?.stringBytes else {
            throw .invalid(what: "manifest.json", message: "an image without Config")
        }
        let configWhat = "config '\(String(bytes: configName))'"
        guard let configFile = try blobs.region(configName) else { throw .missingBlob(what: configWhat, path: path) }
        let configBytes = try blobs.read(configFile, limit: configLimit, what: configWhat)
        // Named by its digest (`blobs/sha256/HEX` or `HEX.json`): checked.
        if let named = digestInName(configName) {
            let actual = OCI.Digest(sha256: SHA256.digest(configBytes))
            guard actual == named else { throw .digestMismatch(what: configWhat, expected: named, actual: actual) }
        }
        let diffIDs = try self.diffIDs(try parse(configBytes, what: configWhat), what: configWhat)
        guard let layerNames = entry["Layers"]?.array?.compactMap(\.stringBytes),
            layerNames.count == entry["Layers"]?.array?.count
        else { throw .invalid(what: "manifest.json", message: "Layers is not a list of names") }
        guard layerNames.count == diffIDs.count else {
            throw .invalid(what: "manifest.json", message: "\(layerNames.count) layers, but the config lists \(diffIDs.count) diff_ids")
        }
        var layers: [Layer] = []
        for (i, n) in layerNames.enumerated() {
            let lw = "layer \(i + 1) of \(layerNames.count) ('\(String(bytes: n))')"
            guard let region = try blobs.region(n) else {
                if entry["LayerSources"]?[diffIDs[i].description] != nil { throw .foreignLayer(what: lw) }
                throw .missingBlob(what: lw, path: path)
            }
            let named = digestInName(n)
            layers.append(Layer(what: lw, region: region, mediaType: "", digest: named, size: nil, diffID: diffIDs[i]))
        }
        return OCIImage(reference: reference, manifestDigest: nil, platform: nil, layers: layers, blobs: blobs)
    }

    /// `name:tag` as docker and podman write it, with or without the
    /// default registry and namespace.
    static func sameTag(_ a: String, _ b: String) -> Bool {
        func short(_ s: String) -> String {
            for prefix in ["docker.io/library/", "docker.io/", "localhost/"] where s.hasPrefix(prefix) {
                return String(s.dropFirst(prefix.count))
            }
            return s
        }
        return a == b || short(a) == short(b)
    }

    /// The digest a member's name states: `blobs/sha256/HEX`,
    /// `HEX.json` or `HEX/layer.tar`'s directory are not all digests; only
    /// the first two forms are taken.
    static func digestInName(_ name: [UInt8]) -> OCI.Digest? {
        let s = String(decoding: name, as: UTF8.self)
        if s.hasPrefix("blobs/sha256/") { return OCI.Digest(Array(("sha256:" + s.dropFirst(13)).utf8)) }
        if s.hasSuffix(".json"), !s.contains("/") { return OCI.Digest(Array(("sha256:" + s.dropLast(5)).utf8)) }
        return nil
    }

    // MARK: Documents

    static func parse(_ bytes: [UInt8], what: String) throws(Error) -> JSON {
        do { return try JSON.parse(bytes) } catch { throw .json(what: what, error: error) }
    }

    /// A blob named by a descriptor, checked against it, parsed.
    static func document(_ d: OCI.Descriptor, what: String, blobs: ImageBlobs, limit: Int = documentLimit) throws(Error) -> JSON {
        guard let region = try blobs.region(d.digest.blobPath) else { throw .missingBlob(what: what, path: blobs.path) }
        guard region.size == d.size else { throw .sizeMismatch(what: what, expected: d.size, actual: region.size) }
        let bytes = try blobs.read(region, limit: limit, what: what)
        let actual = OCI.Digest(sha256: SHA256.digest(bytes))
        guard actual == d.digest else { throw .digestMismatch(what: what, expected: d.digest, actual: actual) }
        return try parse(bytes, what: what)
    }

    static func descriptors(_ json: JSON, key: String, what: String) throws(Error) -> [OCI.Descriptor] {
        guard let list = json[key]?.array else { throw .invalid(what: what, message: "no \(key) list") }
        var out: [OCI.Descriptor] = []
        for item in list {
            do { out.append(try OCI.Descriptor.parse(item)) } catch { throw .invalid(what: what, message: error.message) }
        }
        return out
    }

    /// The `rootfs.diff_ids` of an image config.
    public static func diffIDs(_ config: JSON, what: String) throws(Error) -> [OCI.Digest] {
        guard let rootfs = config["rootfs"], rootfs["type"]?.string == "layers", let list = rootfs["diff_ids"]?.array else {
            throw .invalid(what: what, message: "no rootfs of type layers with diff_ids")
        }
        var out: [OCI.Digest] = []
        for item in list {
            guard let text = item.stringBytes, let d = OCI.Digest(text) else {
                throw .invalid(what: what, message: "a diff_id that is not a sha256 digest")
            }
            out.append(d)
        }
        return out
    }
}

extension OCIImage {
    /// Streams every layer, lowest first, into `flattened`, each blob read
    /// once and checked on the way (length, digest, diff_id). Any mismatch
    /// is an error once its layer has been read: the caller then drops
    /// what was built (and the objects staged for it).
    public func read(into flattened: inout OCILayers) throws(Error) {
        for layer in layers {
            let stream = try LayerStream(region: layer.region, what: layer.what)
            do throws(Error) {
                try stream.start()
                let reader = try stream.makeReader(source: FilePath(layer.what))
                do { try flattened.add(reader) } catch { throw stream.failure ?? .layer(what: layer.what, message: "\(error)") }
                try stream.finish(blobDigest: layer.digest, blobSize: layer.size, diffID: layer.diffID)
            } catch {
                // A damaged blob shows first as damaged data (a bad entry,
                // or a checksum at the end of the compressed stream): name
                // the cause.
                switch error {
                case .sizeMismatch, .digestMismatch, .diffIDMismatch: throw error
                default: throw stream.blobMismatch(layer.digest, size: layer.size) ?? error
                }
            }
            withExtendedLifetime(layer.region.owner) {}
        }
    }
}

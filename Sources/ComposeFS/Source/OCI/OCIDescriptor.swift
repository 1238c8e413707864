/// The pieces of the OCI image specification (and Docker's schema 2, which
/// it grew from) that name and describe blobs.
public enum OCI {
    /// `sha256:` and 64 lowercase hex digits: what blobs are named by. Other
    /// algorithms are refused (no image writer in use makes them).
    public struct Digest: Hashable, Sendable, CustomStringConvertible {
        public let bytes: [UInt8]

        public init?(_ text: [UInt8]) {
            let prefix = Array("sha256:".utf8)
            guard text.count == prefix.count + 64, text.starts(with: prefix) else { return nil }
            var out: [UInt8] = []
            out.reserveCapacity(32)
            var i = prefix.count
            while i < text.count {
                guard let h = ObjectID.lowerHex(text[i]), let l = ObjectID.lowerHex(text[i + 1]) else { return nil }
                out.append(h << 4 | l)
                i += 2
            }
            bytes = out
        }

        public init(sha256 bytes: [UInt8]) { self.bytes = bytes }

        public var hex: String { bytes.hexString }
        public var description: String { "sha256:" + hex }
        /// `blobs/sha256/HEX`: where an OCI layout keeps the blob.
        public var blobPath: [UInt8] { Array("blobs/sha256/\(hex)".utf8) }
    }

    /// `os/architecture[/variant]`.
    public struct Platform: Equatable, Sendable, CustomStringConvertible {
        public var os: String
        public var architecture: String
        public var variant: String?

        public init(os: String, architecture: String, variant: String? = nil) {
            self.os = os
            self.architecture = architecture
            self.variant = variant
        }

        /// `OS/ARCH[/VARIANT]`; nil when malformed.
        public init?(parsing text: String) {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 || parts.count == 3, !parts.contains(where: \.isEmpty) else { return nil }
            self.init(os: parts[0], architecture: parts[1], variant: parts.count == 3 ? parts[2] : nil)
        }

        /// The running machine's, named as Go names them (as podman and
        /// skopeo choose by default).
        public static var current: Platform {
            let machine = CurrentProcess.machine
            switch machine {
            case "x86_64": return Platform(os: "linux", architecture: "amd64")
            case "aarch64", "arm64": return Platform(os: "linux", architecture: "arm64", variant: "v8")
            case "i386", "i486", "i586", "i686": return Platform(os: "linux", architecture: "386")
            case "armv7l", "armv7": return Platform(os: "linux", architecture: "arm", variant: "v7")
            case "armv6l": return Platform(os: "linux", architecture: "arm", variant: "v6")
            case "ppc64le": return Platform(os: "linux", architecture: "ppc64le")
            case "s390x": return Platform(os: "linux", architecture: "s390x")
            case "riscv64": return Platform(os: "linux", architecture: "riscv64")
            default: return Platform(os: "linux", architecture: machine)
            }
        }

        /// Whether an image for `other` runs here: same OS and architecture,
        /// and the variant when both name one (arm64's v8 is the default).
        public func accepts(_ other: Platform) -> Bool {
            guard os == other.os, architecture == other.architecture else { return false }
            guard let mine = variant, let theirs = other.variant else { return true }
            return mine == theirs
        }

        public var description: String { "\(os)/\(architecture)" + (variant.map { "/" + $0 } ?? "") }
    }

    /// A descriptor: what a blob is, how long, and its digest.
    public struct Descriptor: Sendable {
        public var mediaType: String
        public var digest: Digest
        public var size: Int64
        public var platform: Platform?
        /// `org.opencontainers.image.ref.name`: the tag in an OCI layout.
        public var refName: String?

        /// What is wrong with a descriptor.
        public struct Invalid: Swift.Error, CustomStringConvertible {
            public let message: String
            public var description: String { message }
        }

        /// Reads a descriptor object.
        public static func parse(_ json: JSON) throws(Invalid) -> Descriptor {
            guard json.isObject else { throw Invalid(message: "a descriptor is not an object") }
            let mediaType = json["mediaType"]?.string ?? ""
            guard let digestText = json["digest"]?.stringBytes else { throw Invalid(message: "a descriptor has no digest") }
            guard let digest = Digest(digestText) else {
                throw Invalid(
                    message: "unsupported digest '\(String(decoding: digestText, as: UTF8.self))' (sha256: and 64 lowercase hex digits)")
            }
            guard let size = json["size"]?.int64, size >= 0 else { throw Invalid(message: "descriptor \(digest) has no valid size") }
            var platform: Platform? = nil
            if let p = json["platform"], p.isObject {
                guard let os = p["os"]?.string, let arch = p["architecture"]?.string else {
                    throw Invalid(message: "descriptor \(digest) has a platform without os or architecture")
                }
                platform = Platform(os: os, architecture: arch, variant: p["variant"]?.string)
            }
            let refName = json["annotations"]?["org.opencontainers.image.ref.name"]?.string
            return Descriptor(mediaType: mediaType, digest: digest, size: size, platform: platform, refName: refName)
        }
    }

    /// The media types read.
    public enum MediaType {
        public static let index = "application/vnd.oci.image.index.v1+json"
        public static let manifest = "application/vnd.oci.image.manifest.v1+json"
        public static let config = "application/vnd.oci.image.config.v1+json"
        public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
        public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
        public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

        public static let indexes: Set<String> = [index, dockerManifestList]
        public static let manifests: Set<String> = [manifest, dockerManifest]
        public static let configs: Set<String> = [config, dockerConfig]

        /// Layers: a tar stream, plain or compressed (the data tells which).
        public static let layers: Set<String> = [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.diff.tar.zstd"
        ]
        /// Layers the image may leave out (their blobs live elsewhere).
        public static let foreignLayers: Set<String> = [
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        ]
    }
}

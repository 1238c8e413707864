import Foundation
import Glibc
import Testing

@testable import ComposeFS

extension Trait where Self == Requirement {
    /// Root (images with owners and devices), umoci and skopeo (Debian's
    /// packages) to make container images offline.
    static var ociTools: Requirement {
        Requirement(
            met: { Privilege.isRoot && Subprocess.find("umoci") != nil && Subprocess.find("skopeo") != nil },
            why: "needs root, umoci and skopeo")
    }
}

/// Container images made offline with umoci (an OCI layout, one layer per
/// `repack`) and copied into every other form with skopeo.
final class OCIFixture {
    let dir: TemporaryDirectory
    var layout: String { dir.file("layout") }
    var bundle: String { dir.file("bundle") }
    var rootfs: String { bundle + "/rootfs" }

    init() throws {
        dir = try TemporaryDirectory()
        try sh("umoci init --layout '\(layout)' && umoci new --image '\(layout):t'")
    }

    deinit { ScanFS.removeTree(dir.path) }

    /// Adds a layer: the image unpacked, `script` run in its rootfs (sh,
    /// as root), repacked under `tag`.
    func layer(_ script: String, tag: String = "t") throws {
        try sh(
            """
            set -e
            rm -rf '\(bundle)'
            umoci unpack --image '\(layout):\(tag)' '\(bundle)' > /dev/null
            cd '\(rootfs)'
            \(script)
            cd /
            umoci repack --image '\(layout):\(tag)' '\(bundle)'
            rm -rf '\(bundle)'
            """)
    }

    /// The three-layer image the tests share: every file type, xattrs, a
    /// hard link within a layer and one across layers, a file and a
    /// directory removed (whiteouts), a directory replaced, a mode changed.
    func buildStandard() throws {
        try layer(
            """
            mkdir -p etc usr/bin opt/dir var/empty
            printf 'hello\\n' > etc/hello
            head -c 100000 /dev/urandom > usr/bin/big
            ln usr/bin/big usr/bin/big-hard
            head -c 5000 /dev/urandom > opt/dir/a
            printf 'b\\n' > opt/dir/b
            ln -s ../etc/hello usr/bin/hello-link
            mkfifo var/fifo
            mknod var/null c 1 3
            printf 'x' > etc/xattrs
            setfattr -n user.mime -v text/plain etc/xattrs
            setfattr -n trusted.test -v secret etc/xattrs
            chown 1000:1000 etc/hello
            """)
        try layer(
            """
            rm etc/hello
            rm -rf opt/dir
            mkdir opt/dir
            printf 'new\\n' > opt/dir/c
            ln usr/bin/big usr/bin/big-again
            head -c 70000 /dev/urandom > usr/bin/second
            """)
        try layer(
            """
            chmod 700 usr/bin/second
            setfattr -n user.mime -v text/x-changed etc/xattrs
            printf 'top\\n' > etc/top
            """)
    }

    /// skopeo copies of the layout: `oci-archive`, `docker-archive` and a
    /// layout with zstd layers; the sources that name each.
    func copies(tag: String = "t") throws -> [(form: String, source: String)] {
        let archive = dir.file("image.oci.tar")
        let docker = dir.file("image.docker.tar")
        let zstd = dir.file("zstd")
        try sh(
            """
            set -e
            skopeo copy -q 'oci:\(layout):\(tag)' 'oci-archive:\(archive):\(tag)'
            skopeo copy -q 'oci:\(layout):\(tag)' 'docker-archive:\(docker):test/image:\(tag)'
            skopeo copy -q --dest-compress --dest-compress-format zstd 'oci:\(layout):\(tag)' 'oci:\(zstd):\(tag)'
            """)
        return [
            ("oci layout", "oci:\(layout):\(tag)"), ("bare layout path", layout),
            ("oci-archive", "oci-archive:\(archive):\(tag)"), ("bare oci-archive path", archive),
            ("docker-archive", "docker-archive:\(docker):test/image:\(tag)"), ("bare docker-archive path", docker),
            ("zstd layers", "oci:\(zstd):\(tag)")
        ]
    }

    /// The image unpacked by umoci (the extract-first route).
    func unpack(tag: String = "t", into path: String) throws {
        try sh("umoci unpack --image '\(layout):\(tag)' '\(path)' > /dev/null")
    }

    /// The JSON document at `path`.
    static func json(_ path: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    static func write(_ object: Any, to path: String) throws {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    /// The blob `digest` (`sha256:HEX`) of the layout.
    func blob(_ digest: String, in layout: String? = nil) -> String {
        (layout ?? self.layout) + "/blobs/sha256/" + digest.dropFirst("sha256:".count)
    }

    /// The manifest the tag names, and its descriptor.
    func manifest(tag: String = "t", in layout: String? = nil) throws -> (descriptor: [String: Any], manifest: [String: Any]) {
        let index = try Self.json((layout ?? self.layout) + "/index.json")
        let list = try #require(index["manifests"] as? [[String: Any]])
        let d = try #require(list.first { ($0["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == tag })
        return (d, try Self.json(blob(try #require(d["digest"] as? String), in: layout)))
    }

    /// Stores `bytes` as a blob of the layout; its descriptor fields.
    @discardableResult
    func addBlob(_ bytes: Data, in layout: String? = nil) throws -> (digest: String, size: Int) {
        let digest = "sha256:" + SHA256.digest([UInt8](bytes)).hexString
        try bytes.write(to: URL(fileURLWithPath: blob(digest, in: layout)))
        return (digest, bytes.count)
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// `mkcomposefs --from-oci` on images made offline by umoci and skopeo:
/// every form gives the image of the rootfs umoci unpacks (and the same
/// store), in both format versions; a damaged or incomplete image writes
/// no image and publishes no object.
@Suite(.serialized) struct OCITests {
    /// The image and store of the extract-first route: umoci's rootfs
    /// through mkcomposefs (byte-identical to upstream's, as the
    /// conformance vectors check).
    static func extracted(_ f: OCIFixture, _ versionArguments: [String]) throws -> (image: [UInt8], objects: [String]) {
        let rootfs = f.dir.file("unpacked")
        if access(rootfs, F_OK) != 0 { try f.unpack(into: rootfs) }
        let store = f.dir.file("store-extracted")
        let image = f.dir.file("extracted.cfs")
        let r = try Tools.mkcomposefs(versionArguments + ["--digest-store=\(store)", rootfs + "/rootfs", image])
        try #require(r.status == 0, "\(r.err)")
        return (try ScanFS.readFile(image), try objects(store))
    }

    static func objects(_ store: String) throws -> [String] {
        try sh("cd '\(store)' && find . \\( -type f -o -type l \\) | sort").split(separator: "\n").map(String.init)
    }

    @Test(.ociTools) func everyFormGivesTheExtractedImage() throws {
        let f = try OCIFixture()
        try f.buildStandard()
        let sources = try f.copies()
        for versions in [[String](), ["--min-version=1", "--max-version=1"], ["--max-version=0"]] {
            let want = try Self.extracted(f, versions)
            let digest = try Tools.mkcomposefs(versions + ["--print-digest-only", f.dir.file("unpacked/rootfs")]).out
            for (form, source) in sources {
                let store = f.dir.file("store-\(form.replacingOccurrences(of: " ", with: "-"))")
                ScanFS.removeTree(store)
                let image = f.dir.file("oci.cfs")
                var r = try Tools.mkcomposefs(versions + ["--from-oci=\(source)", "--digest-store=\(store)", image])
                #expect(r.status == 0, "\(form): \(r.err)")
                #expect(try ScanFS.readFile(image) == want.image, "\(form) \(versions): the extracted image")
                #expect(try Self.objects(store) == want.objects, "\(form) \(versions): the extracted store")
                r = try Tools.mkcomposefs(versions + ["--from-oci=\(source)", "--print-digest-only"])
                #expect(r.out == digest, "\(form) \(versions): --print-digest-only")
            }
        }
        // --from-tar of the same layers, in the manifest's order.
        let layers = try #require(try f.manifest().manifest["layers"] as? [[String: Any]]).map { f.blob($0["digest"] as! String) }
        let image = f.dir.file("tar.cfs")
        let r = try Tools.mkcomposefs(layers.flatMap { ["--from-tar", $0] } + [image])
        #expect(r.status == 0, "\(r.err)")
        #expect(try ScanFS.readFile(image) == (try Self.extracted(f, [])).image, "--from-tar of the blobs")
    }

    @Test(.ociTools) func verboseNamesTheManifest() throws {
        let f = try OCIFixture()
        try f.layer("printf 'x' > file")
        let digest = try #require(try f.manifest().descriptor["digest"] as? String)
        let r = try Tools.mkcomposefs(["-v", "--from-oci=oci:\(f.layout):t", "--print-digest-only"])
        #expect(r.status == 0)
        #expect(r.err == "mkcomposefs: oci:\(f.layout):t: manifest \(digest), 1 layers\n")
    }

    // MARK: Damage

    /// Ways an image can be damaged or incomplete, and the message that
    /// names what is wrong.
    enum Damage: String, CaseIterable, CustomTestStringConvertible {
        case flippedLayerByte, truncatedLayer, longerLayer, wrongDiffID, flippedConfig, flippedManifest
        case missingLayer, missingTag, unknownLayerType
        var testDescription: String { rawValue }
    }

    /// Applies `damage` to a copy of the layout; the expected message part.
    static func damage(_ f: OCIFixture, _ damage: Damage, _ layout: String) throws -> String {
        let (descriptor, manifest) = try f.manifest(in: layout)
        let layers = try #require(manifest["layers"] as? [[String: Any]])
        let layer0 = try #require(layers.first?["digest"] as? String)
        let configDigest = try #require((manifest["config"] as? [String: Any])?["digest"] as? String)
        let manifestDigest = try #require(descriptor["digest"] as? String)
        let first = "layer 1 of \(layers.count) (\(layer0))"
        /// Writes a changed manifest and points the index at it.
        func replaceManifest(_ m: [String: Any]) throws {
            let data = try JSONSerialization.data(withJSONObject: m, options: [.sortedKeys])
            let (digest, size) = try f.addBlob(data, in: layout)
            var index = try OCIFixture.json(layout + "/index.json")
            var list = try #require(index["manifests"] as? [[String: Any]])
            list[0]["digest"] = digest
            list[0]["size"] = size
            index["manifests"] = list
            try OCIFixture.write(index, to: layout + "/index.json")
        }
        switch damage {
        case .flippedLayerByte:
            try sh("printf '\\\\377' | dd of='\(f.blob(layer0, in: layout))' bs=1 seek=40 conv=notrunc status=none")
            return "\(first) has digest sha256:"
        case .truncatedLayer:
            try sh("truncate -s -1 '\(f.blob(layer0, in: layout))'")
            return "\(first) is \(try #require(layers[0]["size"] as? Int) - 1) bytes, its descriptor says"
        case .longerLayer:
            try sh("printf 'x' >> '\(f.blob(layer0, in: layout))'")
            return "\(first) is \(try #require(layers[0]["size"] as? Int) + 1) bytes, its descriptor says"
        case .wrongDiffID:
            var config = try OCIFixture.json(f.blob(configDigest, in: layout))
            var rootfs = try #require(config["rootfs"] as? [String: Any])
            var ids = try #require(rootfs["diff_ids"] as? [String])
            ids[0] = "sha256:" + String(repeating: "0", count: 64)
            rootfs["diff_ids"] = ids
            config["rootfs"] = rootfs
            let (digest, size) = try f.addBlob(try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), in: layout)
            var m = manifest
            var c = try #require(m["config"] as? [String: Any])
            c["digest"] = digest
            c["size"] = size
            m["config"] = c
            try replaceManifest(m)
            return "\(first) uncompressed has digest sha256:"
        case .flippedConfig:
            try sh("printf ' ' | dd of='\(f.blob(configDigest, in: layout))' bs=1 seek=1 conv=notrunc status=none")
            return "config \(configDigest) has digest sha256:"
        case .flippedManifest:
            try sh("printf ' ' | dd of='\(f.blob(manifestDigest, in: layout))' bs=1 seek=1 conv=notrunc status=none")
            return "manifest \(manifestDigest) has digest sha256:"
        case .missingLayer:
            try sh("rm '\(f.blob(layer0, in: layout))'")
            return "\(first) is not in"
        case .missingTag:
            return "no image 'nope' in"
        case .unknownLayerType:
            var m = manifest
            var l = layers
            l[0]["mediaType"] = "application/vnd.example.layer"
            m["layers"] = l
            try replaceManifest(m)
            return "has an unsupported media type 'application/vnd.example.layer'"
        }
    }

    @Test(.ociTools, arguments: Damage.allCases) func aDamagedImageWritesNothing(_ damage: Damage) throws {
        let f = try OCIFixture()
        try f.buildStandard()
        // A store with objects of another image, which must stay as they are.
        let store = f.dir.file("store")
        let other = f.dir.file("other")
        try sh("mkdir -p '\(other)' && head -c 50000 /dev/urandom > '\(other)/x' && head -c 9000 /dev/urandom > '\(other)/y'")
        #expect(try Tools.mkcomposefs(["--digest-store=\(store)", other, f.dir.file("other.cfs")]).status == 0)
        let before = try sh("cd '\(store)' && find . -printf '%p %i %s\\n' | sort")
        let layout = f.dir.file("damaged")
        try sh("cp -a '\(f.layout)' '\(layout)'")
        let expected = try Self.damage(f, damage, layout)
        let image = f.dir.file("out.cfs")
        let tag = damage == .missingTag ? "nope" : "t"
        let r = try Tools.mkcomposefs(["--from-oci=oci:\(layout):\(tag)", "--digest-store=\(store)", image])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: ") && r.err.contains(expected) && r.err.hasSuffix("\n"), "\(r.err)")
        #expect(r.err.split(separator: "\n").count == 1, "one message: \(r.err)")
        #expect(access(image, F_OK) != 0, "no image")
        #expect(try sh("cd '\(store)' && find . -printf '%p %i %s\\n' | sort") == before, "the store is as it was")
    }

    // MARK: Indexes and platforms

    @Test(.ociTools) func aMultiPlatformIndex() throws {
        let f = try OCIFixture()
        try f.layer("printf 'amd64\\n' > arch")
        try sh("umoci new --image '\(f.layout):arm'")
        try f.layer("printf 'arm64\\n' > arch", tag: "arm")
        let amd = try f.manifest(tag: "t").descriptor
        let arm = try f.manifest(tag: "arm").descriptor
        func entry(_ d: [String: Any], _ platform: [String: String]) -> [String: Any] {
            ["mediaType": d["mediaType"]!, "digest": d["digest"]!, "size": d["size"]!, "platform": platform]
        }
        let nested: [String: Any] = [
            "schemaVersion": 2, "mediaType": OCI.MediaType.index,
            "manifests": [
                entry(arm, ["os": "linux", "architecture": "arm64", "variant": "v8"]),
                entry(amd, ["os": "linux", "architecture": "amd64"])
            ]
        ]
        let (digest, size) = try f.addBlob(try JSONSerialization.data(withJSONObject: nested, options: [.sortedKeys]))
        var index = try OCIFixture.json(f.layout + "/index.json")
        var list = try #require(index["manifests"] as? [[String: Any]])
        list.append([
            "mediaType": OCI.MediaType.index, "digest": digest, "size": size,
            "annotations": ["org.opencontainers.image.ref.name": "multi"]
        ])
        index["manifests"] = list
        try OCIFixture.write(index, to: f.layout + "/index.json")

        func digestOf(_ arguments: [String]) throws -> Tools.Result { try Tools.mkcomposefs(arguments + ["--print-digest-only"]) }
        let amdImage = try digestOf(["--from-oci=oci:\(f.layout):t"]).out
        let armImage = try digestOf(["--from-oci=oci:\(f.layout):arm"]).out
        #expect(amdImage != armImage)
        if OCI.Platform.current == OCI.Platform(os: "linux", architecture: "amd64") {
            let r = try digestOf(["-v", "--from-oci=oci:\(f.layout):multi"])
            #expect(r.out == amdImage, "the machine's platform by default")
            #expect(r.err.contains("manifest \(amd["digest"]!), platform linux/amd64, 1 layers"), "\(r.err)")
        }
        #expect(try digestOf(["--from-oci=oci:\(f.layout):multi", "--platform=linux/arm64"]).out == armImage)
        #expect(try digestOf(["--from-oci=oci:\(f.layout):multi", "--platform=linux/amd64"]).out == amdImage)
        // A manifest inside the nested index, by its digest.
        #expect(try digestOf(["--from-oci=oci:\(f.layout):\(arm["digest"]!)"]).out == armImage)
        var r = try digestOf(["--from-oci=oci:\(f.layout):multi", "--platform=linux/s390x"])
        #expect(r.status == 1)
        #expect(
            r.err == "mkcomposefs: no image for linux/s390x (available: linux/arm64/v8, linux/amd64; choose one with --platform)\n")
        r = try digestOf(["--from-oci=oci:\(f.layout)"])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("mkcomposefs: '\(f.layout)' holds 3 images; name one ('t' sha256:"), "\(r.err)")
        r = try digestOf(["--from-oci=oci:\(f.layout):multi", "--platform=linux"])
        #expect(r.err == "mkcomposefs: Invalid --platform linux (OS/ARCH or OS/ARCH/VARIANT)\n")
    }

    @Test func commandLineRefusals() throws {
        var r = try Tools.mkcomposefs(["--from-oci=oci:x", "--from-tar=y", "out.cfs"])
        #expect(r.status == 1 && r.err.hasPrefix("--from-oci and --from-tar cannot be used together\nusage: mkcomposefs"))
        r = try Tools.mkcomposefs(["--from-oci=oci:x", "--from-file", "out.cfs"])
        #expect(r.err.hasPrefix("--from-oci and --from-file cannot be used together\n"))
        r = try Tools.mkcomposefs(["--platform=linux/amd64", "src", "out.cfs"])
        #expect(r.err.hasPrefix("--platform needs --from-oci\n"))
        r = try Tools.mkcomposefs(["--from-oci=oci:/nonexistent", "--print-digest-only"])
        #expect(r.status == 1 && r.err == "mkcomposefs: cannot open '/nonexistent': No such file or directory\n")
        r = try Tools.mkcomposefs(["--from-oci=oci:x", "a", "b"])
        #expect(r.err.hasPrefix("Too many arguments\n"))
    }
}

import ComposeFSProperties
import Foundation
import Testing

@testable import ComposeFS

// Replays the inputs the fuzz targets (Fuzz/, scripts/fuzz, FUZZING.md) found
// or found hard through the properties the targets check, the shared ones of
// the ComposeFSProperties library (Sources/ComposeFSProperties):
//
//     Fixtures/fuzz-regressions/fuzz-dump/*           Properties.checkDump: DumpParser → ImageWriter → ImageReader round trip
//     Fixtures/fuzz-regressions/fuzz-image/*          Properties.checkImage: ImageReader.load / walk / DumpPrinter
//     Fixtures/fuzz-regressions/fuzz-mount-options/*  Properties.checkMountOptions: Mount.Options.parse
//     Fixtures/fuzz-regressions/fuzz-tar/*            Properties.checkTar: TarReader → TarLayer → OCILayers → ImageWriter
//     Fixtures/fuzz-regressions/fuzz-fuse/*           Properties.checkFuseInput: the FUSE handlers on an image, one raw request
//     Fixtures/fuzz-regressions/fuzz-oci-json/*       Properties.checkOCIDocument: JSON, descriptors, diff_ids
//     Fixtures/fuzz-regressions/fuzz-oci-archive/*    Properties.checkOCIArchive: an image archive's member index
//
// Every file in those directories is replayed; to add a reproducer, copy the
// (minimised) crash file there under a descriptive name. A violation, which
// traps in a fuzz target, is recorded here as an issue.

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    static let root: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("fuzz-regressions")

    static func inputs(_ target: String) -> [String] {
        let dir = root.appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".md") }.sorted()
    }

    static func load(_ target: String, _ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: root.appendingPathComponent(target).appendingPathComponent(name)))
    }

    /// Records each violation as an issue at the calling test.
    static func record(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> (String) -> Void {
        { Issue.record("\(name): \($0)", sourceLocation: sourceLocation) }
    }

    @Test("every fuzz target has replayable inputs")
    func inputsExist() {
        for t in [
            "fuzz-dump", "fuzz-image", "fuzz-mount-options", "fuzz-tar", "fuzz-fuse", "fuzz-oci-json", "fuzz-oci-archive"
        ] {
            #expect(!Self.inputs(t).isEmpty, "no inputs in Fixtures/fuzz-regressions/\(t)")
        }
    }

    @Test("fuzz-dump inputs", arguments: inputs("fuzz-dump"))
    func dump(_ name: String) throws {
        Properties.checkDump(try Self.load("fuzz-dump", name), report: Self.record(name))
    }

    @Test("fuzz-image inputs", arguments: inputs("fuzz-image"))
    func image(_ name: String) throws {
        Properties.checkImage(try Self.load("fuzz-image", name), report: Self.record(name))
    }

    @Test("fuzz-mount-options inputs", arguments: inputs("fuzz-mount-options"))
    func mountOptions(_ name: String) throws {
        Properties.checkMountOptions(try Self.load("fuzz-mount-options", name), report: Self.record(name))
    }

    @Test("fuzz-tar inputs", arguments: inputs("fuzz-tar"))
    func tar(_ name: String) throws {
        Properties.checkTar(try Self.load("fuzz-tar", name), report: Self.record(name))
    }

    @Test("fuzz-fuse inputs", arguments: inputs("fuzz-fuse"))
    func fuse(_ name: String) throws {
        Properties.checkFuseInput(try Self.load("fuzz-fuse", name), report: Self.record(name))
    }

    @Test("fuzz-oci-json inputs", arguments: inputs("fuzz-oci-json"))
    func ociJSON(_ name: String) throws {
        Properties.checkOCIDocument(try Self.load("fuzz-oci-json", name), report: Self.record(name))
    }

    @Test("fuzz-oci-archive inputs", arguments: inputs("fuzz-oci-archive"))
    func ociArchive(_ name: String) throws {
        Properties.checkOCIArchive(try Self.load("fuzz-oci-archive", name), report: Self.record(name))
    }

    // MARK: Leak found by fuzzing

    /// LeakSanitizer in fuzz-dump and fuzz-image: a hardlink entry whose
    /// target is an ancestor directory (allowed by the FORMAT.md §6.1 quirk;
    /// also what a corrupt image's dirent pointing back up the tree loads
    /// as) made a strong reference cycle (ancestor.children → … →
    /// entry.hardlinkTarget → ancestor), so the whole tree was never freed.
    /// Fixed by making Node.hardlinkTarget weak.
    @Test(
        "hardlink to an ancestor directory does not leak the tree",
        arguments: ["/", "/d", ""])
    func hardlinkToAncestorIsFreed(_ target: String) throws {
        weak var weakRoot: Node?
        do {
            let text =
                "/ 4096 40755 3 0 0 0 0.0 - - -\n/d 4096 40755 2 0 0 0 0.0 - - -\n"
                + "/d/a 0 @100644 1 0 0 0 0.0 \(target) - -\n"
            let root = try DumpParser.parse(Array(text.utf8))
            #expect(root.lookup(path: Array("/d/a".utf8))?.resolvedTarget?.isDirectory == true)
            _ = try? ImageWriter.write(root)
            weakRoot = root
        }
        #expect(weakRoot == nil, "the tree was not freed (reference cycle through hardlinkTarget)")
    }
}

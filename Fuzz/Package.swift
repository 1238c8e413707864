// swift-tools-version:6.0
// Fuzz targets for swift-composefs. A separate package so the main build
// never sees libFuzzer or sanitizer flags. Build and run with scripts/fuzz
// (see FUZZING.md). The fuzz-* executables only link with
// `-sanitize=fuzzer` (they call libFuzzer's LLVMFuzzerRunDriver); a plain
// `swift build --product fuzz-seedgen` builds the seed generator.
import PackageDescription

let package = Package(
    name: "swift-composefs-fuzz",
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        // The properties each target checks, shared by the targets.
        .target(
            name: "FuzzSupport",
            dependencies: [.product(name: "ComposeFS", package: "main")]
        ),
        .executableTarget(name: "fuzz-dump", dependencies: ["FuzzSupport"]),
        .executableTarget(name: "fuzz-image", dependencies: ["FuzzSupport"]),
        .executableTarget(name: "fuzz-mount-options", dependencies: ["FuzzSupport"]),
        .executableTarget(name: "fuzz-tar", dependencies: ["FuzzSupport"]),
        // Writes the seed corpora (Fuzz/Corpus/<target>/gen-*).
        .executableTarget(
            name: "fuzz-seedgen",
            dependencies: [.product(name: "ComposeFS", package: "main")]
        ),
    ],
    swiftLanguageModes: [.v5]
)

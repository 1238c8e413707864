// swift-tools-version:6.0
// Fuzz targets for swift-composefs. A separate package so the main build
// never sees libFuzzer or sanitizer flags. Build and run with scripts/fuzz
// (see FUZZING.md). The fuzz-* executables only link with
// `-sanitize=fuzzer` (they call libFuzzer's LLVMFuzzerRunDriver); a plain
// `swift build --product fuzz-seedgen` builds the seed generator.
import PackageDescription

// The main package, named explicitly: a path dependency's identity is
// otherwise its directory's name, which depends on the checkout.
let properties: Target.Dependency = .product(name: "ComposeFSProperties", package: "swift-composefs")

let package = Package(
    name: "swift-composefs-fuzz",
    dependencies: [
        .package(name: "swift-composefs", path: "..")
    ],
    targets: [
        // libFuzzer's driver and `violation` (traps); the properties
        // themselves are the main package's ComposeFSProperties library,
        // which the tests use too.
        .target(name: "FuzzSupport"),
        .executableTarget(name: "fuzz-dump", dependencies: ["FuzzSupport", properties]),
        .executableTarget(name: "fuzz-image", dependencies: ["FuzzSupport", properties]),
        .executableTarget(name: "fuzz-mount-options", dependencies: ["FuzzSupport", properties]),
        .executableTarget(name: "fuzz-tar", dependencies: ["FuzzSupport", properties]),
        .executableTarget(name: "fuzz-fuse", dependencies: ["FuzzSupport", properties]),
        .executableTarget(name: "fuzz-oci-json", dependencies: ["FuzzSupport", properties]),
        .executableTarget(name: "fuzz-oci-archive", dependencies: ["FuzzSupport", properties]),
        // Writes the seed corpora (Fuzz/Corpus/<target>/gen-*).
        .executableTarget(
            name: "fuzz-seedgen",
            dependencies: [.product(name: "ComposeFS", package: "swift-composefs")]
        )
    ],
    swiftLanguageModes: [.v5]
)

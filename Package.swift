// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-composefs",
    products: [
        .library(name: "ComposeFS", targets: ["ComposeFS"]),
        // The fuzz targets' properties, for the fuzz package (Fuzz/) and the
        // tests that replay its regression inputs.
        .library(name: "ComposeFSProperties", targets: ["ComposeFSProperties"]),
        // One multi-call program: mkcomposefs, composefs-info and
        // mount.composefs are links to it (scripts/build makes them).
        .executable(name: "composefs", targets: ["composefs"])
    ],
    targets: [
        // SHA-256 (hardware accelerated) from OpenSSL's libcrypto.
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // fsverity-utils' libfsverity: enabling fs-verity on store objects,
        // and an independent digest implementation for the tests.
        .systemLibrary(
            name: "CFSVerity",
            pkgConfig: "libfsverity",
            providers: [.apt(["libfsverity-dev"])]
        ),
        // libarchive: reading tar layers (ustar, GNU, pax; gzip, xz, zstd).
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        // Only what Swift cannot call directly: variadic ioctl(2) and
        // syscall(2), and functions behind _GNU_SOURCE.
        .target(name: "CComposeFSShims"),
        .target(
            name: "ComposeFS",
            dependencies: ["CCrypto", "CArchive", "CComposeFSShims"]
        ),
        // The command lines: argument parsing, messages, exit status.
        .target(
            name: "ComposeFSTools",
            dependencies: ["ComposeFS"]
        ),
        .executableTarget(
            name: "composefs",
            dependencies: ["ComposeFSTools"]
        ),
        // Round-trip and consistency properties on arbitrary input, through
        // ComposeFS's public API only (FUZZING.md).
        .target(
            name: "ComposeFSProperties",
            dependencies: ["ComposeFS"]
        ),
        .testTarget(
            name: "ComposeFSTests",
            dependencies: ["ComposeFS", "ComposeFSTools", "ComposeFSProperties", "CFSVerity", "CComposeFSShims"],
            resources: [.copy("Fixtures")]
        )
    ]
)

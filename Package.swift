// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-composefs",
    products: [
        .library(name: "ComposeFS", targets: ["ComposeFS"]),
        .executable(name: "mkcomposefs", targets: ["mkcomposefs"]),
        .executable(name: "composefs-info", targets: ["composefs-info"]),
        .executable(name: "mount.composefs", targets: ["mount.composefs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
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
        // Only what Swift cannot call directly: variadic ioctl(2) and
        // syscall(2), and functions behind _GNU_SOURCE.
        .target(name: "CComposeFSShims"),
        .target(
            name: "ComposeFS",
            dependencies: ["CCrypto", "CFSVerity", "CComposeFSShims"]
        ),
        // What the three command lines share (argument parsing, exits).
        .target(
            name: "ToolSupport",
            dependencies: [
                "ComposeFS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "mkcomposefs",
            dependencies: [
                "ComposeFS", "ToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "composefs-info",
            dependencies: [
                "ComposeFS", "ToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "mount.composefs",
            dependencies: [
                "ComposeFS", "ToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "ComposeFSTests",
            dependencies: ["ComposeFS", "CFSVerity", "CComposeFSShims"],
            resources: [.copy("Fixtures")]
        ),
    ]
)

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// The running kernel, and what the mount code must do on it
/// (../shared/docs/KERNELS.md): the same tests run on this machine and in
/// each guest of the kernel test bed (scripts/test-kernels boots Debian's
/// 6.1, 6.12 and newest kernels and runs the suites named in
/// scripts/kernel-guest there, with TMPDIR on ext4 with fs-verity).
enum Kernel {
    /// `major * 1000 + minor`: 6.12 is 6012.
    static let version: Int = {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return parts.count == 2 ? parts[0] * 1000 + parts[1] : 0
    }()

    /// Inside a guest of the kernel test bed.
    static var inTestBed: Bool { ProcessInfo.processInfo.environment["COMPOSEFS_KERNEL_BED"] == "1" }

    /// Whether files in the test's temporary directory can have fs-verity
    /// (a probe: a file there is made and verity enabled on it).
    static let temporaryFilesHaveVerity: Bool = {
        guard let dir = try? TemporaryDirectory() else { return false }
        defer { dir.remove() }
        guard let path = try? dir.write("probe", Array(repeating: 7, count: 100)),
            let fd = try? FileDescriptor.open(FilePath(path), .readOnly)
        else { return false }
        defer { try? fd.close() }
        return FsVerity.enable(fd: fd) == nil
    }()

    /// The way a mount on this kernel goes, given what a test forces.
    static func expectedRoute(
        forceLoopDevice: Bool = false, forcePrivateNamespace: Bool = false,
        forceLegacyOptions: Bool = false, forcePlainLowerLayers: Bool = false
    )
        -> (loop: Bool, layer: Mount.Route.ImageLayer, options: Mount.Route.OverlayOptions)
    {
        let loop = forceLoopDevice || version < 6012   // EROFS on a file: 6.12
        let legacy = forceLegacyOptions || version < 6007   // lowerdir+, datadir+: 6.7
        // A detached mount as an overlay layer: about 6.15.
        let layer: Mount.Route.ImageLayer = forcePrivateNamespace || legacy || version < 6015 ? .privateNamespace : .detached
        let options: Mount.Route.OverlayOptions =
            legacy
            ? .legacy(dataOnlyLayers: !forcePlainLowerLayers && version >= 6005) : .fsconfig   // data-only layers: 6.5
        return (loop, layer, options)
    }

    /// overlayfs can enforce `verity=require` (6.6).
    static var overlayEnforcesVerity: Bool { version >= 6006 }
}

extension Trait where Self == Requirement {
    /// Runs only in the kernel test bed, where the kernel and filesystem
    /// have fs-verity (this machine's kernel has none). Elsewhere, CI too,
    /// it is skipped: CI runs it in the bed.
    static var kernelTestBed: Requirement {
        Requirement(
            met: { Mounts.canMount && Kernel.temporaryFilesHaveVerity },
            why: "needs root, EROFS, overlayfs and fs-verity in TMPDIR's filesystem",
            applies: { Kernel.inTestBed }, place: "runs in the kernel test bed (scripts/test-kernels)")
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// Every way of mounting that older kernels need, forced on this kernel
/// (which would take the most capable one it has): each must show the same
/// tree and leave nothing behind. Unforced, and in the kernel test bed on
/// each kernel, the route must be the one that kernel needs
/// (`Kernel.expectedRoute`).
@Suite(.serialized) struct MountRouteTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var forceLoopDevice = false
        var forcePrivateNamespace = false
        var forceLegacyOptions = false
        var forcePlainLowerLayers = false
        var testDescription: String { name }

        var expected: (loop: Bool, layer: Mount.Route.ImageLayer, options: Mount.Route.OverlayOptions) {
            Kernel.expectedRoute(
                forceLoopDevice: forceLoopDevice, forcePrivateNamespace: forcePrivateNamespace,
                forceLegacyOptions: forceLegacyOptions, forcePlainLowerLayers: forcePlainLowerLayers)
        }

        var environment: Mount.Environment {
            Mount.Environment(
                forceLoopDevice: forceLoopDevice, forcePrivateNamespace: forcePrivateNamespace,
                forceLegacyOptions: forceLegacyOptions, forcePlainLowerLayers: forcePlainLowerLayers)
        }
    }

    static let cases: [Case] = [
        Case(name: "what this kernel takes by itself"),
        Case(name: "private namespace, fsconfig (6.7 to 6.14)", forcePrivateNamespace: true),
        Case(name: "option string, data-only layers (6.5, 6.6)", forceLegacyOptions: true),
        Case(
            name: "option string, plain lower layers, loop device (6.1)", forceLoopDevice: true,
            forceLegacyOptions: true, forcePlainLowerLayers: true)
    ]

    @Test(.mounting, arguments: cases) func routeShowsTheSourceTree(_ c: Case) throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let before = Mounts.table(for: f)
        var options = Mount.Options()
        options.basedirPaths = [f.store]
        let route = try Mount.mount(image: f.image, target: f.target, options: options, environment: c.environment)
        #expect(route.imageLayer == c.expected.layer)
        #expect(route.overlayOptions == c.expected.options)
        if case .loopDevice = route.image { #expect(c.expected.loop) } else { #expect(!c.expected.loop) }
        #expect(!route.verity)
        #expect(Mounts.entries(at: f.target) == ["overlay"], "exactly one mount, the overlay")
        #expect(Mounts.table(for: f).count == before.count + 1, "one new mount in this namespace, nothing else")
        try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        try Mounts.unmount(f.target)
        #expect(Mounts.table(for: f) == before, "the mount table as it was")
        #expect(Mounts.waitForNoLoopDevices(backing: f.image), "no loop device left")
    }

    /// Paths with the characters the option string escapes: `,` `:` `\`.
    @Test(.mounting, arguments: [false, true]) func escapedPathsInTheOptionString(_ legacy: Bool) throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let store = f.dir.file("ob,j:e\\cts")
        let upper = f.dir.file("up,p:er")
        let work = f.dir.file("wo\\rk,")
        try sh("mv '\(f.store)' '\(store)' && mkdir '\(upper)' '\(work)'")
        var options = Mount.Options()
        options.basedirPaths = [store]
        options.upperdir = FilePath(upper)
        options.workdir = FilePath(work)
        let route = try Mount.mount(
            image: f.image, target: f.target, options: options,
            environment: Mount.Environment(forceLegacyOptions: legacy))
        #expect(route.overlayOptions == Kernel.expectedRoute(forceLegacyOptions: legacy).options)
        try TreeComparison.expectEqual(source: f.source, mounted: f.target)
        try sh("printf 'x\\n' > '\(f.target)/written'")
        try Mounts.unmount(f.target)
        #expect(try String(contentsOfFile: upper + "/written", encoding: .utf8) == "x\n")
    }

    @Test(.mounting) func readOnlyAndVerityThroughTheOptionString() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        var options = try Mount.Options.parse("basedir=\(f.store),ro,verity")
        guard Kernel.overlayEnforcesVerity else {
            // Before 6.6: refused, never mounted unverified.
            #expect(throws: Mount.Error.verityUnsupported) {
                try Mount.mount(
                    image: f.image, target: f.target, options: options, environment: Mount.Environment(forceLegacyOptions: true))
            }
            #expect(!Mounts.isMountPoint(f.target))
            return
        }
        let route = try Mount.mount(
            image: f.image, target: f.target, options: options,
            environment: Mount.Environment(forceLegacyOptions: true))
        #expect(route.verity && route.overlayOptions == Kernel.expectedRoute(forceLegacyOptions: true).options)
        let fd = open(f.target + "/newfile", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        let e = errno
        if fd >= 0 { close(fd) }
        #expect(fd < 0 && e == EROFS)
        #expect(try Mounts.mountOptions(at: f.target).contains("verity=require"))
        try Mounts.unmount(f.target)
        options.readOnly = false
        options.requireVerity = false
        options.tryVerity = true
        let tried = try Mount.mount(
            image: f.image, target: f.target, options: options,
            environment: Mount.Environment(forceLegacyOptions: true))
        #expect(!tried.verity, "tryverity is not offered in an option string")
        try Mounts.unmount(f.target)
    }

    @Test(.mounting) func fallbacksAreTraced() throws {
        let f = try MountTests.Fixture()
        try f.buildTree()
        try f.makeImage()
        let lines = Locked<[String]>([])
        var environment = Mount.Environment(forceLoopDevice: true, forceLegacyOptions: true)
        environment.trace = { line in lines.withLock { $0.append(line) } }
        var options = Mount.Options()
        options.basedirPaths = [f.store]
        let route = try Mount.mount(image: f.image, target: f.target, options: options, environment: environment)
        try Mounts.unmount(f.target)
        guard case .loopDevice(let device) = route.image else {
            Issue.record("expected a loop device, got \(route)")
            return
        }
        #expect(device.description.hasPrefix("/dev/loop"))
        let traced = lines.withLock { $0 }
        if Kernel.version >= 6005 {
            #expect(
                route.description
                    == "EROFS on loop device \(device); image layer attached in a private mount namespace; overlay options as a mount(2) string with data-only layers (lowerdir=A::B); no verity checks"
            )
            #expect(traced.isEmpty, "nothing fell back by itself on this kernel: \(traced)")
        } else {
            #expect(
                route.description
                    == "EROFS on loop device \(device); image layer attached in a private mount namespace; overlay options as a mount(2) string with plain lower layers (lowerdir=A:B); no verity checks"
            )
            #expect(traced.count == 1 && traced[0].hasPrefix("overlayfs rejected data-only lower layers"), "\(traced)")
        }
    }
}

@Suite struct LegacyOverlayOptionTests {
    @Test func optionString() throws {
        var o = Mount.Options()
        o.basedirs = ["/a,b", "/c:d\\e"]
        #expect(
            String(
                decoding: Mount.LegacyOverlayOptions.string(lower: "/proc/self/fd/5", options: o, dataOnlyLayers: true, verity: false),
                as: UTF8.self)
                == "metacopy=on,redirect_dir=on,lowerdir=/proc/self/fd/5::/a\\,b::/c\\:d\\\\e")
        o.upperdir = "/u,1"
        o.workdir = "/w:2"
        #expect(
            String(decoding: Mount.LegacyOverlayOptions.string(lower: "/l", options: o, dataOnlyLayers: false, verity: true), as: UTF8.self)
                == "metacopy=on,redirect_dir=on,lowerdir=/l:/a\\,b:/c\\:d\\\\e,upperdir=/u\\,1,workdir=/w\\:2,verity=require")
    }
}

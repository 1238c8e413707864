import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// `composefs-store`: garbage collection racing writers, killed runs,
/// damaged objects, foreign entries, dry runs, usage per image.
@Suite(.serialized) struct StoreToolTests {
    /// A store, source trees and an image directory under one temporary directory.
    final class Fixture {
        let dir: TemporaryDirectory
        var store: String { dir.file("objects") }
        var images: String { dir.file("images") }

        init() throws {
            dir = try TemporaryDirectory()
            try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        }

        deinit { dir.remove() }

        /// Tree `k`: 12 files of its own and 6 every tree has.
        func tree(_ k: Int) throws -> String {
            let src = dir.file("src\(k)")
            try FileManager.default.createDirectory(atPath: src + "/common", withIntermediateDirectories: true)
            for i in 0..<12 { try dir.write("src\(k)/own\(i)", pseudoRandomBytes(3_000 + 97 * i, seed: UInt64(1_000 * k + i))) }
            for i in 0..<6 { try dir.write("src\(k)/common/c\(i)", pseudoRandomBytes(5_000 + i, seed: UInt64(77 + i))) }
            return src
        }

        func image(_ name: String) -> String { images + "/" + name }

        func make(_ src: String, _ image: String) throws {
            let r = try Tools.mkcomposefs(["--digest-store=\(store)", src, image])
            try #require(r.status == 0, "mkcomposefs: \(r.err)")
        }

        func store(_ arguments: [String]) throws -> Tools.Result { try Tools.run("composefs-store", arguments) }

        func missing(_ image: String) throws -> String {
            let r = try Tools.info(["--basedir=\(store)", "missing-objects", image])
            #expect(r.status == 0, "missing-objects: \(r.err)")
            return r.out
        }

        func objects() throws -> Set<String> {
            Set(try FileManager.default.subpathsOfDirectory(atPath: store).filter { $0.count == 65 && !$0.hasPrefix(".") })
        }

        func referenced(_ images: [String]) throws -> Set<String> {
            var all = Set<String>()
            for i in images {
                let r = try Tools.info(["objects", i])
                all.formUnion(r.out.split(separator: "\n").map(String.init))
            }
            return all
        }
    }

    /// Writers and collections at once, many times: no image ever lacks
    /// an object (the shared/exclusive lock protocol).
    @Test func gcRacingWritersNeverLosesObjects() throws {
        let f = try Fixture()
        let trees = try (0..<4).map { try f.tree($0) }
        let bin = try #require(Tools.directory)
        try f.make(trees[0], f.image("first.cfs"))   // the store exists before collections start
        var runs = 0
        for round in 0..<20 {
            var commands: [(String, [String])] = []
            for (k, src) in trees.enumerated() where (round + k) % 2 == 0 || k == 0 {
                commands.append((bin + "/mkcomposefs", ["--digest-store=\(f.store)", src, f.image("r\(round)-t\(k).cfs")]))
            }
            for _ in 0..<2 { commands.append((bin + "/composefs-store", ["gc", f.store, f.images])) }
            let processes = try commands.shuffled().map { ($0, try Child($0.0, $0.1)) }
            for (command, p) in processes {
                #expect(p.wait() == 0, "round \(round): \(command.1)")
            }
            runs += processes.count
            // Drop an older image so that collections have work to do.
            if round >= 2 { try? FileManager.default.removeItem(atPath: f.image("r\(round - 2)-t0.cfs")) }
            for name in try FileManager.default.contentsOfDirectory(atPath: f.images) {
                let missing = try f.missing(f.image(name))
                #expect(missing.isEmpty, "round \(round): \(name) lacks objects: \(missing.prefix(200))")
            }
        }
        #expect(runs == 90)
        // A final collection keeps exactly what the images use.
        let images = try FileManager.default.contentsOfDirectory(atPath: f.images).map(f.image)
        #expect(try f.store(["gc", f.store, f.images]).status == 0)
        #expect(try f.objects() == (try f.referenced(images)))
    }

    /// A collection killed at any moment leaves a store that the next one
    /// finishes: every referenced object present, nothing else.
    @Test func killedCollectionIsFinishedByTheNext() throws {
        let f = try Fixture()
        for k in 0..<6 { try f.make(try f.tree(k), f.image("t\(k).cfs")) }
        for k in 1..<6 { try FileManager.default.removeItem(atPath: f.image("t\(k).cfs")) }
        let keep = try f.referenced([f.image("t0.cfs")])
        let bin = try #require(Tools.directory)
        for delay in [0, 2_000, 5_000, 20_000] as [useconds_t] {
            let gc = try Child(bin + "/composefs-store", ["gc", f.store, f.images])
            usleep(delay)
            gc.signal(SIGKILL)
            gc.wait()
            #expect(keep.isSubset(of: try f.objects()), "a killed collection removed a referenced object")
        }
        let r = try f.store(["gc", f.store, f.images])
        #expect(r.status == 0, "\(r.err)")
        #expect(try f.objects() == keep)
        #expect(try f.store(["fsck", f.store, f.image("t0.cfs")]).status == 0)
    }

    @Test func dryRunRemovesNothing() throws {
        let f = try Fixture()
        try f.make(try f.tree(0), f.image("a.cfs"))
        try f.make(try f.tree(1), f.image("b.cfs"))
        let before = try f.objects()
        let r = try f.store(["gc", "--dry-run", f.store, f.image("a.cfs")])
        #expect(r.status == 0)
        let listed = Set(r.out.split(separator: "\n").map(String.init))
        #expect(listed == before.subtracting(try f.referenced([f.image("a.cfs")])))
        #expect(listed.count == 12)
        #expect(r.err.contains("would remove 12 objects"))
        #expect(try f.objects() == before)
    }

    /// An image removed between the search for roots and its reading (a
    /// removal racing the collection) is gone, not an error: its objects
    /// go; one that is there but damaged still stops everything.
    @Test func anImageRemovedWhileCollectingIsGone() throws {
        let f = try Fixture()
        try f.make(try f.tree(0), f.image("a.cfs"))
        try f.make(try f.tree(1), f.image("b.cfs"))
        let sets = try StoreMaintenance.objects(
            of: [FilePath(f.image("a.cfs")), FilePath(f.image("gone.cfs"))], removedIsGone: true)
        #expect(sets.count == 2 && sets[0]?.count == 18 && sets[1] == nil)
        #expect(throws: StoreMaintenance.Error.self) {
            try StoreMaintenance.objects(of: [FilePath(f.image("gone.cfs"))], removedIsGone: false)
        }
        try FileManager.default.removeItem(atPath: f.image("b.cfs"))
        let r = try f.store(["gc", f.store, f.images])
        #expect(r.status == 0, "\(r.err)")
        #expect(try f.objects() == (try f.referenced([f.image("a.cfs")])))
    }

    /// Symlinks, stray files and directories in the store are reported,
    /// never followed or removed; an unreadable root stops everything.
    @Test func foreignEntriesAndDamagedRoots() throws {
        let f = try Fixture()
        try f.make(try f.tree(0), f.image("a.cfs"))
        try f.make(try f.tree(1), f.image("b.cfs"))
        let outside = try f.dir.write("precious", b("keep me\n"))
        let first = try #require(try f.objects().sorted().first)
        let fan = f.store + "/" + first.prefix(2)
        #expect(symlink(outside, fan + "/" + String(repeating: "0", count: 62)) == 0)
        #expect(symlink(outside, f.store + "/link") == 0)
        try f.dir.write("objects/README", b("notes\n"))
        try FileManager.default.createDirectory(atPath: f.store + "/zz", withIntermediateDirectories: true)
        let before = try f.objects()

        // A root that is not an image (given directly) is an error; a
        // damaged one too: nothing is removed.
        let bad = try f.dir.write("images/broken.cfs", Array(try Data(contentsOf: URL(fileURLWithPath: f.image("a.cfs"))).prefix(8192)))
        let r1 = try f.store(["gc", f.store, bad])
        #expect(r1.status == 1)
        #expect(r1.err.hasPrefix("composefs-store: cannot read image \(bad): "))
        #expect(try f.objects() == before)
        try FileManager.default.removeItem(atPath: bad)

        let r2 = try f.store(["gc", f.store, f.image("a.cfs")])
        #expect(r2.status == 0, "\(r2.err)")
        for name in ["link", "README", "zz", first.prefix(2) + "/" + String(repeating: "0", count: 62)] {
            #expect(r2.err.contains("not an object, left alone: \(f.store)/\(name)"), "\(name): \(r2.err)")
        }
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "keep me\n")
        #expect(FileManager.default.fileExists(atPath: f.store + "/README"))
        let fsck = try f.store(["fsck", f.store])
        #expect(fsck.status == 1, "foreign entries make fsck fail")
        #expect(fsck.out.contains("4 other entries"))
    }

    /// A flipped bit, a truncated object, an object under another's name:
    /// fsck finds each; --repair moves them aside and the next writer
    /// stores them anew.
    @Test func fsckFindsAndRepairsDamagedObjects() throws {
        let f = try Fixture()
        let src = try f.tree(0)
        try f.make(src, f.image("a.cfs"))
        #expect(try f.store(["fsck", f.store, f.image("a.cfs")]).status == 0)
        let names = try f.objects().sorted()
        let flipped = f.store + "/" + names[0]
        let truncated = f.store + "/" + names[1]
        let misnamed = f.store + "/" + names[2]
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: flipped)))
        bytes[1234] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: flipped))
        #expect(truncate(truncated, 100) == 0)
        try FileManager.default.removeItem(atPath: misnamed)
        try FileManager.default.copyItem(atPath: f.store + "/" + names[3], toPath: misnamed)

        let r = try f.store(["fsck", f.store, f.image("a.cfs")])
        #expect(r.status == 1)
        for n in names[0..<3] { #expect(r.out.contains("bad \(n): contents have digest "), "\(n): \(r.out)") }
        #expect(r.out.contains("3 bad, 0 other entries, 0 missing"))

        let repaired = try f.store(["fsck", "--repair", f.store, f.image("a.cfs")])
        #expect(repaired.status == 1)
        #expect(repaired.out.contains("; moved 3 bad objects aside\n"))
        for n in names[0..<3] {
            #expect(repaired.out.contains("moved \(n) to \(f.store)/\(n).damaged\n"))
            #expect(FileManager.default.fileExists(atPath: f.store + "/" + n + ".damaged"))
        }
        let after = try f.store(["fsck", f.store, f.image("a.cfs")])
        #expect(after.out.contains("0 bad, 0 other entries, 3 missing; 3 moved aside earlier (*.damaged)"))
        try f.make(src, f.image("a.cfs"))
        let clean = try f.store(["fsck", f.store, f.image("a.cfs")])
        #expect(clean.status == 0, "\(clean.out)")
        #expect(clean.out.hasSuffix("0 bad, 0 other entries, 0 missing; 3 moved aside earlier (*.damaged)\n"))

        // Damaged again: the earlier copy is kept, the new one gets the next name.
        #expect(truncate(truncated, 10) == 0)
        let again = try f.store(["fsck", "--repair", f.store])
        #expect(again.out.contains("moved \(names[1]) to \(f.store)/\(names[1]).damaged.2\n"), "\(again.out)")
        // Kept aside objects are no objects: a collection leaves them.
        #expect(try f.store(["gc", f.store, f.images]).status == 0)
        #expect(FileManager.default.fileExists(atPath: f.store + "/" + names[1] + ".damaged"))
        #expect(FileManager.default.fileExists(atPath: f.store + "/" + names[1] + ".damaged.2"))
    }

    /// In a searched directory, an image still being written (a writer's
    /// `.NAME.XXXXXXXX.tmp`) is no root, and other files are named and skipped.
    @Test func searchSkipsTemporaryAndForeignFiles() throws {
        let f = try Fixture()
        try f.make(try f.tree(0), f.image("a.cfs"))
        try FileManager.default.createDirectory(atPath: f.image("sub"), withIntermediateDirectories: true)
        try f.make(try f.tree(1), f.image("sub/b.cfs"))
        let partial = Array(try Data(contentsOf: URL(fileURLWithPath: f.image("a.cfs"))).prefix(4096))
        try f.dir.write("images/.c.cfs.AbCdEfGh.tmp", partial)
        try f.dir.write("images/notes.txt", b("not an image\n"))
        let r = try f.store(["gc", "--dry-run", f.store, f.images])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out == "")
        #expect(
            r.err
                == "composefs-store: skipping \(f.image(".c.cfs.AbCdEfGh.tmp")): a temporary file (being written, or left by a run that died)\n"
                + "composefs-store: skipping \(f.image("notes.txt")): not a composefs image\n"
                + "2 images: kept 30 objects, would remove 0 objects (0 bytes to free)\n")
    }

    @Test func usagePerImage() throws {
        let f = try Fixture()
        try f.make(try f.tree(0), f.image("a.cfs"))
        try f.make(try f.tree(1), f.image("b.cfs"))
        let u = try StoreMaintenance.usage(store: FilePath(f.store), images: [FilePath(f.image("a.cfs")), FilePath(f.image("b.cfs"))])
        let own = (0..<12).reduce(UInt64(0)) { $0 + UInt64(3_000 + 97 * $1) }
        let common = (0..<6).reduce(UInt64(0)) { $0 + UInt64(5_000 + $1) }
        for image in u.images {
            #expect(image.total == StoreMaintenance.Amount(objects: 18, bytes: own + common))
            #expect(image.exclusive == StoreMaintenance.Amount(objects: 12, bytes: own))
            #expect(image.shared == StoreMaintenance.Amount(objects: 6, bytes: common))
            #expect(image.missing == 0)
        }
        #expect(u.store == StoreMaintenance.Amount(objects: 30, bytes: 2 * own + common))
        #expect(u.unreferenced == StoreMaintenance.Amount())
        let r = try f.store(["du", f.store, f.image("a.cfs"), f.image("b.cfs")])
        #expect(r.status == 0)
        #expect(r.out.contains("\(f.image("a.cfs")): 18 objects, \(own + common) bytes"))
        #expect(r.out.contains("only this image: 12 objects, \(own) bytes"))
    }

    @Test func noWaitFailsWhileAWriterHoldsTheStore() throws {
        let f = try Fixture()
        try f.make(try f.tree(0), f.image("a.cfs"))
        let writer = try ObjectStore.Lock(store: FilePath(f.store), .shared)
        let r = try f.store(["gc", "--no-wait", f.store, f.images])
        #expect(r.status == 1)
        #expect(r.err == "composefs-store: \(f.store) is in use (a writer holds its lock); not waiting\n")
        withExtendedLifetime(writer) {}
    }

    @Test func usageErrors() throws {
        let f = try Fixture()
        #expect(try f.store([]).err.hasPrefix("composefs-store: No command specified\nusage: composefs-store gc"))
        #expect(try f.store(["gc"]).err.hasPrefix("composefs-store: No store specified\n"))
        #expect(try f.store(["gc", f.store]).err.hasPrefix("composefs-store: No images specified\n"))
        #expect(try f.store(["frob", f.store]).err == "composefs-store: Unknown command 'frob'\n")
        // A store that does not exist is an error, and is not created.
        for command in [["gc"], ["du"], ["fsck"]] {
            let r = try f.store(command + [f.store, f.images])
            #expect(r.status == 1)
            #expect(r.err == "composefs-store: No such file or directory (opening \(f.store))\n", "\(command)")
        }
        #expect(!FileManager.default.fileExists(atPath: f.store))
    }
}

extension StoreMaintenance.Amount {
    init(objects: Int, bytes: UInt64) {
        self.init()
        self.objects = objects
        self.bytes = bytes
    }
}

import Dispatch
import Glibc

/// Where the objects of fan-out directories that the store does not have
/// yet are written: a directory `.tmp-XXXXXXXXXXXX` at the top of the
/// store, holding `xx/yyyy…` under the objects' final names. A batch
/// commit makes the data durable, then moves each `xx` into the store with
/// one rename (`RENAME_NOREPLACE`; where another run made that fan-out
/// directory meanwhile, object by object), instead of a temporary file and
/// a link per object: a new store (the first image, the first layer) fills
/// at about the cost of extracting the files.
///
/// Nothing under an area is visible in the store's namespace before its
/// commit, so the rule "a name only for durable data" holds. The area
/// carries a shared `flock` while its run lives; one that can be locked
/// exclusively was left by a run that died and is removed (by the next
/// writer, or by `composefs-store gc`).
///
/// `writers` counts the files being written into the area; a commit waits
/// for them, so the directories it moves hold complete objects only.
final class StagingArea: @unchecked Sendable {
    let name: FilePath
    let fd: FileDescriptor
    /// The fan-out directories made in the area.
    private let fanOuts = Locked<Set<UInt8>>([])
    let writers = DispatchGroup()

    init(in store: StoreDirectory) throws(ObjectStore.Error) {
        (name, fd) = try store.makeStagingDirectory()
    }

    deinit { try? fd.close() }

    /// Makes the fan-out directory `first` in the area, if needed.
    func makeFanOut(_ first: UInt8, shownIn store: StoreDirectory) throws(ObjectStore.Error) {
        try fanOuts.withLock { made throws(ObjectStore.Error) in
            guard !made.contains(first) else { return }
            let hex = StoreDirectory.fanOutName(first)
            do throws(Errno) { try fd.makeDirectory(hex, mode: 0o755) } catch let error where error != .fileExists {
                throw .store(path: shown(hex.bytes, in: store), operation: .creating, errno: error)
            } catch {}
            made.insert(first)
        }
    }

    /// Where `relative` (`xx` or `xx/yyyy…` in the area) is, for messages.
    func shown(_ relative: [UInt8], in store: StoreDirectory) -> FilePath {
        store.shown(name.bytes + [UInt8(ascii: "/")] + relative)
    }

    /// Removes what is left of the area.
    func remove(from store: StoreDirectory) {
        store.removeStagingDirectory(name, fd, fanOuts: fanOuts.withLock { $0 })
    }

    /// Drops one of its files.
    func unlink(_ relative: FilePath) { try? fd.unlink(relative) }
}

/// Which fan-out directories a writer's new objects go to: the store's own
/// (anonymous files linked in) or, for those the store lacks, the current
/// staging area; and which objects this run has claimed already.
final class StagingAreas: @unchecked Sendable {
    typealias Error = ObjectStore.Error

    /// Where new objects of one fan-out directory go.
    enum Placement { case store, area }

    private let store: StoreDirectory
    /// What this run knows of the store's fan-out directories.
    private struct FanOuts {
        /// In the store.
        var present: Set<UInt8> = []
        /// Not in the store when looked for: their objects go to a staging area.
        var absent: Set<UInt8> = []
        /// Put in the store by this run: they held no object before it (one
        /// a concurrent run adds meanwhile shows as EEXIST when publishing).
        var made: Set<UInt8> = []
    }
    private let fanOuts = Locked(FanOuts())
    /// The area new objects go to, made on first use.
    private let current = Locked<StagingArea?>(nil)
    /// Objects a `Writer` or `insertOnce` claimed in this run.
    private let claimed = Locked<Set<[UInt8]>>([])

    /// Every new object goes to a staging area, whatever the store has:
    /// nothing is published before the final commit (`ObjectStore`'s
    /// `holdUntilCommit`).
    let holdsAll: Bool

    init(_ store: StoreDirectory, holdsAll: Bool = false) {
        self.store = store
        self.holdsAll = holdsAll
    }

    /// Where a new object of fan-out directory `first` is written: its
    /// placement, or the staging area when everything is held.
    func destination(_ first: UInt8) throws(Error) -> Placement {
        holdsAll ? .area : try placement(first)
    }

    /// The store's fan-out directory `first` exists: objects go to
    /// anonymous files linked into it. It does not: to a staging area
    /// (until a commit moves the area's `first` in).
    func placement(_ first: UInt8) throws(Error) -> Placement {
        let known = fanOuts.withLock { s -> Placement? in
            if s.present.contains(first) { return .store }
            if s.absent.contains(first) { return .area }
            return nil
        }
        if let known { return known }
        let where_: Placement = try store.hasFanOut(first) ? .store : .area
        fanOuts.withLock { s in
            if where_ == .store { s.present.insert(first) } else { s.absent.insert(first) }
            return ()
        }
        return where_
    }

    /// Whether this run should write the object `name`: not yet claimed by
    /// it (the first claim wins), and not already in the store. In a
    /// fan-out directory the store lacked, or that this run made, no object
    /// can be there yet, so no lookup is needed (one a concurrent run adds
    /// shows when publishing).
    func claim(_ name: [UInt8], fanOut first: UInt8) throws(Error) -> Bool {
        guard claimed.withLock({ $0.insert(name).inserted }) else { return false }
        if try placement(first) == .area || fanOuts.withLock({ $0.made.contains(first) }) { return true }
        return try !store.containsObject(name)
    }

    /// A new file for the object `name` (`xx/yyyy…`) in the current area,
    /// counted as a writer of it until it is staged or discarded.
    func createInArea(_ name: [UInt8], fanOut first: UInt8) throws(Error) -> ObjectStore.Staged {
        try asWriter(of: first) { area throws(Error) in
            let fd: FileDescriptor
            do throws(Errno) {
                fd = try .open(
                    FilePath(bytes: name), .readWrite, options: [.create, .exclusiveCreate], permissions: 0o644, relativeTo: area.fd)
            } catch {
                throw .store(path: area.shown(name, in: store), operation: .creatingTemporary, errno: error)
            }
            return ObjectStore.Staged(
                fd: fd, name: FilePath(bytes: name), tempName: nil,
                needsMode: StoreDirectory.umaskStripsObjectMode, area: area)
        }
    }

    /// Gives a complete anonymous (or store-level temporary) file the name
    /// `name` in the current area, where its fan-out directory belongs
    /// there; it is then an area file like the others (on failure it is
    /// dropped).
    func moveToArea(_ s: ObjectStore.Staged, as name: [UInt8], fanOut first: UInt8) throws(Error) -> ObjectStore.Staged {
        do throws(Error) {
            return try asWriter(of: first) { area throws(Error) in
                let target = FilePath(bytes: name)
                do throws(Errno) {
                    if let t = s.tempName {
                        try store.moveTemporary(t, to: target, in: area.fd)
                    } else {
                        try s.fd.link(as: target, in: area.fd)
                    }
                } catch {
                    throw .store(path: area.shown(name, in: store), operation: .linking, errno: error)
                }
                return ObjectStore.Staged(fd: s.fd, name: target, tempName: nil, needsMode: s.needsMode, area: area)
            }
        } catch {
            store.discard(s)
            throw error
        }
    }

    /// Runs `body` as a new writer of the current area, with its fan-out
    /// directory `first` made; the writer stays counted only if `body`
    /// returns (its file is then the caller's to stage or discard).
    private func asWriter(of first: UInt8, _ body: (StagingArea) throws(Error) -> ObjectStore.Staged) throws(Error) -> ObjectStore.Staged {
        let area = try current.withLock { current throws(Error) -> StagingArea in
            let area: StagingArea
            if let existing = current { area = existing } else { area = try StagingArea(in: store) }
            current = area
            area.writers.enter()
            return area
        }
        do throws(Error) {
            try area.makeFanOut(first, shownIn: store)
            return try body(area)
        } catch {
            area.writers.leave()
            throw error
        }
    }

    /// Takes the current area for a commit: later objects go to a new one.
    /// Returns once every file being written into it is staged or dropped.
    func takeArea() -> StagingArea? {
        let area = current.withLock { current -> StagingArea? in
            defer { current = nil }
            return current
        }
        area?.writers.wait()
        return area
    }

    /// Drops the current area and what is in it (after a failure).
    func discardCurrent() {
        current.withLock { current in
            current?.remove(from: store)
            current = nil
        }
    }

    /// Publishes a committed area's objects (their data already durable):
    /// each fan-out directory moves into the store whole, or, where the
    /// store has one by now, object by object. `objects` are the area's
    /// staged objects (`xx/yyyy…`). Whatever is left of the area goes.
    func publish(_ area: StagingArea, objects: [FilePath]) throws(Error) {
        defer { area.remove(from: store) }
        var byFanOut: [UInt8: [FilePath]] = [:]
        for o in objects {
            guard let id = ObjectID(path: o.bytes) else { continue }
            byFanOut[id.digest[0], default: []].append(o)
        }
        for (first, names) in byFanOut.sorted(by: { $0.key < $1.key }) {
            let moved = try store.moveFanOutIn(first, from: area.fd)
            if !moved { try store.makeFanOut(first) }
            fanOuts.withLock { s in
                s.absent.remove(first)
                s.present.insert(first)
                if moved { s.made.insert(first) }
            }
            guard !moved else { continue }
            for name in names { try store.name(name, from: area.fd) }
        }
    }
}

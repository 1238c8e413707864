import Dispatch
import Glibc

extension ObjectStore {
    /// Where the objects of fan-out directories that the store does not
    /// have yet are written: a directory `.tmp-XXXXXXXXXXXX` at the top of
    /// the store, holding `xx/yyyy…` under the objects' final names. A
    /// batch commit makes the data durable, then moves each `xx` into the
    /// store with one rename (`RENAME_NOREPLACE`; where another run made
    /// that fan-out directory meanwhile, object by object), instead of a
    /// temporary file and a link per object: a new store (the first image,
    /// the first layer) fills at about the cost of extracting the files.
    ///
    /// Nothing under an area is visible in the store's namespace before
    /// its commit, so the rule "a name only for durable data" holds. The
    /// area carries a shared `flock` while its run lives; one that can be
    /// locked exclusively was left by a run that died and is removed (by
    /// the next writer, or by `composefs-store gc`).
    ///
    /// One area per batch: a commit takes the current one, and objects
    /// staged meanwhile go to a new one. `writers` counts the files being
    /// written into an area; the commit waits for them, so the directories
    /// it moves hold complete objects only.
    final class StagingArea: @unchecked Sendable {
        let name: FilePath
        let fd: FileDescriptor
        /// The fan-out directories made in the area.
        private let fanOuts = Locked<Set<UInt8>>([])
        let writers = DispatchGroup()

        private init(name: FilePath, fd: FileDescriptor) {
            self.name = name
            self.fd = fd
        }

        deinit { try? fd.close() }

        /// A new area in `store`, locked as this run's.
        static func make(in store: ObjectStore) throws(Error) -> StagingArea {
            let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
            for _ in 0..<100 {
                let name = FilePath(bytes: ObjectStore.temporaryPrefix + (0..<12).map { _ in letters.randomElement()! })
                do { try store.directory.makeDirectory(name, mode: 0o700) } catch where error == .fileExists {
                    continue
                } catch {
                    throw .store(path: store.path, operation: .creatingTemporary, errno: error)
                }
                let fd: FileDescriptor
                do {
                    fd = try .open(name, .readOnly, options: [.directory, .noFollow], relativeTo: store.directory)
                    try fd.lock(exclusive: false)
                } catch {
                    throw .store(path: store.path.appending(name.bytes), operation: .creatingTemporary, errno: error)
                }
                // A writer that opened the store just now may have taken it
                // for abandoned before the lock: then it is gone, try again.
                if let mine = try? fd.stat(), let there = try? store.directory.stat(name),
                   mine.st_ino == there.st_ino && mine.st_dev == there.st_dev {
                    return StagingArea(name: name, fd: fd)
                }
                try? fd.close()
            }
            throw .store(path: store.path, operation: .creatingTemporary, errno: .fileExists)
        }

        /// Makes the fan-out directory `first` in the area, if needed.
        func makeFanOut(_ first: UInt8, store: ObjectStore) throws(Error) {
            try fanOuts.withLock { made throws(Error) in
                guard !made.contains(first) else { return }
                let hex = ObjectStore.fanOutName(first)
                do throws(Errno) { try fd.makeDirectory(hex, mode: 0o755) } catch where error != .fileExists {
                    throw .store(path: shown(hex.bytes, in: store), operation: .creating, errno: error)
                } catch {}
                made.insert(first)
            }
        }

        /// Where `relative` (`xx` or `xx/yyyy…` in the area) is, for messages.
        func shown(_ relative: [UInt8], in store: ObjectStore) -> FilePath {
            store.path.appending(name.bytes + [UInt8(ascii: "/")] + relative)
        }

        /// Removes what is left of the area (best effort; a run that fails
        /// to leaves it to the next writer or collection).
        func remove(from store: ObjectStore) {
            for first in fanOuts.withLock({ $0 }) { Self.empty(ObjectStore.fanOutName(first), in: fd) }
            try? store.directory.unlink(name, directory: true)
        }

        /// Unlinks the files in directory `name` of `parent`, then the
        /// directory itself.
        static func empty(_ name: FilePath, in parent: FileDescriptor) {
            guard let dir = try? FileDescriptor.open(name, .readOnly, options: [.directory, .noFollow], relativeTo: parent) else {
                try? parent.unlink(name)   // not a directory (or gone)
                return
            }
            defer { try? dir.close() }
            for n in (try? ObjectStore.entries(of: dir, at: name)) ?? [] { try? dir.unlink(FilePath(bytes: n)) }
            try? parent.unlink(name, directory: true)
        }
    }

    /// `xx`, the name of the fan-out directory for digests starting with `first`.
    static func fanOutName(_ first: UInt8) -> FilePath {
        FilePath(bytes: Array([first].hexString.utf8))
    }

    /// Whether a writer's temporary `name` (a file or an area) at the top
    /// of the store was left by a run that died (no live writer holds its
    /// lock); if so it is removed. Nothing is followed.
    func removeIfAbandoned(_ name: FilePath) -> Bool {
        // Only files and directories are opened (never a device or a FIFO).
        guard let kind = try? directory.stat(name).st_mode & S_IFMT, kind == S_IFREG || kind == S_IFDIR,
              let t = try? FileDescriptor.open(name, .readOnly, options: [.noFollow, .nonBlocking], relativeTo: directory) else { return false }
        defer { try? t.close() }
        guard (try? t.lock(exclusive: true, wait: false)) != nil, let st = try? t.stat() else { return false }
        if (st.st_mode & S_IFMT) != S_IFDIR { return (try? directory.unlink(name)) != nil }
        // An area: fan-out directories of objects.
        for n in (try? Self.entries(of: t, at: name)) ?? [] { StagingArea.empty(FilePath(bytes: n), in: t) }
        return (try? directory.unlink(name, directory: true)) != nil
    }

    /// Where new objects of fan-out directory `first` go.
    enum Placement { case store, area }

    /// The store's fan-out directory `first` exists: objects go to
    /// anonymous files linked into it. It does not: to a staging area
    /// (until a commit moves the area's `first` in).
    func placement(_ first: UInt8) throws(Error) -> Placement {
        guard isWritable else { throw .store(path: path, operation: .writing, errno: .badFileDescriptor) }
        let known = fanOuts.withLock { s -> Placement? in
            if s.present.contains(first) { return .store }
            if s.absent.contains(first) { return .area }
            return nil
        }
        if let known { return known }
        let name = Self.fanOutName(first)
        let where_: Placement
        do throws(Errno) {
            // Objects are never written through a symbolic link or into
            // something else that holds the name.
            guard (try directory.stat(name).st_mode & S_IFMT) == S_IFDIR else { throw Errno.notDirectory }
            where_ = .store
        } catch where error == .noSuchFileOrDirectory {
            where_ = .area
        } catch {
            throw .store(path: path.appending(name.bytes), operation: .checking, errno: error)
        }
        fanOuts.withLock { s in
            if where_ == .store { s.present.insert(first) } else { s.absent.insert(first) }
            return ()
        }
        return where_
    }

    /// A new file for the object `name` (`xx/yyyy…`) in the current area,
    /// counted as a writer of it until it is staged or discarded.
    func createInArea(_ name: [UInt8], fanOut first: UInt8) throws(Error) -> Staged {
        try asWriter(of: first) { area throws(Error) in
            let fd: FileDescriptor
            do throws(Errno) { fd = try .open(FilePath(bytes: name), .readWrite, options: [.create, .exclusiveCreate], permissions: 0o644, relativeTo: area.fd) } catch {
                throw .store(path: area.shown(name, in: self), operation: .creatingTemporary, errno: error)
            }
            return Staged(fd: fd, name: FilePath(bytes: name), tempName: nil, needsMode: Self.umaskStripsObjectMode, area: area)
        }
    }

    /// Gives a complete anonymous (or store-level temporary) file the name
    /// `name` in the current area, where its fan-out directory belongs
    /// there; it is then an area file like the others (on failure it is
    /// dropped).
    func moveToArea(_ s: Staged, as name: [UInt8], fanOut first: UInt8) throws(Error) -> Staged {
        do {
            return try asWriter(of: first) { area throws(Error) in
                let target = FilePath(bytes: name)
                do throws(Errno) {
                    if let t = s.tempName { try directory.rename(t, to: target, in: area.fd) } else { try s.fd.link(as: target, in: area.fd) }
                } catch {
                    throw .store(path: area.shown(name, in: self), operation: .linking, errno: error)
                }
                return Staged(fd: s.fd, name: target, tempName: nil, needsMode: s.needsMode, area: area)
            }
        } catch {
            discard(s)
            throw error
        }
    }

    /// Runs `body` as a new writer of the current area, with its fan-out
    /// directory `first` made; the writer stays counted only if `body`
    /// returns (its file is then the caller's to stage or discard).
    private func asWriter(of first: UInt8, _ body: (StagingArea) throws(Error) -> Staged) throws(Error) -> Staged {
        let area = try currentArea(entering: true)
        do throws(Error) {
            try area.makeFanOut(first, store: self)
            return try body(area)
        } catch {
            area.writers.leave()
            throw error
        }
    }

    /// The area new objects go to (made on first use); with `entering`,
    /// counted as one more writer of it.
    private func currentArea(entering: Bool) throws(Error) -> StagingArea {
        try areaState.withLock { current throws(Error) in
            let area: StagingArea
            if let current { area = current } else { area = try StagingArea.make(in: self) }
            current = area
            if entering { area.writers.enter() }
            return area
        }
    }

    /// Takes the current area for a commit: later objects go to a new one.
    /// Returns once every file being written into it is staged or dropped.
    func takeArea() -> StagingArea? {
        let area = areaState.withLock { current -> StagingArea? in
            defer { current = nil }
            return current
        }
        area?.writers.wait()
        return area
    }

    /// Publishes a committed area's objects (their data already durable):
    /// each fan-out directory moves into the store whole, or, where the
    /// store has one by now, object by object. `objects` are the area's
    /// staged objects (`xx/yyyy…`). Whatever is left of the area goes.
    func publish(_ area: StagingArea, objects: [FilePath]) throws(Error) {
        defer { area.remove(from: self) }
        var byFanOut: [UInt8: [FilePath]] = [:]
        for o in objects {
            guard let id = ObjectID(path: o.bytes) else { continue }
            byFanOut[id.digest[0], default: []].append(o)
        }
        for (first, names) in byFanOut.sorted(by: { $0.key < $1.key }) {
            let hex = Self.fanOutName(first)
            let moved: Bool
            do throws(Errno) {
                try area.fd.renameNoReplace(hex, to: hex, in: directory)
                moved = true
            } catch where error == .fileExists || error == .directoryNotEmpty || error == .invalidArgument {
                moved = false   // made meanwhile by another run, or no RENAME_NOREPLACE here
            } catch {
                throw .store(path: path.appending(hex.bytes), operation: .linking, errno: error)
            }
            if !moved {
                do throws(Errno) { try directory.makeDirectory(hex, mode: 0o755) } catch where error != .fileExists {
                    throw .store(path: path.appending(hex.bytes), operation: .creating, errno: error)
                } catch {}
            }
            fanOuts.withLock { s in
                s.absent.remove(first)
                s.present.insert(first)
                if moved { s.made.insert(first) }
            }
            guard !moved else { continue }
            for name in names {
                do throws(Errno) { try area.fd.link(name, to: name, in: directory) } catch where error == .fileExists {
                    _ = try contains(name.bytes)   // another writer's: it must be the object
                } catch {
                    throw .store(path: path.appending(name.bytes), operation: .linking, errno: error)
                }
            }
        }
    }
}

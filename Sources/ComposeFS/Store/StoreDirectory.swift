import Glibc
import Synchronization

/// The object store on disk: its directory, and every operation on the
/// names in it. Names change only here, and only in these ways:
///
/// - An object's name (`xx/yyyy…`) is made only for a complete file whose
///   data is durable (the caller syncs first), by a link or a rename that
///   never replaces: when the name exists, the file already there wins
///   and must be a regular file.
/// - A fan-out directory that a writer's staging area filled moves in
///   whole, and never over one that exists (`RENAME_NOREPLACE`).
/// - An object's name is removed (`removeObject`) or moved aside
///   (`moveObjectAside`) only by maintenance under the store's exclusive
///   lock.
/// - Names starting `.tmp-` belong to writers: anonymous-file fallbacks
///   and staging areas, each under a shared `flock` while its writer
///   lives; one that can be locked exclusively was left by a dead writer
///   and may be removed (`removeIfAbandoned`).
///
/// Nothing is followed: a symbolic link where a fan-out directory or an
/// object belongs is an error, never written through.
final class StoreDirectory: @unchecked Sendable {
    typealias Error = ObjectStore.Error

    /// Where the store is, for messages.
    let path: FilePath
    private let fd: FileDescriptor
    /// What the store's filesystem turned out not to do.
    private let tmpfileWorks = Atomic<Bool>(true)
    private let copyFileRangeWorks = Atomic<Bool>(true)
    private let verityMayWork = Atomic<Bool>(true)

    /// Opens the directory at `path`: `writable` for adding objects and
    /// maintenance, else (`O_PATH`) only to look objects up.
    init(_ path: FilePath, writable: Bool) throws(Error) {
        self.path = path
        do { fd = try .open(path, .readOnly, options: writable ? [.directory] : [.path, .directory]) } catch {
            throw .store(path: path, operation: .opening, errno: error)
        }
    }

    deinit { try? fd.close() }

    static let temporaryPrefix = Array(".tmp-".utf8)
    static let damagedSuffix = Array(".damaged".utf8)

    /// `xx`, the name of the fan-out directory for digests starting with `first`.
    static func fanOutName(_ first: UInt8) -> FilePath {
        FilePath(bytes: Array([first].hexString.utf8))
    }

    /// `.tmp-` and 12 random letters and digits.
    static func temporaryName() -> FilePath {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        return FilePath(bytes: temporaryPrefix + (0..<12).map { _ in letters.randomElement()! })
    }

    func shown(_ relative: [UInt8]) -> FilePath { path.appending(relative) }

    // MARK: Looking

    /// Whether the object `name` (`xx/yyyy…`) is present. Something else
    /// under that name (a directory, a symlink) is an error, never taken
    /// for the object.
    func containsObject(_ name: [UInt8]) throws(Error) -> Bool {
        let st: stat
        do { st = try fd.stat(FilePath(bytes: name)) } catch {
            guard error == .noSuchFileOrDirectory else { throw .store(path: shown(name), operation: .checking, errno: error) }
            return false
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notAnObject(path: shown(name)) }
        return true
    }

    /// Whether the fan-out directory `first` exists; anything else under
    /// its name is an error.
    func hasFanOut(_ first: UInt8) throws(Error) -> Bool {
        let name = Self.fanOutName(first)
        do throws(Errno) {
            guard (try fd.stat(name).st_mode & S_IFMT) == S_IFDIR else { throw Errno.notDirectory }
            return true
        } catch let error where error == .noSuchFileOrDirectory {
            return false
        } catch {
            throw .store(path: shown(name.bytes), operation: .checking, errno: error)
        }
    }

    /// The names in the store's top directory, or in the directory
    /// `relative` (a fan-out directory) when given; never followed.
    func entries(in relative: FilePath? = nil) throws(Error) -> [[UInt8]] {
        do {
            let dir = try FileDescriptor.open(relative ?? ".", .readOnly, options: [.directory, .noFollow], relativeTo: fd)
            return try Self.entries(of: dir)
        } catch {
            throw .store(path: relative.map { shown($0.bytes) } ?? path, operation: .reading, errno: error)
        }
    }

    /// The names in the directory `dir`, which is closed.
    static func entries(of dir: FileDescriptor) throws(Errno) -> [[UInt8]] {
        var stream = try DirectoryStream(dir)
        var out: [[UInt8]] = []
        while let name = try stream.next() { out.append(Array(name)) }
        return out
    }

    /// The status of `relative` in the store, not followed; nil when it
    /// cannot be had.
    func status(_ relative: FilePath) -> stat? { try? fd.stat(relative) }

    /// The object `id`, open for reading.
    func openObject(_ id: ObjectID) throws(Errno) -> FileDescriptor {
        try .open(FilePath(bytes: id.path), .readOnly, options: [.noFollow], relativeTo: fd)
    }

    // MARK: New objects

    /// Whether the process's umask takes bits off 0644 (from
    /// /proc/self/status; umask(2) cannot be read without changing it).
    static let umaskStripsObjectMode: Bool = {
        guard let status = try? FileDescriptor.open("/proc/self/status", .readOnly) else { return true }
        defer { try? status.close() }
        var text = [UInt8](repeating: 0, count: 4096)
        let n =
            (try? withMutableBytes(&text) { (b: UnsafeMutableRawBufferPointer) throws(Errno) in try status.readAll(into: b, at: 0) }) ?? 0
        let key = Array("\nUmask:\t".utf8)
        guard n > 0, let at = text[..<n].firstRange(of: key) else { return true }
        var mask: UInt32 = 0
        for c in text[at.upperBound..<n] {
            guard (0x30...0x37).contains(c) else { break }
            mask = mask << 3 | UInt32(c - 0x30)
        }
        return mask & 0o644 != 0
    }()

    /// An anonymous file for a new object (`O_TMPFILE`): in its fan-out
    /// directory when that is known (the filesystem then spreads the
    /// objects' inodes as it spread the directories), else in the store
    /// directory. Where the filesystem has no anonymous files, a named
    /// `.tmp-*` file under a shared lock.
    func createObjectFile(fanOut: UInt8?) throws(Error) -> ObjectStore.Staged {
        if tmpfileWorks.load(ordering: .relaxed) {
            let at = fanOut.map(Self.fanOutName) ?? "."
            do {
                let t = try FileDescriptor.open(at, .readWrite, options: [.temporaryFile], permissions: 0o644, relativeTo: fd)
                return ObjectStore.Staged(fd: t, name: "", tempName: nil, needsMode: Self.umaskStripsObjectMode)
            } catch {
                guard
                    error == .notSupported || error == .isDirectory || error == .invalidArgument
                        || error == .noSuchFileOrDirectory
                else {
                    throw .store(path: path, operation: .creatingTemporary, errno: error)
                }
                tmpfileWorks.store(false, ordering: .relaxed)
            }
        }
        for _ in 0..<100 {
            let name = Self.temporaryName()
            do {
                let t = try FileDescriptor.open(name, .readWrite, options: [.create, .exclusiveCreate], permissions: 0o600, relativeTo: fd)
                try? t.lock(exclusive: false)   // held (shared) until the file is renamed or removed
                // A writer may have taken it for abandoned before the lock.
                guard isStill(name, t) else {
                    try? t.close()
                    continue
                }
                return ObjectStore.Staged(fd: t, name: "", tempName: name)
            } catch let error where error == .fileExists {
                continue
            } catch {
                throw .store(path: path, operation: .creatingTemporary, errno: error)
            }
        }
        throw .store(path: path, operation: .creatingTemporary, errno: .fileExists)
    }

    /// Gives a complete new object mode 0644 (where its creation did not)
    /// and, where the kernel and filesystem do it, fs-verity (best effort:
    /// once they say they cannot, later objects skip the attempt).
    func finishObject(_ staged: inout ObjectStore.Staged) throws(Error) {
        if staged.needsMode {
            do { try staged.fd.changeMode(0o644) } catch { throw .store(path: path, operation: .changingMode, errno: error) }
        }
        guard verityMayWork.load(ordering: .relaxed) else { return }
        // fs-verity needs a read-only descriptor and no writer; the
        // writable one is kept if reopening fails.
        guard let ro = try? FileDescriptor.open(staged.fd.procPath, .readOnly) else { return }
        try? ro.lock(exclusive: false)   // keeps a named temporary file claimed across the reopen
        try? staged.fd.close()
        staged.fd = ro
        let e = FsVerity.enable(fd: ro)
        if e == .inappropriateIOCTLForDevice || e == .notSupported { verityMayWork.store(false, ordering: .relaxed) }
    }

    /// Drops a new object that will not be named.
    func discard(_ staged: ObjectStore.Staged) {
        if let t = staged.tempName { try? fd.unlink(t) }
        try? staged.fd.close()
    }

    /// Copies `size` bytes of `source` into `object`: a reflink, else
    /// `copy_file_range`, else read and write (from where the latter
    /// stopped).
    func copy(
        from source: FileDescriptor, to object: FileDescriptor, size: UInt64, sourcePath: FilePath,
        scratch: UnsafeMutableRawBufferPointer
    ) throws(Error) {
        if (try? object.cloneContents(of: source)) != nil { return }
        var done: UInt64 = 0
        do { try source.seek(to: 0) } catch { throw .copy(source: sourcePath, errno: error) }
        if copyFileRangeWorks.load(ordering: .relaxed) {
            while done < size {
                do {
                    let n = try object.copyRange(from: source, length: Int(min(size - done, 1 << 30)))
                    if n == 0 { break }   // source shorter than expected: the check finds it
                    done += UInt64(n)
                } catch {
                    if error == .noFunction || error == .improperLink { copyFileRangeWorks.store(false, ordering: .relaxed) }
                    if [.noFunction, .improperLink, .notSupported, .notPermitted, .invalidArgument, .badFileDescriptor].contains(error) {
                        break
                    }
                    throw .copy(source: sourcePath, errno: error)
                }
            }
            if done >= size { return }
        }
        do throws(Errno) {
            try source.seek(to: Int(done))
            try object.seek(to: Int(done))
        } catch {
            throw .copy(source: sourcePath, errno: error)
        }
        while true {
            let n: Int
            do { n = try source.read(into: scratch) } catch { throw .copy(source: sourcePath, errno: error) }
            if n == 0 { return }
            do { try object.writeAll(UnsafeRawBufferPointer(rebasing: scratch[0..<n])) } catch {
                throw .store(path: path, operation: .writing, errno: error)
            }
        }
    }

    // MARK: Naming

    /// Makes every file's data durable (`syncfs`): before names appear,
    /// and after, for the names.
    func syncFilesystem() throws(Error) {
        do { try fd.syncFilesystem() } catch { throw .store(path: path, operation: .syncing, errno: error) }
    }

    /// Names a staged object (its data durable): the anonymous file is
    /// linked, a named temporary renamed. A name that exists wins; it
    /// must be the object (a regular file).
    func name(_ staged: ObjectStore.Staged) throws(Error) {
        do throws(Errno) {
            if let t = staged.tempName {
                try fd.rename(t, to: staged.name, in: fd)
            } else {
                try staged.fd.link(as: staged.name, in: fd)
            }
        } catch {
            guard error == .fileExists else {
                throw .store(path: shown(staged.name.bytes), operation: .linking, errno: error)
            }
            _ = try containsObject(staged.name.bytes)
        }
    }

    /// Moves a staging area's fan-out directory `first` in whole; false
    /// when the store has one by now (or the filesystem cannot promise not
    /// to replace it): its objects must then be named one by one
    /// (`makeFanOut`, `name(_:from:)`).
    func moveFanOutIn(_ first: UInt8, from area: FileDescriptor) throws(Error) -> Bool {
        let hex = Self.fanOutName(first)
        do throws(Errno) {
            try area.renameNoReplace(hex, to: hex, in: fd)
            return true
        } catch let error where error == .fileExists || error == .directoryNotEmpty || error == .invalidArgument {
            return false
        } catch {
            throw .store(path: shown(hex.bytes), operation: .linking, errno: error)
        }
    }

    /// Makes the fan-out directory `first` unless it exists.
    func makeFanOut(_ first: UInt8) throws(Error) {
        let hex = Self.fanOutName(first)
        do throws(Errno) { try fd.makeDirectory(hex, mode: 0o755) } catch let error where error != .fileExists {
            throw .store(path: shown(hex.bytes), operation: .creating, errno: error)
        } catch {}
    }

    /// Names the object `name` (`xx/yyyy…`, durable) of a staging area
    /// by a link; a name that exists wins and must be the object.
    func name(_ name: FilePath, from area: FileDescriptor) throws(Error) {
        do throws(Errno) { try area.link(name, to: name, in: fd) } catch let error where error == .fileExists {
            _ = try containsObject(name.bytes)
        } catch {
            throw .store(path: shown(name.bytes), operation: .linking, errno: error)
        }
    }

    /// Renames this writer's temporary file `temporary` to `name` in a
    /// staging area (outside the store's namespace).
    func moveTemporary(_ temporary: FilePath, to name: FilePath, in area: FileDescriptor) throws(Errno) {
        try fd.rename(temporary, to: name, in: area)
    }

    /// A new staging directory (`.tmp-*`, mode 0700), locked shared as
    /// this writer's: its name and descriptor.
    func makeStagingDirectory() throws(Error) -> (FilePath, FileDescriptor) {
        for _ in 0..<100 {
            let name = Self.temporaryName()
            do { try fd.makeDirectory(name, mode: 0o700) } catch let error where error == .fileExists {
                continue
            } catch {
                throw .store(path: path, operation: .creatingTemporary, errno: error)
            }
            let area: FileDescriptor
            do {
                area = try .open(name, .readOnly, options: [.directory, .noFollow], relativeTo: fd)
                try area.lock(exclusive: false)
            } catch let error where error == .noSuchFileOrDirectory {
                continue   // taken for abandoned and removed before it was opened: try again
            } catch {
                throw .store(path: shown(name.bytes), operation: .creatingTemporary, errno: error)
            }
            // A writer that opened the store just now may have taken it for
            // abandoned before the lock: then it is gone, try again.
            if isStill(name, area) { return (name, area) }
            try? area.close()
        }
        throw .store(path: path, operation: .creatingTemporary, errno: .fileExists)
    }

    /// Whether `name` is still the file open as `t` (a temporary this
    /// writer made and then locked: not removed as abandoned meanwhile).
    private func isStill(_ name: FilePath, _ t: FileDescriptor) -> Bool {
        guard let mine = try? t.stat(), let there = try? fd.stat(name) else { return false }
        return mine.st_ino == there.st_ino && mine.st_dev == there.st_dev
    }

    /// Removes what is left of a staging directory: its fan-out directories
    /// `fanOuts` and their files, then itself (best effort: a run that
    /// fails to leaves it to the next writer or collection).
    func removeStagingDirectory(_ name: FilePath, _ area: FileDescriptor, fanOuts: some Sequence<UInt8>) {
        for first in fanOuts { Self.empty(Self.fanOutName(first), in: area) }
        try? fd.unlink(name, directory: true)
    }

    /// Unlinks the files in directory `name` of `parent`, then the
    /// directory itself.
    private static func empty(_ name: FilePath, in parent: FileDescriptor) {
        guard let dir = try? FileDescriptor.open(name, .readOnly, options: [.directory, .noFollow], relativeTo: parent) else {
            try? parent.unlink(name)   // not a directory (or gone)
            return
        }
        defer { try? dir.close() }
        guard let names = try? FileDescriptor.open(".", .readOnly, options: [.directory], relativeTo: dir),
            let all = try? entries(of: names)
        else { return }
        for n in all { try? dir.unlink(FilePath(bytes: n)) }
        try? parent.unlink(name, directory: true)
    }

    // MARK: Removing (maintenance, under the exclusive lock)

    /// Whether a writer's temporary `name` (a file or a staging area) at
    /// the top of the store was left by a writer that died (no live one
    /// holds its lock); if so it is removed. Only files and directories
    /// are opened (never a device or a FIFO).
    func removeIfAbandoned(_ name: FilePath) -> Bool {
        guard let kind = try? fd.stat(name).st_mode & S_IFMT, kind == S_IFREG || kind == S_IFDIR,
            let t = try? FileDescriptor.open(name, .readOnly, options: [.noFollow, .nonBlocking], relativeTo: fd)
        else { return false }
        defer { try? t.close() }
        guard (try? t.lock(exclusive: true, wait: false)) != nil, let st = try? t.stat() else { return false }
        if (st.st_mode & S_IFMT) != S_IFDIR { return (try? fd.unlink(name)) != nil }
        // A staging area: fan-out directories of objects.
        guard let names = try? FileDescriptor.open(".", .readOnly, options: [.directory], relativeTo: t),
            let all = try? Self.entries(of: names)
        else { return false }
        for n in all { Self.empty(FilePath(bytes: n), in: t) }
        return (try? fd.unlink(name, directory: true)) != nil
    }

    /// Removes the object `id`; its size (0 when it was gone already).
    func removeObject(_ id: ObjectID) throws(Error) -> UInt64 {
        let name = FilePath(bytes: id.path)
        let size = status(name).map { UInt64($0.st_size) } ?? 0
        do { try fd.unlink(name) } catch let error where error != .noSuchFileOrDirectory {
            throw .store(path: shown(id.path), operation: .removing, errno: error)
        } catch {}
        return size
    }

    /// Renames the object `id` to `xx/yyyy….damaged` (`.damaged.2`, … when
    /// taken): out of the objects' names, kept, and inside its fan-out
    /// directory, which every image hides. The new name, relative to the
    /// store.
    func moveObjectAside(_ id: ObjectID) throws(Error) -> FilePath {
        let from = FilePath(bytes: id.path)
        var n = 1
        var aside = FilePath(bytes: id.path + Self.damagedSuffix)
        while status(aside) != nil {
            n += 1
            aside = FilePath(bytes: id.path + Self.damagedSuffix + Array(".\(n)".utf8))
        }
        do { try fd.rename(from, to: aside, in: fd) } catch {
            throw .store(path: shown(id.path), operation: .moving, errno: error)
        }
        return aside
    }
}

import Glibc

/// An object's name: the 32-byte fs-verity digest its path spells
/// (`xx/yyyy…`, lowercase hex).
public struct ObjectID: Hashable, Sendable, Comparable, CustomStringConvertible {
    let words: (UInt64, UInt64, UInt64, UInt64)

    public init?(digest: [UInt8]) {
        guard digest.count == 32 else { return nil }
        var w: [UInt64] = [0, 0, 0, 0]
        for (i, b) in digest.enumerated() { w[i / 8] = w[i / 8] << 8 | UInt64(b) }
        words = (w[0], w[1], w[2], w[3])
    }

    /// From an object path (`xx/yyyy…`, a leading `/` allowed, as in a
    /// redirect): nil when it is not one.
    public init?(path: some Collection<UInt8>) {
        var hex = Array(path)
        if hex.first == UInt8(ascii: "/") { hex.removeFirst() }
        guard hex.count == 65, hex[2] == UInt8(ascii: "/") else { return nil }
        hex.remove(at: 2)
        self.init(hex: hex)
    }

    /// From 64 lowercase hex digits.
    init?(hex: [UInt8]) {
        guard hex.count == 64 else { return nil }
        var digest = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let h = Self.lowerHex(hex[2 * i]), let l = Self.lowerHex(hex[2 * i + 1]) else { return nil }
            digest[i] = h << 4 | l
        }
        self.init(digest: digest)
    }

    static func lowerHex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    public var digest: [UInt8] {
        [words.0, words.1, words.2, words.3].flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> (56 - 8 * $0)) } }
    }

    /// `xx/yyyy…`
    public var path: [UInt8] { FsVerity.objectPath(digest) }
    public var description: String { String(decoding: path, as: UTF8.self) }

    public static func == (a: ObjectID, b: ObjectID) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public static func < (a: ObjectID, b: ObjectID) -> Bool {
        (a.words.0, a.words.1, a.words.2, a.words.3) < (b.words.0, b.words.1, b.words.2, b.words.3)
    }

    public func hash(into hasher: inout Hasher) {
        // The words are a cryptographic digest: one is spread enough.
        hasher.combine(words.0)
    }
}

extension ObjectStore {
    /// What a store holds, as found by `contents()`.
    public struct Contents: Sendable {
        public struct Object: Sendable {
            public var id: ObjectID
            /// Bytes (0 when sizes were not asked for).
            public var size: UInt64
        }

        public var objects: [Object] = []
        /// Temporary files of writers (`.tmp-*`), live or abandoned.
        public var temporaries: [FilePath] = []
        /// Objects that a check found bad and moved aside
        /// (`xx/yyyy….damaged`, see `StoreMaintenance.check`).
        public var damaged: [FilePath] = []
        /// Everything that is neither an object, a fan-out directory, a
        /// moved-aside object nor a temporary file (relative to the store):
        /// reported, never touched.
        public var foreign: [FilePath] = []
    }

    /// Lists the store: the 256 possible fan-out directories and what they
    /// hold. Nothing is followed: a symlink anywhere is foreign.
    public func contents(sizes: Bool = false) throws(Error) -> Contents {
        var out = Contents()
        var top = try Self.entries(of: directory, at: path)
        top.sort { compareBytes($0, $1) < 0 }
        for e in top {
            let name = FilePath(bytes: e)
            if hasPrefix(e, Self.temporaryPrefix) { out.temporaries.append(name); continue }
            guard e.count == 2, ObjectID.lowerHex(e[0]) != nil, ObjectID.lowerHex(e[1]) != nil,
                  (try? directory.stat(name)).map({ ($0.st_mode & S_IFMT) == S_IFDIR }) == true else {
                out.foreign.append(name)
                continue
            }
            let fan: FileDescriptor
            do { fan = try .open(name, .readOnly, options: [.directory, .noFollow], relativeTo: directory) } catch {
                throw .store(path: path.appending(e), operation: .reading, errno: error)
            }
            defer { try? fan.close() }
            for o in try Self.entries(of: fan, at: path.appending(e)).sorted(by: { compareBytes($0, $1) < 0 }) {
                let rel = FilePath(bytes: e + [UInt8(ascii: "/")] + o)
                if Self.isDamagedName(o) {
                    out.damaged.append(rel)
                    continue
                }
                guard let id = ObjectID(hex: e + o), let st = try? fan.stat(FilePath(bytes: o)),
                      (st.st_mode & S_IFMT) == S_IFREG else {
                    out.foreign.append(rel)
                    continue
                }
                out.objects.append(Contents.Object(id: id, size: sizes ? UInt64(st.st_size) : 0))
            }
        }
        return out
    }

    static let temporaryPrefix = Array(".tmp-".utf8)
    static let damagedSuffix = Array(".damaged".utf8)

    /// `yyyy….damaged` or `yyyy….damaged.N` (62 hex digits), inside a
    /// fan-out directory.
    static func isDamagedName(_ name: [UInt8]) -> Bool {
        guard name.count >= 62 + damagedSuffix.count,
              name[..<62].allSatisfy({ ObjectID.lowerHex($0) != nil }),
              name[62..<(62 + damagedSuffix.count)].elementsEqual(damagedSuffix) else { return false }
        let rest = name[(62 + damagedSuffix.count)...]
        return rest.isEmpty || (rest.count > 1 && rest.first == UInt8(ascii: ".")
            && rest.dropFirst().allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
    }

    /// The names in a directory, read through a descriptor of its own
    /// (`dir` may be an O_PATH one, and keeps its position).
    static func entries(of dir: FileDescriptor, at shown: FilePath) throws(Error) -> [[UInt8]] {
        var stream: DirectoryStream
        do { stream = try DirectoryStream(try .open(".", .readOnly, options: [.directory], relativeTo: dir)) } catch {
            throw .store(path: shown, operation: .reading, errno: error)
        }
        var out: [[UInt8]] = []
        while true {
            let next: UnsafeBufferPointer<UInt8>?
            do { next = try stream.next() } catch { throw .store(path: shown, operation: .reading, errno: error) }
            guard let name = next else { return out }
            out.append(Array(name))
        }
    }
}

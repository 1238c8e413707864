import Glibc

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
        for e in try directory.entries().sorted(by: { compareBytes($0, $1) < 0 }) {
            let name = FilePath(bytes: e)
            if hasPrefix(e, StoreDirectory.temporaryPrefix) {
                out.temporaries.append(name)
                continue
            }
            guard e.count == 2, ObjectID.lowerHex(e[0]) != nil, ObjectID.lowerHex(e[1]) != nil,
                directory.status(name).map({ ($0.st_mode & S_IFMT) == S_IFDIR }) == true
            else {
                out.foreign.append(name)
                continue
            }
            for o in try directory.entries(in: name).sorted(by: { compareBytes($0, $1) < 0 }) {
                let rel = FilePath(bytes: e + [UInt8(ascii: "/")] + o)
                if Self.isDamagedName(o) {
                    out.damaged.append(rel)
                    continue
                }
                guard let id = ObjectID(hex: e + o), let st = directory.status(rel), (st.st_mode & S_IFMT) == S_IFREG else {
                    out.foreign.append(rel)
                    continue
                }
                out.objects.append(Contents.Object(id: id, size: sizes ? UInt64(st.st_size) : 0))
            }
        }
        return out
    }

    /// `yyyy….damaged` or `yyyy….damaged.N` (62 hex digits), inside a
    /// fan-out directory.
    static func isDamagedName(_ name: [UInt8]) -> Bool {
        let suffix = StoreDirectory.damagedSuffix
        guard name.count >= 62 + suffix.count,
            name[..<62].allSatisfy({ ObjectID.lowerHex($0) != nil }),
            name[62..<(62 + suffix.count)].elementsEqual(suffix)
        else { return false }
        let rest = name[(62 + suffix.count)...]
        return rest.isEmpty
            || (rest.count > 1 && rest.first == UInt8(ascii: ".")
                && rest.dropFirst().allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
    }
}

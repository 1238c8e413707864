extension ComposefsFileSystem {
    /// The `-o` options of composefs-fuse (upstream's `source=` and
    /// `basedir=`, libfuse's generic ones, and this project's `digest=` and
    /// `verity`), split on `,` where no backslash escapes it.
    public struct MountOptions: Equatable, Sendable {
        public var source: FilePath?
        public var basedirs: [FilePath] = []
        public var digest: [UInt8]?
        public var verity = false
        public var noACL = false
        public var allowOther = false
        public var debug = false
        public var fsname: String?
        /// `busy_poll=USEC`: how long a server thread keeps polling for the
        /// next request before it sleeps (0: never).
        public var busyPoll = Self.defaultBusyPoll

        /// 50 µs: long enough to catch the next request of a program that
        /// walks or reads file after file, short enough that an idle mount
        /// costs nothing.
        public static let defaultBusyPoll: UInt64 = 50

        public init() {}

        public enum Error: Swift.Error, CustomStringConvertible, Equatable {
            case unsupported(String)
            case missingValue(String)
            case badBasedir
            case badDigest(String)
            case badNumber(String, String)
            case readWrite

            public var description: String {
                switch self {
                case .unsupported(let o): "Unsupported option \(o)"
                case .missingValue(let k): "No value specified for \(k) option"
                case .badBasedir: "Value for basedir option has incorrect format"
                case .badDigest(let d): "Invalid digest \(d): must be 64 hex digits"
                case .badNumber(let k, let v): "Invalid value \(v) for \(k) option: must be a number of microseconds up to 1000000"
                case .readWrite: "rw: a composefs mount is always read-only"
                }
            }
        }

        /// Adds the options of one `-o` (later ones win, as with libfuse).
        public mutating func parse(_ bytes: [UInt8]) throws(Error) {
            for raw in Mount.Options.split(bytes) where !raw.isEmpty {
                let eq = raw.firstIndex(of: UInt8(ascii: "="))
                let key = String(decoding: raw[raw.startIndex..<(eq ?? raw.endIndex)], as: UTF8.self)
                let value = eq.map { Mount.Options.unescape(raw[($0 + 1)...]) }
                func required() throws(Error) -> [UInt8] {
                    guard let value, !value.isEmpty else { throw .missingValue(key) }
                    return value
                }
                switch key {
                case "source": source = FilePath(bytes: try required())
                case "basedir":
                    let parts = try required().split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
                    guard !parts.contains(where: \.isEmpty) else { throw .badBasedir }
                    basedirs = parts.map { FilePath(bytes: Array($0)) }
                case "digest":
                    let text = String(decoding: try required(), as: UTF8.self)
                    guard text.utf8.count == 64, let d = Self.hex(text) else { throw .badDigest(text) }
                    digest = d
                    verity = true
                case "verity": verity = true
                case "busy_poll":
                    let text = String(decoding: try required(), as: UTF8.self)
                    guard let n = UInt64(text), n <= 1_000_000 else { throw .badNumber(key, text) }
                    busyPoll = n
                case "noacl": noACL = true
                case "allow_other": allowOther = true
                case "debug": debug = true
                case "fsname": fsname = String(decoding: try required(), as: UTF8.self)
                // Always so, or libfuse's own knobs with no meaning here.
                case "ro", "default_permissions", "auto_unmount", "clone_fd", "max_idle_threads", "subtype": break
                case "rw": throw .readWrite
                default: throw .unsupported(String(decoding: raw, as: UTF8.self))
                }
            }
        }

        static func hex(_ text: String) -> [UInt8]? {
            var out: [UInt8] = []
            var iterator = text.utf8.makeIterator()
            while let a = iterator.next(), let b = iterator.next() {
                guard let h = ObjectID.lowerHex(a | 0x20), let l = ObjectID.lowerHex(b | 0x20) else { return nil }
                out.append(h << 4 | l)
            }
            return out
        }
    }
}

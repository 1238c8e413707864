extension Mount {
    /// What `-o` says (FORMAT.md §20.1).
    public struct Options: Equatable, Sendable {
        /// Object store directories, searched in order (data-only lower layers).
        public var basedirs: [FilePath] = []
        /// Expected fs-verity digest of the image (32 bytes); implies `requireVerity`.
        public var digest: [UInt8]? = nil
        /// Every object must have fs-verity with the digest the image names.
        public var requireVerity = false
        /// Ask overlayfs for verity checks where it can do them.
        public var tryVerity = false
        public var upperdir: FilePath? = nil
        public var workdir: FilePath? = nil
        /// A user namespace file (`/proc/PID/ns/user`) for an idmapped mount.
        public var idmap: FilePath? = nil
        public var readOnly = false
        /// Serve through FUSE even where the kernel route works (`fuse`).
        public var fuse = false
        /// The overlay takes its xattrs from `user.overlay.` (`userxattr`:
        /// an overlay in a user namespace over FUSE).
        public var userXattr = false

        public init() {}

        /// Parses a comma-separated option string. A `\` makes the next
        /// character literal (so values may hold `,`); values are unescaped,
        /// keys are not.
        public static func parse(_ text: String) throws(OptionError) -> Options {
            try parse(bytes: Array(text.utf8))
        }

        /// The option string as bytes (paths in it need not be UTF-8).
        public static func parse(bytes text: [UInt8]) throws(OptionError) -> Options {
            var o = Options()
            var tryVerityAsked = false
            for raw in split(text) where !raw.isEmpty {
                let eq = raw.firstIndex(of: UInt8(ascii: "="))
                let key = String(decoding: raw[..<(eq ?? raw.endIndex)], as: UTF8.self)
                let value = eq.map { unescape(raw[($0 + 1)...]) }
                func required() throws(OptionError) -> [UInt8] {
                    guard let value, !value.isEmpty else { throw .missingValue(key) }
                    return value
                }
                func shown(_ v: [UInt8]) -> String { String(decoding: v, as: UTF8.self) }
                switch key {
                case "basedir":
                    let v = try required()
                    let parts = v.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
                    guard !parts.contains(where: \.isEmpty) else { throw .badBasedir(shown(v)) }
                    o.basedirs = parts.map { FilePath(bytes: Array($0)) }
                case "digest":
                    let v = try required()
                    guard v.count == 64, let d = [UInt8](hexDigits: v) else { throw .badDigest(shown(v)) }
                    o.digest = d
                    o.requireVerity = true
                case "verity": o.requireVerity = true
                case "tryverity": tryVerityAsked = true
                case "noverity": break
                case "fuse": o.fuse = true
                case "upperdir": o.upperdir = FilePath(bytes: try required())
                case "workdir": o.workdir = FilePath(bytes: try required())
                case "idmap": o.idmap = FilePath(bytes: try required())
                case "ro": o.readOnly = true
                case "rw": o.readOnly = false
                default: throw .unsupported(String(decoding: raw, as: UTF8.self))
                }
            }
            o.tryVerity = tryVerityAsked && !o.requireVerity
            guard o.basedirs.isEmpty == false else { throw .noBasedir }
            guard (o.upperdir == nil) == (o.workdir == nil) else { throw .upperWithoutWork }
            return o
        }

        static func split(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
            var out: [ArraySlice<UInt8>] = []
            var start = 0
            var i = 0
            while i < bytes.count {
                if bytes[i] == UInt8(ascii: "\\") {
                    i += 2
                    continue
                }
                if bytes[i] == UInt8(ascii: ",") {
                    out.append(bytes[start..<i])
                    start = i + 1
                }
                i += 1
            }
            out.append(bytes[min(start, bytes.count)...])
            return out
        }

        static func unescape(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var out: [UInt8] = []
            var i = bytes.startIndex
            while i < bytes.endIndex {
                if bytes[i] == UInt8(ascii: "\\"), i + 1 < bytes.endIndex {
                    out.append(bytes[i + 1])
                    i += 2
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            return out
        }
    }

    public enum OptionError: Swift.Error, CustomStringConvertible, Equatable {
        case unsupported(String)
        case missingValue(String)
        case badBasedir(String)
        case badDigest(String)
        case noBasedir
        case upperWithoutWork

        public var description: String {
            switch self {
            case .unsupported(let o): "Unsupported option \(o)"
            case .missingValue(let k): "No value specified for \(k) option"
            case .badBasedir: "Value for basedir option has incorrect format"
            case .badDigest(let d): "Invalid digest \(d): must be 64 hex digits"
            case .noBasedir: "No object dirs specified"
            case .upperWithoutWork: "Both workdir and upperdir must be specified if used"
            }
        }
    }
}

/// The escapes of the composefs-dump(5) format (FORMAT.md §14.2, §17.1).
public enum DumpEscaping {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case unsupportedEscape(UInt8)
        case noCharacterAfterEscape
        case noHexAfterHexEscape
        case invalidHex

        public var description: String {
            switch self {
            case .unsupportedEscape(let c): "Unsupported escape type \(printable(c))"
            case .noCharacterAfterEscape: "No character after escape"
            case .noHexAfterHexEscape: "No hex characters after hex escape"
            case .invalidHex: "Invalid hex characters after hex escape"
            }
        }

        private func printable(_ c: UInt8) -> String {
            (0x21...0x7E).contains(c) ? String(UnicodeScalar(c)) : "\\x" + [c].hexString
        }
    }

    /// Printer modes: which bytes stay raw.
    public struct Mode: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Escape `=` (xattr keys and values).
        public static let escapeEqual = Mode(rawValue: 1)
        /// A value that is exactly `-` prints as `\x2d`.
        public static let escapeLoneDash = Mode(rawValue: 2)
        /// Keep spaces raw (the `ls` listing).
        public static let keepSpace = Mode(rawValue: 4)
    }

    /// Decodes one field. The result may contain NUL bytes; callers that
    /// hold C strings cut it with `cutAtNUL()`.
    public static func unescape(_ field: ArraySlice<UInt8>) throws(Error) -> [UInt8] {
        let backslash = UInt8(ascii: "\\")
        guard field.contains(backslash) else { return Array(field) }
        var out = [UInt8]()
        out.reserveCapacity(field.count)
        var i = field.startIndex
        let end = field.endIndex
        while i < end {
            let c = field[i]
            if c != backslash {
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < end else { throw .noCharacterAfterEscape }
            let e = field[i + 1]
            switch e {
            case backslash: out.append(backslash)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "x"):
                guard end - (i + 2) >= 2 else { throw .noHexAfterHexEscape }
                guard let h = hexValue(field[i + 2]), let l = hexValue(field[i + 3]) else { throw .invalidHex }
                out.append(h << 4 | l)
                i += 4
                continue
            default:
                throw .unsupportedEscape(e)
            }
            i += 2
        }
        return out
    }

    /// Appends `bytes` escaped for printing.
    public static func escape(_ bytes: some Collection<UInt8>, mode: Mode = [], into out: inout [UInt8]) {
        if let done: Void = bytes.withContiguousStorageIfAvailable({ escape(UnsafeRawBufferPointer($0), mode: mode, into: &out) }) {
            return done
        }
        escape(Array(bytes), mode: mode, into: &out)
    }

    /// Runs of bytes that print as they are are copied at once; only the
    /// others are escaped one by one.
    public static func escape(_ bytes: UnsafeRawBufferPointer, mode: Mode = [], into out: inout [UInt8]) {
        if mode.contains(.escapeLoneDash), bytes.count == 1, bytes[0] == UInt8(ascii: "-") {
            out.append(contentsOf: [0x5C, 0x78, 0x32, 0x64])   // \x2d
            return
        }
        let low: UInt8 = mode.contains(.keepSpace) ? 0x20 : 0x21
        let escapeEqual = mode.contains(.escapeEqual)
        @inline(__always) func plain(_ b: UInt8) -> Bool {
            b >= low && b <= 0x7E && b != UInt8(ascii: "\\") && !(escapeEqual && b == UInt8(ascii: "="))
        }
        var i = 0
        let n = bytes.count
        while i < n {
            var j = i
            while j < n && plain(bytes[j]) { j += 1 }
            if j > i { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<j])) }
            guard j < n else { return }
            let b = bytes[j]
            switch b {
            case UInt8(ascii: "\\"):
                out.append(b)
                out.append(b)
            case 0x0A:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "n"))
            case 0x0D:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "r"))
            case 0x09:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "t"))
            case UInt8(ascii: "="):
                out.append(contentsOf: [0x5C, 0x78, 0x33, 0x64])   // \x3d
            default:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "x"))
                out.append(hexDigit(b >> 4))
                out.append(hexDigit(b & 15))
            }
            i = j + 1
        }
    }

    @inline(__always)
    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }

    /// `-` when absent; nothing for a present empty value.
    public static func escapeOptional(_ bytes: [UInt8]?, mode: Mode = [], into out: inout [UInt8]) {
        guard let bytes else {
            out.append(UInt8(ascii: "-"))
            return
        }
        escape(bytes, mode: mode, into: &out)
    }

    public static func escaped(_ bytes: some Collection<UInt8>, mode: Mode = []) -> [UInt8] {
        var out: [UInt8] = []
        escape(bytes, mode: mode, into: &out)
        return out
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}

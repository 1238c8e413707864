/// A strict JSON reader (RFC 8259) for the small documents of container
/// images: index, manifest and config. Strings stay bytes (UTF-8, escapes
/// resolved); numbers keep their text until read as an integer. Hostile
/// input gets an error naming the byte offset, never a trap: nesting is
/// bounded, every index is checked, and a key given twice in one object is
/// an error (readers disagree on which one counts).
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's text as written (`-12`, `3.5e2`).
    case number([UInt8])
    case string([UInt8])
    case array([JSON])
    /// Members in document order.
    case object([(key: [UInt8], value: JSON)])

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case syntax(offset: Int, message: String)
        case tooDeep(offset: Int)

        public var description: String {
            switch self {
            case .syntax(let offset, let message): "invalid JSON at byte \(offset): \(message)"
            case .tooDeep(let offset): "invalid JSON at byte \(offset): nested more than \(JSON.maxDepth) levels"
            }
        }
    }

    public static let maxDepth = 64

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }

    /// Parses one JSON text (surrounding whitespace allowed, nothing else).
    public static func parse(_ bytes: [UInt8]) throws(Error) -> JSON {
        var p = Parser(bytes)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.at == bytes.count else { throw .syntax(offset: p.at, message: "text after the value") }
        return value
    }

    // MARK: Reading values

    /// The member `key` of an object (nil for another kind or no such key).
    public subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        let k = Array(key.utf8)
        return members.first { $0.key == k }?.value
    }

    public var stringBytes: [UInt8]? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The string as text (for messages and comparisons with known names).
    public var string: String? { stringBytes.map { String(decoding: $0, as: UTF8.self) } }

    public var array: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isObject: Bool {
        if case .object = self { return true }
        return false
    }

    /// An integer written without fraction or exponent, in Int64's range.
    public var int64: Int64? {
        guard case .number(let text) = self, !text.isEmpty else { return nil }
        var i = 0
        let negative = text[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        guard i < text.count else { return nil }
        var value: Int64 = 0
        while i < text.count {
            let d = text[i]
            guard d >= 0x30 && d <= 0x39 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(d - 0x30)) : m.addingReportingOverflow(Int64(d - 0x30))
            guard !o1 && !o2 else { return nil }
            value = s
            i += 1
        }
        return value
    }

    // MARK: Parser

    private struct Parser {
        let b: [UInt8]
        var at = 0
        init(_ bytes: [UInt8]) { b = bytes }

        func fail(_ message: String) -> Error { .syntax(offset: at, message: message) }

        mutating func skipSpace() {
            while at < b.count, b[at] == 0x20 || b[at] == 0x09 || b[at] == 0x0A || b[at] == 0x0D { at += 1 }
        }

        mutating func literal(_ word: StaticString, _ value: JSON) throws(Error) -> JSON {
            let w = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            guard at + w.count <= b.count, b[at..<(at + w.count)].elementsEqual(w) else { throw fail("unknown word") }
            at += w.count
            return value
        }

        mutating func value(depth: Int) throws(Error) -> JSON {
            guard depth < JSON.maxDepth else { throw .tooDeep(offset: at) }
            guard at < b.count else { throw fail("a value was expected, the text ended") }
            switch b[at] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw fail("a value was expected")
            }
        }

        mutating func object(depth: Int) throws(Error) -> JSON {
            at += 1
            var members: [(key: [UInt8], value: JSON)] = []
            var keys = Set<[UInt8]>()
            skipSpace()
            if at < b.count && b[at] == UInt8(ascii: "}") {
                at += 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard at < b.count, b[at] == UInt8(ascii: "\"") else { throw fail("a member name was expected") }
                let keyAt = at
                let key = try string()
                guard keys.insert(key).inserted else {
                    throw .syntax(offset: keyAt, message: "the member \"\(String(decoding: key, as: UTF8.self))\" is given twice")
                }
                skipSpace()
                guard at < b.count, b[at] == UInt8(ascii: ":") else { throw fail("':' was expected") }
                at += 1
                skipSpace()
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard at < b.count else { throw fail("the object is not closed") }
                if b[at] == UInt8(ascii: ",") {
                    at += 1
                    continue
                }
                guard b[at] == UInt8(ascii: "}") else { throw fail("',' or '}' was expected") }
                at += 1
                return .object(members)
            }
        }

        mutating func array(depth: Int) throws(Error) -> JSON {
            at += 1
            var items: [JSON] = []
            skipSpace()
            if at < b.count && b[at] == UInt8(ascii: "]") {
                at += 1
                return .array(items)
            }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard at < b.count else { throw fail("the array is not closed") }
                if b[at] == UInt8(ascii: ",") {
                    at += 1
                    continue
                }
                guard b[at] == UInt8(ascii: "]") else { throw fail("',' or ']' was expected") }
                at += 1
                return .array(items)
            }
        }

        mutating func number() throws(Error) -> [UInt8] {
            let start = at
            func digits() -> Int {
                let s = at
                while at < b.count && b[at] >= 0x30 && b[at] <= 0x39 { at += 1 }
                return at - s
            }
            if b[at] == UInt8(ascii: "-") { at += 1 }
            guard at < b.count else { throw fail("a digit was expected") }
            if b[at] == UInt8(ascii: "0") {
                at += 1
            } else {
                guard digits() > 0 else { throw fail("a digit was expected") }
            }
            if at < b.count && b[at] == UInt8(ascii: ".") {
                at += 1
                guard digits() > 0 else { throw fail("a digit was expected after '.'") }
            }
            if at < b.count && (b[at] == UInt8(ascii: "e") || b[at] == UInt8(ascii: "E")) {
                at += 1
                if at < b.count && (b[at] == UInt8(ascii: "+") || b[at] == UInt8(ascii: "-")) { at += 1 }
                guard digits() > 0 else { throw fail("a digit was expected in the exponent") }
            }
            return Array(b[start..<at])
        }

        mutating func hex4() throws(Error) -> UInt32 {
            guard at + 4 <= b.count else { throw fail("\\u needs four hex digits") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[at] | 0x20
                let d: UInt8
                if c >= 0x30 && c <= 0x39 {
                    d = c - 0x30
                } else if c >= 0x61 && c <= 0x66 {
                    d = c - 0x61 + 10
                } else {
                    throw fail("\\u needs four hex digits")
                }
                v = v << 4 | UInt32(d)
                at += 1
            }
            return v
        }

        /// A string's bytes (after the opening quote at `at`): escapes
        /// resolved; raw bytes must be valid UTF-8 and not control characters.
        mutating func string() throws(Error) -> [UInt8] {
            at += 1
            var out: [UInt8] = []
            while true {
                guard at < b.count else { throw fail("the string is not closed") }
                let c = b[at]
                switch c {
                case UInt8(ascii: "\""):
                    at += 1
                    return out
                case UInt8(ascii: "\\"):
                    at += 1
                    guard at < b.count else { throw fail("the string is not closed") }
                    let e = b[at]
                    at += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if scalar >= 0xD800 && scalar < 0xDC00 {
                            guard at + 2 <= b.count, b[at] == UInt8(ascii: "\\"), b[at + 1] == UInt8(ascii: "u") else {
                                throw fail("a lone high surrogate")
                            }
                            at += 2
                            let low = try hex4()
                            guard low >= 0xDC00 && low < 0xE000 else { throw fail("a high surrogate without its low one") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if scalar >= 0xDC00 && scalar < 0xE000 {
                            throw fail("a lone low surrogate")
                        }
                        Self.appendUTF8(scalar, to: &out)
                    default:
                        throw fail("unknown escape")
                    }
                case 0..<0x20:
                    throw fail("a control character in a string")
                case 0x80...:
                    let n = Self.utf8Length(b, at)
                    guard n > 0 else { throw fail("invalid UTF-8") }
                    out.append(contentsOf: b[at..<(at + n)])
                    at += n
                default:
                    out.append(c)
                    at += 1
                }
            }
        }

        /// The length of the well-formed UTF-8 sequence at `i`, or 0.
        static func utf8Length(_ b: [UInt8], _ i: Int) -> Int {
            let c = b[i]
            let n: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: n = 2
            case 0xE0:
                n = 3
                low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: n = 3
            case 0xED:
                n = 3
                high = 0x9F
            case 0xF0:
                n = 4
                low = 0x90
            case 0xF1...0xF3: n = 4
            case 0xF4:
                n = 4
                high = 0x8F
            default: return 0
            }
            guard i + n <= b.count else { return 0 }
            guard b[i + 1] >= low && b[i + 1] <= high else { return 0 }
            for k in 2..<n where b[i + k] < 0x80 || b[i + k] > 0xBF { return 0 }
            return n
        }

        static func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
            switch v {
            case 0..<0x80: out.append(UInt8(v))
            case 0x80..<0x800:
                out.append(UInt8(0xC0 | (v >> 6)))
                out.append(UInt8(0x80 | (v & 0x3F)))
            case 0x800..<0x10000:
                out.append(UInt8(0xE0 | (v >> 12)))
                out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
                out.append(UInt8(0x80 | (v & 0x3F)))
            default:
                out.append(UInt8(0xF0 | (v >> 18)))
                out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
                out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
                out.append(UInt8(0x80 | (v & 0x3F)))
            }
        }
    }
}

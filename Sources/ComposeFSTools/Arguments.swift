import Glibc

/// Command-line parsing with GNU `getopt_long` semantics, as the reference
/// tools use it: options and operands in any order (permutation), `--`
/// ends the options, `-` is an operand, long options as `--name=VALUE` or
/// `--name VALUE` and abbreviated to any unique prefix, short options
/// clustered (`-sfv`, `-oVALUE`). With `POSIXLY_CORRECT` in the
/// environment, options end at the first operand, as with getopt.
struct Arguments {
    /// One option a tool accepts.
    struct Option: Equatable {
        var long: String?
        var short: Character?
        /// The value's name in messages (`PATH`), or nil for a flag.
        var value: String?

        static func flag(_ long: String?, short: Character? = nil) -> Option {
            Option(long: long, short: short, value: nil)
        }

        static func valued(_ long: String?, short: Character? = nil, _ value: String) -> Option {
            Option(long: long, short: short, value: value)
        }

        /// How messages name it: `--digest-store <PATH>` or `-o <OPTIONS>`.
        var display: String {
            let name = long.map { "--" + $0 } ?? short.map { "-\($0)" } ?? "?"
            return value.map { "\(name) <\($0)>" } ?? name
        }
    }

    /// What the command line said: each option given, in order, with its
    /// value; and the operands.
    var given: [(option: Option, value: String?)] = []
    var operands: [String] = []

    /// Whether the flag was given.
    func has(_ option: Option) -> Bool { given.contains { $0.option == option } }

    /// The value of the last occurrence (as getopt loops do), or nil.
    func last(_ option: Option) -> String? { given.last { $0.option == option }?.value }

    /// Every value given for the option, in order.
    func all(_ option: Option) -> [String] { given.compactMap { $0.option == option ? $0.value : nil } }

    /// A command line the tool cannot accept; the message names the option.
    enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case unknown(String)
        case missingValue(Option)
        case unexpectedValue(String, value: String)
        case ambiguous(String, candidates: [String])

        var description: String {
            switch self {
            case .unknown(let o): "Unknown option '\(o)'"
            case .missingValue(let o): "Missing value for '\(o.display)'"
            case let .unexpectedValue(o, v): "The option '\(o)' does not take any value, but '\(v)' was specified."
            case let .ambiguous(o, c): "Option '\(o)' is ambiguous; possibilities: \(c.map { "'--\($0)'" }.joined(separator: " "))"
            }
        }
    }

    init(_ arguments: [String], options: [Option],
         permute: Bool = getenv("POSIXLY_CORRECT") == nil) throws(Error) {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "--" {
                operands.append(contentsOf: rest)
                return
            }
            let bytes = Array(argument.utf8)
            guard bytes.count >= 2, bytes[0] == UInt8(ascii: "-") else {
                operands.append(argument)
                if !permute {
                    operands.append(contentsOf: rest)
                    return
                }
                continue
            }
            if bytes[1] == UInt8(ascii: "-") {
                try parseLong(bytes[2...], options: options, rest: &rest)
            } else {
                try parseShort(bytes[1...], options: options, rest: &rest)
            }
        }
    }

    /// `--name`, `--name=VALUE`, `--name VALUE`; a unique prefix of a name
    /// counts as the name.
    private mutating func parseLong(_ text: ArraySlice<UInt8>, options: [Option],
                                    rest: inout ArraySlice<String>) throws(Error) {
        let eq = text.firstIndex(of: UInt8(ascii: "="))
        let name = String(decoding: text[..<(eq ?? text.endIndex)], as: UTF8.self)
        let inline = eq.map { String(decoding: text[($0 + 1)...], as: UTF8.self) }
        let spelled = "--" + name
        let option: Option
        if let exact = options.first(where: { $0.long == name }) {
            option = exact
        } else {
            let candidates = name.isEmpty ? [] : options.filter { $0.long?.hasPrefix(name) ?? false }
            guard let first = candidates.first else { throw .unknown(spelled) }
            guard candidates.count == 1 else { throw .ambiguous(spelled, candidates: candidates.compactMap(\.long)) }
            option = first
        }
        if option.value == nil {
            if let inline { throw .unexpectedValue("--" + option.long!, value: inline) }
            given.append((option, nil))
        } else if let inline {
            given.append((option, inline))
        } else if let next = rest.popFirst() {
            given.append((option, next))
        } else {
            throw .missingValue(option)
        }
    }

    /// `-a`, `-abc` (flags together), `-oVALUE`, `-o VALUE`.
    private mutating func parseShort(_ text: ArraySlice<UInt8>, options: [Option],
                                     rest: inout ArraySlice<String>) throws(Error) {
        let characters = Array(String(decoding: text, as: UTF8.self))
        var i = 0
        while i < characters.count {
            let c = characters[i]
            guard let option = options.first(where: { $0.short == c }) else { throw .unknown("-\(c)") }
            i += 1
            if option.value == nil {
                given.append((option, nil))
                continue
            }
            if i < characters.count {
                given.append((option, String(characters[i...])))
            } else if let next = rest.popFirst() {
                given.append((option, next))
            } else {
                throw .missingValue(option)
            }
            return
        }
    }
}

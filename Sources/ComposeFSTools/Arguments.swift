import ComposeFS

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
    /// value; and the operands. Bytes, as the kernel passed them: paths
    /// need not be UTF-8.
    var given: [(option: Option, value: [UInt8]?)] = []
    var operands: [[UInt8]] = []

    /// Whether the flag was given.
    func has(_ option: Option) -> Bool { given.contains { $0.option == option } }

    /// The value of the last occurrence (as getopt loops do), or nil.
    func last(_ option: Option) -> [UInt8]? { given.last { $0.option == option }?.value ?? nil }

    /// The last value as text (numbers, names).
    func lastText(_ option: Option) -> String? { last(option).map { String(decoding: $0, as: UTF8.self) } }

    /// Every value given for the option, in order.
    func all(_ option: Option) -> [[UInt8]] { given.compactMap { $0.option == option ? $0.value : nil } }

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
            case .unexpectedValue(let o, let v): "The option '\(o)' does not take any value, but '\(v)' was specified."
            case .ambiguous(let o, let c): "Option '\(o)' is ambiguous; possibilities: \(c.map { "'--\($0)'" }.joined(separator: " "))"
            }
        }
    }

    init(
        _ arguments: [String], options: [Option],
        permute: Bool = CurrentProcess.environment("POSIXLY_CORRECT") == nil
    ) throws(Error) {
        try self.init(bytes: arguments.map { Array($0.utf8) }, options: options, permute: permute)
    }

    init(
        bytes arguments: [[UInt8]], options: [Option],
        permute: Bool = CurrentProcess.environment("POSIXLY_CORRECT") == nil
    ) throws(Error) {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == [0x2D, 0x2D] {   // --
                operands.append(contentsOf: rest)
                return
            }
            guard argument.count >= 2, argument[0] == UInt8(ascii: "-") else {
                operands.append(argument)
                if !permute {
                    operands.append(contentsOf: rest)
                    return
                }
                continue
            }
            if argument[1] == UInt8(ascii: "-") {
                try parseLong(argument[2...], options: options, rest: &rest)
            } else {
                try parseShort(argument[1...], options: options, rest: &rest)
            }
        }
    }

    /// `--name`, `--name=VALUE`, `--name VALUE`; a unique prefix of a name
    /// counts as the name.
    private mutating func parseLong(
        _ text: ArraySlice<UInt8>, options: [Option],
        rest: inout ArraySlice<[UInt8]>
    ) throws(Error) {
        let eq = text.firstIndex(of: UInt8(ascii: "="))
        let name = String(decoding: text[..<(eq ?? text.endIndex)], as: UTF8.self)
        let inline = eq.map { Array(text[($0 + 1)...]) }
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
            if let inline { throw .unexpectedValue("--" + option.long!, value: String(decoding: inline, as: UTF8.self)) }
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
    private mutating func parseShort(
        _ text: ArraySlice<UInt8>, options: [Option],
        rest: inout ArraySlice<[UInt8]>
    ) throws(Error) {
        var i = text.startIndex
        while i < text.endIndex {
            let c = Character(Unicode.Scalar(text[i]))
            guard text[i] < 0x80, let option = options.first(where: { $0.short == c }) else {
                throw .unknown("-" + String(decoding: text[i...].prefix(1), as: UTF8.self))
            }
            i += 1
            if option.value == nil {
                given.append((option, nil))
                continue
            }
            if i < text.endIndex {
                given.append((option, Array(text[i...])))
            } else if let next = rest.popFirst() {
                given.append((option, next))
            } else {
                throw .missingValue(option)
            }
            return
        }
    }
}

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

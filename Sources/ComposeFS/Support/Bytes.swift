import Glibc

/// Byte strings are the currency of this library: names, xattr keys and
/// values, payloads and contents are never `String`s, because file names
/// are arbitrary bytes and the format orders them as unsigned bytes.
public typealias Bytes = [UInt8]

extension Array where Element == UInt8 {
    /// Lexicographic order of unsigned bytes, a proper prefix first
    /// (C `strcmp`/`memcmp` order). Swift's `String` order is not this.
    @inlinable
    public static func byteOrderLess(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        compareBytes(a, b) < 0
    }

    /// The first `count` bytes up to (not including) the first NUL, as C
    /// string handling in the reference does.
    @inlinable
    public func cutAtNUL() -> [UInt8] {
        if let i = firstIndex(of: 0) { return Array(self[..<i]) }
        return self
    }

    /// Lowercase hexadecimal.
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes exactly `2 * n` hex digits (either case); nil on anything else.
    public init?(hexDigits text: some Collection<UInt8>) {
        guard text.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(text.count / 2)
        var high: UInt8? = nil
        for c in text {
            guard let v = hexValue(c) else { return nil }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        self = out
    }
}

/// memcmp order with the shorter prefix first: <0, 0, >0.
@inlinable
public func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    let n = Swift.min(a.count, b.count)
    let c: Int32 = a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n)
        }
    }
    if c != 0 { return Int(c) }
    return a.count - b.count
}

/// Whether `a` starts with `prefix` (bytes).
@inlinable
func hasPrefix(_ a: [UInt8], _ prefix: [UInt8]) -> Bool {
    guard a.count >= prefix.count else { return false }
    guard !prefix.isEmpty else { return true }
    return a.withUnsafeBufferPointer { pa in
        prefix.withUnsafeBufferPointer { pp in memcmp(pa.baseAddress!, pp.baseAddress!, pp.count) == 0 }
    }
}

@inlinable
func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Round `x` up to a multiple of the power of two `a`.
@inlinable
func roundUp(_ x: Int, _ a: Int) -> Int { (x + a - 1) & ~(a - 1) }

extension String {
    /// A byte string shown to a person (invalid UTF-8 repaired).
    init(bytes: [UInt8]) { self = String(decoding: bytes, as: UTF8.self) }
}

extension Array where Element == UInt8 {
    var nilIfEmpty: [UInt8]? { isEmpty ? nil : self }
}

/// A file's xattrs with the reference's size accounting (FORMAT.md §16):
/// adding costs `7 + len(key) + len(value)`, plus 12 for the first one;
/// the total must stay within a limit (32767 for input, 65535 on load).
public struct XattrList: Equatable, Sendable {
    public private(set) var entries: [Xattr] = []
    /// Running size in bytes that the limit applies to.
    public private(set) var budget: Int = 0

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }

    public func value(for key: [UInt8]) -> [UInt8]? {
        entries.first { $0.key == key }?.value
    }

    public mutating func set(_ key: [UInt8], _ value: [UInt8], limit: Int) throws(Node.Error) {
        guard !key.isEmpty, key.count <= Node.maxXattrKeyLength else { throw .xattrKeyLength(key: key) }
        guard value.count <= Node.maxXattrValueLength else {
            throw .xattrValueTooLarge(key: key, size: value.count)
        }
        let existing = entries.firstIndex { $0.key == key }
        var total = budget
        var remaining = entries.count
        if let i = existing {
            remaining -= 1
            total = remaining == 0 ? 0 : total - (7 + key.count + entries[i].value.count)
        }
        total += 7 + key.count + value.count + (remaining == 0 ? 12 : 0)
        guard total <= limit else { throw .xattrBudget(key: key, total: total, limit: limit) }
        if let i = existing {
            entries[i].value = value
        } else {
            entries.append(Xattr(key: key, value: value))
        }
        budget = total
    }

    @discardableResult
    public mutating func remove(_ key: [UInt8]) -> Bool {
        guard let i = entries.firstIndex(where: { $0.key == key }) else { return false }
        let old = entries.remove(at: i)
        budget = entries.isEmpty ? 0 : budget - (7 + old.key.count + old.value.count)
        return true
    }

    /// Renames keys in place (budget unchanged), for overlay escaping.
    mutating func mapKeys(_ transform: ([UInt8]) -> [UInt8]) {
        for i in entries.indices { entries[i].key = transform(entries[i].key) }
    }

    mutating func sortByKey() {
        entries.sort { [UInt8].byteOrderLess($0.key, $1.key) }
    }
}

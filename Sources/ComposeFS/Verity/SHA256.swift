import CCrypto

/// A streaming SHA-256 (libcrypto): what OCI names blobs and layers by.
public final class SHA256 {
    private var context = SHA256_CTX()
    /// Bytes hashed so far.
    public private(set) var count: UInt64 = 0

    public init() { SHA256_Init(&context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        SHA256_Update(&context, bytes.baseAddress, bytes.count)
        count += UInt64(bytes.count)
    }

    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest (32 bytes); the hasher is used up.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { _ = SHA256_Final($0.baseAddress, &context) }
        return out
    }

    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        let h = SHA256()
        h.update(bytes)
        return h.finalize()
    }
}

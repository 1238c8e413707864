import CCrypto
import Glibc

/// fs-verity file digests: SHA-256 Merkle tree over 4096-byte blocks, no
/// salt, then SHA-256 of the 256-byte descriptor (FORMAT.md §13). The same
/// value the kernel reports for a verity-enabled file.
public enum FsVerity {
    public static let blockSize = 4096
    public static let digestSize = 32
    static let hashesPerBlock = blockSize / digestSize

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case io(path: FilePath, errno: Errno)

        public var description: String {
            switch self {
            case .io(let path, let e): "\(path): \(e)"
            }
        }
    }

    /// Digest of an in-memory byte string.
    public static func digest(_ data: [UInt8]) -> [UInt8] {
        let h = Hasher()
        data.withUnsafeBufferPointer { h.update(UnsafeRawBufferPointer($0)) }
        return h.finalize()
    }

    /// Digest of a file's contents read from `fd` starting at offset 0.
    public static func digest(fd: FileDescriptor, path: FilePath = "") throws(Error) -> [UInt8] {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        return try digest(fd: fd, path: path, buffer: buf)
    }

    /// Digest of `fd` read through a caller's scratch buffer (reused across
    /// files by the parallel scanners).
    public static func digest(
        fd: FileDescriptor, path: FilePath = "", buffer buf: UnsafeMutableRawBufferPointer,
        hasher: Hasher = Hasher()
    ) throws(Error) -> [UInt8] {
        try digestAndLength(fd: fd, path: path, buffer: buf, hasher: hasher).digest
    }

    /// The digest of what `fd` holds now, and how many bytes that was (a
    /// file may change after it was listed).
    public static func digestAndLength(
        fd: FileDescriptor, path: FilePath = "", buffer buf: UnsafeMutableRawBufferPointer,
        hasher: Hasher = Hasher()
    ) throws(Error) -> (digest: [UInt8], length: UInt64) {
        let h = hasher
        h.reset()
        var offset = 0
        while true {
            let n: Int
            do { n = try fd.read(into: buf, at: offset) } catch { throw .io(path: path, errno: error) }
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
            offset += n
        }
        return (h.finalize(), UInt64(offset))
    }

    /// Digest of the file at `path`.
    public static func digest(path: FilePath) throws(Error) -> [UInt8] {
        let fd: FileDescriptor
        do { fd = try .open(path, .readOnly) } catch { throw .io(path: path, errno: error) }
        defer { try? fd.close() }
        return try digest(fd: fd, path: path)
    }

    /// `ab/cdef…`: the object path of a digest (2 + 1 + 62 characters).
    public static func objectPath(_ digest: [UInt8]) -> [UInt8] {
        let hex = Array(digest.hexString.utf8)
        return Array(hex[0..<2]) + [UInt8(ascii: "/")] + Array(hex[2...])
    }

    /// SHA-256 through libcrypto's low-level interface: it goes straight to
    /// the (SHA-NI accelerated) implementation, without the provider and
    /// configuration loading the one-shot and EVP interfaces start with.
    static func sha256(_ p: UnsafeRawPointer?, _ n: Int, _ out: UnsafeMutablePointer<UInt8>) {
        var ctx = SHA256_CTX()
        SHA256_Init(&ctx)
        SHA256_Update(&ctx, p, n)
        SHA256_Final(out, &ctx)
    }

    /// Streaming Merkle tree. Memory: one 4096-byte block per tree level,
    /// no allocation per block.
    public final class Hasher {
        /// Levels of the tree: level 0 is the partial data block, level i
        /// the pending digests of level i (hashed as soon as a block fills).
        static let maxLevels = 12
        private let blocks: UnsafeMutableRawPointer
        private var fill = [Int](repeating: 0, count: Hasher.maxLevels)
        /// Digests produced at each level (index ≥ 1).
        private var produced = [Int](repeating: 0, count: Hasher.maxLevels)
        private var top = 0
        private var total: UInt64 = 0

        public init() {
            blocks = UnsafeMutableRawPointer.allocate(byteCount: Hasher.maxLevels * FsVerity.blockSize, alignment: 16)
        }

        /// Starts over, keeping the buffers (one hasher can digest many files).
        public func reset() {
            for i in 0..<Hasher.maxLevels {
                fill[i] = 0
                produced[i] = 0
            }
            top = 0
            total = 0
        }

        deinit { blocks.deallocate() }

        private func block(_ level: Int) -> UnsafeMutableRawPointer { blocks + level * FsVerity.blockSize }

        public func update(_ data: UnsafeRawBufferPointer) {
            guard var p = data.baseAddress else { return }
            var n = data.count
            total += UInt64(n)
            let bs = FsVerity.blockSize
            if fill[0] > 0 {
                let take = Swift.min(n, bs - fill[0])
                (block(0) + fill[0]).copyMemory(from: p, byteCount: take)
                fill[0] += take
                p += take
                n -= take
                if fill[0] == bs {
                    fill[0] = 0
                    hash(block(0), into: 1)
                }
            }
            while n >= bs {
                hash(p, into: 1)
                p += bs
                n -= bs
            }
            if n > 0 {
                block(0).copyMemory(from: p, byteCount: n)
                fill[0] = n
            }
        }

        public func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { update($0) }
        }

        /// `count` zero bytes (a hole of a sparse file).
        public func updateZeros(_ count: UInt64) {
            var left = count
            Hasher.zeros.withUnsafeBytes { z in
                while left > 0 {
                    let n = Int(Swift.min(left, UInt64(z.count)))
                    update(UnsafeRawBufferPointer(rebasing: z[0..<n]))
                    left -= UInt64(n)
                }
            }
        }

        private static let zeros = [UInt8](repeating: 0, count: 1 << 16)

        /// SHA-256 of one 4096-byte block, appended to `level`.
        private func hash(_ data: UnsafeRawPointer, into level: Int) {
            precondition(level < Hasher.maxLevels)
            if level > top { top = level }
            let dest = block(level) + fill[level]
            FsVerity.sha256(data, FsVerity.blockSize, dest.assumingMemoryBound(to: UInt8.self))
            fill[level] += FsVerity.digestSize
            produced[level] += 1
            if fill[level] == FsVerity.blockSize {
                fill[level] = 0
                hash(block(level), into: level + 1)
            }
        }

        /// A data block's hash computed elsewhere (SHA-256 of the block,
        /// zero-padded when it is the last, partial one), standing for
        /// `dataBytes` bytes of data: the tree above it is built as
        /// `update` would build it. Not to be mixed with `update`.
        func appendLeaf(_ leaf: UnsafeRawPointer, dataBytes: Int) {
            precondition(fill[0] == 0, "appendLeaf after a partial update")
            total += UInt64(dataBytes)
            if top < 1 { top = 1 }
            (block(1) + fill[1]).copyMemory(from: leaf, byteCount: FsVerity.digestSize)
            fill[1] += FsVerity.digestSize
            produced[1] += 1
            if fill[1] == FsVerity.blockSize {
                fill[1] = 0
                hash(block(1), into: 2)
            }
        }

        /// Zero-pads and hashes a partial block of `level`.
        private func flush(_ level: Int) {
            guard fill[level] > 0 else { return }
            (block(level) + fill[level]).initializeMemory(
                as: UInt8.self, repeating: 0,
                count: FsVerity.blockSize - fill[level])
            fill[level] = 0
            hash(block(level), into: level + 1)
        }

        /// The fs-verity digest of everything passed to `update`.
        public func finalize() -> [UInt8] {
            var root = [UInt8](repeating: 0, count: FsVerity.digestSize)
            if total > 0 {
                flush(0)
                var level = 1
                while !(produced[level] == 1 && level == top) {
                    flush(level)
                    level += 1
                }
                root = Array(UnsafeRawBufferPointer(start: block(level), count: FsVerity.digestSize))
            }
            var desc = ByteWriter(capacity: 256)
            desc.u8(1)   // 0: version
            desc.u8(1)   // 1: hash algorithm SHA-256
            desc.u8(12)   // 2: log2 block size
            desc.u8(0)   // 3: salt size
            desc.u32(0)   // 4: reserved (signature size)
            desc.u64(total)   // 8: data size
            desc.append(root)   // 16: root hash (64 bytes)
            desc.zeros(32)
            desc.zeros(32)   // 80: salt
            desc.zeros(144)   // 112: reserved
            var out = [UInt8](repeating: 0, count: FsVerity.digestSize)
            let d = desc.finish()
            d.withUnsafeBytes { b in
                out.withUnsafeMutableBufferPointer { FsVerity.sha256(b.baseAddress, b.count, $0.baseAddress!) }
            }
            return out
        }
    }
}

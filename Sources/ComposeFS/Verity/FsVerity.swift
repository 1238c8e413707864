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
        case io(path: String, errno: Int32)

        public var description: String {
            switch self {
            case let .io(path, e): "\(path): \(errnoDescription(e))"
            }
        }
    }

    /// Digest of an in-memory byte string.
    public static func digest(_ data: [UInt8]) -> [UInt8] {
        var h = Hasher()
        data.withUnsafeBufferPointer { h.update(UnsafeRawBufferPointer($0)) }
        return h.finalize()
    }

    /// Digest of a file's contents read from `fd` starting at offset 0.
    public static func digest(fd: Int32, path: String = "") throws(Error) -> [UInt8] {
        var h = Hasher()
        let chunk = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buf.deallocate() }
        var offset: off_t = 0
        while true {
            let n = pread(fd, buf.baseAddress, chunk, offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, errno: errno)
            }
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
            offset += off_t(n)
        }
        return h.finalize()
    }

    /// Digest of the file at `path`.
    public static func digest(path: String) throws(Error) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, errno: errno) }
        defer { close(fd) }
        return try digest(fd: fd, path: path)
    }

    /// `ab/cdef…`: the object path of a digest (2 + 1 + 62 characters).
    public static func objectPath(_ digest: [UInt8]) -> [UInt8] {
        let hex = Array(digest.hexString.utf8)
        return Array(hex[0..<2]) + [UInt8(ascii: "/")] + Array(hex[2...])
    }

    static func sha256(_ p: UnsafeRawPointer?, _ n: Int, _ out: UnsafeMutablePointer<UInt8>) {
        _ = SHA256(p?.assumingMemoryBound(to: UInt8.self), n, out)
    }

    /// Streaming Merkle tree. Memory: one pending block per tree level.
    public struct Hasher {
        /// levels[0] holds the partial data block; levels[i>0] the pending
        /// digests of level i (each < 4096 bytes once full blocks are hashed).
        private var levels: [[UInt8]] = [[]]
        /// Number of digests produced at each level i ≥ 1 (index i).
        private var counts: [Int] = [0]
        private var total: UInt64 = 0

        public init() {}

        public mutating func update(_ data: UnsafeRawBufferPointer) {
            guard var p = data.baseAddress else { return }
            var n = data.count
            total += UInt64(n)
            let bs = FsVerity.blockSize
            if !levels[0].isEmpty {
                let take = Swift.min(n, bs - levels[0].count)
                levels[0].append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
                p += take
                n -= take
                if levels[0].count == bs {
                    let block = levels[0]
                    levels[0].removeAll(keepingCapacity: true)
                    block.withUnsafeBytes { hashBlock($0.baseAddress!, level: 0) }
                }
            }
            while n >= bs {
                hashBlock(p, level: 0)
                p += bs
                n -= bs
            }
            if n > 0 { levels[0].append(contentsOf: UnsafeRawBufferPointer(start: p, count: n)) }
        }

        public mutating func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { update($0) }
        }

        /// Hashes one full 4096-byte block of level `level` into level + 1.
        private mutating func hashBlock(_ block: UnsafeRawPointer, level: Int) {
            var d = [UInt8](repeating: 0, count: FsVerity.digestSize)
            d.withUnsafeMutableBufferPointer { FsVerity.sha256(block, FsVerity.blockSize, $0.baseAddress!) }
            push(d, level: level + 1)
        }

        private mutating func push(_ digest: [UInt8], level: Int) {
            if levels.count <= level { levels.append([]); counts.append(0) }
            counts[level] += 1
            levels[level].append(contentsOf: digest)
            if levels[level].count == FsVerity.blockSize {
                let block = levels[level]
                levels[level].removeAll(keepingCapacity: true)
                block.withUnsafeBytes { hashBlock($0.baseAddress!, level: level) }
            }
        }

        private mutating func flush(level: Int) {
            guard !levels[level].isEmpty else { return }
            var block = levels[level]
            levels[level].removeAll()
            block.append(contentsOf: repeatElement(0, count: FsVerity.blockSize - block.count))
            block.withUnsafeBytes { hashBlock($0.baseAddress!, level: level) }
        }

        public mutating func finalize() -> [UInt8] {
            var root = [UInt8](repeating: 0, count: FsVerity.digestSize)
            if total > 0 {
                flush(level: 0)
                var level = 1
                while true {
                    if counts[level] == 1 && level == levels.count - 1 {
                        root = levels[level]
                        break
                    }
                    flush(level: level)
                    level += 1
                }
            }
            var desc = ByteWriter(capacity: 256)
            desc.u8(1)                 // 0: version
            desc.u8(1)                 // 1: hash algorithm SHA-256
            desc.u8(12)                // 2: log2 block size
            desc.u8(0)                 // 3: salt size
            desc.u32(0)                // 4: reserved (signature size)
            desc.u64(total)            // 8: data size
            desc.append(root)          // 16: root hash (64 bytes)
            desc.zeros(32)
            desc.zeros(32)             // 80: salt
            desc.zeros(144)            // 112: reserved
            var out = [UInt8](repeating: 0, count: FsVerity.digestSize)
            let d = desc.finish()
            d.withUnsafeBytes { b in
                out.withUnsafeMutableBufferPointer { FsVerity.sha256(b.baseAddress, b.count, $0.baseAddress!) }
            }
            return out
        }
    }
}

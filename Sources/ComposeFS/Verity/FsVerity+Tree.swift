import Synchronization

extension FsVerity {
    /// The data-block hashes of one file's fs-verity Merkle tree, built
    /// once from its contents and checked against the digest it must have;
    /// afterwards every block read from the file is hashed again and
    /// compared with them. What serves verified bytes where the file's
    /// filesystem has no fs-verity: a file changed or replaced after the
    /// check gives a mismatch, never its bytes.
    public final class Tree: Sendable {
        public let size: UInt64
        /// One SHA-256 per 4096-byte block of data.
        private let leaves: [UInt8]

        public enum Failure: Swift.Error, Equatable, Sendable {
            case read(Errno)
            /// The contents' digest is not the expected one.
            case digest(actual: [UInt8])
        }

        private init(size: UInt64, leaves: [UInt8]) {
            self.size = size
            self.leaves = leaves
        }

        /// Reads all of `fd` and builds its tree; its digest must be `expected`.
        public static func build(fd: FileDescriptor, expected: [UInt8], buffer: UnsafeMutableRawBufferPointer) throws(Failure) -> Tree {
            precondition(buffer.count >= blockSize && buffer.count % blockSize == 0)
            var leaves: [UInt8] = []
            let hasher = Hasher()
            var offset = 0
            var leaf = [UInt8](repeating: 0, count: digestSize)
            while true {
                var n = 0
                // Fill the buffer (a short read in the middle must not make a partial block).
                while n < buffer.count {
                    let got: Int
                    do { got = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[n...]), at: offset + n) } catch {
                        throw .read(error)
                    }
                    if got == 0 { break }
                    n += got
                }
                if n == 0 { break }
                var p = 0
                while p < n {
                    let count = min(blockSize, n - p)
                    hashBlock(UnsafeRawBufferPointer(rebasing: buffer[p..<(p + count)]), into: &leaf)
                    leaves += leaf
                    leaf.withUnsafeBytes { hasher.appendLeaf($0.baseAddress!, dataBytes: count) }
                    p += count
                }
                offset += n
                if n < buffer.count { break }
            }
            let actual = hasher.finalize()
            guard actual == expected else { throw .digest(actual: actual) }
            return Tree(size: UInt64(offset), leaves: leaves)
        }

        /// SHA-256 of a block, zero-padded to 4096 bytes when shorter.
        static func hashBlock(_ data: UnsafeRawBufferPointer, into out: inout [UInt8]) {
            if data.count == blockSize {
                out.withUnsafeMutableBufferPointer { sha256(data.baseAddress, blockSize, $0.baseAddress!) }
                return
            }
            withUnsafeTemporaryAllocation(byteCount: blockSize, alignment: 16) { padded in
                padded.initializeMemory(as: UInt8.self, repeating: 0)
                if let b = data.baseAddress { padded.baseAddress!.copyMemory(from: b, byteCount: data.count) }
                out.withUnsafeMutableBufferPointer { sha256(padded.baseAddress, blockSize, $0.baseAddress!) }
            }
        }

        /// Whether `data`, read at the block-aligned `offset`, is what the
        /// tree says (its length too: the file's end must be where it was).
        public func verify(_ data: UnsafeRawBufferPointer, at offset: UInt64) -> Bool {
            guard offset % UInt64(blockSize) == 0, offset <= size else { return false }
            let expectedLength = Int(min(UInt64(data.count), size - offset))
            guard data.count == expectedLength else { return false }
            var leaf = [UInt8](repeating: 0, count: digestSize)
            var p = 0
            var index = Int(offset / UInt64(blockSize))
            while p < data.count {
                let count = min(blockSize, data.count - p)
                // A block that is not the file's last must be whole.
                if count < blockSize && offset + UInt64(p + count) != size { return false }
                Self.hashBlock(UnsafeRawBufferPointer(rebasing: data[p..<(p + count)]), into: &leaf)
                guard (index + 1) * digestSize <= leaves.count,
                    leaves[(index * digestSize)..<((index + 1) * digestSize)].elementsEqual(leaf)
                else { return false }
                p += count
                index += 1
            }
            return true
        }
    }
}

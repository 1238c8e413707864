import CFSVerity
import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// fs-verity digests (FORMAT.md §13), checked against fsverity-utils'
/// libfsverity as an independent implementation.
@Suite struct FsVerityTests {
    /// The data libfsverity's read callback consumes.
    final class Source {
        let data: [UInt8]
        var offset = 0
        init(_ data: [UInt8]) { self.data = data }
    }

    /// libfsverity_compute_digest over `data` (SHA-256, 4096-byte blocks, no salt).
    static func libfsverityDigest(_ data: [UInt8]) throws -> [UInt8] {
        let source = Source(data)
        var params = libfsverity_merkle_tree_params()
        params.version = 1
        params.hash_algorithm = UInt32(FS_VERITY_HASH_ALG_SHA256)
        params.file_size = UInt64(data.count)
        params.block_size = 4096
        var result: UnsafeMutablePointer<libfsverity_digest>?
        let status = withExtendedLifetime(source) {
            libfsverity_compute_digest(
                Unmanaged.passUnretained(source).toOpaque(),
                { fd, buf, count in
                    let s = Unmanaged<Source>.fromOpaque(fd!).takeUnretainedValue()
                    guard count <= s.data.count - s.offset else { return -EIO }
                    s.data.withUnsafeBytes { bytes in
                        buf!.copyMemory(from: bytes.baseAddress! + s.offset, byteCount: count)
                    }
                    s.offset += count
                    return 0
                }, &params, &result)
        }
        try #require(status == 0, "libfsverity_compute_digest failed: \(status)")
        let digest = try #require(result)
        defer { free(digest) }
        #expect(digest.pointee.digest_algorithm == UInt16(FS_VERITY_HASH_ALG_SHA256))
        let size = Int(digest.pointee.digest_size)
        try #require(size == 32)
        // The digest bytes follow the two 16-bit fields (a flexible array member).
        let bytes = UnsafeRawPointer(digest) + 4
        return Array(UnsafeRawBufferPointer(start: bytes, count: size))
    }

    // MARK: Check values

    @Test func pinnedDigests() {
        #expect(FsVerity.digest(b("hello world\n")).hexString == "37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92")
        #expect(FsVerity.digest(b("foo bar baz\n")).hexString == "91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b")
        // Empty input: all-zero root hash, as the kernel and fsverity-utils.
        #expect(FsVerity.digest([]).hexString == "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95")
    }

    @Test func pinnedDigestsAgreeWithLibfsverity() throws {
        #expect(
            try Self.libfsverityDigest(b("hello world\n")).hexString == "37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92")
        #expect(try Self.libfsverityDigest([]).hexString == "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95")
    }

    /// The descriptor of §13 step 5 built by hand for a one-block input,
    /// hashed with the test suite's own SHA-256.
    @Test func descriptorByHand() {
        let data = b("foo bar baz\n")
        let block = data + [UInt8](repeating: 0, count: 4096 - data.count)
        var descriptor: [UInt8] = [1, 1, 12, 0, 0, 0, 0, 0]
        for k in 0..<8 { descriptor.append(UInt8(truncatingIfNeeded: UInt64(data.count) >> (8 * UInt64(k)))) }
        descriptor += SHA256Reference.hash(block) + [UInt8](repeating: 0, count: 32)
        descriptor += [UInt8](repeating: 0, count: 256 - descriptor.count)
        #expect(descriptor.count == 256)
        #expect(SHA256Reference.hash(descriptor) == FsVerity.digest(data))
    }

    // MARK: Against libfsverity

    @Test(arguments: [0, 1, 4095, 4096, 4097, 8192, 128 * 4096, 128 * 4096 + 1, 129 * 4096, (1 << 20) + 1])
    func matchesLibfsverity(size: Int) throws {
        let data = pseudoRandomBytes(size, seed: UInt64(size) &+ 17)
        #expect(FsVerity.digest(data) == (try Self.libfsverityDigest(data)), "size \(size)")
    }

    /// More than 128 × 128 blocks: a three-level tree.
    @Test func threeLevelTree() throws {
        let size = 128 * 128 * 4096 + 4097
        var data = [UInt8](repeating: 0, count: size)
        // Cheap but position-dependent contents.
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count { words[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 }
        }
        #expect(FsVerity.digest(data) == (try Self.libfsverityDigest(data)))
    }

    // MARK: Streaming and files

    @Test func streamingInOddChunksEqualsOneShot() {
        let data = pseudoRandomBytes((1 << 20) + 1, seed: 99)
        let expected = FsVerity.digest(data)
        for chunks in [[1, 7, 4095, 4097, 13, 100_000], [4096], [3], [65537, 1], [4095]] {
            let h = FsVerity.Hasher()
            var offset = 0
            var k = 0
            while offset < data.count {
                let n = min(chunks[k % chunks.count], data.count - offset)
                h.update(Array(data[offset..<(offset + n)]))
                offset += n
                k += 1
            }
            #expect(h.finalize() == expected, "chunks \(chunks)")
        }
        let empty = FsVerity.Hasher()
        empty.update([])
        #expect(empty.finalize() == FsVerity.digest([]))
    }

    @Test func digestOfAFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        for (name, size) in [("empty", 0), ("small", 12), ("big", 3 * 4096 + 5), ("large", (1 << 20) + 4097)] {
            let data = pseudoRandomBytes(size, seed: UInt64(size))
            let path = try dir.write(name, data)
            #expect(try FsVerity.digest(path: path) == FsVerity.digest(data), "\(name)")
            let fd = open(path, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            #expect(try FsVerity.digest(fd: fd, path: path) == FsVerity.digest(data))
            // A fresh file has no fs-verity (whatever the kernel or filesystem
            // supports): the measurement falls back to userspace.
            let measured = try FsVerity.measure(fd: fd, path: path)
            if case .digest = measured { Issue.record("a new file cannot have fs-verity enabled") }
            #expect(try FsVerity.measureOrCompute(fd: fd, path: path) == FsVerity.digest(data))
        }
        let missing = dir.file("missing")
        #expect(throws: FsVerity.Error.io(path: FilePath(missing), errno: .noSuchFileOrDirectory)) { try FsVerity.digest(path: missing) }
    }

    @Test func objectPaths() {
        let digest = hexBytes("91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b")
        let path = FsVerity.objectPath(digest)
        #expect(path.text == "91/e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b")
        #expect(path.count == 65)
    }

    @Test func referenceSHA256() {
        #expect(SHA256Reference.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256Reference.hex(b("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256Reference.hex(b("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // And the library's libcrypto-backed one agrees on a multi-block input.
        let data = pseudoRandomBytes(10_000, seed: 5)
        var out = [UInt8](repeating: 0, count: 32)
        data.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { FsVerity.sha256(raw.baseAddress, raw.count, $0.baseAddress!) }
        }
        #expect(out == SHA256Reference.hash(data))
    }
}

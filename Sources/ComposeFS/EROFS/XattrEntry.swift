extension EROFS {
    /// One xattr entry as stored inline or in the shared table (§11.3):
    /// `e_name_len` u8, `e_name_index` u8, `e_value_size` u16, the name
    /// suffix, the value, zero padding to a multiple of 4.
    public struct XattrEntry: Equatable, Sendable {
        public var nameIndex: UInt8
        /// The full key; the stored name is the part after the prefix.
        public var key: [UInt8]
        public var prefixLength: Int
        public var value: [UInt8]

        /// The stored name: the key without its prefix (§11.2).
        public var suffix: ArraySlice<UInt8> { key[prefixLength...] }

        /// Splits a full key into (prefix index, suffix) as the writer does (§11.2).
        public init(key: [UInt8], value: [UInt8]) {
            self.key = key
            self.value = value
            let (index, length) = Self.prefix(of: key)
            nameIndex = index
            prefixLength = length
        }

        /// The writer's prefix for a key: (e_name_index, prefix length).
        static func prefix(of key: [UInt8]) -> (UInt8, Int) {
            for index in EROFS.writerPrefixOrder {
                let prefix = EROFS.xattrPrefixes[index]
                if key.count >= prefix.count, key.starts(with: prefix) { return (UInt8(index), prefix.count) }
            }
            return (0, 0)
        }

        public static func encodedSize(suffixLength: Int, valueLength: Int) -> Int {
            roundUp(4 + suffixLength + valueLength, 4)
        }

        /// Entry size of a key/value pair (§11.3).
        public static func encodedSize(key: [UInt8], valueLength: Int) -> Int {
            encodedSize(suffixLength: key.count - prefix(of: key).1, valueLength: valueLength)
        }

        public var encodedSize: Int { Self.encodedSize(suffixLength: key.count - prefixLength, valueLength: value.count) }

        /// The bit this entry sets in the inode's name filter.
        public var filterBit: UInt32 {
            XXHash32.hash(suffix, seed: EROFS.xattrFilterSeed &+ UInt32(nameIndex)) & 31
        }

        public func encode(into w: inout ByteWriter) {
            let n = key.count - prefixLength
            w.u8(UInt8(truncatingIfNeeded: n))   // 0: e_name_len
            w.u8(nameIndex)   // 1: e_name_index
            w.u16(UInt16(truncatingIfNeeded: value.count))   // 2: e_value_size
            w.append(suffix)   // 4
            w.append(value)
            w.zeros(encodedSize - 4 - n - value.count)
        }

        /// Decodes the entry at `o`; returns it and its padded size.
        /// The full key is rebuilt with the reader's prefix table (§15.3).
        static func decode(_ r: ByteReader, at o: Int, end: Int) throws(ImageReader.Error) -> (
            key: [UInt8], value: [UInt8], valueOffset: Int, size: Int
        ) {
            do {
                guard end - o >= 4 else { throw ImageReader.Error.corrupt(offset: o, "xattr entry header runs past its area") }
                let nameLen = Int(try r.u8(at: o))
                let index = Int(try r.u8(at: o + 1))
                let valueLen = Int(try r.u16(at: o + 2))
                let size = encodedSize(suffixLength: nameLen, valueLength: valueLen)
                guard size <= end - o else {
                    throw ImageReader.Error.corrupt(offset: o, "xattr entry of \(size) bytes runs past its area")
                }
                guard index < EROFS.xattrPrefixes.count else {
                    throw ImageReader.Error.corrupt(offset: o, "invalid xattr name index \(index)")
                }
                var key = EROFS.xattrPrefixes[index]
                key.append(contentsOf: try r.slice(at: o + 4, count: nameLen))
                let value = try r.bytes(at: o + 4 + nameLen, count: valueLen)
                return (key, value, o + 4 + nameLen, size)
            } catch let e as ImageReader.Error {
                throw e
            } catch let e as ByteReader.Error {
                throw ImageReader.Error.truncated(e)
            } catch {
                throw ImageReader.Error.corrupt(offset: o, "\(error)")
            }
        }
    }
}

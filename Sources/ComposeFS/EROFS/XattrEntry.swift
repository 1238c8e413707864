extension EROFS {
    /// One xattr entry as stored inline or in the shared table (§11.3):
    /// `e_name_len` u8, `e_name_index` u8, `e_value_size` u16, the name
    /// suffix, the value, zero padding to a multiple of 4.
    public struct XattrEntry: Equatable, Sendable {
        public var nameIndex: UInt8
        public var suffix: [UInt8]
        public var value: [UInt8]

        /// Splits a full key into (prefix index, suffix) as the writer does (§11.2).
        public init(key: [UInt8], value: [UInt8]) {
            self.value = value
            for index in EROFS.writerPrefixOrder {
                let prefix = EROFS.xattrPrefixes[index]
                if key.count >= prefix.count, key.starts(with: prefix) {
                    nameIndex = UInt8(index)
                    suffix = Array(key[prefix.count...])
                    return
                }
            }
            nameIndex = 0
            suffix = key
        }

        public init(nameIndex: UInt8, suffix: [UInt8], value: [UInt8]) {
            self.nameIndex = nameIndex
            self.suffix = suffix
            self.value = value
        }

        public static func encodedSize(suffixLength: Int, valueLength: Int) -> Int {
            roundUp(4 + suffixLength + valueLength, 4)
        }

        public var encodedSize: Int { Self.encodedSize(suffixLength: suffix.count, valueLength: value.count) }

        /// The bit this entry sets in the inode's name filter.
        public var filterBit: UInt32 {
            XXHash32.hash(suffix, seed: EROFS.xattrFilterSeed &+ UInt32(nameIndex)) & 31
        }

        public func encode(into w: inout ByteWriter) {
            w.u8(UInt8(truncatingIfNeeded: suffix.count))   // 0: e_name_len
            w.u8(nameIndex)                                 // 1: e_name_index
            w.u16(UInt16(truncatingIfNeeded: value.count))  // 2: e_value_size
            w.append(suffix)                                // 4
            w.append(value)
            w.zeros(encodedSize - 4 - suffix.count - value.count)
        }

        /// Decodes the entry at `o`; returns it and its padded size.
        /// The full key is rebuilt with the reader's prefix table (§15.3).
        static func decode(_ r: ByteReader, at o: Int, end: Int) throws(ImageReader.Error) -> (key: [UInt8], value: [UInt8], valueOffset: Int, size: Int) {
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

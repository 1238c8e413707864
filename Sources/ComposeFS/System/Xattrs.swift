import CComposeFSShims
import Glibc

/// Extended attributes of a file, read through its descriptor or its path
/// (never following a symlink at the end), with buffers that grow to fit.
enum Xattrs {
    /// Where the xattrs are read from.
    enum Source {
        case descriptor(FileDescriptor)
        /// The entry itself (`l*xattr`), for symlinks, devices, fifos.
        case path(FilePath)
    }

    /// The names, each without its NUL. A filesystem without xattrs has none.
    static func names(_ source: Source) throws(Errno) -> [[UInt8]] {
        var buffer = [CChar](repeating: 0, count: 4096)
        while true {
            let n: Int
            do {
                n = try list(source, into: &buffer)
            } catch {
                if error == .notSupported || error.rawValue == ENOTSUP { return [] }
                guard error == .outOfRange else { throw error }
                buffer = [CChar](repeating: 0, count: try size(source) + 1024)
                continue
            }
            var out: [[UInt8]] = []
            var start = 0
            while start < n {
                var end = start
                while end < n && buffer[end] != 0 { end += 1 }
                if end > start { out.append(buffer[start..<end].map { UInt8(bitPattern: $0) }) }
                start = end + 1
            }
            return out
        }
    }

    /// The value of `name`, or nil when it is gone (removed since listed).
    static func value(_ source: Source, _ name: [UInt8], buffer: inout [UInt8]) throws(Errno) -> [UInt8]? {
        while true {
            do {
                let n = try get(source, name, into: &buffer)
                return Array(buffer[0..<n])
            } catch {
                if error == .noData { return nil }
                guard error == .outOfRange else { throw error }
                buffer = [UInt8](repeating: 0, count: try get(source, name, into: nil) + 256)
            }
        }
    }

    private static func list(_ source: Source, into buffer: inout [CChar]) throws(Errno) -> Int {
        try SystemFaults.check(.listXattrs, source.path)
        return try withMutableBytes(&buffer) { (b: UnsafeMutableRawBufferPointer) throws(Errno) -> Int in
            let base = b.baseAddress?.assumingMemoryBound(to: CChar.self)
            let count = b.count
            switch source {
            case .descriptor(let fd):
                return try FileDescriptor.retrying { flistxattr(fd.rawValue, base, count) }
            case .path(let path):
                return try path.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
                    try FileDescriptor.retrying { llistxattr(p, base, count) }
                }
            }
        }
    }

    private static func size(_ source: Source) throws(Errno) -> Int {
        switch source {
        case .descriptor(let fd):
            return try FileDescriptor.retrying { flistxattr(fd.rawValue, nil, 0) }
        case .path(let path):
            return try path.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
                try FileDescriptor.retrying { llistxattr(p, nil, 0) }
            }
        }
    }

    private static func get(_ source: Source, _ name: [UInt8], into buffer: inout [UInt8]) throws(Errno) -> Int {
        try SystemFaults.check(.getXattr, source.path)
        return try withMutableBytes(&buffer) { (b: UnsafeMutableRawBufferPointer) throws(Errno) -> Int in
            try get(source, name, into: b)
        }
    }

    private static func get(_ source: Source, _ name: [UInt8], into buffer: UnsafeMutableRawBufferPointer?) throws(Errno) -> Int {
        try name.withCString { (n: UnsafePointer<CChar>) throws(Errno) -> Int in
            switch source {
            case .descriptor(let fd):
                return try FileDescriptor.retrying { fgetxattr(fd.rawValue, n, buffer?.baseAddress, buffer?.count ?? 0) }
            case .path(let path):
                return try path.withCString { (p: UnsafePointer<CChar>) throws(Errno) in
                    try FileDescriptor.retrying { lgetxattr(p, n, buffer?.baseAddress, buffer?.count ?? 0) }
                }
            }
        }
    }
}

extension Xattrs.Source {
    var path: FilePath? {
        if case .path(let p) = self { return p }
        return nil
    }
}

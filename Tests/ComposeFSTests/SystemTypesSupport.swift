import Glibc

@testable import ComposeFS

/// The tests name files with `String`s (FileManager, shell commands); the
/// library takes `FilePath`, `FileDescriptor` and `Errno`. These forward.

extension ObjectStore {
    convenience init(path: String) throws(Error) { try self.init(path: FilePath(path)) }
}

extension FsVerity {
    static func digest(path: String) throws(Error) -> [UInt8] { try digest(path: FilePath(path)) }
    static func digest(fd: Int32, path: String = "") throws(Error) -> [UInt8] {
        try digest(fd: FileDescriptor(rawValue: fd), path: FilePath(path))
    }
    static func measure(fd: Int32, path: String = "") throws(Error) -> Measurement {
        try measure(fd: FileDescriptor(rawValue: fd), path: FilePath(path))
    }
    static func measureOrCompute(fd: Int32, path: String = "") throws(Error) -> [UInt8] {
        try measureOrCompute(fd: FileDescriptor(rawValue: fd), path: FilePath(path))
    }
}

extension DirectoryScanner {
    static func scan(_ source: String, options: Options = Options()) throws(Error) -> Node {
        try scan(FilePath(source), options: options)
    }
}

extension Mount {
    @discardableResult
    static func mount(
        image: String, target: String, options: Options,
        environment: Environment = Environment()
    ) throws(Error) -> Route {
        try mount(image: FilePath(image), target: FilePath(target), options: options, environment: environment)
    }
}

extension Mount.Options {
    /// Object directories given as strings.
    var basedirPaths: [String] {
        get { basedirs.map(\.description) }
        set { basedirs = newValue.map { FilePath($0) } }
    }
}

extension ByteReader {
    init(fd: Int32, size: Int) { self.init(fd: FileDescriptor(rawValue: fd), size: size) }
}

/// strerror(3) text, for expected messages.
func errnoText(_ code: Int32) -> String { Errno(code).description }

extension ObjectStore {
    func insert(
        source: Int32, sourcePath: String, digest: [UInt8], size: UInt64,
        scratch: UnsafeMutableRawBufferPointer
    ) throws(Error) {
        try insert(
            source: FileDescriptor(rawValue: source), sourcePath: FilePath(sourcePath), digest: digest,
            size: size, scratch: scratch)
    }
}

import Glibc

/// Linux constants that Glibc's Swift module does not export (they sit
/// behind `_GNU_SOURCE` in the C headers). Values are the same on every
/// Linux architecture Swift supports.
public enum LinuxConstants {
    public static let O_PATH: Int32 = 0o10000000
    public static let AT_EMPTY_PATH: Int32 = 0x1000
}

/// Standard error and exit for the tools, without touching the C `stderr`
/// global (not concurrency-safe in Swift 6).
public enum Terminal {
    public static func error(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.write(2, b.baseAddress! + off, b.count - off)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                off += n
            }
        }
    }

    public static func exit(_ code: Int32) -> Never { Glibc.exit(code) }

    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) != 0 }
}

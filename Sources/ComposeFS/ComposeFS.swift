import Glibc

/// swift-composefs: read and write composefs images.
///
/// - ``DumpParser`` / ``DumpPrinter``: the composefs-dump(5) text format.
/// - ``Node``: the tree (names, xattrs and payloads are bytes).
/// - ``ImageWriter`` / ``ImageReader``: the EROFS image, byte-identical to
///   the reference implementation.
/// - ``FsVerity``: fs-verity digests, in userspace and from the kernel.
public enum ComposeFS {
    /// Whether `CFS_PARSE_STRICT` asks for strict dump parsing.
    public static var strictParsingRequested: Bool {
        getenv("CFS_PARSE_STRICT") != nil
    }
}


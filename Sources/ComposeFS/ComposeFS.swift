/// swift-composefs: read and write composefs images.
///
/// - ``DumpParser`` / ``DumpPrinter``: the composefs-dump(5) text format.
/// - ``Node``: the tree (names, xattrs and payloads are bytes).
/// - ``ImageWriter`` / ``ImageReader``: the EROFS image, byte-identical to
///   the reference implementation.
/// - ``FsVerity``: fs-verity digests, in userspace and from the kernel.
/// - ``DirectoryScanner`` and ``ObjectStore``: trees from directories, and
///   the content-addressed store of their files.
/// - ``Mount``: mounting an image on the running kernel.
/// - ``FileDescriptor``, ``FilePath``, ``Errno``: the system layer every
///   file and kernel call goes through.
public enum ComposeFS {
    /// The upstream composefs release whose formats, options and output
    /// these tools reproduce (`TOOL --version`).
    public static let version = "1.0.8"
}

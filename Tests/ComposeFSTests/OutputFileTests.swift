import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// OutputFile: where a named output goes is decided by what the path
/// resolves to, and each kind is written as it must be (temporary file and
/// rename, or in place).
@Suite struct OutputFileTests {
    static func target(_ path: String) throws(OutputFile.Error) -> OutputFile.Target {
        try OutputFile(FilePath(path)).target
    }

    static func openError(_ path: String) -> OutputFile.Error? {
        do {
            _ = try OutputFile(FilePath(path))
            return nil
        } catch { return error }
    }

    @Test func regularFilesAreReplacedWhereTheLinksLead() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try dir.write("file.cfs", [1, 2, 3])
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: dir.file("link.cfs"), withDestinationPath: "file.cfs")
        try fm.createSymbolicLink(atPath: dir.file("chain.cfs"), withDestinationPath: dir.file("link.cfs"))
        try fm.createDirectory(atPath: dir.file("sub"), withIntermediateDirectories: false)
        try fm.createSymbolicLink(atPath: dir.file("dangling.cfs"), withDestinationPath: "sub/../sub/new.cfs")
        #expect(try Self.target(dir.file("new.cfs")) == .replacedFile(FilePath(dir.file("new.cfs"))))
        #expect(try Self.target(dir.file("file.cfs")) == .replacedFile(FilePath(dir.file("file.cfs"))))
        #expect(try Self.target(dir.file("link.cfs")) == .replacedFile(FilePath(dir.file("file.cfs"))))
        #expect(try Self.target(dir.file("chain.cfs")) == .replacedFile(FilePath(dir.file("file.cfs"))))
        #expect(try Self.target(dir.file("dangling.cfs")) == .replacedFile(FilePath(dir.file("sub/../sub/new.cfs"))))
        // Opening and dropping leaves everything as it was.
        #expect(try dir.contents() == ["chain.cfs", "dangling.cfs", "file.cfs", "link.cfs", "sub"])
        #expect(try fm.contentsOfDirectory(atPath: dir.file("sub")).isEmpty)
        #expect(try ScanFS.readFile(dir.file("file.cfs")) == [1, 2, 3])
    }

    @Test func everythingElseIsWrittenInPlace() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(try Self.target("-") == .standardOutput)
        #expect(try Self.target("/dev/null") == .characterDevice)
        #expect(try Self.target("/dev/zero") == .characterDevice)
        // A FIFO with a reader (this test's own descriptor).
        #expect(mkfifo(dir.file("fifo"), 0o600) == 0)
        let reader = open(dir.file("fifo"), O_RDWR | O_NONBLOCK)
        defer { close(reader) }
        #expect(try Self.target(dir.file("fifo")) == .fifo)
        // A descriptor's file: /proc/self/fd/N, /dev/fd/N, and a link to one.
        let file = open(dir.file("by-descriptor"), O_RDWR | O_CREAT, 0o600)
        defer { close(file) }
        #expect(try Self.target("/proc/self/fd/\(file)") == .descriptor)
        #expect(try Self.target("/dev/fd/\(file)") == .descriptor)
        try FileManager.default.createSymbolicLink(atPath: dir.file("to-fd"), withDestinationPath: "/proc/self/fd/\(file)")
        #expect(try Self.target(dir.file("to-fd")) == .descriptor)
    }

    @Test func unusableTargetsAreRefusedAsOpenWouldRefuseThem() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: dir.file("loop-a"), withDestinationPath: "loop-b")
        try fm.createSymbolicLink(atPath: dir.file("loop-b"), withDestinationPath: "loop-a")
        #expect(Self.openError(dir.path) == .open(path: FilePath(dir.path), errno: .isDirectory))
        #expect(Self.openError(dir.file("loop-a")) == .open(path: FilePath(dir.file("loop-a")), errno: .tooManySymbolicLinkLevels))
        #expect(Self.openError(dir.file("no/such.cfs")) == .open(path: FilePath(dir.file("no/such.cfs")), errno: .noSuchFileOrDirectory))
        #expect(Self.openError("") == .open(path: "", errno: .noSuchFileOrDirectory))
        #expect(Self.openError(dir.path + "/new/") == .open(path: FilePath(dir.path + "/new/"), errno: .isDirectory))
        #expect(
            OutputFile.Error.open(path: "/x/y", errno: .noSuchFileOrDirectory).description
                == "failed to open output file /x/y: No such file or directory")
        #expect(try dir.contents().sorted() == ["loop-a", "loop-b"])
    }

    @Test func replacingKeepsTheModeAndTheLink() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try dir.write("file.cfs", [9, 9])
        #expect(chmod(dir.file("file.cfs"), 0o640) == 0)
        try FileManager.default.createSymbolicLink(atPath: dir.file("link.cfs"), withDestinationPath: "file.cfs")
        let out = try OutputFile(FilePath(dir.file("link.cfs")))
        try out.write([1, 2, 3])
        #expect(try ScanFS.readFile(dir.file("file.cfs")) == [9, 9], "nothing shows before the commit")
        try out.commit()
        #expect(try ScanFS.readFile(dir.file("file.cfs")) == [1, 2, 3])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir.file("link.cfs")) == "file.cfs")
        var st = stat()
        #expect(stat(dir.file("file.cfs"), &st) == 0 && st.st_mode & 0o7777 == 0o640)
        #expect(try dir.contents() == ["file.cfs", "link.cfs"])
    }

    @Test func aDiscardedReplacementLeavesTheOldFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try dir.write("file.cfs", [9, 9])
        do {
            let out = try OutputFile(FilePath(dir.file("file.cfs")))
            try out.write([1, 2, 3])
            out.discard()
        }
        do {
            let out = try OutputFile(FilePath(dir.file("new.cfs")))
            try out.write([1, 2, 3])   // dropped without commit
        }
        #expect(try dir.contents() == ["file.cfs"])
        #expect(try ScanFS.readFile(dir.file("file.cfs")) == [9, 9])
    }

    /// A descriptor's file is written in place (its inode kept, so the
    /// caller's descriptor sees the image), and truncated on failure.
    @Test func aDescriptorsFileIsWrittenInPlace() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let fd = open(dir.file("blob"), O_RDWR | O_CREAT | O_EXCL, 0o644)
        defer { close(fd) }
        var before = stat()
        #expect(fstat(fd, &before) == 0)
        do {
            let out = try OutputFile(FilePath("/proc/self/fd/\(fd)"))
            try out.write(Array(repeating: 7, count: 5000))
            try out.commit()
        }
        var after = stat()
        #expect(stat(dir.file("blob"), &after) == 0)
        #expect(after.st_ino == before.st_ino && after.st_size == 5000)
        do {
            let out = try OutputFile(FilePath("/dev/fd/\(fd)"))
            try out.write(Array(repeating: 8, count: 3000))
            out.discard()
        }
        #expect(stat(dir.file("blob"), &after) == 0)
        #expect(after.st_ino == before.st_ino && after.st_size == 0, "a failure leaves nothing that looks like an image")
        #expect(try dir.contents() == ["blob"])
    }
}

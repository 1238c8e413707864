import ComposeFS

/// `composefs-dump SRC DEST`: an image read back and written again
/// (FORMAT.md §18), in the format version its header records. For an image
/// any composefs writer made, the result is the same bytes.
enum ComposefsDump: Tool {
    static let name = "composefs-dump"
    static let options: [Arguments.Option] = []
    static let usage = "usage: composefs-dump SRC DEST\n"
    static let help = """
        Read a composefs image and write it again (DEST '-' is standard output).

        usage: composefs-dump SRC DEST

          -h, --help   Show this help
          --version    Show the version

        """

    static func failure(_ message: String, usage showUsage: Bool = false) -> ToolFailure {
        ToolFailure(text: showUsage ? "\(message)\n" + usage : "composefs-dump: \(message)\n")
    }

    static func run(_ arguments: Arguments) throws(ToolFailure) {
        let paths = arguments.operands.map { FilePath(bytes: $0) }
        guard let source = paths.first else { throw failure("No source path specified", usage: true) }
        guard paths.count >= 2 else { throw failure("No destination path specified", usage: true) }
        guard paths.count == 2 else { throw failure("Too many arguments", usage: true) }
        let image: ImageReader.Image
        let reader: ByteReader
        do throws(Errno) {
            let fd = try FileDescriptor.open(source, .readOnly)
            defer { try? fd.close() }
            let size = Int(try fd.stat().st_size)
            do { reader = try ByteReader(readingAll: fd, size: size) } catch { throw Errno.ioError }
        } catch {
            throw failure("Failed to open '\(source)': \(error)")
        }
        do { image = try ImageReader.load(reader) } catch { throw failure("Failed to load '\(source)': \(error)") }
        let version = image.header.composefsVersion
        // The destination as mkcomposefs treats its output (OutputFile).
        let output: OutputFile
        do { output = try OutputFile(paths[1]) } catch { throw failure("\(error)") }
        let prepared: ImageWriter.PreparedImage
        do { prepared = try ImageWriter.prepare(image.root, options: .init(minVersion: version, maxVersion: version)) } catch {
            throw failure("cannot write file: \(error)")
        }
        do throws(OutputFile.Error) {
            try prepared.serialize { (chunk: [UInt8]) throws(OutputFile.Error) in try output.write(chunk) }
            try output.commit()
        } catch {
            throw failure("\(error)")
        }
    }
}

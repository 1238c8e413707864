import ComposeFS
import Synchronization

/// A one-line progress display on a terminal's stderr: files and bytes
/// done and the rate, redrawn at most ten times a second.
final class ProgressLine: Sendable {
    private let start = ProgressLine.now()
    private let last = Atomic<UInt64>(0)
    private let drawn = Atomic<Bool>(false)
    private let unit: String

    init(unit: String = "files") { self.unit = unit }

    static func now() -> UInt64 { CurrentProcess.monotonicNanoseconds }

    func update(files: Int, bytes: UInt64) {
        let t = Self.now()
        let previous = last.load(ordering: .relaxed)
        guard t - previous >= 100_000_000,
            last.compareExchange(expected: previous, desired: t, ordering: .relaxed).exchanged
        else { return }
        let seconds = Double(t - start) / 1e9
        let mib = Double(bytes) / 1_048_576
        let rate = seconds > 0 ? mib / seconds : 0
        let text = "\r\u{1B}[K\(files) \(unit), \(Int(mib)) MiB, \(Int(rate)) MiB/s"
        Terminal.error(text)
        drawn.store(true, ordering: .relaxed)
    }

    func finish() {
        if drawn.load(ordering: .relaxed) { Terminal.error("\r\u{1B}[K") }
    }
}

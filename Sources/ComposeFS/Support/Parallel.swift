import CComposeFSShims
import Dispatch
import Glibc
import Synchronization

/// Runs work items on a fixed number of threads that pull indices from a
/// shared counter; the first error stops the hand-out of further items.
public enum Parallel {
    /// CPUs in this process's affinity mask (what `--threads` defaults to).
    public static var availableCPUs: Int {
        let n = Int(cfs_affinity_cpu_count())
        if n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Calls `body(index, worker)` for every index in `0..<count` on up to
    /// `threads` threads. `worker` (0..<threads) lets callers keep
    /// per-thread scratch state. Rethrows the first error.
    public static func forEach<E: Swift.Error>(
        count: Int, threads: Int, _ body: @Sendable (Int, Int) throws(E) -> Void
    ) throws(E) {
        guard count > 0 else { return }
        let workers = max(1, min(threads, count))
        let next = Atomic<Int>(0)
        let failure = Locked<E?>(nil)
        let stop = Atomic<Bool>(false)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            while !stop.load(ordering: .relaxed) {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < count else { return }
                do throws(E) {
                    try body(i, worker)
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    stop.store(true, ordering: .relaxed)
                    return
                }
            }
        }
        if let e = failure.withLock({ $0 }) { throw e }
    }
}

/// A reference that crosses threads where the algorithm guarantees that
/// each worker touches distinct objects (each node is digested by exactly
/// one worker, and the tree is only read after all workers finish).
public struct UncheckedSendable<T>: @unchecked Sendable {
    public var value: T
    public init(_ value: T) { self.value = value }
}

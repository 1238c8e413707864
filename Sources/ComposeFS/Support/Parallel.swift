import Glibc
import Synchronization

/// Work on a fixed number of threads (plain pthreads: no thread pool, no
/// runtime beyond libc).
enum Parallel {
    /// CPUs in this process's affinity mask (what `--threads` defaults to).
    static var availableCPUs: Int { CurrentProcess.availableCPUs }

    /// Calls `body(index, worker)` for every index in `0..<count` on up to
    /// `threads` threads that pull indices from a shared counter. `worker`
    /// (0..<threads) lets callers keep per-thread scratch state. The first
    /// error stops the hand-out of further indices and is rethrown.
    static func forEach<E: Swift.Error>(
        count: Int, threads: Int, _ body: @Sendable (Int, Int) throws(E) -> Void
    ) throws(E) {
        guard count > 0 else { return }
        let workers = max(1, min(threads, count))
        let next = Atomic<Int>(0)
        let failure = Locked<E?>(nil)
        let stop = Atomic<Bool>(false)
        withoutActuallyEscaping(body) { body in
            let run = UncheckedSendable(body)
            Workers.run(count: workers) { worker in
                while !stop.load(ordering: .relaxed) {
                    let i = next.add(1, ordering: .relaxed).oldValue
                    guard i < count else { return }
                    do throws(E) {
                        try run.value(i, worker)
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                        stop.store(true, ordering: .relaxed)
                        return
                    }
                }
            }
        }
        if let e = failure.withLock({ $0 }) { throw e }
    }
}

/// Threads started together and joined together. `run` calls `body`
/// with worker numbers 0..<count: the calling thread does one share, the
/// others run on new threads; `start` runs them all in the background
/// until `join`.
final class Workers: @unchecked Sendable {
    private var threads: [SystemThread] = []

    /// Runs `body(0..<count)` concurrently and returns when all are done.
    static func run(count: Int, _ body: @escaping (Int) -> Void) {
        let workers = Workers()
        workers.start(count: count - 1, first: 1, body)
        body(0)
        workers.join()
    }

    /// Starts `count` threads running `body(first + k)`.
    func start(count: Int, first: Int = 0, _ body: @escaping (Int) -> Void) {
        for k in 0..<max(0, count) {
            do {
                threads.append(try SystemThread { body(first + k) })
            } catch {
                // No thread to be had: do the share here, now.
                body(first + k)
            }
        }
    }

    func join() {
        for t in threads { t.join() }
        threads = []
    }
}

/// Jobs one thread produces while others consume them: `take` waits until
/// a job is there, or returns nil once the producer has finished and the
/// queue is empty, or once the work was stopped.
final class JobQueue<Job>: @unchecked Sendable {
    private struct State {
        var jobs: [Job] = []
        var next = 0
        var finished = false
        var stopped = false
    }

    private let state = ConditionLocked(State())

    func add(_ batch: [Job]) {
        guard !batch.isEmpty else { return }
        state.update { $0.jobs.append(contentsOf: batch) }
    }

    /// No more jobs will come.
    func finish() { state.update { $0.finished = true } }

    /// Hand out nothing more (after a failure).
    func stop() { state.update { $0.stopped = true } }

    var isStopped: Bool { state.withLock { s, _ in s.stopped } }

    func take() -> Job? {
        state.withLock { s, waiter in
            while true {
                if s.stopped { return nil }
                if s.next < s.jobs.count {
                    s.next += 1
                    return s.jobs[s.next - 1]
                }
                if s.finished { return nil }
                waiter.wait()
            }
        }
    }
}

/// A reference that crosses threads where the algorithm guarantees that
/// each worker touches distinct objects (each node is digested by exactly
/// one worker, and the tree is only read after all workers finish).
struct UncheckedSendable<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

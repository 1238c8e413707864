import CComposeFSShims
import Glibc
import Synchronization

/// Work on a fixed number of threads (plain pthreads: no thread pool, no
/// runtime beyond libc).
enum Parallel {
    /// CPUs in this process's affinity mask (what `--threads` defaults to).
    static var availableCPUs: Int {
        let n = Int(cfs_affinity_cpu_count())
        if n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

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
    private var threads: [pthread_t] = []

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
            let job = Job { body(first + k) }
            let context = Unmanaged.passRetained(job).toOpaque()
            var thread = pthread_t()
            if pthread_create(&thread, nil, { context in
                Unmanaged<Job>.fromOpaque(context!).takeRetainedValue().work()
                return nil
            }, context) == 0 {
                threads.append(thread)
            } else {
                // No thread to be had: do the share here, now.
                Unmanaged<Job>.fromOpaque(context).takeRetainedValue().work()
            }
        }
    }

    func join() {
        for t in threads { pthread_join(t, nil) }
        threads = []
    }

    private final class Job: @unchecked Sendable {
        let work: () -> Void
        init(_ work: @escaping () -> Void) { self.work = work }
    }
}

/// Jobs one thread produces while others consume them: `take` waits until
/// a job is there, or returns nil once the producer has finished and the
/// queue is empty, or once the work was stopped.
final class JobQueue<Job>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [Job] = []
    private var next = 0
    private var finished = false
    private var stopped = false

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(ready, nil)
    }

    deinit {
        pthread_cond_destroy(ready)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        ready.deallocate()
    }

    func add(_ batch: [Job]) {
        guard !batch.isEmpty else { return }
        pthread_mutex_lock(mutex)
        jobs.append(contentsOf: batch)
        pthread_cond_broadcast(ready)
        pthread_mutex_unlock(mutex)
    }

    /// No more jobs will come.
    func finish() {
        pthread_mutex_lock(mutex)
        finished = true
        pthread_cond_broadcast(ready)
        pthread_mutex_unlock(mutex)
    }

    /// Hand out nothing more (after a failure).
    func stop() {
        pthread_mutex_lock(mutex)
        stopped = true
        pthread_cond_broadcast(ready)
        pthread_mutex_unlock(mutex)
    }

    var isStopped: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return stopped
    }

    func take() -> Job? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if stopped { return nil }
            if next < jobs.count {
                let job = jobs[next]
                next += 1
                return job
            }
            if finished { return nil }
            pthread_cond_wait(ready, mutex)
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

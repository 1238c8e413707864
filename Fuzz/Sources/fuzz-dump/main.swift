// libFuzzer target fuzz-dump: see FuzzSupport/Properties.swift (DumpTarget)
// and FUZZING.md. Run with scripts/fuzz fuzz-dump SECONDS.
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

let status = runFuzzer { data, size in
    DumpTarget.check(bytes(data, size))
    return 0
}
exit(status)

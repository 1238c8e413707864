// libFuzzer target fuzz-tar: see FuzzSupport/Properties.swift (TarTarget)
// and FUZZING.md. Run with scripts/fuzz fuzz-tar SECONDS.
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

let status = runFuzzer { data, size in
    TarTarget.check(bytes(data, size))
    return 0
}
exit(status)

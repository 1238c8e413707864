// libFuzzer target fuzz-mount-options: see FuzzSupport/Properties.swift (MountOptionsTarget)
// and FUZZING.md. Run with scripts/fuzz fuzz-mount-options SECONDS.
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

let status = runFuzzer { data, size in
    MountOptionsTarget.check(bytes(data, size))
    return 0
}
exit(status)

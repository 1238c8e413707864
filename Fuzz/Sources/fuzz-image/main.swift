// libFuzzer target fuzz-image: see FuzzSupport/Properties.swift (ImageTarget)
// and FUZZING.md. Run with scripts/fuzz fuzz-image SECONDS.
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

let status = runFuzzer { data, size in
    ImageTarget.check(bytes(data, size))
    return 0
}
exit(status)

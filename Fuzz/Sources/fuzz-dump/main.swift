// libFuzzer target fuzz-dump: see Properties.checkDump in the main package's
// Sources/ComposeFSProperties and FUZZING.md. Run with scripts/fuzz fuzz-dump SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkDump(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

// libFuzzer target fuzz-tar: see Properties.checkTar in the main package's
// Sources/ComposeFSProperties and FUZZING.md. Run with scripts/fuzz fuzz-tar SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkTar(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

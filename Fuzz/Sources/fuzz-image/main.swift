// libFuzzer target fuzz-image: see Properties.checkImage in the main package's
// Sources/ComposeFSProperties and FUZZING.md. Run with scripts/fuzz fuzz-image SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkImage(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

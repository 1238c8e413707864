// libFuzzer target fuzz-mount-options: see Properties.checkMountOptions in the main package's
// Sources/ComposeFSProperties and FUZZING.md. Run with scripts/fuzz fuzz-mount-options SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkMountOptions(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

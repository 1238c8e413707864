// libFuzzer target fuzz-fuse: see Properties.checkFuseInput in the main
// package's Sources/ComposeFSProperties and FUZZING.md: the FUSE server's
// request handlers on a hostile image, plus one raw request. Run with
// scripts/fuzz fuzz-fuse SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkFuseInput(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

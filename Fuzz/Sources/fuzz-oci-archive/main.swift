// libFuzzer target fuzz-oci-archive: see Properties.checkOCIArchive in the
// main package's Sources/ComposeFSProperties and FUZZING.md: the member
// index of an image archive (oci-archive, docker-archive). Run with
// scripts/fuzz fuzz-oci-archive SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkOCIArchive(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

// libFuzzer target fuzz-oci-json: see Properties.checkOCIDocument in the main
// package's Sources/ComposeFSProperties and FUZZING.md: the JSON reader and
// the descriptor and diff_id readers on an index, manifest or config. Run
// with scripts/fuzz fuzz-oci-json SECONDS.
import ComposeFSProperties
import FuzzSupport

#if canImport(Glibc)
    import Glibc
#endif

let status = runFuzzer { data, size in
    Properties.checkOCIDocument(bytes(data, size), report: { violation($0) })
    return 0
}
exit(status)

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// No failed mkcomposefs leaves anything that looks like an image: a new
/// file is not made, a replaced one is untouched, a file written in place
/// is truncated back, and a pipe gets nothing at all (the image is written
/// only once it is whole). Objects of a --digest-store run still go to the
/// store when the image goes somewhere in place.
@Suite struct OutputFailureTests {
    /// A dump of `count` directories (an image of about count × 20 bytes
    /// of directory entries), with an invalid line in the middle if `bad`.
    static func bigDump(_ count: Int, bad: Bool) -> [UInt8] {
        var text = "/ 0 40755 1 0 0 0 0.0 - - -\n"
        for i in 0..<count {
            text += i == count / 2 && bad ? "/bad 0 4x755 1 0 0 0 0.0 - - -\n" : "/d\(100_000 + i) 0 40755 1 0 0 0 0.0 - - -\n"
        }
        return Array(text.utf8)
    }

    static func bash(_ script: String, in dir: String) throws -> Tools.Result {
        try OutputTargetTests.bash(script, in: dir)
    }

    /// A source tree of files past the inline limit (they become objects)
    /// and a tar of it.
    static let tree = """
        mkdir -p src/sub; for i in 1 2 3 4 5; do head -c $((i * 3000)) /dev/urandom > src/sub/f$i; done
        echo small > src/small; tar -cf layer.tar -C src .
        """

    @Test func aBadLineHalfWayLeavesNothing() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try dir.write("bad.dump", Self.bigDump(20_000, bad: true))
        let r = try Self.bash(
            """
            { $MK --from-file bad.dump /dev/stdout 2>err || echo "exit $?" >&2; } | wc -c; cat err
            $MK --from-file bad.dump /proc/self/fd/3 3> blob 2>/dev/null || echo "exit $?"; stat -c %s blob
            echo prefix > log; $MK --from-file bad.dump - >> log 2>/dev/null || echo "exit $?"; cat log
            echo old > image.cfs; $MK --from-file bad.dump image.cfs 2>/dev/null || echo "exit $?"; cat image.cfs
            $MK --from-file bad.dump new.cfs 2>/dev/null || echo "exit $?"; ls
            """, in: dir.path)
        #expect(r.status == 0, "stderr: \(r.err)")
        #expect(
            r.out == """
                0
                mkcomposefs: bad.dump: line 10002: Invalid integer 4x755
                exit 1
                0
                exit 1
                prefix
                exit 1
                old
                exit 1
                bad.dump
                blob
                err
                image.cfs
                log

                """)
        #expect(r.err == "exit 1\n")
    }

    /// A store the user cannot write: the run fails before any byte of the
    /// image reaches a descriptor's file or a pipe.
    @Test(.root) func aStoreThatRefusesWritesLeavesNothing() throws {
        let dir = try RootScratch("output-store-refuses")
        defer { dir.remove() }
        let asNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups"
        let r = try Self.bash(
            """
            chmod 755 .; \(Self.tree); mkdir store; chmod -R a+rX src layer.tar
            \(asNobody) $MK --digest-store=store src /proc/self/fd/3 3> blob 2>err || echo "exit $?"; stat -c %s blob
            { \(asNobody) $MK --digest-store=store src /dev/stdout 2>>err || echo "exit $?" >&2; } | wc -c
            { \(asNobody) $MK --digest-store=store --from-tar=layer.tar - 2>>err || echo "exit $?" >&2; } | wc -c
            grep -c 'cannot fill store: Permission denied' err; find store | wc -l
            """, in: dir.path)
        #expect(r.status == 0, "stderr: \(r.err)")
        #expect(r.out == "exit 1\n0\n0\n0\n3\n1\n")
        #expect(r.err == "exit 1\nexit 1\n")
    }

    /// A full filesystem while the image is written in place: truncated
    /// back to zero length.
    @Test(.root) func aFullFilesystemLeavesAnEmptyFile() throws {
        let dir = try RootScratch("output-enospc")
        defer { dir.remove() }
        _ = try ScanFS.write(Array(dir.file("big.dump").utf8), Self.bigDump(20_000, bad: false))
        let r = try Self.bash(
            """
            chmod 755 .; mkdir t; mount -t tmpfs -o size=64k,mode=755 tmpfs t; trap 'umount t' EXIT
            $MK --from-file big.dump /proc/self/fd/3 3> t/blob 2>&1 || echo "exit $?"; stat -c %s t/blob
            echo old > t/image.cfs; chown nobody t/image.cfs
            setpriv --reuid=65534 --regid=65534 --clear-groups $MK --from-file big.dump t/image.cfs 2>&1 || echo "exit $?"
            stat -c %s t/image.cfs; ls t
            """, in: dir.path)
        #expect(r.status == 0, "stderr: \(r.err)")
        #expect(
            r.out == """
                mkcomposefs: cannot write file /proc/self/fd/3: No space left on device
                exit 1
                0
                mkcomposefs: cannot write file t/image.cfs: No space left on device
                exit 1
                0
                blob
                image.cfs

                """)
    }

    /// --digest-store and --from-tar runs that write in place: the same
    /// image and the same objects as a run that writes a file.
    @Test func storesFillWhateverTheOutput() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let r = try Self.bash(
            """
            \(Self.tree)
            $MK --digest-store=s1 src file.cfs; $MK --digest-store=s2 src /dev/stdout | cat > piped.cfs
            $MK --digest-store=s3 --print-digest src /proc/self/fd/3 3> blob.cfs > digest
            cmp file.cfs piped.cfs && cmp file.cfs blob.cfs && echo same image
            [ "$($MK --print-digest-only src)" = "$(cat digest)" ] && echo same digest
            diff -r s1 s2 && diff -r s1 s3 && echo same store; find s1 -type f | wc -l
            $MK --digest-store=t1 --from-tar=layer.tar tar.cfs
            $MK --digest-store=t2 --from-tar=- /dev/fd/1 < layer.tar | cat > tar-piped.cfs
            cmp tar.cfs tar-piped.cfs && diff -r t1 t2 && echo same from tar
            """, in: dir.path)
        #expect(r.status == 0, "stderr: \(r.err)")
        #expect(r.out == "same image\nsame digest\nsame store\n5\nsame from tar\n")
    }
}

import Foundation
import Glibc
import Testing

@testable import ComposeFS

/// mkcomposefs's output as callers hand it over (FORMAT.md §19.1): devices
/// and symbolic links stay what they are, descriptors, pipes and FIFOs get
/// the image in place, and no failure leaves anything that looks like an
/// image. Images are checked against upstream's (the cstorage fixtures'
/// `.sha256` and `.digest` were written by upstream's mkcomposefs).
@Suite struct OutputTargetTests {
    /// A dump shaped as containers/storage writes it, and upstream's results.
    struct Expected {
        var dump: String
        var sha256: String
        var digest: String

        init(_ name: String) throws {
            dump = Fixtures.url("cstorage/\(name).dump").path
            sha256 = try Fixtures.token("cstorage/\(name).sha256")
            digest = try Fixtures.token("cstorage/\(name).digest")
        }
    }

    static let names = (0..<12).map { String(format: "cstorage-%02d", $0) }

    /// Runs a bash script with `$MK` (this mkcomposefs), `$D`, `$SHA` and
    /// `$DIGEST` (a cstorage fixture and upstream's results) set, in `dir`.
    static func bash(_ script: String, in dir: String, _ expected: Expected? = nil) throws -> Tools.Result {
        let bin = try #require(Tools.directory)
        var env = [
            "MK": bin + "/mkcomposefs", "INFO": bin + "/composefs-info", "W": dir,
            "INVOKE": Self.package + "/scripts/cstorage-invoke"
        ]
        if let expected { env.merge(["D": expected.dump, "SHA": expected.sha256, "DIGEST": expected.digest]) { $1 } }
        return try Tools.run("/bin/bash", ["-c", "set -euo pipefail; cd \"$W\"; " + script], environment: env)
    }

    static let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func expectOK(_ r: Tools.Result, _ out: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 0, "stderr: \(r.err)", sourceLocation: sourceLocation)
        #expect(r.out == out, "stderr: \(r.err)", sourceLocation: sourceLocation)
    }

    /// Upstream's image and digest from every containers/storage-shaped
    /// dump, to a file and to standard output; its listing survives the
    /// round trip through `composefs-info dump` (the image need not: as
    /// upstream's, it can differ in nlink and hardlink order).
    @Test(arguments: names) func upstreamsImageForEveryDumpShape(_ name: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let e = try Expected(name)
        let r = try Self.bash(
            """
            $MK --from-file "$D" out.cfs; sha256sum < out.cfs | cut -c1-64
            $MK --print-digest-only --from-file "$D"
            $MK --from-file - - < "$D" | sha256sum | cut -c1-64
            $INFO dump out.cfs | $MK --from-file - /dev/stdout > again.cfs
            cmp <($INFO dump out.cfs) <($INFO dump again.cfs) && echo same listing
            """, in: dir.path, e)
        Self.expectOK(r, "\(e.sha256)\n\(e.digest)\n\(e.sha256)\nsame listing\n")
    }

    /// containers/storage's two ways of calling mkcomposefs (scripts/cstorage-invoke):
    /// the image lands in the file it created, read back through its second,
    /// read-only descriptor.
    @Test(arguments: names) func containersStorageInvocations(_ name: String) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let e = try Expected(name)
        for mode in ["fd3", "stdout"] {
            let r = try Self.bash("python3 \"$INVOKE\" \(mode) \"$MK\" \"$D\" blob-\(mode) | grep sha256", in: dir.path, e)
            Self.expectOK(r, "sha256: \(e.sha256)\n")
        }
        #expect(try dir.contents() == ["blob-fd3", "blob-stdout"])
    }

    @Test func pipesFIFOsAndDescriptors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let e = try Expected("cstorage-07")
        let r = try Self.bash(
            """
            $MK --from-file "$D" /dev/stdout | sha256sum | cut -c1-64
            $MK --from-file "$D" /dev/fd/1 | sha256sum | cut -c1-64
            $MK --from-file "$D" /proc/self/fd/1 | sha256sum | cut -c1-64
            mkfifo fifo; sha256sum < fifo | cut -c1-64 > from-fifo & $MK --from-file "$D" fifo; wait; cat from-fifo
            $MK --print-digest --from-file "$D" /proc/self/fd/3 3> blob; sha256sum < blob | cut -c1-64
            [ -p fifo ] && echo still a fifo
            """, in: dir.path, e)
        Self.expectOK(r, String(repeating: "\(e.sha256)\n", count: 4) + "\(e.digest)\n\(e.sha256)\nstill a fifo\n")
    }

    @Test func symbolicLinksAreFollowedAndKept() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let e = try Expected("cstorage-05")
        let r = try Self.bash(
            """
            mkdir images; ln -s images/x.cfs link.cfs; ln -s link.cfs chain.cfs
            $MK --from-file "$D" chain.cfs
            [ -L link.cfs ] && [ -L chain.cfs ] && readlink link.cfs
            sha256sum < images/x.cfs | cut -c1-64
            echo old > images/x.cfs; chmod 600 images/x.cfs
            $MK --from-file "$D" link.cfs; sha256sum < images/x.cfs | cut -c1-64; stat -c %a images/x.cfs
            ls -A images
            """, in: dir.path, e)
        Self.expectOK(r, "images/x.cfs\n\(e.sha256)\n\(e.sha256)\n600\nx.cfs\n")
    }

    /// /dev/null and /dev/stdout, as copies made in a scratch directory:
    /// still a device and a symbolic link afterwards.
    @Test(.root) func devicesAndTheirLinksStay() throws {
        let dir = try RootScratch("output-devices")
        defer { dir.remove() }
        let e = try Expected("cstorage-06")
        let r = try Self.bash(
            """
            mknod null c 1 3; chmod 666 null; ln -s /proc/self/fd/1 stdout
            $MK --from-file "$D" null
            $MK --from-file "$D" stdout | sha256sum | cut -c1-64
            $MK --from-file "$D" /dev/null
            stat -c '%F %t:%T' null /dev/null; readlink stdout; ls
            """, in: dir.path, e)
        Self.expectOK(r, "\(e.sha256)\ncharacter special file 1:3\ncharacter special file 1:3\n/proc/self/fd/1\nnull\nstdout\n")
    }

    /// mkcomposefs(1)'s sandboxing advice: a user who can write nothing
    /// but the descriptor it is handed, also with `/` read-only.
    @Test(.root) func theSandboxedInvocationAsNobody() throws {
        let dir = try RootScratch("output-sandbox")
        defer { dir.remove() }
        let e = try Expected("cstorage-10")
        let asNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups"
        let r = try Self.bash(
            """
            chmod 755 .
            \(asNobody) $MK --from-file - /proc/self/fd/3 < "$D" 3> blob
            sha256sum < blob | cut -c1-64; stat -c '%U %a' blob
            \(asNobody) $MK --print-digest --from-file - /dev/fd/3 < "$D" 3> blob2; sha256sum < blob2 | cut -c1-64
            mkdir w
            unshare --mount --propagation private bash -euc '
                mount -t tmpfs -o size=16m tmpfs w; mount -o remount,bind,ro /
                touch /tmp/x 2>/dev/null && echo root is writable
                \(asNobody) $MK --from-file - /proc/self/fd/3 < "$D" 3> w/blob
                sha256sum < w/blob | cut -c1-64'
            ls
            """, in: dir.path, e)
        Self.expectOK(r, "\(e.sha256)\nroot 644\n\(e.digest)\n\(e.sha256)\n\(e.sha256)\nblob\nblob2\nw\n")
    }

    /// An existing file in a directory the user cannot write, or in a
    /// sticky directory where it belongs to someone else: written in place
    /// (same inode, same owner), as upstream writes it.
    @Test(.root) func anExistingFileInAReadOnlyDirectory() throws {
        let dir = try RootScratch("output-readonly-dir")
        defer { dir.remove() }
        let e = try Expected("cstorage-04")
        let r = try Self.bash(
            """
            chmod 755 .; echo old > image.cfs; chown nobody image.cfs; before=$(stat -c %i image.cfs)
            setpriv --reuid=65534 --regid=65534 --clear-groups $MK --from-file "$D" image.cfs
            sha256sum < image.cfs | cut -c1-64; [ "$(stat -c %i image.cfs)" = "$before" ] && echo same inode
            printf '/ 0 40755 1 0 0 0 0.0 - - -\\n/x 0 bad\\n' > bad.dump
            setpriv --reuid=65534 --regid=65534 --clear-groups $MK --from-file bad.dump image.cfs 2>&1 || echo "exit $?"
            stat -c %s image.cfs
            mkdir sticky; chmod 1777 sticky; echo old > sticky/shared.cfs; chmod 666 sticky/shared.cfs
            before=$(stat -c %i sticky/shared.cfs)
            setpriv --reuid=65534 --regid=65534 --clear-groups $MK --from-file "$D" sticky/shared.cfs
            sha256sum < sticky/shared.cfs | cut -c1-64; stat -c '%i %U' sticky/shared.cfs | grep -q "^$before root$" && echo kept
            ls; ls -A sticky
            """, in: dir.path, e)
        Self.expectOK(
            r,
            "\(e.sha256)\nsame inode\nmkcomposefs: bad.dump: line 2: Invalid integer bad\nexit 1\n0\n"
                + "\(e.sha256)\nkept\nbad.dump\nimage.cfs\nsticky\nshared.cfs\n")
    }

    /// A terminal on standard output is refused, as upstream refuses it
    /// (script(1) gives the command a pseudo-terminal).
    @Test func aTerminalIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let e = try Expected("cstorage-01")
        let r = try Self.bash("script -qec \"$MK --from-file $D -\" /dev/null | tr -d '\\r' || echo \"exit $?\"; ls", in: dir.path, e)
        Self.expectOK(r, "mkcomposefs: stdout is a tty.  Refusing to use it\nexit 1\n")
    }
}

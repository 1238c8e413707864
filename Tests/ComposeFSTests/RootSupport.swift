import Foundation
import Glibc
import Testing

/// Tests that need root or a kernel feature: under CI=true they fail when
/// they cannot run; elsewhere they are skipped with a message.
enum Privilege {
    static var isRoot: Bool { geteuid() == 0 }

    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Returns false (and records an Issue in CI, or prints
    /// "skipped: <why>" otherwise) when the condition does not hold.
    static func require(_ condition: Bool, _ why: String, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if condition { return true }
        if inCI {
            Issue.record("cannot run under CI=true: \(why)", sourceLocation: sourceLocation)
        } else {
            print("skipped: \(why) (\(sourceLocation.fileName):\(sourceLocation.line))")
        }
        return false
    }

    static func requireRoot(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        require(isRoot, "needs root (running as uid \(geteuid()))", sourceLocation: sourceLocation)
    }
}

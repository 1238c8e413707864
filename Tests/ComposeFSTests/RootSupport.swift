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

/// A test (or suite) that needs something of the machine: where it is
/// missing the test is skipped, visibly, with the reason; under CI=true it
/// fails instead.
struct Requirement: TestTrait, SuiteTrait {
    let met: @Sendable () -> Bool
    let why: String

    struct Unmet: Error, CustomStringConvertible {
        var description: String
    }

    func prepare(for test: Test) async throws {
        if met() { return }
        if Privilege.inCI { throw Unmet(description: "cannot run under CI=true: \(why)") }
        try Test.cancel("skipped: \(why)")
    }
}

extension Trait where Self == Requirement {
    /// Runs as root only.
    static var root: Requirement {
        Requirement(met: { Privilege.isRoot }, why: "needs root (running as uid \(geteuid()))")
    }

    static func requires(_ why: String, _ met: @escaping @Sendable () -> Bool) -> Requirement {
        Requirement(met: met, why: why)
    }
}

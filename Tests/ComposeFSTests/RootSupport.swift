import Foundation
import Glibc
import Testing

/// Who runs the tests, and where.
enum Privilege {
    static var isRoot: Bool { geteuid() == 0 }

    /// Under CI=true a test that cannot run fails (see `Requirement`).
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
}

/// A test (or suite) that needs something of the machine: where it is
/// missing the test is skipped, visibly, with the reason; under CI=true it
/// fails instead.
struct Requirement: TestTrait, SuiteTrait {
    let met: @Sendable () -> Bool
    let why: String
    /// Where the test belongs at all; elsewhere (CI included) it is
    /// skipped, with `place` as the reason.
    var applies: @Sendable () -> Bool = { true }
    var place = ""

    struct Unmet: Error, CustomStringConvertible {
        var description: String
    }

    func prepare(for test: Test) async throws {
        if !applies() { try Test.cancel("skipped: \(place)") }
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

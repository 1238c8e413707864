import ComposeFSProperties
import Foundation
import Testing

@testable import ComposeFS

/// The FUSE server's handlers without a kernel (Properties.checkFuseServer):
/// every node of valid and corrupted images looked up, listed, read; no
/// trap, every reply decodable.
@Suite struct FuseHandlerTests {
    static func images() throws -> [(String, [UInt8])] {
        var out = HostileImageTests.bases
        for i in 0..<12 {
            let name = String(format: "cstorage-%02d", i)
            out.append((name, try ImageWriter.write(try DumpParser.parse(try Fixtures.bytes("cstorage/\(name).dump")))))
        }
        return out
    }

    @Test func validImagesAnswerEveryRequest() throws {
        for (name, image) in try Self.images() {
            var problems: [String] = []
            Properties.checkFuseServer(image) { problems.append($0) }
            #expect(problems.isEmpty, "\(name): \(problems.prefix(5))")
        }
    }

    /// A sample of HostileImageTests' corruptions (every tenth).
    @Test func corruptedImagesNeverTrap() throws {
        var served = 0
        for (name, image) in HostileImageTests.bases {
            let corrupted = try HostileImageTests.corruptions(of: image, seed: 7)
            for (k, bad) in corrupted.enumerated() where k % 10 == 0 {
                var problems: [String] = []
                Properties.checkFuseServer(bad) { problems.append($0) }
                #expect(problems.filter { $0 == "INIT failed" }.isEmpty, "\(name) #\(k): \(problems.prefix(3))")
                served += 1
            }
        }
        #expect(served > 500)
    }
}

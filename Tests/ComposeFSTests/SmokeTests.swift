import Testing
@testable import ComposeFS

@Test func placeholder() { #expect(true) }

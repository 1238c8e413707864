// libFuzzer's driver, entered from each target's main.swift. The targets are
// built with `-sanitize=fuzzer,address`; SwiftPM defines `main` for the
// executable, so libFuzzer's own `main` is never linked and we hand our entry
// function to `LLVMFuzzerRunDriver` instead.

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ cb: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

public typealias FuzzEntry = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

/// Runs libFuzzer with the process's arguments and `entry` as the target.
public func runFuzzer(_ entry: FuzzEntry) -> Int32 {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&argc, &argv, entry)
}

/// The input as an array (libFuzzer passes nil for an empty input).
@inline(__always)
public func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// The targets' `report` for the ComposeFSProperties checks: a property
/// violation traps, so libFuzzer saves the input as a crash.
public func violation(_ what: String) -> Never {
    fatalError("fuzz property violated: \(what)")
}

/// The standard library's `withUnsafe*` functions rethrow untyped errors;
/// these keep a typed error typed.

@inline(__always)
func withBytes<T, R, E: Swift.Error>(_ array: [T], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    var result: Result<R, E>!
    array.withUnsafeBytes { b in
        do throws(E) { result = .success(try body(b)) } catch { result = .failure(error) }
    }
    return try result.get()
}

@inline(__always)
func withMutableBytes<T, R, E: Swift.Error>(_ array: inout [T], _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
    var result: Result<R, E>!
    array.withUnsafeMutableBytes { b in
        do throws(E) { result = .success(try body(b)) } catch { result = .failure(error) }
    }
    return try result.get()
}

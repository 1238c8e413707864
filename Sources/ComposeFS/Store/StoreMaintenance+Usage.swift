extension StoreMaintenance {
    /// Objects and their bytes.
    public struct Amount: Equatable, Sendable {
        public var objects = 0
        public var bytes: UInt64 = 0

        mutating func add(_ size: UInt64) {
            objects += 1
            bytes += size
        }
    }

    /// What each image costs in the store.
    public struct Usage: Sendable {
        public struct Image: Sendable {
            public var path: FilePath
            /// Objects it refers to that are in the store.
            public var total = Amount()
            /// Used by no other image given: what removing it would free.
            public var exclusive = Amount()
            /// Also used by another image given.
            public var shared = Amount()
            /// Objects it refers to that the store lacks.
            public var missing = 0
        }

        public var images: [Image] = []
        /// Everything in the store.
        public var store = Amount()
        /// In the store but used by none of the images given.
        public var unreferenced = Amount()
    }

    /// The cost of each image in the store, by the objects they share.
    public static func usage(store path: FilePath, images: [FilePath]) throws(Error) -> Usage {
        let store: ObjectStore
        do { store = try ObjectStore(readingAt: path) } catch { throw .store(error) }
        let sets = try objects(of: images)
        let contents: ObjectStore.Contents
        do { contents = try store.contents(sizes: true) } catch { throw .store(error) }
        var sizes: [ObjectID: UInt64] = [:]
        sizes.reserveCapacity(contents.objects.count)
        var usage = Usage()
        for o in contents.objects {
            sizes[o.id] = o.size
            usage.store.add(o.size)
        }
        // How many of the images use each object.
        var users: [ObjectID: Int] = [:]
        for set in sets { for id in set { users[id, default: 0] += 1 } }
        for (i, set) in sets.enumerated() {
            var image = Usage.Image(path: images[i])
            for id in set {
                guard let size = sizes[id] else {
                    image.missing += 1
                    continue
                }
                image.total.add(size)
                if users[id] == 1 { image.exclusive.add(size) } else { image.shared.add(size) }
            }
            usage.images.append(image)
        }
        for o in contents.objects where users[o.id] == nil { usage.unreferenced.add(o.size) }
        return usage
    }
}

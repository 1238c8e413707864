#ifndef CCOMPOSEFS_SHIMS_H
#define CCOMPOSEFS_SHIMS_H

#include <stdint.h>
#include <stddef.h>

/// FS_IOC_MEASURE_VERITY with a SHA-256 sized buffer.
/// Returns the digest size (>= 0) written to `digest`, or -1 with errno set.
int cfs_measure_verity(int fd, uint8_t *digest, size_t capacity, uint16_t *algorithm);

/// FS_IOC_ENABLE_VERITY: version 1, SHA-256, 4096-byte blocks, no salt, no signature.
/// Returns 0 or -1 with errno set.
int cfs_enable_verity(int fd);

#endif

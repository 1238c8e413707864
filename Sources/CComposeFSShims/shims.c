#include "CComposeFSShims.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fsverity.h>

int cfs_measure_verity(int fd, uint8_t *digest, size_t capacity, uint16_t *algorithm) {
    union {
        struct fsverity_digest d;
        uint8_t raw[sizeof(struct fsverity_digest) + 64];
    } buf;
    memset(&buf, 0, sizeof(buf));
    buf.d.digest_size = 64;
    if (ioctl(fd, FS_IOC_MEASURE_VERITY, &buf.d) != 0)
        return -1;
    if (buf.d.digest_size > capacity || buf.d.digest_size > 64) {
        errno = EOVERFLOW;
        return -1;
    }
    memcpy(digest, buf.d.digest, buf.d.digest_size);
    if (algorithm)
        *algorithm = buf.d.digest_algorithm;
    return buf.d.digest_size;
}

int cfs_enable_verity(int fd) {
    struct fsverity_enable_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.version = 1;
    arg.hash_algorithm = FS_VERITY_HASH_ALG_SHA256;
    arg.block_size = 4096;
    return ioctl(fd, FS_IOC_ENABLE_VERITY, &arg);
}

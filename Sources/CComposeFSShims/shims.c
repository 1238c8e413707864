#define _GNU_SOURCE 1
#include "CComposeFSShims.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
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

int cfs_ficlone(int dst, int src) {
    return ioctl(dst, FICLONE, src);
}

long cfs_copy_file_range(int src, int dst, size_t length) {
    return (long)copy_file_range(src, NULL, dst, NULL, length, 0);
}

int cfs_syncfs(int fd) {
    return syncfs(fd);
}

int cfs_o_tmpfile(void) {
    return O_TMPFILE;
}

int cfs_affinity_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    return CPU_COUNT(&set);
}

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
#include <linux/loop.h>
#include <sys/syscall.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <syslog.h>
#include <spawn.h>
#include <stdlib.h>
#include <linux/fuse.h>

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

int cfs_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE);
}

int cfs_syncfs(int fd) {
    return syncfs(fd);
}

int cfs_o_tmpfile(void) {
    return O_TMPFILE;
}

int cfs_o_path(void) {
    return O_PATH;
}

long cfs_filesystem_type(int fd) {
    struct statfs st;
    if (fstatfs(fd, &st) != 0)
        return -1;
    return (long)st.f_type;
}

int cfs_affinity_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    return CPU_COUNT(&set);
}

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
enum { CFS_FSCONFIG_SET_FLAG = 0, CFS_FSCONFIG_SET_STRING = 1, CFS_FSCONFIG_CMD_CREATE = 6 };

struct cfs_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

int cfs_fsopen(const char *fstype) {
    return (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
}

int cfs_fsconfig_string(int fd, const char *key, const char *value) {
    return (int)syscall(SYS_fsconfig, fd, CFS_FSCONFIG_SET_STRING, key, value, 0);
}

int cfs_fsconfig_flag(int fd, const char *key) {
    return (int)syscall(SYS_fsconfig, fd, CFS_FSCONFIG_SET_FLAG, key, NULL, 0);
}

int cfs_fsconfig_create(int fd) {
    return (int)syscall(SYS_fsconfig, fd, CFS_FSCONFIG_CMD_CREATE, NULL, NULL, 0);
}

int cfs_fsmount(int fd, int readonly) {
    return (int)syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, readonly ? MOUNT_ATTR_RDONLY : 0);
}

int cfs_move_mount(int mntfd, const char *target) {
    return (int)syscall(SYS_move_mount, mntfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
}

int cfs_mount_setattr_idmap(int mntfd, int usernsfd) {
    struct cfs_mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = (uint64_t)usernsfd;
    return (int)syscall(SYS_mount_setattr, mntfd, "", AT_EMPTY_PATH, &attr, sizeof(attr));
}

int cfs_open_tree_clone(const char *path) {
    return (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
}

int cfs_unshare_mount_namespace(void) {
    return unshare(CLONE_NEWNS);
}

int cfs_make_mounts_private(const char *path) {
    return mount(NULL, path, NULL, MS_REC | MS_PRIVATE, NULL);
}

int cfs_mount_overlay_legacy(const char *source, const char *target, int readonly, int silent, const char *data) {
    unsigned long flags = (readonly ? MS_RDONLY : 0) | (silent ? MS_SILENT : 0);
    return mount(source, target, "overlay", flags, data);
}

int cfs_loop_get_free(int controlfd) {
    return ioctl(controlfd, LOOP_CTL_GET_FREE);
}

int cfs_loop_configure(int loopfd, int filefd, const char *name) {
    struct loop_config config;
    memset(&config, 0, sizeof(config));
    config.fd = (uint32_t)filefd;
    config.block_size = 4096;
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    if (name)
        strncpy((char *)config.info.lo_file_name, name, LO_NAME_SIZE - 1);
    return ioctl(loopfd, LOOP_CONFIGURE, &config);
}

int cfs_setns_mount(int nsfd) {
    return setns(nsfd, CLONE_NEWNS);
}

int cfs_recv_fd(int sock) {
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    if (n == 0) {
        errno = ECONNRESET;
        return -1;
    }
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    if (cmsg == NULL || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
        cmsg->cmsg_len != CMSG_LEN(sizeof(int))) {
        errno = EPROTO;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
    return fd;
}

int cfs_fuse_clone(int newfd, int session) {
    uint32_t s = (uint32_t)session;
    return ioctl(newfd, FUSE_DEV_IOC_CLONE, &s);
}

void cfs_syslog(const char *ident, int priority, const char *message) {
    openlog(ident, LOG_PID, LOG_DAEMON);
    syslog(priority, "%s", message);
}

static int cfs_compare_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int cfs_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
              int in, int out, int err, const int *keep, int keep_count) {
    posix_spawn_file_actions_t actions;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0)
        return rc;
    int stdio[3] = {in, out, err};
    for (int target = 0; target < 3 && rc == 0; target++)
        if (stdio[target] >= 0)
            rc = posix_spawn_file_actions_adddup2(&actions, stdio[target], target);
    /* Close the gaps between the kept descriptors (sorted), then all
       above the last: nothing else of this process leaks into the child,
       close-on-exec or not. */
    int sorted[64];
    if (keep_count < 0 || keep_count > 64) {
        posix_spawn_file_actions_destroy(&actions);
        return EINVAL;
    }
    for (int i = 0; i < keep_count; i++)
        sorted[i] = keep[i];
    qsort(sorted, (size_t)keep_count, sizeof(int), cfs_compare_int);
    int next = 3;
    for (int i = 0; i < keep_count && rc == 0; i++) {
        for (int fd = next; fd < sorted[i] && rc == 0; fd++)
            if (fcntl(fd, F_GETFD) >= 0)
                rc = posix_spawn_file_actions_addclose(&actions, fd);
        if (sorted[i] >= next)
            next = sorted[i] + 1;
    }
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(&actions, next);
    if (rc == 0)
        rc = posix_spawn(pid, path, &actions, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

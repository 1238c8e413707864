#ifndef CCOMPOSEFS_SHIMS_H
#define CCOMPOSEFS_SHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/xattr.h>

/// FS_IOC_MEASURE_VERITY with a SHA-256 sized buffer.
/// Returns the digest size (>= 0) written to `digest`, or -1 with errno set.
int cfs_measure_verity(int fd, uint8_t *digest, size_t capacity, uint16_t *algorithm);

/// FS_IOC_ENABLE_VERITY: version 1, SHA-256, 4096-byte blocks, no salt, no signature.
/// Returns 0 or -1 with errno set.
int cfs_enable_verity(int fd);

/// FICLONE: share `src`'s extents with `dst` (reflink). 0 or -1 with errno.
int cfs_ficlone(int dst, int src);

/// copy_file_range(2) from the current offsets. Bytes copied or -1 with errno.
long cfs_copy_file_range(int src, int dst, size_t length);

/// renameat2(2) with RENAME_NOREPLACE: EEXIST when `newpath` exists.
/// 0 or -1 with errno (EINVAL where the filesystem cannot do it).
int cfs_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/// syncfs(2): flush the filesystem holding `fd`. 0 or -1 with errno.
int cfs_syncfs(int fd);

/// O_TMPFILE and O_PATH for open(2) (hidden behind _GNU_SOURCE in the C headers).
int cfs_o_tmpfile(void);
int cfs_o_path(void);

/// fstatfs(2)'s f_type of the filesystem holding `fd`, or -1 with errno.
long cfs_filesystem_type(int fd);

/// CPUs in this process's affinity mask (0 if unknown).
int cfs_affinity_cpu_count(void);

// The new mount API and loop devices (raw syscalls and ioctls).
// Each returns -1 with errno set on failure.
int cfs_fsopen(const char *fstype);
int cfs_fsconfig_string(int fd, const char *key, const char *value);
int cfs_fsconfig_flag(int fd, const char *key);
int cfs_fsconfig_create(int fd);
int cfs_fsmount(int fd, int readonly);
int cfs_move_mount(int mntfd, const char *target);
int cfs_mount_setattr_idmap(int mntfd, int usernsfd);
int cfs_open_tree_clone(const char *path);
int cfs_unshare_mount_namespace(void);
int cfs_setns_mount(int nsfd);
int cfs_make_mounts_private(const char *path);
int cfs_mount_overlay_legacy(const char *source, const char *target, int readonly, int silent, const char *data);
int cfs_loop_get_free(int controlfd);
int cfs_loop_configure(int loopfd, int filefd, const char *name);

/// recvmsg(2) of one byte carrying one descriptor (SCM_RIGHTS): the
/// descriptor, or -1 with errno (ECONNRESET at end of stream).
int cfs_recv_fd(int sock);

/// FUSE_DEV_IOC_CLONE: attach a new /dev/fuse descriptor to `session`'s
/// connection. 0 or -1 with errno.
int cfs_fuse_clone(int newfd, int session);

/// syslog(LOG_DAEMON | priority, "%s", message) as `ident`.
void cfs_syslog(const char *ident, int priority, const char *message);

/// posix_spawn(3) of `path` with `argv`, `envp`: standard input, output
/// and error from `in`, `out`, `err` when >= 0; every other descriptor
/// from 3 on closed in the child unless listed in `keep` (`keep_count`
/// entries). 0 or an errno value.
int cfs_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
              int in, int out, int err, const int *keep, int keep_count);

#endif

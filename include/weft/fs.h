/*
 * weft/fs.h - files and name resolution, awaited from a task: libuv runs
 * each call in its thread pool (uv_fs_*, uv_getaddrinfo), the task waits
 * through the bridge (weft/stream.h). docs/io.md, "Files" and "DNS".
 *
 * Every call runs in a task of the calling thread's loop (WEFT_ENOTASK
 * otherwise) and has a _timeout form (timeout_ms; WEFT_FOREVER = none,
 * 0 = UV_ETIMEDOUT unless done at once - it never is: the pool answers
 * later). Errors are libuv's (UV_ENOENT, UV_EACCES, UV_EEXIST...).
 *
 * Cancel and timeout: a call whose request is still queued in the pool is
 * cancelled (nothing happens; UV_ECANCELED / UV_ETIMEDOUT). One already
 * running cannot be stopped: calls that only name paths (open, stat,
 * unlink, rename, mkdir, getaddrinfo...) return at once and the request
 * finishes unseen in the background (an open's fd is then closed, a
 * result freed); read and write, which use the caller's buffer, wait for
 * the running request to end and return its real outcome, with the
 * cancel still pending for the task's next suspension
 * (weft_uv_await_pinned). So a cancelled unlink, rename or mkdir may have
 * happened.
 *
 * libuv's pool has UV_THREADPOOL_SIZE threads (4 by default, read once at
 * the first request), shared by every loop of the process and separate
 * from weft's CPU pool (weft/pool.h): slow file calls queue behind each
 * other there, not behind CPU work.
 */
#ifndef WEFT_FS_H
#define WEFT_FS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* open(2): 0 with *fd, or the error (*fd -1). flags/mode as open(2)'s. */
WEFT_WARN_UNUSED int weft_fs_open(const char *path, int flags, int mode, int *fd);
WEFT_WARN_UNUSED int weft_fs_open_timeout(const char *path, int flags, int mode,
                                          uint64_t timeout_ms, int *fd);
/* close(2). UV_EBADF for a closed fd. */
int weft_fs_close(int fd);
int weft_fs_close_timeout(int fd, uint64_t timeout_ms);
/* pread(2) at offset (offset < 0: read(2) at the file position): 0 with
 * *got (0 at the end of the file). UV_EINVAL for NULL buf/got. */
WEFT_WARN_UNUSED int weft_fs_read(int fd, void *buf, size_t n, int64_t offset, size_t *got);
WEFT_WARN_UNUSED int weft_fs_read_timeout(int fd, void *buf, size_t n, int64_t offset,
                                          uint64_t timeout_ms, size_t *got);
/* pwrite(2) at offset (offset < 0: write(2) at the file position, or the
 * end with O_APPEND): 0 with *wrote (may be NULL; a short write is
 * possible, as for write(2)). */
WEFT_WARN_UNUSED int weft_fs_write(int fd, const void *data, size_t n, int64_t offset,
                                   size_t *wrote);
WEFT_WARN_UNUSED int weft_fs_write_timeout(int fd, const void *data, size_t n, int64_t offset,
                                           uint64_t timeout_ms, size_t *wrote);
/* stat(2) / fstat(2) into *st (libuv's portable uv_stat_t). */
WEFT_WARN_UNUSED int weft_fs_stat(const char *path, uv_stat_t *st);
WEFT_WARN_UNUSED int weft_fs_stat_timeout(const char *path, uint64_t timeout_ms, uv_stat_t *st);
WEFT_WARN_UNUSED int weft_fs_fstat(int fd, uv_stat_t *st);
WEFT_WARN_UNUSED int weft_fs_fstat_timeout(int fd, uint64_t timeout_ms, uv_stat_t *st);
/* unlink(2), rename(2), mkdir(2), fsync(2), fdatasync(2). */
WEFT_WARN_UNUSED int weft_fs_unlink(const char *path);
WEFT_WARN_UNUSED int weft_fs_unlink_timeout(const char *path, uint64_t timeout_ms);
WEFT_WARN_UNUSED int weft_fs_rename(const char *from, const char *to);
WEFT_WARN_UNUSED int weft_fs_rename_timeout(const char *from, const char *to, uint64_t timeout_ms);
WEFT_WARN_UNUSED int weft_fs_mkdir(const char *path, int mode);
WEFT_WARN_UNUSED int weft_fs_mkdir_timeout(const char *path, int mode, uint64_t timeout_ms);
WEFT_WARN_UNUSED int weft_fs_fsync(int fd);
WEFT_WARN_UNUSED int weft_fs_fsync_timeout(int fd, uint64_t timeout_ms);
WEFT_WARN_UNUSED int weft_fs_fdatasync(int fd);
WEFT_WARN_UNUSED int weft_fs_fdatasync_timeout(int fd, uint64_t timeout_ms);

/* The whole file at path, at most limit bytes (limit > 0): 0 with *data (a
 * new buffer of *len bytes plus a NUL after them; free it with
 * weft_fs_free) - files whose size stat does not know (/proc) are read to
 * their end. UV_EFBIG (more than limit bytes), UV_EINVAL (NULL, limit 0),
 * and open/read's errors; the file is closed in every case. The timeout
 * bounds the whole call. */
WEFT_WARN_UNUSED int weft_fs_read_file(const char *path, size_t limit, char **data, size_t *len);
WEFT_WARN_UNUSED int weft_fs_read_file_timeout(const char *path, size_t limit, uint64_t timeout_ms,
                                               char **data, size_t *len);
/* Free what weft_fs_read_file returned. NULL is ignored. */
void weft_fs_free(void *data);

/* ---- DNS ------------------------------------------------------------------------ */

/* getaddrinfo(3) in the pool: 0 with *res (free it with
 * weft_freeaddrinfo), UV_EAI_* (UV_EAI_NONAME...), UV_EINVAL (node and
 * service both NULL, res NULL). hints may be NULL. */
WEFT_WARN_UNUSED int weft_getaddrinfo(const char *node, const char *service,
                                      const struct addrinfo *hints, struct addrinfo **res);
WEFT_WARN_UNUSED int weft_getaddrinfo_timeout(const char *node, const char *service,
                                              const struct addrinfo *hints, uint64_t timeout_ms,
                                              struct addrinfo **res);
void weft_freeaddrinfo(struct addrinfo *res);
/* getnameinfo(3): the host and service of addr (IPv4 or IPv6) into host
 * (hostlen bytes; NULL/0 = not wanted) and service, NUL-terminated
 * (truncated to fit). flags: NI_NUMERICHOST etc. 0, UV_EAI_*, UV_EINVAL
 * (addr NULL or not AF_INET/AF_INET6, both outputs absent). */
WEFT_WARN_UNUSED int weft_getnameinfo(const struct sockaddr *addr, int flags, char *host,
                                      size_t hostlen, char *service, size_t servlen);
WEFT_WARN_UNUSED int weft_getnameinfo_timeout(const struct sockaddr *addr, int flags,
                                              uint64_t timeout_ms, char *host, size_t hostlen,
                                              char *service, size_t servlen);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_FS_H */

/*
 * io/fs.c - files and DNS awaited through the bridge (weft/fs.h,
 * docs/io.md). Each call is one bridge request: start the uv_fs_* /
 * uv_getaddrinfo call with the bridge's callback, await it, copy the
 * result out, free. read and write await "pinned" (their buffers are the
 * caller's): see weft_uv_await_pinned in weft/stream.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/fs.h>
#include <weft/stream.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "io_int.h"

/* A new fs request, or NULL with *rc (WEFT_ENOTASK, UV_ENOMEM). */
static uv_fs_t *fs_req(int *rc)
{
    if (weft_task_current() == NULL) {
        *rc = WEFT_ENOTASK;
        return NULL;
    }
    uv_fs_t *req = (uv_fs_t *)weft_uv_req_new(UV_FS);
    *rc = req == NULL ? UV_ENOMEM : 0;
    return req;
}

static uv_loop_t *uvl(void)
{
    return weft_loop_uv(NULL);
}

/* Await a started request (start = the uv_fs_* call's return) and free it:
 * for the calls whose result is only a status. */
static int finish(uv_fs_t *req, int start, uint64_t timeout_ms)
{
    int rc = start;
    if (rc == 0)
        rc = weft_uv_await((uv_req_t *)req, timeout_ms, NULL);
    weft_uv_req_free((uv_req_t *)req);
    return rc;
}

int weft_fs_open_timeout(const char *path, int flags, int mode, uint64_t timeout_ms, int *fd)
{
    if (fd != NULL)
        *fd = -1;
    if (path == NULL || fd == NULL)
        return UV_EINVAL;
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    int64_t res = -1;
    rc = uv_fs_open(uvl(), req, path, flags, mode, weft_uv_fs_cb);
    if (rc == 0)
        rc = weft_uv_await((uv_req_t *)req, timeout_ms, &res);
    weft_uv_req_free((uv_req_t *)req); /* abandoned: the bridge closes the fd */
    if (rc == 0)
        *fd = (int)res;
    return rc;
}

int weft_fs_open(const char *path, int flags, int mode, int *fd)
{
    return weft_fs_open_timeout(path, flags, mode, WEFT_FOREVER, fd);
}

int weft_fs_close_timeout(int fd, uint64_t timeout_ms)
{
    if (fd < 0)
        return UV_EBADF;
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    return finish(req, uv_fs_close(uvl(), req, fd, weft_uv_fs_cb), timeout_ms);
}

int weft_fs_close(int fd)
{
    return weft_fs_close_timeout(fd, WEFT_FOREVER);
}

/* read or write: one buffer, pinned. */
static int rw(bool write, int fd, void *buf, size_t n, int64_t offset, uint64_t timeout_ms,
              size_t *done)
{
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    uv_buf_t b = uv_buf_init(buf, n > UINT32_MAX ? UINT32_MAX : (unsigned)n);
    int64_t off = offset < 0 ? -1 : offset;
    rc = write ? uv_fs_write(uvl(), req, fd, &b, 1, off, weft_uv_fs_cb)
               : uv_fs_read(uvl(), req, fd, &b, 1, off, weft_uv_fs_cb);
    int64_t res = 0;
    if (rc == 0)
        rc = weft_uv_await_pinned((uv_req_t *)req, timeout_ms, &res);
    weft_uv_req_free((uv_req_t *)req);
    if (rc == 0)
        *done = (size_t)res;
    return rc;
}

int weft_fs_read_timeout(int fd, void *buf, size_t n, int64_t offset, uint64_t timeout_ms,
                         size_t *got)
{
    if (got != NULL)
        *got = 0;
    if (buf == NULL || got == NULL)
        return UV_EINVAL;
    return rw(false, fd, buf, n, offset, timeout_ms, got);
}

int weft_fs_read(int fd, void *buf, size_t n, int64_t offset, size_t *got)
{
    return weft_fs_read_timeout(fd, buf, n, offset, WEFT_FOREVER, got);
}

int weft_fs_write_timeout(int fd, const void *data, size_t n, int64_t offset, uint64_t timeout_ms,
                          size_t *wrote)
{
    size_t w = 0;
    if (wrote != NULL)
        *wrote = 0;
    if (data == NULL && n > 0)
        return UV_EINVAL;
    int rc = rw(true, fd, (void *)data, n, offset, timeout_ms, &w);
    if (wrote != NULL)
        *wrote = w;
    return rc;
}

int weft_fs_write(int fd, const void *data, size_t n, int64_t offset, size_t *wrote)
{
    return weft_fs_write_timeout(fd, data, n, offset, WEFT_FOREVER, wrote);
}

/* stat or fstat (path NULL). */
static int stat_of(const char *path, int fd, uint64_t timeout_ms, uv_stat_t *st)
{
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    rc = path != NULL ? uv_fs_stat(uvl(), req, path, weft_uv_fs_cb)
                      : uv_fs_fstat(uvl(), req, fd, weft_uv_fs_cb);
    if (rc == 0)
        rc = weft_uv_await((uv_req_t *)req, timeout_ms, NULL);
    if (rc == 0)
        *st = req->statbuf;
    weft_uv_req_free((uv_req_t *)req);
    return rc;
}

int weft_fs_stat_timeout(const char *path, uint64_t timeout_ms, uv_stat_t *st)
{
    if (path == NULL || st == NULL)
        return UV_EINVAL;
    return stat_of(path, -1, timeout_ms, st);
}

int weft_fs_stat(const char *path, uv_stat_t *st)
{
    return weft_fs_stat_timeout(path, WEFT_FOREVER, st);
}

int weft_fs_fstat_timeout(int fd, uint64_t timeout_ms, uv_stat_t *st)
{
    if (st == NULL)
        return UV_EINVAL;
    if (fd < 0)
        return UV_EBADF;
    return stat_of(NULL, fd, timeout_ms, st);
}

int weft_fs_fstat(int fd, uv_stat_t *st)
{
    return weft_fs_fstat_timeout(fd, WEFT_FOREVER, st);
}

int weft_fs_unlink_timeout(const char *path, uint64_t timeout_ms)
{
    if (path == NULL)
        return UV_EINVAL;
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    return finish(req, uv_fs_unlink(uvl(), req, path, weft_uv_fs_cb), timeout_ms);
}

int weft_fs_unlink(const char *path)
{
    return weft_fs_unlink_timeout(path, WEFT_FOREVER);
}

int weft_fs_rename_timeout(const char *from, const char *to, uint64_t timeout_ms)
{
    if (from == NULL || to == NULL)
        return UV_EINVAL;
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    return finish(req, uv_fs_rename(uvl(), req, from, to, weft_uv_fs_cb), timeout_ms);
}

int weft_fs_rename(const char *from, const char *to)
{
    return weft_fs_rename_timeout(from, to, WEFT_FOREVER);
}

int weft_fs_mkdir_timeout(const char *path, int mode, uint64_t timeout_ms)
{
    if (path == NULL)
        return UV_EINVAL;
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    return finish(req, uv_fs_mkdir(uvl(), req, path, mode, weft_uv_fs_cb), timeout_ms);
}

int weft_fs_mkdir(const char *path, int mode)
{
    return weft_fs_mkdir_timeout(path, mode, WEFT_FOREVER);
}

static int sync_of(int fd, bool data_only, uint64_t timeout_ms)
{
    if (fd < 0)
        return UV_EBADF;
    int rc;
    uv_fs_t *req = fs_req(&rc);
    if (req == NULL)
        return rc;
    rc = data_only ? uv_fs_fdatasync(uvl(), req, fd, weft_uv_fs_cb)
                   : uv_fs_fsync(uvl(), req, fd, weft_uv_fs_cb);
    return finish(req, rc, timeout_ms);
}

int weft_fs_fsync_timeout(int fd, uint64_t timeout_ms)
{
    return sync_of(fd, false, timeout_ms);
}

int weft_fs_fsync(int fd)
{
    return sync_of(fd, false, WEFT_FOREVER);
}

int weft_fs_fdatasync_timeout(int fd, uint64_t timeout_ms)
{
    return sync_of(fd, true, timeout_ms);
}

int weft_fs_fdatasync(int fd)
{
    return sync_of(fd, true, WEFT_FOREVER);
}

/* ---- read a whole file ------------------------------------------------------------ */

/* Read fd to its end into a buffer of at most limit bytes (+1 NUL). */
static int read_all(int fd, size_t limit, uint64_t deadline, size_t hint, char **data, size_t *len)
{
    size_t cap = hint > 0 && hint < limit ? hint + 1 : (limit < 4096 ? limit + 1 : 4096);
    char *buf = weft__malloc(cap);
    if (buf == NULL)
        return UV_ENOMEM;
    size_t have = 0;
    int rc;
    for (;;) {
        if (have + 1 == cap) { /* full: grow, up to one past the limit */
            if (have > limit) {
                rc = UV_EFBIG;
                break;
            }
            size_t ncap = cap * 2 > limit + 2 ? limit + 2 : cap * 2;
            char *nb = weft__realloc(buf, ncap);
            if (nb == NULL) {
                rc = UV_ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got;
        rc = weft_fs_read_timeout(fd, buf + have, cap - 1 - have, -1, weft__io_remaining(deadline),
                                  &got);
        if (rc != 0)
            break;
        if (got == 0) {
            if (have > limit) {
                rc = UV_EFBIG;
                break;
            }
            buf[have] = 0;
            *data = buf;
            *len = have;
            return 0;
        }
        have += got;
    }
    weft__free(buf);
    return rc;
}

int weft_fs_read_file_timeout(const char *path, size_t limit, uint64_t timeout_ms, char **data,
                              size_t *len)
{
    if (data != NULL)
        *data = NULL;
    if (len != NULL)
        *len = 0;
    if (path == NULL || data == NULL || len == NULL || limit == 0 || limit > SIZE_MAX / 2)
        return UV_EINVAL;
    uint64_t deadline = weft__io_deadline(timeout_ms);
    int fd;
    int rc = weft_fs_open_timeout(path, O_RDONLY | O_CLOEXEC, 0, timeout_ms, &fd);
    if (rc != 0)
        return rc;
    uv_stat_t st;
    rc = weft_fs_fstat_timeout(fd, weft__io_remaining(deadline), &st);
    if (rc == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_size > limit)
        rc = UV_EFBIG;
    if (rc == 0)
        rc = read_all(fd, limit, deadline, (size_t)st.st_size, data, len);
    /* Close even when cancelled or past the deadline: a no-cancel region
     * and no timeout (a close of a regular file is quick). */
    int nc = weft_nocancel_begin();
    int crc = weft_fs_close(fd);
    if (nc == 0)
        (void)weft_nocancel_end();
    if (crc == UV_ENOMEM) /* no request to be had: close it here, at once */
        crc = close(fd) == 0 ? 0 : uv_translate_sys_error(errno);
    if (rc == 0 && crc != 0) {
        weft__free(*data);
        *data = NULL;
        *len = 0;
        rc = crc;
    }
    return rc;
}

int weft_fs_read_file(const char *path, size_t limit, char **data, size_t *len)
{
    return weft_fs_read_file_timeout(path, limit, WEFT_FOREVER, data, len);
}

void weft_fs_free(void *data)
{
    weft__free(data);
}

/* ---- DNS ------------------------------------------------------------------------ */

int weft_getaddrinfo_timeout(const char *node, const char *service, const struct addrinfo *hints,
                             uint64_t timeout_ms, struct addrinfo **res)
{
    if (res != NULL)
        *res = NULL;
    if ((node == NULL && service == NULL) || res == NULL)
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    uv_getaddrinfo_t *req = (uv_getaddrinfo_t *)weft_uv_req_new(UV_GETADDRINFO);
    if (req == NULL)
        return UV_ENOMEM;
    int rc = uv_getaddrinfo(uvl(), req, weft_uv_getaddrinfo_cb, node, service, hints);
    if (rc == 0)
        rc = weft_uv_await((uv_req_t *)req, timeout_ms, NULL);
    if (rc == 0) {
        *res = req->addrinfo;
        req->addrinfo = NULL; /* ours now: the bridge's clean-up leaves it */
    }
    weft_uv_req_free((uv_req_t *)req);
    return rc;
}

int weft_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res)
{
    return weft_getaddrinfo_timeout(node, service, hints, WEFT_FOREVER, res);
}

void weft_freeaddrinfo(struct addrinfo *res)
{
    if (res != NULL)
        uv_freeaddrinfo(res);
}

static void copy_out(char *dst, size_t cap, const char *src)
{
    if (dst == NULL || cap == 0)
        return;
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

int weft_getnameinfo_timeout(const struct sockaddr *addr, int flags, uint64_t timeout_ms,
                             char *host, size_t hostlen, char *service, size_t servlen)
{
    if (host != NULL && hostlen > 0)
        host[0] = 0;
    if (service != NULL && servlen > 0)
        service[0] = 0;
    if (addr == NULL || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
        ((host == NULL || hostlen == 0) && (service == NULL || servlen == 0)))
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    uv_getnameinfo_t *req = (uv_getnameinfo_t *)weft_uv_req_new(UV_GETNAMEINFO);
    if (req == NULL)
        return UV_ENOMEM;
    int rc = uv_getnameinfo(uvl(), req, weft_uv_getnameinfo_cb, addr, flags); /* copies addr */
    if (rc == 0)
        rc = weft_uv_await((uv_req_t *)req, timeout_ms, NULL);
    if (rc == 0) {
        copy_out(host, hostlen, req->host);
        copy_out(service, servlen, req->service);
    }
    weft_uv_req_free((uv_req_t *)req);
    return rc;
}

int weft_getnameinfo(const struct sockaddr *addr, int flags, char *host, size_t hostlen,
                     char *service, size_t servlen)
{
    return weft_getnameinfo_timeout(addr, flags, WEFT_FOREVER, host, hostlen, service, servlen);
}

/*
 * tests/fs_test.c - files and DNS awaited from tasks (weft/fs.h): the
 * calls, read_file's limit, timeouts, cancelling a request that is running
 * in libuv's pool (a FIFO open or read that blocks there), misuse. Files
 * live in a fresh directory under /tmp; names resolve on this machine only
 * (numeric addresses, "localhost" when it resolves).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/weft.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

static char dir[64], path_a[96], path_b[96];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/weft-fs-%d", (int)getpid());
    snprintf(path_a, sizeof path_a, "%s/a", dir);
    snprintf(path_b, sizeof path_b, "%s/b", dir);
}

TASK_TEST(fs, write_read_stat_rename_unlink)
{
    make_dir();
    EXPECT_OK(weft_fs_mkdir(dir, 0700));
    EXPECT_RC(weft_fs_mkdir(dir, 0700), UV_EEXIST);
    int fd;
    EXPECT_OK(weft_fs_open(path_a, O_CREAT | O_RDWR | O_TRUNC, 0600, &fd));
    cr_expect_geq(fd, 0);
    size_t n;
    EXPECT_OK(weft_fs_write(fd, "hello world", 11, 0, &n));
    cr_expect_eq(n, 11);
    EXPECT_OK(weft_fs_write(fd, "W", 1, 6, NULL)); /* pwrite */
    EXPECT_OK(weft_fs_fsync(fd));
    EXPECT_OK(weft_fs_fdatasync(fd));
    char buf[32];
    EXPECT_OK(weft_fs_read(fd, buf, sizeof buf, 0, &n));
    cr_expect_eq(n, 11);
    cr_expect(memcmp(buf, "hello World", 11) == 0);
    EXPECT_OK(weft_fs_read(fd, buf, 5, 6, &n)); /* pread */
    cr_expect(memcmp(buf, "World", 5) == 0);
    EXPECT_OK(weft_fs_read(fd, buf, sizeof buf, 11, &n));
    cr_expect_eq(n, 0); /* end of file */
    /* offset -1: the file position (at 0: nothing read or written through it yet). */
    EXPECT_OK(weft_fs_read(fd, buf, 5, -1, &n));
    cr_expect(memcmp(buf, "hello", 5) == 0);
    uv_stat_t st;
    EXPECT_OK(weft_fs_fstat(fd, &st));
    cr_expect_eq(st.st_size, 11);
    EXPECT_OK(weft_fs_close(fd));
    EXPECT_RC(weft_fs_close(fd), UV_EBADF);
    EXPECT_OK(weft_fs_rename(path_a, path_b));
    EXPECT_RC(weft_fs_stat(path_a, &st), UV_ENOENT);
    EXPECT_OK(weft_fs_stat(path_b, &st));
    cr_expect_eq(st.st_size, 11);
    char *data;
    EXPECT_OK(weft_fs_read_file(path_b, 11, &data, &n));
    cr_expect_eq(n, 11);
    cr_expect_str_eq(data, "hello World");
    weft_fs_free(data);
    EXPECT_RC(weft_fs_read_file(path_b, 10, &data, &n), UV_EFBIG);
    cr_expect_null(data);
    EXPECT_OK(weft_fs_unlink(path_b));
    EXPECT_RC(weft_fs_unlink(path_b), UV_ENOENT);
    EXPECT_RC(weft_fs_read_file(path_b, 100, &data, &n), UV_ENOENT);
    EXPECT_OK(rmdir(dir) == 0 ? 0 : -1);
    return 0;
}

/* A file stat calls empty (/proc) is read to its end, within the limit. */
TASK_TEST(fs, read_file_of_unknown_size)
{
    char *data;
    size_t n;
    EXPECT_OK(weft_fs_read_file("/proc/self/status", 1 << 20, &data, &n));
    cr_expect_gt(n, 0);
    cr_expect(strstr(data, "Pid:") != NULL);
    weft_fs_free(data);
    EXPECT_RC(weft_fs_read_file("/proc/self/status", 16, &data, &n), UV_EFBIG);
    /* A bigger file than one read's first buffer. */
    make_dir();
    EXPECT_OK(weft_fs_mkdir(dir, 0700));
    int fd;
    EXPECT_OK(weft_fs_open(path_a, O_CREAT | O_WRONLY | O_TRUNC, 0600, &fd));
    static char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('0' + i % 10);
    size_t w;
    EXPECT_OK(weft_fs_write(fd, big, sizeof big, -1, &w));
    cr_expect_eq(w, sizeof big);
    EXPECT_OK(weft_fs_close(fd));
    EXPECT_OK(weft_fs_read_file(path_a, sizeof big, &data, &n));
    cr_expect_eq(n, sizeof big);
    cr_expect(memcmp(data, big, sizeof big) == 0);
    weft_fs_free(data);
    EXPECT_OK(weft_fs_unlink(path_a));
    EXPECT_OK(rmdir(dir) == 0 ? 0 : -1);
    return 0;
}

TASK_TEST(fs, timeouts_of_zero)
{
    uv_stat_t st;
    EXPECT_RC(weft_fs_stat_timeout("/", 0, &st), UV_ETIMEDOUT);
    int fd = 5;
    EXPECT_RC(weft_fs_open_timeout("/proc/self/status", O_RDONLY, 0, 0, &fd), UV_ETIMEDOUT);
    cr_expect_eq(fd, -1);
    char *data;
    size_t n;
    EXPECT_RC(weft_fs_read_file_timeout("/proc/self/status", 1 << 20, 0, &data, &n), UV_ETIMEDOUT);
    struct addrinfo *ai;
    EXPECT_RC(weft_getaddrinfo_timeout("127.0.0.1", "80", NULL, 0, &ai), UV_ETIMEDOUT);
    EXPECT_OK(weft_fs_stat_timeout("/", 10000, &st));
    return 0;
}

/* ---- cancelling a request that runs in the pool ----------------------------------- */

static char fifo[96];
static int task_rc, task_fd, after_rc;
static size_t task_got;
static char task_buf[8];

static int open_fifo(void *arg, void **result)
{
    (void)arg;
    (void)result;
    task_rc = weft_fs_open(fifo, O_RDONLY, 0, &task_fd);
    return 0;
}

/* A FIFO's open blocks (in the pool) until a writer opens it: uv_cancel
 * cannot stop it, the waiter returns at once, and the fd it makes later is
 * closed by the bridge (no fd leaks, nothing leaks under ASan). */
TASK_TEST(fs, cancel_a_running_open)
{
    make_dir();
    snprintf(fifo, sizeof fifo, "%s.fifo", dir);
    (void)unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    weft_task_t *t;
    task_rc = 1;
    EXPECT_OK(weft_spawn(NULL, open_fifo, NULL, &t));
    EXPECT_OK(weft_sleep(20));
    cr_expect_eq(task_rc, 1);
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(task_rc, UV_ECANCELED);
    /* Let the pool's open finish: a writer appears (O_RDWR never blocks,
     * and it counts as a writer, whether the open started yet or not).
     * Held until libuv has no request left: the callback then closed the
     * abandoned fd. */
    int w = open(fifo, O_RDWR);
    cr_assert_geq(w, 0);
    for (int i = 0; i < 5000 && weft_loop_uv(NULL)->active_reqs.count > 0; i++)
        EXPECT_OK(weft_sleep(1));
    cr_expect_eq(weft_loop_uv(NULL)->active_reqs.count, 0);
    close(w);
    unlink(fifo);
    return 0;
}

static int read_then_sleep(void *arg, void **result)
{
    (void)arg;
    (void)result;
    task_rc = weft_fs_read(task_fd, task_buf, sizeof task_buf, -1, &task_got);
    after_rc = weft_sleep(10000); /* the cancel still pending ends this */
    return 0;
}

/* A read uses the caller's buffer: a cancel while it runs waits for its
 * end (the buffer is never written after the call) and returns the real
 * outcome; the cancel ends the task's next suspension. */
TASK_TEST(fs, cancel_a_running_read_waits_for_it)
{
    make_dir();
    snprintf(fifo, sizeof fifo, "%s.fifo", dir);
    (void)unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int w = open(fifo, O_RDWR); /* Linux: a FIFO opened O_RDWR does not block */
    cr_assert_geq(w, 0);
    EXPECT_OK(weft_fs_open(fifo, O_RDONLY, 0, &task_fd));
    weft_task_t *t;
    task_rc = after_rc = 1;
    EXPECT_OK(weft_spawn(NULL, read_then_sleep, NULL, &t));
    EXPECT_OK(weft_sleep(50)); /* the pool's thread is in the read */
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_sleep(20));
    if (task_rc == UV_ECANCELED) {
        /* The pool had not started it: cancelled while queued, the other
         * path (a loaded machine). */
        cr_log_warn("the read was still queued: the running path was not exercised");
    } else {
        cr_expect_eq(task_rc, 1); /* still waiting: the read runs */
        cr_assert_eq(write(w, "xyz", 3), 3);
    }
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    if (task_rc != UV_ECANCELED) {
        EXPECT_OK(task_rc);
        cr_expect_eq(task_got, 3);
        cr_expect(memcmp(task_buf, "xyz", 3) == 0);
        EXPECT_RC(after_rc, UV_ECANCELED);
    }
    EXPECT_OK(weft_fs_close(task_fd));
    close(w);
    unlink(fifo);
    return 0;
}

/* ---- DNS ------------------------------------------------------------------------ */

TASK_TEST(dns, getaddrinfo_and_getnameinfo)
{
    struct addrinfo hints = {.ai_family = AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    EXPECT_OK(weft_getaddrinfo("127.0.0.1", "8080", &hints, &ai));
    cr_assert_not_null(ai);
    cr_expect_eq(ai->ai_family, AF_INET);
    char host[64], serv[16];
    EXPECT_OK(weft_getnameinfo(ai->ai_addr, NI_NUMERICHOST | NI_NUMERICSERV, host, sizeof host,
                               serv, sizeof serv));
    cr_expect_str_eq(host, "127.0.0.1");
    cr_expect_str_eq(serv, "8080");
    char tiny[4];
    EXPECT_OK(weft_getnameinfo(ai->ai_addr, NI_NUMERICHOST, tiny, sizeof tiny, NULL, 0));
    cr_expect_str_eq(tiny, "127"); /* truncated to fit */
    weft_freeaddrinfo(ai);
    EXPECT_RC(weft_getaddrinfo("not an address", NULL, &hints, &ai), UV_EAI_NONAME);
    cr_expect_null(ai);
    int rc = weft_getaddrinfo("localhost", NULL, NULL, &ai);
    if (rc == 0)
        weft_freeaddrinfo(ai);
    else
        cr_log_warn("localhost does not resolve here (%s)", weft_err_name(rc));
    return 0;
}

/* ---- misuse --------------------------------------------------------------------- */

TASK_TEST(fs_misuse, null_and_bad_fds)
{
    int fd;
    size_t n;
    uv_stat_t st;
    char b[4];
    char *data;
    EXPECT_RC(weft_fs_open(NULL, O_RDONLY, 0, &fd), UV_EINVAL);
    EXPECT_RC(weft_fs_open("/", O_RDONLY, 0, NULL), UV_EINVAL);
    EXPECT_RC(weft_fs_read(-1, b, 4, 0, &n), UV_EBADF);
    EXPECT_RC(weft_fs_read(0, NULL, 4, 0, &n), UV_EINVAL);
    EXPECT_RC(weft_fs_read(0, b, 4, 0, NULL), UV_EINVAL);
    EXPECT_RC(weft_fs_write(-1, b, 4, 0, &n), UV_EBADF);
    EXPECT_RC(weft_fs_write(0, NULL, 4, 0, &n), UV_EINVAL);
    EXPECT_RC(weft_fs_stat(NULL, &st), UV_EINVAL);
    EXPECT_RC(weft_fs_stat("/", NULL), UV_EINVAL);
    EXPECT_RC(weft_fs_fstat(-1, &st), UV_EBADF);
    EXPECT_RC(weft_fs_unlink(NULL), UV_EINVAL);
    EXPECT_RC(weft_fs_rename(NULL, "x"), UV_EINVAL);
    EXPECT_RC(weft_fs_mkdir(NULL, 0700), UV_EINVAL);
    EXPECT_RC(weft_fs_fsync(-1), UV_EBADF);
    EXPECT_RC(weft_fs_fdatasync(-1), UV_EBADF);
    EXPECT_RC(weft_fs_close(-1), UV_EBADF);
    EXPECT_RC(weft_fs_read_file(NULL, 10, &data, &n), UV_EINVAL);
    EXPECT_RC(weft_fs_read_file("/", 0, &data, &n), UV_EINVAL);
    EXPECT_RC(weft_fs_read_file("/", 10, NULL, &n), UV_EINVAL);
    weft_fs_free(NULL);
    struct addrinfo *ai;
    EXPECT_RC(weft_getaddrinfo(NULL, NULL, NULL, &ai), UV_EINVAL);
    EXPECT_RC(weft_getaddrinfo("127.0.0.1", NULL, NULL, NULL), UV_EINVAL);
    weft_freeaddrinfo(NULL);
    struct sockaddr sa = {.sa_family = AF_UNIX};
    char host[8];
    EXPECT_RC(weft_getnameinfo(NULL, 0, host, sizeof host, NULL, 0), UV_EINVAL);
    EXPECT_RC(weft_getnameinfo(&sa, 0, host, sizeof host, NULL, 0), UV_EINVAL);
    return 0;
}

Test(fs_misuse, outside_tasks, .timeout = TEST_TIMEOUT_S)
{
    int fd;
    uv_stat_t st;
    struct addrinfo *ai;
    EXPECT_RC(weft_fs_open("/", O_RDONLY, 0, &fd), WEFT_ENOTASK);
    EXPECT_RC(weft_fs_stat("/", &st), WEFT_ENOTASK);
    EXPECT_RC(weft_getaddrinfo("127.0.0.1", NULL, NULL, &ai), WEFT_ENOTASK);
}

/* The lowest free fd number: the same before and after a call that must
 * not leak one. */
static int next_fd(void)
{
    int fd = dup(0);
    if (fd >= 0)
        close(fd);
    return fd;
}

TASK_TEST(fs_misuse, out_of_memory_leaks_nothing)
{
    uv_stat_t st;
    weft__alloc_fail_after(0);
    EXPECT_RC(weft_fs_stat("/", &st), UV_ENOMEM);
    weft__alloc_fail_after(-1);
    /* read_file: the open and the fstat get their requests, the buffer does
     * not; the close then has no request either and closes directly. */
    int before = next_fd();
    char *data;
    size_t n;
    weft__alloc_fail_after(2);
    EXPECT_RC(weft_fs_read_file("/proc/self/status", 1 << 20, &data, &n), UV_ENOMEM);
    weft__alloc_fail_after(-1);
    cr_expect_null(data);
    cr_expect_eq(next_fd(), before);
    struct addrinfo *ai;
    weft__alloc_fail_after(0);
    EXPECT_RC(weft_getaddrinfo("127.0.0.1", NULL, NULL, &ai), UV_ENOMEM);
    weft__alloc_fail_after(-1);
    return 0;
}

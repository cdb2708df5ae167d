/*
 * tests/unix_test.c - unix domain sockets and pipes as streams
 * (weft/pipe.h): a unix server and client, pipe(2) and socketpair fds,
 * the reader/writer API over them, cancellation, and misuse. Socket files
 * live in /tmp under a name with the test process's pid (Criterion runs
 * each test in its own process).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft/weft.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

static char sock_path[64];

static const char *path_for(const char *tag)
{
    snprintf(sock_path, sizeof sock_path, "/tmp/weft-unix-%d-%s.sock", (int)getpid(), tag);
    (void)unlink(sock_path);
    return sock_path;
}

static int echo_lines(weft_stream_t *s, void *arg)
{
    (void)arg;
    char line[256];
    for (int i = 0; i < 10000; i++) {
        size_t len;
        int rc = weft_stream_readline(s, line, sizeof line, &len);
        if (rc == UV_EOF)
            return len == 0 ? 0 : weft_stream_write(s, line, len);
        if (rc != 0)
            return rc;
        rc = weft_stream_write(s, line, len);
        if (rc == 0)
            rc = weft_stream_drain(s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

TASK_TEST(unixsock, echo_lines_over_a_unix_socket)
{
    const char *path = path_for("echo");
    weft_unix_server_t *srv;
    EXPECT_OK(weft_unix_serve(NULL, path, echo_lines, NULL, NULL, &srv));
    cr_expect_eq(access(path, F_OK), 0);
    weft_stream_t *c;
    EXPECT_OK(weft_unix_connect(path, NULL, &c));
    cr_expect_null(weft_stream_tcp(c));
    cr_expect_not_null(weft_stream_uv(c));
    for (int i = 0; i < 20; i++) {
        char msg[32], back[32];
        int n = snprintf(msg, sizeof msg, "line %d\n", i);
        size_t len;
        EXPECT_OK(weft_stream_write(c, msg, (size_t)n));
        EXPECT_OK(weft_stream_readline(c, back, sizeof back, &len));
        cr_expect_eq(len, (size_t)n);
        cr_expect(memcmp(msg, back, (size_t)n) == 0);
    }
    /* Half-close: the server's readline sees EOF and its handler returns;
     * this side still reads the end. */
    EXPECT_OK(weft_stream_write(c, "tail", 4));
    EXPECT_OK(weft_stream_shutdown(c));
    char b[8];
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(c, b, 4, &got));
    cr_expect(memcmp(b, "tail", 4) == 0);
    EXPECT_RC(weft_stream_read(c, b, sizeof b, &got), UV_EOF);
    EXPECT_OK(weft_stream_close(c));
    cr_expect_eq(weft_unix_server_accepted(srv), 1);
    EXPECT_OK(weft_unix_server_close(srv));
    cr_expect_neq(access(path, F_OK), 0); /* the socket file is gone */
    return 0;
}

TASK_TEST(unixsock, connect_errors)
{
    weft_stream_t *c = (weft_stream_t *)1;
    const char *path = path_for("none");
    EXPECT_RC(weft_unix_connect(path, NULL, &c), UV_ENOENT);
    cr_expect_null(c);
    /* A file that is not a socket. */
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    EXPECT_RC(weft_unix_connect(path, NULL, &c), UV_ECONNREFUSED);
    /* Binding over it needs unlink_existing. */
    weft_unix_server_t *srv;
    EXPECT_RC(weft_unix_serve(NULL, path, echo_lines, NULL, NULL, &srv), UV_EADDRINUSE);
    weft_unix_server_opts_t o = {.unlink_existing = true};
    EXPECT_OK(weft_unix_serve(NULL, path, echo_lines, NULL, &o, &srv));
    EXPECT_OK(weft_unix_server_close(srv));
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    EXPECT_RC(weft_unix_connect(longp, NULL, &c), UV_ENAMETOOLONG);
    EXPECT_RC(weft_unix_serve(NULL, longp, echo_lines, NULL, NULL, &srv), UV_ENAMETOOLONG);
    EXPECT_RC(weft_unix_connect_timeout(path, NULL, 0, &c), UV_ETIMEDOUT);
    return 0;
}

/* A blocked read on a unix stream is cancelled; the stream stays usable. */
static weft_stream_t *blocked_c;
static int blocked_rc;

static int read_blocked(void *arg, void **result)
{
    (void)arg;
    (void)result;
    char b[8];
    size_t got;
    blocked_rc = weft_stream_read(blocked_c, b, sizeof b, &got);
    return 0;
}

static int hold_open(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[8];
    size_t got;
    int rc = weft_stream_read(s, b, sizeof b, &got); /* until the client writes */
    if (rc == 0)
        rc = weft_stream_write(s, b, got);
    return rc;
}

TASK_TEST(unixsock, cancel_blocked_read_leaves_the_stream_usable)
{
    const char *path = path_for("cancel");
    weft_unix_server_t *srv;
    EXPECT_OK(weft_unix_serve(NULL, path, hold_open, NULL, NULL, &srv));
    EXPECT_OK(weft_unix_connect(path, NULL, &blocked_c));
    weft_task_t *t;
    blocked_rc = 1;
    EXPECT_OK(weft_spawn(NULL, read_blocked, NULL, &t));
    EXPECT_OK(weft_sleep(10));
    cr_expect_eq(blocked_rc, 1);
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(blocked_rc, UV_ECANCELED);
    EXPECT_OK(weft_stream_write(blocked_c, "ok", 2));
    char b[2];
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(blocked_c, b, 2, &got));
    cr_expect(memcmp(b, "ok", 2) == 0);
    EXPECT_OK(weft_stream_close(blocked_c));
    EXPECT_OK(weft_unix_server_close(srv));
    return 0;
}

static int never_returns(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[8];
    size_t got;
    return weft_stream_read(s, b, sizeof b, &got);
}

TASK_TEST(unixsock, max_connections_and_close_cancels_handlers)
{
    const char *path = path_for("max");
    weft_unix_server_t *srv;
    weft_unix_server_opts_t o = {.max_connections = 1};
    EXPECT_OK(weft_unix_serve(NULL, path, never_returns, NULL, &o, &srv));
    weft_stream_t *a, *b;
    EXPECT_OK(weft_unix_connect(path, NULL, &a));
    for (int i = 0; i < 200 && weft_unix_server_connections(srv) == 0; i++)
        EXPECT_OK(weft_sleep(1));
    EXPECT_OK(weft_unix_connect(path, NULL, &b));
    char x[4];
    size_t got;
    EXPECT_RC(weft_stream_read_timeout(b, x, sizeof x, 5000, &got), UV_EOF); /* refused */
    cr_expect_eq(weft_unix_server_refused(srv), 1);
    cr_expect_eq(weft_unix_server_connections(srv), 1);
    EXPECT_OK(weft_unix_server_close(srv));
    int rc = weft_stream_read_timeout(a, x, sizeof x, 5000, &got);
    cr_expect(rc == UV_EOF || rc == UV_ECONNRESET, "got %s", weft_err_name(rc));
    EXPECT_OK(weft_stream_close(a));
    EXPECT_OK(weft_stream_close(b));
    return 0;
}

/* ---- pipe(2) and socketpair fds ------------------------------------------------ */

TASK_TEST(pipe, both_ends_of_a_pipe)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    weft_stream_t *r, *w;
    EXPECT_OK(weft_pipe_open(fds[0], NULL, &r));
    EXPECT_OK(weft_pipe_open(fds[1], NULL, &w));
    /* Bigger than the pipe's 64 KiB kernel buffer: the writer buffers,
     * drain waits for the reader. */
    static char big[200000], back[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    EXPECT_OK(weft_stream_write(w, big, sizeof big));
    cr_expect_gt(weft_stream_buffered(w), 0);
    size_t got;
    char b[4];
    EXPECT_RC(weft_stream_read(w, b, sizeof b, &got), UV_EBADF); /* write-only end */
    EXPECT_OK(weft_stream_read_exactly(r, back, sizeof back, &got));
    cr_expect(memcmp(big, back, sizeof big) == 0);
    EXPECT_OK(weft_stream_close(w)); /* flushes, then the reader sees EOF */
    EXPECT_RC(weft_stream_read(r, b, sizeof b, &got), UV_EOF);
    EXPECT_OK(weft_stream_close(r));
    /* The streams closed the fds. */
    cr_expect_eq(fcntl(fds[0], F_GETFD), -1);
    cr_expect_eq(fcntl(fds[1], F_GETFD), -1);
    return 0;
}

TASK_TEST(pipe, socketpair_readline_and_timeouts)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    weft_stream_t *a, *b;
    EXPECT_OK(weft_pipe_open(sv[0], NULL, &a));
    EXPECT_OK(weft_pipe_open(sv[1], NULL, &b));
    char line[16];
    size_t len;
    EXPECT_RC(weft_stream_readline_timeout(b, line, sizeof line, 0, &len), UV_ETIMEDOUT);
    EXPECT_RC(weft_stream_readline_timeout(b, line, sizeof line, 5, &len), UV_ETIMEDOUT);
    EXPECT_OK(weft_stream_write(a, "x\ny", 3));
    EXPECT_OK(weft_stream_readline(b, line, sizeof line, &len));
    cr_expect_eq(len, 2);
    EXPECT_OK(weft_stream_abort(a)); /* no reset on a pipe: the peer sees EOF */
    EXPECT_RC(weft_stream_readline(b, line, sizeof line, &len), UV_EOF);
    cr_expect_eq(len, 1);
    cr_expect_eq(line[0], 'y');
    EXPECT_OK(weft_stream_close(b));
    return 0;
}

TASK_TEST(pipe, misuse)
{
    weft_stream_t *s = (weft_stream_t *)1;
    EXPECT_RC(weft_pipe_open(-1, NULL, &s), UV_EINVAL);
    cr_expect_null(s);
    EXPECT_RC(weft_pipe_open(0, NULL, NULL), UV_EINVAL);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    close(fds[1]);
    EXPECT_RC(weft_pipe_open(fds[1], NULL, &s), UV_EBADF); /* not open */
    weft_stream_opts_t bad = {.write_high = 1, .write_low = 2};
    EXPECT_RC(weft_pipe_open(fds[0], &bad, &s), UV_EINVAL);
    cr_expect_neq(fcntl(fds[0], F_GETFD), -1); /* an error leaves fd open */
    close(fds[0]);
    char tmpl[] = "/tmp/weft-pipe-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0);
    EXPECT_RC(weft_pipe_open(fd, NULL, &s), UV_ENOTSUP); /* a regular file */
    close(fd);
    unlink(tmpl);
    EXPECT_RC(weft_unix_connect(NULL, NULL, &s), UV_EINVAL);
    EXPECT_RC(weft_unix_connect("/tmp/x", NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_unix_connect("/tmp/x", &bad, &s), UV_EINVAL);
    weft_unix_server_t *srv = (weft_unix_server_t *)1;
    EXPECT_RC(weft_unix_serve(NULL, NULL, echo_lines, NULL, NULL, &srv), UV_EINVAL);
    cr_expect_null(srv);
    EXPECT_RC(weft_unix_serve(NULL, "/tmp/x", NULL, NULL, NULL, &srv), UV_EINVAL);
    EXPECT_RC(weft_unix_serve(NULL, "", echo_lines, NULL, NULL, &srv), UV_EINVAL);
    EXPECT_RC(weft_unix_server_close(NULL), UV_EINVAL);
    cr_expect_eq(weft_unix_server_connections(NULL), 0);
    cr_expect_null(weft_stream_uv(NULL));
    return 0;
}

Test(pipe_misuse, outside_tasks, .timeout = TEST_TIMEOUT_S)
{
    weft_stream_t *s;
    EXPECT_RC(weft_unix_connect("/tmp/x", NULL, &s), WEFT_ENOTASK);
    EXPECT_RC(weft_pipe_open(0, NULL, &s), UV_EINVAL); /* no loop on this thread */
}

static int echo_bytes(weft_stream_t *s, void *arg)
{
    (void)arg;
    char buf[256];
    for (int i = 0; i < 1000000; i++) {
        size_t got;
        int rc = weft_stream_read(s, buf, sizeof buf, &got);
        if (rc == UV_EOF)
            return 0;
        if (rc == 0)
            rc = weft_stream_write(s, buf, got);
        if (rc != 0)
            return rc;
    }
    return 0;
}

TASK_TEST(unixsock, steady_state_echo_makes_no_allocator_calls)
{
    const char *path = path_for("alloc");
    weft_unix_server_t *srv;
    EXPECT_OK(weft_unix_serve(NULL, path, echo_bytes, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_unix_connect(path, NULL, &c));
    char msg[64], back[64];
    memset(msg, 'p', sizeof msg);
    size_t got;
    for (int i = 0; i < 50; i++) {
        EXPECT_OK(weft_stream_write(c, msg, sizeof msg));
        EXPECT_OK(weft_stream_read_exactly(c, back, sizeof msg, &got));
    }
    uint64_t before = weft__alloc_calls();
    for (int i = 0; i < 1000; i++) {
        EXPECT_OK(weft_stream_write(c, msg, sizeof msg));
        EXPECT_OK(weft_stream_read_exactly(c, back, sizeof msg, &got));
    }
    cr_expect_eq(weft__alloc_calls() - before, 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_unix_server_close(srv));
    return 0;
}

TASK_TEST(pipe, out_of_memory)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    weft_stream_t *s;
    weft_unix_server_t *srv;
    weft__alloc_fail_after(0);
    EXPECT_RC(weft_pipe_open(fds[0], NULL, &s), UV_ENOMEM);
    EXPECT_RC(weft_unix_serve(NULL, path_for("nomem"), echo_lines, NULL, NULL, &srv), UV_ENOMEM);
    EXPECT_RC(weft_unix_connect(path_for("nomem"), NULL, &s), UV_ENOMEM);
    weft__alloc_fail_after(-1);
    cr_expect_neq(fcntl(fds[0], F_GETFD), -1);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

/*
 * tests/serve_test.c - servers (io/serve.c): on every loop of a runtime in
 * both designs (acceptor, SO_REUSEPORT), graceful close, max_connections
 * over loops, per-loop stats, and faults: resets in the middle of a read
 * and of a write, a slow reader, a line with no end, cancelled reads,
 * drains and connects, descriptor exhaustion and 10,000 connections (those
 * two with the server in a child process). Loopback only, ephemeral ports.
 * Also built as serve_test_plain for TSan (plain_test.h).
 */
#include "plain_test.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/runtime.h>
#include <weft/weft.h>

#include "task_harness.h"

#ifdef __SANITIZE_THREAD__
#define NO_ARENAS true /* as runtime_test.c: jemalloc arenas upset TSan */
#define MANY      1000
#else
#define NO_ARENAS false
#define MANY      10000
#endif
#define WAIT_MS 30000

/* ---- helpers ------------------------------------------------------------------ */

static int echo_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    char buf[4096];
    for (;;) {
        size_t got;
        int rc = weft_stream_read(s, buf, sizeof buf, &got);
        if (rc == UV_EOF)
            return 0;
        if (rc == 0)
            rc = weft_stream_write(s, buf, got);
        if (rc == 0)
            rc = weft_stream_drain(s);
        if (rc != 0)
            return rc;
    }
}

/* Connect and see one byte echoed: the server has the connection in a
 * handler. 0 or the error. */
static int connect_echoed(int port, weft_stream_t **out)
{
    weft_stream_opts_t o = {.read_limit = 4096};
    int rc = weft_tcp_connect("127.0.0.1", port, &o, out);
    if (rc != 0)
        return rc;
    char b;
    size_t got;
    rc = weft_stream_write(*out, "x", 1);
    if (rc == 0)
        rc = weft_stream_read_exactly(*out, &b, 1, &got);
    if (rc != 0) {
        (void)weft_stream_abort(*out);
        *out = NULL;
    }
    return rc;
}

/* Run fn(arg) as a task on loop 0 of a fresh runtime of `loops` loops and
 * stop it; expects fn's 0 and no task left over. */
static void on_runtime(unsigned loops, weft_task_fn fn, void *arg)
{
    weft_runtime_opts_t o = {.loops = loops, .no_pinning = true, .no_arenas = NO_ARENAS};
    weft_runtime_t *rt;
    ASSERT_OK(weft_runtime_start(&o, &rt));
    weft_tsfuture_t *f;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), fn, arg, &f));
    int rc = weft_tsfuture_wait_blocking(f, WAIT_MS, NULL);
    EXPECT_OK(rc);
    if (rc == UV_ETIMEDOUT)
        (void)weft_tsfuture_cancel(f);
    weft_tsfuture_unref(f);
    uint64_t left = 1;
    EXPECT_OK(weft_runtime_stop(rt, &left));
    cr_expect_eq(left, 0);
}

static int sum_accepted(const weft_server_t *srv, weft_server_loop_stats_t *st, int n)
{
    int got = weft_server_stats(srv, (size_t)n, st);
    int sum = 0;
    for (int i = 0; i < got && i < n; i++)
        sum += (int)st[i].accepted;
    return sum;
}

/* ---- a server on every loop ---------------------------------------------------- */

#define NCONN 20

static int balance_main(void *arg, void **result)
{
    (void)result;
    weft_serve_balance_t bal = (weft_serve_balance_t)(intptr_t)arg;
    weft_server_opts_t o = {.balance = bal};
    weft_server_t *srv;
    EXPECT_OK(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, echo_handler, NULL, &o, &srv));
    if (srv == NULL)
        return UV_EINVAL;
    weft_stream_t *c[NCONN];
    for (int i = 0; i < NCONN; i++)
        EXPECT_OK(connect_echoed(weft_server_port(srv), &c[i]));
    weft_server_loop_stats_t st[2];
    uint64_t in = 0, out = 0;
    /* A write's bytes count when libuv reports it done, which may come
     * after the peer has them: wait for the count. */
    for (int k = 0; k < 2000 && out < NCONN; k++) {
        cr_expect_eq(weft_server_stats(srv, 2, st), 2);
        in = st[0].bytes_in + st[1].bytes_in;
        out = st[0].bytes_out + st[1].bytes_out;
        if (out < NCONN)
            EXPECT_OK(weft_sleep(1));
    }
    cr_expect_eq(sum_accepted(srv, st, 2), NCONN);
    cr_expect_eq(weft_server_connections(srv), NCONN);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(st[i].loop_index, (unsigned)i);
        cr_expect_eq(st[i].live, st[i].accepted);
    }
    cr_expect_eq(in, NCONN);
    cr_expect_eq(out, NCONN);
    if (bal == WEFT_BALANCE_ACCEPTOR) {
        /* Connections never ended: each went to the loop with fewer. */
        cr_expect_eq(st[0].accepted, NCONN / 2, "loop 0 has %llu",
                     (unsigned long long)st[0].accepted);
        cr_expect_eq(st[1].accepted, NCONN / 2);
    }
    for (int i = 0; i < NCONN; i++)
        if (c[i] != NULL)
            EXPECT_OK(weft_stream_close(c[i]));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

Test(serve_rt, acceptor_balances_two_loops, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, balance_main, (void *)(intptr_t)WEFT_BALANCE_ACCEPTOR);
}

Test(serve_rt, reuseport_serves_on_two_loops, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, balance_main, (void *)(intptr_t)WEFT_BALANCE_REUSEPORT);
}

Test(serve_rt, default_design_serves_on_two_loops, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, balance_main, (void *)(intptr_t)WEFT_BALANCE_DEFAULT);
}

/* Graceful close: connections that finish within the grace end by
 * themselves (their handlers return 0); one that does not is cancelled
 * after it; a connection that arrives meanwhile is refused. */
static _Atomic int g_finished, g_cancelled;

static int bye_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    char line[16];
    size_t len;
    if (weft_stream_write(s, "hi", 2) != 0)
        return UV_EIO;
    int rc = weft_stream_readline(s, line, sizeof line, &len);
    if (rc == UV_ECANCELED) {
        atomic_fetch_add(&g_cancelled, 1);
        return rc;
    }
    if (rc == 0)
        rc = weft_stream_write(s, "done", 4);
    atomic_fetch_add(&g_finished, 1);
    return rc;
}

struct closer {
    weft_server_t *srv;
    uint64_t grace;
    int rc;
};

static int closer_main(void *arg, void **result)
{
    (void)result;
    struct closer *c = arg;
    c->rc = weft_server_close_timeout(c->srv, c->grace);
    return 0;
}

static int graceful_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_store(&g_finished, 0);
    atomic_store(&g_cancelled, 0);
    weft_server_opts_t o = {.balance = WEFT_BALANCE_ACCEPTOR};
    weft_server_t *srv;
    EXPECT_OK(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, bye_handler, NULL, &o, &srv));
    if (srv == NULL)
        return UV_EINVAL;
    int port = weft_server_port(srv);
    weft_stream_t *c[2];
    char b[4];
    size_t got;
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(weft_tcp_connect("127.0.0.1", port, NULL, &c[i]));
        EXPECT_OK(weft_stream_read_exactly(c[i], b, 2, &got)); /* "hi": in a handler */
    }
    struct closer cl = {.srv = srv, .grace = WAIT_MS, .rc = 1};
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, closer_main, &cl, &t));
    for (int i = 0; i < 100 && !weft_server_closing(srv); i++)
        EXPECT_OK(weft_sleep(1));
    cr_expect(weft_server_closing(srv));
    /* Not accepting any more: the port is closed (or the connection is reset). */
    weft_stream_t *late;
    int rc = weft_tcp_connect("127.0.0.1", port, NULL, &late);
    if (rc == 0) {
        rc = weft_stream_read(late, b, sizeof b, &got);
        EXPECT_OK(weft_stream_close(late));
    }
    cr_expect(rc == UV_ECONNREFUSED || rc == UV_ECONNRESET || rc == UV_EOF, "late: %s",
              weft_err_name(rc));
    /* Both live connections finish inside the grace. */
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(weft_stream_write(c[i], "bye\n", 4));
        EXPECT_OK(weft_stream_read_exactly(c[i], b, 4, &got));
        cr_expect(memcmp(b, "done", 4) == 0);
        EXPECT_OK(weft_stream_close(c[i]));
    }
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(cl.rc, 0);
    cr_expect_eq(atomic_load(&g_finished), 2);
    cr_expect_eq(atomic_load(&g_cancelled), 0);

    /* Now a grace that runs out: the silent connection is cancelled. */
    EXPECT_OK(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, bye_handler, NULL, &o, &srv));
    if (srv == NULL)
        return UV_EINVAL;
    weft_stream_t *silent;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &silent));
    EXPECT_OK(weft_stream_read_exactly(silent, b, 2, &got));
    EXPECT_OK(weft_server_close_timeout(srv, 20));
    cr_expect_eq(atomic_load(&g_cancelled), 1);
    rc = weft_stream_read(silent, b, sizeof b, &got);
    cr_expect(rc == UV_EOF || rc == UV_ECONNRESET, "after the cancel: %s", weft_err_name(rc));
    EXPECT_OK(weft_stream_close(silent));
    return 0;
}

Test(serve_rt, graceful_close_waits_then_cancels, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, graceful_main, NULL);
}

static int maxconn_main(void *arg, void **result)
{
    (void)result;
    weft_server_opts_t o = {.balance = (weft_serve_balance_t)(intptr_t)arg, .max_connections = 3};
    weft_server_t *srv;
    EXPECT_OK(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, echo_handler, NULL, &o, &srv));
    if (srv == NULL)
        return UV_EINVAL;
    int port = weft_server_port(srv);
    weft_stream_t *c[3];
    for (int i = 0; i < 3; i++)
        EXPECT_OK(connect_echoed(port, &c[i]));
    weft_stream_t *x;
    int rc = connect_echoed(port, &x);
    cr_expect(rc == UV_ECONNRESET || rc == UV_EOF, "the 4th: %s", weft_err_name(rc));
    for (int i = 0; i < 100 && weft_server_refused(srv) == 0; i++)
        EXPECT_OK(weft_sleep(1));
    cr_expect_eq(weft_server_refused(srv), 1);
    cr_expect_eq(weft_server_connections(srv), 3);
    /* One leaves: there is room again. */
    EXPECT_OK(weft_stream_close(c[0]));
    for (int i = 0; i < 1000 && weft_server_connections(srv) > 2; i++)
        EXPECT_OK(weft_sleep(1));
    EXPECT_OK(connect_echoed(port, &c[0]));
    for (int i = 0; i < 3; i++)
        if (c[i] != NULL)
            EXPECT_OK(weft_stream_close(c[i]));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

Test(serve_rt, max_connections_counts_every_loop_acceptor, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, maxconn_main, (void *)(intptr_t)WEFT_BALANCE_ACCEPTOR);
}

Test(serve_rt, max_connections_counts_every_loop_reuseport, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, maxconn_main, (void *)(intptr_t)WEFT_BALANCE_REUSEPORT);
}

static int misuse_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_server_t *srv = (weft_server_t *)1;
    EXPECT_RC(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, NULL, NULL, NULL, &srv), UV_EINVAL);
    cr_expect_null(srv);
    EXPECT_RC(weft_tcp_serve_rt(NULL, "not-an-address", 0, echo_handler, NULL, NULL, &srv),
              UV_EINVAL);
    weft_server_opts_t bad = {.balance = (weft_serve_balance_t)7};
    EXPECT_RC(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, echo_handler, NULL, &bad, &srv), UV_EINVAL);
    EXPECT_RC(weft_server_close(NULL), UV_EINVAL);
    EXPECT_RC(weft_server_stats(NULL, 0, NULL), UV_EINVAL);
    /* A port in use fails on the first loop and leaves nothing behind. */
    weft_server_t *a;
    EXPECT_OK(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, echo_handler, NULL, NULL, &a));
    weft_server_opts_t rp = {.balance = WEFT_BALANCE_REUSEPORT};
    EXPECT_RC(
        weft_tcp_serve_rt(NULL, "127.0.0.1", weft_server_port(a), echo_handler, NULL, &rp, &srv),
        UV_EADDRINUSE);
    EXPECT_RC(weft_server_stats(a, 0, NULL), 2);
    EXPECT_OK(weft_server_close(a));
    return 0;
}

Test(serve_rt, misuse_is_refused, .timeout = TEST_TIMEOUT_S)
{
    on_runtime(2, misuse_main, NULL);
    /* Not on a loop of a runtime. */
    weft_server_t *srv;
    EXPECT_RC(weft_tcp_serve_rt(NULL, "127.0.0.1", 0, echo_handler, NULL, NULL, &srv),
              WEFT_EWRONGLOOP);
}

/* ---- resets --------------------------------------------------------------------- */

static int g_rc;
static _Atomic bool g_done;

static int read_100(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[100];
    size_t got;
    g_rc = weft_stream_read_exactly(s, b, sizeof b, &got);
    atomic_store(&g_done, true);
    return g_rc;
}

static int wait_done(void)
{
    for (int i = 0; i < 5000 && !atomic_load(&g_done); i++) {
        int rc = weft_sleep(1);
        if (rc != 0)
            return rc;
    }
    return atomic_load(&g_done) ? 0 : UV_ETIMEDOUT;
}

TASK_TEST(serve, peer_reset_in_the_middle_of_a_read)
{
    atomic_store(&g_done, false);
    weft_server_t *srv;
    EXPECT_OK(weft_tcp_serve(NULL, "127.0.0.1", 0, read_100, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    EXPECT_OK(weft_stream_write(c, "ten bytes!", 10));
    for (int i = 0; i < 1000; i++) { /* the handler has its 10 of 100 */
        weft_server_loop_stats_t st;
        if (weft_server_stats(srv, 1, &st) == 1 && st.bytes_in == 10)
            break;
        EXPECT_OK(weft_sleep(1));
    }
    EXPECT_OK(weft_stream_abort(c));
    EXPECT_OK(wait_done());
    EXPECT_RC(g_rc, UV_ECONNRESET);
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

#define CHUNK (16u * 1024u)
static unsigned char g_chunk[CHUNK];
static size_t g_max_buffered, g_written;

/* Write up to `limit` bytes in chunks, draining after each. */
static int flood(weft_stream_t *s, void *arg)
{
    size_t limit = (size_t)(uintptr_t)arg;
    g_rc = 0;
    for (g_written = 0; g_written < limit; g_written += CHUNK) {
        g_rc = weft_stream_write(s, g_chunk, CHUNK);
        size_t b = weft_stream_buffered(s);
        if (b > g_max_buffered)
            g_max_buffered = b;
        if (g_rc == 0)
            g_rc = weft_stream_drain(s);
        if (g_rc != 0)
            break;
    }
    atomic_store(&g_done, true);
    return g_rc;
}

TASK_TEST(serve, peer_reset_in_the_middle_of_a_write)
{
    atomic_store(&g_done, false);
    g_max_buffered = 0;
    weft_server_t *srv;
    EXPECT_OK(
        weft_tcp_serve(NULL, "127.0.0.1", 0, flood, (void *)(uintptr_t)(1u << 30), NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    /* Read nothing until the writer is blocked in its drain. */
    for (int i = 0; i < 5000 && g_max_buffered < 64 * 1024; i++)
        EXPECT_OK(weft_sleep(1));
    cr_expect_geq(g_max_buffered, 64 * 1024);
    EXPECT_OK(weft_stream_abort(c));
    EXPECT_OK(wait_done());
    cr_expect(g_rc == UV_ECONNRESET || g_rc == UV_EPIPE, "writer: %s", weft_err_name(g_rc));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* A client reading 1 KiB per 10 ms from a server that would write 100 MiB:
 * the server's buffer stays under its high-water mark plus one write. The
 * test stops after 150 reads; the bound is what it checks. */
TASK_TEST(serve, slow_reader_bounds_the_writer)
{
    atomic_store(&g_done, false);
    g_max_buffered = 0;
    weft_server_t *srv;
    weft_server_opts_t o = {.stream_opts = {.write_high = 64 * 1024, .write_low = 16 * 1024}};
    EXPECT_OK(
        weft_tcp_serve(NULL, "127.0.0.1", 0, flood, (void *)(uintptr_t)(100u << 20), &o, &srv));
    weft_stream_t *c;
    weft_stream_opts_t co = {.read_limit = 4096};
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), &co, &c));
    size_t total = 0;
    for (int i = 0; i < 150; i++) {
        char b[1024];
        size_t got;
        EXPECT_OK(weft_stream_read_exactly(c, b, sizeof b, &got));
        total += got;
        EXPECT_OK(weft_sleep(10));
    }
    cr_expect_eq(total, 150u * 1024u);
    cr_expect_lt(g_written, 100u << 20); /* it was held back */
    cr_expect_leq(g_max_buffered, 64u * 1024u + CHUNK, "buffered %zu", g_max_buffered);
    EXPECT_OK(weft_stream_abort(c));
    EXPECT_OK(wait_done());
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* 10 MiB with no newline against readline(64 KiB): WEFT_ELIMIT, then the
 * handler discards the rest; the read buffer never holds more than its
 * limit. */
static size_t g_max_readable, g_discarded;

static int line_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    static char line[64 * 1024];
    size_t len;
    g_rc = weft_stream_readline(s, line, sizeof line, &len);
    if (g_rc == WEFT_ELIMIT) {
        for (;;) {
            size_t r = weft_stream_readable(s);
            if (r > g_max_readable)
                g_max_readable = r;
            char b[4096];
            size_t got;
            int rc = weft_stream_read(s, b, sizeof b, &got);
            if (rc != 0)
                break;
            g_discarded += got;
        }
    }
    atomic_store(&g_done, true);
    return 0;
}

TASK_TEST(serve, endless_line_hits_the_limit_with_bounded_memory)
{
    atomic_store(&g_done, false);
    g_max_readable = g_discarded = 0;
    weft_server_t *srv;
    EXPECT_OK(weft_tcp_serve(NULL, "127.0.0.1", 0, line_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    static char junk[64 * 1024];
    memset(junk, 'a', sizeof junk);
    for (int i = 0; i < 160; i++) { /* 10 MiB */
        EXPECT_OK(weft_stream_write(c, junk, sizeof junk));
        EXPECT_OK(weft_stream_drain(c));
    }
    EXPECT_OK(weft_stream_shutdown(c));
    EXPECT_OK(wait_done());
    EXPECT_RC(g_rc, WEFT_ELIMIT);
    cr_expect_eq(g_discarded, 10u << 20);
    cr_expect_leq(g_max_readable, 64u * 1024u);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- cancelling blocked calls ------------------------------------------------- */

/* Reads nothing until the server's close cancels it. */
static int silent_handler(weft_stream_t *s, void *arg)
{
    (void)s;
    (void)arg;
    return weft_sleep(WEFT_FOREVER);
}

static int read_task(void *arg, void **result)
{
    (void)result;
    char b[4];
    size_t got;
    return weft_stream_read(arg, b, sizeof b, &got);
}

static int drain_task(void *arg, void **result)
{
    (void)result;
    weft_stream_t *s = arg;
    for (int i = 0; i < 1000; i++) { /* the peer never reads */
        int rc = weft_stream_write(s, g_chunk, CHUNK);
        if (rc == 0)
            rc = weft_stream_drain(s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Spawn fn(arg), let it block, cancel it: UV_ECANCELED. */
static int cancel_blocked(weft_task_fn fn, void *arg)
{
    weft_task_t *t;
    int rc = weft_spawn(NULL, fn, arg, &t);
    if (rc != 0)
        return rc;
    rc = weft_sleep(20);
    (void)weft_task_cancel(t);
    int trc = weft_await_task(t, NULL);
    weft_task_unref(t);
    return rc != 0 ? rc : trc;
}

TASK_TEST(serve, cancel_blocked_read_and_drain)
{
    weft_server_t *srv;
    EXPECT_OK(weft_tcp_serve(NULL, "127.0.0.1", 0, silent_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    EXPECT_RC(cancel_blocked(read_task, c), UV_ECANCELED);
    /* The stream is still usable: a write goes out. */
    EXPECT_OK(weft_stream_write(c, "ok", 2));
    EXPECT_RC(cancel_blocked(drain_task, c), UV_ECANCELED);
    cr_expect_gt(weft_stream_buffered(c), 0);
    EXPECT_OK(weft_stream_abort(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

static int connect_task(void *arg, void **result)
{
    (void)result;
    weft_stream_t *s = NULL;
    int rc = weft_tcp_connect("127.0.0.1", (int)(intptr_t)arg, NULL, &s);
    if (rc == 0)
        (void)weft_stream_abort(s);
    return rc;
}

/* A listener whose backlog is full and that never accepts: a connect to it
 * hangs (its SYN is dropped) until cancelled. */
TASK_TEST(serve, cancel_connect_to_a_full_backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_expect_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_expect_eq(listen(fd, 0), 0);
    cr_expect_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    weft_stream_t *first;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", port, NULL, &first)); /* fills the queue */
    EXPECT_RC(cancel_blocked(connect_task, (void *)(intptr_t)port), UV_ECANCELED);
    EXPECT_OK(weft_stream_abort(first));
    (void)close(fd);
    return 0;
}

/* ---- servers in a child process ---------------------------------------------- */

struct child_report {
    uint64_t accepted, refused, accept_errors;
    int rc;
};

static struct {
    int nofile;
    int ctl; /* closed by the parent: stop */
    int res;
} g_child;

static int child_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_server_opts_t o = {.backlog = 4096, .stream_opts = {.read_limit = 4096}};
    weft_server_t *srv;
    int rc = weft_tcp_serve(NULL, "127.0.0.1", 0, echo_handler, NULL, &o, &srv);
    int port = rc == 0 ? weft_server_port(srv) : -1;
    if (write(g_child.res, &port, sizeof port) != (ssize_t)sizeof port || rc != 0)
        return rc != 0 ? rc : UV_EIO;
    for (;;) { /* until the parent closes its end */
        struct pollfd p = {.fd = g_child.ctl, .events = POLLIN};
        if (poll(&p, 1, 0) != 0)
            break;
        rc = weft_sleep(5);
        if (rc != 0)
            break;
    }
    weft_server_loop_stats_t st;
    (void)weft_server_stats(srv, 1, &st);
    struct child_report r = {st.accepted, st.refused, st.accept_errors, rc};
    (void)weft_server_close(srv);
    return write(g_child.res, &r, sizeof r) == (ssize_t)sizeof r ? 0 : UV_EIO;
}

/* Fork a server (an echo server on one loop with RLIMIT_NOFILE lowered to
 * nofile) before this process has a loop; *port is where it listens. */
static pid_t child_start(int nofile, int *port, int *ctl, int *res)
{
    int a[2], b[2];
    cr_assert_eq(pipe(a), 0);
    cr_assert_eq(pipe(b), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        (void)close(a[1]);
        (void)close(b[0]);
        struct rlimit rl;
        (void)getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = (rlim_t)nofile;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(3);
        g_child.ctl = a[0];
        g_child.res = b[1];
        _exit(weft_run(child_main, NULL, NULL) == 0 ? 0 : 2);
    }
    (void)close(a[0]);
    (void)close(b[1]);
    *ctl = a[1];
    *res = b[0];
    cr_assert_eq(read(*res, port, sizeof *port), (ssize_t)sizeof *port);
    cr_assert_gt(*port, 0);
    return pid;
}

static void child_stop(pid_t pid, int ctl, int res, struct child_report *r)
{
    (void)close(ctl);
    cr_expect_eq(read(res, r, sizeof *r), (ssize_t)sizeof *r);
    (void)close(res);
    int st = 0;
    cr_expect_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server exited with status %d", st);
}

/* Clients: each connects, sees one byte echoed, and leaves. */
static int g_port;
static _Atomic int g_echoed, g_failed;

static int one_client(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_stream_t *c;
    int rc = connect_echoed(g_port, &c);
    if (rc == 0) {
        atomic_fetch_add(&g_echoed, 1);
        rc = weft_stream_close(c);
    } else {
        atomic_fetch_add(&g_failed, 1);
    }
    return rc;
}

static int many_clients(void *arg, void **result)
{
    (void)result;
    int n = (int)(intptr_t)arg;
    weft_task_t **ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++)
        EXPECT_OK(weft_spawn(NULL, one_client, NULL, &ts[i]));
    for (int i = 0; i < n; i++) {
        if (ts[i] != NULL) {
            EXPECT_OK(weft_await_task(ts[i], NULL));
            weft_task_unref(ts[i]);
        }
    }
    free(ts);
    return 0;
}

/* 200 connections to a server that may hold 64 descriptors: accept fails
 * with EMFILE, the server pauses and retries, serves each as others leave,
 * and stays up. */
Test(serve_child, fd_exhaustion_defers_and_recovers, .timeout = TEST_TIMEOUT_S)
{
    int ctl, res;
    pid_t pid = child_start(64, &g_port, &ctl, &res);
    atomic_store(&g_echoed, 0);
    atomic_store(&g_failed, 0);
    EXPECT_OK(weft_run(many_clients, (void *)(intptr_t)200, NULL));
    cr_expect_eq(atomic_load(&g_echoed), 200);
    cr_expect_eq(atomic_load(&g_failed), 0);
    struct child_report r = {0};
    child_stop(pid, ctl, res, &r);
    cr_expect_eq(r.accepted, 200);
    cr_expect_gt(r.accept_errors, 0, "the server never ran out of descriptors");
    cr_expect_eq(r.rc, 0);
}

/* MANY connections open at once, each echoing while all are open. */
static int hold_many(void *arg, void **result)
{
    (void)result;
    int n = (int)(intptr_t)arg;
    weft_stream_t **cs = calloc((size_t)n, sizeof *cs);
    weft_stream_opts_t o = {.read_limit = 4096};
    int opened = 0;
    for (; opened < n; opened++) {
        int rc = weft_tcp_connect("127.0.0.1", g_port, &o, &cs[opened]);
        if (rc != 0) {
            cr_expect_fail("connect %d: %s", opened, weft_err_name(rc));
            break;
        }
    }
    for (int i = 0; i < opened; i++)
        EXPECT_OK(weft_stream_write(cs[i], "x", 1));
    int echoed = 0;
    for (int i = 0; i < opened; i++) {
        char b;
        size_t got;
        if (weft_stream_read_exactly(cs[i], &b, 1, &got) == 0 && b == 'x')
            echoed++;
    }
    cr_expect_eq(echoed, n);
    for (int i = 0; i < opened; i++)
        EXPECT_OK(weft_stream_close(cs[i]));
    free(cs);
    return 0;
}

Test(serve_child, ten_thousand_connections, .timeout = TEST_TIMEOUT_S)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t need = MANY + 200;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        cr_skip("RLIMIT_NOFILE's hard limit is %llu, %llu are needed per process: skipped",
                (unsigned long long)rl.rlim_max, (unsigned long long)need);
    rl.rlim_cur = need;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int ctl, res;
    pid_t pid = child_start((int)need, &g_port, &ctl, &res);
    EXPECT_OK(weft_run(hold_many, (void *)(intptr_t)MANY, NULL));
    struct child_report r = {0};
    child_stop(pid, ctl, res, &r);
    cr_expect_eq(r.accepted, MANY);
    cr_expect_eq(r.accept_errors, 0);
}

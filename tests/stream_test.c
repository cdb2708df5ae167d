/*
 * tests/stream_test.c - io/: the bridge (a task awaits libuv requests) and
 * TCP streams and a server on one loop (weft/stream.h). Every socket is on
 * loopback (127.0.0.1, ::1 where the machine has it) with an ephemeral
 * port; every loop of the tests is bounded.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <weft/weft.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

/* ---- handlers ---------------------------------------------------------------- */

static int echo_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    char buf[4096];
    for (int i = 0; i < 1000000; i++) {
        size_t got;
        int rc = weft_stream_read(s, buf, sizeof buf, &got);
        if (rc == UV_EOF)
            return 0;
        if (rc != 0)
            return rc;
        rc = weft_stream_write(s, buf, got);
        if (rc == 0)
            rc = weft_stream_drain(s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int serve_local(weft_stream_handler_fn h, void *arg, const weft_server_opts_t *o,
                       weft_server_t **srv)
{
    int rc = weft_tcp_serve(NULL, "127.0.0.1", 0, h, arg, o, srv);
    if (rc == 0 && weft_server_port(*srv) <= 0)
        rc = UV_EINVAL;
    return rc;
}

/* ---- echo ---------------------------------------------------------------------- */

TASK_TEST(stream, echo_round_trip)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    for (int i = 0; i < 10; i++) {
        char msg[32], back[32];
        int n = snprintf(msg, sizeof msg, "hello %d", i);
        size_t got;
        EXPECT_OK(weft_stream_write(c, msg, (size_t)n));
        EXPECT_OK(weft_stream_read_exactly(c, back, (size_t)n, &got));
        cr_expect_eq(got, (size_t)n);
        cr_expect(memcmp(msg, back, (size_t)n) == 0);
    }
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* A name goes through the resolver (the bridge's getaddrinfo); "localhost"
 * may resolve to ::1 first, where nobody listens: the next address wins. */
TASK_TEST(stream, connect_by_name_tries_each_address)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    int rc = weft_tcp_connect("localhost", weft_server_port(srv), NULL, &c);
    if (rc == UV_EAI_NONAME || rc == UV_EAI_AGAIN) {
        cr_log_warn("localhost does not resolve here: skipped");
    } else {
        EXPECT_OK(rc);
        if (rc == 0) {
            char b[2];
            size_t got;
            EXPECT_OK(weft_stream_write(c, "ok", 2));
            EXPECT_OK(weft_stream_read_exactly(c, b, 2, &got));
            EXPECT_OK(weft_stream_close(c));
        }
    }
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

TASK_TEST(stream, echo_over_ipv6)
{
    weft_server_t *srv;
    int rc = weft_tcp_serve(NULL, "::1", 0, echo_handler, NULL, NULL, &srv);
    if (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
        cr_log_warn("no IPv6 loopback here: skipped");
        return 0;
    }
    EXPECT_OK(rc);
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("::1", weft_server_port(srv), NULL, &c));
    char b[4];
    size_t got;
    EXPECT_OK(weft_stream_write(c, "six!", 4));
    EXPECT_OK(weft_stream_read_exactly(c, b, 4, &got));
    cr_expect(memcmp(b, "six!", 4) == 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- reads ----------------------------------------------------------------------- */

static int write_then_close(weft_stream_t *s, void *arg)
{
    return weft_stream_write(s, arg, strlen(arg));
}

TASK_TEST(stream, read_exactly_early_close_is_eof_with_partial_count)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(write_then_close, "abc", NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char buf[10];
    size_t got = 99;
    EXPECT_RC(weft_stream_read_exactly(c, buf, sizeof buf, &got), UV_EOF);
    cr_expect_eq(got, 3);
    cr_expect(memcmp(buf, "abc", 3) == 0);
    EXPECT_RC(weft_stream_read(c, buf, sizeof buf, &got), UV_EOF);
    cr_expect_eq(got, 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

TASK_TEST(stream, readline_limit_overrun_keeps_the_data)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(write_then_close, "abcdefghij\nlast", NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char line[64];
    size_t len = 99;
    EXPECT_RC(weft_stream_readline(c, line, 4, &len), WEFT_ELIMIT);
    cr_expect_eq(len, 0);
    EXPECT_OK(weft_stream_readline(c, line, sizeof line, &len));
    cr_expect_eq(len, 11);
    cr_expect(memcmp(line, "abcdefghij\n", 11) == 0);
    /* The last line has no newline: UV_EOF with what was left. */
    EXPECT_RC(weft_stream_readline(c, line, sizeof line, &len), UV_EOF);
    cr_expect_eq(len, 4);
    cr_expect(memcmp(line, "last", 4) == 0);
    EXPECT_RC(weft_stream_readline(c, line, sizeof line, &len), UV_EOF);
    cr_expect_eq(len, 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

TASK_TEST(stream, read_until_other_delimiter_and_limit_then_plain_read)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(write_then_close, "key=value;rest", NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char b[64];
    size_t len;
    EXPECT_OK(weft_stream_read_until(c, '=', b, sizeof b, &len));
    cr_expect_eq(len, 4);
    EXPECT_RC(weft_stream_read_until(c, ';', b, 3, &len), WEFT_ELIMIT);
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(c, b, 6, &got));
    cr_expect(memcmp(b, "value;", 6) == 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

static int wait_for_eof(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[16];
    size_t got;
    int rc;
    for (int i = 0; i < 1000; i++)
        if ((rc = weft_stream_read(s, b, sizeof b, &got)) != 0)
            return rc == UV_EOF ? 0 : rc;
    return 0;
}

TASK_TEST(stream, read_timeout)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(wait_for_eof, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char b[4];
    size_t len = 9;
    uint64_t t0 = weft_loop_now();
    EXPECT_RC(weft_stream_read_timeout(c, b, sizeof b, 20, &len), UV_ETIMEDOUT);
    cr_expect_geq(weft_loop_now() - t0, 19);
    cr_expect_eq(len, 0);
    EXPECT_RC(weft_stream_readline_timeout(c, b, sizeof b, 0, &len), UV_ETIMEDOUT);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- connect errors ---------------------------------------------------------- */

TASK_TEST(stream, connect_to_closed_port_is_refused)
{
    /* A port that was just bound and is free again: nobody listens there. */
    weft_server_t *srv;
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &srv));
    int port = weft_server_port(srv);
    EXPECT_OK(weft_server_close(srv));
    weft_stream_t *c = (weft_stream_t *)1;
    EXPECT_RC(weft_tcp_connect("127.0.0.1", port, NULL, &c), UV_ECONNREFUSED);
    cr_expect_null(c);
    return 0;
}

TASK_TEST(stream, connect_timeout_zero_gives_up_and_frees)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_RC(weft_tcp_connect_timeout("127.0.0.1", weft_server_port(srv), NULL, 0, &c),
              UV_ETIMEDOUT);
    cr_expect_null(c);
    /* The half-made connection may reach the server: it sees EOF. */
    EXPECT_OK(weft_sleep(10));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- cancellation -------------------------------------------------------------- */

static int reader_rc;
static int reader_task(void *arg, void **result)
{
    (void)result;
    weft_stream_t *c;
    int rc = weft_tcp_connect("127.0.0.1", (int)weft_to_int(arg), NULL, &c);
    if (rc != 0)
        return rc;
    char b[8];
    size_t got;
    reader_rc = weft_stream_read(c, b, sizeof b, &got);
    (void)weft_stream_abort(c);
    return reader_rc;
}

TASK_TEST(stream, cancel_blocked_read)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(wait_for_eof, NULL, NULL, &srv));
    weft_task_t *t;
    reader_rc = 1;
    EXPECT_OK(weft_spawn(NULL, reader_task, weft_int(weft_server_port(srv)), &t));
    EXPECT_OK(weft_sleep(20));
    cr_expect_eq(reader_rc, 1); /* still blocked */
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_RC(weft_await_task(t, NULL), UV_ECANCELED);
    cr_expect_eq(reader_rc, UV_ECANCELED);
    weft_task_unref(t);
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* weft_server_close cancels a handler blocked in a read and waits for it. */
static int handler_rc;
static int blocked_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[8];
    size_t got;
    handler_rc = weft_stream_read(s, b, sizeof b, &got);
    return handler_rc;
}

TASK_TEST(stream, server_close_cancels_live_connections)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(blocked_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    handler_rc = 1;
    for (int i = 0; i < 100 && weft_server_connections(srv) == 0; i++)
        EXPECT_OK(weft_sleep(1));
    cr_expect_eq(weft_server_connections(srv), 1);
    EXPECT_OK(weft_sleep(5)); /* the handler is in its read */
    EXPECT_OK(weft_server_close(srv));
    cr_expect_eq(handler_rc, UV_ECANCELED);
    /* The server aborted the connection: the client sees its end. */
    char b[4];
    size_t got;
    int rc = weft_stream_read(c, b, sizeof b, &got);
    cr_expect(rc == UV_EOF || rc == UV_ECONNRESET, "read: %s", weft_err_name(rc));
    EXPECT_OK(weft_stream_close(c));
    return 0;
}

TASK_TEST(stream, max_connections_refuses_the_next)
{
    weft_server_t *srv;
    weft_server_opts_t o = {.max_connections = 1};
    EXPECT_OK(serve_local(wait_for_eof, NULL, &o, &srv));
    weft_stream_t *a, *b;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &a));
    for (int i = 0; i < 100 && weft_server_connections(srv) == 0; i++)
        EXPECT_OK(weft_sleep(1));
    /* The refusal is a reset: it may beat the connect's completion. */
    int rc = weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &b);
    if (rc == 0) {
        char x[4];
        size_t got;
        rc = weft_stream_read_timeout(b, x, sizeof x, 5000, &got);
        EXPECT_OK(weft_stream_close(b));
    }
    cr_expect(rc == UV_EOF || rc == UV_ECONNRESET, "connect or read: %s", weft_err_name(rc));
    for (int i = 0; i < 100 && weft_server_refused(srv) == 0; i++)
        EXPECT_OK(weft_sleep(1));
    cr_expect_eq(weft_server_refused(srv), 1);
    cr_expect_eq(weft_server_connections(srv), 1);
    EXPECT_OK(weft_stream_close(a));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* Two servers on one port: refused without reuseport, accepted with it,
 * and a client reaches one of them. */
TASK_TEST(stream, reuseport_lets_two_servers_share_a_port)
{
    weft_server_t *a, *b;
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &a));
    int port = weft_server_port(a);
    cr_expect_eq(weft_tcp_serve(NULL, "127.0.0.1", port, echo_handler, NULL, NULL, &b),
                 UV_EADDRINUSE);
    cr_expect_null(b);
    EXPECT_OK(weft_server_close(a));

    weft_server_opts_t o = {.reuseport = true};
    EXPECT_OK(serve_local(echo_handler, NULL, &o, &a));
    port = weft_server_port(a);
    EXPECT_OK(weft_tcp_serve(NULL, "127.0.0.1", port, echo_handler, NULL, &o, &b));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", port, NULL, &c));
    char back[4];
    size_t got;
    EXPECT_OK(weft_stream_write(c, "ping", 4));
    EXPECT_OK(weft_stream_read_exactly(c, back, 4, &got));
    cr_expect(memcmp(back, "ping", 4) == 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(b));
    EXPECT_OK(weft_server_close(a));
    return 0;
}

/* ---- half-close ---------------------------------------------------------------- */

static int pong_rc;
static int pong_after_eof(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[8];
    size_t got;
    pong_rc = weft_stream_read_exactly(s, b, 4, &got);
    if (pong_rc != 0)
        return pong_rc;
    pong_rc = weft_stream_read(s, b, sizeof b, &got); /* the client's shutdown */
    if (pong_rc != UV_EOF)
        return pong_rc;
    return weft_stream_write(s, "pong", 4);
}

TASK_TEST(stream, shutdown_half_closes)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(pong_after_eof, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    EXPECT_OK(weft_stream_write(c, "ping", 4));
    EXPECT_OK(weft_stream_shutdown(c));
    EXPECT_RC(weft_stream_shutdown(c), WEFT_ECLOSED);
    EXPECT_RC(weft_stream_write(c, "x", 1), WEFT_ECLOSED);
    char b[8];
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(c, b, 4, &got));
    cr_expect(memcmp(b, "pong", 4) == 0);
    EXPECT_RC(weft_stream_read(c, b, sizeof b, &got), UV_EOF);
    cr_expect_eq(pong_rc, UV_EOF);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- backpressure ---------------------------------------------------------------- */

#define BIG   (8u * 1024u * 1024u)
#define CHUNK (16u * 1024u)
static size_t max_buffered;
static int big_rc;
static unsigned char pattern[CHUNK];

static int big_writer(weft_stream_t *s, void *arg)
{
    (void)arg;
    for (size_t off = 0; off < BIG; off += CHUNK) {
        big_rc = weft_stream_write(s, pattern, CHUNK);
        if (big_rc == 0) {
            size_t b = weft_stream_buffered(s);
            if (b > max_buffered)
                max_buffered = b;
            big_rc = weft_stream_drain(s);
        }
        if (big_rc != 0)
            return big_rc;
    }
    return 0;
}

TASK_TEST(stream, slow_reader_bounds_the_writers_buffer)
{
    for (size_t i = 0; i < CHUNK; i++)
        pattern[i] = (unsigned char)(i * 7);
    max_buffered = 0;
    big_rc = 1;
    weft_server_t *srv;
    EXPECT_OK(serve_local(big_writer, NULL, NULL, &srv));
    weft_stream_opts_t o = {.read_limit = 16 * 1024};
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), &o, &c));
    size_t total = 0, next_nap = 64 * 1024, max_readable = 0;
    bool same = true;
    unsigned char b[1024];
    for (int i = 0; i < 100000 && total < BIG; i++) {
        size_t got;
        size_t r = weft_stream_readable(c);
        if (r > max_readable)
            max_readable = r;
        int rc = weft_stream_read(c, b, sizeof b, &got);
        if (rc != 0) {
            EXPECT_OK(rc);
            break;
        }
        for (size_t k = 0; k < got && same; k++)
            same = b[k] == pattern[(total + k) % CHUNK];
        total += got;
        if (total >= next_nap) {
            next_nap += 64 * 1024;
            EXPECT_OK(weft_sleep(1));
        }
    }
    cr_expect_eq(total, BIG);
    cr_expect(same, "the bytes arrived in order");
    cr_expect_leq(max_readable, 16 * 1024, "read buffer %zu over its limit", max_readable);
    cr_expect_leq(max_buffered, 64 * 1024 + CHUNK, "writer buffered %zu", max_buffered);
    char x;
    size_t got;
    EXPECT_RC(weft_stream_read(c, &x, 1, &got), UV_EOF);
    cr_expect_eq(big_rc, 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- allocation ------------------------------------------------------------------- */

TASK_TEST(stream, steady_state_echo_makes_no_allocator_calls)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char msg[64], back[64];
    memset(msg, 'e', sizeof msg);
    size_t got;
    for (int i = 0; i < 50; i++) { /* warm up */
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
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* ---- the bridge --------------------------------------------------------------------- */

TASK_TEST(bridge, fs_stat_and_open)
{
    uv_fs_t *req = (uv_fs_t *)weft_uv_req_new(UV_FS);
    cr_assert_not_null(req);
    int rc = uv_fs_stat(weft_loop_uv(NULL), req, ".", weft_uv_fs_cb);
    EXPECT_OK(rc);
    int64_t res = -1;
    if (rc == 0)
        EXPECT_OK(weft_uv_await((uv_req_t *)req, WEFT_FOREVER, &res));
    cr_expect_eq(res, 0);
    cr_expect(req->statbuf.st_mode != 0);
    EXPECT_RC(weft_uv_await((uv_req_t *)req, WEFT_FOREVER, &res), UV_EINVAL); /* twice */
    weft_uv_req_free((uv_req_t *)req);

    req = (uv_fs_t *)weft_uv_req_new(UV_FS);
    EXPECT_OK(uv_fs_open(weft_loop_uv(NULL), req, "/nonexistent/weft", 0, 0, weft_uv_fs_cb));
    EXPECT_RC(weft_uv_await((uv_req_t *)req, WEFT_FOREVER, &res), UV_ENOENT);
    weft_uv_req_free((uv_req_t *)req);
    return 0;
}

TASK_TEST(bridge, abandoned_requests_are_freed_by_their_callback)
{
    for (int i = 0; i < 20; i++) {
        uv_fs_t *req = (uv_fs_t *)weft_uv_req_new(UV_FS);
        cr_assert_not_null(req);
        EXPECT_OK(uv_fs_stat(weft_loop_uv(NULL), req, ".", weft_uv_fs_cb));
        EXPECT_RC(weft_uv_await((uv_req_t *)req, 0, NULL), UV_ETIMEDOUT);
        weft_uv_req_free((uv_req_t *)req); /* leaves it to the callback */
    }
    uv_getaddrinfo_t *g = (uv_getaddrinfo_t *)weft_uv_req_new(UV_GETADDRINFO);
    EXPECT_OK(
        uv_getaddrinfo(weft_loop_uv(NULL), g, weft_uv_getaddrinfo_cb, "127.0.0.1", "80", NULL));
    EXPECT_RC(weft_uv_await((uv_req_t *)g, 0, NULL), UV_ETIMEDOUT);
    weft_uv_req_free((uv_req_t *)g);
    /* The loop runs the callbacks before it ends (the harness closes it);
     * ASan's leak check proves they freed. */
    return 0;
}

static int bridge_waiter(void *arg, void **result)
{
    (void)result;
    uv_fs_t *req = arg;
    int rc = weft_uv_await((uv_req_t *)req, WEFT_FOREVER, NULL);
    weft_uv_req_free((uv_req_t *)req);
    return rc;
}

TASK_TEST(bridge, cancelled_waiter_returns_at_once)
{
    uv_fs_t *req = (uv_fs_t *)weft_uv_req_new(UV_FS);
    cr_assert_not_null(req);
    EXPECT_OK(uv_fs_stat(weft_loop_uv(NULL), req, ".", weft_uv_fs_cb));
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, bridge_waiter, req, &t));
    EXPECT_OK(weft_yield()); /* t waits */
    EXPECT_OK(weft_task_cancel(t));
    int rc = weft_await_task(t, NULL);
    /* The stat may have finished first: then the waiter had its result. */
    cr_expect(rc == UV_ECANCELED || rc == 0, "%s", weft_err_name(rc));
    weft_task_unref(t);
    return 0;
}

/* ---- misuse --------------------------------------------------------------------------- */

Test(stream_misuse, null_and_outside_tasks, .timeout = TEST_TIMEOUT_S)
{
    size_t got = 7;
    char b[4];
    EXPECT_RC(weft_stream_read(NULL, b, 4, &got), UV_EINVAL);
    cr_expect_eq(got, 0);
    EXPECT_RC(weft_stream_read_exactly(NULL, b, 4, &got), UV_EINVAL);
    EXPECT_RC(weft_stream_readline(NULL, b, 4, &got), UV_EINVAL);
    EXPECT_RC(weft_stream_read_until(NULL, ';', b, 4, &got), UV_EINVAL);
    EXPECT_RC(weft_stream_write(NULL, b, 4), UV_EINVAL);
    EXPECT_RC(weft_stream_drain(NULL), UV_EINVAL);
    EXPECT_RC(weft_stream_shutdown(NULL), UV_EINVAL);
    EXPECT_RC(weft_stream_close(NULL), UV_EINVAL);
    EXPECT_RC(weft_stream_abort(NULL), UV_EINVAL);
    cr_expect_eq(weft_stream_buffered(NULL), 0);
    cr_expect_eq(weft_stream_readable(NULL), 0);
    cr_expect_null(weft_stream_tcp(NULL));
    weft_stream_t *s = (weft_stream_t *)1;
    EXPECT_RC(weft_tcp_connect(NULL, 80, NULL, &s), UV_EINVAL);
    cr_expect_null(s);
    EXPECT_RC(weft_tcp_connect("127.0.0.1", -1, NULL, &s), UV_EINVAL);
    EXPECT_RC(weft_tcp_connect("127.0.0.1", 65536, NULL, &s), UV_EINVAL);
    EXPECT_RC(weft_tcp_connect("127.0.0.1", 80, NULL, NULL), UV_EINVAL);
    weft_stream_opts_t bad = {.write_high = 10, .write_low = 20};
    EXPECT_RC(weft_tcp_connect("127.0.0.1", 80, &bad, &s), UV_EINVAL);
    EXPECT_RC(weft_tcp_connect("127.0.0.1", 80, NULL, &s), WEFT_ENOTASK);
    weft_server_t *srv = (weft_server_t *)1;
    EXPECT_RC(weft_tcp_serve(NULL, "127.0.0.1", 0, echo_handler, NULL, NULL, &srv), UV_EINVAL);
    cr_expect_null(srv);
    EXPECT_RC(weft_server_close(NULL), UV_EINVAL);
    EXPECT_RC(weft_server_port(NULL), UV_EINVAL);
    EXPECT_RC(weft_uv_await(NULL, 0, NULL), UV_EINVAL);
    cr_expect_null(weft_uv_req_new(UV_UNKNOWN_REQ));
    weft_uv_req_free(NULL);
    uv_req_t *r = weft_uv_req_new(UV_FS);
    cr_assert_not_null(r);
    EXPECT_RC(weft_uv_await(r, 0, NULL), WEFT_ENOTASK);
    weft_uv_req_free(r); /* never started: freed now */
    cr_expect_str_eq(weft_err_name(WEFT_ELIMIT), "WEFT_ELIMIT");
    cr_expect_str_eq(weft_strerror(WEFT_ELIMIT), "line or delimiter limit exceeded");
}

TASK_TEST(stream_misuse, bad_arguments_on_a_live_stream)
{
    weft_server_t *srv;
    EXPECT_RC(weft_tcp_serve(NULL, "not-an-address", 0, echo_handler, NULL, NULL, &srv), UV_EINVAL);
    EXPECT_RC(weft_tcp_serve(NULL, "127.0.0.1", 0, NULL, NULL, NULL, &srv), UV_EINVAL);
    EXPECT_OK(serve_local(echo_handler, NULL, NULL, &srv));
    weft_server_t *again;
    EXPECT_RC(
        weft_tcp_serve(NULL, "127.0.0.1", weft_server_port(srv), echo_handler, NULL, NULL, &again),
        UV_EADDRINUSE);
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char b[4];
    size_t got;
    EXPECT_RC(weft_stream_read(c, NULL, 4, &got), UV_EINVAL);
    EXPECT_RC(weft_stream_read(c, b, 0, &got), UV_EINVAL);
    EXPECT_RC(weft_stream_read(c, b, 4, NULL), UV_EINVAL);
    EXPECT_RC(weft_stream_readline(c, b, 0, &got), UV_EINVAL);
    EXPECT_OK(weft_stream_read_exactly(c, b, 0, &got));
    EXPECT_RC(weft_stream_write(c, NULL, 4), UV_EINVAL);
    EXPECT_OK(weft_stream_write(c, NULL, 0));
    EXPECT_OK(weft_stream_drain(c)); /* nothing buffered */
    cr_expect_not_null(weft_stream_tcp(c));
    EXPECT_OK(weft_stream_abort(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* A handler closes its own server, then still answers. */
static weft_server_t *self_srv;
static int closes_its_server(weft_stream_t *s, void *arg)
{
    (void)arg;
    char b[1];
    size_t got;
    int rc = weft_stream_read_exactly(s, b, 1, &got);
    if (rc == 0)
        rc = weft_server_close(self_srv);
    if (rc == 0)
        rc = weft_stream_write(s, "bye", 3);
    return rc;
}

TASK_TEST(stream, handler_closes_its_own_server)
{
    EXPECT_OK(serve_local(closes_its_server, NULL, NULL, &self_srv));
    int port = weft_server_port(self_srv);
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", port, NULL, &c));
    EXPECT_OK(weft_stream_write(c, "x", 1));
    char b[3];
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(c, b, 3, &got));
    cr_expect(memcmp(b, "bye", 3) == 0);
    EXPECT_RC(weft_stream_read(c, b, 1, &got), UV_EOF);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_RC(weft_tcp_connect("127.0.0.1", port, NULL, &c), UV_ECONNREFUSED);
    return 0;
}

/* A peer that never reads: output piles up past the high-water mark, and a
 * drain with a timeout gives up; abort drops the rest. */
static int never_reads(weft_stream_t *s, void *arg)
{
    (void)s;
    (void)arg;
    return weft_sleep(WEFT_FOREVER); /* until weft_server_close cancels it */
}

TASK_TEST(stream, drain_timeout_with_a_peer_that_does_not_read)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(never_reads, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    static char chunk[64 * 1024];
    memset(chunk, 'z', sizeof chunk);
    /* Kernel buffers take some megabytes first; 1 GiB bounds the loop. */
    for (int i = 0; i < 16384 && weft_stream_buffered(c) <= 64 * 1024; i++) {
        EXPECT_OK(weft_stream_write(c, chunk, sizeof chunk));
        if (i % 16 == 0)
            EXPECT_OK(weft_sleep(0));
    }
    cr_expect_gt(weft_stream_buffered(c), 64 * 1024);
    EXPECT_RC(weft_stream_drain_timeout(c, 20), UV_ETIMEDOUT);
    EXPECT_OK(weft_stream_abort(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

static int abort_at_once(weft_stream_t *s, void *arg)
{
    (void)s;
    (void)arg;
    return UV_ECONNABORTED; /* not 0: the server aborts (RST) */
}

TASK_TEST(stream, writes_to_a_reset_peer_fail)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(abort_at_once, NULL, NULL, &srv));
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &c));
    char b[4];
    size_t got;
    int rc = weft_stream_read(c, b, sizeof b, &got);
    cr_expect(rc == UV_ECONNRESET || rc == UV_EOF, "read: %s", weft_err_name(rc));
    rc = 0;
    for (int i = 0; i < 1000 && rc == 0; i++) {
        rc = weft_stream_write(c, "data", 4);
        if (rc == 0)
            rc = weft_stream_drain(c);
        if (rc == 0)
            EXPECT_OK(weft_sleep(1));
    }
    cr_expect(rc == UV_EPIPE || rc == UV_ECONNRESET, "write: %s", weft_err_name(rc));
    EXPECT_RC(weft_stream_write(c, "x", 1), rc); /* the error stays */
    EXPECT_RC(weft_stream_close(c), rc);
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* Closing a stream wakes a task blocked reading it with WEFT_ECLOSED; the
 * stream is freed only after that task left (ASan checks). */
static weft_stream_t *shared_stream;
static int shared_read_rc;
static int read_shared(void *arg, void **result)
{
    (void)arg;
    (void)result;
    char b[8];
    size_t got;
    shared_read_rc = weft_stream_read(shared_stream, b, sizeof b, &got);
    return 0;
}

TASK_TEST(stream, close_wakes_a_blocked_reader)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(never_reads, NULL, NULL, &srv));
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), NULL, &shared_stream));
    shared_read_rc = 1;
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, read_shared, NULL, &t));
    EXPECT_OK(weft_sleep(5));
    cr_expect_eq(shared_read_rc, 1);
    EXPECT_OK(weft_stream_close(shared_stream));
    EXPECT_OK(weft_await_task(t, NULL));
    cr_expect_eq(shared_read_rc, WEFT_ECLOSED);
    weft_task_unref(t);
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/* A line longer than the read buffer: WEFT_ELIMIT even with a larger cap,
 * and reading it in pieces still works. */
TASK_TEST(stream, line_longer_than_the_read_buffer)
{
    weft_server_t *srv;
    EXPECT_OK(serve_local(write_then_close, "0123456789abcdefghij\n", NULL, &srv));
    weft_stream_opts_t o = {.read_limit = 8};
    weft_stream_t *c;
    EXPECT_OK(weft_tcp_connect("127.0.0.1", weft_server_port(srv), &o, &c));
    char b[64];
    size_t len;
    EXPECT_RC(weft_stream_readline(c, b, sizeof b, &len), WEFT_ELIMIT);
    cr_expect_leq(weft_stream_readable(c), 8);
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(c, b, 16, &got));
    cr_expect(memcmp(b, "0123456789abcdef", 16) == 0);
    EXPECT_OK(weft_stream_readline(c, b, sizeof b, &len));
    cr_expect_eq(len, 5);
    cr_expect(memcmp(b, "ghij\n", 5) == 0);
    EXPECT_OK(weft_stream_close(c));
    EXPECT_OK(weft_server_close(srv));
    return 0;
}

/*
 * tests/install_smoke.c - a user's first program, built by
 * tests/install_test.sh against an installed weft (PREFIX/include, libweft.a
 * or libweft.so, found through pkg-config) and not through Bazel: it must
 * reach every package of the library. On a runtime of two loops
 * (loops/) the main task asks every loop (the mesh) to send its index into
 * a channel (channels/), sums what arrives, then echoes "ping" through a
 * TCP server on loopback (io/), all in tasks (core/). It also checks that
 * malloc is jemalloc's, which weft.pc promises (docs/install.md). Prints
 * "PLAIN: N passed, M failed" and exits 1 on a failure.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

static int g_passed, g_failed;

static void check(int ok, const char *what, int rc)
{
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        printf("FAIL: %s (rc %d, %s)\n", what, rc, weft_err_name(rc));
    }
}

/* On every loop: send this loop's index + 1 into the channel. */
static int send_index(void *arg, void **result)
{
    (void)result;
    int64_t v = (int64_t)weft_loop_index() + 1;
    return weft_chan_send(arg, &v);
}

static int mesh_and_channel(void)
{
    weft_chan_opts_t o = {.elem_size = sizeof(int64_t), .capacity = 8};
    weft_chan_t *ch;
    int rc = weft_chan_new(&o, &ch);
    if (rc != 0)
        return rc;
    int errors[2] = {0, 0};
    rc = weft_submit_to_all(send_index, ch, NULL, errors);
    int64_t sum = 0;
    for (unsigned i = 0; rc == 0 && i < 2; i++) {
        int64_t v;
        rc = weft_chan_recv_timeout(ch, &v, 10000);
        sum += v;
    }
    weft_chan_unref(ch);
    if (rc != 0)
        return rc;
    return sum == 1 + 2 ? 0 : UV_EPROTO;
}

/* The server's side: echo what comes until the client's EOF. */
static int echo(weft_stream_t *s, void *arg)
{
    (void)arg;
    char buf[64];
    size_t got;
    int rc;
    while ((rc = weft_stream_read(s, buf, sizeof buf, &got)) == 0)
        if ((rc = weft_stream_write(s, buf, got)) != 0)
            return rc;
    return rc == UV_EOF ? 0 : rc;
}

static int tcp_echo(void)
{
    weft_server_t *srv;
    int rc = weft_tcp_serve(weft_loop_current(), "127.0.0.1", 0, echo, NULL, NULL, &srv);
    if (rc != 0)
        return rc;
    weft_stream_t *s;
    rc = weft_tcp_connect_timeout("127.0.0.1", weft_server_port(srv), NULL, 10000, &s);
    if (rc == 0) {
        char back[4] = {0};
        size_t got = 0;
        rc = weft_stream_write(s, "ping", 4);
        if (rc == 0)
            rc = weft_stream_shutdown(s);
        if (rc == 0)
            rc = weft_stream_read_exactly(s, back, sizeof back, &got);
        if (rc == 0 && (got != 4 || memcmp(back, "ping", 4) != 0))
            rc = UV_EPROTO;
        int crc = weft_stream_close(s);
        if (rc == 0)
            rc = crc;
    }
    int src = weft_server_close(srv);
    return rc != 0 ? rc : src;
}

static int main_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = mesh_and_channel();
    check(rc == 0, "every loop sends its index into a channel", rc);
    rc = tcp_echo();
    check(rc == 0, "ping echoes through a loopback TCP server", rc);
    return 0;
}

/* weft.pc links jemalloc into the program, so that malloc is jemalloc's (the
 * sanitizers put their own malloc in front of any). */
static void check_allocator(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    printf("allocator: the sanitizer's (not checked)\n");
#else
    Dl_info info;
    void *(*m)(size_t) = malloc;
    int ok = dladdr((void *)m, &info) != 0 && info.dli_fname != NULL &&
             strstr(info.dli_fname, "jemalloc") != NULL;
    printf("allocator: malloc from %s\n",
           ok || info.dli_fname == NULL ? "jemalloc" : info.dli_fname);
    check(ok, "malloc is jemalloc's", 0);
#endif
}

int main(void)
{
    check_allocator();
    check(strcmp(weft_err_name(WEFT_ECLOSED), "WEFT_ECLOSED") == 0, "weft_err_name", 0);
    weft_runtime_opts_t opts = {.loops = 2, .no_pinning = true};
    int rc = weft_runtime_run(main_task, NULL, &opts, NULL);
    check(rc == 0, "weft_runtime_run on two loops", rc);
    printf("PLAIN: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

/*
 * examples/http_hello - the http_hello benchmark's server as a program: an
 * HTTP/1.1 keep-alive server on 127.0.0.1 that answers "hello" on every
 * loop of a runtime (weft_tcp_serve_rt; the handler is hello_server.c).
 *
 * Run: bazel run -c opt //examples/http_hello -- [PORT [LOOPS]]
 *   PORT 0 (the default) picks a free port; the first line printed says
 *   which. LOOPS defaults to one per allowed CPU. SIGINT/SIGTERM stop it:
 *   the server stops accepting, gives the open connections 1 s, and exits 0.
 * Then: curl http://127.0.0.1:PORT/   or   wrk -t1 -c64 -d5s http://127.0.0.1:PORT/
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft/weft.h>

#include "examples/http_hello/hello_server.h"

static int g_port;

static int serve_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_server_t *srv;
    int rc = weft_tcp_serve_rt(NULL, "127.0.0.1", g_port, hello_http_handler, NULL, NULL, &srv);
    if (rc != 0) {
        fprintf(stderr, "http_hello: serve: %s\n", weft_err_name(rc));
        return rc;
    }
    printf("listening on 127.0.0.1:%d with %u loops\n", weft_server_port(srv),
           weft_runtime_count(weft_runtime_current()));
    fflush(stdout);
    rc = weft_sleep(WEFT_FOREVER); /* until a signal cancels this task */
    weft_server_loop_stats_t st[16];
    int n = weft_server_stats(srv, 16, st);
    for (int i = 0; i < n && i < 16; i++)
        fprintf(stderr, "loop %u: %llu connections, %llu bytes in, %llu out\n", st[i].loop_index,
                (unsigned long long)st[i].accepted, (unsigned long long)st[i].bytes_in,
                (unsigned long long)st[i].bytes_out);
    int crc = weft_server_close_timeout(srv, 1000);
    if (rc == UV_ECANCELED)
        rc = 0;
    return rc != 0 ? rc : crc;
}

int main(int argc, char **argv)
{
    g_port = argc > 1 ? atoi(argv[1]) : 0;
    /* No idle poll: it speeds up messages between loops, which a server
     * hardly sends, and would spin a core a load generator needs. */
    weft_runtime_opts_t o = {.loops = argc > 2 ? (unsigned)atoi(argv[2]) : 0,
                             .loop = {.idle_poll_us = -1}};
    int rc = weft_runtime_run(serve_main, NULL, &o, NULL);
    if (rc != 0)
        fprintf(stderr, "http_hello: %s\n", weft_err_name(rc));
    return rc == 0 ? 0 : 1;
}

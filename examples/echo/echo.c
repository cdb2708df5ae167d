/*
 * examples/echo - the echo benchmark's server and load generator as a
 * program (echo_server.c).
 *
 * Run: bazel run -c opt //examples/echo -- [PORT [LOOPS]]
 *   a TCP echo server on 127.0.0.1, on every loop of a runtime (PORT 0, the
 *   default, picks a free port; the first line printed says which; LOOPS
 *   defaults to one per allowed CPU); SIGINT/SIGTERM stop it (exit 0).
 * bazel run -c opt //examples/echo -- --client PORT [CONNS [MSGS [SIZE]]]
 *   CONNS connections (default 4) each send MSGS messages (default 1000) of
 *   SIZE bytes (default 64), waiting for each full echo and checking it;
 *   prints the count and exits 0 when every echo was right.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#include "examples/echo/echo_server.h"

static int g_port;

static int serve_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_server_t *srv;
    int rc = weft_tcp_serve_rt(NULL, "127.0.0.1", g_port, echo_handler, NULL, NULL, &srv);
    if (rc != 0) {
        fprintf(stderr, "echo: serve: %s\n", weft_err_name(rc));
        return rc;
    }
    printf("listening on 127.0.0.1:%d with %u loops\n", weft_server_port(srv),
           weft_runtime_count(weft_runtime_current()));
    fflush(stdout);
    rc = weft_sleep(WEFT_FOREVER); /* until a signal cancels this task */
    int crc = weft_server_close_timeout(srv, 1000);
    if (rc == UV_ECANCELED)
        rc = 0;
    return rc != 0 ? rc : crc;
}

static int client_main(void *arg, void **result)
{
    (void)result;
    echo_load_t *load = arg;
    return echo_load_run(load);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--client") == 0) {
        echo_load_t load = {
            .host = "127.0.0.1",
            .port = atoi(argv[2]),
            .conns = argc > 3 ? (unsigned)atoi(argv[3]) : 4,
            .max_msgs = argc > 4 ? (uint64_t)atoll(argv[4]) : 1000,
            .msg_size = argc > 5 ? (size_t)atoll(argv[5]) : 64,
        };
        int rc = weft_run(client_main, &load, NULL);
        uint64_t want = load.conns * load.max_msgs;
        printf("%llu of %llu round trips checked\n", (unsigned long long)load.round_trips,
               (unsigned long long)want);
        if (rc != 0)
            fprintf(stderr, "echo: client: %s\n", weft_err_name(rc));
        return rc == 0 && load.round_trips == want ? 0 : 1;
    }
    g_port = argc > 1 ? atoi(argv[1]) : 0;
    /* No idle poll: it speeds up messages between loops, which a server
     * hardly sends, and would spin a core a load generator needs. */
    weft_runtime_opts_t o = {.loops = argc > 2 ? (unsigned)atoi(argv[2]) : 0,
                             .loop = {.idle_poll_us = -1}};
    int rc = weft_runtime_run(serve_main, NULL, &o, NULL);
    if (rc != 0)
        fprintf(stderr, "echo: %s\n", weft_err_name(rc));
    return rc == 0 ? 0 : 1;
}

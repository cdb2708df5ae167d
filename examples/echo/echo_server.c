/*
 * examples/echo/echo_server.c - the echo handler and load generator
 * (echo_server.h).
 */
#include "examples/echo/echo_server.h"

#include <stdlib.h>
#include <string.h>

#define MSG_MAX 4096

int echo_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    char buf[16384];
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

struct client {
    echo_load_t *load;
    unsigned id;
    uint64_t deadline_ms;
    uint64_t done;
};

static void fill(char *msg, size_t n, unsigned id, uint64_t k)
{
    for (size_t i = 0; i < n; i++)
        msg[i] = (char)('a' + (id * 7 + k * 13 + i) % 26);
}

static int client_main(void *arg, void **result)
{
    (void)result;
    struct client *c = arg;
    echo_load_t *L = c->load;
    weft_stream_t *s;
    int rc = weft_tcp_connect(L->host, L->port, NULL, &s);
    if (rc != 0)
        return weft_fail(rc, "connect");
    char msg[MSG_MAX], back[MSG_MAX];
    for (uint64_t k = 0; L->max_msgs == 0 || k < L->max_msgs; k++) {
        if (L->duration_ms != 0 && weft_loop_now() >= c->deadline_ms)
            break;
        fill(msg, L->msg_size, c->id, k);
        size_t got;
        rc = weft_stream_write(s, msg, L->msg_size);
        if (rc == 0)
            rc = weft_stream_read_exactly(s, back, L->msg_size, &got);
        if (rc == 0 && memcmp(msg, back, L->msg_size) != 0)
            rc = weft_fail(UV_EPROTO, "the echo differs from the message");
        if (rc != 0)
            break;
        c->done++;
    }
    int crc = weft_stream_close(s);
    return rc != 0 ? rc : crc;
}

int echo_load_run(echo_load_t *L)
{
    L->round_trips = 0;
    L->elapsed_ns = 0;
    L->error = 0;
    if (L->conns == 0 || L->msg_size == 0 || L->msg_size > MSG_MAX ||
        (L->duration_ms == 0 && L->max_msgs == 0))
        return L->error = UV_EINVAL;
    struct client *cs = calloc(L->conns, sizeof *cs);
    weft_task_t **ts = calloc(L->conns, sizeof *ts);
    if (cs == NULL || ts == NULL) {
        free(cs);
        free(ts);
        return L->error = UV_ENOMEM;
    }
    uint64_t t0 = weft_loop_now_ns();
    unsigned spawned = 0;
    for (unsigned i = 0; i < L->conns; i++) {
        cs[i] =
            (struct client){.load = L, .id = i, .deadline_ms = weft_loop_now() + L->duration_ms};
        int rc = weft_spawn(NULL, client_main, &cs[i], &ts[i]);
        if (rc != 0) {
            L->error = rc;
            break;
        }
        spawned++;
    }
    for (unsigned i = 0; i < spawned; i++) {
        int rc = weft_await_task(ts[i], NULL);
        if (rc != 0 && L->error == 0)
            L->error = rc;
        weft_task_unref(ts[i]);
        L->round_trips += cs[i].done;
    }
    L->elapsed_ns = weft_loop_now_ns() - t0;
    free(cs);
    free(ts);
    return L->error;
}

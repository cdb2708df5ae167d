/*
 * benchmarks/bench_chan.c - the channel workloads (docs/workloads.md):
 * pingpong_local, pingpong_cross and stream_cross through weft_chan_t, and
 * chan_fanin and select_2. The cross-loop ones start a runtime of two loops
 * (own_loop in bench_list.h), pinned like the probes in bench_cross.c, whose
 * limit_* figures from the same run they are compared with. Each checks its
 * own answer.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <weft/chan.h>
#include <weft/runtime.h>

#include "benchmarks/bench.h"
#include "benchmarks/bench_list.h"

static weft_chan_t *chan(size_t cap, weft_chan_kind_t kind)
{
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = sizeof(int64_t), .capacity = cap, .kind = kind};
    return weft_chan_new(&o, &ch) == 0 ? ch : NULL;
}

/* Run fn(arg) as a task on runtime loop 1 while the caller (a task on loop
 * 0) goes on; *f is its future. */
static int on_loop1(weft_task_fn fn, void *arg, weft_future_t **f)
{
    return weft_submit_to(weft_runtime_loop(weft_runtime_current(), 1), fn, arg, f);
}

/* ------------------------------------------------------------------------ */
/* pingpong_local / pingpong_cross: ping sends i on one SPSC channel of
 * capacity 1, pong answers 2i + 1 on another; both sum what they get.
 * Local: two tasks on one loop, 1,000,000 round trips; cross: ping on loop
 * 0, pong on loop 1, 200,000. Value: ns per round trip. */

enum {
    LOCAL_ROUNDS = 1000000,
    CROSS_ROUNDS = 200000
};

typedef struct cpp {
    weft_chan_t *to_pong, *to_ping;
    int64_t rounds;
    uint64_t ping_got, pong_got, ns;
} cpp_t;

static int cpong(void *arg, void **result)
{
    cpp_t *s = arg;
    (void)result;
    for (int64_t i = 0; i < s->rounds; i++) {
        int64_t v;
        int rc = weft_chan_recv(s->to_pong, &v);
        if (rc == 0) {
            s->pong_got += (uint64_t)v;
            v = 2 * v + 1;
            rc = weft_chan_send(s->to_ping, &v);
        }
        if (rc != 0)
            return weft_fail(rc, "pong: channel recv/send failed");
    }
    return 0;
}

static int cping(void *arg, void **result)
{
    cpp_t *s = arg;
    (void)result;
    uint64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < s->rounds; i++) {
        int64_t v = i;
        int rc = weft_chan_send(s->to_pong, &v);
        if (rc == 0)
            rc = weft_chan_recv(s->to_ping, &v);
        if (rc != 0)
            return weft_fail(rc, "ping: channel send/recv failed");
        s->ping_got += (uint64_t)v;
    }
    s->ns = bench_now_ns() - t0;
    return 0;
}

static int cpp_check(const cpp_t *s, double *value)
{
    const uint64_t n = (uint64_t)s->rounds;
    if (s->pong_got != n * (n - 1) / 2 || s->ping_got != n * n)
        return bench_fail("checksum: pong got %llu, ping got %llu", (unsigned long long)s->pong_got,
                          (unsigned long long)s->ping_got);
    *value = (double)s->ns / (double)n;
    return 0;
}

int bench_pingpong_local(weft_loop_t *loop, double *value)
{
    cpp_t s = {.rounds = LOCAL_ROUNDS};
    s.to_pong = chan(1, WEFT_CHAN_SPSC);
    s.to_ping = chan(1, WEFT_CHAN_SPSC);
    if (s.to_pong == NULL || s.to_ping == NULL)
        return bench_fail("weft_chan_new failed");
    weft_task_t *a, *b;
    int rc = weft_spawn(loop, cpong, &s, &b);
    if (rc == 0)
        rc = weft_spawn(loop, cping, &s, &a);
    if (rc != 0)
        return bench_fail("weft_spawn: %s", weft_err_name(rc));
    rc = weft_loop_run(loop);
    int bad = bench_check_task(a, "ping", NULL) | bench_check_task(b, "pong", NULL);
    weft_chan_unref(s.to_pong);
    weft_chan_unref(s.to_ping);
    if (rc != 0 || bad != 0)
        return rc != 0 ? bench_fail("weft_loop_run: %s", weft_err_name(rc)) : -1;
    return cpp_check(&s, value);
}

static int cross_main(void *arg, void **result)
{
    cpp_t *s = arg;
    (void)result;
    weft_future_t *f;
    int rc = on_loop1(cpong, s, &f);
    if (rc != 0)
        return rc;
    int prc = cping(s, NULL);
    rc = weft_await(f, NULL);
    weft_future_unref(f);
    return prc != 0 ? prc : rc;
}

int bench_pingpong_cross(weft_loop_t *loop, double *value)
{
    (void)loop;
    cpp_t s = {.rounds = CROSS_ROUNDS};
    s.to_pong = chan(1, WEFT_CHAN_SPSC);
    s.to_ping = chan(1, WEFT_CHAN_SPSC);
    if (s.to_pong == NULL || s.to_ping == NULL)
        return bench_fail("weft_chan_new failed");
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(cross_main, &s, &o, NULL);
    weft_chan_unref(s.to_pong);
    weft_chan_unref(s.to_ping);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    return cpp_check(&s, value);
}

/* ------------------------------------------------------------------------ */
/* stream_cross: a task on loop 0 sends 10,000,000 integers through an SPSC
 * channel of capacity 1024 to a task on loop 1, in batches of 64
 * (send_batch / recv_batch); the receiver sums them. Value: msgs/s. */

enum {
    STREAM_MSGS = 10000000,
    STREAM_BATCH = 64
};

typedef struct cstream {
    weft_chan_t *ch;
    uint64_t sum, got, ns;
} cstream_t;

static int stream_sink(void *arg, void **result)
{
    cstream_t *s = arg;
    (void)result;
    int64_t buf[STREAM_BATCH];
    for (;;) {
        size_t got = 0;
        int rc = weft_chan_recv_batch(s->ch, buf, STREAM_BATCH, &got);
        if (rc == UV_EOF)
            return 0;
        if (rc != 0)
            return weft_fail(rc, "sink: recv_batch failed");
        for (size_t i = 0; i < got; i++)
            s->sum += (uint64_t)buf[i];
        s->got += got;
    }
}

static int stream_main(void *arg, void **result)
{
    cstream_t *s = arg;
    (void)result;
    weft_future_t *f;
    int rc = on_loop1(stream_sink, s, &f);
    if (rc != 0)
        return rc;
    int64_t buf[STREAM_BATCH];
    uint64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < STREAM_MSGS && rc == 0; i += STREAM_BATCH) {
        for (int k = 0; k < STREAM_BATCH; k++)
            buf[k] = i + k;
        rc = weft_chan_send_batch(s->ch, buf, STREAM_BATCH, NULL);
    }
    (void)weft_chan_close(s->ch);
    int arc = weft_await(f, NULL);
    s->ns = bench_now_ns() - t0;
    weft_future_unref(f);
    return rc != 0 ? rc : arc;
}

int bench_stream_cross(weft_loop_t *loop, double *value)
{
    (void)loop;
    _Static_assert(STREAM_MSGS % STREAM_BATCH == 0, "whole batches");
    cstream_t s = {.ch = chan(1024, WEFT_CHAN_SPSC)};
    if (s.ch == NULL)
        return bench_fail("weft_chan_new failed");
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(stream_main, &s, &o, NULL);
    weft_chan_unref(s.ch);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    const uint64_t want = (uint64_t)STREAM_MSGS * (STREAM_MSGS - 1) / 2;
    if (s.got != STREAM_MSGS || s.sum != want)
        return bench_fail("got %llu values summing to %llu", (unsigned long long)s.got,
                          (unsigned long long)s.sum);
    *value = (double)STREAM_MSGS * 1e9 / (double)s.ns;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* chan_fanin: two producer tasks on loop 0 (send_batch of 64) and one plain
 * thread (send_blocking, one value per call) each send 1/3 of 10,000,000
 * values (rounded to whole batches) into one MPSC channel of capacity 1024;
 * one consumer task on loop 1 (recv_batch). Value: msgs/s, from the first
 * send to the last value received. Compare with limit_stream. */

enum {
    FANIN_PER = 3333312 /* 52,083 batches of 64 */
};

typedef struct fanin {
    cstream_t st; /* the channel and what the sink (stream_sink) counts */
    int thread_rc;
} fanin_t;

typedef struct producer {
    fanin_t *s;
    int64_t base;
} producer_t;

static int fanin_task(void *arg, void **result)
{
    producer_t *p = arg;
    (void)result;
    int64_t buf[STREAM_BATCH];
    for (int64_t i = 0; i < FANIN_PER; i += STREAM_BATCH) {
        for (int k = 0; k < STREAM_BATCH; k++)
            buf[k] = p->base + i + k;
        int rc = weft_chan_send_batch(p->s->st.ch, buf, STREAM_BATCH, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void *fanin_thread(void *arg)
{
    producer_t *p = arg;
    for (int64_t i = 0; i < FANIN_PER; i++) {
        int64_t v = p->base + i;
        int rc = weft_chan_send_blocking(p->s->st.ch, &v, WEFT_FOREVER);
        if (rc != 0) {
            p->s->thread_rc = rc;
            break;
        }
    }
    return NULL;
}

static int fanin_main(void *arg, void **result)
{
    fanin_t *s = arg;
    (void)result;
    producer_t p[3] = {{s, 0}, {s, FANIN_PER}, {s, 2 * (int64_t)FANIN_PER}};
    weft_future_t *f;
    int rc = on_loop1(stream_sink, &s->st, &f);
    if (rc != 0)
        return rc;
    uint64_t t0 = bench_now_ns();
    pthread_t th;
    bool thread = pthread_create(&th, NULL, fanin_thread, &p[2]) == 0;
    weft_task_t *t[2] = {NULL, NULL};
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = weft_spawn(NULL, fanin_task, &p[i], &t[i]);
    for (int i = 0; i < 2; i++) {
        if (t[i] != NULL) {
            int trc = weft_await_task(t[i], NULL);
            rc = rc != 0 ? rc : trc;
            weft_task_unref(t[i]);
        }
    }
    if (thread)
        pthread_join(th, NULL); /* a plain thread: blocks loop 0, which has nothing left */
    (void)weft_chan_close(s->st.ch);
    int arc = weft_await(f, NULL);
    s->st.ns = bench_now_ns() - t0;
    weft_future_unref(f);
    if (!thread)
        return UV_EAGAIN;
    return rc != 0 ? rc : s->thread_rc != 0 ? s->thread_rc : arc;
}

int bench_chan_fanin(weft_loop_t *loop, double *value)
{
    (void)loop;
    _Static_assert(FANIN_PER % STREAM_BATCH == 0, "whole batches");
    fanin_t s = {.st.ch = chan(1024, WEFT_CHAN_MPSC)};
    if (s.st.ch == NULL)
        return bench_fail("weft_chan_new failed");
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(fanin_main, &s, &o, NULL);
    weft_chan_unref(s.st.ch);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    const uint64_t n = 3ull * FANIN_PER;
    if (s.st.got != n || s.st.sum != n * (n - 1) / 2)
        return bench_fail("got %llu values summing to %llu", (unsigned long long)s.st.got,
                          (unsigned long long)s.st.sum);
    *value = (double)n * 1e9 / (double)s.st.ns;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* select_2: a task on loop 1 sends 1,000,000 values alternately into two
 * MPSC channels of capacity 1024; a task on loop 0 receives them all with
 * weft_select over both. Value: ns per received value. */

enum {
    SEL_N = 1000000
};

typedef struct sel2 {
    weft_chan_t *a, *b;
    uint64_t sum, got, ns;
} sel2_t;

static int sel_feed(void *arg, void **result)
{
    sel2_t *s = arg;
    (void)result;
    for (int64_t i = 0; i < SEL_N; i++) {
        int rc = weft_chan_send((i & 1) ? s->b : s->a, &i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int sel_main(void *arg, void **result)
{
    sel2_t *s = arg;
    (void)result;
    weft_future_t *f;
    int rc = on_loop1(sel_feed, s, &f);
    if (rc != 0)
        return rc;
    int64_t v = 0;
    weft_sel_case_t cs[2] = {{WEFT_SEL_RECV, s->a, &v, 0}, {WEFT_SEL_RECV, s->b, &v, 0}};
    uint64_t t0 = bench_now_ns();
    while (s->got < SEL_N) {
        int k = weft_select(cs, 2, WEFT_FOREVER);
        if (k < 0 || cs[k].rc != 0) {
            rc = k < 0 ? k : cs[k].rc;
            break;
        }
        s->sum += (uint64_t)v;
        s->got++;
    }
    s->ns = bench_now_ns() - t0;
    int arc = weft_await(f, NULL);
    weft_future_unref(f);
    return rc != 0 ? rc : arc;
}

int bench_select_2(weft_loop_t *loop, double *value)
{
    (void)loop;
    sel2_t s = {.a = chan(1024, WEFT_CHAN_MPSC), .b = chan(1024, WEFT_CHAN_MPSC)};
    if (s.a == NULL || s.b == NULL)
        return bench_fail("weft_chan_new failed");
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(sel_main, &s, &o, NULL);
    weft_chan_unref(s.a);
    weft_chan_unref(s.b);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    const uint64_t n = SEL_N;
    if (s.got != n || s.sum != n * (n - 1) / 2)
        return bench_fail("got %llu values summing to %llu", (unsigned long long)s.got,
                          (unsigned long long)s.sum);
    *value = (double)s.ns / (double)n;
    return 0;
}

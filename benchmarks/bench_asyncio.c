/*
 * benchmarks/bench_asyncio.c - the workloads of asyncio's surface on one
 * loop: pingpong_queue through weft_queue_t, lock_contended, gather_1000,
 * gen_iter. Each checks its own answer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "benchmarks/bench.h"
#include "benchmarks/bench_list.h"

/* ------------------------------------------------------------------------ */
/* pingpong_queue (pingpong_local before channels): two tasks on ONE loop
 * exchange a message through two
 * weft_queue_t (one each way, maxsize 1), 1,000,000 round trips. Value: ns
 * per round trip. Ping sends i, pong answers 2i + 1; both sum what they got. */

enum {
    QPP_ROUNDS = 1000000
};

typedef struct qpp {
    weft_queue_t to_pong, to_ping;
    uint64_t pong_got, ping_got, rounds, ns;
} qpp_t;

static int qping(void *arg, void **result)
{
    qpp_t *s = arg;
    (void)result;
    uint64_t t0 = bench_now_ns();
    for (intptr_t i = 0; i < QPP_ROUNDS; i++) {
        void *v;
        int rc = weft_queue_put(&s->to_pong, weft_int(i));
        if (rc == 0)
            rc = weft_queue_get(&s->to_ping, &v);
        if (rc != 0)
            return weft_fail(rc, "ping: queue put/get failed");
        s->ping_got += (uint64_t)weft_to_int(v);
        s->rounds++;
    }
    s->ns = bench_now_ns() - t0;
    return 0;
}

static int qpong(void *arg, void **result)
{
    qpp_t *s = arg;
    (void)result;
    for (int i = 0; i < QPP_ROUNDS; i++) {
        void *v;
        int rc = weft_queue_get(&s->to_pong, &v);
        if (rc == 0) {
            s->pong_got += (uint64_t)weft_to_int(v);
            rc = weft_queue_put(&s->to_ping, weft_int(2 * weft_to_int(v) + 1));
        }
        if (rc != 0)
            return weft_fail(rc, "pong: queue get/put failed");
    }
    return 0;
}

int bench_pingpong_queue(weft_loop_t *loop, double *value)
{
    qpp_t s = {0};
    const uint64_t n = QPP_ROUNDS;
    if (weft_queue_init(&s.to_pong, WEFT_QUEUE_FIFO, 1) != 0 ||
        weft_queue_init(&s.to_ping, WEFT_QUEUE_FIFO, 1) != 0)
        return bench_fail("weft_queue_init failed");
    weft_task_t *a, *b;
    int rc = weft_spawn(loop, qpong, &s, &b);
    if (rc == 0)
        rc = weft_spawn(loop, qping, &s, &a);
    if (rc != 0)
        return bench_fail("weft_spawn: %s", weft_err_name(rc));
    rc = weft_loop_run(loop);
    int ok = bench_check_task(a, "ping", NULL) | bench_check_task(b, "pong", NULL);
    if (weft_queue_close(&s.to_pong) != 0 || weft_queue_close(&s.to_ping) != 0)
        return bench_fail("weft_queue_close failed");
    if (rc != 0 || ok != 0)
        return rc != 0 ? bench_fail("weft_loop_run: %s", weft_err_name(rc)) : -1;
    if (s.rounds != n || s.pong_got != n * (n - 1) / 2 || s.ping_got != n * n)
        return bench_fail("checksum: %lu rounds, pong got %lu, ping got %lu",
                          (unsigned long)s.rounds, (unsigned long)s.pong_got,
                          (unsigned long)s.ping_got);
    *value = (double)s.ns / (double)n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* lock_contended: 100 tasks x 10,000 acquire/release of one weft_lock_t.
 * Each task holds the lock across a yield (acquire; count++; yield;
 * release), so every acquire finds the lock held and queues: the lock is
 * handed over FIFO on every release. Without the yield no task would ever
 * find it held on one loop. Value: ns per acquire/release pair (total time
 * / 1,000,000). Check: the count, and that no two tasks were inside at once. */

enum {
    LOCK_TASKS = 100,
    LOCK_ITERS = 10000
};

typedef struct lockc {
    weft_lock_t lock;
    uint64_t count;
    int inside, max_inside;
} lockc_t;

static int lock_worker(void *arg, void **result)
{
    lockc_t *s = arg;
    (void)result;
    for (int i = 0; i < LOCK_ITERS; i++) {
        int rc = weft_lock_acquire(&s->lock);
        if (rc != 0)
            return weft_fail(rc, "acquire failed");
        if (++s->inside > s->max_inside)
            s->max_inside = s->inside;
        s->count++;
        rc = weft_yield();
        s->inside--;
        int rr = weft_lock_release(&s->lock);
        if (rc != 0 || rr != 0)
            return weft_fail(rc != 0 ? rc : rr, "yield/release failed");
    }
    return 0;
}

static int lock_main(void *arg, void **result)
{
    lockc_t *s = arg;
    weft_task_t *t[LOCK_TASKS];
    (void)result;
    for (int i = 0; i < LOCK_TASKS; i++) {
        int rc = weft_spawn(NULL, lock_worker, s, &t[i]);
        if (rc != 0)
            return weft_fail(rc, "spawn failed");
    }
    int bad = 0;
    for (int i = 0; i < LOCK_TASKS; i++) {
        if (weft_await_task(t[i], NULL) != 0)
            bad = 1;
        weft_task_unref(t[i]);
    }
    return bad ? weft_fail(UV_EIO, "a worker failed") : 0;
}

int bench_lock_contended(weft_loop_t *loop, double *value)
{
    lockc_t s = {0};
    if (weft_lock_init(&s.lock) != 0)
        return bench_fail("weft_lock_init failed");
    uint64_t t0 = bench_now_ns();
    if (bench_run_main(loop, lock_main, &s, NULL) != 0)
        return -1;
    uint64_t ns = bench_now_ns() - t0;
    if (weft_lock_close(&s.lock) != 0)
        return bench_fail("weft_lock_close failed");
    const uint64_t ops = (uint64_t)LOCK_TASKS * LOCK_ITERS;
    if (s.count != ops || s.max_inside != 1)
        return bench_fail("count %lu (expected %lu), at most %d inside at once",
                          (unsigned long)s.count, (unsigned long)ops, s.max_inside);
    *value = (double)ns / (double)ops;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* gather_1000: spawn 1,000 tasks that return their index at once and
 * weft_gather them; 200 rounds. Value: microseconds per round (spawn +
 * gather). Check: the sum of the results of every round. */

enum {
    GATHER_N = 1000,
    GATHER_ROUNDS = 200
};

static int ret_index(void *arg, void **result)
{
    *result = arg;
    return 0;
}

typedef struct gstate {
    uint64_t sum, ns;
} gstate_t;

static int gather_main(void *arg, void **result)
{
    gstate_t *s = arg;
    weft_task_t *t[GATHER_N];
    weft_future_t *f[GATHER_N];
    void *res[GATHER_N];
    (void)result;
    uint64_t t0 = bench_now_ns();
    for (int r = 0; r < GATHER_ROUNDS; r++) {
        for (intptr_t i = 0; i < GATHER_N; i++) {
            int rc = weft_spawn(NULL, ret_index, weft_int(i), &t[i]);
            if (rc != 0)
                return weft_fail(rc, "spawn failed");
            f[i] = weft_task_future(t[i]);
        }
        int rc = weft_gather(f, GATHER_N, res, NULL, 0);
        for (int i = 0; i < GATHER_N; i++) {
            s->sum += (uint64_t)weft_to_int(res[i]);
            weft_task_unref(t[i]);
        }
        if (rc != 0)
            return weft_fail(rc, "gather failed");
    }
    s->ns = bench_now_ns() - t0;
    return 0;
}

int bench_gather_1000(weft_loop_t *loop, double *value)
{
    gstate_t s = {0};
    if (bench_run_main(loop, gather_main, &s, NULL) != 0)
        return -1;
    const uint64_t want = (uint64_t)GATHER_ROUNDS * GATHER_N * (GATHER_N - 1) / 2;
    if (s.sum != want)
        return bench_fail("sum %lu, expected %lu", (unsigned long)s.sum, (unsigned long)want);
    *value = (double)s.ns / 1000.0 / GATHER_ROUNDS;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* gen_iter: a generator yields 0 .. 10,000,000-1; the consumer sums them
 * with weft_gen_next. Value: ns per value. Check: the sum and UV_EOF. */

enum {
    GEN_VALUES = 10000000
};

static int counter_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (intptr_t i = 0; i < GEN_VALUES; i++) {
        int rc = weft_gen_yield(weft_int(i), NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct genst {
    uint64_t sum, count, ns;
    int end;
} genst_t;

static int gen_main(void *arg, void **result)
{
    genst_t *s = arg;
    (void)result;
    weft_gen_t *g;
    int rc = weft_gen_new(NULL, counter_body, NULL, &g);
    if (rc != 0)
        return weft_fail(rc, "weft_gen_new failed");
    uint64_t t0 = bench_now_ns();
    void *v;
    while ((rc = weft_gen_next(g, &v)) == 0) {
        s->sum += (uint64_t)weft_to_int(v);
        s->count++;
    }
    s->ns = bench_now_ns() - t0;
    s->end = rc;
    return weft_gen_free(g);
}

int bench_gen_iter(weft_loop_t *loop, double *value)
{
    genst_t s = {0};
    if (bench_run_main(loop, gen_main, &s, NULL) != 0)
        return -1;
    const uint64_t n = GEN_VALUES;
    if (s.end != UV_EOF || s.count != n || s.sum != n * (n - 1) / 2)
        return bench_fail("ended with %s after %lu values, sum %lu", weft_err_name(s.end),
                          (unsigned long)s.count, (unsigned long)s.sum);
    *value = (double)s.ns / (double)n;
    return 0;
}

/*
 * benchmarks/bench_pool.c - the workloads of the CPU thread pool (loops/,
 * weft/pool.h).
 *
 * offload: 10,000 CPU jobs, each 10,000 iterations of xorshift64 (13, 7, 17)
 * returning the last value, offloaded from a loop to a pool of 2 threads with
 * weft_to_thread(), awaited in submission order and summed (mod 2^64). Job i
 * starts from the seed i + 1. Value: jobs per second from the first submit
 * to the last result summed. Check: the sum equals the serial computation of
 * the same 10,000 jobs (done once per process, untimed). The pool is made
 * before and shut down after the timed part.
 *
 * The pool's compute limit, from the same process: one job timed alone on
 * the calling thread (median of LIMIT_SAMPLES), limit = 2 threads / that
 * time. The first run (the harness's warm-up) prints it on stdout as
 *   LIMIT weft offload <jobs/s> jobs/s
 * next to the harness's RESULT line; every run prints to stderr its own
 * limit measurement and its ratio to it. The limit assumes two otherwise
 * idle cores; the loop thread that submits and awaits competes for them (on
 * a 2-CPU machine it is a third runnable thread while it polls its inbox).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/bench_list.h"

enum {
    OFFLOAD_JOBS = 10000,
    OFFLOAD_ITERS = 10000,
    OFFLOAD_THREADS = 2,
    OFFLOAD_WAIT_MS = 30000,
    LIMIT_SAMPLES = 15
};

/* One job's work. noinline so that the pool's job and the serial check run
 * the same machine code, and the timing below times exactly one call. */
__attribute__((noinline)) static uint64_t offload_work(uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < OFFLOAD_ITERS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static int offload_job(void *arg, void **result)
{
    *result = (void *)(uintptr_t)offload_work((uint64_t)(uintptr_t)arg);
    return 0;
}

typedef struct offload_state {
    weft_pool_t *pool;
    weft_future_t **fs;
    uint64_t sum;
    uint64_t ns;
} offload_state_t;

static int offload_main(void *arg, void **result)
{
    offload_state_t *st = arg;
    int rc = 0, n = 0;

    (void)result;
    uint64_t t0 = bench_now_ns();
    for (; n < OFFLOAD_JOBS; n++) {
        rc = weft_to_thread(st->pool, offload_job, (void *)(uintptr_t)(n + 1), &st->fs[n]);
        if (rc != 0)
            break;
    }
    uint64_t sum = 0;
    int arc = 0;
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        int r = weft_await_timeout(st->fs[i], OFFLOAD_WAIT_MS, &v);
        if (r != 0 && arc == 0)
            arc = r;
        sum += (uint64_t)(uintptr_t)v;
        weft_future_unref(st->fs[i]);
    }
    st->ns = bench_now_ns() - t0;
    st->sum = sum;
    if (rc != 0)
        return weft_fail(rc, "weft_to_thread failed");
    return arc != 0 ? weft_fail(arc, "awaiting a job failed") : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* Median time of one job alone on this thread, in ns. */
static uint64_t single_job_ns(void)
{
    uint64_t t[LIMIT_SAMPLES];
    static volatile uint64_t sink;

    for (int i = 0; i < LIMIT_SAMPLES; i++) {
        uint64_t t0 = bench_now_ns();
        sink = sink + offload_work((uint64_t)i + 1);
        t[i] = bench_now_ns() - t0;
    }
    qsort(t, LIMIT_SAMPLES, sizeof t[0], cmp_u64);
    return t[LIMIT_SAMPLES / 2];
}

/* The loop that submits and awaits does nothing but wait for results, and
 * the pool's two threads need both of this machine's cores: the loop runs
 * with idle polling off (opts.idle_poll_us = -1), so it sleeps in epoll
 * between batches instead of spinning 50 us on a core the pool needs (with
 * the default poll the same run gave 0.53-0.69 of the limit). */
static int offload_run(weft_loop_t *loop, double *value);

int bench_offload(weft_loop_t *unused, double *value)
{
    (void)unused;
    weft_loop_t loop;
    weft_loop_opts_t lo = {.idle_poll_us = -1, .quiet = true};
    int rc = weft_loop_init(&loop, &lo);
    if (rc != 0)
        return bench_fail("weft_loop_init: %s", weft_err_name(rc));
    int r = offload_run(&loop, value);
    rc = weft_loop_close(&loop);
    if (r == 0 && rc != 0)
        return bench_fail("weft_loop_close: %s", weft_err_name(rc));
    return r;
}

static int offload_run(weft_loop_t *loop, double *value)
{
    /* The serial answer, once per process (the harness runs a workload's
     * warm-up and repetitions in one child). */
    static uint64_t expected;
    static bool have_expected, printed_limit;
    offload_state_t st = {.fs = malloc(OFFLOAD_JOBS * sizeof(weft_future_t *))};

    if (st.fs == NULL)
        return bench_fail("out of memory");
    memset(st.fs, 0, OFFLOAD_JOBS * sizeof(weft_future_t *));
    if (!have_expected) {
        for (uint64_t i = 1; i <= OFFLOAD_JOBS; i++)
            expected += offload_work(i);
        have_expected = true;
    }
    uint64_t one_ns = single_job_ns();
    double limit = OFFLOAD_THREADS / ((double)one_ns / 1e9);

    weft_pool_opts_t opts = {.threads = OFFLOAD_THREADS, .name = "offload"};
    int rc = weft_pool_new(&opts, &st.pool);
    if (rc != 0) {
        free(st.fs);
        return bench_fail("weft_pool_new: %s", weft_err_name(rc));
    }
    rc = bench_run_main(loop, offload_main, &st, NULL);
    int src = weft_pool_shutdown(st.pool);
    /* Receive what the shutdown may have sent (nothing, after a good run). */
    int lrc = weft_loop_run(loop);
    weft_pool_free(st.pool);
    free(st.fs);
    if (rc != 0)
        return -1;
    if (src != 0)
        return bench_fail("weft_pool_shutdown: %s", src < 0 ? weft_err_name(src) : "jobs left");
    if (lrc != 0)
        return bench_fail("weft_loop_run: %s", weft_err_name(lrc));
    if (st.sum != expected)
        return bench_fail("sum %#llx, expected %#llx", (unsigned long long)st.sum,
                          (unsigned long long)expected);
    *value = OFFLOAD_JOBS / ((double)st.ns / 1e9);
    if (!printed_limit) {
        printf("LIMIT weft offload %.0f jobs/s\n", limit);
        fflush(stdout);
        printed_limit = true;
    }
    fprintf(stderr,
            "      offload: one job alone %.1f us (median of %d) -> limit %.0f jobs/s; this run "
            "%.0f jobs/s = %.2f of the limit\n",
            (double)one_ns / 1e3, LIMIT_SAMPLES, limit, *value, *value / limit);
    return 0;
}

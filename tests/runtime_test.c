/*
 * tests/runtime_test.c - the multi-loop runtime (weft/runtime.h): start and
 * stop, loop identity, cross-loop ping-pong with and without idle polling,
 * bursts to sleeping loops, all-to-all submits, submit_to_all, awaiting a
 * busy loop's future, weft_spawn_threadsafe from plain threads and from
 * tasks, cancellation, ring overflow with a stalled receiver (and call_on
 * order), max_inflight, stopping with work in flight, weft_runtime_run,
 * bad input, the topology (loop count and pinning from the affinity mask),
 * and the reuse of jemalloc arenas across runtimes.
 *
 * Built twice (tests/BUILD, weft_test(tsan = True)): as a Criterion test and,
 * through tests/plain_test.h, as a plain program that runs under TSan. So it
 * uses only what the shim provides, and never asserts off the test's thread:
 * loop threads and helper threads record into atomics, or into structs that
 * the test reads after a tsfuture wait (whose mutex orders them).
 *
 * No wall-clock assertions. Every wait is bounded (WAIT_MS, or polls with a
 * bounded count) and every task ends by itself within SLEEP_LONG, so a bug
 * fails a check instead of hanging.
 */
#include "plain_test.h"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>
#include <weft/runtime.h>
#include <weft/weft.h>

#include "core/alloc.h"
#include "core/testhooks.h"

#define WAIT_MS    20000 /* bound of every wait; never reached when passing */
#define SLEEP_LONG 15000 /* a sleeper ends this soon only if not cancelled */
#ifdef __SANITIZE_THREAD__
#define SCALE      10 /* TSan runs ~10x slower: fewer messages */
#define PINGPONG_N 20000
#else
#define SCALE      1
#define PINGPONG_N 1000000
#endif
#define PINGPONG_WAIT_MS 50000

/* rc keeps its first error: rc = keep(rc, next). */
static int keep(int rc, int next)
{
    return rc != 0 ? rc : next;
}

/* Under TSan, no per-loop jemalloc arenas: in a forked child (the plain
 * runner forks every test) jemalloc's "arenas.create" makes TSan report a
 * double lock inside jemalloc, also in a program without weft. */
#ifdef __SANITIZE_THREAD__
#define NO_ARENAS true
#else
#define NO_ARENAS false
#endif
#define OPTS(...) (&(weft_runtime_opts_t){.no_arenas = NO_ARENAS, __VA_ARGS__})

/* ---- helpers -------------------------------------------------------------- */

static weft_runtime_t *start_rt(const weft_runtime_opts_t *o)
{
    weft_runtime_t *rt = NULL;
    ASSERT_OK(weft_runtime_start(o, &rt));
    cr_assert_not_null(rt);
    cr_assert_eq(weft_runtime_count(rt), o->loops);
    return rt;
}

static struct {
    weft_runtime_t *rt;
    uint64_t left;
    int rc;
} g_stopper; /* static: a stop that hangs outlives the test */

static void *stopper(void *arg)
{
    (void)arg;
    g_stopper.rc = weft_runtime_stop(g_stopper.rt, &g_stopper.left);
    return NULL;
}

/* weft_runtime_stop, from a helper thread so that a stop that hangs fails
 * the test (and the process ends it) instead of hanging it. */
static pthread_t stop_begin(weft_runtime_t *rt)
{
    g_stopper.rt = rt;
    g_stopper.left = 12345;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stopper, NULL), 0);
    return th;
}

static int stop_end(pthread_t th, uint64_t *left)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    int jrc = pthread_timedjoin_np(th, NULL, &until);
    cr_assert_eq(jrc, 0, "weft_runtime_stop did not return within %d ms", WAIT_MS);
    if (left != NULL)
        *left = g_stopper.left;
    return g_stopper.rc;
}

static int stop_bounded(weft_runtime_t *rt, uint64_t *left)
{
    return stop_end(stop_begin(rt), left);
}

static uint64_t stop_rt(weft_runtime_t *rt)
{
    uint64_t left = 12345;
    EXPECT_OK(stop_bounded(rt, &left));
    return left;
}

/* From this plain thread: run fn(arg) on loop i, wait at most ms. */
static int run_on(weft_runtime_t *rt, unsigned i, weft_task_fn fn, void *arg, void **res,
                  uint64_t ms)
{
    weft_tsfuture_t *f = NULL;
    int rc = weft_spawn_threadsafe(weft_runtime_loop(rt, i), fn, arg, &f);
    if (rc != 0)
        return rc;
    rc = weft_tsfuture_wait_blocking(f, ms, res);
    if (rc == UV_ETIMEDOUT)
        (void)weft_tsfuture_cancel(f);
    weft_tsfuture_unref(f);
    return rc;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Plain thread: wait until *v >= want, bounded. */
static bool wait_atomic(atomic_int *v, int want)
{
    for (int i = 0; i < WAIT_MS && atomic_load(v) < want; i++)
        sleep_ms(1);
    return atomic_load(v) >= want;
}

/* In a task: the same. 0, UV_ETIMEDOUT or the sleep's error. */
static int task_wait_atomic(atomic_int *v, int want)
{
    for (int i = 0; i < WAIT_MS && atomic_load(v) < want; i++) {
        int rc = weft_sleep(1);
        if (rc != 0)
            return rc;
    }
    return atomic_load(v) >= want ? 0 : UV_ETIMEDOUT;
}

static weft_loop_t *loop_at(unsigned i)
{
    return weft_runtime_loop(weft_runtime_current(), i);
}

static weft_loop_t *next_loop(void)
{
    unsigned n = weft_runtime_count(weft_runtime_current());
    return loop_at(((unsigned)weft_loop_index() + 1) % n);
}

static int quick_job(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static atomic_int g_sleepers_started, g_sleepers_cancelled, g_sleepers_uncancelled;

static int sleeper(void *arg, void **result)
{
    (void)arg, (void)result;
    atomic_fetch_add(&g_sleepers_started, 1);
    int rc = weft_sleep(SLEEP_LONG);
    atomic_fetch_add(rc == 0 ? &g_sleepers_uncancelled : &g_sleepers_cancelled, 1);
    return rc;
}

/* ---- start, stop, identity ------------------------------------------------ */

Test(runtime, start_and_stop_with_nothing_running, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = NULL;
    ASSERT_OK(weft_runtime_start(NO_ARENAS ? OPTS() : NULL, &rt));
    unsigned n = weft_runtime_count(rt);
    cr_assert_eq(n, weft_cpu_count());
    for (unsigned i = 0; i < n; i++) {
        cr_expect_not_null(weft_runtime_loop(rt, i));
        if (i > 0)
            cr_expect_neq(weft_runtime_loop(rt, i), weft_runtime_loop(rt, i - 1));
    }
    cr_expect_null(weft_runtime_loop(rt, n));
    cr_expect_eq(weft_loop_index(), -1);
    cr_expect_null(weft_runtime_current());
    cr_expect_eq(stop_rt(rt), 0);

    rt = start_rt(OPTS(.loops = 4, .no_pinning = true));
    EXPECT_OK(stop_bounded(rt, NULL));
    cr_expect_eq(weft_loop_index(), -1);
}

static int whoami(void *arg, void **result)
{
    int i = weft_loop_index();
    if (weft_runtime_current() != arg || i < 0 ||
        weft_loop_current() != weft_runtime_loop(arg, (unsigned)i))
        return UV_EINVAL;
    *result = weft_int(i);
    return 0;
}

Test(runtime, loop_index_and_current_inside_tasks, .timeout = TEST_TIMEOUT_S)
{
    for (unsigned n = 2; n <= 4; n += 2) {
        weft_runtime_t *rt = start_rt(OPTS(.loops = n, .no_pinning = n == 4));
        for (unsigned i = 0; i < n; i++) {
            void *r = NULL;
            EXPECT_OK(run_on(rt, i, whoami, rt, &r, WAIT_MS));
            cr_expect_eq(weft_to_int(r), (intptr_t)i);
        }
        cr_expect_eq(stop_rt(rt), 0);
    }
}

/* ---- ping-pong ------------------------------------------------------------ */

static int pong(void *arg, void **result)
{
    if (weft_loop_index() != 1)
        return UV_EINVAL;
    *result = weft_int((intptr_t)(uintptr_t)arg * 2 + 1);
    return 0;
}

static uint64_t g_pp_sum; /* loop 0's; read after the tsfuture wait */

static int ping(void *arg, void **result)
{
    uint64_t n = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < n; i++) {
        weft_future_t *f = NULL;
        void *r = NULL;
        int rc = weft_submit_to(loop_at(1), pong, (void *)(uintptr_t)i, &f);
        if (rc == 0)
            rc = weft_await(f, &r);
        weft_future_unref(f);
        if (rc != 0) {
            *result = weft_int((intptr_t)i);
            return rc;
        }
        g_pp_sum += (uint64_t)weft_to_int(r);
    }
    return 0;
}

/* With poll_us = -1 every message goes through the sleep/wake protocol, so a
 * lost wake-up hangs the ping-pong: the bounded wait makes that a failure. */
static void pingpong(int poll_us, uint64_t n)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .loop.idle_poll_us = poll_us));
    void *r = NULL;
    int rc = run_on(rt, 0, ping, (void *)(uintptr_t)n, &r, PINGPONG_WAIT_MS);
    cr_expect_eq(rc, 0, "%s at message %ld", weft_err_name(rc), (long)weft_to_int(r));
    cr_expect_eq(g_pp_sum, n * n);
    cr_expect_eq(stop_rt(rt), 0);
}

/* Without polling every round trip costs two eventfd wake-ups (4-11 us each
 * here, several times that under ASan on a busy machine): 100,000 of them
 * (a tenth of the polling run) stay well inside the bound. */
Test(runtime, pingpong_without_polling_loses_no_wakeup, .timeout = TEST_TIMEOUT_S)
{
    pingpong(-1, PINGPONG_N / 10);
}

Test(runtime, pingpong_with_default_polling, .timeout = TEST_TIMEOUT_S)
{
    pingpong(0, PINGPONG_N);
}

/* Bursts of exactly 32 (the rings' wake-check period), 64 and 33 submits in
 * one tick to sleeping loops, polling off: each burst must wake them. */
static int burst_task(void *arg, void **result)
{
    unsigned per = (unsigned)(uintptr_t)arg, n = weft_runtime_count(weft_runtime_current());
    weft_future_t *fs[64 * 3];
    for (int round = 0; round < 10; round++) {
        *result = weft_int(round);
        int rc = weft_sleep(5); /* every loop goes to sleep */
        unsigned made = 0;
        for (unsigned j = 1; rc == 0 && j < n; j++)
            for (unsigned k = 0; rc == 0 && k < per; k++) {
                rc = weft_submit_to(loop_at(j), quick_job, weft_int(k), &fs[made]);
                made += rc == 0;
            }
        for (unsigned i = 0; i < made; i++) {
            void *r = NULL;
            rc = keep(rc, weft_await_timeout(fs[i], 3000, &r));
            rc = keep(rc, weft_to_int(r) == (intptr_t)(i % per) ? 0 : UV_EIO);
            weft_future_unref(fs[i]);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

Test(runtime, bursts_of_32_submits_wake_sleeping_loops, .timeout = TEST_TIMEOUT_S)
{
    unsigned sizes[] = {32, 64, 33};
    for (int s = 0; s < 3; s++) {
        unsigned n = s == 1 ? 4 : 2;
        weft_runtime_t *rt =
            start_rt(OPTS(.loops = n, .no_pinning = n == 4, .loop.idle_poll_us = -1));
        void *r = NULL;
        int rc = run_on(rt, 0, burst_task, (void *)(uintptr_t)sizes[s], &r, WAIT_MS);
        cr_expect_eq(rc, 0, "bursts of %u: %s in round %ld", sizes[s], weft_err_name(rc),
                     (long)weft_to_int(r));
        stop_rt(rt);
    }
}

/* ---- every loop submits to every loop --------------------------------------- */

#define A2A_K (1000 / SCALE)

static atomic_int g_ran[4], g_wrong_loop;

static int a2a_job(void *arg, void **result)
{
    uintptr_t v = (uintptr_t)arg;
    int dst = (int)(v & 0xf);
    if (weft_loop_index() != dst)
        atomic_fetch_add(&g_wrong_loop, 1);
    atomic_fetch_add(&g_ran[dst], 1);
    if ((v >> 4) % 7 == 0) { /* some jobs suspend */
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    *result = (void *)(v + 1);
    return 0;
}

/* On every loop at once: K jobs to every loop (itself included), then await
 * them all and check the sum of the results. */
static int a2a_task(void *arg, void **result)
{
    (void)arg;
    unsigned n = weft_runtime_count(weft_runtime_current()), me = (unsigned)weft_loop_index();
    weft_future_t **fs = calloc((size_t)n * A2A_K, sizeof(*fs));
    if (fs == NULL)
        return UV_ENOMEM;
    uint64_t want = 0, got = 0;
    int rc = 0;
    size_t made = 0;
    for (unsigned k = 0; rc == 0 && k < A2A_K; k++)
        for (unsigned j = 0; rc == 0 && j < n; j++) {
            uintptr_t v = ((uintptr_t)(me * A2A_K + k) << 4) | j;
            rc = weft_submit_to(loop_at(j), a2a_job, (void *)v, &fs[made]);
            if (rc == 0)
                want += v + 1, made++;
        }
    for (size_t i = 0; i < made; i++) {
        void *r = NULL;
        rc = keep(rc, weft_await(fs[i], &r));
        got += (uintptr_t)r;
        weft_future_unref(fs[i]);
    }
    free(fs);
    *result = weft_int((intptr_t)made);
    return rc != 0 ? rc : got == want ? 0 : UV_EIO;
}

Test(runtime, every_loop_submits_to_every_loop, .timeout = TEST_TIMEOUT_S)
{
    for (unsigned n = 2; n <= 4; n += 2) {
        weft_runtime_t *rt = start_rt(OPTS(.loops = n, .no_pinning = n == 4));
        for (unsigned j = 0; j < 4; j++)
            atomic_store(&g_ran[j], 0);
        weft_tsfuture_t *fs[4];
        for (unsigned i = 0; i < n; i++)
            ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, i), a2a_task, NULL, &fs[i]));
        for (unsigned i = 0; i < n; i++) {
            void *r = NULL;
            int rc = weft_tsfuture_wait_blocking(fs[i], WAIT_MS, &r);
            cr_expect_eq(rc, 0, "%u loops, loop %u: %s", n, i, weft_err_name(rc));
            cr_expect_eq(weft_to_int(r), (intptr_t)(n * A2A_K));
            weft_tsfuture_unref(fs[i]);
        }
        cr_expect_eq(stop_rt(rt), 0);
        for (unsigned j = 0; j < n; j++)
            cr_expect_eq(atomic_load(&g_ran[j]), (int)(n * A2A_K), "%u loops, loop %u", n, j);
    }
    cr_expect_eq(atomic_load(&g_wrong_loop), 0);
}

/* ---- submit_to_all -------------------------------------------------------- */

static atomic_int g_all_ran[4];

/* Result 10 * loop index; with arg set, fails on loops 1 and 3. */
static int all_job(void *arg, void **result)
{
    int i = weft_loop_index();
    atomic_fetch_add(&g_all_ran[i], 1);
    *result = weft_int(i * 10);
    if (arg != NULL && i == 1)
        return weft_fail(UV_EIO, "loop 1 fails");
    return arg != NULL && i == 3 ? UV_ENOENT : 0;
}

static struct {
    int caller, rc_ok, rc_fail, rc_null, rc_nofn, rc_self;
    void *res_ok[4], *res_fail[4], *res_self;
    int err_ok[4], err_fail[4];
    char *msg;
} g_sta;

static int sta_task(void *arg, void **result)
{
    (void)arg, (void)result;
    g_sta.caller = weft_loop_index();
    g_sta.rc_ok = weft_submit_to_all(all_job, NULL, g_sta.res_ok, g_sta.err_ok);
    g_sta.rc_fail = weft_submit_to_all(all_job, (void *)1, g_sta.res_fail, g_sta.err_fail);
    g_sta.rc_null = weft_submit_to_all(all_job, (void *)1, NULL, NULL);
    g_sta.rc_nofn = weft_submit_to_all(NULL, NULL, NULL, NULL);
    /* submit_to the calling loop: spawned directly. */
    weft_future_t *f = NULL;
    g_sta.rc_self = weft_submit_to(weft_loop_current(), all_job, NULL, &f);
    if (g_sta.rc_self == 0)
        g_sta.rc_self = weft_await(f, &g_sta.res_self);
    weft_future_unref(f);
    /* A failure's message travels with it. */
    f = NULL;
    int rc = weft_submit_to(loop_at(1), all_job, (void *)1, &f);
    if (rc == 0 && weft_await(f, NULL) == UV_EIO && weft_future_message(f) != NULL)
        g_sta.msg = strdup(weft_future_message(f));
    weft_future_unref(f);
    return 0;
}

Test(runtime, submit_to_all_indexes_results_and_returns_the_first_failure,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 4, .no_pinning = true));
    EXPECT_RC(weft_submit_to_all(all_job, NULL, NULL, NULL), WEFT_EWRONGLOOP);
    EXPECT_OK(run_on(rt, 2, sta_task, NULL, NULL, WAIT_MS));
    cr_expect_eq(stop_rt(rt), 0);
    cr_expect_eq(g_sta.caller, 2);
    EXPECT_OK(g_sta.rc_ok);
    EXPECT_RC(g_sta.rc_fail, UV_EIO); /* loop 1's, not loop 3's */
    EXPECT_RC(g_sta.rc_null, UV_EIO);
    EXPECT_RC(g_sta.rc_nofn, UV_EINVAL);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(weft_to_int(g_sta.res_ok[i]), i * 10, "loop %d", i);
        EXPECT_RC(g_sta.err_ok[i], 0);
        EXPECT_RC(g_sta.err_fail[i], i == 1 ? UV_EIO : i == 3 ? UV_ENOENT : 0);
        if (i % 2 == 0)
            cr_expect_eq(weft_to_int(g_sta.res_fail[i]), i * 10, "loop %d", i);
        cr_expect_eq(atomic_load(&g_all_ran[i]), 3 + (i == 2) + (i == 1), "loop %d", i);
    }
    EXPECT_OK(g_sta.rc_self);
    cr_expect_eq(weft_to_int(g_sta.res_self), 20);
    cr_expect_not_null(g_sta.msg);
    if (g_sta.msg != NULL)
        cr_expect_str_eq(g_sta.msg, "loop 1 fails");
    free(g_sta.msg);
}

/* ---- a future of a busy loop -------------------------------------------------- */

static weft_future_token_t g_busy_tok; /* published by g_busy_ready */
static atomic_int g_busy_ready, g_busy_awaiting;

/* Loop 1: make a future, let loop 0 await it (through a token, which keeps
 * the future alive until the await is answered), stay busy (spin without
 * suspending, then many yields) and only then complete it. */
static int busy_owner(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f = NULL;
    int rc = weft_future_new(NULL, &f);
    if (rc != 0)
        return rc;
    if ((rc = weft_future_token(f, &g_busy_tok)) != 0) {
        weft_future_unref(f);
        return rc;
    }
    atomic_store(&g_busy_ready, 1); /* seq_cst: publishes g_busy_tok */
    rc = task_wait_atomic(&g_busy_awaiting, 1);
    for (volatile long spin = 0; spin < 2000000; spin++) {
    }
    for (int i = 0; rc == 0 && i < 2000; i++)
        rc = weft_yield();
    if (rc == 0)
        rc = weft_future_set_result(f, weft_int(4242));
    weft_future_unref(f); /* the token's reference answers the await */
    return rc;
}

static int busy_awaiter(void *arg, void **result)
{
    (void)arg;
    for (int i = 0; i < WAIT_MS && !atomic_load(&g_busy_ready); i++)
        if (weft_sleep(1) != 0)
            break;
    if (!atomic_load(&g_busy_ready))
        return UV_ETIMEDOUT;
    atomic_store(&g_busy_awaiting, 1);
    return weft_await_token(g_busy_tok, result);
}

Test(runtime, await_a_future_of_a_busy_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .loop.idle_poll_us = -1));
    weft_tsfuture_t *owner = NULL;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 1), busy_owner, NULL, &owner));
    void *r = NULL;
    EXPECT_OK(run_on(rt, 0, busy_awaiter, NULL, &r, WAIT_MS));
    cr_expect_eq(weft_to_int(r), 4242);
    EXPECT_OK(weft_tsfuture_wait_blocking(owner, WAIT_MS, NULL));
    weft_tsfuture_unref(owner);
    cr_expect_eq(stop_rt(rt), 0);
}

/* ---- weft_spawn_threadsafe ---------------------------------------------------- */

#define NTH    8
#define PER_TH (400 / SCALE)
#define BATCH  16

/* arg = seq << 5 | fail << 4 | target loop; result 2 * arg. */
static uintptr_t ts_arg(unsigned seq, bool fail, unsigned target)
{
    return ((uintptr_t)seq << 5) | (fail ? 0x10u : 0) | target;
}

static int ts_job(void *arg, void **result)
{
    uintptr_t v = (uintptr_t)arg;
    if (weft_loop_index() != (int)(v & 0xf))
        return UV_EINVAL;
    if ((v >> 5) % 3 == 0) {
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    if (v & 0x10)
        return weft_fail(UV_EIO, "asked to fail");
    *result = (void *)(v * 2);
    return 0;
}

/* Waits (bounded), checks and releases f: 0 when all is as expected. */
static int ts_check(weft_tsfuture_t *f, uintptr_t v)
{
    void *r = NULL, *r2 = NULL;
    int rc = weft_tsfuture_wait_blocking(f, WAIT_MS, &r);
    int rc2 = weft_tsfuture_result(f, &r2);
    weft_tsfuture_unref(f);
    if (rc != rc2 || r != r2)
        return 1;
    return (v & 0x10) ? rc != UV_EIO : rc != 0 || r != (void *)(v * 2);
}

static weft_runtime_t *g_ts_rt;
static atomic_int g_ts_errors, g_ts_done;

static void *ts_thread(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg, n = weft_runtime_count(g_ts_rt);
    weft_tsfuture_t *fs[BATCH];
    uintptr_t vs[BATCH];
    /* One at a time, then batches of 2, 4, ... in flight at once. */
    for (unsigned k = 0, batch = 1; k < PER_TH; batch = batch < BATCH ? batch * 2 : 1) {
        unsigned b = 0;
        for (; b < batch && k < PER_TH; b++, k++) {
            vs[b] = ts_arg(id * PER_TH + k, k % 16 == 5, (id + k) % n);
            if (weft_spawn_threadsafe(weft_runtime_loop(g_ts_rt, vs[b] & 0xf), ts_job,
                                      (void *)vs[b], &fs[b]) != 0)
                atomic_fetch_add(&g_ts_errors, 1);
        }
        for (unsigned i = 0; i < b; i++)
            if (fs[i] != NULL && ts_check(fs[i], vs[i]) != 0)
                atomic_fetch_add(&g_ts_errors, 1);
    }
    atomic_fetch_add(&g_ts_done, 1);
    return NULL;
}

Test(runtime, spawn_threadsafe_from_8_threads, .timeout = TEST_TIMEOUT_S)
{
    for (unsigned n = 2; n <= 4; n += 2) {
        g_ts_rt = start_rt(OPTS(.loops = n, .no_pinning = n == 4));
        atomic_store(&g_ts_done, 0);
        pthread_t th[NTH];
        int made = 0;
        while (made < NTH &&
               pthread_create(&th[made], NULL, ts_thread, (void *)(uintptr_t)made) == 0)
            made++;
        for (int i = 0; i < made; i++)
            pthread_join(th[i], NULL);
        cr_expect_eq(made, NTH);
        cr_expect_eq(atomic_load(&g_ts_done), made);
        cr_expect_eq(stop_rt(g_ts_rt), 0);
    }
    cr_expect_eq(atomic_load(&g_ts_errors), 0);
}

static struct {
    int rc1, rc2, rc3, rc4, rc5;
    void *r1, *r2, *r4;
} g_tsa;

static int tsa_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_tsfuture_t *f1 = NULL, *f2 = NULL, *f3 = NULL;
    int rc = weft_spawn_threadsafe(loop_at(1), ts_job, (void *)ts_arg(1, false, 1), &f1);
    rc = keep(rc, weft_spawn_threadsafe(loop_at(0), ts_job, (void *)ts_arg(2, false, 0), &f2));
    rc = keep(rc, weft_spawn_threadsafe(loop_at(1), ts_job, (void *)ts_arg(3, true, 1), &f3));
    if (rc == 0) {
        g_tsa.rc1 = weft_tsfuture_await(f1, &g_tsa.r1); /* another loop */
        g_tsa.rc2 = weft_tsfuture_await(f2, &g_tsa.r2); /* this loop */
        g_tsa.rc3 = weft_tsfuture_await(f3, NULL);
        g_tsa.rc4 = weft_tsfuture_await(f1, &g_tsa.r4); /* already done */
        g_tsa.rc5 = weft_tsfuture_wait_blocking(f1, 0, NULL);
    }
    weft_tsfuture_unref(f1);
    weft_tsfuture_unref(f2);
    weft_tsfuture_unref(f3);
    return rc;
}

Test(runtime, tsfuture_await_from_a_task, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    EXPECT_OK(run_on(rt, 0, tsa_task, NULL, NULL, WAIT_MS));
    cr_expect_eq(stop_rt(rt), 0);
    EXPECT_OK(g_tsa.rc1);
    cr_expect_eq(g_tsa.r1, (void *)(ts_arg(1, false, 1) * 2));
    EXPECT_OK(g_tsa.rc2);
    cr_expect_eq(g_tsa.r2, (void *)(ts_arg(2, false, 0) * 2));
    EXPECT_RC(g_tsa.rc3, UV_EIO);
    EXPECT_OK(g_tsa.rc4);
    cr_expect_eq(g_tsa.r4, g_tsa.r1);
    EXPECT_RC(g_tsa.rc5, WEFT_EWRONGLOOP); /* it would block the loop */
}

/* WEFT_FOREVER (or a timeout too long to represent) is no limit for
 * wait_blocking; the task is known to be done first, so nothing waits. */
Test(runtime, tsfuture_wait_blocking_takes_weft_forever, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 1));
    weft_tsfuture_t *f = NULL;
    void *r = NULL;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), quick_job, weft_int(9), &f));
    EXPECT_OK(weft_tsfuture_wait_blocking(f, WAIT_MS, &r)); /* done from here on */
    EXPECT_OK(weft_tsfuture_wait_blocking(f, WEFT_FOREVER, &r));
    cr_expect_eq(weft_to_int(r), 9);
    r = NULL;
    EXPECT_OK(weft_tsfuture_wait_blocking(f, WEFT_FOREVER - 1, &r));
    cr_expect_eq(weft_to_int(r), 9);
    weft_tsfuture_unref(f);
    cr_expect_eq(stop_rt(rt), 0);
}

Test(runtime, tsfuture_cancel_ends_a_sleeping_task, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    weft_tsfuture_t *f = NULL;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 1), sleeper, NULL, &f));
    cr_expect(wait_atomic(&g_sleepers_started, 1));
    EXPECT_RC(weft_tsfuture_result(f, NULL), WEFT_EPENDING);
    EXPECT_RC(weft_tsfuture_wait_blocking(f, 1, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_tsfuture_await(f, NULL), WEFT_ENOTASK);
    EXPECT_OK(weft_tsfuture_cancel(f));
    EXPECT_RC(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL), UV_ECANCELED);
    EXPECT_RC(weft_tsfuture_result(f, NULL), UV_ECANCELED);
    EXPECT_RC(weft_tsfuture_cancel(f), WEFT_EDONE);
    weft_tsfuture_unref(f);
    /* Cancelled at once, maybe before it started. */
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), sleeper, NULL, &f));
    EXPECT_OK(weft_tsfuture_cancel(f));
    EXPECT_RC(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL), UV_ECANCELED);
    weft_tsfuture_unref(f);
    cr_expect_eq(stop_rt(rt), 0);
    cr_expect_eq(atomic_load(&g_sleepers_uncancelled), 0);
    cr_expect_eq(atomic_load(&g_sleepers_cancelled), atomic_load(&g_sleepers_started));
}

static int failing_job(void *arg, void **result)
{
    (void)result;
    return weft_fail(UV_EIO, (const char *)arg);
}

/* A buffer the message is copied from, overwritten before anyone reads the
 * tsfuture: the message must be the tsfuture's own copy. */
static char g_fail_buf[32];

static struct {
    int rc_wrap, rc_await;
    char wrap_msg[32]; /* weft_future_message of the wrapped future */
} g_tsmsg;

/* On a loop: the wrapped future of a done, failed tsfuture carries its
 * message too. Read by the test after the tsfuture wait (its mutex). */
static int wrap_msg_task(void *arg, void **result)
{
    (void)result;
    weft_future_t *w = NULL;
    g_tsmsg.rc_wrap = weft_tsfuture_wrap(arg, &w);
    if (g_tsmsg.rc_wrap != 0)
        return g_tsmsg.rc_wrap;
    g_tsmsg.rc_await = weft_await(w, NULL);
    const char *m = weft_future_message(w);
    snprintf(g_tsmsg.wrap_msg, sizeof g_tsmsg.wrap_msg, "%s", m != NULL ? m : "(null)");
    weft_future_unref(w);
    return 0;
}

/* weft_tsfuture_message: a failure's message reaches a plain thread (and
 * stays after the source buffer changed); a success and a cancel have none
 * (a tsfuture cancel gives no reason). */
Test(runtime, tsfuture_message_reaches_a_plain_thread, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    weft_tsfuture_t *f = NULL;
    snprintf(g_fail_buf, sizeof g_fail_buf, "%s", "disk on fire");
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 1), failing_job, g_fail_buf, &f));
    cr_expect_null(weft_tsfuture_message(NULL));
    EXPECT_RC(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL), UV_EIO);
    memset(g_fail_buf, 'x', sizeof g_fail_buf - 1);
    const char *m = weft_tsfuture_message(f);
    cr_assert_not_null(m);
    cr_expect_str_eq(m, "disk on fire");
    cr_expect_eq(weft_tsfuture_message(f), m); /* the same copy every time */
    /* From a task on the other loop, through weft_tsfuture_wrap. */
    EXPECT_OK(run_on(rt, 0, wrap_msg_task, f, NULL, WAIT_MS));
    EXPECT_OK(g_tsmsg.rc_wrap);
    EXPECT_RC(g_tsmsg.rc_await, UV_EIO);
    cr_expect_str_eq(g_tsmsg.wrap_msg, "disk on fire");
    weft_tsfuture_unref(f);

    /* Success: no message. */
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), quick_job, weft_int(3), &f));
    EXPECT_OK(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL));
    cr_expect_null(weft_tsfuture_message(f));
    weft_tsfuture_unref(f);

    /* Cancelled while running: UV_ECANCELED and no message. */
    int started = atomic_load(&g_sleepers_started);
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 1), sleeper, NULL, &f));
    cr_expect(wait_atomic(&g_sleepers_started, started + 1));
    cr_expect_null(weft_tsfuture_message(f)); /* not done yet */
    EXPECT_OK(weft_tsfuture_cancel(f));
    EXPECT_RC(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL), UV_ECANCELED);
    cr_expect_null(weft_tsfuture_message(f));
    weft_tsfuture_unref(f);
    cr_expect_eq(stop_rt(rt), 0);
}

static struct {
    int rc_spawn, rc1, rc2;
    atomic_int awaiting;
} g_pass;

static int pass_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_tsfuture_t *inner = NULL;
    g_pass.rc_spawn = weft_spawn_threadsafe(loop_at(1), sleeper, NULL, &inner);
    if (g_pass.rc_spawn != 0)
        return g_pass.rc_spawn;
    int rc = task_wait_atomic(&g_sleepers_started, 1);
    atomic_store(&g_pass.awaiting, 1);
    g_pass.rc1 = weft_tsfuture_await(inner, NULL);
    g_pass.rc2 = weft_tsfuture_await(inner, NULL); /* the inner task's outcome */
    weft_tsfuture_unref(inner);
    return rc != 0 ? rc : g_pass.rc1;
}

Test(runtime, cancelling_a_tsfuture_awaiter_cancels_the_remote_task, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    weft_tsfuture_t *f = NULL;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), pass_task, NULL, &f));
    cr_expect(wait_atomic(&g_pass.awaiting, 1));
    /* Whether the awaiter is suspended yet or about to be, the cancel ends
     * its wait (at once, or at its suspension) and passes on: no sleep. */
    EXPECT_OK(weft_tsfuture_cancel(f));
    EXPECT_RC(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL), UV_ECANCELED);
    weft_tsfuture_unref(f);
    cr_expect_eq(stop_rt(rt), 0);
    EXPECT_OK(g_pass.rc_spawn);
    EXPECT_RC(g_pass.rc1, UV_ECANCELED);
    EXPECT_RC(g_pass.rc2, UV_ECANCELED);
    cr_expect_eq(atomic_load(&g_sleepers_cancelled), 1);
    cr_expect_eq(atomic_load(&g_sleepers_uncancelled), 0);
}

/* A submit to a sleeping loop wakes it at once, not when the sender's tick
 * ends: the sender here never ends its tick - it spins, without yielding,
 * until the remote task has started (bounded: the bound is the failure).
 * Before the fix the wake-up waited for the end of the tick, so a sender
 * whose tasks kept yielding to each other held a submit back for 256 task
 * runs (examples/pipeline saw 400 ms). */
static atomic_int g_late_sleeps, g_late_started;

static void note_loop1_sleep(void)
{
    if (weft_loop_index() == 1)
        atomic_fetch_add(&g_late_sleeps, 1);
}

static int late_remote(void *arg, void **result)
{
    (void)arg, (void)result;
    atomic_store(&g_late_started, 1);
    return 0;
}

static int late_main(void *arg, void **result)
{
    (void)arg, (void)result;
    int rc = task_wait_atomic(&g_late_sleeps, 1); /* loop 1 sleeps */
    weft_future_t *f = NULL;
    if (rc == 0)
        rc = weft_submit_to(loop_at(1), late_remote, NULL, &f);
    if (rc != 0)
        return rc;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do { /* no yield: this tick does not end until the remote task runs */
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (atomic_load(&g_late_started) == 0 && t.tv_sec - t0.tv_sec < WAIT_MS / 1000);
    int started = atomic_load(&g_late_started);
    rc = weft_await(f, NULL);
    weft_future_unref(f);
    return rc != 0 ? rc : started ? 0 : UV_ETIMEDOUT;
}

Test(runtime, a_submit_wakes_a_sleeping_loop_before_the_senders_tick_ends,
     .timeout = TEST_TIMEOUT_S)
{
    weft__test_sleep_hook = note_loop1_sleep;
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .loop.idle_poll_us = -1));
    EXPECT_OK(run_on(rt, 0, late_main, NULL, NULL, WAIT_MS));
    cr_expect_eq(stop_rt(rt), 0);
    weft__test_sleep_hook = NULL; /* the loops' threads are gone: no race */
    cr_expect_eq(atomic_load(&g_late_started), 1);
}

/* Issue 8, section 1: ts_complete releases its lock and only then completes
 * the awaiters' futures. The hook holds loop 1 in exactly that window while
 * loop 0 cancels the awaiter and makes new futures (which take recycled
 * slots first: the free lists are LIFO). The late completion goes through
 * the awaiter's token, which names the old future and keeps it alive: no new
 * future is touched. (Before tokens, the completion named the future by
 * pointer and the generation read at use, and completed a new occupant.) */
enum {
    WINDOW_NEW = 8
};
static struct {
    atomic_int in_window, release, registered;
    int rc_spawn, rc_await, rc_later, pending_after, pending_before;
} g_win;

static void window_hook(void)
{
    atomic_store(&g_win.in_window, 1);
    for (int i = 0; i < WAIT_MS && atomic_load(&g_win.release) == 0; i++)
        sleep_ms(1);
}

static int window_body(void *arg, void **result)
{
    (void)arg;
    /* Finish only once the awaiter is registered on loop 0. */
    for (int i = 0; i < WAIT_MS && atomic_load(&g_win.registered) == 0; i++)
        sleep_ms(1);
    *result = weft_int(11);
    return 0;
}

static int window_awaiter(void *arg, void **result)
{
    (void)result;
    g_win.rc_await = weft_tsfuture_await(arg, NULL);
    return 0;
}

static int window_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_tsfuture_t *f = NULL, *later = NULL;
    weft_future_t *fresh[WINDOW_NEW] = {NULL};
    weft_task_t *t = NULL;
    g_win.rc_spawn = weft_spawn_threadsafe(loop_at(1), window_body, NULL, &f);
    if (g_win.rc_spawn != 0)
        return g_win.rc_spawn;
    int rc = weft_spawn(NULL, window_awaiter, f, &t);
    for (int i = 0; rc == 0 && i < 1000 && weft_task_state(t) != WEFT_TASK_SUSPENDED; i++)
        rc = weft_yield();
    atomic_store(&g_win.registered, 1);
    if (rc == 0)
        rc = task_wait_atomic(&g_win.in_window, 1); /* loop 1 is in the window */
    if (rc == 0)
        rc = weft_task_cancel(t);
    if (rc == 0)
        rc = weft_await_task(t, NULL);
    for (int i = 0; rc == 0 && i < WINDOW_NEW; i++)
        rc = weft_future_new(NULL, &fresh[i]);
    g_win.pending_before = 0;
    for (int i = 0; i < WINDOW_NEW; i++)
        g_win.pending_before += fresh[i] != NULL && !weft_future_done(fresh[i]);
    atomic_store(&g_win.release, 1);
    /* Loop 1's inbox is FIFO to us: once this later task's outcome is here,
     * the late completion has been delivered (and refused) too. */
    if (rc == 0)
        rc = weft_spawn_threadsafe(loop_at(1), quick_job, NULL, &later);
    if (rc == 0)
        g_win.rc_later = weft_tsfuture_await(later, NULL);
    g_win.pending_after = 0;
    for (int i = 0; i < WINDOW_NEW; i++) {
        g_win.pending_after += fresh[i] != NULL && !weft_future_done(fresh[i]);
        weft_future_unref(fresh[i]);
    }
    weft_task_unref(t);
    weft_tsfuture_unref(later);
    weft_tsfuture_unref(f);
    return rc;
}

Test(runtime, a_late_tsfuture_completion_leaves_recycled_futures_alone, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    weft__test_ts_complete_hook = window_hook;
    EXPECT_OK(run_on(rt, 0, window_main, NULL, NULL, WAIT_MS));
    cr_expect_eq(stop_rt(rt), 0);
    weft__test_ts_complete_hook = NULL; /* the loops' threads are gone: no race */
    EXPECT_OK(g_win.rc_spawn);
    EXPECT_RC(g_win.rc_await, UV_ECANCELED);
    EXPECT_OK(g_win.rc_later);
    cr_expect_eq(atomic_load(&g_win.in_window), 1, "the hook never ran: no window");
    cr_expect_eq(g_win.pending_before, WINDOW_NEW);
    cr_expect_eq(g_win.pending_after, WINDOW_NEW, "a late completion completed %d new futures",
                 WINDOW_NEW - g_win.pending_after);
}

/* weft_tsfuture_wrap: a thread-safe future in gather, and a cancel of the
 * wrapped future that reaches the remote task. */
static int wrap_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_tsfuture_t *quick = NULL, *slow = NULL;
    weft_future_t *fs[2] = {NULL, NULL}, *w = NULL;
    void *res[2] = {NULL, NULL};
    int rc = weft_spawn_threadsafe(loop_at(1), pong, (void *)(uintptr_t)3, &quick);
    if (rc == 0)
        rc = weft_tsfuture_wrap(quick, &fs[0]);
    if (rc == 0)
        rc = weft_future_new(NULL, &fs[1]);
    if (rc == 0)
        rc = weft_future_set_result(fs[1], weft_int(5));
    if (rc == 0)
        rc = weft_gather(fs, 2, res, NULL, 0);
    if (rc == 0 && (weft_to_int(res[0]) != 7 || weft_to_int(res[1]) != 5))
        rc = UV_EIO;
    /* Cancel a wrapped long sleeper: its task on loop 1 is cancelled. */
    if (rc == 0)
        rc = weft_spawn_threadsafe(loop_at(1), sleeper, NULL, &slow);
    if (rc == 0)
        rc = weft_tsfuture_wrap(slow, &w);
    if (rc == 0)
        rc = task_wait_atomic(&g_sleepers_started, 1);
    if (rc == 0)
        rc = weft_future_cancel(w);
    if (rc == 0) {
        weft_tsfuture_unref(slow); /* the wrapper keeps its own reference */
        slow = NULL;
    }
    for (int i = 0; i < 2; i++)
        weft_future_unref(fs[i]);
    weft_future_unref(w);
    weft_tsfuture_unref(quick);
    weft_tsfuture_unref(slow);
    return rc;
}

Test(runtime, a_wrapped_tsfuture_joins_gather_and_its_cancel_reaches_the_task,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    EXPECT_OK(run_on(rt, 0, wrap_task, NULL, NULL, WAIT_MS));
    cr_expect(wait_atomic(&g_sleepers_cancelled, 1), "the remote sleeper was not cancelled");
    cr_expect_eq(stop_rt(rt), 0);
}

/* ---- a stalled receiver and a ring of 8 ------------------------------------- */

#define OVF_N (10000 / SCALE)
#define CALLS 100

/* A gate a task blocks its whole loop on (a plain condvar, not a weft
 * wait), bounded; the test opens it. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    atomic_int blocked;
};
#define GATE_INIT                                                     \
    {                                                                 \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 \
    }
static struct gate g_gate = GATE_INIT;
static atomic_int g_ovf_ran[OVF_N], g_ovf_bad, g_calls_next, g_calls_bad;

static int block_loop(void *arg, void **result)
{
    (void)result;
    struct gate *g = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g->mu);
    atomic_store(&g->blocked, 1);
    int rc = 0;
    while (!g->open && rc == 0)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    bool open = g->open;
    pthread_mutex_unlock(&g->mu);
    return open ? 0 : UV_ETIMEDOUT;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int ovf_job(void *arg, void **result)
{
    uintptr_t i = (uintptr_t)arg;
    atomic_fetch_add(i < OVF_N && weft_loop_index() == 1 ? &g_ovf_ran[i] : &g_ovf_bad, 1);
    *result = (void *)(i * 3);
    return 0;
}

/* weft_call_on: callbacks from one loop run in the order they were sent. */
static void call_cb(void *arg)
{
    if ((uintptr_t)arg != (uintptr_t)atomic_load(&g_calls_next) || weft_loop_index() != 1 ||
        weft_task_current() != NULL)
        atomic_fetch_add(&g_calls_bad, 1);
    atomic_fetch_add(&g_calls_next, 1);
}

static long long g_stall_cpu_ns = -1;

static int ovf_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_loop_t *to = loop_at(1);
    weft_future_t *blocker = NULL, **fs = calloc(OVF_N, sizeof(*fs));
    int rc = fs != NULL ? weft_submit_to(to, block_loop, &g_gate, &blocker) : UV_ENOMEM;
    rc = keep(rc, task_wait_atomic(&g_gate.blocked, 1));
    size_t made = 0;
    while (rc == 0 && made < OVF_N) {
        rc = weft_submit_to(to, ovf_job, (void *)(uintptr_t)made, &fs[made]);
        made += rc == 0;
    }
    /* The ring is full; the rest waits in the overflow list. */
    rc = keep(rc, weft_call_on_try(to, call_cb, NULL) == UV_EAGAIN ? 0 : UV_EPROTO);
    for (uintptr_t i = 0; rc == 0 && i < CALLS; i++)
        rc = weft_call_on(to, call_cb, (void *)i);
    /* Loop 1 is still blocked: nothing can move, and this loop has nothing
     * else to do. It must sleep, not poll its full ring: its CPU time over
     * 200 ms of waiting stays far below 200 ms (it spun before the room
     * wake-up existed). */
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    rc = keep(rc, weft_sleep(200));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    g_stall_cpu_ns = (c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec);
    gate_open(&g_gate);
    if (blocker != NULL)
        rc = keep(rc, weft_await(blocker, NULL));
    weft_future_unref(blocker);
    uint64_t sum = 0;
    for (size_t i = 0; i < made; i++) {
        void *r = NULL;
        rc = keep(rc, weft_await(fs[i], &r));
        sum += (uintptr_t)r;
        weft_future_unref(fs[i]);
    }
    free(fs);
    rc = keep(rc, task_wait_atomic(&g_calls_next, CALLS));
    return rc != 0 ? rc : sum == 3ull * OVF_N * (OVF_N - 1) / 2 ? 0 : UV_EIO;
}

Test(runtime, ring_overflow_with_a_stalled_receiver_loses_nothing, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .ring_size = 8));
    EXPECT_OK(run_on(rt, 0, ovf_task, NULL, NULL, WAIT_MS * 2));
    gate_open(&g_gate); /* in case the task failed early */
    cr_expect_geq(g_stall_cpu_ns, 0);
    cr_expect_lt(g_stall_cpu_ns, 100LL * 1000 * 1000,
                 "the sender burned %lld ns of CPU in 200 ms waiting for room", g_stall_cpu_ns);
    cr_expect_eq(stop_rt(rt), 0);
    int missing = 0, twice = 0;
    for (int i = 0; i < OVF_N; i++) {
        missing += atomic_load(&g_ovf_ran[i]) == 0;
        twice += atomic_load(&g_ovf_ran[i]) > 1;
    }
    cr_expect_eq(missing, 0);
    cr_expect_eq(twice, 0);
    cr_expect_eq(atomic_load(&g_ovf_bad), 0);
    cr_expect_eq(atomic_load(&g_calls_next), CALLS);
    cr_expect_eq(atomic_load(&g_calls_bad), 0);
}

/* ---- max_inflight ------------------------------------------------------------- */

#define MI_N 1000
static atomic_int g_mi_running, g_mi_max, g_mi_done, g_cb_rc[5], g_cb_done;

static int mi_job(void *arg, void **result)
{
    int now = atomic_fetch_add(&g_mi_running, 1) + 1;
    int seen = atomic_load(&g_mi_max);
    while (now > seen && !atomic_compare_exchange_weak(&g_mi_max, &seen, now)) {
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < 3; i++)
        rc = weft_yield();
    atomic_fetch_sub(&g_mi_running, 1);
    atomic_fetch_add(&g_mi_done, 1);
    *result = arg;
    return rc;
}

static int mi_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *fs[MI_N];
    uint64_t sum = 0;
    int rc = 0;
    size_t made = 0;
    while (rc == 0 && made < MI_N) {
        rc = weft_submit_to(loop_at(1), mi_job, (void *)(uintptr_t)made, &fs[made]);
        made += rc == 0;
    }
    for (size_t i = 0; i < made; i++) {
        void *r = NULL;
        rc = keep(rc, weft_await(fs[i], &r));
        sum += (uintptr_t)r;
        weft_future_unref(fs[i]);
    }
    return rc != 0 ? rc : sum == (uint64_t)MI_N * (MI_N - 1) / 2 ? 0 : UV_EIO;
}

/* Not in a task: the submit past the limit gets UV_EAGAIN. */
static void mi_callback(void *arg)
{
    (void)arg;
    weft_future_t *fs[5] = {0};
    for (int i = 0; i < 5; i++)
        atomic_store(&g_cb_rc[i], weft_submit_to(loop_at(1), quick_job, NULL, &fs[i]));
    for (int i = 0; i < 5; i++)
        weft_future_unref(fs[i]);
    atomic_store(&g_cb_done, 1);
}

Test(runtime, max_inflight_bounds_running_submits, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .max_inflight = 4));
    EXPECT_OK(run_on(rt, 0, mi_task, NULL, NULL, WAIT_MS));
    cr_expect_leq(atomic_load(&g_mi_max), 4);
    cr_expect_geq(atomic_load(&g_mi_max), 2); /* the limit was reached */
    cr_expect_eq(atomic_load(&g_mi_done), MI_N);
    ASSERT_OK(weft_call_soon_threadsafe(weft_runtime_loop(rt, 0), mi_callback, NULL));
    cr_expect(wait_atomic(&g_cb_done, 1));
    for (int i = 0; i < 5; i++)
        EXPECT_RC(atomic_load(&g_cb_rc[i]), i < 4 ? 0 : UV_EAGAIN);
    stop_rt(rt);
}

/* With max_inflight 1, task B waits for A's credit. A's reply and a callback
 * that tries to submit arrive in one drain: the credit goes to B, and the
 * callback, which arrives after the handover, must not take it (UV_EAGAIN);
 * before the handover, it overtook B and B waited again. */
static atomic_int g_ot_order[4], g_ot_n, g_ot_cb_rc = 1;

static void ot_try_cb(void *arg)
{
    (void)arg;
    weft_future_t *f = NULL;
    atomic_store(&g_ot_cb_rc, weft_submit_to(loop_at(1), quick_job, NULL, &f));
    weft_future_unref(f);
}

static void ot_send_try(void *arg)
{
    (void)arg;
    /* Runs on loop 1 after A's job finished, so after its reply was queued:
     * this call follows the reply in the same ring. */
    if (weft_call_on(loop_at(0), ot_try_cb, NULL) != 0)
        atomic_store(&g_ot_cb_rc, UV_EPROTO);
}

static int ot_job(void *arg, void **result)
{
    int n = atomic_fetch_add(&g_ot_n, 1);
    if (n < 4)
        atomic_store(&g_ot_order[n], (int)(uintptr_t)arg);
    if ((uintptr_t)arg == 1 && weft_call_soon(weft_loop_current(), ot_send_try, NULL, NULL) != 0)
        return UV_ENOMEM;
    *result = arg;
    return 0;
}

static int ot_submit_and_await(void *arg, void **result)
{
    weft_future_t *f = NULL;
    int rc = weft_submit_to(loop_at(1), ot_job, arg, &f);
    if (rc == 0)
        rc = weft_await(f, result);
    weft_future_unref(f);
    return rc;
}

static int ot_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f = NULL;
    weft_task_t *b = NULL;
    int rc = weft_submit_to(loop_at(1), ot_job, (void *)(uintptr_t)1, &f); /* the credit */
    if (rc == 0)
        rc = weft_spawn(NULL, ot_submit_and_await, (void *)(uintptr_t)2, &b);
    /* Let b run up to its wait for the credit (it cannot get it before our
     * reply, which needs a tick of loop 1 and of ours). */
    while (rc == 0 && weft_task_state(b) != WEFT_TASK_SUSPENDED)
        rc = weft_yield();
    if (f != NULL)
        rc = keep(rc, weft_await(f, NULL));
    if (b != NULL)
        rc = keep(rc, weft_await_task(b, NULL));
    weft_future_unref(f);
    weft_task_unref(b);
    return rc;
}

Test(runtime, a_freed_credit_goes_to_the_oldest_waiting_submitter, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .max_inflight = 1));
    EXPECT_OK(run_on(rt, 0, ot_main, NULL, NULL, WAIT_MS));
    cr_expect_eq(atomic_load(&g_ot_n), 2);
    cr_expect_eq(atomic_load(&g_ot_order[0]), 1);
    cr_expect_eq(atomic_load(&g_ot_order[1]), 2);
    EXPECT_RC(atomic_load(&g_ot_cb_rc), UV_EAGAIN);
    stop_rt(rt);
}

/* ---- stopping with work in flight ------------------------------------------------ */

static atomic_int g_sd_ready, g_sd_trips, g_sd_mode, g_sd_closed, g_sd_bad;

static int sd_cross_awaiter(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f = NULL;
    int rc = weft_submit_to(next_loop(), sleeper, NULL, &f);
    atomic_fetch_add(&g_sd_ready, 1);
    if (rc == 0)
        rc = weft_await(f, NULL);
    weft_future_unref(f);
    return rc;
}

static int sd_ts_awaiter(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_tsfuture_t *f = NULL;
    int rc = weft_spawn_threadsafe(next_loop(), sleeper, NULL, &f);
    atomic_fetch_add(&g_sd_ready, 1);
    if (rc == 0)
        rc = weft_tsfuture_await(f, NULL);
    weft_tsfuture_unref(f);
    return rc;
}

/* Quick, until the test is about to stop: from then on it sleeps long, and
 * only the stop's cancel ends it in time. */
static int sd_job(void *arg, void **result)
{
    return atomic_load(&g_sd_mode) ? sleeper(arg, result) : quick_job(arg, result);
}

/* Round trips to the next loop until the runtime refuses one: WEFT_ECLOSED
 * (a cancelled await just leads to the next try). */
static int sd_storm(void *arg, void **result)
{
    (void)arg, (void)result;
    for (long i = 0;; i++) {
        weft_future_t *f = NULL;
        int rc = weft_submit_to(next_loop(), sd_job, NULL, &f);
        if (rc != 0) {
            atomic_fetch_add(rc == WEFT_ECLOSED ? &g_sd_closed : &g_sd_bad, 1);
            return rc;
        }
        if (i == 0)
            atomic_fetch_add(&g_sd_ready, 1);
        rc = weft_await(f, NULL);
        weft_future_unref(f);
        if (rc == 0)
            atomic_fetch_add(&g_sd_trips, 1);
        else if (rc != UV_ECANCELED && rc != WEFT_ECLOSED) /* refused by the target */
            atomic_fetch_add(&g_sd_bad, 1);
    }
}

/* On every loop: a storm of round trips, and unless storms_only a sleeper,
 * a task awaiting a sleeper on the next loop (submit_to) and one awaiting a
 * sleeper there through a tsfuture. Then stop. */
static void stop_mid_flight(unsigned n, bool storms_only)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = n, .no_pinning = n == 4));
    weft_task_fn fns[] = {sd_storm, sleeper, sd_cross_awaiter, sd_ts_awaiter};
    unsigned kinds = storms_only ? 1 : 4;
    weft_tsfuture_t *fs[4 * 4];
    for (unsigned i = 0; i < n * kinds; i++)
        ASSERT_OK(
            weft_spawn_threadsafe(weft_runtime_loop(rt, i / kinds), fns[i % kinds], NULL, &fs[i]));
    cr_expect(wait_atomic(&g_sd_ready, (storms_only ? 1 : 3) * (int)n));
    cr_expect(wait_atomic(&g_sd_trips, 100 * (int)n));
    cr_expect(wait_atomic(&g_sleepers_started, storms_only ? 0 : 3 * (int)n));
    atomic_store(&g_sd_mode, !storms_only);
    uint64_t left = 0;
    EXPECT_OK(stop_bounded(rt, &left));
    if (!storms_only) /* storms may see WEFT_ECLOSED and end before the loops stop */
        cr_expect_gt(left, 0);
    for (unsigned i = 0; i < n * kinds; i++) {
        int rc = weft_tsfuture_result(fs[i], NULL);
        cr_expect(rc == UV_ECANCELED || rc == WEFT_ECLOSED, "task %u: %s", i, weft_err_name(rc));
        weft_tsfuture_unref(fs[i]);
    }
    cr_expect_eq(atomic_load(&g_sd_closed), (int)n);
    cr_expect_eq(atomic_load(&g_sd_bad), 0);
    cr_expect_eq(atomic_load(&g_sleepers_uncancelled), 0,
                 "%d tasks were not cancelled by the stop (they slept to their end)",
                 atomic_load(&g_sleepers_uncancelled));
}

Test(runtime, submit_during_stop_gets_eclosed, .timeout = TEST_TIMEOUT_S)
{
    stop_mid_flight(2, true);
}

Test(runtime, stop_with_tasks_mid_flight_on_every_loop_2_loops, .timeout = TEST_TIMEOUT_S)
{
    stop_mid_flight(2, false);
}

Test(runtime, stop_with_tasks_mid_flight_on_every_loop_4_loops, .timeout = TEST_TIMEOUT_S)
{
    stop_mid_flight(4, false);
}

/* Loop 0 stalls with 92 callbacks for loop 1 waiting in its overflow list
 * (ring of 8) while loop 1 begins its stop. Every call that weft_call_on
 * accepted is delivered: loop 1 does not run dry before loop 0, stalled,
 * has stopped and moved its overflow list into the ring. */
static struct gate g_gates[2] = {GATE_INIT, GATE_INIT};
static atomic_int g_stall_ready, g_stall_calls, g_stopping[2];

static void count_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_stall_calls, 1);
}

static void note_stop(unsigned idx)
{
    if (idx < 2)
        atomic_store(&g_stopping[idx], 1);
}

static int stall_task(void *arg, void **result)
{
    weft_future_t *f = NULL;
    int rc = weft_submit_to(loop_at(1), block_loop, &g_gates[1], &f);
    weft_future_unref(f);
    rc = keep(rc, task_wait_atomic(&g_gates[1].blocked, 1));
    for (int i = 0; rc == 0 && i < 100; i++)
        rc = weft_call_on(loop_at(1), count_cb, NULL);
    rc = keep(rc, weft_yield()); /* flushed: 8 in the ring, 92 in the overflow list */
    atomic_store(&g_stall_ready, 1);
    return keep(rc, block_loop(arg, result));
}

Test(runtime, a_stop_delivers_every_accepted_call_even_to_a_loop_that_stops_first,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .ring_size = 8));
    weft_tsfuture_t *f = NULL;
    weft__test_stop_hook = note_stop;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), stall_task, &g_gates[0], &f));
    cr_expect(wait_atomic(&g_stall_ready, 1));
    gate_open(&g_gates[1]); /* loop 1 runs the 8 callbacks in its ring, then idles */
    cr_expect(wait_atomic(&g_stall_calls, 8));
    pthread_t th = stop_begin(rt);
    cr_expect(wait_atomic(&g_stopping[1], 1)); /* loop 1 is stopping; loop 0 still stalls */
    cr_expect_eq(atomic_load(&g_stopping[0]), 0);
    gate_open(&g_gates[0]);
    EXPECT_OK(stop_end(th, NULL));
    weft__test_stop_hook = NULL;
    EXPECT_OK(weft_tsfuture_result(f, NULL));
    weft_tsfuture_unref(f);
    cr_expect_eq(atomic_load(&g_stall_calls), 100, "accepted calls were dropped by the stop");
}

/* ---- no reply lost to a short allocation --------------------------------------
 * Loop 0 submits a job to loop 1 (max_inflight 1) and then stalls. The job
 * fills loop 1's ring to loop 0 (8 slots) and turns allocation failure on:
 * a further weft_call_on is refused with UV_ENOMEM (not accepted and lost),
 * and the job's reply, which now needs an overflow node, is parked. A
 * callback turns allocation back on; loop 0 resumes and gets the reply, and
 * its next submit - which needs the returned credit - completes too. */
static atomic_int g_fi_restored;
static int g_fi_call_rc = 1;

static void noop_cb(void *arg)
{
    (void)arg;
}

static void restore_alloc_cb(void *arg)
{
    (void)arg;
    weft__alloc_fail_after(-1);
    atomic_store(&g_fi_restored, 1);
}

static int fi_job(void *arg, void **result)
{
    (void)arg;
    int rc = 0;
    for (int i = 0; rc == 0 && i < 8; i++)
        rc = weft_call_on(loop_at(0), noop_cb, NULL);
    if (rc == 0)
        rc = weft_call_soon(weft_loop_current(), restore_alloc_cb, NULL, NULL);
    if (rc == 0) {
        weft__alloc_fail_after(0); /* every allocation fails from here */
        g_fi_call_rc = weft_call_on(loop_at(0), noop_cb, NULL);
    }
    *result = weft_int(77);
    return rc;
}

static int fi_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f = NULL, *g = NULL;
    void *r1 = NULL, *r2 = NULL;
    int rc = weft_submit_to(loop_at(1), fi_job, NULL, &f);
    rc = keep(rc, weft_sleep(1)); /* a tick: the submit is flushed to loop 1 */
    /* Stall this loop (no tick, nothing consumed) until loop 1 is done. */
    for (int i = 0; i < WAIT_MS && !atomic_load(&g_fi_restored); i++)
        usleep(1000);
    if (f != NULL)
        rc = keep(rc, weft_await(f, &r1));
    rc = keep(rc, weft_submit_to(loop_at(1), pong, (void *)(uintptr_t)5, &g));
    if (g != NULL)
        rc = keep(rc, weft_await_timeout(g, WAIT_MS, &r2));
    weft_future_unref(f);
    weft_future_unref(g);
    if (rc == 0 && (weft_to_int(r1) != 77 || r2 == NULL))
        rc = UV_EIO;
    return rc;
}

Test(runtime, a_reply_that_cannot_be_queued_is_parked_and_delivered_later,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2, .ring_size = 8, .max_inflight = 1));
    unsigned long parked = __atomic_load_n(&weft__test_replies_parked, __ATOMIC_RELAXED);
    EXPECT_OK(run_on(rt, 0, fi_main, NULL, NULL, WAIT_MS * 2));
    weft__alloc_fail_after(-1); /* in case the job failed early */
    EXPECT_RC(g_fi_call_rc, UV_ENOMEM);
    cr_expect_gt(__atomic_load_n(&weft__test_replies_parked, __ATOMIC_RELAXED), parked,
                 "the reply never needed parking: the test did not reach its path");
    cr_expect_eq(stop_rt(rt), 0);
}

/* ---- weft_runtime_run ------------------------------------------------------------ */

static int run_main(void *arg, void **result)
{
    if (weft_loop_index() != 0 || weft_runtime_count(weft_runtime_current()) != 2)
        return UV_EINVAL;
    weft_future_t *f = NULL;
    int rc = weft_submit_to(loop_at(1), pong, (void *)(uintptr_t)20, &f);
    if (rc == 0)
        rc = weft_await(f, result);
    weft_future_unref(f);
    return arg != NULL ? weft_fail(UV_EPIPE, "main fails") : rc;
}

static int run_main_signalled(void *arg, void **result)
{
    (void)arg, (void)result;
    kill(getpid(), SIGTERM);
    return weft_sleep(SLEEP_LONG);
}

Test(runtime, runtime_run_returns_mains_outcome, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_opts_t o = *OPTS(.loops = 2);
    void *r = NULL;
    EXPECT_OK(weft_runtime_run(run_main, NULL, &o, &r));
    cr_expect_eq(weft_to_int(r), 41);
    EXPECT_RC(weft_runtime_run(run_main, (void *)1, &o, &r), UV_EPIPE);
    EXPECT_RC(weft_runtime_run(NULL, NULL, &o, &r), UV_EINVAL);
    o.no_pinning = true; /* SIGTERM cancels main */
    EXPECT_RC(weft_runtime_run(run_main_signalled, NULL, &o, NULL), UV_ECANCELED);
}

/* ---- bad input -------------------------------------------------------------------- */

static weft_runtime_t *g_other_rt;
static struct {
    int null_target, null_fn, null_out, other_rt, call_null, call_other, call_self, stop, wait,
        after;
    bool out_cleared;
} g_bad;

static int bad_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f = (weft_future_t *)&g_bad; /* must be cleared */
    g_bad.null_fn = weft_submit_to(loop_at(1), NULL, NULL, &f);
    g_bad.out_cleared = f == NULL;
    /* NULL = the calling loop (loop.h), for submit_to as for call_on. */
    g_bad.null_target = weft_submit_to(NULL, quick_job, weft_int(3), &f);
    if (g_bad.null_target == 0) {
        void *r = NULL;
        g_bad.null_target = weft_await(f, &r);
        if (g_bad.null_target == 0 && weft_to_int(r) != 3)
            g_bad.null_target = UV_EPROTO;
        weft_future_unref(f);
    }
    g_bad.call_self = weft_call_on(NULL, call_cb, NULL);
    g_bad.null_out = weft_submit_to(loop_at(1), quick_job, NULL, NULL);
    g_bad.other_rt = weft_submit_to(weft_runtime_loop(g_other_rt, 1), quick_job, NULL, &f);
    if (g_bad.other_rt == 0)
        weft_future_unref(f);
    g_bad.call_null = weft_call_on(loop_at(1), NULL, NULL);
    g_bad.call_other = weft_call_on(weft_runtime_loop(g_other_rt, 0), call_cb, NULL);
    g_bad.stop = weft_runtime_stop(weft_runtime_current(), NULL);
    weft_tsfuture_t *tf = NULL;
    int rc = weft_spawn_threadsafe(loop_at(1), quick_job, NULL, &tf);
    if (rc == 0) {
        g_bad.wait = weft_tsfuture_wait_blocking(tf, WAIT_MS, NULL);
        rc = weft_tsfuture_await(tf, NULL);
        weft_tsfuture_unref(tf);
    }
    f = NULL; /* the runtime still works */
    g_bad.after = weft_submit_to(loop_at(1), quick_job, NULL, &f);
    if (g_bad.after == 0)
        g_bad.after = weft_await(f, NULL);
    weft_future_unref(f);
    return rc;
}

Test(runtime, bad_input_is_refused, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = (weft_runtime_t *)&g_bad;
    EXPECT_RC(weft_runtime_start(OPTS(.loops = 2, .ring_size = 3), &rt), UV_EINVAL);
    cr_expect_null(rt);
    EXPECT_RC(weft_runtime_start(NULL, NULL), UV_EINVAL);

    rt = start_rt(OPTS(.loops = 2));
    g_other_rt = start_rt(OPTS(.loops = 2, .no_pinning = true));
    weft_future_t *f = NULL;
    EXPECT_RC(weft_submit_to(weft_runtime_loop(rt, 1), quick_job, NULL, &f), WEFT_EWRONGLOOP);
    cr_expect_null(f);
    EXPECT_RC(weft_call_on(weft_runtime_loop(rt, 1), call_cb, NULL), WEFT_EWRONGLOOP);
    weft_tsfuture_t *tf = NULL;
    EXPECT_RC(weft_spawn_threadsafe(NULL, quick_job, NULL, &tf), UV_EINVAL);
    EXPECT_RC(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), NULL, NULL, &tf), UV_EINVAL);
    EXPECT_RC(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), quick_job, NULL, NULL), UV_EINVAL);
    cr_expect_null(tf);

    EXPECT_OK(run_on(rt, 0, bad_task, NULL, NULL, WAIT_MS));
    EXPECT_OK(g_bad.null_target); /* NULL: the calling loop */
    EXPECT_OK(g_bad.call_self);
    cr_expect(g_bad.out_cleared);
    EXPECT_RC(g_bad.null_fn, UV_EINVAL);
    EXPECT_RC(g_bad.null_out, UV_EINVAL);
    EXPECT_RC(g_bad.other_rt, UV_EINVAL);
    EXPECT_RC(g_bad.call_null, UV_EINVAL);
    EXPECT_RC(g_bad.call_other, UV_EINVAL);
    EXPECT_RC(g_bad.stop, WEFT_EWRONGLOOP);
    EXPECT_RC(g_bad.wait, WEFT_EWRONGLOOP);
    EXPECT_OK(g_bad.after);
    cr_expect_eq(stop_rt(g_other_rt), 0);
    cr_expect_eq(stop_rt(rt), 0);
}

/* ---- cancelling a submit ---------------------------------------------------- */

/* Yields once (its spawner awaits by then), then cancels arg. */
static int cancel_after_yield(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    weft_task_cancel(arg);
    return rc;
}

/* On loop 0: submit a sleeper to loop 1, wait until it runs, then (arg 0)
 * cancel the submit's future, or (arg 1) be cancelled while awaiting it, or
 * (arg 2) cancel it at once, maybe before it started. Each way the remote
 * task is cancelled and the future reports UV_ECANCELED. */
static int cancel_submit_main(void *arg, void **result)
{
    (void)result;
    intptr_t how = weft_to_int(arg);
    weft_future_t *f = NULL;
    int start = atomic_load(&g_sleepers_started);
    int rc = weft_submit_to(loop_at(1), sleeper, NULL, &f);
    if (rc != 0)
        return rc;
    if (how != 2 && (rc = task_wait_atomic(&g_sleepers_started, start + 1)) != 0) {
        weft_future_unref(f);
        return rc;
    }
    if (how == 1) {
        /* Cancelled while awaiting: the await passes the cancel into f. */
        weft_task_t *c = NULL;
        rc = weft_spawn(NULL, cancel_after_yield, weft_task_current(), &c);
        if (rc == 0)
            rc = weft_await(f, NULL);
        if (c != NULL) {
            int crc = weft_await_task(c, NULL);
            (void)crc; /* it only cancels us */
            weft_task_unref(c);
        }
    } else {
        weft_future_cancel(f);
        rc = weft_future_result(f, NULL);
    }
    weft_future_unref(f);
    return rc == UV_ECANCELED ? 0 : (rc == 0 ? UV_EINVAL : rc);
}

Test(runtime, cancelling_a_submit_cancels_the_remote_task, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(OPTS(.loops = 2));
    for (intptr_t how = 0; how < 3; how++) {
        void *r = NULL;
        int cancelled = atomic_load(&g_sleepers_cancelled);
        EXPECT_OK(run_on(rt, 0, cancel_submit_main, weft_int(how), &r, WAIT_MS));
        /* The remote sleeper ends by the cancel, not by its sleep (when it
         * had started at all: arg 2 may cancel it before it ran). */
        if (how != 2)
            cr_expect(wait_atomic(&g_sleepers_cancelled, cancelled + 1),
                      "way %ld: the remote task was not cancelled", (long)how);
    }
    cr_expect_eq(stop_rt(rt), 0);
    cr_expect_eq(atomic_load(&g_sleepers_uncancelled), 0);
}

/* ---- topology: the allowed CPUs ----------------------------------------- */

/* On a loop: that loop thread's affinity mask, into *arg (read by the test
 * thread after the tsfuture wait, whose mutex orders it). */
static int loop_mask(void *arg, void **result)
{
    (void)result;
    return sched_getaffinity(0, sizeof(cpu_set_t), arg) == 0 ? 0 : -errno;
}

/* Every loop of rt runs on exactly CPU want(i). */
static void expect_loops_on(weft_runtime_t *rt, const int *want, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        cpu_set_t got, one;
        CPU_ZERO(&got);
        CPU_ZERO(&one);
        CPU_SET(want[i], &one);
        EXPECT_OK(run_on(rt, i, loop_mask, &got, NULL, WAIT_MS));
        cr_expect(CPU_EQUAL(&got, &one), "loop %u: %d CPUs allowed, want only CPU %d", i,
                  CPU_COUNT(&got), want[i]);
    }
}

/* The loop count and the pinning come from the thread's affinity mask (what
 * taskset or a cgroup cpuset leave), not from the machine's online CPUs:
 * restricted to one CPU, the default runtime has one loop, on that CPU, and
 * more loops wrap onto it; unrestricted, loop i runs on the i-th allowed
 * CPU, wrapping after the last. The one CPU kept is the last allowed one, so
 * that pinning to "CPU i" instead of "the i-th allowed CPU" is caught too. */
Test(runtime, loop_count_and_pinning_follow_the_allowed_cpus, .timeout = TEST_TIMEOUT_S)
{
    cpu_set_t all, one;
    ASSERT_RC(sched_getaffinity(0, sizeof(all), &all), 0);
    int ids[CPU_SETSIZE], n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all))
            ids[n++] = c;
    cr_assert_eq(weft_cpu_count(), (unsigned)n);
    for (int i = 0; i < 2 * n; i++)
        cr_expect_eq(weft_cpu_id((unsigned)i), ids[i % n]);
    if (n < 2)
        cr_skip("only one CPU is allowed: no smaller mask to run under");

    /* Loops pinned, wrapping: n + 1 loops, the last on the first CPU. */
    int want[CPU_SETSIZE + 1];
    for (int i = 0; i <= n; i++)
        want[i] = ids[i % n];
    weft_runtime_t *rt = start_rt(OPTS(.loops = (unsigned)n + 1));
    expect_loops_on(rt, want, (unsigned)n + 1);
    cr_expect_eq(stop_rt(rt), 0);

    /* New threads inherit the mask: the runtime's loops are started from this
     * one, and so see only what it allows. Restored before any assert. */
    int last = ids[n - 1];
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    ASSERT_RC(sched_setaffinity(0, sizeof(one), &one), 0);
    unsigned count = weft_cpu_count();
    rt = NULL;
    int rc = weft_runtime_start(OPTS(), &rt);
    unsigned loops = rc == 0 ? weft_runtime_count(rt) : 0;
    int lasts[3] = {last, last, last};
    if (rc == 0) {
        expect_loops_on(rt, lasts, loops < 3 ? loops : 3);
        cr_expect_eq(stop_rt(rt), 0);
    }
    /* More loops than allowed CPUs: all on the one CPU. */
    weft_runtime_t *rt3 = NULL;
    int rc3 = weft_runtime_start(OPTS(.loops = 3), &rt3);
    if (rc3 == 0) {
        expect_loops_on(rt3, lasts, 3);
        cr_expect_eq(stop_rt(rt3), 0);
    }
    int restored = sched_setaffinity(0, sizeof(all), &all);
    ASSERT_OK(rc);
    ASSERT_OK(rc3);
    ASSERT_RC(restored, 0);
    cr_expect_eq(count, 1);
    cr_expect_eq(loops, 1);
    cr_expect_eq(weft_cpu_count(), (unsigned)n);
}

/* ---- jemalloc arenas -------------------------------------------------------- */

#ifndef __SANITIZE_THREAD__
static unsigned narenas(void)
{
    unsigned n = 0;
    size_t sz = sizeof(n);
    cr_assert_eq(mallctl("arenas.narenas", &n, &sz, NULL, 0), 0);
    return n;
}

/* On a loop: the arena its thread allocates from, into *arg. */
static int loop_arena(void *arg, void **result)
{
    (void)result;
    size_t sz = sizeof(unsigned);
    return mallctl("thread.arena", arg, &sz, NULL, 0) == 0 ? 0 : UV_EIO;
}

/* The arenas of rt's loops, appended to seen[*n]; each must be one made for
 * loops (past jemalloc's own, `base`) and not already in seen. */
static void expect_own_arenas(weft_runtime_t *rt, unsigned base, unsigned *seen, unsigned *n)
{
    for (unsigned i = 0; i < weft_runtime_count(rt); i++) {
        unsigned a = 0;
        EXPECT_OK(run_on(rt, i, loop_arena, &a, NULL, WAIT_MS));
        cr_expect_geq(a, base, "loop %u allocates from jemalloc's arena %u", i, a);
        for (unsigned k = 0; k < *n; k++)
            cr_expect_neq(seen[k], a, "loop %u shares arena %u with another loop", i, a);
        seen[(*n)++] = a;
    }
}
#endif

/* Arenas made for loops are kept for later runtimes instead of made anew on
 * every start (jemalloc cannot destroy an arena whose memory may still be in
 * use): after a first start of two runtimes at once (5 loops, 5 distinct
 * arenas), 50 more starts of up to 5 loops, alone or two at once, make no
 * new arena, and loops running at the same time never share one. */
Test(runtime, arenas_are_reused_by_later_runtimes, .timeout = TEST_TIMEOUT_S)
{
#ifdef __SANITIZE_THREAD__
    cr_skip("no per-loop arenas under TSan (see NO_ARENAS)");
#else
    unsigned base = narenas(), seen[5], n = 0;
    weft_runtime_t *a = start_rt(OPTS(.loops = 2, .no_pinning = true));
    weft_runtime_t *b = start_rt(OPTS(.loops = 3, .no_pinning = true));
    expect_own_arenas(a, base, seen, &n);
    expect_own_arenas(b, base, seen, &n);
    cr_expect_eq(stop_rt(a), 0);
    cr_expect_eq(stop_rt(b), 0);
    unsigned first = narenas();
    cr_expect_eq(first, base + 5);
    for (unsigned i = 0; i < 50; i++) {
        n = 0;
        a = start_rt(OPTS(.loops = 1 + i % 5, .no_pinning = true));
        b = i % 2 == 0 && i % 5 < 3 ? start_rt(OPTS(.loops = 2, .no_pinning = true)) : NULL;
        if (i % 10 == 0) {
            expect_own_arenas(a, base, seen, &n);
            if (b != NULL)
                expect_own_arenas(b, base, seen, &n);
        }
        cr_expect_eq(stop_rt(a), 0);
        if (b != NULL)
            cr_expect_eq(stop_rt(b), 0);
        cr_assert_eq(narenas(), first, "start %u made a new arena", i + 1);
    }
#endif
}

/* ---- mesh memory ------------------------------------------------------------ */

/* Rings are made by the first message of their pair, not at the start: a
 * 32-loop runtime allocates much less than its 992 rings would take. Bytes
 * as jemalloc counts them, so not under the sanitizers (their allocator
 * replaces jemalloc's malloc, and the count would not move). Messages over
 * new rings, to loops asleep and awake, are the rest of this file. */
Test(runtime, rings_are_made_by_the_first_message_not_at_the_start, .timeout = TEST_TIMEOUT_S)
{
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    cr_skip("the sanitizer's allocator hides jemalloc's byte count");
#else
    const unsigned n = 32, slots = 1024;
    const size_t mesh = (size_t)n * (n - 1) * slots * 64; /* 62 MiB */
    uint64_t epoch = 1;
    size_t a0 = 0, a1 = 0, sz = sizeof(epoch), asz = sizeof(a0);
    cr_assert_eq(mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
    cr_assert_eq(mallctl("stats.allocated", &a0, &asz, NULL, 0), 0);
    weft_runtime_t *rt = start_rt(OPTS(.loops = n, .no_pinning = true, .ring_size = slots));
    cr_assert_eq(mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
    cr_assert_eq(mallctl("stats.allocated", &a1, &asz, NULL, 0), 0);
    cr_expect_eq(stop_rt(rt), 0);
    cr_expect_lt(a1 - a0, mesh / 4, "the start allocated %zu bytes", a1 - a0);
#endif
}

/*
 * tests/chan_mt_test.c - channels and select across loops and plain threads
 * (weft/chan.h): exactly-once delivery with per-producer order for MPMC,
 * MPSC, SPSC and rendezvous channels fed and drained by tasks on two
 * runtime loops and by plain threads; close while senders and receivers
 * are blocked (tasks and blocking forms); close with heap values buffered
 * and the last unref destroying them; select across loops (exactly once, a
 * deadline, a close from another thread); a cancelled receive racing a
 * send from another loop (nothing lost); a ping-pong between two plain
 * threads with timeouts; and batches that wake every waiter they make
 * ready (a send_batch used to wake one receiver for all its values).
 *
 * Built twice (tests/BUILD, weft_test(tsan = True)): as a Criterion test and,
 * through tests/plain_test.h, as a plain program that runs under TSan. So it
 * uses only what the shim provides and never asserts off the test's thread:
 * tasks and helper threads record into structs that the test reads after
 * joining them (pthread_join, or a tsfuture wait, whose mutex orders them).
 *
 * No wall-clock assertions. Every wait is bounded (WAIT_MS for one channel
 * operation, RUN_MS for a whole worker), so a lost wake-up fails a check
 * instead of hanging. Sleeps only give blocked callers time to block; the
 * checks hold whether they did or not.
 */
#include "plain_test.h"
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/runtime.h>
#include <weft/weft.h>

#define WAIT_MS 20000 /* bound of one channel operation */
#define RUN_MS  50000 /* bound of one worker (thread or task) */

/* Sizes: each test stays well under its 60 s bound on a 2-core machine
 * oversubscribed several times over (select and cancel races spin while
 * the other loop's thread is descheduled: at a load average near 20 the
 * earlier 200,000 selects took over 60 s). */
#if defined(__SANITIZE_THREAD__)
#define FLOW_N      500000 /* values per producer */
#define RDV_N       40000
#define SELECT_N    40000
#define CANCEL_REPS 5000
#define PINGPONG_N  50000
#elif defined(__SANITIZE_ADDRESS__)
#define FLOW_N      1000000
#define RDV_N       40000
#define SELECT_N    40000
#define CANCEL_REPS 5000
#define PINGPONG_N  100000
#else
#define FLOW_N      2500000
#define RDV_N       100000
#define SELECT_N    50000
#define CANCEL_REPS 8000
#define PINGPONG_N  100000
#endif

/* Under TSan, no per-loop jemalloc arenas (see runtime_test.c: in a forked
 * child jemalloc's "arenas.create" makes TSan report a double lock). */
#ifdef __SANITIZE_THREAD__
#define NO_ARENAS true
#else
#define NO_ARENAS false
#endif

/* ---- helpers -------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Busy-wait about us microseconds (varies where a race falls; no check
 * depends on it). */
static void spin_us(unsigned us)
{
    uint64_t until = now_ns() + (uint64_t)us * 1000u;
    while (now_ns() < until)
        __asm__ volatile("" ::: "memory");
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

static weft_runtime_t *start_rt(int idle_poll_us)
{
    weft_runtime_t *rt = NULL;
    weft_runtime_opts_t o = {
        .loops = 2, .no_pinning = true, .no_arenas = NO_ARENAS, .loop.idle_poll_us = idle_poll_us};
    ASSERT_OK(weft_runtime_start(&o, &rt));
    cr_assert_not_null(rt);
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

static void deadline_in(struct timespec *until, long ms)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += ms / 1000;
    until->tv_nsec += (ms % 1000) * 1000000L;
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

/* weft_runtime_stop from a helper thread, bounded; expects no leftovers. */
static void stop_rt(weft_runtime_t *rt)
{
    g_stopper.rt = rt;
    g_stopper.left = 12345;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stopper, NULL), 0);
    struct timespec until;
    deadline_in(&until, WAIT_MS);
    cr_assert_eq(pthread_timedjoin_np(th, NULL, &until), 0, "weft_runtime_stop hangs");
    EXPECT_OK(g_stopper.rc);
    cr_expect_eq(g_stopper.left, 0u);
}

static weft_chan_t *mk(size_t esz, size_t cap, weft_chan_kind_t kind)
{
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = esz, .capacity = cap, .kind = kind};
    ASSERT_OK(weft_chan_new(&o, &ch));
    return ch;
}

/* A job: body(arg, task) run either as a task on runtime loop 0 or 1
 * (task = true: the task forms) or on a plain thread of its own (task =
 * false: the blocking forms). Its return value is the job's code. */
typedef enum where {
    ON_LOOP0 = 0,
    ON_LOOP1 = 1,
    ON_THREAD = 2,
} where_t;

typedef int (*job_fn)(void *arg, bool task);

typedef struct job {
    where_t where;
    job_fn fn;
    void *arg;
    pthread_t th;
    weft_tsfuture_t *f;
    int rc; /* a thread's code */
} job_t;

static int job_task(void *arg, void **result)
{
    (void)result;
    job_t *j = arg;
    return j->fn(j->arg, true);
}

static void *job_thread(void *arg)
{
    job_t *j = arg;
    j->rc = j->fn(j->arg, false);
    return NULL;
}

static void job_start(weft_runtime_t *rt, job_t *j, where_t where, job_fn fn, void *arg)
{
    j->where = where;
    j->fn = fn;
    j->arg = arg;
    j->f = NULL;
    j->rc = UV_EAGAIN;
    if (where == ON_THREAD)
        cr_assert_eq(pthread_create(&j->th, NULL, job_thread, j), 0);
    else
        ASSERT_OK(
            weft_spawn_threadsafe(weft_runtime_loop(rt, (unsigned)where), job_task, j, &j->f));
}

/* The job's code; UV_ETIMEDOUT if it did not end within RUN_MS (a hung
 * thread is left behind: the test fails and its process ends). */
static int job_join(job_t *j)
{
    if (j->where == ON_THREAD) {
        struct timespec until;
        deadline_in(&until, RUN_MS);
        if (pthread_timedjoin_np(j->th, NULL, &until) != 0)
            return UV_ETIMEDOUT;
        return j->rc;
    }
    int rc = weft_tsfuture_wait_blocking(j->f, RUN_MS, NULL);
    if (rc == UV_ETIMEDOUT)
        (void)weft_tsfuture_cancel(j->f);
    weft_tsfuture_unref(j->f);
    j->f = NULL;
    return rc;
}

static const char *where_name(where_t w)
{
    return w == ON_LOOP0 ? "loop 0" : w == ON_LOOP1 ? "loop 1" : "thread";
}

/* ---- exactly-once flows ----------------------------------------------------
 * Producer p sends (p << 32 | seq) for seq = 0 .. n-1. Each consumer keeps
 * a bitmap of what it got from each producer and the last seq it saw from
 * each: order per producer as seen by one consumer must increase (strictly
 * by one when there is a single consumer). After everything is joined the
 * bitmaps must not overlap and must cover every value. */

#define MAXW 4

typedef struct flow flow_t;

typedef struct worker {
    flow_t *fl;
    int id;
    int rc;
    uint64_t done;                 /* producer: values sent; consumer: received */
    int64_t last[MAXW];            /* consumer: last seq per producer */
    uint64_t order_errs, bad, dup; /* consumer */
    uint64_t *bits[MAXW];          /* consumer: seqs seen, per producer */
    job_t job;
} worker_t;

struct flow {
    weft_chan_t *ch;
    weft_chan_t *idle; /* not NULL: task consumers select over ch and idle */
    uint64_t n;
    int np, nc;
    bool strict; /* one consumer: each producer's seqs arrive as 0, 1, 2, ... */
    worker_t prod[MAXW], cons[MAXW];
};

static int producer(void *arg, bool task)
{
    worker_t *w = arg;
    weft_chan_t *ch = w->fl->ch;
    for (uint64_t s = 0; s < w->fl->n; s++) {
        uint64_t v = (uint64_t)w->id << 32 | s;
        int rc = task ? weft_chan_send_timeout(ch, &v, WAIT_MS)
                      : weft_chan_send_blocking(ch, &v, WAIT_MS);
        if (rc != 0) {
            w->rc = rc;
            return rc;
        }
        w->done = s + 1;
    }
    w->rc = 0;
    return 0;
}

static void take(worker_t *w, uint64_t v)
{
    flow_t *fl = w->fl;
    uint64_t p = v >> 32, s = v & 0xffffffffu;
    if (p >= (uint64_t)fl->np || s >= fl->n) {
        w->bad++;
        return;
    }
    int64_t last = w->last[p];
    if ((int64_t)s <= last || (fl->strict && (int64_t)s != last + 1))
        w->order_errs++;
    w->last[p] = (int64_t)s;
    uint64_t bit = 1ull << (s & 63);
    if (w->bits[p][s >> 6] & bit)
        w->dup++;
    w->bits[p][s >> 6] |= bit;
    w->done++;
}

static int consumer(void *arg, bool task)
{
    worker_t *w = arg;
    weft_chan_t *ch = w->fl->ch;
    for (;;) {
        uint64_t v = 0, none = 0;
        int rc;
        if (task && w->fl->idle != NULL) {
            /* idle never gets a value: a select of two channels, one ready */
            weft_sel_case_t c[2] = {{WEFT_SEL_RECV, w->fl->idle, &none, 12345},
                                    {WEFT_SEL_RECV, ch, &v, 12345}};
            rc = weft_select(c, 2, WAIT_MS);
            if (rc == 1)
                rc = c[1].rc;
            else if (rc == 0)
                rc = UV_EINVAL;
        } else {
            rc = task ? weft_chan_recv_timeout(ch, &v, WAIT_MS)
                      : weft_chan_recv_blocking(ch, &v, WAIT_MS);
        }
        if (rc == UV_EOF)
            break;
        if (rc != 0) {
            w->rc = rc;
            return rc;
        }
        take(w, v);
    }
    w->rc = 0;
    return 0;
}

/* Run np producers at prod[] and nc consumers at cons[] through ch (the
 * flow's reference is taken over and dropped here), n values each. */
static void run_flow_ex(weft_runtime_t *rt, weft_chan_t *ch, weft_chan_t *idle, uint64_t n,
                        const where_t *prod, int np, const where_t *cons, int nc)
{
    flow_t *fl = calloc(1, sizeof(*fl));
    cr_assert_not_null(fl);
    fl->ch = ch;
    fl->idle = idle;
    fl->n = n;
    fl->np = np;
    fl->nc = nc;
    fl->strict = nc == 1;
    size_t words = (size_t)(n + 63) / 64;
    for (int c = 0; c < nc; c++) {
        worker_t *w = &fl->cons[c];
        w->fl = fl;
        w->id = c;
        for (int p = 0; p < MAXW; p++) {
            w->last[p] = -1;
            w->bits[p] = calloc(words, sizeof(uint64_t));
            cr_assert_not_null(w->bits[p]);
        }
    }
    for (int c = 0; c < nc; c++)
        job_start(rt, &fl->cons[c].job, cons[c], consumer, &fl->cons[c]);
    for (int p = 0; p < np; p++) {
        fl->prod[p].fl = fl;
        fl->prod[p].id = p;
        job_start(rt, &fl->prod[p].job, prod[p], producer, &fl->prod[p]);
    }
    for (int p = 0; p < np; p++) {
        worker_t *w = &fl->prod[p];
        int rc = job_join(&w->job);
        cr_expect_eq(rc, 0, "producer %d (%s): %s after %lu values", p, where_name(prod[p]),
                     weft_err_name(rc), (unsigned long)w->done);
        cr_expect_eq(w->done, n, "producer %d (%s)", p, where_name(prod[p]));
    }
    EXPECT_OK(weft_chan_close(ch));
    uint64_t total = 0;
    for (int c = 0; c < nc; c++) {
        worker_t *w = &fl->cons[c];
        int rc = job_join(&w->job);
        cr_expect_eq(rc, 0, "consumer %d (%s): %s after %lu values", c, where_name(cons[c]),
                     weft_err_name(rc), (unsigned long)w->done);
        cr_expect_eq(w->order_errs, 0u, "consumer %d (%s) saw a producer's values out of order", c,
                     where_name(cons[c]));
        cr_expect_eq(w->bad, 0u, "consumer %d got values nobody sent", c);
        cr_expect_eq(w->dup, 0u, "consumer %d got a value twice", c);
        total += w->done;
    }
    cr_expect_eq(total, n * (uint64_t)np, "received %lu of %lu", (unsigned long)total,
                 (unsigned long)(n * (uint64_t)np));
    for (int p = 0; p < np; p++) {
        uint64_t missing = 0, twice = 0;
        for (size_t i = 0; i < words; i++) {
            uint64_t any = 0, cnt = 0;
            for (int c = 0; c < nc; c++) {
                any |= fl->cons[c].bits[p][i];
                cnt += (uint64_t)__builtin_popcountll(fl->cons[c].bits[p][i]);
            }
            uint64_t want = ~0ull;
            if (i == words - 1 && n % 64 != 0)
                want = (1ull << (n % 64)) - 1;
            missing += (uint64_t)__builtin_popcountll(want & ~any);
            twice += cnt - (uint64_t)__builtin_popcountll(any);
        }
        cr_expect_eq(missing, 0u, "producer %d: %lu values never received", p,
                     (unsigned long)missing);
        cr_expect_eq(twice, 0u, "producer %d: %lu values received twice", p, (unsigned long)twice);
    }
    cr_expect_eq(weft_chan_len(ch), 0u);
    weft_chan_unref(ch);
    for (int c = 0; c < nc; c++)
        for (int p = 0; p < MAXW; p++)
            free(fl->cons[c].bits[p]);
    free(fl);
}

static void run_flow(weft_runtime_t *rt, weft_chan_t *ch, uint64_t n, const where_t *prod, int np,
                     const where_t *cons, int nc)
{
    run_flow_ex(rt, ch, NULL, n, prod, np, cons, nc);
}

Test(chan_mt, mpmc_four_producers_four_consumers_exactly_once_in_order, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(0);
    const where_t prod[] = {ON_LOOP0, ON_LOOP1, ON_THREAD, ON_THREAD};
    const where_t cons[] = {ON_LOOP0, ON_LOOP1, ON_THREAD, ON_THREAD};
    weft_chan_t *ch = mk(8, 64, WEFT_CHAN_MPMC);
    cr_expect_eq(weft_chan_cap(ch), 64u);
    run_flow(rt, ch, FLOW_N, prod, 4, cons, 4);
    stop_rt(rt);
}

/* The same with the tasks receiving by select (over ch and a channel that
 * stays empty): a select woken for a value that another consumer took
 * registers again; one that leaves with the other case would pass its
 * wake-up on. */
Test(chan_mt, mpmc_consumers_by_select_on_both_loops_exactly_once_in_order,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(0);
    const where_t prod[] = {ON_LOOP0, ON_LOOP1, ON_THREAD, ON_THREAD};
    const where_t cons[] = {ON_LOOP0, ON_LOOP1, ON_THREAD, ON_THREAD};
    weft_chan_t *idle = mk(8, 4, WEFT_CHAN_MPMC);
    run_flow_ex(rt, mk(8, 64, WEFT_CHAN_MPMC), idle, FLOW_N / 4, prod, 4, cons, 4);
    cr_expect_eq(weft_chan_len(idle), 0u);
    weft_chan_unref(idle);
    stop_rt(rt);
}

Test(chan_mt, mpsc_four_producers_one_consumer_task_in_strict_order, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(0);
    const where_t prod[] = {ON_LOOP0, ON_LOOP1, ON_THREAD, ON_THREAD};
    const where_t cons[] = {ON_LOOP1};
    run_flow(rt, mk(8, 64, WEFT_CHAN_MPSC), FLOW_N, prod, 4, cons, 1);
    stop_rt(rt);
}

Test(chan_mt, spsc_thread_to_task_in_strict_order, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(0);
    const where_t prod[] = {ON_THREAD};
    const where_t cons[] = {ON_LOOP1};
    run_flow(rt, mk(8, 64, WEFT_CHAN_SPSC), FLOW_N, prod, 1, cons, 1);
    /* and back: a task producing for a plain thread */
    const where_t prod2[] = {ON_LOOP0};
    const where_t cons2[] = {ON_THREAD};
    run_flow(rt, mk(8, 64, WEFT_CHAN_SPSC), FLOW_N / 4, prod2, 1, cons2, 1);
    stop_rt(rt);
}

/* Rendezvous: every send waits for the receiver; tasks on both loops and
 * two threads send to one receiver (a task, then a thread). Loops that do
 * not poll (-1) make every cross-loop wake-up go through the eventfd. */
static void rendezvous_flow(where_t receiver, int idle_poll_us)
{
    weft_runtime_t *rt = start_rt(idle_poll_us);
    const where_t prod[] = {ON_LOOP0, ON_LOOP1, ON_THREAD, ON_THREAD};
    weft_chan_t *ch = mk(8, 0, WEFT_CHAN_MPMC);
    cr_expect_eq(weft_chan_cap(ch), 0u);
    run_flow(rt, ch, RDV_N, prod, 4, &receiver, 1);
    stop_rt(rt);
}

Test(chan_mt, rendezvous_many_senders_one_receiver_task_exactly_once, .timeout = TEST_TIMEOUT_S)
{
    rendezvous_flow(ON_LOOP0, 0);
}

Test(chan_mt, rendezvous_many_senders_one_receiver_thread_exactly_once, .timeout = TEST_TIMEOUT_S)
{
    rendezvous_flow(ON_THREAD, -1);
}

/* ---- close while blocked ---------------------------------------------------- */

static atomic_int g_armed;

typedef struct blocked {
    weft_chan_t *ch;
    bool send;
    int64_t val;
    int rc;
    job_t job;
} blocked_t;

static int blocked_body(void *arg, bool task)
{
    blocked_t *b = arg;
    atomic_fetch_add(&g_armed, 1); /* just before the call that blocks */
    if (b->send)
        b->rc = task ? weft_chan_send_timeout(b->ch, &b->val, WAIT_MS)
                     : weft_chan_send_blocking(b->ch, &b->val, WAIT_MS);
    else
        b->rc = task ? weft_chan_recv_timeout(b->ch, &b->val, WAIT_MS)
                     : weft_chan_recv_blocking(b->ch, &b->val, WAIT_MS);
    return 0;
}

#define NBLOCKED 6

/* NBLOCKED callers (two tasks on each loop, two threads) block on ch in
 * direction `send`; ch is closed under them; each must return `want`. */
static void close_under_blocked(weft_runtime_t *rt, weft_chan_t *ch, bool send, int want)
{
    static const where_t at[NBLOCKED] = {ON_LOOP0, ON_LOOP0,  ON_LOOP1,
                                         ON_LOOP1, ON_THREAD, ON_THREAD};
    blocked_t b[NBLOCKED];
    size_t len0 = weft_chan_len(ch);
    atomic_store(&g_armed, 0);
    for (int i = 0; i < NBLOCKED; i++) {
        b[i] = (blocked_t){.ch = ch, .send = send, .val = 100 + i, .rc = 12345};
        job_start(rt, &b[i].job, at[i], blocked_body, &b[i]);
    }
    cr_expect(wait_atomic(&g_armed, NBLOCKED), "only %d of the callers started",
              atomic_load(&g_armed));
    /* Time to get from the counter into the wait; a caller that is late
     * finds the channel closed, with the same code. */
    for (int i = 0; i < 10; i++) {
        sleep_ms(5);
        cr_expect_eq(weft_chan_len(ch), len0, "a blocked caller got through");
    }
    EXPECT_OK(weft_chan_close(ch));
    for (int i = 0; i < NBLOCKED; i++) {
        EXPECT_OK(job_join(&b[i].job));
        cr_expect_eq(b[i].rc, want, "%s %d (%s) returned %s, want %s", send ? "sender" : "receiver",
                     i, where_name(at[i]), weft_err_name(b[i].rc), weft_err_name(want));
    }
    cr_expect_eq(weft_chan_len(ch), len0);
}

static void close_wakes_all(int idle_poll_us)
{
    weft_runtime_t *rt = start_rt(idle_poll_us);
    size_t caps[] = {4, 0};
    for (int k = 0; k < 2; k++) {
        /* Full (or, rendezvous, no receiver): the senders block. */
        weft_chan_t *ch = mk(8, caps[k], WEFT_CHAN_MPMC);
        for (int64_t i = 0; i < (int64_t)caps[k]; i++)
            EXPECT_OK(weft_chan_send_try(ch, &i));
        close_under_blocked(rt, ch, true, WEFT_ECLOSED);
        /* what was buffered before the close still comes out, then EOF */
        int64_t x = -1;
        for (int64_t i = 0; i < (int64_t)caps[k]; i++) {
            EXPECT_OK(weft_chan_recv_blocking(ch, &x, WAIT_MS));
            cr_expect_eq(x, i);
        }
        EXPECT_RC(weft_chan_recv_blocking(ch, &x, WAIT_MS), UV_EOF);
        weft_chan_unref(ch);

        /* Empty: the receivers block. */
        ch = mk(8, caps[k], WEFT_CHAN_MPMC);
        close_under_blocked(rt, ch, false, UV_EOF);
        EXPECT_RC(weft_chan_send_blocking(ch, &x, WAIT_MS), WEFT_ECLOSED);
        weft_chan_unref(ch);
    }
    stop_rt(rt);
}

Test(chan_mt, close_wakes_blocked_senders_and_receivers_on_loops_and_threads,
     .timeout = TEST_TIMEOUT_S)
{
    close_wakes_all(0);
}

Test(chan_mt, close_wakes_blocked_callers_of_loops_that_sleep, .timeout = TEST_TIMEOUT_S)
{
    close_wakes_all(-1);
}

/* ---- close with heap values buffered ------------------------------------- */

#define OBJ_MAGIC 0x0b1ec7u
#define OBJ_N     1800 /* sent in all (two senders) */
#define OBJ_CAP   1024 /* >= OBJ_N - 3 * OBJ_K1: no sender waits for ever */
#define OBJ_K1    300  /* each of 3 receivers before the close */
#define OBJ_K2    100  /* each of them after it */

typedef struct obj {
    uint32_t magic;
    uint32_t id;
    unsigned char pad[120];
} obj_t;

static atomic_int g_obj_seen[OBJ_N]; /* received or destroyed, per id */
static atomic_int g_obj_destroyed, g_obj_bad, g_phase;

static void obj_mark(obj_t *o)
{
    if (o == NULL || o->magic != OBJ_MAGIC || o->id >= OBJ_N || o->pad[119] != (o->id & 0xffu)) {
        atomic_fetch_add(&g_obj_bad, 1);
        return;
    }
    atomic_fetch_add(&g_obj_seen[o->id], 1);
    o->magic = 0;
    free(o);
}

static void obj_dtor(void *p)
{
    atomic_fetch_add(&g_obj_destroyed, 1);
    obj_mark(p);
}

typedef struct objw {
    weft_chan_t *ch;
    int first, n; /* sender: ids first .. first + n - 1 */
    int got;      /* receiver */
    int rc;
    job_t job;
} objw_t;

static int obj_sender(void *arg, bool task)
{
    objw_t *w = arg;
    for (int i = w->first; i < w->first + w->n; i++) {
        obj_t *o = malloc(sizeof(*o));
        if (o == NULL)
            return UV_ENOMEM;
        o->magic = OBJ_MAGIC;
        o->id = (uint32_t)i;
        memset(o->pad, 0, sizeof(o->pad));
        o->pad[119] = (unsigned char)i;
        int rc = task ? weft_chan_send_timeout(w->ch, &o, WAIT_MS)
                      : weft_chan_send_blocking(w->ch, &o, WAIT_MS);
        if (rc != 0) {
            free(o);
            return w->rc = rc;
        }
    }
    return w->rc = 0;
}

static int obj_recv_some(objw_t *w, bool task, int k)
{
    for (int i = 0; i < k; i++) {
        obj_t *o = NULL;
        int rc = task ? weft_chan_recv_timeout(w->ch, &o, WAIT_MS)
                      : weft_chan_recv_blocking(w->ch, &o, WAIT_MS);
        if (rc != 0)
            return rc;
        obj_mark(o);
        w->got++;
    }
    return 0;
}

/* Takes OBJ_K1 values, waits for the close (phase 1), takes OBJ_K2 more
 * (buffered before the close) and drops its reference. */
static int obj_receiver(void *arg, bool task)
{
    objw_t *w = arg;
    int rc = obj_recv_some(w, task, OBJ_K1);
    if (rc == 0) {
        if (task)
            rc = task_wait_atomic(&g_phase, 1);
        else
            rc = wait_atomic(&g_phase, 1) ? 0 : UV_ETIMEDOUT;
    }
    if (rc == 0)
        rc = obj_recv_some(w, task, OBJ_K2);
    weft_chan_unref(w->ch); /* one of the receivers drops the last reference */
    return w->rc = rc;
}

Test(chan_mt, close_with_heap_values_buffered_and_last_unref_destroys_the_rest,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(0);
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {
        .elem_size = sizeof(obj_t), .capacity = OBJ_CAP, .dtor = obj_dtor, .name = "objects"};
    ASSERT_OK(weft_chan_new(&o, &ch));
    /* senders: a task on loop 0 and a thread; receivers: two tasks on loop
     * 1 and a thread, each with a reference of its own */
    objw_t snd[2] = {{.ch = ch, .first = 0, .n = OBJ_N / 2},
                     {.ch = ch, .first = OBJ_N / 2, .n = OBJ_N / 2}};
    objw_t rcv[3] = {{.ch = ch}, {.ch = ch}, {.ch = ch}};
    const where_t rat[3] = {ON_LOOP1, ON_LOOP1, ON_THREAD};
    for (int i = 0; i < 3; i++) {
        weft_chan_ref(ch);
        job_start(rt, &rcv[i].job, rat[i], obj_receiver, &rcv[i]);
    }
    job_start(rt, &snd[0].job, ON_LOOP0, obj_sender, &snd[0]);
    job_start(rt, &snd[1].job, ON_THREAD, obj_sender, &snd[1]);
    for (int i = 0; i < 2; i++)
        EXPECT_OK(job_join(&snd[i].job));
    EXPECT_OK(weft_chan_close(ch));
    weft_chan_unref(ch); /* the test's reference; the receivers hold theirs */
    atomic_store(&g_phase, 1);
    int got = 0;
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(job_join(&rcv[i].job));
        cr_expect_eq(rcv[i].got, OBJ_K1 + OBJ_K2, "receiver %d (%s)", i, where_name(rat[i]));
        got += rcv[i].got;
    }
    stop_rt(rt);
    /* The channel is gone: what was not received was destroyed, once. */
    cr_expect_eq(atomic_load(&g_obj_bad), 0);
    cr_expect_eq(got + atomic_load(&g_obj_destroyed), OBJ_N, "received %d + destroyed %d", got,
                 atomic_load(&g_obj_destroyed));
    cr_expect_eq(atomic_load(&g_obj_destroyed), OBJ_N - 3 * (OBJ_K1 + OBJ_K2));
    int never = 0, twice = 0;
    for (int i = 0; i < OBJ_N; i++) {
        int n = atomic_load(&g_obj_seen[i]);
        never += n == 0;
        twice += n > 1;
    }
    cr_expect_eq(never, 0, "%d objects neither received nor destroyed (leaked)", never);
    cr_expect_eq(twice, 0, "%d objects handled twice", twice);
}

/* ---- select across loops --------------------------------------------------- */

typedef struct feed {
    weft_chan_t *ch;
    uint64_t n;
    bool select; /* a task that sends with a select of one send case */
    int rc;
    job_t job;
} feed_t;

/* Sends 0 .. n-1, then closes the channel. */
static int feeder(void *arg, bool task)
{
    feed_t *f = arg;
    for (uint64_t i = 0; i < f->n; i++) {
        int rc;
        if (f->select) {
            weft_sel_case_t c[2] = {{WEFT_SEL_SEND, f->ch, &i, 12345},
                                    {WEFT_SEL_RECV, NULL, NULL, 0}};
            rc = weft_select(c, 2, WAIT_MS);
            if (rc == 0)
                rc = c[0].rc;
            else if (rc > 0)
                rc = UV_EINVAL; /* the nil case fired */
        } else {
            rc = task ? weft_chan_send_timeout(f->ch, &i, WAIT_MS)
                      : weft_chan_send_blocking(f->ch, &i, WAIT_MS);
        }
        if (rc != 0)
            return f->rc = rc;
    }
    return f->rc = weft_chan_close(f->ch);
}

typedef struct selector {
    weft_chan_t *a, *b;
    uint64_t got[2], order_errs, other;
    int rc;
    job_t job;
} selector_t;

/* Selects over a and b until both are closed and drained. */
static int selector(void *arg, bool task)
{
    (void)task;
    selector_t *s = arg;
    uint64_t va = 0, vb = 0;
    weft_sel_case_t c[2] = {{WEFT_SEL_RECV, s->a, &va, 0}, {WEFT_SEL_RECV, s->b, &vb, 0}};
    int open = 2;
    while (open > 0) {
        int i = weft_select(c, 2, WAIT_MS);
        if (i < 0 || i > 1)
            return s->rc = i < 0 ? i : UV_EINVAL;
        if (c[i].rc == UV_EOF) {
            c[i].obj = NULL; /* a nil channel: never ready again */
            open--;
            continue;
        }
        if (c[i].rc != 0) {
            s->other++;
            return s->rc = c[i].rc;
        }
        uint64_t v = i == 0 ? va : vb;
        if (v != s->got[i])
            s->order_errs++;
        s->got[i]++;
    }
    return s->rc = 0;
}

/* feeders_select: both feeders are tasks on loop 1 that send by select
 * (a select on each side of a channel); else a task on loop 1 and a plain
 * thread with the blocking form. */
static void select_exactly_once(size_t cap, int idle_poll_us, bool feeders_select)
{
    weft_runtime_t *rt = start_rt(idle_poll_us);
    selector_t s = {.a = mk(8, cap, WEFT_CHAN_MPMC), .b = mk(8, cap, WEFT_CHAN_MPMC)};
    feed_t fa = {.ch = s.a, .n = SELECT_N, .select = feeders_select};
    feed_t fb = {.ch = s.b, .n = SELECT_N, .select = feeders_select};
    job_start(rt, &s.job, ON_LOOP0, selector, &s);
    job_start(rt, &fa.job, ON_LOOP1, feeder, &fa);
    job_start(rt, &fb.job, feeders_select ? ON_LOOP1 : ON_THREAD, feeder, &fb);
    EXPECT_OK(job_join(&fa.job));
    EXPECT_OK(job_join(&fb.job));
    EXPECT_OK(fa.rc);
    EXPECT_OK(fb.rc);
    EXPECT_OK(job_join(&s.job));
    EXPECT_OK(s.rc);
    cr_expect_eq(s.got[0], (uint64_t)SELECT_N, "from the task on loop 1");
    cr_expect_eq(s.got[1], (uint64_t)SELECT_N, "from the second feeder");
    cr_expect_eq(s.order_errs, 0u, "a value out of order, lost or twice");
    weft_chan_unref(s.a);
    weft_chan_unref(s.b);
    stop_rt(rt);
}

Test(chan_mt, select_on_loop0_over_channels_fed_by_loop1_and_a_thread_exactly_once,
     .timeout = TEST_TIMEOUT_S)
{
    select_exactly_once(16, 0, false);
}

Test(chan_mt, select_over_rendezvous_channels_fed_by_loop1_and_a_thread_exactly_once,
     .timeout = TEST_TIMEOUT_S)
{
    select_exactly_once(0, -1, false);
}

Test(chan_mt, select_against_select_across_loops_exactly_once, .timeout = TEST_TIMEOUT_S)
{
    select_exactly_once(16, 0, true);
    select_exactly_once(0, 0, true);
}

typedef struct selwait {
    weft_sel_case_t c[2];
    int64_t v[2];
    uint64_t timeout;
    int out;
    job_t job;
} selwait_t;

static int selwait_body(void *arg, bool task)
{
    (void)task;
    selwait_t *s = arg;
    atomic_fetch_add(&g_armed, 1);
    s->out = weft_select(s->c, 2, s->timeout);
    return 0;
}

/* A select on loop 0 over two channels; `close_which` (0 or 1) is closed
 * from this thread while the select waits. */
static void select_closed_elsewhere(weft_runtime_t *rt, size_t cap, weft_sel_op_t op, int which)
{
    weft_chan_t *ch[2] = {mk(8, cap, WEFT_CHAN_MPMC), mk(8, cap, WEFT_CHAN_MPMC)};
    int64_t x = 7;
    if (op == WEFT_SEL_SEND)
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < cap; i++)
                EXPECT_OK(weft_chan_send_try(ch[k], &x)); /* full */
    selwait_t s = {.timeout = WAIT_MS, .out = 12345};
    for (int k = 0; k < 2; k++)
        s.c[k] = (weft_sel_case_t){op, ch[k], &s.v[k], 12345};
    atomic_store(&g_armed, 0);
    job_start(rt, &s.job, ON_LOOP0, selwait_body, &s);
    cr_expect(wait_atomic(&g_armed, 1));
    sleep_ms(20); /* likely parked by now; a late select finds it closed */
    EXPECT_OK(weft_chan_close(ch[which]));
    EXPECT_OK(job_join(&s.job));
    int want = op == WEFT_SEL_SEND ? WEFT_ECLOSED : UV_EOF;
    cr_expect_eq(s.out, which, "cap %zu op %d: select returned %d (%s)", cap, (int)op, s.out,
                 weft_err_name(s.out));
    if (s.out == which)
        cr_expect_eq(s.c[which].rc, want, "cap %zu op %d: case rc %s", cap, (int)op,
                     weft_err_name(s.c[which].rc));
    /* nothing was taken from or put into the other channel */
    cr_expect_eq(weft_chan_len(ch[1 - which]), op == WEFT_SEL_SEND ? cap : 0u);
    weft_chan_unref(ch[0]);
    weft_chan_unref(ch[1]);
}

Test(chan_mt, select_deadline_passes_and_close_from_another_thread_fires_its_case,
     .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt(0);
    /* a deadline that passes: two empty open channels */
    for (int k = 0; k < 2; k++) {
        size_t cap = k == 0 ? 16 : 0;
        weft_chan_t *ch[2] = {mk(8, cap, WEFT_CHAN_MPMC), mk(8, cap, WEFT_CHAN_MPMC)};
        selwait_t s = {.timeout = 20, .out = 12345};
        for (int i = 0; i < 2; i++)
            s.c[i] = (weft_sel_case_t){WEFT_SEL_RECV, ch[i], &s.v[i], 12345};
        job_start(rt, &s.job, ON_LOOP0, selwait_body, &s);
        EXPECT_OK(job_join(&s.job));
        EXPECT_RC(s.out, UV_ETIMEDOUT);
        /* a value sent after the timeout is still there: the select took
         * nothing */
        int64_t x = 5;
        if (cap > 0) {
            EXPECT_OK(weft_chan_send_try(ch[1], &x));
            cr_expect_eq(weft_chan_len(ch[1]), 1u);
        }
        weft_chan_unref(ch[0]);
        weft_chan_unref(ch[1]);
    }
    /* a close from this thread fires the select's case on loop 0 */
    for (int which = 0; which < 2; which++) {
        select_closed_elsewhere(rt, 16, WEFT_SEL_RECV, which);
        select_closed_elsewhere(rt, 1, WEFT_SEL_SEND, which);
        select_closed_elsewhere(rt, 0, WEFT_SEL_RECV, which);
        select_closed_elsewhere(rt, 0, WEFT_SEL_SEND, which);
    }
    stop_rt(rt);
}

/* ---- a cancelled receive racing a send from another loop ------------------- */

#define RACER_YIELDS 8 /* suspensions after the receive, where a kept cancel shows */

typedef struct racer {
    weft_chan_t *ch;
    int64_t val;
    int rc;          /* the receive */
    bool saw_cancel; /* one of the suspensions after it returned UV_ECANCELED */
} racer_t;

static int racer_body(void *arg, void **result)
{
    (void)result;
    racer_t *r = arg;
    r->rc = weft_chan_recv_timeout(r->ch, &r->val, WAIT_MS);
    for (int i = 0; i < RACER_YIELDS && !r->saw_cancel; i++)
        r->saw_cancel = weft_yield() == UV_ECANCELED;
    return 0;
}

typedef struct race {
    weft_chan_t *ch, *go;
    int reps;
    int rc;      /* coordinator's first failure */
    int bad_rep; /* where */
    int lost, wrong, kept_cancel_lost;
    int won, cancelled; /* how the races fell (not checked) */
    int send_rc;
    atomic_int sent; /* rounds whose send returned */
    job_t coord, sender;
} race_t;

/* On loop 1: for each go, send the value on ch. */
static int race_sender(void *arg, bool task)
{
    (void)task;
    race_t *r = arg;
    for (int i = 0; i < r->reps; i++) {
        int64_t v = -1;
        int rc = weft_chan_recv_timeout(r->go, &v, WAIT_MS);
        if (rc == 0)
            rc = weft_chan_send_timeout(r->ch, &v, WAIT_MS);
        if (rc != 0)
            return r->send_rc = rc;
        atomic_store(&r->sent, i + 1);
    }
    return r->send_rc = 0;
}

/* On loop 0: each round, a receiver task blocks on ch, the sender on loop 1
 * is told to send, and the receiver is cancelled a varying moment later.
 * Either the receiver got the value (rc 0, and the cancel shows at its
 * next suspension) or it took nothing (UV_ECANCELED) and the value is
 * still to be received. */
static int race_coord(void *arg, bool task)
{
    (void)task;
    race_t *r = arg;
    for (int64_t i = 0; i < r->reps; i++) {
        racer_t rr = {.ch = r->ch, .val = -1, .rc = 12345};
        weft_task_t *t = NULL;
        int rc = weft_spawn(NULL, racer_body, &rr, &t);
        for (int k = 0; rc == 0 && k < 1000 && weft_task_state(t) != WEFT_TASK_SUSPENDED; k++)
            rc = weft_yield();
        if (rc == 0 && weft_task_state(t) != WEFT_TASK_SUSPENDED)
            rc = UV_EAGAIN;
        if (rc == 0)
            rc = weft_chan_send_try(r->go, &i);
        int crc = WEFT_EDONE;
        if (rc == 0) {
            if (i % 5 == 4) {
                /* Wait (without suspending) until the send is done, so the
                 * receiver's wake-up is in loop 0's inbox, then yield until
                 * the loop starts a new tick: it took the wake-up and
                 * queued the receiver behind us. So the cancel comes while
                 * the receiver is woken but has not run yet. */
                uint64_t until = now_ns() + (uint64_t)WAIT_MS * 1000000u;
                while (atomic_load(&r->sent) <= i && now_ns() < until)
                    __asm__ volatile("" ::: "memory");
                weft_loop_stats_t st0, st1;
                weft_loop_stats(weft_loop_current(), &st0);
                st1 = st0;
                for (int k = 0; rc == 0 && k < 100000 && st1.iterations == st0.iterations; k++) {
                    rc = weft_yield();
                    weft_loop_stats(weft_loop_current(), &st1);
                }
            } else if (i % 5 == 3) {
                rc = weft_sleep(1); /* the receiver has likely run */
            } else {
                /* The cross-loop send is in flight: the cancel comes before
                 * the send, or after its claim but before loop 0 took the
                 * wake-up (a yield would not take it: only a new tick). */
                spin_us((unsigned)(i % 41));
            }
            crc = weft_task_cancel(t);
        }
        if (t != NULL) {
            /* awaiting it would pass our own cancel on; wait for it to end */
            for (int k = 0; k < WAIT_MS && weft_task_state(t) < WEFT_TASK_DONE; k++) {
                int yrc = weft_sleep(k < 100 ? 0 : 1);
                if (rc == 0)
                    rc = yrc;
            }
            if (rc == 0 && weft_task_state(t) < WEFT_TASK_DONE)
                rc = UV_ETIMEDOUT;
            if (weft_task_state(t) >= WEFT_TASK_DONE)
                (void)weft_task_result(t, NULL); /* read: no "never retrieved" warning */
            weft_task_unref(t);
        }
        if (rc != 0) {
            r->bad_rep = (int)i;
            return r->rc = rc;
        }
        int64_t v = rr.val;
        if (rr.rc == 0) {
            r->won++;
            /* the cancel came while it was live: it is not lost */
            if (crc == 0 && !rr.saw_cancel)
                r->kept_cancel_lost++;
        } else if (rr.rc == UV_ECANCELED) {
            r->cancelled++;
            v = -1;
            rc = weft_chan_recv_timeout(r->ch, &v, WAIT_MS);
            if (rc != 0) {
                r->lost++;
                r->bad_rep = (int)i;
                return r->rc = rc;
            }
        } else {
            r->bad_rep = (int)i;
            return r->rc = rr.rc;
        }
        if (v != i) {
            r->wrong++;
            r->bad_rep = (int)i;
            return r->rc = UV_EIO;
        }
    }
    return r->rc = 0;
}

static void cancel_race(size_t cap, int idle_poll_us)
{
    weft_runtime_t *rt = start_rt(idle_poll_us);
    race_t r = {
        .ch = mk(8, cap, WEFT_CHAN_MPMC), .go = mk(8, 1, WEFT_CHAN_SPSC), .reps = CANCEL_REPS};
    job_start(rt, &r.sender, ON_LOOP1, race_sender, &r);
    job_start(rt, &r.coord, ON_LOOP0, race_coord, &r);
    int crc = job_join(&r.coord);
    if (crc != 0)
        (void)weft_chan_close(r.go); /* lets the sender end */
    int src = job_join(&r.sender);
    cr_expect_eq(crc, 0, "cap %zu: round %d: %s (lost %d, wrong %d)", cap, r.bad_rep,
                 weft_err_name(crc), r.lost, r.wrong);
    cr_expect_eq(src, 0, "cap %zu: sender: %s", cap, weft_err_name(src));
    cr_expect_eq(r.kept_cancel_lost, 0, "cap %zu: a cancel that lost to a hand-over vanished", cap);
    cr_expect_eq(r.won + r.cancelled, crc == 0 ? CANCEL_REPS : r.won + r.cancelled);
    cr_log_info("cap %zu: %d receives won over the cancel, %d were cancelled", cap, r.won,
                r.cancelled);
    cr_expect_eq(weft_chan_len(r.ch), 0u);
    weft_chan_unref(r.ch);
    weft_chan_unref(r.go);
    stop_rt(rt);
}

Test(chan_mt, cancelled_recv_on_loop0_racing_a_send_from_loop1_loses_nothing,
     .timeout = TEST_TIMEOUT_S)
{
    cancel_race(1, 0);
}

Test(chan_mt, cancelled_rendezvous_recv_racing_a_send_from_loop1_loses_nothing,
     .timeout = TEST_TIMEOUT_S)
{
    cancel_race(0, -1);
}

/* ---- plain threads: ping-pong with timeouts --------------------------------- */

typedef struct pp {
    weft_chan_t *ab, *ba;
    uint64_t n, done;
    int rc;
    uint64_t wrong;
    job_t job;
} pp_t;

static int ping_body(void *arg, bool task)
{
    (void)task;
    pp_t *p = arg;
    for (uint64_t i = 0; i < p->n; i++) {
        uint64_t r = 0;
        int rc = weft_chan_send_blocking(p->ab, &i, WAIT_MS);
        if (rc == 0)
            rc = weft_chan_recv_blocking(p->ba, &r, WAIT_MS);
        if (rc != 0)
            return p->rc = rc;
        if (r != i * 2 + 1)
            p->wrong++;
        p->done = i + 1;
    }
    return p->rc = 0;
}

static int pong_body(void *arg, bool task)
{
    (void)task;
    pp_t *p = arg;
    for (uint64_t i = 0; i < p->n; i++) {
        uint64_t x = 0;
        int rc = weft_chan_recv_blocking(p->ab, &x, WAIT_MS);
        if (rc != 0)
            return p->rc = rc;
        if (x != i)
            p->wrong++;
        x = x * 2 + 1;
        if ((rc = weft_chan_send_blocking(p->ba, &x, WAIT_MS)) != 0)
            return p->rc = rc;
        p->done = i + 1;
    }
    return p->rc = 0;
}

Test(chan_mt, plain_threads_pingpong_through_two_spsc_channels_with_timeouts,
     .timeout = TEST_TIMEOUT_S)
{
    weft_chan_t *ab = mk(8, 1, WEFT_CHAN_SPSC), *ba = mk(8, 1, WEFT_CHAN_SPSC);
    pp_t ping = {.ab = ab, .ba = ba, .n = PINGPONG_N}, pong = ping;
    job_start(NULL, &ping.job, ON_THREAD, ping_body, &ping);
    job_start(NULL, &pong.job, ON_THREAD, pong_body, &pong);
    EXPECT_OK(job_join(&ping.job));
    EXPECT_OK(job_join(&pong.job));
    cr_expect_eq(ping.done, (uint64_t)PINGPONG_N, "ping: %s", weft_err_name(ping.rc));
    cr_expect_eq(pong.done, (uint64_t)PINGPONG_N, "pong: %s", weft_err_name(pong.rc));
    cr_expect_eq(ping.wrong, 0u);
    cr_expect_eq(pong.wrong, 0u);
    /* timeouts that pass: empty, then full; neither takes or leaves a value */
    uint64_t x = 1, y = 0;
    EXPECT_RC(weft_chan_recv_blocking(ab, &y, 2), UV_ETIMEDOUT);
    EXPECT_OK(weft_chan_send_blocking(ab, &x, 2));
    x = 2;
    EXPECT_RC(weft_chan_send_blocking(ab, &x, 2), UV_ETIMEDOUT);
    cr_expect_eq(weft_chan_len(ab), 1u);
    EXPECT_OK(weft_chan_recv_blocking(ab, &y, 2));
    cr_expect_eq(y, 1u);
    cr_expect_eq(weft_chan_len(ab), 0u);
    weft_chan_unref(ab);
    weft_chan_unref(ba);
}

/* ---- batches wake every waiter they make ready ------------------------------ */

#define BATCH_WAIT_MS 5000 /* a waiter left asleep fails after this */

typedef struct batchw {
    weft_chan_t *ch;
    bool send;
    int64_t val;
    int rc;
    job_t job;
} batchw_t;

static int batch_waiter(void *arg, bool task)
{
    batchw_t *b = arg;
    atomic_fetch_add(&g_armed, 1);
    if (b->send)
        b->rc = task ? weft_chan_send_timeout(b->ch, &b->val, BATCH_WAIT_MS)
                     : weft_chan_send_blocking(b->ch, &b->val, BATCH_WAIT_MS);
    else
        b->rc = task ? weft_chan_recv_timeout(b->ch, &b->val, BATCH_WAIT_MS)
                     : weft_chan_recv_blocking(b->ch, &b->val, BATCH_WAIT_MS);
    return 0;
}

typedef struct batcher {
    weft_chan_t *ch;
    bool send;
    size_t n, done;
    int64_t vals[8];
    int rc;
    job_t job;
} batcher_t;

static int batch_body(void *arg, bool task)
{
    (void)task;
    batcher_t *b = arg;
    if (b->send)
        b->rc = weft_chan_send_batch(b->ch, b->vals, b->n, &b->done);
    else
        b->rc = weft_chan_recv_batch(b->ch, b->vals, b->n, &b->done);
    return 0;
}

/* Three single receivers (a task on each loop, a thread) wait on an empty
 * channel and a task sends a batch of three; or three single senders wait
 * on a full channel and a task receives a batch that empties it. Every
 * waiter must complete: a value (or room) it could take is there. */
static void batch_wakes_all(bool batch_sends)
{
    weft_runtime_t *rt = start_rt(0);
    static const where_t at[3] = {ON_LOOP0, ON_LOOP1, ON_THREAD};
    weft_chan_t *ch = mk(8, 4, WEFT_CHAN_MPMC);
    if (!batch_sends)
        for (int64_t i = 0; i < 4; i++)
            EXPECT_OK(weft_chan_send_try(ch, &i)); /* full */
    batchw_t w[3];
    atomic_store(&g_armed, 0);
    for (int i = 0; i < 3; i++) {
        w[i] = (batchw_t){.ch = ch, .send = !batch_sends, .val = 10 + i, .rc = 12345};
        job_start(rt, &w[i].job, at[i], batch_waiter, &w[i]);
    }
    cr_expect(wait_atomic(&g_armed, 3));
    sleep_ms(50); /* let them block */
    batcher_t b = {.ch = ch, .send = batch_sends, .n = batch_sends ? 3 : 4, .rc = 12345};
    for (int i = 0; i < 3; i++)
        b.vals[i] = 20 + i;
    job_start(rt, &b.job, ON_LOOP0, batch_body, &b);
    EXPECT_OK(job_join(&b.job));
    EXPECT_OK(b.rc);
    cr_expect_eq(b.done, b.n);
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(job_join(&w[i].job));
        cr_expect_eq(w[i].rc, 0, "%s %d (%s) returned %s with %zu values buffered",
                     batch_sends ? "receiver" : "sender", i, where_name(at[i]),
                     weft_err_name(w[i].rc), weft_chan_len(ch));
    }
    cr_expect_eq(weft_chan_len(ch), batch_sends ? 0u : 3u);
    weft_chan_unref(ch);
    stop_rt(rt);
}

Test(chan_mt, send_batch_wakes_every_receiver_it_feeds, .timeout = TEST_TIMEOUT_S)
{
    batch_wakes_all(true);
}

Test(chan_mt, recv_batch_wakes_every_sender_it_makes_room_for, .timeout = TEST_TIMEOUT_S)
{
    batch_wakes_all(false);
}

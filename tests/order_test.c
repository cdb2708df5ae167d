/*
 * tests/order_test.c - where weft's ready-queue order differs from
 * asyncio's, pinned (issue 13; docs/guide.md, "Where the order is not
 * asyncio's"). Each test runs a small program whose tasks append small
 * integers to one order log, and checks the exact log weft produces. The
 * comment above each gives the same program in Python and the log that
 * CPython 3.11's asyncio printed for it (python3 -c, on this machine).
 *
 * 1. Awaiting a task that has not started runs it inline, before the other
 *    ready tasks get a step (asyncio runs it in its turn).
 * 2. A task awaiting gather, wait, as_completed or a task group resumes one
 *    ready-queue step earlier than in asyncio: the combinators' hooks run
 *    at the child's completion, not as a scheduled callback.
 * 3. A queue hands a put straight to a waiting getter and moves a waiting
 *    putter's item in on get, so size and the _try calls in the window
 *    before the woken task runs see the hand-over already made.
 *
 * The loops are made with the shuffle off (opts.shuffle = -1), so every run,
 * WEFT_SEED set or not, checks the unshuffled order. Guarded stacks only:
 * COMPACT loops do not change the order, and the shared state is static.
 * If a change in weft makes one of these fail, the order changed: update
 * the docs (guide.md and the part's page) along with the expectation.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <stdio.h>
#include <string.h>

#include <weft/weft.h>

#define LOG_MAX 32

static int g_log[LOG_MAX];
static int g_n;

static void note(int v)
{
    if (g_n < LOG_MAX)
        g_log[g_n] = v;
    g_n++;
}

static void log_text(const int *v, int n, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%d", i ? ", " : "", v[i]);
}

/* The log must be exactly want[0..n). */
static void expect_log(const int *want, int n)
{
    char got_s[256], want_s[256];
    log_text(g_log, g_n < LOG_MAX ? g_n : LOG_MAX, got_s, sizeof got_s);
    log_text(want, n, want_s, sizeof want_s);
    cr_expect(g_n == n && memcmp(g_log, want, (size_t)n * sizeof(int)) == 0,
              "order log [%s], want [%s]", got_s, want_s);
}

#define EXPECT_LOG(...)                                           \
    do {                                                          \
        static const int want_[] = {__VA_ARGS__};                 \
        expect_log(want_, (int)(sizeof want_ / sizeof want_[0])); \
    } while (0)

/* Runs fn as the main task of a fresh loop with the shuffle off; returns
 * the main task's code. */
/* fn as the main task of a fresh unshuffled loop; before_close (may be
 * NULL) runs once the loop has stopped and before it is closed - where
 * objects bound to the loop (a queue) are closed: after weft_loop_close
 * their loop pointer would dangle. */
static int run_unshuffled_then(weft_task_fn fn, void (*before_close)(void))
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.shuffle = -1};
    weft_task_t *t = NULL;
    g_n = 0;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn(&loop, fn, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    int rc = weft_task_result(t, NULL);
    weft_task_unref(t);
    if (before_close != NULL)
        before_close();
    EXPECT_OK(weft_loop_close(&loop));
    return rc;
}

static int run_unshuffled(weft_task_fn fn)
{
    return run_unshuffled_then(fn, NULL);
}

/* rc keeps its first error: rc = keep(rc, next). */
static int keep(int rc, int next)
{
    return rc != 0 ? rc : next;
}

/* ---- 1. awaiting an unstarted task runs it inline ------------------------ */

static int inline_child(void *arg, void **result)
{
    (void)arg, (void)result;
    note(2);
    return 0;
}

static int inline_other(void *arg, void **result)
{
    (void)arg, (void)result;
    note(3);
    return 0;
}

static int inline_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_task_t *o = NULL, *c = NULL;
    int rc = weft_spawn(NULL, inline_other, NULL, &o);
    rc = keep(rc, weft_spawn(NULL, inline_child, NULL, &c));
    if (rc != 0)
        return rc;
    note(1);
    rc = weft_await_task(c, NULL);
    note(4);
    rc = keep(rc, weft_await_task(o, NULL));
    weft_task_unref(c);
    weft_task_unref(o);
    return rc;
}

/*
 *     async def child(): log.append(2)
 *     async def other(): log.append(3)
 *     async def main():
 *         o = asyncio.create_task(other())
 *         c = asyncio.create_task(child())
 *         log.append(1)
 *         await c
 *         log.append(4)
 *         await o
 *
 * asyncio: [1, 3, 2, 4] - other, spawned first, runs first; main resumes
 * after child in its own step.
 * weft:    [1, 2, 4, 3] - child runs inline inside weft_await_task, main
 * goes on at once, and other (also unstarted) runs inline at its await.
 */
Test(order, await_unstarted_task_runs_it_inline, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_OK(run_unshuffled(inline_main));
    EXPECT_LOG(1, 2, 4, 3);
}

/* ---- 2. combinators resume their waiter one step earlier ----------------- */

/* Takes a step (and logs 10 + k) five times, letting one ready task run
 * between steps: a clock for the steps of the ready queue. */
static int bystander(void *arg, void **result)
{
    (void)arg, (void)result;
    for (int k = 0; k < 5; k++) {
        note(10 + k);
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Starts, lets one step pass, then logs 1 and finishes. */
static int quick_child(void *arg, void **result)
{
    (void)arg, (void)result;
    int rc = weft_yield();
    note(1);
    return rc;
}

enum how {
    PLAIN_AWAIT,
    GATHER,
    WAIT,
    AS_COMPLETED,
    GROUP
};
static enum how g_how;

/* Spawns the bystander, then the child, and yields once so that both have
 * started (a plain await of an unstarted child would run it inline: point
 * 1); then waits for the child as g_how says, logs 2, and waits for the
 * bystander. */
static int combine_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_task_t *b = NULL, *c = NULL;
    int rc = weft_spawn(NULL, bystander, NULL, &b);
    if (rc != 0)
        return rc;
    if (g_how == GROUP) {
        weft_group_t g;
        rc = weft_group_init(&g);
        if (rc == 0) {
            rc = weft_group_spawn(&g, quick_child, NULL, NULL);
            rc = keep(rc, weft_yield());
            rc = keep(rc, weft_group_wait(&g));
            rc = keep(rc, weft_group_close(&g));
        }
    } else {
        rc = weft_spawn(NULL, quick_child, NULL, &c);
        rc = keep(rc, weft_yield());
        weft_future_t *fs[1] = {c != NULL ? weft_task_future(c) : NULL};
        if (rc == 0) {
            switch (g_how) {
            case PLAIN_AWAIT:
                rc = weft_await(fs[0], NULL);
                break;
            case GATHER:
                rc = weft_gather(fs, 1, NULL, NULL, 0);
                break;
            case WAIT:
                rc = weft_wait(fs, 1, WEFT_FOREVER, WEFT_ALL_COMPLETED, NULL);
                break;
            case AS_COMPLETED: {
                weft_as_completed_t it;
                weft_future_t *f;
                rc = weft_as_completed_init(&it, fs, 1, WEFT_FOREVER);
                if (rc == 0) {
                    rc = weft_as_completed_next(&it, &f);
                    weft_as_completed_close(&it);
                }
                break;
            }
            case GROUP:
                break;
            }
        }
    }
    note(2);
    rc = keep(rc, weft_await_task(b, NULL));
    weft_task_unref(c);
    weft_task_unref(b);
    return rc;
}

/*
 *     async def bystander():
 *         for k in range(5):
 *             log.append(10 + k)
 *             await asyncio.sleep(0)
 *     async def child():
 *         await asyncio.sleep(0)
 *         log.append(1)
 *     async def main():
 *         b = asyncio.create_task(bystander())
 *         c = asyncio.create_task(child())
 *         await asyncio.sleep(0)
 *         await c                       # <- the part that varies
 *         log.append(2)
 *         await b
 *
 * asyncio, await c:   [10, 11, 1, 12, 2, 13, 14]
 * weft, weft_await:   [10, 11, 1, 12, 2, 13, 14] (the same: one hop, the
 * child's completion wakes main)
 */
Test(order, plain_await_matches_asyncio, .timeout = TEST_TIMEOUT_S)
{
    g_how = PLAIN_AWAIT;
    EXPECT_OK(run_unshuffled(combine_main));
    EXPECT_LOG(10, 11, 1, 12, 2, 13, 14);
}

/*
 * The same program with `await asyncio.gather(c)`:
 * asyncio: [10, 11, 1, 12, 13, 2, 14] - the child's done callback is
 * scheduled (call_soon), it completes the gathering future, whose done
 * callback wakes main: two hops after the child.
 * weft:    [10, 11, 1, 12, 2, 13, 14] - the hook runs at the child's
 * completion and wakes main: one hop, as a plain await.
 */
Test(order, gather_resumes_one_step_earlier, .timeout = TEST_TIMEOUT_S)
{
    g_how = GATHER;
    EXPECT_OK(run_unshuffled(combine_main));
    EXPECT_LOG(10, 11, 1, 12, 2, 13, 14);
}

/*
 * With `await asyncio.wait([c])`:
 * asyncio: [10, 11, 1, 12, 13, 2, 14]
 * weft:    [10, 11, 1, 12, 2, 13, 14]
 */
Test(order, wait_resumes_one_step_earlier, .timeout = TEST_TIMEOUT_S)
{
    g_how = WAIT;
    EXPECT_OK(run_unshuffled(combine_main));
    EXPECT_LOG(10, 11, 1, 12, 2, 13, 14);
}

/*
 * With `for f in asyncio.as_completed([c]): await f` (log.append(2) in the
 * loop body):
 * asyncio: [10, 11, 1, 12, 13, 2, 14]
 * weft:    [10, 11, 1, 12, 2, 13, 14]
 */
Test(order, as_completed_resumes_one_step_earlier, .timeout = TEST_TIMEOUT_S)
{
    g_how = AS_COMPLETED;
    EXPECT_OK(run_unshuffled(combine_main));
    EXPECT_LOG(10, 11, 1, 12, 2, 13, 14);
}

/*
 *     async def main():
 *         b = asyncio.create_task(bystander())
 *         async with asyncio.TaskGroup() as tg:
 *             tg.create_task(child())
 *             await asyncio.sleep(0)
 *         log.append(2)
 *         await b
 *
 * asyncio: [10, 11, 1, 12, 13, 2, 14]
 * weft:    [10, 11, 1, 12, 2, 13, 14] (weft_group_wait)
 */
Test(order, group_wait_resumes_one_step_earlier, .timeout = TEST_TIMEOUT_S)
{
    g_how = GROUP;
    EXPECT_OK(run_unshuffled(combine_main));
    EXPECT_LOG(10, 11, 1, 12, 2, 13, 14);
}

/* ---- 3. queues hand over at once ------------------------------------------ */

static weft_queue_t g_q;

static void close_g_q(void)
{
    EXPECT_OK(weft_queue_close(&g_q));
}

static int getter(void *arg, void **result)
{
    (void)arg, (void)result;
    note(1);
    void *v = NULL;
    int rc = weft_queue_get(&g_q, &v);
    note(weft_to_int(v));
    return rc;
}

static int queue_get_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_task_t *g = NULL;
    int rc = weft_spawn(NULL, getter, NULL, &g);
    rc = keep(rc, weft_yield()); /* the getter now waits */
    if (rc != 0)
        return rc;
    rc = weft_queue_put_try(&g_q, weft_int(5));
    note(100 + (int)weft_queue_size(&g_q));
    void *v = NULL;
    int trc = weft_queue_get_try(&g_q, &v, NULL);
    note(trc == 0 ? 200 + weft_to_int(v) : 300);
    rc = keep(rc, weft_queue_put_try(&g_q, weft_int(7)));
    rc = keep(rc, weft_await_task(g, NULL));
    note(400 + (int)weft_queue_size(&g_q));
    weft_task_unref(g);
    return rc;
}

/*
 *     async def getter():
 *         log.append(1); v = await q.get(); log.append(v)
 *     async def main():
 *         q = asyncio.Queue()
 *         g = asyncio.create_task(getter())
 *         await asyncio.sleep(0)                 # the getter now waits
 *         q.put_nowait(5)
 *         log.append(100 + q.qsize())
 *         try: log.append(200 + q.get_nowait())
 *         except asyncio.QueueEmpty: log.append(300)
 *         q.put_nowait(7)
 *         await g
 *         log.append(400 + q.qsize())
 *
 * asyncio: [1, 101, 205, 7, 400] - 5 sits in the queue until the getter
 *   runs, so main's get_nowait takes it and the getter gets 7.
 * weft:    [1, 100, 300, 5, 401] - the put handed 5 to the getter: the
 *   queue is empty in the window, get_try says UV_EAGAIN, the getter gets
 *   5 and 7 stays queued.
 */
Test(order, queue_put_hands_over_to_a_waiting_getter, .timeout = TEST_TIMEOUT_S)
{
    ASSERT_OK(weft_queue_init(&g_q, WEFT_QUEUE_FIFO, 0));
    EXPECT_OK(run_unshuffled_then(queue_get_main, close_g_q));
    EXPECT_LOG(1, 100, 300, 5, 401);
}

static int putter(void *arg, void **result)
{
    (void)arg, (void)result;
    note(1);
    int rc = weft_queue_put(&g_q, weft_int(6));
    note(2);
    return rc;
}

static int queue_put_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_task_t *p = NULL;
    int rc = weft_queue_put_try(&g_q, weft_int(5)); /* full now (maxsize 1) */
    rc = keep(rc, weft_spawn(NULL, putter, NULL, &p));
    rc = keep(rc, weft_yield()); /* the putter now waits */
    if (rc != 0)
        return rc;
    void *v = NULL;
    rc = weft_queue_get_try(&g_q, &v, NULL);
    note(200 + weft_to_int(v));
    note(100 + (int)weft_queue_size(&g_q));
    int trc = weft_queue_put_try(&g_q, weft_int(7));
    note(trc == 0 ? 307 : 300);
    rc = keep(rc, weft_queue_get(&g_q, &v));
    note(200 + weft_to_int(v));
    rc = keep(rc, weft_await_task(p, NULL));
    note(100 + (int)weft_queue_size(&g_q));
    while (weft_queue_get_try(&g_q, &v, NULL) == 0)
        note(200 + weft_to_int(v));
    weft_task_unref(p);
    return rc;
}

/*
 *     async def putter():
 *         log.append(1); await q.put(6); log.append(2)
 *     async def main():
 *         q = asyncio.Queue(1)
 *         q.put_nowait(5)
 *         p = asyncio.create_task(putter())
 *         await asyncio.sleep(0)                 # the putter now waits
 *         log.append(200 + q.get_nowait())
 *         log.append(100 + q.qsize())
 *         try: q.put_nowait(7); log.append(307)
 *         except asyncio.QueueFull: log.append(300)
 *         log.append(200 + await q.get())
 *         await p
 *         log.append(100 + q.qsize())
 *         while not q.empty(): log.append(200 + q.get_nowait())
 *
 * asyncio: [1, 205, 100, 307, 207, 2, 101, 206] - the get frees the slot
 *   and only wakes the putter, so main's put_nowait(7) barges in first.
 * weft:    [1, 205, 101, 300, 206, 2, 100] - the get moved the putter's 6
 *   in: the queue is full in the window, put_try says UV_EAGAIN, and the
 *   next get returns 6.
 */
Test(order, queue_get_moves_a_waiting_putters_item_in, .timeout = TEST_TIMEOUT_S)
{
    ASSERT_OK(weft_queue_init(&g_q, WEFT_QUEUE_FIFO, 1));
    EXPECT_OK(run_unshuffled_then(queue_put_main, close_g_q));
    EXPECT_LOG(1, 205, 101, 300, 206, 2, 100);
}

/*
 * tests/sync_test.c - synchronisation primitives (weft/sync.h): Lock and its
 * two scoped forms, Event, Condition, Semaphore, BoundedSemaphore, Barrier;
 * FIFO fairness, cancellation and timeouts of every wait, and misuse (NULL,
 * outside a task, wrong loop, callbacks).
 *
 * Tasks are ordered with weft_yield()/weft_sleep(), never by wall-clock
 * checks. Checks inside task bodies use EXPECT_* only (an ASSERT would
 * unwind off the task's stack). Every test closes its loops and expects 0.
 */
#include "plain_test.h"
#include "check.h"

#include <stdint.h>

#include <weft/weft.h>

#define NT 16
/* A task body whose arguments may go unused. */
#define TASK(name) \
    static int name(__attribute__((unused)) void *arg, __attribute__((unused)) void **result)

static weft_loop_t g_loop;
static weft_lock_t g_lock;
static weft_event_t g_ev;
static weft_cond_t g_cond, g_cond2;
static weft_sem_t g_sem;
static weft_barrier_t g_bar;
static weft_task_t *g_t[NT]; /* tasks spawned by a test's main task */
static int g_rc[NT];         /* what each of them saw */
static int g_reached;        /* the main task got to its end */
static int g_log[256];       /* an ordered record of events */
static int g_nlog;

static void note(int v)
{
    if (g_nlog < 256)
        g_log[g_nlog++] = v;
}

#define EXPECT_LOG(...)                                                                            \
    do {                                                                                           \
        const int want_[] = {__VA_ARGS__};                                                         \
        const int n_ = (int)(sizeof(want_) / sizeof(want_[0]));                                    \
        cr_expect_eq(g_nlog, n_, "log has %d entries, want %d", g_nlog, n_);                       \
        for (int i_ = 0; i_ < n_ && i_ < g_nlog; i_++)                                             \
            cr_expect_eq(g_log[i_], want_[i_], "log[%d] = %d, want %d", i_, g_log[i_], want_[i_]); \
    } while (0)

/* Yield until `t` is suspended (bounded). */
static int yield_until_suspended(weft_task_t *t)
{
    for (int i = 0; i < 1000 && weft_task_state(t) != WEFT_TASK_SUSPENDED; i++) {
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    return weft_task_state(t) == WEFT_TASK_SUSPENDED ? 0 : UV_EAGAIN;
}

static int done(void)
{
    g_reached = 1;
    return 0;
}

static void yield_n(int n)
{
    for (int i = 0; i < n; i++)
        EXPECT_OK(weft_yield());
}

/* Spawn g_t[i] = fn(arg) on the current loop and let it run until it waits. */
static void spawn_waiting(weft_task_fn fn, int i, intptr_t arg)
{
    EXPECT_OK(weft_spawn(NULL, fn, weft_int(arg), &g_t[i]));
    EXPECT_OK(yield_until_suspended(g_t[i]));
}

/* Await and release g_t[from .. to-1]. */
static void await_all(int from, int to)
{
    for (int i = from; i < to; i++) {
        int rc = weft_await_task(g_t[i], NULL); /* outcomes are checked by the tests */
        (void)rc;
        weft_task_unref(g_t[i]);
        g_t[i] = NULL;
    }
}

/* ---- One waiter for every primitive ------------------------------------------ */

enum {
    K_LOCK,
    K_EVENT,
    K_COND,
    K_SEM,
    K_BARRIER,
    K_KINDS
};
static const char *const kind_name[] = {"lock", "event", "cond", "sem", "barrier"};

/* The kind's wait (timeout_ms WEFT_FOREVER: the plain form). A condition
 * wait takes the lock first, checks it holds it afterwards and releases. */
static int prim_wait(int kind, uint64_t ms)
{
    bool forever = ms == WEFT_FOREVER;
    switch (kind) {
    case K_LOCK:
        return forever ? weft_lock_acquire(&g_lock) : weft_lock_acquire_timeout(&g_lock, ms);
    case K_EVENT:
        return forever ? weft_event_wait(&g_ev) : weft_event_wait_timeout(&g_ev, ms);
    case K_COND: {
        int rc = weft_lock_acquire(&g_lock);
        if (rc != 0)
            return rc;
        rc = forever ? weft_cond_wait(&g_cond) : weft_cond_wait_timeout(&g_cond, ms);
        cr_expect(weft_lock_locked(&g_lock), "a condition wait returned without the lock");
        EXPECT_OK(weft_lock_release(&g_lock));
        return rc;
    }
    case K_SEM:
        return forever ? weft_sem_acquire(&g_sem) : weft_sem_acquire_timeout(&g_sem, ms);
    default:
        return forever ? weft_barrier_wait(&g_bar) : weft_barrier_wait_timeout(&g_bar, ms);
    }
}

static int prim_close(int kind)
{
    return kind == K_LOCK    ? weft_lock_close(&g_lock)
           : kind == K_EVENT ? weft_event_close(&g_ev)
           : kind == K_COND  ? weft_cond_close(&g_cond)
           : kind == K_SEM   ? weft_sem_close(&g_sem)
                             : weft_barrier_close(&g_bar);
}

/* arg = kind << 8 | i (| 0x80: wait at most 5 ms). Records the wait's code in
 * g_rc[i] and logs i; a lock is held across one yield (its code in
 * g_rc[i + 8]), then released. */
TASK(waiter)
{
    intptr_t a = weft_to_int(arg);
    int i = (int)(a & 0x7f), kind = (int)(a >> 8);
    g_rc[i] = prim_wait(kind, (a & 0x80) ? 5 : WEFT_FOREVER);
    note(i);
    if (kind == K_LOCK && g_rc[i] == 0) {
        g_rc[i + 8] = weft_yield();
        EXPECT_OK(weft_lock_release(&g_lock));
    }
    return 0;
}
#define W(kind, i) ((intptr_t)(kind) << 8 | (i))

/* Every object fresh: sem 0, barrier of 3 (tests re-init what they need). */
static void setup_all(void)
{
    ASSERT_OK(weft_lock_init(&g_lock));
    ASSERT_OK(weft_event_init(&g_ev));
    ASSERT_OK(weft_cond_init(&g_cond, &g_lock));
    ASSERT_OK(weft_cond_init(&g_cond2, &g_lock));
    ASSERT_OK(weft_sem_init(&g_sem, 0));
    ASSERT_OK(weft_barrier_init(&g_bar, 3));
}

static void close_all(void)
{
    for (int k = 0; k < K_KINDS; k++)
        cr_expect_eq(prim_close(k), 0, "%s: close", kind_name[k]);
    EXPECT_OK(weft_cond_close(&g_cond2));
}

/* Run body(arg) as the main task of g_loop (stacks roomy enough for
 * Criterion's reporting); the loop must drain and close with 0, and so must
 * every object (set up by the test with setup_all()). */
/* SYNC_TEST_FIFO: opts.shuffle for the next run_main. */
static int g_shuffle;

static void run_main(weft_task_fn body, void *arg)
{
    weft_loop_opts_t opts = {.stack_size = 256 * 1024, .shuffle = g_shuffle};
    weft_task_t *t = NULL;
    g_reached = 0;
    ASSERT_OK(weft_loop_init(&g_loop, &opts));
    ASSERT_OK(weft_spawn(&g_loop, body, arg, &t));
    EXPECT_OK(weft_loop_run(&g_loop));
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&g_loop));
    cr_expect_eq(g_reached, 1, "the main task did not reach its end");
    close_all(); /* tear-down: allowed while the loop is not running */
}

/* A test that runs body(arg) as the main task, on fresh objects. */
#define SYNC_TEST(suite, name, body, arg)        \
    Test(suite, name, .timeout = TEST_TIMEOUT_S) \
    {                                            \
        setup_all();                             \
        run_main(body, arg);                     \
    }

/* The same, with the ready-queue shuffle off (WEFT_SEED notwithstanding):
 * for tests of the order in which tasks woken together run, which is FIFO
 * but which the shuffle leaves open (docs/core.md, "Debug mode"). */
#define SYNC_TEST_FIFO(suite, name, body, arg)   \
    Test(suite, name, .timeout = TEST_TIMEOUT_S) \
    {                                            \
        g_shuffle = -1;                          \
        setup_all();                             \
        run_main(body, arg);                     \
    }

/* ---- Lock ------------------------------------------------------------------ */

TASK(intruder)
{
    EXPECT_RC(weft_lock_release(&g_lock), UV_EPERM);
    cr_expect(weft_lock_locked(&g_lock), "a refused release unlocked the lock");
    EXPECT_RC(weft_lock_acquire_timeout(&g_lock, 0), UV_ETIMEDOUT);
    g_rc[0] = 1;
    return 0;
}

TASK(lock_basics_main)
{
    /* Taken by set-up code before the loop ran: no holder, anyone releases. */
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_OK(weft_lock_release(&g_lock));
    cr_expect(!weft_lock_locked(&g_lock));
    EXPECT_RC(weft_lock_release(&g_lock), UV_EPERM); /* not locked */
    EXPECT_OK(weft_lock_acquire(&g_lock));
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_RC(weft_lock_try(&g_lock), UV_EAGAIN);
    EXPECT_RC(weft_lock_acquire(&g_lock), WEFT_EDEADLK);
    EXPECT_RC(weft_lock_acquire_timeout(&g_lock, 5), WEFT_EDEADLK);
    cr_expect(weft_lock_locked(&g_lock), "a refused re-acquire dropped the lock");
    EXPECT_OK(weft_spawn(NULL, intruder, NULL, &g_t[0]));
    await_all(0, 1);
    cr_expect_eq(g_rc[0], 1, "the intruder did not run");
    EXPECT_OK(weft_lock_release(&g_lock));
    cr_expect(!weft_lock_locked(&g_lock));
    EXPECT_OK(weft_lock_try(&g_lock));
    EXPECT_OK(weft_yield()); /* held across a suspension */
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_OK(weft_lock_release(&g_lock));
    EXPECT_OK(weft_lock_acquire_timeout(&g_lock, 0)); /* free: no wait needed */
    EXPECT_OK(weft_lock_release(&g_lock));
    return done();
}

Test(lock, acquire_release_try_edeadlk_and_release_eperm_unless_holder, .timeout = TEST_TIMEOUT_S)
{
    setup_all();
    EXPECT_OK(weft_lock_try(&g_lock));
    run_main(lock_basics_main, NULL);
}

/* "Would wait" is UV_EAGAIN for every _try form (error.h), in a task or a
 * callback alike. */
static void try_forms_cb(void *arg)
{
    weft_queue_t *q = arg;
    EXPECT_OK(weft_lock_try(&g_lock));
    EXPECT_RC(weft_lock_try(&g_lock), UV_EAGAIN);
    EXPECT_OK(weft_lock_release(&g_lock));
    EXPECT_RC(weft_sem_try(&g_sem), UV_EAGAIN); /* no permit */
    void *v = NULL;
    EXPECT_RC(weft_queue_get_try(q, &v, NULL), UV_EAGAIN); /* empty */
    EXPECT_OK(weft_queue_put_try(q, weft_int(1)));
    EXPECT_RC(weft_queue_put_try(q, weft_int(2)), UV_EAGAIN); /* full */
    EXPECT_OK(weft_queue_get_try(q, &v, NULL));
    g_reached = 1;
}

Test(lock, lock_try_and_every_try_form_return_eagain_when_they_would_wait,
     .timeout = TEST_TIMEOUT_S)
{
    weft_queue_t q;
    setup_all();
    g_reached = 0;
    ASSERT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    ASSERT_OK(weft_loop_init(&g_loop, NULL));
    ASSERT_OK(weft_call_soon(&g_loop, try_forms_cb, &q, NULL));
    EXPECT_OK(weft_loop_run(&g_loop));
    cr_expect(g_reached, "the callback did not run");
    EXPECT_OK(weft_queue_close(&q));
    EXPECT_OK(weft_loop_close(&g_loop));
    close_all();
}

/* WEFT_FOREVER is no timeout for every primitive's _timeout form: on an
 * object that is ready (nothing waits forever) each succeeds at once. */
TASK(forever_main)
{
    EXPECT_OK(weft_lock_acquire_timeout(&g_lock, WEFT_FOREVER));
    EXPECT_OK(weft_lock_release(&g_lock));
    EXPECT_OK(weft_lock_acquire_timeout(&g_lock, WEFT_FOREVER - 1)); /* too long: forever */
    EXPECT_OK(weft_lock_release(&g_lock));
    EXPECT_OK(weft_event_set(&g_ev));
    EXPECT_OK(weft_event_wait_timeout(&g_ev, WEFT_FOREVER));
    EXPECT_OK(weft_sem_release(&g_sem));
    EXPECT_OK(weft_sem_acquire_timeout(&g_sem, WEFT_FOREVER));
    weft_queue_t q;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    EXPECT_OK(weft_queue_put_timeout(&q, 0, weft_int(5), WEFT_FOREVER));
    EXPECT_OK(weft_queue_get_timeout(&q, &v, NULL, WEFT_FOREVER));
    cr_expect_eq(weft_to_int(v), 5);
    EXPECT_OK(weft_queue_task_done(&q));
    EXPECT_OK(weft_queue_join_timeout(&q, WEFT_FOREVER));
    EXPECT_OK(weft_queue_close(&q));
    return done();
}

SYNC_TEST(forever, every_timeout_form_takes_weft_forever_as_no_timeout, forever_main, NULL)

TASK(newcomer)
{
    EXPECT_RC(weft_lock_try(&g_lock), UV_EAGAIN); /* others queue: no barging */
    return waiter(weft_int(W(K_LOCK, 3)), result);
}

TASK(lock_fifo_main)
{
    EXPECT_OK(weft_lock_acquire(&g_lock));
    for (int i = 0; i < 3; i++)
        spawn_waiting(waiter, i, W(K_LOCK, i)); /* arrival order 0, 1, 2 */
    EXPECT_OK(weft_lock_release(&g_lock));      /* handed to waiter 0 */
    cr_expect(weft_lock_locked(&g_lock), "a released lock with waiters must stay locked");
    EXPECT_RC(weft_lock_try(&g_lock), UV_EAGAIN);
    EXPECT_OK(weft_spawn(NULL, newcomer, NULL, &g_t[3]));
    await_all(0, 4);
    for (int i = 0; i < 4; i++)
        EXPECT_OK(g_rc[i]);
    cr_expect(!weft_lock_locked(&g_lock));
    EXPECT_LOG(0, 1, 2, 3);
    return done();
}

SYNC_TEST(lock, waiters_acquire_in_arrival_order_and_a_newcomer_cannot_barge_in, lock_fifo_main,
          NULL)

/* Waiter 0 leaves the queue - arg 0: cancelled, 1: its 5 ms timeout - and
 * the lock, held all along, then goes to waiter 1 and not to the one gone. */
TASK(lock_leave_main)
{
    intptr_t timed = weft_to_int(arg);
    EXPECT_OK(weft_lock_acquire(&g_lock));
    spawn_waiting(waiter, 0, W(K_LOCK, 0) | (timed ? 0x80 : 0));
    spawn_waiting(waiter, 1, W(K_LOCK, 1));
    EXPECT_RC(weft_lock_close(&g_lock), UV_EBUSY);
    if (!timed)
        EXPECT_OK(weft_task_cancel(g_t[0]));
    await_all(0, 1);
    EXPECT_RC(g_rc[0], timed ? UV_ETIMEDOUT : UV_ECANCELED);
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_RC(weft_lock_close(&g_lock), UV_EBUSY); /* waiter 1 still waits */
    EXPECT_OK(weft_lock_release(&g_lock));
    await_all(1, 2);
    EXPECT_OK(g_rc[1]);
    cr_expect(!weft_lock_locked(&g_lock));
    EXPECT_LOG(0, 1);
    return done();
}

SYNC_TEST(lock, cancelled_waiter_leaves_and_the_lock_goes_to_the_next, lock_leave_main, weft_int(0))

SYNC_TEST(lock, acquire_timeout_expires_and_the_lock_goes_to_the_next, lock_leave_main, weft_int(1))

TASK(with_lock_main)
{
    int rc = 1, n = 0, iterations = 0;
    WEFT_WITH_LOCK(&g_lock, rc)
    {
        cr_expect(weft_lock_locked(&g_lock));
        EXPECT_OK(weft_yield());
        n++;
    }
    EXPECT_OK(rc);
    cr_expect(!weft_lock_locked(&g_lock), "WEFT_WITH_LOCK kept the lock after normal exit");
    WEFT_WITH_LOCK(&g_lock, rc)
    {
        if (++n > 0)
            break;
        n += 100;
    }
    cr_expect_eq(n, 2);
    cr_expect(!weft_lock_locked(&g_lock), "WEFT_WITH_LOCK kept the lock after break");
    for (int i = 0; i < 3; i++) {
        WEFT_WITH_LOCK(&g_lock, rc)
        {
            if (i == 1)
                break; /* leaves the block, not the for */
            if (i == 2)
                continue;
        }
        cr_expect(!weft_lock_locked(&g_lock), "iteration %d kept the lock", i);
        iterations++;
    }
    cr_expect_eq(iterations, 3);
    /* Not acquired: the block does not run and nothing is released. */
    EXPECT_OK(weft_lock_acquire(&g_lock));
    WEFT_WITH_LOCK(&g_lock, rc)
    {
        n += 100;
    }
    EXPECT_RC(rc, WEFT_EDEADLK);
    cr_expect_eq(n, 2, "the block ran without the lock");
    cr_expect(weft_lock_locked(&g_lock), "WEFT_WITH_LOCK released a lock it did not take");
    EXPECT_OK(weft_lock_release(&g_lock));
    return done();
}

SYNC_TEST(lock, with_lock_releases_on_normal_exit_break_and_continue_only_if_acquired,
          with_lock_main, NULL)

/* mode 0: return from the middle; 1: release early, re-take the lock by
 * hand, return; 2: suspend while holding, then return. */
static int guarded_helper(int mode)
{
    WEFT_LOCK_GUARD(g, &g_lock);
    if (g.rc != 0)
        return g.rc;
    cr_expect(weft_lock_locked(&g_lock));
    if (mode == 0)
        return 7;
    if (mode == 1) {
        weft_lock_guard_release(&g);
        weft_lock_guard_release(&g); /* idempotent */
        cr_expect(!weft_lock_locked(&g_lock));
        EXPECT_OK(weft_lock_try(&g_lock)); /* the guard must not release this one */
        return 8;
    }
    int rc = weft_yield();
    return rc == 0 ? 9 : rc;
}

TASK(guard_main)
{
    cr_expect_eq(guarded_helper(0), 7);
    cr_expect(!weft_lock_locked(&g_lock), "WEFT_LOCK_GUARD kept the lock after return");
    cr_expect_eq(guarded_helper(2), 9);
    cr_expect(!weft_lock_locked(&g_lock), "WEFT_LOCK_GUARD kept the lock after a suspension");
    cr_expect_eq(guarded_helper(1), 8);
    cr_expect(weft_lock_locked(&g_lock), "an early-released guard released again at exit");
    /* Held by us already: the guard gets WEFT_EDEADLK and releases nothing. */
    EXPECT_RC(guarded_helper(0), WEFT_EDEADLK);
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_OK(weft_lock_release(&g_lock));
    for (int i = 0; i < 2; i++) {
        WEFT_LOCK_GUARD(g, &g_lock);
        EXPECT_OK(g.rc);
        break;
    }
    cr_expect(!weft_lock_locked(&g_lock), "WEFT_LOCK_GUARD kept the lock after break");
    return done();
}

SYNC_TEST(lock, lock_guard_releases_on_return_and_break_and_early_release_is_idempotent, guard_main,
          NULL)

/* ---- Event ----------------------------------------------------------------- */

TASK(event_main)
{
    for (int i = 0; i < 3; i++)
        spawn_waiting(waiter, i, W(K_EVENT, i));
    cr_expect(!weft_event_is_set(&g_ev));
    yield_n(3);
    cr_expect_eq(g_nlog, 0, "a waiter passed an event that is not set");
    EXPECT_OK(weft_event_set(&g_ev));
    EXPECT_OK(weft_event_clear(&g_ev)); /* the woken waiters still pass */
    await_all(0, 3);
    for (int i = 0; i < 3; i++)
        EXPECT_OK(g_rc[i]);
    EXPECT_OK(weft_event_set(&g_ev));
    cr_expect(weft_event_is_set(&g_ev));
    EXPECT_OK(weft_event_wait(&g_ev)); /* set: waits pass until clear */
    EXPECT_OK(weft_event_wait_timeout(&g_ev, 0));
    EXPECT_OK(weft_event_set(&g_ev)); /* twice is fine */
    EXPECT_OK(weft_event_clear(&g_ev));
    cr_expect(!weft_event_is_set(&g_ev));
    EXPECT_RC(weft_event_wait_timeout(&g_ev, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_event_wait_timeout(&g_ev, 5), UV_ETIMEDOUT);
    EXPECT_LOG(0, 1, 2);
    return done();
}

SYNC_TEST_FIFO(event, set_wakes_every_waiter_later_waits_pass_until_clear, event_main, NULL)

/* ---- Condition --------------------------------------------------------------- */

#define PC_CAP   2
#define PC_ITEMS 100

static struct {
    int buf[PC_CAP];
    int head, count, max_count, consumed, out_of_order;
    long sum;
} g_pc;

static bool pc_not_full(void *arg)
{
    (void)arg;
    cr_expect(weft_lock_locked(&g_lock), "predicate called without the lock");
    return g_pc.count < PC_CAP;
}

static bool pc_not_empty(void *arg)
{
    (void)arg;
    return g_pc.count > 0;
}

/* One step under the lock: wait for room (producer) or an item (consumer),
 * move one item, notify the other side. Returns the item, or a code < 0. */
static int pc_step(bool produce, int item)
{
    int rc = weft_lock_acquire(&g_lock);
    if (rc != 0)
        return rc;
    rc = weft_cond_wait_for(produce ? &g_cond : &g_cond2, produce ? pc_not_full : pc_not_empty,
                            NULL);
    if (rc == 0 && produce) {
        g_pc.buf[(g_pc.head + g_pc.count) % PC_CAP] = item;
        if (++g_pc.count > g_pc.max_count)
            g_pc.max_count = g_pc.count;
    } else if (rc == 0) {
        item = g_pc.buf[g_pc.head];
        g_pc.head = (g_pc.head + 1) % PC_CAP;
        g_pc.count--;
    }
    if (rc == 0 && (rc = weft_cond_notify(produce ? &g_cond2 : &g_cond, 1)) > 0)
        rc = 0;
    EXPECT_OK(weft_lock_release(&g_lock));
    return rc != 0 ? rc : item;
}

TASK(producer)
{
    for (int i = 1; i <= PC_ITEMS + 2; i++) { /* then a 0 (stop) per consumer */
        int rc = pc_step(true, i <= PC_ITEMS ? i : 0);
        if (rc >= 0 && i % 7 == 0)
            rc = weft_yield();
        if (rc < 0)
            return rc;
    }
    return 0;
}

TASK(consumer)
{
    for (int last = 0;;) {
        int v = pc_step(false, 0);
        if (v <= 0)
            return v;
        g_pc.sum += v;
        g_pc.consumed++;
        g_pc.out_of_order += v <= last;
        last = v;
        if (v % 3 == 0 && (v = weft_yield()) != 0)
            return v;
    }
}

TASK(pc_main)
{
    EXPECT_OK(weft_spawn(NULL, producer, NULL, &g_t[0]));
    EXPECT_OK(weft_spawn(NULL, consumer, NULL, &g_t[1]));
    EXPECT_OK(weft_spawn(NULL, consumer, NULL, &g_t[2]));
    for (int i = 0; i < 3; i++)
        EXPECT_OK(weft_await_task(g_t[i], NULL));
    await_all(0, 3);
    cr_expect_eq(g_pc.consumed, PC_ITEMS);
    cr_expect_eq(g_pc.sum, (long)PC_ITEMS * (PC_ITEMS + 1) / 2);
    cr_expect_eq(g_pc.out_of_order, 0, "a consumer saw items out of order");
    cr_expect_eq(g_pc.max_count, PC_CAP, "buffer peaked at %d", g_pc.max_count);
    cr_expect_eq(g_pc.count, 0);
    return done();
}

SYNC_TEST(cond, producer_consumer_through_a_bounded_buffer_of_two, pc_main, NULL)

static bool never(void *arg)
{
    (void)arg;
    return false;
}

TASK(hold_lock_until_event)
{
    EXPECT_OK(weft_lock_acquire(&g_lock));
    EXPECT_OK(weft_event_wait(&g_ev));
    return weft_lock_release(&g_lock);
}

TASK(cond_eperm_main)
{
    EXPECT_RC(weft_cond_wait(&g_cond), UV_EPERM);
    EXPECT_RC(weft_cond_wait_timeout(&g_cond, 5), UV_EPERM);
    EXPECT_RC(weft_cond_wait_for(&g_cond, never, NULL), UV_EPERM);
    EXPECT_RC(weft_cond_notify(&g_cond, 1), UV_EPERM);
    EXPECT_RC(weft_cond_notify_all(&g_cond), UV_EPERM);
    spawn_waiting(hold_lock_until_event, 0, 0); /* held by someone else: not ours */
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_RC(weft_cond_wait(&g_cond), UV_EPERM);
    EXPECT_RC(weft_cond_notify(&g_cond, 1), UV_EPERM);
    EXPECT_OK(weft_event_set(&g_ev));
    await_all(0, 1);
    EXPECT_OK(weft_lock_acquire(&g_lock));
    EXPECT_RC(weft_cond_notify(&g_cond, 1), 0); /* nobody waits */
    EXPECT_RC(weft_cond_notify_all(&g_cond), 0);
    EXPECT_RC(weft_cond_notify(&g_cond, -1), UV_EINVAL);
    EXPECT_OK(weft_lock_release(&g_lock));
    return done();
}

SYNC_TEST(cond, wait_and_notify_without_holding_the_lock_are_eperm, cond_eperm_main, NULL)

TASK(cond_notify_main)
{
    for (int i = 0; i < 3; i++)
        spawn_waiting(waiter, i, W(K_COND, i));
    cr_expect(!weft_lock_locked(&g_lock), "waiting did not give the lock up");
    EXPECT_OK(weft_lock_acquire(&g_lock));
    EXPECT_RC(weft_cond_notify(&g_cond, 1), 1);
    EXPECT_RC(weft_cond_close(&g_cond), UV_EBUSY);
    EXPECT_OK(weft_lock_release(&g_lock));
    yield_n(5);
    cr_expect_eq(g_nlog, 1, "notify(1) woke %d waiters", g_nlog);
    EXPECT_OK(weft_lock_acquire(&g_lock));
    EXPECT_RC(weft_cond_notify_all(&g_cond), 2);
    EXPECT_OK(weft_lock_release(&g_lock));
    await_all(0, 3);
    for (int i = 0; i < 3; i++)
        EXPECT_OK(g_rc[i]);
    EXPECT_LOG(0, 1, 2);
    return done();
}

SYNC_TEST_FIFO(cond, notify_one_wakes_exactly_the_oldest_and_notify_all_the_rest, cond_notify_main,
               NULL)

static int g_flag, g_pred_calls;

static bool flag_reached(void *arg)
{
    g_pred_calls++;
    cr_expect(weft_lock_locked(&g_lock), "predicate called without the lock");
    return g_flag >= (int)weft_to_int(arg);
}

TASK(wait_for_three)
{
    EXPECT_OK(weft_lock_acquire(&g_lock));
    g_rc[0] = weft_cond_wait_for(&g_cond, flag_reached, weft_int(3));
    g_rc[1] = g_flag;
    return weft_lock_release(&g_lock);
}

TASK(wait_for_main)
{
    spawn_waiting(wait_for_three, 5, 0);
    for (int k = 0; k < 3; k++) {
        EXPECT_OK(weft_lock_acquire(&g_lock));
        g_flag++;
        EXPECT_RC(weft_cond_notify_all(&g_cond), 1);
        EXPECT_OK(weft_lock_release(&g_lock));
        yield_n(2);
    }
    await_all(5, 6);
    EXPECT_OK(g_rc[0]);
    cr_expect_eq(g_rc[1], 3, "wait_for returned with the flag at %d", g_rc[1]);
    cr_expect_eq(g_pred_calls, 4, "predicate called %d times, want 1 + 3", g_pred_calls);
    EXPECT_OK(weft_lock_acquire(&g_lock)); /* already true: no waiting */
    EXPECT_OK(weft_cond_wait_for(&g_cond, flag_reached, weft_int(2)));
    cr_expect_eq(g_pred_calls, 5);
    EXPECT_OK(weft_lock_release(&g_lock));
    return done();
}

SYNC_TEST(cond, wait_for_rechecks_the_predicate_after_each_wake_up, wait_for_main, NULL)

TASK(cond_victim)
{
    EXPECT_OK(weft_lock_acquire(&g_lock));
    g_rc[0] = weft_to_int(arg) ? weft_cond_wait_timeout(&g_cond, 5) : weft_cond_wait(&g_cond);
    note(2);
    g_rc[1] = weft_lock_locked(&g_lock);
    g_rc[2] = weft_lock_release(&g_lock); /* only the holder could */
    return 0;
}

/* arg 0: the waiter is cancelled; 1: its 5 ms timeout passes. Meanwhile this
 * task holds the lock, so the wait can only return after note(1). */
TASK(cond_hold_main)
{
    intptr_t timed = weft_to_int(arg);
    spawn_waiting(cond_victim, 5, timed);
    EXPECT_OK(weft_lock_acquire(&g_lock)); /* the waiter gave it up */
    if (!timed)
        EXPECT_OK(weft_task_cancel(g_t[5]));
    EXPECT_OK(weft_sleep(20));
    note(1);
    EXPECT_OK(weft_lock_release(&g_lock));
    await_all(5, 6);
    EXPECT_RC(g_rc[0], timed ? UV_ETIMEDOUT : UV_ECANCELED);
    cr_expect_eq(g_rc[1], 1, "the interrupted wait returned without the lock");
    EXPECT_OK(g_rc[2]);
    EXPECT_LOG(1, 2);
    return done();
}

SYNC_TEST(cond, a_cancelled_wait_returns_only_once_it_holds_the_lock_again, cond_hold_main,
          weft_int(0))

SYNC_TEST(cond, a_timed_out_wait_returns_only_once_it_holds_the_lock_again, cond_hold_main,
          weft_int(1))

/* ---- Semaphore ---------------------------------------------------------------- */

static int g_inside, g_max_inside;

TASK(sem_worker)
{
    int rc = weft_sem_acquire(&g_sem);
    if (rc != 0)
        return rc;
    if (++g_inside > g_max_inside)
        g_max_inside = g_inside;
    rc = weft_sleep(1 + (uint64_t)weft_to_int(arg) % 3); /* all ten pile up meanwhile */
    g_inside--;
    g_rc[weft_to_int(arg)] = 1;
    EXPECT_OK(weft_sem_release(&g_sem));
    return rc;
}

TASK(sem_limit_main)
{
    EXPECT_OK(weft_sem_init(&g_sem, 2));
    for (int i = 0; i < 10; i++)
        EXPECT_OK(weft_spawn(NULL, sem_worker, weft_int(i), &g_t[i]));
    for (int i = 0; i < 10; i++)
        EXPECT_OK(weft_await_task(g_t[i], NULL));
    await_all(0, 10);
    cr_expect_eq(g_max_inside, 2, "%d tasks were inside at once", g_max_inside);
    for (int i = 0; i < 10; i++)
        cr_expect_eq(g_rc[i], 1, "worker %d did not get in", i);
    cr_expect_eq(weft_sem_value(&g_sem), 2);
    return done();
}

SYNC_TEST(sem, a_semaphore_of_two_never_lets_a_third_task_in, sem_limit_main, NULL)

TASK(sem_values_main)
{
    weft_sem_t b;
    EXPECT_OK(weft_sem_init(&g_sem, 1));
    EXPECT_OK(weft_sem_try(&g_sem));
    cr_expect_eq(weft_sem_value(&g_sem), 0);
    EXPECT_RC(weft_sem_try(&g_sem), UV_EAGAIN);
    EXPECT_RC(weft_sem_acquire_timeout(&g_sem, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_sem_acquire_timeout(&g_sem, 5), UV_ETIMEDOUT);
    cr_expect_eq(weft_sem_value(&g_sem), 0);
    for (int i = 0; i < 3; i++) /* unbounded: above the initial value is fine */
        EXPECT_OK(weft_sem_release(&g_sem));
    cr_expect_eq(weft_sem_value(&g_sem), 3);
    EXPECT_OK(weft_sem_acquire(&g_sem));
    cr_expect_eq(weft_sem_value(&g_sem), 2);

    EXPECT_OK(weft_sem_init_bounded(&b, 1));
    EXPECT_RC(weft_sem_release(&b), UV_EINVAL);
    cr_expect_eq(weft_sem_value(&b), 1, "a refused release changed the value");
    EXPECT_OK(weft_sem_acquire(&b));
    EXPECT_RC(weft_sem_try(&b), UV_EAGAIN);
    EXPECT_OK(weft_sem_release(&b));
    EXPECT_RC(weft_sem_release(&b), UV_EINVAL);
    cr_expect_eq(weft_sem_value(&b), 1);
    EXPECT_OK(weft_sem_close(&b));
    EXPECT_RC(weft_sem_init(&b, -1), UV_EINVAL);
    EXPECT_RC(weft_sem_init_bounded(&b, -1), UV_EINVAL);
    return done();
}

SYNC_TEST(sem, try_is_eagain_at_zero_and_a_bounded_release_above_the_bound_is_einval,
          sem_values_main, NULL)

TASK(sem_fifo_main)
{
    for (int i = 0; i < 4; i++)
        spawn_waiting(waiter, i, W(K_SEM, i));
    EXPECT_OK(weft_task_cancel(g_t[1])); /* waiter 1 leaves the queue */
    yield_n(2);
    EXPECT_RC(weft_sem_close(&g_sem), UV_EBUSY);
    EXPECT_OK(weft_sem_release(&g_sem)); /* straight to waiter 0 */
    cr_expect_eq(weft_sem_value(&g_sem), 0);
    EXPECT_RC(weft_sem_try(&g_sem), UV_EAGAIN); /* no barging in */
    yield_n(2);
    EXPECT_OK(weft_sem_release(&g_sem));
    yield_n(2);
    EXPECT_OK(weft_sem_release(&g_sem));
    await_all(0, 4);
    EXPECT_OK(g_rc[0]);
    EXPECT_RC(g_rc[1], UV_ECANCELED);
    EXPECT_OK(g_rc[2]);
    EXPECT_OK(g_rc[3]);
    EXPECT_OK(weft_sem_release(&g_sem)); /* nobody left: a free permit */
    cr_expect_eq(weft_sem_value(&g_sem), 1, "a permit went to a waiter that left");
    EXPECT_LOG(1, 0, 2, 3);
    return done();
}

SYNC_TEST(sem, permits_go_to_waiters_in_fifo_order_and_a_cancelled_one_leaves, sem_fifo_main, NULL)

/* A cancel and a release (set, notify) in one go, before the waiter ran.
 * Cancel first: the waiter was not granted when the cancel came, so its wait
 * returns UV_ECANCELED and what was released goes to the next waiter
 * (asyncio's release and notify skip cancelled waiters). Release first
 * (arg | 0x10): the wait succeeds and the cancel comes at the waiter's next
 * suspension. arg: the kind. */
TASK(cancel_race_main)
{
    int k = (int)(weft_to_int(arg) & 0xf);
    bool grant_first = weft_to_int(arg) & 0x10;
    if (k == K_LOCK)
        EXPECT_OK(weft_lock_acquire(&g_lock));
    spawn_waiting(waiter, 0, W(k, 0));
    spawn_waiting(waiter, 1, W(k, 1));
    g_rc[1] = 1;
    if (!grant_first)
        EXPECT_OK(weft_task_cancel(g_t[0]));
    if (k == K_LOCK)
        EXPECT_OK(weft_lock_release(&g_lock));
    else if (k == K_SEM)
        EXPECT_OK(weft_sem_release(&g_sem));
    else if (k == K_EVENT)
        EXPECT_OK(weft_event_set(&g_ev));
    else if (weft_lock_try(&g_lock) == 0) {
        EXPECT_RC(weft_cond_notify(&g_cond, 1), 1);
        EXPECT_OK(weft_lock_release(&g_lock));
    }
    if (grant_first)
        EXPECT_OK(weft_task_cancel(g_t[0]));
    yield_n(6);
    EXPECT_RC(g_rc[0], grant_first ? 0 : UV_ECANCELED);
    if (grant_first)
        EXPECT_RC(g_rc[8], UV_ECANCELED); /* its yield while holding the lock */
    cr_expect_eq(g_rc[1], 0, "the next waiter did not get the %s", kind_name[k]);
    for (int i = 0; i < 2; i++)
        (void)weft_task_cancel(g_t[i]); /* if one is stuck (WEFT_EDONE if not) */
    await_all(0, 2);
    cr_expect(!weft_lock_locked(&g_lock));
    return done();
}

SYNC_TEST(lock, a_cancel_after_the_grant_keeps_the_lock_and_comes_at_the_next_suspension,
          cancel_race_main, weft_int(K_LOCK | 0x10))

SYNC_TEST(lock, a_waiter_cancelled_before_the_release_does_not_get_the_lock, cancel_race_main,
          weft_int(K_LOCK))

SYNC_TEST(sem, a_waiter_cancelled_before_the_release_does_not_get_the_permit, cancel_race_main,
          weft_int(K_SEM))

SYNC_TEST(event, a_waiter_cancelled_before_the_set_returns_ecanceled, cancel_race_main,
          weft_int(K_EVENT))

SYNC_TEST(cond, a_waiter_cancelled_before_the_notify_does_not_use_it_up, cancel_race_main,
          weft_int(K_COND))

/* ---- Barrier ------------------------------------------------------------------ */

static int g_seen[2][3];

TASK(barrier_party)
{
    for (int round = 0; round < 2; round++) {
        int idx = weft_barrier_wait(&g_bar);
        if (idx < 0 || idx > 2)
            return weft_fail(idx < 0 ? idx : UV_ERANGE, "bad barrier index");
        g_seen[round][idx]++;
        if (round == 0)
            g_rc[weft_to_int(arg)] = idx;
    }
    return 0;
}

TASK(barrier_rounds_main)
{
    /* Arrival order 0, 1, 2, whatever the start order: the third trips
     * the barrier (and may finish before it is seen suspended). */
    for (int i = 0; i < 2; i++)
        spawn_waiting(barrier_party, i, i);
    EXPECT_OK(weft_spawn(NULL, barrier_party, weft_int(2), &g_t[2]));
    for (int i = 0; i < 3; i++)
        EXPECT_OK(weft_await_task(g_t[i], NULL));
    await_all(0, 3);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++)
            cr_expect_eq(g_seen[r][i], 1, "round %d: index %d came %d times", r, i, g_seen[r][i]);
    for (int i = 0; i < 3; i++) /* indices follow arrival order */
        cr_expect_eq(g_rc[i], i, "party %d got index %d in round one", i, g_rc[i]);
    cr_expect_eq(weft_barrier_waiting(&g_bar), 0);
    cr_expect(!weft_barrier_broken(&g_bar));
    return done();
}

SYNC_TEST(barrier, three_parties_get_indices_0_1_2_and_it_resets_for_round_two, barrier_rounds_main,
          NULL)

/* arg 0: abort, 1: reset, while two parties wait. */
TASK(barrier_break_main)
{
    bool abort = weft_to_int(arg) == 0;
    spawn_waiting(waiter, 0, W(K_BARRIER, 0));
    spawn_waiting(waiter, 1, W(K_BARRIER, 1));
    cr_expect_eq(weft_barrier_waiting(&g_bar), 2);
    EXPECT_RC(weft_barrier_close(&g_bar), UV_EBUSY);
    EXPECT_OK(abort ? weft_barrier_abort(&g_bar) : weft_barrier_reset(&g_bar));
    await_all(0, 2);
    EXPECT_RC(g_rc[0], WEFT_EBROKEN);
    EXPECT_RC(g_rc[1], WEFT_EBROKEN);
    cr_expect_eq(weft_barrier_waiting(&g_bar), 0);
    cr_expect_eq(weft_barrier_broken(&g_bar), abort);
    if (abort) {
        EXPECT_RC(weft_barrier_wait(&g_bar), WEFT_EBROKEN);
        EXPECT_RC(weft_barrier_wait_timeout(&g_bar, 5), WEFT_EBROKEN);
        EXPECT_OK(weft_barrier_reset(&g_bar));
        cr_expect(!weft_barrier_broken(&g_bar));
    }
    spawn_waiting(waiter, 0, W(K_BARRIER, 0)); /* usable again: a full round */
    spawn_waiting(waiter, 1, W(K_BARRIER, 1));
    EXPECT_RC(weft_barrier_wait(&g_bar), 2);
    await_all(0, 2);
    EXPECT_RC(g_rc[0], 0);
    EXPECT_RC(g_rc[1], 1);
    return done();
}

SYNC_TEST(barrier, abort_breaks_current_and_later_waits_until_reset, barrier_break_main,
          weft_int(0))

SYNC_TEST(barrier, reset_wakes_waiters_with_ebroken_and_leaves_it_usable, barrier_break_main,
          weft_int(1))

TASK(barrier_leave_main)
{
    spawn_waiting(waiter, 0, W(K_BARRIER, 0) | 0x80); /* leaves after 5 ms */
    spawn_waiting(waiter, 1, W(K_BARRIER, 1));
    cr_expect_eq(weft_barrier_waiting(&g_bar), 2);
    await_all(0, 1);
    EXPECT_RC(g_rc[0], UV_ETIMEDOUT);
    cr_expect_eq(weft_barrier_waiting(&g_bar), 1, "the party that timed out still counts");
    spawn_waiting(waiter, 2, W(K_BARRIER, 2));
    cr_expect_eq(g_nlog, 1, "the round completed with a party missing");
    EXPECT_RC(weft_barrier_wait(&g_bar), 2); /* the third of this round */
    await_all(1, 3);
    EXPECT_RC(g_rc[1], 0);
    EXPECT_RC(g_rc[2], 1);
    return done();
}

SYNC_TEST(barrier, a_waiter_that_times_out_leaves_and_the_count_drops_back, barrier_leave_main,
          NULL)

/* ---- Every wait: cancelled or timed out, it leaves no waiter behind -------------- */

TASK(every_wait_main)
{
    EXPECT_OK(weft_barrier_init(&g_bar, 2));
    for (int k = 0; k < K_KINDS; k++) {
        for (int timed = 0; timed < 2; timed++) {
            g_rc[0] = 1;
            if (k == K_LOCK)
                EXPECT_OK(weft_lock_acquire(&g_lock));
            spawn_waiting(waiter, 0, W(k, 0) | (timed ? 0x80 : 0));
            if (!timed)
                EXPECT_OK(weft_task_cancel(g_t[0]));
            await_all(0, 1);
            cr_expect_eq(g_rc[0], timed ? UV_ETIMEDOUT : UV_ECANCELED,
                         "%s wait (%s) returned %d (%s)", kind_name[k],
                         timed ? "timed out" : "cancelled", g_rc[0], weft_err_name(g_rc[0]));
            if (k == K_LOCK)
                EXPECT_OK(weft_lock_release(&g_lock));
            cr_expect(!weft_lock_locked(&g_lock), "%s: the lock stayed taken", kind_name[k]);
            cr_expect_eq(weft_sem_value(&g_sem), 0);
            cr_expect_eq(weft_barrier_waiting(&g_bar), 0, "barrier still counts the waiter");
        }
        cr_expect_eq(prim_close(k), 0, "%s: close after the waits ended", kind_name[k]);
    }
    return done();
}

SYNC_TEST(every_wait, cancelled_or_timed_out_returns_the_code_and_leaves_no_waiter, every_wait_main,
          NULL)

/* ---- Misuse --------------------------------------------------------------------- */

#define CALL(expr)    \
    {                 \
#expr, (expr) \
    }

Test(misuse, null_arguments_return_einval, .timeout = TEST_TIMEOUT_S)
{
    setup_all();
    const struct {
        const char *call;
        int rc;
    } calls[] = {
        CALL(weft_lock_init(NULL)),
        CALL(weft_lock_close(NULL)),
        CALL(weft_lock_acquire(NULL)),
        CALL(weft_lock_acquire_timeout(NULL, 5)),
        CALL(weft_lock_try(NULL)),
        CALL(weft_lock_release(NULL)),
        CALL(weft_event_init(NULL)),
        CALL(weft_event_close(NULL)),
        CALL(weft_event_set(NULL)),
        CALL(weft_event_clear(NULL)),
        CALL(weft_event_wait(NULL)),
        CALL(weft_event_wait_timeout(NULL, 5)),
        CALL(weft_cond_init(NULL, &g_lock)),
        CALL(weft_cond_init(&g_cond2, NULL)),
        CALL(weft_cond_close(NULL)),
        CALL(weft_cond_wait(NULL)),
        CALL(weft_cond_wait_timeout(NULL, 5)),
        CALL(weft_cond_wait_for(NULL, never, NULL)),
        CALL(weft_cond_wait_for(&g_cond, NULL, NULL)),
        CALL(weft_cond_notify(NULL, 1)),
        CALL(weft_cond_notify_all(NULL)),
        CALL(weft_sem_init(NULL, 1)),
        CALL(weft_sem_init_bounded(NULL, 1)),
        CALL(weft_sem_close(NULL)),
        CALL(weft_sem_acquire(NULL)),
        CALL(weft_sem_acquire_timeout(NULL, 5)),
        CALL(weft_sem_try(NULL)),
        CALL(weft_sem_release(NULL)),
        CALL(weft_barrier_init(NULL, 2)),
        CALL(weft_barrier_init(&g_bar, 0)),
        CALL(weft_barrier_close(NULL)),
        CALL(weft_barrier_wait(NULL)),
        CALL(weft_barrier_wait_timeout(NULL, 5)),
        CALL(weft_barrier_abort(NULL)),
        CALL(weft_barrier_reset(NULL)),
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        cr_expect_eq(calls[i].rc, UV_EINVAL, "%s returned %d (%s), want EINVAL", calls[i].call,
                     calls[i].rc, weft_err_name(calls[i].rc));
    cr_expect(!weft_lock_locked(NULL) && !weft_event_is_set(NULL) && !weft_barrier_broken(NULL));
    cr_expect_eq(weft_barrier_waiting(NULL), 0);
    cr_expect_eq(weft_sem_value(NULL), 0);
    close_all();
}

/* Waits that would block, from code that is not a task (a plain thread, a
 * callback), and the calls that do not wait, which work there. */
static void blocking_waits_are_enotask(void)
{
    EXPECT_RC(weft_lock_try(&g_lock), 0); /* taken without a holder task */
    EXPECT_RC(weft_lock_acquire(&g_lock), WEFT_ENOTASK);
    EXPECT_RC(weft_lock_acquire_timeout(&g_lock, 5), WEFT_ENOTASK);
    EXPECT_RC(weft_event_wait(&g_ev), WEFT_ENOTASK);
    EXPECT_RC(weft_event_wait_timeout(&g_ev, 5), WEFT_ENOTASK);
    EXPECT_RC(weft_cond_wait(&g_cond), WEFT_ENOTASK);
    EXPECT_RC(weft_cond_wait_timeout(&g_cond, 5), WEFT_ENOTASK);
    EXPECT_RC(weft_cond_wait_for(&g_cond, never, NULL), WEFT_ENOTASK);
    EXPECT_RC(weft_sem_acquire(&g_sem), WEFT_ENOTASK);
    EXPECT_RC(weft_sem_acquire_timeout(&g_sem, 5), WEFT_ENOTASK);
    EXPECT_RC(weft_barrier_wait(&g_bar), WEFT_ENOTASK);
    EXPECT_RC(weft_barrier_wait_timeout(&g_bar, 5), WEFT_ENOTASK);
    EXPECT_OK(weft_lock_release(&g_lock)); /* no holder task: anyone may */
    cr_expect_eq(weft_barrier_waiting(&g_bar), 0);
    /* Calls that do not wait work here. */
    EXPECT_OK(weft_event_set(&g_ev));
    EXPECT_OK(weft_event_clear(&g_ev));
    EXPECT_OK(weft_sem_release(&g_sem));
    EXPECT_OK(weft_sem_try(&g_sem));
    EXPECT_OK(weft_barrier_abort(&g_bar));
    EXPECT_OK(weft_barrier_reset(&g_bar));
    g_reached++;
}

static void enotask_cb(void *arg)
{
    (void)arg;
    blocking_waits_are_enotask();
}

Test(misuse, waits_outside_a_task_return_enotask, .timeout = TEST_TIMEOUT_S)
{
    setup_all();
    blocking_waits_are_enotask(); /* plain thread, no loop */
    ASSERT_OK(weft_loop_init(&g_loop, NULL));
    ASSERT_OK(weft_call_soon(&g_loop, enotask_cb, NULL, NULL)); /* a callback */
    EXPECT_OK(weft_loop_run(&g_loop));
    cr_expect_eq(g_reached, 2);
    EXPECT_OK(weft_loop_close(&g_loop));
    close_all();
}

/* sync.h: "Waits suspend the calling task (WEFT_ENOTASK outside a task)" -
 * also the ones that would not have to block (weft_event_wait does this). */
Test(misuse, waits_that_would_not_block_are_enotask_outside_a_task_too, .timeout = TEST_TIMEOUT_S)
{
    setup_all();
    EXPECT_OK(weft_event_set(&g_ev));
    EXPECT_RC(weft_event_wait(&g_ev), WEFT_ENOTASK);
    EXPECT_OK(weft_sem_release(&g_sem));
    EXPECT_RC(weft_sem_acquire(&g_sem), WEFT_ENOTASK);
    cr_expect_eq(weft_sem_value(&g_sem), 1, "a refused acquire took the permit");
    EXPECT_RC(weft_lock_acquire(&g_lock), WEFT_ENOTASK);
    cr_expect(!weft_lock_locked(&g_lock), "a refused acquire took the lock");
    if (weft_lock_locked(&g_lock))
        EXPECT_OK(weft_lock_release(&g_lock));
    close_all();
}

/* Uses every object once, binding it to the running loop (results: g_rc[8..]). */
TASK(bind_all)
{
    g_rc[8] = weft_lock_acquire(&g_lock);
    g_rc[9] = weft_cond_notify(&g_cond, 1);
    g_rc[10] = weft_event_set(&g_ev);
    g_rc[11] = weft_event_clear(&g_ev);
    g_rc[12] = weft_sem_release(&g_sem);
    g_rc[13] = weft_barrier_wait(&g_bar); /* broken: binds without waiting */
    g_rc[14] = weft_lock_release(&g_lock);
    return 0;
}

static void check_bind_all(void)
{
    for (int i = 8; i <= 14; i++)
        cr_expect_eq(g_rc[i], i == 13 ? WEFT_EBROKEN : 0, "bind_all step %d: %d", i, g_rc[i]);
}

/* Every call on objects bound to another loop is refused and changes nothing. */
static void wrong_loop_calls(void)
{
    const struct {
        const char *call;
        int rc;
    } calls[] = {
        CALL(weft_lock_acquire(&g_lock)),   CALL(weft_lock_acquire_timeout(&g_lock, 5)),
        CALL(weft_lock_try(&g_lock)),       CALL(weft_lock_release(&g_lock)),
        CALL(weft_lock_close(&g_lock)),     CALL(weft_event_set(&g_ev)),
        CALL(weft_event_clear(&g_ev)),      CALL(weft_event_wait(&g_ev)),
        CALL(weft_event_close(&g_ev)),      CALL(weft_cond_wait(&g_cond)),
        CALL(weft_cond_notify(&g_cond, 1)), CALL(weft_cond_close(&g_cond)),
        CALL(weft_sem_acquire(&g_sem)),     CALL(weft_sem_try(&g_sem)),
        CALL(weft_sem_release(&g_sem)),     CALL(weft_sem_close(&g_sem)),
        CALL(weft_barrier_wait(&g_bar)),    CALL(weft_barrier_reset(&g_bar)),
        CALL(weft_barrier_abort(&g_bar)),   CALL(weft_barrier_close(&g_bar)),
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        cr_expect_eq(calls[i].rc, WEFT_EWRONGLOOP, "%s returned %d (%s), want WEFT_EWRONGLOOP",
                     calls[i].call, calls[i].rc, weft_err_name(calls[i].rc));
    cr_expect(!weft_event_is_set(&g_ev) && weft_barrier_broken(&g_bar), "a refused call acted");
    cr_expect_eq(weft_sem_value(&g_sem), 1);
    g_reached++;
}

TASK(wrong_loop_task)
{
    wrong_loop_calls();
    return 0;
}

static void wrong_loop_cb(void *arg)
{
    (void)arg;
    wrong_loop_calls();
}

Test(misuse, objects_used_on_one_loop_are_ewrongloop_on_another, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t b;
    setup_all();
    EXPECT_OK(weft_barrier_abort(&g_bar)); /* set-up code: binds nothing */
    ASSERT_OK(weft_loop_init(&g_loop, NULL));
    ASSERT_OK(weft_spawn(&g_loop, bind_all, NULL, NULL));
    EXPECT_OK(weft_loop_run(&g_loop));
    check_bind_all();
    ASSERT_OK(weft_loop_init(&b, NULL));
    ASSERT_OK(weft_spawn(&b, wrong_loop_task, NULL, NULL));
    ASSERT_OK(weft_call_soon(&b, wrong_loop_cb, NULL, NULL));
    EXPECT_OK(weft_loop_run(&b));
    cr_expect_eq(g_reached, 2);
    EXPECT_OK(weft_loop_close(&b));
    close_all(); /* tear-down while loop A is not running is allowed */
    EXPECT_OK(weft_loop_close(&g_loop));
}

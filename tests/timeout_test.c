/*
 * tests/timeout_test.c - deadline scopes (weft/timeout.h): expiry of the
 * suspension inside, level-triggered expiry of every later suspension,
 * nesting, rescheduling, what happens to an awaited task, future or lock
 * wait, and misuse.
 *
 * Scope deadlines are short (5 ms) and the waits they cut are longer (50 ms)
 * but could all complete on their own: an implementation that failed to time
 * them out would return 0, not hang. No check is on wall-clock durations.
 * Checks inside task bodies use EXPECT_* only. Every loop is closed with 0.
 */
#include "plain_test.h"
#include "check.h"

#include <stdint.h>

#include <weft/weft.h>

#define LONG_MS 10000u /* a deadline that never passes during a test */

#define TASK(name) \
    static int name(__attribute__((unused)) void *arg, __attribute__((unused)) void **result)

static weft_loop_t g_loop;
static weft_lock_t g_lock;
static weft_task_t *g_child;
static int g_rc[16];
static int g_child_finished;
static int g_reached;

static int done(void)
{
    g_reached = 1;
    return 0;
}

/* Run body(arg) as the main task of a fresh loop; loop and lock close with 0. */
static void run_main(weft_task_fn body, void *arg)
{
    weft_loop_opts_t opts = {.stack_size = 256 * 1024};
    weft_task_t *t = NULL;
    ASSERT_OK(weft_lock_init(&g_lock));
    ASSERT_OK(weft_loop_init(&g_loop, &opts));
    ASSERT_OK(weft_spawn(&g_loop, body, arg, &t));
    EXPECT_OK(weft_loop_run(&g_loop));
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&g_loop));
    EXPECT_OK(weft_lock_close(&g_lock));
    cr_expect_eq(g_reached, 1, "the main task did not reach its end");
}

#define SCOPE_TEST(suite, name, body, arg)       \
    Test(suite, name, .timeout = TEST_TIMEOUT_S) \
    {                                            \
        run_main(body, arg);                     \
    }

/* ---- Expiry ------------------------------------------------------------------ */

TASK(expire_main)
{
    weft_timeout_t s = {0};
    uint64_t before = weft_loop_now_ns();
    EXPECT_OK(weft_timeout_begin(&s, 5));
    uint64_t after = weft_loop_now_ns();
    cr_expect(weft_timeout_deadline(&s) >= before + 5000000u &&
                  weft_timeout_deadline(&s) <= after + 5000000u,
              "the deadline is not 5 ms from the start");
    cr_expect(!weft_timeout_expired(&s));
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    cr_expect(weft_timeout_expired(&s));
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    EXPECT_OK(weft_yield()); /* outside the scope: normal again */
    return done();
}

SCOPE_TEST(scope, a_sleep_longer_than_the_scope_returns_etimedout_and_so_does_end, expire_main,
           NULL)

TASK(no_expiry_main)
{
    weft_timeout_t s = {0}, none = {0};
    EXPECT_OK(weft_timeout_begin(&s, LONG_MS));
    EXPECT_OK(weft_sleep(2));
    EXPECT_OK(weft_yield());
    cr_expect(!weft_timeout_expired(&s));
    EXPECT_OK(weft_timeout_end(&s));
    EXPECT_OK(weft_timeout_begin(&none, WEFT_FOREVER));
    cr_expect_eq(weft_timeout_deadline(&none), WEFT_FOREVER);
    EXPECT_OK(weft_sleep(2));
    EXPECT_OK(weft_timeout_end(&none));
    EXPECT_OK(weft_timeout_begin(&s, 5)); /* a scope can be used again */
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    return done();
}

SCOPE_TEST(scope, a_scope_that_does_not_expire_ends_with_0, no_expiry_main, NULL)

/* ---- After expiry every suspension returns UV_ETIMEDOUT at once ---------------- */

TASK(short_child)
{
    int rc = weft_sleep(20);
    g_child_finished = 1;
    return rc;
}

TASK(hold_lock_20ms)
{
    EXPECT_OK(weft_lock_acquire(&g_lock));
    EXPECT_OK(weft_sleep(20));
    return weft_lock_release(&g_lock);
}

static void set_event_cb(void *arg)
{
    EXPECT_OK(weft_event_set(arg));
}

static void complete_cb(void *arg)
{
    if (weft_future_set_result(arg, weft_int(1)) != 0) {
        /* Whether an await that starts after the expiry cancels what it
         * awaits is not specified: either outcome is fine here. */
    }
}

static void release_sem_cb(void *arg)
{
    EXPECT_OK(weft_sem_release(arg));
}

TASK(level_main)
{
    weft_timeout_t s = {0};
    weft_future_t *f;
    weft_task_t *holder;
    weft_event_t ev;
    weft_sem_t sem;
    weft_loop_t *lp = weft_loop_current();
    EXPECT_OK(weft_event_init(&ev));
    EXPECT_OK(weft_sem_init(&sem, 0));
    EXPECT_OK(weft_future_new(NULL, &f));
    EXPECT_OK(weft_spawn(NULL, hold_lock_20ms, NULL, &holder));
    EXPECT_OK(weft_yield()); /* the holder takes the lock */
    EXPECT_OK(weft_spawn(NULL, short_child, NULL, &g_child));
    /* Everything below could complete within 20 ms on its own. */
    EXPECT_OK(weft_call_later(lp, 20, complete_cb, f, NULL));
    EXPECT_OK(weft_call_later(lp, 20, set_event_cb, &ev, NULL));
    EXPECT_OK(weft_call_later(lp, 20, release_sem_cb, &sem, NULL));
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    EXPECT_RC(weft_yield(), UV_ETIMEDOUT);
    EXPECT_RC(weft_sleep(0), UV_ETIMEDOUT);
    EXPECT_RC(weft_sleep(30), UV_ETIMEDOUT);
    EXPECT_RC(weft_await(f, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_await_timeout(f, 30, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_await_task(g_child, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_lock_acquire(&g_lock), UV_ETIMEDOUT);
    EXPECT_RC(weft_lock_acquire_timeout(&g_lock, 30), UV_ETIMEDOUT);
    EXPECT_RC(weft_event_wait(&ev), UV_ETIMEDOUT);
    EXPECT_RC(weft_sem_acquire(&sem), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    /* Out of the scope, waits complete again. */
    int rc = weft_await(f, NULL);
    rc = weft_await_task(g_child, NULL); /* outcomes not specified, see complete_cb */
    (void)rc;
    cr_expect_eq(g_child_finished, 1);
    EXPECT_OK(weft_lock_acquire(&g_lock));
    EXPECT_OK(weft_lock_release(&g_lock));
    EXPECT_OK(weft_event_wait(&ev));
    EXPECT_OK(weft_sem_acquire(&sem));
    EXPECT_OK(weft_await_task(holder, NULL));
    weft_task_unref(holder);
    weft_task_unref(g_child);
    weft_future_unref(f);
    EXPECT_OK(weft_event_close(&ev));
    EXPECT_OK(weft_sem_close(&sem));
    return done();
}

SCOPE_TEST(scope, after_expiry_every_later_suspension_returns_etimedout_at_once, level_main, NULL)

/* ---- Nesting ------------------------------------------------------------------ */

TASK(outer_shorter_main)
{
    weft_timeout_t outer = {0}, inner = {0};
    EXPECT_OK(weft_timeout_begin(&outer, 5));
    EXPECT_OK(weft_timeout_begin(&inner, LONG_MS));
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    cr_expect(!weft_timeout_expired(&inner), "the inner scope's own deadline did not pass");
    cr_expect(weft_timeout_expired(&outer));
    EXPECT_RC(weft_yield(), UV_ETIMEDOUT);
    EXPECT_OK(weft_timeout_end(&inner));
    EXPECT_RC(weft_yield(), UV_ETIMEDOUT); /* still inside the outer one */
    EXPECT_RC(weft_timeout_end(&outer), UV_ETIMEDOUT);
    EXPECT_OK(weft_yield());
    return done();
}

SCOPE_TEST(nesting, outer_shorter_inner_ends_with_0_and_outer_with_etimedout, outer_shorter_main,
           NULL)

TASK(inner_shorter_main)
{
    weft_timeout_t outer = {0}, inner = {0};
    EXPECT_OK(weft_timeout_begin(&outer, LONG_MS));
    EXPECT_OK(weft_timeout_begin(&inner, 5));
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    cr_expect(weft_timeout_expired(&inner));
    cr_expect(!weft_timeout_expired(&outer));
    EXPECT_RC(weft_timeout_end(&inner), UV_ETIMEDOUT);
    EXPECT_OK(weft_sleep(2)); /* only the inner scope expired */
    EXPECT_OK(weft_timeout_end(&outer));
    return done();
}

SCOPE_TEST(nesting, inner_shorter_only_the_inner_scope_expires, inner_shorter_main, NULL)

/* ---- Rescheduling ------------------------------------------------------------- */

TASK(reschedule_main)
{
    weft_timeout_t s = {0}, outer = {0}, inner = {0};
    /* Earlier. */
    EXPECT_OK(weft_timeout_begin(&s, LONG_MS));
    uint64_t far = weft_timeout_deadline(&s);
    EXPECT_OK(weft_timeout_reschedule(&s, 5));
    cr_expect(weft_timeout_deadline(&s) < far);
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    /* Later, before it passed. */
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_OK(weft_timeout_reschedule_at(&s, weft_loop_now_ns() + LONG_MS * 1000000ull));
    EXPECT_OK(weft_sleep(20));
    EXPECT_OK(weft_timeout_end(&s));
    /* Revived after it passed. */
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    cr_expect(weft_timeout_expired(&s));
    EXPECT_OK(weft_timeout_reschedule(&s, LONG_MS));
    cr_expect(!weft_timeout_expired(&s), "a revived scope still reads expired");
    EXPECT_OK(weft_yield());
    EXPECT_OK(weft_sleep(2));
    EXPECT_OK(weft_timeout_end(&s));
    /* A deadline already in the past: the first suspension times out. */
    EXPECT_OK(weft_timeout_begin_at(&s, weft_loop_now_ns() - 1));
    EXPECT_RC(weft_yield(), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    /* Moving an outer scope earlier also cuts the inner one short. */
    EXPECT_OK(weft_timeout_begin(&outer, LONG_MS));
    EXPECT_OK(weft_timeout_begin(&inner, LONG_MS));
    EXPECT_OK(weft_timeout_reschedule(&outer, 5));
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    EXPECT_OK(weft_timeout_end(&inner));
    EXPECT_RC(weft_timeout_end(&outer), UV_ETIMEDOUT);
    return done();
}

SCOPE_TEST(reschedule, earlier_later_revived_past_and_outer_from_inside, reschedule_main, NULL)

/* ---- What the expiring scope does to what the task waits for ------------------ */

/* Sleeps (to be cancelled), then cleans up with one more suspension. */
TASK(cleanup_child)
{
    g_rc[0] = weft_sleep(50);
    g_rc[1] = weft_sleep(2);
    g_child_finished = 1;
    return g_rc[0];
}

/* arg 0: the child has started when awaited; 1: it starts inline. */
TASK(await_child_main)
{
    weft_timeout_t s = {0};
    weft_loop_stats_t st;
    weft_task_opts_t small = {.name = "child", .stack_size = 32 * 1024};
    g_rc[0] = g_rc[1] = 1;
    EXPECT_OK(weft_spawn_ex(NULL, cleanup_child, NULL, &small, &g_child));
    if (weft_to_int(arg) == 0)
        EXPECT_OK(weft_yield());
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_RC(weft_await_task(g_child, NULL), UV_ETIMEDOUT);
    cr_expect_eq(g_child_finished, 1, "the await returned before the child finished");
    EXPECT_RC(g_rc[0], UV_ECANCELED);
    EXPECT_OK(g_rc[1]);
    cr_expect_eq(weft_task_state(g_child), WEFT_TASK_CANCELLED);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    weft_loop_stats(weft_loop_current(), &st);
    cr_expect_eq(st.tasks_inline, (uint64_t)weft_to_int(arg), "tasks_inline %llu",
                 (unsigned long long)st.tasks_inline);
    weft_task_unref(g_child);
    return done();
}

SCOPE_TEST(awaited, a_running_task_is_cancelled_and_waited_for, await_child_main, weft_int(0))

SCOPE_TEST(awaited, an_inline_task_is_cancelled_and_waited_for, await_child_main, weft_int(1))

TASK(await_future_main)
{
    weft_timeout_t s = {0};
    weft_future_t *f, *g;
    EXPECT_OK(weft_future_new(NULL, &f));
    EXPECT_OK(weft_future_new(NULL, &g));
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_RC(weft_await(f, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    cr_expect(weft_future_cancelled(f), "the awaited future was not cancelled");
    /* await_timeout's own timeout leaves the future alone; the scope's does not. */
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_RC(weft_await_timeout(g, LONG_MS, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    cr_expect(weft_future_cancelled(g), "the future awaited with a timeout was not cancelled");
    weft_future_unref(g);
    EXPECT_OK(weft_future_new(NULL, &g));
    EXPECT_OK(weft_timeout_begin(&s, LONG_MS));
    EXPECT_RC(weft_await_timeout(g, 5, NULL), UV_ETIMEDOUT); /* its own timeout */
    cr_expect(!weft_timeout_expired(&s));
    EXPECT_OK(weft_timeout_end(&s));
    cr_expect(!weft_future_done(g), "await_timeout's own timeout touched the future");
    EXPECT_OK(weft_future_cancel(g));
    weft_future_unref(f);
    weft_future_unref(g);
    return done();
}

SCOPE_TEST(awaited, a_plain_future_is_cancelled, await_future_main, NULL)

TASK(lock_waiter)
{
    g_rc[2] = weft_lock_acquire(&g_lock);
    g_rc[3] = weft_lock_release(&g_lock);
    return 0;
}

TASK(lock_scope_main)
{
    weft_timeout_t s = {0};
    weft_task_t *holder, *next;
    EXPECT_OK(weft_spawn(NULL, hold_lock_20ms, NULL, &holder));
    EXPECT_OK(weft_yield());
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_OK(weft_spawn(NULL, lock_waiter, NULL, &next)); /* queues behind us */
    EXPECT_RC(weft_lock_acquire(&g_lock), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    cr_expect(weft_lock_locked(&g_lock));
    EXPECT_OK(weft_await_task(holder, NULL));
    EXPECT_OK(weft_await_task(next, NULL));
    EXPECT_OK(g_rc[2]); /* the lock went to the next waiter, not to us */
    EXPECT_OK(g_rc[3]);
    cr_expect(!weft_lock_locked(&g_lock), "the lock went to the waiter that timed out");
    EXPECT_OK(weft_lock_close(&g_lock));
    weft_task_unref(holder);
    weft_task_unref(next);
    return done();
}

SCOPE_TEST(awaited, a_lock_wait_is_withdrawn_and_the_lock_goes_to_the_next, lock_scope_main, NULL)

/* Each primitive's wait in an expiring scope: UV_ETIMEDOUT, nothing left
 * behind (close 0); a condition wait returns holding the lock. */
TASK(primitives_main)
{
    weft_timeout_t s = {0};
    weft_event_t ev;
    weft_cond_t c;
    weft_sem_t sem;
    weft_barrier_t b;
    EXPECT_OK(weft_event_init(&ev));
    EXPECT_OK(weft_cond_init(&c, &g_lock));
    EXPECT_OK(weft_sem_init(&sem, 0));
    EXPECT_OK(weft_barrier_init(&b, 2));
    for (int k = 0; k < 4; k++) {
        EXPECT_OK(weft_timeout_begin(&s, 5));
        int rc = UV_EINVAL;
        if (k == 0) {
            rc = weft_event_wait(&ev);
        } else if (k == 1) {
            EXPECT_OK(weft_lock_acquire(&g_lock));
            rc = weft_cond_wait(&c);
            cr_expect(weft_lock_locked(&g_lock), "the timed-out cond wait lost the lock");
            EXPECT_OK(weft_lock_release(&g_lock));
        } else if (k == 2) {
            rc = weft_sem_acquire(&sem);
        } else {
            rc = weft_barrier_wait(&b);
            cr_expect_eq(weft_barrier_waiting(&b), 0);
        }
        cr_expect_eq(rc, UV_ETIMEDOUT, "wait %d returned %d (%s)", k, rc, weft_err_name(rc));
        EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    }
    EXPECT_OK(weft_event_close(&ev));
    EXPECT_OK(weft_cond_close(&c));
    EXPECT_OK(weft_sem_close(&sem));
    EXPECT_OK(weft_barrier_close(&b));
    return done();
}

SCOPE_TEST(awaited, every_primitive_wait_times_out_and_leaves_no_waiter, primitives_main, NULL)

/* A cancel inside a scope is a cancel: UV_ECANCELED, and the scope ends 0. */
TASK(cancelled_in_scope)
{
    weft_timeout_t s = {0};
    EXPECT_OK(weft_timeout_begin(&s, LONG_MS));
    g_rc[0] = weft_sleep(50);
    g_rc[1] = weft_timeout_end(&s);
    return 0;
}

TASK(cancel_main)
{
    EXPECT_OK(weft_spawn(NULL, cancelled_in_scope, NULL, &g_child));
    EXPECT_OK(weft_yield());
    EXPECT_OK(weft_task_cancel(g_child));
    EXPECT_OK(weft_await_task(g_child, NULL));
    EXPECT_RC(g_rc[0], UV_ECANCELED);
    EXPECT_OK(g_rc[1]);
    weft_task_unref(g_child);
    return done();
}

SCOPE_TEST(scope, a_cancel_inside_a_scope_is_ecanceled_and_the_scope_ends_0, cancel_main, NULL)

/* A scope belongs to its task: a task spawned inside it is not limited. */
TASK(spawner_main)
{
    weft_timeout_t s = {0};
    EXPECT_OK(weft_timeout_begin(&s, 5));
    EXPECT_OK(weft_spawn(NULL, short_child, NULL, &g_child)); /* sleeps 20 ms */
    EXPECT_RC(weft_sleep(50), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&s), UV_ETIMEDOUT);
    EXPECT_OK(weft_await_task(g_child, NULL));
    cr_expect_eq(g_child_finished, 1);
    weft_task_unref(g_child);
    return done();
}

SCOPE_TEST(scope, a_task_spawned_inside_a_scope_is_not_limited_by_it, spawner_main, NULL)

/* ---- Misuse ------------------------------------------------------------------- */

static weft_timeout_t g_shared;

TASK(meddler)
{
    EXPECT_RC(weft_timeout_reschedule(&g_shared, 5), UV_EPERM);
    EXPECT_RC(weft_timeout_reschedule_at(&g_shared, 0), UV_EPERM);
    EXPECT_RC(weft_timeout_end(&g_shared), UV_EINVAL);
    g_rc[0] = 1;
    return 0;
}

TASK(misuse_main)
{
    weft_timeout_t a = {0}, b = {0};
    weft_task_t *m;
    EXPECT_RC(weft_timeout_begin(NULL, 5), UV_EINVAL);
    EXPECT_RC(weft_timeout_begin_at(NULL, 5), UV_EINVAL);
    EXPECT_RC(weft_timeout_end(NULL), UV_EINVAL);
    EXPECT_RC(weft_timeout_reschedule(NULL, 5), UV_EINVAL);
    EXPECT_RC(weft_timeout_reschedule_at(NULL, 5), UV_EINVAL);
    cr_expect(!weft_timeout_expired(NULL));
    cr_expect_eq(weft_timeout_deadline(NULL), WEFT_FOREVER);
    /* Out of order: refused, and both scopes still end properly. */
    EXPECT_OK(weft_timeout_begin(&a, LONG_MS));
    EXPECT_RC(weft_timeout_begin(&a, LONG_MS), UV_EINVAL); /* already active */
    EXPECT_OK(weft_timeout_begin(&b, LONG_MS));
    EXPECT_RC(weft_timeout_end(&a), UV_EINVAL);
    EXPECT_OK(weft_yield());
    EXPECT_OK(weft_timeout_end(&b));
    EXPECT_RC(weft_timeout_end(&b), UV_EINVAL); /* ended already */
    EXPECT_RC(weft_timeout_reschedule(&b, 5), UV_EINVAL);
    EXPECT_OK(weft_timeout_end(&a));
    /* Another task may not move or end our scope. */
    EXPECT_OK(weft_timeout_begin(&g_shared, LONG_MS));
    EXPECT_OK(weft_spawn(NULL, meddler, NULL, &m));
    EXPECT_OK(weft_await_task(m, NULL));
    cr_expect_eq(g_rc[0], 1, "the meddler did not run");
    EXPECT_OK(weft_yield());
    cr_expect(!weft_timeout_expired(&g_shared));
    EXPECT_OK(weft_timeout_end(&g_shared));
    weft_task_unref(m);
    return done();
}

SCOPE_TEST(misuse, null_out_of_order_double_begin_and_another_tasks_scope, misuse_main, NULL)

static void begin_in_callback(void *arg)
{
    (void)arg;
    EXPECT_RC(weft_timeout_begin(&g_shared, 5), WEFT_ENOTASK);
    g_reached++;
}

Test(misuse, begin_outside_a_task_is_enotask, .timeout = TEST_TIMEOUT_S)
{
    weft_timeout_t s = {0};
    EXPECT_RC(weft_timeout_begin(&s, 5), WEFT_ENOTASK);
    EXPECT_RC(weft_timeout_begin_at(&s, 5), WEFT_ENOTASK);
    ASSERT_OK(weft_loop_init(&g_loop, NULL));
    ASSERT_OK(weft_call_soon(&g_loop, begin_in_callback, NULL, NULL));
    EXPECT_OK(weft_loop_run(&g_loop));
    cr_expect_eq(g_reached, 1);
    EXPECT_OK(weft_loop_close(&g_loop));
}

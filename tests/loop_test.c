/*
 * tests/loop_test.c - the event loop (weft/loop.h): lifecycle, call_soon /
 * call_later / call_at ordering, handles, stop, re-entrancy, closing while
 * busy, the thread-safe inbox's overflow path, stats, dump and the error
 * table (weft/error.h).
 *
 * Every test that creates a loop ends by closing it and expecting 0: nothing
 * leaked, nothing left pending. No test asserts that anything ran fast; the
 * only timing checks say "no earlier than asked". The cross-thread stress
 * test lives in threadsafe_test.c so that it also runs under TSan.
 */
#include "plain_test.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

/* Callbacks record their integer argument here, in the order they ran. */
#define MAX_ORDER 4096
static int g_order[MAX_ORDER];
static int g_n;

static void record_cb(void *arg)
{
    if (g_n < MAX_ORDER) {
        g_order[g_n] = (int)weft_to_int(arg);
    }
    g_n++;
}

static void expect_order(const int *want, int n)
{
    cr_expect_eq(g_n, n, "%d callbacks ran, want %d", g_n, n);
    for (int i = 0; i < n && i < g_n; i++) {
        cr_expect_eq(g_order[i], want[i], "position %d: got %d, want %d", i, g_order[i], want[i]);
    }
}

static int noop_body(void *arg, void **result)
{
    (void)result;
    if (arg != NULL) {
        (*(int *)arg)++;
    }
    return 0;
}

/* Awaits the future in arg until it is completed or the task is cancelled. */
static int await_body(void *arg, void **result)
{
    return weft_await((weft_future_t *)arg, result);
}

/* --- lifecycle ------------------------------------------------------------ */

Test(loop, init_then_close_returns_0_and_second_close_returns_eclosed, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_OK(weft_loop_close(&loop));
    EXPECT_RC(weft_loop_close(&loop), WEFT_ECLOSED);
}

Test(loop, init_rejects_null_loop_and_bad_stack_mode, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_opts_t opts;

    EXPECT_RC(weft_loop_init(NULL, NULL), UV_EINVAL);
    memset(&opts, 0, sizeof opts);
    opts.stack_mode = (weft_stack_mode_t)42;
    EXPECT_RC(weft_loop_init(&loop, &opts), UV_EINVAL);

    /* Explicit default options work. */
    memset(&opts, 0, sizeof opts);
    ASSERT_OK(weft_loop_init(&loop, &opts));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, run_null_returns_einval_and_closed_loop_returns_eclosed, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    EXPECT_RC(weft_loop_run(NULL), UV_EINVAL);

    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));

    EXPECT_RC(weft_loop_run(&loop), WEFT_ECLOSED);
    EXPECT_RC(weft_call_soon(&loop, record_cb, NULL, NULL), WEFT_ECLOSED);
    EXPECT_RC(weft_call_later(&loop, 1, record_cb, NULL, NULL), WEFT_ECLOSED);
    EXPECT_RC(weft_call_soon_threadsafe(&loop, record_cb, NULL), WEFT_ECLOSED);
    cr_expect_eq(g_n, 0, "nothing may run on a closed loop");
}

Test(loop, empty_loop_runs_and_closes, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- weft_loop_current ---------------------------------------------------- */

static weft_loop_t *g_seen_in_cb;
static weft_loop_t *g_seen_in_task;
static weft_loop_t *g_seen_in_timer;

static void current_cb(void *arg)
{
    (void)arg;
    g_seen_in_cb = weft_loop_current();
}

static void current_timer_cb(void *arg)
{
    (void)arg;
    g_seen_in_timer = weft_loop_current();
}

static int current_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_seen_in_task = weft_loop_current();
    return 0;
}

Test(loop, current_is_null_outside_and_the_loop_inside_callbacks_and_tasks,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    cr_expect_null(weft_loop_current());
    ASSERT_OK(weft_loop_init(&loop, NULL));
    cr_expect_null(weft_loop_current(), "an initialised loop that is not running is not current");

    ASSERT_OK(weft_call_soon(&loop, current_cb, NULL, NULL));
    ASSERT_OK(weft_call_later(&loop, 1, current_timer_cb, NULL, NULL));
    ASSERT_OK(weft_spawn(&loop, current_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));

    cr_expect_eq(g_seen_in_cb, &loop);
    cr_expect_eq(g_seen_in_timer, &loop);
    cr_expect_eq(g_seen_in_task, &loop);
    cr_expect_null(weft_loop_current(), "no loop is current once run returned");
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, loop_uv_gives_the_libuv_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    cr_expect_not_null(weft_loop_uv(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- call_soon ------------------------------------------------------------ */

Test(loop, call_soon_runs_in_fifo_order, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    int want[200];
    ASSERT_OK(weft_loop_init(&loop, NULL));
    for (int i = 0; i < 200; i++) {
        want[i] = i;
        ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(i), NULL));
    }
    cr_expect_eq(g_n, 0, "call_soon never runs inline");
    EXPECT_OK(weft_loop_run(&loop));
    expect_order(want, 200);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_loop_t *g_loop;

static void chain_cb(void *arg)
{
    int id = (int)weft_to_int(arg);
    record_cb(arg);
    if (id < 3) {
        /* Scheduled from a callback: runs after everything already queued. */
        int rc = weft_call_soon(g_loop, chain_cb, weft_int(id + 10), NULL);
        cr_expect_eq(rc, 0, "call_soon from a callback: %s", weft_err_name(rc));
    }
}

Test(loop, call_soon_from_a_callback_runs_after_callbacks_already_queued, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    static const int want[] = {1, 2, 11, 12};
    g_loop = &loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, chain_cb, weft_int(1), NULL));
    ASSERT_OK(weft_call_soon(&loop, chain_cb, weft_int(2), NULL));
    EXPECT_OK(weft_loop_run(&loop));
    expect_order(want, 4);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, call_soon_rejects_null_arguments, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_RC(weft_call_soon(NULL, record_cb, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_call_soon(&loop, NULL, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_call_later(&loop, 1, NULL, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_call_at(&loop, 1, NULL, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_call_soon_threadsafe(NULL, record_cb, NULL), UV_EINVAL);
    EXPECT_RC(weft_call_soon_threadsafe(&loop, NULL, NULL), UV_EINVAL);
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_n, 0);
    EXPECT_OK(weft_loop_close(&loop));
}

/* NULL = the current loop, for every call that takes a loop (loop.h). */
static weft_loop_t *g_null_loop;
static int g_null_rc[8];

static void null_loop_cb(void *arg)
{
    (void)arg;
    weft_loop_stats_t st;
    weft_handle_t h;
    g_null_rc[0] = weft_call_soon(NULL, record_cb, weft_int(1), NULL);
    g_null_rc[1] = weft_call_later(NULL, 0, record_cb, weft_int(2), NULL);
    g_null_rc[2] = weft_call_at(NULL, 0, record_cb, weft_int(3), &h);
    g_null_rc[3] = weft_loop_uv(NULL) == weft_loop_uv(g_null_loop) ? 0 : UV_EPROTO;
    weft_loop_stats(NULL, &st);
    g_null_rc[4] = st.callbacks_run >= 1 ? 0 : UV_EPROTO; /* this one is running */
    g_null_rc[5] = weft_loop_run(NULL);                   /* the current loop runs */
    g_null_rc[6] = weft_loop_close(NULL);                 /* ... so it is busy */
    g_null_rc[7] = weft_call_soon_threadsafe(NULL, record_cb, weft_int(4));
}

Test(loop, null_means_the_current_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    g_null_loop = &loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, null_loop_cb, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    for (int i = 0; i < 5; i++)
        EXPECT_OK(g_null_rc[i]);
    EXPECT_RC(g_null_rc[5], WEFT_EREENTRANT);
    EXPECT_RC(g_null_rc[6], UV_EBUSY);
    EXPECT_OK(g_null_rc[7]);
    cr_expect_eq(g_n, 4, "%d callbacks ran, want 4", g_n);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- call_later / call_at ------------------------------------------------- */

/* A callback that could never run is refused, not scheduled (loop.h). */
Test(loop, call_later_and_call_at_refuse_weft_forever, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_handle_t h = {0};
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_RC(weft_call_later(&loop, WEFT_FOREVER, record_cb, NULL, &h), UV_EINVAL);
    EXPECT_RC(weft_call_later(&loop, WEFT_FOREVER / 2, record_cb, NULL, &h), UV_EINVAL);
    EXPECT_RC(weft_call_at(&loop, WEFT_FOREVER, record_cb, NULL, &h), UV_EINVAL);
    cr_expect_null(h.weft__node, "a refused call_later filled the handle");
    EXPECT_OK(weft_loop_run(&loop)); /* nothing scheduled: returns at once */
    cr_expect_eq(g_n, 0);
    EXPECT_OK(weft_loop_close(&loop));
}

struct timed {
    uint64_t start_ms;
    uint64_t delay_ms;
    int id;
};

static int g_early;

static void timed_cb(void *arg)
{
    struct timed *t = arg;
    uint64_t now = weft_loop_now();
    if (now < t->start_ms + t->delay_ms) {
        g_early++;
        cr_log_error("callback %d ran at +%llu ms, asked for +%llu ms", t->id,
                     (unsigned long long)(now - t->start_ms), (unsigned long long)t->delay_ms);
    }
    record_cb(weft_int(t->id));
}

Test(loop, call_later_runs_in_deadline_order_and_no_earlier_than_asked, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    static const uint64_t delays[] = {30, 10, 0, 20, 5};
    static const int want[] = {2, 4, 1, 3, 0};
    struct timed t[5];
    ASSERT_OK(weft_loop_init(&loop, NULL));
    uint64_t start = weft_loop_now();
    for (int i = 0; i < 5; i++) {
        t[i].start_ms = start;
        t[i].delay_ms = delays[i];
        t[i].id = i;
        ASSERT_OK(weft_call_later(&loop, delays[i], timed_cb, &t[i], NULL));
    }
    EXPECT_OK(weft_loop_run(&loop));
    expect_order(want, 5);
    cr_expect_eq(g_early, 0, "a timer fired before its deadline");
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, call_at_equal_deadlines_run_in_fifo_order, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    int want[64];
    ASSERT_OK(weft_loop_init(&loop, NULL));
    uint64_t when = weft_loop_now() + 5;
    for (int i = 0; i < 64; i++) {
        want[i] = i;
        ASSERT_OK(weft_call_at(&loop, when, record_cb, weft_int(i), NULL));
    }
    EXPECT_OK(weft_loop_run(&loop));
    expect_order(want, 64);
    cr_expect_geq(weft_loop_now(), when);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, call_at_runs_at_its_time_and_a_past_time_runs_right_away, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    static const int want[] = {0, 1};
    struct timed future_t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    uint64_t start = weft_loop_now();
    future_t.start_ms = start;
    future_t.delay_ms = 15;
    future_t.id = 1;
    ASSERT_OK(weft_call_at(&loop, start + 15, timed_cb, &future_t, NULL));
    ASSERT_OK(weft_call_at(&loop, 0, record_cb, weft_int(0), NULL));
    EXPECT_OK(weft_loop_run(&loop));
    expect_order(want, 2);
    cr_expect_eq(g_early, 0, "call_at ran before its time");
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, now_ms_and_now_ns_read_the_same_monotonic_clock, .timeout = TEST_TIMEOUT_S)
{
    uint64_t a_ns = weft_loop_now_ns();
    uint64_t ms = weft_loop_now();
    uint64_t b_ns = weft_loop_now_ns();
    cr_expect_leq(a_ns, b_ns, "the ns clock went backwards");
    /* One millisecond of slack either way for rounding. */
    cr_expect_geq(ms + 1, a_ns / 1000000, "now()=%llu ms, now_ns()=%llu ns", (unsigned long long)ms,
                  (unsigned long long)a_ns);
    cr_expect_leq(ms, b_ns / 1000000 + 1, "now()=%llu ms, now_ns()=%llu ns", (unsigned long long)ms,
                  (unsigned long long)b_ns);
}

/* --- handles -------------------------------------------------------------- */

Test(loop, handle_cancel_before_it_runs_returns_0_and_the_callback_never_runs,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_handle_t soon, later;
    static const int want[] = {2};
    memset(&soon, 0, sizeof soon);
    memset(&later, 0, sizeof later);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(1), &soon));
    ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(2), NULL));
    /* An hour away: if cancelling left the timer armed, run would not return. */
    ASSERT_OK(weft_call_later(&loop, 3600 * 1000, record_cb, weft_int(3), &later));

    EXPECT_OK(weft_handle_cancel(soon));
    EXPECT_OK(weft_handle_cancel(later));
    EXPECT_RC(weft_handle_cancel(soon), UV_ENOENT);
    EXPECT_RC(weft_handle_cancel(later), UV_ENOENT);

    EXPECT_OK(weft_loop_run(&loop));
    expect_order(want, 1);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, handle_cancel_after_it_ran_returns_enoent, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_handle_t soon, later;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(1), &soon));
    ASSERT_OK(weft_call_later(&loop, 1, record_cb, weft_int(2), &later));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_n, 2);
    EXPECT_RC(weft_handle_cancel(soon), UV_ENOENT);
    EXPECT_RC(weft_handle_cancel(later), UV_ENOENT);

    /* A stale handle stays stale when its slot is reused. */
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(10 + i), NULL));
    }
    EXPECT_RC(weft_handle_cancel(soon), UV_ENOENT);
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_n, 10, "a stale handle must not cancel the callback that reused its slot");
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, handle_cancel_of_a_zero_handle_returns_einval, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_handle_t zero;
    memset(&zero, 0, sizeof zero);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_RC(weft_handle_cancel(zero), UV_EINVAL);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_handle_t g_victim_handle;
static int g_cancel_rc = 1;

static void canceller_cb(void *arg)
{
    record_cb(arg);
    g_cancel_rc = weft_handle_cancel(g_victim_handle);
}

Test(loop, handle_cancel_from_an_earlier_callback_stops_a_queued_one, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    static const int want[] = {1, 3};
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, canceller_cb, weft_int(1), NULL));
    ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(2), &g_victim_handle));
    ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(3), NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_cancel_rc, 0);
    expect_order(want, 2);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- stop ----------------------------------------------------------------- */

static void stop_cb(void *arg)
{
    weft_loop_stop((weft_loop_t *)arg);
}

Test(loop, stop_from_a_callback_makes_run_return_while_a_task_waits, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *never;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &never));
    ASSERT_OK(weft_spawn(&loop, await_body, never, &t));
    ASSERT_OK(weft_call_soon(&loop, stop_cb, &loop, NULL));

    /* Without the stop this would block forever: the task awaits `never`. */
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(weft_task_state(t), WEFT_TASK_SUSPENDED, "state %s",
                 weft_task_state_name(weft_task_state(t)));
    EXPECT_RC(weft_loop_close(&loop), UV_EBUSY);

    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(weft_task_state(t), WEFT_TASK_CANCELLED, "state %s",
                 weft_task_state_name(weft_task_state(t)));
    cr_expect(weft_future_cancelled(never), "the awaited future is cancelled with the task");
    weft_task_unref(t);
    weft_future_unref(never);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- re-entrancy ---------------------------------------------------------- */

static weft_loop_t *g_other;
static int g_rerun_same = 1;
static int g_rerun_other = 1;
static int g_rerun_task_same = 1;

static void rerun_cb(void *arg)
{
    g_rerun_same = weft_loop_run((weft_loop_t *)arg);
    g_rerun_other = weft_loop_run(g_other);
}

static int rerun_body(void *arg, void **result)
{
    (void)result;
    g_rerun_task_same = weft_loop_run((weft_loop_t *)arg);
    return 0;
}

Test(loop, run_from_inside_a_callback_or_task_returns_ereentrant, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop, other;
    g_other = &other;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_loop_init(&other, NULL));
    ASSERT_OK(weft_call_soon(&loop, rerun_cb, &loop, NULL));
    ASSERT_OK(weft_spawn(&loop, rerun_body, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_rerun_same, WEFT_EREENTRANT);
    EXPECT_RC(g_rerun_other, WEFT_EREENTRANT);
    EXPECT_RC(g_rerun_task_same, WEFT_EREENTRANT);
    EXPECT_OK(weft_loop_close(&other));
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- closing while busy --------------------------------------------------- */

Test(loop, close_with_a_spawned_task_returns_ebusy_then_run_and_close_work,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    int ran = 0;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, noop_body, &ran, NULL));
    EXPECT_RC(weft_loop_close(&loop), UV_EBUSY);
    cr_expect_eq(ran, 0);
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(ran, 1, "the task must still run after the refused close");
    EXPECT_OK(weft_loop_close(&loop));
}

Test(loop, close_with_a_pending_callback_or_timer_returns_ebusy, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(1), NULL));
    EXPECT_RC(weft_loop_close(&loop), UV_EBUSY);
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_n, 1);

    ASSERT_OK(weft_call_later(&loop, 2, record_cb, weft_int(2), NULL));
    EXPECT_RC(weft_loop_close(&loop), UV_EBUSY);
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_n, 2);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_task_t *g_sleeper;
static int g_close_in_cb = 1;
static int g_close_in_task = 1;
static int g_cancel_sleeper_rc = 1;

static void close_then_cancel_cb(void *arg)
{
    g_close_in_cb = weft_loop_close((weft_loop_t *)arg);
    g_cancel_sleeper_rc = weft_task_cancel(g_sleeper);
}

static int close_in_task_body(void *arg, void **result)
{
    (void)result;
    g_close_in_task = weft_loop_close((weft_loop_t *)arg);
    return 0;
}

Test(loop, close_from_inside_the_running_loop_returns_ebusy, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *never;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &never));
    ASSERT_OK(weft_spawn(&loop, await_body, never, &g_sleeper));
    ASSERT_OK(weft_spawn(&loop, close_in_task_body, &loop, NULL));
    ASSERT_OK(weft_call_later(&loop, 1, close_then_cancel_cb, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_close_in_cb, UV_EBUSY);
    EXPECT_RC(g_close_in_task, UV_EBUSY);
    EXPECT_OK(g_cancel_sleeper_rc);
    cr_expect_eq(weft_task_state(g_sleeper), WEFT_TASK_CANCELLED);
    weft_task_unref(g_sleeper);
    weft_future_unref(never);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- the inbox's overflow path ---------------------------------------------
 * Posting from the loop thread inside one callback fills the ring (nothing
 * drains it meanwhile), so the rest must go to the overflow list, and still
 * arrive in posting order. */

#define FLOOD_POSTS 100000
static uint32_t g_flood_next;
static uint32_t g_flood_count;
static uint32_t g_flood_out_of_order;
static int g_flood_post_errors;
static int g_flood_set_rc = 1;
static weft_future_t *g_flood_done;

static void flood_count_cb(void *arg)
{
    uint32_t seq = (uint32_t)weft_to_int(arg);
    if (seq != g_flood_next) {
        g_flood_out_of_order++;
    }
    g_flood_next = seq + 1;
    if (++g_flood_count == FLOOD_POSTS) {
        g_flood_set_rc = weft_future_set_result(g_flood_done, NULL);
    }
}

static void flood_cb(void *arg)
{
    weft_loop_t *loop = arg;
    for (uint32_t i = 0; i < FLOOD_POSTS; i++) {
        if (weft_call_soon_threadsafe(loop, flood_count_cb, weft_int(i)) != 0) {
            g_flood_post_errors++;
        }
    }
}

Test(loop, threadsafe_posts_beyond_the_ring_capacity_all_arrive_in_order, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *waiter;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &g_flood_done));
    /* The waiter keeps the loop alive until the last message is counted. */
    ASSERT_OK(weft_spawn(&loop, await_body, g_flood_done, &waiter));
    ASSERT_OK(weft_call_soon(&loop, flood_cb, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));

    cr_expect_eq(g_flood_post_errors, 0);
    cr_expect_eq(g_flood_count, FLOOD_POSTS, "received %u of %u", g_flood_count, FLOOD_POSTS);
    cr_expect_eq(g_flood_out_of_order, 0, "%u messages out of posting order", g_flood_out_of_order);
    EXPECT_OK(g_flood_set_rc);
    cr_expect_eq(weft_task_state(waiter), WEFT_TASK_DONE);
    weft_loop_stats(&loop, &st);
    cr_expect_gt(st.inbox_overflows, 0, "%d posts from one callback never overflowed the ring",
                 FLOOD_POSTS);
    cr_expect_geq(st.threadsafe_received, FLOOD_POSTS);
    weft_task_unref(waiter);
    weft_future_unref(g_flood_done);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- libuv handles keep the loop running ----------------------------------- */

static uv_timer_t g_uv_timer;
static int g_uv_fired;

static void uv_fired_cb(uv_timer_t *t)
{
    g_uv_fired++;
    uv_close((uv_handle_t *)t, NULL);
}

Test(loop, run_waits_for_active_libuv_handles, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(uv_timer_init(weft_loop_uv(&loop), &g_uv_timer));
    ASSERT_OK(uv_timer_start(&g_uv_timer, uv_fired_cb, 2, 0));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_uv_fired, 1);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- stats ---------------------------------------------------------------- */

static weft_loop_stats_t g_stats_inside;

static int yield_body(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    if (arg != NULL) {
        weft_loop_stats(weft_loop_current(), &g_stats_inside);
    }
    return rc;
}

Test(loop, stats_count_callbacks_tasks_and_switches, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_spawned, 0);
    cr_expect_eq(st.tasks_live, 0);
    cr_expect_eq(st.callbacks_run, 0);

    for (int i = 0; i < 10; i++) {
        ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(i), NULL));
    }
    for (int i = 0; i < 5; i++) {
        ASSERT_OK(weft_spawn(&loop, yield_body, i == 0 ? &loop : NULL, NULL));
    }
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_spawned, 5);
    cr_expect_eq(st.tasks_live, 5, "a spawned task is live before it runs");

    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_geq(g_stats_inside.tasks_live, 1);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_spawned, 5);
    cr_expect_eq(st.tasks_finished, 5);
    cr_expect_eq(st.tasks_live, 0);
    cr_expect_geq(st.callbacks_run, 10);
    cr_expect_geq(st.switches, 5, "5 tasks that each yield once switched %llu times",
                  (unsigned long long)st.switches);
    cr_expect_gt(st.iterations, 0);
    cr_expect_eq(st.stacks_in_use, 0);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- dump ----------------------------------------------------------------- */

static weft_task_t *g_alpha;
static weft_task_t *g_beta;
static weft_future_t *g_release;
static int g_dump_rc = -1;
static char *g_dump_text;
static int g_release_rc = 1;

static int dumper_body(void *arg, void **result)
{
    (void)result;
    weft_loop_t *loop = arg;
    size_t len = 0;
    for (int i = 0; i < 100; i++) {
        if (weft_task_state(g_alpha) == WEFT_TASK_SUSPENDED &&
            weft_task_state(g_beta) == WEFT_TASK_SUSPENDED) {
            break;
        }
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    FILE *fp = open_memstream(&g_dump_text, &len);
    if (fp != NULL) {
        g_dump_rc = weft_loop_dump(loop, fp);
        fclose(fp);
    }
    g_release_rc = weft_future_set_result(g_release, NULL);
    return 0;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    const char *line = text;
    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        if (hit != NULL && hit < line + len) {
            n++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return n;
}

Test(loop, dump_prints_every_live_task_with_its_name_and_spawn_file, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_opts_t a = {.name = "alpha_sleeper", .stack_size = 0};
    weft_task_opts_t b = {.name = "beta_sleeper", .stack_size = 0};
    weft_task_opts_t d = {.name = "the_dumper", .stack_size = 0};
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &g_release));
    ASSERT_OK(weft_spawn_ex(&loop, await_body, g_release, &a, &g_alpha));
    ASSERT_OK(weft_spawn_ex(&loop, await_body, g_release, &b, &g_beta));
    ASSERT_OK(weft_spawn_ex(&loop, dumper_body, &loop, &d, NULL));
    EXPECT_OK(weft_loop_run(&loop));

    EXPECT_RC(g_dump_rc, 3);
    EXPECT_OK(g_release_rc);
    cr_assert_not_null(g_dump_text);
    cr_log_info("dump:\n%s", g_dump_text);
    cr_expect_geq(count_lines_with(g_dump_text, "alpha_sleeper"), 1);
    cr_expect_geq(count_lines_with(g_dump_text, "beta_sleeper"), 1);
    cr_expect_geq(count_lines_with(g_dump_text, "the_dumper"), 1);
    cr_expect_geq(count_lines_with(g_dump_text, "loop_test.c"), 3,
                  "each live task's spawn site (file:line) is printed");
    free(g_dump_text);

    EXPECT_RC(weft_loop_dump(NULL, stdout), UV_EINVAL);
    /* Nothing live any more. */
    {
        char *text = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&text, &len);
        cr_assert_not_null(fp);
        EXPECT_RC(weft_loop_dump(&loop, fp), 0);
        fclose(fp);
        free(text);
    }
    weft_task_unref(g_alpha);
    weft_task_unref(g_beta);
    weft_future_unref(g_release);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- the error table ------------------------------------------------------ */

Test(error, strerror_and_err_name_cover_weft_and_libuv_codes, .timeout = TEST_TIMEOUT_S)
{
    const char *weft_msg = weft_strerror(WEFT_ENOTASK);
    const char *uv_msg = weft_strerror(UV_ECANCELED);
    const char *weft_name = weft_err_name(WEFT_ENOTASK);
    const char *uv_name = weft_err_name(UV_ECANCELED);
    cr_assert_not_null(weft_msg);
    cr_assert_not_null(uv_msg);
    cr_assert_not_null(weft_name);
    cr_assert_not_null(uv_name);
    cr_expect_neq(strcmp(weft_msg, uv_msg), 0, "'%s' vs '%s'", weft_msg, uv_msg);
    cr_expect_neq(strcmp(weft_name, uv_name), 0, "'%s' vs '%s'", weft_name, uv_name);
    cr_expect_not_null(strstr(weft_name, "ENOTASK"), "name '%s'", weft_name);
    cr_expect_not_null(strstr(uv_name, "ECANCELED"), "name '%s'", uv_name);
    cr_expect_str_eq(uv_msg, uv_strerror(UV_ECANCELED), "weft_strerror agrees with libuv");

    /* Every weft code has its own message and name. */
    static const int codes[] = {WEFT_ENOTASK,    WEFT_EDEADLK,  WEFT_EWRONGLOOP, WEFT_ECLOSED,
                                WEFT_EREENTRANT, WEFT_EPENDING, WEFT_EDONE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_expect_not_null(weft_strerror(codes[i]));
        cr_expect_not_null(weft_err_name(codes[i]));
        for (size_t j = 0; j < i; j++) {
            cr_expect_str_neq(weft_err_name(codes[i]), weft_err_name(codes[j]));
        }
    }
}

/* --- many loops, one after another ----------------------------------------------
 * 40 loops, each with 300 tasks parked at once, opened and closed in turn.
 * Under TSan each started stack holds a fiber, which TSan counts as a thread
 * (at most 8,128): this passes there only if a closed loop gives its fibers
 * back. Everywhere it checks that loops can be made and closed repeatedly. */

#define CHURN_LOOPS 40
#define CHURN_TASKS 300

static weft_future_t *g_churn_gate;
static int g_churn_done;

static int churn_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_await(g_churn_gate, NULL);
    if (rc == 0)
        g_churn_done++;
    return rc;
}

static int churn_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = 0;
    for (int i = 0; i < CHURN_TASKS && rc == 0; i++)
        rc = weft_spawn(NULL, churn_body, NULL, NULL);
    if (rc == 0)
        rc = weft_yield(); /* every task has started and parked */
    if (rc == 0)
        rc = weft_future_set_result(g_churn_gate, NULL);
    return rc;
}

Test(loop, many_loops_with_parked_tasks_open_and_close_in_turn, .timeout = TEST_TIMEOUT_S)
{
    for (int i = 0; i < CHURN_LOOPS; i++) {
        weft_loop_t loop;
        weft_task_t *t;
        g_churn_done = 0;
        ASSERT_OK(weft_loop_init(&loop, NULL));
        ASSERT_OK(weft_future_new(&loop, &g_churn_gate));
        ASSERT_OK(weft_spawn(&loop, churn_main, NULL, &t));
        EXPECT_OK(weft_loop_run(&loop));
        EXPECT_OK(weft_task_result(t, NULL));
        cr_expect_eq(g_churn_done, CHURN_TASKS, "loop %d: %d tasks finished", i, g_churn_done);
        weft_task_unref(t);
        weft_future_unref(g_churn_gate);
        ASSERT_OK(weft_loop_close(&loop));
    }
}

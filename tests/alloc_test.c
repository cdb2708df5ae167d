/*
 * tests/alloc_test.c - the allocation choke point (core/alloc.h): the steady
 * state of spawn/await, futures, callbacks and timers makes no allocator
 * calls at all, and allocation failures come back as UV_ENOMEM from the call
 * that needed memory, leaving everything usable once memory is back.
 *
 * Fault injection is process-wide; every test resets it before it ends.
 */
#include "plain_test.h"
#include "check.h"

#include <stdint.h>
#include <string.h>

#include <weft/weft.h>

#include "core/alloc.h"

static void reset_faults(void)
{
    weft__alloc_fail_after(-1);
}

/* --- steady state ------------------------------------------------------------ */

#define WARMUP_CYCLES   1000
#define MEASURED_CYCLES 10000
#define BATCH           1000

static int g_errors;
static int g_ticks;
static int g_done_cbs;
static uint64_t g_calls_before, g_calls_after;

#define CHECK(expr)                                            \
    do {                                                       \
        if (!(expr)) {                                         \
            if (g_errors++ < 10) {                             \
                cr_log_error("cycle check failed: %s", #expr); \
            }                                                  \
        }                                                      \
    } while (0)

static int return_arg_body(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int yield_then_return_body(void *arg, void **result)
{
    int rc = weft_yield();
    *result = arg;
    return rc;
}

static void tick_cb(void *arg)
{
    (void)arg;
    g_ticks++;
}

static void done_cb(weft_future_t *f, void *arg)
{
    (void)f;
    (void)arg;
    g_done_cbs++;
}

/* One cycle of everyday work; the same sequence every time. */
static void cycle(int i)
{
    weft_loop_t *loop = weft_loop_current();
    weft_task_t *inline_child = NULL, *started_child = NULL;
    weft_future_t *f = NULL, *pending = NULL;
    weft_handle_t h;
    void *v = NULL;

    /* A child awaited before it starts (inline) and one that starts first. */
    CHECK(weft_spawn(NULL, return_arg_body, weft_int(i), &inline_child) == 0);
    CHECK(weft_spawn(NULL, yield_then_return_body, weft_int(i + 1), &started_child) == 0);
    CHECK(weft_yield() == 0);
    CHECK(weft_await_task(inline_child, &v) == 0 && weft_to_int(v) == i);
    CHECK(weft_await_task(started_child, &v) == 0 && weft_to_int(v) == i + 1);
    weft_task_unref(inline_child);
    weft_task_unref(started_child);

    /* A future with a done callback, completed and awaited. */
    CHECK(weft_future_new(NULL, &f) == 0);
    CHECK(weft_future_add_done_callback(f, done_cb, NULL) == 0);
    CHECK(weft_future_set_result(f, weft_int(i)) == 0);
    CHECK(weft_await(f, &v) == 0 && weft_to_int(v) == i);
    CHECK(weft_yield() == 0); /* the done callback runs */
    weft_future_unref(f);

    /* Callbacks and a timer that is cancelled before it fires. */
    CHECK(weft_call_soon(loop, tick_cb, NULL, NULL) == 0);
    CHECK(weft_call_later(loop, 60000, tick_cb, NULL, &h) == 0);
    CHECK(weft_handle_cancel(h) == 0);

    /* A cancelled pending future, and now and then real timers. */
    CHECK(weft_future_new(NULL, &pending) == 0);
    if (i % 100 == 0) {
        CHECK(weft_await_timeout(pending, 1, NULL) == UV_ETIMEDOUT);
        CHECK(weft_sleep(1) == 0);
    }
    CHECK(weft_future_cancel(pending) == 0);
    weft_future_unref(pending);
}

/* BATCH tasks alive at once, then all awaited. */
static void batch(void)
{
    static weft_task_t *tasks[BATCH];
    for (int i = 0; i < BATCH; i++) {
        if (weft_spawn(NULL, yield_then_return_body, weft_int(i), &tasks[i]) != 0) {
            tasks[i] = NULL;
            CHECK(!"spawn in batch");
        }
    }
    for (int i = 0; i < BATCH; i++) {
        void *v = NULL;
        if (tasks[i] != NULL) {
            CHECK(weft_await_task(tasks[i], &v) == 0 && weft_to_int(v) == i);
            weft_task_unref(tasks[i]);
        }
    }
}

static int steady_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    batch();
    for (int i = 0; i < WARMUP_CYCLES; i++) {
        cycle(i);
    }
    g_calls_before = weft__alloc_calls();
    for (int i = 0; i < MEASURED_CYCLES; i++) {
        cycle(i);
    }
    batch();
    g_calls_after = weft__alloc_calls();
    return 0;
}

Test(alloc, steady_state_spawn_await_futures_and_timers_make_no_allocator_calls,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_opts_t opts = {.name = "steady", .stack_size = 256 * 1024};
    reset_faults();
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn_ex(&loop, steady_body, NULL, &opts, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_errors, 0, "%d checks failed inside the cycles", g_errors);
    cr_expect_gt(g_ticks, 0);
    cr_expect_gt(g_done_cbs, 0);
    cr_expect_eq(g_calls_after, g_calls_before, "%llu allocator calls in %d steady-state cycles",
                 (unsigned long long)(g_calls_after - g_calls_before), MEASURED_CYCLES);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- fault injection --------------------------------------------------------- */

static int leaf_body(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int is_ok_or_enomem(int rc)
{
    return rc == 0 || rc == UV_ENOMEM;
}

Test(alloc, failed_allocation_gives_enomem_and_a_later_call_works, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t = NULL;
    weft_future_t *f = NULL;
    int rc, saw_enomem = 0;
    void *v = NULL;

    reset_faults();
    weft__alloc_fail_after(0);
    rc = weft_loop_init(&loop, NULL);
    cr_expect(is_ok_or_enomem(rc), "weft_loop_init: %s", weft_err_name(rc));
    if (rc == UV_ENOMEM) {
        saw_enomem = 1;
        reset_faults();
        rc = weft_loop_init(&loop, NULL);
        ASSERT_OK(rc);
        weft__alloc_fail_after(0);
    }
    cr_assert_eq(rc, 0);

    /* A fresh loop's pools are empty: the first of each needs memory. */
    rc = weft_spawn(&loop, leaf_body, weft_int(7), &t);
    cr_expect(is_ok_or_enomem(rc), "weft_spawn: %s", weft_err_name(rc));
    saw_enomem |= rc == UV_ENOMEM;
    if (rc == 0) {
        weft_task_unref(t);
    }
    rc = weft_future_new(&loop, &f);
    cr_expect(is_ok_or_enomem(rc), "weft_future_new: %s", weft_err_name(rc));
    saw_enomem |= rc == UV_ENOMEM;
    if (rc == 0) {
        weft_future_unref(f);
    }
    reset_faults();
    cr_expect(saw_enomem, "no call failed although every allocation did");

    /* Memory is back: everything works. */
    t = NULL;
    f = NULL;
    ASSERT_OK(weft_spawn(&loop, leaf_body, weft_int(8), &t));
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_result(f, weft_int(9)));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, &v));
    cr_expect_eq(weft_to_int(v), 8);
    weft_task_unref(t);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

static int weft_run_main(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(3);
    return 0;
}

Test(alloc, weft_run_reports_enomem_when_nothing_can_be_allocated, .timeout = TEST_TIMEOUT_S)
{
    void *v = NULL;
    int rc;
    reset_faults();
    weft__alloc_fail_after(0);
    rc = weft_run(weft_run_main, NULL, &v);
    reset_faults();
    cr_expect(rc == UV_ENOMEM || (rc == 0 && weft_to_int(v) == 3), "weft_run: %s",
              weft_err_name(rc));
    v = NULL;
    EXPECT_OK(weft_run(weft_run_main, NULL, &v));
    cr_expect_eq(weft_to_int(v), 3);
}

/* Fault sweep: for n = 0, 1, 2, ... let n allocations succeed inside a
 * workload and fail every later one. Every call must return 0 or UV_ENOMEM,
 * the loop must still run to the end and close with 0, and nothing may leak
 * (ASan's leak check covers that). Stops at the first n where the workload
 * no longer hits an injected failure. */

#define SWEEP_N 64
static int g_bad_rc;
static int g_enomem_seen;

static void note_rc(int rc)
{
    if (rc == UV_ENOMEM) {
        g_enomem_seen++;
    } else if (rc != 0) {
        if (g_bad_rc++ < 10) {
            cr_log_error("unexpected %s under fault injection", weft_err_name(rc));
        }
    }
}

static void sweep_tick_cb(void *arg)
{
    (void)arg;
}

static void sweep_done_cb(weft_future_t *f, void *arg)
{
    (void)f;
    (void)arg;
}

static int sweep_child_body(void *arg, void **result)
{
    int rc = weft_sleep(1);
    *result = arg;
    return rc;
}

static int sweep_body(void *arg, void **result)
{
    (void)result;
    long n = (long)weft_to_int(arg);
    weft_task_t *kids[SWEEP_N];
    weft_future_t *futs[SWEEP_N];
    int rc;

    weft__alloc_fail_after(n);
    for (int i = 0; i < SWEEP_N; i++) {
        kids[i] = NULL;
        futs[i] = NULL;
        rc = weft_spawn(NULL, sweep_child_body, weft_int(i), &kids[i]);
        note_rc(rc);
        if (rc != 0) {
            kids[i] = NULL;
        }
        rc = weft_future_new(NULL, &futs[i]);
        note_rc(rc);
        if (rc != 0) {
            futs[i] = NULL;
        } else {
            note_rc(weft_future_add_done_callback(futs[i], sweep_done_cb, NULL));
        }
        note_rc(weft_call_soon(weft_loop_current(), sweep_tick_cb, NULL, NULL));
        note_rc(weft_call_later(weft_loop_current(), 1, sweep_tick_cb, NULL, NULL));
    }
    for (int i = 0; i < SWEEP_N; i++) {
        if (futs[i] != NULL) {
            note_rc(weft_future_set_result(futs[i], weft_int(i)));
        }
    }
    note_rc(weft_yield()); /* done callbacks run before the futures are released */
    for (int i = 0; i < SWEEP_N; i++) {
        void *v = NULL;
        if (kids[i] != NULL) {
            rc = weft_await_task(kids[i], &v);
            note_rc(rc);
            weft_task_unref(kids[i]);
        }
        if (futs[i] != NULL) {
            note_rc(weft_await(futs[i], &v));
            weft_future_unref(futs[i]);
        }
    }
    weft__alloc_fail_after(-1);
    return 0;
}

Test(alloc, fault_sweep_every_injected_failure_is_reported_cleanly, .timeout = TEST_TIMEOUT_S)
{
    int last_n = -1;
    reset_faults();
    for (long n = 0; n < 2000; n++) {
        weft_loop_t loop;
        weft_task_opts_t opts = {.name = "sweep", .stack_size = 256 * 1024};
        int before_enomem = g_enomem_seen;
        ASSERT_OK(weft_loop_init(&loop, NULL));
        ASSERT_OK(weft_spawn_ex(&loop, sweep_body, weft_int(n), &opts, NULL));
        int rc = weft_loop_run(&loop);
        reset_faults();
        cr_expect_eq(rc, 0, "n=%ld: weft_loop_run: %s", n, weft_err_name(rc));
        rc = weft_loop_run(&loop);
        cr_expect_eq(rc, 0, "n=%ld: second weft_loop_run: %s", n, weft_err_name(rc));
        rc = weft_loop_close(&loop);
        cr_assert_eq(rc, 0, "n=%ld: weft_loop_close: %s", n, weft_err_name(rc));
        if (g_enomem_seen == before_enomem) {
            last_n = (int)n;
            break;
        }
    }
    cr_log_info("fault sweep: workload fits in %d allocations; %d ENOMEM results seen", last_n,
                g_enomem_seen);
    cr_expect_geq(last_n, 0, "the workload still hit failures after 2000 allocations");
    cr_expect_gt(g_enomem_seen, 0, "the sweep never injected a failure");
    cr_expect_eq(g_bad_rc, 0, "%d calls returned something other than 0 or UV_ENOMEM", g_bad_rc);
}

/* The inbox's overflow list is the one place a post needs memory: once the
 * ring is full, failing allocations make posts return UV_ENOMEM, and every
 * post that returned 0 still arrives, in order. */

#define FLOOD 100000
static int g_flood_ok, g_flood_enomem, g_flood_other;
static int g_flood_arrived, g_flood_out_of_order, g_flood_next;

static void flood_cb(void *arg)
{
    int seq = (int)weft_to_int(arg);
    if (seq != g_flood_next) {
        g_flood_out_of_order++;
    }
    g_flood_next = seq + 1;
    g_flood_arrived++;
}

static int flood_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_loop_t *loop = weft_loop_current();
    weft__alloc_fail_after(0);
    for (int i = 0; i < FLOOD; i++) {
        int rc = weft_call_soon_threadsafe(loop, flood_cb, weft_int(g_flood_ok));
        if (rc == 0) {
            g_flood_ok++;
        } else if (rc == UV_ENOMEM) {
            g_flood_enomem++;
        } else {
            g_flood_other++;
        }
    }
    weft__alloc_fail_after(-1);
    /* Let the loop drain the inbox. */
    for (int i = 0; i < 100 && g_flood_arrived < g_flood_ok; i++) {
        int rc = weft_sleep(1);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

Test(alloc, threadsafe_post_that_needs_the_overflow_list_reports_enomem_and_loses_nothing,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    reset_faults();
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, flood_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    reset_faults();
    cr_log_info("flood: %d posts accepted, %d refused", g_flood_ok, g_flood_enomem);
    cr_expect_gt(g_flood_ok, 0);
    cr_expect_gt(g_flood_enomem, 0, "%d posts from the loop thread never needed memory", FLOOD);
    cr_expect_eq(g_flood_other, 0);
    cr_expect_eq(g_flood_arrived, g_flood_ok);
    cr_expect_eq(g_flood_out_of_order, 0);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

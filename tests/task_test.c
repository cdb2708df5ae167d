/*
 * tests/task_test.c - tasks (weft/task.h): spawn and await, identity, states,
 * failure and propagation, cancellation in every state, yield and sleep,
 * await with a timeout, inline start of awaited children, misuse, and
 * weft_run().
 *
 * Every test that owns a loop ends by closing it and expecting 0. Timing
 * checks only ever say "no earlier than asked" (weft_loop_now_ns()).
 */
#include "plain_test.h"
#include "check.h"

#include <stdint.h>
#include <string.h>

#include <weft/weft.h>

#define EXPECT_STATE(t, want)                                                          \
    do {                                                                               \
        weft_task_state_t st_ = weft_task_state(t);                                    \
        cr_expect_eq(st_, (want), "task state %s, want %s", weft_task_state_name(st_), \
                     weft_task_state_name(want));                                      \
    } while (0)

#define HOUR_MS (3600u * 1000u)

/* A parent stack big enough that a default-size child fits inline on it. */
static const weft_task_opts_t big_stack = {.name = "big_parent", .stack_size = 256 * 1024};

/* Yield until `t` is suspended (or give up after a bounded number of turns). */
static int yield_until_suspended(weft_task_t *t)
{
    for (int i = 0; i < 1000 && weft_task_state(t) != WEFT_TASK_SUSPENDED; i++) {
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    return weft_task_state(t) == WEFT_TASK_SUSPENDED ? 0 : UV_EAGAIN;
}

static int return_arg_body(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int await_body(void *arg, void **result)
{
    return weft_await((weft_future_t *)arg, result);
}

/* --- spawn, await, identity ----------------------------------------------- */

static int g_child_rc = 1;
static void *g_child_value;

static int spawn_and_await_body(void *arg, void **result)
{
    (void)arg;
    weft_task_t *child = NULL;
    int rc = weft_spawn(NULL, return_arg_body, weft_int(123), &child);
    if (rc != 0) {
        return rc;
    }
    g_child_rc = weft_await_task(child, &g_child_value);
    weft_task_unref(child);
    *result = weft_int(1);
    return 0;
}

Test(task, spawn_then_await_gives_the_child_result, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, spawn_and_await_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_child_rc);
    cr_expect_eq(weft_to_int(g_child_value), 123);
    EXPECT_STATE(t, WEFT_TASK_DONE);
    EXPECT_OK(weft_task_result(t, &v));
    cr_expect_eq(weft_to_int(v), 1);
    /* A task is also a future. */
    cr_assert_not_null(weft_task_future(t));
    cr_expect(weft_future_done(weft_task_future(t)));
    v = NULL;
    EXPECT_OK(weft_future_result(weft_task_future(t), &v));
    cr_expect_eq(weft_to_int(v), 1);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

static int bump_body(void *arg, void **result)
{
    (void)result;
    (*(int *)arg)++;
    return 0;
}

Test(task, detached_spawn_and_unref_before_run_still_run, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    int detached = 0, released = 0;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, bump_body, &detached, NULL));
    ASSERT_OK(weft_spawn(&loop, bump_body, &released, &t));
    weft_task_unref(t); /* the loop keeps its own reference */
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(detached, 1);
    cr_expect_eq(released, 1);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0);
    cr_expect_eq(st.tasks_finished, 2);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_task_t *g_seen_current;
static const char *g_seen_name;
static weft_task_state_t g_seen_state = WEFT_TASK_CANCELLED;

static int identity_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_seen_current = weft_task_current();
    g_seen_name = weft_task_name(g_seen_current);
    g_seen_state = weft_task_state(g_seen_current);
    return 0;
}

Test(task, current_name_and_id_identify_the_running_task, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t, *other;
    weft_task_opts_t opts = {.name = "worker-7", .stack_size = 0};
    ASSERT_OK(weft_loop_init(&loop, NULL));
    cr_expect_null(weft_task_current());
    ASSERT_OK(weft_spawn_ex(&loop, identity_body, NULL, &opts, &t));
    ASSERT_OK(weft_spawn(&loop, return_arg_body, NULL, &other));
    cr_assert_not_null(weft_task_name(t));
    cr_expect_str_eq(weft_task_name(t), "worker-7");
    cr_expect_neq(weft_task_id(t), weft_task_id(other), "two tasks share id %llu",
                  (unsigned long long)weft_task_id(t));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_seen_current, t);
    cr_assert_not_null(g_seen_name);
    cr_expect_str_eq(g_seen_name, "worker-7");
    cr_expect_null(weft_task_current(), "no current task outside the loop");
    weft_task_unref(t);
    weft_task_unref(other);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- states --------------------------------------------------------------- */

static weft_task_t *g_sleeper;
static weft_task_state_t g_sleeper_state_seen = WEFT_TASK_CREATED;

static int sleep_short_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_seen_state = weft_task_state(weft_task_current());
    return weft_sleep(2);
}

static int observe_sleeper_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = yield_until_suspended(g_sleeper);
    g_sleeper_state_seen = weft_task_state(g_sleeper);
    return rc;
}

static int fail_with_message_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_fail(UV_EIO, "disk on fire");
}

static int fail_plain_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return UV_EPIPE;
}

static int end_cancelled_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return UV_ECANCELED;
}

Test(task, states_go_created_running_suspended_then_done, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, sleep_short_body, NULL, &g_sleeper));
    EXPECT_STATE(g_sleeper, WEFT_TASK_CREATED);
    ASSERT_OK(weft_spawn(&loop, observe_sleeper_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_seen_state, WEFT_TASK_RUNNING, "inside its body a task is RUNNING, saw %s",
                 weft_task_state_name(g_seen_state));
    cr_expect_eq(g_sleeper_state_seen, WEFT_TASK_SUSPENDED, "a sleeping task is SUSPENDED, saw %s",
                 weft_task_state_name(g_sleeper_state_seen));
    EXPECT_STATE(g_sleeper, WEFT_TASK_DONE);
    weft_task_unref(g_sleeper);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, negative_return_fails_the_task_with_that_code_and_the_weft_fail_message,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *with_msg, *plain, *cancelled;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, fail_with_message_body, NULL, &with_msg));
    ASSERT_OK(weft_spawn(&loop, fail_plain_body, NULL, &plain));
    ASSERT_OK(weft_spawn(&loop, end_cancelled_body, NULL, &cancelled));
    EXPECT_OK(weft_loop_run(&loop));

    EXPECT_STATE(with_msg, WEFT_TASK_FAILED);
    EXPECT_RC(weft_task_result(with_msg, NULL), UV_EIO);
    cr_assert_not_null(weft_task_message(with_msg));
    cr_expect_str_eq(weft_task_message(with_msg), "disk on fire");

    EXPECT_STATE(plain, WEFT_TASK_FAILED);
    EXPECT_RC(weft_task_result(plain, NULL), UV_EPIPE);
    cr_expect_null(weft_task_message(plain));

    /* Returning UV_ECANCELED ends the task as cancelled. */
    EXPECT_STATE(cancelled, WEFT_TASK_CANCELLED);
    EXPECT_RC(weft_task_result(cancelled, NULL), UV_ECANCELED);

    weft_task_unref(with_msg);
    weft_task_unref(plain);
    weft_task_unref(cancelled);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, fail_outside_a_task_only_returns_the_code, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_RC(weft_fail(UV_EIO, "nobody hears this"), UV_EIO);
}

/* --- propagation through nested awaits ------------------------------------- */

/* arg: depth in the low byte; bit 8 makes the leaf fail; bit 9 awaits each
 * child right away (so it may start inline) instead of letting it start. */
static int nested_body(void *arg, void **result)
{
    intptr_t a = weft_to_int(arg);
    intptr_t depth = a & 0xff;
    if (depth == 0) {
        if (a & 0x100) {
            return weft_fail(UV_EPIPE, "leaf failed");
        }
        *result = weft_int(100);
        return 0;
    }
    weft_task_t *child = NULL;
    void *v = NULL;
    int rc = weft_spawn(NULL, nested_body, weft_int(a - 1), &child);
    if (rc != 0) {
        return rc;
    }
    if (!(a & 0x200)) {
        rc = weft_sleep(0); /* let the child start on its own, then await it */
    }
    if (rc == 0) {
        rc = weft_await_task(child, &v);
    }
    weft_task_unref(child);
    if (rc != 0) {
        return rc;
    }
    *result = weft_int(weft_to_int(v) + 1);
    return 0;
}

Test(task, result_and_error_propagate_through_three_levels_of_awaits, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *ok[2], *bad[2];
    ASSERT_OK(weft_loop_init(&loop, NULL));
    for (int i = 0; i < 2; i++) {
        intptr_t mode = i ? 0x200 : 0;
        ASSERT_OK(weft_spawn_ex(&loop, nested_body, weft_int(3 | mode), &big_stack, &ok[i]));
        ASSERT_OK(
            weft_spawn_ex(&loop, nested_body, weft_int(3 | 0x100 | mode), &big_stack, &bad[i]));
    }
    EXPECT_OK(weft_loop_run(&loop));
    for (int i = 0; i < 2; i++) {
        void *v = NULL;
        EXPECT_STATE(ok[i], WEFT_TASK_DONE);
        EXPECT_OK(weft_task_result(ok[i], &v));
        cr_expect_eq(weft_to_int(v), 103);
        EXPECT_STATE(bad[i], WEFT_TASK_FAILED);
        EXPECT_RC(weft_task_result(bad[i], NULL), UV_EPIPE);
        weft_task_unref(ok[i]);
        weft_task_unref(bad[i]);
    }
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- cancellation --------------------------------------------------------- */

static int g_ran;
static int g_awaiter_rc = 1;

static int mark_ran_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_ran = 1;
    return 0;
}

static int await_task_body(void *arg, void **result)
{
    g_awaiter_rc = weft_await_task((weft_task_t *)arg, result);
    return 0;
}

Test(task, cancel_a_created_task_means_it_never_runs_and_awaiting_it_gives_ecanceled,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *victim, *awaiter;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, mark_ran_body, NULL, &victim));
    ASSERT_OK(weft_spawn_ex(&loop, await_task_body, victim, &big_stack, &awaiter));
    EXPECT_OK(weft_task_cancel(victim));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_ran, 0, "a task cancelled before it started ran anyway");
    EXPECT_STATE(victim, WEFT_TASK_CANCELLED);
    EXPECT_RC(weft_task_result(victim, NULL), UV_ECANCELED);
    EXPECT_RC(g_awaiter_rc, UV_ECANCELED);
    weft_task_unref(victim);
    weft_task_unref(awaiter);
    EXPECT_OK(weft_loop_close(&loop));
}

static int g_sleep_rc = 1;
static int g_after_rc = 1;
static int g_cancel_rc = 1;
static weft_task_t *g_victim;

static int sleep_an_hour_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_sleep_rc = weft_sleep(HOUR_MS);
    return g_sleep_rc;
}

static int cancel_victim_when_suspended_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = yield_until_suspended(g_victim);
    g_cancel_rc = weft_task_cancel(g_victim);
    return rc;
}

Test(task, cancel_a_sleeping_task_makes_sleep_return_ecanceled, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, sleep_an_hour_body, NULL, &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_victim_when_suspended_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    EXPECT_RC(g_sleep_rc, UV_ECANCELED);
    EXPECT_STATE(g_victim, WEFT_TASK_CANCELLED);
    weft_task_unref(g_victim);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, cancel_a_task_awaiting_a_future_cancels_the_future_too, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_spawn(&loop, await_body, f, &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_victim_when_suspended_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    cr_expect(weft_future_cancelled(f), "the awaited future was not cancelled");
    EXPECT_STATE(g_victim, WEFT_TASK_CANCELLED);
    EXPECT_RC(weft_task_result(g_victim, NULL), UV_ECANCELED);
    weft_task_unref(g_victim);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

static int g_self_cancel_rc = 1;
static weft_task_state_t g_state_after_self_cancel = WEFT_TASK_CREATED;
static int g_first_yield_rc = 1;
static int g_second_yield_rc = 1;

static int self_cancel_body(void *arg, void **result)
{
    (void)arg;
    g_self_cancel_rc = weft_task_cancel(weft_task_current());
    g_state_after_self_cancel = weft_task_state(weft_task_current());
    g_first_yield_rc = weft_yield();
    g_second_yield_rc = weft_yield(); /* the request was consumed */
    *result = weft_int(5);
    return 0;
}

Test(task, self_cancel_while_running_makes_the_next_suspension_return_ecanceled,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, self_cancel_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_self_cancel_rc);
    cr_expect_eq(g_state_after_self_cancel, WEFT_TASK_RUNNING);
    EXPECT_RC(g_first_yield_rc, UV_ECANCELED);
    EXPECT_OK(g_second_yield_rc);
    EXPECT_STATE(t, WEFT_TASK_DONE);
    EXPECT_OK(weft_task_result(t, &v));
    cr_expect_eq(weft_to_int(v), 5);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* Counted requests (asyncio's cancelling/uncancel): each cancel counts,
 * delivery does not lower the count, uncancel does, and withdrawing the
 * last request drops a cancel not delivered yet. */
static int g_count_rc[16];

static int count_cancels_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *me = weft_task_current();
    int *r = g_count_rc;
    *r++ = weft_task_cancelling(me);                             /* 0 */
    *r++ = weft_task_cancel(me) + weft_task_cancel(me);          /* 0 */
    *r++ = weft_task_cancelling(me);                             /* 2 */
    *r++ = weft_task_uncancel(me);                               /* 1 */
    *r++ = weft_yield();                                         /* ECANCELED: one left */
    *r++ = weft_task_cancelling(me);                             /* 1: delivered, still counted */
    *r++ = weft_yield();                                         /* 0: consumed */
    *r++ = weft_task_cancel(me);                                 /* 0 */
    *r++ = weft_task_uncancel(me) * 10 + weft_task_uncancel(me); /* 1, 0 */
    *r++ = weft_yield();                                         /* 0: withdrawn before delivery */
    *r++ = weft_task_uncancel(me) * 10 + weft_task_cancelling(me); /* 0 stays 0 */
    return 0;
}

static int sleep_and_count_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_sleep_rc = weft_sleep(HOUR_MS);
    g_after_rc = weft_sleep(1);
    return 0;
}

static int cancel_victim_twice_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = yield_until_suspended(g_victim);
    g_cancel_rc = weft_task_cancel(g_victim) + weft_task_cancel(g_victim);
    return rc;
}

Test(task, cancel_requests_are_counted_delivery_keeps_the_count_and_uncancel_withdraws,
     .timeout = TEST_TIMEOUT_S)
{
    static const int want[] = {0, 0, 2, 1, UV_ECANCELED, 1, 0, 0, 10, 0, 0};
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, count_cancels_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_expect_eq(g_count_rc[i], want[i], "step %zu: %d (%s), want %d", i, g_count_rc[i],
                     weft_err_name(g_count_rc[i]), want[i]);
    }
    EXPECT_STATE(t, WEFT_TASK_DONE);
    /* A finished task: cancel does nothing and does not count. */
    EXPECT_RC(weft_task_cancel(t), WEFT_EDONE);
    EXPECT_OK(weft_task_cancelling(t));
    weft_task_unref(t);

    /* Two cancels of a sleeping task before it runs again: delivered once,
     * counted twice, still readable after it finished. */
    ASSERT_OK(weft_spawn(&loop, sleep_and_count_body, NULL, &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_victim_twice_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    EXPECT_RC(g_sleep_rc, UV_ECANCELED);
    EXPECT_OK(g_after_rc);
    EXPECT_STATE(g_victim, WEFT_TASK_DONE);
    EXPECT_RC(weft_task_cancelling(g_victim), 2);
    weft_task_unref(g_victim);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, cancelling_and_uncancel_of_null_are_einval, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_RC(weft_task_cancelling(NULL), UV_EINVAL);
    EXPECT_RC(weft_task_uncancel(NULL), UV_EINVAL);
}

/* A cancel's reason (asyncio's Task.cancel(msg)): copied, the latest one
 * wins, reported by weft_task_message once the task ended cancelled, passed
 * on to what the task awaits, dropped if the task ends otherwise. */
static const char *g_msg_while_live = "unset";

/* Sleeps an hour; arg != 0: catches the cancel and finishes DONE. */
static int sleep_then_end_body(void *arg, void **result)
{
    (void)result;
    int rc = weft_sleep(HOUR_MS);
    g_msg_while_live = weft_task_message(weft_task_current());
    return weft_to_int(arg) != 0 ? 0 : rc;
}

static int cancel_victim_with_reasons_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    char why[16];
    int rc = yield_until_suspended(g_victim);
    strcpy(why, "first");
    g_cancel_rc = weft_task_cancel_msg(g_victim, why);
    strcpy(why, "shutdown");
    g_cancel_rc += weft_task_cancel_msg(g_victim, why);
    strcpy(why, "overwritten");
    return rc;
}

static void check_cancel_reason(int catch_it, const char *want)
{
    weft_loop_t loop;
    g_msg_while_live = "unset";
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, sleep_then_end_body, weft_int(catch_it), &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_victim_with_reasons_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    cr_expect_null(g_msg_while_live, "the reason showed before the task ended");
    EXPECT_STATE(g_victim, catch_it ? WEFT_TASK_DONE : WEFT_TASK_CANCELLED);
    if (want == NULL) {
        cr_expect_null(weft_task_message(g_victim));
    } else {
        cr_expect_str_eq(weft_task_message(g_victim) ? weft_task_message(g_victim) : "(null)",
                         want);
    }
    weft_task_unref(g_victim);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, cancel_msg_is_the_message_of_a_task_that_ends_cancelled, .timeout = TEST_TIMEOUT_S)
{
    check_cancel_reason(0, "shutdown");
}

Test(task, cancel_msg_is_dropped_when_the_task_catches_the_cancel_and_finishes,
     .timeout = TEST_TIMEOUT_S)
{
    check_cancel_reason(1, NULL);
}

static int g_reason_rc[4];
static const char *g_reason_msg[2];

static int reasons_of_my_own_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *me = weft_task_current();
    /* Withdrawn: the reason goes with the last request. */
    g_reason_rc[0] = weft_task_cancel_msg(me, "withdrawn");
    g_reason_rc[1] = weft_task_uncancel(me);
    g_reason_msg[0] = weft_task_message(me);
    /* The task's own message (weft_fail) stays. */
    (void)weft_fail(UV_EIO, "own");
    g_reason_rc[2] = weft_task_cancel_msg(me, "reason");
    g_reason_rc[3] = weft_yield();
    g_reason_msg[1] = weft_task_message(me);
    return UV_ECANCELED;
}

Test(task, cancel_msg_goes_with_uncancel_and_leaves_a_weft_fail_message, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, reasons_of_my_own_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_reason_rc[0]);
    EXPECT_OK(g_reason_rc[1]);
    cr_expect_null(g_reason_msg[0]);
    EXPECT_OK(g_reason_rc[2]);
    EXPECT_RC(g_reason_rc[3], UV_ECANCELED);
    cr_expect_str_eq(g_reason_msg[1] ? g_reason_msg[1] : "(null)", "own");
    EXPECT_STATE(t, WEFT_TASK_CANCELLED);
    cr_expect_str_eq(weft_task_message(t) ? weft_task_message(t) : "(null)", "own");
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* The reason travels with the cancel: to an awaited future, and to an
 * awaited task (started, or inline). A task cancelled before it ran ends
 * with it too. */
static int await_child_body(void *arg, void **result)
{
    (void)result;
    return weft_await_task(arg, NULL);
}

static weft_task_t *g_reason_child;

static int spawn_and_await_sleeper_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_spawn(NULL, sleep_then_end_body, weft_int(0), &g_reason_child);
    return rc != 0 ? rc : weft_await_task(g_reason_child, NULL); /* starts it inline */
}

static int cancel_with_reason_when_suspended_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = yield_until_suspended(g_victim);
    g_cancel_rc = weft_task_cancel_msg(g_victim, "stop");
    return rc;
}

Test(task, cancel_msg_is_passed_on_to_the_awaited_future_and_task, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    weft_task_t *child, *created;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    /* A future. */
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_spawn(&loop, await_body, f, &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_with_reason_when_suspended_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    cr_expect(weft_future_cancelled(f));
    cr_expect_str_eq(weft_future_message(f) ? weft_future_message(f) : "(null)", "stop");
    cr_expect_str_eq(weft_task_message(g_victim) ? weft_task_message(g_victim) : "(null)", "stop");
    weft_task_unref(g_victim);
    weft_future_unref(f);
    /* A task, started before its awaiter runs, then one it starts inline. */
    for (int inl = 0; inl < 2; inl++) {
        g_reason_child = NULL;
        if (inl) {
            ASSERT_OK(
                weft_spawn_ex(&loop, spawn_and_await_sleeper_body, NULL, &big_stack, &g_victim));
        } else {
            ASSERT_OK(weft_spawn(&loop, sleep_then_end_body, weft_int(0), &g_reason_child));
            ASSERT_OK(weft_spawn(&loop, await_child_body, g_reason_child, &g_victim));
        }
        ASSERT_OK(weft_spawn(&loop, cancel_with_reason_when_suspended_body, NULL, NULL));
        EXPECT_OK(weft_loop_run(&loop));
        EXPECT_OK(g_cancel_rc);
        child = g_reason_child;
        cr_assert_not_null(child);
        EXPECT_STATE(child, WEFT_TASK_CANCELLED);
        EXPECT_STATE(g_victim, WEFT_TASK_CANCELLED);
        cr_expect_str_eq(weft_task_message(child) ? weft_task_message(child) : "(null)", "stop");
        cr_expect_str_eq(weft_task_message(g_victim) ? weft_task_message(g_victim) : "(null)",
                         "stop");
        weft_task_unref(child);
        weft_task_unref(g_victim);
    }
    /* Not started yet: it ends at once, with the reason. */
    ASSERT_OK(weft_spawn(&loop, sleep_then_end_body, weft_int(0), &created));
    EXPECT_OK(weft_task_cancel_msg(created, "early"));
    EXPECT_STATE(created, WEFT_TASK_CANCELLED);
    cr_expect_str_eq(weft_task_message(created) ? weft_task_message(created) : "(null)", "early");
    EXPECT_RC(weft_task_cancel_msg(created, "late"), WEFT_EDONE);
    cr_expect_str_eq(weft_task_message(created) ? weft_task_message(created) : "(null)", "early");
    EXPECT_RC(weft_task_cancel_msg(NULL, "x"), UV_EINVAL);
    weft_task_unref(created);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- no-cancel regions --------------------------------------------------- */

/* A cancel that arrives in the region (while asleep) or before it (still
 * pending) waits: nothing in the region returns UV_ECANCELED, nor is what
 * the task awaits cancelled; the first suspension after the outermost end
 * gets it. */
static int g_nc_rc[12];
static weft_future_t *g_nc_future;

static int nocancel_region_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int *r = g_nc_rc;
    *r++ = weft_nocancel_begin();
    *r++ = weft_sleep(20); /* cancelled meanwhile: sleeps on */
    *r++ = weft_yield();
    *r++ = weft_nocancel_begin();                    /* nested */
    *r++ = weft_await_timeout(g_nc_future, 1, NULL); /* its own timeout still works */
    *r++ = weft_nocancel_end();
    *r++ = weft_yield(); /* still in the outer region */
    *r++ = weft_nocancel_end();
    *r++ = weft_yield(); /* now */
    *r++ = weft_yield(); /* delivered once */
    *r++ = weft_task_cancelling(weft_task_current());
    return 0;
}

Test(task, a_nocancel_region_defers_a_cancel_to_the_first_suspension_after_it,
     .timeout = TEST_TIMEOUT_S)
{
    static const int want[] = {0, 0, 0, 0, UV_ETIMEDOUT, 0, 0, 0, UV_ECANCELED, 0, 1};
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &g_nc_future));
    ASSERT_OK(weft_spawn(&loop, nocancel_region_body, NULL, &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_victim_when_suspended_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_expect_eq(g_nc_rc[i], want[i], "step %zu: %d (%s), want %d", i, g_nc_rc[i],
                     weft_err_name(g_nc_rc[i]), want[i]);
    }
    cr_expect_not(weft_future_done(g_nc_future), "the region's await cancelled its future");
    EXPECT_STATE(g_victim, WEFT_TASK_DONE);
    weft_task_unref(g_victim);
    weft_future_unref(g_nc_future);
    EXPECT_OK(weft_loop_close(&loop));
}

/* Deadlines of timeout scopes do not end suspensions in the region either;
 * the passed deadline shows at the first suspension after it. A cancel
 * made while running, before the region, waits too. */
static int nocancel_deadline_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_timeout_t tmo;
    int *r = g_nc_rc;
    *r++ = weft_task_cancel(weft_task_current());
    *r++ = weft_timeout_begin_at(&tmo, weft_loop_now_ns()); /* passed already */
    *r++ = weft_nocancel_begin();
    *r++ = weft_yield();
    *r++ = weft_sleep(1);
    *r++ = weft_nocancel_end();
    *r++ = weft_yield(); /* the cancel first */
    *r++ = weft_yield(); /* then the deadline */
    *r++ = weft_timeout_end(&tmo);
    return 0;
}

Test(task, timeout_deadlines_wait_for_the_end_of_a_nocancel_region_too, .timeout = TEST_TIMEOUT_S)
{
    static const int want[] = {0, 0, 0, 0, 0, 0, UV_ECANCELED, UV_ETIMEDOUT, UV_ETIMEDOUT};
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, nocancel_deadline_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_expect_eq(g_nc_rc[i], want[i], "step %zu: %d (%s), want %d", i, g_nc_rc[i],
                     weft_err_name(g_nc_rc[i]), want[i]);
    }
    EXPECT_STATE(t, WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

static int g_nc_misuse[2];

static int nocancel_misuse_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_nc_misuse[0] = weft_nocancel_end(); /* no region open */
    g_nc_misuse[1] = weft_yield();        /* nothing changed */
    return 0;
}

Test(task, nocancel_end_without_begin_is_einval_and_outside_a_task_enotask,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    EXPECT_RC(weft_nocancel_begin(), WEFT_ENOTASK);
    EXPECT_RC(weft_nocancel_end(), WEFT_ENOTASK);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, nocancel_misuse_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_nc_misuse[0], UV_EINVAL);
    EXPECT_OK(g_nc_misuse[1]);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, cancel_a_finished_task_returns_edone_and_null_returns_einval, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *done, *failed;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, return_arg_body, weft_int(3), &done));
    ASSERT_OK(weft_spawn(&loop, fail_plain_body, NULL, &failed));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(weft_task_cancel(done), WEFT_EDONE);
    EXPECT_RC(weft_task_cancel(failed), WEFT_EDONE);
    EXPECT_STATE(done, WEFT_TASK_DONE);
    EXPECT_STATE(failed, WEFT_TASK_FAILED);
    EXPECT_RC(weft_task_cancel(NULL), UV_EINVAL);
    weft_task_unref(done);
    weft_task_unref(failed);
    EXPECT_OK(weft_loop_close(&loop));
}

static int catch_cancel_body(void *arg, void **result)
{
    (void)arg;
    g_sleep_rc = weft_sleep(HOUR_MS);
    g_after_rc = weft_sleep(2); /* cancellation caught: go on */
    *result = weft_int(77);
    return g_after_rc;
}

Test(task, a_task_can_catch_cancellation_sleep_again_and_finish_done, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, catch_cancel_body, NULL, &g_victim));
    ASSERT_OK(weft_spawn(&loop, cancel_victim_when_suspended_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    EXPECT_RC(g_sleep_rc, UV_ECANCELED);
    EXPECT_OK(g_after_rc);
    EXPECT_STATE(g_victim, WEFT_TASK_DONE);
    EXPECT_OK(weft_task_result(g_victim, &v));
    cr_expect_eq(weft_to_int(v), 77);
    weft_task_unref(g_victim);
    EXPECT_OK(weft_loop_close(&loop));
}

/* Cancelling a parent that awaits a child: the child is cancelled, cleans up
 * (sleeping once more), and only then does the parent's await return. */
static weft_task_t *g_parent;
static weft_task_t *g_child;
static int g_child_first_rc = 1;
static int g_child_cleanup_rc = 1;
static int g_child_finished;
static int g_parent_await_rc = 1;
static int g_parent_saw_child_finished;
static int g_parent_awaiting;
static weft_task_state_t g_parent_saw_child_state = WEFT_TASK_CREATED;

static int cleanup_child_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_child_first_rc = weft_sleep(HOUR_MS);
    g_child_cleanup_rc = weft_sleep(2);
    g_child_finished = 1;
    return UV_ECANCELED;
}

static int parent_body(void *arg, void **result)
{
    (void)result;
    int start_child_first = (int)weft_to_int(arg);
    int rc = weft_spawn(NULL, cleanup_child_body, NULL, &g_child);
    if (rc != 0) {
        return rc;
    }
    if (start_child_first) {
        rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    g_parent_awaiting = 1; /* and awaits now, without suspending first */
    g_parent_await_rc = weft_await_task(g_child, NULL);
    g_parent_saw_child_finished = g_child_finished;
    g_parent_saw_child_state = weft_task_state(g_child);
    return g_parent_await_rc;
}

static int cancel_parent_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = 0;
    /* Cancel the parent once it awaits its suspended child (not while it
     * still waits to get there: the shuffle may run us first). */
    for (int i = 0; i < 1000 && (!g_parent_awaiting || g_child == NULL ||
                                 weft_task_state(g_child) != WEFT_TASK_SUSPENDED);
         i++) {
        rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    g_cancel_rc = weft_task_cancel(g_parent);
    return 0;
}

static void check_parent_cancel(int start_child_first)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(
        weft_spawn_ex(&loop, parent_body, weft_int(start_child_first), &big_stack, &g_parent));
    ASSERT_OK(weft_spawn(&loop, cancel_parent_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));

    EXPECT_OK(g_cancel_rc);
    EXPECT_RC(g_child_first_rc, UV_ECANCELED);
    EXPECT_OK(g_child_cleanup_rc);
    EXPECT_RC(g_parent_await_rc, UV_ECANCELED);
    cr_expect(g_parent_saw_child_finished, "the parent resumed before its child finished");
    cr_expect_eq(g_parent_saw_child_state, WEFT_TASK_CANCELLED);
    EXPECT_STATE(g_child, WEFT_TASK_CANCELLED);
    EXPECT_STATE(g_parent, WEFT_TASK_CANCELLED);
    weft_task_unref(g_child);
    weft_task_unref(g_parent);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, cancel_a_parent_awaiting_a_started_child_cancels_the_child_and_waits_for_it,
     .timeout = TEST_TIMEOUT_S)
{
    check_parent_cancel(1);
}

Test(task, cancel_a_parent_awaiting_an_inline_child_cancels_the_child_and_waits_for_it,
     .timeout = TEST_TIMEOUT_S)
{
    check_parent_cancel(0);
}

/* A child that catches the cancel its awaiting parent passed on and then
 * finishes normally (with a result): the parent's await still returns
 * UV_ECANCELED once the child is done, with no result (task.h). */
static weft_task_t *g_absorb_parent;
static weft_task_t *g_absorb_child;
static int g_absorb_awaiting;
static int g_absorb_sleep_rc = 1;
static int g_absorb_await_rc = 1;
static void *g_absorb_value;

static int absorbing_child_body(void *arg, void **result)
{
    (void)arg;
    g_absorb_sleep_rc = weft_sleep(HOUR_MS);
    *result = weft_int(5);
    return 0; /* the cancel is caught and dropped */
}

static int absorb_parent_body(void *arg, void **result)
{
    (void)result;
    int rc = weft_spawn(NULL, absorbing_child_body, NULL, &g_absorb_child);
    if (rc != 0) {
        return rc;
    }
    if (weft_to_int(arg) != 0 && (rc = weft_yield()) != 0) { /* start the child first */
        return rc;
    }
    g_absorb_awaiting = 1;
    g_absorb_await_rc = weft_await_task(g_absorb_child, &g_absorb_value);
    return g_absorb_await_rc;
}

static int cancel_absorb_parent_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < 1000 && !(g_absorb_awaiting && g_absorb_child != NULL &&
                                  weft_task_state(g_absorb_child) == WEFT_TASK_SUSPENDED);
         i++) {
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    g_cancel_rc = weft_task_cancel(g_absorb_parent);
    return 0;
}

static void check_child_absorbs_cancel(int start_child_first)
{
    weft_loop_t loop;
    g_absorb_child = NULL;
    g_absorb_awaiting = 0;
    g_absorb_sleep_rc = g_absorb_await_rc = g_cancel_rc = 1;
    g_absorb_value = weft_int(-1);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn_ex(&loop, absorb_parent_body, weft_int(start_child_first), &big_stack,
                            &g_absorb_parent));
    ASSERT_OK(weft_spawn(&loop, cancel_absorb_parent_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    EXPECT_RC(g_absorb_sleep_rc, UV_ECANCELED);
    EXPECT_STATE(g_absorb_child, WEFT_TASK_DONE);
    EXPECT_RC(g_absorb_await_rc, UV_ECANCELED);
    cr_expect_null(g_absorb_value, "the cancelled await gave the child's result");
    EXPECT_STATE(g_absorb_parent, WEFT_TASK_CANCELLED);
    weft_task_unref(g_absorb_child);
    weft_task_unref(g_absorb_parent);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, a_cancelled_parent_whose_started_child_absorbs_the_cancel_still_gets_ecanceled,
     .timeout = TEST_TIMEOUT_S)
{
    check_child_absorbs_cancel(1);
}

Test(task, a_cancelled_parent_whose_inline_child_absorbs_the_cancel_still_gets_ecanceled,
     .timeout = TEST_TIMEOUT_S)
{
    check_child_absorbs_cancel(0);
}

/* --- yield and sleep ------------------------------------------------------ */

static char g_log[64];
static int g_nlog;
static int g_yield_errors;

static int alternate_body(void *arg, void **result)
{
    (void)result;
    char me = (char)weft_to_int(arg);
    for (int i = 0; i < 10; i++) {
        if (g_nlog < (int)sizeof g_log - 1) {
            g_log[g_nlog++] = me;
        }
        if (weft_yield() != 0) {
            g_yield_errors++;
        }
    }
    return 0;
}

Test(task, yield_interleaves_two_tasks_in_strict_alternation, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    int a = 0, b = 0;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, alternate_body, weft_int('A'), NULL));
    ASSERT_OK(weft_spawn(&loop, alternate_body, weft_int('B'), NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_log_info("order: %s", g_log);
    cr_expect_eq(g_nlog, 20);
    cr_expect_eq(g_yield_errors, 0);
    for (int i = 0; i < g_nlog; i++) {
        a += g_log[i] == 'A';
        b += g_log[i] == 'B';
        if (i > 0) {
            cr_expect_neq(g_log[i], g_log[i - 1], "no alternation at %d: %s", i, g_log);
        }
    }
    cr_expect_eq(a, 10);
    cr_expect_eq(b, 10);
    EXPECT_OK(weft_loop_close(&loop));
}

static int g_early;
static int g_sleep_errors;

static int sleep_checked_body(void *arg, void **result)
{
    (void)result;
    uint64_t ms = (uint64_t)weft_to_int(arg);
    uint64_t t0 = weft_loop_now_ns();
    int rc = weft_sleep(ms);
    uint64_t t1 = weft_loop_now_ns();
    if (rc != 0) {
        g_sleep_errors++;
    }
    if (t1 - t0 < ms * 1000000u) {
        g_early++;
        cr_log_error("sleep(%llu) woke after %llu ns", (unsigned long long)ms,
                     (unsigned long long)(t1 - t0));
    }
    return rc;
}

Test(task, sleep_wakes_no_earlier_than_asked, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    static const int ms[] = {1, 2, 3, 7, 10, 25};
    ASSERT_OK(weft_loop_init(&loop, NULL));
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        ASSERT_OK(weft_spawn(&loop, sleep_checked_body, weft_int(ms[i]), NULL));
    }
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_sleep_errors, 0);
    cr_expect_eq(g_early, 0, "%d sleeps woke early", g_early);
    EXPECT_OK(weft_loop_close(&loop));
}

static int sleep_zero_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_log[g_nlog++] = 'a';
    int rc = weft_sleep(0);
    g_log[g_nlog++] = 'c';
    return rc;
}

static int log_b_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_log[g_nlog++] = 'b';
    return 0;
}

Test(task, sleep_zero_returns_0_and_lets_other_tasks_run, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, sleep_zero_body, NULL, &t));
    ASSERT_OK(weft_spawn(&loop, log_b_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    /* "abc"; under the shuffle b may also start first ("bac"): either way
     * the sleeper resumes only after b ran. */
    cr_expect(strcmp(g_log, "abc") == 0 || strcmp(g_log, "bac") == 0, "order %s", g_log);
    EXPECT_STATE(t, WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* Many short sleeps in a row: each one sends the loop to sleep in the poller
 * with a timer under a millisecond away, the case where a poll that misses
 * its timer would hang (caught by the test timeout). */
#define SHORT_SLEEPS 3000
static int g_short_sleeps_done;

static int short_sleeps_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < SHORT_SLEEPS; i++) {
        uint64_t t0 = weft_loop_now_ns();
        int rc = weft_sleep(1);
        if (rc != 0) {
            g_sleep_errors++;
            return rc;
        }
        if (weft_loop_now_ns() - t0 < 1000000u) {
            g_early++;
        }
        g_short_sleeps_done++;
    }
    return 0;
}

Test(task, thousands_of_1ms_sleeps_in_a_row_all_wake, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, short_sleeps_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_short_sleeps_done, SHORT_SLEEPS);
    cr_expect_eq(g_sleep_errors, 0);
    cr_expect_eq(g_early, 0, "%d sleeps woke early", g_early);
    EXPECT_OK(weft_loop_close(&loop));
}

/* ThreadSanitizer counts each fiber (one per started stack) as a thread and
 * dies past 8,128 of them, so its build parks fewer. */
#if defined(__SANITIZE_THREAD__)
#define SLEEPERS 4000
#else
#define SLEEPERS 100000
#endif
static int g_sleepers_done;

static int counted_sleep_body(void *arg, void **result)
{
    (void)result;
    uint64_t ms = (uint64_t)weft_to_int(arg);
    uint64_t t0 = weft_loop_now_ns();
    int rc = weft_sleep(ms);
    if (rc != 0) {
        g_sleep_errors++;
    }
    if (weft_loop_now_ns() - t0 < ms * 1000000u) {
        g_early++;
    }
    g_sleepers_done++;
    return rc;
}

Test(task, hundred_thousand_concurrent_sleepers_all_finish_and_the_loop_closes_clean,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_stats_t st;
    uint32_t lcg = 42;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    for (int i = 0; i < SLEEPERS; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        int ms = 1 + (int)((lcg >> 16) % 50);
        ASSERT_OK(weft_spawn(&loop, counted_sleep_body, weft_int(ms), NULL));
    }
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_sleepers_done, SLEEPERS);
    cr_expect_eq(g_sleep_errors, 0);
    cr_expect_eq(g_early, 0, "%d sleepers woke early", g_early);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_finished, SLEEPERS);
    cr_expect_eq(st.tasks_live, 0);
    cr_expect_eq(st.stacks_in_use, 0);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- await with a timeout ------------------------------------------------- */

static weft_future_t *g_f;
static int g_zero_rc = 1, g_intime_rc = 1, g_late_rc = 1, g_done_zero_rc = 1;
static void *g_intime_value, *g_done_zero_value;
static uint64_t g_late_waited_ns;
static int g_late_left_pending;

static void complete_f_cb(void *arg)
{
    int rc = weft_future_set_result(g_f, arg);
    cr_expect_eq(rc, 0);
}

static int timeouts_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_future_t *pending = NULL;
    int rc = weft_future_new(NULL, &pending);
    if (rc != 0) {
        return rc;
    }
    /* 0 on a pending future: do not wait. */
    g_zero_rc = weft_await_timeout(pending, 0, NULL);

    /* Done well within the timeout: its result, and the hour-long timer must
     * not keep the loop alive afterwards. */
    rc = weft_call_later(weft_loop_current(), 2, complete_f_cb, weft_int(55), NULL);
    if (rc != 0) {
        return rc;
    }
    g_intime_rc = weft_await_timeout(g_f, HOUR_MS, &g_intime_value);

    /* Times out: the future is left pending, not cancelled. */
    uint64_t t0 = weft_loop_now_ns();
    g_late_rc = weft_await_timeout(pending, 5, NULL);
    g_late_waited_ns = weft_loop_now_ns() - t0;
    g_late_left_pending = !weft_future_done(pending) && !weft_future_cancelled(pending);

    /* A done future with timeout 0 gives its result. */
    g_done_zero_rc = weft_await_timeout(g_f, 0, &g_done_zero_value);

    rc = weft_future_set_result(pending, NULL); /* still completable */
    weft_future_unref(pending);
    return rc;
}

Test(task, await_timeout_gives_etimedout_or_the_result_and_leaves_the_future_pending,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &g_f));
    ASSERT_OK(weft_spawn(&loop, timeouts_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_zero_rc, UV_ETIMEDOUT);
    EXPECT_OK(g_intime_rc);
    cr_expect_eq(weft_to_int(g_intime_value), 55);
    EXPECT_RC(g_late_rc, UV_ETIMEDOUT);
    cr_expect_geq(g_late_waited_ns, 5000000u, "gave up after %llu ns, asked 5 ms",
                  (unsigned long long)g_late_waited_ns);
    cr_expect(g_late_left_pending, "a timed-out await touched the future");
    EXPECT_OK(g_done_zero_rc);
    cr_expect_eq(weft_to_int(g_done_zero_value), 55);
    EXPECT_STATE(t, WEFT_TASK_DONE);
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    weft_future_unref(g_f);
    EXPECT_OK(weft_loop_close(&loop));
}

/* WEFT_FOREVER (and any timeout too long to represent) is no timeout for
 * both await forms: a future completed first gives its result at once, and
 * a pending one completed by a callback is waited for. Nothing here can
 * wait forever: every future is completed before or while it is awaited. */
static int g_fv_rc[8];
static void *g_fv_value[8];

static int forever_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_future_t *done = NULL, *later = NULL;
    weft_future_token_t tok;
    int rc = weft_future_new(NULL, &done);
    if (rc == 0)
        rc = weft_future_set_result(done, weft_int(42));
    if (rc == 0)
        rc = weft_future_new(NULL, &later);
    if (rc != 0)
        return rc;
    g_fv_rc[0] = weft_await_timeout(done, WEFT_FOREVER, &g_fv_value[0]);
    g_fv_rc[1] = weft_await_timeout(done, WEFT_FOREVER - 1, &g_fv_value[1]); /* too long */
    g_f = later;
    rc = weft_call_soon(NULL, complete_f_cb, weft_int(7), NULL);
    if (rc != 0)
        return rc;
    g_fv_rc[2] = weft_await_timeout(later, WEFT_FOREVER, &g_fv_value[2]); /* waits */
    rc = weft_future_token(done, &tok);
    if (rc != 0)
        return rc;
    g_fv_rc[3] = weft_await_token_timeout(tok, WEFT_FOREVER, &g_fv_value[3]);
    rc = weft_future_token(done, &tok);
    if (rc != 0)
        return rc;
    g_fv_rc[4] = weft_await_token_timeout(tok, UINT64_MAX / 2, &g_fv_value[4]);
    weft_future_unref(done);
    weft_future_unref(later);
    return 0;
}

Test(task, await_timeout_and_await_token_timeout_take_weft_forever_as_no_timeout,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, forever_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    const intptr_t want[5] = {42, 42, 7, 42, 42};
    for (int i = 0; i < 5; i++) {
        EXPECT_OK(g_fv_rc[i]);
        cr_expect_eq(weft_to_int(g_fv_value[i]), want[i], "await %d", i);
    }
    weft_loop_stats_t st;
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tokens_live, 0, "a token was neither used nor given back");
    EXPECT_OK(weft_loop_close(&loop));
}

/* weft_sleep(WEFT_FOREVER) sleeps until cancelled (no timer involved). */
static int g_sleep_forever_rc = 1;

static int sleep_forever_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_sleep_forever_rc = weft_sleep(WEFT_FOREVER);
    return g_sleep_forever_rc;
}

static int cancel_sleeper_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *s = NULL;
    int rc = weft_spawn(NULL, sleep_forever_body, NULL, &s);
    if (rc != 0)
        return rc;
    rc = yield_until_suspended(s);
    if (rc == 0) {
        cr_expect_eq(weft_task_state(s), WEFT_TASK_SUSPENDED);
        rc = weft_task_cancel(s);
    }
    if (rc == 0)
        rc = weft_await_task(s, NULL) == UV_ECANCELED ? 0 : -1;
    weft_task_unref(s);
    return rc;
}

Test(task, sleep_forever_sleeps_until_cancelled, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, cancel_sleeper_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, NULL));
    EXPECT_RC(g_sleep_forever_rc, UV_ECANCELED);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- inline start ----------------------------------------------------------- */

static weft_task_t *g_inline_child_handle;
static weft_task_t *g_inline_child_current;
static weft_task_t *g_inline_parent_current;
static int g_inline_rc = 1;
static void *g_inline_value;

static int inline_child_body(void *arg, void **result)
{
    (void)arg;
    g_inline_child_current = weft_task_current();
    *result = weft_int(42);
    return 0;
}

static int inline_parent_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_spawn(NULL, inline_child_body, NULL, &g_inline_child_handle);
    if (rc != 0) {
        return rc;
    }
    g_inline_rc = weft_await_task(g_inline_child_handle, &g_inline_value);
    g_inline_parent_current = weft_task_current();
    weft_task_unref(g_inline_child_handle);
    return 0;
}

Test(task, awaiting_a_not_started_child_runs_it_inline_with_its_own_identity,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *parent;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn_ex(&loop, inline_parent_body, NULL, &big_stack, &parent));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_inline_rc);
    cr_expect_eq(weft_to_int(g_inline_value), 42);
    cr_expect_eq(g_inline_child_current, g_inline_child_handle,
                 "inside the inline child weft_task_current() is not the child");
    cr_expect_neq(g_inline_child_current, parent);
    cr_expect_eq(g_inline_parent_current, parent, "the parent lost its identity after the child");
    weft_loop_stats(&loop, &st);
    cr_expect_gt(st.tasks_inline, 0, "the child was not started inline");
    weft_task_unref(parent);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- misuse --------------------------------------------------------------- */

static int g_cb_yield_rc = 1, g_cb_sleep_rc = 1, g_cb_await_rc = 1;

static void misuse_cb(void *arg)
{
    g_cb_yield_rc = weft_yield();
    g_cb_sleep_rc = weft_sleep(1);
    g_cb_await_rc = weft_await((weft_future_t *)arg, NULL);
}

Test(task, suspending_outside_a_task_returns_enotask, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    /* No loop running. */
    EXPECT_RC(weft_yield(), WEFT_ENOTASK);
    EXPECT_RC(weft_sleep(1), WEFT_ENOTASK);
    EXPECT_RC(weft_await(f, NULL), WEFT_ENOTASK);
    EXPECT_RC(weft_await_timeout(f, 1, NULL), WEFT_ENOTASK);
    /* A callback on a running loop is not a task either. */
    ASSERT_OK(weft_call_soon(&loop, misuse_cb, f, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_cb_yield_rc, WEFT_ENOTASK);
    EXPECT_RC(g_cb_sleep_rc, WEFT_ENOTASK);
    EXPECT_RC(g_cb_await_rc, WEFT_ENOTASK);
    cr_expect_not(weft_future_done(f));
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

static int g_self_await_rc = 1, g_self_future_rc = 1, g_null_await_rc = 1;

static int await_self_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_self_await_rc = weft_await_task(weft_task_current(), NULL);
    g_self_future_rc = weft_await(weft_task_future(weft_task_current()), NULL);
    g_null_await_rc = weft_await(NULL, NULL);
    return 0;
}

Test(task, a_task_awaiting_itself_gets_edeadlk_and_awaiting_null_gets_einval,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, await_self_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_self_await_rc, WEFT_EDEADLK);
    EXPECT_RC(g_self_future_rc, WEFT_EDEADLK);
    EXPECT_RC(g_null_await_rc, UV_EINVAL);
    EXPECT_STATE(t, WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, spawn_rejects_null_fn_no_loop_and_a_closed_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop, closed;
    weft_task_t *t = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_RC(weft_spawn(&loop, NULL, NULL, &t), UV_EINVAL);
    EXPECT_RC(weft_spawn(NULL, return_arg_body, NULL, &t), UV_EINVAL); /* no current loop */
    ASSERT_OK(weft_loop_init(&closed, NULL));
    ASSERT_OK(weft_loop_close(&closed));
    EXPECT_RC(weft_spawn(&closed, return_arg_body, NULL, &t), WEFT_ECLOSED);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, state_name_is_set_and_distinct_for_every_state, .timeout = TEST_TIMEOUT_S)
{
    static const weft_task_state_t states[] = {WEFT_TASK_CREATED,   WEFT_TASK_RUNNING,
                                               WEFT_TASK_SUSPENDED, WEFT_TASK_DONE,
                                               WEFT_TASK_FAILED,    WEFT_TASK_CANCELLED};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        const char *name = weft_task_state_name(states[i]);
        cr_assert_not_null(name, "state %d has no name", (int)states[i]);
        for (size_t j = 0; j < i; j++) {
            cr_expect_str_neq(name, weft_task_state_name(states[j]));
        }
    }
}

/* --- weft_run ------------------------------------------------------------- */

static int run_main_result_body(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(42);
    return 0;
}

Test(run, returns_main_result, .timeout = TEST_TIMEOUT_S)
{
    void *v = NULL;
    EXPECT_OK(weft_run(run_main_result_body, NULL, &v));
    cr_expect_eq(weft_to_int(v), 42);
    EXPECT_OK(weft_run(run_main_result_body, NULL, NULL));
    cr_expect_null(weft_loop_current());
}

Test(run, returns_main_error, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_RC(weft_run(fail_with_message_body, NULL, NULL), UV_EIO);
}

static int g_leftover_sleep_rc = 1;
static int g_leftover_await_rc = 1;

static int leftover_sleeper_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_leftover_sleep_rc = weft_sleep(HOUR_MS);
    return g_leftover_sleep_rc;
}

static int leftover_awaiter_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_future_t *never = NULL;
    int rc = weft_future_new(NULL, &never);
    if (rc != 0) {
        return rc;
    }
    g_leftover_await_rc = weft_await(never, NULL);
    weft_future_unref(never);
    return g_leftover_await_rc;
}

static int main_leaving_tasks_body(void *arg, void **result)
{
    (void)arg;
    int rc = weft_spawn(NULL, leftover_sleeper_body, NULL, NULL);
    if (rc == 0) {
        rc = weft_spawn(NULL, leftover_awaiter_body, NULL, NULL);
    }
    if (rc == 0) {
        rc = weft_sleep(1); /* both leftovers are now suspended */
    }
    *result = weft_int(9);
    return rc;
}

Test(run, cancels_tasks_left_when_main_returns_and_closes_the_loop, .timeout = TEST_TIMEOUT_S)
{
    void *v = NULL;
    EXPECT_OK(weft_run(main_leaving_tasks_body, NULL, &v));
    cr_expect_eq(weft_to_int(v), 9);
    EXPECT_RC(g_leftover_sleep_rc, UV_ECANCELED);
    EXPECT_RC(g_leftover_await_rc, UV_ECANCELED);
}

static int g_nested_run_rc = 1;

static int nested_run_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_nested_run_rc = weft_run(run_main_result_body, NULL, NULL);
    return 0;
}

Test(run, inside_a_running_task_returns_ereentrant, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    EXPECT_OK(weft_run(nested_run_body, NULL, NULL));
    EXPECT_RC(g_nested_run_rc, WEFT_EREENTRANT);

    g_nested_run_rc = 1;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, nested_run_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(g_nested_run_rc, WEFT_EREENTRANT);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(run, run_opts_accepts_loop_options, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_opts_t opts;
    void *v = NULL;
    memset(&opts, 0, sizeof opts);
    opts.stack_size = 128 * 1024;
    EXPECT_OK(weft_run_ex(run_main_result_body, NULL, &opts, &v));
    cr_expect_eq(weft_to_int(v), 42);
    opts.stack_mode = WEFT_STACK_COMPACT;
    v = NULL;
    EXPECT_OK(weft_run_ex(run_main_result_body, NULL, &opts, &v));
    cr_expect_eq(weft_to_int(v), 42);
}

/* --- a long chain of inline starts -------------------------------------------------
 * Each task spawns one child and awaits it, 1,000 deep. Inline starts pile up
 * on one stack until the room left is less than a child's full stack size;
 * from there children must get stacks of their own. The answer proves every
 * level ran once. */

#define CHAIN_DEPTH 1000

static int chain_body(void *arg, void **result)
{
    intptr_t depth = weft_to_int(arg);
    if (depth == 0) {
        *result = weft_int(0);
        return 0;
    }
    weft_task_t *child;
    int rc = weft_spawn(NULL, chain_body, weft_int(depth - 1), &child);
    if (rc != 0) {
        return rc;
    }
    void *v = NULL;
    rc = weft_await_task(child, &v);
    weft_task_unref(child);
    if (rc != 0) {
        return rc;
    }
    *result = weft_int(weft_to_int(v) + depth);
    return 0;
}

Test(task, a_thousand_deep_chain_of_awaited_children_starts_inline_until_the_stack_is_full,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    weft_loop_stats_t st;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, chain_body, weft_int(CHAIN_DEPTH), &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, &v));
    cr_expect_eq(weft_to_int(v), (intptr_t)CHAIN_DEPTH * (CHAIN_DEPTH + 1) / 2);
    weft_loop_stats(&loop, &st);
    cr_expect_gt(st.tasks_inline, 0, "no child started inline");
    cr_expect_lt(st.tasks_inline, CHAIN_DEPTH,
                 "every child started inline: the room check never "
                 "fell back to a stack of its own");
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(task, a_thousand_deep_chain_works_on_compact_stacks_too, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    weft_loop_opts_t opts = {.stack_mode = WEFT_STACK_COMPACT};
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn(&loop, chain_body, weft_int(CHAIN_DEPTH), &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, &v));
    cr_expect_eq(weft_to_int(v), (intptr_t)CHAIN_DEPTH * (CHAIN_DEPTH + 1) / 2);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- warnings: errors nobody retrieved, slow tasks ------------------------------ */

static int fail_eio_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_fail(UV_EIO, "nobody reads this");
}

static int cancelled_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return UV_ECANCELED;
}

static int await_and_ignore_body(void *arg, void **result)
{
    (void)result;
    weft_task_t *child;
    int rc = weft_spawn(NULL, fail_eio_body, NULL, &child);
    if (rc != 0)
        return rc;
    rc = weft_await_task(child, NULL); /* read, even if then ignored */
    weft_task_unref(child);
    *(int *)arg = rc;
    return 0;
}

Test(task, a_failure_nobody_retrieved_is_counted_and_a_read_one_is_not, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.quiet = true};
    weft_loop_stats_t st;
    weft_task_t *read_later;
    weft_future_t *f, *g;
    int awaited_rc = 0;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    /* Unread: a detached failing task, and a failed future released unread. */
    ASSERT_OK(weft_spawn(&loop, fail_eio_body, NULL, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_error(f, UV_EPIPE, "gone"));
    weft_future_unref(f);
    /* Read: by weft_task_result, by an await, by weft_future_result. */
    ASSERT_OK(weft_spawn(&loop, fail_eio_body, NULL, &read_later));
    ASSERT_OK(weft_spawn(&loop, await_and_ignore_body, &awaited_rc, NULL));
    ASSERT_OK(weft_future_new(&loop, &g));
    EXPECT_OK(weft_future_set_error(g, UV_EPIPE, "read"));
    EXPECT_RC(weft_future_result(g, NULL), UV_EPIPE);
    weft_future_unref(g);
    /* Not an error: a cancelled task. */
    ASSERT_OK(weft_spawn(&loop, cancelled_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(weft_task_result(read_later, NULL), UV_EIO);
    weft_task_unref(read_later);
    EXPECT_RC(awaited_rc, UV_EIO);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.errors_unretrieved, 2, "%llu unretrieved errors counted, want 2",
                 (unsigned long long)st.errors_unretrieved);
    EXPECT_OK(weft_loop_close(&loop));
}

static int busy_30ms_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    uint64_t end = weft_loop_now_ns() + 30u * 1000000u;
    while (weft_loop_now_ns() < end) {
    }
    return weft_yield();
}

Test(task, a_task_holding_the_loop_past_slow_task_ms_is_counted, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_opts_t on = {.slow_task_ms = 5, .quiet = true}, off = {.quiet = true};
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, &on));
    ASSERT_OK(weft_spawn(&loop, busy_30ms_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    weft_loop_stats(&loop, &st);
    cr_expect_geq(st.slow_tasks, 1, "a 30 ms busy task was not reported at 5 ms");
    EXPECT_OK(weft_loop_close(&loop));

    ASSERT_OK(weft_loop_init(&loop, &off));
    ASSERT_OK(weft_spawn(&loop, busy_30ms_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.slow_tasks, 0, "reported with the check off");
    EXPECT_OK(weft_loop_close(&loop));
}

/*
 * tests/group_test.c - task groups (weft/group.h): wait for every child,
 * results read through weft_group_task, the first failure cancelling the
 * siblings and the owner, cancelling the owner while it waits, a timeout
 * scope around a group, spawning into failed and closed groups, close with
 * live children, children spawning into their own group, leave and
 * WEFT_GROUP, misuse, and a thousand children.
 *
 * Ordering comes from weft_yield/weft_sleep only. A child that must be
 * cancelled sleeps SHORT_MS: if nobody cancels it, its sleep returns 0 and
 * the test fails on that code (no test measures time).
 *
 * Checks inside tasks use T_RC/T_EQ, which only record a mismatch (a task's
 * stack is no place for Criterion's reporting); run_main() reports them once
 * the loop has stopped. Every loop is closed and expected to return 0.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <weft/weft.h>

#include "record_harness.h"

/* Run main(arg) as the only top-level task of a fresh (quiet) loop; expect
 * it to finish with 0, no task left, no failure left unretrieved (children's
 * failures count as retrieved), and the loop to close. */
/* opts.shuffle of the next run: -1 for tests of one FIFO interleaving,
 * which the ready-queue shuffle leaves open (docs/core.md, "Debug mode"). */
static int g_shuffle;

static void run_main_mode(weft_task_fn main, void *arg, weft_stack_mode_t mode)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.quiet = true, .stack_mode = mode, .shuffle = g_shuffle};
    weft_task_t *t = NULL;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn(&loop, main, arg, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0, "%llu tasks still live", (unsigned long long)st.tasks_live);
    cr_expect_eq(st.errors_unretrieved, 0, "%llu failures counted as never retrieved",
                 (unsigned long long)st.errors_unretrieved);
    EXPECT_OK(weft_loop_close(&loop));
    report_misses();
}

#define run_main(main, arg) run_main_mode((main), (arg), WEFT_STACK_GUARDED)

/* --- children ------------------------------------------------------------- */

static int g_finished;

/* Yields i % 3 times, then finishes with i * 10. */
static int value_body(void *arg, void **result)
{
    intptr_t i = weft_to_int(arg);
    for (intptr_t k = 0; k < i % 3; k++) {
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    g_finished++;
    *result = weft_int(i * 10);
    return 0;
}

/* Sleeps SHORT_MS into *slot and ends with that code. */
TASK_FN(sleeper_body)
{
    int *slot = arg;
    *slot = weft_sleep(SHORT_MS);
    return *slot;
}

/* Yields once (the siblings start sleeping meanwhile), then fails. */
TASK_FN(fail_after_yield_body)
{
    int rc = weft_yield();
    return rc != 0 ? rc : (int)weft_to_int(arg);
}

TASK_FN(fail_now_body)
{
    return (int)weft_to_int(arg);
}

/* Gets cancelled (sleep into *slot), then fails with UV_EPIPE. */
TASK_FN(cancelled_then_fails_body)
{
    int *slot = arg;
    *slot = weft_sleep(SHORT_MS);
    return UV_EPIPE;
}

TASK_FN(bump_body)
{
    (*(int *)arg)++;
    return 0;
}

TASK_FN(sleep_1ms_body)
{
    return weft_sleep(1);
}

/* --- all children succeed --------------------------------------------------- */

TASK_FN(all_succeed_main)
{
    weft_group_t g;
    weft_task_t *out[4] = {NULL};
    const weft_task_opts_t named = {.name = "named-kid", .stack_size = 0};
    T_OK(weft_group_init(&g));
    T_EQ(weft_group_size(&g), 0);
    T_EQ(weft_group_live(&g), 0);
    T_OK(weft_group_error(&g));
    T_EQ(weft_group_failed_index(&g), SIZE_MAX);
    T_PTR(weft_group_task(&g, 0), NULL);
    for (intptr_t i = 0; i < 3; i++) {
        T_OK(weft_group_spawn(&g, value_body, weft_int(i), &out[i]));
    }
    T_OK(weft_group_spawn_ex(&g, value_body, weft_int(3), &named, &out[3]));
    T_EQ(weft_group_size(&g), 4);
    T_EQ(weft_group_live(&g), 4); /* not started yet, but not finished */
    T_EQ(g_finished, 0);

    T_OK(weft_group_wait(&g));
    T_EQ(g_finished, 4);
    T_EQ(weft_group_live(&g), 0);
    T_EQ(weft_group_size(&g), 4);
    T_OK(weft_group_error(&g));
    T_EQ(weft_group_failed_index(&g), SIZE_MAX);
    for (size_t i = 0; i < 4; i++) {
        void *v = NULL;
        weft_task_t *t = weft_group_task(&g, i);
        T_PTR(t, out[i]);
        if (t == NULL) {
            continue;
        }
        T_EQ(weft_task_state(t), WEFT_TASK_DONE);
        T_OK(weft_task_result(t, &v));
        T_EQ(weft_to_int(v), (intptr_t)i * 10);
    }
    T_PTR(weft_group_task(&g, 4), NULL);
    T_EQ(out[3] != NULL && strcmp(weft_task_name(out[3]), "named-kid") == 0, 1);
    /* The owner was not left cancelled. */
    T_OK(weft_yield());
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, wait_returns_0_once_every_child_finished_and_their_results_stay_readable,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(all_succeed_main, NULL);
}

/* --- failures --------------------------------------------------------------- */

TASK_FN(first_failure_main)
{
    weft_group_t g;
    int s0 = NOT_SET, s2 = NOT_SET;
    void *v = NULL;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, sleeper_body, &s0, NULL));
    T_OK(weft_group_spawn(&g, fail_after_yield_body, weft_int(UV_EIO), NULL));
    T_OK(weft_group_spawn(&g, sleeper_body, &s2, NULL));
    T_RC(weft_group_wait(&g), UV_EIO);
    T_RC(s0, UV_ECANCELED);
    T_RC(s2, UV_ECANCELED);
    T_EQ(weft_group_live(&g), 0);
    T_RC(weft_group_error(&g), UV_EIO);
    T_EQ(weft_group_failed_index(&g), 1);
    T_EQ(weft_task_state(weft_group_task(&g, 0)), WEFT_TASK_CANCELLED);
    T_EQ(weft_task_state(weft_group_task(&g, 1)), WEFT_TASK_FAILED);
    T_EQ(weft_task_state(weft_group_task(&g, 2)), WEFT_TASK_CANCELLED);
    T_RC(weft_task_result(weft_group_task(&g, 1), &v), UV_EIO);
    T_RC(weft_task_result(weft_group_task(&g, 2), &v), UV_ECANCELED);
    /* The owner, waiting when the child failed, is not left cancelled. */
    T_OK(weft_yield());
    T_OK(weft_sleep(1));
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, the_first_failure_cancels_the_siblings_and_wait_returns_its_code,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(first_failure_main, NULL);
}

TASK_FN(second_failure_main)
{
    weft_group_t g;
    int s0 = NOT_SET, s1 = NOT_SET;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, sleeper_body, &s0, NULL));
    T_OK(weft_group_spawn(&g, cancelled_then_fails_body, &s1, NULL));
    T_OK(weft_group_spawn(&g, fail_after_yield_body, weft_int(UV_EIO), NULL));
    T_RC(weft_group_wait(&g), UV_EIO);
    T_RC(s0, UV_ECANCELED);
    T_RC(s1, UV_ECANCELED);
    /* Child 1 failed too, later: readable through its task... */
    T_EQ(weft_task_state(weft_group_task(&g, 1)), WEFT_TASK_FAILED);
    T_RC(weft_task_result(weft_group_task(&g, 1), NULL), UV_EPIPE);
    /* ...but the group reports the first failure. */
    T_RC(weft_group_error(&g), UV_EIO);
    T_EQ(weft_group_failed_index(&g), 2);
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, a_later_second_failure_is_readable_through_its_task_but_the_group_reports_the_first,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(second_failure_main, NULL);
}

TASK_FN(owner_busy_main)
{
    weft_group_t g;
    int s0 = NOT_SET;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, sleeper_body, &s0, NULL));
    T_OK(weft_group_spawn(&g, fail_after_yield_body, weft_int(UV_EIO), NULL));
    /* Busy elsewhere when the child fails: the group cancels the owner. */
    T_RC(weft_sleep(SHORT_MS), UV_ECANCELED);
    T_RC(weft_group_error(&g), UV_EIO);
    /* Its wait still reports the child's failure, not the cancel. */
    T_RC(weft_group_wait(&g), UV_EIO);
    T_RC(s0, UV_ECANCELED);
    T_EQ(weft_group_failed_index(&g), 1);
    T_OK(weft_yield());
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, an_owner_busy_elsewhere_is_cancelled_and_its_later_wait_returns_the_child_error,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(owner_busy_main, NULL);
}

/* Completes the future (waking the owner), then fails at once. */
TASK_FN(wake_then_fail_body)
{
    int rc = weft_future_set_result(arg, weft_int(1));
    return rc != 0 ? rc : UV_EIO;
}

/* Hands the owner a semaphore permit (its acquire is granted), then fails. */
TASK_FN(grant_then_fail_body)
{
    int rc = weft_sem_release(arg);
    return rc != 0 ? rc : UV_EIO;
}

/* The child fails while the owner is not (or no longer) suspended in a way
 * the cancel can interrupt: it shows at the owner's suspension or is still
 * pending when the owner reaches wait, which withdraws it. Four routes: the
 * owner sits in the ready queue (yield), was just woken by a future
 * (await), awaits the failing child itself (started inline), or was just
 * granted a semaphore permit (sync.h: the acquire succeeds and the cancel
 * waits for the next suspension). */
TASK_FN(pending_cancel_main)
{
    for (int route = 0; route < 4; route++) {
        weft_group_t g;
        weft_future_t *f = NULL;
        weft_task_t *child = NULL;
        weft_sem_t sem;
        int rc = NOT_SET;
        T_OK(weft_group_init(&g));
        if (route == 0) {
            T_OK(weft_group_spawn(&g, fail_now_body, weft_int(UV_EIO), NULL));
            rc = weft_yield();
        } else if (route == 1) {
            T_OK(weft_future_new(NULL, &f));
            T_OK(weft_group_spawn(&g, wake_then_fail_body, f, NULL));
            rc = f != NULL ? weft_await(f, NULL) : 0;
        } else if (route == 2) {
            T_OK(weft_group_spawn(&g, fail_now_body, weft_int(UV_EIO), &child));
            rc = child != NULL ? weft_await_task(child, NULL) : 0;
            rc = rc == UV_EIO ? 0 : rc; /* the child's own outcome */
        } else {
            T_OK(weft_sem_init(&sem, 0));
            T_OK(weft_group_spawn(&g, grant_then_fail_body, &sem, NULL));
            rc = weft_sem_acquire(&sem);
        }
        T_EQ(rc == 0 || rc == UV_ECANCELED, 1);
        T_RC(weft_group_wait(&g), UV_EIO);
        /* Withdrawn at wait: nothing is left to hit a later suspension. */
        T_OK(weft_yield());
        T_OK(weft_sleep(1));
        T_OK(weft_group_close(&g));
        if (f != NULL) {
            weft_future_unref(f);
        }
        if (route == 3) {
            T_OK(weft_sem_close(&sem));
        }
    }
    return 0;
}

Test(group, an_owner_cancel_still_pending_when_it_reaches_wait_is_withdrawn,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(pending_cancel_main, NULL);
}

/* An external cancel of the owner and the group's own (a child failed) in
 * the same turn, while the owner is in the ready queue (route 0, 2) or
 * asleep (route 1): the owner sees one UV_ECANCELED. The group withdraws only
 * the request it made, so the external one is not lost: wait (or leave,
 * route 2) returns UV_ECANCELED and the owner, which returns that, ends
 * cancelled. The child's failure stays readable. */
TASK_FN(cancel_owner_now_body)
{
    return weft_task_cancel(arg);
}

typedef struct merged_ctx {
    int suspend_rc, group_rc, error, after_rc;
} merged_ctx_t;

static merged_ctx_t g_mc[3];

TASK_FN(merged_cancel_owner_body)
{
    intptr_t route = weft_to_int(arg);
    merged_ctx_t *m = &g_mc[route];
    weft_group_t g;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, fail_now_body, weft_int(UV_EIO), NULL));
    T_OK(weft_spawn(NULL, cancel_owner_now_body, weft_task_current(), NULL));
    m->suspend_rc = route == 1 ? weft_sleep(SHORT_MS) : weft_yield();
    if (route == 2) {
        m->error = weft_group_error(&g);
        m->group_rc = weft_group_leave(&g);
        m->after_rc = weft_yield(); /* leave keeps a caller's cancel pending */
        return m->group_rc;
    }
    m->group_rc = weft_group_wait(&g);
    m->error = weft_group_error(&g);
    T_OK(weft_group_close(&g));
    return m->group_rc;
}

TASK_FN(merged_cancel_main)
{
    for (intptr_t route = 0; route < 3; route++) {
        weft_task_t *owner = NULL;
        g_mc[route] = (merged_ctx_t){NOT_SET, NOT_SET, NOT_SET, NOT_SET};
        T_OK(weft_spawn(NULL, merged_cancel_owner_body, weft_int(route), &owner));
        T_RC(weft_await_task(owner, NULL), UV_ECANCELED);
        T_EQ(weft_task_state(owner), WEFT_TASK_CANCELLED);
        weft_task_unref(owner);
        T_RC(g_mc[route].suspend_rc, UV_ECANCELED);
        T_RC(g_mc[route].group_rc, UV_ECANCELED);
        T_RC(g_mc[route].error, UV_EIO);
        if (route == 2) {
            T_RC(g_mc[route].after_rc, UV_ECANCELED);
        }
    }
    return 0;
}

Test(group, an_external_cancel_merged_with_the_group_cancel_of_the_owner_is_not_withdrawn,
     .timeout = TEST_TIMEOUT_S)
{
    g_shuffle = -1; /* "in the same turn": the canceller runs before the woken owner */
    run_main(merged_cancel_main, NULL);
}

TASK_FN(failed_group_main)
{
    weft_group_t g;
    int ran = 0;
    weft_task_t *late = NULL;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, fail_now_body, weft_int(UV_EIO), NULL));
    T_RC(weft_sleep(SHORT_MS), UV_ECANCELED); /* the group failed meanwhile */
    T_RC(weft_group_spawn(&g, bump_body, &ran, &late), UV_ECANCELED);
    T_EQ(weft_group_size(&g), 1);
    T_RC(weft_group_wait(&g), UV_EIO);
    T_OK(weft_sleep(1));
    T_EQ(ran, 0);
    T_EQ(weft_group_size(&g), 1);
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, spawning_into_a_failed_group_returns_ecanceled_and_starts_nothing,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(failed_group_main, NULL);
}

/* The owner is cancelled while it waits and a child fails as it is
 * cancelled: the cancel outranks the failure (a cancel is delivered once;
 * reported as the failure it would be lost), which stays readable. */
static int g_outrank[4];
static bool g_outrank_waiting;

TASK_FN(outranked_owner_body)
{
    weft_group_t g;
    g_outrank[0] = NOT_SET;
    T_OK(weft_group_init(&g));
    weft_task_t *child = NULL; /* the group's reference */
    T_OK(weft_group_spawn(&g, cancelled_then_fails_body, &g_outrank[0], &child));
    /* Wait in the group only once the child sleeps: the cancel must find
     * it started, whatever order the shuffle runs them in. */
    for (int i = 0; child != NULL && i < 1000 && weft_task_state(child) != WEFT_TASK_SUSPENDED;
         i++) {
        T_OK(weft_yield());
    }
    g_outrank_waiting = true; /* and waits now, without suspending first */
    g_outrank[1] = weft_group_wait(&g);
    g_outrank[2] = weft_group_error(&g);
    T_OK(weft_group_close(&g));
    return g_outrank[1];
}

TASK_FN(outrank_main)
{
    weft_task_t *owner = NULL;
    T_OK(weft_spawn(NULL, outranked_owner_body, NULL, &owner));
    if (owner == NULL) {
        return 0;
    }
    for (int i = 0;
         i < 1000 && (!g_outrank_waiting || weft_task_state(owner) != WEFT_TASK_SUSPENDED); i++) {
        T_OK(weft_yield());
    }
    T_OK(weft_task_cancel(owner));
    T_RC(weft_await_task(owner, NULL), UV_ECANCELED);
    weft_task_unref(owner);
    return 0;
}

Test(group, a_cancel_of_the_waiting_owner_outranks_a_child_failure_which_stays_readable,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(outrank_main, NULL);
    EXPECT_RC(g_outrank[0], UV_ECANCELED);
    EXPECT_RC(g_outrank[1], UV_ECANCELED);
    EXPECT_RC(g_outrank[2], UV_EPIPE);
}

/* --- owner cancelled while waiting ------------------------------------------ */

typedef struct cancel_ctx {
    weft_group_t g;
    int slots[3];
    int started;
    bool waiting;
    int wait_rc;
    int slow_first_rc, slow_second_rc;
    bool slow_done, slow_done_at_wait;
    int error_after, live_after;
    size_t failed_after;
} cancel_ctx_t;

static cancel_ctx_t g_cc;

static int counted_sleeper_body(void *arg, void **result)
{
    g_cc.started++;
    return sleeper_body(arg, result);
}

/* Catches the cancel, then takes a little longer before it ends. */
TASK_FN(slow_to_cancel_body)
{
    g_cc.started++;
    g_cc.slow_first_rc = weft_sleep(SHORT_MS);
    g_cc.slow_second_rc = weft_sleep(1);
    g_cc.slow_done = true;
    return UV_ECANCELED;
}

TASK_FN(waiting_owner_body)
{
    T_OK(weft_group_init(&g_cc.g));
    for (int i = 0; i < 3; i++) {
        g_cc.slots[i] = NOT_SET;
        T_OK(weft_group_spawn(&g_cc.g, counted_sleeper_body, &g_cc.slots[i], NULL));
    }
    T_OK(weft_group_spawn(&g_cc.g, slow_to_cancel_body, NULL, NULL));
    g_cc.waiting = true;
    g_cc.wait_rc = weft_group_wait(&g_cc.g);
    g_cc.slow_done_at_wait = g_cc.slow_done;
    g_cc.live_after = (int)weft_group_live(&g_cc.g);
    g_cc.error_after = weft_group_error(&g_cc.g);
    g_cc.failed_after = weft_group_failed_index(&g_cc.g);
    T_OK(weft_group_close(&g_cc.g));
    return 0;
}

TASK_FN(cancel_owner_main)
{
    weft_task_t *owner = NULL;
    T_OK(weft_spawn(NULL, waiting_owner_body, NULL, &owner));
    if (owner == NULL) {
        return 0;
    }
    for (int i = 0; i < 1000 && !(g_cc.waiting && g_cc.started == 4); i++) {
        T_OK(weft_yield());
    }
    T_EQ(g_cc.waiting, 1);
    T_EQ(g_cc.started, 4);
    T_OK(weft_task_cancel(owner));
    T_OK(weft_await_task(owner, NULL));
    weft_task_unref(owner);
    return 0;
}

Test(group, cancelling_the_owner_while_it_waits_cancels_and_waits_for_every_child,
     .timeout = TEST_TIMEOUT_S)
{
    g_cc.wait_rc = NOT_SET;
    run_main(cancel_owner_main, NULL);
    EXPECT_RC(g_cc.wait_rc, UV_ECANCELED);
    for (int i = 0; i < 3; i++) {
        EXPECT_RC(g_cc.slots[i], UV_ECANCELED);
    }
    EXPECT_RC(g_cc.slow_first_rc, UV_ECANCELED);
    EXPECT_OK(g_cc.slow_second_rc);
    cr_expect(g_cc.slow_done_at_wait, "wait returned before a child finished cancelling");
    cr_expect_eq(g_cc.live_after, 0);
    /* Cancellation is not a failure of the group. */
    EXPECT_OK(g_cc.error_after);
    cr_expect_eq(g_cc.failed_after, SIZE_MAX);
}

/* weft_group_cancel: every live child (running or not started) is cancelled,
 * and the group does not count that as a failure. */
TASK_FN(cancel_children_main)
{
    weft_group_t g;
    int s[3] = {NOT_SET, NOT_SET, NOT_SET};
    int ran = 0;
    T_OK(weft_group_init(&g));
    for (int i = 0; i < 3; i++) {
        T_OK(weft_group_spawn(&g, sleeper_body, &s[i], NULL));
    }
    T_OK(weft_yield());                                /* the three are sleeping now */
    T_OK(weft_group_spawn(&g, bump_body, &ran, NULL)); /* not started */
    T_OK(weft_group_cancel(&g));
    T_OK(weft_group_wait(&g));
    T_RC(weft_group_cancel(&g), WEFT_EDONE); /* no live child: nothing to cancel */
    for (int i = 0; i < 3; i++) {
        T_RC(s[i], UV_ECANCELED);
    }
    T_EQ(ran, 0);
    T_EQ(weft_task_state(weft_group_task(&g, 3)), WEFT_TASK_CANCELLED);
    T_OK(weft_group_error(&g));
    T_EQ(weft_group_failed_index(&g), SIZE_MAX);
    T_OK(weft_yield()); /* the owner was not cancelled */
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, group_cancel_cancels_every_live_child_without_failing_the_group,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(cancel_children_main, NULL);
}

/* --- close, nested spawns, timeout scope ------------------------------------- */

TASK_FN(close_busy_main)
{
    weft_group_t g;
    int ran = 0;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, sleep_1ms_body, NULL, NULL));
    T_RC(weft_group_close(&g), UV_EBUSY);
    /* Nothing changed: still one live child, still open for spawns. */
    T_EQ(weft_group_size(&g), 1);
    T_EQ(weft_group_live(&g), 1);
    T_OK(weft_group_spawn(&g, bump_body, &ran, NULL));
    T_OK(weft_group_wait(&g));
    T_EQ(ran, 1);
    T_OK(weft_group_close(&g));
    T_RC(weft_group_spawn(&g, bump_body, &ran, NULL), WEFT_ECLOSED);
    T_OK(weft_sleep(1));
    T_EQ(ran, 1);
    return 0;
}

Test(group, close_with_live_children_is_ebusy_then_wait_then_close_succeeds,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(close_busy_main, NULL);
}

typedef struct node {
    weft_group_t *g;
    struct node *next; /* spawned by this one into the same group, or NULL */
    int spawn_rc;
    bool done;
} node_t;

TASK_FN(node_body)
{
    node_t *n = arg;
    int rc = weft_yield();
    if (rc != 0) {
        return rc;
    }
    if (n->next != NULL) {
        n->spawn_rc = weft_group_spawn(n->g, node_body, n->next, NULL);
    }
    rc = weft_sleep(1);
    n->done = true;
    return rc;
}

TASK_FN(nested_spawn_main)
{
    weft_group_t g;
    node_t n[7];
    memset(n, 0, sizeof(n));
    for (int i = 0; i < 7; i++) {
        n[i].g = &g;
        n[i].spawn_rc = NOT_SET;
    }
    /* Two chains: 0 -> 1 -> 2 -> 3 and 4 -> 5 -> 6. */
    for (int i = 0; i < 6; i++) {
        if (i != 3) {
            n[i].next = &n[i + 1];
        }
    }
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, node_body, &n[0], NULL));
    T_OK(weft_group_spawn(&g, node_body, &n[4], NULL));
    T_OK(weft_group_wait(&g));
    for (int i = 0; i < 7; i++) {
        T_EQ(n[i].done, 1);
        if (n[i].next != NULL) {
            T_OK(n[i].spawn_rc);
        }
    }
    T_EQ(weft_group_size(&g), 7);
    T_EQ(weft_group_live(&g), 0);
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, children_spawned_by_children_into_the_group_are_waited_for_too,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(nested_spawn_main, NULL);
}

TASK_FN(timeout_scope_main)
{
    weft_group_t g;
    weft_timeout_t tmo;
    int s[2] = {NOT_SET, NOT_SET};
    T_OK(weft_timeout_begin(&tmo, 1));
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, sleeper_body, &s[0], NULL));
    T_OK(weft_group_spawn(&g, sleeper_body, &s[1], NULL));
    T_RC(weft_group_wait(&g), UV_ETIMEDOUT);
    T_RC(s[0], UV_ECANCELED);
    T_RC(s[1], UV_ECANCELED);
    T_EQ(weft_group_live(&g), 0);
    T_OK(weft_group_error(&g));
    T_OK(weft_group_close(&g));
    T_RC(weft_timeout_end(&tmo), UV_ETIMEDOUT);
    T_OK(weft_yield()); /* out of the scope: nothing pending */
    return 0;
}

Test(group, a_timeout_scope_expiring_cancels_the_children_and_wait_returns_etimedout,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(timeout_scope_main, NULL);
}

/* --- leave and WEFT_GROUP --------------------------------------------------------- */

typedef struct leave_ctx {
    int s[2];
    int slow_first_rc, slow_second_rc;
    bool slow_done, in_leave;
    int leave_rc, after_rc;
    bool slow_done_at_leave;
} leave_ctx_t;

static leave_ctx_t g_lc;

TASK_FN(slow_leave_child_body)
{
    g_lc.slow_first_rc = weft_sleep(SHORT_MS);
    g_lc.slow_second_rc = weft_sleep(1);
    g_lc.slow_done = true;
    return g_lc.slow_first_rc;
}

TASK_FN(leave_main)
{
    weft_group_t g;
    int ran = 0;
    /* An empty group waits at once (twice); with nothing live, leave is
     * wait + close. */
    T_OK(weft_group_init(&g));
    T_OK(weft_group_wait(&g));
    T_OK(weft_group_wait(&g));
    T_OK(weft_group_spawn(&g, bump_body, &ran, NULL));
    T_OK(weft_group_wait(&g));
    T_OK(weft_group_leave(&g));
    T_RC(weft_group_spawn(&g, bump_body, &ran, NULL), WEFT_ECLOSED); /* closed */
    /* A failed group: leave reports the first failure. */
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, fail_now_body, weft_int(UV_EIO), NULL));
    T_RC(weft_sleep(SHORT_MS), UV_ECANCELED);
    T_RC(weft_group_leave(&g), UV_EIO);
    T_OK(weft_yield()); /* the group's cancel of the owner was withdrawn */
    /* Live children: cancelled and waited for. */
    T_OK(weft_group_init(&g));
    for (int i = 0; i < 2; i++) {
        g_lc.s[i] = NOT_SET;
        T_OK(weft_group_spawn(&g, sleeper_body, &g_lc.s[i], NULL));
    }
    T_OK(weft_yield());
    T_RC(weft_group_leave(&g), UV_ECANCELED);
    T_RC(g_lc.s[0], UV_ECANCELED);
    T_RC(g_lc.s[1], UV_ECANCELED);
    T_EQ(ran, 1);
    return 0;
}

Test(group, leave_reaps_live_children_and_reports_what_wait_would_and_empty_groups_wait_at_once,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(leave_main, NULL);
}

/* Returns early from a WEFT_GROUP scope with two children asleep. */
static int scoped_early_return(int *s)
{
    WEFT_GROUP(g);
    if (g.weft__init_rc != 0) {
        return g.weft__init_rc;
    }
    for (int i = 0; i < 2; i++) {
        s[i] = NOT_SET;
        T_OK(weft_group_spawn(&g, sleeper_body, &s[i], NULL));
    }
    T_OK(weft_yield());
    return UV_EAGAIN; /* leaves the scope with both children live */
}

TASK_FN(scoped_main)
{
    int s[2];
    T_RC(scoped_early_return(s), UV_EAGAIN);
    /* Both were cancelled and had finished when the scope was left. */
    T_RC(s[0], UV_ECANCELED);
    T_RC(s[1], UV_ECANCELED);
    return 0;
}

Test(group, leaving_a_weft_group_scope_early_cancels_and_reaps_its_children,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(scoped_main, NULL);
}

TASK_FN(leaving_owner_body)
{
    weft_group_t g;
    T_OK(weft_group_init(&g));
    T_OK(weft_group_spawn(&g, slow_leave_child_body, NULL, NULL));
    T_OK(weft_yield());
    g_lc.in_leave = true;
    g_lc.leave_rc = weft_group_leave(&g);
    g_lc.slow_done_at_leave = g_lc.slow_done;
    g_lc.after_rc = weft_yield(); /* the owner's cancel stayed pending */
    return 0;
}

TASK_FN(cancel_leaver_main)
{
    weft_task_t *owner = NULL;
    T_OK(weft_spawn(NULL, leaving_owner_body, NULL, &owner));
    if (owner == NULL) {
        return 0;
    }
    for (int i = 0; i < 1000 && !g_lc.in_leave; i++) {
        T_OK(weft_yield());
    }
    T_EQ(g_lc.in_leave, 1);
    T_OK(weft_task_cancel(owner));
    T_OK(weft_await_task(owner, NULL));
    weft_task_unref(owner);
    return 0;
}

Test(group, a_cancel_of_the_owner_during_leave_waits_for_the_children_and_stays_pending,
     .timeout = TEST_TIMEOUT_S)
{
    g_lc.leave_rc = g_lc.after_rc = NOT_SET;
    run_main(cancel_leaver_main, NULL);
    EXPECT_RC(g_lc.leave_rc, UV_ECANCELED);
    EXPECT_RC(g_lc.slow_first_rc, UV_ECANCELED);
    EXPECT_OK(g_lc.slow_second_rc);
    cr_expect(g_lc.slow_done_at_leave, "leave returned before its child finished");
    EXPECT_RC(g_lc.after_rc, UV_ECANCELED);
}

/* --- compact stacks ------------------------------------------------------------ */

/* all_succeed_main shares nothing on its stack with other tasks but the
 * group itself, which sits there as in group.h's example (loop.h: on compact
 * stacks a task's locals are not for other tasks while it is suspended). */
Test(group, a_group_on_the_owner_stack_works_on_a_compact_stack_loop, .timeout = TEST_TIMEOUT_S)
{
    run_main_mode(all_succeed_main, NULL, WEFT_STACK_COMPACT);
}

/* --- misuse ------------------------------------------------------------------ */

static int g_intruder_rc = NOT_SET;

TASK_FN(intruder_body)
{
    g_intruder_rc = weft_group_wait(arg);
    return 0;
}

TASK_FN(misuse_main)
{
    weft_group_t g;
    int child_rc = NOT_SET;
    int ran = 0;
    weft_task_t *outsider = NULL;
    T_RC(weft_group_init(NULL), UV_EINVAL);
    T_OK(weft_group_init(&g));
    T_RC(weft_group_spawn(NULL, bump_body, &ran, NULL), UV_EINVAL);
    T_RC(weft_group_spawn(&g, NULL, &ran, NULL), UV_EINVAL);
    T_EQ(weft_group_size(&g), 0);
    T_OK(weft_group_spawn(&g, sleep_1ms_body, NULL, NULL));
    /* A child of the group is not its owner... */
    T_OK(weft_group_spawn(&g, intruder_body, &g, NULL));
    /* ...and neither is an unrelated task. */
    T_OK(weft_spawn(NULL, intruder_body, &g, &outsider));
    if (outsider != NULL) {
        T_OK(weft_await_task(outsider, NULL));
        child_rc = g_intruder_rc;
        weft_task_unref(outsider);
    }
    T_RC(child_rc, UV_EPERM);
    g_intruder_rc = NOT_SET;
    T_OK(weft_group_wait(&g));
    T_RC(g_intruder_rc, UV_EPERM);
    T_EQ(ran, 0);
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, misuse_null_init_outside_a_task_and_wait_by_a_non_owner, .timeout = TEST_TIMEOUT_S)
{
    weft_group_t g;
    EXPECT_RC(weft_group_init(&g), WEFT_ENOTASK);
    run_main(misuse_main, NULL);
}

static weft_loop_t g_loop_a, g_loop_b;
static weft_group_t g_shared;
static int g_foreign_ran;

TASK_FN(parked_owner_body)
{
    int ran = 0;
    T_OK(weft_group_init(&g_shared));
    weft_loop_stop(&g_loop_a);
    T_OK(weft_sleep(1)); /* loop A returns; loop B runs meanwhile */
    T_OK(weft_group_spawn(&g_shared, bump_body, &ran, NULL));
    T_OK(weft_group_wait(&g_shared));
    T_EQ(ran, 1);
    T_EQ(weft_group_size(&g_shared), 1);
    T_OK(weft_group_close(&g_shared));
    return 0;
}

TASK_FN(foreign_spawner_body)
{
    T_RC(weft_group_spawn(&g_shared, bump_body, &g_foreign_ran, NULL), WEFT_EWRONGLOOP);
    return 0;
}

Test(group, spawning_from_another_loop_is_ewrongloop, .timeout = TEST_TIMEOUT_S)
{
    weft_task_t *owner = NULL;
    ASSERT_OK(weft_loop_init(&g_loop_a, NULL));
    ASSERT_OK(weft_spawn(&g_loop_a, parked_owner_body, NULL, &owner));
    EXPECT_OK(weft_loop_run(&g_loop_a));
    cr_expect_eq(weft_task_state(owner), WEFT_TASK_SUSPENDED, "loop A did not stop early");
    ASSERT_OK(weft_loop_init(&g_loop_b, NULL));
    ASSERT_OK(weft_spawn(&g_loop_b, foreign_spawner_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&g_loop_b));
    EXPECT_OK(weft_loop_close(&g_loop_b));
    EXPECT_OK(weft_loop_run(&g_loop_a));
    EXPECT_OK(weft_task_result(owner, NULL));
    weft_task_unref(owner);
    EXPECT_OK(weft_loop_close(&g_loop_a));
    cr_expect_eq(g_foreign_ran, 0);
    report_misses();
}

/* --- a thousand children -------------------------------------------------------- */

#define MANY 1000

TASK_FN(many_main)
{
    weft_group_t g;
    long long sum = 0;
    T_OK(weft_group_init(&g));
    for (intptr_t i = 0; i < MANY; i++) {
        T_OK(weft_group_spawn(&g, value_body, weft_int(i), NULL));
    }
    T_EQ(weft_group_live(&g), MANY);
    T_OK(weft_group_wait(&g));
    T_EQ(g_finished, MANY);
    T_EQ(weft_group_size(&g), MANY);
    T_EQ(weft_group_live(&g), 0);
    for (size_t i = 0; i < MANY; i++) {
        void *v = NULL;
        T_OK(weft_task_result(weft_group_task(&g, i), &v));
        sum += weft_to_int(v);
    }
    T_EQ(sum, 10LL * MANY * (MANY - 1) / 2);
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, a_thousand_children_all_finish_and_every_result_is_readable, .timeout = TEST_TIMEOUT_S)
{
    run_main(many_main, NULL);
}

static int g_many_slots[MANY];

/* Like sleeper_body, but long: spawning a thousand children and running
 * their first steps can take longer than SHORT_MS under a sanitizer on a
 * busy machine, and a sleep that ended by itself would fail the test
 * without anything being wrong. Only a cancel ends this one early. */
TASK_FN(long_sleeper_body)
{
    int *slot = arg;
    *slot = weft_sleep(60000);
    return *slot;
}

TASK_FN(many_one_fails_main)
{
    weft_group_t g;
    int cancelled = 0;
    T_OK(weft_group_init(&g));
    for (int i = 0; i < MANY; i++) {
        g_many_slots[i] = NOT_SET;
        if (i == MANY / 2) {
            T_OK(weft_group_spawn(&g, fail_after_yield_body, weft_int(UV_EIO), NULL));
        } else {
            T_OK(weft_group_spawn(&g, long_sleeper_body, &g_many_slots[i], NULL));
        }
    }
    T_RC(weft_group_wait(&g), UV_EIO);
    T_EQ(weft_group_failed_index(&g), MANY / 2);
    for (int i = 0; i < MANY; i++) {
        cancelled += g_many_slots[i] == UV_ECANCELED;
    }
    T_EQ(cancelled, MANY - 1);
    T_EQ(weft_group_live(&g), 0);
    T_OK(weft_group_close(&g));
    return 0;
}

Test(group, one_failure_among_a_thousand_children_cancels_the_other_999, .timeout = TEST_TIMEOUT_S)
{
    run_main(many_one_fails_main, NULL);
}

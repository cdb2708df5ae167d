/*
 * tests/gen_test.c - async generators (weft/gen.h): next in order then
 * UV_EOF, a failing body, send and throw, close and the body's clean-up,
 * lazy start, bodies that suspend between yields, one consumer at a time,
 * misuse, cancelling the consumer, a million values, and generators created,
 * closed or abandoned outside tasks.
 *
 * Ordering comes from weft_yield/weft_sleep/futures only. A body that must be
 * cancelled sleeps SHORT_MS: if nobody cancels it, its sleep returns 0 and
 * the test fails on that code (no test measures time).
 *
 * Checks inside tasks use T_RC/T_EQ, which only record a mismatch; the test
 * reports them once the loop has stopped. Every loop is closed and expected
 * to return 0.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <weft/weft.h>

#include "record_harness.h"

/* Create a generator on the current loop into *gp (NULL before); on failure
 * the miss is recorded and the calling task gives up. */
#define NEW_GEN(gp, fn, arg)                         \
    do {                                             \
        T_OK(weft_gen_new(NULL, (fn), (arg), (gp))); \
        if (*(gp) == NULL) {                         \
            return 0;                                \
        }                                            \
    } while (0)

/* Run main(arg) as the only top-level task of a fresh (quiet) loop; expect
 * it to finish with 0, no task left, and the loop to close. */
static void run_main_mode(weft_task_fn main, void *arg, weft_stack_mode_t mode)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.quiet = true, .stack_mode = mode};
    weft_task_t *t = NULL;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn(&loop, main, arg, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0, "%llu tasks still live", (unsigned long long)st.tasks_live);
    EXPECT_OK(weft_loop_close(&loop));
    report_misses();
}

#define run_main(main, arg) run_main_mode((main), (arg), WEFT_STACK_GUARDED)

/* --- bodies ------------------------------------------------------------------ */

/* What a counting body saw. */
typedef struct count {
    intptr_t n;       /* yields i * i for i < n, then returns 0 */
    int ret_on_close; /* returned when a yield fails */
    bool started, finished, cleaned;
    weft_task_t *self;
    int stop_rc, again_rc, cleanup_sleep_rc;
    void *sent_seen;
} count_t;

static void count_init(count_t *c, intptr_t n)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->stop_rc = c->again_rc = c->cleanup_sleep_rc = NOT_SET;
    c->sent_seen = weft_int(-1);
}

/* Yields 0, 1, 4, ...; when a yield fails (close, throw, cancel) it records
 * the code, checks that later yields fail at once, sleeps 1 ms as clean-up
 * and returns ret_on_close. */
TASK_FN(count_body)
{
    count_t *c = arg;
    c->started = true;
    c->self = weft_task_current();
    for (intptr_t i = 0; i < c->n; i++) {
        void *in = weft_int(-1);
        int rc = weft_gen_yield(weft_int(i * i), &in);
        if (rc != 0) {
            c->stop_rc = rc;
            int a = weft_gen_yield(weft_int(-1), NULL);
            int b = weft_gen_yield(weft_int(-2), &in);
            c->again_rc = a == b ? a : NOT_SET; /* both must fail alike */
            c->cleanup_sleep_rc = weft_sleep(1);
            c->cleaned = true;
            return c->ret_on_close;
        }
        c->sent_seen = in;
    }
    c->finished = true;
    return 0;
}

/* --- next, EOF, failure -------------------------------------------------------- */

TASK_FN(next_in_order_main)
{
    count_t c;
    weft_gen_t *g = NULL;
    void *v = NULL;
    count_init(&c, 5);
    NEW_GEN(&g, count_body, &c);
    T_EQ(weft_gen_task(g) != NULL, 1);
    T_OK(weft_yield());
    T_EQ(c.started, 0); /* the body starts at the first next */
    for (intptr_t i = 0; i < 5; i++) {
        v = weft_int(-1);
        T_OK(weft_gen_next(g, &v));
        T_EQ(weft_to_int(v), i * i);
        /* What the previous yield received: next() sends NULL. */
        T_PTR(c.sent_seen, i == 0 ? weft_int(-1) : NULL);
        c.sent_seen = weft_int(-1);
    }
    T_PTR(c.self, weft_gen_task(g)); /* the body runs as the generator's task */
    T_EQ(c.finished, 0);
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_EQ(c.finished, 1);
    T_PTR(c.sent_seen, NULL); /* next() sends NULL */
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_EQ(c.cleaned, 0);
    T_OK(weft_gen_free(g));
    T_EQ(c.cleaned, 0);
    return 0;
}

Test(gen, next_yields_the_values_in_order_then_eof_and_eof_again, .timeout = TEST_TIMEOUT_S)
{
    run_main(next_in_order_main, NULL);
}

TASK_FN(fail_after_one_body)
{
    int rc = weft_gen_yield(weft_int(1), NULL);
    if (rc != 0) {
        return rc;
    }
    return weft_fail(UV_EIO, "body failed");
}

TASK_FN(failing_body_main)
{
    weft_gen_t *g = NULL;
    void *v = NULL;
    NEW_GEN(&g, fail_after_one_body, NULL);
    T_OK(weft_gen_next(g, &v));
    T_EQ(weft_to_int(v), 1);
    T_RC(weft_gen_next(g, &v), UV_EIO);
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_RC(weft_gen_next(g, &v), UV_EOF);
    (void)weft_gen_free(g);
    return 0;
}

Test(gen, a_failing_body_returns_its_code_from_next_then_eof, .timeout = TEST_TIMEOUT_S)
{
    run_main(failing_body_main, NULL);
}

/* --- send ------------------------------------------------------------------------ */

static void *g_sent_log[8];
static int g_nsent;
static int g_acc_stop_rc = NOT_SET;

/* Yields the running total; adds every value sent in. */
TASK_FN(accumulator_body)
{
    intptr_t total = 0;
    for (;;) {
        void *in = weft_int(-1000);
        int rc = weft_gen_yield(weft_int(total), &in);
        if (rc != 0) {
            g_acc_stop_rc = rc;
            return 0;
        }
        if (g_nsent < 8) {
            g_sent_log[g_nsent] = in;
        }
        g_nsent++;
        total += weft_to_int(in);
    }
}

TASK_FN(send_main)
{
    weft_gen_t *g = NULL;
    void *v = NULL;
    NEW_GEN(&g, accumulator_body, NULL);
    T_OK(weft_gen_send(g, NULL, &v)); /* NULL starts a fresh one, as next */
    T_EQ(weft_to_int(v), 0);
    T_OK(weft_gen_send(g, weft_int(5), &v));
    T_EQ(weft_to_int(v), 5);
    T_OK(weft_gen_send(g, weft_int(7), &v));
    T_EQ(weft_to_int(v), 12);
    T_OK(weft_gen_next(g, &v)); /* sends NULL */
    T_EQ(weft_to_int(v), 12);
    T_OK(weft_gen_send(g, weft_int(-2), &v));
    T_EQ(weft_to_int(v), 10);
    T_EQ(g_nsent, 4);
    T_PTR(g_sent_log[0], weft_int(5));
    T_PTR(g_sent_log[1], weft_int(7));
    T_PTR(g_sent_log[2], NULL);
    T_PTR(g_sent_log[3], weft_int(-2));
    T_OK(weft_gen_free(g));
    T_RC(g_acc_stop_rc, UV_ECANCELED);
    return 0;
}

Test(gen, send_passes_values_into_the_body, .timeout = TEST_TIMEOUT_S)
{
    run_main(send_main, NULL);
}

TASK_FN(send_fresh_main)
{
    count_t c;
    weft_gen_t *g = NULL;
    void *v = NULL;
    count_init(&c, 3);
    NEW_GEN(&g, count_body, &c);
    T_RC(weft_gen_send(g, weft_int(1), &v), UV_EINVAL);
    T_OK(weft_yield());
    T_EQ(c.started, 0);
    T_OK(weft_gen_next(g, &v)); /* still usable, from the start */
    T_EQ(weft_to_int(v), 0);
    T_OK(weft_gen_send(g, weft_int(1), &v)); /* started now: fine */
    T_EQ(weft_to_int(v), 1);
    T_PTR(c.sent_seen, weft_int(1));
    T_OK(weft_gen_free(g));
    return 0;
}

Test(gen, sending_non_null_to_a_fresh_generator_is_einval_and_starts_nothing,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(send_fresh_main, NULL);
}

/* --- throw ------------------------------------------------------------------------ */

static int g_throw_log[8];
static int g_nthrow;

/* Yields 1, 2, ...; a thrown UV_EIO makes it jump to 100; a thrown UV_EPIPE
 * ends it (returns 0); any other code is passed up. */
TASK_FN(catcher_body)
{
    intptr_t v = 1;
    for (;;) {
        int rc = weft_gen_yield(weft_int(v), NULL);
        if (g_nthrow < 8) {
            g_throw_log[g_nthrow] = rc;
        }
        g_nthrow++;
        if (rc == UV_EPIPE) {
            return 0;
        }
        if (rc == UV_EIO) {
            v = 100;
        } else if (rc != 0) {
            return rc;
        } else {
            v++;
        }
    }
}

TASK_FN(throw_main)
{
    weft_gen_t *g = NULL;
    void *v = NULL;
    NEW_GEN(&g, catcher_body, NULL);
    T_OK(weft_gen_next(g, &v));
    T_EQ(weft_to_int(v), 1);
    T_OK(weft_gen_throw(g, UV_EIO, &v)); /* caught: the body yields again */
    T_EQ(weft_to_int(v), 100);
    T_OK(weft_gen_next(g, &v));
    T_EQ(weft_to_int(v), 101);
    T_RC(weft_gen_throw(g, UV_EPIPE, &v), UV_EOF); /* caught: the body returns */
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_EQ(g_nthrow, 3);
    T_RC(g_throw_log[0], UV_EIO);
    T_RC(g_throw_log[1], 0);
    T_RC(g_throw_log[2], UV_EPIPE);
    T_OK(weft_gen_free(g));

    /* A body that does not catch it fails with the thrown code. */
    g_nthrow = 0;
    g = NULL;
    NEW_GEN(&g, catcher_body, NULL);
    T_OK(weft_gen_next(g, &v));
    T_RC(weft_gen_throw(g, UV_ENOSPC, &v), UV_ENOSPC);
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_EQ(g_nthrow, 1);
    (void)weft_gen_free(g);
    return 0;
}

Test(gen, throw_delivers_the_code_to_the_pending_yield_and_the_body_may_yield_again_or_return,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(throw_main, NULL);
}

/* --- close ------------------------------------------------------------------------- */

TASK_FN(close_suspended_main)
{
    /* The body's return after clean-up, and what close then returns. */
    static const int ret[3] = {0, UV_ECANCELED, UV_EIO};
    static const int want[3] = {0, 0, UV_EIO};
    for (int k = 0; k < 3; k++) {
        count_t c;
        weft_gen_t *g = NULL;
        void *v = NULL;
        count_init(&c, 1000);
        c.ret_on_close = ret[k];
        NEW_GEN(&g, count_body, &c);
        T_OK(weft_gen_next(g, &v));
        T_OK(weft_gen_next(g, &v));
        T_EQ(weft_to_int(v), 1);
        T_EQ(c.cleaned, 0);
        T_RC(weft_gen_free(g), want[k]);
        /* The clean-up, sleep included, finished before close returned. */
        T_EQ(c.cleaned, 1);
        T_RC(c.stop_rc, UV_ECANCELED);
        T_RC(c.again_rc, UV_ECANCELED);
        T_OK(c.cleanup_sleep_rc);
        T_EQ(c.finished, 0);
    }
    return 0;
}

Test(gen, close_at_a_yield_runs_the_body_clean_up_to_its_end_and_returns_its_code,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(close_suspended_main, NULL);
}

TASK_FN(close_unstarted_main)
{
    count_t c;
    weft_gen_t *g = NULL;
    count_init(&c, 3);
    NEW_GEN(&g, count_body, &c);
    T_OK(weft_gen_free(g));
    T_OK(weft_sleep(1));
    T_EQ(c.started, 0);
    return 0;
}

Test(gen, closing_a_never_started_generator_does_not_run_the_body, .timeout = TEST_TIMEOUT_S)
{
    run_main(close_unstarted_main, NULL);
}

/* --- bodies that suspend; direct switching ------------------------------------------ */

static bool g_ticker_stop;
static long g_ticks;

TASK_FN(ticker_body)
{
    while (!g_ticker_stop) {
        g_ticks++;
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

TASK_FN(suspending_body)
{
    for (intptr_t i = 0; i < 5; i++) {
        int rc = weft_sleep(1);
        if (rc == 0) {
            rc = weft_yield();
        }
        if (rc == 0) {
            rc = weft_gen_yield(weft_int(i), NULL);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

TASK_FN(suspending_main)
{
    weft_task_t *ticker = NULL;
    weft_gen_t *g = NULL;
    void *v = NULL;
    T_OK(weft_spawn(NULL, ticker_body, NULL, &ticker));
    T_OK(weft_gen_new(NULL, suspending_body, NULL, &g));
    if (g == NULL || ticker == NULL) {
        return 0;
    }
    for (intptr_t i = 0; i < 5; i++) {
        long before = g_ticks;
        T_OK(weft_gen_next(g, &v));
        T_EQ(weft_to_int(v), i);
        T_EQ(g_ticks > before, 1); /* others ran while the body slept */
    }
    T_RC(weft_gen_next(g, &v), UV_EOF);
    T_OK(weft_gen_free(g));
    g_ticker_stop = true;
    T_OK(weft_await_task(ticker, NULL));
    weft_task_unref(ticker);
    return 0;
}

Test(gen, a_body_that_suspends_between_yields_works_while_other_tasks_run,
     .timeout = TEST_TIMEOUT_S)
{
    run_main(suspending_main, NULL);
}

TASK_FN(direct_switch_main)
{
    count_t c;
    weft_task_t *ticker = NULL;
    weft_gen_t *g = NULL;
    void *v = NULL;
    count_init(&c, 1000);
    T_OK(weft_spawn(NULL, ticker_body, NULL, &ticker));
    T_OK(weft_gen_new(NULL, count_body, &c, &g));
    if (g == NULL || ticker == NULL) {
        return 0;
    }
    T_OK(weft_yield()); /* the ticker is running: it sits in the ready queue */
    T_OK(weft_gen_next(g, &v));
    long before = g_ticks;
    for (intptr_t i = 1; i < 100; i++) {
        T_OK(weft_gen_next(g, &v));
        T_EQ(weft_to_int(v), i * i);
    }
    /* Consumer and body switched to each other: the ticker never ran. */
    T_EQ(g_ticks, before);
    T_OK(weft_gen_free(g));
    g_ticker_stop = true;
    T_OK(weft_await_task(ticker, NULL));
    weft_task_unref(ticker);
    return 0;
}

Test(gen, consumer_and_body_switch_to_each_other_without_the_ready_queue, .timeout = TEST_TIMEOUT_S)
{
    run_main(direct_switch_main, NULL);
}

/* --- one consumer at a time; the body's own task ------------------------------------ */

typedef struct busy {
    weft_gen_t *g;
    weft_future_t *go;
    weft_task_t *first;
    bool body_waiting;
    int first_rc;
    void *first_v;
} busy_t;

static busy_t g_busy;

TASK_FN(gated_body)
{
    void *v = NULL;
    g_busy.body_waiting = true;
    int rc = weft_await(g_busy.go, &v);
    if (rc == 0) {
        rc = weft_gen_yield(v, NULL);
    }
    return rc;
}

TASK_FN(first_consumer_body)
{
    g_busy.first_rc = weft_gen_next(g_busy.g, &g_busy.first_v);
    return 0;
}

TASK_FN(second_consumer_body)
{
    void *v = NULL;
    for (int i = 0;
         i < 1000 && !(g_busy.body_waiting && weft_task_state(g_busy.first) == WEFT_TASK_SUSPENDED);
         i++) {
        T_OK(weft_yield());
    }
    T_EQ(g_busy.body_waiting, 1);
    T_RC(weft_gen_next(g_busy.g, &v), UV_EBUSY);
    T_RC(weft_gen_send(g_busy.g, NULL, &v), UV_EBUSY);
    T_RC(weft_gen_throw(g_busy.g, UV_EIO, &v), UV_EBUSY);
    T_OK(weft_future_set_result(g_busy.go, weft_int(7)));
    return 0;
}

TASK_FN(two_consumers_main)
{
    weft_task_t *second = NULL;
    void *v = NULL;
    g_busy.first_rc = NOT_SET;
    T_OK(weft_future_new(NULL, &g_busy.go));
    T_OK(weft_gen_new(NULL, gated_body, NULL, &g_busy.g));
    if (g_busy.g == NULL || g_busy.go == NULL) {
        return 0;
    }
    T_OK(weft_spawn(NULL, first_consumer_body, NULL, &g_busy.first));
    T_OK(weft_spawn(NULL, second_consumer_body, NULL, &second));
    if (g_busy.first == NULL || second == NULL) {
        return 0;
    }
    T_OK(weft_await_task(g_busy.first, NULL));
    T_OK(weft_await_task(second, NULL));
    T_OK(g_busy.first_rc);
    T_EQ(weft_to_int(g_busy.first_v), 7);
    T_RC(weft_gen_next(g_busy.g, &v), UV_EOF); /* the first is gone: free again */
    T_OK(weft_gen_free(g_busy.g));
    weft_task_unref(g_busy.first);
    weft_task_unref(second);
    weft_future_unref(g_busy.go);
    return 0;
}

Test(gen, a_second_consumer_gets_ebusy_while_the_first_waits, .timeout = TEST_TIMEOUT_S)
{
    run_main(two_consumers_main, NULL);
}

static weft_gen_t *g_self_gen;
static int g_self_rc[3] = {NOT_SET, NOT_SET, NOT_SET};

TASK_FN(self_consuming_body)
{
    void *v = NULL;
    g_self_rc[0] = weft_gen_next(g_self_gen, &v);
    g_self_rc[1] = weft_gen_send(g_self_gen, NULL, &v);
    g_self_rc[2] = weft_gen_throw(g_self_gen, UV_EIO, &v);
    int rc = weft_gen_yield(weft_int(1), NULL);
    return rc == UV_ECANCELED ? 0 : rc;
}

TASK_FN(self_main)
{
    void *v = NULL;
    NEW_GEN(&g_self_gen, self_consuming_body, NULL);
    T_OK(weft_gen_next(g_self_gen, &v));
    T_EQ(weft_to_int(v), 1);
    T_RC(g_self_rc[0], WEFT_EDEADLK);
    T_RC(g_self_rc[1], WEFT_EDEADLK);
    T_RC(g_self_rc[2], WEFT_EDEADLK);
    T_OK(weft_gen_free(g_self_gen));
    return 0;
}

Test(gen, next_from_inside_the_body_on_its_own_generator_is_edeadlk, .timeout = TEST_TIMEOUT_S)
{
    run_main(self_main, NULL);
}

/* --- misuse --------------------------------------------------------------------------- */

static int g_helper_yield_rc = NOT_SET;

TASK_FN(yield_in_plain_task_body)
{
    g_helper_yield_rc = weft_gen_yield(weft_int(1), NULL);
    return 0;
}

/* A generator body whose helper task (not a body) tries to yield. */
TASK_FN(body_with_helper)
{
    weft_task_t *helper = NULL;
    int rc = weft_spawn(NULL, yield_in_plain_task_body, NULL, &helper);
    if (rc != 0) {
        return rc;
    }
    rc = weft_await_task(helper, NULL);
    weft_task_unref(helper);
    if (rc == 0) {
        rc = weft_gen_yield(weft_int(2), NULL);
    }
    return rc == UV_ECANCELED ? 0 : rc;
}

TASK_FN(yield_misuse_main)
{
    weft_gen_t *g = NULL;
    void *v = NULL;
    T_RC(weft_gen_yield(weft_int(1), &v), UV_EINVAL);
    NEW_GEN(&g, body_with_helper, NULL);
    T_OK(weft_gen_next(g, &v));
    T_EQ(weft_to_int(v), 2);
    T_RC(g_helper_yield_rc, UV_EINVAL);
    T_OK(weft_gen_free(g));
    return 0;
}

Test(gen, yield_outside_a_body_is_einval_in_a_task_and_enotask_outside_tasks,
     .timeout = TEST_TIMEOUT_S)
{
    void *v = NULL;
    EXPECT_RC(weft_gen_yield(weft_int(1), &v), WEFT_ENOTASK);
    run_main(yield_misuse_main, NULL);
}

Test(gen, created_and_closed_outside_a_task_it_never_runs_and_leaks_nothing,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop, closed;
    weft_gen_t *g = NULL;
    count_t c;
    void *v = NULL;
    weft_loop_stats_t st;
    count_init(&c, 3);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_RC(weft_gen_new(&loop, NULL, &c, &g), UV_EINVAL);
    EXPECT_RC(weft_gen_new(NULL, count_body, &c, &g), UV_EINVAL); /* no current loop */
    EXPECT_RC(weft_gen_new(&loop, count_body, &c, NULL), UV_EINVAL);
    ASSERT_OK(weft_loop_init(&closed, NULL));
    ASSERT_OK(weft_loop_close(&closed));
    EXPECT_RC(weft_gen_new(&closed, count_body, &c, &g), WEFT_ECLOSED);

    g = NULL;
    ASSERT_OK(weft_gen_new(&loop, count_body, &c, &g));
    cr_assert_not_null(g);
    /* The consumer side needs a task. */
    EXPECT_RC(weft_gen_next(g, &v), WEFT_ENOTASK);
    EXPECT_RC(weft_gen_send(g, NULL, &v), WEFT_ENOTASK);
    EXPECT_RC(weft_gen_throw(g, UV_EIO, &v), WEFT_ENOTASK);
    EXPECT_OK(weft_gen_free(g));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect(!c.started, "the body of a generator closed before starting ran");
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_gen_t *g_outside_gen;
static count_t g_outside_count;

TASK_FN(consume_outside_made_main)
{
    weft_loop_t *loop = arg;
    void *v = NULL;
    T_OK(weft_gen_next(g_outside_gen, &v));
    T_OK(weft_gen_next(g_outside_gen, &v));
    T_EQ(weft_to_int(v), 1);
    weft_loop_stop(loop); /* leave the body suspended at its yield */
    return 0;
}

Test(gen, a_generator_made_outside_a_task_runs_in_one_and_closes_outside_after_it_started,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_stats_t st;
    count_init(&g_outside_count, 1000);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_gen_new(&loop, count_body, &g_outside_count, &g_outside_gen));
    ASSERT_OK(weft_spawn(&loop, consume_outside_made_main, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect(g_outside_count.started);
    cr_expect(!g_outside_count.cleaned);
    /* Outside a task, close cancels the body and lets it finish on its own. */
    (void)weft_gen_free(g_outside_gen);
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect(g_outside_count.cleaned, "the body's clean-up did not run");
    EXPECT_RC(g_outside_count.stop_rc, UV_ECANCELED);
    EXPECT_RC(g_outside_count.again_rc, UV_ECANCELED);
    EXPECT_OK(g_outside_count.cleanup_sleep_rc);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0);
    EXPECT_OK(weft_loop_close(&loop));
    report_misses();
}

/* --- cancelling the consumer ----------------------------------------------------------- */

typedef struct cancel_ctx {
    bool catch_it; /* the body catches the cancel and yields 99 */
    bool sleeping;
    int sleep_rc, after_rc;
    int next_rc, next2_rc, close_rc;
    void *next_v;
} cancel_ctx_t;

TASK_FN(sleepy_body)
{
    cancel_ctx_t *c = arg;
    int rc = weft_gen_yield(weft_int(1), NULL);
    if (rc != 0) {
        return rc;
    }
    c->sleeping = true;
    c->sleep_rc = weft_sleep(SHORT_MS);
    if (!c->catch_it) {
        return c->sleep_rc;
    }
    c->after_rc = weft_gen_yield(weft_int(99), NULL);
    return 0;
}

TASK_FN(cancelled_consumer_body)
{
    cancel_ctx_t *c = arg;
    weft_gen_t *g = NULL;
    void *v = NULL;
    NEW_GEN(&g, sleepy_body, c);
    T_OK(weft_gen_next(g, &v));
    T_EQ(weft_to_int(v), 1);
    c->next_rc = weft_gen_next(g, &c->next_v); /* cancelled in here */
    if (c->catch_it) {
        c->next2_rc = weft_gen_next(g, &v);
    }
    c->close_rc = weft_gen_free(g);
    return 0;
}

TASK_FN(cancel_consumer_main)
{
    cancel_ctx_t *c = arg;
    weft_task_t *consumer = NULL;
    T_OK(weft_spawn(NULL, cancelled_consumer_body, c, &consumer));
    if (consumer == NULL) {
        return 0;
    }
    for (int i = 0; i < 1000 && !c->sleeping; i++) {
        T_OK(weft_yield());
    }
    T_EQ(c->sleeping, 1);
    T_OK(weft_task_cancel(consumer));
    T_OK(weft_await_task(consumer, NULL));
    weft_task_unref(consumer);
    return 0;
}

static void cancel_ctx_init(cancel_ctx_t *c, bool catch_it)
{
    memset(c, 0, sizeof(*c));
    c->catch_it = catch_it;
    c->sleep_rc = c->after_rc = c->next_rc = c->next2_rc = c->close_rc = NOT_SET;
}

Test(gen, cancelling_the_consumer_cancels_the_body_sleep_and_next_returns_the_body_code,
     .timeout = TEST_TIMEOUT_S)
{
    cancel_ctx_t c;
    cancel_ctx_init(&c, false);
    run_main(cancel_consumer_main, &c);
    EXPECT_RC(c.sleep_rc, UV_ECANCELED);
    EXPECT_RC(c.next_rc, UV_ECANCELED);
    EXPECT_OK(c.close_rc);
}

Test(gen, cancelling_the_consumer_lets_a_body_that_catches_it_yield_a_value,
     .timeout = TEST_TIMEOUT_S)
{
    cancel_ctx_t c;
    cancel_ctx_init(&c, true);
    run_main(cancel_consumer_main, &c);
    EXPECT_RC(c.sleep_rc, UV_ECANCELED);
    EXPECT_OK(c.next_rc);
    cr_expect_eq(weft_to_int(c.next_v), 99);
    EXPECT_OK(c.after_rc);
    EXPECT_RC(c.next2_rc, UV_EOF);
    EXPECT_OK(c.close_rc);
}

/* --- a million values; abandoned at weft_run's end ---------------------------------------- */

#define MILLION 1000000

TASK_FN(million_body)
{
    for (intptr_t i = 1; i <= MILLION; i++) {
        int rc = weft_gen_yield(weft_int(i), NULL);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

TASK_FN(million_main)
{
    weft_gen_t *g = NULL;
    void *v = NULL;
    long long sum = 0, count = 0;
    int rc;
    NEW_GEN(&g, million_body, NULL);
    while ((rc = weft_gen_next(g, &v)) == 0) {
        sum += weft_to_int(v);
        count++;
    }
    T_RC(rc, UV_EOF);
    T_EQ(count, MILLION);
    T_EQ(sum, (long long)MILLION * (MILLION + 1) / 2);
    T_OK(weft_gen_free(g));
    return 0;
}

Test(gen, a_million_values_through_next_add_up, .timeout = TEST_TIMEOUT_S)
{
    run_main(million_main, NULL);
}

/* The consumer's locals stay its own (the values come back in its context),
 * so this works on compact stacks too. */
Test(gen, a_million_values_through_next_add_up_on_a_compact_stack_loop, .timeout = TEST_TIMEOUT_S)
{
    run_main_mode(million_main, NULL, WEFT_STACK_COMPACT);
}

static count_t g_abandoned;

/* Yields 0, 1, 2, ... until a yield fails; records that code and returns. */
TASK_FN(abandoned_body)
{
    g_abandoned.started = true;
    for (intptr_t i = 0;; i++) {
        int rc = weft_gen_yield(weft_int(i), NULL);
        if (rc != 0) {
            g_abandoned.stop_rc = rc;
            g_abandoned.cleaned = true;
            return 0;
        }
    }
}

TASK_FN(abandon_main)
{
    weft_gen_t *g = NULL;
    void *v = NULL;
    NEW_GEN(&g, abandoned_body, NULL);
    T_OK(weft_gen_next(g, &v));
    T_OK(weft_gen_next(g, &v));
    *result = weft_int(5);
    return 0; /* never closed: suspended at its yield */
}

Test(gen, weft_run_cleans_up_a_generator_left_suspended_at_a_yield, .timeout = TEST_TIMEOUT_S)
{
    void *v = NULL;
    count_init(&g_abandoned, 1000);
    EXPECT_OK(weft_run(abandon_main, NULL, &v));
    cr_expect_eq(weft_to_int(v), 5);
    cr_expect(g_abandoned.started);
    cr_expect(g_abandoned.cleaned, "the abandoned body was not unwound");
    EXPECT_RC(g_abandoned.stop_rc, UV_ECANCELED);
    report_misses();
}

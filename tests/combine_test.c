/*
 * tests/combine_test.c - gather, wait, wait_for, as_completed, shield and
 * retry (weft/combine.h), with cancellation, timeouts and misuse. Children
 * sleep a few ms and then succeed or fail, so their sleeps set the order of
 * completion; no check is on how long anything took. Every test closes its
 * loop and expects 0.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <stdint.h>
#include <stdlib.h>

#include <weft/weft.h>

#define HOUR_MS (3600u * 1000u)

#define EXPECT_STATE(t, want)                                                          \
    do {                                                                               \
        weft_task_state_t st_ = weft_task_state(t);                                    \
        cr_expect_eq(st_, (want), "task state %s, want %s", weft_task_state_name(st_), \
                     weft_task_state_name(want));                                      \
    } while (0)

#include "task_harness.h"

/* A child: sleeps ms, then returns rc (value as result when rc is 0). When
 * the sleep is cut short it catches that, sleeps extra_ms more, and returns
 * the interruption's code (or 0 and value if swallow). */
typedef struct kid {
    uint64_t ms;
    int rc;
    intptr_t value;
    uint64_t extra_ms;
    bool swallow;
    int first_rc; /* what the first sleep returned */
    int order;    /* 1-based finishing order; 0 while running */
} kid_t;

static int g_order;

static int kid_body(void *arg, void **result)
{
    kid_t *k = arg;
    k->first_rc = weft_sleep(k->ms);
    if (k->first_rc != 0 && k->extra_ms > 0) {
        int rc = weft_sleep(k->extra_ms);
        (void)rc;
    }
    k->order = ++g_order;
    if (k->first_rc != 0 && !k->swallow) {
        return k->first_rc;
    }
    *result = weft_int(k->value);
    return k->first_rc != 0 ? 0 : k->rc;
}

static void spawn_kids(kid_t *k, size_t n, weft_task_t **t, weft_future_t **fs)
{
    for (size_t i = 0; i < n; i++) {
        t[i] = NULL;
        int rc = weft_spawn(NULL, kid_body, &k[i], &t[i]);
        EXPECT_OK(rc);
        fs[i] = rc == 0 ? weft_task_future(t[i]) : NULL;
    }
}

/* Declares kid_t k[n] = {...} (static: the children write to it), their
 * tasks t[n] and futures fs[n], and spawns them. */
#define KIDS(n, ...)                   \
    static kid_t k[n] = {__VA_ARGS__}; \
    weft_task_t *t[n];                 \
    weft_future_t *fs[n];              \
    spawn_kids(k, n, t, fs)

/* Cancel what still runs (so the loop can end) and drop the handles. */
static void release_kids(weft_task_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i] != NULL) {
            (void)weft_task_cancel(t[i]);
            weft_task_unref(t[i]);
            t[i] = NULL;
        }
    }
}

/* Cancels g_victim once it and every task in g_watch[0..g_nwatch) is
 * suspended or finished (watch entries may still be NULL: not spawned yet). */
static weft_task_t *g_victim;
static weft_task_t **g_watch;
static size_t g_nwatch;
static int g_cancel_rc = 1;

static int canceller_body(void *arg, void **result)
{
    (void)arg, (void)result;
    for (int i = 0; i < 1000; i++) {
        bool ready = weft_task_state(g_victim) == WEFT_TASK_SUSPENDED;
        for (size_t j = 0; ready && j < g_nwatch; j++) {
            ready = g_watch[j] != NULL && weft_task_state(g_watch[j]) >= WEFT_TASK_SUSPENDED;
        }
        if (ready) {
            g_cancel_rc = weft_task_cancel(g_victim);
            return 0;
        }
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    return UV_EAGAIN;
}

/* Run victim_fn as the victim on a fresh loop with the canceller. */
static void run_cancelled(weft_task_fn victim_fn, weft_task_t **watch, size_t nwatch,
                          weft_task_state_t want)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    g_watch = watch;
    g_nwatch = nwatch;
    ASSERT_OK(weft_spawn_ex(&loop, victim_fn, NULL, &main_opts, &g_victim));
    ASSERT_OK(weft_spawn(&loop, canceller_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_cancel_rc);
    EXPECT_STATE(g_victim, want);
    weft_task_unref(g_victim);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- gather ----------------------------------------------------------------- */

TASK_TEST(gather, results_come_in_argument_order_whatever_the_completion_order)
{
    KIDS(3, {.ms = 30, .value = 1}, {.ms = 10, .value = 2}, {.ms = 20, .value = 3});
    void *res[3] = {0};
    int err[3] = {1, 1, 1};
    EXPECT_OK(weft_gather(fs, 3, res, err, 0));
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(weft_to_int(res[i]), i + 1, "results[%d] = %ld", i, (long)weft_to_int(res[i]));
        EXPECT_OK(err[i]);
        cr_expect_neq(k[i].order, 0, "child %d had not finished", i);
    }
    cr_expect(k[1].order < k[2].order && k[2].order < k[0].order, "finished %d %d %d", k[0].order,
              k[1].order, k[2].order);
    release_kids(t, 3);
    return 0;
}

TASK_TEST(gather, by_default_the_first_failure_returns_at_once_and_the_others_keep_running)
{
    KIDS(3, {.ms = 30, .rc = UV_EIO}, {.ms = 5, .rc = UV_EPIPE}, {.ms = 50, .value = 7});
    int err[3] = {1, 1, 1};
    void *v = NULL;
    EXPECT_RC(weft_gather(fs, 3, NULL, err, 0), UV_EPIPE);
    cr_expect_eq(k[1].order, 1);
    cr_expect_eq(k[0].order, 0, "gather waited for the slower failure");
    cr_expect_eq(k[2].order, 0, "gather waited for the slowest child");
    EXPECT_RC(err[0], WEFT_EPENDING);
    EXPECT_RC(err[1], UV_EPIPE);
    EXPECT_RC(err[2], WEFT_EPENDING);
    /* Not cancelled: both still finish with their own outcome. */
    EXPECT_RC(weft_await_task(t[0], NULL), UV_EIO);
    EXPECT_OK(weft_await_task(t[2], &v));
    cr_expect_eq(weft_to_int(v), 7);
    EXPECT_OK(k[0].first_rc);
    EXPECT_OK(k[2].first_rc);
    release_kids(t, 3);
    return 0;
}

TASK_TEST(gather, return_errors_collects_every_code_and_counts_failures_as_retrieved)
{
    KIDS(3, {.ms = 20, .rc = UV_EIO}, {.ms = 5, .rc = UV_EPIPE}, {.ms = 40, .value = 7});
    int err[3] = {1, 1, 1};
    void *res[3] = {0};
    weft_loop_stats_t st;
    EXPECT_OK(weft_gather(fs, 3, res, err, WEFT_RETURN_ERRORS));
    EXPECT_RC(err[0], UV_EIO);
    EXPECT_RC(err[1], UV_EPIPE);
    EXPECT_OK(err[2]);
    cr_expect_eq(weft_to_int(res[2]), 7);
    for (int i = 0; i < 3; i++) {
        cr_expect_neq(k[i].order, 0, "child %d had not finished", i);
    }
    release_kids(t, 3); /* released unread: gather retrieved the failures */
    weft_loop_stats(weft_loop_current(), &st);
    cr_expect_eq(st.errors_unretrieved, 0, "%llu failures counted as never retrieved",
                 (unsigned long long)st.errors_unretrieved);
    return 0;
}

static kid_t g_k[3];
static weft_task_t *g_t[3];

/* Children: one plain, one that cleans up for 10 ms, and a done future. */
static int cancelled_gatherer_body(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *fs[3];
    void *v = NULL;
    g_k[0] = (kid_t){.ms = HOUR_MS};
    g_k[1] = (kid_t){.ms = HOUR_MS, .extra_ms = 10};
    spawn_kids(g_k, 2, g_t, fs);
    EXPECT_OK(weft_future_new(NULL, &fs[2]));
    EXPECT_OK(weft_future_set_result(fs[2], weft_int(5)));
    int rc = weft_gather(fs, 3, NULL, NULL, 0);
    EXPECT_RC(rc, UV_ECANCELED);
    for (int i = 0; i < 2; i++) {
        cr_expect_neq(g_k[i].order, 0, "gather returned before child %d finished", i);
        EXPECT_STATE(g_t[i], WEFT_TASK_CANCELLED);
        EXPECT_RC(g_k[i].first_rc, UV_ECANCELED);
    }
    EXPECT_OK(weft_future_result(fs[2], &v)); /* a done future stays as it was */
    cr_expect_eq(weft_to_int(v), 5);
    weft_future_unref(fs[2]);
    release_kids(g_t, 2);
    return rc;
}

Test(gather, cancelling_the_gatherer_cancels_every_child_and_returns_after_they_finished,
     .timeout = TEST_TIMEOUT_S)
{
    run_cancelled(cancelled_gatherer_body, g_t, 2, WEFT_TASK_CANCELLED);
}

TASK_TEST(gather, an_expiring_timeout_scope_cancels_the_children_and_gives_etimedout)
{
    KIDS(2, {.ms = HOUR_MS}, {.ms = HOUR_MS, .extra_ms = 10});
    weft_timeout_t tmo;
    EXPECT_OK(weft_timeout_begin(&tmo, 10));
    EXPECT_RC(weft_gather(fs, 2, NULL, NULL, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&tmo), UV_ETIMEDOUT);
    for (int i = 0; i < 2; i++) {
        cr_expect_neq(k[i].order, 0, "child %d still ran when gather returned", i);
        EXPECT_STATE(t[i], WEFT_TASK_CANCELLED);
    }
    release_kids(t, 2);
    return 0;
}

TASK_TEST(gather, of_futures_already_done_and_of_none)
{
    KIDS(1, {.ms = 0, .value = 22});
    weft_future_t *all[3] = {NULL, fs[0], NULL};
    void *res[3] = {0};
    int err[3] = {1, 1, 1};
    EXPECT_OK(weft_await_task(t[0], NULL));
    EXPECT_OK(weft_future_new(NULL, &all[0]));
    EXPECT_OK(weft_future_new(NULL, &all[2]));
    EXPECT_OK(weft_future_set_result(all[0], weft_int(11)));
    EXPECT_OK(weft_future_set_error(all[2], UV_EIO, "done already"));
    EXPECT_OK(weft_gather(all, 2, res, err, 0));
    cr_expect(weft_to_int(res[0]) == 11 && weft_to_int(res[1]) == 22);
    EXPECT_RC(weft_gather(all, 3, res, err, 0), UV_EIO);
    EXPECT_RC(err[2], UV_EIO);
    EXPECT_OK(weft_gather(all, 3, res, err, WEFT_RETURN_ERRORS));
    cr_expect(err[0] == 0 && err[1] == 0 && err[2] == UV_EIO, "errors %d %d %d", err[0], err[1],
              err[2]);
    EXPECT_OK(weft_gather(NULL, 0, NULL, NULL, 0));
    EXPECT_OK(weft_gather(all, 0, res, err, WEFT_RETURN_ERRORS));
    weft_future_unref(all[0]);
    weft_future_unref(all[2]);
    release_kids(t, 1);
    return 0;
}

#define MANY 1000
static kid_t g_many[MANY];
static weft_task_t *g_many_t[MANY];
static weft_future_t *g_many_fs[MANY];
static void *g_many_res[MANY];
static int g_many_err[MANY];

TASK_TEST(gather, a_thousand_tasks)
{
    int bad = 0;
    for (int i = 0; i < MANY; i++) {
        g_many[i] = (kid_t){.ms = (uint64_t)(MANY - i) % 4, .value = 3 * i};
        g_many_err[i] = 1;
    }
    spawn_kids(g_many, MANY, g_many_t, g_many_fs);
    EXPECT_OK(weft_gather(g_many_fs, MANY, g_many_res, g_many_err, 0));
    for (int i = 0; i < MANY; i++) {
        bad += weft_to_int(g_many_res[i]) != 3 * i || g_many_err[i] != 0 || g_many[i].order == 0;
    }
    cr_expect_eq(bad, 0, "%d of %d wrong", bad, MANY);
    release_kids(g_many_t, MANY);
    return 0;
}

/* --- wait ------------------------------------------------------------------- */

static void expect_mask(const bool *done, const char *want)
{
    for (size_t i = 0; want[i] != '\0'; i++) {
        cr_expect_eq(done[i], want[i] == '1', "done[%zu] = %d, want mask %s", i, done[i], want);
    }
}

TASK_TEST(wait, first_completed_and_all_completed_give_the_done_mask_and_cancel_nothing)
{
    KIDS(3, {.ms = 45, .value = 1}, {.ms = 5, .value = 2}, {.ms = 30, .rc = UV_EIO});
    bool done[3] = {true, false, true};
    EXPECT_OK(weft_wait(fs, 3, WEFT_FOREVER, WEFT_FIRST_COMPLETED, done));
    expect_mask(done, "010");
    cr_expect_eq(k[0].order + k[2].order, 0);
    /* Already met: returns at once. */
    EXPECT_OK(weft_wait(fs, 3, 0, WEFT_FIRST_COMPLETED, done));
    /* A failure counts as completed. */
    EXPECT_OK(weft_wait(fs, 3, WEFT_FOREVER, WEFT_ALL_COMPLETED, done));
    expect_mask(done, "111");
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(k[i].first_rc);
        EXPECT_STATE(t[i], i < 2 ? WEFT_TASK_DONE : WEFT_TASK_FAILED);
    }
    EXPECT_RC(weft_task_result(t[2], NULL), UV_EIO);
    EXPECT_OK(weft_wait(NULL, 0, WEFT_FOREVER, WEFT_ALL_COMPLETED, NULL)); /* n = 0 */
    release_kids(t, 3);
    return 0;
}

TASK_TEST(wait, first_error_returns_at_the_first_failure_or_when_all_are_done)
{
    KIDS(6, {.ms = 5}, {.ms = 15, .rc = UV_EIO}, {.ms = 45}, {.ms = 25}, {.ms = 20}, {.ms = 35});
    bool done[3];
    EXPECT_OK(weft_wait(fs, 3, WEFT_FOREVER, WEFT_FIRST_ERROR, done));
    expect_mask(done, "110");
    cr_expect_eq(k[2].order, 0);
    EXPECT_RC(weft_future_result(fs[1], NULL), UV_EIO);
    /* No failure among these: it waits for all. */
    EXPECT_OK(weft_wait(fs + 3, 3, WEFT_FOREVER, WEFT_FIRST_ERROR, done));
    expect_mask(done, "111");
    EXPECT_OK(weft_await_task(t[2], NULL)); /* not cancelled */
    release_kids(t, 6);
    return 0;
}

static int cancelled_waiter_body(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *fs[1];
    bool done[1] = {true};
    void *v = NULL;
    g_k[0] = (kid_t){.ms = 30, .value = 4};
    spawn_kids(g_k, 1, g_t, fs);
    EXPECT_RC(weft_wait(fs, 1, WEFT_FOREVER, WEFT_ALL_COMPLETED, done), UV_ECANCELED);
    cr_expect_neq(weft_task_state(g_t[0]), WEFT_TASK_CANCELLED);
    EXPECT_OK(weft_await_task(g_t[0], &v)); /* still runs, then finishes */
    cr_expect_eq(weft_to_int(v), 4);
    EXPECT_OK(g_k[0].first_rc);
    release_kids(g_t, 1);
    return 0;
}

Test(wait, a_cancelled_waiter_gets_ecanceled_and_leaves_the_futures_running,
     .timeout = TEST_TIMEOUT_S)
{
    run_cancelled(cancelled_waiter_body, NULL, 0, WEFT_TASK_DONE);
}

/* --- wait_for --------------------------------------------------------------- */

/* Plain, cleaning up for 20 ms, and finishing anyway (its outcome wins). */
TASK_TEST(wait_for, on_timeout_cancels_the_task_and_returns_once_it_finished)
{
    KIDS(3, {.ms = HOUR_MS}, {.ms = HOUR_MS, .extra_ms = 20},
         {.ms = HOUR_MS, .extra_ms = 5, .swallow = true, .value = 99});
    void *v = NULL;
    for (int i = 0; i < 3; i++) {
        EXPECT_RC(weft_wait_for(fs[i], 10, &v), i < 2 ? UV_ETIMEDOUT : 0);
        cr_expect_neq(k[i].order, 0, "child %d still ran when wait_for returned", i);
        EXPECT_RC(k[i].first_rc, UV_ECANCELED);
        EXPECT_STATE(t[i], i < 2 ? WEFT_TASK_CANCELLED : WEFT_TASK_DONE);
    }
    cr_expect_eq(weft_to_int(v), 99);
    release_kids(t, 3);
    return 0;
}

static void complete_later_cb(void *arg)
{
    EXPECT_OK(weft_future_set_result(arg, weft_int(8)));
}

TASK_TEST(wait_for, returns_the_result_in_time_and_cancels_a_plain_future_on_timeout)
{
    KIDS(2, {.ms = 5, .value = 42}, {.ms = 5, .rc = UV_EIO});
    weft_future_t *f, *g;
    void *v = NULL;
    EXPECT_OK(weft_wait_for(fs[0], 1000, &v));
    cr_expect_eq(weft_to_int(v), 42);
    EXPECT_RC(weft_wait_for(fs[1], 1000, &v), UV_EIO);
    release_kids(t, 2);
    EXPECT_OK(weft_future_new(NULL, &f));
    EXPECT_OK(weft_future_new(NULL, &g));
    EXPECT_RC(weft_wait_for(f, 5, NULL), UV_ETIMEDOUT);
    cr_expect(weft_future_cancelled(f));
    EXPECT_OK(weft_call_later(weft_loop_current(), 2, complete_later_cb, g, NULL));
    EXPECT_OK(weft_wait_for(g, 1000, &v));
    cr_expect_eq(weft_to_int(v), 8);
    weft_future_unref(f);
    weft_future_unref(g);
    return 0;
}

static int cancelled_wait_for_body(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f;
    g_k[0] = (kid_t){.ms = HOUR_MS, .extra_ms = 5};
    spawn_kids(g_k, 1, g_t, &f);
    EXPECT_RC(weft_wait_for(f, HOUR_MS, NULL), UV_ECANCELED);
    cr_expect_neq(g_k[0].order, 0, "the inner task still ran when wait_for returned");
    EXPECT_STATE(g_t[0], WEFT_TASK_CANCELLED);
    release_kids(g_t, 1);
    return 0;
}

Test(wait_for, cancelling_the_caller_cancels_the_inner_task_too, .timeout = TEST_TIMEOUT_S)
{
    run_cancelled(cancelled_wait_for_body, g_t, 1, WEFT_TASK_DONE);
}

/* --- as_completed ----------------------------------------------------------- */

TASK_TEST(as_completed, yields_futures_in_completion_order_then_eof)
{
    weft_future_t *f = NULL;
    weft_as_completed_t it;
    static const int want[] = {1, 2, 0};
    KIDS(3, {.ms = 30}, {.ms = 10}, {.ms = 20});
    EXPECT_OK(weft_as_completed_init(&it, fs, 3, WEFT_FOREVER));
    for (int i = 0; i < 3; i++) {
        f = NULL;
        EXPECT_OK(weft_as_completed_next(&it, &f));
        cr_expect_eq(f, fs[want[i]], "#%d is not future %d", i, want[i]);
        cr_expect(f != NULL && weft_future_done(f));
    }
    EXPECT_RC(weft_as_completed_next(&it, &f), UV_EOF);
    weft_as_completed_close(&it);
    release_kids(t, 3);
    return 0;
}

TASK_TEST(as_completed, futures_done_at_init_come_first_in_array_order)
{
    KIDS(1, {.ms = 5});
    weft_future_t *all[3] = {fs[0]}, *f = NULL;
    weft_as_completed_t it;
    EXPECT_OK(weft_future_new(NULL, &all[1]));
    EXPECT_OK(weft_future_new(NULL, &all[2]));
    EXPECT_OK(weft_future_set_result(all[2], NULL));
    EXPECT_OK(weft_future_set_error(all[1], UV_EIO, NULL));
    EXPECT_OK(weft_as_completed_init(&it, all, 3, WEFT_FOREVER));
    for (int i = 1; i <= 3; i++) {
        EXPECT_OK(weft_as_completed_next(&it, &f));
        cr_expect_eq(f, all[i % 3], "#%d is not future %d", i - 1, i % 3);
    }
    EXPECT_RC(weft_as_completed_next(&it, &f), UV_EOF);
    weft_as_completed_close(&it);
    EXPECT_RC(weft_future_result(all[1], NULL), UV_EIO);
    weft_future_unref(all[1]);
    weft_future_unref(all[2]);
    /* n = 0: nothing to yield. */
    EXPECT_OK(weft_as_completed_init(&it, all, 0, WEFT_FOREVER));
    EXPECT_RC(weft_as_completed_next(&it, &f), UV_EOF);
    weft_as_completed_close(&it);
    release_kids(t, 1);
    return 0;
}

TASK_TEST(as_completed, the_overall_timeout_gives_etimedout)
{
    weft_future_t *f = NULL;
    weft_as_completed_t it;
    void *v = NULL;
    KIDS(2, {.ms = 0}, {.ms = 50, .value = 6});
    EXPECT_OK(weft_await_task(t[0], NULL));
    EXPECT_OK(weft_as_completed_init(&it, fs, 2, 15));
    EXPECT_OK(weft_as_completed_next(&it, &f));
    cr_expect_eq(f, fs[0]);
    EXPECT_RC(weft_as_completed_next(&it, &f), UV_ETIMEDOUT);
    weft_as_completed_close(&it);
    EXPECT_OK(weft_await_task(t[1], &v)); /* not cancelled */
    cr_expect_eq(weft_to_int(v), 6);
    release_kids(t, 2);
    return 0;
}

TASK_TEST(as_completed, closing_early_leaves_no_hook_behind)
{
    static kid_t k[3] = {{.ms = 10, .value = 1}, {.ms = 20, .value = 2}, {.ms = 30, .value = 3}};
    weft_task_t *t[3];
    weft_future_t **fs = malloc(4 * sizeof *fs), *f = NULL;
    weft_as_completed_t *it = malloc(sizeof *it), *it2 = malloc(sizeof *it2);
    void *v = NULL;
    if (fs == NULL || it == NULL || it2 == NULL) {
        return UV_ENOMEM; /* (and the test fails) */
    }
    spawn_kids(k, 3, t, fs);
    EXPECT_OK(weft_future_new(NULL, &fs[3]));
    EXPECT_OK(weft_as_completed_init(it, fs, 4, WEFT_FOREVER));
    EXPECT_OK(weft_as_completed_next(it, &f));
    cr_expect_eq(f, fs[0]);
    EXPECT_OK(weft_as_completed_init(it2, fs, 4, 20));
    weft_as_completed_close(it);
    weft_as_completed_close(it2); /* never stepped */
    weft_future_t *plain = fs[3];
    /* Anything left watching would now touch freed memory (ASan). */
    free(it);
    free(it2);
    free(fs);
    EXPECT_OK(weft_sleep(40));
    EXPECT_OK(weft_future_set_result(plain, weft_int(4)));
    EXPECT_OK(weft_yield());
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(weft_await_task(t[i], &v));
        cr_expect_eq(weft_to_int(v), i + 1);
    }
    EXPECT_OK(weft_await(plain, &v));
    cr_expect_eq(weft_to_int(v), 4);
    weft_future_unref(plain);
    release_kids(t, 3);
    return 0;
}

/* --- shield ----------------------------------------------------------------- */

static int shielded_awaiter_body(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *f, *out = NULL;
    void *v = NULL;
    g_k[0] = (kid_t){.ms = 20, .value = 7};
    spawn_kids(g_k, 1, g_t, &f);
    EXPECT_OK(weft_shield(f, &out));
    if (out == NULL) {
        release_kids(g_t, 1);
        return UV_EINVAL;
    }
    EXPECT_RC(weft_await(out, NULL), UV_ECANCELED);
    cr_expect(weft_future_cancelled(out), "the outer future was not cancelled");
    cr_expect_neq(weft_task_state(g_t[0]), WEFT_TASK_CANCELLED);
    EXPECT_OK(weft_await_task(g_t[0], &v)); /* the inner one completes */
    cr_expect_eq(weft_to_int(v), 7);
    EXPECT_OK(g_k[0].first_rc);
    weft_future_unref(out);
    release_kids(g_t, 1);
    return 0;
}

Test(shield, cancelling_the_awaiter_cancels_the_outer_but_not_the_inner_task,
     .timeout = TEST_TIMEOUT_S)
{
    run_cancelled(shielded_awaiter_body, NULL, 0, WEFT_TASK_DONE);
}

TASK_TEST(shield, the_outer_future_completes_like_the_inner_one)
{
    weft_future_t *out[3] = {0};
    void *v = NULL;
    KIDS(3, {.ms = 5, .value = 8}, {.ms = 5, .rc = UV_EIO}, {.ms = 5, .value = 9});
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(weft_shield(fs[i], &out[i]));
    }
    /* The shield holds its own reference: the caller may let go. */
    weft_task_unref(t[2]);
    t[2] = NULL;
    for (int i = 0; i < 3 && out[i] != NULL; i++) {
        static const int want_rc[] = {0, UV_EIO, 0};
        static const int want_v[] = {8, 0, 9};
        v = NULL;
        EXPECT_RC(weft_await(out[i], &v), want_rc[i]);
        if (want_rc[i] == 0) {
            cr_expect_eq(weft_to_int(v), want_v[i]);
        }
        weft_future_unref(out[i]);
    }
    EXPECT_RC(weft_task_result(t[1], NULL), UV_EIO);
    release_kids(t, 3);
    return 0;
}

/* --- retry ------------------------------------------------------------------ */

typedef struct script {
    int codes[8]; /* code of call i (the last one repeats) */
    int calls;
    int retry_if_calls, retry_if_code;
    void *retry_if_arg;
} script_t;

static int script_fn(void *arg, void **result)
{
    script_t *s = arg;
    int rc = s->codes[s->calls < 8 ? s->calls : 7];
    s->calls++;
    if (rc == 0 && result != NULL) {
        *result = weft_int(100 + s->calls);
    }
    return rc;
}

static void script_fill(script_t *s, const int *codes, int n)
{
    *s = (script_t){.calls = 0};
    for (int i = 0; i < 8; i++) {
        s->codes[i] = codes[i < n ? i : n - 1];
    }
}

static bool not_eperm(int code, void *arg)
{
    script_t *s = arg;
    s->retry_if_calls++;
    s->retry_if_code = code;
    s->retry_if_arg = arg;
    return code != UV_EPERM;
}

TASK_TEST(retry, succeeds_on_the_third_attempt)
{
    script_t s;
    weft_retry_opts_t o = {.attempts = 5, .base_delay_ms = 1};
    void *v = NULL;
    script_fill(&s, (int[]){UV_EAGAIN, UV_EAGAIN, 0}, 3);
    EXPECT_OK(weft_retry(script_fn, &s, &o, &v));
    cr_expect_eq(s.calls, 3);
    cr_expect_eq(weft_to_int(v), 103);
    /* UV_ETIMEDOUT from fn itself (no scope expired) is an ordinary failure. */
    script_fill(&s, (int[]){UV_ETIMEDOUT, UV_ETIMEDOUT, 0}, 3);
    EXPECT_OK(weft_retry(script_fn, &s, &o, &v));
    cr_expect_eq(s.calls, 3);
    return 0;
}

TASK_TEST(retry, gives_up_after_attempts_with_the_last_code)
{
    script_t s;
    weft_retry_opts_t o = {.attempts = 3, .base_delay_ms = 1, .jitter = true};
    void *v = NULL;
    script_fill(&s, (int[]){UV_EAGAIN, UV_EAGAIN, UV_EIO, 0}, 4);
    EXPECT_RC(weft_retry(script_fn, &s, &o, &v), UV_EIO);
    cr_expect_eq(s.calls, 3);
    o.attempts = 1;
    script_fill(&s, (int[]){UV_EAGAIN, 0}, 2);
    EXPECT_RC(weft_retry(script_fn, &s, &o, &v), UV_EAGAIN);
    cr_expect_eq(s.calls, 1);
    return 0;
}

TASK_TEST(retry, never_retries_ecanceled_and_retry_if_false_stops_at_once)
{
    script_t s;
    weft_retry_opts_t o = {.attempts = 5, .base_delay_ms = 1, .retry_if = not_eperm};
    void *v = NULL;
    script_fill(&s, (int[]){UV_ECANCELED, 0}, 2);
    EXPECT_RC(weft_retry(script_fn, &s, &o, &v), UV_ECANCELED);
    cr_expect_eq(s.calls, 1);
    cr_expect_eq(s.retry_if_calls, 0, "retry_if was asked about UV_ECANCELED");

    script_fill(&s, (int[]){UV_EAGAIN, UV_EPERM, 0}, 3);
    EXPECT_RC(weft_retry(script_fn, &s, &o, &v), UV_EPERM);
    cr_expect_eq(s.calls, 2);
    cr_expect_eq(s.retry_if_calls, 2);
    EXPECT_RC(s.retry_if_code, UV_EPERM);
    cr_expect_eq(s.retry_if_arg, &s, "retry_if did not get fn's arg");
    return 0;
}

/* Every attempt fails until a 60 ms scope ends the run; only calls are
 * counted. Doubling from 5 ms, call k comes no earlier than 0, 5, 15, 35, 75
 * ms: at most 4 calls (sleeps never wake early), and at least 3 unless the
 * loop stalls for 45 ms. Capped at 5 ms, about one call per 5 ms. */
static int calls_within_60ms(uint64_t max_delay_ms, bool jitter)
{
    script_t s;
    weft_retry_opts_t o = {
        .attempts = 1000, .base_delay_ms = 5, .max_delay_ms = max_delay_ms, .jitter = jitter};
    weft_timeout_t tmo;
    void *v = NULL;
    script_fill(&s, (int[]){UV_EAGAIN}, 1);
    EXPECT_OK(weft_timeout_begin(&tmo, 60));
    EXPECT_RC(weft_retry(script_fn, &s, &o, &v), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&tmo), UV_ETIMEDOUT);
    return s.calls;
}

TASK_TEST(retry, delays_double_up_to_the_cap)
{
    int doubling = calls_within_60ms(0, false);
    int capped = calls_within_60ms(5, false);
    int jittered = calls_within_60ms(0, true);
    cr_expect(doubling >= 3 && doubling <= 4, "doubling delays: %d calls in 60 ms, want 3-4",
              doubling);
    cr_expect_geq(capped, 6, "5 ms cap: %d calls in 60 ms, want >= 6", capped);
    cr_expect_geq(jittered, 3, "full jitter only shortens delays: %d calls", jittered);
    return 0;
}

/* fn asks to cancel its own task, then fails: the cancel must show at
 * retry's next suspension (the backoff), inside a timeout scope or not. */
static int self_cancel_fn(void *arg, void **result)
{
    (void)result;
    script_t *s = arg;
    if (s->calls++ == 0) {
        EXPECT_OK(weft_task_cancel(weft_task_current()));
        return s->codes[0];
    }
    return 0;
}

TASK_TEST(retry, a_cancel_requested_during_an_attempt_is_not_lost)
{
    weft_retry_opts_t o = {.attempts = 3, .base_delay_ms = 1};
    weft_timeout_t tmo;
    void *v = NULL;
    for (int i = 0; i < 2; i++) {
        script_t s;
        script_fill(&s, (int[]){i ? UV_ETIMEDOUT : UV_EAGAIN}, 1);
        EXPECT_OK(weft_timeout_begin(&tmo, HOUR_MS));
        EXPECT_RC(weft_retry(self_cancel_fn, &s, &o, &v), UV_ECANCELED);
        EXPECT_OK(weft_timeout_end(&tmo));
        cr_expect_eq(s.calls, 1, "fn (failing with %s) was retried after a cancel",
                     weft_err_name(s.codes[0]));
    }
    return 0;
}

static script_t g_script;
static int cancelled_retry_body(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_retry_opts_t o = {.attempts = 5, .base_delay_ms = HOUR_MS};
    void *v = NULL;
    script_fill(&g_script, (int[]){UV_EAGAIN, 0}, 2);
    EXPECT_RC(weft_retry(script_fn, &g_script, &o, &v), UV_ECANCELED);
    cr_expect_eq(g_script.calls, 1, "fn was called again after a cancelled backoff");
    return 0;
}

Test(retry, a_cancel_during_the_backoff_stops_it, .timeout = TEST_TIMEOUT_S)
{
    run_cancelled(cancelled_retry_body, NULL, 0, WEFT_TASK_DONE);
}

/* --- misuse ----------------------------------------------------------------- */

TASK_TEST(misuse, null_arrays_and_entries_give_einval_and_waiting_for_itself_edeadlk)
{
    weft_future_t *f, *out = NULL;
    weft_as_completed_t it;
    bool done[2];
    void *v = NULL;
    EXPECT_OK(weft_future_new(NULL, &f));
    weft_future_t *with_null[2] = {f, NULL};
    EXPECT_RC(weft_gather(NULL, 2, NULL, NULL, 0), UV_EINVAL);
    EXPECT_RC(weft_gather(with_null, 2, NULL, NULL, 0), UV_EINVAL);
    EXPECT_RC(weft_gather(with_null, 2, NULL, NULL, WEFT_RETURN_ERRORS), UV_EINVAL);
    EXPECT_RC(weft_wait(NULL, 2, 5, WEFT_ALL_COMPLETED, done), UV_EINVAL);
    EXPECT_RC(weft_wait(with_null, 2, 5, WEFT_FIRST_COMPLETED, done), UV_EINVAL);
    EXPECT_RC(weft_wait_for(NULL, 5, &v), UV_EINVAL);
    EXPECT_RC(weft_shield(NULL, &out), UV_EINVAL);
    EXPECT_RC(weft_shield(f, NULL), UV_EINVAL);
    EXPECT_RC(weft_as_completed_init(&it, NULL, 2, 5), UV_EINVAL);
    EXPECT_RC(weft_as_completed_init(&it, with_null, 2, 5), UV_EINVAL);
    EXPECT_RC(weft_as_completed_init(NULL, with_null, 1, 5), UV_EINVAL);
    EXPECT_RC(weft_retry(NULL, NULL, &(weft_retry_opts_t){.attempts = 1}, &v), UV_EINVAL);
    /* The calling task among the futures. */
    weft_future_t *with_self[2] = {f, weft_task_future(weft_task_current())};
    EXPECT_RC(weft_gather(with_self, 2, NULL, NULL, 0), WEFT_EDEADLK);
    EXPECT_RC(weft_wait(with_self, 2, 5, WEFT_ALL_COMPLETED, done), WEFT_EDEADLK);
    EXPECT_RC(weft_wait_for(with_self[1], 5, &v), WEFT_EDEADLK);
    EXPECT_RC(weft_as_completed_init(&it, with_self, 2, 5), WEFT_EDEADLK);
    /* Nothing was left watching f. */
    cr_expect_not(weft_future_done(f));
    EXPECT_OK(weft_future_set_result(f, NULL));
    EXPECT_OK(weft_yield());
    weft_future_unref(f);
    return 0;
}

static int g_out_rc[6];
static script_t g_out_script;

static void call_all(void *arg)
{
    weft_future_t *f = arg;
    weft_future_t *fs[1] = {f}, *out = NULL;
    weft_as_completed_t it;
    weft_retry_opts_t o = {.attempts = 2};
    bool done[1];
    void *v = NULL;
    g_out_rc[0] = weft_gather(fs, 1, NULL, NULL, 0);
    g_out_rc[1] = weft_wait(fs, 1, 5, WEFT_ALL_COMPLETED, done);
    g_out_rc[2] = weft_wait_for(f, 5, &v);
    g_out_rc[3] = weft_shield(f, &out);
    if (g_out_rc[3] == 0) {
        weft_future_unref(out);
    }
    g_out_rc[4] = weft_as_completed_init(&it, fs, 1, 5);
    if (g_out_rc[4] == 0) {
        weft_as_completed_close(&it);
    }
    g_out_rc[5] = weft_retry(script_fn, &g_out_script, &o, &v);
}

/* shield does not wait: combine.h lets it work outside tasks. */
static void expect_all(int want)
{
    static const char *const what[] = {"gather", "wait", "wait_for", "shield", "as_completed_init",
                                       "retry"};
    for (int i = 0; i < 6; i++) {
        int w = i == 3 ? 0 : want;
        cr_expect_eq(g_out_rc[i], w, "%s returned %s, want %s", what[i], weft_err_name(g_out_rc[i]),
                     weft_err_name(w));
        g_out_rc[i] = 1;
    }
}

Test(misuse, outside_a_task_every_call_returns_enotask, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    script_fill(&g_out_script, (int[]){0}, 1);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    call_all(f);
    expect_all(WEFT_ENOTASK);
    ASSERT_OK(weft_call_soon(&loop, call_all, f, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    expect_all(WEFT_ENOTASK);
    cr_expect_eq(g_out_script.calls, 0, "retry called fn outside a task");
    cr_expect_not(weft_future_done(f));
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_future_t *g_foreign;

static int wrong_loop_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_future_t *local, *mixed[2];
    EXPECT_OK(weft_future_new(NULL, &local));
    mixed[0] = local;
    mixed[1] = g_foreign;
    call_all(g_foreign);
    for (int i = 0; i < 5; i++) { /* retry takes no future: it just runs */
        EXPECT_RC(g_out_rc[i], WEFT_EWRONGLOOP);
    }
    EXPECT_OK(g_out_rc[5]);
    EXPECT_RC(weft_gather(mixed, 2, NULL, NULL, 0), WEFT_EWRONGLOOP);
    EXPECT_RC(weft_wait(mixed, 2, 5, WEFT_FIRST_COMPLETED, NULL), WEFT_EWRONGLOOP);
    EXPECT_OK(weft_future_set_result(local, NULL));
    EXPECT_OK(weft_yield());
    weft_future_unref(local);
    return 0;
}

Test(misuse, a_future_of_another_loop_gives_ewrongloop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t other;
    script_fill(&g_out_script, (int[]){0}, 1);
    ASSERT_OK(weft_loop_init(&other, NULL));
    ASSERT_OK(weft_future_new(&other, &g_foreign));
    run_main(wrong_loop_main, WEFT_STACK_GUARDED);
    cr_expect_not(weft_future_done(g_foreign));
    weft_future_unref(g_foreign);
    EXPECT_OK(weft_loop_close(&other));
}

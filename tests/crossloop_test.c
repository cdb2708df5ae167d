/*
 * tests/crossloop_test.c - futures and waits that cross loops and threads:
 * tokens, the answers to remote waits, and the loop's door (weft_loop_close
 * waiting for posts in flight).
 *
 * Most cases run two loops on the test's own thread, one tick at a time
 * (tick(): a stop callback, then weft_loop_run), so the order in which the
 * messages between them are handled is fixed and each race of the issue is
 * replayed exactly instead of being made likely. Loops live on the heap, so
 * that ASan reports any touch of a loop after it was closed and freed.
 */
#include <stdlib.h>
#include <unistd.h>
#include <weft/weft.h>

#include "plain_test.h"
#include "check.h"
#include "core/loop_int.h"
#include "core/testhooks.h"

static void stop_cb(void *arg)
{
    weft_loop_stop(arg);
}

/* One iteration of l: drain its inbox, run what is ready, return. */
static void tick(weft_loop_t *l)
{
    ASSERT_OK(weft_call_soon(l, stop_cb, l, NULL));
    ASSERT_OK(weft_loop_run(l));
}

static weft_loop_t *new_loop(void)
{
    weft_loop_t *l = aligned_alloc(64, sizeof(*l));
    cr_assert_not_null(l);
    weft_loop_opts_t o = {.idle_poll_us = -1};
    ASSERT_OK(weft_loop_init(l, &o));
    return l;
}

static void free_loop(weft_loop_t *l)
{
    ASSERT_OK(weft_loop_close(l));
    free(l);
}

static uint64_t remote_waits(weft_loop_t *l)
{
    weft_loop_stats_t st;
    weft_loop_stats(l, &st);
    return st.remote_waits;
}

static uint64_t tokens_live(weft_loop_t *l)
{
    weft_loop_stats_t st;
    weft_loop_stats(l, &st);
    return st.tokens_live;
}

struct awaiter {
    weft_future_token_t tok;
    int64_t timeout_ms; /* < 0: no timeout */
    bool cancel_first;  /* cancel itself before the await */
    int rc;
    void *value;
};

static int await_token_body(void *arg, void **result)
{
    (void)result;
    struct awaiter *a = arg;
    if (a->cancel_first && weft_task_cancel(weft_task_current()) != 0)
        return UV_EINVAL;
    a->rc = a->timeout_ms >= 0
                ? weft_await_token_timeout(a->tok, (uint64_t)a->timeout_ms, &a->value)
                : weft_await_token(a->tok, &a->value);
    return 0;
}

/* A's task (returned, referenced) waits through aw for a new future *f of
 * B: it has asked, and B has recorded the wait. */
static weft_task_t *wait_on_b(weft_loop_t *a, weft_loop_t *b, weft_future_t **f, struct awaiter *aw)
{
    weft_task_t *t;
    ASSERT_OK(weft_future_new(b, f));
    ASSERT_OK(weft_future_token(*f, &aw->tok));
    ASSERT_OK(weft_spawn(a, await_token_body, aw, &t));
    tick(a); /* ask */
    tick(b); /* record: the record holds the token's reference */
    return t;
}

static int return_seven(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(7);
    return 0;
}

static int sleep_long(void *arg, void **result)
{
    (void)arg, (void)result;
    return weft_sleep(600000);
}

/* Loop A's task waits for task tb of loop B and is cancelled just after B
 * finished tb and reused tb's slot for a long sleeper. The withdraw that A
 * sends carries the generation of A's token, taken when tb was tb: the
 * sleeper is not cancelled. (Before tokens, the cancel re-read the slot's
 * generation at cancel time - the sleeper's - and cancelled it.) */
Test(crossloop, a_late_cancel_of_a_remote_wait_leaves_the_slots_new_task_alone,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_task_t *tb, *ta, *sleeper;
    struct awaiter aw = {.timeout_ms = -1};
    ASSERT_OK(weft_spawn(b, return_seven, NULL, &tb));
    ASSERT_OK(weft_future_token(weft_task_future(tb), &aw.tok));
    weft_task_t *tb_slot = tb;
    weft_task_unref(tb);
    ASSERT_OK(weft_spawn(a, await_token_body, &aw, &ta));

    tick(a); /* ta asks b */
    cr_expect_eq(remote_waits(a), 1);
    tick(b); /* b records the wait, runs tb, answers; the token's reference goes */
    ASSERT_OK(weft_task_cancel(ta)); /* before a has read the answer */
    ASSERT_OK(weft_spawn(b, sleep_long, NULL, &sleeper));
    cr_assert_eq(sleeper, tb_slot, "expected b to reuse tb's slot (LIFO free list)");
    tick(a); /* drops the answer (ta was cancelled), ta withdraws with its token */
    EXPECT_RC(aw.rc, UV_ECANCELED);
    cr_expect_eq(weft_task_state(ta), WEFT_TASK_DONE);
    cr_expect_eq(remote_waits(a), 0, "the answer was counted");
    tick(b); /* the withdraw: its generation is tb's, not the sleeper's */
    cr_expect_eq(weft_task_state(sleeper), WEFT_TASK_SUSPENDED,
                 "a stale cancel reached the slot's new task");

    ASSERT_OK(weft_task_cancel(sleeper));
    EXPECT_OK(weft_loop_run(b));
    cr_expect_eq(weft_task_state(sleeper), WEFT_TASK_CANCELLED);
    weft_task_unref(sleeper);
    weft_task_unref(ta);
    EXPECT_OK(weft_loop_run(a));
    free_loop(a);
    free_loop(b);
}

/* A's task waits for a future of B with a timeout, gives up, and A is
 * closed and freed before B's future completes. A cannot close while B may
 * still answer (UV_EBUSY); once the withdraw is acknowledged it can, and
 * B's later completion posts nothing to the freed loop (ASan would report
 * it). The timeout only withdraws the wait: B's future stays pending. */
Test(crossloop, a_waiters_loop_closed_and_freed_before_the_owner_completes_is_never_touched,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *f;
    struct awaiter aw = {.timeout_ms = 1};
    weft_task_t *ta = wait_on_b(a, b, &f, &aw);
    /* Tick a until ta's 1 ms timeout has fired and ta has withdrawn. */
    for (int i = 0; i < 100000 && weft_task_state(ta) != WEFT_TASK_DONE; i++) {
        tick(a);
        usleep(100);
    }
    cr_assert_eq(weft_task_state(ta), WEFT_TASK_DONE);
    EXPECT_RC(aw.rc, UV_ETIMEDOUT);
    weft_task_unref(ta);
    cr_expect_eq(remote_waits(a), 1);
    EXPECT_RC(weft_loop_close(a), UV_EBUSY); /* b may still post to a */
    tick(b);                                 /* the withdraw: acknowledged */
    cr_expect_not(weft_future_done(f), "a timeout must not cancel the future");
    tick(a); /* the acknowledgement */
    cr_expect_eq(remote_waits(a), 0);
    free_loop(a);

    ASSERT_OK(weft_future_set_result(f, weft_int(1)));
    EXPECT_OK(weft_loop_run(b)); /* nothing of b's points at a any more */
    weft_future_unref(f);
    cr_expect_eq(tokens_live(b), 0);
    free_loop(b);
}

/* The owner completes its future and releases it before the waiter's
 * request arrives: the token kept the future, so the waiter gets the
 * outcome (not UV_EINVAL). */
Test(crossloop, a_remote_await_of_a_done_future_released_before_the_request_gets_its_outcome,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *f;
    struct awaiter aw = {.timeout_ms = -1};
    ASSERT_OK(weft_future_new(b, &f));
    ASSERT_OK(weft_future_token(f, &aw.tok));
    ASSERT_OK(weft_spawn(a, await_token_body, &aw, NULL));
    tick(a); /* the request is in b's inbox */
    ASSERT_OK(weft_future_set_result(f, weft_int(42)));
    weft_future_unref(f); /* only the token holds f now */
    tick(b);              /* the request finds f done: the outcome goes back */
    cr_expect_eq(tokens_live(b), 0);
    tick(a);
    EXPECT_OK(aw.rc);
    cr_expect_eq(weft_to_int(aw.value), 42);
    EXPECT_OK(weft_loop_run(a));
    free_loop(a);
    free_loop(b);
}

/* A loop that closes while other loops' tasks still wait for one of its
 * futures answers them with WEFT_ECLOSED instead of leaving them waiting. */
Test(crossloop, closing_the_owner_answers_its_remote_waiters_with_eclosed,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *f;
    struct awaiter aw = {.timeout_ms = -1};
    weft_task_unref(wait_on_b(a, b, &f, &aw));
    weft_future_unref(f);
    free_loop(b); /* answers the record */
    tick(a);
    EXPECT_RC(aw.rc, WEFT_ECLOSED);
    cr_expect_eq(remote_waits(a), 0);
    EXPECT_OK(weft_loop_run(a));
    free_loop(a);
}

/* Cancelling the waiter cancels the remote future too (as a local await
 * does), and the owner acknowledges the withdraw. */
Test(crossloop, cancelling_a_remote_waiter_cancels_the_remote_future, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *f;
    struct awaiter aw = {.timeout_ms = -1};
    weft_task_t *ta = wait_on_b(a, b, &f, &aw);
    ASSERT_OK(weft_task_cancel(ta));
    tick(a); /* withdraw, with cancel */
    EXPECT_RC(aw.rc, UV_ECANCELED);
    EXPECT_RC(weft_loop_close(a), UV_EBUSY);
    tick(b);
    cr_expect(weft_future_cancelled(f));
    tick(a);
    cr_expect_eq(remote_waits(a), 0);
    weft_task_unref(ta);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_run(a));
    EXPECT_OK(weft_loop_run(b));
    cr_expect_eq(tokens_live(b), 0);
    free_loop(a);
    free_loop(b);
}

/* A token that is not sent (timeout 0, a pending cancel) is given back;
 * outside a task it is refused and stays the caller's. */
Test(crossloop, an_await_token_that_does_not_wait_gives_the_token_back, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *f;
    weft_future_token_t t1, t2;
    ASSERT_OK(weft_future_new(b, &f));
    ASSERT_OK(weft_future_token(f, &t1));
    ASSERT_OK(weft_future_token(f, &t2));
    cr_expect_eq(tokens_live(b), 2);
    EXPECT_RC(weft_await_token(t1, NULL), WEFT_ENOTASK);
    EXPECT_RC(weft_await_token((weft_future_token_t){0}, NULL), UV_EINVAL);
    struct awaiter zero = {.tok = t1, .timeout_ms = 0};
    struct awaiter cancelled = {.tok = t2, .timeout_ms = -1, .cancel_first = true};
    ASSERT_OK(weft_spawn(a, await_token_body, &zero, NULL));
    ASSERT_OK(weft_spawn(a, await_token_body, &cancelled, NULL));
    tick(a);
    EXPECT_RC(zero.rc, UV_ETIMEDOUT);
    EXPECT_RC(cancelled.rc, UV_ECANCELED);
    cr_expect_eq(remote_waits(a), 0, "nothing was asked");
    tick(b); /* the two drops */
    cr_expect_eq(tokens_live(b), 0);
    cr_expect_not(weft_future_done(f));
    weft_future_unref(f);
    EXPECT_OK(weft_loop_run(a));
    free_loop(a);
    free_loop(b);
}

/* ---- proxies: gather and friends over futures of other loops ------------- */

struct gatherer {
    weft_future_token_t remote; /* a future of loop b */
    weft_future_t *local;       /* one of loop a */
    weft_future_t *proxy;
    int rc;
    void *results[2];
};

static int gather_body(void *arg, void **result)
{
    (void)result;
    struct gatherer *g = arg;
    int rc = weft_future_from_token(g->remote, &g->proxy);
    if (rc != 0)
        return g->rc = rc;
    weft_future_t *fs[2] = {g->local, g->proxy};
    g->rc = weft_gather(fs, 2, g->results, NULL, 0);
    return 0;
}

Test(crossloop, gather_waits_for_a_local_future_and_a_proxy_of_another_loops_future,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *rf;
    struct gatherer g = {0};
    ASSERT_OK(weft_future_new(b, &rf));
    ASSERT_OK(weft_future_token(rf, &g.remote));
    ASSERT_OK(weft_future_new(a, &g.local));
    ASSERT_OK(weft_spawn(a, gather_body, &g, NULL));
    tick(a); /* the proxy asks b */
    cr_expect_eq(remote_waits(a), 1);
    ASSERT_OK(weft_future_set_result(g.local, weft_int(1)));
    tick(a);
    tick(b); /* recorded */
    ASSERT_OK(weft_future_set_result(rf, weft_int(2)));
    tick(b); /* answered */
    tick(a);
    EXPECT_OK(weft_loop_run(a));
    EXPECT_OK(g.rc);
    cr_expect_eq(weft_to_int(g.results[0]), 1);
    cr_expect_eq(weft_to_int(g.results[1]), 2);
    cr_expect_eq(remote_waits(a), 0);
    weft_future_unref(g.proxy);
    weft_future_unref(g.local);
    weft_future_unref(rf);
    EXPECT_OK(weft_loop_run(b));
    cr_expect_eq(tokens_live(b), 0);
    free_loop(a);
    free_loop(b);
}

/* Cancelling the proxy cancels the remote future (asyncio.wrap_future). */
Test(crossloop, cancelling_a_proxy_cancels_the_remote_future, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *rf, *p = NULL;
    weft_future_token_t tok;
    ASSERT_OK(weft_future_new(b, &rf));
    ASSERT_OK(weft_future_token(rf, &tok));
    EXPECT_RC(weft_future_from_token(tok, &p), WEFT_EWRONGLOOP); /* not on a loop */
    struct gatherer g = {.remote = tok};
    ASSERT_OK(weft_future_new(a, &g.local));
    ASSERT_OK(weft_spawn(a, gather_body, &g, NULL));
    tick(a);
    tick(b);
    ASSERT_OK(weft_future_cancel(g.proxy)); /* on a's side, a not running */
    tick(a);                                /* the gather ends; the withdraw goes */
    EXPECT_RC(g.rc, UV_ECANCELED);
    tick(b); /* withdraw with cancel: rf cancelled, acknowledged */
    cr_expect(weft_future_cancelled(rf));
    tick(a);
    cr_expect_eq(remote_waits(a), 0);
    ASSERT_OK(weft_future_set_result(g.local, NULL));
    EXPECT_OK(weft_loop_run(a));
    weft_future_unref(g.proxy);
    weft_future_unref(g.local);
    weft_future_unref(rf);
    free_loop(a);
    free_loop(b);
}

/* A proxy of a future whose loop closes fails with WEFT_ECLOSED; a token of
 * the caller's own loop gives back the future itself. */
static int own_token_body(void *arg, void **result)
{
    (void)result;
    struct gatherer *g = arg;
    weft_future_t *same = NULL;
    g->rc = weft_future_from_token(g->remote, &same);
    g->results[0] = same;
    return 0;
}

Test(crossloop, proxies_of_a_closed_loop_fail_and_own_tokens_give_the_future_back,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop(), *b = new_loop();
    weft_future_t *rf, *mine;
    struct gatherer g = {0}, own = {0};
    ASSERT_OK(weft_future_new(b, &rf));
    ASSERT_OK(weft_future_token(rf, &g.remote));
    ASSERT_OK(weft_future_new(a, &g.local));
    ASSERT_OK(weft_future_set_result(g.local, NULL));
    ASSERT_OK(weft_spawn(a, gather_body, &g, NULL));
    ASSERT_OK(weft_future_new(a, &mine));
    ASSERT_OK(weft_future_token(mine, &own.remote));
    ASSERT_OK(weft_spawn(a, own_token_body, &own, NULL));
    tick(a);
    EXPECT_OK(own.rc);
    cr_expect_eq(own.results[0], mine);
    weft_future_unref(own.results[0]); /* the token's reference, now ours */
    cr_expect_eq(tokens_live(a), 0);
    tick(b);
    weft_future_unref(rf);
    free_loop(b); /* answers the proxy's record: WEFT_ECLOSED */
    tick(a);
    EXPECT_OK(weft_loop_run(a));
    EXPECT_RC(g.rc, WEFT_ECLOSED);
    EXPECT_RC(weft_future_result(g.proxy, NULL), WEFT_ECLOSED);
    weft_future_unref(g.proxy);
    weft_future_unref(g.local);
    weft_future_unref(mine);
    free_loop(a);
}

/* ---- message sources: the loop drains every registered one ---------------- */

struct counting_source {
    struct weft__source src;
    int items, drained;
    bool remove_when_empty;
};

static void cs_drain(void *arg)
{
    struct counting_source *c = arg;
    if (c->items > 0) { /* one per tick: the loop must come back for the rest */
        c->items--;
        c->drained++;
    }
    if (c->items == 0 && c->remove_when_empty)
        weft__loop_remove_source(&c->src); /* from inside its own drain */
}

static bool cs_pending(void *arg)
{
    return ((struct counting_source *)arg)->items > 0;
}

Test(crossloop, a_loop_drains_every_message_source_until_none_is_pending, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop();
    struct counting_source x = {.items = 5}, y = {.items = 3, .remove_when_empty = true};
    x.src = (struct weft__source){.drain = cs_drain, .pending = cs_pending, .arg = &x};
    y.src = (struct weft__source){.drain = cs_drain, .pending = cs_pending, .arg = &y};
    weft__loop_add_source((struct weft__loop *)(void *)a, &x.src);
    weft__loop_add_source((struct weft__loop *)(void *)a, &y.src);
    EXPECT_OK(weft_loop_run(a)); /* returns only when no source is pending */
    cr_expect_eq(x.drained, 5);
    cr_expect_eq(y.drained, 3);
    weft__loop_remove_source(&x.src);
    free_loop(a);
}

/* weft_loop_stop before weft_loop_run is not lost: the run does one tick. */
static int yield_many(void *arg, void **result)
{
    (void)result;
    int *n = arg;
    for (int i = 0; i < 1000; i++) {
        int rc = weft_yield();
        if (rc != 0)
            return rc;
        (*n)++;
    }
    return 0;
}

Test(crossloop, a_stop_before_run_ends_the_next_run_after_one_tick, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t *a = new_loop();
    int n = 0;
    ASSERT_OK(weft_spawn(a, yield_many, &n, NULL));
    weft_loop_stop(a);
    EXPECT_OK(weft_loop_run(a));
    cr_expect_lt(n, 1000, "the stop before run was lost");
    EXPECT_OK(weft_loop_run(a)); /* consumed: this run goes to the end */
    cr_expect_eq(n, 1000);
    free_loop(a);
}

/* ---- the door: many short-lived loops against one long-lived pool -------- */

/* Pool threads post a job's outcome to its loop. The hook makes every post
 * linger between publishing the message and waking the loop; without the
 * door the loop could receive the message by polling, finish, be closed and
 * freed by weft_run while the pool thread is still in there. */
static void linger(void)
{
    for (volatile int i = 0; i < 2000; i++) {
    }
}

static int job_return_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static weft_pool_t *g_pool;

static int one_request(void *arg, void **result)
{
    weft_future_t *f;
    int rc = weft_to_thread(g_pool, job_return_arg, arg, &f);
    if (rc != 0)
        return rc;
    rc = weft_await(f, result);
    weft_future_unref(f);
    return rc;
}

Test(crossloop, ten_thousand_weft_runs_against_one_pool_never_touch_a_freed_loop,
     .timeout = TEST_TIMEOUT_S)
{
    weft_pool_opts_t po = {.threads = 2};
    ASSERT_OK(weft_pool_new(&po, &g_pool));
    weft__test_post_hook = linger;
    int bad = 0;
    for (intptr_t i = 0; i < 10000; i++) {
        void *r = NULL;
        int rc = weft_run(one_request, weft_int(i), &r);
        if (rc != 0 || weft_to_int(r) != i)
            bad++;
    }
    weft__test_post_hook = NULL;
    cr_expect_eq(bad, 0);
    cr_expect_geq(weft_pool_shutdown(g_pool), 0);
    weft_pool_free(g_pool);
}

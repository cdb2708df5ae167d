/*
 * tests/broadcast_test.c - broadcast and watch channels (weft/broadcast.h).
 *
 * On one loop (TASK_TEST: each body runs as a task on a fresh loop, once
 * with guarded and once with compact stacks): every receiver sees every
 * value in order; a lagging receiver gets WEFT_ELAGGED with the number it
 * missed and goes on from the oldest kept value; close drains, then UV_EOF;
 * waiters wake on one send; a cancelled recv takes nothing; timeouts of 0;
 * the destructor; misuse codes; watch's changed() semantics (no wake
 * without a new version, several sends coalesce, borrow returns the
 * latest, close wakes waiters with UV_EOF). Across threads: receivers on
 * two loops and a plain thread all wake on one send, and a stress of two
 * sending threads and three receivers (order per sender, nothing lost or,
 * with a small ring, received + lagged = sent), and a watch followed from
 * three threads. Order on one loop is arranged with weft_yield and task
 * states, never by elapsed time; across threads, by waiting (bounded) for
 * the number of linked waiters.
 *
 * Plain-shim compatible ("plain_test.h"): also built as
 * broadcast_test_plain for ThreadSanitizer.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <weft/weft.h>

#include "plain_test.h"
#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

/* channels/broadcast.c, channels/watch.c: receivers waiting now. */
size_t weft__broadcast_waiting(weft_broadcast_t *b);
size_t weft__watch_waiting(weft_watch_t *w);

static weft_broadcast_t *mk(size_t esz, size_t cap, void (*dtor)(void *))
{
    weft_broadcast_t *b = NULL;
    int rc = weft_broadcast_new(esz, cap, dtor, &b);
    cr_expect_eq(rc, 0, "weft_broadcast_new: %s", weft_err_name(rc));
    return b;
}

static weft_broadcast_rx_t *sub(weft_broadcast_t *b)
{
    weft_broadcast_rx_t *rx = NULL;
    int rc = weft_broadcast_subscribe(b, &rx);
    cr_expect_eq(rc, 0, "weft_broadcast_subscribe: %s", weft_err_name(rc));
    return rx;
}

static int yield_until_suspended(weft_task_t *t)
{
    for (int i = 0; i < 1000 && weft_task_state(t) != WEFT_TASK_SUSPENDED; i++) {
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    return weft_task_state(t) == WEFT_TASK_SUSPENDED ? 0 : UV_EAGAIN;
}

/* ---- broadcast on one loop ------------------------------------------------------ */

TASK_TEST(broadcast, every_receiver_sees_every_value_in_order)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), 8, NULL);
    cr_expect_eq(weft_broadcast_cap(b), 8u);
    int64_t x = -1;
    EXPECT_RC(weft_broadcast_send(b, &x), 0); /* nobody subscribed: dropped */
    weft_broadcast_rx_t *rx[3];
    for (int i = 0; i < 3; i++)
        rx[i] = sub(b);
    cr_expect_eq(weft_broadcast_receiver_count(b), 3u);
    for (int64_t i = 0; i < 5; i++)
        EXPECT_RC(weft_broadcast_send(b, &i), 3);
    weft_broadcast_rx_t *late = sub(b); /* sees only what is sent from now */
    int64_t v = 5;
    EXPECT_RC(weft_broadcast_send(b, &v), 4);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(weft_broadcast_pending(rx[i]), 6u);
        for (int64_t k = 0; k < 6; k++) {
            EXPECT_OK(i == 0 ? weft_broadcast_recv(rx[i], &x) : weft_broadcast_recv_try(rx[i], &x));
            cr_expect_eq(x, k);
        }
        EXPECT_RC(weft_broadcast_recv_try(rx[i], &x), UV_EAGAIN);
        cr_expect_eq(weft_broadcast_lagged(rx[i]), 0u);
    }
    EXPECT_OK(weft_broadcast_recv(late, &x));
    cr_expect_eq(x, 5);
    EXPECT_RC(weft_broadcast_recv_try(late, &x), UV_EAGAIN);
    EXPECT_OK(weft_broadcast_unsubscribe(late));
    for (int i = 0; i < 3; i++)
        EXPECT_OK(weft_broadcast_unsubscribe(rx[i]));
    cr_expect_eq(weft_broadcast_receiver_count(b), 0u);
    weft_broadcast_unref(b);
    return 0;
}

TASK_TEST(broadcast, values_of_1_3_and_56_bytes_are_copied)
{
    size_t sizes[] = {1, 3, 56};
    for (int k = 0; k < 3; k++) {
        weft_broadcast_t *b = mk(sizes[k], 3, NULL);
        weft_broadcast_rx_t *rx = sub(b);
        unsigned char in[56], out[56];
        for (int i = 0; i < 3; i++) {
            memset(in, 'a' + i, sizeof(in));
            EXPECT_RC(weft_broadcast_send(b, in), 1);
        }
        for (int i = 0; i < 3; i++) {
            memset(out, 0, sizeof(out));
            EXPECT_OK(weft_broadcast_recv(rx, out));
            memset(in, 'a' + i, sizeof(in));
            cr_expect(memcmp(in, out, sizes[k]) == 0);
            cr_expect(sizes[k] == 56 || out[sizes[k]] == 0, "wrote past elem_size");
        }
        EXPECT_OK(weft_broadcast_unsubscribe(rx));
        weft_broadcast_unref(b);
    }
    return 0;
}

TASK_TEST(broadcast, a_lagging_receiver_gets_elagged_with_the_count_then_the_oldest_kept)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), 4, NULL);
    weft_broadcast_rx_t *slow = sub(b), *fast = sub(b);
    int64_t x;
    for (int64_t i = 0; i < 10; i++) {
        EXPECT_RC(weft_broadcast_send(b, &i), 2);
        EXPECT_OK(weft_broadcast_recv_try(fast, &x));
        cr_expect_eq(x, i);
    }
    cr_expect_eq(weft_broadcast_pending(slow), 4u);
    x = 99;
    EXPECT_RC(weft_broadcast_recv(slow, &x), WEFT_ELAGGED);
    cr_expect_eq(x, 99, "a lagged receive copies nothing");
    cr_expect_eq(weft_broadcast_lagged(slow), 6u); /* 0..5 were overwritten */
    for (int64_t i = 6; i < 10; i++) {
        EXPECT_OK(weft_broadcast_recv(slow, &x));
        cr_expect_eq(x, i);
    }
    EXPECT_RC(weft_broadcast_recv_try(slow, &x), UV_EAGAIN);
    cr_expect_eq(weft_broadcast_lagged(slow), 6u, "the count stays until the next lag");
    cr_expect_eq(weft_broadcast_lagged(fast), 0u);

    /* lag again, part way through: read one, then fall 5 behind */
    for (int64_t i = 10; i < 12; i++)
        EXPECT_RC(weft_broadcast_send(b, &i), 2);
    EXPECT_OK(weft_broadcast_recv_try(slow, &x));
    cr_expect_eq(x, 10);
    for (int64_t i = 12; i < 16; i++)
        EXPECT_RC(weft_broadcast_send(b, &i), 2);
    /* kept: 12..15; slow's next is 11 */
    EXPECT_RC(weft_broadcast_recv_try(slow, &x), WEFT_ELAGGED);
    cr_expect_eq(weft_broadcast_lagged(slow), 1u);
    EXPECT_OK(weft_broadcast_recv_try(slow, &x));
    cr_expect_eq(x, 12);

    /* and a lag is reported after close too, before the drain and UV_EOF */
    for (int64_t i = 16; i < 24; i++)
        EXPECT_RC(weft_broadcast_send(b, &i), 2);
    EXPECT_OK(weft_broadcast_close(b));
    EXPECT_RC(weft_broadcast_recv(slow, &x), WEFT_ELAGGED);
    cr_expect_eq(weft_broadcast_lagged(slow), 7u); /* 13..19 */
    for (int64_t i = 20; i < 24; i++) {
        EXPECT_OK(weft_broadcast_recv(slow, &x));
        cr_expect_eq(x, i);
    }
    EXPECT_RC(weft_broadcast_recv(slow, &x), UV_EOF);
    EXPECT_OK(weft_broadcast_unsubscribe(slow));
    EXPECT_OK(weft_broadcast_unsubscribe(fast));
    weft_broadcast_unref(b);
    return 0;
}

TASK_TEST(broadcast, close_drains_then_eof)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), 8, NULL);
    weft_broadcast_rx_t *rx = sub(b);
    for (int64_t i = 0; i < 3; i++)
        EXPECT_RC(weft_broadcast_send(b, &i), 1);
    cr_expect(!weft_broadcast_is_closed(b));
    EXPECT_OK(weft_broadcast_close(b));
    cr_expect(weft_broadcast_is_closed(b));
    EXPECT_RC(weft_broadcast_close(b), WEFT_ECLOSED);
    int64_t x = 7;
    EXPECT_RC(weft_broadcast_send(b, &x), WEFT_ECLOSED);
    weft_broadcast_rx_t *late = NULL;
    EXPECT_RC(weft_broadcast_subscribe(b, &late), WEFT_ECLOSED);
    cr_expect_null(late);
    for (int64_t i = 0; i < 3; i++) {
        EXPECT_OK(weft_broadcast_recv(rx, &x));
        cr_expect_eq(x, i);
    }
    EXPECT_RC(weft_broadcast_recv(rx, &x), UV_EOF);
    EXPECT_RC(weft_broadcast_recv(rx, &x), UV_EOF);
    EXPECT_RC(weft_broadcast_recv_try(rx, &x), UV_EOF);
    EXPECT_RC(weft_broadcast_recv_timeout(rx, &x, 0), UV_EOF);
    EXPECT_OK(weft_broadcast_unsubscribe(rx));
    weft_broadcast_unref(b);
    return 0;
}

typedef struct bop {
    weft_broadcast_rx_t *rx;
    uint64_t timeout;
    int64_t val;
    int rc;
} bop_t;

static int bop_body(void *arg, void **result)
{
    (void)result;
    bop_t *o = arg;
    o->rc = weft_broadcast_recv_timeout(o->rx, &o->val, o->timeout);
    return 0;
}

static weft_task_t *start_bop(bop_t *o)
{
    weft_task_t *t = NULL;
    int rc = weft_spawn(NULL, bop_body, o, &t);
    cr_expect_eq(rc, 0);
    return t;
}

static void finish(weft_task_t *t)
{
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
}

TASK_TEST(broadcast, one_send_wakes_every_waiting_receiver_and_close_wakes_them_with_eof)
{
    static bop_t o[3];
    weft_broadcast_t *b = mk(sizeof(int64_t), 2, NULL);
    weft_task_t *t[3];
    for (int i = 0; i < 3; i++) {
        o[i] = (bop_t){.rx = sub(b), .timeout = WEFT_FOREVER, .val = -1};
        t[i] = start_bop(&o[i]);
    }
    for (int i = 0; i < 3; i++)
        EXPECT_OK(yield_until_suspended(t[i]));
    cr_expect_eq(weft__broadcast_waiting(b), 3u);
    int64_t v = 42;
    EXPECT_RC(weft_broadcast_send(b, &v), 3);
    cr_expect_eq(weft__broadcast_waiting(b), 0u);
    for (int i = 0; i < 3; i++) {
        finish(t[i]);
        EXPECT_OK(o[i].rc);
        cr_expect_eq(o[i].val, 42);
    }
    /* again, ended by close */
    for (int i = 0; i < 3; i++)
        t[i] = start_bop(&o[i]);
    for (int i = 0; i < 3; i++)
        EXPECT_OK(yield_until_suspended(t[i]));
    EXPECT_OK(weft_broadcast_close(b));
    for (int i = 0; i < 3; i++) {
        finish(t[i]);
        EXPECT_RC(o[i].rc, UV_EOF);
        EXPECT_OK(weft_broadcast_unsubscribe(o[i].rx));
    }
    weft_broadcast_unref(b);
    return 0;
}

TASK_TEST(broadcast, a_cancelled_recv_takes_nothing)
{
    static bop_t o;
    weft_broadcast_t *b = mk(sizeof(int64_t), 4, NULL);
    o = (bop_t){.rx = sub(b), .timeout = WEFT_FOREVER, .val = -1};
    weft_task_t *t = start_bop(&o);
    EXPECT_OK(yield_until_suspended(t));
    /* the receiver is busy: it cannot be unsubscribed under the waiter */
    EXPECT_RC(weft_broadcast_unsubscribe(o.rx), UV_EBUSY);
    EXPECT_OK(weft_task_cancel(t));
    finish(t);
    EXPECT_RC(o.rc, UV_ECANCELED);
    cr_expect_eq(weft__broadcast_waiting(b), 0u);
    int64_t v = 8, x;
    EXPECT_RC(weft_broadcast_send(b, &v), 1);
    EXPECT_OK(weft_broadcast_recv(o.rx, &x));
    cr_expect_eq(x, 8);

    /* woken by a send, then cancelled before it ran: the value stays */
    t = start_bop(&o);
    EXPECT_OK(yield_until_suspended(t));
    v = 9;
    EXPECT_RC(weft_broadcast_send(b, &v), 1);
    EXPECT_OK(weft_task_cancel(t));
    finish(t);
    if (o.rc == UV_ECANCELED) {
        EXPECT_OK(weft_broadcast_recv_try(o.rx, &x));
        cr_expect_eq(x, 9);
    } else {
        EXPECT_OK(o.rc);
        cr_expect_eq(o.val, 9);
    }
    EXPECT_RC(weft_broadcast_recv_try(o.rx, &x), UV_EAGAIN);
    EXPECT_OK(weft_broadcast_unsubscribe(o.rx));
    weft_broadcast_unref(b);
    return 0;
}

TASK_TEST(broadcast, timeouts_of_zero_and_more)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), 4, NULL);
    weft_broadcast_rx_t *rx = sub(b);
    int64_t x = 1;
    EXPECT_RC(weft_broadcast_recv_timeout(rx, &x, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_broadcast_recv_timeout(rx, &x, 1), UV_ETIMEDOUT);
    cr_expect_eq(weft__broadcast_waiting(b), 0u);
    int64_t v = 3;
    EXPECT_RC(weft_broadcast_send(b, &v), 1);
    EXPECT_OK(weft_broadcast_recv_timeout(rx, &x, 0)); /* ready: 0 does not matter */
    cr_expect_eq(x, 3);
    /* a timeout scope ends a broadcast wait too */
    weft_timeout_t sc;
    EXPECT_OK(weft_timeout_begin(&sc, 1));
    EXPECT_RC(weft_broadcast_recv(rx, &x), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&sc), UV_ETIMEDOUT);
    /* blocking forms on a loop's thread would block the loop */
    EXPECT_RC(weft_broadcast_recv_blocking(rx, &x, 0), WEFT_EDEADLK);
    EXPECT_OK(weft_broadcast_unsubscribe(rx));
    weft_broadcast_unref(b);
    return 0;
}

static int g_dtor_calls;
static int64_t g_dtor_sum;
static void count_dtor(void *p)
{
    int64_t v;
    memcpy(&v, p, sizeof(v));
    g_dtor_calls++;
    g_dtor_sum += v;
}

TASK_TEST(broadcast, the_destructor_runs_once_for_every_value_sent)
{
    g_dtor_calls = 0;
    g_dtor_sum = 0;
    weft_broadcast_t *b = mk(sizeof(int64_t), 2, count_dtor);
    int64_t v = 100;
    EXPECT_RC(weft_broadcast_send(b, &v), 0); /* nobody subscribed: destroyed at once */
    cr_expect_eq(g_dtor_calls, 1);
    cr_expect_eq(g_dtor_sum, 100);
    weft_broadcast_rx_t *rx = sub(b);
    for (int64_t i = 1; i <= 5; i++)
        EXPECT_RC(weft_broadcast_send(b, &i), 1);
    cr_expect_eq(g_dtor_calls, 4); /* 1, 2, 3 were overwritten */
    cr_expect_eq(g_dtor_sum, 106);
    int64_t x;
    EXPECT_RC(weft_broadcast_recv(rx, &x), WEFT_ELAGGED);
    EXPECT_OK(weft_broadcast_recv(rx, &x)); /* a copy: the value stays kept */
    cr_expect_eq(x, 4);
    EXPECT_OK(weft_broadcast_close(b));
    EXPECT_RC(weft_broadcast_send(b, &v), WEFT_ECLOSED); /* not taken: no dtor */
    cr_expect_eq(g_dtor_calls, 4);
    weft_broadcast_ref(b);
    EXPECT_OK(weft_broadcast_unsubscribe(rx));
    weft_broadcast_unref(b);
    cr_expect_eq(g_dtor_calls, 4, "a reference is left");
    weft_broadcast_unref(b); /* the last: 4 and 5 */
    cr_expect_eq(g_dtor_calls, 6);
    cr_expect_eq(g_dtor_sum, 115);
    return 0;
}

TASK_TEST(broadcast, misuse_returns_codes)
{
    weft_broadcast_t *b = NULL;
    EXPECT_RC(weft_broadcast_new(0, 4, NULL, &b), UV_EINVAL);
    cr_expect_null(b);
    EXPECT_RC(weft_broadcast_new(57, 4, NULL, &b), UV_EINVAL);
    EXPECT_RC(weft_broadcast_new(8, 0, NULL, &b), UV_EINVAL);
    EXPECT_RC(weft_broadcast_new(8, ((size_t)1 << 30) + 1, NULL, &b), UV_EINVAL);
    EXPECT_RC(weft_broadcast_new(8, 4, NULL, NULL), UV_EINVAL);
    int64_t x = 1;
    weft_broadcast_rx_t *rx = NULL;
    EXPECT_RC(weft_broadcast_send(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_broadcast_subscribe(NULL, &rx), UV_EINVAL);
    EXPECT_RC(weft_broadcast_unsubscribe(NULL), UV_EINVAL);
    EXPECT_RC(weft_broadcast_recv(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_broadcast_recv_timeout(NULL, &x, 5), UV_EINVAL);
    EXPECT_RC(weft_broadcast_recv_try(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_broadcast_recv_blocking(NULL, &x, 5), UV_EINVAL);
    EXPECT_RC(weft_broadcast_close(NULL), UV_EINVAL);
    cr_expect(!weft_broadcast_is_closed(NULL));
    cr_expect_eq(weft_broadcast_receiver_count(NULL), 0u);
    cr_expect_eq(weft_broadcast_cap(NULL), 0u);
    cr_expect_eq(weft_broadcast_lagged(NULL), 0u);
    cr_expect_eq(weft_broadcast_pending(NULL), 0u);
    weft_broadcast_ref(NULL);
    weft_broadcast_unref(NULL);
    b = mk(8, 4, NULL);
    EXPECT_RC(weft_broadcast_send(b, NULL), UV_EINVAL);
    EXPECT_RC(weft_broadcast_subscribe(b, NULL), UV_EINVAL);
    rx = sub(b);
    EXPECT_RC(weft_broadcast_recv(rx, NULL), UV_EINVAL);
    EXPECT_RC(weft_broadcast_recv_try(rx, NULL), UV_EINVAL);
    EXPECT_OK(weft_broadcast_unsubscribe(rx));
    weft_broadcast_unref(b);
    cr_expect_str_eq(weft_err_name(WEFT_ELAGGED), "WEFT_ELAGGED");
    cr_expect_str_eq(weft_strerror(WEFT_ELAGGED), "receiver lagged behind a broadcast");
    cr_expect_eq(WEFT_ELAGGED, -5010);
    return 0;
}

Test(broadcast, task_forms_outside_a_task_are_enotask_and_blocking_forms_work,
     .timeout = TEST_TIMEOUT_S)
{
    weft_broadcast_t *b = mk(8, 2, NULL);
    weft_broadcast_rx_t *rx = sub(b);
    int64_t x = 1;
    EXPECT_RC(weft_broadcast_recv(rx, &x), WEFT_ENOTASK);
    EXPECT_RC(weft_broadcast_recv_timeout(rx, &x, 0), WEFT_ENOTASK);
    EXPECT_RC(weft_broadcast_recv_blocking(rx, &x, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_broadcast_recv_blocking(rx, &x, 5), UV_ETIMEDOUT);
    EXPECT_RC(weft_broadcast_send(b, &x), 1);
    EXPECT_OK(weft_broadcast_recv_blocking(rx, &x, WEFT_FOREVER));
    EXPECT_OK(weft_broadcast_close(b));
    EXPECT_RC(weft_broadcast_recv_blocking(rx, &x, WEFT_FOREVER), UV_EOF);
    EXPECT_OK(weft_broadcast_unsubscribe(rx));
    weft_broadcast_unref(b);

    weft_watch_t *w = NULL;
    ASSERT_OK(weft_watch_new(sizeof(x), &x, &w));
    weft_watch_rx_t *wr = NULL;
    ASSERT_OK(weft_watch_subscribe(w, &wr));
    EXPECT_RC(weft_watch_changed(wr), WEFT_ENOTASK);
    EXPECT_RC(weft_watch_changed_timeout(wr, 0), WEFT_ENOTASK);
    EXPECT_RC(weft_watch_changed_blocking(wr, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_watch_changed_blocking(wr, 5), UV_ETIMEDOUT);
    EXPECT_RC(weft_watch_send(w, &x), 1);
    EXPECT_OK(weft_watch_changed_blocking(wr, WEFT_FOREVER));
    EXPECT_OK(weft_watch_close(w));
    EXPECT_RC(weft_watch_changed_blocking(wr, WEFT_FOREVER), UV_EOF);
    EXPECT_OK(weft_watch_unsubscribe(wr));
    weft_watch_unref(w);
}

Test(broadcast, steady_state_send_and_recv_make_no_allocator_calls, .timeout = TEST_TIMEOUT_S)
{
    weft_broadcast_t *b = mk(8, 16, NULL);
    weft_broadcast_rx_t *rx = sub(b);
    int64_t x = 0;
    uint64_t before = weft__alloc_calls();
    for (int64_t i = 0; i < 1000; i++) {
        EXPECT_RC(weft_broadcast_send(b, &i), 1);
        EXPECT_OK(weft_broadcast_recv_try(rx, &x));
    }
    cr_expect_eq(weft__alloc_calls(), before);
    EXPECT_OK(weft_broadcast_unsubscribe(rx));
    weft_broadcast_unref(b);
}

/* ---- watch on one loop ----------------------------------------------------------- */

static weft_watch_t *mkw(int64_t initial)
{
    weft_watch_t *w = NULL;
    int rc = weft_watch_new(sizeof(initial), &initial, &w);
    cr_expect_eq(rc, 0, "weft_watch_new: %s", weft_err_name(rc));
    return w;
}

static weft_watch_rx_t *subw(weft_watch_t *w)
{
    weft_watch_rx_t *rx = NULL;
    int rc = weft_watch_subscribe(w, &rx);
    cr_expect_eq(rc, 0, "weft_watch_subscribe: %s", weft_err_name(rc));
    return rx;
}

TASK_TEST(watch, sends_coalesce_into_one_change_and_borrow_returns_the_latest)
{
    weft_watch_t *w = mkw(10);
    int64_t x = 0;
    uint64_t ver = 99;
    EXPECT_OK(weft_watch_borrow(w, &x, &ver));
    cr_expect_eq(x, 10);
    cr_expect_eq(ver, 0u);
    weft_watch_rx_t *rx = subw(w);
    EXPECT_RC(weft_watch_changed_try(rx), UV_EAGAIN); /* subscribe saw version 0 */
    EXPECT_RC(weft_watch_changed_timeout(rx, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_watch_changed_timeout(rx, 1), UV_ETIMEDOUT);
    for (int64_t i = 11; i <= 13; i++)
        EXPECT_RC(weft_watch_send(w, &i), 1);
    EXPECT_OK(weft_watch_borrow(w, &x, &ver));
    cr_expect_eq(x, 13);
    cr_expect_eq(ver, 3u);
    EXPECT_OK(weft_watch_changed(rx)); /* three sends, one change */
    EXPECT_RC(weft_watch_changed_try(rx), UV_EAGAIN);
    EXPECT_RC(weft_watch_changed_timeout(rx, 0), UV_ETIMEDOUT);
    EXPECT_OK(weft_watch_recv_latest(rx, &x, &ver));
    cr_expect_eq(x, 13);
    cr_expect_eq(ver, 3u);
    /* recv_latest marks seen: the change it read is not reported again */
    int64_t v = 14;
    EXPECT_RC(weft_watch_send(w, &v), 1);
    EXPECT_OK(weft_watch_recv_latest(rx, &x, NULL));
    cr_expect_eq(x, 14);
    EXPECT_RC(weft_watch_changed_try(rx), UV_EAGAIN);
    /* a second receiver subscribed now sees the current version as seen */
    weft_watch_rx_t *rx2 = subw(w);
    cr_expect_eq(weft_watch_receiver_count(w), 2u);
    EXPECT_RC(weft_watch_changed_try(rx2), UV_EAGAIN);
    v = 15;
    EXPECT_RC(weft_watch_send(w, &v), 2);
    EXPECT_OK(weft_watch_changed_timeout(rx2, 0));
    EXPECT_OK(weft_watch_changed_try(rx));
    EXPECT_OK(weft_watch_unsubscribe(rx2));
    EXPECT_OK(weft_watch_unsubscribe(rx));
    weft_watch_unref(w);
    return 0;
}

typedef struct wop {
    weft_watch_rx_t *rx;
    uint64_t timeout;
    int rc;
    int64_t val;
} wop_t;

static int wop_body(void *arg, void **result)
{
    (void)result;
    wop_t *o = arg;
    o->rc = weft_watch_changed_timeout(o->rx, o->timeout);
    if (o->rc == 0)
        (void)weft_watch_recv_latest(o->rx, &o->val, NULL);
    return 0;
}

static weft_task_t *start_wop(wop_t *o)
{
    weft_task_t *t = NULL;
    int rc = weft_spawn(NULL, wop_body, o, &t);
    cr_expect_eq(rc, 0);
    return t;
}

TASK_TEST(watch, a_waiter_wakes_only_for_a_new_version)
{
    static wop_t o[2];
    weft_watch_t *w = mkw(1);
    weft_watch_rx_t *other = subw(w);
    weft_task_t *t[2];
    for (int i = 0; i < 2; i++) {
        o[i] = (wop_t){.rx = subw(w), .timeout = WEFT_FOREVER};
        t[i] = start_wop(&o[i]);
    }
    for (int i = 0; i < 2; i++)
        EXPECT_OK(yield_until_suspended(t[i]));
    cr_expect_eq(weft__watch_waiting(w), 2u);
    /* reading, borrowing and other receivers' calls are not changes */
    int64_t x;
    EXPECT_OK(weft_watch_borrow(w, &x, NULL));
    EXPECT_OK(weft_watch_recv_latest(other, &x, NULL));
    EXPECT_RC(weft_watch_changed_try(other), UV_EAGAIN);
    for (int k = 0; k < 20; k++)
        EXPECT_OK(weft_yield());
    for (int i = 0; i < 2; i++)
        cr_expect_eq(weft_task_state(t[i]), WEFT_TASK_SUSPENDED);
    EXPECT_RC(weft_watch_unsubscribe(o[0].rx), UV_EBUSY);
    int64_t v = 2;
    EXPECT_RC(weft_watch_send(w, &v), 3);
    v = 3;
    EXPECT_RC(weft_watch_send(w, &v), 3); /* before they ran: one change */
    for (int i = 0; i < 2; i++) {
        finish(t[i]);
        EXPECT_OK(o[i].rc);
        cr_expect_eq(o[i].val, 3);
        EXPECT_RC(weft_watch_changed_try(o[i].rx), UV_EAGAIN);
    }
    /* a cancelled waiter; then close wakes the others with UV_EOF */
    for (int i = 0; i < 2; i++)
        t[i] = start_wop(&o[i]);
    for (int i = 0; i < 2; i++)
        EXPECT_OK(yield_until_suspended(t[i]));
    EXPECT_OK(weft_task_cancel(t[0]));
    finish(t[0]);
    EXPECT_RC(o[0].rc, UV_ECANCELED);
    EXPECT_OK(weft_watch_close(w));
    cr_expect(weft_watch_is_closed(w));
    EXPECT_RC(weft_watch_close(w), WEFT_ECLOSED);
    finish(t[1]);
    EXPECT_RC(o[1].rc, UV_EOF);
    EXPECT_RC(weft_watch_changed(o[0].rx), UV_EOF);
    EXPECT_RC(weft_watch_send(w, &v), WEFT_ECLOSED);
    weft_watch_rx_t *late = NULL;
    EXPECT_RC(weft_watch_subscribe(w, &late), WEFT_ECLOSED);
    EXPECT_OK(weft_watch_borrow(w, &x, NULL)); /* the last value stays readable */
    cr_expect_eq(x, 3);
    for (int i = 0; i < 2; i++)
        EXPECT_OK(weft_watch_unsubscribe(o[i].rx));
    EXPECT_OK(weft_watch_unsubscribe(other));
    weft_watch_unref(w);
    return 0;
}

TASK_TEST(watch, a_change_before_close_is_reported_then_eof)
{
    weft_watch_t *w = mkw(0);
    weft_watch_rx_t *rx = subw(w);
    int64_t v = 5, x;
    EXPECT_RC(weft_watch_send(w, &v), 1);
    EXPECT_OK(weft_watch_close(w));
    EXPECT_OK(weft_watch_changed(rx));
    EXPECT_OK(weft_watch_recv_latest(rx, &x, NULL));
    cr_expect_eq(x, 5);
    EXPECT_RC(weft_watch_changed(rx), UV_EOF);
    EXPECT_RC(weft_watch_changed_try(rx), UV_EOF);
    EXPECT_RC(weft_watch_changed_timeout(rx, 0), UV_EOF);
    EXPECT_OK(weft_watch_unsubscribe(rx));
    weft_watch_unref(w);
    return 0;
}

TASK_TEST(watch, misuse_returns_codes)
{
    weft_watch_t *w = NULL;
    int64_t x = 1;
    EXPECT_RC(weft_watch_new(0, &x, &w), UV_EINVAL);
    cr_expect_null(w);
    EXPECT_RC(weft_watch_new(57, &x, &w), UV_EINVAL);
    EXPECT_RC(weft_watch_new(8, NULL, &w), UV_EINVAL);
    EXPECT_RC(weft_watch_new(8, &x, NULL), UV_EINVAL);
    weft_watch_rx_t *rx = NULL;
    EXPECT_RC(weft_watch_send(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_watch_borrow(NULL, &x, NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_subscribe(NULL, &rx), UV_EINVAL);
    EXPECT_RC(weft_watch_unsubscribe(NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_changed(NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_changed_timeout(NULL, 1), UV_EINVAL);
    EXPECT_RC(weft_watch_changed_try(NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_changed_blocking(NULL, 1), UV_EINVAL);
    EXPECT_RC(weft_watch_recv_latest(NULL, &x, NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_close(NULL), UV_EINVAL);
    cr_expect(!weft_watch_is_closed(NULL));
    cr_expect_eq(weft_watch_receiver_count(NULL), 0u);
    weft_watch_ref(NULL);
    weft_watch_unref(NULL);
    w = mkw(1);
    EXPECT_RC(weft_watch_send(w, NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_borrow(w, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_subscribe(w, NULL), UV_EINVAL);
    rx = subw(w);
    EXPECT_RC(weft_watch_recv_latest(rx, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_watch_changed_blocking(rx, 0), WEFT_EDEADLK);
    EXPECT_OK(weft_watch_unsubscribe(rx));
    weft_watch_unref(w);
    return 0;
}

/* ---- across threads ---------------------------------------------------------- */

/* Wait (bounded: 20 s) until n() says `want`. */
static bool wait_for(size_t (*n)(void *), void *arg, size_t want)
{
    for (int i = 0; i < 20000; i++) {
        if (n(arg) == want)
            return true;
        usleep(1000);
    }
    return n(arg) == want;
}

static size_t bwaiting(void *b)
{
    return weft__broadcast_waiting(b);
}
static size_t wwaiting(void *w)
{
    return weft__watch_waiting(w);
}

/* A thread that runs fn(arg) as the main task of its own loop, or (plain)
 * calls fn(arg, NULL) directly. */
struct runner {
    pthread_t th;
    weft_task_fn fn;
    void *arg;
    bool plain;
    int rc;
};

static void *runner_main(void *p)
{
    struct runner *r = p;
    if (r->plain) {
        r->rc = r->fn(r->arg, NULL);
        return NULL;
    }
    weft_loop_t loop;
    weft_task_t *t = NULL;
    r->rc = weft_loop_init(&loop, NULL);
    if (r->rc != 0)
        return NULL;
    r->rc = weft_spawn(&loop, r->fn, r->arg, &t);
    if (r->rc == 0) {
        int lrc = weft_loop_run(&loop);
        r->rc = lrc != 0 ? lrc : weft_task_result(t, NULL);
        weft_task_unref(t);
    }
    int crc = weft_loop_close(&loop);
    if (r->rc == 0)
        r->rc = crc;
    return NULL;
}

static void start_runner(struct runner *r, weft_task_fn fn, void *arg, bool plain)
{
    r->fn = fn;
    r->arg = arg;
    r->plain = plain;
    r->rc = -1;
    cr_assert_eq(pthread_create(&r->th, NULL, runner_main, r), 0);
}

static void join_runner(struct runner *r)
{
    cr_assert_eq(pthread_join(r->th, NULL), 0);
    EXPECT_OK(r->rc);
}

struct xrecv {
    weft_broadcast_rx_t *rx;
    bool plain;
    int rc[2];
    int64_t val;
};

/* Two receives: a value, then (after close) UV_EOF. */
static int xrecv_body(void *arg, void **result)
{
    (void)result;
    struct xrecv *o = arg;
    for (int i = 0; i < 2; i++)
        o->rc[i] = o->plain ? weft_broadcast_recv_blocking(o->rx, &o->val, WEFT_FOREVER)
                            : weft_broadcast_recv(o->rx, &o->val);
    return 0;
}

Test(broadcast_mt, receivers_on_two_loops_and_a_plain_thread_all_wake_on_one_send,
     .timeout = TEST_TIMEOUT_S)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), 4, NULL);
    struct xrecv o[3];
    struct runner r[3];
    for (int i = 0; i < 3; i++) {
        o[i] = (struct xrecv){.rx = sub(b), .plain = i == 2, .val = -1};
        start_runner(&r[i], xrecv_body, &o[i], i == 2);
    }
    cr_assert(wait_for(bwaiting, b, 3), "the receivers did not all wait");
    int64_t v = 77;
    EXPECT_RC(weft_broadcast_send(b, &v), 3);
    cr_assert(wait_for(bwaiting, b, 3), "the receivers did not all wait again");
    EXPECT_OK(weft_broadcast_close(b));
    for (int i = 0; i < 3; i++) {
        join_runner(&r[i]);
        EXPECT_OK(o[i].rc[0]);
        cr_expect_eq(o[i].val, 77);
        EXPECT_RC(o[i].rc[1], UV_EOF);
        EXPECT_OK(weft_broadcast_unsubscribe(o[i].rx));
    }
    weft_broadcast_unref(b);
}

#define STRESS_N 3000

struct xsend {
    weft_broadcast_t *b;
    int64_t id;
};

static int xsend_body(void *arg, void **result)
{
    (void)result;
    struct xsend *s = arg;
    for (int64_t i = 0; i < STRESS_N; i++) {
        int64_t v = s->id << 32 | i;
        int rc = weft_broadcast_send(s->b, &v);
        if (rc < 0)
            return rc;
        if ((i & 63) == 0)
            sched_yield();
    }
    return 0;
}

struct xstress {
    weft_broadcast_rx_t *rx;
    bool plain;
    int64_t next[2]; /* per sender: the lowest counter it may see next */
    uint64_t got, lagged;
    int bad, end;
};

static int xstress_body(void *arg, void **result)
{
    (void)result;
    struct xstress *o = arg;
    for (;;) {
        int64_t v;
        int rc = o->plain ? weft_broadcast_recv_blocking(o->rx, &v, WEFT_FOREVER)
                          : weft_broadcast_recv(o->rx, &v);
        if (rc == WEFT_ELAGGED) {
            o->lagged += weft_broadcast_lagged(o->rx);
            continue;
        }
        if (rc != 0) {
            o->end = rc;
            return 0;
        }
        int64_t id = v >> 32, i = v & 0xffffffff;
        if (id < 0 || id > 1 || i < o->next[id])
            o->bad++;
        else
            o->next[id] = i + 1;
        o->got++;
    }
}

/* Two sending threads, receivers on two loops and a plain thread; with a
 * ring big enough for everything, every receiver gets every value in each
 * sender's order; with a small one, order still holds and every value is
 * either received or counted as lagged. */
static void stress(size_t cap)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), cap, NULL);
    struct xstress o[3];
    struct runner r[3], s[2];
    struct xsend sa[2];
    for (int i = 0; i < 3; i++) {
        o[i] = (struct xstress){.rx = sub(b), .plain = i == 2};
        start_runner(&r[i], xstress_body, &o[i], i == 2);
    }
    for (int i = 0; i < 2; i++) {
        sa[i] = (struct xsend){b, i};
        start_runner(&s[i], xsend_body, &sa[i], true);
    }
    for (int i = 0; i < 2; i++)
        join_runner(&s[i]);
    EXPECT_OK(weft_broadcast_close(b));
    for (int i = 0; i < 3; i++) {
        join_runner(&r[i]);
        EXPECT_RC(o[i].end, UV_EOF);
        cr_expect_eq(o[i].bad, 0, "receiver %d: values out of order", i);
        cr_expect_eq(o[i].got + o[i].lagged, 2u * STRESS_N, "receiver %d: got %llu lagged %llu", i,
                     (unsigned long long)o[i].got, (unsigned long long)o[i].lagged);
        if (cap >= 2 * STRESS_N)
            cr_expect_eq(o[i].lagged, 0u);
        EXPECT_OK(weft_broadcast_unsubscribe(o[i].rx));
    }
    weft_broadcast_unref(b);
}

Test(broadcast_mt, two_senders_three_receivers_nothing_lost_in_order, .timeout = TEST_TIMEOUT_S)
{
    stress(2 * STRESS_N);
}

Test(broadcast_mt, a_small_ring_lags_but_keeps_order_and_counts, .timeout = TEST_TIMEOUT_S)
{
    stress(8);
}

#define WATCH_N 2000

struct xwatch {
    weft_watch_rx_t *rx;
    bool plain;
    int64_t last;
    int bad, end;
};

static int xwatch_body(void *arg, void **result)
{
    (void)result;
    struct xwatch *o = arg;
    for (;;) {
        int rc =
            o->plain ? weft_watch_changed_blocking(o->rx, WEFT_FOREVER) : weft_watch_changed(o->rx);
        if (rc != 0) {
            o->end = rc;
            return 0;
        }
        int64_t v;
        if (weft_watch_recv_latest(o->rx, &v, NULL) != 0 || v < o->last)
            o->bad++;
        o->last = v;
    }
}

Test(watch_mt, three_threads_follow_a_watch_to_its_last_value, .timeout = TEST_TIMEOUT_S)
{
    int64_t zero = 0;
    weft_watch_t *w = NULL;
    ASSERT_OK(weft_watch_new(sizeof(zero), &zero, &w));
    struct xwatch o[3];
    struct runner r[3];
    for (int i = 0; i < 3; i++) {
        weft_watch_rx_t *rx = NULL;
        ASSERT_OK(weft_watch_subscribe(w, &rx));
        o[i] = (struct xwatch){.rx = rx, .plain = i == 2};
        start_runner(&r[i], xwatch_body, &o[i], i == 2);
    }
    cr_assert(wait_for(wwaiting, w, 3), "the receivers did not all wait");
    for (int64_t i = 1; i <= WATCH_N; i++) {
        EXPECT_RC(weft_watch_send(w, &i), 3);
        if ((i & 31) == 0)
            sched_yield();
    }
    EXPECT_OK(weft_watch_close(w));
    for (int i = 0; i < 3; i++) {
        join_runner(&r[i]);
        EXPECT_RC(o[i].end, UV_EOF);
        cr_expect_eq(o[i].bad, 0);
        cr_expect_eq(o[i].last, WATCH_N, "receiver %d ended at %lld", i, (long long)o[i].last);
        EXPECT_OK(weft_watch_unsubscribe(o[i].rx));
    }
    weft_watch_unref(w);
}

/* A task on its own loop selects over a broadcast receiver and a watch
 * receiver while this thread sends to both: every broadcast value arrives
 * in order or is counted as lagged, the watch's last value is seen, and
 * both ends fire UV_EOF. */
struct xsel {
    weft_broadcast_rx_t *brx;
    weft_watch_rx_t *wrx;
    weft_watch_t *w;
    int64_t next, last_watch;
    uint64_t got, lagged;
    int bad;
};

static int xsel_body(void *arg, void **result)
{
    (void)result;
    struct xsel *s = arg;
    int64_t v = 0;
    weft_sel_case_t cs[2] = {{WEFT_SEL_BROADCAST_RECV, s->brx, &v, 0},
                             {WEFT_SEL_WATCH_CHANGED, s->wrx, NULL, 0}};
    while (cs[0].obj != NULL || cs[1].obj != NULL) {
        int k = weft_select(cs, 2, WEFT_FOREVER);
        if (k < 0)
            return k;
        if (cs[k].rc == UV_EOF) {
            cs[k].obj = NULL;
        } else if (k == 0 && cs[0].rc == WEFT_ELAGGED) {
            s->lagged += weft_broadcast_lagged(s->brx);
        } else if (k == 0) {
            if (v < s->next)
                s->bad++;
            s->next = v + 1;
            s->got++;
        } else {
            uint64_t ver = 0;
            (void)weft_watch_borrow(s->w, &s->last_watch, &ver);
        }
    }
    return 0;
}

Test(broadcast_mt, a_select_on_another_loop_follows_a_broadcast_and_a_watch,
     .timeout = TEST_TIMEOUT_S)
{
    weft_broadcast_t *b = mk(sizeof(int64_t), 16, NULL);
    weft_watch_t *w = NULL;
    int64_t zero = -1;
    ASSERT_OK(weft_watch_new(sizeof(int64_t), &zero, &w));
    struct xsel s = {.brx = sub(b), .w = w};
    ASSERT_OK(weft_watch_subscribe(w, &s.wrx));
    struct runner r;
    start_runner(&r, xsel_body, &s, false);
    for (int64_t i = 0; i < STRESS_N; i++) {
        EXPECT_RC(weft_broadcast_send(b, &i), 1);
        EXPECT_OK(weft_watch_send(w, &i) >= 0 ? 0 : -1);
        if ((i & 63) == 0)
            sched_yield();
    }
    EXPECT_OK(weft_broadcast_close(b));
    EXPECT_OK(weft_watch_close(w));
    join_runner(&r);
    cr_expect_eq(s.bad, 0, "%d broadcast values out of order", s.bad);
    cr_expect_eq(s.got + s.lagged, (uint64_t)STRESS_N, "got %llu + lagged %llu",
                 (unsigned long long)s.got, (unsigned long long)s.lagged);
    cr_expect_eq(s.last_watch, STRESS_N - 1);
    EXPECT_OK(weft_broadcast_unsubscribe(s.brx));
    EXPECT_OK(weft_watch_unsubscribe(s.wrx));
    weft_broadcast_unref(b);
    weft_watch_unref(w);
}

/*
 * tests/queue_test.c - queues (weft/queue.h): FIFO, LIFO and stable priority
 * order, growth, bounded hand-over and fairness, *_try, timeouts,
 * cancellation without loss, task_done/join, shutdown, close, misuse, and a
 * multi-producer multi-consumer run. Order is arranged with weft_yield and
 * suspension states, never by elapsed time. Every test closes its loop and
 * expects 0.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <stdint.h>
#include <stdlib.h>

#include <weft/weft.h>

/* Room for Criterion's formatting in bodies that call cr_expect. */
#include "task_harness.h"

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

/* One queue operation as a task: records the call's code, what came out, and
 * the code of the task's next suspension (where a late cancel shows). */
#define OP_GET  0
#define OP_PUT  1
#define OP_JOIN 2
typedef struct op {
    weft_queue_t *q;
    int kind;
    intptr_t item; /* put: the item; get: what came out */
    int rc;
    int next_rc;
    weft_task_t *t;
} op_t;

static int op_body(void *arg, void **result)
{
    (void)result;
    op_t *o = arg;
    void *v = NULL;
    switch (o->kind) {
    case OP_GET:
        o->rc = weft_queue_get(o->q, &v);
        o->item = weft_to_int(v);
        break;
    case OP_PUT:
        o->rc = weft_queue_put(o->q, weft_int(o->item));
        break;
    default:
        o->rc = weft_queue_join(o->q);
        break;
    }
    o->next_rc = weft_yield();
    return 0;
}

/* Spawn the op and let it reach its wait. */
static int start_op(op_t *o, weft_queue_t *q, int kind, intptr_t item)
{
    *o = (op_t){.q = q, .kind = kind, .item = item, .rc = 1, .next_rc = 1};
    int rc = weft_spawn(NULL, op_body, o, &o->t);
    return rc != 0 ? rc : yield_until_suspended(o->t);
}

/* Wait for the op's task; its call must have returned want. */
static void finish_op(op_t *o, int want)
{
    EXPECT_OK(weft_await_task(o->t, NULL));
    weft_task_unref(o->t);
    EXPECT_RC(o->rc, want);
}

/* --- order ------------------------------------------------------------------ */

/* Items carry their insertion index. Returns how many came out of order:
 * (priority, insertion) order, or reverse insertion order for LIFO; FIFO and
 * LIFO must report priority 0. */
static int drain_check(weft_queue_t *q, const int64_t *prios, size_t n, bool lifo)
{
    int bad = 0;
    int64_t last_p = INT64_MIN;
    intptr_t last_seq = lifo ? (intptr_t)n : -1;
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        int64_t p = 7;
        int rc = i % 2 ? weft_queue_get_try(q, &v, &p) : weft_queue_get_prio(q, &v, &p);
        intptr_t seq = weft_to_int(v);
        bool order = lifo ? seq < last_seq : p > last_p || (p == last_p && seq > last_seq);
        if (rc != 0 || seq < 0 || (size_t)seq >= n || p != prios[seq] || !order) {
            if (bad++ == 0) {
                cr_log_error("out #%zu: rc %d item %ld prio %lld after (%lld, %ld)", i, rc,
                             (long)seq, (long long)p, (long long)last_p, (long)last_seq);
            }
        }
        last_p = p;
        last_seq = seq;
    }
    return bad;
}

TASK_TEST(queue, fifo_and_lifo_give_put_order_and_its_reverse_ignoring_priorities)
{
    static const int64_t zeros[100];
    for (int lifo = 0; lifo < 2; lifo++) {
        weft_queue_t q;
        EXPECT_OK(weft_queue_init(&q, lifo ? WEFT_QUEUE_LIFO : WEFT_QUEUE_FIFO, 0));
        cr_expect(weft_queue_empty(&q));
        cr_expect_not(weft_queue_full(&q), "an unbounded queue is never full");
        cr_expect_eq(weft_queue_maxsize(&q), 0);
        for (int i = 0; i < 100; i++) {
            EXPECT_OK(i % 2 ? weft_queue_put_prio(&q, 100 - i, weft_int(i))
                            : weft_queue_put_prio_try(&q, -i, weft_int(i)));
        }
        cr_expect_eq(weft_queue_size(&q), 100);
        cr_expect_not(weft_queue_empty(&q));
        cr_expect_eq(drain_check(&q, zeros, 100, lifo), 0, "%s order", lifo ? "LIFO" : "FIFO");
        cr_expect(weft_queue_empty(&q));
        EXPECT_OK(weft_queue_close(&q));
    }
    return 0;
}

#define NPRIO 1000
static int64_t g_prios[NPRIO];

TASK_TEST(queue, priority_gives_smallest_first_and_equal_priorities_in_insertion_order)
{
    weft_queue_t q;
    uint32_t lcg = 12345;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_PRIORITY, 0));
    for (int i = 0; i < NPRIO; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        g_prios[i] = (int64_t)((lcg >> 16) % 16) - 8;
        EXPECT_OK(i % 2 ? weft_queue_put_prio(&q, g_prios[i], weft_int(i))
                        : weft_queue_put_prio_try(&q, g_prios[i], weft_int(i)));
    }
    cr_expect_eq(weft_queue_size(&q), NPRIO);
    cr_expect_eq(drain_check(&q, g_prios, NPRIO, false), 0);

    /* Extremes must not overflow a comparison; plain put means priority 0. */
    static const int64_t ext[] = {INT64_MAX, INT64_MIN, 0, -1, INT64_MAX, 1};
    static const int want[] = {1, 3, 2, 5, 0, 4};
    for (int i = 0; i < 6; i++) {
        EXPECT_OK(i == 2 ? weft_queue_put(&q, weft_int(i))
                         : weft_queue_put_prio(&q, ext[i], weft_int(i)));
    }
    for (int i = 0; i < 6; i++) {
        void *v = NULL;
        int64_t p = 7;
        EXPECT_OK(weft_queue_get_prio(&q, &v, &p));
        cr_expect_eq(weft_to_int(v), want[i], "extreme #%d: item %ld, want %d", i,
                     (long)weft_to_int(v), want[i]);
        cr_expect_eq(p, ext[want[i]]);
    }
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

#define BIG 150000
static int64_t g_big_prios[BIG];

TASK_TEST(queue, unbounded_queues_grow_past_a_hundred_thousand_items)
{
    static const weft_queue_kind_t kinds[] = {WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO,
                                              WEFT_QUEUE_PRIORITY};
    for (int k = 0; k < 3; k++) {
        weft_queue_t q;
        int bad = 0;
        EXPECT_OK(weft_queue_init(&q, kinds[k], 0));
        for (int i = 0; i < BIG; i++) {
            g_big_prios[i] = kinds[k] == WEFT_QUEUE_PRIORITY ? (BIG - i) % 5 : 0;
            int rc = i % 2 ? weft_queue_put_prio(&q, g_big_prios[i], weft_int(i))
                           : weft_queue_put_prio_try(&q, g_big_prios[i], weft_int(i));
            bad += rc != 0;
        }
        cr_expect_eq(bad, 0, "kind %d: %d puts failed", k, bad);
        cr_expect_eq(weft_queue_size(&q), BIG);
        cr_expect_eq(drain_check(&q, g_big_prios, BIG, kinds[k] == WEFT_QUEUE_LIFO), 0, "kind %d",
                     k);
        cr_expect(weft_queue_empty(&q));
        EXPECT_OK(weft_queue_close(&q));
    }

    /* A large bound: fills to exactly maxsize, then refuses. */
    weft_queue_t bq;
    int bad_b = 0;
    EXPECT_OK(weft_queue_init(&bq, WEFT_QUEUE_FIFO, 10000));
    for (int i = 0; i < 10000; i++) {
        bad_b += weft_queue_put_try(&bq, weft_int(i)) != 0;
    }
    EXPECT_RC(weft_queue_put_try(&bq, weft_int(-1)), UV_EAGAIN);
    cr_expect(weft_queue_full(&bq));
    for (int i = 0; i < 10000; i++) {
        void *v = NULL;
        bad_b += weft_queue_get_try(&bq, &v, NULL) != 0 || weft_to_int(v) != i;
    }
    cr_expect_eq(bad_b, 0, "%d wrong puts or items in a queue bounded at 10,000", bad_b);
    EXPECT_OK(weft_queue_close(&bq));

    /* FIFO whose ring wraps around while it grows: put 3, get 2, ... */
    weft_queue_t q;
    intptr_t next_in = 0, next_out = 0;
    int bad = 0;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0));
    while (next_in < 120000) {
        for (int j = 0; j < 3; j++) {
            bad += weft_queue_put(&q, weft_int(next_in++)) != 0;
        }
        for (int j = 0; j < 2; j++) {
            void *v = NULL;
            bad += weft_queue_get(&q, &v) != 0 || weft_to_int(v) != next_out++;
        }
    }
    while (!weft_queue_empty(&q)) {
        void *v = NULL;
        bad += weft_queue_get(&q, &v) != 0 || weft_to_int(v) != next_out++;
    }
    cr_expect_eq(bad, 0, "%d wrong items while wrapping", bad);
    cr_expect_eq(next_out, next_in);
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

/* --- bounded queues, hand-over, fairness ---------------------------------- */

static weft_queue_t g_q;
static int g_puts_returned;

static int producer6_body(void *arg, void **result)
{
    (void)arg, (void)result;
    for (int i = 1; i <= 6; i++) {
        int rc = weft_queue_put(&g_q, weft_int(i));
        if (rc != 0) {
            return rc;
        }
        g_puts_returned++;
    }
    return 0;
}

TASK_TEST(queue, bounded_put_waits_when_full_and_a_get_moves_the_waiting_item_in)
{
    weft_task_t *p;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&g_q, WEFT_QUEUE_FIFO, 2));
    cr_expect_eq(weft_queue_maxsize(&g_q), 2);
    EXPECT_OK(weft_spawn(NULL, producer6_body, NULL, &p));
    EXPECT_OK(yield_until_suspended(p));
    cr_expect_eq(g_puts_returned, 2, "the producer should wait in its third put");
    cr_expect_eq(weft_queue_size(&g_q), 2);
    cr_expect(weft_queue_full(&g_q));
    EXPECT_RC(weft_queue_put_try(&g_q, weft_int(99)), UV_EAGAIN);

    EXPECT_OK(weft_queue_get(&g_q, &v));
    cr_expect_eq(weft_to_int(v), 1);
    /* The waiting putter's 3 moved in at once: still full, nobody barges. */
    cr_expect_eq(weft_queue_size(&g_q), 2);
    EXPECT_RC(weft_queue_put_try(&g_q, weft_int(99)), UV_EAGAIN);
    cr_expect_eq(g_puts_returned, 2);
    EXPECT_OK(weft_yield()); /* the producer's put(3) returns, put(4) waits */
    cr_expect_eq(g_puts_returned, 3);
    cr_expect_eq(weft_queue_size(&g_q), 2);

    for (int want = 2; want <= 6; want++) {
        v = NULL;
        EXPECT_OK(weft_queue_get(&g_q, &v));
        cr_expect_eq(weft_to_int(v), want);
    }
    EXPECT_OK(weft_await_task(p, NULL));
    weft_task_unref(p);
    cr_expect_eq(g_puts_returned, 6);
    cr_expect(weft_queue_empty(&g_q));
    EXPECT_OK(weft_queue_close(&g_q));
    return 0;
}

TASK_TEST(queue, waiting_getters_and_putters_are_served_in_arrival_order)
{
    static weft_queue_t q;
    static op_t g[3], p[3];
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(start_op(&g[i], &q, OP_GET, 0));
    }
    EXPECT_OK(weft_queue_put(&q, weft_int(10)));
    /* Handed straight to the oldest getter: nothing left to take. */
    cr_expect_eq(weft_queue_size(&q), 0);
    EXPECT_RC(weft_queue_get_try(&q, &v, NULL), UV_EAGAIN);
    EXPECT_OK(weft_queue_put(&q, weft_int(20)));
    EXPECT_OK(weft_queue_put_try(&q, weft_int(30)));
    for (int i = 0; i < 3; i++) {
        finish_op(&g[i], 0);
        cr_expect_eq(g[i].item, 10 * (i + 1), "getter %d got %ld", i, (long)g[i].item);
    }

    EXPECT_OK(weft_queue_put(&q, weft_int(1)));
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(start_op(&p[i], &q, OP_PUT, 100 * (i + 1)));
    }
    for (int want = 0; want <= 300; want += 100) {
        v = NULL;
        EXPECT_OK(weft_queue_get(&q, &v));
        cr_expect_eq(weft_to_int(v), want ? want : 1);
    }
    for (int i = 0; i < 3; i++) {
        finish_op(&p[i], 0);
    }
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

/* Also outside any loop (*_try never wait). */
Test(queue, put_try_is_eagain_when_full_and_get_try_when_empty, .timeout = TEST_TIMEOUT_S)
{
    weft_queue_t q;
    void *v = NULL;
    int64_t p = 0;
    ASSERT_OK(weft_queue_init(&q, WEFT_QUEUE_PRIORITY, 1));
    EXPECT_RC(weft_queue_get_try(&q, &v, &p), UV_EAGAIN);
    EXPECT_OK(weft_queue_put_prio_try(&q, 4, weft_int(1)));
    cr_expect(weft_queue_full(&q));
    EXPECT_RC(weft_queue_put_prio_try(&q, -4, weft_int(2)), UV_EAGAIN);
    EXPECT_OK(weft_queue_get_try(&q, &v, &p));
    cr_expect(weft_to_int(v) == 1 && p == 4, "got %ld at %lld", (long)weft_to_int(v), (long long)p);
    EXPECT_RC(weft_queue_get_try(&q, &v, &p), UV_EAGAIN);
    EXPECT_OK(weft_queue_close(&q));
}

/* --- timeouts and cancellation --------------------------------------------- */

TASK_TEST(queue, timeouts_give_etimedout_when_they_would_wait_and_leave_nothing_behind)
{
    weft_queue_t q;
    weft_timeout_t tmo;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    EXPECT_RC(weft_queue_get_timeout(&q, &v, NULL, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_queue_get_timeout(&q, &v, NULL, 5), UV_ETIMEDOUT);
    EXPECT_OK(weft_queue_put_timeout(&q, 0, weft_int(1), 0)); /* room: no wait */
    EXPECT_RC(weft_queue_put_timeout(&q, 0, weft_int(2), 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_queue_put_timeout(&q, 0, weft_int(2), 5), UV_ETIMEDOUT);
    cr_expect_eq(weft_queue_size(&q), 1);
    EXPECT_RC(weft_queue_join_timeout(&q, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_queue_join_timeout(&q, 5), UV_ETIMEDOUT);
    EXPECT_OK(weft_queue_get_timeout(&q, &v, NULL, 0)); /* an item: no wait */
    cr_expect_eq(weft_to_int(v), 1);
    EXPECT_OK(weft_queue_task_done(&q));
    EXPECT_OK(weft_queue_join_timeout(&q, 0));

    /* An enclosing timeout scope ends a get too. */
    EXPECT_OK(weft_timeout_begin(&tmo, 5));
    EXPECT_RC(weft_queue_get(&q, &v), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&tmo), UV_ETIMEDOUT);

    /* No withdrawn waiter swallows the next item. */
    EXPECT_OK(weft_queue_put(&q, weft_int(7)));
    cr_expect_eq(weft_queue_size(&q), 1);
    v = NULL;
    EXPECT_OK(weft_queue_get_try(&q, &v, NULL));
    cr_expect_eq(weft_to_int(v), 7);
    EXPECT_OK(weft_queue_close(&q)); /* no waiter left: 0 */
    return 0;
}

/* sync.h: a cancelled wait returns UV_ECANCELED; only one granted before the
 * cancel arrived succeeds (asyncio: a cancelled getter is skipped). */
TASK_TEST(queue, a_get_cancelled_before_the_put_returns_ecanceled_and_the_item_stays)
{
    static weft_queue_t q;
    static op_t g;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0));
    EXPECT_OK(start_op(&g, &q, OP_GET, -1));
    EXPECT_OK(weft_task_cancel(g.t));
    EXPECT_OK(weft_queue_put(&q, weft_int(42))); /* the cancel came first */
    finish_op(&g, UV_ECANCELED);
    EXPECT_OK(g.next_rc);
    cr_expect_eq(weft_queue_size(&q), 1, "the item went to the cancelled getter");
    EXPECT_OK(weft_queue_get_try(&q, &v, NULL));
    cr_expect_eq(weft_to_int(v), 42);
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

#define NGETTERS 8
#define NITEMS   1000
static int g_got_rc[NGETTERS], g_got_n[NGETTERS];
static intptr_t g_sum;

static int drain_body(void *arg, void **result)
{
    (void)result;
    intptr_t me = weft_to_int(arg);
    for (;;) {
        void *v = NULL;
        int rc = weft_queue_get(&g_q, &v);
        if (rc != 0) {
            g_got_rc[me] = rc;
            return 0;
        }
        g_sum += weft_to_int(v);
        g_got_n[me]++;
    }
}

/* 8 getters wait; the even ones are cancelled; then 1,000 items are put
 * (after the cancelled ones ran, or in the same turn) and the queue is shut
 * down: every item comes out exactly once (count and checksum). */
static int cancelled_getters(bool settle)
{
    weft_task_t *t[NGETTERS];
    int total = 0;
    EXPECT_OK(weft_queue_init(&g_q, WEFT_QUEUE_FIFO, 0));
    for (int i = 0; i < NGETTERS; i++) {
        EXPECT_OK(weft_spawn(NULL, drain_body, weft_int(i), &t[i]));
    }
    for (int i = 0; i < NGETTERS; i++) {
        EXPECT_OK(yield_until_suspended(t[i]));
    }
    for (int i = 0; i < NGETTERS; i += 2) {
        EXPECT_OK(weft_task_cancel(t[i]));
    }
    for (int i = 0; settle && i < NGETTERS; i += 2) {
        EXPECT_OK(weft_await_task(t[i], NULL));
        EXPECT_RC(g_got_rc[i], UV_ECANCELED);
    }
    for (int i = 1; i <= NITEMS; i++) {
        EXPECT_OK(weft_queue_put(&g_q, weft_int(i)));
    }
    EXPECT_RC(weft_queue_shutdown(&g_q, false), 0);
    for (int i = 0; i < NGETTERS; i++) {
        EXPECT_OK(weft_await_task(t[i], NULL));
        weft_task_unref(t[i]);
        if (settle || i % 2) {
            EXPECT_RC(g_got_rc[i], i % 2 ? WEFT_ECLOSED : UV_ECANCELED);
        }
        total += g_got_n[i];
    }
    cr_expect_eq(total, NITEMS);
    cr_expect_eq(g_sum, (intptr_t)NITEMS * (NITEMS + 1) / 2, "checksum %ld", (long)g_sum);
    EXPECT_OK(weft_queue_close(&g_q));
    return 0;
}

TASK_TEST(queue, cancelled_getters_leave_no_waiter_every_item_is_got_once)
{
    return cancelled_getters(true);
}

TASK_TEST(queue, getters_cancelled_in_the_turn_of_the_puts_lose_no_item)
{
    return cancelled_getters(false);
}

/* In one turn: the put hands 42 to the waiting getter (or a get moves the
 * waiting putter's 2 in), then the waiter is cancelled. Its call succeeds;
 * the cancel shows at its next suspension. */
TASK_TEST(queue, a_wait_granted_then_cancelled_before_it_ran_still_succeeds)
{
    static weft_queue_t q;
    static op_t g, p;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    EXPECT_OK(start_op(&g, &q, OP_GET, -1));
    EXPECT_OK(weft_queue_put(&q, weft_int(42)));
    EXPECT_OK(weft_task_cancel(g.t));
    finish_op(&g, 0);
    cr_expect_eq(g.item, 42);
    EXPECT_RC(g.next_rc, UV_ECANCELED);
    cr_expect(weft_queue_empty(&q));

    EXPECT_OK(weft_queue_put(&q, weft_int(1)));
    EXPECT_OK(start_op(&p, &q, OP_PUT, 2));
    EXPECT_OK(weft_queue_get(&q, &v));
    cr_expect_eq(weft_to_int(v), 1);
    EXPECT_OK(weft_task_cancel(p.t));
    finish_op(&p, 0);
    EXPECT_RC(p.next_rc, UV_ECANCELED);
    EXPECT_OK(weft_queue_get_try(&q, &v, NULL));
    cr_expect_eq(weft_to_int(v), 2);
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

/* --- task_done / join ------------------------------------------------------- */

static int g_done_calls, g_join_rc = 1, g_join_saw_done = -1;

static int joiner_body(void *arg, void **result)
{
    (void)arg, (void)result;
    g_join_rc = weft_queue_join(&g_q);
    g_join_saw_done = g_done_calls;
    return 0;
}

static int worker_body(void *arg, void **result)
{
    (void)arg, (void)result;
    for (int i = 0; i < 5; i++) {
        void *v;
        int rc = weft_queue_get(&g_q, &v);
        rc = rc != 0 ? rc : weft_yield(); /* "processing" */
        rc = rc != 0 ? rc : weft_queue_task_done(&g_q);
        if (rc != 0) {
            return rc;
        }
        g_done_calls++;
    }
    return 0;
}

TASK_TEST(queue, join_waits_until_every_put_item_is_task_done)
{
    weft_task_t *j, *w;
    EXPECT_OK(weft_queue_init(&g_q, WEFT_QUEUE_FIFO, 0));
    EXPECT_RC(weft_queue_task_done(&g_q), UV_EINVAL);
    EXPECT_OK(weft_queue_join(&g_q)); /* nothing unfinished: at once */
    for (int i = 0; i < 5; i++) {
        EXPECT_OK(weft_queue_put(&g_q, weft_int(i)));
    }
    EXPECT_OK(weft_spawn(NULL, joiner_body, NULL, &j));
    EXPECT_OK(weft_spawn(NULL, worker_body, NULL, &w));
    EXPECT_OK(weft_await_task(j, NULL));
    EXPECT_OK(weft_await_task(w, NULL));
    EXPECT_OK(g_join_rc);
    cr_expect_eq(g_join_saw_done, 5, "join returned after %d of 5 task_done", g_join_saw_done);
    EXPECT_RC(weft_queue_task_done(&g_q), UV_EINVAL);
    weft_task_unref(j);
    weft_task_unref(w);
    EXPECT_OK(weft_queue_close(&g_q));
    return 0;
}

/* --- shutdown and close ------------------------------------------------------ */

TASK_TEST(queue, shutdown_refuses_puts_and_drains_what_is_left_then_gives_eclosed)
{
    weft_queue_t q;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0));
    for (int i = 1; i <= 3; i++) {
        EXPECT_OK(weft_queue_put(&q, weft_int(i)));
    }
    cr_expect_not(weft_queue_is_shutdown(&q));
    EXPECT_RC(weft_queue_shutdown(&q, false), 0);
    cr_expect(weft_queue_is_shutdown(&q));
    EXPECT_RC(weft_queue_put(&q, weft_int(9)), WEFT_ECLOSED);
    EXPECT_RC(weft_queue_put_prio(&q, 1, weft_int(9)), WEFT_ECLOSED);
    EXPECT_RC(weft_queue_put_try(&q, weft_int(9)), WEFT_ECLOSED);
    cr_expect_eq(weft_queue_size(&q), 3);
    for (int i = 1; i <= 3; i++) {
        EXPECT_OK(i == 2 ? weft_queue_get_try(&q, &v, NULL) : weft_queue_get(&q, &v));
        cr_expect_eq(weft_to_int(v), i);
    }
    EXPECT_RC(weft_queue_get(&q, &v), WEFT_ECLOSED);
    EXPECT_RC(weft_queue_get_try(&q, &v, NULL), WEFT_ECLOSED);
    EXPECT_RC(weft_queue_get_timeout(&q, &v, NULL, 5), WEFT_ECLOSED);
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

TASK_TEST(queue, shutdown_wakes_waiting_getters_and_putters_with_eclosed)
{
    static weft_queue_t empty, full;
    static op_t g[3], p[2];
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&empty, WEFT_QUEUE_FIFO, 0));
    EXPECT_OK(weft_queue_init(&full, WEFT_QUEUE_LIFO, 1));
    EXPECT_OK(weft_queue_put(&full, weft_int(1)));
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(start_op(&g[i], &empty, OP_GET, -1));
    }
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(start_op(&p[i], &full, OP_PUT, 10 + i));
    }
    EXPECT_RC(weft_queue_shutdown(&empty, false), 0);
    EXPECT_RC(weft_queue_shutdown(&full, false), 0);
    for (int i = 0; i < 3; i++) {
        finish_op(&g[i], WEFT_ECLOSED);
    }
    for (int i = 0; i < 2; i++) {
        finish_op(&p[i], WEFT_ECLOSED);
    }
    /* The item queued before the shutdown still comes out, alone. */
    cr_expect_eq(weft_queue_size(&full), 1);
    EXPECT_OK(weft_queue_get(&full, &v));
    cr_expect_eq(weft_to_int(v), 1);
    EXPECT_RC(weft_queue_get(&full, &v), WEFT_ECLOSED);
    EXPECT_OK(weft_queue_close(&empty));
    EXPECT_OK(weft_queue_close(&full));
    return 0;
}

TASK_TEST(queue, immediate_shutdown_discards_items_releases_join_and_fails_every_get)
{
    static weft_queue_t q, empty, full;
    static op_t j, g, p;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_PRIORITY, 0));
    for (int i = 0; i < 5; i++) {
        EXPECT_OK(weft_queue_put_prio(&q, i, weft_int(i)));
    }
    EXPECT_OK(start_op(&j, &q, OP_JOIN, 0));
    EXPECT_RC(weft_queue_shutdown(&q, true), 5);
    cr_expect(weft_queue_is_shutdown(&q));
    cr_expect_eq(weft_queue_size(&q), 0);
    EXPECT_RC(weft_queue_get(&q, &v), WEFT_ECLOSED);
    EXPECT_RC(weft_queue_get_try(&q, &v, NULL), WEFT_ECLOSED);
    EXPECT_RC(weft_queue_put(&q, weft_int(1)), WEFT_ECLOSED);
    finish_op(&j, 0);
    EXPECT_RC(weft_queue_task_done(&q), UV_EINVAL); /* the discarded ones counted */
    EXPECT_OK(weft_queue_join(&q));

    EXPECT_OK(weft_queue_init(&empty, WEFT_QUEUE_FIFO, 0));
    EXPECT_OK(weft_queue_init(&full, WEFT_QUEUE_FIFO, 1));
    EXPECT_OK(weft_queue_put(&full, weft_int(1)));
    EXPECT_OK(start_op(&g, &empty, OP_GET, -1));
    EXPECT_OK(start_op(&p, &full, OP_PUT, 2));
    EXPECT_RC(weft_queue_shutdown(&empty, true), 0);
    EXPECT_RC(weft_queue_shutdown(&full, true), 1);
    finish_op(&g, WEFT_ECLOSED);
    finish_op(&p, WEFT_ECLOSED);
    EXPECT_RC(weft_queue_get_try(&full, &v, NULL), WEFT_ECLOSED);
    EXPECT_OK(weft_queue_close(&q));
    EXPECT_OK(weft_queue_close(&empty));
    EXPECT_OK(weft_queue_close(&full));
    return 0;
}

TASK_TEST(queue, close_with_a_waiting_getter_putter_or_joiner_is_ebusy)
{
    static weft_queue_t q;
    static op_t o;
    void *v = NULL;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    EXPECT_OK(start_op(&o, &q, OP_GET, -1));
    EXPECT_RC(weft_queue_close(&q), UV_EBUSY);
    EXPECT_OK(weft_queue_put(&q, weft_int(3)));
    finish_op(&o, 0);
    cr_expect_eq(o.item, 3);

    EXPECT_OK(weft_queue_put(&q, weft_int(4)));
    EXPECT_OK(start_op(&o, &q, OP_PUT, 5));
    EXPECT_RC(weft_queue_close(&q), UV_EBUSY);
    EXPECT_OK(weft_queue_get(&q, &v));
    finish_op(&o, 0);

    /* 3 and 4 task_done; 5 is still queued and unfinished. */
    EXPECT_OK(weft_queue_task_done(&q));
    EXPECT_OK(weft_queue_task_done(&q));
    EXPECT_OK(start_op(&o, &q, OP_JOIN, 0));
    EXPECT_RC(weft_queue_close(&q), UV_EBUSY);
    EXPECT_OK(weft_queue_get(&q, &v));
    cr_expect_eq(weft_to_int(v), 5);
    EXPECT_OK(weft_queue_task_done(&q));
    finish_op(&o, 0);

    /* Items still queued are dropped by close (ASan: the ring is freed). */
    EXPECT_OK(weft_queue_put(&q, weft_int(6)));
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

/* --- misuse -------------------------------------------------------------- */

TASK_TEST(queue, null_arguments_and_a_bad_kind_give_einval)
{
    weft_queue_t q;
    void *v = NULL;
    int64_t p;
    EXPECT_RC(weft_queue_init(NULL, WEFT_QUEUE_FIFO, 0), UV_EINVAL);
    EXPECT_RC(weft_queue_init(&q, (weft_queue_kind_t)7, 0), UV_EINVAL);
    EXPECT_RC(weft_queue_close(NULL), UV_EINVAL);
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    EXPECT_RC(weft_queue_put(NULL, v), UV_EINVAL);
    EXPECT_RC(weft_queue_put_prio(NULL, 1, v), UV_EINVAL);
    EXPECT_RC(weft_queue_put_timeout(NULL, 1, v, 5), UV_EINVAL);
    EXPECT_RC(weft_queue_put_try(NULL, v), UV_EINVAL);
    EXPECT_RC(weft_queue_put_prio_try(NULL, 1, v), UV_EINVAL);
    EXPECT_RC(weft_queue_get(NULL, &v), UV_EINVAL);
    EXPECT_RC(weft_queue_get_prio(NULL, &v, &p), UV_EINVAL);
    EXPECT_RC(weft_queue_get_timeout(NULL, &v, &p, 5), UV_EINVAL);
    EXPECT_RC(weft_queue_get_try(NULL, &v, &p), UV_EINVAL);
    EXPECT_RC(weft_queue_task_done(NULL), UV_EINVAL);
    EXPECT_RC(weft_queue_join(NULL), UV_EINVAL);
    EXPECT_RC(weft_queue_join_timeout(NULL, 5), UV_EINVAL);
    EXPECT_RC(weft_queue_shutdown(NULL, false), UV_EINVAL);
    EXPECT_OK(weft_queue_close(&q));
    return 0;
}

static void waits_in_callback_cb(void *arg)
{
    weft_queue_t *q = arg; /* full, one unfinished item */
    void *v = NULL;
    EXPECT_RC(weft_queue_put(q, weft_int(2)), WEFT_ENOTASK);
    EXPECT_RC(weft_queue_join(q), WEFT_ENOTASK);
    EXPECT_OK(weft_queue_get_try(q, &v, NULL));
    EXPECT_RC(weft_queue_get(q, &v), WEFT_ENOTASK);
    EXPECT_RC(weft_queue_get_timeout(q, &v, NULL, 5), WEFT_ENOTASK);
    EXPECT_OK(weft_queue_task_done(q));
}

Test(queue, waits_outside_a_task_return_enotask, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_queue_t q;
    void *v = NULL;
    ASSERT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 1));
    EXPECT_RC(weft_queue_get(&q, &v), WEFT_ENOTASK);
    EXPECT_RC(weft_queue_get_timeout(&q, &v, NULL, 5), WEFT_ENOTASK);
    EXPECT_OK(weft_queue_put_try(&q, weft_int(1)));
    EXPECT_RC(weft_queue_put(&q, weft_int(2)), WEFT_ENOTASK);
    EXPECT_RC(weft_queue_join(&q), WEFT_ENOTASK);
    cr_expect_eq(weft_queue_size(&q), 1);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, waits_in_callback_cb, &q, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect(weft_queue_empty(&q));
    EXPECT_OK(weft_queue_close(&q));
    EXPECT_OK(weft_loop_close(&loop));
}

static int other_loop_body(void *arg, void **result)
{
    (void)result;
    weft_queue_t *q = arg;
    void *v = NULL;
    EXPECT_RC(weft_queue_put_try(q, weft_int(2)), WEFT_EWRONGLOOP);
    EXPECT_RC(weft_queue_put(q, weft_int(2)), WEFT_EWRONGLOOP);
    EXPECT_RC(weft_queue_get_try(q, &v, NULL), WEFT_EWRONGLOOP);
    EXPECT_RC(weft_queue_get(q, &v), WEFT_EWRONGLOOP);
    EXPECT_RC(weft_queue_task_done(q), WEFT_EWRONGLOOP);
    EXPECT_RC(weft_queue_join(q), WEFT_EWRONGLOOP);
    return 0;
}

Test(queue, a_queue_belongs_to_the_loop_of_its_first_user, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t a, b;
    weft_queue_t q;
    op_t put1;
    void *v = NULL;
    ASSERT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0));
    ASSERT_OK(weft_loop_init(&a, NULL));
    ASSERT_OK(weft_loop_init(&b, NULL));
    put1 = (op_t){.q = &q, .kind = OP_PUT, .item = 1, .rc = 1};
    ASSERT_OK(weft_spawn(&a, op_body, &put1, NULL));
    EXPECT_OK(weft_loop_run(&a));
    EXPECT_OK(put1.rc);
    ASSERT_OK(weft_spawn_ex(&b, other_loop_body, &q, &main_opts, NULL));
    EXPECT_OK(weft_loop_run(&b));
    /* Set-up and tear-down code outside a running loop may use it. */
    EXPECT_OK(weft_queue_get_try(&q, &v, NULL));
    cr_expect_eq(weft_to_int(v), 1);
    EXPECT_OK(weft_queue_task_done(&q));
    EXPECT_OK(weft_queue_close(&q));
    EXPECT_OK(weft_loop_close(&a));
    EXPECT_OK(weft_loop_close(&b));
}

/* --- many producers, many consumers ---------------------------------------- */

#define PRODUCERS    4
#define PER_PRODUCER 10000
#define CONSUMERS    3
static uint8_t g_seen[PRODUCERS * PER_PRODUCER];
static int g_dups, g_out_of_order, g_bad_items;
static int g_consumed[CONSUMERS], g_consumer_rc[CONSUMERS];

static int mp_producer_body(void *arg, void **result)
{
    (void)result;
    intptr_t p = weft_to_int(arg);
    for (intptr_t i = 0; i < PER_PRODUCER; i++) {
        int rc = weft_queue_put(&g_q, weft_int(p * PER_PRODUCER + i + 1));
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int mp_consumer_body(void *arg, void **result)
{
    (void)result;
    intptr_t c = weft_to_int(arg);
    intptr_t last[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        last[p] = -1;
    }
    for (;;) {
        void *v = NULL;
        int rc = weft_queue_get(&g_q, &v);
        if (rc != 0) {
            g_consumer_rc[c] = rc;
            return 0;
        }
        intptr_t idx = weft_to_int(v) - 1;
        if (idx < 0 || idx >= PRODUCERS * PER_PRODUCER) {
            g_bad_items++;
        } else {
            intptr_t p = idx / PER_PRODUCER, i = idx % PER_PRODUCER;
            g_out_of_order += i <= last[p]; /* FIFO: each producer's items in order */
            last[p] = i;
            g_dups += g_seen[idx]++ != 0;
        }
        g_consumed[c]++;
        rc = weft_queue_task_done(&g_q);
        if (rc == 0 && g_consumed[c] % (c + 2) == 0) {
            rc = weft_yield(); /* vary the interleaving */
        }
        if (rc != 0) {
            g_consumer_rc[c] = rc;
            return rc;
        }
    }
}

TASK_TEST(queue, four_producers_three_consumers_every_item_arrives_exactly_once)
{
    weft_task_t *prod[PRODUCERS], *cons[CONSUMERS];
    int total = 0, missing = 0;
    EXPECT_OK(weft_queue_init(&g_q, WEFT_QUEUE_FIFO, 16));
    for (int c = 0; c < CONSUMERS; c++) {
        EXPECT_OK(weft_spawn(NULL, mp_consumer_body, weft_int(c), &cons[c]));
    }
    for (int p = 0; p < PRODUCERS; p++) {
        EXPECT_OK(weft_spawn(NULL, mp_producer_body, weft_int(p), &prod[p]));
    }
    for (int p = 0; p < PRODUCERS; p++) {
        EXPECT_OK(weft_await_task(prod[p], NULL));
        weft_task_unref(prod[p]);
    }
    EXPECT_OK(weft_queue_join(&g_q));
    EXPECT_RC(weft_queue_shutdown(&g_q, false), 0);
    for (int c = 0; c < CONSUMERS; c++) {
        EXPECT_OK(weft_await_task(cons[c], NULL));
        weft_task_unref(cons[c]);
        EXPECT_RC(g_consumer_rc[c], WEFT_ECLOSED);
        total += g_consumed[c];
        cr_log_info("consumer %d took %d items", c, g_consumed[c]);
    }
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++) {
        missing += g_seen[i] == 0;
    }
    cr_expect_eq(total, PRODUCERS * PER_PRODUCER);
    cr_expect_eq(missing, 0);
    cr_expect_eq(g_dups, 0);
    cr_expect_eq(g_bad_items, 0);
    cr_expect_eq(g_out_of_order, 0);
    EXPECT_OK(weft_queue_close(&g_q));
    return 0;
}

/* A queue outlives the loop it was bound to: the loop is closed and its
 * storage freed (ASan reports any read of it), then a task of a new loop
 * uses the queue, which binds to the new loop and keeps its items. */
static int put_one(void *arg, void **result)
{
    (void)result;
    return weft_queue_put_try(arg, (void *)(intptr_t)7);
}

static int get_one(void *arg, void **result)
{
    void *item = NULL;
    int rc = weft_queue_get(arg, &item);
    *result = item;
    return rc;
}

Test(queue_loop_gone, rebinds_after_its_loop_was_closed_and_freed, .timeout = TEST_TIMEOUT_S)
{
    weft_queue_t q;
    cr_assert_eq(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0), 0);
    weft_loop_t *a = malloc(sizeof *a);
    cr_assert_not_null(a);
    cr_assert_eq(weft_loop_init(a, NULL), 0);
    weft_task_t *t;
    cr_assert_eq(weft_spawn(a, put_one, &q, &t), 0);
    cr_assert_eq(weft_loop_run_until_complete(a, weft_task_future(t)), 0);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    weft_task_unref(t);
    cr_assert_eq(weft_loop_close(a), 0);
    free(a);

    weft_loop_t b;
    cr_assert_eq(weft_loop_init(&b, NULL), 0);
    cr_assert_eq(weft_spawn(&b, get_one, &q, &t), 0);
    cr_assert_eq(weft_loop_run_until_complete(&b, weft_task_future(t)), 0);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    void *item = NULL;
    cr_expect_eq(weft_future_result(weft_task_future(t), &item), 0);
    cr_expect_eq((intptr_t)item, 7);
    weft_task_unref(t);
    cr_expect_eq(weft_queue_size(&q), 0);
    cr_assert_eq(weft_queue_close(&q), 0);
    cr_assert_eq(weft_loop_close(&b), 0);
}

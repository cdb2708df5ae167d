/*
 * tests/chan_test.c - channels and select on one loop (weft/chan.h): FIFO
 * order for every kind, full and empty waits, *_try, timeouts of 0 and
 * more, close with waiters and with values buffered (the destructor runs),
 * cancelled sends and receives that lose nothing, rendezvous hand-over,
 * batches, select (fairness, deadline, closed case, futures and queues),
 * misuse codes, and zero allocator calls in steady state. Each body runs as
 * a task on a fresh loop, once with guarded and once with compact stacks
 * (task_harness.h). Order is arranged with weft_yield and task states,
 * never by elapsed time.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#include "core/alloc.h"
#include "task_harness.h"

static weft_chan_t *mk(size_t esz, size_t cap, weft_chan_kind_t kind)
{
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = esz, .capacity = cap, .kind = kind};
    int rc = weft_chan_new(&o, &ch);
    cr_expect_eq(rc, 0, "weft_chan_new: %s", weft_err_name(rc));
    return ch;
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

/* ---- basics --------------------------------------------------------------- */

TASK_TEST(chan, fifo_order_for_every_kind_and_capacity_rounds_up)
{
    weft_chan_kind_t kinds[] = {WEFT_CHAN_MPMC, WEFT_CHAN_MPSC, WEFT_CHAN_SPSC};
    for (int k = 0; k < 3; k++) {
        weft_chan_t *ch = mk(sizeof(int64_t), 5, kinds[k]);
        cr_expect_eq(weft_chan_cap(ch), 8u);
        for (int64_t i = 0; i < 8; i++)
            EXPECT_OK(weft_chan_send_try(ch, &i));
        int64_t x = 99;
        EXPECT_RC(weft_chan_send_try(ch, &x), UV_EAGAIN);
        cr_expect_eq(weft_chan_len(ch), 8u);
        for (int64_t i = 0; i < 8; i++) {
            EXPECT_OK(weft_chan_recv(ch, &x));
            cr_expect_eq(x, i);
        }
        EXPECT_RC(weft_chan_recv_try(ch, &x), UV_EAGAIN);
        weft_chan_unref(ch);
    }
    return 0;
}

TASK_TEST(chan, inline_values_up_to_56_bytes_are_copied)
{
    struct big {
        char b[56];
    } v, out;
    weft_chan_t *ch = mk(sizeof(v), 4, WEFT_CHAN_MPMC);
    for (int i = 0; i < 4; i++) {
        memset(&v, 'a' + i, sizeof(v));
        EXPECT_OK(weft_chan_send(ch, &v));
    }
    for (int i = 0; i < 4; i++) {
        EXPECT_OK(weft_chan_recv(ch, &out));
        memset(&v, 'a' + i, sizeof(v));
        cr_expect(memcmp(&v, &out, sizeof(v)) == 0);
    }
    /* odd sizes too */
    weft_chan_t *c3 = mk(3, 2, WEFT_CHAN_SPSC);
    char s[3] = {1, 2, 3}, r[3] = {0};
    EXPECT_OK(weft_chan_send(c3, s));
    EXPECT_OK(weft_chan_recv(c3, r));
    cr_expect(memcmp(s, r, 3) == 0);
    weft_chan_unref(c3);
    weft_chan_unref(ch);
    return 0;
}

static int g_dtor_calls;
static void count_dtor(void *p)
{
    (void)p;
    g_dtor_calls++;
}
static void free_dtor(void *p)
{
    g_dtor_calls++;
    weft__free(p);
}

TASK_TEST(chan, close_drains_then_eof_and_the_destructor_takes_the_rest)
{
    g_dtor_calls = 0;
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = 8, .capacity = 8, .dtor = count_dtor};
    EXPECT_OK(weft_chan_new(&o, &ch));
    for (int64_t i = 0; i < 5; i++)
        EXPECT_OK(weft_chan_send(ch, &i));
    EXPECT_OK(weft_chan_close(ch));
    EXPECT_RC(weft_chan_close(ch), WEFT_ECLOSED);
    cr_expect(weft_chan_is_closed(ch));
    int64_t x = 7;
    EXPECT_RC(weft_chan_send(ch, &x), WEFT_ECLOSED);
    EXPECT_RC(weft_chan_send_try(ch, &x), WEFT_ECLOSED);
    EXPECT_OK(weft_chan_recv(ch, &x));
    cr_expect_eq(x, 0);
    EXPECT_OK(weft_chan_recv(ch, &x));
    cr_expect_eq(x, 1);
    weft_chan_unref(ch); /* 3 left */
    cr_expect_eq(g_dtor_calls, 3);

    /* drained completely: UV_EOF, every time */
    EXPECT_OK(weft_chan_new(&o, &ch));
    EXPECT_OK(weft_chan_send(ch, &x));
    EXPECT_OK(weft_chan_close(ch));
    EXPECT_OK(weft_chan_recv(ch, &x));
    EXPECT_RC(weft_chan_recv(ch, &x), UV_EOF);
    EXPECT_RC(weft_chan_recv_try(ch, &x), UV_EOF);
    EXPECT_RC(weft_chan_recv_timeout(ch, &x, 0), UV_EOF);
    weft_chan_unref(ch);
    return 0;
}

TASK_TEST(chan, pointer_channels_carry_large_objects_and_free_the_rest)
{
    g_dtor_calls = 0;
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = 4096, .capacity = 4, .dtor = free_dtor};
    EXPECT_OK(weft_chan_new(&o, &ch));
    for (int i = 0; i < 3; i++) {
        char *p = weft__malloc(4096);
        memset(p, i, 4096);
        EXPECT_OK(weft_chan_send(ch, &p));
    }
    char *got = NULL;
    EXPECT_OK(weft_chan_recv(ch, &got));
    cr_expect(got != NULL && got[4095] == 0);
    weft__free(got);
    weft_chan_unref(ch); /* two left, freed by the destructor (ASan: no leak) */
    cr_expect_eq(g_dtor_calls, 2);
    return 0;
}

TASK_TEST(chan, misuse_returns_codes)
{
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = 0, .capacity = 4};
    EXPECT_RC(weft_chan_new(&o, &ch), UV_EINVAL);
    cr_expect_null(ch);
    o.elem_size = 57; /* a pointer channel needs a destructor */
    EXPECT_RC(weft_chan_new(&o, &ch), UV_EINVAL);
    o.elem_size = 8;
    o.kind = (weft_chan_kind_t)9;
    EXPECT_RC(weft_chan_new(&o, &ch), UV_EINVAL);
    EXPECT_RC(weft_chan_new(NULL, &ch), UV_EINVAL);
    o.kind = WEFT_CHAN_MPMC;
    EXPECT_RC(weft_chan_new(&o, NULL), UV_EINVAL);
    o.capacity = (size_t)1 << 31;
    EXPECT_RC(weft_chan_new(&o, &ch), UV_EINVAL);
    int64_t x = 1;
    EXPECT_RC(weft_chan_send(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_chan_recv(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_chan_send_try(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_chan_recv_try(NULL, &x), UV_EINVAL);
    EXPECT_RC(weft_chan_close(NULL), UV_EINVAL);
    cr_expect_eq(weft_chan_len(NULL), 0u);
    cr_expect_eq(weft_chan_cap(NULL), 0u);
    cr_expect(!weft_chan_is_closed(NULL));
    weft_chan_ref(NULL);
    weft_chan_unref(NULL);
    ch = mk(8, 4, WEFT_CHAN_MPMC);
    EXPECT_RC(weft_chan_send(ch, NULL), UV_EINVAL);
    EXPECT_RC(weft_chan_recv(ch, NULL), UV_EINVAL);
    /* blocking forms on a loop's thread would block the loop */
    EXPECT_RC(weft_chan_send_blocking(ch, &x, 10), WEFT_EDEADLK);
    EXPECT_RC(weft_chan_recv_blocking(ch, &x, 10), WEFT_EDEADLK);
    size_t n = 9;
    EXPECT_RC(weft_chan_recv_batch(ch, &x, 0, &n), UV_EINVAL);
    cr_expect_eq(n, 0u);
    weft_chan_unref(ch);
    ch = mk(8, 0, WEFT_CHAN_MPMC);
    EXPECT_RC(weft_chan_send_batch(ch, &x, 1, NULL), UV_EINVAL);
    weft_chan_unref(ch);
    return 0;
}

Test(chan, task_forms_outside_a_task_are_enotask, .timeout = TEST_TIMEOUT_S)
{
    weft_chan_t *ch = NULL;
    weft_chan_opts_t o = {.elem_size = 8, .capacity = 2};
    ASSERT_OK(weft_chan_new(&o, &ch));
    int64_t x = 1;
    EXPECT_RC(weft_chan_send(ch, &x), WEFT_ENOTASK);
    EXPECT_RC(weft_chan_recv(ch, &x), WEFT_ENOTASK);
    EXPECT_RC(weft_chan_send_batch(ch, &x, 1, NULL), WEFT_ENOTASK);
    /* try forms work anywhere, and blocking forms on plain threads */
    EXPECT_OK(weft_chan_send_try(ch, &x));
    EXPECT_OK(weft_chan_send_blocking(ch, &x, 0));
    EXPECT_RC(weft_chan_send_blocking(ch, &x, 0), UV_ETIMEDOUT); /* full */
    EXPECT_RC(weft_chan_send_blocking(ch, &x, 5), UV_ETIMEDOUT);
    EXPECT_OK(weft_chan_recv_blocking(ch, &x, WEFT_FOREVER));
    EXPECT_OK(weft_chan_recv_blocking(ch, &x, 0));
    EXPECT_RC(weft_chan_recv_blocking(ch, &x, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_chan_recv_blocking(ch, &x, 5), UV_ETIMEDOUT);
    weft_sel_case_t c = {WEFT_SEL_RECV, ch, &x, 0};
    EXPECT_RC(weft_select(&c, 1, 10), WEFT_ENOTASK);
    EXPECT_RC(weft_select_try(&c, 1), UV_EAGAIN);
    EXPECT_OK(weft_chan_close(ch));
    EXPECT_RC(weft_chan_recv_blocking(ch, &x, WEFT_FOREVER), UV_EOF);
    weft_chan_unref(ch);
}

/* ---- waiting ------------------------------------------------------------------- */

typedef struct op {
    weft_chan_t *ch;
    int send;
    int64_t val;
    uint64_t timeout;
    int rc;
    int next_rc; /* the task's next suspension: where a kept cancel shows */
} op_t;

static int op_body(void *arg, void **result)
{
    (void)result;
    op_t *o = arg;
    if (o->send)
        o->rc = weft_chan_send_timeout(o->ch, &o->val, o->timeout);
    else
        o->rc = weft_chan_recv_timeout(o->ch, &o->val, o->timeout);
    o->next_rc = weft_yield();
    return 0;
}

static weft_task_t *start_op(op_t *o)
{
    weft_task_t *t = NULL;
    int rc = weft_spawn(NULL, op_body, o, &t);
    cr_expect_eq(rc, 0);
    return t;
}

static void finish_op(weft_task_t *t)
{
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
}

TASK_TEST(chan, a_receiver_waits_for_a_sender_and_a_sender_for_room)
{
    static op_t r, s;
    weft_chan_t *ch = mk(8, 1, WEFT_CHAN_MPMC);
    r = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    weft_task_t *tr = start_op(&r);
    EXPECT_OK(yield_until_suspended(tr));
    int64_t v = 42;
    EXPECT_OK(weft_chan_send(ch, &v));
    finish_op(tr);
    EXPECT_OK(r.rc);
    cr_expect_eq(r.val, 42);

    EXPECT_OK(weft_chan_send(ch, &v)); /* full now */
    s = (op_t){.ch = ch, .send = 1, .val = 43, .timeout = WEFT_FOREVER};
    weft_task_t *ts = start_op(&s);
    EXPECT_OK(yield_until_suspended(ts));
    int64_t x;
    EXPECT_OK(weft_chan_recv(ch, &x));
    cr_expect_eq(x, 42);
    finish_op(ts);
    EXPECT_OK(s.rc);
    EXPECT_OK(weft_chan_recv(ch, &x));
    cr_expect_eq(x, 43);
    weft_chan_unref(ch);
    return 0;
}

TASK_TEST(chan, timeouts_of_zero_and_more)
{
    weft_chan_t *ch = mk(8, 1, WEFT_CHAN_MPMC);
    int64_t x = 1;
    EXPECT_RC(weft_chan_recv_timeout(ch, &x, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_chan_recv_timeout(ch, &x, 1), UV_ETIMEDOUT);
    EXPECT_OK(weft_chan_send_timeout(ch, &x, 0));
    EXPECT_RC(weft_chan_send_timeout(ch, &x, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_chan_send_timeout(ch, &x, 1), UV_ETIMEDOUT);
    cr_expect_eq(weft_chan_len(ch), 1u);
    /* a timeout scope ends a channel wait too */
    weft_timeout_t sc;
    EXPECT_OK(weft_timeout_begin(&sc, 1));
    EXPECT_RC(weft_chan_send(ch, &x), UV_ETIMEDOUT);
    EXPECT_RC(weft_timeout_end(&sc), UV_ETIMEDOUT);
    weft_chan_unref(ch);
    return 0;
}

TASK_TEST(chan, cancelled_waits_lose_nothing)
{
    static op_t r, s;
    weft_chan_t *ch = mk(8, 1, WEFT_CHAN_MPMC);
    r = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    weft_task_t *tr = start_op(&r);
    EXPECT_OK(yield_until_suspended(tr));
    EXPECT_OK(weft_task_cancel(tr));
    finish_op(tr);
    EXPECT_RC(r.rc, UV_ECANCELED);
    int64_t v = 5;
    EXPECT_OK(weft_chan_send_try(ch, &v)); /* the cancelled receiver took nothing */
    s = (op_t){.ch = ch, .send = 1, .val = 6, .timeout = WEFT_FOREVER};
    weft_task_t *ts = start_op(&s);
    EXPECT_OK(yield_until_suspended(ts));
    EXPECT_OK(weft_task_cancel(ts));
    finish_op(ts);
    EXPECT_RC(s.rc, UV_ECANCELED);
    int64_t x;
    EXPECT_OK(weft_chan_recv_try(ch, &x));
    cr_expect_eq(x, 5);
    EXPECT_RC(weft_chan_recv_try(ch, &x), UV_EAGAIN); /* 6 never went in */

    /* a receiver woken by a send and cancelled before it ran: the value
     * stays for the next receiver (the wake-up is passed on) */
    static op_t r1, r2;
    r1 = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    r2 = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    weft_task_t *t1 = start_op(&r1);
    EXPECT_OK(yield_until_suspended(t1)); /* r1 waits first */
    weft_task_t *t2 = start_op(&r2);
    EXPECT_OK(yield_until_suspended(t2));
    EXPECT_OK(weft_chan_send(ch, &v)); /* wakes r1 */
    EXPECT_OK(weft_task_cancel(t1));
    finish_op(t1);
    finish_op(t2);
    EXPECT_RC(r1.rc, UV_ECANCELED);
    EXPECT_OK(r2.rc);
    cr_expect_eq(r2.val, 5);
    weft_chan_unref(ch);
    return 0;
}

TASK_TEST(chan, close_wakes_every_waiter)
{
    static op_t rs[3], ss[3];
    weft_chan_t *rc_ch = mk(8, 2, WEFT_CHAN_MPMC);
    weft_chan_t *sc_ch = mk(8, 1, WEFT_CHAN_MPMC);
    int64_t v = 1;
    EXPECT_OK(weft_chan_send(sc_ch, &v));
    weft_task_t *tr[3], *ts[3];
    for (int i = 0; i < 3; i++) {
        rs[i] = (op_t){.ch = rc_ch, .send = 0, .timeout = WEFT_FOREVER};
        ss[i] = (op_t){.ch = sc_ch, .send = 1, .val = i, .timeout = WEFT_FOREVER};
        tr[i] = start_op(&rs[i]);
        ts[i] = start_op(&ss[i]);
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(yield_until_suspended(tr[i]));
        EXPECT_OK(yield_until_suspended(ts[i]));
    }
    EXPECT_OK(weft_chan_close(rc_ch));
    EXPECT_OK(weft_chan_close(sc_ch));
    for (int i = 0; i < 3; i++) {
        finish_op(tr[i]);
        finish_op(ts[i]);
        EXPECT_RC(rs[i].rc, UV_EOF);
        EXPECT_RC(ss[i].rc, WEFT_ECLOSED);
    }
    int64_t x;
    EXPECT_OK(weft_chan_recv(sc_ch, &x)); /* the buffered one is still there */
    cr_expect_eq(x, 1);
    EXPECT_RC(weft_chan_recv(sc_ch, &x), UV_EOF);
    weft_chan_unref(rc_ch);
    weft_chan_unref(sc_ch);
    return 0;
}

/* ---- rendezvous ------------------------------------------------------------------ */

TASK_TEST(chan, rendezvous_send_completes_when_a_receiver_takes_it)
{
    static op_t s[4];
    weft_chan_t *ch = mk(8, 0, WEFT_CHAN_MPMC);
    cr_expect_eq(weft_chan_cap(ch), 0u);
    int64_t x = 9;
    EXPECT_RC(weft_chan_send_try(ch, &x), UV_EAGAIN); /* nobody receives */
    EXPECT_RC(weft_chan_recv_try(ch, &x), UV_EAGAIN);
    weft_task_t *t[4];
    for (int i = 0; i < 4; i++) { /* one at a time: they block in this order */
        s[i] = (op_t){.ch = ch, .send = 1, .val = 100 + i, .timeout = WEFT_FOREVER};
        t[i] = start_op(&s[i]);
        EXPECT_OK(yield_until_suspended(t[i]));
    }
    int64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        EXPECT_OK(weft_chan_recv(ch, &x));
        cr_expect_eq(x, 100 + i); /* senders are served in order */
        sum += x;
    }
    for (int i = 0; i < 4; i++) {
        finish_op(t[i]);
        EXPECT_OK(s[i].rc);
    }
    cr_expect_eq(sum, 406);
    /* a waiting receiver gets a send_try's value */
    static op_t r;
    r = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    weft_task_t *tr = start_op(&r);
    EXPECT_OK(yield_until_suspended(tr));
    x = 77;
    EXPECT_OK(weft_chan_send_try(ch, &x));
    finish_op(tr);
    EXPECT_OK(r.rc);
    cr_expect_eq(r.val, 77);
    /* a cancelled rendezvous send did not send */
    s[0] = (op_t){.ch = ch, .send = 1, .val = 5, .timeout = WEFT_FOREVER};
    t[0] = start_op(&s[0]);
    EXPECT_OK(yield_until_suspended(t[0]));
    EXPECT_OK(weft_task_cancel(t[0]));
    finish_op(t[0]);
    EXPECT_RC(s[0].rc, UV_ECANCELED);
    EXPECT_RC(weft_chan_recv_try(ch, &x), UV_EAGAIN);
    /* a hand-over that came before the cancel wins: 0, the cancel pends */
    r = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    tr = start_op(&r);
    EXPECT_OK(yield_until_suspended(tr));
    x = 78;
    EXPECT_OK(weft_chan_send(ch, &x));
    EXPECT_OK(weft_task_cancel(tr));
    finish_op(tr);
    EXPECT_OK(r.rc);
    cr_expect_eq(r.val, 78);
    EXPECT_RC(r.next_rc, UV_ECANCELED);
    EXPECT_OK(weft_chan_close(ch));
    EXPECT_RC(weft_chan_recv(ch, &x), UV_EOF);
    EXPECT_RC(weft_chan_send(ch, &x), WEFT_ECLOSED);
    weft_chan_unref(ch);
    return 0;
}

/* ---- batches ---------------------------------------------------------------------- */

static int batch_producer(void *arg, void **result)
{
    (void)result;
    weft_chan_t *ch = arg;
    int64_t vals[100];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 100; i++)
            vals[i] = round * 100 + i;
        size_t sent = 0;
        int rc = weft_chan_send_batch(ch, vals, 100, &sent);
        if (rc != 0 || sent != 100)
            return rc != 0 ? rc : UV_EIO;
    }
    return weft_chan_close(ch);
}

TASK_TEST(chan, batches_keep_order_across_waits)
{
    weft_chan_t *ch = mk(8, 16, WEFT_CHAN_SPSC);
    weft_task_t *p;
    EXPECT_OK(weft_spawn(NULL, batch_producer, ch, &p));
    int64_t buf[7], next = 0;
    for (;;) {
        size_t got = 0;
        int rc = weft_chan_recv_batch(ch, buf, 7, &got);
        if (rc == UV_EOF)
            break;
        EXPECT_OK(rc);
        cr_expect(got >= 1 && got <= 7);
        for (size_t i = 0; i < got; i++)
            cr_expect_eq(buf[i], next++);
    }
    cr_expect_eq(next, 1000);
    EXPECT_OK(weft_await_task(p, NULL));
    weft_task_unref(p);
    weft_chan_unref(ch);
    return 0;
}

/* ---- select --------------------------------------------------------------------------- */

TASK_TEST(chan, select_is_fair_among_ready_cases)
{
    weft_chan_t *a = mk(8, 1, WEFT_CHAN_MPMC), *b = mk(8, 1, WEFT_CHAN_MPMC);
    int64_t v = 1, out = 0;
    int hits[2] = {0, 0};
    for (int i = 0; i < 100000; i++) {
        (void)weft_chan_send_try(a, &v);
        (void)weft_chan_send_try(b, &v);
        weft_sel_case_t cs[2] = {{WEFT_SEL_RECV, a, &out, 0}, {WEFT_SEL_RECV, b, &out, 0}};
        int k = weft_select(cs, 2, WEFT_FOREVER);
        cr_expect(k == 0 || k == 1, "select returned %d", k);
        if (k == 0 || k == 1) {
            hits[k]++;
            EXPECT_OK(cs[k].rc);
        }
    }
    cr_expect(hits[0] >= 45000 && hits[0] <= 55000, "case 0 fired %d of 100000", hits[0]);
    weft_chan_unref(a);
    weft_chan_unref(b);
    return 0;
}

static int later_sender(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    int64_t v = 31;
    return rc != 0 ? rc : weft_chan_send(arg, &v);
}

/* More cases than select keeps on its stack (16): its waiter and records
 * go to the heap, on every kind of loop; a rendezvous hand-over into the
 * last record and a buffered wake-up of an early one both arrive. */
TASK_TEST(chan, select_over_twenty_cases_waits_and_fires_the_right_one)
{
    enum {
        N = 20
    };
    weft_chan_t *chs[N];
    int64_t out = 0;
    weft_sel_case_t cs[N];
    for (int i = 0; i < N; i++) {
        chs[i] = mk(8, i == N - 1 ? 0 : 2, WEFT_CHAN_MPMC);
        cs[i] = (weft_sel_case_t){WEFT_SEL_RECV, chs[i], &out, 0};
    }
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, later_sender, chs[N - 1], &t));
    int k = weft_select(cs, N, WEFT_FOREVER);
    cr_expect_eq(k, N - 1);
    EXPECT_OK(cs[N - 1].rc);
    cr_expect_eq(out, 31);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    EXPECT_OK(weft_spawn(NULL, later_sender, chs[3], &t));
    out = 0;
    k = weft_select(cs, N, WEFT_FOREVER);
    cr_expect_eq(k, 3);
    EXPECT_OK(cs[3].rc);
    cr_expect_eq(out, 31);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    for (int i = 0; i < N; i++)
        weft_chan_unref(chs[i]);
    return 0;
}

TASK_TEST(chan, select_waits_deadlines_closed_cases_and_defaults)
{
    weft_chan_t *a = mk(8, 4, WEFT_CHAN_MPMC), *b = mk(8, 0, WEFT_CHAN_MPMC);
    int64_t out = 0;
    weft_sel_case_t cs[2] = {{WEFT_SEL_RECV, a, &out, 0}, {WEFT_SEL_RECV, b, &out, 0}};
    EXPECT_RC(weft_select_try(cs, 2), UV_EAGAIN);
    EXPECT_RC(weft_select(cs, 2, 0), UV_ETIMEDOUT);
    EXPECT_RC(weft_select(cs, 2, 2), UV_ETIMEDOUT);
    EXPECT_RC(weft_select(NULL, 0, 1), UV_ETIMEDOUT); /* no cases: waits for its deadline */
    weft_sel_case_t bad = {(weft_sel_op_t)42, a, &out, 0};
    EXPECT_RC(weft_select(&bad, 1, 1), UV_EINVAL);
    /* a sender on the rendezvous channel that comes later */
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, later_sender, b, &t));
    int k = weft_select(cs, 2, WEFT_FOREVER);
    cr_expect_eq(k, 1);
    EXPECT_OK(cs[1].rc);
    cr_expect_eq(out, 31);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    /* a closed channel is a ready case */
    EXPECT_OK(weft_chan_close(a));
    k = weft_select(cs, 2, WEFT_FOREVER);
    cr_expect_eq(k, 0);
    EXPECT_RC(cs[0].rc, UV_EOF);
    /* a send case to a closed channel fires with WEFT_ECLOSED; a NULL case
     * never fires */
    int64_t v = 1;
    weft_sel_case_t sc[2] = {{WEFT_SEL_SEND, a, &v, 0}, {WEFT_SEL_RECV, NULL, &out, 0}};
    k = weft_select(sc, 2, WEFT_FOREVER);
    cr_expect_eq(k, 0);
    EXPECT_RC(sc[0].rc, WEFT_ECLOSED);
    weft_chan_unref(a);
    weft_chan_unref(b);
    return 0;
}

static int closer(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    return rc != 0 ? rc : weft_chan_close(arg);
}

TASK_TEST(chan, select_wakes_when_a_case_channel_closes)
{
    weft_chan_t *a = mk(8, 4, WEFT_CHAN_MPMC), *b = mk(8, 0, WEFT_CHAN_MPMC);
    int64_t out = 0;
    weft_sel_case_t cs[2] = {{WEFT_SEL_RECV, a, &out, 0}, {WEFT_SEL_RECV, b, &out, 0}};
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, closer, b, &t));
    int k = weft_select(cs, 2, WEFT_FOREVER);
    cr_expect_eq(k, 1);
    EXPECT_RC(cs[1].rc, UV_EOF);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    weft_chan_unref(a);
    weft_chan_unref(b);
    return 0;
}

static int put_later(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    return rc != 0 ? rc : weft_queue_put(arg, weft_int(55));
}

static int sleep_then_done(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(3);
    return weft_sleep(1);
}

TASK_TEST(chan, select_mixes_a_future_a_queue_and_a_channel)
{
    static weft_queue_t q;
    EXPECT_OK(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0));
    weft_chan_t *a = mk(8, 4, WEFT_CHAN_MPMC);
    int64_t out = 0;
    void *item = NULL;
    weft_future_t *f = NULL;
    EXPECT_OK(weft_future_new(NULL, &f));
    weft_sel_case_t cs[3] = {{WEFT_SEL_RECV, a, &out, 0},
                             {WEFT_SEL_QUEUE_GET, &q, &item, 0},
                             {WEFT_SEL_FUTURE, f, NULL, 0}};
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, put_later, &q, &t));
    int k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 1);
    EXPECT_OK(cs[1].rc);
    cr_expect_eq(weft_to_int(item), 55);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(weft_queue_size(&q), 0u); /* handed over, not left queued */
    /* a task's future */
    weft_task_t *s;
    EXPECT_OK(weft_spawn(NULL, sleep_then_done, NULL, &s));
    cs[2].obj = weft_task_future(s);
    k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 2);
    cr_expect(weft_future_done(weft_task_future(s)));
    weft_task_unref(s);
    /* a plain future completed by a callback */
    cs[2].obj = f;
    EXPECT_OK(weft_future_set_result(f, weft_int(1)));
    k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 2);
    weft_future_unref(f);
    /* a queue that shuts down fires with WEFT_ECLOSED */
    cs[2].obj = NULL;
    (void)weft_queue_shutdown(&q, false);
    k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 1);
    EXPECT_RC(cs[1].rc, WEFT_ECLOSED);
    EXPECT_OK(weft_queue_close(&q));
    weft_chan_unref(a);
    return 0;
}

static int select_body(void *arg, void **result)
{
    (void)result;
    op_t *o = arg;
    weft_sel_case_t cs[1] = {{WEFT_SEL_RECV, o->ch, &o->val, 0}};
    o->rc = weft_select(cs, 1, WEFT_FOREVER);
    o->next_rc = weft_yield();
    return 0;
}

TASK_TEST(chan, a_cancelled_select_takes_nothing)
{
    static op_t o, r;
    weft_chan_t *ch = mk(8, 2, WEFT_CHAN_MPMC);
    o = (op_t){.ch = ch};
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, select_body, &o, &t));
    EXPECT_OK(yield_until_suspended(t));
    r = (op_t){.ch = ch, .send = 0, .timeout = WEFT_FOREVER};
    weft_task_t *tr = start_op(&r);
    EXPECT_OK(yield_until_suspended(tr));
    int64_t v = 8;
    EXPECT_OK(weft_chan_send(ch, &v)); /* wakes the select first */
    EXPECT_OK(weft_task_cancel(t));
    finish_op(t);
    finish_op(tr);
    EXPECT_RC(o.rc, UV_ECANCELED);
    EXPECT_OK(r.rc); /* the wake-up was passed on */
    cr_expect_eq(r.val, 8);
    weft_chan_unref(ch);
    return 0;
}

/* ---- allocation ---------------------------------------------------------------------- */

static int pong(void *arg, void **result)
{
    (void)result;
    weft_chan_t **c = arg;
    int64_t v;
    int rc;
    while ((rc = weft_chan_recv(c[0], &v)) == 0)
        if ((rc = weft_chan_send(c[1], &v)) != 0)
            return rc;
    return rc == UV_EOF ? 0 : rc;
}

/* Guarded stacks only: a COMPACT loop's blocking waits allocate their
 * records (docs/channels.md). */
static int no_alloc_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    static weft_chan_t *c[2];
    c[0] = mk(8, 1, WEFT_CHAN_SPSC);
    c[1] = mk(8, 0, WEFT_CHAN_MPMC);
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, pong, c, &t));
    int64_t v = 0;
    for (int i = 0; i < 100; i++) { /* warm-up */
        EXPECT_OK(weft_chan_send(c[0], &v));
        EXPECT_OK(weft_chan_recv(c[1], &v));
    }
    uint64_t before = weft__alloc_calls();
    for (int i = 0; i < 10000; i++) {
        EXPECT_OK(weft_chan_send(c[0], &v));
        EXPECT_OK(weft_chan_recv(c[1], &v));
        weft_sel_case_t cs[2] = {{WEFT_SEL_RECV, c[1], &v, 0}, {WEFT_SEL_RECV, NULL, &v, 0}};
        EXPECT_OK(weft_chan_send(c[0], &v));
        cr_expect_eq(weft_select(cs, 2, WEFT_FOREVER), 0);
    }
    uint64_t calls = weft__alloc_calls() - before;
    cr_expect_eq(calls, 0u, "%llu allocator calls in 20000 round trips", (unsigned long long)calls);
    EXPECT_OK(weft_chan_close(c[0]));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    weft_chan_unref(c[0]);
    weft_chan_unref(c[1]);
    return 0;
}

Test(chan, steady_state_send_recv_and_select_make_no_allocator_calls, .timeout = TEST_TIMEOUT_S)
{
    run_main(no_alloc_main, WEFT_STACK_GUARDED);
}

/* ---- debug mode ------------------------------------------------------------------------- */

static int blocked_sender(void *arg, void **result)
{
    (void)result;
    int64_t v = 2;
    return weft_chan_send(arg, &v); /* the channel is full: waits, still "active" */
}

static int second_sender_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_chan_t *ch = mk(8, 1, WEFT_CHAN_SPSC);
    int64_t v = 1;
    EXPECT_OK(weft_chan_send(ch, &v));
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, blocked_sender, ch, &t));
    EXPECT_OK(yield_until_suspended(t));
    (void)weft_chan_send_try(ch, &v); /* a second sender at once: abort */
    cr_expect(false, "a second SPSC sender was not caught");
    return 0;
}

Test(chan, a_second_sender_on_an_spsc_channel_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    setenv("WEFT_DEBUG", "1", 1);
    run_main(second_sender_main, WEFT_STACK_GUARDED);
}

static int second_receiver(void *arg, void **result)
{
    (void)result;
    int64_t v;
    return weft_chan_recv(arg, &v); /* empty: waits, still "active" */
}

static int second_receiver_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_chan_t *ch = mk(8, 4, WEFT_CHAN_MPSC);
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, second_receiver, ch, &t));
    EXPECT_OK(yield_until_suspended(t));
    int64_t v;
    (void)weft_chan_recv_try(ch, &v); /* a second receiver at once: abort */
    cr_expect(false, "a second MPSC receiver was not caught");
    return 0;
}

Test(chan, a_second_receiver_on_an_mpsc_channel_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    setenv("WEFT_DEBUG", "1", 1);
    run_main(second_receiver_main, WEFT_STACK_GUARDED);
}

/* Without debug mode the same calls are not checked (and the try simply
 * finds the channel full). */
static int unchecked_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_chan_t *ch = mk(8, 1, WEFT_CHAN_SPSC);
    int64_t v = 1;
    EXPECT_OK(weft_chan_send(ch, &v));
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, blocked_sender, ch, &t));
    EXPECT_OK(yield_until_suspended(t));
    EXPECT_RC(weft_chan_send_try(ch, &v), UV_EAGAIN);
    EXPECT_OK(weft_chan_recv(ch, &v));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    weft_chan_unref(ch);
    return 0;
}

Test(chan, outside_debug_mode_the_kind_promises_are_not_checked, .timeout = TEST_TIMEOUT_S)
{
    setenv("WEFT_DEBUG", "0", 1);
    run_main(unchecked_main, WEFT_STACK_GUARDED);
}

/* ---- select over broadcast and watch receivers ----------------------------------------- */

static int bcast_later(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    int64_t v = 44;
    if (rc == 0)
        rc = weft_broadcast_send(arg, &v) >= 0 ? 0 : UV_EIO;
    return rc;
}

static int watch_later(void *arg, void **result)
{
    (void)result;
    int rc = weft_yield();
    int64_t v = 9;
    if (rc == 0)
        rc = weft_watch_send(arg, &v) >= 0 ? 0 : UV_EIO;
    return rc;
}

TASK_TEST(chan, select_takes_broadcast_and_watch_receivers)
{
    weft_chan_t *ch = mk(8, 4, WEFT_CHAN_MPMC);
    weft_broadcast_t *b = NULL;
    weft_watch_t *w = NULL;
    weft_broadcast_rx_t *brx = NULL;
    weft_watch_rx_t *wrx = NULL;
    int64_t zero = 0, out = 0, bout = 0;
    EXPECT_OK(weft_broadcast_new(8, 4, NULL, &b));
    EXPECT_OK(weft_broadcast_subscribe(b, &brx));
    EXPECT_OK(weft_watch_new(8, &zero, &w));
    EXPECT_OK(weft_watch_subscribe(w, &wrx));
    weft_sel_case_t cs[3] = {{WEFT_SEL_RECV, ch, &out, 0},
                             {WEFT_SEL_BROADCAST_RECV, brx, &bout, 0},
                             {WEFT_SEL_WATCH_CHANGED, wrx, NULL, 0}};
    EXPECT_RC(weft_select_try(cs, 3), UV_EAGAIN);
    EXPECT_RC(weft_select(cs, 3, 1), UV_ETIMEDOUT);
    /* a broadcast sent while the select waits */
    weft_task_t *t;
    EXPECT_OK(weft_spawn(NULL, bcast_later, b, &t));
    int k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 1);
    EXPECT_OK(cs[1].rc);
    cr_expect_eq(bout, 44);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    /* a watch change while it waits; the version is then seen */
    EXPECT_OK(weft_spawn(NULL, watch_later, w, &t));
    k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 2);
    EXPECT_OK(cs[2].rc);
    EXPECT_RC(weft_select_try(cs, 3), UV_EAGAIN);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    /* a receiver in use by a waiting select cannot be unsubscribed; after
     * it returns it can; closed ones fire with UV_EOF */
    EXPECT_OK(weft_broadcast_close(b));
    k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 1);
    EXPECT_RC(cs[1].rc, UV_EOF);
    EXPECT_OK(weft_broadcast_unsubscribe(brx));
    cs[1].obj = NULL;
    EXPECT_OK(weft_watch_close(w));
    k = weft_select(cs, 3, WEFT_FOREVER);
    cr_expect_eq(k, 2);
    EXPECT_RC(cs[2].rc, UV_EOF);
    EXPECT_OK(weft_watch_unsubscribe(wrx));
    weft_sel_case_t bad = {WEFT_SEL_BROADCAST_RECV, brx, NULL, 0};
    EXPECT_RC(weft_select_try(&bad, 1), UV_EINVAL); /* a broadcast case needs val */
    weft_broadcast_unref(b);
    weft_watch_unref(w);
    weft_chan_unref(ch);
    return 0;
}

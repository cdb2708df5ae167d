/*
 * channels/select.c - Go's select over channels, futures and queues
 * (weft/chan.h, docs/channels.md).
 *
 * Cases: channel send/recv, futures, queue gets, broadcast receives and
 * watch changes. One pass tries every case in a random order (a Fisher-Yates shuffle per
 * select, so among ready cases each is equally likely, not the first
 * listed). If none is ready the select registers one record per case, all
 * pointing at one waiter (core/xwait.h) whose claim word lets exactly one
 * case end the wait, re-checks each case just after registering it, parks,
 * and unregisters everything. A claim by a rendezvous channel or a queue is
 * a hand-over (the value is in the record): that case fires. A claim by a
 * buffered channel or a future only says "ready": the select tries again,
 * and if it then fires another case it passes the channel's wake-up on to
 * the channel's next waiter, so that none is lost.
 */
#include <stddef.h>
#include <string.h>
#include <weft/broadcast.h>
#include <weft/chan.h>
#include <weft/error.h>
#include <weft/future.h>
#include <weft/loop.h>
#include <weft/queue.h>
#include <weft/task.h>

#include "chan_int.h"
#include "core/alloc.h"
#include "lockwait.h"

struct sel_rec {
    union {
        struct chan_rec c;
        struct weft__xwatch f;
        weft__xq_t q;
        struct weft__lw_rec lw; /* broadcast and watch receivers */
    } u;
    bool linked;
};

/* Records for up to this many cases live on the caller's stack. */
#define STACK_CASES 16

static __thread uint64_t sel_rng;

static uint32_t sel_rand(uint32_t n)
{
    uint64_t x = sel_rng;
    if (x == 0)
        x = (uint64_t)(uintptr_t)&sel_rng ^ uv_hrtime() ^ 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sel_rng = x;
    return (uint32_t)(((x >> 32) * (uint64_t)n) >> 32);
}

static int case_dir(const weft_sel_case_t *c)
{
    return c->op == WEFT_SEL_SEND ? CHAN_SEND : CHAN_RECV;
}

/* One attempt at case c: 0 or another final code when it fires, UV_EAGAIN
 * when not ready, or an error of the select itself (WEFT_EWRONGLOOP, ...),
 * returned through *fatal. */
static int try_case(weft_sel_case_t *c, bool *fatal)
{
    *fatal = false;
    if (c->obj == NULL)
        return UV_EAGAIN;
    switch (c->op) {
    case WEFT_SEL_RECV:
    case WEFT_SEL_SEND:
        return weft__chan_try(c->obj, case_dir(c), c->val);
    case WEFT_SEL_FUTURE: {
        weft_future_t *f = c->obj;
        if (weft_future_loop(f) != weft_loop_current()) {
            *fatal = true;
            return WEFT_EWRONGLOOP;
        }
        return weft_future_done(f) ? 0 : UV_EAGAIN;
    }
    case WEFT_SEL_QUEUE_GET: {
        int rc = weft_queue_get_try(c->obj, c->val, NULL);
        if (rc != 0 && rc != UV_EAGAIN && rc != WEFT_ECLOSED)
            *fatal = true;
        return rc;
    }
    case WEFT_SEL_BROADCAST_RECV:
        return weft_broadcast_recv_try(c->obj, c->val); /* 0, ELAGGED, EOF, EAGAIN */
    case WEFT_SEL_WATCH_CHANGED:
        return weft_watch_changed_try(c->obj); /* 0, EOF, EAGAIN */
    }
    *fatal = true;
    return UV_EINVAL;
}

/* Register case i; true if it turned out ready (retry at once). */
static bool reg_case(weft_sel_case_t *c, struct sel_rec *r, struct weft__xwait *x, uint32_t i,
                     int *done)
{
    r->linked = false;
    *done = UV_EAGAIN;
    if (c->obj == NULL)
        return false;
    switch (c->op) {
    case WEFT_SEL_RECV:
    case WEFT_SEL_SEND:
        weft__list_init(&r->u.c.link);
        r->u.c.x = x;
        r->u.c.tag = i;
        r->linked = true;
        return weft__chan_register(c->obj, case_dir(c), &r->u.c, c->val, done, false);
    case WEFT_SEL_FUTURE:
        r->u.f.x = x;
        r->u.f.tag = i;
        if (weft__xwait_watch_future(c->obj, &r->u.f) != 0) {
            *done = UV_ENOMEM;
            return true;
        }
        r->linked = true;
        return weft_future_done(c->obj);
    case WEFT_SEL_QUEUE_GET:
        weft__xwait_queue_link(c->obj, &r->u.q, x, i);
        r->linked = true;
        return weft_queue_size(c->obj) > 0;
    case WEFT_SEL_BROADCAST_RECV:
    case WEFT_SEL_WATCH_CHANGED:
        weft__list_init(&r->u.lw.link);
        r->u.lw.x = x;
        r->u.lw.tag = i;
        r->linked = true;
        return c->op == WEFT_SEL_BROADCAST_RECV ? weft__broadcast_sel_link(c->obj, &r->u.lw)
                                                : weft__watch_sel_link(c->obj, &r->u.lw);
    }
    return false;
}

static void unreg_case(weft_sel_case_t *c, struct sel_rec *r, bool *granted, void **item, int *code)
{
    *granted = false;
    if (!r->linked)
        return;
    switch (c->op) {
    case WEFT_SEL_RECV:
    case WEFT_SEL_SEND:
        weft__chan_unregister(c->obj, case_dir(c), &r->u.c);
        break;
    case WEFT_SEL_FUTURE:
        weft__xwait_unwatch_future(&r->u.f);
        break;
    case WEFT_SEL_QUEUE_GET:
        *granted = weft__xwait_queue_unlink(&r->u.q, item, code);
        break;
    case WEFT_SEL_BROADCAST_RECV:
        weft__broadcast_sel_unlink(c->obj, &r->u.lw);
        break;
    case WEFT_SEL_WATCH_CHANGED:
        weft__watch_sel_unlink(c->obj, &r->u.lw);
        break;
    }
    r->linked = false;
}

static int check_cases(const weft_sel_case_t *cases, size_t n)
{
    if ((cases == NULL && n > 0) || n > WEFT_SELECT_MAX)
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const weft_sel_case_t *c = &cases[i];
        switch (c->op) {
        case WEFT_SEL_SEND:
        case WEFT_SEL_QUEUE_GET:
        case WEFT_SEL_BROADCAST_RECV:
            if (c->obj != NULL && c->val == NULL)
                return UV_EINVAL;
            break;
        case WEFT_SEL_RECV:
        case WEFT_SEL_FUTURE:
        case WEFT_SEL_WATCH_CHANGED:
            break;
        default:
            return UV_EINVAL;
        }
    }
    return 0;
}

/* The try pass, in a random order: the fired index, UV_EAGAIN, or an
 * error. */
static int try_pass(weft_sel_case_t *cases, size_t n)
{
    uint8_t perm[WEFT_SELECT_MAX];
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint8_t)i;
    for (size_t i = n; i > 1; i--) {
        uint32_t j = sel_rand((uint32_t)i);
        uint8_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    for (size_t k = 0; k < n; k++) {
        weft_sel_case_t *c = &cases[perm[k]];
        bool fatal;
        int rc = try_case(c, &fatal);
        if (fatal)
            return rc;
        if (rc != UV_EAGAIN) {
            c->rc = rc;
            return perm[k];
        }
    }
    return UV_EAGAIN;
}

/* The waiter and one record per case, in one block
 * (weft__xwait_block_begin): on the stack for up to STACK_CASES cases. */
struct sel_block {
    struct weft__xwait x;
    struct sel_rec recs[STACK_CASES];
};

static bool chan_case(const weft_sel_case_t *c)
{
    return c->op == WEFT_SEL_RECV || c->op == WEFT_SEL_SEND;
}

static int select_impl(weft_sel_case_t *cases, size_t n, uint64_t deadline)
{
    struct sel_block stack_b;
    const size_t size = offsetof(struct sel_block, recs) + sizeof(struct sel_rec) * (n ? n : 1);
    int pass = -1; /* a buffered channel's case whose wake-up we hold */
    int out;
    bool yielded = false;
    for (;;) {
        out = try_pass(cases, n);
        if (out != UV_EAGAIN)
            break;
        if (!yielded && weft__xwait_others_ready()) {
            /* Once, as a single wait does (chan.c, wait_op): what is ready
             * on this loop may be what feeds a case. */
            yielded = true;
            if ((out = weft_yield()) != 0)
                break;
            continue;
        }
        if (deadline != UINT64_MAX && uv_hrtime() >= deadline) {
            out = UV_ETIMEDOUT;
            break;
        }
        struct sel_block *b = weft__xwait_block_begin(&stack_b, sizeof stack_b, size);
        if (b == NULL) {
            out = UV_ENOMEM;
            break;
        }
        struct weft__xwait *x = &b->x;
        struct sel_rec *recs = b->recs;
        size_t nreg = 0;
        int done = UV_EAGAIN;
        bool ready = false;
        for (; nreg < n && !ready; nreg++)
            ready = reg_case(&cases[nreg], &recs[nreg], x, (uint32_t)nreg, &done);
        int prc = ready ? 0 : weft__xwait_park(x, deadline);
        int tag = weft__xwait_settle(x);
        int fired = -1, fcode = 0;
        for (size_t i = 0; i < nreg; i++) {
            bool granted;
            void *item = NULL;
            int code = 0;
            unreg_case(&cases[i], &recs[i], &granted, &item, &code);
            if (granted) { /* a queue handed us its item */
                fired = (int)i;
                fcode = code;
                *(void **)cases[i].val = item;
            }
        }
        if (done == UV_EAGAIN && fired < 0 && tag >= 0 && chan_case(&cases[tag]) &&
            ((struct weft_chan *)cases[tag].obj)->rendezvous) {
            /* A rendezvous hand-over (or close) into our record. */
            weft_sel_case_t *c = &cases[tag];
            struct chan_rec *cr = &recs[tag].u.c;
            fired = tag;
            fcode = cr->code;
            if (fcode == 0 && c->op == WEFT_SEL_RECV && c->val != NULL)
                memcpy(c->val, cr->vbuf, ((struct weft_chan *)c->obj)->esz);
        }
        /* A hand-over wins over a cancel or a timeout. */
        if (done == UV_EAGAIN && fired >= 0 && prc == UV_ECANCELED)
            weft__xwait_keep_cancel(x);
        weft__xwait_block_end(b, &stack_b);
        if (done != UV_EAGAIN) { /* registering case nreg - 1 finished it */
            if (done == UV_ENOMEM) {
                out = UV_ENOMEM;
                break;
            }
            cases[nreg - 1].rc = done;
            out = (int)nreg - 1;
            break;
        }
        if (fired < 0 && tag >= 0 && chan_case(&cases[tag])) {
            if (pass >= 0 && pass != tag)
                weft__chan_notify(cases[pass].obj, case_dir(&cases[pass]));
            pass = tag;
        }
        if (fired >= 0) {
            cases[fired].rc = fcode;
            out = fired;
            break;
        }
        if (prc != 0) {
            out = prc;
            break;
        }
    }
    if (pass >= 0 && pass != out)
        weft__chan_notify(cases[pass].obj, case_dir(&cases[pass]));
    return out;
}

int weft_select(weft_sel_case_t *cases, size_t n, uint64_t timeout_ms)
{
    int rc = check_cases(cases, n);
    if (rc != 0)
        return rc;
    if ((rc = weft__xwait_check()) != 0)
        return rc;
    if (timeout_ms == 0) {
        rc = try_pass(cases, n);
        return rc == UV_EAGAIN ? UV_ETIMEDOUT : rc;
    }
    return select_impl(cases, n, weft__xwait_deadline(timeout_ms));
}

int weft_select_try(weft_sel_case_t *cases, size_t n)
{
    int rc = check_cases(cases, n);
    if (rc != 0)
        return rc;
    return try_pass(cases, n);
}

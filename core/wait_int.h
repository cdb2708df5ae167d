/*
 * core/wait_int.h - the wait layer: parking a task, waking it, the waiter
 * records primitives queue, grants, deadlines, binding an object to its
 * loop (internal to core/).
 *
 * Layer map (base.h has it in full): leaves -> sched_int.h -> future_int.h ->
 * task_int.h -> wait_int.h -> sync/timeout/queue/combine/group/gen -> ext.h.
 * Includes task_int.h only: no public header beyond it (a weft_waitq_t is
 * known as struct weft_waitq, a scope as struct weft_timeout, by pointer).
 * Implemented by task.c (bind by sync.c, scopes by timeout.c). Included by
 * the primitives above (sync.c, timeout.c, queue.c, combine.c, group.c,
 * gen.c), each with its own public header, by task.c and by ext.c; not
 * by loops/.
 *
 * A task waiting on one of the primitives (sync, queue, combinators,
 * groups) parks: it is SUSPENDED with no awaited future and is woken by
 * weft__task_wake(). A weft__waiter is the record a primitive keeps in its
 * FIFO; the waker fills it in and grants it before waking the task, so a
 * grant is never lost to a cancel that arrives in between.
 */
#ifndef WEFT_CORE_WAIT_INT_H
#define WEFT_CORE_WAIT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "task_int.h"
#include "xwait.h"

struct weft__waiter {
    struct weft__list link;
    struct weft_task *task;
    void *val;    /* payload, in either direction */
    int64_t prio; /* payload */
    int code;     /* what the granted wait returns */
    bool granted;
    /* A select's case (core/xwait.h): granted only if the select can be
     * claimed with xtag; NULL for a plain wait. */
    struct weft__xwait *xw;
    uint32_t xtag;
};

/* Checks every suspension point makes first: a pending cancel
 * (UV_ECANCELED) or a passed scope deadline (UV_ETIMEDOUT), else 0. */
int weft__pre_suspend_slow(struct weft_task *t);
static inline int weft__pre_suspend(struct weft_task *t)
{
    if (__builtin_expect(!t->cancel_pending && t->scope == NULL, 1))
        return 0;
    return weft__pre_suspend_slow(t);
}
/* Park t (the running task) until woken, until deadline_ns (absolute,
 * UINT64_MAX = none) or until its scope's deadline. Returns the wake code,
 * UV_ETIMEDOUT or UV_ECANCELED. Does not do weft__pre_suspend's checks.
 * nocancel: only an explicit wake ends it; cancels stay pending, deadlines
 * are ignored. */
int weft__park(struct weft__loop *l, struct weft_task *t, uint64_t deadline_ns, bool nocancel);
/* Queue w on q and park. Returns w->code if granted (a cancel that came
 * later stays pending for the next suspension), else the park's code; w is
 * off q either way. On a COMPACT loop a suspended task's stack is not where
 * its frames are, so the record other tasks touch is a pooled copy of w
 * (w's val/prio in, granted/code/val/prio out): callers keep w on their
 * stack either way. */
int weft__wait_on(struct weft__loop *l, struct weft_task *t, struct weft__list *q,
                  struct weft__waiter *w, uint64_t deadline_ns);
/* Same, but only a grant ends the wait: cancels stay pending, deadlines are
 * ignored (clean-up waits such as re-taking a condition's lock). */
void weft__wait_on_nocancel(struct weft__loop *l, struct weft_task *t, struct weft__list *q,
                            struct weft__waiter *w);
static inline void weft__waiter_grant(struct weft__waiter *w, int code)
{
    weft__list_remove(&w->link);
    w->granted = true;
    w->code = code;
    struct weft_task *t = w->task;
    /* A parked task is SUSPENDED, awaits nothing and is in no list; it may
     * already be queued (woken by a cancel or its timer). */
    if (!t->queued) {
        struct weft__loop *l = t->fut.loop;
        t->wake_code = 0;
        weft__timer_disarm(l, &t->tm);
        t->queued = true;
        weft__ready_push(l, &t->rn);
    }
}
/* The oldest waiter of q that still waits. A waiter whose task is already
 * queued was woken by a cancel or a timeout and has not run yet to withdraw
 * itself: it is unlinked here and skipped, so what is released goes to the
 * next one (asyncio skips cancelled waiters too). */
static inline struct weft__waiter *weft__waiter_first(struct weft__list *q)
{
    while (!weft__list_empty(q)) {
        struct weft__waiter *w = WEFT_CONTAINER_OF(q->next, struct weft__waiter, link);
        if (!w->task->queued && (w->xw == NULL || weft__xwait_claim(w->xw, w->xtag)))
            return w; /* a select's case is claimed now: the caller grants it */
        weft__list_remove(&w->link);
    }
    return NULL;
}
/* Bind a loop-bound object (lazily, to the caller's loop) and check that the
 * caller is on it: 0, WEFT_EWRONGLOOP or (no loop at all) WEFT_ENOTASK. */
int weft__bind_slow(void **loop_slot, const char *call);
static inline int weft__bind_(void **loop_slot, const char *call)
{
    if (__builtin_expect(*loop_slot == (void *)weft__tls_loop, 1))
        return 0;
    return weft__bind_slow(loop_slot, call);
}
/* Names the calling function in debug mode's message. */
#define weft__bind(loop_slot) weft__bind_((loop_slot), __func__)
/* Deadline of a relative timeout (WEFT_FOREVER/too long = none). */
static inline uint64_t weft__deadline_after(uint64_t timeout_ms)
{
    if (timeout_ms >= WEFT__MS_MAX)
        return WEFT_FOREVER;
    return uv_hrtime() + timeout_ms * 1000000u;
}
/* The common body of a primitive's wait: checks (WEFT_ENOTASK, a pending
 * cancel, a passed scope deadline), timeout 0 = UV_ETIMEDOUT without
 * waiting, then weft__wait_on(). */
static inline int weft__wait_here(struct weft__list *q, struct weft__waiter *w, uint64_t timeout_ms)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    if (timeout_ms == 0)
        return UV_ETIMEDOUT;
    return weft__wait_on(l, t, q, w, weft__deadline_after(timeout_ms));
}
/* A public wait queue (weft/sync.h's weft_waitq_t) is a list head. */
struct weft_waitq;
static inline struct weft__list *weft__wq(struct weft_waitq *q)
{
    return (struct weft__list *)(void *)q;
}

/* timeout.c: mark every scope of the chain whose own deadline is <= now
 * as expired. */
void weft__scope_mark(struct weft_timeout *s, uint64_t now);

#endif /* WEFT_CORE_WAIT_INT_H */

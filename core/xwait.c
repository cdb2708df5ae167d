/*
 * core/xwait.c - the waiter any thread can end (core/xwait.h).
 *
 * A task waits by parking (weft__park): its loop runs other work. A plain
 * thread waits on a futex on the state word itself, announced by moving
 * WAITING to SLEEPING first, so a waker pays for the futex_wake system call
 * only when the thread really is (about to be) blocked in the kernel.
 */
#include "xwait.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <weft/queue.h>

#include "alloc.h"
#include "wait_int.h"

bool weft__xwait_begin(struct weft__xwait *x)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    __atomic_store_n(&x->state, WEFT__XW_WAITING, __ATOMIC_RELAXED);
    x->task = t;
    x->loop = l;
    x->seq = 0;
    if (t == NULL)
        return false;
    x->seq = ++t->wait_seq;
    return true;
}

void weft__xwait_end(struct weft__xwait *x)
{
    if (x->task != NULL)
        x->task->wait_seq++; /* any wake message still in flight is stale now */
}

/* On the waiter's loop: a = task, b = the wait's seq. */
static void xwait_wake_msg(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx;
    (void)c;
    (void)d;
    struct weft_task *t = (struct weft_task *)a;
    /* Task memory stays a task until the loop closes (loop_int.h), and the
     * loop cannot close while a wait is claimed but not yet unlinked (the
     * waiter takes the claimer's lock to unlink): reading t is safe; the
     * seq says whether this wait is still the one the task is in. */
    if (t->state != WEFT_TASK_SUSPENDED || t->wait_seq != (uint32_t)b || t->queued)
        return;
    weft__task_wake(t, 0);
}

static void futex_wake(uint32_t *word)
{
    (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

bool weft__xwait_claim(struct weft__xwait *x, uint32_t tag)
{
    /* Everything the wake needs is read before the CAS: once it succeeds,
     * a waiter that sees the claim may return and reuse its stack (a
     * thread whose futex wait ended by itself, a task that skips the lock
     * to unlink - chan.c), so x is not read again; only the futex word's
     * address is used, and a spurious wake of a reused word is harmless
     * (every futex waiter re-checks its word). */
    struct weft_task *t = x->task;
    struct weft__loop *l = x->loop;
    uint32_t seq = x->seq;
    uint32_t old = __atomic_load_n(&x->state, __ATOMIC_RELAXED);
    for (;;) {
        if (old != WEFT__XW_WAITING && old != WEFT__XW_SLEEPING)
            return false;
        if (__atomic_compare_exchange_n(&x->state, &old, weft__xw_claimed(tag), false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            break;
    }
    if (t == NULL) {
        if (old == WEFT__XW_SLEEPING)
            futex_wake(&x->state);
        return true;
    }
    if (l == weft__tls_loop) {
        if (t->state == WEFT_TASK_SUSPENDED && t->wait_seq == seq && !t->queued)
            weft__task_wake(t, 0);
        return true;
    }
    /* The inbox never drops a message (it overflows into a list) and the
     * waiter's loop cannot be closed while the waiter waits: the only
     * failure left is an allocation failure of that overflow, after which
     * the waiter ends its wait by its timeout or cancel only. The message
     * names the task and this wait's seq: task memory stays a task until
     * its loop closes, and a stale seq is ignored. */
    (void)weft__post(l, xwait_wake_msg, (uintptr_t)t, seq, 0, 0);
    return true;
}

int weft__xwait_settle(struct weft__xwait *x)
{
    uint32_t old = __atomic_load_n(&x->state, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((old & 0xffu) == WEFT__XW_CLAIMED)
            return (int)(old >> 8);
        if (old == WEFT__XW_GONE)
            return -1;
        if (__atomic_compare_exchange_n(&x->state, &old, WEFT__XW_GONE, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return -1;
    }
}

static int thread_park(struct weft__xwait *x, uint64_t deadline_ns)
{
    uint32_t w = WEFT__XW_WAITING;
    if (!__atomic_compare_exchange_n(&x->state, &w, WEFT__XW_SLEEPING, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return 0; /* claimed already */
    for (;;) {
        struct timespec ts, *tsp = NULL;
        if (deadline_ns != UINT64_MAX) {
            uint64_t now = uv_hrtime();
            if (now >= deadline_ns)
                return UV_ETIMEDOUT;
            uint64_t left = deadline_ns - now;
            ts.tv_sec = (time_t)(left / 1000000000u);
            ts.tv_nsec = (long)(left % 1000000000u);
            tsp = &ts;
        }
        /* FUTEX_WAIT's timeout is relative, on CLOCK_MONOTONIC. */
        (void)syscall(SYS_futex, &x->state, FUTEX_WAIT_PRIVATE, WEFT__XW_SLEEPING, tsp, NULL, 0);
        if (__atomic_load_n(&x->state, __ATOMIC_ACQUIRE) != WEFT__XW_SLEEPING)
            return 0;
    }
}

int weft__xwait_park(struct weft__xwait *x, uint64_t deadline_ns)
{
    if (x->task == NULL)
        return thread_park(x, deadline_ns);
    return weft__park(x->loop, x->task, deadline_ns, false);
}

void weft__spin_lock_slow(weft__spin_t *s)
{
    for (unsigned spins = 0;; spins++) {
        while (__atomic_load_n(&s->v, __ATOMIC_RELAXED) != 0) {
            if (spins++ < 64)
                weft__cpu_relax();
            else
                sched_yield();
        }
        if (__atomic_exchange_n(&s->v, 1, __ATOMIC_ACQUIRE) == 0)
            return;
    }
}

int weft__xwait_check(void)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    return weft__pre_suspend(t);
}

uint64_t weft__xwait_deadline(uint64_t timeout_ms)
{
    return weft__deadline_after(timeout_ms);
}

void weft__xwait_keep_cancel(struct weft__xwait *x)
{
    if (x->task != NULL)
        x->task->cancel_pending = true;
}

bool weft__xwait_stack_shared(const struct weft__xwait *x)
{
    return x->task == NULL || !x->loop->compact;
}

void *weft__xwait_block_begin(void *stack, size_t stack_size, size_t size)
{
    struct weft__xwait *x = stack;
    (void)weft__xwait_begin(x);
    if (size <= stack_size && weft__xwait_stack_shared(x))
        return stack;
    struct weft__xwait *h = weft__malloc(size);
    if (h == NULL) {
        weft__xwait_end(x);
        return NULL;
    }
    *h = *x; /* nothing has seen x yet: the copy is the waiter */
    return h;
}

void weft__xwait_block_end(void *block, const void *stack)
{
    weft__xwait_end(block);
    if (block != stack)
        weft__free(block);
}

static void watch_hook(struct weft__handle *h, struct weft_future *f)
{
    (void)f;
    struct weft__xwatch *w = h->arg;
    (void)weft__xwait_claim(w->x, w->tag);
}

int weft__xwait_watch_future(struct weft_future *f, struct weft__xwatch *w)
{
    w->hook = NULL;
    if (f->loop != weft__tls_loop)
        return WEFT_EWRONGLOOP;
    w->hook = weft__hook_add(f, watch_hook, w);
    return w->hook != NULL ? 0 : UV_ENOMEM;
}

void weft__xwait_unwatch_future(struct weft__xwatch *w)
{
    weft__hook_remove(w->hook);
    w->hook = NULL;
}

_Static_assert(sizeof(struct weft__waiter) <= sizeof(weft__xq_t), "weft__xq_t holds a waiter");

void weft__xwait_queue_link(struct weft_queue *q, weft__xq_t *s, struct weft__xwait *x,
                            uint32_t tag)
{
    struct weft__waiter *w = (struct weft__waiter *)(void *)s->b;
    w->task = x->task;
    w->val = NULL;
    w->prio = 0;
    w->code = 0;
    w->granted = false;
    w->xw = x;
    w->xtag = tag;
    weft__list_push_back(weft__wq(&q->weft__getters), &w->link);
}

bool weft__xwait_queue_unlink(weft__xq_t *s, void **item, int *code)
{
    struct weft__waiter *w = (struct weft__waiter *)(void *)s->b;
    weft__list_remove(&w->link); /* if still queued (not granted) */
    if (!w->granted)
        return false;
    *item = w->val;
    *code = w->code;
    return true;
}

/* At most this long: a spinning task holds up its loop's timers. */
#define SPIN_MAX_NS 20000u

uint64_t weft__xwait_spin_budget(void)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL || l->idle_poll_ns == 0 || !weft__list_empty(&l->ready))
        return 0;
    return l->idle_poll_ns < SPIN_MAX_NS ? l->idle_poll_ns : SPIN_MAX_NS;
}

bool weft__xwait_loop_busy(void)
{
    struct weft__loop *l = weft__tls_loop;
    return l != NULL && (!weft__list_empty(&l->ready) || weft__inbox_pending(&l->inbox));
}

bool weft__xwait_others_ready(void)
{
    struct weft__loop *l = weft__tls_loop;
    return l != NULL && !weft__list_empty(&l->ready);
}

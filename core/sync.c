/*
 * core/sync.c - Lock, Event, Condition, Semaphore, Barrier (weft/sync.h).
 *
 * Every primitive is a FIFO of weft__waiter records on the waiting tasks'
 * stacks (no allocation). Handing over is direct: a release grants the
 * oldest waiter (the lock's holder becomes that task, the permit is never
 * put back), so a task that arrives later cannot take it first, and a
 * granted waiter that is cancelled before it runs still owns what it was
 * given (weft__wait_on returns success; the cancel comes at its next
 * suspension).
 */
#include <weft/sync.h>

#include "wait_int.h"

_Static_assert(sizeof(weft_waitq_t) == sizeof(struct weft__list), "waitq is a list node");

struct bind_ctx {
    struct weft__loop *l;
    const char *call;
    void **slot;
};

static int bind_live(struct weft__loop *o, void *arg)
{
    struct bind_ctx *c = arg;
    if (c->l == NULL && !o->running)
        return 0; /* set-up or tear-down code while its loop is not running */
    /* Its loop runs on another thread: debug mode aborts there. */
    if (o->running)
        (void)weft__wrong_thread_slow(o, c->call, WEFT__OBJ_OTHER, c->slot, __FILE__, __LINE__);
    return WEFT_EWRONGLOOP;
}

int weft__bind_slow(void **slot, const char *call)
{
    struct weft__loop *l = weft__tls_loop;
    struct weft__loop *o = *slot;
    if (o == l)
        return 0;
    if (o == NULL) {
        *slot = l; /* first use from a loop binds; set-up code outside stays free */
        return 0;
    }
    /* The loop it was bound to may be closed and its storage gone (a loop
     * on a stack frame that returned): then nothing of it can be waiting
     * here (close needs every task finished), and the object binds anew. */
    struct bind_ctx c = {l, call, slot};
    const int dead = 1;
    int rc = weft__loop_if_live(o, bind_live, &c, dead);
    if (rc == dead) {
        *slot = l;
        return 0;
    }
    return rc;
}

/* Grant every waiter of q with `code`, oldest first; returns how many. */
static int grant_all(struct weft__list *q, int code)
{
    int n = 0;
    struct weft__waiter *w;
    while ((w = weft__waiter_first(q)) != NULL) {
        weft__waiter_grant(w, code);
        n++;
    }
    return n;
}

static struct weft__waiter *first_waiter(struct weft__list *q)
{
    return weft__waiter_first(q);
}

/* Waiting calls need a task, also when they would not have to wait. */
static int need_task(void)
{
    return weft_task_current() != NULL ? 0 : WEFT_ENOTASK;
}

static int close_check(weft_waitq_t *q, void **loop)
{
    int rc = weft__bind(loop);
    if (rc != 0)
        return rc;
    return weft__list_empty(weft__wq(q)) ? 0 : UV_EBUSY;
}

/* ---- Lock ------------------------------------------------------------------ */

int weft_lock_init(weft_lock_t *l)
{
    if (l == NULL)
        return UV_EINVAL;
    weft__list_init(weft__wq(&l->weft__waiters));
    l->weft__loop = NULL;
    l->weft__holder = NULL;
    l->weft__locked = false;
    return 0;
}

int weft_lock_close(weft_lock_t *l)
{
    return l != NULL ? close_check(&l->weft__waiters, &l->weft__loop) : UV_EINVAL;
}

static int lock_acquire(weft_lock_t *l, uint64_t timeout_ms)
{
    if (l == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&l->weft__loop);
    if (rc != 0)
        return rc;
    weft_task_t *t = weft_task_current();
    if (t == NULL)
        return WEFT_ENOTASK;
    if (!l->weft__locked) { /* free means nobody waits either */
        l->weft__locked = true;
        l->weft__holder = t;
        return 0;
    }
    if (t != NULL && l->weft__holder == t)
        return WEFT_EDEADLK;
    struct weft__waiter w;
    return weft__wait_here(weft__wq(&l->weft__waiters), &w, timeout_ms);
}

int weft_lock_acquire(weft_lock_t *l)
{
    return lock_acquire(l, WEFT_FOREVER);
}

int weft_lock_acquire_timeout(weft_lock_t *l, uint64_t timeout_ms)
{
    return lock_acquire(l, timeout_ms);
}

int weft_lock_try(weft_lock_t *l)
{
    if (l == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&l->weft__loop);
    if (rc != 0)
        return rc;
    if (l->weft__locked)
        return UV_EAGAIN; /* would wait: as every *_try form (error.h) */
    l->weft__locked = true;
    l->weft__holder = weft_task_current();
    return 0;
}

int weft_lock_release(weft_lock_t *l)
{
    if (l == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&l->weft__loop);
    if (rc != 0)
        return rc;
    if (!l->weft__locked)
        return UV_EPERM;
    if (l->weft__holder != NULL && l->weft__holder != weft_task_current())
        return UV_EPERM;
    struct weft__waiter *w = first_waiter(weft__wq(&l->weft__waiters));
    if (w != NULL) {
        l->weft__holder = w->task; /* handed over: stays locked */
        weft__waiter_grant(w, 0);
    } else {
        l->weft__locked = false;
        l->weft__holder = NULL;
    }
    return 0;
}

bool weft_lock_locked(const weft_lock_t *l)
{
    return l != NULL && l->weft__locked;
}

weft_lock_guard_t weft_lock_guard_acquire(weft_lock_t *l)
{
    weft_lock_guard_t g = {NULL, weft_lock_acquire(l)};
    if (g.rc == 0)
        g.lock = l;
    return g;
}

void weft_lock_guard_release(weft_lock_guard_t *g)
{
    if (g != NULL && g->lock != NULL) {
        (void)weft_lock_release(g->lock);
        g->lock = NULL;
    }
}

/* Take l again after a condition wait, whatever happens: cancels and
 * deadlines wait (asyncio's Condition.wait re-acquires before raising). */
static void lock_reacquire(weft_lock_t *l, struct weft__loop *lp, struct weft_task *t)
{
    if (!l->weft__locked) {
        l->weft__locked = true;
        l->weft__holder = t;
        return;
    }
    struct weft__waiter w = {.task = t};
    weft__wait_on_nocancel(lp, t, weft__wq(&l->weft__waiters), &w);
}

/* ---- Event ----------------------------------------------------------------- */

int weft_event_init(weft_event_t *e)
{
    if (e == NULL)
        return UV_EINVAL;
    weft__list_init(weft__wq(&e->weft__waiters));
    e->weft__loop = NULL;
    e->weft__set = false;
    return 0;
}

int weft_event_close(weft_event_t *e)
{
    return e != NULL ? close_check(&e->weft__waiters, &e->weft__loop) : UV_EINVAL;
}

int weft_event_set(weft_event_t *e)
{
    if (e == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&e->weft__loop);
    if (rc != 0)
        return rc;
    e->weft__set = true;
    grant_all(weft__wq(&e->weft__waiters), 0);
    return 0;
}

int weft_event_clear(weft_event_t *e)
{
    if (e == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&e->weft__loop);
    if (rc != 0)
        return rc;
    e->weft__set = false;
    return 0;
}

bool weft_event_is_set(const weft_event_t *e)
{
    return e != NULL && e->weft__set;
}

int weft_event_wait_timeout(weft_event_t *e, uint64_t timeout_ms)
{
    if (e == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&e->weft__loop);
    if (rc != 0)
        return rc;
    if (e->weft__set)
        return need_task();
    struct weft__waiter w;
    return weft__wait_here(weft__wq(&e->weft__waiters), &w, timeout_ms);
}

int weft_event_wait(weft_event_t *e)
{
    return weft_event_wait_timeout(e, WEFT_FOREVER);
}

/* ---- Condition ------------------------------------------------------------- */

int weft_cond_init(weft_cond_t *c, weft_lock_t *lock)
{
    if (c == NULL || lock == NULL)
        return UV_EINVAL;
    weft__list_init(weft__wq(&c->weft__waiters));
    c->weft__lock = lock;
    return 0;
}

int weft_cond_close(weft_cond_t *c)
{
    return c != NULL ? close_check(&c->weft__waiters, &c->weft__lock->weft__loop) : UV_EINVAL;
}

int weft_cond_wait_timeout(weft_cond_t *c, uint64_t timeout_ms)
{
    if (c == NULL)
        return UV_EINVAL;
    weft_lock_t *l = c->weft__lock;
    int rc = weft__bind(&l->weft__loop);
    if (rc != 0)
        return rc;
    struct weft__loop *lp;
    struct weft_task *t = weft__running(&lp);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (!l->weft__locked || l->weft__holder != t)
        return UV_EPERM;
    rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    (void)weft_lock_release(l);
    struct weft__waiter w;
    if (timeout_ms == 0)
        rc = UV_ETIMEDOUT;
    else
        rc =
            weft__wait_on(lp, t, weft__wq(&c->weft__waiters), &w, weft__deadline_after(timeout_ms));
    lock_reacquire(l, lp, t);
    return rc;
}

int weft_cond_wait(weft_cond_t *c)
{
    return weft_cond_wait_timeout(c, WEFT_FOREVER);
}

int weft_cond_wait_for(weft_cond_t *c, weft_pred_fn pred, void *arg)
{
    if (c == NULL || pred == NULL)
        return UV_EINVAL;
    while (!pred(arg)) {
        int rc = weft_cond_wait(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int weft_cond_notify(weft_cond_t *c, int n)
{
    if (c == NULL || n < 0)
        return UV_EINVAL;
    weft_lock_t *l = c->weft__lock;
    int rc = weft__bind(&l->weft__loop);
    if (rc != 0)
        return rc;
    if (!l->weft__locked || (l->weft__holder != NULL && l->weft__holder != weft_task_current()))
        return UV_EPERM;
    int woken = 0;
    struct weft__waiter *w;
    while (woken < n && (w = first_waiter(weft__wq(&c->weft__waiters))) != NULL) {
        weft__waiter_grant(w, 0);
        woken++;
    }
    return woken;
}

int weft_cond_notify_all(weft_cond_t *c)
{
    return weft_cond_notify(c, __INT_MAX__);
}

/* ---- Semaphore ------------------------------------------------------------- */

static int sem_setup(weft_sem_t *s, int64_t value, int64_t bound)
{
    if (s == NULL || value < 0)
        return UV_EINVAL;
    weft__list_init(weft__wq(&s->weft__waiters));
    s->weft__loop = NULL;
    s->weft__value = value;
    s->weft__bound = bound;
    return 0;
}

int weft_sem_init(weft_sem_t *s, int64_t value)
{
    return sem_setup(s, value, -1);
}

int weft_sem_init_bounded(weft_sem_t *s, int64_t value)
{
    return sem_setup(s, value, value);
}

int weft_sem_close(weft_sem_t *s)
{
    return s != NULL ? close_check(&s->weft__waiters, &s->weft__loop) : UV_EINVAL;
}

static int sem_acquire(weft_sem_t *s, uint64_t timeout_ms)
{
    if (s == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&s->weft__loop);
    if (rc == 0)
        rc = need_task();
    if (rc != 0)
        return rc;
    if (s->weft__value > 0) { /* a free permit means nobody waits */
        s->weft__value--;
        return 0;
    }
    struct weft__waiter w;
    return weft__wait_here(weft__wq(&s->weft__waiters), &w, timeout_ms);
}

int weft_sem_acquire(weft_sem_t *s)
{
    return sem_acquire(s, WEFT_FOREVER);
}

int weft_sem_acquire_timeout(weft_sem_t *s, uint64_t timeout_ms)
{
    return sem_acquire(s, timeout_ms);
}

int weft_sem_try(weft_sem_t *s)
{
    if (s == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&s->weft__loop);
    if (rc != 0)
        return rc;
    if (s->weft__value == 0)
        return UV_EAGAIN;
    s->weft__value--;
    return 0;
}

int weft_sem_release(weft_sem_t *s)
{
    if (s == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&s->weft__loop);
    if (rc != 0)
        return rc;
    struct weft__waiter *w = first_waiter(weft__wq(&s->weft__waiters));
    if (w != NULL) {
        weft__waiter_grant(w, 0); /* the permit goes straight to it */
        return 0;
    }
    if (s->weft__bound >= 0 && s->weft__value >= s->weft__bound)
        return UV_EINVAL;
    s->weft__value++;
    return 0;
}

int64_t weft_sem_value(const weft_sem_t *s)
{
    return s != NULL ? s->weft__value : 0;
}

/* ---- Barrier --------------------------------------------------------------- */

int weft_barrier_init(weft_barrier_t *b, uint32_t parties)
{
    if (b == NULL || parties == 0)
        return UV_EINVAL;
    weft__list_init(weft__wq(&b->weft__waiters));
    b->weft__loop = NULL;
    b->weft__parties = parties;
    b->weft__count = 0;
    b->weft__broken = false;
    return 0;
}

int weft_barrier_close(weft_barrier_t *b)
{
    return b != NULL ? close_check(&b->weft__waiters, &b->weft__loop) : UV_EINVAL;
}

/* Waiters that still wait (withdrawn ones are dropped on the way). */
static uint32_t barrier_count(weft_barrier_t *b)
{
    struct weft__list *q = weft__wq(&b->weft__waiters);
    uint32_t n = 0;
    (void)weft__waiter_first(q);
    for (struct weft__list *it = q->next; it != q;) {
        struct weft__waiter *w = WEFT_CONTAINER_OF(it, struct weft__waiter, link);
        it = it->next;
        if (w->task->queued)
            weft__list_remove(&w->link); /* cancelled or timed out: it left */
        else
            n++;
    }
    b->weft__count = n;
    return n;
}

int weft_barrier_wait_timeout(weft_barrier_t *b, uint64_t timeout_ms)
{
    if (b == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&b->weft__loop);
    if (rc != 0)
        return rc;
    struct weft__loop *lp;
    struct weft_task *t = weft__running(&lp);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (b->weft__broken)
        return WEFT_EBROKEN;
    rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    if (barrier_count(b) + 1 == b->weft__parties) {
        /* The last one in: everyone passes, with arrival indices. */
        int idx = 0;
        struct weft__waiter *w;
        while ((w = first_waiter(weft__wq(&b->weft__waiters))) != NULL)
            weft__waiter_grant(w, idx++);
        b->weft__count = 0;
        return idx;
    }
    if (timeout_ms == 0)
        return UV_ETIMEDOUT;
    b->weft__count++;
    struct weft__waiter w;
    rc = weft__wait_on(lp, t, weft__wq(&b->weft__waiters), &w, weft__deadline_after(timeout_ms));
    if (!w.granted)
        (void)barrier_count(b); /* left before the round completed */
    return rc;
}

int weft_barrier_wait(weft_barrier_t *b)
{
    return weft_barrier_wait_timeout(b, WEFT_FOREVER);
}

static int barrier_break(weft_barrier_t *b, bool broken)
{
    if (b == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&b->weft__loop);
    if (rc != 0)
        return rc;
    b->weft__broken = broken;
    grant_all(weft__wq(&b->weft__waiters), WEFT_EBROKEN);
    b->weft__count = 0;
    return 0;
}

int weft_barrier_abort(weft_barrier_t *b)
{
    return barrier_break(b, true);
}

int weft_barrier_reset(weft_barrier_t *b)
{
    return barrier_break(b, false);
}

bool weft_barrier_broken(const weft_barrier_t *b)
{
    return b != NULL && b->weft__broken;
}

uint32_t weft_barrier_waiting(const weft_barrier_t *b)
{
    return b != NULL ? b->weft__count : 0;
}

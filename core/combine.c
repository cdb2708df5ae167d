/*
 * core/combine.c - gather, wait, wait_for, as_completed, shield, retry
 * (weft/combine.h).
 *
 * A watch puts one hook (a pooled handle that runs inline when its future
 * completes) on every pending future. A fired hook moves itself to the
 * watch's done list, in completion order, and wakes the task parked on the
 * watch. Waiting on n futures thus costs n hooks and one wake-up per
 * completion, with no allocator call in steady state.
 */
#include <weft/combine.h>
#include <weft/timeout.h>

#include "alloc.h"
#include "wait_int.h"

struct watch {
    struct weft_task *task;
    struct weft__list done; /* fired hooks (handles), in completion order */
    size_t pending;         /* hooks not fired */
    bool parked;
};

/* An iterator keeps its watch in weft__watch[0..4], or (COMPACT loops) on
 * the heap with the pointer in weft__watch[5]. */
_Static_assert(sizeof(struct watch) <= 5 * sizeof(void *), "as_completed iterator too small");

static void hook_fired(struct weft__handle *h, struct weft_future *f)
{
    (void)f;
    struct watch *w = h->arg;
    weft__list_push_back(&w->done, &h->rn.link);
    w->pending--;
    if (w->parked)
        weft__task_wake(w->task, 0);
}

/* The watch other tasks' completions write into: on the caller's stack, or
 * on the heap on COMPACT loops, where a suspended task's stack does not
 * hold its frames. */
static struct watch *watch_open(struct watch *local)
{
    struct weft__loop *l = weft__tls_loop;
    if (l == NULL || !l->compact)
        return local;
    return weft__malloc(sizeof(struct watch));
}

static void watch_close(struct watch *w, struct watch *local)
{
    if (w != local)
        weft__free(w);
}

static void watch_init(struct watch *w, struct weft_task *t)
{
    w->task = t;
    weft__list_init(&w->done);
    w->pending = 0;
    w->parked = false;
}

/* Check the arguments every combinator takes. */
static int check_set(struct weft__loop *l, weft_future_t *const *fs, size_t n)
{
    if (n > 0 && fs == NULL)
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (fs[i] == NULL)
            return UV_EINVAL;
        if (fs[i]->loop != l)
            return WEFT_EWRONGLOOP;
    }
    return 0;
}

/* Hook every pending future of fs. 0 or UV_ENOMEM (nothing left hooked). */
static void watch_release(struct watch *w, weft_future_t *const *fs, size_t n);
static int watch_add(struct watch *w, weft_future_t *const *fs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fs[i]->state != WEFT__F_PENDING)
            continue;
        struct weft__handle *h = weft__hook_add(fs[i], hook_fired, w);
        if (h == NULL) {
            watch_release(w, fs, n);
            return UV_ENOMEM;
        }
        h->rseq = (uint32_t)i;
        w->pending++;
    }
    return 0;
}

/* Remove every hook of w: fired ones from the done list, the others from
 * their futures' waiter lists. */
static void watch_release(struct watch *w, weft_future_t *const *fs, size_t n)
{
    struct weft__list *x;
    while ((x = weft__list_pop_front(&w->done)) != NULL) {
        struct weft__handle *h = WEFT_CONTAINER_OF(x, struct weft__handle, rn.link);
        weft__handle_put(h->loop, h);
    }
    for (size_t i = 0; i < n && w->pending > 0; i++) {
        struct weft_future *f = fs[i];
        if (f->state != WEFT__F_PENDING)
            continue;
        struct weft__list *it = f->waiters.next;
        while (it != &f->waiters) {
            struct weft__list *next = it->next;
            struct weft__rnode *rn = WEFT_CONTAINER_OF(it, struct weft__rnode, link);
            if (rn->kind == WEFT__RN_HANDLE) {
                struct weft__handle *h = WEFT_CONTAINER_OF(rn, struct weft__handle, rn);
                if (h->what == WEFT__H_HOOK && h->arg == w) {
                    weft__hook_remove(h);
                    w->pending--;
                }
            }
            it = next;
        }
    }
}

/* Park until a hook fires (or the deadline, cancel, scope). */
static int watch_park(struct weft__loop *l, struct watch *w, uint64_t deadline, bool nocancel)
{
    if (!weft__list_empty(&w->done))
        return 0;
    w->parked = true;
    int rc = weft__park(l, w->task, deadline, nocancel);
    w->parked = false;
    return rc;
}

static struct weft__handle *watch_pop(struct watch *w)
{
    struct weft__list *x = weft__list_pop_front(&w->done);
    return x != NULL ? WEFT_CONTAINER_OF(x, struct weft__handle, rn.link) : NULL;
}

/* Cancel every pending future of fs and wait until all are done; the
 * waiting task's own cancels stay pending. */
static void drain(struct weft__loop *l, struct watch *w)
{
    while (w->pending > 0) {
        w->parked = true;
        (void)weft__park(l, w->task, UINT64_MAX, true);
        w->parked = false;
    }
}

static void cancel_and_drain(struct weft__loop *l, struct watch *w, weft_future_t *const *fs,
                             size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fs[i]->state == WEFT__F_PENDING)
            weft_future_cancel(fs[i]);
    drain(l, w);
}

static int enter(struct weft__loop **l, struct weft_task **t, weft_future_t *const *fs, size_t n)
{
    *t = weft__running(l);
    if (*t == NULL)
        return WEFT_ENOTASK;
    int rc = check_set(*l, fs, n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (fs[i] == &(*t)->fut)
            rc = WEFT_EDEADLK; /* waiting for itself */
    return rc;
}

static int gather_impl(struct watch *w, weft_future_t *const *fs, size_t n, void **results,
                       int *errors, unsigned flags)
{
    struct weft__loop *l;
    struct weft_task *t;
    int rc = enter(&l, &t, fs, n);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (results != NULL)
            results[i] = NULL;
        if (errors != NULL)
            errors[i] = WEFT_EPENDING;
    }
    bool collect = (flags & WEFT_RETURN_ERRORS) != 0;
    /* Failures already there decide at once (asyncio: the first exception
     * set propagates). */
    for (size_t i = 0; i < n && !collect; i++) {
        struct weft_future *f = fs[i];
        if (f->state != WEFT__F_PENDING && f->err != 0) {
            for (size_t j = 0; j < n; j++)
                if (errors != NULL && fs[j]->state != WEFT__F_PENDING)
                    errors[j] = weft__future_outcome(fs[j], results ? &results[j] : NULL);
            return weft__future_outcome(f, NULL);
        }
    }
    watch_init(w, t);
    rc = watch_add(w, fs, n);
    if (rc != 0)
        return rc;
    if (w->pending > 0)
        rc = weft__pre_suspend(t);
    while (rc == 0 && w->pending > 0) {
        rc = watch_park(l, w, UINT64_MAX, false);
        struct weft__handle *h;
        while (rc == 0 && (h = watch_pop(w)) != NULL) {
            struct weft_future *f = h->fut;
            weft__handle_put(l, h);
            if (!collect && f->err != 0) {
                /* The first failure: return it, the others keep running. */
                int code = weft__future_outcome(f, NULL);
                watch_release(w, fs, n);
                for (size_t j = 0; j < n; j++)
                    if (errors != NULL && fs[j]->state != WEFT__F_PENDING)
                        errors[j] = weft__future_outcome(fs[j], results ? &results[j] : NULL);
                return code;
            }
        }
    }
    if (rc != 0) {
        /* The gathering task was cancelled or timed out: so are the
         * children, and gather returns once they have finished. */
        if (rc == UV_ECANCELED || rc == UV_ETIMEDOUT)
            cancel_and_drain(l, w, fs, n);
        watch_release(w, fs, n);
        return rc;
    }
    watch_release(w, fs, n);
    for (size_t i = 0; i < n; i++) {
        int e = weft__future_outcome(fs[i], results ? &results[i] : NULL);
        if (errors != NULL)
            errors[i] = e;
    }
    return 0;
}

int weft_gather(weft_future_t *const *fs, size_t n, void **results, int *errors, unsigned flags)
{
    struct watch local, *w = watch_open(&local);
    if (w == NULL)
        return UV_ENOMEM;
    int rc = gather_impl(w, fs, n, results, errors, flags);
    watch_close(w, &local);
    return rc;
}

static bool wait_met(weft_future_t *const *fs, size_t n, weft_wait_mode_t mode)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        if (fs[i]->state == WEFT__F_PENDING)
            continue;
        done++;
        if (mode == WEFT_FIRST_COMPLETED)
            return true;
        if (mode == WEFT_FIRST_ERROR && fs[i]->state == WEFT__F_FAILED)
            return true;
    }
    return done == n;
}

static int wait_impl(struct watch *w, weft_future_t *const *fs, size_t n, uint64_t timeout_ms,
                     weft_wait_mode_t mode, bool *done)
{
    struct weft__loop *l;
    struct weft_task *t;
    int rc = enter(&l, &t, fs, n);
    if (rc != 0)
        return rc;
    if ((unsigned)mode > WEFT_FIRST_ERROR)
        return UV_EINVAL;
    if (!wait_met(fs, n, mode)) {
        rc = weft__pre_suspend(t);
        if (rc == 0 && timeout_ms == 0)
            rc = UV_ETIMEDOUT;
        watch_init(w, t);
        if (rc == 0)
            rc = watch_add(w, fs, n);
        uint64_t deadline = weft__deadline_after(timeout_ms);
        while (rc == 0 && !wait_met(fs, n, mode)) {
            rc = watch_park(l, w, deadline, false);
            struct weft__handle *h;
            while ((h = watch_pop(w)) != NULL)
                weft__handle_put(l, h);
        }
        watch_release(w, fs, n);
    }
    for (size_t i = 0; done != NULL && i < n; i++)
        done[i] = fs[i]->state != WEFT__F_PENDING;
    return rc;
}

int weft_wait(weft_future_t *const *fs, size_t n, uint64_t timeout_ms, weft_wait_mode_t mode,
              bool *done)
{
    struct watch local, *w = watch_open(&local);
    if (w == NULL)
        return UV_ENOMEM;
    int rc = wait_impl(w, fs, n, timeout_ms, mode, done);
    watch_close(w, &local);
    return rc;
}

static int wait_for_impl(struct watch *w, weft_future_t *f, uint64_t timeout_ms, void **result)
{
    if (result != NULL)
        *result = NULL;
    struct weft__loop *l;
    struct weft_task *t;
    weft_future_t *one[1] = {f};
    int rc = enter(&l, &t, one, f != NULL ? 1 : 0);
    if (rc != 0)
        return rc;
    if (f == NULL)
        return UV_EINVAL;
    rc = timeout_ms == WEFT_FOREVER ? weft_await(f, result)
                                    : weft_await_timeout(f, timeout_ms, result);
    if (rc != UV_ETIMEDOUT || f->state == WEFT__F_DONE)
        return f->state == WEFT__F_DONE ? weft__future_outcome(f, result) : rc;
    /* Timed out: cancel f and wait until it has finished cancelling. */
    if (f->state == WEFT__F_PENDING) {
        weft_future_cancel(f);
        watch_init(w, t);
        if (watch_add(w, one, 1) == 0)
            drain(l, w);
        watch_release(w, one, 1);
    }
    if (f->state == WEFT__F_DONE) /* finished anyway: its result wins */
        return weft__future_outcome(f, result);
    (void)weft__future_outcome(f, NULL); /* the timeout reports it */
    return UV_ETIMEDOUT;
}

int weft_wait_for(weft_future_t *f, uint64_t timeout_ms, void **result)
{
    struct watch local, *w = watch_open(&local);
    if (w == NULL)
        return UV_ENOMEM;
    int rc = wait_for_impl(w, f, timeout_ms, result);
    watch_close(w, &local);
    return rc;
}

/* ---- as_completed --------------------------------------------------------- */

static struct watch *it_watch(weft_as_completed_t *it)
{
    if (it->weft__watch[5] != NULL)
        return it->weft__watch[5];
    return (struct watch *)(void *)it->weft__watch;
}

int weft_as_completed_init(weft_as_completed_t *it, weft_future_t *const *fs, size_t n,
                           uint64_t timeout_ms)
{
    if (it == NULL)
        return UV_EINVAL;
    it->weft__open = false;
    struct weft__loop *l;
    struct weft_task *t;
    int rc = enter(&l, &t, fs, n);
    if (rc != 0)
        return rc;
    it->weft__watch[5] = NULL;
    struct watch *w = watch_open((struct watch *)(void *)it->weft__watch);
    if (w == NULL)
        return UV_ENOMEM;
    if (w != (struct watch *)(void *)it->weft__watch)
        it->weft__watch[5] = w;
    watch_init(w, t);
    it->weft__fs = fs;
    it->weft__n = n;
    it->weft__yielded = 0;
    it->weft__deadline = weft__deadline_after(timeout_ms);
    /* Those done already come first, in array order: queue a fired hook for
     * each (the pool has them; no allocator call in steady state). */
    for (size_t i = 0; i < n; i++) {
        if (fs[i]->state == WEFT__F_PENDING)
            continue;
        struct weft__handle *h = weft__handle_get(l);
        if (h == NULL) {
            watch_release(w, fs, n);
            watch_close(w, (struct watch *)(void *)it->weft__watch);
            return UV_ENOMEM;
        }
        h->what = WEFT__H_HOOK;
        h->fut = fs[i];
        h->arg = w;
        h->state = WEFT__HS_RUNNING;
        weft__list_push_back(&w->done, &h->rn.link);
    }
    rc = watch_add(w, fs, n);
    if (rc != 0) {
        watch_close(w, (struct watch *)(void *)it->weft__watch);
        return rc;
    }
    it->weft__open = true;
    return 0;
}

int weft_as_completed_next(weft_as_completed_t *it, weft_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (it == NULL || out == NULL || !it->weft__open)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    struct watch *w = it_watch(it);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t != w->task)
        return UV_EPERM;
    if (it->weft__yielded == it->weft__n)
        return UV_EOF;
    if (weft__list_empty(&w->done)) {
        int rc = weft__pre_suspend(t);
        if (rc == 0 && uv_hrtime() >= it->weft__deadline)
            rc = UV_ETIMEDOUT;
        if (rc == 0)
            rc = watch_park(l, w, it->weft__deadline, false);
        /* A completion in the same turn as the deadline still counts. */
        if (rc != 0 && (rc != UV_ETIMEDOUT || weft__list_empty(&w->done)))
            return rc;
    }
    struct weft__handle *h = watch_pop(w);
    if (h == NULL)
        return UV_ETIMEDOUT;
    *out = h->fut;
    weft__handle_put(l, h);
    it->weft__yielded++;
    return 0;
}

void weft_as_completed_close(weft_as_completed_t *it)
{
    if (it == NULL || !it->weft__open)
        return;
    struct watch *w = it_watch(it);
    watch_release(w, it->weft__fs, it->weft__n);
    watch_close(w, (struct watch *)(void *)it->weft__watch);
    it->weft__open = false;
}

/* ---- shield --------------------------------------------------------------- */

static void shield_done(weft_future_t *f, void *arg)
{
    struct weft_future *outer = arg;
    if (outer->state == WEFT__F_PENDING) {
        void *res = NULL;
        int err = weft__future_outcome(f, &res);
        char *msg = f->msg != NULL ? weft__strdup(f->msg) : NULL;
        uint8_t st = err == 0              ? WEFT__F_DONE
                     : err == UV_ECANCELED ? WEFT__F_CANCELLED
                                           : WEFT__F_FAILED;
        weft__future_complete(outer, st, res, err, msg);
    } else {
        (void)weft__future_outcome(f, NULL); /* nobody waits for it any more */
    }
    weft_future_unref(outer);
    weft_future_unref(f);
}

int weft_shield(weft_future_t *f, weft_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (f == NULL || out == NULL)
        return UV_EINVAL;
    /* On f's loop's thread, or while that loop does not run (set-up). */
    struct weft__loop *l = weft__tls_loop;
    if (l != NULL ? f->loop != l : f->loop->running)
        return WEFT_EWRONGLOOP;
    weft_future_t *outer;
    int rc = weft_future_new(weft__pub(f->loop), &outer);
    if (rc != 0)
        return rc;
    rc = weft_future_add_done_callback(f, shield_done, outer);
    if (rc != 0) {
        weft_future_unref(outer);
        return rc;
    }
    weft_future_ref(outer); /* the callback's */
    weft_future_ref(f);     /* kept until f is done */
    *out = outer;
    return 0;
}

/* ---- retry ---------------------------------------------------------------- */

/* Uniform in [0, d]: a per-thread xorshift seeded from the clock. */
static uint64_t jitter(uint64_t d)
{
    static __thread uint64_t x;
    if (x == 0)
        x = uv_hrtime() | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return d == UINT64_MAX ? x : x % (d + 1);
}

int weft_retry(weft_task_fn fn, void *arg, const weft_retry_opts_t *opts, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (fn == NULL || opts == NULL || opts->attempts == 0)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    uint64_t delay = opts->base_delay_ms;
    int rc = UV_EINVAL;
    for (uint32_t a = 0; a < opts->attempts; a++) {
        void *res = NULL;
        rc = fn(arg, &res);
        if (rc == 0) {
            if (result != NULL)
                *result = res;
            return 0;
        }
        if (rc == UV_ECANCELED || a + 1 == opts->attempts)
            return rc;
        /* A cancel that came during the attempt, or an enclosing scope that
         * expired, ends the retries (the back-off sleep would report it). */
        int pre = weft__pre_suspend(t);
        if (pre != 0)
            return pre;
        if (opts->retry_if != NULL && !opts->retry_if(rc, arg))
            return rc;
        uint64_t d = delay;
        if (opts->jitter && d > 0)
            d = jitter(d);
        int s = weft_sleep(d);
        if (s != 0)
            return s;
        if (delay > UINT64_MAX / 4)
            delay = UINT64_MAX / 4;
        delay *= 2;
        if (opts->max_delay_ms != 0 && delay > opts->max_delay_ms)
            delay = opts->max_delay_ms;
    }
    return rc;
}

/*
 * loops/tsfuture.c - weft_spawn_threadsafe and the thread-safe future it
 * returns (weft/runtime.h).
 *
 * A tsfuture is shared by the thread that asked and the loop that runs the
 * task, so unlike a loop's future it has a mutex, a condition variable and
 * an atomic reference count. The task is spawned by a message through the
 * loop's inbox (the MPSC path every thread may use); the task pointer is
 * touched on the loop's thread only. Tasks of any loop await a tsfuture
 * through a future of their own loop, named in the awaiter record by a
 * token (weft/future.h) that the awaiter takes on its own loop: the token
 * holds a reference, so the future cannot be recycled into an unrelated
 * one while a completion may still be posted to it. An awaiter that gives
 * up takes its record back under the lock and drops the token itself; if
 * the completion took the record first, the completion uses the token.
 * Blocked threads wait on a CLOCK_MONOTONIC condition variable, so a
 * change of the wall clock does not stretch or cut their timeout.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <weft/runtime.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/testhooks.h"

void (*weft__test_ts_complete_hook)(void);

struct ts_awaiter {
    struct ts_awaiter *next;
    weft_future_token_t tok; /* a future of the awaiting task's loop */
};

struct weft_tsfuture {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;  /* atomic */
    bool done; /* under mu */
    bool cancel_requested;
    int err;
    void *result;
    char *msg;                   /* a failure's message (copy), or NULL; set with done */
    struct ts_awaiter *awaiters; /* under mu */
    /* Loop side (its thread only). */
    weft_loop_t *loop;
    weft_task_fn fn;
    void *arg;
    weft_task_t *task;
};

void weft_tsfuture_ref(weft_tsfuture_t *f)
{
    if (f != NULL)
        __atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED);
}

void weft_tsfuture_unref(weft_tsfuture_t *f)
{
    if (f == NULL || __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    while (f->awaiters != NULL) {
        struct ts_awaiter *a = f->awaiters;
        f->awaiters = a->next;
        weft__free(a);
    }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    weft__free(f->msg);
    weft__free(f);
}

/* Loop side: record the outcome, wake blocked threads and awaiting tasks.
 * msg (a failure's message, or NULL) is copied; if the copy fails (no
 * memory) the outcome is recorded without it. */
static void ts_complete(weft_tsfuture_t *f, int err, void *result, const char *msg)
{
    char *m = err != 0 && msg != NULL ? weft__strdup(msg) : NULL;
    pthread_mutex_lock(&f->mu);
    f->done = true;
    f->err = err;
    f->result = err == 0 ? result : NULL;
    f->msg = m;
    struct ts_awaiter *a = f->awaiters;
    f->awaiters = NULL;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (__builtin_expect(weft__test_ts_complete_hook != NULL, 0))
        weft__test_ts_complete_hook();
    /* The records are ours now: their awaiters can no longer take them back,
     * so their tokens (and the futures they keep alive) are ours to use. */
    while (a != NULL) {
        struct ts_awaiter *next = a->next;
        int rc = err == 0 ? weft_future_set_result_threadsafe(a->tok, result)
                          : weft_future_set_error_threadsafe(a->tok, err, m);
        (void)rc; /* WEFT_ECLOSED: the awaiter's loop closed, nobody waits */
        weft__free(a);
        a = next;
    }
}

static int ts_body(void *arg, void **result)
{
    weft_tsfuture_t *f = arg;
    int rc = f->fn(f->arg, result);
    if (rc > 0)
        rc = UV_EINVAL;
    /* The task's own message (weft_fail); a cancel from the tsfuture has no
     * reason, so a cancelled task has none unless it gave one itself. */
    ts_complete(f, rc, *result, rc != 0 ? weft_task_message(weft_task_current()) : NULL);
    weft__future_mark_retrieved(
        weft_task_future(weft_task_current())); /* the tsfuture reports it */
    return rc;
}

/* On the loop: the task finished; drop the loop side's references. The
 * task's completion hook cannot free f while ts_body still runs, so this
 * runs as a done callback. */
static void ts_task_done(weft_future_t *tf, void *arg)
{
    (void)tf;
    weft_tsfuture_t *f = arg;
    if (!f->done) /* cancelled before it ran: ts_body never completed f */
        ts_complete(f, UV_ECANCELED, NULL, NULL);
    weft_task_unref(f->task);
    f->task = NULL;
    weft_tsfuture_unref(f);
}

/* On the loop, from the inbox: a = tsfuture (one reference for this). */
static void ts_cancel(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx, (void)b, (void)c, (void)d;
    weft_tsfuture_t *f = (weft_tsfuture_t *)a;
    if (f->task != NULL)
        weft_task_cancel(f->task);
    weft_tsfuture_unref(f);
}

/* On the loop, from the inbox: a = tsfuture. Spawn the task; the loop
 * side's reference is dropped when the task is done (ts_task_done). */
static void ts_spawned(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx, (void)b, (void)c, (void)d;
    weft_tsfuture_t *f = (weft_tsfuture_t *)a;
    int rc = weft_spawn(f->loop, ts_body, f, &f->task);
    if (rc == 0) {
        rc = weft_future_add_done_callback(weft_task_future(f->task), ts_task_done, f);
        if (rc != 0) {
            weft_task_cancel(f->task); /* never runs */
            weft_task_unref(f->task);
            f->task = NULL;
        }
    }
    if (rc != 0) {
        ts_complete(f, rc, NULL, NULL);
        weft_tsfuture_unref(f);
        return;
    }
    pthread_mutex_lock(&f->mu);
    bool cancel = f->cancel_requested;
    pthread_mutex_unlock(&f->mu);
    if (cancel)
        weft_task_cancel(f->task);
}

int weft_spawn_threadsafe(weft_loop_t *loop, weft_task_fn fn, void *arg, weft_tsfuture_t **out)
{
    if (out != NULL)
        *out = NULL;
    struct weft__loop *l = weft__L_cur(loop); /* NULL: this thread's loop, if any */
    if (l == NULL || fn == NULL || out == NULL)
        return UV_EINVAL;
    if (!weft__loop_valid(l))
        return UV_EINVAL;
    loop = weft__pub(l);
    weft_tsfuture_t *f = weft__calloc(1, sizeof(*f));
    if (f == NULL)
        return UV_ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    f->refs = 2; /* the caller's and the loop side's */
    f->loop = loop;
    f->fn = fn;
    f->arg = arg;
    int rc = weft__post(l, ts_spawned, (uintptr_t)f, 0, 0, 0);
    if (rc != 0) {
        f->refs = 1;
        weft_tsfuture_unref(f);
        return rc;
    }
    *out = f;
    return 0;
}

int weft_tsfuture_result(weft_tsfuture_t *f, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (f == NULL)
        return UV_EINVAL;
    pthread_mutex_lock(&f->mu);
    int rc = f->done ? f->err : WEFT_EPENDING;
    if (f->done && result != NULL)
        *result = f->result;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

const char *weft_tsfuture_message(weft_tsfuture_t *f)
{
    if (f == NULL)
        return NULL;
    pthread_mutex_lock(&f->mu); /* orders the read after ts_complete's write */
    const char *m = f->done ? f->msg : NULL;
    pthread_mutex_unlock(&f->mu);
    return m;
}

int weft_tsfuture_wait_blocking(weft_tsfuture_t *f, uint64_t timeout_ms, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (f == NULL)
        return UV_EINVAL;
    if (weft_loop_current() != NULL)
        return WEFT_EWRONGLOOP;
    if (timeout_ms >= WEFT__MS_MAX)
        timeout_ms = WEFT_FOREVER; /* too long to represent: no timeout (loop.h) */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until); /* the clock of f->cv */
    if (timeout_ms != WEFT_FOREVER) {
        until.tv_sec += (time_t)(timeout_ms / 1000);
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (!f->done && rc == 0) {
        if (timeout_ms == WEFT_FOREVER)
            pthread_cond_wait(&f->cv, &f->mu);
        else
            rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    }
    int out = f->done ? f->err : UV_ETIMEDOUT;
    if (f->done && result != NULL)
        *result = f->result;
    pthread_mutex_unlock(&f->mu);
    return out;
}

int weft_tsfuture_cancel(weft_tsfuture_t *f)
{
    if (f == NULL)
        return UV_EINVAL;
    pthread_mutex_lock(&f->mu);
    bool done = f->done;
    f->cancel_requested = true;
    pthread_mutex_unlock(&f->mu);
    if (done)
        return WEFT_EDONE;
    weft_tsfuture_ref(f); /* for the message */
    int rc = weft__post(weft__L(f->loop), ts_cancel, (uintptr_t)f, 0, 0, 0);
    if (rc != 0)
        weft_tsfuture_unref(f);
    return rc;
}

int weft_tsfuture_await(weft_tsfuture_t *f, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (f == NULL)
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    struct ts_awaiter *a = weft__malloc(sizeof(*a));
    if (a == NULL)
        return UV_ENOMEM;
    weft_future_t *mine;
    int rc = weft_future_new(NULL, &mine);
    if (rc != 0) {
        weft__free(a);
        return rc;
    }
    rc = weft_future_token(mine, &a->tok); /* cannot fail: our loop, not NULL */
    WEFT_ASSERT(rc == 0);
    /* Our own reference: another task of this loop may drop the caller's
     * while we are suspended, and we touch f after we resume. */
    weft_tsfuture_ref(f);
    pthread_mutex_lock(&f->mu);
    if (f->done) {
        rc = f->err;
        if (result != NULL && rc == 0)
            *result = f->result;
        pthread_mutex_unlock(&f->mu);
        int drc = weft_future_token_drop(a->tok); /* on its loop: released here */
        WEFT_ASSERT(drc == 0);
        weft__free(a);
        weft_future_unref(mine);
        weft_tsfuture_unref(f);
        return rc;
    }
    a->next = f->awaiters;
    f->awaiters = a;
    pthread_mutex_unlock(&f->mu);
    rc = weft_await(mine, result);
    if (rc == UV_ECANCELED || rc == UV_ETIMEDOUT) {
        /* We stopped waiting. If our record is still there, take it back (the
         * completion will then never use its token) and pass the cancel on
         * to the remote task; if it is gone, the completion owns the token
         * and its message will release `mine` when it arrives. */
        pthread_mutex_lock(&f->mu);
        bool done = f->done, found = false;
        for (struct ts_awaiter **p = &f->awaiters; *p != NULL; p = &(*p)->next) {
            if (*p == a) {
                *p = a->next;
                found = true;
                break;
            }
        }
        pthread_mutex_unlock(&f->mu);
        if (found) {
            int drc = weft_future_token_drop(a->tok);
            WEFT_ASSERT(drc == 0);
            weft__free(a);
        }
        if (!done)
            (void)weft_tsfuture_cancel(f);
    }
    weft_future_unref(mine);
    weft_tsfuture_unref(f);
    return rc;
}

/* ---- weft_tsfuture_wrap --------------------------------------------------------- */

/* The wrapped future's side: the awaiter record (in f's list until the
 * completion takes it) and a reference on f, both given back when the
 * wrapped future completes - through the record's token, or otherwise
 * (cancelled), in which case the record is taken back and f's task is
 * cancelled as well. */
struct ts_wrap {
    weft_tsfuture_t *f;
    struct ts_awaiter *a;
};

static void ts_wrap_done(struct weft__handle *h, struct weft_future *mine)
{
    struct ts_wrap *w = weft__hook_arg(h);
    weft__hook_release(h);
    weft_tsfuture_t *f = w->f;
    pthread_mutex_lock(&f->mu);
    bool found = false;
    for (struct ts_awaiter **p = &f->awaiters; *p != NULL; p = &(*p)->next) {
        if (*p == w->a) {
            *p = w->a->next;
            found = true;
            break;
        }
    }
    bool done = f->done;
    pthread_mutex_unlock(&f->mu);
    if (found) { /* completed before f: the token is ours to give back */
        int drc = weft_future_token_drop(w->a->tok);
        WEFT_ASSERT(drc == 0); /* on its own loop */
        weft__free(w->a);
        if (!done && weft_future_cancelled(mine))
            (void)weft_tsfuture_cancel(f);
    }
    weft_tsfuture_unref(f);
    weft__free(w);
}

int weft_tsfuture_wrap(weft_tsfuture_t *f, weft_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (f == NULL || out == NULL)
        return UV_EINVAL;
    if (weft_loop_current() == NULL)
        return WEFT_EWRONGLOOP;
    weft_future_t *mine;
    int rc = weft_future_new(NULL, &mine);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&f->mu);
    if (f->done) {
        int err = f->err;
        void *res = f->result;
        const char *msg = f->msg; /* immutable once done; f is referenced */
        pthread_mutex_unlock(&f->mu);
        rc = err == 0 ? weft_future_set_result(mine, res) : weft_future_set_error(mine, err, msg);
        WEFT_ASSERT(rc == 0);
        *out = mine;
        return 0;
    }
    pthread_mutex_unlock(&f->mu);
    struct ts_wrap *w = weft__malloc(sizeof(*w));
    struct ts_awaiter *a = weft__malloc(sizeof(*a));
    struct weft__handle *h = NULL;
    if (w == NULL || a == NULL || weft_future_token(mine, &a->tok) != 0) {
        weft__free(w);
        weft__free(a);
        weft_future_unref(mine);
        return UV_ENOMEM;
    }
    w->f = f;
    w->a = a;
    weft_tsfuture_ref(f); /* released by ts_wrap_done */
    h = weft__hook_add(mine, ts_wrap_done, w);
    if (h == NULL) {
        int drc = weft_future_token_drop(a->tok);
        (void)drc;
        weft_tsfuture_unref(f);
        weft__free(w);
        weft__free(a);
        weft_future_unref(mine);
        return UV_ENOMEM;
    }
    /* Listed either way: if f is already done, its completion has come and
     * gone, so we complete mine here and the hook takes the record back. */
    pthread_mutex_lock(&f->mu);
    bool done = f->done;
    int err = f->err;
    void *res = f->result;
    const char *msg = f->msg; /* immutable once done; f is referenced */
    a->next = f->awaiters;
    f->awaiters = a;
    pthread_mutex_unlock(&f->mu);
    if (done) {
        rc = err == 0 ? weft_future_set_result(mine, res) : weft_future_set_error(mine, err, msg);
        WEFT_ASSERT(rc == 0);
    }
    *out = mine;
    return 0;
}

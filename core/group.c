/*
 * core/group.c - task groups (weft/group.h).
 *
 * The group holds a reference on every child and a hook on its future; the
 * hook (run inline when the child finishes) counts it out, records the
 * first failure, cancels the siblings and the owner, and wakes the owner
 * when it waits and the last child is done.
 */
#include <string.h>
#include <weft/group.h>

#include "alloc.h"
#include "wait_int.h"

/* The group's state lives on the heap, not in the caller's weft_group_t:
 * the children's completion hooks write to it while the owner is suspended,
 * and on a COMPACT loop a suspended task's stack (where a weft_group_t
 * usually sits) does not hold its frames. */
struct weft__group {
    weft_task_t *owner;
    weft_task_t **tasks;
    void **hooks;
    size_t n, cap, live;
    int error;           /* first failure, or 0 */
    size_t first_failed; /* index of that child */
    bool waiting;
    bool owner_cancelled; /* the group made one cancel request of its owner */
};

/* Withdraw the one cancel request the group made of its owner, if it made
 * one (asyncio's TaskGroup uncancels its parent). Returns true if other
 * requests remain: those are not the group's to withdraw. */
static bool withdraw_owner_cancel(struct weft__group *s)
{
    if (!s->owner_cancelled)
        return false;
    s->owner_cancelled = false;
    return weft_task_uncancel(s->owner) > 0;
}

/* The state of an open group, or NULL. */
static struct weft__group *S(const weft_group_t *g)
{
    return g != NULL && !g->weft__closed ? g->weft__s : NULL;
}

static void cancel_children(struct weft__group *s)
{
    for (size_t i = 0; i < s->n; i++) {
        weft_task_t *c = s->tasks[i];
        if (weft__task_live(c))
            weft_task_cancel(c);
    }
}

static void child_done(struct weft__handle *h, struct weft_future *f)
{
    struct weft__group *s = h->arg;
    size_t idx = h->rseq;
    s->hooks[idx] = NULL;
    weft__handle_put(h->loop, h);
    s->live--;
    if (f->err != 0 && f->err != UV_ECANCELED) {
        f->retrieved = true; /* the group reports it */
        if (s->error == 0) {
            s->error = f->err;
            s->first_failed = idx;
            cancel_children(s);
            weft_task_t *o = s->owner;
            if (!s->waiting && weft__task_live(o) && o->state != WEFT_TASK_CREATED)
                s->owner_cancelled = weft_task_cancel(o) == 0; /* one request, ours */
        }
    }
    if (s->live == 0 && s->waiting)
        weft__task_wake(s->owner, 0);
}

int weft_group_init(weft_group_t *g)
{
    if (g == NULL)
        return UV_EINVAL;
    memset(g, 0, sizeof(*g));
    g->weft__closed = true; /* until it is open */
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    struct weft__group *s = weft__calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    g->weft__s = s;
    g->weft__closed = false;
    s->owner = t;
    s->first_failed = SIZE_MAX;
    return 0;
}

int weft__group_spawn(weft_group_t *g, weft_task_fn fn, void *arg, const weft_task_opts_t *opts,
                      weft_task_t **out, const char *file, int line)
{
    if (out != NULL)
        *out = NULL;
    if (g == NULL || fn == NULL)
        return UV_EINVAL;
    struct weft__group *s = S(g);
    if (s == NULL)
        return g->weft__s != NULL ? WEFT_ECLOSED : UV_EINVAL;
    struct weft__loop *l = s->owner->fut.loop;
    if (weft__tls_loop != l)
        return WEFT_EWRONGLOOP;
    if (s->error != 0)
        return UV_ECANCELED;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 8;
        weft_task_t **nt = weft__realloc(s->tasks, ncap * sizeof(*nt));
        if (nt == NULL)
            return UV_ENOMEM;
        s->tasks = nt;
        void **nh = weft__realloc(s->hooks, ncap * sizeof(*nh));
        if (nh == NULL)
            return UV_ENOMEM;
        s->hooks = nh;
        s->cap = ncap;
    }
    weft_task_t *t;
    int rc = weft__spawn(weft__pub(l), fn, arg, opts, &t, file, line);
    if (rc != 0)
        return rc;
    struct weft__handle *h = weft__hook_add(&t->fut, child_done, s);
    if (h == NULL) {
        weft_task_cancel(t);
        weft_task_unref(t);
        return UV_ENOMEM;
    }
    size_t i = s->n++;
    h->rseq = (uint32_t)i;
    s->tasks[i] = t;
    s->hooks[i] = h;
    s->live++;
    if (out != NULL)
        *out = t;
    return 0;
}

/* Wait (without being interrupted) until no child is live. */
static void drain(struct weft__group *s, struct weft__loop *l, struct weft_task *t)
{
    while (s->live > 0) {
        s->waiting = true;
        (void)weft__park(l, t, UINT64_MAX, true);
        s->waiting = false;
    }
}

int weft_group_wait(weft_group_t *g)
{
    struct weft__group *s = S(g);
    if (s == NULL)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t != s->owner)
        return UV_EPERM;
    /* The group's own cancel of the owner (a child failed) is reported here
     * as the child's error, not as a cancel: it is withdrawn. Another
     * cancel of the owner that arrived with it (delivered as one, or still
     * pending) is not: it is what wait reports. */
    int rc;
    bool others = withdraw_owner_cancel(s);
    if (others && t->nocancel == 0) {
        t->cancel_pending = false; /* delivered by this return */
        rc = UV_ECANCELED;
    } else {
        if (others)
            t->cancel_pending = true; /* in a no-cancel region: after it */
        rc = s->live > 0 ? weft__pre_suspend(t) : 0;
    }
    while (rc == 0 && s->live > 0) {
        s->waiting = true;
        rc = weft__park(l, t, UINT64_MAX, false);
        s->waiting = false;
    }
    if (rc != 0) {
        cancel_children(s);
        drain(s, l, t);
    }
    /* A cancel of the owner outranks a child's failure (still readable with
     * weft_group_error): a cancel reported as a failure would be lost. */
    if (rc == UV_ECANCELED)
        return rc;
    if (s->error != 0)
        return s->error;
    return rc;
}

int weft_group_cancel(weft_group_t *g)
{
    struct weft__group *s = S(g);
    if (s == NULL)
        return UV_EINVAL;
    if (weft__tls_loop != s->owner->fut.loop)
        return WEFT_EWRONGLOOP;
    if (s->live == 0)
        return WEFT_EDONE; /* every child finished: nothing to cancel (error.h) */
    cancel_children(s);
    return 0;
}

int weft_group_close(weft_group_t *g)
{
    struct weft__group *s = S(g);
    if (s == NULL)
        return g != NULL && g->weft__s != NULL ? WEFT_ECLOSED : UV_EINVAL;
    if (s->live > 0)
        return UV_EBUSY;
    for (size_t i = 0; i < s->n; i++)
        weft_task_unref(s->tasks[i]);
    weft__free(s->tasks);
    weft__free(s->hooks);
    g->weft__error = s->error; /* still readable after close */
    weft__free(s);
    g->weft__closed = true;
    return 0;
}

int weft_group_leave(weft_group_t *g)
{
    struct weft__group *s = S(g);
    if (s == NULL)
        return g != NULL && g->weft__s != NULL ? WEFT_ECLOSED : UV_EINVAL;
    int rc = s->error;
    if (s->live > 0) {
        struct weft__loop *l;
        struct weft_task *t = weft__running(&l);
        if (t == NULL || l != s->owner->fut.loop)
            return t == NULL ? WEFT_ENOTASK : WEFT_EWRONGLOOP;
        cancel_children(s);
        drain(s, l, t);
        if (rc == 0)
            rc = s->error != 0 ? s->error : UV_ECANCELED;
    }
    if (withdraw_owner_cancel(s)) {
        /* Others cancelled the owner too: not withdrawn. As any cancel that
         * reaches leave, it is left pending (often nobody reads leave's
         * code: WEFT_GROUP), and reported. */
        if (weft__task_live(s->owner))
            s->owner->cancel_pending = true;
        rc = UV_ECANCELED;
    }
    int c = weft_group_close(g);
    return rc != 0 ? rc : c;
}

void weft__group_cleanup(weft_group_t *g)
{
    if (g->weft__init_rc == 0 && !g->weft__closed)
        (void)weft_group_leave(g);
}

size_t weft_group_size(const weft_group_t *g)
{
    const struct weft__group *s = S(g);
    return s != NULL ? s->n : 0;
}
size_t weft_group_live(const weft_group_t *g)
{
    const struct weft__group *s = S(g);
    return s != NULL ? s->live : 0;
}
int weft_group_error(const weft_group_t *g)
{
    const struct weft__group *s = S(g);
    if (s == NULL)
        return g != NULL && g->weft__s != NULL ? g->weft__error : UV_EINVAL;
    return s->error;
}
weft_task_t *weft_group_task(const weft_group_t *g, size_t i)
{
    const struct weft__group *s = S(g);
    return s != NULL && i < s->n ? s->tasks[i] : NULL;
}
size_t weft_group_failed_index(const weft_group_t *g)
{
    const struct weft__group *s = S(g);
    return s != NULL ? s->first_failed : SIZE_MAX;
}

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
#include "loop_int.h"

static void cancel_children(weft_group_t *g)
{
    for (size_t i = 0; i < g->weft__n; i++) {
        weft_task_t *c = g->weft__tasks[i];
        if (weft__task_live(c))
            weft_task_cancel(c);
    }
}

static void child_done(struct weft__handle *h, struct weft_future *f)
{
    weft_group_t *g = h->arg;
    size_t idx = h->rseq;
    g->weft__hooks[idx] = NULL;
    weft__handle_put(h->loop, h);
    g->weft__live--;
    if (f->err != 0 && f->err != UV_ECANCELED) {
        f->retrieved = true; /* the group reports it */
        if (g->weft__error == 0) {
            g->weft__error = f->err;
            g->weft__first_failed = idx;
            cancel_children(g);
            weft_task_t *o = g->weft__owner;
            if (!g->weft__waiting && weft__task_live(o) && o->state != WEFT_TASK_CREATED) {
                g->weft__owner_cancelled = true;
                weft_task_cancel(o);
            }
        }
    }
    if (g->weft__live == 0 && g->weft__waiting)
        weft__task_wake(g->weft__owner, 0);
}

int weft_group_init(weft_group_t *g)
{
    if (g == NULL)
        return UV_EINVAL;
    memset(g, 0, sizeof(*g));
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    g->weft__owner = t;
    g->weft__first_failed = SIZE_MAX;
    return 0;
}

int weft__group_spawn(weft_group_t *g, weft_task_fn fn, void *arg, const weft_task_opts_t *opts,
                      weft_task_t **out, const char *file, int line)
{
    if (out != NULL)
        *out = NULL;
    if (g == NULL || fn == NULL || g->weft__owner == NULL)
        return UV_EINVAL;
    if (g->weft__closed)
        return WEFT_ECLOSED;
    struct weft__loop *l = g->weft__owner->fut.loop;
    if (weft__tls_loop != l)
        return WEFT_EWRONGLOOP;
    if (g->weft__error != 0)
        return UV_ECANCELED;
    if (g->weft__n == g->weft__cap) {
        size_t ncap = g->weft__cap ? g->weft__cap * 2 : 8;
        weft_task_t **nt = weft__realloc(g->weft__tasks, ncap * sizeof(*nt));
        if (nt == NULL)
            return UV_ENOMEM;
        g->weft__tasks = nt;
        void **nh = weft__realloc(g->weft__hooks, ncap * sizeof(*nh));
        if (nh == NULL)
            return UV_ENOMEM;
        g->weft__hooks = nh;
        g->weft__cap = ncap;
    }
    weft_task_t *t;
    int rc = weft__spawn(weft__pub(l), fn, arg, opts, &t, file, line);
    if (rc != 0)
        return rc;
    struct weft__handle *h = weft__hook_add(&t->fut, child_done, g);
    if (h == NULL) {
        weft_task_cancel(t);
        weft_task_unref(t);
        return UV_ENOMEM;
    }
    size_t i = g->weft__n++;
    h->rseq = (uint32_t)i;
    g->weft__tasks[i] = t;
    g->weft__hooks[i] = h;
    g->weft__live++;
    if (out != NULL)
        *out = t;
    return 0;
}

/* Wait (without being interrupted) until no child is live. */
static void drain(weft_group_t *g, struct weft__loop *l, struct weft_task *t)
{
    while (g->weft__live > 0) {
        g->weft__waiting = true;
        (void)weft__park(l, t, UINT64_MAX, true);
        g->weft__waiting = false;
    }
}

int weft_group_wait(weft_group_t *g)
{
    if (g == NULL || g->weft__owner == NULL)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t != g->weft__owner)
        return UV_EPERM;
    if (g->weft__owner_cancelled) {
        /* The group cancelled us because a child failed: that is reported
         * here as the child's error, not as a cancel (asyncio uncancels). */
        g->weft__owner_cancelled = false;
        t->cancel_pending = false;
    }
    int rc = g->weft__live > 0 ? weft__pre_suspend(t) : 0;
    while (rc == 0 && g->weft__live > 0) {
        g->weft__waiting = true;
        rc = weft__park(l, t, UINT64_MAX, false);
        g->weft__waiting = false;
    }
    if (rc != 0) {
        cancel_children(g);
        drain(g, l, t);
    }
    if (g->weft__error != 0)
        return g->weft__error;
    return rc;
}

int weft_group_cancel(weft_group_t *g)
{
    if (g == NULL || g->weft__owner == NULL)
        return UV_EINVAL;
    if (weft__tls_loop != g->weft__owner->fut.loop)
        return WEFT_EWRONGLOOP;
    cancel_children(g);
    return 0;
}

int weft_group_close(weft_group_t *g)
{
    if (g == NULL || g->weft__owner == NULL)
        return UV_EINVAL;
    if (g->weft__closed)
        return WEFT_ECLOSED;
    if (g->weft__live > 0)
        return UV_EBUSY;
    for (size_t i = 0; i < g->weft__n; i++)
        weft_task_unref(g->weft__tasks[i]);
    weft__free(g->weft__tasks);
    weft__free(g->weft__hooks);
    g->weft__tasks = NULL;
    g->weft__hooks = NULL;
    g->weft__n = g->weft__cap = 0;
    g->weft__closed = true;
    return 0;
}

int weft_group_leave(weft_group_t *g)
{
    if (g == NULL || g->weft__owner == NULL)
        return UV_EINVAL;
    if (g->weft__closed)
        return WEFT_ECLOSED;
    int rc = g->weft__error;
    if (g->weft__live > 0) {
        struct weft__loop *l;
        struct weft_task *t = weft__running(&l);
        if (t == NULL || l != g->weft__owner->fut.loop)
            return t == NULL ? WEFT_ENOTASK : WEFT_EWRONGLOOP;
        cancel_children(g);
        drain(g, l, t);
        if (rc == 0)
            rc = g->weft__error != 0 ? g->weft__error : UV_ECANCELED;
    }
    if (g->weft__owner_cancelled) {
        g->weft__owner_cancelled = false;
        g->weft__owner->cancel_pending = false;
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
    return g != NULL ? g->weft__n : 0;
}
size_t weft_group_live(const weft_group_t *g)
{
    return g != NULL ? g->weft__live : 0;
}
int weft_group_error(const weft_group_t *g)
{
    return g != NULL ? g->weft__error : UV_EINVAL;
}
weft_task_t *weft_group_task(const weft_group_t *g, size_t i)
{
    return g != NULL && i < g->weft__n ? g->weft__tasks[i] : NULL;
}
size_t weft_group_failed_index(const weft_group_t *g)
{
    return g != NULL ? g->weft__first_failed : SIZE_MAX;
}

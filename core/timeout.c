/*
 * core/timeout.c - deadline scopes (weft/timeout.h).
 *
 * A task points at its innermost scope; each scope caches the earliest
 * deadline of itself and its parents (weft__eff), so a suspension compares
 * one number. The suspension points (task.c) arm the task's timer at the
 * earlier of their own deadline and weft__eff, and check weft__eff before
 * suspending, which makes an expired scope end every later wait at once.
 */
#include <weft/timeout.h>

#include "wait_int.h"

void weft__scope_mark(struct weft_timeout *s, uint64_t now)
{
    for (; s != NULL; s = s->weft__parent)
        if (s->weft__deadline <= now)
            s->weft__expired = true;
}

static uint64_t parent_eff(const weft_timeout_t *s)
{
    return s->weft__parent != NULL ? s->weft__parent->weft__eff : WEFT_FOREVER;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

int weft_timeout_begin_at(weft_timeout_t *s, uint64_t deadline_ns)
{
    if (s == NULL)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    for (weft_timeout_t *x = t->scope; x != NULL; x = x->weft__parent)
        if (x == s)
            return UV_EINVAL; /* begun twice (s may be uninitialised: no field of it is read) */
    s->weft__deadline = deadline_ns;
    s->weft__parent = t->scope;
    s->weft__task = t;
    s->weft__expired = false;
    s->weft__active = true;
    s->weft__eff = min64(deadline_ns, parent_eff(s));
    t->scope = s;
    return 0;
}

int weft_timeout_begin(weft_timeout_t *s, uint64_t timeout_ms)
{
    return weft_timeout_begin_at(s, weft__deadline_after(timeout_ms));
}

int weft_timeout_end(weft_timeout_t *s)
{
    if (s == NULL || !s->weft__active)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t != s->weft__task || t->scope != s)
        return UV_EINVAL; /* another task's, or not the innermost */
    t->scope = s->weft__parent;
    s->weft__active = false;
    return s->weft__expired ? UV_ETIMEDOUT : 0;
}

int weft_timeout_reschedule_at(weft_timeout_t *s, uint64_t deadline_ns)
{
    if (s == NULL || !s->weft__active)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t != s->weft__task)
        return UV_EPERM;
    s->weft__deadline = deadline_ns;
    if (deadline_ns > uv_hrtime())
        s->weft__expired = false;
    /* Recompute the cached minimum of s and of every scope nested in it,
     * outermost first. */
    weft_timeout_t *chain[64];
    int n = 0;
    for (weft_timeout_t *x = t->scope; x != NULL; x = x->weft__parent) {
        if (n == 64)
            return UV_EINVAL; /* nested deeper than anyone should */
        chain[n++] = x;
        if (x == s)
            break;
    }
    while (n-- > 0)
        chain[n]->weft__eff = min64(chain[n]->weft__deadline, parent_eff(chain[n]));
    return 0;
}

int weft_timeout_reschedule(weft_timeout_t *s, uint64_t timeout_ms)
{
    return weft_timeout_reschedule_at(s, weft__deadline_after(timeout_ms));
}

uint64_t weft_timeout_deadline(const weft_timeout_t *s)
{
    return s != NULL ? s->weft__deadline : WEFT_FOREVER;
}

bool weft_timeout_expired(const weft_timeout_t *s)
{
    return s != NULL && s->weft__expired;
}

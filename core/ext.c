/*
 * core/ext.c - core/ext.h, the narrow API of the layers above core: each
 * call is a thin wrapper over what core's own files use (wait_int.h and below).
 * Including every layer here makes the compiler check that ext.h's repeated
 * declarations match the layers'.
 */
#include "ext.h"

#include "wait_int.h"

bool weft__loop_valid(const struct weft__loop *l)
{
    return l != NULL && l->magic == WEFT__LOOP_MAGIC;
}

uint64_t weft__loop_tasks_spawned(const struct weft__loop *l)
{
    return l->st.tasks_spawned;
}

uint64_t weft__loop_tasks_live(const struct weft__loop *l)
{
    return l->st.tasks_live;
}

bool weft__loop_maybe_sleeping(const struct weft__loop *l)
{
    return __atomic_load_n(&l->inbox.sleeping, __ATOMIC_RELAXED) != 0;
}

bool weft__loop_wrong_thread(const struct weft__loop *l, const char *call)
{
    return WEFT__WRONG_THREAD(l, call, WEFT__OBJ_NONE, NULL);
}

void weft__loop_count_callback(struct weft__loop *l)
{
    l->st.callbacks_run++;
}

void weft__loop_cancel_tasks(struct weft__loop *l)
{
    WEFT__FOR_EACH_TASK(l, t)
    {
        if (weft__task_live(t))
            weft_task_cancel(t);
    }
}

uint32_t weft__future_gen(const struct weft_future *f)
{
    return __atomic_load_n(&f->gen, __ATOMIC_RELAXED);
}

void weft__future_mark_retrieved(struct weft_future *f)
{
    f->retrieved = true;
}

int weft__future_take(struct weft_future *f, void **result, const char **msg)
{
    f->retrieved = true;
    *result = f->state == WEFT__F_DONE ? f->result : NULL;
    *msg = f->msg;
    return f->err;
}

int weft__future_settle(struct weft_future *f, int err, void *result, char *msg)
{
    uint8_t st = err == 0 ? WEFT__F_DONE : err == UV_ECANCELED ? WEFT__F_CANCELLED : WEFT__F_FAILED;
    return weft__future_complete(f, st, result, err, msg);
}

void *weft__hook_arg(const struct weft__handle *h)
{
    return h->arg;
}

void weft__hook_set_tag(struct weft__handle *h, uint32_t tag)
{
    h->rseq = tag;
}

uint32_t weft__hook_tag(const struct weft__handle *h)
{
    return h->rseq;
}

void weft__hook_release(struct weft__handle *h)
{
    weft__handle_put(h->loop, h);
}

int weft__waitq_wait(struct weft__list *q, uint64_t timeout_ms)
{
    struct weft__waiter w;
    return weft__wait_here(q, &w, timeout_ms);
}

bool weft__waitq_busy(struct weft__list *q)
{
    return weft__waiter_first(q) != NULL;
}

bool weft__waitq_grant(struct weft__list *q, int code)
{
    struct weft__waiter *w = weft__waiter_first(q);
    if (w == NULL)
        return false;
    weft__waiter_grant(w, code);
    return true;
}

bool weft__loop_signal_handler(const struct weft__loop *l, int signum, weft_signal_fn *cb,
                               void **arg)
{
    for (const struct weft__sig *s = l->sigs; s != NULL; s = s->next) {
        if (s->signum == signum && signum != 0) {
            *cb = s->cb;
            *arg = s->arg;
            return true;
        }
    }
    return false;
}

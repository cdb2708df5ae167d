/*
 * core/gen.c - async generators (weft/gen.h).
 *
 * The body runs as a task of its own that is never in the ready queue
 * while it waits at a yield: the consumer switches straight to it
 * (weft__switch_to_task) and it switches straight back at the next yield,
 * so a next() costs two stack switches. The consumer marks itself as
 * awaiting the body's task, which is what makes a cancel of the consumer
 * pass into the body (task.c's cancellation rules).
 *
 * Generator records come from a per-loop free list carved from the loop's
 * chunks, so one that is never closed is still released with its loop.
 * A record has two references: the consumer's handle (released by close)
 * and the body's (released when the body returns).
 */
#include <string.h>
#include <weft/gen.h>

#include "alloc.h"
#include "wait_int.h"

enum {
    G_INIT,
    G_AT_YIELD,
    G_RUNNING,
    G_DONE
};

struct weft_gen {
    struct weft__list link; /* free list */
    struct weft_task *task; /* referenced until the record is released */
    struct weft_task *consumer;
    weft_task_fn fn;
    void *arg;
    void *in, *out;
    int in_code;
    int code; /* the body's return code, once done */
    uint8_t state;
    uint8_t refs;
    bool closing;
    bool yielded;  /* the last resume ended at a yield */
    bool reported; /* the body's failure was returned once */
};

#define GEN_CHUNK 32

static struct weft_gen *gen_get(struct weft__loop *l)
{
    if (weft__list_empty(&l->free_gens)) {
        struct weft_gen *g =
            weft__chunk_carve(&l->chunks, _Alignof(struct weft_gen), GEN_CHUNK * sizeof(*g));
        if (g == NULL)
            return NULL;
        for (int i = 0; i < GEN_CHUNK; i++)
            weft__list_push_back(&l->free_gens, &g[i].link);
    }
    struct weft__list *n = weft__list_pop_front(&l->free_gens);
    return WEFT_CONTAINER_OF(n, struct weft_gen, link);
}

static void gen_unref(struct weft_gen *g)
{
    if (--g->refs > 0)
        return;
    struct weft__loop *l = g->task->fut.loop;
    weft_task_unref(g->task);
    g->task = NULL;
    weft__list_push_front(&l->free_gens, &g->link);
}

static int gen_body(void *arg, void **result)
{
    struct weft_gen *g = arg;
    g->state = G_RUNNING;
    int rc = g->fn(g->arg, result);
    if (rc > 0)
        rc = UV_EINVAL;
    g->state = G_DONE;
    g->code = rc;
    g->yielded = false;
    g->task->fut.retrieved = true; /* next/close report the code */
    if (g->consumer != NULL)
        weft__task_wake(g->consumer, 0);
    gen_unref(g);
    return rc;
}

bool weft__gen_body(const struct weft_task *t)
{
    return t->fn == gen_body;
}

int weft__gen_new(weft_loop_t *loop, weft_task_fn fn, void *arg, const weft_task_opts_t *opts,
                  weft_gen_t **out, const char *file, int line)
{
    if (out != NULL)
        *out = NULL;
    struct weft__loop *l = loop ? weft__L(loop) : weft__tls_loop;
    if (out == NULL || fn == NULL || l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (!weft__loop_usable(l))
        return WEFT_ECLOSED;
    struct weft_gen *g = gen_get(l);
    if (g == NULL)
        return UV_ENOMEM;
    memset(g, 0, sizeof(*g));
    weft__list_init(&g->link);
    g->fn = fn;
    g->arg = arg;
    g->refs = 2;
    weft_task_t *t;
    int rc = weft__spawn(weft__pub(l), gen_body, g, opts, &t, file, line);
    if (rc != 0) {
        weft__list_push_front(&l->free_gens, &g->link);
        return rc;
    }
    /* Not runnable until the first next(): out of the ready queue. */
    weft__lag_forget(l, &t->rn.link);
    weft__list_remove(&t->rn.link);
    t->queued = false;
    g->task = t;
    g->state = G_INIT;
    *out = g;
    return 0;
}

/* Both directions of a hand-over go through this one function and its one
 * call of the switch, which both callers reach by a tail call: after a
 * switch, the returns up to the switch site are the same code on both
 * stacks, so the return-stack predictor misses only the last return into
 * the user's code (measured: 2 misses per switch otherwise). */
static __attribute__((noinline)) int gen_xfer(struct weft_task *t, struct weft_gen *g,
                                              bool consumer, void *v, int code, void **out)
{
    struct weft__loop *l = t->fut.loop;
    struct weft_task *next;
    struct weft_timeout *scope = NULL;
    if (consumer) {
        g->in = v;
        g->in_code = code;
        g->consumer = t;
        g->yielded = false;
        t->awaiting = &g->task->fut;
        next = g->task;
    } else {
        g->out = v;
        g->yielded = true;
        g->state = G_AT_YIELD;
        /* Waiting at a yield is not a wait of the body's own: its scopes
         * apply again when it runs. */
        scope = t->scope;
        t->scope = NULL;
        next = g->consumer;
    }
    int rc = weft__switch_to_task(l, t, next, 0);
    if (!consumer) {
        t->scope = scope;
        g->state = G_RUNNING;
        if (rc != 0)
            return rc; /* cancelled while at the yield */
        if (out != NULL)
            *out = g->in;
        rc = g->in_code;
        g->in_code = 0;
        return rc;
    }
    t->awaiting = NULL;
    g->consumer = NULL;
    bool timed_out = t->timed_out;
    t->timed_out = false;
    if (g->yielded) {
        if (rc == UV_ECANCELED)
            t->cancel_pending = true; /* the value is not lost; the cancel waits */
        if (out != NULL)
            *out = g->out;
        return 0;
    }
    if (g->state != G_DONE)
        return rc != 0 ? rc : UV_ECANCELED; /* could not start (UV_ENOMEM) */
    g->reported = true;
    if (g->code == 0)
        return UV_EOF;
    return timed_out && g->code == UV_ECANCELED ? UV_ETIMEDOUT : g->code;
}

int weft_gen_yield(void *value, void **sent)
{
    if (sent != NULL)
        *sent = NULL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t->fn != gen_body)
        return UV_EINVAL;
    struct weft_gen *g = t->arg;
    if (g->closing || g->consumer == NULL)
        return UV_ECANCELED; /* closed (or cancelled with nobody waiting) */
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    return gen_xfer(t, g, false, value, 0, sent);
}

/* Resume the body with (in, code) and wait until it yields or returns. */
static int gen_resume(struct weft_gen *g, void *in, int code, void **value, bool closing)
{
    if (value != NULL)
        *value = NULL;
    if (g == NULL)
        return UV_EINVAL;
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (g->task == t)
        return WEFT_EDEADLK;
    if (g->task->fut.loop != l)
        return WEFT_EWRONGLOOP;
    if (g->consumer != NULL)
        return UV_EBUSY;
    if (g->state == G_DONE) {
        if (!g->reported && g->code != 0 && g->code != UV_ECANCELED) {
            g->reported = true;
            return g->code;
        }
        return UV_EOF;
    }
    if (g->closing && !closing)
        return WEFT_ECLOSED;
    if (g->state == G_INIT && in != NULL)
        return UV_EINVAL; /* Python: can't send non-None to a just-started generator */
    if (g->state == G_RUNNING) {
        /* Running without a consumer (cancelled at a yield): wait for it. */
        int rc = weft_await(&g->task->fut, NULL);
        return rc == 0 || rc == UV_ECANCELED ? UV_EOF : rc;
    }
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    return gen_xfer(t, g, true, in, code, value);
}

int weft_gen_next(weft_gen_t *g, void **value)
{
    return gen_resume(g, NULL, 0, value, false);
}

int weft_gen_send(weft_gen_t *g, void *in, void **value)
{
    return gen_resume(g, in, 0, value, false);
}

int weft_gen_throw(weft_gen_t *g, int code, void **value)
{
    if (g != NULL && code >= 0)
        return UV_EINVAL;
    if (g != NULL && g->state == G_INIT && g->consumer == NULL && weft_task_current() != NULL) {
        /* Python: athrow on a generator that never ran raises at once and
         * the generator is finished. */
        g->state = G_DONE;
        g->code = 0;
        weft_task_cancel(g->task);
        gen_unref(g); /* the body's reference: it will never run */
        return code;
    }
    return gen_resume(g, NULL, code, value, false);
}

int weft_gen_free(weft_gen_t *g)
{
    if (g == NULL)
        return UV_EINVAL;
    if (g->consumer != NULL)
        return UV_EBUSY;
    struct weft__loop *l = weft__tls_loop;
    struct weft__loop *gl = g->task->fut.loop;
    if (l != NULL && l != gl)
        return WEFT_EWRONGLOOP;
    int rc = 0;
    g->closing = true;
    if (g->state == G_INIT) {
        g->state = G_DONE;
        weft_task_cancel(g->task); /* never runs */
        gen_unref(g);              /* the body's reference */
    } else if (g->state != G_DONE) {
        struct weft_task *t = l != NULL ? l->current : NULL;
        if (t == NULL || t == g->task) {
            /* Cannot wait here: cancel the body and let it finish alone. */
            if (g->state == G_AT_YIELD)
                weft_task_cancel(g->task);
        } else {
            while (g->state != G_DONE) {
                int r = gen_resume(g, NULL, UV_ECANCELED, NULL, true);
                if (r != 0 && r != UV_EOF && g->state != G_DONE) {
                    rc = r; /* e.g. the closer was cancelled */
                    break;
                }
            }
            if (g->state == G_DONE && g->code != 0 && g->code != UV_ECANCELED)
                rc = g->code;
        }
    } else if (!g->reported && g->code != 0 && g->code != UV_ECANCELED) {
        rc = g->code;
    }
    gen_unref(g); /* the handle's */
    return rc;
}

weft_task_t *weft_gen_task(const weft_gen_t *g)
{
    return g != NULL ? g->task : NULL;
}

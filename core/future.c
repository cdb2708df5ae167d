/*
 * core/future.c - futures: completion, done callbacks, thread-safe
 * completion and the owner side of cross-loop awaits.
 *
 * A future's waiters list holds, in registration order, the tasks awaiting
 * it and its done-callback handles; completion moves all of them to the
 * ready queue (never runs anything inline). A scheduled done callback holds
 * a reference on the future until it has run.
 *
 * Messages from other threads name a future by pointer and generation. The
 * generation is bumped (atomically: other threads read it) each time the
 * future is recycled, so a completion that arrives after the future was
 * released is recognised and dropped; the memory itself stays a future of
 * this loop until the loop closes.
 */
#include <stdio.h>
#include <string.h>
#include <weft/future.h>
#include <weft/task.h>

#include "alloc.h"
#include "loop_int.h"

#define CHUNK 64

static uint32_t gen_of(const struct weft_future *f)
{
    return __atomic_load_n(&f->gen, __ATOMIC_RELAXED);
}

void weft__future_init(struct weft_future *f, struct weft__loop *l, bool is_task)
{
    WEFT_ASSERT(f->loop == l);
    f->result = NULL;
    f->msg = NULL;
    weft__list_init(&f->waiters);
    f->refs = 1;
    f->err = 0;
    f->state = WEFT__F_PENDING;
    f->is_task = is_task;
    f->retrieved = false;
}

void weft__future_recycled(struct weft_future *f)
{
    if (f->state != WEFT__F_FAILED || f->retrieved)
        return;
    struct weft__loop *l = f->loop;
    l->st.errors_unretrieved++;
    if (l->quiet)
        return;
    char who[160];
    if (f->is_task)
        weft__task_label((const struct weft_task *)f, who, sizeof(who));
    else
        snprintf(who, sizeof(who), "future %p", (void *)f);
    fprintf(stderr, "weft: %s failed with %s (%s)%s%s%s and nobody retrieved the error\n", who,
            weft_err_name(f->err), weft_strerror(f->err), f->msg ? ": \"" : "",
            f->msg ? f->msg : "", f->msg ? "\"" : "");
}

static struct weft_future *future_get(struct weft__loop *l)
{
    if (l->free_futures == NULL) {
        struct weft__chunk *c = weft__calloc(1, sizeof(*c) + CHUNK * sizeof(struct weft_future));
        if (c == NULL)
            return NULL;
        c->next = l->chunks;
        l->chunks = c;
        struct weft_future *f = (struct weft_future *)(c + 1);
        for (int i = 0; i < CHUNK; i++) {
            f[i].loop = l; /* written once: other threads read it */
            f[i].result = l->free_futures;
            l->free_futures = &f[i];
        }
    }
    struct weft_future *f = l->free_futures;
    l->free_futures = f->result;
    return f;
}

static bool wrong_thread(const struct weft__loop *l)
{
    return l->running && weft__tls_loop != l;
}

int weft_future_new(weft_loop_t *loop, weft_future_t **out)
{
    struct weft__loop *l = loop ? weft__L(loop) : weft__tls_loop;
    if (out == NULL || l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (!weft__loop_usable(l))
        return WEFT_ECLOSED;
    if (wrong_thread(l))
        return WEFT_EWRONGLOOP;
    struct weft_future *f = future_get(l);
    if (f == NULL)
        return UV_ENOMEM;
    weft__future_init(f, l, false);
    *out = f;
    return 0;
}

void weft_future_ref(weft_future_t *f)
{
    if (f != NULL)
        f->refs++;
}

void weft_future_unref(weft_future_t *f)
{
    if (f == NULL)
        return;
    WEFT_ASSERT(f->refs > 0);
    if (--f->refs > 0)
        return;
    if (f->is_task) {
        weft__task_free((struct weft_task *)f);
        return;
    }
    /* Pending with waiters would mean a waiter without a reference. */
    WEFT_ASSERT(weft__list_empty(&f->waiters));
    weft__future_recycled(f);
    if (f->msg != NULL) { /* rare: skip the allocator call on the hot path */
        weft__free(f->msg);
        f->msg = NULL;
    }
    __atomic_store_n(&f->gen, f->gen + 1, __ATOMIC_RELAXED);
    struct weft__loop *l = f->loop;
    f->result = l->free_futures;
    l->free_futures = f;
}

int weft__future_complete(struct weft_future *f, uint8_t state, void *result, int err, char *msg)
{
    if (f->state != WEFT__F_PENDING) {
        weft__free(msg);
        return UV_EINVAL;
    }
    f->state = state;
    f->result = result;
    f->err = err;
    if (msg != NULL) {
        weft__free(f->msg);
        f->msg = msg;
    }
    struct weft__loop *l = f->loop;
    struct weft__list *n;
    while ((n = weft__list_pop_front(&f->waiters)) != NULL) {
        struct weft__rnode *rn = WEFT_CONTAINER_OF(n, struct weft__rnode, link);
        if (rn->kind == WEFT__RN_TASK) {
            weft__task_wake(WEFT_CONTAINER_OF(rn, struct weft_task, rn), 0);
        } else {
            struct weft__handle *h = WEFT_CONTAINER_OF(rn, struct weft__handle, rn);
            if (h->what == WEFT__H_HOOK) {
                h->state = WEFT__HS_RUNNING; /* now the hook's owner's */
                h->u.hook(h, f);
                continue;
            }
            if (h->what == WEFT__H_FUTURE_CB)
                f->refs++; /* released after the callback ran */
            h->state = WEFT__HS_READY;
            weft__ready_push(l, rn);
        }
    }
    return 0;
}

int weft_future_set_result(weft_future_t *f, void *result)
{
    if (f == NULL)
        return UV_EINVAL;
    if (wrong_thread(f->loop))
        return WEFT_EWRONGLOOP;
    return weft__future_complete(f, WEFT__F_DONE, result, 0, NULL);
}

int weft_future_set_error(weft_future_t *f, int code, const char *message)
{
    if (f == NULL || code >= 0)
        return UV_EINVAL;
    if (wrong_thread(f->loop))
        return WEFT_EWRONGLOOP;
    if (f->state != WEFT__F_PENDING)
        return UV_EINVAL;
    uint8_t st = code == UV_ECANCELED ? WEFT__F_CANCELLED : WEFT__F_FAILED;
    return weft__future_complete(f, st, NULL, code, weft__strdup(message));
}

int weft_future_cancel(weft_future_t *f)
{
    if (f == NULL)
        return UV_EINVAL;
    if (f->state != WEFT__F_PENDING)
        return WEFT_EDONE;
    if (wrong_thread(f->loop))
        return WEFT_EWRONGLOOP;
    if (f->is_task)
        return weft_task_cancel((weft_task_t *)f);
    return weft__future_complete(f, WEFT__F_CANCELLED, NULL, UV_ECANCELED, NULL);
}

bool weft_future_done(const weft_future_t *f)
{
    return f != NULL && f->state != WEFT__F_PENDING;
}

bool weft_future_cancelled(const weft_future_t *f)
{
    return f != NULL && f->state == WEFT__F_CANCELLED;
}

int weft_future_result(const weft_future_t *f, void **result)
{
    if (f == NULL)
        return UV_EINVAL;
    /* const in the API: reading does not change the outcome, it only marks
     * the error as retrieved. */
    return weft__future_outcome((struct weft_future *)f, result);
}

const char *weft_future_message(const weft_future_t *f)
{
    return f != NULL ? f->msg : NULL;
}

weft_loop_t *weft_future_loop(const weft_future_t *f)
{
    return f != NULL ? weft__pub(f->loop) : NULL;
}

void weft__future_add_waiter(struct weft_future *f, struct weft__rnode *rn)
{
    weft__list_push_back(&f->waiters, &rn->link);
}

int weft_future_add_done_callback(weft_future_t *f, weft_future_cb fn, void *arg)
{
    if (f == NULL || fn == NULL)
        return UV_EINVAL;
    struct weft__loop *l = f->loop;
    if (wrong_thread(l))
        return WEFT_EWRONGLOOP;
    struct weft__handle *h = weft__handle_get(l);
    if (h == NULL)
        return UV_ENOMEM;
    h->what = WEFT__H_FUTURE_CB;
    h->u.ffn = fn;
    h->arg = arg;
    h->fut = f;
    if (f->state == WEFT__F_PENDING) {
        h->state = WEFT__HS_WAITING;
        weft__future_add_waiter(f, &h->rn);
    } else {
        f->refs++;
        h->state = WEFT__HS_READY;
        weft__ready_push(l, &h->rn);
    }
    return 0;
}

int weft_future_remove_done_callback(weft_future_t *f, weft_future_cb fn, void *arg)
{
    if (f == NULL || fn == NULL)
        return UV_EINVAL;
    if (wrong_thread(f->loop))
        return WEFT_EWRONGLOOP;
    int removed = 0;
    struct weft__list *it = f->waiters.next;
    while (it != &f->waiters) {
        struct weft__list *next = it->next;
        struct weft__rnode *rn = WEFT_CONTAINER_OF(it, struct weft__rnode, link);
        if (rn->kind == WEFT__RN_HANDLE) {
            struct weft__handle *h = WEFT_CONTAINER_OF(rn, struct weft__handle, rn);
            if (h->what == WEFT__H_FUTURE_CB && h->u.ffn == fn && h->arg == arg) {
                weft__list_remove(it);
                weft__handle_put(f->loop, h);
                removed++;
            }
        }
        it = next;
    }
    return removed;
}

struct weft__handle *weft__hook_add(struct weft_future *f,
                                    void (*fn)(struct weft__handle *, struct weft_future *),
                                    void *arg)
{
    struct weft__handle *h = weft__handle_get(f->loop);
    if (h == NULL)
        return NULL;
    h->what = WEFT__H_HOOK;
    h->u.hook = fn;
    h->arg = arg;
    h->fut = f;
    h->state = WEFT__HS_WAITING;
    weft__future_add_waiter(f, &h->rn);
    return h;
}

void weft__hook_remove(struct weft__handle *h)
{
    if (h == NULL)
        return;
    weft__list_remove(&h->rn.link); /* from f's waiters, or its owner's list */
    weft__handle_put(h->loop, h);
}

/* ---- from other threads --------------------------------------------------- */

/* b = generation | state << 32; c = result or owned message; d = code. */
static void apply_threadsafe(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx;
    struct weft_future *f = (struct weft_future *)a;
    uint8_t state = (uint8_t)(b >> 32);
    char *msg = state == WEFT__F_FAILED ? (char *)c : NULL;
    if (gen_of(f) != (uint32_t)b || f->state != WEFT__F_PENDING) {
        weft__free(msg); /* released or already done: ignore */
        return;
    }
    if (state == WEFT__F_CANCELLED && f->is_task) {
        weft_task_cancel((weft_task_t *)f);
        return;
    }
    weft__future_complete(f, state, state == WEFT__F_DONE ? (void *)c : NULL, (int)(intptr_t)d,
                          msg);
}

static int post_completion(weft_future_t *f, uint8_t state, uintptr_t c, int code)
{
    struct weft__loop *l = f->loop;
    uintptr_t b = (uintptr_t)gen_of(f) | ((uintptr_t)state << 32);
    return weft__post(l, apply_threadsafe, (uintptr_t)f, b, c, (uintptr_t)(intptr_t)code);
}

int weft_future_set_result_threadsafe(weft_future_t *f, void *result)
{
    if (f == NULL)
        return UV_EINVAL;
    return post_completion(f, WEFT__F_DONE, (uintptr_t)result, 0);
}

int weft_future_set_error_threadsafe(weft_future_t *f, int code, const char *message)
{
    if (f == NULL || code >= 0)
        return UV_EINVAL;
    uint8_t st = code == UV_ECANCELED ? WEFT__F_CANCELLED : WEFT__F_FAILED;
    char *msg = NULL;
    if (st == WEFT__F_FAILED && message != NULL && (msg = weft__strdup(message)) == NULL)
        return UV_ENOMEM;
    int rc = post_completion(f, st, (uintptr_t)msg, code);
    if (rc != 0)
        weft__free(msg);
    return rc;
}

int weft_future_cancel_threadsafe(weft_future_t *f)
{
    if (f == NULL)
        return UV_EINVAL;
    return post_completion(f, WEFT__F_CANCELLED, 0, UV_ECANCELED);
}

/* Owner side of a cross-loop await (see task.c): a = future, b = generation |
 * wait_seq << 32, c = waiting task, d = its loop. */
void weft__future_remote_await(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    struct weft__loop *l = ctx;
    struct weft_future *f = (struct weft_future *)a;
    uint32_t seq = (uint32_t)(b >> 32);
    struct weft__loop *rl = (struct weft__loop *)d;
    int err;
    void *res = NULL;
    if (gen_of(f) != (uint32_t)b) {
        err = UV_EINVAL; /* released while the request was in flight */
    } else if (f->state != WEFT__F_PENDING) {
        err = f->err;
        res = f->result;
        f->retrieved = true; /* the waiter on the other loop gets the code */
    } else {
        struct weft__handle *h = weft__handle_get(l);
        if (h != NULL) {
            h->what = WEFT__H_REMOTE_WAKE;
            h->fut = f;
            f->refs++; /* released when the wake-up has been posted */
            h->rloop = rl;
            h->rtask = (struct weft_task *)c;
            h->rseq = seq;
            h->state = WEFT__HS_WAITING;
            weft__future_add_waiter(f, &h->rn);
            return;
        }
        err = UV_ENOMEM;
    }
    int rc =
        weft__post(rl, weft__task_remote_wake, c, seq, (uintptr_t)(intptr_t)err, (uintptr_t)res);
    WEFT_ASSERT(rc == 0 || rc == WEFT_ECLOSED);
}

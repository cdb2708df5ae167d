/*
 * core/future.c - futures: completion, done callbacks, thread-safe
 * completion and the owner side of cross-loop awaits.
 *
 * A future's waiters list holds, in registration order, the tasks awaiting
 * it and its done-callback handles; completion moves all of them to the
 * ready queue (never runs anything inline). A scheduled done callback holds
 * a reference on the future until it has run.
 *
 * Messages from other threads name a future by a token (future.h): the
 * pointer, the generation read on this loop's thread when the token was
 * made, and one reference taken then. The reference keeps the slot from
 * being recycled while the token is out, so a completion can never land on
 * an unrelated future that reused the slot (the free lists are LIFO: a
 * released slot is reused at once). The message carries the reference and
 * the owner releases it when it applies the message. The generation check
 * stays as a second line of defence against a token used twice: it is
 * bumped (atomically: other threads may read it) each time the future is
 * recycled, and a message whose generation no longer matches is dropped and
 * counted (stats.tokens_stale).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <weft/future.h>
#include <weft/task.h>

#include "alloc.h"
#include "task_int.h"

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
        struct weft_future *f =
            weft__chunk_carve(&l->chunks, _Alignof(struct weft_future), CHUNK * sizeof(*f));
        if (f == NULL)
            return NULL;
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

int weft_future_new(weft_loop_t *loop, weft_future_t **out)
{
    struct weft__loop *l = loop ? weft__L(loop) : weft__tls_loop;
    if (out == NULL || l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (!weft__loop_usable(l))
        return WEFT_ECLOSED;
    if (WEFT__WRONG_THREAD(l, "weft_future_new", WEFT__OBJ_NONE, NULL))
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
    if (f == NULL)
        return;
    WEFT__OWNER_ASSERT(f->loop, "weft_future_ref", WEFT__OBJ_FUTURE, f);
    f->refs++;
}

void weft_future_unref(weft_future_t *f)
{
    if (f == NULL)
        return;
    WEFT__OWNER_ASSERT(f->loop, "weft_future_unref", WEFT__OBJ_FUTURE, f);
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
    if (__builtin_expect(f->side, 0)) /* a result destructor (side.c) */
        weft__side_release(f);
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
    if (WEFT__WRONG_THREAD(f->loop, "weft_future_set_result", WEFT__OBJ_FUTURE, f))
        return WEFT_EWRONGLOOP;
    if (f->is_task)
        return UV_EPERM; /* finish() completes it when the body returns */
    return weft__future_complete(f, WEFT__F_DONE, result, 0, NULL);
}

int weft_future_set_error(weft_future_t *f, int code, const char *message)
{
    if (f == NULL || code >= 0)
        return UV_EINVAL;
    if (WEFT__WRONG_THREAD(f->loop, "weft_future_set_error", WEFT__OBJ_FUTURE, f))
        return WEFT_EWRONGLOOP;
    if (f->is_task)
        return UV_EPERM;
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
    if (WEFT__WRONG_THREAD(f->loop, "weft_future_cancel", WEFT__OBJ_FUTURE, f))
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
    if (WEFT__WRONG_THREAD(l, "weft_future_add_done_callback", WEFT__OBJ_FUTURE, f))
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
    if (WEFT__WRONG_THREAD(f->loop, "weft_future_remove_done_callback", WEFT__OBJ_FUTURE, f))
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

int weft_future_token(weft_future_t *f, weft_future_token_t *out)
{
    if (out != NULL)
        *out = (weft_future_token_t){0};
    if (f == NULL || out == NULL)
        return UV_EINVAL;
    if (WEFT__WRONG_THREAD(f->loop, "weft_future_token", WEFT__OBJ_FUTURE, f))
        return WEFT_EWRONGLOOP;
    f->refs++; /* carried by the token, released where it is used */
    f->loop->tokens_live++;
    out->weft__f = f;
    out->weft__gen = f->gen;
    return 0;
}

void weft__token_release(struct weft_future *f)
{
    f->loop->tokens_live--;
    weft_future_unref(f);
}

bool weft__token_valid(struct weft_future *f, uint32_t gen)
{
    if (gen_of(f) == gen && f->refs > 0)
        return true;
    f->loop->st.tokens_stale++; /* a token used twice: nothing to release */
    return false;
}

/* What a token message does: one of the WEFT__F_* outcomes, or drop. */
#define OP_DROP 0xffu

/* b = generation | op << 32; c = result or owned message; d = code. */
static void apply_token(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx;
    struct weft_future *f = (struct weft_future *)a;
    unsigned op = (unsigned)(b >> 32);
    char *msg = op == WEFT__F_FAILED ? (char *)c : NULL;
    if (!weft__token_valid(f, (uint32_t)b)) {
        weft__free(msg);
        return;
    }
    if (op == OP_DROP || f->state != WEFT__F_PENDING) {
        weft__free(msg); /* nothing to do, or already done: ignored */
        if (op == WEFT__F_DONE)
            weft__side_drop_result(f, (void *)c); /* a late result: its destructor */
    } else if (op == WEFT__F_CANCELLED && f->is_task) {
        weft_task_cancel((weft_task_t *)f);
    } else {
        weft__future_complete(f, (uint8_t)op, op == WEFT__F_DONE ? (void *)c : NULL,
                              (int)(intptr_t)d, msg);
    }
    weft__token_release(f);
}

static int post_token(weft_future_token_t tok, unsigned op, uintptr_t c, int code)
{
    struct weft_future *f = tok.weft__f;
    uintptr_t b = (uintptr_t)tok.weft__gen | ((uintptr_t)op << 32);
    return weft__post(f->loop, apply_token, (uintptr_t)f, b, c, (uintptr_t)(intptr_t)code);
}

int weft_future_set_result_threadsafe(weft_future_token_t tok, void *result)
{
    if (tok.weft__f == NULL)
        return UV_EINVAL;
    if (tok.weft__f->is_task) /* fixed per slot: task slots are never futures */
        return UV_EPERM;
    return post_token(tok, WEFT__F_DONE, (uintptr_t)result, 0);
}

int weft_future_set_error_threadsafe(weft_future_token_t tok, int code, const char *message)
{
    if (tok.weft__f == NULL || code >= 0)
        return UV_EINVAL;
    if (tok.weft__f->is_task)
        return UV_EPERM;
    unsigned op = code == UV_ECANCELED ? WEFT__F_CANCELLED : WEFT__F_FAILED;
    char *msg = NULL;
    if (op == WEFT__F_FAILED && message != NULL && (msg = weft__strdup(message)) == NULL)
        return UV_ENOMEM;
    int rc = post_token(tok, op, (uintptr_t)msg, code);
    if (rc != 0)
        weft__free(msg);
    return rc;
}

int weft_future_cancel_threadsafe(weft_future_token_t tok)
{
    if (tok.weft__f == NULL)
        return UV_EINVAL;
    return post_token(tok, WEFT__F_CANCELLED, 0, UV_ECANCELED);
}

int weft_future_token_drop(weft_future_token_t tok)
{
    if (tok.weft__f == NULL)
        return UV_EINVAL;
    struct weft_future *f = tok.weft__f;
    if (weft__tls_loop == f->loop) { /* on the owner: release it here */
        if (weft__token_valid(f, tok.weft__gen))
            weft__token_release(f);
        return 0;
    }
    return post_token(tok, OP_DROP, 0, 0);
}

/* ---- cross-loop awaits: the owner's side ----------------------------------- */

/* Every REMOTE_AWAIT gets exactly one reply - the outcome, a refusal, or the
 * acknowledgement of a withdraw - because the waiter's loop counts its
 * outstanding requests (remote_out) and may not close before they are all
 * answered: the reply is what tells it that this loop holds no pointer to it
 * any more. So a reply must not be lost to a short allocation: it is retried
 * (the pool's delivery does the same). WEFT_ECLOSED cannot happen while the
 * waiter counts the request; it is tolerated for loops torn down regardless. */
void weft__remote_reply(struct weft__loop *rl, uintptr_t task, uint32_t seq, int err, void *res)
{
    for (;;) {
        int rc = weft__post(rl, weft__task_remote_wake, task, seq, (uintptr_t)(intptr_t)err,
                            (uintptr_t)res);
        if (rc != UV_ENOMEM) {
            WEFT_ASSERT(rc == 0 || rc == WEFT_ECLOSED);
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* a = future, b = token generation | wait_seq << 32, c = waiting task, d = its
 * loop. The message carries the waiter's token (its reference on f): a record
 * keeps it until the wake-up is posted; every other path releases it. */
void weft__future_remote_await(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    struct weft__loop *l = ctx;
    struct weft_future *f = (struct weft_future *)a;
    uint32_t seq = (uint32_t)(b >> 32);
    struct weft__loop *rl = (struct weft__loop *)d;
    if (!weft__token_valid(f, (uint32_t)b)) {
        weft__remote_reply(rl, c, seq, UV_EINVAL, NULL);
        return;
    }
    int err;
    void *res = NULL;
    if (f->state != WEFT__F_PENDING) {
        /* Done before the request came: the token kept f (and its outcome)
         * alive even if its owner released it meanwhile. */
        err = f->err;
        res = f->state == WEFT__F_DONE ? f->result : NULL;
        f->retrieved = true; /* the waiter on the other loop gets the code */
    } else {
        struct weft__handle *h = weft__handle_get(l);
        if (h != NULL) {
            h->what = WEFT__H_REMOTE_WAKE;
            h->fut = f; /* the token's reference moves to the record */
            l->tokens_live--;
            h->rloop = rl;
            h->rtask = (struct weft_task *)c;
            h->rseq = seq;
            h->state = WEFT__HS_WAITING;
            weft__future_add_waiter(f, &h->rn);
            weft__list_push_back(&l->remote_records, &h->rlink);
            return;
        }
        err = UV_ENOMEM;
    }
    weft__remote_reply(rl, c, seq, err, res);
    weft__token_release(f);
}

/* The record's future completed (weft__handle_run): post the outcome. */
void weft__remote_record_fire(struct weft__loop *l, struct weft__handle *h)
{
    (void)l;
    struct weft_future *f = h->fut;
    weft__list_remove(&h->rlink);
    f->retrieved = true; /* the waiter on the other loop gets the code */
    weft__remote_reply(h->rloop, (uintptr_t)h->rtask, h->rseq, f->err,
                       f->state == WEFT__F_DONE ? f->result : NULL);
    weft_future_unref(f);
}

/* Drop a waiting record (its waiter withdrew, or this loop closes): the
 * reply says `err`. */
static void record_end(struct weft__loop *l, struct weft__handle *h, int err)
{
    struct weft_future *f = h->fut;
    weft__list_remove(&h->rn.link); /* from f's waiters */
    weft__list_remove(&h->rlink);
    weft__remote_reply(h->rloop, (uintptr_t)h->rtask, h->rseq, err, NULL);
    weft__handle_put(l, h);
    weft_future_unref(f);
}

static void cancel_pending_future(struct weft_future *f)
{
    if (f->state != WEFT__F_PENDING)
        return;
    if (f->is_task)
        weft_task_cancel((weft_task_t *)f);
    else
        weft__future_complete(f, WEFT__F_CANCELLED, NULL, UV_ECANCELED, NULL);
}

/* The waiter stopped waiting before its reply came (timeout, cancel, a scope
 * deadline): a = future, b = generation | wait_seq << 32, c = task, d = 1 to
 * cancel the future too (a cancel or a scope deadline, as for a local await).
 * It comes after the REMOTE_AWAIT from the same loop (the inbox keeps each
 * producer's order), so if the record is not on f's waiters any more its
 * reply has been posted already and there is nothing to acknowledge. */
void weft__future_remote_withdraw(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    struct weft__loop *l = ctx;
    struct weft_future *f = (struct weft_future *)a;
    uint32_t seq = (uint32_t)(b >> 32);
    if (__atomic_load_n(&f->gen, __ATOMIC_RELAXED) != (uint32_t)b)
        return; /* recycled: its record (which holds a reference) is long gone */
    struct weft__list *it;
    for (it = f->waiters.next; it != &f->waiters; it = it->next) {
        struct weft__rnode *rn = WEFT_CONTAINER_OF(it, struct weft__rnode, link);
        if (rn->kind != WEFT__RN_HANDLE)
            continue;
        struct weft__handle *h = WEFT_CONTAINER_OF(rn, struct weft__handle, rn);
        if (h->what == WEFT__H_REMOTE_WAKE && h->rtask == (struct weft_task *)c && h->rseq == seq)
            break;
    }
    if (it == &f->waiters) {
        if (d)
            cancel_pending_future(f); /* f is referenced elsewhere: gen matched */
        return;
    }
    struct weft__handle *h = WEFT_CONTAINER_OF(it, struct weft__handle, rn.link);
    weft_future_ref(f); /* keep f while it is cancelled below */
    record_end(l, h, UV_ECANCELED);
    if (d)
        cancel_pending_future(f);
    weft_future_unref(f);
}

/* ---- proxies: a local future for a future of another loop ------------------- */

/* The record of a proxy's remote wait, on the proxy's loop. It holds one
 * reference on the proxy until the owner's single answer arrives (the
 * outcome, a refusal, or the acknowledgement of a withdraw), and is freed
 * then. The hook sees the proxy complete: if that was not the answer (the
 * proxy was cancelled, or completed by hand), the wait is withdrawn - with
 * a cancel of the remote future when the proxy was cancelled. */
struct proxy {
    struct weft__list link; /* in the loop's proxies until answered */
    struct weft_future *p;  /* the local future */
    struct weft_future *rf; /* the remote one (never read here) */
    uint32_t gen, seq;
    bool answered;
};

static void proxy_hook(struct weft__handle *h, struct weft_future *p)
{
    struct proxy *x = h->arg;
    weft__handle_put(h->loop, h);
    if (x->answered)
        return;
    uintptr_t b = (uintptr_t)x->gen | ((uintptr_t)x->seq << 32);
    int rc = weft__post(x->rf->loop, weft__future_remote_withdraw, (uintptr_t)x->rf, b,
                        (uintptr_t)x, p->state == WEFT__F_CANCELLED);
    (void)rc; /* WEFT_ECLOSED: its close answered every record (ECLOSED) */
}

void weft__proxy_answer(struct weft__loop *l, void *rec, int err, void *res)
{
    (void)l;
    struct proxy *x = rec;
    x->answered = true;
    weft__list_remove(&x->link);
    if (x->p->state == WEFT__F_PENDING) { /* the hook then sees answered */
        uint8_t st = err == 0              ? WEFT__F_DONE
                     : err == UV_ECANCELED ? WEFT__F_CANCELLED
                                           : WEFT__F_FAILED;
        weft__future_complete(x->p, st, err == 0 ? res : NULL, err, NULL);
    }
    weft_future_unref(x->p);
    weft__free(x);
}

int weft_future_from_token(weft_future_token_t tok, weft_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    struct weft_future *f = tok.weft__f;
    struct weft__loop *l = weft__tls_loop;
    if (f == NULL || out == NULL)
        return UV_EINVAL;
    if (l == NULL)
        return WEFT_EWRONGLOOP;
    if (f->loop == l) {
        if (!weft__token_valid(f, tok.weft__gen))
            return UV_EINVAL;
        l->tokens_live--; /* the token's reference is the caller's now */
        *out = f;
        return 0;
    }
    struct proxy *x = weft__malloc(sizeof(*x));
    if (x == NULL)
        return UV_ENOMEM;
    weft_future_t *p;
    int rc = weft_future_new(weft__pub(l), &p);
    if (rc != 0) {
        weft__free(x);
        return rc;
    }
    struct weft__handle *h = weft__hook_add(p, proxy_hook, x);
    if (h == NULL) {
        weft_future_unref(p);
        weft__free(x);
        return UV_ENOMEM;
    }
    x->p = p;
    x->rf = f;
    x->gen = tok.weft__gen;
    x->seq = (++l->proxy_seq & ~WEFT__PROXY_SEQ) | WEFT__PROXY_SEQ;
    x->answered = false;
    p->refs++; /* the record's, released with the answer */
    l->remote_out++;
    uintptr_t b = (uintptr_t)x->gen | ((uintptr_t)x->seq << 32);
    rc =
        weft__post(f->loop, weft__future_remote_await, (uintptr_t)f, b, (uintptr_t)x, (uintptr_t)l);
    if (rc != 0) {
        l->remote_out--;
        weft__hook_remove(h);
        p->refs--;
        weft_future_unref(p);
        weft__free(x);
        return rc; /* WEFT_ECLOSED: the token went with its loop */
    }
    weft__list_push_back(&l->proxies, &x->link);
    *out = p;
    return 0;
}

void weft__loop_cancel_proxies(struct weft__loop *l)
{
    struct weft__list *it = l->proxies.next;
    while (it != &l->proxies) {
        struct proxy *x = WEFT_CONTAINER_OF(it, struct proxy, link);
        it = it->next; /* x stays listed until its answer, which comes later */
        if (x->p->state == WEFT__F_PENDING)
            weft__future_complete(x->p, WEFT__F_CANCELLED, NULL, UV_ECANCELED, NULL);
    }
}

/* weft_loop_close: the futures that other loops' tasks still wait for will
 * never complete now; their waiters get WEFT_ECLOSED. */
void weft__remote_records_close(struct weft__loop *l)
{
    while (!weft__list_empty(&l->remote_records)) {
        struct weft__handle *h =
            WEFT_CONTAINER_OF(l->remote_records.next, struct weft__handle, rlink);
        record_end(l, h, WEFT_ECLOSED);
    }
}

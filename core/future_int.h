/*
 * core/future_int.h - the future layer: struct weft_future, completion,
 * waiters, hooks, tokens, remote waits and proxies, side records (internal
 * to core/).
 *
 * Layer map (base.h has it in full): leaves -> sched_int.h -> future_int.h ->
 * task_int.h -> wait_int.h -> sync/timeout/queue/combine/group/gen -> ext.h.
 * Includes sched_int.h and the public <weft/future.h> only; knows tasks by
 * pointer only. Implemented by future.c and side.c. Included by task_int.h
 * and, through it, by everything above; not by loops/.
 */
#ifndef WEFT_CORE_FUTURE_INT_H
#define WEFT_CORE_FUTURE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/future.h>

#include "sched_int.h"

enum {
    WEFT__F_PENDING = 0,
    WEFT__F_DONE,
    WEFT__F_FAILED,
    WEFT__F_CANCELLED,
};

struct weft_future {
    struct weft__loop *loop;
    void *result;
    char *msg;                 /* owned copy of the error message, or NULL */
    struct weft__list waiters; /* rnodes: tasks and done-callback handles */
    uint32_t refs;
    uint32_t gen; /* bumped when recycled; atomic (read by other threads) */
    int err;      /* 0, the failure code, or UV_ECANCELED */
    uint8_t state;
    bool is_task;
    bool retrieved; /* someone read the outcome (warnings) */
    bool side;      /* has a side record (side.c): task-local values, an owned
                     * name, a result destructor. In what was padding: a
                     * future stays 56 bytes, a task 192. */
};

/* Side records (core/side.c): what a few tasks and futures carry and most
 * do not - task-local values, a copied name, a result destructor - kept out
 * of the objects (a task is exactly three cache lines) in a per-loop open
 * addressing table keyed by the object's address (sched_int.h's
 * struct weft__side_map). f->side says a record exists, so objects without
 * one never look. */
struct weft__side {
    char *name;                  /* weft_task_set_name's copy (t->name points here) */
    void (*result_dtor)(void *); /* weft_future_set_result_dtor */
    uint32_t nvals;              /* room in vals */
    void **vals;                 /* task-local values, by key id - 1 */
};

/* side.c. Each is called only when f->side (cold). */
/* f is recycled: a result nobody read goes to its destructor, the record
 * (name included) is freed. After the unretrieved-error warning. */
void weft__side_release(struct weft_future *f);
/* A result arrived for f after it was done (a cancelled submit's late
 * reply, a late threadsafe completion): free it with f's destructor. */
void weft__side_drop_result(struct weft_future *f, void *result);
/* The loop closes: free what records are left (objects never released). */
void weft__side_close(struct weft__loop *l);

/* future.c */
void weft__future_init(struct weft_future *f, struct weft__loop *l, bool is_task);
/* A future or task is being recycled: warn if it failed and nobody ever
 * read its outcome (asyncio's "exception was never retrieved"). */
void weft__future_recycled(struct weft_future *f);
/* Complete f (pending only; UV_EINVAL otherwise). Takes ownership of msg. */
int weft__future_complete(struct weft_future *f, uint8_t state, void *result, int err, char *msg);
/* Read the outcome; reading a finished future's outcome counts as having
 * retrieved its error (see weft__future_recycled). */
static inline int weft__future_outcome(struct weft_future *f, void **result)
{
    if (f->state == WEFT__F_PENDING)
        return WEFT_EPENDING;
    f->retrieved = true;
    if (result != NULL)
        *result = f->state == WEFT__F_DONE ? f->result : NULL;
    return f->err;
}
void weft__future_add_waiter(struct weft_future *f, struct weft__rnode *rn);
void weft__future_remote_await(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d);
void weft__future_remote_withdraw(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d);
void weft__remote_record_fire(struct weft__loop *l, struct weft__handle *h);
void weft__remote_records_close(struct weft__loop *l);
void weft__remote_reply(struct weft__loop *rl, uintptr_t task, uint32_t seq, int err, void *res);
/* A remote wait's sequence number with this bit set names a proxy record
 * (weft_future_from_token), not a task; task.c's wait_seq never sets it. */
#define WEFT__PROXY_SEQ 0x80000000u
void weft__proxy_answer(struct weft__loop *l, void *rec, int err, void *res);
/* Cancel every pending proxy of l (weft_run's and a runtime stop's clean-up:
 * their answers are what let the loop run dry). */
void weft__loop_cancel_proxies(struct weft__loop *l);
/* Tokens (future.h): is this token's reference still there (counts a stale
 * one), and give it back (owner loop). */
bool weft__token_valid(struct weft_future *f, uint32_t gen);
void weft__token_release(struct weft_future *f);
/* Hooks: a pooled handle whose fn runs inline when f completes (f must be
 * on the caller's loop; the caller keeps f referenced while the hook is
 * attached). */
struct weft__handle *weft__hook_add(struct weft_future *f,
                                    void (*fn)(struct weft__handle *, struct weft_future *),
                                    void *arg);
void weft__hook_remove(struct weft__handle *h);

#endif /* WEFT_CORE_FUTURE_INT_H */

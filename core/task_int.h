/*
 * core/task_int.h - the task layer: struct weft_task, spawning, running
 * and switching tasks, the walk over a loop's tasks, the dump (internal to
 * core/).
 *
 * Layer map (base.h has it in full): leaves -> sched_int.h -> future_int.h ->
 * task_int.h -> wait_int.h -> sync/timeout/queue/combine/group/gen -> ext.h.
 * Includes future_int.h and the public <weft/task.h> only; knows deadline
 * scopes (timeout.h) by pointer only. Implemented by task.c (the dump by
 * loop.c, task-local values by side.c). Included by wait_int.h, and by loop.c
 * and future.c, whose tick and completions run and wake tasks.
 */
#ifndef WEFT_CORE_TASK_INT_H
#define WEFT_CORE_TASK_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <weft/task.h>

#include "future_int.h"

/* A deadline scope (the public weft/timeout.h; read by task.c and
 * timeout.c, which include it). */
struct weft_timeout;

/* 64-byte aligned, 192 bytes of fields: exactly three cache lines, none
 * spare. */
struct weft_task {
    _Alignas(64) struct weft_future fut; /* a task is a future (first member) */
    struct weft__rnode rn;               /* ready queue or a future's waiter list */
    struct weft__stack *stk;             /* own stack, or the host's when inline */
    weft_task_fn fn;
    void *arg;
    weft_future_t *awaiting; /* what it waits for (dump, cancel) */
    struct weft__timer tm;   /* sleep / await timeout */
    const char *name;
    const char *file;
    uint64_t id;
    uint32_t stack_size;
    int line;
    int wake_code;              /* what the pending suspension returns */
    uint32_t wait_seq;          /* per-suspension number (remote wake-ups) */
    uint8_t state;              /* weft_task_state_t */
    bool queued;                /* in the ready queue */
    bool cancel_pending : 1;    /* deliver UV_ECANCELED at the next suspension */
    bool cancel_msg : 1;        /* fut.msg is the cancel's reason (weft_task_cancel_msg),
                                 * the outcome's message only if the task ends
                                 * cancelled */
    bool yielded : 1;           /* shuffle only: queued by weft_yield, which runs it
                                 * after everything ready before it (docs/core.md) */
    bool remote_wait;           /* waiting on another loop's future; the reply is
                                 * parked in fut.result/fut.err, unused while the
                                 * task itself is pending */
    bool tm_timeout;            /* the call's own timer expiry is UV_ETIMEDOUT (not a
                                 * finished sleep) */
    uint8_t nocancel;           /* > 0: cancels and deadlines do not end its
                                 * suspensions (a cancel stays pending): one per
                                 * clean-up wait (weft__park) and per open
                                 * weft_nocancel_begin region */
    bool timed_out;             /* a deadline scope interrupted this suspension */
    uint8_t cancels;            /* cancel requests not withdrawn (weft_task_cancelling);
                                 * saturates at UINT8_MAX, which then sticks */
    struct weft_timeout *scope; /* innermost deadline scope, or NULL */
};

_Static_assert(sizeof(struct weft_task) == 192, "a task is three cache lines");

/* Tasks are carved 64 at a time from chunks of their own, which are walked
 * to find every live task (dump, weft_run's clean-up): unused slots and
 * recycled tasks are in a finished state. */
#define WEFT__TASK_CHUNK 64

static inline struct weft_task *weft__chunk_tasks(struct weft__chunk *c)
{
    return (struct weft_task *)weft__chunk_start(c, 64);
}

static inline bool weft__task_live(const struct weft_task *t)
{
    return t->state < WEFT_TASK_DONE;
}

/* A child started inline by t runs on t's own stack (see task.c). */
static inline struct weft_task *weft__inline_child(const struct weft_task *t)
{
    /* A remote wait's future belongs to another loop, which may have closed
     * and freed it: never read it from here. */
    if (t->state != WEFT_TASK_SUSPENDED || t->awaiting == NULL || t->remote_wait ||
        !t->awaiting->is_task)
        return NULL;
    struct weft_task *c = (struct weft_task *)t->awaiting;
    return c->stk != NULL && c->stk == t->stk ? c : NULL;
}

/* Every task slot of loop l, live or not: `WEFT__FOR_EACH_TASK(l, t) {...}`. */
#define WEFT__FOR_EACH_TASK(l, t)                                              \
    for (struct weft__chunk *c_ = (l)->task_chunks; c_ != NULL; c_ = c_->next) \
        for (struct weft_task *t = weft__chunk_tasks(c_), *e_ = t + WEFT__TASK_CHUNK; t < e_; t++)

/* loop.c: the dump's line for one task (weft_loop_dump, weft_run's
 * warning). */
void weft__dump_task(FILE *out, const struct weft_task *t);
/* loop.c: weft_run: main finished (or the loop ran dry, then main is
 * pending too): warn about every other live task and count them. Returns
 * how many. */
size_t weft__report_pending(struct weft__loop *l, const struct weft_task *main_task);

/* task.c */
/* "task 7 \"name\" (spawned at f.c:12)", for warnings. */
void weft__task_label(const struct weft_task *t, char *buf, size_t len);
void weft__task_wake(struct weft_task *t, int code);
void weft__task_timer_fired(struct weft__loop *l, struct weft__timer *tm);
void weft__sched_run_task(struct weft__loop *l, struct weft_task *t);
void weft__task_free(struct weft_task *t);
void weft__task_remote_wake(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d);
/* Suspend t and switch straight to task `next` of the same loop (SUSPENDED
 * and not queued, or CREATED and not queued), which resumes with wake code
 * `code`. Returns what t's suspension returns. UV_ENOMEM if `next` could not
 * get a stack. */
int weft__switch_to_task(struct weft__loop *l, struct weft_task *t, struct weft_task *next,
                         int code);
/* A task is cancelled (weft_task_cancel) or its deadline passed: end its
 * current suspension with `code`, as weft_task.h's cancellation rules say. */
int weft__task_interrupt(struct weft_task *t, int code);

/* side.c: t finished: its task-local values go to their destructors. */
void weft__side_task_finished(struct weft_task *t);
/* side.c: spawning child from parent (parent->fut.side): copy the parent's
 * task-local values. 0 or UV_ENOMEM (nothing copied). */
int weft__side_inherit(struct weft_task *parent, struct weft_task *child);

/* gen.c: t is a generator's body. Its consumer, which awaits it, is not
 * cancelled on its own when a cancel passes into the body: as in asyncio,
 * where the generator runs in the consumer's task, a body that catches the
 * cancel catches it for both. */
bool weft__gen_body(const struct weft_task *t);

#endif /* WEFT_CORE_TASK_INT_H */

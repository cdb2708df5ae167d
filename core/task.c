/*
 * core/task.c - tasks: spawn, the switch protocol, suspension points,
 * awaiting (same loop, inline, other loop), cancellation, weft_run.
 *
 * Switch protocol. A suspending task picks the next runnable itself: if the
 * head of the ready queue is a task and the tick budget lasts, it switches
 * straight to it (one switch per hand-over); otherwise it switches to the
 * scheduler context (the thread's own stack, in loop.c). Every place where a
 * switch lands calls after_switch(), which recycles the stack of a task that
 * finished and switched away for the last time (l->zombie): a stack can only
 * be released once nobody runs on it.
 *
 * Lazy stacks. A CREATED task owns no stack; it gets one when it first runs.
 * A task that awaits a CREATED task of its own loop runs it inline - a plain
 * call on its own stack, above its own frames - when there is room for the
 * child's full stack size (every stack is mapped WEFT__INLINE_RESERVE larger
 * than asked for this). The awaiter cannot run before the child finishes, so
 * nothing else ever needs the frames below. The child keeps its identity:
 * when it suspends, its context is saved on the shared stack descriptor and
 * it is resumed like any task. This is asyncio's `await coro()` and it keeps
 * trees of tasks (skynet) depth-first with a handful of stacks in use.
 *
 * COMPACT loops switch only through the scheduler, which swaps frame images
 * on the shared stack (stack.c) while it runs on the thread's stack.
 *
 * Sanitizers: every switch tells ASan (start/finish_switch_fiber) and TSan
 * (one fiber per stack) where execution goes.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <weft/task.h>
#include <weft/timeout.h> /* deadline scopes: task.c implements their waits */

#include "alloc.h"
#include "ctx.h"
#include "wait_int.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#define CHUNK        64
#define STACK_MARGIN 1024u /* slack for our own frames when starting inline */

static void task_entry(void *arg);

/* ---- pool ------------------------------------------------------------------ */

static struct weft_task *task_get(struct weft__loop *l)
{
    if (weft__list_empty(&l->free_tasks)) {
        /* Their own list: weft__chunk_tasks walks it to find every task. */
        struct weft_task *t =
            weft__chunk_carve(&l->task_chunks, 64, WEFT__TASK_CHUNK * sizeof(struct weft_task));
        if (t == NULL)
            return NULL;
        for (int i = 0; i < WEFT__TASK_CHUNK; i++) {
            t[i].fut.loop = l;
            t[i].rn.kind = WEFT__RN_TASK;
            t[i].tm.owner = WEFT__TM_TASK;
            t[i].state = WEFT_TASK_DONE; /* not live: dump and weft_run skip it */
            weft__list_push_back(&l->free_tasks, &t[i].rn.link);
        }
    }
    struct weft__list *n = weft__list_pop_front(&l->free_tasks);
    return WEFT_CONTAINER_OF(n, struct weft_task, rn.link);
}

void weft__task_free(struct weft_task *t)
{
    struct weft__loop *l = t->fut.loop;
    WEFT_ASSERT(t->stk == NULL && !t->queued);
    weft__future_recycled(&t->fut);
    if (__builtin_expect(t->fut.side, 0)) /* a copied name, a result destructor */
        weft__side_release(&t->fut);
    if (t->fut.msg != NULL) {
        weft__free(t->fut.msg);
        t->fut.msg = NULL;
    }
    __atomic_store_n(&t->fut.gen, t->fut.gen + 1, __ATOMIC_RELAXED);
    t->state = WEFT_TASK_DONE;
    weft__list_push_front(&l->free_tasks, &t->rn.link);
}

/* ---- switching ------------------------------------------------------------- */

static void after_switch(struct weft__loop *l)
{
    struct weft_task *z = l->zombie;
    if (z != NULL) {
        l->zombie = NULL;
        weft__stack_put(z->stk->pool, z->stk);
        z->stk = NULL;
        weft_future_unref(&z->fut); /* the loop's reference */
    }
}

#if defined(__SANITIZE_THREAD__)
static void *fiber_of(struct weft__loop *l, struct weft__stack *s)
{
    if (s == &l->sched)
        return l->sched_tsan_fiber;
    if (s->tsan_fiber == NULL)
        s->tsan_fiber = __tsan_create_fiber(0);
    return s->tsan_fiber;
}
#endif

/* Switch from the context running on `from` to the one saved on `to`.
 * dying: `from` will never be resumed. */
static void switch_to(struct weft__loop *l, struct weft__stack *from, struct weft__stack *to,
                      bool dying)
{
    l->st.switches++;
#if defined(__SANITIZE_ADDRESS__)
    void *fake = NULL;
    __sanitizer_start_switch_fiber(dying ? NULL : &fake, to->lo, to->size);
#endif
#if defined(__SANITIZE_THREAD__)
    __tsan_switch_to_fiber(fiber_of(l, to), 0);
#endif
    (void)dying;
    weft__ctx_switch(&from->sp, to->sp);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void sched_stack_bounds(struct weft__loop *l)
{
#if defined(__SANITIZE_ADDRESS__)
    if (l->sched.lo == NULL) {
        pthread_attr_t a;
        void *addr;
        size_t size;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            pthread_attr_getstack(&a, &addr, &size);
            pthread_attr_destroy(&a);
            l->sched.lo = addr;
            l->sched.size = size;
        }
    }
#else
    (void)l;
#endif
}

/* Give a CREATED task its stack and first frame. 0 or UV_ENOMEM. */
static int prepare(struct weft__loop *l, struct weft_task *t)
{
    struct weft__stack_pool *p = weft__pool_for(l, t->stack_size);
    struct weft__stack *s = p != NULL ? weft__stack_get(p) : NULL;
    if (s == NULL)
        return UV_ENOMEM;
    if (l->compact && weft__stack_activate(p, s) != 0) {
        weft__stack_put(p, s);
        return UV_ENOMEM;
    }
    t->stk = s;
    s->sp = weft__ctx_make(s->lo, s->size, task_entry, l);
    return 0;
}

static void finish(struct weft__loop *l, struct weft_task *t, int rc, void *res);

/* A CREATED task that cannot get a stack fails without running. */
static void fail_unstarted(struct weft__loop *l, struct weft_task *t, int rc)
{
    finish(l, t, rc, NULL);
    weft_future_unref(&t->fut);
}

void weft__task_label(const struct weft_task *t, char *buf, size_t len)
{
    snprintf(buf, len, "task %llu %s%s%s(spawned at %s:%d)", (unsigned long long)t->id,
             t->name ? "\"" : "", t->name ? t->name : "", t->name ? "\" " : "",
             t->file ? t->file : "?", t->line);
}

/* Stall reports per loop and minute: a loop that stalls all the time
 * should not also flood stderr. slow_tasks counts every stall. */
#define STALL_REPORTS   5u
#define STALL_WINDOW_NS (60ull * 1000u * 1000u * 1000u)

/* Report t, which held the loop for `ran` ns: counted in slow_reports, and
 * printed unless quiet, at most STALL_REPORTS times a minute. */
static void stall_report(struct weft__loop *l, const struct weft_task *t, uint64_t now,
                         uint64_t ran)
{
    if (l->stall_window_ns == 0 || now - l->stall_window_ns >= STALL_WINDOW_NS) {
        l->stall_window_ns = now;
        l->stall_reports = 0;
    }
    if (l->stall_reports >= STALL_REPORTS)
        return;
    l->stall_reports++;
    l->st.slow_reports++;
    if (l->quiet)
        return;
    char who[160];
    weft__task_label(t, who, sizeof(who));
    fprintf(stderr,
            "weft: stall: %s ran %.1f ms without suspending, holding loop %p past "
            "slow_task_ms = %.0f ms%s\n",
            who, (double)ran / 1e6, (void *)l, (double)l->slow_ns / 1e6,
            l->stall_reports == STALL_REPORTS
                ? " (the loop's last report this minute; stats.slow_tasks counts the rest)"
                : "");
}

/* Debug aid (opts.slow_task_ms): the running task stops running now; warn
 * if it held the loop longer than allowed, and start the next one's clock. */
static void slow_check(struct weft__loop *l)
{
    uint64_t now = uv_hrtime();
    const struct weft_task *t = l->current;
    if (t != NULL && now - l->ran_since_ns > l->slow_ns) {
        l->st.slow_tasks++;
        stall_report(l, t, now, now - l->ran_since_ns);
    }
    l->ran_since_ns = now;
}

/* Scheduler context: run t until it switches back. */
void weft__sched_run_task(struct weft__loop *l, struct weft_task *t)
{
    t->queued = false;
    if (t->stk == NULL) {
        int rc = prepare(l, t);
        if (rc != 0) {
            fail_unstarted(l, t, rc);
            return;
        }
        sched_stack_bounds(l);
    } else if (l->compact) {
        int rc = weft__stack_activate(t->stk->pool, t->stk);
        WEFT_ASSERT(rc == 0 && "out of memory saving a compact stack");
    }
    l->current = t;
    if (__builtin_expect(l->slow_ns != 0, 0))
        l->ran_since_ns = uv_hrtime();
    switch_to(l, &l->sched, t->stk, false);
    after_switch(l);
}

/* From a task that stops running (suspends or dies): hand over to the next
 * ready task directly when possible, else to the scheduler. */
static void leave(struct weft__loop *l, struct weft__stack *from, bool dying)
{
    if (__builtin_expect(l->slow_ns != 0, 0))
        slow_check(l);
    if (!l->compact && l->budget > 0) {
        weft__ready_pick(l);
        struct weft__list *n = l->ready.next;
        if (n != &l->ready) {
            struct weft__rnode *rn = WEFT_CONTAINER_OF(n, struct weft__rnode, link);
            if (rn->kind == WEFT__RN_TASK) {
                struct weft_task *next = WEFT_CONTAINER_OF(rn, struct weft_task, rn);
                weft__list_remove(n);
                next->queued = false;
                l->budget--;
                if (__builtin_expect(n == l->lag_probe, 0))
                    weft__lag_hit(l);
                if (next->stk == NULL) {
                    int rc = prepare(l, next);
                    if (rc != 0) {
                        fail_unstarted(l, next, rc);
                        goto to_scheduler;
                    }
                }
                if (next->stk == from) {
                    l->current = next; /* resumed ourselves: no switch */
                    return;
                }
                l->current = next;
                switch_to(l, from, next->stk, dying);
                return;
            }
        }
    }
to_scheduler:
    l->current = NULL;
    switch_to(l, from, &l->sched, dying);
}

/* Back in t after a suspension: if its scope's deadline ended it, mark the
 * scopes whose deadline passed (weft_timeout_end reports them). */
static inline void scope_woke(struct weft_task *t, int code)
{
    /* In a no-cancel region an UV_ETIMEDOUT is the call's own timeout. */
    if (__builtin_expect(t->scope != NULL, 0) && (code == UV_ETIMEDOUT || t->timed_out) &&
        t->nocancel == 0)
        weft__scope_mark(t->scope, uv_hrtime());
}

/* A pending cancel to deliver now (not inside a no-cancel region). Read
 * as two byte loads: gcc otherwise merges them into one 8-byte load of the
 * word whose first bytes (state, queued) were just stored by this thread or
 * by the scheduler, and such a load cannot take its data from the store
 * buffer - a store-forwarding stall on every resume that cost the switch
 * workload ~8 ns (16 -> 25 ns/op measured here). The relaxed atomic load of
 * nocancel keeps it a separate byte; it is this thread's own field. */
static inline bool cancel_due(const struct weft_task *t)
{
    return t->cancel_pending && __atomic_load_n(&t->nocancel, __ATOMIC_RELAXED) == 0;
}

/* Suspend the current task t; returns what the suspension returns. */
static int suspend(struct weft__loop *l, struct weft_task *t)
{
    t->state = WEFT_TASK_SUSPENDED;
    leave(l, t->stk, false);
    after_switch(l);
    WEFT_ASSERT(l->current == t);
    t->state = WEFT_TASK_RUNNING;
    int code = t->wake_code;
    if (cancel_due(t)) {
        t->cancel_pending = false;
        code = UV_ECANCELED;
    }
    scope_woke(t, code);
    return code;
}

/* ---- life of a task ---------------------------------------------------------- */

static void finish(struct weft__loop *l, struct weft_task *t, int rc, void *res)
{
    uint8_t fs;
    if (rc == 0) {
        t->state = WEFT_TASK_DONE;
        fs = WEFT__F_DONE;
    } else if (rc == UV_ECANCELED) {
        t->state = WEFT_TASK_CANCELLED;
        fs = WEFT__F_CANCELLED;
    } else {
        t->state = WEFT_TASK_FAILED;
        fs = WEFT__F_FAILED;
    }
    t->awaiting = NULL;
    t->cancel_pending = false;
    if (t->cancel_msg) { /* a cancel's reason: the message of a cancelled end only */
        t->cancel_msg = false;
        if (rc != UV_ECANCELED) {
            weft__free(t->fut.msg);
            t->fut.msg = NULL;
        }
    }
    t->scope = NULL; /* scopes left open by the body end with it */
    l->st.tasks_finished++;
    l->st.tasks_live--;
    int c = weft__future_complete(&t->fut, fs, rc == 0 ? res : NULL, rc, NULL);
    WEFT_ASSERT(c == 0);
    if (__builtin_expect(t->fut.side, 0)) /* task-local values: their destructors */
        weft__side_task_finished(t);
}

static void run_body(struct weft__loop *l, struct weft_task *t)
{
    void *res = NULL;
    t->state = WEFT_TASK_RUNNING;
    int rc = t->fn(t->arg, &res);
    if (rc > 0)
        rc = UV_EINVAL; /* bodies return 0 or a negative code */
    finish(l, t, rc, res);
}

static void task_entry(void *arg)
{
    struct weft__loop *l = arg;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    after_switch(l);
    struct weft_task *t = l->current;
    run_body(l, t);
    /* Dead: the next context to run recycles our stack (after_switch). */
    l->zombie = t;
    leave(l, t->stk, true);
    WEFT_ASSERT(!"a finished task was resumed");
}

int weft__spawn(weft_loop_t *loop, weft_task_fn fn, void *arg, const weft_task_opts_t *opts,
                weft_task_t **out, const char *file, int line)
{
    struct weft__loop *l = loop ? weft__L(loop) : weft__tls_loop;
    if (out != NULL)
        *out = NULL;
    if (fn == NULL || l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (!weft__loop_usable(l))
        return WEFT_ECLOSED;
    if (WEFT__WRONG_THREAD(l, "weft_spawn", WEFT__OBJ_NONE, NULL))
        return WEFT_EWRONGLOOP;
    size_t ss = l->default_stack;
    if (opts != NULL && opts->stack_size != 0) {
        if (opts->stack_size < 8192 || opts->stack_size > ((size_t)1 << 30))
            return UV_EINVAL;
        ss = weft__stack_round(opts->stack_size);
        if (l->compact && ss > l->pools[0].shared->size)
            return UV_EINVAL;
    }
    struct weft_task *t = task_get(l);
    if (t == NULL)
        return UV_ENOMEM;
    /* The spawner's task-local values (side.c): one flag read when it has
     * none. */
    struct weft_task *parent = weft__tls_loop == l ? l->current : NULL;
    if (__builtin_expect(parent != NULL && parent->fut.side, 0) &&
        weft__side_inherit(parent, t) != 0) {
        weft__list_push_front(&l->free_tasks, &t->rn.link);
        return UV_ENOMEM;
    }
    weft__future_init(&t->fut, l, true);
    t->fut.refs = out != NULL ? 2 : 1; /* the loop's, and the caller's */
    t->stk = NULL;
    t->fn = fn;
    t->arg = arg;
    t->awaiting = NULL;
    t->name = opts != NULL ? opts->name : NULL;
    t->file = file;
    t->line = line;
    t->id = l->next_task_id++;
    t->stack_size = (uint32_t)ss;
    t->wake_code = 0;
    t->state = WEFT_TASK_CREATED;
    t->cancel_pending = false;
    t->cancel_msg = false;
    t->yielded = false;
    t->cancels = 0;
    t->remote_wait = false;
    t->tm_timeout = false;
    t->nocancel = 0;
    t->timed_out = false;
    t->scope = NULL;
    t->queued = true;
    weft__ready_push(l, &t->rn);
    l->st.tasks_spawned++;
    l->st.tasks_live++;
    if (out != NULL)
        *out = t;
    return 0;
}

/* ---- waking ---------------------------------------------------------------- */

void weft__task_wake(struct weft_task *t, int code)
{
    if (t->queued || t->state != WEFT_TASK_SUSPENDED || weft__inline_child(t) != NULL)
        return;
    struct weft__loop *l = t->fut.loop;
    t->wake_code = code;
    weft__timer_disarm(l, &t->tm);
    if (weft__list_linked(&t->rn.link))
        weft__list_remove(&t->rn.link); /* from the awaited future's waiters */
    t->queued = true;
    weft__ready_push(l, &t->rn);
}

void weft__task_timer_fired(struct weft__loop *l, struct weft__timer *tm)
{
    (void)l;
    struct weft_task *t = WEFT_CONTAINER_OF(tm, struct weft_task, tm);
    /* Armed for the scope's deadline (arm_wait): interrupt the wait. The
     * scopes are marked expired by t itself when it resumes (scope_woke). */
    if (tm->scope) {
        weft__task_interrupt(t, UV_ETIMEDOUT);
        return;
    }
    weft__task_wake(t, t->tm_timeout ? UV_ETIMEDOUT : 0);
}

/* Waiter side of a cross-loop await: a = task, b = wait_seq, c = code,
 * d = result. Stale wake-ups (the task stopped waiting) are ignored. */
void weft__task_remote_wake(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    struct weft__loop *l = ctx;
    struct weft_task *t = (struct weft_task *)a;
    /* Every request is answered exactly once (future.c): this one is. */
    WEFT_ASSERT(l->remote_out > 0);
    l->remote_out--;
    if ((uint32_t)b & WEFT__PROXY_SEQ) { /* the waiter is a proxy future (future.c) */
        weft__proxy_answer(l, (void *)a, (int)(intptr_t)c, (void *)d);
        return;
    }
    if (!t->remote_wait || t->wait_seq != (uint32_t)b || t->state != WEFT_TASK_SUSPENDED ||
        t->queued)
        return;                    /* stale, or already woken by its timeout or a cancel */
    t->remote_wait = false;        /* answered: nothing to withdraw */
    t->awaiting = NULL;            /* the other loop's: may be gone (closed) */
    t->fut.err = (int)(intptr_t)c; /* parked: t itself is pending */
    t->fut.result = (void *)d;
    weft__task_wake(t, 0);
}

/* ---- public task API -------------------------------------------------------- */

void weft_task_ref(weft_task_t *t)
{
    if (t == NULL)
        return;
    WEFT__OWNER_ASSERT(t->fut.loop, "weft_task_ref", WEFT__OBJ_FUTURE, t);
    weft_future_ref(&t->fut);
}

void weft_task_unref(weft_task_t *t)
{
    if (t == NULL)
        return;
    WEFT__OWNER_ASSERT(t->fut.loop, "weft_task_unref", WEFT__OBJ_FUTURE, t);
    weft_future_unref(&t->fut);
}

weft_task_t *weft_task_current(void)
{
    struct weft__loop *l = weft__tls_loop;
    return l != NULL ? l->current : NULL;
}

const char *weft_task_name(const weft_task_t *t)
{
    return t != NULL && t->name != NULL ? t->name : "";
}

uint64_t weft_task_id(const weft_task_t *t)
{
    return t != NULL ? t->id : 0;
}

weft_task_state_t weft_task_state(const weft_task_t *t)
{
    return t != NULL ? (weft_task_state_t)t->state : WEFT_TASK_FAILED;
}

const char *weft_task_state_name(weft_task_state_t s)
{
    static const char *const names[] = {"created", "running", "suspended",
                                        "done",    "failed",  "cancelled"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "invalid";
}

weft_future_t *weft_task_future(weft_task_t *t)
{
    return t != NULL ? &t->fut : NULL;
}

int weft_task_result(const weft_task_t *t, void **result)
{
    return t != NULL ? weft__future_outcome((struct weft_future *)&t->fut, result) : UV_EINVAL;
}

const char *weft_task_message(const weft_task_t *t)
{
    return t != NULL && !t->cancel_msg ? t->fut.msg : NULL; /* a reason: not an outcome yet */
}

int weft_fail(int code, const char *message)
{
    struct weft_task *t = weft_task_current();
    if (t != NULL && message != NULL) {
        char *m = weft__strdup(message);
        if (m != NULL) {
            weft__free(t->fut.msg);
            t->fut.msg = m;
            t->cancel_msg = false;
        }
    }
    return code;
}

/* The reason of t's pending cancel, or NULL. */
static const char *cancel_reason(const struct weft_task *t)
{
    return t->cancel_msg ? t->fut.msg : NULL;
}

/* Keep a copy of msg as t's cancel reason, in fut.msg: the latest reason
 * replaces an earlier one, but the task's own message (weft_fail) stays. A
 * reason that cannot be copied is dropped; the cancel still goes on. */
static void set_cancel_reason(struct weft_task *t, const char *msg)
{
    if (msg == NULL || (t->fut.msg != NULL && !t->cancel_msg))
        return;
    char *m = weft__strdup(msg);
    if (m == NULL)
        return;
    weft__free(t->fut.msg);
    t->fut.msg = m;
    t->cancel_msg = true;
}

int weft_task_cancel(weft_task_t *t)
{
    return weft_task_cancel_msg(t, NULL);
}

int weft_task_cancel_msg(weft_task_t *t, const char *msg)
{
    if (t == NULL)
        return UV_EINVAL;
    struct weft__loop *l = t->fut.loop;
    if (t->state >= WEFT_TASK_DONE)
        return WEFT_EDONE;
    if (WEFT__WRONG_THREAD(l, "weft_task_cancel", WEFT__OBJ_FUTURE, t))
        return WEFT_EWRONGLOOP;
    if (t->cancels < UINT8_MAX)
        t->cancels++;
    set_cancel_reason(t, msg);
    switch (t->state) {
    case WEFT_TASK_CREATED:
        if (t->queued) {
            weft__lag_forget(l, &t->rn.link);
            weft__list_remove(&t->rn.link);
            t->queued = false;
        }
        finish(l, t, UV_ECANCELED, NULL);
        weft_future_unref(&t->fut); /* the loop's reference: it never ran */
        return 0;
    case WEFT_TASK_RUNNING:
        t->cancel_pending = true;
        return 0;
    default:
        break;
    }
    return weft__task_interrupt(t, UV_ECANCELED); /* SUSPENDED */
}

int weft_task_cancelling(const weft_task_t *t)
{
    return t != NULL ? t->cancels : UV_EINVAL;
}

int weft_task_uncancel(weft_task_t *t)
{
    if (t == NULL)
        return UV_EINVAL;
    struct weft__loop *l = t->fut.loop;
    if (WEFT__WRONG_THREAD(l, "weft_task_uncancel", WEFT__OBJ_FUTURE, t))
        return WEFT_EWRONGLOOP;
    /* A saturated count no longer knows how many requests it stands for:
     * it stays (a cancel is never withdrawn by mistake). */
    if (t->cancels > 0 && t->cancels < UINT8_MAX) {
        t->cancels--;
        if (t->cancels == 0 && weft__task_live(t)) {
            t->cancel_pending = false; /* every request withdrawn: nothing to deliver */
            if (t->cancel_msg) {
                weft__free(t->fut.msg);
                t->fut.msg = NULL;
                t->cancel_msg = false;
            }
        }
    }
    return t->cancels;
}

int weft__task_interrupt(struct weft_task *t, int code)
{
    WEFT_ASSERT(t->state == WEFT_TASK_SUSPENDED);
    bool timeout = code == UV_ETIMEDOUT;
    if (t->queued || t->nocancel) {
        /* Already woken (its wait is over), or in a clean-up wait: a cancel
         * waits for the next suspension; a passed deadline is seen there
         * anyway (scopes are level-triggered). */
        if (!timeout)
            t->cancel_pending = true;
        return 0;
    }
    struct weft_task *child = weft__inline_child(t);
    if (child != NULL) {
        /* Passed on; t resumes when the child is done and its await
         * returns the code, whatever the child's outcome (task.h). A child
         * that already finished (its hooks run) leaves only that. */
        if (timeout)
            t->timed_out = true;
        else
            t->cancel_pending = true;
        (void)weft_task_cancel_msg(child, timeout ? NULL : cancel_reason(t));
        return 0;
    }
    struct weft_future *f = t->awaiting;
    if (f != NULL && t->remote_wait) {
        /* The owner is told when t runs again (await_remote's withdraw),
         * with the generation of t's token - never a generation read now,
         * which may be a new occupant's of a recycled slot. */
        if (timeout)
            t->timed_out = true;
        weft__task_wake(t, code);
        return 0;
    }
    if (f != NULL && f->is_task) {
        /* As asyncio: pass the cancel on, resume when the child is done.
         * Unlike asyncio, the await then returns UV_ECANCELED even if the
         * child caught the cancel and finished (task.h): suspend() delivers
         * the pending cancel when the child's completion wakes t. A
         * generator's consumer is the exception (weft__gen_body). */
        struct weft_task *c = (struct weft_task *)f;
        if (weft_task_cancel_msg(c, timeout ? NULL : cancel_reason(t)) == 0) {
            if (timeout)
                t->timed_out = true;
            else if (!weft__gen_body(c))
                t->cancel_pending = true;
            return 0;
        }
    } else if (f != NULL) {
        /* Completing f wakes t, whose await then reports the code. */
        if (timeout)
            t->timed_out = true;
        const char *why = timeout ? NULL : cancel_reason(t);
        weft__future_complete(f, WEFT__F_CANCELLED, NULL, UV_ECANCELED,
                              why != NULL ? weft__strdup(why) : NULL);
        return 0;
    }
    weft__task_wake(t, code);
    return 0;
}

/* ---- suspension points ------------------------------------------------------ */

static struct weft_task *running_task(struct weft__loop **lp)
{
    struct weft__loop *l = weft__tls_loop;
    *lp = l;
    return l != NULL ? l->current : NULL;
}

/* A pending cancellation is delivered at the next suspension point, and a
 * passed scope deadline ends every suspension inside the scope - except in
 * a no-cancel region, where both wait for the first suspension after it. */
int weft__pre_suspend_slow(struct weft_task *t)
{
    if (t->nocancel != 0)
        return 0;
    if (t->cancel_pending) {
        t->cancel_pending = false;
        return UV_ECANCELED;
    }
    if (t->scope != NULL && t->scope->weft__eff != WEFT_FOREVER) {
        uint64_t now = uv_hrtime();
        if (now >= t->scope->weft__eff) {
            weft__scope_mark(t->scope, now);
            return UV_ETIMEDOUT;
        }
    }
    return 0;
}

/* The timer deadline of a wait: the earlier of its own and the scope's (in
 * a no-cancel region: its own). */
static uint64_t wait_deadline(const struct weft_task *t, uint64_t own)
{
    if (t->scope != NULL && t->nocancel == 0 && t->scope->weft__eff < own)
        return t->scope->weft__eff;
    return own;
}

/* Arm t's timer for a wait whose own deadline is `own` (UINT64_MAX: none),
 * or for its scope's if earlier. The timer remembers which (tm.scope): when
 * it fires the scope cannot be read - on a COMPACT loop it lives in frames
 * that may be saved away. 0 or UV_ENOMEM. */
static int arm_wait(struct weft__loop *l, struct weft_task *t, uint64_t own, bool timeout)
{
    uint64_t when = wait_deadline(t, own);
    t->tm_timeout = timeout;
    t->tm.scope = when != own;
    if (when == UINT64_MAX)
        return 0;
    return weft__timer_arm(l, &t->tm, when);
}

int weft__park(struct weft__loop *l, struct weft_task *t, uint64_t deadline_ns, bool nocancel)
{
    if (!nocancel && arm_wait(l, t, deadline_ns, true) != 0)
        return UV_ENOMEM;    /* clean-up waits (nocancel) ignore deadlines */
    t->nocancel += nocancel; /* on top of the task's own regions, if any */
    int rc = suspend(l, t);
    t->nocancel -= nocancel;
    weft__timer_disarm(l, &t->tm);
    return rc;
}

/* Compact loops: waiter records from a per-loop pool (see loop_int.h). */
static struct weft__waiter *waiter_copy_in(struct weft__loop *l, struct weft__waiter *w)
{
    if (weft__list_empty(&l->free_waiters)) {
        struct weft__waiter *a =
            weft__chunk_carve(&l->chunks, _Alignof(struct weft__waiter), CHUNK * sizeof(*a));
        if (a == NULL)
            return NULL;
        for (int i = 0; i < CHUNK; i++)
            weft__list_push_back(&l->free_waiters, &a[i].link);
    }
    struct weft__waiter *p =
        WEFT_CONTAINER_OF(weft__list_pop_front(&l->free_waiters), struct weft__waiter, link);
    p->val = w->val;
    p->prio = w->prio;
    return p;
}

static void waiter_copy_out(struct weft__loop *l, struct weft__waiter *w, struct weft__waiter *p)
{
    w->granted = p->granted;
    w->code = p->code;
    w->val = p->val;
    w->prio = p->prio;
    weft__list_push_front(&l->free_waiters, &p->link);
}

int weft__wait_on(struct weft__loop *l, struct weft_task *t, struct weft__list *q,
                  struct weft__waiter *w, uint64_t deadline_ns)
{
    struct weft__waiter *rec = w;
    if (l->compact && (rec = waiter_copy_in(l, w)) == NULL)
        return UV_ENOMEM;
    rec->task = t;
    rec->granted = false;
    rec->code = 0;
    rec->xw = NULL;
    weft__list_push_back(q, &rec->link);
    int rc;
    if (deadline_ns == UINT64_MAX && t->scope == NULL) {
        rc = suspend(l, t); /* no timer: the common case, kept short */
    } else {
        rc = weft__park(l, t, deadline_ns, false);
    }
    weft__list_remove(&rec->link); /* if still queued (not granted) */
    if (rec != w)
        waiter_copy_out(l, w, rec);
    if (w->granted) {
        if (rc == UV_ECANCELED)
            t->cancel_pending = true; /* came after the grant: deliver later */
        return w->code;
    }
    return rc != 0 ? rc : UV_ECANCELED; /* woken without a grant */
}

void weft__wait_on_nocancel(struct weft__loop *l, struct weft_task *t, struct weft__list *q,
                            struct weft__waiter *w)
{
    struct weft__waiter *rec = w;
    if (l->compact) {
        rec = waiter_copy_in(l, w);
        WEFT_ASSERT(rec != NULL && "out of memory for a compact loop's waiter record");
    }
    rec->task = t;
    rec->granted = false;
    rec->code = 0;
    rec->xw = NULL;
    weft__list_push_back(q, &rec->link);
    while (!rec->granted)
        (void)weft__park(l, t, UINT64_MAX, true);
    if (rec != w)
        waiter_copy_out(l, w, rec);
}

int weft__switch_to_task(struct weft__loop *l, struct weft_task *t, struct weft_task *next,
                         int code)
{
    WEFT_ASSERT(!next->queued && next != t);
    next->wake_code = code;
    if (l->compact) {
        /* Switches go through the scheduler: run next first. */
        if (arm_wait(l, t, UINT64_MAX, true) != 0)
            return UV_ENOMEM;
        next->queued = true;
        weft__list_push_front(&l->ready, &next->rn.link);
        l->shuffle_hold = l->shuffle; /* next runs next, shuffle or not */
        int crc = suspend(l, t);
        weft__timer_disarm(l, &t->tm);
        return crc;
    }
    if (next->stk == NULL) {
        int rc = prepare(l, next);
        if (rc != 0)
            return rc;
    }
    /* t waits for next: its scope's deadline still applies. */
    if (arm_wait(l, t, UINT64_MAX, true) != 0)
        return UV_ENOMEM;
    t->state = WEFT_TASK_SUSPENDED;
    if (__builtin_expect(l->slow_ns != 0, 0))
        slow_check(l);
    l->current = next;
    switch_to(l, t->stk, next->stk, false);
    after_switch(l);
    WEFT_ASSERT(l->current == t);
    weft__timer_disarm(l, &t->tm);
    t->state = WEFT_TASK_RUNNING;
    int rc = t->wake_code;
    if (cancel_due(t)) {
        t->cancel_pending = false;
        rc = UV_ECANCELED;
    }
    scope_woke(t, rc);
    return rc;
}

/* No-cancel regions share t->nocancel with the clean-up waits (weft__park):
 * both mean "cancels and deadlines do not end this task's suspensions". A
 * clean-up wait adds one while it waits, so regions stop one short of the
 * counter's end. */
int weft_nocancel_begin(void)
{
    struct weft__loop *l;
    struct weft_task *t = running_task(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t->nocancel >= UINT8_MAX - 1)
        return UV_EOVERFLOW;
    t->nocancel++;
    return 0;
}

int weft_nocancel_end(void)
{
    struct weft__loop *l;
    struct weft_task *t = running_task(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (t->nocancel == 0)
        return UV_EINVAL; /* no region to end */
    t->nocancel--;
    return 0;
}

int weft_yield(void)
{
    struct weft__loop *l;
    struct weft_task *t = running_task(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    t->wake_code = 0;
    t->queued = true;
    weft__ready_push(l, &t->rn);
    if (__builtin_expect(!l->shuffle, 1))
        return suspend(l, t);
    /* The shuffle keeps a yield's promise: what was ready runs first. */
    t->yielded = true;
    rc = suspend(l, t);
    t->yielded = false;
    return rc;
}

int weft_sleep(uint64_t ms)
{
    struct weft__loop *l;
    struct weft_task *t = running_task(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (ms == 0)
        return weft_yield();
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    if (arm_wait(l, t, weft__deadline_after(ms), false) != 0)
        return UV_ENOMEM;
    return suspend(l, t);
}

/* Run a CREATED child inline on t's stack (see the head comment). */
static int await_inline(struct weft__loop *l, struct weft_task *t, struct weft_task *c,
                        void **result)
{
    weft__lag_forget(l, &c->rn.link);
    weft__list_remove(&c->rn.link);
    c->queued = false;
    c->stk = t->stk;
    t->awaiting = &c->fut; /* with c->stk == t->stk: c runs inline */
    t->state = WEFT_TASK_SUSPENDED;
    if (__builtin_expect(l->slow_ns != 0, 0))
        slow_check(l); /* t stops running; c starts */
    l->current = c;
    l->st.tasks_inline++;
    run_body(l, c);
    if (__builtin_expect(l->slow_ns != 0, 0))
        slow_check(l); /* c finished; t runs again */
    l->current = t;
    t->state = WEFT_TASK_RUNNING;
    t->awaiting = NULL;
    c->stk = NULL;
    int rc;
    if (cancel_due(t)) {
        /* Cancelled while the child ran (weft__task_interrupt passed it on):
         * UV_ECANCELED, even if the child caught it and finished. */
        t->cancel_pending = false;
        rc = UV_ECANCELED;
    } else {
        rc = weft__future_outcome(&c->fut, result);
    }
    weft_future_unref(&c->fut); /* the loop's reference */
    return rc;
}

static bool can_inline(struct weft_task *t, struct weft_future *f)
{
    if (!f->is_task)
        return false;
    struct weft_task *c = (struct weft_task *)f;
    if (c->state != WEFT_TASK_CREATED || !c->queued || !weft__list_empty(&f->waiters))
        return false;
    char *sp = __builtin_frame_address(0);
    size_t room = (size_t)(sp - t->stk->lo);
    return sp > t->stk->lo && room >= (size_t)c->stack_size + STACK_MARGIN;
}

/* Wait for f of another loop; the token's reference travels with the
 * request and stays with the owner. Every request is answered exactly once
 * (see future.c): remote_out counts the answers this loop still expects. */
static int await_remote(struct weft__loop *l, struct weft_task *t, struct weft_future *f,
                        uint32_t gen, bool *sent, void **result)
{
    t->remote_wait = true;
    t->awaiting = f;
    uint32_t seq = ++t->wait_seq;
    uintptr_t b = (uintptr_t)gen | ((uintptr_t)seq << 32);
    l->remote_out++;
    int rc =
        weft__post(f->loop, weft__future_remote_await, (uintptr_t)f, b, (uintptr_t)t, (uintptr_t)l);
    *sent = rc == 0 || rc == WEFT_ECLOSED; /* a closed loop needs no reference back */
    if (rc != 0) {
        l->remote_out--;
        t->remote_wait = false;
        t->awaiting = NULL;
        weft__timer_disarm(l, &t->tm);
        return rc;
    }
    /* Woken by the owner's reply, by our timeout timer (UV_ETIMEDOUT), or by
     * cancellation or a scope deadline (weft__task_interrupt). A reply that
     * arrives after that finds remote_wait cleared or a newer wait_seq and
     * is dropped. */
    rc = suspend(l, t);
    if (t->remote_wait) {
        /* Woken before the reply: take the request back, and cancel f too
         * when a cancel or a scope deadline ended the wait (as a local await
         * does; our own timeout leaves f alone). The owner answers the
         * withdraw - or has answered the request already. */
        uintptr_t cancel = rc == UV_ECANCELED || t->timed_out;
        int wrc = weft__post(f->loop, weft__future_remote_withdraw, (uintptr_t)f, b, (uintptr_t)t,
                             cancel);
        (void)wrc; /* WEFT_ECLOSED: its close answered every request (ECLOSED) */
        t->remote_wait = false;
    }
    t->awaiting = NULL;
    int err = t->fut.err;
    void *res = t->fut.result;
    t->fut.err = 0; /* t is pending: keep its outcome fields clean */
    t->fut.result = NULL;
    if (rc != 0)
        return rc;
    if (result != NULL)
        *result = err == 0 ? res : NULL;
    return err;
}

/* timeout_ms < 0: none. tok != NULL: f comes from a token of another loop
 * and *sent says whether its reference went with a request (else f must be
 * on the caller's loop). */
static int await_common(struct weft_future *f, const weft_future_token_t *tok, bool *sent,
                        int64_t timeout_ms, void **result)
{
    struct weft__loop *l;
    struct weft_task *t = running_task(&l);
    if (result != NULL)
        *result = NULL;
    if (t == NULL)
        return WEFT_ENOTASK;
    if (f == NULL)
        return UV_EINVAL;
    if (f == &t->fut)
        return WEFT_EDEADLK;
    if (f->loop != l) {
        /* A pointer to another loop's future says nothing about what is in
         * that slot by now: only a token (taken on its loop) names it. */
        if (tok == NULL)
            return WEFT_EWRONGLOOP;
    } else if (f->state != WEFT__F_PENDING) {
        return weft__future_outcome(f, result);
    }
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    /* 0 = do not wait. A future of another loop cannot be read from here,
     * so for it "not waiting" means UV_ETIMEDOUT straight away. */
    if (timeout_ms == 0)
        return UV_ETIMEDOUT;
    uint64_t own = timeout_ms > 0 ? uv_hrtime() + (uint64_t)timeout_ms * 1000000u : UINT64_MAX;
    if (arm_wait(l, t, own, true) != 0)
        return UV_ENOMEM;
    if (timeout_ms < 0 && f->loop == l && can_inline(t, f)) {
        rc = await_inline(l, t, (struct weft_task *)f, result);
        weft__timer_disarm(l, &t->tm);
        scope_woke(t, rc);
    } else if (f->loop != l) {
        rc = await_remote(l, t, f, tok->weft__gen, sent, result);
    } else {
        t->awaiting = f;
        t->wait_seq++;
        weft__future_add_waiter(f, &t->rn);
        rc = suspend(l, t);
        t->awaiting = NULL;
        if (weft__list_linked(&t->rn.link) && !t->queued)
            weft__list_remove(&t->rn.link);
        if (rc == 0)
            rc = weft__future_outcome(f, result);
    }
    if (t->timed_out) { /* a scope deadline cut the wait short */
        t->timed_out = false;
        if (result != NULL)
            *result = NULL;
        rc = UV_ETIMEDOUT;
    }
    return rc;
}

int weft_await(weft_future_t *f, void **result)
{
    return await_common(f, NULL, NULL, -1, result);
}

int weft_await_timeout(weft_future_t *f, uint64_t timeout_ms, void **result)
{
    if (timeout_ms >= WEFT__MS_MAX) /* WEFT_FOREVER, or too long: no timeout */
        return await_common(f, NULL, NULL, -1, result);
    return await_common(f, NULL, NULL, (int64_t)timeout_ms, result);
}

int weft_await_task(weft_task_t *t, void **result)
{
    return await_common(t != NULL ? &t->fut : NULL, NULL, NULL, -1, result);
}

static int await_token(weft_future_token_t tok, int64_t timeout_ms, void **result)
{
    struct weft_future *f = tok.weft__f;
    if (result != NULL)
        *result = NULL;
    if (f == NULL)
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK; /* the token is still the caller's */
    if (f->loop != weft__tls_loop) {
        bool sent = false;
        int rc = await_common(f, &tok, &sent, timeout_ms, result);
        if (!sent) { /* answered without asking (a pending cancel, timeout 0, ...) */
            int drc = weft_future_token_drop(tok);
            (void)drc; /* UV_ENOMEM: the reference leaks until the loop closes */
        }
        return rc;
    }
    /* The token's future is on this loop: an ordinary await, then give
     * the reference back here. */
    if (!weft__token_valid(f, tok.weft__gen))
        return UV_EINVAL;
    int rc = await_common(f, NULL, NULL, timeout_ms, result);
    weft__token_release(f);
    return rc;
}

int weft_await_token(weft_future_token_t tok, void **result)
{
    return await_token(tok, -1, result);
}

int weft_await_token_timeout(weft_future_token_t tok, uint64_t timeout_ms, void **result)
{
    if (timeout_ms >= WEFT__MS_MAX) /* WEFT_FOREVER, or too long: no timeout */
        return await_token(tok, -1, result);
    return await_token(tok, (int64_t)timeout_ms, result);
}

/* ---- asyncio.run --------------------------------------------------------------- */

int weft_run_ex(weft_task_fn main, void *arg, const weft_loop_opts_t *opts, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (main == NULL)
        return UV_EINVAL;
    if (weft__tls_loop != NULL)
        return WEFT_EREENTRANT;
    weft_loop_t *loop = weft__malloc(sizeof(*loop));
    if (loop == NULL)
        return UV_ENOMEM;
    int rc = weft_loop_init(loop, opts);
    if (rc != 0) {
        weft__free(loop);
        return rc;
    }
    struct weft__loop *l = weft__L(loop);
    weft_task_t *t;
    rc = weft_spawn(loop, main, arg, &t);
    if (rc == 0) {
        rc = weft__loop_run_until(l, &t->fut);
        if (rc == 0) {
            /* Left behind (asyncio.run cancels them too): say which, and
             * what each waits for, before the cancels change that. */
            weft__report_pending(l, t);
            rc = weft_task_result(t, result);
            if (rc == WEFT_EPENDING) /* the loop ran dry: main waits forever */
                weft_task_cancel(t);
        }
        weft_task_unref(t);
    }
    /* Cancel what is left and let it unwind. */
    WEFT__FOR_EACH_TASK(l, x)
    {
        if (weft__task_live(x))
            weft_task_cancel(x);
    }
    weft__loop_cancel_proxies(l);
    int rc2 = weft_loop_run(loop);
    int rc3 = weft_loop_close(loop);
    /* Busy: timers left, answers from other loops still to come, or posts
     * that got in before close shut the door. Run them out; each round
     * delivers what made the loop busy, and the door stays shut. */
    for (int round = 0; rc3 == UV_EBUSY && round < 1000; round++) {
        rc2 = weft_loop_run(loop);
        rc3 = weft_loop_close(loop);
    }
    if (rc3 == 0)
        weft__free(loop);
    /* else: still busy after 1000 rounds (a uv handle of the user's that
     * never closes?): leak the loop rather than free memory that a poster
     * or another loop may still touch. */
    if (rc == 0 && rc2 != 0)
        rc = rc2;
    if (rc == 0 && rc3 != 0)
        rc = rc3;
    return rc;
}

int weft_run(weft_task_fn main, void *arg, void **result)
{
    return weft_run_ex(main, arg, NULL, result);
}

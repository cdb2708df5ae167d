/*
 * core/loop_int.h - the private structures of a loop, its tasks, futures and
 * callback handles (internal to core/).
 *
 * Everything here belongs to one loop and is touched only on its thread; the
 * only cross-thread entry is the inbox. Objects come from per-loop free lists
 * and are never returned to the allocator before the loop closes, which is
 * what lets a stale cross-thread message be recognised by a generation
 * number instead of crashing.
 *
 * The ready queue holds "runnables": tasks to resume and callback handles to
 * run, in one FIFO, so call_soon callbacks, done callbacks and woken tasks
 * keep asyncio's global order. A future's waiter list holds runnables too (a
 * waiting task, or a done-callback handle), so completion moves them to the
 * ready queue in registration order.
 */
#ifndef WEFT_CORE_LOOP_INT_H
#define WEFT_CORE_LOOP_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <weft/loop.h>
#include <weft/task.h>
#include <weft/sync.h>
#include <weft/timeout.h>

#include "heap.h"
#include "inbox.h"
#include "list.h"
#include "stack.h"
#include "xwait.h"

#define WEFT_ASSERT(cond)                                 \
    do {                                                  \
        if (__builtin_expect(!(cond), 0))                 \
            weft__assert_fail(#cond, __FILE__, __LINE__); \
    } while (0)
__attribute__((noreturn)) void weft__assert_fail(const char *what, const char *file, int line);

enum {
    WEFT__RN_TASK = 1,
    WEFT__RN_HANDLE = 2
};
enum {
    WEFT__TM_HANDLE = 1,
    WEFT__TM_TASK = 2
};

#define WEFT__MAX_POOLS 4
/* Extra stack mapped above what a task asks for: room for children that
 * start inline on the task's stack (see task.c), so every task still gets
 * its full requested size. */
#define WEFT__INLINE_RESERVE (16u * 1024u)
#define WEFT__INBOX_SLOTS    4096u
#define WEFT__TICK_BUDGET    256
/* Idle trimming of pooled stacks: keep this many warm, trim at most this
 * many per idle pass, and only stacks unused for a whole window. */
#define WEFT__STACK_KEEP     256u
#define WEFT__TRIM_BUDGET    64u
#define WEFT__TRIM_WINDOW_NS (1000u * 1000u * 1000u)

struct weft__chunk {
    struct weft__chunk *next;
};

struct weft__rnode {
    struct weft__list link; /* ready queue, a future's waiters, or a free list */
    uint8_t kind;
};

/* What a handle does when it runs. */
enum {
    WEFT__H_CALLBACK = 1, /* fn(arg): call_soon / call_later / call_at */
    WEFT__H_FUTURE_CB,    /* ffn(fut, arg): a done callback */
    WEFT__H_REMOTE_WAKE,  /* post a foreign waiter's wake-up to its loop */
    WEFT__H_HOOK,         /* hook(h, fut), called inline at completion */
};

enum {
    WEFT__HS_FREE = 0,
    WEFT__HS_READY,
    WEFT__HS_TIMER,
    WEFT__HS_WAITING,
    WEFT__HS_RUNNING
};

struct weft__loop;

struct weft__handle {
    struct weft__rnode rn;
    struct weft__timer tm;
    struct weft__loop *loop;
    uint64_t gen;
    uint8_t what, state;
    union {
        weft_cb_fn fn;
        weft_future_cb ffn;
        void (*hook)(struct weft__handle *h, struct weft_future *f);
    } u;
    void *arg;
    weft_future_t *fut; /* FUTURE_CB / REMOTE_WAKE: the future (referenced) */
    /* REMOTE_WAKE: who waits, on which loop; rlink is in the loop's
     * remote_records while the record waits (closing fails them) */
    struct weft__list rlink;
    struct weft__loop *rloop;
    struct weft_task *rtask;
    uint32_t rseq;
};

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

/* Tasks are carved 64 at a time from chunks of their own, which are walked
 * to find every live task (dump, weft_run's clean-up): unused slots and
 * recycled tasks are in a finished state. */
#define WEFT__TASK_CHUNK 64

/* The one way pooled objects get memory (loop.c): a zeroed chunk whose
 * objects start at an `align`-aligned address (a power of two), linked into
 * *list and freed when the loop closes - so a stale pointer another thread
 * holds always points at memory of the same type until then. Returns the
 * aligned start, or NULL. weft__chunk_start finds that start again. */
void *weft__chunk_carve(struct weft__chunk **list, size_t align, size_t bytes);
static inline void *weft__chunk_start(struct weft__chunk *c, size_t align)
{
    return (void *)(((uintptr_t)(c + 1) + align - 1) & ~(uintptr_t)(align - 1));
}

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

/* Side records (core/side.c): what a few tasks and futures carry and most
 * do not - task-local values, a copied name, a result destructor - kept out
 * of the objects (a task is exactly three cache lines) in a per-loop open
 * addressing table keyed by the object's address. f->side says a record
 * exists, so objects without one never look. */
struct weft__side {
    char *name;                  /* weft_task_set_name's copy (t->name points here) */
    void (*result_dtor)(void *); /* weft_future_set_result_dtor */
    uint32_t nvals;              /* room in vals */
    void **vals;                 /* task-local values, by key id - 1 */
};
struct weft__side_slot {
    const void *key;
    struct weft__side *rec;
};
struct weft__side_map {
    struct weft__side_slot *slots; /* cap slots, a power of two (or NULL) */
    size_t cap, n;
};
/* A signal watcher (core/loopx.c); signum 0 = stopped, reusable. */
struct weft__sig {
    uv_signal_t h;
    struct weft__sig *next;
    struct weft__loop *loop;
    void (*cb)(int signum, void *arg);
    void *arg;
    int signum;
};

struct weft__loop {
    /* Hot scheduling state first. */
    struct weft_task *current; /* running task, NULL in the scheduler */
    struct weft__list ready;   /* rnodes */
    int budget;                /* runnables left in this tick */
    bool compact;
    bool debug;                                     /* owner-thread assertions (debug mode) */
    bool shuffle;                                   /* weft__ready_pick shuffles the queue */
    bool shuffle_hold;                              /* the head is a hand-over: run it first */
    struct weft__stack sched;                       /* the scheduler's context (thread stack) */
    struct weft_task *zombie;                       /* finished task whose stack is still in use */
    struct weft__stack_pool pools[WEFT__MAX_POOLS]; /* [0]: default size */
    unsigned npools;
    size_t default_stack;
    struct weft__chunk *chunks; /* every pooled object's memory */

    /* Free lists (rnode-linked for tasks/handles, cheap singly for futures). */
    struct weft__list free_tasks;
    struct weft__list free_handles;
    struct weft_future *free_futures; /* linked through ->result */
    struct weft__list free_gens;      /* generator records (gen.c) */
    struct weft__list free_waiters;   /* compact loops' waiter records (task.c) */
    /* Other message sources drained by the loop (the runtime's mesh of
     * rings; later channels and I/O): see struct weft__source. */
    struct weft__list sources;

    struct weft__heap timers;
    uint64_t next_task_id;
    /* Crossing loops (future.c, task.c). tokens_live: tokens of this loop's
     * futures not yet used. remote_out: this loop's requests to other loops
     * (REMOTE_AWAIT) not yet answered - each is answered exactly once, and
     * until then the other loop may post to this one, so this loop neither
     * runs out of work nor closes. remote_records: REMOTE_WAKE handles of
     * other loops' waiters, failed with WEFT_ECLOSED when this loop closes. */
    uint64_t tokens_live;
    uint64_t remote_out;
    uint32_t proxy_seq;        /* numbers proxies' remote waits (future.c) */
    struct weft__list proxies; /* proxies not answered yet (future.c) */
    struct weft__list remote_records;
    struct weft__chunk *task_chunks; /* tasks, walked by dump and weft_run */

    uv_loop_t uv;
    uv_async_t async;
    uv_timer_t uv_timer;
    struct weft__inbox inbox;

    weft_loop_stats_t st;
    uint64_t idle_poll_ns; /* inbox polling before sleep; 0 = none */
    uint64_t slow_ns;      /* warn about a task running this long; 0 = off */
    uint64_t ran_since_ns; /* when the running task got the CPU (slow_ns) */
    bool quiet;            /* count warnings but do not print them */

    /* Debug mode (docs/core.md, "Debug mode"). */
    uint64_t stall_window_ns; /* start of the slow-task reports' current minute */
    uint32_t stall_reports;   /* reports made in that minute (at most 5) */
    long owner_tid;           /* the thread running the loop (debug messages) */
    uint64_t seed;            /* the shuffle's seed, as printed */
    uint64_t rng;             /* the shuffle's xorshift state: seed and loop index */
    bool running, stopping, closed, initialised;
    void *sched_tsan_fiber;
    uint32_t magic;

    /* Cold extras (side.c, loopx.c). */
    struct weft__side_map side;
    struct weft__sig *sigs; /* every watcher made, active or stopped */
    unsigned sigs_active;   /* started watchers: libuv is polled every tick */
};

#define WEFT__LOOP_MAGIC 0x77656674u /* "weft" */

_Static_assert(sizeof(struct weft__loop) <= WEFT_LOOP_SIZE, "WEFT_LOOP_SIZE too small");
_Static_assert(sizeof(struct weft_task) == 192, "a task is three cache lines");

static inline struct weft__loop *weft__L(weft_loop_t *l)
{
    return (struct weft__loop *)(void *)l;
}
static inline weft_loop_t *weft__pub(struct weft__loop *l)
{
    return (weft_loop_t *)(void *)l;
}

extern __thread struct weft__loop *weft__tls_loop;

/* A public call's loop argument: NULL = the loop running on this thread
 * (NULL if none), for every call that takes a loop (loop.h). */
static inline struct weft__loop *weft__L_cur(const weft_loop_t *l)
{
    return l != NULL ? (struct weft__loop *)(uintptr_t)(const void *)l : weft__tls_loop;
}

/* A full (seq_cst) fence, the same instruction in every build. gcc warns
 * (-Wtsan) that ThreadSanitizer does not model fences; it does not need to:
 * the slots and rings are ordered by release/acquire pairs, which TSan
 * checks, and the fences only order the sleep announcement against the
 * producers' flag load (lost wake-ups, which no race detector sees). An
 * earlier TSan build replaced the fence with an RMW of one global dummy,
 * which gave TSan happens-before edges between unrelated threads that
 * production does not have, and so could hide real races. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
static inline void weft__fence_seq_cst(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
#pragma GCC diagnostic pop

/* ---- debug mode (docs/core.md, "Debug mode") -------------------------------
 *
 * Loop-only calls check that they run on the loop's thread while it runs.
 * Calls that return WEFT_EWRONGLOOP keep doing so outside debug mode, and
 * test the debug flag only once they know the thread is wrong: no cost on
 * the right thread beyond the check they always made. Calls that have no
 * error return (ref/unref, weft_handle_cancel) check only in debug mode,
 * behind one predictable branch on l->debug. */

/* What an owner check names. */
enum {
    WEFT__OBJ_NONE = 0,
    WEFT__OBJ_FUTURE, /* a future or a task (labelled as a task) */
    WEFT__OBJ_HANDLE,
    WEFT__OBJ_OTHER, /* a primitive bound to the loop */
};
/* The call `call` on object obj (kind WEFT__OBJ_*) of loop l came from the
 * wrong thread while l runs: in debug mode print who and where, and abort;
 * else return true (the caller returns WEFT_EWRONGLOOP). */
bool weft__wrong_thread_slow(const struct weft__loop *l, const char *call, int kind,
                             const void *obj, const char *file, int line);
/* Debug mode only: abort unless the calling thread may touch l now. */
void weft__owner_check(const struct weft__loop *l, const char *call, int kind, const void *obj,
                       const char *file, int line);

/* True (WEFT_EWRONGLOOP) if l runs on another thread; aborts instead in
 * debug mode. */
#define WEFT__WRONG_THREAD(l, call, kind, obj)                     \
    (__builtin_expect((l)->running && weft__tls_loop != (l), 0) && \
     weft__wrong_thread_slow((l), (call), (kind), (obj), __FILE__, __LINE__))
/* Debug mode: abort if l runs on another thread. */
#define WEFT__OWNER_ASSERT(l, call, kind, obj)                                 \
    do {                                                                       \
        if (__builtin_expect((l)->debug, 0))                                   \
            weft__owner_check((l), (call), (kind), (obj), __FILE__, __LINE__); \
    } while (0)

/* The shuffle: move a pseudo-random one of the first few runnables of the
 * ready queue to its head, keeping the orders docs/core.md promises under
 * shuffle. Called before every pick of the next runnable. */
void weft__shuffle_step(struct weft__loop *l);
static inline void weft__ready_pick(struct weft__loop *l)
{
    if (__builtin_expect(l->shuffle, 0))
        weft__shuffle_step(l);
}
/* The runtime (loops/) numbers its loops: the shuffle mixes the index into
 * each loop's stream, so every loop of a run gets its own, replayable. */
void weft__loop_set_index(struct weft__loop *l, unsigned idx);

/* Small hot helpers, inline so that every file's fast path has them. */
static inline void weft__ready_push(struct weft__loop *l, struct weft__rnode *rn)
{
    weft__list_push_back(&l->ready, &rn->link);
}

static inline bool weft__loop_usable(const struct weft__loop *l)
{
    return l != NULL && l->magic == WEFT__LOOP_MAGIC && l->initialised && !l->closed;
}

static inline void weft__timer_disarm(struct weft__loop *l, struct weft__timer *t)
{
    if (t->armed)
        weft__heap_remove(&l->timers, t);
}

/* loop.c */
struct weft__handle *weft__handle_get(struct weft__loop *l);
void weft__handle_put(struct weft__loop *l, struct weft__handle *h);
int weft__timer_arm(struct weft__loop *l, struct weft__timer *t, uint64_t deadline_ns);
int weft__post(struct weft__loop *l, weft__inbox_fn fn, uintptr_t a, uintptr_t b, uintptr_t c,
               uintptr_t d);
int weft__loop_run_until(struct weft__loop *l, weft_future_t *until);
/* A message source besides the inbox: drain() runs every iteration (it
 * takes what arrived and runs or queues it); pending() is asked while the
 * loop polls before sleeping and after it announced sleep (then after a
 * seq_cst fence: a producer publishes, fences, and reads the flag with
 * weft__loop_wake_if_sleeping). The record is the caller's; it stays
 * registered until removed. Add and remove on the loop's thread, or before
 * it runs. */
struct weft__source {
    struct weft__list link;
    void (*drain)(void *arg);
    bool (*pending)(void *arg);
    void *arg;
};
void weft__loop_add_source(struct weft__loop *l, struct weft__source *s);
void weft__loop_remove_source(struct weft__source *s);
/* Any thread, after publishing a message l will find through ext.pending()
 * (with a release store): wake l if it announced sleep. The seq_cst fence
 * here pairs with the one after the loop's announcement (block() in
 * loop.c): either the loop sees the message before it sleeps, or this sees
 * the announcement and writes the eventfd. */
void weft__loop_wake_if_sleeping(struct weft__loop *l);

/* The dump's line for one task (weft_loop_dump, weft_run's warning). */
void weft__dump_task(FILE *out, const struct weft_task *t);
/* weft_run: main finished (or the loop ran dry, then main is pending too):
 * warn about every other live task and count them. Returns how many. */
size_t weft__report_pending(struct weft__loop *l, const struct weft_task *main_task);

/* task.c */
/* "task 7 \"name\" (spawned at f.c:12)", for warnings. */
void weft__task_label(const struct weft_task *t, char *buf, size_t len);
struct weft__stack_pool *weft__pool_for(struct weft__loop *l, size_t size);
void weft__task_wake(struct weft_task *t, int code);
void weft__task_timer_fired(struct weft__loop *l, struct weft__timer *tm);
void weft__sched_run_task(struct weft__loop *l, struct weft_task *t);
void weft__task_free(struct weft_task *t);
void weft__task_remote_wake(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d);

/* Waiting (task.c). A task waiting on one of the primitives (sync, queue,
 * combinators, groups) parks: it is SUSPENDED with no awaited future and is
 * woken by weft__task_wake(). A weft__waiter is the record a primitive keeps
 * in its FIFO; the waker fills it in and grants it before waking the task,
 * so a grant is never lost to a cancel that arrives in between. */
struct weft__waiter {
    struct weft__list link;
    struct weft_task *task;
    void *val;    /* payload, in either direction */
    int64_t prio; /* payload */
    int code;     /* what the granted wait returns */
    bool granted;
    /* A select's case (core/xwait.h): granted only if the select can be
     * claimed with xtag; NULL for a plain wait. */
    struct weft__xwait *xw;
    uint32_t xtag;
};

/* Checks every suspension point makes first: a pending cancel
 * (UV_ECANCELED) or a passed scope deadline (UV_ETIMEDOUT), else 0. */
int weft__pre_suspend_slow(struct weft_task *t);
static inline int weft__pre_suspend(struct weft_task *t)
{
    if (__builtin_expect(!t->cancel_pending && t->scope == NULL, 1))
        return 0;
    return weft__pre_suspend_slow(t);
}
/* Park t (the running task) until woken, until deadline_ns (absolute,
 * UINT64_MAX = none) or until its scope's deadline. Returns the wake code,
 * UV_ETIMEDOUT or UV_ECANCELED. Does not do weft__pre_suspend's checks.
 * nocancel: only an explicit wake ends it; cancels stay pending, deadlines
 * are ignored. */
int weft__park(struct weft__loop *l, struct weft_task *t, uint64_t deadline_ns, bool nocancel);
/* Queue w on q and park. Returns w->code if granted (a cancel that came
 * later stays pending for the next suspension), else the park's code; w is
 * off q either way. On a COMPACT loop a suspended task's stack is not where
 * its frames are, so the record other tasks touch is a pooled copy of w
 * (w's val/prio in, granted/code/val/prio out): callers keep w on their
 * stack either way. */
int weft__wait_on(struct weft__loop *l, struct weft_task *t, struct weft__list *q,
                  struct weft__waiter *w, uint64_t deadline_ns);
/* Same, but only a grant ends the wait: cancels stay pending, deadlines are
 * ignored (clean-up waits such as re-taking a condition's lock). */
void weft__wait_on_nocancel(struct weft__loop *l, struct weft_task *t, struct weft__list *q,
                            struct weft__waiter *w);
static inline void weft__waiter_grant(struct weft__waiter *w, int code)
{
    weft__list_remove(&w->link);
    w->granted = true;
    w->code = code;
    struct weft_task *t = w->task;
    /* A parked task is SUSPENDED, awaits nothing and is in no list; it may
     * already be queued (woken by a cancel or its timer). */
    if (!t->queued) {
        struct weft__loop *l = t->fut.loop;
        t->wake_code = 0;
        weft__timer_disarm(l, &t->tm);
        t->queued = true;
        weft__ready_push(l, &t->rn);
    }
}
/* The oldest waiter of q that still waits. A waiter whose task is already
 * queued was woken by a cancel or a timeout and has not run yet to withdraw
 * itself: it is unlinked here and skipped, so what is released goes to the
 * next one (asyncio skips cancelled waiters too). */
static inline struct weft__waiter *weft__waiter_first(struct weft__list *q)
{
    while (!weft__list_empty(q)) {
        struct weft__waiter *w = WEFT_CONTAINER_OF(q->next, struct weft__waiter, link);
        if (!w->task->queued && (w->xw == NULL || weft__xwait_claim(w->xw, w->xtag)))
            return w; /* a select's case is claimed now: the caller grants it */
        weft__list_remove(&w->link);
    }
    return NULL;
}
/* The current task of the calling thread's loop, with its loop; NULL
 * outside tasks. */
static inline struct weft_task *weft__running(struct weft__loop **lp)
{
    struct weft__loop *l = weft__tls_loop;
    *lp = l;
    return l != NULL ? l->current : NULL;
}
/* Bind a loop-bound object (lazily, to the caller's loop) and check that the
 * caller is on it: 0, WEFT_EWRONGLOOP or (no loop at all) WEFT_ENOTASK. */
int weft__bind_slow(void **loop_slot, const char *call);
static inline int weft__bind_(void **loop_slot, const char *call)
{
    if (__builtin_expect(*loop_slot == (void *)weft__tls_loop, 1))
        return 0;
    return weft__bind_slow(loop_slot, call);
}
/* Names the calling function in debug mode's message. */
#define weft__bind(loop_slot) weft__bind_((loop_slot), __func__)
/* The common body of a primitive's wait: checks (WEFT_ENOTASK, a pending
 * cancel, a passed scope deadline), timeout 0 = UV_ETIMEDOUT without
 * waiting, then weft__wait_on(). */
/* The longest timeout in ms that is represented as such: anything longer
 * (WEFT_FOREVER included) is no timeout at all (loop.h). */
#define WEFT__MS_MAX (UINT64_MAX / 2000000u)
/* Deadline of a relative timeout (WEFT_FOREVER/too long = none). */
static inline uint64_t weft__deadline_after(uint64_t timeout_ms)
{
    if (timeout_ms >= WEFT__MS_MAX)
        return WEFT_FOREVER;
    return uv_hrtime() + timeout_ms * 1000000u;
}
static inline int weft__wait_here(struct weft__list *q, struct weft__waiter *w, uint64_t timeout_ms)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    int rc = weft__pre_suspend(t);
    if (rc != 0)
        return rc;
    if (timeout_ms == 0)
        return UV_ETIMEDOUT;
    return weft__wait_on(l, t, q, w, weft__deadline_after(timeout_ms));
}
static inline struct weft__list *weft__wq(weft_waitq_t *q)
{
    return (struct weft__list *)(void *)q;
}
/* Suspend t and switch straight to task `next` of the same loop (SUSPENDED
 * and not queued, or CREATED and not queued), which resumes with wake code
 * `code`. Returns what t's suspension returns. UV_ENOMEM if `next` could not
 * get a stack. */
int weft__switch_to_task(struct weft__loop *l, struct weft_task *t, struct weft_task *next,
                         int code);
/* Hooks: a pooled handle whose fn runs inline when f completes (f must be
 * on the caller's loop; the caller keeps f referenced while the hook is
 * attached). */
struct weft__handle *weft__hook_add(struct weft_future *f,
                                    void (*fn)(struct weft__handle *, struct weft_future *),
                                    void *arg);
void weft__hook_remove(struct weft__handle *h);
/* A task is cancelled (weft_task_cancel) or its deadline passed: end its
 * current suspension with `code`, as weft_task.h's cancellation rules say. */
int weft__task_interrupt(struct weft_task *t, int code);

/* gen.c: t is a generator's body. Its consumer, which awaits it, is not
 * cancelled on its own when a cancel passes into the body: as in asyncio,
 * where the generator runs in the consumer's task, a body that catches the
 * cancel catches it for both. */
bool weft__gen_body(const struct weft_task *t);

/* timeout.c: mark every scope of the chain whose own deadline is <= now
 * as expired. */
void weft__scope_mark(struct weft_timeout *s, uint64_t now);

/* side.c. Each is called only when f->side (cold). */
/* f is recycled: a result nobody read goes to its destructor, the record
 * (name included) is freed. After the unretrieved-error warning. */
void weft__side_release(struct weft_future *f);
/* t finished: its task-local values go to their destructors. */
void weft__side_task_finished(struct weft_task *t);
/* Spawning child from parent (parent->fut.side): copy the parent's
 * task-local values. 0 or UV_ENOMEM (nothing copied). */
int weft__side_inherit(struct weft_task *parent, struct weft_task *child);
/* A result arrived for f after it was done (a cancelled submit's late
 * reply, a late threadsafe completion): free it with f's destructor. */
void weft__side_drop_result(struct weft_future *f, void *result);
/* The loop closes: free what records are left (objects never released). */
void weft__side_close(struct weft__loop *l);
/* loopx.c: the loop closes: close its signal watchers. */
void weft__signals_close(struct weft__loop *l);
/* loopx.c: a busy loop with signal watchers and no referenced libuv handle:
 * poll libuv once without blocking (uv_run does nothing on a loop that is
 * not alive, and unreferenced watchers do not make it alive). */
void weft__signals_poll(struct weft__loop *l);

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
void weft__handle_run(struct weft__loop *l, struct weft__handle *h);
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

#endif /* WEFT_CORE_LOOP_INT_H */

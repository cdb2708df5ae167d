/*
 * core/sched_int.h - the scheduler layer: struct weft__loop, runnables, the
 * ready queue, callback handles, timers, message sources, posting and
 * waking, owner checks (internal to core/).
 *
 * Layer map (base.h has it in full): leaves (alloc list heap stack ctx
 * inbox base source) -> sched_int.h -> future_int.h -> task_int.h -> wait_int.h ->
 * sync/timeout/queue/combine/group/gen -> ext.h (loops/ and up).
 * Includes only the leaves and the public <weft/loop.h>; knows futures and
 * tasks by pointer only. Implemented by loop.c (loopx.c: signals). Included
 * by future_int.h and, through it, by everything above; not by loops/.
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
#ifndef WEFT_CORE_SCHED_INT_H
#define WEFT_CORE_SCHED_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>
#include <weft/loop.h>

#include "base.h"
#include "heap.h"
#include "inbox.h"
#include "list.h"
#include "source.h"
#include "stack.h"

/* Known here by pointer only (future_int.h, task_int.h). */
struct weft_future;
struct weft_task;

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

struct weft__handle {
    struct weft__rnode rn;
    struct weft__timer tm;
    struct weft__loop *loop;
    uint64_t gen;
    uint8_t what, state;
    union {
        weft_cb_fn fn;
        void (*ffn)(struct weft_future *f, void *arg); /* weft_future_cb */
        void (*hook)(struct weft__handle *h, struct weft_future *f);
    } u;
    void *arg;
    struct weft_future *fut; /* FUTURE_CB / REMOTE_WAKE: the future (referenced) */
    /* REMOTE_WAKE: who waits, on which loop; rlink is in the loop's
     * remote_records while the record waits (closing fails them) */
    struct weft__list rlink;
    struct weft__loop *rloop;
    struct weft_task *rtask;
    uint32_t rseq;
};

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

/* The per-loop table of side records (core/side.c; the record itself is in
 * future_int.h): open addressing, keyed by the object's address. */
struct weft__side;
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
    struct weft_task *current;    /* running task, NULL in the scheduler */
    struct weft__list ready;      /* rnodes */
    int budget;                   /* runnables left in this tick */
    struct weft__list *lag_probe; /* the runnable whose lag is timed (run_ready) */
    uint64_t lag_stamp_ns;        /* since when it is known to wait */
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
    uint64_t run_start_ns; /* when the current run began (st.run_ns) */
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
    struct weft__list live; /* in the registry of live loops (loop.c) */
};

#define WEFT__LOOP_MAGIC 0x77656674u /* "weft" */

_Static_assert(sizeof(struct weft__loop) <= WEFT_LOOP_SIZE, "WEFT_LOOP_SIZE too small");

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

/* The loop-lag probe (loop.c, run_ready): the probe leaves the ready queue
 * to run other than through run_ready (a task hands over to it directly):
 * take its sample. Out of line, about once per tick. */
void weft__lag_hit(struct weft__loop *l);
/* A runnable n leaves the ready queue without running now (cancelled,
 * started inline, parked): if it is the probe, forget it, or its next run
 * would count from a stamp older than its queueing. Cold paths only. */
static inline void weft__lag_forget(struct weft__loop *l, struct weft__list *n)
{
    if (n == l->lag_probe)
        l->lag_probe = NULL;
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

/* The current task of the calling thread's loop, with its loop; NULL
 * outside tasks. */
static inline struct weft_task *weft__running(struct weft__loop **lp)
{
    struct weft__loop *l = weft__tls_loop;
    *lp = l;
    return l != NULL ? l->current : NULL;
}

/* loop.c */
/* Whether o is a loop between weft_loop_init and weft_loop_close, under the
 * registry's lock: while `fn` runs, o cannot be closed (and so freed).
 * Calls fn(o, arg) only when it is; returns fn's result or `dead`. */
int weft__loop_if_live(struct weft__loop *o, int (*fn)(struct weft__loop *, void *), void *arg,
                       int dead);
struct weft__handle *weft__handle_get(struct weft__loop *l);
void weft__handle_put(struct weft__loop *l, struct weft__handle *h);
/* Run a ready handle (the tick). */
void weft__handle_run(struct weft__loop *l, struct weft__handle *h);
int weft__timer_arm(struct weft__loop *l, struct weft__timer *t, uint64_t deadline_ns);
int weft__post(struct weft__loop *l, weft__inbox_fn fn, uintptr_t a, uintptr_t b, uintptr_t c,
               uintptr_t d);
/* Run l until `until` (a future of l, or NULL) is done or the loop stops or
 * runs out of work. */
int weft__loop_run_until(struct weft__loop *l, struct weft_future *until);
/* The stack pool for tasks of this size (task.c spawns from it). */
struct weft__stack_pool *weft__pool_for(struct weft__loop *l, size_t size);

/* loopx.c: the loop closes: close its signal watchers. */
void weft__signals_close(struct weft__loop *l);
/* loopx.c: a busy loop with signal watchers and no referenced libuv handle:
 * poll libuv once without blocking (uv_run does nothing on a loop that is
 * not alive, and unreferenced watchers do not make it alive). */
void weft__signals_poll(struct weft__loop *l);

#endif /* WEFT_CORE_SCHED_INT_H */

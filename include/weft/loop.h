/*
 * weft/loop.h - the event loop: one uv_loop_t, a ready queue, timers and a
 * thread-safe inbox, run by exactly one thread at a time.
 *
 * Ownership: a loop and everything created on it (tasks, futures, handles)
 * belong to the thread that runs it. Only the functions named *_threadsafe
 * may be called from other threads. A loop is caller-allocated (the struct is
 * opaque storage of fixed size) and must outlive every thread that may still
 * post to it.
 *
 * NULL = the current loop: every call in weft that takes a weft_loop_t *
 * (the ones here, weft_future_new, weft_spawn, weft_gen_new, weft_submit_to,
 * weft_call_on, weft_spawn_threadsafe) accepts NULL for the loop running on
 * the calling thread, and returns its usual "no loop" code (UV_EINVAL) when
 * the thread runs none. Only weft_loop_init needs real storage.
 */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_WARN_UNUSED __attribute__((warn_unused_result))

/* "No limit", for every time argument in weft: every *_timeout form and
 * every call that takes a timeout_ms (weft_await_timeout,
 * weft_await_token_timeout, the primitives' and queues' waits, weft_wait,
 * weft_wait_for, weft_as_completed_init, weft_timeout_begin,
 * weft_tsfuture_wait_blocking) waits without a timeout when given
 * WEFT_FOREVER, and so it does for any other timeout too long to represent
 * in nanoseconds (above about 292 years): such values are clamped to
 * forever, never refused. As an absolute deadline (weft_timeout_begin_at,
 * weft_timeout_deadline) it means "no deadline". weft_sleep(WEFT_FOREVER)
 * sleeps until the task is cancelled (or its timeout scope expires).
 * weft_call_later/weft_call_at refuse it (and any delay too long to
 * represent) with UV_EINVAL: a callback that can never run is a bug, and a
 * timer that never fires would keep the loop from running out of work. */
#define WEFT_FOREVER UINT64_MAX

/* Alignment in both languages: the public headers compile as C11 and as
 * C++11 or later (tests/cxx_test.cc). */
#ifdef __cplusplus
#define WEFT_ALIGNAS(n) alignas(n)
#else
#define WEFT_ALIGNAS(n) _Alignas(n)
#endif

/* Opaque, caller-allocated. Its size is fixed; internals are private. */
#define WEFT_LOOP_SIZE 4096
typedef struct weft_loop {
    WEFT_ALIGNAS(64) unsigned char weft__opaque[WEFT_LOOP_SIZE];
} weft_loop_t;

/* How task stacks are provided on a loop. */
typedef enum weft_stack_mode {
    /* Every running task owns a stack (default size 64 KiB virtual) carved from
     * pooled slabs, with a guard page below it. Fast switches; resident memory
     * per suspended task is the pages it touched (usually one, 4 KiB). */
    WEFT_STACK_GUARDED = 0,
    /* All tasks run on one shared stack per loop; a task's live frames are
     * copied out when another task needs the stack and copied back when it
     * resumes. Costs a copy of the used frames per switch between different
     * tasks; a suspended task costs its used frames (a few hundred bytes).
     * For very many mostly idle tasks. Pointers to a task's locals must not be
     * used by other tasks while it is suspended. */
    WEFT_STACK_COMPACT = 1,
} weft_stack_mode_t;

typedef struct weft_loop_opts {
    size_t stack_size;            /* default task stack size; 0 = 64 KiB */
    weft_stack_mode_t stack_mode; /* default WEFT_STACK_GUARDED */
    size_t shared_stack_size;     /* COMPACT only: shared stack; 0 = 256 KiB */
    /* Before sleeping, an idle loop polls its inbox this long (spinning one
     * core) so that posts from other threads find it awake rather than pay
     * an eventfd wake-up (4-11 us here): 0 = default (50 us), -1 = never
     * poll. Cost measured for a loop that wakes 1,000 times a second: 5.9%
     * of a core at 50 us, 16.8% at 200 us, 1.2% with -1. */
    int idle_poll_us;
    /* Warn (stderr, and stats.slow_tasks) about a task that runs this many
     * milliseconds without suspending, blocking the loop; 0 = off. */
    uint32_t slow_task_ms;
    /* Count warnings in the stats but do not print them. Warnings: a failed
     * task or future released without anyone reading its outcome (asyncio's
     * "exception was never retrieved"), slow tasks, and tasks still pending
     * when weft_run's main task finished. */
    bool quiet;
    /* Debug mode (docs/core.md, "Debug mode"): a loop-only call made from
     * another thread while the loop runs aborts with a message naming the
     * call, the object and both threads, instead of returning
     * WEFT_EWRONGLOOP. 0 = the environment decides (WEFT_DEBUG=1 on,
     * WEFT_DEBUG=0 off, read at init; unset: on in --config=dbg builds,
     * which define WEFT_DEBUG_DEFAULT=1, else off); > 0 = on; < 0 = off. */
    int debug;
    /* Seeded shuffle of the ready queue: the next runnable is picked
     * pseudo-randomly among the first few, within the orders that the
     * shuffle keeps (docs/core.md). 0 = the environment decides
     * (WEFT_SEED=<n> on with seed n, WEFT_SEED=random on with a random
     * seed, unset off); > 0 = on; < 0 = off. The seed is printed to stderr
     * when the loop first runs, so a failure can be replayed. */
    int shuffle;
    /* The shuffle's seed when on; 0 = WEFT_SEED's, else a random one. */
    uint64_t seed;
} weft_loop_opts_t;

/* The loop-lag histogram of weft_loop_stats_t: bucket i holds lags of at
 * most 2^(WEFT_LAG_MIN_LOG2 + i) ns, 256 ns to 2^30 ns; the last bucket
 * holds the rest. */
#define WEFT_LAG_MIN_LOG2 8
#define WEFT_LAG_BUCKETS  24

/* Per-loop counters (cumulative since init, except the *_live ones). */
typedef struct weft_loop_stats {
    uint64_t tasks_spawned;
    uint64_t tasks_finished;
    uint64_t tasks_live;
    uint64_t tasks_inline;        /* tasks started inline by their first awaiter */
    uint64_t switches;            /* stack switches */
    uint64_t callbacks_run;       /* call_soon/later/at, threadsafe, done callbacks */
    uint64_t threadsafe_received; /* inbox messages processed */
    uint64_t inbox_overflows;     /* posts that found the inbox ring full */
    uint64_t wakeups;             /* times the loop blocked in the poller */
    uint64_t iterations;          /* scheduler ticks */
    uint64_t stacks_in_use;
    uint64_t stacks_pooled;
    uint64_t stacks_trimmed;     /* pooled stacks whose pages an idle loop gave back */
    uint64_t max_lag_ns;         /* longest time a tick spent running ready work */
    uint64_t errors_unretrieved; /* failed tasks/futures released unread */
    uint64_t slow_tasks;         /* times a task ran longer than slow_task_ms */
    uint64_t tokens_live;        /* future tokens (future.h) made and not yet used */
    uint64_t tokens_stale;       /* token messages that found their future recycled */
    uint64_t remote_waits;       /* this loop's waits on other loops' futures not yet
                                  * answered */

    /* Debug aids (docs/core.md, "Debug mode"). */
    uint64_t slow_reports;          /* slow-task reports made (at most 5 a minute; printed
                                     * unless quiet); slow_tasks counts them all */
    uint64_t tasks_pending_at_exit; /* tasks still pending when weft_run's main
                                     * finished (warned about, then cancelled) */

    /* Where the time goes (docs/observability.md). run_ns: time spent in
     * weft_loop_run (weft_run, a runtime's loop), a run in progress
     * included; asleep_ns: the part of it blocked in the poller; polling_ns:
     * the part spent spinning in the idle poll before sleeping (busy for
     * the CPU, idle for the program). Utilisation = 1 - asleep_ns / run_ns. */
    uint64_t run_ns;
    uint64_t asleep_ns;
    uint64_t polling_ns;
    /* Loop lag, sampled: about one runnable per tick is timed from when
     * the tick found it queued until it starts to run (core/loop.c,
     * run_ready, says which one and why). lag_buckets[i] counts the samples
     * of at most 2^(WEFT_LAG_MIN_LOG2 + i) ns (and more than half that;
     * [0] from 0), not cumulative; the last one counts everything above
     * 2^(WEFT_LAG_MIN_LOG2 + WEFT_LAG_BUCKETS - 2) ns (about 1.07 s). */
    uint64_t lag_count;
    uint64_t lag_sum_ns;
    uint64_t lag_buckets[WEFT_LAG_BUCKETS];
} weft_loop_stats_t;

typedef void (*weft_cb_fn)(void *arg);

/* A cancellable reference to a scheduled callback. A stale handle (its
 * callback ran or was cancelled and the slot reused) is detected by its
 * generation and reported as UV_ENOENT. Valid while its loop is open. */
typedef struct weft_handle {
    void *weft__node;
    uint64_t weft__gen;
} weft_handle_t;

/* Initialise a loop with default options (opts NULL) or the given ones.
 * Returns 0, UV_EINVAL (NULL loop, bad options) or a libuv error. */
WEFT_WARN_UNUSED int weft_loop_init(weft_loop_t *loop, const weft_loop_opts_t *opts);

/* Close a loop. Returns UV_EBUSY (and changes nothing) while tasks are alive,
 * callbacks or timers are pending, or the loop is running; WEFT_ECLOSED if it
 * is already closed. On 0 every resource is released. */
WEFT_WARN_UNUSED int weft_loop_close(weft_loop_t *loop);

/* Run until there is no work left (no live task, ready callback, timer or
 * active libuv handle) or weft_loop_stop() is called. Returns 0,
 * WEFT_EREENTRANT if this loop (or another loop on this thread) is already
 * running, WEFT_ECLOSED on a closed loop, UV_EINVAL on NULL. */
WEFT_WARN_UNUSED int weft_loop_run(weft_loop_t *loop);

/* Make weft_loop_run() return after the current tick. Loop thread only. */
void weft_loop_stop(weft_loop_t *loop);

typedef struct weft_future weft_future_t;

/* asyncio's loop.run_until_complete(fut): run the loop until fut (a future
 * or a task's future, weft_task_future(), of this loop) is done, then
 * return 0; read its outcome with weft_future_result(). The caller keeps
 * its reference on fut for the call. Like weft_loop_run it runs at least
 * one tick (a future already done returns after it), and the loop is left
 * as it is: tasks still live stay live for a later run. Returns 0,
 * UV_EINVAL (fut NULL, no loop), WEFT_EWRONGLOOP (fut is another loop's),
 * WEFT_ECLOSED, WEFT_EREENTRANT (this or another loop already runs on this
 * thread, or this loop runs on another), or WEFT_EPENDING when the loop
 * stopped (weft_loop_stop, weft_loop_stop_threadsafe) or ran out of work
 * before fut was done - asyncio's "Event loop stopped before Future
 * completed". */
WEFT_WARN_UNUSED int weft_loop_run_until_complete(weft_loop_t *loop, weft_future_t *fut);

/* From ANY thread: weft_loop_stop() through the loop's inbox (asyncio's
 * loop.call_soon_threadsafe(loop.stop)). The running loop returns from
 * weft_loop_run() after the tick that takes the message (waking it if it
 * sleeps); a loop that is not running takes it in the first tick of its
 * next run, which then returns after that tick, as a weft_loop_stop()
 * made before a run does. Returns 0, UV_EINVAL (NULL on a thread with no
 * loop), WEFT_ECLOSED (the loop is closed), UV_ENOMEM. */
int weft_loop_stop_threadsafe(weft_loop_t *loop);

/* Signal handlers of one loop, asyncio's loop.add_signal_handler: when the
 * process gets signal signum, cb(signum, arg) runs on the loop's thread as
 * an ordinary callback (never in a signal handler, never inside a task: it
 * may spawn, complete futures, call weft_loop_stop; it must not suspend).
 * Several deliveries before the loop looks may run cb once. Each loop has
 * at most one handler per signal: adding another replaces it; every loop
 * that adds one for the same signal gets its own call (libuv's signal
 * watchers, uv_signal_t, underneath: they change the process's disposition
 * of signum while any is started, and restore it after the last stops).
 *
 * A handler does not keep the loop running: weft_loop_run returns when
 * there is no other work, handlers or not (the watcher is unreferenced,
 * uv_unref), because in weft "no work left" ends a run, and a watcher that
 * counted as work would keep every program that installs a SIGINT handler
 * from ever ending. asyncio has no such ending: its run_forever runs until
 * stop(), and its handler does not count as work either. A program that
 * waits for a signal waits for it as for anything: a task awaits an event
 * or a future that the handler sets (weft_loop_run_until_complete on that
 * future), and the live task keeps the loop running. While handlers are
 * installed, a loop busy with ready work still polls libuv every tick, so
 * handlers run even then.
 *
 * Loop thread (or before the loop runs): WEFT_EWRONGLOOP from another
 * thread while the loop runs. add: 0, UV_EINVAL (cb NULL, no loop, a
 * signal that cannot be caught: SIGKILL, SIGSTOP, out of range),
 * WEFT_ECLOSED, UV_ENOMEM. remove: 0, or UV_ENOENT if the loop has no
 * handler for signum (removing twice), and as add. Closing the loop
 * removes its handlers. */
typedef void (*weft_signal_fn)(int signum, void *arg);
WEFT_WARN_UNUSED int weft_loop_add_signal_handler(weft_loop_t *loop, int signum, weft_signal_fn cb,
                                                  void *arg);
int weft_loop_remove_signal_handler(weft_loop_t *loop, int signum);

/* The loop running on this thread, or NULL. */
weft_loop_t *weft_loop_current(void);
/* The current loop's index in its runtime (weft/runtime.h: 0 .. count-1),
 * or -1 on a thread that runs no runtime loop (a plain weft_loop_run loop
 * included). */
int weft_loop_index(void);

/* The libuv loop inside, for libuv handles that live on this loop. */
uv_loop_t *weft_loop_uv(weft_loop_t *loop);

/* Monotonic clock: milliseconds and nanoseconds (same clock as timers). */
uint64_t weft_loop_now(void);
uint64_t weft_loop_now_ns(void);

/* Schedule fn(arg) to run on the loop, FIFO with other call_soon callbacks
 * and with woken tasks (under the debug shuffle, FIFO with other callbacks
 * only: docs/core.md). Loop thread (or before the loop runs). `out` may be
 * NULL. Returns 0, UV_EINVAL, UV_ENOMEM, WEFT_ECLOSED. */
WEFT_WARN_UNUSED int weft_call_soon(weft_loop_t *loop, weft_cb_fn fn, void *arg,
                                    weft_handle_t *out);
/* Run fn(arg) after delay_ms (no earlier). Equal deadlines run FIFO.
 * UV_EINVAL for WEFT_FOREVER (and any delay above about 292 years). */
WEFT_WARN_UNUSED int weft_call_later(weft_loop_t *loop, uint64_t delay_ms, weft_cb_fn fn, void *arg,
                                     weft_handle_t *out);
/* Run fn(arg) at weft_loop_now() time `when_ms` (or right away if past);
 * UV_EINVAL for WEFT_FOREVER, as call_later. */
WEFT_WARN_UNUSED int weft_call_at(weft_loop_t *loop, uint64_t when_ms, weft_cb_fn fn, void *arg,
                                  weft_handle_t *out);
/* Cancel a scheduled callback: 0 if it will not run, UV_ENOENT if it already
 * ran, is running or was cancelled (the handle is stale: error.h), UV_EINVAL for a zero handle.
 * Loop thread only. */
int weft_handle_cancel(weft_handle_t h);

/* From ANY thread: run fn(arg) on the loop soon. Lock-free (one atomic
 * compare-and-swap per post) into a bounded ring; when the ring is full the
 * message goes to an overflow list instead (never dropped, never spinning).
 * Wakes the loop only if it announced it is going to sleep. Per posting
 * thread, callbacks run in posting order. Returns 0, UV_EINVAL (NULL),
 * WEFT_ECLOSED (loop closed), UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_call_soon_threadsafe(weft_loop_t *loop, weft_cb_fn fn, void *arg);

/* Counters; safe from the loop thread (others may read torn values; a
 * plain thread can have a runtime's through weft_metrics_write). */
void weft_loop_stats(const weft_loop_t *loop, weft_loop_stats_t *out);

/* Print every live task: id, name, state, what it awaits, spawn site.
 * Returns the number of live tasks, or UV_EINVAL. Loop thread. */
int weft_loop_dump(const weft_loop_t *loop, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_LOOP_H */

/*
 * weft/runtime.h - many loops: one loop per core on its own pinned thread,
 * and the ways to cross between them (Seastar's smp::submit_to,
 * asyncio.run_coroutine_threadsafe).
 *
 * Ownership stays per loop (weft/loop.h): tasks and futures belong to one
 * loop and are touched only on its thread. Loops talk by message only:
 * - between runtime loops, over an N x N mesh of single-producer
 *   single-consumer rings, one per ordered pair of loops (made when the
 *   first message goes from one to the other), published in
 *   batches (a loop publishes what its tasks sent when its tick ends, and
 *   drains its incoming rings every iteration);
 * - from any other thread, through the target loop's MPSC inbox.
 * A loop that sleeps is woken (eventfd) only when it announced that it
 * sleeps; a running loop finds its messages by itself.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_runtime weft_runtime_t;

typedef struct weft_runtime_opts {
    unsigned loops;        /* 0 = weft_cpu_count() */
    bool no_pinning;       /* do not pin loop i to weft_cpu_id(i) */
    bool no_arenas;        /* do not give each loop its own jemalloc arena */
    unsigned ring_size;    /* slots per mesh ring, a power of two; 0 = 1024.
                            * A ring takes ring_size x 64 bytes, made by the
                            * first message of its pair: where all N loops
                            * talk to each other, N x (N - 1) rings (1 GiB at
                            * 128 loops and 1024 slots) - lower it there if
                            * memory matters more than bursts */
    unsigned max_inflight; /* per (source, target) pair: submits in flight
                            * before submitters wait (Seastar's
                            * smp_service_group); 0 = no limit */
    /* Options of every loop (stack sizes, idle_poll_us, ...). The idle poll
     * is what makes cross-loop round trips fast: a loop that polls its rings
     * and inbox this long before sleeping is found awake (a wake-up through
     * the eventfd costs 4-11 us here). */
    weft_loop_opts_t loop;
} weft_runtime_opts_t;

/* The number of CPUs the calling thread may run on: its affinity mask, which
 * taskset and a cgroup cpuset restrict (not the machine's online CPUs, which
 * a container may not be allowed to use). At least 1. The default number of
 * runtime loops and of pool threads, read when they start. */
unsigned weft_cpu_count(void);
/* The id of the i-th of those CPUs, counting from 0 and wrapping around
 * (i modulo weft_cpu_count()): where runtime loop i is pinned. >= 0. */
int weft_cpu_id(unsigned i);

/* Start the loops (each runs until weft_runtime_stop). opts may be NULL.
 * 0, UV_EINVAL, UV_ENOMEM, or a thread-creation error. */
WEFT_WARN_UNUSED int weft_runtime_start(const weft_runtime_opts_t *opts, weft_runtime_t **out);
unsigned weft_runtime_count(const weft_runtime_t *rt);
/* Loop i, or NULL past the end. */
weft_loop_t *weft_runtime_loop(weft_runtime_t *rt, unsigned i);
/* Graceful stop, from a thread that is not one of the runtime's loops: stop
 * taking submits (WEFT_ECLOSED), cancel every task on every loop, let them
 * unwind, join the threads, close the loops, free the runtime. Returns 0,
 * or the number of tasks that were still live when the loops were asked to
 * stop (as a positive count of leftovers is not an error, it is written to
 * *leftovers when not NULL), or WEFT_EWRONGLOOP when called from a loop. */
int weft_runtime_stop(weft_runtime_t *rt, uint64_t *leftovers);

/* The multi-loop asyncio.run: start a runtime, run main(arg) as a task on
 * loop 0, stop the runtime when it returns and return its outcome (result
 * in *result). SIGINT and SIGTERM cancel main (which then unwinds as any
 * cancelled task) and so lead to the same graceful stop. opts (NULL =
 * defaults) sits where every call takes its options: after the inputs,
 * before the out-parameters (as weft_run_ex). */
WEFT_WARN_UNUSED int weft_runtime_run(weft_task_fn main, void *arg, const weft_runtime_opts_t *opts,
                                      void **result);

/* weft_loop_index(), which runtime loop runs this thread, is declared with
 * the loop in weft/loop.h. */
/* The runtime of the calling loop thread, or NULL. */
weft_runtime_t *weft_runtime_current(void);

/* Run fn(arg) as a task on `target` and get a future owned by the CALLING
 * loop that completes with its result or error (message included). From a
 * runtime loop's thread only (WEFT_EWRONGLOOP otherwise; plain threads use
 * weft_spawn_threadsafe). When target is the calling loop (or NULL), the
 * task is spawned directly and *out is its own future. With max_inflight set, a task
 * that submits past the limit waits (UV_ECANCELED/UV_ETIMEDOUT if its wait
 * is cancelled or times out); a callback gets UV_EAGAIN instead.
 * Cancelling *out (or a task that awaits it) cancels the remote task, as
 * asyncio's run_coroutine_threadsafe future does; *out reports UV_ECANCELED
 * at once and the remote outcome is dropped when it arrives. Returns
 * 0, UV_EINVAL, UV_ENOMEM, WEFT_ECLOSED (runtime stopping). */
WEFT_WARN_UNUSED int weft_submit_to(weft_loop_t *target, weft_task_fn fn, void *arg,
                                    weft_future_t **out);
/* Run cb(arg) as a callback on `target` (a loop of the caller's runtime),
 * with no reply: the lightest message (one ring slot, no task, no future).
 * Callbacks sent from one loop to another run in the order they were sent.
 * From a runtime loop's thread (WEFT_EWRONGLOOP otherwise); to the calling
 * loop itself (or NULL) it is weft_call_soon. When the ring to the target is full,
 * weft_call_on keeps the message in an overflow list (allocates; never
 * drops) and weft_call_on_try returns UV_EAGAIN instead, so a producer can
 * yield and let the target catch up. 0, UV_EINVAL, UV_ENOMEM, WEFT_ECLOSED. */
WEFT_WARN_UNUSED int weft_call_on(weft_loop_t *target, weft_cb_fn cb, void *arg);
WEFT_WARN_UNUSED int weft_call_on_try(weft_loop_t *target, weft_cb_fn cb, void *arg);

/* Seastar's invoke_on_all: run fn(arg) on every loop of the caller's
 * runtime (the caller's own loop included) and wait for all: results[i] and
 * errors[i] (each optional, one per loop) get loop i's outcome. In a task.
 * Returns 0 when every one succeeded, else the first failure by loop index
 * (all are waited for either way). */
WEFT_WARN_UNUSED int weft_submit_to_all(weft_task_fn fn, void *arg, void **results, int *errors);

/* Mesh counters of one runtime loop (weft_runtime_stats). Cumulative since
 * the start, except the two "now" values. */
typedef struct weft_runtime_loop_stats {
    uint64_t mesh_sent;        /* messages this loop sent over the mesh: submits,
                                * replies, weft_call_on callbacks, cancels */
    uint64_t mesh_received;    /* messages it took from its incoming rings */
    uint64_t ring_overflows;   /* sends that found their ring full and went to
                                * the overflow list (never dropped) */
    uint64_t overflow_depth;   /* now: messages waiting in its overflow lists */
    uint64_t submits_inflight; /* now: its weft_submit_to calls to other loops
                                * not answered yet */
} weft_runtime_loop_stats_t;

/* Any thread, while rt runs (until weft_runtime_stop returns): fill out[i]
 * with loop i's counters for i < n (and < the loop count), and return the
 * loop count (or UV_EINVAL for NULL rt, or out NULL with n > 0; n = 0 just
 * counts). Each counter is written by its own loop's thread only, with
 * relaxed atomic stores, and read here with relaxed loads: nothing is
 * posted and no loop is stopped, so the numbers are each exact but not a
 * snapshot of one instant (a message may show as sent and not yet
 * received). */
int weft_runtime_stats(const weft_runtime_t *rt, size_t n, weft_runtime_loop_stats_t *out);

/* Seastar's foreign_ptr: a pointer that belongs to one loop and is used on
 * others, destroyed on its owner. weft_foreign_new wraps ptr with the
 * destructor to run and the owner loop (NULL = the calling thread's loop);
 * the wrapper may travel to any thread (in a message, a submit's argument).
 * weft_foreign_free(f), from any thread, runs dtor(ptr) on the owner loop's
 * thread and frees the wrapper: at once when called there (the owner is
 * the loop running on the calling thread), else through the owner's inbox
 * (as weft_call_soon_threadsafe: it runs when the owner takes its messages,
 * during a run; a loop that is not running takes it in its next run).
 * new: 0, UV_EINVAL (dtor or out NULL, no loop), UV_ENOMEM. free: 0,
 * UV_EINVAL (NULL), WEFT_ECLOSED (the owner is closed: nothing ran, f is
 * still the caller's), UV_ENOMEM (likewise). */
typedef struct weft_foreign weft_foreign_t;
WEFT_WARN_UNUSED int weft_foreign_new(weft_loop_t *owner, void *ptr, void (*dtor)(void *),
                                      weft_foreign_t **out);
void *weft_foreign_get(const weft_foreign_t *f);
weft_loop_t *weft_foreign_owner(const weft_foreign_t *f);
WEFT_WARN_UNUSED int weft_foreign_free(weft_foreign_t *f);
/* Seastar's foreign_ptr::release(): free the wrapper without running the
 * destructor and return the pointer (any thread; NULL for NULL) - e.g. to
 * dispose of it yourself when weft_foreign_free found the owner closed. */
void *weft_foreign_take(weft_foreign_t *f);

/* ---- From any thread ------------------------------------------------------ */

/* A future that any thread can wait on: what weft_spawn_threadsafe returns.
 * It is not a loop's future (no loop owns it), so it has its own calls. */
typedef struct weft_tsfuture weft_tsfuture_t;

/* asyncio.run_coroutine_threadsafe: run fn(arg) as a task on `loop` (any
 * loop, runtime or not; NULL = the calling thread's loop) from ANY thread.
 * *out gets one reference. 0, UV_EINVAL, UV_ENOMEM, WEFT_ECLOSED. */
WEFT_WARN_UNUSED int weft_spawn_threadsafe(weft_loop_t *loop, weft_task_fn fn, void *arg,
                                           weft_tsfuture_t **out);
/* Block the calling (non-loop) thread until f is done or timeout_ms passes
 * (WEFT_FOREVER, or any timeout too long to represent, = no timeout): 0 and
 * *result, the task's code, UV_ETIMEDOUT. From a loop thread:
 * WEFT_EWRONGLOOP (it would block the loop; tasks use weft_tsfuture_await). */
WEFT_WARN_UNUSED int weft_tsfuture_wait_blocking(weft_tsfuture_t *f, uint64_t timeout_ms,
                                                 void **result);
/* In a task on any loop: await f. Cancelling the awaiting task cancels the
 * remote task too. */
WEFT_WARN_UNUSED int weft_tsfuture_await(weft_tsfuture_t *f, void **result);
/* asyncio.wrap_future for a thread-safe future: a future of the calling
 * loop (its thread only) that completes with f's outcome, so that gather,
 * wait and the other combinators take it. Cancelling *out cancels f's task.
 * The caller gets one reference on *out; f may be unreferenced meanwhile.
 * 0, UV_EINVAL (NULL), WEFT_EWRONGLOOP (not on a loop's thread), UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_tsfuture_wrap(weft_tsfuture_t *f, weft_future_t **out);
/* Not blocking: WEFT_EPENDING while running. Any thread. */
int weft_tsfuture_result(weft_tsfuture_t *f, void **result);
/* The failure message of a done f, as weft_future_message for a loop's
 * future: the task's weft_fail message, copied when the task ended; NULL
 * while f is not done, for a success, for a failure without a message, and
 * for a cancelled task (a weft_tsfuture_cancel gives no reason; a task that
 * called weft_fail before it returned UV_ECANCELED keeps that message). Any
 * thread; the string is owned by f and valid until its last unref. The
 * message also reaches weft_tsfuture_wrap's future (weft_future_message). */
const char *weft_tsfuture_message(weft_tsfuture_t *f);
/* Ask the remote task to cancel (any thread). 0 or WEFT_EDONE. */
int weft_tsfuture_cancel(weft_tsfuture_t *f);
void weft_tsfuture_ref(weft_tsfuture_t *f);
void weft_tsfuture_unref(weft_tsfuture_t *f);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_RUNTIME_H */

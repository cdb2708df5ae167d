/*
 * core/ext.h - what the layers above core (loops/, and the coming
 * channels/, actors/, io/) may use of core's internals: functions on
 * opaque loops, futures, hook handles and wait queues, no struct fields.
 *
 * Layer map (base.h has it in full): leaves -> sched_int.h -> future_int.h ->
 * task_int.h -> wait_int.h -> sync/timeout/queue/combine/group/gen -> ext.h.
 * Includes only the leaves base.h, source.h and list.h and the public
 * headers: the layouts stay in core/. Implemented by ext.c (which includes
 * every layer, so the compiler checks that the declarations repeated here
 * match theirs). //core:ext exports this header with those leaves and
 * alloc.h/testhooks.h; //loops:core_includes_test keeps loops/ to them.
 *
 * Everything here runs on the loop's thread unless it says otherwise. The
 * calls are out of line: they sit on per-message paths of the runtime that
 * cost a cross-core hop (~1 us), against a call's ~1 ns.
 */
#ifndef WEFT_CORE_EXT_H
#define WEFT_CORE_EXT_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/future.h>
#include <weft/loop.h>
#include <weft/task.h>

#include "base.h"
#include "list.h"
#include "source.h"

struct weft_future; /* weft_future_t */
struct weft__handle;

/* ---- loops ----------------------------------------------------------------- */

/* l is a loop (initialised once: its magic is there), closed or not; any
 * thread. */
bool weft__loop_valid(const struct weft__loop *l);
/* The loop's counters of tasks spawned so far and alive now (the loop's
 * thread; weft_loop_stats copies them all). */
uint64_t weft__loop_tasks_spawned(const struct weft__loop *l);
uint64_t weft__loop_tasks_live(const struct weft__loop *l);
/* Any thread: a plain (unfenced) look at whether l announced sleep. True
 * means "wake it" (weft__loop_wake_if_sleeping does it properly); false
 * proves nothing - a sleep announced at this instant may not show yet. */
bool weft__loop_maybe_sleeping(const struct weft__loop *l);
/* l runs on a thread other than the caller's: true means the caller
 * returns WEFT_EWRONGLOOP (in debug mode it aborts instead, naming `call`).
 * Any thread. */
bool weft__loop_wrong_thread(const struct weft__loop *l, const char *call);
/* Count a callback that a message ran (weft_loop_stats' callbacks_run). */
void weft__loop_count_callback(struct weft__loop *l);
/* Cancel every live task of l (weft_task_cancel each, in slot order). */
void weft__loop_cancel_tasks(struct weft__loop *l);
/* Cancel every pending proxy of l (future_int.h). */
void weft__loop_cancel_proxies(struct weft__loop *l);
/* The runtime numbers its loops: the shuffle's stream (sched_int.h). */
void weft__loop_set_index(struct weft__loop *l, unsigned idx);
/* Any thread: post fn(ctx = l, a, b, c, d) through l's inbox (sched_int.h):
 * 0, WEFT_ECLOSED, or UV_ENOMEM. The function type is inbox.h's, repeated. */
typedef void (*weft__inbox_fn)(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d);
int weft__post(struct weft__loop *l, weft__inbox_fn fn, uintptr_t a, uintptr_t b, uintptr_t c,
               uintptr_t d);

/* The handler weft_loop_add_signal_handler installed on l for signum:
 * true with *cb and *arg, false if it has none (io/signal.c builds its
 * awaitable signals on these handlers and must not replace a program's
 * own). l's thread. */
bool weft__loop_signal_handler(const struct weft__loop *l, int signum, weft_signal_fn *cb,
                               void **arg);

/* ---- futures --------------------------------------------------------------- */

/* The recycling generation of f (relaxed atomic load: any thread may name
 * f by (pointer, generation), as tokens and the runtime's messages do). */
uint32_t weft__future_gen(const struct weft_future *f);
/* f's outcome has been read (no "never retrieved" warning for it). */
void weft__future_mark_retrieved(struct weft_future *f);
/* A finished f's outcome, read once and passed on: marks it retrieved and
 * returns its code, with *result (DONE only, else NULL) and *msg (its error
 * message, still f's, or NULL). */
int weft__future_take(struct weft_future *f, void **result, const char **msg);
/* Complete a pending f with code err: 0 = done with result, UV_ECANCELED =
 * cancelled, else failed; takes ownership of msg. UV_EINVAL if f is not
 * pending (msg is then not taken). */
int weft__future_settle(struct weft_future *f, int err, void *result, char *msg);
/* A result arrived for f after it was done: free it with f's result
 * destructor, if any (future_int.h). */
void weft__side_drop_result(struct weft_future *f, void *result);

/* ---- hooks: fn(h, f) runs inline when f completes ---------------------------
 *
 * f must be of the caller's loop and stay referenced while the hook is
 * attached. The callback releases h (weft__hook_release) once it is done
 * with it; weft__hook_remove detaches a hook that has not run. */
struct weft__handle *weft__hook_add(struct weft_future *f,
                                    void (*fn)(struct weft__handle *, struct weft_future *),
                                    void *arg);
void weft__hook_remove(struct weft__handle *h);
void *weft__hook_arg(const struct weft__handle *h);
/* A spare number the hook's owner may keep in it. */
void weft__hook_set_tag(struct weft__handle *h, uint32_t tag);
uint32_t weft__hook_tag(const struct weft__handle *h);
void weft__hook_release(struct weft__handle *h);

/* ---- wait queues: FIFOs of tasks of one loop (a list head each) ----------- */

/* Wait on q, as the primitives do (wait_int.h's weft__wait_here): WEFT_ENOTASK
 * outside a task, a pending cancel or passed scope deadline first, timeout
 * 0 = UV_ETIMEDOUT; else the code of the grant, UV_ETIMEDOUT or
 * UV_ECANCELED. */
int weft__waitq_wait(struct weft__list *q, uint64_t timeout_ms);
/* Somebody on q still waits (not already woken by a cancel or a timeout). */
bool weft__waitq_busy(struct weft__list *q);
/* Grant the oldest waiter that still waits: its wait returns code. False
 * if nobody waits. */
bool weft__waitq_grant(struct weft__list *q, int code);

#endif /* WEFT_CORE_EXT_H */

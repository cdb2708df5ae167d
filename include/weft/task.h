/*
 * weft/task.h - tasks: stackful coroutines on one loop.
 *
 * A task body is a plain C function `int body(void *arg, void **result)` that
 * may suspend (weft_yield, weft_sleep, weft_await, ...). It returns 0 to finish
 * with *result (NULL if untouched), a negative code to fail, or UV_ECANCELED
 * to end as cancelled. A task is also a future (weft_task_future()).
 *
 * States: CREATED (spawned, not yet run; owns no stack), RUNNING, SUSPENDED,
 * then DONE, FAILED or CANCELLED.
 *
 * Ownership of the handle: weft_spawn(..., &t) gives the caller one reference;
 * release it with weft_task_unref() (the task keeps running: the loop holds
 * its own reference until the task finishes). Pass out = NULL for a detached
 * task. The handle stays readable (state, result) while referenced.
 *
 * Scheduling: a task that awaits a task which has not started yet (same loop,
 * no other awaiter yet, enough stack left) runs it inline, on its own stack,
 * like a function call - as `await coro()` does in asyncio. This keeps trees
 * of tasks depth-first and needs no stack for the child. The child keeps its
 * identity (weft_task_current(), cancellation, dump) and is guaranteed its
 * requested stack size.
 *
 * Cancellation: weft_task_cancel() makes the task's current (or next)
 * suspension return UV_ECANCELED and cancels the future it awaits; a CREATED
 * task never runs. The request is consumed when delivered, so the task may go
 * on and suspend again; a no-cancel region (weft_nocancel_begin) holds it back
 * until the region ends. Requests are also counted, as asyncio counts them
 * (Task.cancelling/uncancel): delivering does not lower the count,
 * weft_task_uncancel() does. Code that cancels a task and later catches that
 * cancel in the same task withdraws its own request, and if others remain
 * passes UV_ECANCELED on (task groups do: group.h). Awaiting a task waits for
 * it to finish even when the awaiter is cancelled (as in asyncio: the cancel
 * is passed on to the awaited task), and the awaiter then resumes with
 * UV_ECANCELED once that one is done - even if it caught the cancel and
 * finished normally, where asyncio would hand over its result: a cancel is
 * never swallowed by the task it was passed on to (*result is then NULL and
 * the task's outcome stays unread).
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_task weft_task_t;
typedef int (*weft_task_fn)(void *arg, void **result);

typedef enum weft_task_state {
    WEFT_TASK_CREATED,
    WEFT_TASK_RUNNING,
    WEFT_TASK_SUSPENDED,
    WEFT_TASK_DONE,
    WEFT_TASK_FAILED,
    WEFT_TASK_CANCELLED,
} weft_task_state_t;

typedef struct weft_task_opts {
    const char *name;  /* not copied: must outlive the task (literals do);
                        * weft_task_set_name copies */
    size_t stack_size; /* 0 = the loop's default */
} weft_task_opts_t;

/* Spawn fn(arg) as a task on `loop` (NULL = current loop). It first runs
 * from the loop's ready queue, or inline when first awaited. Loop thread.
 * Returns 0, UV_EINVAL (NULL fn, no loop, bad stack size), WEFT_ECLOSED,
 * UV_ENOMEM. The macros record the spawn site. */
WEFT_WARN_UNUSED int weft__spawn(weft_loop_t *loop, weft_task_fn fn, void *arg,
                                 const weft_task_opts_t *opts, weft_task_t **out, const char *file,
                                 int line);
#define weft_spawn(loop, fn, arg, out) \
    weft__spawn((loop), (fn), (arg), NULL, (out), __FILE__, __LINE__)
#define weft_spawn_ex(loop, fn, arg, opts, out) \
    weft__spawn((loop), (fn), (arg), (opts), (out), __FILE__, __LINE__)

void weft_task_ref(weft_task_t *t);
void weft_task_unref(weft_task_t *t);

/* The task running on this thread, or NULL outside tasks. */
weft_task_t *weft_task_current(void);
const char *weft_task_name(const weft_task_t *t);
uint64_t weft_task_id(const weft_task_t *t);
weft_task_state_t weft_task_state(const weft_task_t *t);
const char *weft_task_state_name(weft_task_state_t s);
weft_future_t *weft_task_future(weft_task_t *t);

/* Give t a name (asyncio's Task.set_name): copied, so it need not outlive
 * the task; it replaces the name of weft_task_opts_t or of an earlier call
 * (whose copy is freed), NULL clears it. Shown by weft_task_name,
 * weft_loop_dump and the loop's warnings. The copy lives outside the task
 * (its loop's side table, freed when the task is recycled). Any state,
 * while referenced. 0, UV_EINVAL (t NULL), WEFT_EWRONGLOOP (another
 * thread while t's loop runs), UV_ENOMEM (the name is unchanged). */
WEFT_WARN_UNUSED int weft_task_set_name(weft_task_t *t, const char *name);

/* --- Task-local storage (asyncio's contextvars) ---
 *
 * A key is made once per process (any thread, any time; keys are never
 * deleted, as ContextVars are module-level) and names one value per task:
 * weft_task_local_set/get work on the running task. Values are void*; a
 * task starts with none (get returns NULL), except that a task spawned by
 * a task of the same loop inherits a copy of the spawner's values as they
 * are at the spawn, as asyncio's create_task runs the new task in a
 * copy_context() of the current one: setting a value later, in either
 * task, does not change the other's. The copy is shallow by default (the
 * child holds the same pointer) unless the key has a copy function (opts).
 * Tasks started from a callback, another loop (weft_submit_to) or another
 * thread inherit nothing.
 *
 * Destructor: when a task finishes, each of its values that is not NULL is
 * given to its key's destructor, on the task's loop. It runs once per task
 * that holds the value: with shallow inheritance a parent and its children
 * each hold the pointer, so a key whose destructor frees needs a copy
 * function (a strdup, a reference count's ref) or no_inherit. Setting a
 * value gives the one it replaces to the destructor (unless it is the same
 * pointer). Destructors and copy functions must not suspend. */
#define WEFT_TASK_KEYS_MAX 128
typedef struct weft_task_key {
    uint32_t weft__id; /* 1..WEFT_TASK_KEYS_MAX; 0: not made */
} weft_task_key_t;
typedef void (*weft_task_local_dtor)(void *value);
typedef struct weft_task_key_opts {
    /* A spawned child gets copy(value) instead of value (NULL = not set);
     * NULL = the same pointer (shallow). */
    void *(*copy)(void *value);
    bool no_inherit; /* children start without this key's value */
} weft_task_key_opts_t;
/* 0, UV_EINVAL (out NULL), UV_ENOSPC (WEFT_TASK_KEYS_MAX keys made). dtor
 * may be NULL. */
WEFT_WARN_UNUSED int weft_task_key_new(weft_task_local_dtor dtor, weft_task_key_t *out);
WEFT_WARN_UNUSED int weft_task_key_new_ex(weft_task_local_dtor dtor,
                                          const weft_task_key_opts_t *opts, weft_task_key_t *out);
/* The running task's value for key: 0, WEFT_ENOTASK (outside tasks),
 * UV_EINVAL (a key not made), UV_ENOMEM (the value is unchanged). */
WEFT_WARN_UNUSED int weft_task_local_set(weft_task_key_t key, void *value);
/* The running task's value for key; NULL if none, outside tasks, or for a
 * key not made. */
void *weft_task_local_get(weft_task_key_t key);

/* Request cancellation. 0 if requested; WEFT_EDONE if the task already
 * finished (nothing done); UV_EINVAL for NULL. Each request counts once
 * (weft_task_cancelling). */
int weft_task_cancel(weft_task_t *t);
/* weft_task_cancel with a reason, asyncio's Task.cancel(msg): msg (copied;
 * NULL = none) becomes the task's message (weft_task_message) if it ends
 * cancelled, as CancelledError(msg) would say; the reason is passed on with
 * the cancel to what the task awaits (a task, or a future: its
 * weft_future_message). The latest reason replaces an earlier one; a
 * message the task gave itself (weft_fail) stays. A task that ends any
 * other way, or whose requests are all withdrawn (weft_task_uncancel),
 * drops the reason. If it cannot be copied (no memory), the cancel is made
 * without it. Returns as weft_task_cancel. */
int weft_task_cancel_msg(weft_task_t *t, const char *msg);
/* The number of cancel requests made of t and not withdrawn (asyncio's
 * Task.cancelling()): the weft_task_cancel calls that returned 0, less the
 * requests weft_task_uncancel withdrew. Delivering a cancel does not lower
 * it; it stays readable after the task finished. Counts up to 255, where it
 * sticks. UV_EINVAL for NULL. */
int weft_task_cancelling(const weft_task_t *t);
/* Withdraw one cancel request (asyncio's Task.uncancel()) and return the
 * number left; at 0 it does nothing and returns 0. When the last one is
 * withdrawn from a live task, a cancel not delivered yet is dropped. A
 * count stuck at 255 is not lowered. UV_EINVAL for NULL, WEFT_EWRONGLOOP
 * from another loop's thread while t's loop runs. */
int weft_task_uncancel(weft_task_t *t);
/* Outcome of a finished task: as weft_future_result(). */
int weft_task_result(const weft_task_t *t, void **result);
/* The outcome's message: weft_fail's, or for a task that ended cancelled
 * the cancel's reason (weft_task_cancel_msg); NULL if none, and NULL for
 * a reason while the task has not ended. */
const char *weft_task_message(const weft_task_t *t);

/* Give a failure message to the current task's outcome (copied); the body
 * still returns the code. Returns `code` so `return weft_fail(UV_EIO, "x");`
 * works. Outside a task it only returns code. */
int weft_fail(int code, const char *message);

/* --- Suspension points: only inside a task (WEFT_ENOTASK otherwise). Each
 * returns UV_ECANCELED if the task is cancelled while suspended. --- */

/* Let every other ready task and callback run once (asyncio.sleep(0)). */
WEFT_WARN_UNUSED int weft_yield(void);
/* Sleep at least ms milliseconds (0 = yield). WEFT_FOREVER (or any time
 * too long to represent) sleeps until the task is cancelled or its timeout
 * scope expires (asyncio.sleep(math.inf)). */
WEFT_WARN_UNUSED int weft_sleep(uint64_t ms);
/* Wait until f is done; returns its outcome as weft_future_result(). If the
 * awaiting task is cancelled, the future is cancelled too and UV_ECANCELED is
 * returned (for a task: once it has finished). WEFT_EDEADLK when a task
 * awaits itself, UV_EINVAL for NULL, WEFT_EWRONGLOOP when f belongs to
 * another loop: a future of another loop is awaited through a token
 * (weft_await_token below), because a bare pointer cannot tell whether its
 * slot still holds the same future. */
WEFT_WARN_UNUSED int weft_await(weft_future_t *f, void **result);
/* As weft_await but gives up after timeout_ms (0 = do not wait,
 * WEFT_FOREVER = no timeout: weft_await) with UV_ETIMEDOUT, leaving f
 * untouched (not cancelled). */
WEFT_WARN_UNUSED int weft_await_timeout(weft_future_t *f, uint64_t timeout_ms, void **result);
/* Await the future named by a token (weft/future.h), of any loop: the task
 * resumes on its own loop. Uses the token up on every return except
 * WEFT_ENOTASK and UV_EINVAL (an empty or stale token). For another loop's
 * future, cancellation (or a scope deadline) withdraws the wait and cancels
 * the future there, as for a local await; the _timeout form's own timeout
 * only withdraws the wait; 0 returns UV_ETIMEDOUT without looking (that
 * future's state cannot be read from here), WEFT_FOREVER is no timeout. A wait that the owner loop
 * can no longer answer (it closed) returns WEFT_ECLOSED. */
WEFT_WARN_UNUSED int weft_await_token(weft_future_token_t tok, void **result);
WEFT_WARN_UNUSED int weft_await_token_timeout(weft_future_token_t tok, uint64_t timeout_ms,
                                              void **result);
/* weft_await(weft_task_future(t), result). */
WEFT_WARN_UNUSED int weft_await_task(weft_task_t *t, void **result);

/* No-cancel regions: a shield for the running task's own code (clean-up
 * that must run to its end), where weft_shield() guards one future. Between
 * weft_nocancel_begin() and weft_nocancel_end(), no suspension of the task
 * is ended by a cancel: cancels stay pending (and counted) and are
 * delivered at its first suspension after the region, and what the task
 * awaits is not cancelled. Nor do deadlines of timeout scopes end them, the
 * scopes begun inside the region included: bound a wait in the region with
 * the call's own timeout (weft_sleep, weft_await_timeout, a primitive's
 * timeout_ms), which still works. A deadline that passed shows at the first
 * suspension after the region, as everywhere (timeout.h). Regions nest; the
 * outermost end ends the region. In a task only (WEFT_ENOTASK otherwise).
 * begin: 0, or UV_EOVERFLOW past 254 levels. end: 0, or UV_EINVAL if no
 * region of the running task is open. A region left open ends with the
 * task. */
WEFT_WARN_UNUSED int weft_nocancel_begin(void);
int weft_nocancel_end(void);

/* asyncio.run: init a loop, spawn main(arg), run until it finishes, cancel
 * and drain what is left, close the loop. Returns main's outcome (its
 * result in *result if not NULL), or an init/close error. Not re-entrant:
 * WEFT_EREENTRANT when called on a thread that runs a loop. weft_run_ex
 * takes the loop's options (NULL = defaults) where every call takes its
 * options: after the inputs, before the out-parameters. */
WEFT_WARN_UNUSED int weft_run(weft_task_fn main, void *arg, void **result);
WEFT_WARN_UNUSED int weft_run_ex(weft_task_fn main, void *arg, const weft_loop_opts_t *opts,
                                 void **result);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_TASK_H */

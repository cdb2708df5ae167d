/*
 * weft/timeout.h - deadline scopes: asyncio.timeout() / Trio's move_on_after
 * in C.
 *
 *     weft_timeout_t tmo;
 *     int rc = weft_timeout_begin(&tmo, 100);  // deadline = now + 100 ms
 *     if (rc != 0) return rc;
 *     rc = do_work();                          // any suspensions inside
 *     if (weft_timeout_end(&tmo) == UV_ETIMEDOUT) { ... this scope expired ... }
 *
 * Rules (asyncio's, made level-triggered because C has no exceptions):
 * - Once the deadline passes, the suspension the task is in returns
 *   UV_ETIMEDOUT, and so does every later suspension inside the scope
 *   (weft_yield, weft_sleep, weft_await*, every primitive's wait, queue
 *   put/get, gather, ...), at once, until the scope ends. Code that ignores
 *   one error cannot keep waiting past the deadline.
 * - What the task was waiting for is treated as asyncio treats it when the
 *   timeout cancels the task: an awaited task or future is cancelled (and an
 *   awaited task is waited for until it has finished cancelling), a lock or
 *   queue wait is withdrawn (nothing is lost: an operation that had already
 *   completed reports success and the timeout shows at the next suspension).
 * - Scopes nest; the earliest deadline wins. weft_timeout_end() returns
 *   UV_ETIMEDOUT only for the scope whose own deadline passed
 *   (asyncio's Timeout.expired()); an inner scope that was cut short by an
 *   outer one ends with 0, and its caller sees UV_ETIMEDOUT from the
 *   suspension that was interrupted, which it passes up.
 * - Scopes must end in reverse order of beginning, in the task that began
 *   them, and before that task returns (UV_EINVAL otherwise).
 * - weft_timeout_reschedule() moves the deadline (earlier or later, even
 *   after it passed: a scope can be revived) from inside the scope.
 *
 * Deadlines are on the loop's monotonic clock (weft_loop_now_ns()).
 */
#ifndef WEFT_TIMEOUT_H
#define WEFT_TIMEOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_timeout {
    uint64_t weft__deadline; /* this scope's own deadline (ns), or WEFT_FOREVER */
    uint64_t weft__eff;      /* earliest deadline of this scope and its parents */
    struct weft_timeout *weft__parent;
    weft_task_t *weft__task;
    bool weft__expired; /* this scope's own deadline passed while inside */
    bool weft__active;
} weft_timeout_t;

/* Enter a scope whose deadline is timeout_ms from now (WEFT_FOREVER, or any
 * timeout too long to represent, for none; for the _at forms WEFT_FOREVER
 * is the absolute "no deadline"). In a task only: WEFT_ENOTASK outside,
 * UV_EINVAL for NULL or an active scope. */
WEFT_WARN_UNUSED int weft_timeout_begin(weft_timeout_t *s, uint64_t timeout_ms);
/* Same, with an absolute deadline in weft_loop_now_ns() nanoseconds. */
WEFT_WARN_UNUSED int weft_timeout_begin_at(weft_timeout_t *s, uint64_t deadline_ns);
/* Leave the scope: UV_ETIMEDOUT if its own deadline passed, else 0.
 * UV_EINVAL if s is not the current task's innermost scope. */
int weft_timeout_end(weft_timeout_t *s);
/* Move the deadline to timeout_ms from now / to deadline_ns. The owner task
 * only (UV_EPERM from another task). Clears the expired mark if the new
 * deadline is in the future. */
int weft_timeout_reschedule(weft_timeout_t *s, uint64_t timeout_ms);
int weft_timeout_reschedule_at(weft_timeout_t *s, uint64_t deadline_ns);
/* The deadline (ns, WEFT_FOREVER for none), and whether the scope
 * expired: its own deadline passed and a suspension inside saw it (asyncio's
 * Timeout.expired()). */
uint64_t weft_timeout_deadline(const weft_timeout_t *s);
bool weft_timeout_expired(const weft_timeout_t *s);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_TIMEOUT_H */

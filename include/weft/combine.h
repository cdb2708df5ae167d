/*
 * weft/combine.h - waiting on many futures: asyncio.gather, wait, wait_for,
 * as_completed, shield, and a retry helper.
 *
 * Futures given here may be tasks (weft_task_future(t)) or plain futures
 * of the current loop (UV_EINVAL for NULL entries, WEFT_EWRONGLOOP for a
 * future of another loop, WEFT_EDEADLK if the calling task is among them).
 * The caller keeps its references (and the array) for the whole call. Each
 * pending future costs one pooled record from the loop while watched (no
 * allocator call in steady state; UV_ENOMEM if the pool cannot grow). On a
 * COMPACT loop gather, wait and wait_for also allocate one small record per
 * call (a suspended task's stack does not hold its frames there).
 *
 * Outside a task they return WEFT_ENOTASK, except weft_shield, which does
 * not wait and also works from callbacks on the loop's thread.
 */
#ifndef WEFT_COMBINE_H
#define WEFT_COMBINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_RETURN_ERRORS 1u /* gather: collect every code instead of failing fast */

/* asyncio.gather(*fs, return_exceptions=...).
 * results[i] (optional) gets fs[i]'s result, errors[i] (optional) its code.
 * Without WEFT_RETURN_ERRORS: returns 0 once every future succeeded, or the
 * code of the first future to fail (in completion order) as soon as it
 * fails; the others keep running (asyncio's default) and errors[] holds the
 * codes of those done so far (WEFT_EPENDING for the rest).
 * With WEFT_RETURN_ERRORS: waits for all and returns 0; every code is in
 * errors[] (failures are then counted as retrieved).
 * If the gathering task is cancelled (or its timeout scope expires), every
 * child still pending is cancelled and waited for, and gather returns
 * UV_ECANCELED (UV_ETIMEDOUT). */
WEFT_WARN_UNUSED int weft_gather(weft_future_t *const *fs, size_t n, void **results, int *errors,
                                 unsigned flags);

typedef enum weft_wait_mode {
    WEFT_ALL_COMPLETED = 0,
    WEFT_FIRST_COMPLETED = 1,
    WEFT_FIRST_ERROR = 2, /* asyncio's FIRST_EXCEPTION: first failure or all done */
} weft_wait_mode_t;

/* asyncio.wait: wait until `mode` is met or timeout_ms passes
 * (WEFT_FOREVER = no timeout, 0 = just look). Never cancels the futures.
 * done[i] (optional) tells which are done. Returns 0 when the condition was
 * met, UV_ETIMEDOUT if the timeout came first, UV_ECANCELED if the waiting
 * task was cancelled (the futures are left running). */
WEFT_WARN_UNUSED int weft_wait(weft_future_t *const *fs, size_t n, uint64_t timeout_ms,
                               weft_wait_mode_t mode, bool *done);

/* asyncio.wait_for: await f for at most timeout_ms. On timeout f is
 * cancelled and waited for until it has finished cancelling, then
 * UV_ETIMEDOUT is returned (if f managed to finish anyway, its outcome is
 * returned instead). If the waiting task is cancelled, f is cancelled too. */
WEFT_WARN_UNUSED int weft_wait_for(weft_future_t *f, uint64_t timeout_ms, void **result);

/* asyncio.shield: *out is a new future (one reference, the caller's) that
 * completes like f; cancelling *out (e.g. by cancelling a task that awaits
 * it) does not cancel f. f may be referenced by the caller only for this
 * call: the shield keeps its own reference until f is done. */
WEFT_WARN_UNUSED int weft_shield(weft_future_t *f, weft_future_t **out);

/* asyncio.as_completed: yields the futures in the order they finish.
 *
 *     weft_as_completed_t it;
 *     int rc = weft_as_completed_init(&it, fs, n, 1000); // overall timeout
 *     if (rc != 0) return rc;
 *     weft_future_t *f;
 *     while ((rc = weft_as_completed_next(&it, &f)) == 0) { ... f is done ... }
 *     // rc: UV_EOF after the last, UV_ETIMEDOUT, UV_ECANCELED
 *     weft_as_completed_close(&it);
 *
 * The array fs and the futures must stay valid until close. Futures already
 * done at init come first, in array order. */
typedef struct weft_as_completed {
    void *weft__watch[6]; /* private */
    weft_future_t *const *weft__fs;
    uint64_t weft__deadline;
    size_t weft__n, weft__yielded;
    bool weft__open;
} weft_as_completed_t;

WEFT_WARN_UNUSED int weft_as_completed_init(weft_as_completed_t *it, weft_future_t *const *fs,
                                            size_t n, uint64_t timeout_ms);
WEFT_WARN_UNUSED int weft_as_completed_next(weft_as_completed_t *it, weft_future_t **out);
void weft_as_completed_close(weft_as_completed_t *it);

/* Retry fn(arg, result) - called directly in the current task - until it
 * returns 0 or attempts are used up, sleeping base_delay_ms, then twice as
 * long each time (capped at max_delay_ms; 0 = no cap), optionally with full
 * jitter. Never retries UV_ECANCELED or UV_ETIMEDOUT from an enclosing
 * timeout scope; retry_if (optional) decides for other codes (true =
 * retry). Returns fn's last code (0 and *result on success). */
typedef struct weft_retry_opts {
    uint32_t attempts;      /* >= 1 */
    uint64_t base_delay_ms; /* delay after the first failure */
    uint64_t max_delay_ms;  /* 0 = no cap */
    bool jitter;            /* sleep a uniform random time in [0, delay] */
    bool (*retry_if)(int code, void *arg);
} weft_retry_opts_t;

WEFT_WARN_UNUSED int weft_retry(weft_task_fn fn, void *arg, const weft_retry_opts_t *opts,
                                void **result);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_COMBINE_H */

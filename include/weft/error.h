/*
 * weft/error.h - error codes.
 *
 * Every weft call returns 0 or a negative error code. Codes shared with the
 * system are libuv's UV_E* values (negated errno on Unix), so uv_strerror()
 * agrees with weft_strerror(); weft's own few codes live in a range libuv does
 * not use. One X-macro table generates the enum, weft_strerror() and
 * weft_err_name().
 *
 * Codes weft uses with a fixed meaning (one code per meaning, in every
 * header):
 *   UV_ECANCELED   a suspension was cancelled (task or awaited future cancelled)
 *   UV_ETIMEDOUT   a deadline or timeout passed while suspended
 *   UV_EINVAL      bad argument, or completing a future that is already done
 *   UV_EBUSY       closing (or reusing) an object that still has live tasks,
 *                  waiters or pending work
 *   UV_ENOMEM      the allocator failed
 *   UV_EPERM       releasing a lock (or waiting on a condition) you do not hold
 *   UV_EAGAIN      "would wait": every *_try form (weft_lock_try,
 *                  weft_sem_try, weft_queue_put_try, weft_queue_get_try,
 *                  weft_call_on_try) and a callback that cannot wait
 *   UV_EOF         end of stream: a generator or iterator (as_completed)
 *                  has no more values, a TCP peer ended its side
 *   WEFT_ECLOSED   a queue that was shut down, a closed loop or pool
 *   WEFT_EBROKEN   a barrier was aborted or reset while waiting
 *   WEFT_ELAGGED   a broadcast receiver fell more than the capacity behind
 *                  and missed values (weft/broadcast.h)
 *   WEFT_ELIMIT    a stream's line (or read_until delimiter) was not found
 *                  within the limit; the data stays readable (weft/stream.h)
 *
 * Nothing to cancel - every cancel function follows one rule:
 *   WEFT_EDONE     the object exists and has already finished (a done
 *                  future or task, a tsfuture whose task ended, a group
 *                  with no live child): nothing was changed
 *   UV_ENOENT      the handle names nothing any more (stale or unknown): a
 *                  weft_handle_t whose callback ran, is running or was
 *                  cancelled - its slot is recycled, so "ran" and "stale"
 *                  cannot be told apart and both are UV_ENOENT
 */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* weft's own codes: name, value, message. */
#define WEFT_ERRNO_MAP(XX)                                            \
    XX(ENOTASK, -5001, "operation needs a running weft task")         \
    XX(EDEADLK, -5002, "a task cannot await itself")                  \
    XX(EWRONGLOOP, -5003, "object belongs to another loop or thread") \
    XX(ECLOSED, -5004, "loop, queue or generator is closed")          \
    XX(EREENTRANT, -5005, "loop is already running")                  \
    XX(EPENDING, -5006, "result is not ready yet")                    \
    XX(EDONE, -5007, "already finished: nothing to do")               \
    XX(EBROKEN, -5009, "barrier is broken")                           \
    XX(ELAGGED, -5010, "receiver lagged behind a broadcast")          \
    XX(ELIMIT, -5011, "line or delimiter limit exceeded")
/* -5008 was WEFT_EOF, retired for libuv's UV_EOF; not reused. */

enum {
#define WEFT__ERR_ENUM(name, value, msg) WEFT_##name = (value),
    WEFT_ERRNO_MAP(WEFT__ERR_ENUM)
#undef WEFT__ERR_ENUM
};

/* Human-readable message for any weft or libuv code; never NULL. */
const char *weft_strerror(int code);

/* Symbolic name ("ECANCELED", "WEFT_ENOTASK", ...); never NULL. */
const char *weft_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_ERROR_H */

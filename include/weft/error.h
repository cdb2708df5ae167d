/*
 * weft/error.h - error codes.
 *
 * Every weft call returns 0 or a negative error code. Codes shared with the
 * system are libuv's UV_E* values (negated errno on Unix), so uv_strerror()
 * agrees with weft_strerror(); weft's own few codes live in a range libuv does
 * not use. One X-macro table generates the enum, weft_strerror() and
 * weft_err_name().
 *
 * Codes weft uses with a fixed meaning:
 *   UV_ECANCELED   a suspension was cancelled (task or awaited future cancelled)
 *   UV_ETIMEDOUT   a deadline or timeout passed while suspended
 *   UV_EINVAL      bad argument, or completing a future that is already done
 *   UV_EBUSY       closing a loop that still has live tasks or pending work
 *   UV_ENOENT      cancelling a handle that already ran or was cancelled
 *   UV_ENOMEM      the allocator failed
 *   UV_EPERM       releasing a lock (or waiting on a condition) you do not hold
 *   UV_EAGAIN      a try_* call that would have to wait
 *   WEFT_ECLOSED   a queue that was shut down, a closed loop or generator
 *   WEFT_EOF       a generator or iterator has no more values
 *   WEFT_EBROKEN   a barrier was aborted or reset while waiting
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
    XX(EOF, -5008, "end of stream: no more values")                   \
    XX(EBROKEN, -5009, "barrier is broken")

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

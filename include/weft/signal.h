/*
 * weft/signal.h - await a signal in a task (asyncio's add_signal_handler,
 * turned into a wait). docs/io.md, "Signals".
 *
 * A watcher counts the deliveries of one signal to one loop from the
 * moment it is opened; weft_signal_wait takes them (waiting for the next
 * if none came since the last wait), so a signal that arrives between two
 * waits is not lost. It is built on the loop's own signal handlers
 * (weft_loop_add_signal_handler, weft/loop.h): the first watcher of a
 * signal on a loop installs the loop's handler for it, the last one to
 * close removes it, and all watchers of that signal on that loop share it.
 * A loop whose program installed a handler of its own for the signal
 * refuses watchers (UV_EBUSY) rather than replace it; a program that
 * replaces the watchers' handler later (weft_loop_add_signal_handler for
 * the same signal) silences them. Watchers do not keep a loop running;
 * a task waiting in weft_signal_wait does, as any waiting task. Close
 * every watcher before the loop closes. Loop thread only.
 */
#ifndef WEFT_SIGNAL_H
#define WEFT_SIGNAL_H

#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_signal weft_signal_t;

/* Watch signum on loop (NULL: this thread's). 0 with *out, UV_EINVAL (out
 * NULL, no loop, a signal that cannot be caught: SIGKILL, SIGSTOP, out of
 * range), UV_EBUSY (the loop has a handler of the program's for signum),
 * WEFT_ECLOSED, WEFT_EWRONGLOOP, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_signal_open(weft_loop_t *loop, int signum, weft_signal_t **out);
/* Wait until signum was delivered at least once since the watcher was
 * opened or last waited: 0 with *count (may be NULL) = the deliveries
 * taken (several that came close together may count once: the kernel
 * merges pending signals). UV_EINVAL (NULL, closed), WEFT_ECLOSED (closed
 * while waiting), UV_ECANCELED, UV_ETIMEDOUT (0 = just look),
 * WEFT_ENOTASK (none pending, outside a task). */
WEFT_WARN_UNUSED int weft_signal_wait(weft_signal_t *s, unsigned *count);
WEFT_WARN_UNUSED int weft_signal_wait_timeout(weft_signal_t *s, uint64_t timeout_ms,
                                              unsigned *count);
/* The signal watched; UV_EINVAL for NULL. */
int weft_signal_signum(const weft_signal_t *s);
/* Stop watching; tasks waiting on s return WEFT_ECLOSED. s is released
 * and must not be used after the call. 0, UV_EINVAL (NULL). */
int weft_signal_close(weft_signal_t *s);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_SIGNAL_H */

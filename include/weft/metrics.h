/*
 * weft/metrics.h - the loops' and the runtime's counters in the Prometheus
 * text exposition format (docs/observability.md lists every metric).
 */
#ifndef WEFT_METRICS_H
#define WEFT_METRICS_H

#include <stdio.h>

#include "loop.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write the counters of one loop or of a whole runtime to out, in the
 * Prometheus text format (version 0.0.4): every metric with its # HELP and
 * # TYPE lines, one series per loop labelled loop="<index>" (a loop outside
 * a runtime is loop="0"; weft_loop_index() otherwise).
 *
 * - rt != NULL (loop must be NULL): every loop of rt, and the mesh counters
 *   (weft_runtime_stats). From a thread that runs none of rt's loops (a
 *   plain thread, or another runtime's loop, which then blocks while rt's
 *   loops answer); WEFT_EWRONGLOOP from one of rt's own loops, which would
 *   wait for itself. Each loop's counters are copied by the loop's own thread
 *   (a message through its inbox, which wakes it if it sleeps) while the
 *   caller waits, so every loop's numbers are consistent with each other;
 *   different loops are copied at slightly different instants. Not
 *   concurrently with weft_runtime_stop.
 * - rt == NULL: the loop `loop` (NULL = the calling thread's loop), as
 *   weft_loop_stats: from its own thread, or from any thread while it does
 *   not run; WEFT_EWRONGLOOP if it runs on another thread.
 *
 * Returns 0, UV_EINVAL (bad arguments, no loop), WEFT_EWRONGLOOP,
 * WEFT_ECLOSED (a loop of rt is closed), UV_ENOMEM, or UV_EIO if writing to
 * out failed. */
WEFT_WARN_UNUSED int weft_metrics_write(FILE *out, weft_runtime_t *rt, weft_loop_t *loop);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_METRICS_H */

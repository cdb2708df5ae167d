/*
 * weft/supervisor.h - supervision trees with Erlang/OTP semantics
 * (docs/actors.md, "Supervisors").
 *
 * A supervisor is an actor that traps exits, starts its children in order
 * (each through its spec's start function, which spawns the child with
 * fresh state wherever it likes - a loop, a shard key - and gives back its
 * reference), links to each, and restarts them when they exit, by its
 * strategy:
 *   ONE_FOR_ONE   only the child that exited
 *   ONE_FOR_ALL   every child: the others are shut down in reverse order,
 *                 then all are started again in order
 *   REST_FOR_ONE  the child and the children started after it
 *   SIMPLE_ONE_FOR_ONE  dynamic children of one spec (weft_sup_start_child),
 *                 each restarted alone
 * Restart types: PERMANENT (always), TRANSIENT (after an abnormal exit:
 * not NORMAL, not SHUTDOWN), TEMPORARY (never). More than `intensity`
 * restarts within `period_ms` (default 1 in 5000 ms, as OTP) make the
 * supervisor shut every child down and exit with SHUTDOWN, so that its own
 * supervisor applies its strategy: supervisors nest into trees.
 *
 * Shutting a child down: unlink, an exit signal SHUTDOWN, wait up to its
 * shutdown_ms (default 5000; WEFT_FOREVER for a child supervisor), then
 * kill. A supervisor ends with an ordered shutdown (children in reverse
 * order) when it gets an exit signal from outside its children - its
 * parent's, or weft_actor_exit(sup, WEFT_EXIT_SHUTDOWN, 0). weft_actor_stop
 * and kill end it without waiting: its children then get SHUTDOWN signals
 * (stop) or the link's KILLED (kill), unordered.
 */
#ifndef WEFT_SUPERVISOR_H
#define WEFT_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>

#include "actor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_sup_strategy {
    WEFT_SUP_ONE_FOR_ONE = 0,
    WEFT_SUP_ONE_FOR_ALL = 1,
    WEFT_SUP_REST_FOR_ONE = 2,
    WEFT_SUP_SIMPLE_ONE_FOR_ONE = 3,
} weft_sup_strategy_t;

typedef enum weft_child_restart {
    WEFT_CHILD_PERMANENT = 0,
    WEFT_CHILD_TRANSIENT = 1,
    WEFT_CHILD_TEMPORARY = 2,
} weft_child_restart_t;

typedef struct weft_child_spec {
    const char *id; /* for logs (not copied: must outlive the supervisor) */
    /* Start the child: spawn it (fresh state) and set *out. Runs in the
     * supervisor's task; arg is the spec's, or weft_sup_start_child's for
     * simple_one_for_one. 0, or a code (the start failed). */
    int (*start)(void *arg, weft_aref_t *out);
    void *arg;
    weft_child_restart_t restart;
    uint64_t shutdown_ms; /* 0 = 5000; WEFT_FOREVER = wait as long as it takes */
} weft_child_spec_t;

typedef struct weft_sup_opts {
    weft_sup_strategy_t strategy;
    unsigned intensity; /* 0 = 1 */
    uint64_t period_ms; /* 0 = 5000 */
} weft_sup_opts_t;

/* Start a supervisor on loop (NULL = the calling thread's) with n child
 * specs (copied; exactly 1 for simple_one_for_one, which starts none).
 * Any thread. The children start in the supervisor's task; a start that
 * fails ends the supervisor (ERROR with the start's code) after it shut
 * down the children started before. 0, UV_EINVAL, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_sup_start(weft_loop_t *loop, const weft_sup_opts_t *opts,
                                    const weft_child_spec_t *specs, size_t n, weft_aref_t *out);
/* In a task: a dynamic child of a simple_one_for_one supervisor, started
 * with arg. 0 and *child, UV_EINVAL (another strategy), the start's code,
 * or an ask's code. */
WEFT_WARN_UNUSED int weft_sup_start_child(weft_aref_t sup, void *arg, weft_aref_t *child);
/* In a task: the current children in start order (a dead, not restarted
 * one is NONE): *n of them, at most max in out. 0 or an ask's code. */
WEFT_WARN_UNUSED int weft_sup_which_children(weft_aref_t sup, weft_aref_t *out, size_t max,
                                             size_t *n);
/* Restarts made so far (in a task, an ask). */
WEFT_WARN_UNUSED int weft_sup_restarts(weft_aref_t sup, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_SUPERVISOR_H */

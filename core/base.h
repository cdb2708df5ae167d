/*
 * core/base.h - the bottom of core's internal headers: assertions, the
 * loop's opaque handle and its casts, the full fence, the longest timeout.
 *
 * The layers (each header includes only the ones above it in this list;
 * docs/core.md, "Internal layers"):
 *   alloc.h list.h heap.h stack.h ctx.h inbox.h base.h source.h
 *                 leaves: no loop, no task, no future
 *   sched_int.h   struct weft__loop: runnables, the ready queue, handles,
 *                 timers, message sources, posting and waking, owner checks
 *   future_int.h  struct weft_future, completion, hooks, tokens, remote waits
 *   task_int.h    struct weft_task, spawning, switching, the task walk
 *   wait_int.h    parking, waking, waiter records, grants, deadlines, bind
 *   (sync.c timeout.c queue.c combine.c group.c gen.c include wait_int.h
 *   and their own public header)
 *   ext.h         what the layers above core (loops/, channels/, actors/,
 *                 io/) may use: functions, no struct fields
 *   xwait.h       with ext.h: the waiter any thread can end (channels,
 *                 select); xwait.c is built on wait_int.h
 * The layer headers end in _int.h so that none shadows a system header
 * (<sched.h>, <wait.h>) on an include path that has core/ in it.
 *
 * Who may include this: anything in core/, and ext.h.
 */
#ifndef WEFT_CORE_BASE_H
#define WEFT_CORE_BASE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <weft/loop.h>

#define WEFT_ASSERT(cond)                                 \
    do {                                                  \
        if (__builtin_expect(!(cond), 0))                 \
            weft__assert_fail(#cond, __FILE__, __LINE__); \
    } while (0)
__attribute__((noreturn)) void weft__assert_fail(const char *what, const char *file, int line);

/* The loop behind a weft_loop_t (sched_int.h has its fields). */
struct weft__loop;

static inline struct weft__loop *weft__L(weft_loop_t *l)
{
    return (struct weft__loop *)(void *)l;
}
static inline weft_loop_t *weft__pub(struct weft__loop *l)
{
    return (weft_loop_t *)(void *)l;
}

extern __thread struct weft__loop *weft__tls_loop;

/* A public call's loop argument: NULL = the loop running on this thread
 * (NULL if none), for every call that takes a loop (loop.h). */
static inline struct weft__loop *weft__L_cur(const weft_loop_t *l)
{
    return l != NULL ? (struct weft__loop *)(uintptr_t)(const void *)l : weft__tls_loop;
}

/* A full (seq_cst) fence, the same instruction in every build. gcc warns
 * (-Wtsan) that ThreadSanitizer does not model fences; it does not need to:
 * the slots and rings are ordered by release/acquire pairs, which TSan
 * checks, and the fences only order the sleep announcement against the
 * producers' flag load (lost wake-ups, which no race detector sees). An
 * earlier TSan build replaced the fence with an RMW of one global dummy,
 * which gave TSan happens-before edges between unrelated threads that
 * production does not have, and so could hide real races. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
static inline void weft__fence_seq_cst(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
#pragma GCC diagnostic pop

/* The longest timeout in ms that is represented as such: anything longer
 * (WEFT_FOREVER included) is no timeout at all (loop.h). */
#define WEFT__MS_MAX (UINT64_MAX / 2000000u)

#endif /* WEFT_CORE_BASE_H */

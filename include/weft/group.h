/*
 * weft/group.h - task groups: asyncio.TaskGroup / a Trio nursery in C.
 *
 *     weft_group_t g;
 *     int rc = weft_group_init(&g);
 *     if (rc != 0) return rc;
 *     if ((rc = weft_group_spawn(&g, fetch, &a, NULL)) == 0)
 *         rc = weft_group_spawn(&g, fetch, &b, NULL);
 *     int wrc = weft_group_wait(&g);   // all done; first error or 0
 *     weft_group_close(&g);
 *     return rc != 0 ? rc : wrc;
 *
 * Rules (asyncio.TaskGroup's):
 * - The group belongs to the task that called init (its owner) and to that
 *   task's loop. Children are ordinary tasks of that loop.
 * - The first child to fail (with a code other than UV_ECANCELED) makes the
 *   group fail: every other child is cancelled, and so is the owner, unless
 *   it is already in weft_group_wait (the owner's cancel is withdrawn when it
 *   reaches weft_group_wait, as asyncio uncancels the parent). The group
 *   withdraws only the one request it made (weft_task_uncancel): if the
 *   owner was cancelled by someone else too - even in the same turn, so that
 *   it saw one UV_ECANCELED for both - wait and leave return UV_ECANCELED.
 *   Spawning into a failed group returns UV_ECANCELED and starts nothing.
 * - weft_group_wait() returns once every child has finished: 0, or the first
 *   failure's code. The others' outcomes stay readable through
 *   weft_group_task() until close. If the owner is cancelled while waiting,
 *   every child is cancelled and waited for, and wait returns UV_ECANCELED
 *   (UV_ETIMEDOUT when it was its timeout scope that expired). A cancel of
 *   the owner outranks a child's failure: wait returns UV_ECANCELED and the
 *   failure stays readable (weft_group_error, weft_group_failed_index).
 * - A group cannot be left with live children: weft_group_close() returns
 *   UV_EBUSY (and changes nothing) until they have all finished.
 * - Children's failures are counted as retrieved (the group reports them).
 */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_group {
    struct weft__group *weft__s; /* the state, on the heap (private) */
    int weft__init_rc;
    int weft__error; /* kept after close */
    bool weft__closed;
} weft_group_t;

/* In a task: WEFT_ENOTASK outside one; UV_EINVAL for NULL; UV_ENOMEM (the
 * group's state is one small allocation, so that a weft_group_t can live on
 * the owner's stack even on a COMPACT loop). */
int weft_group_init(weft_group_t *g);
/* Spawn fn(arg) as a child (the group holds a reference; out, if not NULL,
 * gets the task without an extra reference, valid until close). 0,
 * UV_ECANCELED (the group failed), WEFT_ECLOSED (closed), UV_ENOMEM,
 * WEFT_EWRONGLOOP (not the owner's loop), UV_EINVAL. */
WEFT_WARN_UNUSED int weft__group_spawn(weft_group_t *g, weft_task_fn fn, void *arg,
                                       const weft_task_opts_t *opts, weft_task_t **out,
                                       const char *file, int line);
#define weft_group_spawn(g, fn, arg, out) \
    weft__group_spawn((g), (fn), (arg), NULL, (out), __FILE__, __LINE__)
#define weft_group_spawn_ex(g, fn, arg, opts, out) \
    weft__group_spawn((g), (fn), (arg), (opts), (out), __FILE__, __LINE__)
/* Owner only (UV_EPERM otherwise). */
WEFT_WARN_UNUSED int weft_group_wait(weft_group_t *g);
/* Cancel every live child (the group does not count this as a failure).
 * 0, or WEFT_EDONE when no child is live (nothing to cancel). */
int weft_group_cancel(weft_group_t *g);
/* UV_EBUSY while children live; releases the children. */
int weft_group_close(weft_group_t *g);
/* Leave the group whatever state it is in: cancel live children, wait
 * until they have finished (a cancel of the caller waits too and stays
 * pending), close. Returns what weft_group_wait would have (0, the first
 * failure, or UV_ECANCELED if children had to be cancelled). */
int weft_group_leave(weft_group_t *g);
/* A group that cannot be left with live children, whatever way the scope
 * is exited (return, goto, break): init now, weft_group_leave on exit
 * (__attribute__((cleanup))). Check name.weft__init_rc for init's code.
 *
 *     WEFT_GROUP(g);
 *     if (g.weft__init_rc != 0) return g.weft__init_rc;
 *     int rc = weft_group_spawn(&g, child, NULL, NULL);
 *     if (rc != 0 || something) return -1; // children cancelled and reaped
 *     return weft_group_wait(&g);
 */
void weft__group_cleanup(weft_group_t *g);
#define WEFT_GROUP(name)                                             \
    __attribute__((cleanup(weft__group_cleanup))) weft_group_t name; \
    name.weft__init_rc = weft_group_init(&name)

size_t weft_group_size(const weft_group_t *g);                 /* children spawned */
size_t weft_group_live(const weft_group_t *g);                 /* children not finished */
int weft_group_error(const weft_group_t *g);                   /* first failure, or 0 */
weft_task_t *weft_group_task(const weft_group_t *g, size_t i); /* NULL past the end */
/* Index of the child whose failure failed the group, or SIZE_MAX. */
size_t weft_group_failed_index(const weft_group_t *g);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_GROUP_H */

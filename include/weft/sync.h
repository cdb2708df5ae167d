/*
 * weft/sync.h - synchronisation between the tasks of one loop: asyncio's
 * Lock, Event, Condition, Semaphore, BoundedSemaphore and Barrier.
 *
 * Common rules:
 * - Objects are caller-allocated: *_init(), then *_close() when done
 *   (UV_EBUSY while tasks wait on it). No call allocates.
 * - An object belongs to the loop of the first task (or callback) that uses
 *   it; any call from another loop's thread returns WEFT_EWRONGLOOP.
 * - Waits suspend the calling task (WEFT_ENOTASK outside a task) and wake in
 *   FIFO order: a released lock or semaphore permit is handed to the oldest
 *   waiter, so nobody starves and a newcomer cannot barge in front of a
 *   waiter (asyncio's fairness).
 * - Every wait returns UV_ECANCELED if the task is cancelled and UV_ETIMEDOUT
 *   when its timeout (the *_timeout forms; 0 = do not wait) or an enclosing
 *   timeout scope (weft/timeout.h) expires; the waiter is withdrawn and
 *   leaves nothing behind. A wait that was already granted when the cancel
 *   arrived returns success (the lock is held, the permit taken) and the
 *   cancel is delivered at the task's next suspension, so nothing is lost.
 * - Non-waiting calls (release, set, notify, abort) work from callbacks too.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A FIFO of waiting tasks (private; laid out as core's list node). */
typedef struct weft_waitq {
    struct weft_waitq *weft__next, *weft__prev;
} weft_waitq_t;

/* ---- Lock ------------------------------------------------------------------
 * Not re-entrant: acquiring a lock the task already holds returns
 * WEFT_EDEADLK. Only the holder may release it (UV_EPERM otherwise); a lock
 * taken outside any task (weft_lock_try from a callback) has no holder task
 * and can be released by anyone on its loop. */
typedef struct weft_lock {
    weft_waitq_t weft__waiters;
    void *weft__loop;
    weft_task_t *weft__holder;
    bool weft__locked;
} weft_lock_t;

int weft_lock_init(weft_lock_t *l);
int weft_lock_close(weft_lock_t *l);
WEFT_WARN_UNUSED int weft_lock_acquire(weft_lock_t *l);
WEFT_WARN_UNUSED int weft_lock_acquire_timeout(weft_lock_t *l, uint64_t timeout_ms);
/* 0 if acquired, UV_EAGAIN if it would wait (held, or others wait),
 * UV_EINVAL for NULL. */
WEFT_WARN_UNUSED int weft_lock_try(weft_lock_t *l);
int weft_lock_release(weft_lock_t *l);
bool weft_lock_locked(const weft_lock_t *l);

/* `async with lock:` for C. rc (an int lvalue) receives the acquire's code;
 * the block runs only if it is 0, and the lock is released when the block
 * ends normally, by `continue`, or by `break`.
 *
 *     int rc;
 *     WEFT_WITH_LOCK(&lock, rc) {
 *         ... critical section ...
 *     }
 *     if (rc != 0) ... not acquired (cancelled, timed out) ...
 *
 * Its one limit: `return` or `goto` out of the block skips the release. Use
 * WEFT_LOCK_GUARD where the block has such exits. A `break` inside the
 * block leaves the block, not an enclosing loop. */
#define WEFT_WITH_LOCK(lock, rc)                                                   \
    for (int weft__wl_once = ((rc) = weft_lock_acquire(lock)) == 0; weft__wl_once; \
         weft__wl_once = 0, (void)weft_lock_release(lock))                         \
        for (int weft__wl_body = 1; weft__wl_body; weft__wl_body = 0)

/* Scope guard: acquires now, releases on every exit from the enclosing
 * scope (return, goto, break) through __attribute__((cleanup)).
 *
 *     WEFT_LOCK_GUARD(g, &lock);
 *     if (g.rc != 0) return g.rc;     // not acquired: nothing to release
 *     ... critical section; any return releases ...
 *
 * weft_lock_guard_release(&g) releases early (idempotent). */
typedef struct weft_lock_guard {
    weft_lock_t *lock; /* NULL once released, or if not acquired */
    int rc;            /* the acquire's code */
} weft_lock_guard_t;

weft_lock_guard_t weft_lock_guard_acquire(weft_lock_t *l);
void weft_lock_guard_release(weft_lock_guard_t *g);
#define WEFT_LOCK_GUARD(name, lock)                                            \
    __attribute__((cleanup(weft_lock_guard_release))) weft_lock_guard_t name = \
        weft_lock_guard_acquire(lock)

/* ---- Event -----------------------------------------------------------------
 * set() wakes every waiter and lets later waits pass until clear(). */
typedef struct weft_event {
    weft_waitq_t weft__waiters;
    void *weft__loop;
    bool weft__set;
} weft_event_t;

int weft_event_init(weft_event_t *e);
int weft_event_close(weft_event_t *e);
int weft_event_set(weft_event_t *e);
int weft_event_clear(weft_event_t *e);
bool weft_event_is_set(const weft_event_t *e);
WEFT_WARN_UNUSED int weft_event_wait(weft_event_t *e);
WEFT_WARN_UNUSED int weft_event_wait_timeout(weft_event_t *e, uint64_t timeout_ms);

/* ---- Condition -------------------------------------------------------------
 * Bound to a lock. wait() needs the lock held by the calling task (UV_EPERM
 * otherwise), releases it, waits for a notify, and re-acquires it before
 * returning - also when it returns UV_ECANCELED or UV_ETIMEDOUT, as asyncio
 * does - so the caller always holds the lock afterwards. notify(n) wakes up
 * to n waiters in FIFO order; notify needs the lock held too (UV_EPERM). */
typedef struct weft_cond {
    weft_waitq_t weft__waiters;
    weft_lock_t *weft__lock;
} weft_cond_t;

typedef bool (*weft_pred_fn)(void *arg);

int weft_cond_init(weft_cond_t *c, weft_lock_t *lock);
int weft_cond_close(weft_cond_t *c);
WEFT_WARN_UNUSED int weft_cond_wait(weft_cond_t *c);
WEFT_WARN_UNUSED int weft_cond_wait_timeout(weft_cond_t *c, uint64_t timeout_ms);
/* Wait until pred(arg) is true (checked first, then after each wake-up,
 * with the lock held). 0 once true; the wait's code otherwise. */
WEFT_WARN_UNUSED int weft_cond_wait_for(weft_cond_t *c, weft_pred_fn pred, void *arg);
/* Returns how many waiters were woken (>= 0), or a negative code. */
int weft_cond_notify(weft_cond_t *c, int n);
int weft_cond_notify_all(weft_cond_t *c);

/* ---- Semaphore -------------------------------------------------------------
 * A counter of permits. acquire takes one (waiting while none is free or
 * others already wait), release returns one. A bounded semaphore refuses a
 * release above its initial value with UV_EINVAL (asyncio's
 * BoundedSemaphore ValueError). */
typedef struct weft_sem {
    weft_waitq_t weft__waiters;
    void *weft__loop;
    int64_t weft__value;
    int64_t weft__bound; /* -1: unbounded */
} weft_sem_t;

/* value >= 0 (UV_EINVAL otherwise). */
int weft_sem_init(weft_sem_t *s, int64_t value);
int weft_sem_init_bounded(weft_sem_t *s, int64_t value);
int weft_sem_close(weft_sem_t *s);
WEFT_WARN_UNUSED int weft_sem_acquire(weft_sem_t *s);
WEFT_WARN_UNUSED int weft_sem_acquire_timeout(weft_sem_t *s, uint64_t timeout_ms);
/* 0 if a permit was taken, UV_EAGAIN if it would wait. */
WEFT_WARN_UNUSED int weft_sem_try(weft_sem_t *s);
int weft_sem_release(weft_sem_t *s);
int64_t weft_sem_value(const weft_sem_t *s);

/* ---- Barrier ---------------------------------------------------------------
 * asyncio.Barrier: `parties` tasks meet; wait() returns this task's arrival
 * index (0 .. parties-1) once the last one arrives, and the barrier resets
 * for the next round. A waiter that is cancelled or times out leaves (the
 * count drops back), as in asyncio. abort() breaks the barrier: current and
 * later waits return WEFT_EBROKEN until reset(); reset() also wakes current
 * waiters with WEFT_EBROKEN and makes the barrier usable again. */
typedef struct weft_barrier {
    weft_waitq_t weft__waiters;
    void *weft__loop;
    uint32_t weft__parties;
    uint32_t weft__count;
    bool weft__broken;
} weft_barrier_t;

int weft_barrier_init(weft_barrier_t *b, uint32_t parties); /* parties >= 1 */
int weft_barrier_close(weft_barrier_t *b);
/* >= 0: the arrival index; else UV_ECANCELED, UV_ETIMEDOUT, WEFT_EBROKEN. */
WEFT_WARN_UNUSED int weft_barrier_wait(weft_barrier_t *b);
WEFT_WARN_UNUSED int weft_barrier_wait_timeout(weft_barrier_t *b, uint64_t timeout_ms);
int weft_barrier_abort(weft_barrier_t *b);
int weft_barrier_reset(weft_barrier_t *b);
bool weft_barrier_broken(const weft_barrier_t *b);
uint32_t weft_barrier_waiting(const weft_barrier_t *b);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_SYNC_H */

/*
 * channels/lockwait.h - waiting on a container whose state lives under one
 * spinlock (internal to channels/: broadcast and watch).
 *
 * The container keeps a list of waiter records under its lock. A waiter
 * re-checks the container under the lock and links its record in the same
 * critical section, so a change made under the lock either is seen by the
 * check or finds the record and claims it: no wake-up is lost, with no
 * counters or fences beyond the lock. Changes wake every waiter
 * (weft__lw_wake_all): each re-checks on its own. A woken waiter that
 * leaves without taking anything (cancelled, timed out) passes nothing on,
 * because nothing was handed to it.
 *
 * Records live on the waiter's stack, or on the heap for tasks of a
 * COMPACT loop (core/xwait.h: weft__xwait_stack_shared); the waiter unlinks
 * its record under the lock before it returns (core/xwait.h, Lifetime).
 */
#ifndef WEFT_CHANNELS_LOCKWAIT_H
#define WEFT_CHANNELS_LOCKWAIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/xwait.h"

struct weft__lw_rec {
    struct weft__list link;
    struct weft__xwait *x;
    uint32_t tag; /* what the claim says: 0 for a plain wait, a select's case index */
};

/* The waiters of one container. Under the container's lock. */
struct weft__lw_queue {
    struct weft__list list;
    uint32_t n; /* records linked */
};

static inline void weft__lw_init(struct weft__lw_queue *q)
{
    weft__list_init(&q->list);
    q->n = 0;
}

/* Claim and wake every waiter (under the lock). */
void weft__lw_wake_all(struct weft__lw_queue *q);

/* Wait until attempt(arg) - called with the lock held - returns something
 * other than UV_EAGAIN, and return that; or UV_ETIMEDOUT once deadline
 * (absolute, uv_hrtime's clock; UINT64_MAX: none) has passed, UV_ECANCELED
 * (tasks), UV_ENOMEM. Called without the lock, from a task (after
 * weft__xwait_check) or a plain thread. */
int weft__lw_wait(weft__spin_t *lock, struct weft__lw_queue *q, int (*attempt)(void *arg),
                  void *arg, uint64_t deadline);

/* Select's cases on broadcast receivers and watch receivers (select.c):
 * link r (its x and tag set) under the container's lock and say whether the
 * case is ready now (the re-check, in the same critical section: no lost
 * wake-up); unlink it under the lock. While linked the receiver counts as
 * in use (unsubscribe refuses). */
struct weft_broadcast_rx;
struct weft_watch_rx;
bool weft__broadcast_sel_link(struct weft_broadcast_rx *rx, struct weft__lw_rec *r);
void weft__broadcast_sel_unlink(struct weft_broadcast_rx *rx, struct weft__lw_rec *r);
bool weft__watch_sel_link(struct weft_watch_rx *rx, struct weft__lw_rec *r);
void weft__watch_sel_unlink(struct weft_watch_rx *rx, struct weft__lw_rec *r);

#endif /* WEFT_CHANNELS_LOCKWAIT_H */

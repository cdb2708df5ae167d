/*
 * weft/queue.h - asyncio.Queue, LifoQueue and PriorityQueue for the tasks of
 * one loop. Elements are void* (use weft_int() for integers).
 *
 * - maxsize 0 = unbounded; otherwise put waits while the queue holds maxsize
 *   elements. A bounded queue allocates its ring in init (up to 4,096
 *   slots; a larger bound starts there and doubles up to maxsize, so such a
 *   put can return UV_ENOMEM); an unbounded one grows its ring by doubling.
 *   Never an allocation per element in steady state.
 * - Waiting getters and putters are served FIFO. A put that finds a getter
 *   waiting hands the element straight to it (the queue is empty then), and
 *   a get that frees a slot moves the oldest waiting putter's element in, so
 *   order is preserved and nobody barges.
 * - Priority queues return the smallest priority first; equal priorities
 *   come out in insertion order (stable). FIFO and LIFO queues take the
 *   priority argument of the *_prio calls as 0 and ignore it.
 * - task_done()/join(): every put counts an unfinished element; task_done()
 *   marks one as processed (UV_EINVAL when none is unfinished); join() waits
 *   until the count is zero.
 * - shutdown(q, false) (Python 3.13): put fails with WEFT_ECLOSED at once,
 *   waiting putters are woken with WEFT_ECLOSED, get keeps returning the
 *   elements left and then WEFT_ECLOSED (waiting getters are woken with it
 *   when the queue is empty). shutdown(q, true) also discards every element
 *   still queued (each counts as task_done, so join() returns) and fails
 *   every get at once.
 * - Waits are cancellable and honour timeouts and timeout scopes as the
 *   primitives in weft/sync.h do; a cancelled get never loses an element: if
 *   the element was already handed over, the get returns it (0) and the
 *   cancel is delivered at the next suspension.
 * - The queue belongs to the loop of its first user (WEFT_EWRONGLOOP from
 *   other threads). *_try and non-waiting calls work from callbacks too.
 */
#ifndef WEFT_QUEUE_H
#define WEFT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_queue_kind {
    WEFT_QUEUE_FIFO = 0,
    WEFT_QUEUE_LIFO = 1,
    WEFT_QUEUE_PRIORITY = 2,
} weft_queue_kind_t;

typedef struct weft_queue {
    weft_waitq_t weft__getters;
    weft_waitq_t weft__putters;
    weft_waitq_t weft__joiners;
    void *weft__loop;
    void *weft__buf; /* ring of void* (FIFO, LIFO) or heap entries (PRIORITY) */
    size_t weft__cap;
    size_t weft__head;
    size_t weft__count;
    size_t weft__maxsize;
    size_t weft__unfinished;
    uint64_t weft__seq; /* priority insertion counter (stability) */
    weft_queue_kind_t weft__kind;
    uint8_t weft__shutdown; /* 0, 1 = draining, 2 = immediate */
    void (*weft__dtor)(void *item);
} weft_queue_t;

typedef struct weft_queue_opts {
    /* Frees what the queue discards: the elements still queued when
     * weft_queue_shutdown(q, true) drops them or weft_queue_close frees the
     * ring (called once per element, NULL elements included, on the
     * queue's loop; it must not use the queue). Elements that leave by a
     * get are the getter's; a put that fails (WEFT_ECLOSED, UV_EAGAIN, a
     * cancelled or timed-out wait) leaves its element with the caller.
     * NULL = the elements are the caller's pointers, dropped as they are. */
    void (*item_dtor)(void *item);
} weft_queue_opts_t;

/* 0, UV_EINVAL (NULL, bad kind), UV_ENOMEM (bounded: the ring). */
int weft_queue_init(weft_queue_t *q, weft_queue_kind_t kind, size_t maxsize);
/* weft_queue_init with options (NULL = the defaults). */
int weft_queue_init_ex(weft_queue_t *q, weft_queue_kind_t kind, size_t maxsize,
                       const weft_queue_opts_t *opts);
/* Frees the ring. UV_EBUSY while tasks wait on it. Elements still queued
 * are dropped (they are the caller's pointers), or given to the item_dtor
 * option. */
int weft_queue_close(weft_queue_t *q);

WEFT_WARN_UNUSED int weft_queue_put(weft_queue_t *q, void *item);
WEFT_WARN_UNUSED int weft_queue_put_prio(weft_queue_t *q, int64_t prio, void *item);
WEFT_WARN_UNUSED int weft_queue_put_timeout(weft_queue_t *q, int64_t prio, void *item,
                                            uint64_t timeout_ms);
/* 0, UV_EAGAIN (full), WEFT_ECLOSED (shut down), UV_ENOMEM (unbounded). */
WEFT_WARN_UNUSED int weft_queue_put_try(weft_queue_t *q, void *item);
WEFT_WARN_UNUSED int weft_queue_put_prio_try(weft_queue_t *q, int64_t prio, void *item);

/* 0 and *item (and *prio, if not NULL); WEFT_ECLOSED once shut down and
 * drained; UV_ECANCELED, UV_ETIMEDOUT. */
WEFT_WARN_UNUSED int weft_queue_get(weft_queue_t *q, void **item);
WEFT_WARN_UNUSED int weft_queue_get_prio(weft_queue_t *q, void **item, int64_t *prio);
WEFT_WARN_UNUSED int weft_queue_get_timeout(weft_queue_t *q, void **item, int64_t *prio,
                                            uint64_t timeout_ms);
/* 0, UV_EAGAIN (empty), WEFT_ECLOSED (shut down and drained). */
WEFT_WARN_UNUSED int weft_queue_get_try(weft_queue_t *q, void **item, int64_t *prio);

int weft_queue_task_done(weft_queue_t *q);
WEFT_WARN_UNUSED int weft_queue_join(weft_queue_t *q);
WEFT_WARN_UNUSED int weft_queue_join_timeout(weft_queue_t *q, uint64_t timeout_ms);
/* Returns how many queued elements were discarded (immediate; each given
 * to the item_dtor option if set), or a code. */
int weft_queue_shutdown(weft_queue_t *q, bool immediate);

size_t weft_queue_size(const weft_queue_t *q);
size_t weft_queue_maxsize(const weft_queue_t *q);
bool weft_queue_empty(const weft_queue_t *q);
bool weft_queue_full(const weft_queue_t *q);
bool weft_queue_is_shutdown(const weft_queue_t *q);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_QUEUE_H */

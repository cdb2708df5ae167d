/*
 * core/queue.c - asyncio's Queue, LifoQueue and PriorityQueue
 * (weft/queue.h).
 *
 * FIFO and LIFO keep a ring of void*; PRIORITY keeps a binary min-heap of
 * (priority, insertion number, item), the number making equal priorities
 * come out in insertion order. Waiting getters and putters are weft__waiter
 * records on their own stacks. Hand-over is direct, which is what keeps
 * order and fairness without re-checks: a put that finds a getter waiting
 * gives it the item (the queue is empty then, or the getter would not
 * wait); a get that frees a slot of a full queue moves the oldest waiting
 * putter's item in and grants that putter.
 */
#include <string.h>
#include <weft/queue.h>

#include "alloc.h"
#include "wait_int.h"

#define FIRST_CAP         16u
#define MAX_FIRST_BOUNDED 4096u /* a bounded ring starts at most this big and grows */

struct pentry {
    int64_t prio;
    uint64_t seq;
    void *item;
};

static struct weft__list *getters(weft_queue_t *q)
{
    return weft__wq(&q->weft__getters);
}
static struct weft__list *putters(weft_queue_t *q)
{
    return weft__wq(&q->weft__putters);
}
static struct weft__list *joiners(weft_queue_t *q)
{
    return weft__wq(&q->weft__joiners);
}

static size_t entry_size(const weft_queue_t *q)
{
    return q->weft__kind == WEFT_QUEUE_PRIORITY ? sizeof(struct pentry) : sizeof(void *);
}

int weft_queue_init_ex(weft_queue_t *q, weft_queue_kind_t kind, size_t maxsize,
                       const weft_queue_opts_t *opts)
{
    int rc = weft_queue_init(q, kind, maxsize);
    if (rc == 0 && opts != NULL)
        q->weft__dtor = opts->item_dtor;
    return rc;
}

/* Give every queued element to the item destructor (the caller empties the
 * queue). */
static void discard_all(weft_queue_t *q)
{
    if (q->weft__dtor == NULL)
        return;
    for (size_t i = 0; i < q->weft__count; i++) {
        void *item;
        if (q->weft__kind == WEFT_QUEUE_PRIORITY)
            item = ((struct pentry *)q->weft__buf)[i].item;
        else
            item = ((void **)q->weft__buf)[(q->weft__head + i) % q->weft__cap];
        q->weft__dtor(item);
    }
}

int weft_queue_init(weft_queue_t *q, weft_queue_kind_t kind, size_t maxsize)
{
    if (q == NULL || (unsigned)kind > WEFT_QUEUE_PRIORITY)
        return UV_EINVAL;
    memset(q, 0, sizeof(*q));
    weft__list_init(getters(q));
    weft__list_init(putters(q));
    weft__list_init(joiners(q));
    q->weft__kind = kind;
    q->weft__maxsize = maxsize;
    if (maxsize != 0) {
        /* Bounded: the ring is allocated here, once (grown only for very
         * large bounds, and never past maxsize). */
        q->weft__cap = maxsize < MAX_FIRST_BOUNDED ? maxsize : MAX_FIRST_BOUNDED;
        q->weft__buf = weft__malloc(q->weft__cap * entry_size(q));
        if (q->weft__buf == NULL)
            return UV_ENOMEM;
    }
    return 0;
}

int weft_queue_close(weft_queue_t *q)
{
    if (q == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&q->weft__loop);
    if (rc != 0)
        return rc;
    if (!weft__list_empty(getters(q)) || !weft__list_empty(putters(q)) ||
        !weft__list_empty(joiners(q)))
        return UV_EBUSY;
    discard_all(q);
    weft__free(q->weft__buf);
    q->weft__buf = NULL;
    q->weft__cap = q->weft__count = q->weft__head = 0;
    return 0;
}

static bool full(const weft_queue_t *q)
{
    return q->weft__maxsize != 0 && q->weft__count >= q->weft__maxsize;
}

static int grow(weft_queue_t *q)
{
    size_t ncap = q->weft__cap != 0 ? q->weft__cap * 2 : FIRST_CAP;
    if (q->weft__maxsize != 0 && ncap > q->weft__maxsize)
        ncap = q->weft__maxsize;
    size_t es = entry_size(q);
    char *nb = weft__malloc(ncap * es);
    if (nb == NULL)
        return UV_ENOMEM;
    if (q->weft__kind == WEFT_QUEUE_PRIORITY) {
        if (q->weft__count > 0)
            memcpy(nb, q->weft__buf, q->weft__count * es);
    } else {
        void **old = q->weft__buf, **n = (void **)nb;
        for (size_t i = 0; i < q->weft__count; i++)
            n[i] = old[(q->weft__head + i) % q->weft__cap];
        q->weft__head = 0;
    }
    weft__free(q->weft__buf);
    q->weft__buf = nb;
    q->weft__cap = ncap;
    return 0;
}

static bool pless(const struct pentry *a, const struct pentry *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

/* Store an item (room is checked by the caller). 0 or UV_ENOMEM. */
static int push(weft_queue_t *q, int64_t prio, void *item)
{
    if (q->weft__count == q->weft__cap) {
        int rc = grow(q);
        if (rc != 0)
            return rc;
    }
    if (q->weft__kind == WEFT_QUEUE_PRIORITY) {
        struct pentry *h = q->weft__buf;
        size_t i = q->weft__count++;
        struct pentry e = {prio, q->weft__seq++, item};
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!pless(&e, &h[p]))
                break;
            h[i] = h[p];
            i = p;
        }
        h[i] = e;
    } else {
        size_t i = q->weft__head + q->weft__count++;
        if (i >= q->weft__cap)
            i -= q->weft__cap;
        ((void **)q->weft__buf)[i] = item;
    }
    q->weft__unfinished++;
    return 0;
}

static void *pop(weft_queue_t *q, int64_t *prio)
{
    void *item;
    int64_t pr = 0;
    if (q->weft__kind == WEFT_QUEUE_FIFO) {
        item = ((void **)q->weft__buf)[q->weft__head];
        if (++q->weft__head == q->weft__cap)
            q->weft__head = 0;
        q->weft__count--;
    } else if (q->weft__kind == WEFT_QUEUE_LIFO) {
        size_t i = q->weft__head + --q->weft__count;
        if (i >= q->weft__cap)
            i -= q->weft__cap;
        item = ((void **)q->weft__buf)[i];
    } else {
        struct pentry *h = q->weft__buf;
        item = h[0].item;
        pr = h[0].prio;
        size_t n = --q->weft__count;
        struct pentry e = h[n];
        size_t i = 0;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= n)
                break;
            if (c + 1 < n && pless(&h[c + 1], &h[c]))
                c++;
            if (!pless(&h[c], &e))
                break;
            h[i] = h[c];
            i = c;
        }
        if (n > 0)
            h[i] = e;
    }
    if (prio != NULL)
        *prio = pr;
    return item;
}

static int put_common(weft_queue_t *q, int64_t prio, void *item, uint64_t timeout_ms, bool wait)
{
    if (q == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&q->weft__loop);
    if (rc != 0)
        return rc;
    if (q->weft__shutdown)
        return WEFT_ECLOSED;
    if (q->weft__kind != WEFT_QUEUE_PRIORITY)
        prio = 0;
    struct weft__waiter *w = weft__waiter_first(getters(q));
    if (w != NULL) {
        /* A getter waits, so the queue is empty: give it the item. */
        w->val = item;
        w->prio = prio;
        q->weft__unfinished++;
        weft__waiter_grant(w, 0);
        return 0;
    }
    if (!full(q))
        return push(q, prio, item);
    if (!wait)
        return UV_EAGAIN;
    struct weft__waiter me;
    me.val = item;
    me.prio = prio;
    return weft__wait_here(putters(q), &me, timeout_ms);
}

int weft_queue_put(weft_queue_t *q, void *item)
{
    return put_common(q, 0, item, WEFT_FOREVER, true);
}
int weft_queue_put_prio(weft_queue_t *q, int64_t prio, void *item)
{
    return put_common(q, prio, item, WEFT_FOREVER, true);
}
int weft_queue_put_timeout(weft_queue_t *q, int64_t prio, void *item, uint64_t timeout_ms)
{
    return put_common(q, prio, item, timeout_ms, true);
}
int weft_queue_put_try(weft_queue_t *q, void *item)
{
    return put_common(q, 0, item, 0, false);
}
int weft_queue_put_prio_try(weft_queue_t *q, int64_t prio, void *item)
{
    return put_common(q, prio, item, 0, false);
}

static int get_common(weft_queue_t *q, void **item, int64_t *prio, uint64_t timeout_ms, bool wait)
{
    if (item != NULL)
        *item = NULL;
    if (prio != NULL)
        *prio = 0;
    if (q == NULL || item == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&q->weft__loop);
    if (rc != 0)
        return rc;
    if (q->weft__count > 0) {
        *item = pop(q, prio);
        struct weft__waiter *w = weft__waiter_first(putters(q));
        if (w != NULL) {
            /* A slot is free: the oldest waiting putter's item goes in. */
            rc = push(q, w->prio, w->val); /* cannot fail: a slot is free */
            WEFT_ASSERT(rc == 0);
            weft__waiter_grant(w, 0);
        }
        return 0;
    }
    if (q->weft__shutdown)
        return WEFT_ECLOSED;
    if (!wait)
        return UV_EAGAIN;
    struct weft__waiter w;
    w.val = NULL;
    w.prio = 0;
    rc = weft__wait_here(getters(q), &w, timeout_ms);
    if (rc == 0) {
        *item = w.val;
        if (prio != NULL)
            *prio = w.prio;
    }
    return rc;
}

int weft_queue_get(weft_queue_t *q, void **item)
{
    return get_common(q, item, NULL, WEFT_FOREVER, true);
}
int weft_queue_get_prio(weft_queue_t *q, void **item, int64_t *prio)
{
    return get_common(q, item, prio, WEFT_FOREVER, true);
}
int weft_queue_get_timeout(weft_queue_t *q, void **item, int64_t *prio, uint64_t timeout_ms)
{
    return get_common(q, item, prio, timeout_ms, true);
}
int weft_queue_get_try(weft_queue_t *q, void **item, int64_t *prio)
{
    return get_common(q, item, prio, 0, false);
}

static void wake_joiners(weft_queue_t *q)
{
    struct weft__waiter *w;
    while ((w = weft__waiter_first(joiners(q))) != NULL)
        weft__waiter_grant(w, 0);
}

int weft_queue_task_done(weft_queue_t *q)
{
    if (q == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&q->weft__loop);
    if (rc != 0)
        return rc;
    if (q->weft__unfinished == 0)
        return UV_EINVAL;
    if (--q->weft__unfinished == 0)
        wake_joiners(q);
    return 0;
}

int weft_queue_join_timeout(weft_queue_t *q, uint64_t timeout_ms)
{
    if (q == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&q->weft__loop);
    if (rc != 0)
        return rc;
    if (q->weft__unfinished == 0)
        return weft_task_current() != NULL ? 0 : WEFT_ENOTASK;
    struct weft__waiter w;
    return weft__wait_here(joiners(q), &w, timeout_ms);
}

int weft_queue_join(weft_queue_t *q)
{
    return weft_queue_join_timeout(q, WEFT_FOREVER);
}

int weft_queue_shutdown(weft_queue_t *q, bool immediate)
{
    if (q == NULL)
        return UV_EINVAL;
    int rc = weft__bind(&q->weft__loop);
    if (rc != 0)
        return rc;
    size_t dropped = 0;
    q->weft__shutdown = immediate ? 2 : (q->weft__shutdown ? q->weft__shutdown : 1);
    if (immediate && q->weft__count > 0) {
        discard_all(q);
        dropped = q->weft__count;
        q->weft__count = 0;
        q->weft__head = 0;
        q->weft__unfinished = q->weft__unfinished > dropped ? q->weft__unfinished - dropped : 0;
        if (q->weft__unfinished == 0)
            wake_joiners(q);
    }
    struct weft__waiter *w;
    while ((w = weft__waiter_first(putters(q))) != NULL)
        weft__waiter_grant(w, WEFT_ECLOSED);
    while (q->weft__count == 0 && (w = weft__waiter_first(getters(q))) != NULL)
        weft__waiter_grant(w, WEFT_ECLOSED);
    return dropped > (size_t)__INT_MAX__ ? __INT_MAX__ : (int)dropped;
}

size_t weft_queue_size(const weft_queue_t *q)
{
    return q != NULL ? q->weft__count : 0;
}
size_t weft_queue_maxsize(const weft_queue_t *q)
{
    return q != NULL ? q->weft__maxsize : 0;
}
bool weft_queue_empty(const weft_queue_t *q)
{
    return q == NULL || q->weft__count == 0;
}
bool weft_queue_full(const weft_queue_t *q)
{
    return q != NULL && full(q);
}
bool weft_queue_is_shutdown(const weft_queue_t *q)
{
    return q != NULL && q->weft__shutdown != 0;
}

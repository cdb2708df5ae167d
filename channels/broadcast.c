/*
 * channels/broadcast.c - broadcast channels (weft/broadcast.h,
 * docs/broadcast.md).
 *
 * A ring of cap slots and one 64-bit sequence counter, `tail`: the value
 * with sequence s (the s-th value kept, from 0) lives in slot s % cap while
 * tail - cap <= s < tail. A receiver keeps the sequence of its next value;
 * it lagged when that sequence fell below tail - cap. Everything - the
 * ring, tail, every receiver's position, the waiters - is under one
 * spinlock: a send, a receive and a subscribe each hold it for a copy of
 * at most 56 bytes and a few compares. One lock is what keeps this simple
 * and obviously correct with any number of senders and receivers on any
 * threads: a lock-free ring would need per-slot sequence numbers and a
 * retry protocol for readers racing an overwrite (a seqlock per slot),
 * and with a wake-everyone broadcast the lock is not where the time goes -
 * waking the waiters is. Waiting is channels/lockwait.h: a receiver that
 * finds nothing links a record under the lock, and a send (or close)
 * claims every record under it.
 *
 * The destructor never runs under the lock: the overwritten value is
 * copied out (at most 56 bytes) and destroyed after unlocking.
 */
#include <weft/broadcast.h>

#include <string.h>
#include <weft/error.h>
#include <weft/loop.h>

#include "core/alloc.h"
#include "lockwait.h"

struct weft_broadcast {
    weft__spin_t lock;
    uint32_t refs; /* atomic */
    uint32_t esz;
    uint32_t stride; /* bytes per slot: esz rounded up to 8 */
    uint64_t cap;
    void (*dtor)(void *);
    /* Under the lock. */
    uint64_t tail; /* sequence of the next value sent */
    size_t nrx;    /* receivers subscribed */
    bool closed;   /* also read without the lock (is_closed) */
    struct weft__lw_queue waiters;
    unsigned char *slots;
};

struct weft_broadcast_rx {
    struct weft_broadcast *b;
    /* Under b's lock. */
    uint64_t next;   /* sequence of the next value to receive */
    uint64_t lagged; /* what the last WEFT_ELAGGED skipped */
    uint32_t active; /* calls in progress (unsubscribe refuses then) */
};

static inline unsigned char *slot(struct weft_broadcast *b, uint64_t seq)
{
    return b->slots + (size_t)(seq % b->cap) * b->stride;
}

static inline uint64_t oldest(const struct weft_broadcast *b)
{
    return b->tail > b->cap ? b->tail - b->cap : 0;
}

int weft_broadcast_new(size_t elem_size, size_t capacity, void (*dtor)(void *val),
                       weft_broadcast_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || elem_size == 0 || elem_size > WEFT_BROADCAST_INLINE_MAX || capacity == 0 ||
        capacity > (1u << 30))
        return UV_EINVAL;
    struct weft_broadcast *b = weft__calloc(1, sizeof(*b));
    if (b == NULL)
        return UV_ENOMEM;
    b->esz = (uint32_t)elem_size;
    b->stride = (uint32_t)((elem_size + 7) & ~(size_t)7);
    b->cap = capacity;
    b->slots = weft__calloc(capacity, b->stride);
    if (b->slots == NULL) {
        weft__free(b);
        return UV_ENOMEM;
    }
    b->dtor = dtor;
    b->refs = 1;
    weft__lw_init(&b->waiters);
    *out = b;
    return 0;
}

void weft_broadcast_ref(weft_broadcast_t *b)
{
    if (b != NULL)
        __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
}

void weft_broadcast_unref(weft_broadcast_t *b)
{
    if (b == NULL || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* Nobody else holds b: receivers hold references, waiters are
     * receivers. */
    if (b->dtor != NULL)
        for (uint64_t s = oldest(b); s < b->tail; s++)
            b->dtor(slot(b, s));
    weft__free(b->slots);
    weft__free(b);
}

int weft_broadcast_send(weft_broadcast_t *b, const void *val)
{
    if (b == NULL || val == NULL)
        return UV_EINVAL;
    _Alignas(8) unsigned char dropped[WEFT_BROADCAST_INLINE_MAX];
    bool drop = false;
    weft__spin_lock(&b->lock);
    if (b->closed) {
        weft__spin_unlock(&b->lock);
        return WEFT_ECLOSED;
    }
    size_t n = b->nrx;
    if (n == 0) {
        /* Nobody can ever receive it (a receiver sees what is sent after it
         * subscribed): dropped at once, the ring stays as it is. */
        memcpy(dropped, val, b->esz);
        drop = true;
    } else {
        unsigned char *s = slot(b, b->tail);
        if (b->tail >= b->cap && b->dtor != NULL) {
            memcpy(dropped, s, b->esz); /* the oldest value, overwritten */
            drop = true;
        }
        memcpy(s, val, b->esz);
        b->tail++;
        weft__lw_wake_all(&b->waiters);
    }
    weft__spin_unlock(&b->lock);
    if (drop && b->dtor != NULL)
        b->dtor(dropped);
    return (int)(n > (size_t)INT32_MAX ? INT32_MAX : n);
}

int weft_broadcast_subscribe(weft_broadcast_t *b, weft_broadcast_rx_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (b == NULL || out == NULL)
        return UV_EINVAL;
    struct weft_broadcast_rx *rx = weft__calloc(1, sizeof(*rx));
    if (rx == NULL)
        return UV_ENOMEM;
    weft__spin_lock(&b->lock);
    if (b->closed) {
        weft__spin_unlock(&b->lock);
        weft__free(rx);
        return WEFT_ECLOSED;
    }
    rx->b = b;
    rx->next = b->tail;
    b->nrx++;
    weft_broadcast_ref(b);
    weft__spin_unlock(&b->lock);
    *out = rx;
    return 0;
}

int weft_broadcast_unsubscribe(weft_broadcast_rx_t *rx)
{
    if (rx == NULL)
        return UV_EINVAL;
    struct weft_broadcast *b = rx->b;
    weft__spin_lock(&b->lock);
    if (rx->active != 0) {
        weft__spin_unlock(&b->lock);
        return UV_EBUSY;
    }
    b->nrx--;
    weft__spin_unlock(&b->lock);
    weft__free(rx);
    weft_broadcast_unref(b);
    return 0;
}

/* ---- receiving -------------------------------------------------------------- */

struct recv_arg {
    struct weft_broadcast_rx *rx;
    void *out;
};

/* One attempt, under the lock: 0, WEFT_ELAGGED, UV_EOF or UV_EAGAIN. */
static int recv_locked(void *arg)
{
    struct recv_arg *a = arg;
    struct weft_broadcast_rx *rx = a->rx;
    struct weft_broadcast *b = rx->b;
    uint64_t old = oldest(b);
    if (rx->next < old) {
        rx->lagged = old - rx->next;
        rx->next = old;
        return WEFT_ELAGGED;
    }
    if (rx->next < b->tail) {
        memcpy(a->out, slot(b, rx->next), b->esz);
        rx->next++;
        return 0;
    }
    return b->closed ? UV_EOF : UV_EAGAIN;
}

static int recv_once(struct recv_arg *a)
{
    weft__spin_lock(&a->rx->b->lock);
    int rc = recv_locked(a);
    weft__spin_unlock(&a->rx->b->lock);
    return rc;
}

static int recv_wait(struct recv_arg *a, uint64_t timeout_ms)
{
    struct weft_broadcast *b = a->rx->b;
    weft__spin_lock(&b->lock);
    int rc = recv_locked(a);
    if (rc == UV_EAGAIN && timeout_ms != 0)
        a->rx->active++;
    weft__spin_unlock(&b->lock);
    if (rc != UV_EAGAIN)
        return rc;
    if (timeout_ms == 0)
        return UV_ETIMEDOUT;
    rc = weft__lw_wait(&b->lock, &b->waiters, recv_locked, a, weft__xwait_deadline(timeout_ms));
    weft__spin_lock(&b->lock);
    a->rx->active--;
    weft__spin_unlock(&b->lock);
    return rc;
}

static int task_recv(weft_broadcast_rx_t *rx, void *out, uint64_t timeout_ms)
{
    if (rx == NULL || out == NULL)
        return UV_EINVAL;
    int rc = weft__xwait_check();
    if (rc != 0)
        return rc;
    struct recv_arg a = {rx, out};
    return recv_wait(&a, timeout_ms);
}

int weft_broadcast_recv(weft_broadcast_rx_t *rx, void *out)
{
    return task_recv(rx, out, WEFT_FOREVER);
}

int weft_broadcast_recv_timeout(weft_broadcast_rx_t *rx, void *out, uint64_t timeout_ms)
{
    return task_recv(rx, out, timeout_ms);
}

int weft_broadcast_recv_try(weft_broadcast_rx_t *rx, void *out)
{
    if (rx == NULL || out == NULL)
        return UV_EINVAL;
    struct recv_arg a = {rx, out};
    return recv_once(&a);
}

int weft_broadcast_recv_blocking(weft_broadcast_rx_t *rx, void *out, uint64_t timeout_ms)
{
    if (rx == NULL || out == NULL)
        return UV_EINVAL;
    if (weft_loop_current() != NULL)
        return WEFT_EDEADLK;
    struct recv_arg a = {rx, out};
    return recv_wait(&a, timeout_ms);
}

uint64_t weft_broadcast_lagged(const weft_broadcast_rx_t *rx)
{
    if (rx == NULL)
        return 0;
    struct weft_broadcast *b = rx->b;
    weft__spin_lock(&b->lock);
    uint64_t n = rx->lagged;
    weft__spin_unlock(&b->lock);
    return n;
}

size_t weft_broadcast_pending(const weft_broadcast_rx_t *rx)
{
    if (rx == NULL)
        return 0;
    struct weft_broadcast *b = rx->b;
    weft__spin_lock(&b->lock);
    uint64_t from = rx->next > oldest(b) ? rx->next : oldest(b);
    size_t n = (size_t)(b->tail - from);
    weft__spin_unlock(&b->lock);
    return n;
}

/* ---- select ---------------------------------------------------------------------- */

bool weft__broadcast_sel_link(struct weft_broadcast_rx *rx, struct weft__lw_rec *r)
{
    struct weft_broadcast *b = rx->b;
    weft__spin_lock(&b->lock);
    bool ready = rx->next < b->tail || rx->next < oldest(b) || b->closed;
    weft__list_push_back(&b->waiters.list, &r->link);
    b->waiters.n++;
    rx->active++;
    weft__spin_unlock(&b->lock);
    return ready;
}

void weft__broadcast_sel_unlink(struct weft_broadcast_rx *rx, struct weft__lw_rec *r)
{
    struct weft_broadcast *b = rx->b;
    weft__spin_lock(&b->lock);
    if (weft__list_linked(&r->link)) {
        weft__list_remove(&r->link);
        b->waiters.n--;
    }
    rx->active--;
    weft__spin_unlock(&b->lock);
}

/* ---- closing and questions ---------------------------------------------------- */

int weft_broadcast_close(weft_broadcast_t *b)
{
    if (b == NULL)
        return UV_EINVAL;
    weft__spin_lock(&b->lock);
    bool was = b->closed;
    __atomic_store_n(&b->closed, true, __ATOMIC_RELEASE);
    if (!was)
        weft__lw_wake_all(&b->waiters);
    weft__spin_unlock(&b->lock);
    return was ? WEFT_ECLOSED : 0;
}

bool weft_broadcast_is_closed(const weft_broadcast_t *b)
{
    return b != NULL && __atomic_load_n(&b->closed, __ATOMIC_ACQUIRE);
}

size_t weft_broadcast_receiver_count(const weft_broadcast_t *b)
{
    if (b == NULL)
        return 0;
    struct weft_broadcast *m = (struct weft_broadcast *)(uintptr_t)b;
    weft__spin_lock(&m->lock);
    size_t n = m->nrx;
    weft__spin_unlock(&m->lock);
    return n;
}

size_t weft_broadcast_cap(const weft_broadcast_t *b)
{
    return b != NULL ? (size_t)b->cap : 0;
}

/* For tests (declared there): receivers waiting now. */
size_t weft__broadcast_waiting(weft_broadcast_t *b);
size_t weft__broadcast_waiting(weft_broadcast_t *b)
{
    weft__spin_lock(&b->lock);
    size_t n = b->waiters.n;
    weft__spin_unlock(&b->lock);
    return n;
}

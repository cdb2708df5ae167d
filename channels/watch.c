/*
 * channels/watch.c - watch channels (weft/broadcast.h, docs/broadcast.md).
 *
 * One value of at most 56 bytes and a 64-bit version under one spinlock;
 * a receiver keeps the version it last saw. Senders store and bump the
 * version under the lock and wake every waiting receiver
 * (channels/lockwait.h); a receiver's check and its waiting record are
 * made under the same lock, so no change is missed. A watch is read far
 * more often than written (configuration, state), and each read copies at
 * most 56 bytes under the lock: held for a few dozen instructions, the
 * lock costs one uncontended atomic exchange per read.
 */
#include <string.h>
#include <weft/broadcast.h>
#include <weft/error.h>
#include <weft/loop.h>

#include "core/alloc.h"
#include "lockwait.h"

struct weft_watch {
    weft__spin_t lock;
    uint32_t refs; /* atomic */
    uint32_t esz;
    /* Under the lock. */
    uint64_t version;
    size_t nrx;
    bool closed; /* also read without the lock (is_closed) */
    struct weft__lw_queue waiters;
    _Alignas(8) unsigned char val[WEFT_BROADCAST_INLINE_MAX];
};

struct weft_watch_rx {
    struct weft_watch *w;
    /* Under w's lock. */
    uint64_t seen;
    uint32_t active;
};

int weft_watch_new(size_t elem_size, const void *initial, weft_watch_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || initial == NULL || elem_size == 0 || elem_size > WEFT_BROADCAST_INLINE_MAX)
        return UV_EINVAL;
    struct weft_watch *w = weft__calloc(1, sizeof(*w));
    if (w == NULL)
        return UV_ENOMEM;
    w->esz = (uint32_t)elem_size;
    memcpy(w->val, initial, elem_size);
    w->refs = 1;
    weft__lw_init(&w->waiters);
    *out = w;
    return 0;
}

void weft_watch_ref(weft_watch_t *w)
{
    if (w != NULL)
        __atomic_fetch_add(&w->refs, 1, __ATOMIC_RELAXED);
}

void weft_watch_unref(weft_watch_t *w)
{
    if (w == NULL || __atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    weft__free(w);
}

int weft_watch_send(weft_watch_t *w, const void *val)
{
    if (w == NULL || val == NULL)
        return UV_EINVAL;
    weft__spin_lock(&w->lock);
    if (w->closed) {
        weft__spin_unlock(&w->lock);
        return WEFT_ECLOSED;
    }
    memcpy(w->val, val, w->esz);
    w->version++;
    size_t n = w->nrx;
    weft__lw_wake_all(&w->waiters);
    weft__spin_unlock(&w->lock);
    return (int)(n > (size_t)INT32_MAX ? INT32_MAX : n);
}

int weft_watch_borrow(const weft_watch_t *cw, void *out, uint64_t *version)
{
    if (cw == NULL || out == NULL)
        return UV_EINVAL;
    struct weft_watch *w = (struct weft_watch *)(uintptr_t)cw;
    weft__spin_lock(&w->lock);
    memcpy(out, w->val, w->esz);
    if (version != NULL)
        *version = w->version;
    weft__spin_unlock(&w->lock);
    return 0;
}

int weft_watch_subscribe(weft_watch_t *w, weft_watch_rx_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (w == NULL || out == NULL)
        return UV_EINVAL;
    struct weft_watch_rx *rx = weft__calloc(1, sizeof(*rx));
    if (rx == NULL)
        return UV_ENOMEM;
    weft__spin_lock(&w->lock);
    if (w->closed) {
        weft__spin_unlock(&w->lock);
        weft__free(rx);
        return WEFT_ECLOSED;
    }
    rx->w = w;
    rx->seen = w->version;
    w->nrx++;
    weft_watch_ref(w);
    weft__spin_unlock(&w->lock);
    *out = rx;
    return 0;
}

int weft_watch_unsubscribe(weft_watch_rx_t *rx)
{
    if (rx == NULL)
        return UV_EINVAL;
    struct weft_watch *w = rx->w;
    weft__spin_lock(&w->lock);
    if (rx->active != 0) {
        weft__spin_unlock(&w->lock);
        return UV_EBUSY;
    }
    w->nrx--;
    weft__spin_unlock(&w->lock);
    weft__free(rx);
    weft_watch_unref(w);
    return 0;
}

/* ---- waiting for a change ------------------------------------------------------ */

/* Under the lock: 0 (a newer version, now marked seen), UV_EOF, UV_EAGAIN. */
static int changed_locked(void *arg)
{
    struct weft_watch_rx *rx = arg;
    struct weft_watch *w = rx->w;
    if (w->version != rx->seen) {
        rx->seen = w->version;
        return 0;
    }
    return w->closed ? UV_EOF : UV_EAGAIN;
}

static int changed_wait(struct weft_watch_rx *rx, uint64_t timeout_ms)
{
    struct weft_watch *w = rx->w;
    weft__spin_lock(&w->lock);
    int rc = changed_locked(rx);
    if (rc == UV_EAGAIN && timeout_ms != 0)
        rx->active++;
    weft__spin_unlock(&w->lock);
    if (rc != UV_EAGAIN)
        return rc;
    if (timeout_ms == 0)
        return UV_ETIMEDOUT;
    rc = weft__lw_wait(&w->lock, &w->waiters, changed_locked, rx, weft__xwait_deadline(timeout_ms));
    weft__spin_lock(&w->lock);
    rx->active--;
    weft__spin_unlock(&w->lock);
    return rc;
}

static int task_changed(weft_watch_rx_t *rx, uint64_t timeout_ms)
{
    if (rx == NULL)
        return UV_EINVAL;
    int rc = weft__xwait_check();
    if (rc != 0)
        return rc;
    return changed_wait(rx, timeout_ms);
}

int weft_watch_changed(weft_watch_rx_t *rx)
{
    return task_changed(rx, WEFT_FOREVER);
}

int weft_watch_changed_timeout(weft_watch_rx_t *rx, uint64_t timeout_ms)
{
    return task_changed(rx, timeout_ms);
}

int weft_watch_changed_try(weft_watch_rx_t *rx)
{
    if (rx == NULL)
        return UV_EINVAL;
    weft__spin_lock(&rx->w->lock);
    int rc = changed_locked(rx);
    weft__spin_unlock(&rx->w->lock);
    return rc;
}

int weft_watch_changed_blocking(weft_watch_rx_t *rx, uint64_t timeout_ms)
{
    if (rx == NULL)
        return UV_EINVAL;
    if (weft_loop_current() != NULL)
        return WEFT_EDEADLK;
    return changed_wait(rx, timeout_ms);
}

bool weft__watch_sel_link(struct weft_watch_rx *rx, struct weft__lw_rec *r)
{
    struct weft_watch *w = rx->w;
    weft__spin_lock(&w->lock);
    bool ready = w->version != rx->seen || w->closed;
    weft__list_push_back(&w->waiters.list, &r->link);
    w->waiters.n++;
    rx->active++;
    weft__spin_unlock(&w->lock);
    return ready;
}

void weft__watch_sel_unlink(struct weft_watch_rx *rx, struct weft__lw_rec *r)
{
    struct weft_watch *w = rx->w;
    weft__spin_lock(&w->lock);
    if (weft__list_linked(&r->link)) {
        weft__list_remove(&r->link);
        w->waiters.n--;
    }
    rx->active--;
    weft__spin_unlock(&w->lock);
}

int weft_watch_recv_latest(weft_watch_rx_t *rx, void *out, uint64_t *version)
{
    if (rx == NULL || out == NULL)
        return UV_EINVAL;
    struct weft_watch *w = rx->w;
    weft__spin_lock(&w->lock);
    memcpy(out, w->val, w->esz);
    rx->seen = w->version;
    if (version != NULL)
        *version = w->version;
    weft__spin_unlock(&w->lock);
    return 0;
}

/* ---- closing and questions ---------------------------------------------------- */

int weft_watch_close(weft_watch_t *w)
{
    if (w == NULL)
        return UV_EINVAL;
    weft__spin_lock(&w->lock);
    bool was = w->closed;
    __atomic_store_n(&w->closed, true, __ATOMIC_RELEASE);
    if (!was)
        weft__lw_wake_all(&w->waiters);
    weft__spin_unlock(&w->lock);
    return was ? WEFT_ECLOSED : 0;
}

bool weft_watch_is_closed(const weft_watch_t *w)
{
    return w != NULL && __atomic_load_n(&w->closed, __ATOMIC_ACQUIRE);
}

size_t weft_watch_receiver_count(const weft_watch_t *cw)
{
    if (cw == NULL)
        return 0;
    struct weft_watch *w = (struct weft_watch *)(uintptr_t)cw;
    weft__spin_lock(&w->lock);
    size_t n = w->nrx;
    weft__spin_unlock(&w->lock);
    return n;
}

/* For tests (declared there): receivers waiting now. */
size_t weft__watch_waiting(weft_watch_t *w);
size_t weft__watch_waiting(weft_watch_t *w)
{
    weft__spin_lock(&w->lock);
    size_t n = w->waiters.n;
    weft__spin_unlock(&w->lock);
    return n;
}

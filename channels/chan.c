/*
 * channels/chan.c - bounded channels between tasks of any loop and plain
 * threads (weft/chan.h, docs/channels.md).
 *
 * The buffer is a ring of slots that carry their own sequence number
 * (Vyukov's bounded queue): a slot holds seq == 2 * pos when free for the
 * producer at position pos, 2 * pos + 1 once that value is in it (doubled
 * so that a ring of one slot can tell "full" from "free": Vyukov's pos /
 * pos + 1 encoding needs two slots at least). A
 * consumer learns that a value is there from the slot itself, so between
 * two awake loops a message moves the slot's cache line and nothing else;
 * docs/machine.md measured this layout at ~1.3x a bare cache-line round
 * trip, against ~1.5-1.8x for head/tail index rings and ~2.0-2.3x for
 * ck_ring as shipped. Slots are 16 bytes for values of up to 8 bytes and
 * 64 bytes (a line) for up to 56.
 *
 * Producers claim positions with a compare-and-swap on tail - for every
 * kind: the CAS is also the full fence the waiter check below needs, so a
 * single producer pays nothing extra for it, and bit 63 of tail is the
 * closed flag, so that no position can be claimed after close (a receiver
 * that sees closed and head == tail has really seen the last value; a
 * value can never arrive after the receivers' UV_EOF). MPMC consumers
 * claim with a CAS on head and free each slot by its seq (Vyukov);
 * single consumers (MPSC, SPSC) never write slots: they publish head once
 * per call, and producers claim a whole batch with one CAS against their
 * cached copy of head (see "Two rings" below).
 *
 * Hot path: a send or receive that finds room or a value does one locked
 * instruction, no system call, no lock and no allocation. Waiting is the
 * slow path: a waiter links a record (core/xwait.h) into the channel's
 * queue under a spinlock and counts itself in nrecv_wait/nsend_wait; after
 * its own update each side reads the other's counter (sender: CAS tail,
 * then read nrecv_wait; receiver registering: increment nrecv_wait, then
 * read tail - all seq_cst, so one of the two sees the other; likewise a
 * receiver's seq_cst store that frees room - head, or in an MPMC ring the
 * freed slot's seq - against a registering sender's read of it). A side
 * that sees waiters wakes one per value it put in or took out ("notify";
 * a batch wakes as many as its values): the woken waiter retries the
 * operation. A woken waiter that leaves without taking what it was woken
 * for (cancelled, timed out, or a select that took another case) passes
 * the wake-up on, so none is lost.
 *
 * Measured (docs/channels.md, "Costs measured here", 2026-12-03, this
 * 2-core VM): stream_cross 118-139 M msgs/s against 44-311 M for the bare
 * unbatched ring in the same runs; pingpong_cross 2.1-3.1x the bare
 * cache-line round trip; pingpong_local 212-271 ns (weft_queue_t: 70-107).
 *
 * Rendezvous channels (capacity 0) have no ring: everything happens under
 * the lock, and a send hands its value straight into the waiting
 * receiver's record (or a receiver takes it from the waiting sender's).
 */
#include <weft/chan.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/error.h>
#include <weft/future.h>
#include <weft/loop.h>
#include <weft/queue.h>
#include <weft/task.h>

#include "chan_int.h"
#include "core/alloc.h"

#define CLOSED_BIT (1ull << 63)

/* ---- slots --------------------------------------------------------------- */

static inline struct chan_slot *slot_at(const struct weft_chan *ch, uint64_t pos)
{
    return (struct chan_slot *)(void *)(ch->slots + (size_t)(pos & ch->mask) * ch->stride);
}

static inline void copy_in(const struct weft_chan *ch, unsigned char *dst, const void *src)
{
    if (ch->esz == 8)
        memcpy(dst, src, 8); /* one 8-byte move */
    else
        memcpy(dst, src, ch->esz);
}

/* ---- debug mode: the single-sender / single-receiver promises ------------ */

static __attribute__((noreturn)) void promise_broken(const struct weft_chan *ch, const char *call,
                                                     const char *who)
{
    fprintf(stderr,
            "weft: debug: %s on channel %s (%p): a second %s while another is active; "
            "the channel was created %s\n",
            call, ch->name ? ch->name : "(unnamed)", (const void *)ch, who,
            ch->kind == WEFT_CHAN_SPSC ? "SPSC" : "MPSC");
    abort();
}

/* The counter of active callers a kind promises to keep at one, or NULL
 * (not in debug mode, or no promise for this side). */
static inline uint32_t *promise_count(struct weft_chan *ch, bool send)
{
    if (__builtin_expect(!ch->debug, 1))
        return NULL;
    if (send)
        return ch->kind == WEFT_CHAN_SPSC ? &ch->dbg_senders : NULL;
    return ch->kind != WEFT_CHAN_MPMC ? &ch->dbg_receivers : NULL;
}

static inline void enter(struct weft_chan *ch, bool send, const char *call)
{
    uint32_t *c = promise_count(ch, send);
    if (c != NULL && __atomic_fetch_add(c, 1, __ATOMIC_ACQ_REL) != 0)
        promise_broken(ch, call, send ? "sender" : "receiver");
}

static inline void leave(struct weft_chan *ch, bool send)
{
    uint32_t *c = promise_count(ch, send);
    if (c != NULL)
        __atomic_fetch_sub(c, 1, __ATOMIC_ACQ_REL);
}

/* ---- waking -------------------------------------------------------------- */

/* Under the lock: one record fewer. Increments are seq_cst RMWs (the
 * registering side's fence, see the head comment); a decrement needs no
 * fence - a count read too high only costs a needless notify. */
static inline void dec_waiters(uint32_t *n)
{
    __atomic_store_n(n, __atomic_load_n(n, __ATOMIC_RELAXED) - 1, __ATOMIC_RELAXED);
}

/* Wake up to `count` waiters of q (under the lock): the oldest that can
 * still be claimed. Records that cannot (their select fired elsewhere,
 * their wait ended) are unlinked on the way. */
static void notify_locked(struct weft_chan *ch, int dir, size_t count)
{
    struct weft__list *q = dir == CHAN_RECV ? &ch->recvq : &ch->sendq;
    uint32_t *n = dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait;
    while (count > 0 && !weft__list_empty(q)) {
        struct chan_rec *r = WEFT_CONTAINER_OF(weft__list_pop_front(q), struct chan_rec, link);
        dec_waiters(n);
        if (weft__xwait_claim(r->x, r->tag))
            count--;
    }
}

static void notify_n(struct weft_chan *ch, int dir, size_t count)
{
    weft__spin_lock(&ch->lock);
    notify_locked(ch, dir, count);
    weft__spin_unlock(&ch->lock);
}

void weft__chan_notify(struct weft_chan *ch, int dir)
{
    notify_n(ch, dir, 1);
}

/* After `count` values went in (dir = CHAN_RECV: wake receivers) or out
 * (CHAN_SEND: wake senders): one waiter per value, as each can take one
 * (a woken waiter that succeeds does not pass the wake-up on). */
static inline void maybe_notify_n(struct weft_chan *ch, int dir, size_t count)
{
    uint32_t *n = dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait;
    if (__builtin_expect(__atomic_load_n(n, __ATOMIC_SEQ_CST) != 0, 0) && count > 0)
        notify_n(ch, dir, count);
}

static inline void maybe_notify(struct weft_chan *ch, int dir)
{
    maybe_notify_n(ch, dir, 1);
}

/* ---- the ring (buffered channels) ---------------------------------------- */

/* Two rings. MPMC: Vyukov's - a consumer frees a slot by storing its seq
 * for the next lap, so producers learn "free" from the slot too. Single
 * consumer (MPSC, SPSC): the slot's seq says only "filled"; the consumer
 * frees by publishing its position, head, once per call (a batch of any
 * size is one store), and producers compare with a copy of head that they
 * refresh only when it says "full" (head_cache, on their own line). So a
 * stream costs the consumer no write to the slots at all, and a batch one
 * locked instruction a side. */

static inline bool single_consumer(const struct weft_chan *ch)
{
    return ch->kind != WEFT_CHAN_MPMC;
}

/* Single consumer: room at t (refreshing head_cache when it says full),
 * or -1 if t is stale (other producers moved on and the consumer is past
 * it: re-read tail). */
static inline int64_t sc_room(struct weft_chan *ch, uint64_t t)
{
    /* acquire/release: the copy carries the consumer's release of head
     * (it has finished reading every slot below it) from the producer that
     * refreshed it to the ones that use it. */
    uint64_t hc = __atomic_load_n(&ch->head_cache, __ATOMIC_ACQUIRE);
    if ((int64_t)(t - hc) > (int64_t)ch->mask || (int64_t)(t - hc) < 0) {
        hc = __atomic_load_n(&ch->head, __ATOMIC_ACQUIRE);
        __atomic_store_n(&ch->head_cache, hc, __ATOMIC_RELEASE);
    }
    int64_t used = (int64_t)(t - hc);
    if (used < 0)
        return -1;
    return used > (int64_t)ch->mask ? 0 : (int64_t)ch->mask + 1 - used;
}

/* Claim up to n positions: the first, and how many (0: full) in *k; or
 * WEFT_ECLOSED. MPMC claims one at a time (a slot must be free). */
static inline int ring_claim(struct weft_chan *ch, size_t n, uint64_t *pos, size_t *k)
{
    uint64_t t = __atomic_load_n(&ch->tail, __ATOMIC_RELAXED);
    for (;;) {
        if (t & CLOSED_BIT)
            return WEFT_ECLOSED;
        size_t take;
        if (single_consumer(ch)) {
            int64_t room = sc_room(ch, t);
            if (room < 0) {
                t = __atomic_load_n(&ch->tail, __ATOMIC_RELAXED);
                continue;
            }
            if (room == 0) {
                *k = 0;
                return 0;
            }
            take = (uint64_t)n < (uint64_t)room ? n : (size_t)room;
        } else {
            uint64_t seq = __atomic_load_n(&slot_at(ch, t)->seq, __ATOMIC_ACQUIRE);
            int64_t dif = (int64_t)(seq - 2 * t);
            if (dif < 0) { /* full: the slot still holds the value of a lap ago */
                *k = 0;
                return 0;
            }
            if (dif > 0) { /* another producer took t */
                t = __atomic_load_n(&ch->tail, __ATOMIC_RELAXED);
                continue;
            }
            take = 1;
        }
        /* seq_cst: also the fence before the read of nrecv_wait that
         * follows (see the head comment). */
        if (__atomic_compare_exchange_n(&ch->tail, &t, t + take, true, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
            *pos = t;
            *k = take;
            return 0;
        }
    }
}

static inline void ring_fill(struct weft_chan *ch, uint64_t pos, const void *val)
{
    struct chan_slot *s = slot_at(ch, pos);
    copy_in(ch, s->data, val);
    __atomic_store_n(&s->seq, 2 * pos + 1, __ATOMIC_RELEASE);
}

/* 0, UV_EAGAIN (full) or WEFT_ECLOSED; no waiter check. */
static inline int ring_push(struct weft_chan *ch, const void *val)
{
    uint64_t pos;
    size_t k;
    int rc = ring_claim(ch, 1, &pos, &k);
    if (rc != 0)
        return rc;
    if (k == 0)
        return UV_EAGAIN;
    ring_fill(ch, pos, val);
    return 0;
}

/* Up to n values from vals: how many went in (0: full), or WEFT_ECLOSED. */
static inline int ring_push_many(struct weft_chan *ch, const unsigned char *vals, size_t n,
                                 size_t *done)
{
    *done = 0;
    while (*done < n) {
        uint64_t pos;
        size_t k;
        int rc = ring_claim(ch, n - *done, &pos, &k);
        if (rc != 0)
            return *done > 0 ? 0 : rc;
        if (k == 0)
            break;
        for (size_t i = 0; i < k; i++)
            ring_fill(ch, pos + i, vals + (*done + i) * ch->esz);
        *done += k;
    }
    return 0;
}

/* Empty: UV_EOF if closed and drained, else UV_EAGAIN. Only a closed
 * channel needs the producers' position (is this the end?): reading it on
 * every empty poll would pull their line over at every message. close sets
 * tail's bit before it stores `closed` (release), so the bit is seen. */
static inline int ring_empty_code(struct weft_chan *ch, uint64_t h)
{
    if (!__atomic_load_n(&ch->closed, __ATOMIC_ACQUIRE))
        return UV_EAGAIN;
    uint64_t t = __atomic_load_n(&ch->tail, __ATOMIC_ACQUIRE);
    if ((t & ~CLOSED_BIT) == h && (t & CLOSED_BIT))
        return UV_EOF;
    return UV_EAGAIN; /* the next value is claimed but not written yet */
}

/* Up to max values into out: how many (*got), or UV_EAGAIN / UV_EOF when
 * there was none. No waiter check. */
static inline int ring_pop_many(struct weft_chan *ch, unsigned char *out, size_t max, size_t *got)
{
    *got = 0;
    uint64_t h = __atomic_load_n(&ch->head, __ATOMIC_RELAXED);
    if (single_consumer(ch)) {
        size_t i = 0;
        for (; i < max; i++) {
            struct chan_slot *s = slot_at(ch, h + i);
            if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != 2 * (h + i) + 1)
                break;
            if (out != NULL)
                memcpy(out + i * ch->esz, s->data, ch->esz);
        }
        if (i == 0)
            return ring_empty_code(ch, h);
        /* seq_cst: ordered before the read of nsend_wait that follows. */
        __atomic_store_n(&ch->head, h + i, __ATOMIC_SEQ_CST);
        *got = i;
        return 0;
    }
    while (*got < max) {
        struct chan_slot *s = slot_at(ch, h);
        uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        int64_t dif = (int64_t)(seq - (2 * h + 1));
        if (dif < 0)
            break;
        if (dif > 0) { /* another consumer took h */
            h = __atomic_load_n(&ch->head, __ATOMIC_RELAXED);
            continue;
        }
        if (!__atomic_compare_exchange_n(&ch->head, &h, h + 1, true, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
            continue;
        if (out != NULL)
            memcpy(out + *got * ch->esz, s->data, ch->esz);
        /* seq_cst: the slot is free for the producer of the next lap, and
         * this is ordered before the read of nsend_wait that follows. */
        __atomic_store_n(&s->seq, 2 * (h + ch->mask + 1), __ATOMIC_SEQ_CST);
        ++*got;
        h++;
    }
    return *got > 0 ? 0 : ring_empty_code(ch, h);
}

static inline int ring_pop(struct weft_chan *ch, void *out)
{
    size_t got;
    return ring_pop_many(ch, out, 1, &got);
}

/* After registering as a waiter: is the operation worth retrying now? */
static bool ring_ready(struct weft_chan *ch, int dir)
{
    uint64_t t = __atomic_load_n(&ch->tail, __ATOMIC_SEQ_CST);
    if (t & CLOSED_BIT)
        return true;
    if (dir == CHAN_RECV)
        return t != __atomic_load_n(&ch->head, __ATOMIC_SEQ_CST);
    if (single_consumer(ch))
        return t - __atomic_load_n(&ch->head, __ATOMIC_SEQ_CST) <= ch->mask;
    return __atomic_load_n(&slot_at(ch, t)->seq, __ATOMIC_SEQ_CST) == 2 * t;
}

/* For polling: does the next slot look ready (or the channel closed)?
 * Reads only the slot, the read-mostly line and (a producer of a single
 * consumer ring, when its copy says full) head: a poller must not pull the
 * other side's position line over at every poll. */
static inline bool ring_peek(struct weft_chan *ch, int dir)
{
    if (__atomic_load_n(&ch->closed, __ATOMIC_RELAXED))
        return true;
    if (dir == CHAN_RECV) {
        uint64_t h = __atomic_load_n(&ch->head, __ATOMIC_RELAXED);
        return __atomic_load_n(&slot_at(ch, h)->seq, __ATOMIC_ACQUIRE) == 2 * h + 1;
    }
    uint64_t t = __atomic_load_n(&ch->tail, __ATOMIC_RELAXED) & ~CLOSED_BIT;
    if (single_consumer(ch))
        return t - __atomic_load_n(&ch->head, __ATOMIC_ACQUIRE) <= ch->mask;
    return __atomic_load_n(&slot_at(ch, t)->seq, __ATOMIC_ACQUIRE) == 2 * t;
}

/* ---- rendezvous (under the lock) ----------------------------------------- */

/* Hand val to a waiting receiver: 0, or UV_EAGAIN if none. */
static int rdv_give_locked(struct weft_chan *ch, const void *val)
{
    while (!weft__list_empty(&ch->recvq)) {
        struct chan_rec *r =
            WEFT_CONTAINER_OF(weft__list_pop_front(&ch->recvq), struct chan_rec, link);
        dec_waiters(&ch->nrecv_wait);
        /* Filled in before the claim: the claim wakes the waiter, which may
         * read its record at once. Unclaimed, nobody reads it. */
        memcpy(r->buf, val, ch->esz);
        r->code = 0;
        if (weft__xwait_claim(r->x, r->tag))
            return 0;
    }
    return UV_EAGAIN;
}

/* Take a waiting sender's value: 0, or UV_EAGAIN if none. */
static int rdv_take_locked(struct weft_chan *ch, void *out)
{
    while (!weft__list_empty(&ch->sendq)) {
        struct chan_rec *r =
            WEFT_CONTAINER_OF(weft__list_pop_front(&ch->sendq), struct chan_rec, link);
        dec_waiters(&ch->nsend_wait);
        /* Read before the claim: once claimed, the sender may return. */
        unsigned char tmp[WEFT_CHAN_INLINE_MAX];
        memcpy(tmp, r->buf, ch->esz);
        r->code = 0;
        if (weft__xwait_claim(r->x, r->tag)) {
            if (out != NULL)
                memcpy(out, tmp, ch->esz);
            return 0;
        }
    }
    return UV_EAGAIN;
}

/* A rendezvous attempt (under the lock): a hand-over, WEFT_ECLOSED (send)
 * or UV_EOF (recv) once closed, else UV_EAGAIN. */
static int rdv_try_locked(struct weft_chan *ch, int dir, void *val)
{
    bool closed = __atomic_load_n(&ch->closed, __ATOMIC_RELAXED); /* written under the lock */
    if (dir == CHAN_SEND)
        return closed ? WEFT_ECLOSED : rdv_give_locked(ch, val);
    int rc = rdv_take_locked(ch, val);
    return rc == UV_EAGAIN && closed ? UV_EOF : rc;
}

/* ---- one attempt, any kind ------------------------------------------------ */

int weft__chan_try(struct weft_chan *ch, int dir, void *val)
{
    int rc;
    if (ch->rendezvous) {
        weft__spin_lock(&ch->lock);
        rc = rdv_try_locked(ch, dir, val);
        weft__spin_unlock(&ch->lock);
        return rc;
    }
    if (dir == CHAN_SEND) {
        rc = ring_push(ch, val);
        if (rc == 0)
            maybe_notify(ch, CHAN_RECV);
    } else {
        rc = ring_pop(ch, val);
        if (rc == 0)
            maybe_notify(ch, CHAN_SEND);
    }
    return rc;
}

/* ---- waiter records --------------------------------------------------------- */

/* Link r (under the lock). Returns true if the operation should be retried
 * at once instead of waiting (the re-check after registering found it
 * ready); r is linked either way. For a rendezvous with `handover` (a
 * single wait, whose waiter nobody else can have claimed), the hand-over
 * is tried first: true with *done set if it happened (r not linked then). */
/* A live waiter in q (records whose wait ended are unlinked on the way). */
static bool live_waiter_locked(struct weft_chan *ch, int dir)
{
    struct weft__list *q = dir == CHAN_RECV ? &ch->recvq : &ch->sendq;
    while (!weft__list_empty(q)) {
        struct chan_rec *r = WEFT_CONTAINER_OF(q->next, struct chan_rec, link);
        uint32_t st = __atomic_load_n(&r->x->state, __ATOMIC_ACQUIRE);
        if (st == WEFT__XW_WAITING || st == WEFT__XW_SLEEPING)
            return true;
        weft__list_remove(&r->link);
        dec_waiters(dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait);
    }
    return false;
}

bool weft__chan_register(struct weft_chan *ch, int dir, struct chan_rec *r, void *val, int *done,
                         bool handover)
{
    *done = UV_EAGAIN;
    weft__spin_lock(&ch->lock);
    if (ch->rendezvous && !handover) {
        /* A select: its other cases may be claimed already, so it must not
         * hand over here; a live counterpart (or close) means "retry". */
        bool ready = __atomic_load_n(&ch->closed, __ATOMIC_RELAXED) ||
                     live_waiter_locked(ch, dir == CHAN_SEND ? CHAN_RECV : CHAN_SEND);
        if (dir == CHAN_SEND)
            memcpy(r->vbuf, val, ch->esz);
        r->buf = r->vbuf;
        r->code = UV_EAGAIN;
        weft__list_push_back(dir == CHAN_RECV ? &ch->recvq : &ch->sendq, &r->link);
        __atomic_fetch_add(dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait, 1,
                           __ATOMIC_SEQ_CST);
        weft__spin_unlock(&ch->lock);
        return ready;
    }
    if (ch->rendezvous) {
        int rc;
        rc = rdv_try_locked(ch, dir, val);
        if (rc != UV_EAGAIN) {
            weft__spin_unlock(&ch->lock);
            *done = rc;
            return true;
        }
        if (dir == CHAN_SEND)
            memcpy(r->vbuf, val, ch->esz);
        r->buf = r->vbuf;
        r->code = UV_EAGAIN;
    }
    struct weft__list *q = dir == CHAN_RECV ? &ch->recvq : &ch->sendq;
    weft__list_push_back(q, &r->link);
    __atomic_fetch_add(dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait, 1, __ATOMIC_SEQ_CST);
    weft__spin_unlock(&ch->lock);
    return !ch->rendezvous && ring_ready(ch, dir);
}

/* Unlink r if it is still linked (under the lock): after this no other
 * thread touches r. */
void weft__chan_unregister(struct weft_chan *ch, int dir, struct chan_rec *r)
{
    weft__spin_lock(&ch->lock);
    if (weft__list_linked(&r->link)) {
        weft__list_remove(&r->link);
        dec_waiters(dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait);
    }
    weft__spin_unlock(&ch->lock);
}

/* ---- waiting for one operation -------------------------------------------- */

/* A single wait's waiter and record (weft__xwait_block_begin). */
struct wait_pair {
    struct weft__xwait x;
    struct chan_rec r;
};

/* Spins a plain thread does before it registers and blocks. */
#define THREAD_SPINS 64

/* Do dir on ch, waiting until deadline. */
static int wait_op(struct weft_chan *ch, int dir, void *val, uint64_t deadline, bool thread)
{
    if (thread) {
        for (int i = 0; i < THREAD_SPINS; i++) {
            int rc = weft__chan_try(ch, dir, val);
            if (rc != UV_EAGAIN)
                return rc;
            weft__cpu_relax();
        }
    } else if (!ch->rendezvous) {
        /* A task whose loop has other work ready yields to it once before
         * it registers: the other end is often among it (two tasks of one
         * loop handing values back and forth), and then the value is there
         * when this task runs again - no waiter record, no lock, no claim,
         * no wake-up. One yield, then the wait as usual. */
        if (weft__xwait_others_ready()) {
            int rc = weft_yield();
            if (rc != 0)
                return rc;
            rc = weft__chan_try(ch, dir, val);
            if (rc != UV_EAGAIN)
                return rc;
        }
        /* A task whose loop is idle polls the ring for a while (see
         * weft__xwait_spin_budget): between two awake loops a message then
         * costs the slot's cache line and no wake-up at all. */
        uint64_t budget = weft__xwait_spin_budget();
        if (budget > 0) {
            uint64_t end = uv_hrtime() + budget;
            if (end > deadline)
                end = deadline;
            for (unsigned k = 1;; k++) {
                if (ring_peek(ch, dir)) {
                    int rc = weft__chan_try(ch, dir, val);
                    if (rc != UV_EAGAIN)
                        return rc;
                }
                weft__cpu_relax();
                if ((k & 15) == 0 && (weft__xwait_loop_busy() || uv_hrtime() >= end))
                    break;
            }
        }
    }
    for (;;) {
        int rc = weft__chan_try(ch, dir, val);
        if (rc != UV_EAGAIN)
            return rc;
        if (deadline != UINT64_MAX && uv_hrtime() >= deadline)
            return UV_ETIMEDOUT;
        struct wait_pair stack_w,
            *w = weft__xwait_block_begin(&stack_w, sizeof stack_w, sizeof stack_w);
        if (w == NULL)
            return UV_ENOMEM;
        struct chan_rec *r = &w->r;
        weft__list_init(&r->link);
        r->x = &w->x;
        r->tag = 0;
        int done;
        int prc = 0;
        bool retry = weft__chan_register(ch, dir, r, val, &done, true);
        if (!retry)
            prc = weft__xwait_park(&w->x, deadline);
        int tag = weft__xwait_settle(&w->x);
        /* Every claimer unlinks a record before claiming it, and a waiter
         * woken by the claim (prc 0) knows the claimer is done with it. */
        if (tag < 0 || prc != 0 || retry)
            weft__chan_unregister(ch, dir, r);
        int code = r->code;
        if (ch->rendezvous && tag >= 0 && code == 0 && dir == CHAN_RECV && val != NULL)
            memcpy(val, r->vbuf, ch->esz);
        if (ch->rendezvous && tag >= 0 && prc == UV_ECANCELED)
            weft__xwait_keep_cancel(&w->x);
        weft__xwait_block_end(w, &stack_w);
        if (done != UV_EAGAIN)
            return done; /* a rendezvous hand-over while registering */
        if (ch->rendezvous && tag >= 0)
            return code; /* the hand-over (or close) wins over a cancel */
        if (prc != 0) {
            if (tag >= 0) /* woken, but leaving without the value: pass it on */
                weft__chan_notify(ch, dir);
            return prc;
        }
    }
}

/* ---- public API --------------------------------------------------------------- */

static bool debug_default(void)
{
    const char *env = getenv("WEFT_DEBUG");
    if (env != NULL && *env != '\0')
        return strcmp(env, "0") != 0;
#ifdef WEFT_DEBUG_DEFAULT
    return WEFT_DEBUG_DEFAULT != 0;
#else
    return false;
#endif
}

int weft_chan_new(const weft_chan_opts_t *opts, weft_chan_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (opts == NULL || out == NULL || opts->elem_size == 0 || opts->capacity > (1u << 30))
        return UV_EINVAL;
    if (opts->kind != WEFT_CHAN_MPMC && opts->kind != WEFT_CHAN_MPSC &&
        opts->kind != WEFT_CHAN_SPSC)
        return UV_EINVAL;
    bool ptrs = opts->elem_size > WEFT_CHAN_INLINE_MAX;
    if (ptrs && opts->dtor == NULL)
        return UV_EINVAL;
    size_t esz = ptrs ? sizeof(void *) : opts->elem_size;
    size_t stride = esz <= 8 ? 16 : 64;
    size_t cap = 0;
    if (opts->capacity > 0) {
        cap = 1;
        while (cap < opts->capacity)
            cap <<= 1;
    }
    struct weft_chan *ch = weft__aligned_calloc(64, 1, sizeof(*ch));
    if (ch == NULL)
        return UV_ENOMEM;
    if (cap > 0) {
        ch->slots = weft__aligned_calloc(64, cap, stride);
        if (ch->slots == NULL) {
            weft__free(ch);
            return UV_ENOMEM;
        }
    }
    if (opts->name != NULL && (ch->name = weft__strdup(opts->name)) == NULL) {
        weft__free(ch->slots);
        weft__free(ch);
        return UV_ENOMEM;
    }
    ch->esz = (uint32_t)esz;
    ch->stride = (uint32_t)stride;
    ch->mask = cap > 0 ? cap - 1 : 0;
    ch->cap = cap;
    ch->rendezvous = cap == 0;
    ch->kind = (uint8_t)opts->kind;
    ch->ptrs = ptrs;
    ch->dtor = opts->dtor;
    ch->debug = debug_default();
    ch->refs = 1;
    weft__list_init(&ch->recvq);
    weft__list_init(&ch->sendq);
    for (size_t i = 0; i < cap; i++)
        slot_at(ch, i)->seq = 2 * i;
    *out = ch;
    return 0;
}

void weft_chan_ref(weft_chan_t *ch)
{
    if (ch != NULL)
        __atomic_fetch_add(&ch->refs, 1, __ATOMIC_RELAXED);
}

void weft_chan_unref(weft_chan_t *ch)
{
    if (ch == NULL || __atomic_sub_fetch(&ch->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (ch->dtor != NULL && !ch->rendezvous) {
        uint64_t h = __atomic_load_n(&ch->head, __ATOMIC_RELAXED);
        uint64_t t = __atomic_load_n(&ch->tail, __ATOMIC_RELAXED) & ~CLOSED_BIT;
        for (; h != t; h++) {
            struct chan_slot *s = slot_at(ch, h);
            if (ch->ptrs) {
                void *p;
                memcpy(&p, s->data, sizeof(p));
                ch->dtor(p);
            } else {
                ch->dtor(s->data);
            }
        }
    }
    weft__free(ch->name);
    weft__free(ch->slots);
    weft__free(ch);
}

/* Where the task forms may run: 0, WEFT_ENOTASK, or a pending cancel /
 * passed scope deadline (a wait would return it). */
static inline int task_check(void)
{
    return weft__xwait_check();
}

static int task_op(weft_chan_t *ch, int dir, void *val, uint64_t timeout_ms, const char *call)
{
    if (ch == NULL || val == NULL)
        return UV_EINVAL;
    int rc = task_check();
    if (rc != 0)
        return rc;
    enter(ch, dir == CHAN_SEND, call);
    rc = weft__chan_try(ch, dir, val);
    if (rc == UV_EAGAIN) {
        rc = timeout_ms == 0 ? UV_ETIMEDOUT
                             : wait_op(ch, dir, val, weft__xwait_deadline(timeout_ms), false);
    }
    leave(ch, dir == CHAN_SEND);
    return rc;
}

int weft_chan_send(weft_chan_t *ch, const void *val)
{
    return task_op(ch, CHAN_SEND, (void *)(uintptr_t)val, WEFT_FOREVER, "weft_chan_send");
}
int weft_chan_send_timeout(weft_chan_t *ch, const void *val, uint64_t timeout_ms)
{
    return task_op(ch, CHAN_SEND, (void *)(uintptr_t)val, timeout_ms, "weft_chan_send_timeout");
}
int weft_chan_recv(weft_chan_t *ch, void *out)
{
    return task_op(ch, CHAN_RECV, out, WEFT_FOREVER, "weft_chan_recv");
}
int weft_chan_recv_timeout(weft_chan_t *ch, void *out, uint64_t timeout_ms)
{
    return task_op(ch, CHAN_RECV, out, timeout_ms, "weft_chan_recv_timeout");
}

int weft_chan_send_try(weft_chan_t *ch, const void *val)
{
    if (ch == NULL || val == NULL)
        return UV_EINVAL;
    enter(ch, true, "weft_chan_send_try");
    int rc = weft__chan_try(ch, CHAN_SEND, (void *)(uintptr_t)val);
    leave(ch, true);
    return rc;
}
int weft_chan_recv_try(weft_chan_t *ch, void *out)
{
    if (ch == NULL || out == NULL)
        return UV_EINVAL;
    enter(ch, false, "weft_chan_recv_try");
    int rc = weft__chan_try(ch, CHAN_RECV, out);
    leave(ch, false);
    return rc;
}

static int blocking_op(weft_chan_t *ch, int dir, void *val, uint64_t timeout_ms, const char *call)
{
    if (ch == NULL || val == NULL)
        return UV_EINVAL;
    if (weft_loop_current() != NULL)
        return WEFT_EDEADLK;
    enter(ch, dir == CHAN_SEND, call);
    int rc = weft__chan_try(ch, dir, val);
    if (rc == UV_EAGAIN) {
        rc = timeout_ms == 0 ? UV_ETIMEDOUT
                             : wait_op(ch, dir, val, weft__xwait_deadline(timeout_ms), true);
    }
    leave(ch, dir == CHAN_SEND);
    return rc;
}

int weft_chan_send_blocking(weft_chan_t *ch, const void *val, uint64_t timeout_ms)
{
    return blocking_op(ch, CHAN_SEND, (void *)(uintptr_t)val, timeout_ms,
                       "weft_chan_send_blocking");
}
int weft_chan_recv_blocking(weft_chan_t *ch, void *out, uint64_t timeout_ms)
{
    return blocking_op(ch, CHAN_RECV, out, timeout_ms, "weft_chan_recv_blocking");
}

int weft_chan_send_batch(weft_chan_t *ch, const void *vals, size_t n, size_t *sent)
{
    if (sent != NULL)
        *sent = 0;
    if (ch == NULL || (vals == NULL && n > 0) || ch->rendezvous)
        return UV_EINVAL;
    int rc = task_check();
    if (rc != 0)
        return rc;
    enter(ch, true, "weft_chan_send_batch");
    const unsigned char *p = vals;
    size_t i = 0;
    while (i < n) {
        /* Push what fits (one claim per run on a single-consumer ring),
         * then one waiter check for the lot. */
        size_t done = 0;
        rc = ring_push_many(ch, p + i * ch->esz, n - i, &done);
        i += done;
        maybe_notify_n(ch, CHAN_RECV, done); /* a receiver per value */
        if (rc != 0)
            break;
        if (i == n)
            break;
        rc = wait_op(ch, CHAN_SEND, (void *)(uintptr_t)(p + i * ch->esz), UINT64_MAX, false);
        if (rc != 0)
            break;
        i++;
    }
    leave(ch, true);
    if (sent != NULL)
        *sent = i;
    return rc;
}

int weft_chan_recv_batch(weft_chan_t *ch, void *out, size_t max, size_t *got)
{
    if (got != NULL)
        *got = 0;
    if (ch == NULL || out == NULL || got == NULL || max == 0 || ch->rendezvous)
        return UV_EINVAL;
    int rc = task_check();
    if (rc != 0)
        return rc;
    enter(ch, false, "weft_chan_recv_batch");
    unsigned char *p = out;
    size_t i = 0, notified = 0;
    rc = ring_pop_many(ch, p, max, &i);
    if (rc == UV_EAGAIN) {
        rc = wait_op(ch, CHAN_RECV, p, UINT64_MAX, false);
        if (rc == 0) {
            size_t more = 0;
            (void)ring_pop_many(ch, p + ch->esz, max - 1, &more);
            i = 1 + more;
            notified = 1; /* wait_op's receive woke a sender for its slot */
        }
    }
    if (i > 0) {
        maybe_notify_n(ch, CHAN_SEND, i - notified); /* a sender per freed slot */
        rc = 0;
    }
    leave(ch, false);
    *got = i;
    return rc;
}

int weft_chan_close(weft_chan_t *ch)
{
    if (ch == NULL)
        return UV_EINVAL;
    weft__spin_lock(&ch->lock);
    bool was = __atomic_load_n(&ch->closed, __ATOMIC_RELAXED); /* written under the lock */
    if (!ch->rendezvous)
        (void)__atomic_fetch_or(&ch->tail, CLOSED_BIT, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ch->closed, true, __ATOMIC_RELEASE);
    if (!was) {
        /* Every waiter wakes and finds the channel closed (buffered), or is
         * told so in its record (rendezvous). */
        for (int dir = CHAN_SEND; dir <= CHAN_RECV; dir++) {
            struct weft__list *q = dir == CHAN_RECV ? &ch->recvq : &ch->sendq;
            while (!weft__list_empty(q)) {
                struct chan_rec *r =
                    WEFT_CONTAINER_OF(weft__list_pop_front(q), struct chan_rec, link);
                dec_waiters(dir == CHAN_RECV ? &ch->nrecv_wait : &ch->nsend_wait);
                r->code = dir == CHAN_RECV ? UV_EOF : WEFT_ECLOSED;
                (void)weft__xwait_claim(r->x, r->tag);
            }
        }
    }
    weft__spin_unlock(&ch->lock);
    return was ? WEFT_ECLOSED : 0;
}

bool weft_chan_is_closed(const weft_chan_t *ch)
{
    return ch != NULL && __atomic_load_n(&ch->closed, __ATOMIC_ACQUIRE);
}

size_t weft_chan_len(const weft_chan_t *ch)
{
    if (ch == NULL || ch->rendezvous)
        return 0;
    uint64_t h = __atomic_load_n(&ch->head, __ATOMIC_ACQUIRE);
    uint64_t t = __atomic_load_n(&ch->tail, __ATOMIC_ACQUIRE) & ~CLOSED_BIT;
    return t > h ? (size_t)(t - h) : 0;
}

size_t weft_chan_cap(const weft_chan_t *ch)
{
    return ch != NULL ? ch->cap : 0;
}

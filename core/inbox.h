/*
 * core/inbox.h - a loop's thread-safe door (internal).
 *
 * Many producers (any thread), one consumer (the loop's thread). A message is
 * a function and four words. The fast path is a bounded ring of 64-byte
 * slots, each carrying the sequence number ticket + 1 of the message in it,
 * so a message moves one cache line and a post is one compare-and-swap on
 * the tail. Unlike Vyukov's bounded queue the consumer never writes a slot:
 * each lap expects a different sequence, so nothing needs resetting, and
 * producers learn which slots are free from a head index the consumer
 * publishes every 32 messages. A post then pulls its slot's line from the
 * consumer in shared state instead of modified, and the consumer's drain
 * only reads slots. docs/machine.md measured slot-sequenced rings at ~1.3x a bare cache-line
 * round trip against ~2x for ck_ring as shipped, which is why this ring is
 * ours and not ck_ring.
 *
 * When the ring is full the producer waits a bounded ~45 us for an awake
 * consumer, then appends to an overflow list under a mutex instead (one allocation per message;
 * never drops, never spins on the consumer). Once anything is in overflow, every producer goes
 * there until the consumer has taken the list, so each producer's messages stay in order.
 *
 * Wake-up protocol ("wake only the sleeping"): the consumer announces sleep
 * by storing sleeping = 1 (seq_cst) and then re-reading the ring
 * tail and the overflow flag (seq_cst) - the only place the consumer reads the tail; a producer,
 * after its seq_cst CAS on the tail (or its seq_cst store of the overflow flag), loads sleeping
 * (seq_cst). In the single total order of seq_cst operations either the consumer's re-read sees the
 * producer's message, or the producer's load sees sleeping = 1 and the producer wakes it (the one
 * whose CAS takes sleeping 1 -> 0 writes the eventfd through uv_async_send). tests/threadsafe_test
 * stresses this.
 */
#ifndef WEFT_CORE_INBOX_H
#define WEFT_CORE_INBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct weft__inbox_msg;
typedef void (*weft__inbox_fn)(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d);

struct weft__inbox_slot {
    uint64_t seq;
    weft__inbox_fn fn;
    uintptr_t a, b, c, d;
    char pad[64 - 48];
};

struct weft__inbox_node {
    struct weft__inbox_node *next;
    weft__inbox_fn fn;
    uintptr_t a, b, c, d;
};

/* Laid out by writer, one cache line each, so that a post moves only the
 * tail line and one slot line between cores. */
struct weft__inbox {
    /* Read-only after init (producers). */
    _Alignas(64) struct weft__inbox_slot *slots;
    uint64_t mask;
    /* Producers: the next ticket, and their shared copy of the consumer's
     * published head (refreshed only when the ring looks full). */
    _Alignas(64) uint64_t tail;
    uint64_t head_cache;
    /* Posts in progress (weft__post in loop.c): weft_loop_close waits for 0
     * after shutting `closed`, so no post touches a loop after its close.
     * On the tail's line, which every post writes anyway. */
    uint64_t posters;
    /* Consumer: how far it has consumed, published every PUBLISH_EVERY
     * messages and at the end of each drain. */
    _Alignas(64) uint64_t head_pub;
    /* Consumer only (with its own copies of slots and mask). */
    _Alignas(64) uint64_t head;
    struct weft__inbox_slot *c_slots;
    uint64_t c_mask;
    unsigned unpublished;
    /* Rarely written: the sleep announcement and the overflow flag. */
    _Alignas(64) int sleeping; /* consumer announced it will block */
    int overflowing;           /* overflow list is non-empty */
    int closed;                /* the door is shut (weft_loop_close): posts return WEFT_ECLOSED */
    /* Overflow list, under the mutex. */
    _Alignas(64) pthread_mutex_t lock;
    struct weft__inbox_node *ov_head, *ov_tail;
    uint64_t overflows;
};

int weft__inbox_init(struct weft__inbox *q, uint32_t capacity_pow2);
void weft__inbox_destroy(struct weft__inbox *q);
/* Any thread. Returns 0, UV_ENOMEM, WEFT_ECLOSED; *wake is set when the
 * caller must wake the consumer (it was sleeping and this call claimed it).
 * spin_ok: on a full ring, wait a bounded time for the consumer before
 * taking the overflow path (false on the consumer's own thread). */
int weft__inbox_post(struct weft__inbox *q, weft__inbox_fn fn, uintptr_t a, uintptr_t b,
                     uintptr_t c, uintptr_t d, bool spin_ok, bool *wake);
/* Consumer: run up to max messages in order with fn(ctx, ...). Returns the
 * number run. */
unsigned weft__inbox_drain(struct weft__inbox *q, void *ctx, unsigned max);
/* Consumer: true if a message is ready (reads the head slot, not the tail
 * line the producers write). */
bool weft__inbox_pending(struct weft__inbox *q);
/* Consumer: true if a message is ready or a producer holds a ticket for one
 * (reads the tail: use off the fast path). */
bool weft__inbox_nonempty(struct weft__inbox *q);
/* Consumer: announce sleep. Returns false (and clears the announcement) if
 * messages are pending, in which case the consumer must not block. */
bool weft__inbox_prepare_sleep(struct weft__inbox *q);
void weft__inbox_end_sleep(struct weft__inbox *q);

#endif /* WEFT_CORE_INBOX_H */

/*
 * channels/chan_int.h - a channel's layout and the pieces select shares with
 * the channel code (internal to channels/).
 */
#ifndef WEFT_CHANNELS_CHAN_INT_H
#define WEFT_CHANNELS_CHAN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/chan.h>

#include "core/list.h"
#include "core/xwait.h"

enum {
    CHAN_SEND = 0,
    CHAN_RECV = 1,
};

/* A ring slot: its sequence number, then the value (16 or 64 bytes). */
struct chan_slot {
    uint64_t seq; /* atomic */
    unsigned char data[];
};

/* One case of one waiter, linked in a channel's recvq or sendq under the
 * channel's lock. buf: a rendezvous value (the sender's, or where the
 * receiver's goes); code: what a rendezvous claim or a close says. */
struct chan_rec {
    struct weft__list link;
    struct weft__xwait *x;
    uint32_t tag;
    int code;
    unsigned char *buf;
    _Alignas(8) unsigned char vbuf[WEFT_CHAN_INLINE_MAX];
};

struct weft_chan {
    /* Read-mostly line. */
    _Alignas(64) unsigned char *slots;
    uint64_t mask;
    size_t cap;
    uint32_t esz;    /* bytes stored per value (8 for a pointer channel) */
    uint32_t stride; /* bytes per slot */
    uint8_t kind;
    bool rendezvous;
    bool ptrs;  /* elem_size > WEFT_CHAN_INLINE_MAX: the values are pointers */
    bool debug; /* check the kind's single-sender/receiver promises */
    void (*dtor)(void *);
    char *name;
    uint32_t refs; /* atomic */
    bool closed;   /* atomic, written under the lock; in a buffered channel tail's
                    * bit 63 (set first) is what producers obey */
    /* Producers' line: the next position to claim, bit 63 = closed; and
     * (single-consumer rings) their copy of head, refreshed when it says
     * the ring is full. */
    _Alignas(64) uint64_t tail;
    uint64_t head_cache; /* atomic */
    /* Consumers' line. */
    _Alignas(64) uint64_t head;
    /* Waiters: counters read by the hot path (rarely written), the lock
     * and the queues. */
    _Alignas(64) uint32_t nrecv_wait;
    uint32_t nsend_wait;
    weft__spin_t lock;
    struct weft__list recvq, sendq;
    uint32_t dbg_senders, dbg_receivers; /* debug mode: active callers */
};

/* One attempt: 0, UV_EAGAIN, WEFT_ECLOSED (send) or UV_EOF (recv). */
int weft__chan_try(struct weft_chan *ch, int dir, void *val);
bool weft__chan_register(struct weft_chan *ch, int dir, struct chan_rec *r, void *val, int *done,
                         bool handover);
void weft__chan_unregister(struct weft_chan *ch, int dir, struct chan_rec *r);
void weft__chan_notify(struct weft_chan *ch, int dir);

#endif /* WEFT_CHANNELS_CHAN_INT_H */

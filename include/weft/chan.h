/*
 * weft/chan.h - channels between tasks of any loop and plain OS threads, and
 * select over channels, futures and queues (docs/channels.md).
 *
 * A channel is a bounded FIFO of fixed-size values shared by any number of
 * loops and threads. It is created by the library and reference counted:
 * weft_chan_new gives one reference, every holder takes its own with
 * weft_chan_ref and drops it with weft_chan_unref; the last unref frees the
 * channel and destroys the values still buffered with the destructor.
 * Closing is explicit (weft_chan_close, Go's close), not tied to dropping a
 * sender: a channel fed by tasks on several loops and by plain threads has
 * no single "last sender" that all of them could agree on cheaply, and an
 * explicit close is what lets a consumer tell "done" from "all senders
 * crashed". (Reference counting is only about memory.)
 *
 * Values: elem_size bytes, 1..WEFT_CHAN_INLINE_MAX (56), are copied into the
 * channel's slots (the 8-byte case is the fast path). A larger elem_size
 * makes a channel of pointers: each value is a `void *` to an object of
 * elem_size bytes that the sender gives away and the receiver owns, and the
 * channel needs a destructor for the objects still buffered when it is
 * freed (UV_EINVAL without one). An inline channel may have a destructor
 * too; it is called with a pointer to each value left in the channel.
 *
 * Capacity: rounded up to a power of two (weft_chan_cap says what it is).
 * Capacity 0 is a rendezvous channel (Go's unbuffered channel): a send
 * completes when a receiver has taken the value.
 *
 * Kinds (a promise about who calls, which picks the algorithm): MPMC (the
 * default), MPSC (one receiver at a time), SPSC (one sender and one receiver
 * at a time). Breaking the promise is caught in debug mode (WEFT_DEBUG=1:
 * the process aborts with a message naming the channel and the call), not
 * silently corrupted.
 *
 * Codes: a send to a closed channel is WEFT_ECLOSED; a receive from a
 * closed channel returns the values still buffered, then UV_EOF. *_try
 * forms return UV_EAGAIN when they would wait. Waits return UV_ETIMEDOUT
 * when their timeout passes (timeout 0: do not wait, UV_ETIMEDOUT at once if
 * not ready) and UV_ECANCELED when the task is cancelled: a cancelled send
 * did not enqueue its value and a cancelled receive took nothing - except
 * that a rendezvous hand-over already done when the cancel came wins (the
 * call returns 0 and the cancel stays pending for the next suspension, as
 * every weft wait does). Task forms called outside a task return
 * WEFT_ENOTASK; blocking forms called on a loop's thread return
 * WEFT_EDEADLK (they would block the loop). NULL arguments are UV_EINVAL.
 */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_chan weft_chan_t;

typedef enum weft_chan_kind {
    WEFT_CHAN_MPMC = 0,
    WEFT_CHAN_MPSC = 1,
    WEFT_CHAN_SPSC = 2,
} weft_chan_kind_t;

#define WEFT_CHAN_INLINE_MAX 56u

typedef struct weft_chan_opts {
    size_t elem_size;        /* 1 .. 56 inline; larger: a channel of pointers */
    size_t capacity;         /* 0 = rendezvous; else rounded up to a power of two */
    weft_chan_kind_t kind;   /* MPMC unless said otherwise */
    void (*dtor)(void *val); /* inline: a pointer to the value; pointers: the pointer */
    const char *name;        /* for debug messages (copied); may be NULL */
} weft_chan_opts_t;

/* UV_EINVAL for a NULL argument, elem_size 0, a capacity above 2^30, or a
 * pointer channel without dtor; UV_ENOMEM. */
int weft_chan_new(const weft_chan_opts_t *opts, weft_chan_t **out);
void weft_chan_ref(weft_chan_t *ch);
/* The last reference frees the channel (destroying buffered values). Every
 * task or thread that uses a channel holds a reference of its own (taken
 * before it is handed the channel, dropped when it is done with it), so the
 * last unref cannot come while anybody still sends, receives or waits. */
void weft_chan_unref(weft_chan_t *ch);

/* Task forms: suspend while full (send) or empty (recv). */
int weft_chan_send(weft_chan_t *ch, const void *val);
int weft_chan_send_timeout(weft_chan_t *ch, const void *val, uint64_t timeout_ms);
int weft_chan_recv(weft_chan_t *ch, void *out);
int weft_chan_recv_timeout(weft_chan_t *ch, void *out, uint64_t timeout_ms);
/* Any thread, any context (callbacks too): never wait; UV_EAGAIN. A
 * rendezvous send_try succeeds only if a receiver is waiting, a recv_try
 * only if a sender is. */
int weft_chan_send_try(weft_chan_t *ch, const void *val);
int weft_chan_recv_try(weft_chan_t *ch, void *out);

/* Batches (the pipeline fast path): send_batch sends all n values of the
 * array vals (n * elem_size bytes) in order, waiting for room as needed;
 * *sent (may be NULL) says how many went in even when it fails (closed,
 * cancelled, timed out). recv_batch waits until at least one value is
 * there, then takes up to max; *got says how many. Not for rendezvous
 * channels (UV_EINVAL). */
int weft_chan_send_batch(weft_chan_t *ch, const void *vals, size_t n, size_t *sent);
int weft_chan_recv_batch(weft_chan_t *ch, void *out, size_t max, size_t *got);

/* Plain threads: block the OS thread (a short bounded spin, then a futex)
 * until done, until timeout_ms passes (WEFT_FOREVER: never) or the channel
 * closes. WEFT_EDEADLK on a loop's thread. */
int weft_chan_send_blocking(weft_chan_t *ch, const void *val, uint64_t timeout_ms);
int weft_chan_recv_blocking(weft_chan_t *ch, void *out, uint64_t timeout_ms);

/* Close: later sends fail with WEFT_ECLOSED, receivers drain what is
 * buffered and then get UV_EOF; every waiting sender and receiver wakes.
 * A second close is WEFT_ECLOSED. */
int weft_chan_close(weft_chan_t *ch);
bool weft_chan_is_closed(const weft_chan_t *ch);
/* Values buffered now (a snapshot), and the capacity. */
size_t weft_chan_len(const weft_chan_t *ch);
size_t weft_chan_cap(const weft_chan_t *ch);

/* ---- select (Go's select) ---------------------------------------------------
 * A select waits on several cases and fires exactly one. Among cases that
 * are ready together the choice is uniformly random, not first-listed.
 *   WEFT_SEL_RECV    obj = channel, val = where the value goes; rc 0, or
 *                    UV_EOF when the channel is closed and drained
 *   WEFT_SEL_SEND    obj = channel, val = the value; rc 0 or WEFT_ECLOSED
 *   WEFT_SEL_FUTURE  obj = a future of the caller's loop (weft_future_t or a
 *                    task's future; for other loops' futures use
 *                    weft_future_from_token); fires when it is done, rc 0
 *   WEFT_SEL_QUEUE_GET obj = weft_queue_t of the caller's loop, val = void **;
 *                    rc 0 or WEFT_ECLOSED (shut down)
 *   WEFT_SEL_BROADCAST_RECV obj = weft_broadcast_rx_t (weft/broadcast.h),
 *                    val = where the value goes; rc 0, WEFT_ELAGGED (see
 *                    weft_broadcast_lagged) or UV_EOF
 *   WEFT_SEL_WATCH_CHANGED obj = weft_watch_rx_t; fires on a version the
 *                    receiver has not seen (now marked seen); rc 0 or UV_EOF
 * A case whose obj is NULL is never ready (Go's nil channel).
 * Returns the index of the fired case (its rc says how it went), or
 * UV_ETIMEDOUT (timeout passed; WEFT_FOREVER = none; a select of no
 * ready-able cases waits for its timeout or cancel), UV_ECANCELED,
 * WEFT_ENOTASK, UV_EINVAL (bad case). weft_select_try is the select with a
 * default case: UV_EAGAIN when no case is ready. */
typedef enum weft_sel_op {
    WEFT_SEL_RECV = 1,
    WEFT_SEL_SEND = 2,
    WEFT_SEL_FUTURE = 3,
    WEFT_SEL_QUEUE_GET = 4,
    WEFT_SEL_BROADCAST_RECV = 5,
    WEFT_SEL_WATCH_CHANGED = 6,
} weft_sel_op_t;

typedef struct weft_sel_case {
    weft_sel_op_t op;
    void *obj;
    void *val;
    int rc; /* out */
} weft_sel_case_t;

/* At most this many cases in one select. */
#define WEFT_SELECT_MAX 64

int weft_select(weft_sel_case_t *cases, size_t n, uint64_t timeout_ms);
int weft_select_try(weft_sel_case_t *cases, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_CHAN_H */

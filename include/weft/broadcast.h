/*
 * weft/broadcast.h - broadcast and watch channels (Tokio's broadcast and
 * watch) between tasks of any loop and plain OS threads
 * (docs/broadcast.md).
 *
 * A broadcast delivers every value sent to every receiver that subscribed
 * before it was sent (fan-out of events); a watch keeps only the latest
 * value, and its receivers learn that it changed (configuration, state).
 * Both are created by the library and reference counted like weft_chan_t:
 * *_new gives one reference, *_ref / *_unref take and drop one, the last
 * unref frees the object; every receiver holds a reference of its own
 * until it unsubscribes. Closing is explicit (*_close).
 *
 * Values are inline: elem_size bytes, 1..WEFT_BROADCAST_INLINE_MAX (56),
 * copied in by the sender and copied out to every receiver.
 *
 * Who may call: senders, closers and *_try forms from any thread and any
 * context (callbacks too); the task forms (recv, recv_timeout, changed,
 * changed_timeout) from a task of any loop; the *_blocking forms from plain
 * threads (WEFT_EDEADLK on a loop's thread: they would block the loop).
 *
 * Codes (as in weft/chan.h): WEFT_ECLOSED for a send or subscribe after
 * close; UV_EOF for a receiver that has had everything and the object is
 * closed; UV_EAGAIN from *_try when it would wait; UV_ETIMEDOUT when a
 * timeout passes (timeout 0: do not wait; WEFT_FOREVER: no timeout);
 * UV_ECANCELED when the waiting task is cancelled (a cancelled wait took
 * nothing: the value stays for the receiver's next call); WEFT_ENOTASK for
 * a task form outside a task; UV_EINVAL for NULL arguments and bad sizes;
 * UV_ENOMEM; WEFT_ELAGGED (broadcast only, below).
 *
 * A receiver is meant for one consumer. Calls on one receiver from several
 * tasks or threads at once are safe (each value then goes to one of them),
 * but a receiver must not be unsubscribed while another call on it is in
 * progress (UV_EBUSY when that is seen; the receiver stays subscribed).
 */
#ifndef WEFT_BROADCAST_H
#define WEFT_BROADCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_BROADCAST_INLINE_MAX 56u

/* ---- broadcast ----------------------------------------------------------------
 * A ring of `capacity` values (exactly that many: not rounded). A send never
 * waits: when the ring is full it overwrites the oldest value. A receiver
 * that has not yet received a value that is overwritten has lagged: its next
 * receive returns WEFT_ELAGGED once (copying nothing) and
 * weft_broadcast_lagged says how many values it missed; the receive after
 * that continues with the oldest value still kept. After close, receivers
 * get what is still kept for them, then UV_EOF.
 *
 * Destructor (may be NULL): called with a pointer to a value when the ring
 * drops it - when it is overwritten, when the last reference goes (for the
 * values still kept), and at once for a value sent while nobody is
 * subscribed (nobody can ever receive it). Receivers get byte copies of
 * the value, so the destructor may run while receivers still hold copies:
 * a pointer-like value is only safe to dereference if what it points to
 * outlives every receiver's use, which the destructor cannot know about.
 * Use the destructor for values that own nothing receivers keep (counting,
 * accounting), or send values that are self-contained. The destructor runs
 * outside the broadcast's lock, on the sender's (or last unref's) thread;
 * it must not call back into the same broadcast. */
typedef struct weft_broadcast weft_broadcast_t;
typedef struct weft_broadcast_rx weft_broadcast_rx_t;

/* UV_EINVAL (elem_size 0 or > 56, capacity 0 or > 2^30, out NULL),
 * UV_ENOMEM. */
int weft_broadcast_new(size_t elem_size, size_t capacity, void (*dtor)(void *val),
                       weft_broadcast_t **out);
void weft_broadcast_ref(weft_broadcast_t *b);
void weft_broadcast_unref(weft_broadcast_t *b);

/* Any thread, never waits: the number of receivers subscribed now (>= 0;
 * 0: the value was dropped, see the destructor), or WEFT_ECLOSED (the
 * value was not taken: the destructor is not called), UV_EINVAL. */
int weft_broadcast_send(weft_broadcast_t *b, const void *val);

/* A receiver that sees every value sent after this call. It holds a
 * reference to b until weft_broadcast_unsubscribe. WEFT_ECLOSED after
 * close, UV_EINVAL, UV_ENOMEM. */
int weft_broadcast_subscribe(weft_broadcast_t *b, weft_broadcast_rx_t **out);
/* 0, or UV_EBUSY while a call on rx is in progress (rx stays valid);
 * UV_EINVAL for NULL. */
int weft_broadcast_unsubscribe(weft_broadcast_rx_t *rx);

/* The receiver's next value, in send order: 0, WEFT_ELAGGED, UV_EOF,
 * UV_ECANCELED, UV_ETIMEDOUT, WEFT_ENOTASK, UV_EINVAL. Task forms. */
int weft_broadcast_recv(weft_broadcast_rx_t *rx, void *out);
int weft_broadcast_recv_timeout(weft_broadcast_rx_t *rx, void *out, uint64_t timeout_ms);
/* Any thread, any context: UV_EAGAIN instead of waiting. */
int weft_broadcast_recv_try(weft_broadcast_rx_t *rx, void *out);
/* Plain threads: block (futex) until a value, close, or timeout_ms. */
int weft_broadcast_recv_blocking(weft_broadcast_rx_t *rx, void *out, uint64_t timeout_ms);

/* How many values the receiver's most recent WEFT_ELAGGED skipped (0 if it
 * never lagged). The count is a getter rather than an out parameter so
 * that every receive keeps weft_chan_recv's shape. */
uint64_t weft_broadcast_lagged(const weft_broadcast_rx_t *rx);
/* Values kept that this receiver has not received yet (at most the
 * capacity; a snapshot). */
size_t weft_broadcast_pending(const weft_broadcast_rx_t *rx);

/* Later sends and subscribes fail with WEFT_ECLOSED; every waiting
 * receiver wakes (and drains, then gets UV_EOF). A second close is
 * WEFT_ECLOSED. */
int weft_broadcast_close(weft_broadcast_t *b);
bool weft_broadcast_is_closed(const weft_broadcast_t *b);
/* Receivers subscribed now, and the capacity (0 for NULL). */
size_t weft_broadcast_receiver_count(const weft_broadcast_t *b);
size_t weft_broadcast_cap(const weft_broadcast_t *b);

/* ---- watch ------------------------------------------------------------------
 * One value, the latest, and a version that every send bumps (the initial
 * value is version 0). A receiver remembers the version it last saw (at
 * subscribe: the current one). weft_watch_changed waits until the version
 * is newer than that, marks the newest version seen and returns 0: several
 * sends between two calls show as one change. After close, a change not
 * yet seen is still reported (0), then UV_EOF. */
typedef struct weft_watch weft_watch_t;
typedef struct weft_watch_rx weft_watch_rx_t;

/* initial: elem_size bytes (not NULL). UV_EINVAL, UV_ENOMEM. */
int weft_watch_new(size_t elem_size, const void *initial, weft_watch_t **out);
void weft_watch_ref(weft_watch_t *w);
void weft_watch_unref(weft_watch_t *w);

/* Any thread, never waits: store val as the latest value, bump the version
 * and wake every waiting receiver. The number of receivers subscribed now
 * (>= 0), or WEFT_ECLOSED, UV_EINVAL. */
int weft_watch_send(weft_watch_t *w, const void *val);
/* Any thread: copy the latest value to out; *version (may be NULL) is its
 * version. Works after close too. 0 or UV_EINVAL. */
int weft_watch_borrow(const weft_watch_t *w, void *out, uint64_t *version);

/* WEFT_ECLOSED after close, UV_EINVAL, UV_ENOMEM. */
int weft_watch_subscribe(weft_watch_t *w, weft_watch_rx_t **out);
/* 0, UV_EBUSY (a call on rx is in progress), UV_EINVAL. */
int weft_watch_unsubscribe(weft_watch_rx_t *rx);

/* Wait for a version newer than the one rx last saw, and mark the newest
 * seen: 0, UV_EOF (closed, nothing unseen), UV_ECANCELED, UV_ETIMEDOUT,
 * WEFT_ENOTASK, UV_EINVAL. Task forms. */
int weft_watch_changed(weft_watch_rx_t *rx);
int weft_watch_changed_timeout(weft_watch_rx_t *rx, uint64_t timeout_ms);
/* Any thread: UV_EAGAIN instead of waiting. */
int weft_watch_changed_try(weft_watch_rx_t *rx);
/* Plain threads: WEFT_EDEADLK on a loop's thread. */
int weft_watch_changed_blocking(weft_watch_rx_t *rx, uint64_t timeout_ms);
/* Any thread, never waits: copy the latest value and mark its version seen
 * (a later changed waits for a newer one). *version may be NULL. 0 or
 * UV_EINVAL. */
int weft_watch_recv_latest(weft_watch_rx_t *rx, void *out, uint64_t *version);

/* Later sends and subscribes fail with WEFT_ECLOSED; waiting receivers
 * wake. A second close is WEFT_ECLOSED. */
int weft_watch_close(weft_watch_t *w);
bool weft_watch_is_closed(const weft_watch_t *w);
size_t weft_watch_receiver_count(const weft_watch_t *w);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_BROADCAST_H */

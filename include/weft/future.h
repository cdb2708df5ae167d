/*
 * weft/future.h - one-shot results, asyncio.Future in C.
 *
 * A future is pending, then exactly once becomes done (with a void* result),
 * failed (with a negative code and an optional message) or cancelled
 * (UV_ECANCELED). Completing it again returns UV_EINVAL and changes nothing.
 *
 * Ownership: futures come from their loop's pool and are reference counted
 * (loop thread only). weft_future_new() returns one reference; release it
 * with weft_future_unref(). A task awaiting a future, and a pending done
 * callback, rely on the caller's reference: keep it until the future is done
 * or the await returned.
 *
 * Done callbacks never run inline: completing a future schedules them with
 * call_soon, in registration order. Waiting tasks are woken the same way.
 *
 * From other threads a future is named by a token (weft_future_token_t),
 * never by its pointer: the token is taken on the owner loop's thread and
 * holds one reference on the future, so the future's slot cannot be
 * recycled (and reused by an unrelated future or task) while a token for it
 * is in flight. Each token is used exactly once - by one *_threadsafe
 * completion, by weft_await_token (weft/task.h), or by
 * weft_future_token_drop - and the reference it holds travels with that
 * message and is released on the owner loop. See docs/core.md ("Crossing
 * threads").
 */
#ifndef WEFT_FUTURE_H
#define WEFT_FUTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_future weft_future_t; /* also declared in loop.h */
typedef void (*weft_future_cb)(weft_future_t *f, void *arg);

/* New pending future on `loop` (NULL = the current loop). Returns 0, UV_EINVAL
 * (no loop), WEFT_ECLOSED, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_future_new(weft_loop_t *loop, weft_future_t **out);
void weft_future_ref(weft_future_t *f);
void weft_future_unref(weft_future_t *f);

/* Complete. Owner loop's thread only (WEFT_EWRONGLOOP otherwise while the
 * loop runs). UV_EINVAL if already done or f is NULL; set_error also needs
 * code < 0; UV_EPERM for a task's future (weft_task_future(): only the task's
 * body completes it; cancel it with weft_future_cancel). The message is
 * copied. */
WEFT_WARN_UNUSED int weft_future_set_result(weft_future_t *f, void *result);
WEFT_WARN_UNUSED int weft_future_set_error(weft_future_t *f, int code, const char *message);
/* Cancel: 0 if it was pending (now cancelled), WEFT_EDONE if already done. */
int weft_future_cancel(weft_future_t *f);

/* A destructor for f's result (NULL = none; setting again replaces it).
 * The result is the future's until someone reads it - weft_future_result,
 * weft_await and the combinators, a task's or callback's look at it - and
 * then the reader's. A result that nobody read when f is released (its
 * last reference goes, a task's future included), or that arrives after f
 * was done (a late weft_future_set_result_threadsafe, the reply of a
 * weft_submit_to whose future was cancelled), is given to dtor then, on
 * f's loop; a NULL result is not. A result handed to a completion that
 * failed (UV_EINVAL: already done) stays the caller's. Owner loop's
 * thread: 0, UV_EINVAL (f NULL), WEFT_EWRONGLOOP, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_future_set_result_dtor(weft_future_t *f, void (*dtor)(void *result));

/* A reference to a future that may cross threads: a pointer and the slot
 * generation read on the owner's thread, plus one reference on the future.
 * Treat it as opaque; copy it freely but use it once. */
typedef struct weft_future_token {
    weft_future_t *weft__f;
    uint32_t weft__gen;
} weft_future_token_t;

/* Owner loop's thread only: a token for f (a plain future or a task's
 * future), taking one reference on f. 0, UV_EINVAL (f or out NULL),
 * WEFT_EWRONGLOOP (called off f's loop while it runs). */
WEFT_WARN_UNUSED int weft_future_token(weft_future_t *f, weft_future_token_t *out);

/* Any thread: complete the token's future by a message to its owner loop.
 * The token is used up when the call returns 0 or WEFT_ECLOSED (the loop is
 * closed: nothing is left to complete); on other errors it is still the
 * caller's. A completion that finds the future already done changes nothing.
 * Returns 0, UV_EINVAL (empty token; set_error also needs code < 0),
 * UV_EPERM (a task's future: only the task's body completes it),
 * UV_ENOMEM, WEFT_ECLOSED. The message is copied. */
WEFT_WARN_UNUSED int weft_future_set_result_threadsafe(weft_future_token_t tok, void *result);
WEFT_WARN_UNUSED int weft_future_set_error_threadsafe(weft_future_token_t tok, int code,
                                                      const char *message);
/* Any thread: cancel the token's future (a task's: cancel the task). Same
 * token rules and codes as above (no UV_EPERM). */
WEFT_WARN_UNUSED int weft_future_cancel_threadsafe(weft_future_token_t tok);
/* Any thread: give the token's reference back without completing anything.
 * 0, UV_EINVAL, UV_ENOMEM (token still the caller's), WEFT_ECLOSED. */
WEFT_WARN_UNUSED int weft_future_token_drop(weft_future_token_t tok);

/* asyncio.wrap_future: a future of the calling loop (its thread only) that
 * completes with the outcome of the token's future, which may belong to any
 * loop, so that the combinators (gather, wait, as_completed, shield) and
 * every other local call work with futures of other loops. Uses the token
 * up. For a future of this loop, *out is that future itself (the token's
 * reference becomes the caller's). Otherwise cancelling *out (or a task or
 * combinator awaiting it) cancels the remote future, and if the remote loop
 * closes first *out fails with WEFT_ECLOSED. The caller gets one reference.
 * 0, UV_EINVAL (empty token, out NULL), WEFT_EWRONGLOOP (not on a loop's
 * thread), WEFT_ECLOSED, UV_ENOMEM (token still the caller's). */
WEFT_WARN_UNUSED int weft_future_from_token(weft_future_token_t tok, weft_future_t **out);

bool weft_future_done(const weft_future_t *f);
bool weft_future_cancelled(const weft_future_t *f);
/* The outcome: 0 (and *result set, result may be NULL), the error code,
 * UV_ECANCELED, or WEFT_EPENDING while pending; UV_EINVAL for NULL. */
int weft_future_result(const weft_future_t *f, void **result);
/* Error message of a failed future, or NULL. Valid while f is referenced. */
const char *weft_future_message(const weft_future_t *f);
weft_loop_t *weft_future_loop(const weft_future_t *f);

/* Done callbacks: fn(f, arg) runs via call_soon after completion (right away
 * via call_soon if already done). remove returns how many (fn, arg) pairs it
 * removed (>= 0). UV_EINVAL for NULL, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_future_add_done_callback(weft_future_t *f, weft_future_cb fn, void *arg);
int weft_future_remove_done_callback(weft_future_t *f, weft_future_cb fn, void *arg);

/* Small helpers to carry integers in the void* result. */
static inline void *weft_int(intptr_t v)
{
    return (void *)v;
}
static inline intptr_t weft_to_int(void *p)
{
    return (intptr_t)p;
}

#ifdef __cplusplus
}
#endif
#endif /* WEFT_FUTURE_H */

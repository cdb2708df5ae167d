/*
 * core/testhooks.h - hooks that tests set to make a race window wide and
 * deterministic (internal; NULL in production, where each costs one
 * predictable branch on a global).
 *
 * A test sets a hook before it starts the threads that race and clears it
 * after joining them; the hooks are plain globals, read without
 * synchronisation by design (set before the threads exist).
 */
#ifndef WEFT_CORE_TESTHOOKS_H
#define WEFT_CORE_TESTHOOKS_H

/* core/loop.c, weft__post: after the message is published, before the
 * consumer is woken (uv_async_send) and before the post leaves the loop's
 * gate - the window in which a loop could be closed and freed under a
 * poster if weft_loop_close did not wait for posters. */
extern void (*weft__test_post_hook)(void);

/* loops/tsfuture.c, ts_complete: after the outcome is recorded and the lock
 * released, before the awaiters' futures are completed - the window in
 * which an awaiter may give up and its loop reuse the future's slot. */
extern void (*weft__test_ts_complete_hook)(void);

/* core/inbox.c, weft__inbox_post: after the post read the tail, before it
 * compares it with the producers' cached head - the window in which other
 * posts and a drain can move the ring on, so that the tail read is older
 * than the cached head. */
extern void (*weft__test_inbox_tail_hook)(void);

/* core/loop.c, block: the loop announced sleep and is about to block in
 * the poller (tests wait for it to know the loop really sleeps). */
extern void (*weft__test_sleep_hook)(void);

/* loops/runtime.c, stop_cb: loop `idx` has begun its stop. */
extern void (*weft__test_stop_hook)(unsigned idx);

/* loops/runtime.c: replies parked for lack of memory (relaxed atomic). */
extern unsigned long weft__test_replies_parked;

#endif /* WEFT_CORE_TESTHOOKS_H */

/*
 * weft/gen.h - async generators: `async def gen(): ... yield x` and
 * `async for x in gen()` in C.
 *
 *     static int count(void *arg, void **result) {     // the body
 *         for (intptr_t i = 0; i < 3; i++)
 *             if (weft_gen_yield(weft_int(i), NULL) != 0)
 *                 break;                               // closed: clean up
 *         return 0;
 *     }
 *     weft_gen_t *g;
 *     int rc = weft_gen_new(NULL, count, NULL, &g);
 *     if (rc != 0) return rc;
 *     void *v;
 *     while ((rc = weft_gen_next(g, &v)) == 0) use(v);  // rc == UV_EOF at the end
 *     weft_gen_free(g);
 *
 * A generator's body runs as a task of its own (with its own stack) that
 * starts at the first next/send. The consumer and the body alternate by
 * switching straight to each other: no trip through the ready queue. The
 * body may suspend on anything else between yields (sleep, await, queues).
 *
 * - next() = __anext__: 0 and the yielded value; UV_EOF once the body
 *   returned 0; the body's code if it failed (then UV_EOF afterwards).
 * - send(in) = asend(in): weft_gen_yield() returns 0 with *sent = in.
 *   Sending a non-NULL value to a generator that has not started is
 *   UV_EINVAL (as Python's TypeError).
 * - throw(code) = athrow: the pending weft_gen_yield() returns code; the
 *   body may yield again (throw returns that value) or return.
 * - free() = aclose, then free: the pending weft_gen_yield() returns
 *   UV_ECANCELED and so does every later one (without suspending), so the
 *   body runs its clean-up and returns; free waits for that and releases
 *   the generator. Returns 0 if the body returned 0 or UV_ECANCELED, else
 *   the body's code (unless next/send/throw already returned that failure:
 *   then 0). A generator that never started is freed without running. The
 *   generator is library-owned (weft_gen_new), so its release is _free, as
 *   everywhere in weft (_init/_close is for caller-owned storage): call it
 *   once per generator; outside a task it cancels the body and lets it
 *   finish on its own.
 * - Only one consumer at a time: next/send/throw while another task waits
 *   on the generator is UV_EBUSY; from the body's own task, WEFT_EDEADLK.
 * - Cancelling the consumer while the body runs cancels the body's current
 *   suspension (the cancel propagates, as through `await anext(g)`). A body
 *   that catches it and goes on catches it for the consumer too, as in
 *   asyncio, where the generator runs in the consumer's task (awaiting a
 *   task differs: task.h).
 */
#ifndef WEFT_GEN_H
#define WEFT_GEN_H

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_gen weft_gen_t;

/* Create a generator on `loop` (NULL = the current loop) for body fn(arg);
 * the body does not run yet. 0, UV_EINVAL, UV_ENOMEM, WEFT_ECLOSED. */
WEFT_WARN_UNUSED int weft__gen_new(weft_loop_t *loop, weft_task_fn fn, void *arg,
                                   const weft_task_opts_t *opts, weft_gen_t **out, const char *file,
                                   int line);
#define weft_gen_new(loop, fn, arg, out) \
    weft__gen_new((loop), (fn), (arg), NULL, (out), __FILE__, __LINE__)
#define weft_gen_new_ex(loop, fn, arg, opts, out) \
    weft__gen_new((loop), (fn), (arg), (opts), (out), __FILE__, __LINE__)

/* In the body only (UV_EINVAL from a task that is not a generator body,
 * WEFT_ENOTASK outside tasks): hand value to the consumer and wait for the
 * next request. Returns 0 (and *sent, if not NULL: the value of send(),
 * NULL for next()), a thrown code, or UV_ECANCELED when closed. */
WEFT_WARN_UNUSED int weft_gen_yield(void *value, void **sent);

/* Consumer side: in a task (WEFT_ENOTASK otherwise). */
WEFT_WARN_UNUSED int weft_gen_next(weft_gen_t *g, void **value);
WEFT_WARN_UNUSED int weft_gen_send(weft_gen_t *g, void *in, void **value);
WEFT_WARN_UNUSED int weft_gen_throw(weft_gen_t *g, int code, void **value);
int weft_gen_free(weft_gen_t *g);
/* The body's task (for names, dumps); valid until weft_gen_free. */
weft_task_t *weft_gen_task(const weft_gen_t *g);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_GEN_H */

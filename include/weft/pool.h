/*
 * weft/pool.h - a thread pool for CPU-bound work: asyncio.to_thread /
 * loop.run_in_executor in C.
 *
 * The pool has its own threads, separate from libuv's I/O pool (which serves
 * files and DNS). A job is fn(arg, &result) run on a pool thread; its
 * outcome comes back as a future owned by the submitting loop, completed on
 * that loop's thread (through its inbox, in batches when many finish
 * together: one inbox message per batch), so awaiting it is like awaiting
 * any other future. Jobs start in submission order (one FIFO queue for all
 * loops); idle pool threads sleep.
 *
 * A submitted job keeps its loop busy until its outcome has come back:
 * weft_loop_run() does not return for lack of work, and weft_loop_close()
 * returns UV_EBUSY, while a job of that loop is queued, running or on its
 * way back - even if nobody awaits its future.
 *
 * Cancellation: cancelling the future takes effect when the future's done
 * callbacks run (on the loop's next tick, as in asyncio). A job still queued
 * then is removed from the queue and never runs. A job already running keeps
 * running: the future is cancelled at once, the job's result is dropped when
 * it ends, and the job can see the request through weft_pool_cancelled() and
 * stop early. (A job that a pool thread takes between the cancel and that
 * tick therefore starts, and sees weft_pool_cancelled() true.)
 *
 * Shutdown: weft_pool_shutdown() stops taking jobs (submits from then on
 * return WEFT_ECLOSED), cancels the queued ones (their futures are
 * cancelled), waits for the running ones to finish, and joins the threads.
 * The outcomes are delivered to the loops through their inboxes, so the
 * loops must run again to receive them.
 *
 * Lifetime: the pool is library-owned, so it pairs weft_pool_new with
 * weft_pool_free (as futures pair _new with _unref): shutdown is only the
 * verb that stops it, as weft_queue_shutdown is for a queue; the pool stays
 * nameable after it (stats, WEFT_ECLOSED submits) until weft_pool_free.
 * weft_pool_free shuts the pool down first if that was not done.
 */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pool weft_pool_t;

/* A job: runs on a pool thread. Returns 0 with *result, or a negative code.
 * It must not call loop functions other than the *_threadsafe ones. */
typedef int (*weft_job_fn)(void *arg, void **result);

typedef struct weft_pool_opts {
    unsigned threads;  /* 0 = weft_cpu_count() (weft/runtime.h) */
    size_t stack_size; /* per thread; 0 = the system default */
    const char *name;  /* thread name prefix (pthread_setname_np), NULL = "weft-pool" */
} weft_pool_opts_t;

/* Create and start a pool (opts NULL = the defaults). Pool threads block all
 * signals. Any thread. Returns 0 and *out, UV_EINVAL (out NULL, more than
 * 4096 threads, a stack below PTHREAD_STACK_MIN), UV_ENOMEM, or a pthread
 * error as a negative code. */
WEFT_WARN_UNUSED int weft_pool_new(const weft_pool_opts_t *opts, weft_pool_t **out);

/* Submit fn(arg) and get a future on the calling thread's loop (any code
 * running on a loop's thread: tasks and callbacks; WEFT_EWRONGLOOP from a
 * thread that runs no loop, which includes pool threads). Returns 0 and *out
 * (one reference, the caller's; the pool holds its own until the outcome is
 * delivered), UV_EINVAL (NULL pool, fn or out), UV_ENOMEM, WEFT_ECLOSED (the
 * pool is shutting down or shut down, and not freed yet). On an error nothing was submitted and
 * *out is untouched. fn's result is the future's result; a negative return is its error
 * (UV_ECANCELED: cancelled), a positive one becomes UV_EINVAL. Steady state (after the first jobs
 * of a loop) makes no allocator calls. */
WEFT_WARN_UNUSED int weft_to_thread(weft_pool_t *pool, weft_job_fn fn, void *arg,
                                    weft_future_t **out);

/* Inside a job: has its future been cancelled? false outside jobs. A cheap
 * load (no lock): poll it in long loops. */
bool weft_pool_cancelled(void);

/* Stop: queued jobs are cancelled (never run), running ones finish, threads
 * are joined. Blocks until the running jobs have finished. Call once, from
 * any thread that is not one of this pool's (a loop thread is fine: the
 * loop simply does not run meanwhile). Returns the number of queued jobs
 * cancelled, UV_EINVAL (NULL, or called from a thread of this pool).
 *
 * The outcomes of the cancelled and finished jobs are posted to their loops,
 * which must run afterwards to receive them (their futures complete then;
 * until then weft_loop_close() returns UV_EBUSY). Until weft_pool_free,
 * weft_to_thread() and weft_pool_stats() still work (WEFT_ECLOSED and the
 * final counts), and a second shutdown returns WEFT_ECLOSED.
 *
 * A loop that used the pool may be closed (and freed) as soon as its jobs
 * are back, while the pool lives on: weft_loop_close() waits for posts still
 * in flight to it (a pool thread inside the wake-up of its last post), so
 * "one long-lived pool, one weft_run per request" is fine. */
int weft_pool_shutdown(weft_pool_t *pool);

/* Release the pool: shut it down if it was not (blocking as shutdown does),
 * then give up the owner's reference. Its memory is freed when the last
 * outcome in flight has been received by its loop - at once if none is.
 * The last call on the pool: nothing may name it afterwards, so submits
 * from other threads must have stopped before. NULL does nothing; so does
 * a call from one of this pool's threads (a job), which is misuse. */
void weft_pool_free(weft_pool_t *pool);

/* Counters, cumulative except queued. completed: jobs that ran to the end
 * (whether or not their future still wanted the result). cancelled_queued:
 * jobs taken off the queue without running, by a cancel or by shutdown.
 * cancelled_running: futures cancelled after their job had started (its
 * result dropped). Every submitted job is, in the end, completed or
 * cancelled_queued. Any thread (takes the pool's lock); NULL pool: zeros. */
typedef struct weft_pool_stats {
    unsigned threads;
    uint64_t submitted, completed, cancelled_queued, cancelled_running;
    uint64_t queued; /* now */
} weft_pool_stats_t;
void weft_pool_stats(weft_pool_t *pool, weft_pool_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_POOL_H */

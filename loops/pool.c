/*
 * loops/pool.c - the CPU thread pool (weft/pool.h): asyncio.to_thread in C.
 *
 * Three kinds of threads touch a job, each through one door:
 *
 *   submitting loop thread  weft_to_thread() makes the future, registers a done
 *                           callback, takes the job's own reference on the
 *                           future and appends the job to the queue (mutex).
 *   pool thread             takes the job from the queue (mutex), runs it,
 *                           pushes it on its loop's completion batch (lock-free)
 *                           and posts the batch to the loop only if the batch
 *                           was empty (one weft_call_soon_threadsafe per batch).
 *   the loop again          drains the batch, completes the futures, and
 *                           releases each job when both its outcome has been
 *                           delivered and its done callback has run.
 *
 * Futures are reference counted and completed only on their loop's thread
 * (core/future.c), so a pool thread never touches a future: it hands the job
 * back to the loop, and everything that involves the future happens there.
 *
 * The queue is FIFO, doubly linked (core/list.h) so that a queued job whose
 * future is cancelled is unlinked in O(1). Idle pool threads sleep on one
 * condition variable; a submit signals it only when a thread is idle.
 *
 * Where completions wait for their loop: one "lane" per (pool, loop) pair,
 * found through a small table keyed by the loop's address. The table is
 * mutex-protected and only consulted when a loop submits for the first time
 * (afterwards a thread-local cache names the lane), because a pool serves a
 * handful of loops and lookups are rare. The batch inside a lane, which pool
 * threads write once per job, is a lock-free LIFO instead: a push is one
 * compare-and-swap, the loop takes the whole batch with one exchange and
 * reverses it into completion order. So finishing a job never waits for the
 * queue lock to hand its result back, and the loop thread never waits for a
 * pool thread. The post rule: the thread whose push finds the batch empty
 * posts the drain; the drain empties the batch with its exchange, so each
 * post finds at least one job and no batch is ever left without a post.
 *
 * Lifetimes:
 *   - A job is released on its loop when its outcome has been delivered (or
 *     it was unlinked before it ran) AND its done callback has run; the two
 *     happen in either order on the loop thread, so two plain flags suffice.
 *     Released jobs go to the lane's free list (loop-thread only), so a
 *     steady stream of jobs does not call malloc.
 *   - The pool counts one reference for its owner (who called
 *     weft_pool_new) plus one per unreleased job. weft_pool_free() drops the
 *     first (shutting the pool down first if the owner had not); whoever
 *     drops the last frees the pool, its lanes and cached jobs. So the
 *     pool's memory outlives weft_pool_free exactly as long as deliveries
 *     are in flight to loops that have not run yet, and a pool that was
 *     only shut down stays readable (stats, ECLOSED) until it is freed.
 *   - A lane with unreleased jobs keeps its loop alive with a far-away timer
 *     (armed when the loop's count of unreleased jobs goes 0 -> 1, cancelled
 *     at 1 -> 0): weft_loop_run() keeps going, and weft_loop_close() refuses
 *     (UV_EBUSY), until every job has come back, so a delivery can never be
 *     posted to a loop that has been closed or freed.
 *
 * Not done here: work stealing, priorities, per-thread queues. A job is
 * expected to be long (microseconds at least) next to one mutex round trip.
 *
 * Measured (benchmarks/bench_pool.c, offload: 10,000 jobs of ~17 us on 2 pool
 * threads, 2-CPU VM): 0.55-0.6 of the compute limit (2 / one job's time)
 * with the loop's default 50 us idle poll, 0.95 with idle_poll_us = -1. The
 * completions arrive every ~8 us, so a polling loop never sleeps and is a
 * third runnable thread on two cores; the pool's own overhead is the 5%.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft/pool.h>
#include <weft/runtime.h>

#include "core/alloc.h"
#include "core/list.h"

/* A job: made and released on its loop's thread, run on a pool thread. */
enum {
    JOB_QUEUED = 0, /* in the pool's queue */
    JOB_RUNNING,    /* taken by a pool thread */
    JOB_RAN,        /* finished running; rc and result are set */
    JOB_DROPPED,    /* unlinked by shutdown without running */
};

struct lane;

struct job {
    struct weft__list link; /* the pool's queue; under the pool mutex */
    struct job *next;       /* the lane's batch (pushed by a pool thread) or its free list */
    weft_job_fn fn;
    void *arg;
    struct lane *lane;
    weft_future_t *fut; /* the job's own reference, released with the job */
    void *result;       /* written by the pool thread before the push */
    int rc;
    /* Written under the pool mutex (QUEUED -> RUNNING -> RAN, or -> DROPPED),
     * except RAN, stored by the pool thread before the push. The loop reads
     * it under the mutex (done callback) or after taking the job from its
     * batch (drain). */
    atomic_int state;
    /* Set on the loop thread when the future is done before the job is; read
     * by the job through weft_pool_cancelled(). Relaxed both ways: it is a
     * hint, nothing else is published through it. */
    atomic_bool cancel;
    /* Loop thread only. */
    bool delivered; /* the drain has seen the outcome (or it never ran) */
    bool by_pool;   /* ... and completed the future with it */
    bool cb_ran;    /* the done callback has run */
};

/* Far enough that it never fires in practice; if it does, it re-arms. */
#define KEEPALIVE_MS (24u * 3600u * 1000u)
/* Released jobs a lane keeps for reuse; beyond this they are freed. */
#define JOB_CACHE 1024u

/* A (pool, loop) pair: where that loop's completions wait, and that loop's
 * private bookkeeping. The batch is written by pool threads; it sits on its
 * own cache line, away from the fields the loop thread writes. */
struct lane {
    weft_pool_t *pool;
    weft_loop_t *loop;
    char pad0[64 - 2 * sizeof(void *)];
    _Atomic(struct job *) batch; /* LIFO of finished jobs */
    char pad1[64 - sizeof(void *)];
    /* Loop thread only. */
    uint64_t outstanding; /* unreleased jobs of this loop */
    weft_handle_t keepalive;
    struct job *free; /* released jobs */
    unsigned nfree;
};

struct weft_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* idle threads wait here for a job or the close */
    struct weft__list queue;
    unsigned nthreads, nidle;
    bool closed;
    weft_pool_stats_t st;   /* under mu, except completed (below) */
    atomic_ulong completed; /* bumped by pool threads outside the mutex */
    struct lane **lanes;    /* under mu */
    unsigned nlanes, cap_lanes;
    uint64_t id; /* unique in the process: keys the thread-local lane cache */
    /* 1 while open + 1 per unreleased job. acq_rel: every thread's last
     * writes to the pool and its lanes happen before the free. */
    atomic_ulong refs;
    pthread_t *threads;
    char name[11]; /* thread name prefix: room for "-NNNN" in 15 characters */
};

static atomic_ulong next_pool_id = 1;

/* The job running on this pool thread (weft_pool_cancelled), and this
 * thread's pool (shutdown must not be called from it). */
static __thread struct job *tls_job;
static __thread weft_pool_t *tls_pool;

/* The lane the calling loop thread used last. A stale entry is harmless:
 * pool ids are never reused, so it can only match a live pool. */
static __thread struct {
    uint64_t pool_id;
    weft_loop_t *loop;
    struct lane *lane;
} tls_lane;

/* ---- freeing -------------------------------------------------------------- */

static void pool_free(weft_pool_t *p)
{
    for (unsigned i = 0; i < p->nlanes; i++) {
        struct lane *ln = p->lanes[i];
        while (ln->free != NULL) {
            struct job *j = ln->free;
            ln->free = j->next;
            weft__free(j);
        }
        weft__free(ln);
    }
    weft__free(p->lanes);
    weft__free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    weft__free(p);
}

static void pool_unref(weft_pool_t *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        pool_free(p);
}

/* ---- lanes and job records (loop thread) ----------------------------------- */

static void keepalive_cb(void *arg)
{
    struct lane *ln = arg;
    /* Only reachable while jobs are outstanding: it is cancelled at 0. */
    if (ln->outstanding > 0 &&
        weft_call_later(ln->loop, KEEPALIVE_MS, keepalive_cb, ln, &ln->keepalive) != 0)
        ln->keepalive = (weft_handle_t){0};
}

/* The calling loop's lane, made on first use. 0 or UV_ENOMEM. */
static int lane_get(weft_pool_t *p, weft_loop_t *loop, struct lane **out)
{
    if (tls_lane.pool_id == p->id && tls_lane.loop == loop) {
        *out = tls_lane.lane;
        return 0;
    }
    struct lane *ln = NULL;
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < p->nlanes; i++) {
        if (p->lanes[i]->loop == loop) {
            ln = p->lanes[i];
            break;
        }
    }
    if (ln == NULL) {
        if (p->nlanes == p->cap_lanes) {
            unsigned cap = p->cap_lanes ? 2 * p->cap_lanes : 4;
            struct lane **nl = weft__realloc(p->lanes, cap * sizeof(*nl));
            if (nl == NULL) {
                rc = UV_ENOMEM;
                goto out;
            }
            p->lanes = nl;
            p->cap_lanes = cap;
        }
        ln = weft__calloc(1, sizeof(*ln));
        if (ln == NULL) {
            rc = UV_ENOMEM;
            goto out;
        }
        ln->pool = p;
        ln->loop = loop;
        atomic_init(&ln->batch, NULL);
        p->lanes[p->nlanes++] = ln;
    }
    tls_lane.pool_id = p->id;
    tls_lane.loop = loop;
    tls_lane.lane = ln;
    *out = ln;
out:
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static struct job *job_get(struct lane *ln)
{
    struct job *j = ln->free;
    if (j != NULL) {
        ln->free = j->next;
        ln->nfree--;
        return j;
    }
    return weft__malloc(sizeof(*j));
}

static void job_put(struct lane *ln, struct job *j)
{
    if (ln->nfree >= JOB_CACHE) {
        weft__free(j);
        return;
    }
    j->next = ln->free;
    ln->free = j;
    ln->nfree++;
}

/* Both halves are done: the outcome is delivered (or the job never ran) and
 * the done callback ran. Drops the job's reference on the future, the loop's
 * keep-alive when it was the last job, and the job's reference on the pool -
 * last, since that may free the lane. */
static void job_release(struct job *j)
{
    struct lane *ln = j->lane;
    weft_pool_t *p = ln->pool;
    weft_future_unref(j->fut);
    job_put(ln, j);
    if (--ln->outstanding == 0)
        (void)weft_handle_cancel(ln->keepalive); /* UV_ENOENT if it fired: fine */
    pool_unref(p);
}

/* ---- delivery (pool or shutdown thread -> loop) ---------------------------- */

static void lane_drain(void *arg);

/* Hand a finished or dropped job back to its loop. Any thread. After the
 * push the job belongs to the loop: it may be released at once. */
static void lane_push(struct lane *ln, struct job *j)
{
    /* Read before the push: afterwards the lane may be freed (see below). */
    weft_loop_t *loop = ln->loop;
    struct job *head = atomic_load_explicit(&ln->batch, memory_order_relaxed);
    do {
        j->next = head;
        /* Release: the job's outcome (rc, result, state) and next are
         * published to the loop's acquire exchange in lane_drain. */
    } while (!atomic_compare_exchange_weak_explicit(&ln->batch, &head, j, memory_order_release,
                                                    memory_order_relaxed));
    if (head != NULL)
        return; /* a drain is already posted and will take this job too */
    /* This push made the batch non-empty, so no drain can run before the post
     * below: the job, the lane and (through the job's keep-alive) the loop
     * stay valid until then. */
    for (;;) {
        int rc = weft_call_soon_threadsafe(loop, lane_drain, ln);
        if (rc == 0)
            return;
        if (rc != UV_ENOMEM) {
            /* WEFT_ECLOSED cannot happen while the keep-alive holds the loop
             * open; if the loop was torn down regardless, its jobs are lost. */
            fprintf(stderr, "weft: pool cannot deliver to loop %p: %s\n", (void *)loop,
                    weft_strerror(rc));
            return;
        }
        /* The inbox is full and memory is short: retry, never drop. */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* On the loop: complete the futures of a batch, in completion order. */
static void lane_drain(void *arg)
{
    struct lane *ln = arg;
    /* Acquire: pairs with the release in lane_push. */
    struct job *j = atomic_exchange_explicit(&ln->batch, NULL, memory_order_acquire);
    struct job *fifo = NULL;
    while (j != NULL) {
        struct job *next = j->next;
        j->next = fifo;
        fifo = j;
        j = next;
    }
    /* From here on the lane is not touched: releasing the last job may free
     * it (with the whole pool). */
    for (j = fifo; j != NULL; j = fifo) {
        fifo = j->next;
        j->delivered = true;
        if (j->cb_ran) { /* the future was done first; nothing to deliver */
            job_release(j);
            continue;
        }
        weft_future_t *f = j->fut;
        if (weft_future_done(f))
            continue; /* completed meanwhile: its done callback releases the job */
        int rc;
        j->by_pool = true;
        if (atomic_load_explicit(&j->state, memory_order_relaxed) == JOB_DROPPED)
            rc = weft_future_cancel(f);
        else if (j->rc == 0)
            rc = weft_future_set_result(f, j->result);
        else
            rc = weft_future_set_error(f, j->rc, NULL);
        (void)rc; /* f is pending and ours: these cannot fail */
    }
}

/* Done callback of every pool future (loop thread). Runs once, after the
 * future completed for any reason. */
static void job_done(weft_future_t *f, void *arg)
{
    struct job *j = arg;
    j->cb_ran = true;
    if (j->by_pool) { /* the common case: the drain completed f */
        job_release(j);
        return;
    }
    /* Someone else completed f (a cancel) before the outcome was delivered,
     * or after it came back but before this callback ran. Either way the job
     * is unreleased, so the pool is alive. */
    weft_pool_t *p = j->lane->pool;
    bool unlinked = false;
    pthread_mutex_lock(&p->mu);
    switch (atomic_load_explicit(&j->state, memory_order_relaxed)) {
    case JOB_QUEUED:
        weft__list_remove(&j->link);
        p->st.queued--;
        p->st.cancelled_queued++;
        unlinked = true;
        break;
    case JOB_RUNNING:
    case JOB_RAN:
        atomic_store_explicit(&j->cancel, true, memory_order_relaxed);
        if (weft_future_cancelled(f))
            p->st.cancelled_running++; /* started: its result is dropped */
        break;
    default: /* dropped by shutdown: counted there */
        break;
    }
    pthread_mutex_unlock(&p->mu);
    if (unlinked)
        j->delivered = true; /* there is nothing to deliver */
    if (j->delivered)
        job_release(j);
    /* Otherwise the drain releases the job when it comes back. */
}

/* ---- pool threads ----------------------------------------------------------- */

static void *worker(void *arg)
{
    weft_pool_t *p = arg;
    tls_pool = p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct weft__list *n;
        while ((n = weft__list_pop_front(&p->queue)) == NULL && !p->closed) {
            p->nidle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->nidle--;
        }
        if (n == NULL)
            break; /* closed and nothing queued */
        struct job *j = WEFT_CONTAINER_OF(n, struct job, link);
        p->st.queued--;
        atomic_store_explicit(&j->state, JOB_RUNNING, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);

        void *res = NULL;
        tls_job = j;
        int rc = j->fn(j->arg, &res);
        tls_job = NULL;
        if (rc > 0)
            rc = UV_EINVAL; /* jobs return 0 or a negative code */
        j->rc = rc;
        j->result = rc == 0 ? res : NULL;
        atomic_store_explicit(&j->state, JOB_RAN, memory_order_release);
        /* Counted before the push, so that whoever has seen the outcome sees
         * the count (the push's release orders it). */
        atomic_fetch_add_explicit(&p->completed, 1, memory_order_relaxed);
        lane_push(j->lane, j);

        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Stop and join threads [0, n) of a pool whose queue is empty. */
static void stop_threads(weft_pool_t *p, unsigned n)
{
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(p->threads[i], NULL);
}

int weft_pool_new(const weft_pool_opts_t *opts, weft_pool_t **out)
{
    if (out == NULL)
        return UV_EINVAL;
    *out = NULL;
    unsigned n = opts ? opts->threads : 0;
    if (n == 0)
        n = weft_cpu_count(); /* more threads than allowed CPUs would only time-share them */
    if (n > 4096)
        return UV_EINVAL;
    size_t stack = opts ? opts->stack_size : 0;
    if (stack != 0 && stack < (size_t)PTHREAD_STACK_MIN)
        return UV_EINVAL;

    weft_pool_t *p = weft__calloc(1, sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    p->threads = weft__calloc(n, sizeof(*p->threads));
    if (p->threads == NULL) {
        weft__free(p);
        return UV_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    weft__list_init(&p->queue);
    p->nthreads = n;
    p->st.threads = n;
    p->id = atomic_fetch_add_explicit(&next_pool_id, 1, memory_order_relaxed);
    atomic_init(&p->refs, 1);
    atomic_init(&p->completed, 0);
    snprintf(p->name, sizeof(p->name), "%s", opts && opts->name ? opts->name : "weft-pool");

    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0 && stack != 0)
        rc = pthread_attr_setstacksize(&attr, stack);
    /* Pool threads block every signal, so that signals go to loop threads
     * (and a test's alarm to its main thread); they inherit this mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    unsigned started = 0;
    for (; rc == 0 && started < n; started++) {
        rc = pthread_create(&p->threads[started], &attr, worker, p);
        if (rc != 0)
            break;
        char tname[16];
        snprintf(tname, sizeof(tname), "%s-%u", p->name, started);
        pthread_setname_np(p->threads[started], tname);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        stop_threads(p, started);
        pool_free(p);
        return rc == ENOMEM ? UV_ENOMEM : -rc;
    }
    *out = p;
    return 0;
}

/* ---- the API ----------------------------------------------------------------- */

int weft_to_thread(weft_pool_t *pool, weft_job_fn fn, void *arg, weft_future_t **out)
{
    if (pool == NULL || fn == NULL || out == NULL)
        return UV_EINVAL;
    weft_loop_t *loop = weft_loop_current();
    if (loop == NULL)
        return WEFT_EWRONGLOOP;
    struct lane *ln;
    int rc = lane_get(pool, loop, &ln);
    if (rc != 0)
        return rc;
    struct job *j = job_get(ln);
    if (j == NULL)
        return UV_ENOMEM;
    weft_future_t *f;
    if ((rc = weft_future_new(loop, &f)) != 0)
        goto fail_job;
    if ((rc = weft_future_add_done_callback(f, job_done, j)) != 0)
        goto fail_future;
    if (ln->outstanding == 0 &&
        (rc = weft_call_later(loop, KEEPALIVE_MS, keepalive_cb, ln, &ln->keepalive)) != 0)
        goto fail_callback;

    weft__list_init(&j->link);
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    j->lane = ln;
    j->fut = f;
    j->result = NULL;
    j->rc = 0;
    atomic_init(&j->state, JOB_QUEUED);
    atomic_init(&j->cancel, false);
    j->delivered = false;
    j->by_pool = false;
    j->cb_ran = false;

    pthread_mutex_lock(&pool->mu);
    if (pool->closed) {
        pthread_mutex_unlock(&pool->mu);
        rc = WEFT_ECLOSED;
        goto fail_keepalive;
    }
    /* The pool reference and the loop-side counts are taken before any pool
     * thread can see the job; they are released on this thread only, which
     * is busy here. */
    atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
    weft__list_push_back(&pool->queue, &j->link);
    pool->st.submitted++;
    pool->st.queued++;
    if (pool->nidle > 0)
        pthread_cond_signal(&pool->cv); /* wake only the sleeping */
    pthread_mutex_unlock(&pool->mu);

    ln->outstanding++;
    weft_future_ref(f); /* the job's reference */
    *out = f;
    return 0;

fail_keepalive:
    if (ln->outstanding == 0)
        (void)weft_handle_cancel(ln->keepalive);
fail_callback:
    (void)weft_future_remove_done_callback(f, job_done, j);
fail_future:
    weft_future_unref(f);
fail_job:
    job_put(ln, j);
    return rc;
}

bool weft_pool_cancelled(void)
{
    struct job *j = tls_job;
    return j != NULL && atomic_load_explicit(&j->cancel, memory_order_relaxed);
}

int weft_pool_shutdown(weft_pool_t *pool)
{
    if (pool == NULL || tls_pool == pool)
        return UV_EINVAL;
    struct weft__list dropped;
    weft__list_init(&dropped);
    pthread_mutex_lock(&pool->mu);
    if (pool->closed) {
        pthread_mutex_unlock(&pool->mu);
        return WEFT_ECLOSED;
    }
    pool->closed = true;
    /* Mark under the mutex, so that a done callback that looks at one of
     * these jobs sees it dropped (not queued) and leaves it to the drain. */
    int n = 0;
    for (struct weft__list *it = pool->queue.next; it != &pool->queue; it = it->next) {
        struct job *j = WEFT_CONTAINER_OF(it, struct job, link);
        atomic_store_explicit(&j->state, JOB_DROPPED, memory_order_relaxed);
        j->rc = UV_ECANCELED;
        j->result = NULL;
        n++;
    }
    weft__list_splice_back(&dropped, &pool->queue);
    pool->st.queued = 0;
    pool->st.cancelled_queued += (uint64_t)n;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);

    /* Deliver the dropped jobs as cancelled. The pool stays alive: they hold
     * references, and so does being open until the end of this function. */
    struct weft__list *it;
    while ((it = weft__list_pop_front(&dropped)) != NULL) {
        struct job *j = WEFT_CONTAINER_OF(it, struct job, link);
        lane_push(j->lane, j);
    }
    /* The running jobs finish, are delivered, and their threads exit. */
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    return n; /* the owner's reference stays until weft_pool_free */
}

void weft_pool_free(weft_pool_t *pool)
{
    if (pool == NULL || tls_pool == pool)
        return;                        /* a job cannot join its own thread: misuse, see pool.h */
    int rc = weft_pool_shutdown(pool); /* WEFT_ECLOSED if already shut down */
    (void)rc;
    pool_unref(pool);
}

void weft_pool_stats(weft_pool_t *pool, weft_pool_stats_t *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->mu);
    *out = pool->st;
    pthread_mutex_unlock(&pool->mu);
    out->completed = atomic_load_explicit(&pool->completed, memory_order_relaxed);
}

/*
 * tests/pool_test.c - the CPU thread pool (weft/pool.h): results, the threads
 * things happen on, cancellation before and during a job, failures,
 * shutdown with queued and running jobs, a pending job keeping its loop
 * alive, argument and thread checks, two loops sharing a pool, allocation
 * failures, the allocation-free steady state, and a stress test of cancels
 * racing with jobs on two loops (checksummed counts).
 *
 * Built twice (tests/BUILD, weft_test(tsan = True)): as a Criterion test and,
 * through tests/plain_test.h, as a plain program that runs under TSan. So it
 * uses only the assertion forms the shim provides. Each test runs in a
 * process of its own in both builds.
 *
 * Nothing here asserts on wall-clock time. Every wait is bounded: jobs that
 * block wait on a gate with a timeout, loops that wait for a job poll with
 * weft_sleep() a bounded number of times, so a bug fails a check instead of
 * hanging. Values computed on pool threads are stored in atomics and checked
 * on the test's thread.
 *
 * Every test shuts its pool down, runs its loop(s) until the deliveries have
 * arrived and closes them, expecting 0. Loops are closed only after the
 * pool's shutdown (see weft_pool_shutdown in weft/pool.h), and frees the
 * pool last (weft_pool_free).
 */
#include "plain_test.h"
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <weft/weft.h>

#include "core/alloc.h"

/* Bounds for every wait: long enough never to matter in a passing run. */
#define WAIT_MS    20000
#define POLL_MS    1
#define POLL_LIMIT (WAIT_MS / POLL_MS)

static pthread_t g_loop_thread;

/* --- jobs ------------------------------------------------------------------ */

/* Counts jobs that ran on the loop's thread (there should be none). */
static atomic_int g_jobs_on_loop_thread;
static atomic_int g_jobs_run;

static int double_job(void *arg, void **result)
{
    if (pthread_equal(pthread_self(), g_loop_thread))
        atomic_fetch_add(&g_jobs_on_loop_thread, 1);
    atomic_fetch_add(&g_jobs_run, 1);
    *result = weft_int(2 * weft_to_int(arg));
    return 0;
}

static int fail_job(void *arg, void **result)
{
    (void)result;
    return (int)weft_to_int(arg);
}

/* A gate that blocking jobs wait on (bounded), opened by the test. */
static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static bool g_gate_open;
static atomic_int g_gate_timeouts;
static atomic_int g_blocked_started;
#define MAX_IDS 16
static atomic_int g_ran[MAX_IDS]; /* times the job with this id ran */

static void gate_open(void)
{
    pthread_mutex_lock(&g_gate_mu);
    g_gate_open = true;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
}

static void gate_wait(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g_gate_mu);
    while (!g_gate_open) {
        if (pthread_cond_timedwait(&g_gate_cv, &g_gate_mu, &until) != 0) {
            atomic_fetch_add(&g_gate_timeouts, 1);
            break;
        }
    }
    pthread_mutex_unlock(&g_gate_mu);
}

/* Waits at the gate, then returns its id. */
static int blocking_job(void *arg, void **result)
{
    int id = (int)weft_to_int(arg);
    atomic_fetch_add(&g_blocked_started, 1);
    gate_wait();
    atomic_fetch_add(&g_ran[id], 1);
    *result = arg;
    return 0;
}

/* Records that it ran; returns its id. */
static int id_job(void *arg, void **result)
{
    atomic_fetch_add(&g_ran[weft_to_int(arg)], 1);
    *result = arg;
    return 0;
}

/* In a task: wait (bounded) until *v >= want. 0, UV_ETIMEDOUT or a sleep error. */
static int task_wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < POLL_LIMIT; i++) {
        if (atomic_load(v) >= want)
            return 0;
        int rc = weft_sleep(POLL_MS);
        if (rc != 0)
            return rc;
    }
    return UV_ETIMEDOUT;
}

/* Plain thread: wait (bounded) until the pool's stats say `want` queued jobs
 * were cancelled. */
static bool thread_wait_cancelled_queued(weft_pool_t *pool, uint64_t want)
{
    struct timespec ms = {0, POLL_MS * 1000000L};
    for (int i = 0; i < POLL_LIMIT; i++) {
        weft_pool_stats_t st;
        weft_pool_stats(pool, &st);
        if (st.cancelled_queued >= want)
            return true;
        nanosleep(&ms, NULL);
    }
    return false;
}

/* Run main(arg) as a task on a fresh loop on this thread, expect it to end
 * with 0; the loop stays open for the caller to check and close. */
static void run_main(weft_loop_t *loop, weft_task_fn main, void *arg)
{
    weft_task_t *t = NULL;
    void *res = NULL;
    g_loop_thread = pthread_self();
    ASSERT_OK(weft_loop_init(loop, NULL));
    ASSERT_OK(weft_spawn(loop, main, arg, &t));
    EXPECT_OK(weft_loop_run(loop));
    EXPECT_OK(weft_task_result(t, &res));
    weft_task_unref(t);
}

/* --- results ---------------------------------------------------------------- */

#define NJOBS 1000

typedef struct sum_state {
    weft_pool_t *pool;
    int64_t base;
    int njobs;
    int64_t sum;
    int errors;
    int wrong_loop; /* futures that did not belong to the submitting loop */
    int wrong_thread_cbs;
    int cbs;
    pthread_t thread;
} sum_state_t;

static void thread_check_cb(weft_future_t *f, void *arg)
{
    sum_state_t *st = arg;
    (void)f;
    st->cbs++;
    if (!pthread_equal(pthread_self(), st->thread))
        st->wrong_thread_cbs++;
}

static int sum_main(void *arg, void **result)
{
    sum_state_t *st = arg;
    weft_future_t **fs = weft__calloc((size_t)st->njobs, sizeof(*fs));
    (void)result;
    if (fs == NULL)
        return UV_ENOMEM;
    int rc = 0, n = 0;
    for (; n < st->njobs; n++) {
        rc = weft_to_thread(st->pool, double_job, weft_int(st->base + n), &fs[n]);
        if (rc != 0)
            break;
        if (weft_future_loop(fs[n]) != weft_loop_current())
            st->wrong_loop++;
        if (weft_future_add_done_callback(fs[n], thread_check_cb, st) != 0)
            st->errors++;
    }
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        if (weft_await(fs[i], &v) != 0)
            st->errors++;
        st->sum += weft_to_int(v);
        weft_future_unref(fs[i]);
    }
    weft__free(fs);
    /* Let the last done callbacks run before the task reports. */
    for (int i = 0; i < 10 && st->cbs < n && rc == 0; i++)
        rc = weft_yield();
    return rc;
}

static int64_t expected_sum(int64_t base, int n)
{
    return 2 * (base * n + (int64_t)n * (n - 1) / 2);
}

Test(pool, thousand_jobs_return_results_that_sum_correctly, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 4};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    sum_state_t st = {.pool = pool, .base = 1, .njobs = NJOBS};
    st.thread = pthread_self();
    run_main(&loop, sum_main, &st);

    cr_expect_eq(st.errors, 0);
    cr_expect_eq(st.sum, expected_sum(1, NJOBS));
    cr_expect_eq(atomic_load(&g_jobs_run), NJOBS);

    weft_pool_stats_t ps;
    weft_pool_stats(pool, &ps);
    cr_expect_eq(ps.threads, 4);
    cr_expect_eq(ps.submitted, NJOBS);
    cr_expect_eq(ps.completed, NJOBS);
    cr_expect_eq(ps.queued, 0);
    cr_expect_eq(ps.cancelled_queued, 0);
    cr_expect_eq(ps.cancelled_running, 0);

    weft_loop_stats_t ls;
    weft_loop_stats(&loop, &ls);
    cr_log_info("pool: %d jobs came back in %llu inbox messages", NJOBS,
                (unsigned long long)ls.threadsafe_received);
    /* One post per batch: never more posts than jobs. */
    cr_expect_leq(ls.threadsafe_received, NJOBS);

    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

Test(pool, jobs_run_on_pool_threads_and_complete_on_the_submitting_loop_thread,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 2, .name = "test-pool-with-a-long-name"};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    sum_state_t st = {.pool = pool, .base = 100, .njobs = 100};
    st.thread = pthread_self();
    run_main(&loop, sum_main, &st);

    cr_expect_eq(st.errors, 0);
    cr_expect_eq(st.sum, expected_sum(100, 100));
    cr_expect_eq(st.wrong_loop, 0);
    cr_expect_eq(st.cbs, 100);
    cr_expect_eq(st.wrong_thread_cbs, 0, "%d completions ran off the loop's thread",
                 st.wrong_thread_cbs);
    cr_expect_eq(atomic_load(&g_jobs_on_loop_thread), 0, "%d jobs ran on the loop's thread",
                 atomic_load(&g_jobs_on_loop_thread));
    cr_expect_eq(atomic_load(&g_jobs_run), 100);

    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* --- failures ----------------------------------------------------------------- */

typedef struct fail_state {
    weft_pool_t *pool;
    int rc_eio, rc_positive, rc_cancelled;
    bool eio_failed, cancelled_is_cancelled;
} fail_state_t;

static int fail_main(void *arg, void **result)
{
    fail_state_t *st = arg;
    weft_future_t *f;
    (void)result;
    int rc = weft_to_thread(st->pool, fail_job, weft_int(UV_EIO), &f);
    if (rc != 0)
        return rc;
    st->rc_eio = weft_await(f, NULL);
    st->eio_failed = weft_future_done(f) && !weft_future_cancelled(f) &&
                     weft_future_result(f, NULL) == UV_EIO && weft_future_message(f) == NULL;
    weft_future_unref(f);

    if ((rc = weft_to_thread(st->pool, fail_job, weft_int(7), &f)) != 0)
        return rc;
    st->rc_positive = weft_await(f, NULL);
    weft_future_unref(f);

    if ((rc = weft_to_thread(st->pool, fail_job, weft_int(UV_ECANCELED), &f)) != 0)
        return rc;
    st->rc_cancelled = weft_await(f, NULL);
    st->cancelled_is_cancelled = weft_future_cancelled(f);
    weft_future_unref(f);
    return 0;
}

Test(pool, a_job_failure_code_is_delivered_as_the_future_error, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 1};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    fail_state_t st = {.pool = pool};
    run_main(&loop, fail_main, &st);

    EXPECT_RC(st.rc_eio, UV_EIO);
    cr_expect(st.eio_failed);
    /* Jobs return 0 or a negative code; anything else is a bad job. */
    EXPECT_RC(st.rc_positive, UV_EINVAL);
    /* A job may give up with UV_ECANCELED: its future ends cancelled. */
    EXPECT_RC(st.rc_cancelled, UV_ECANCELED);
    cr_expect(st.cancelled_is_cancelled);

    weft_pool_stats_t ps;
    weft_pool_stats(pool, &ps);
    cr_expect_eq(ps.completed, 3);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* --- cancellation -------------------------------------------------------------- */

typedef struct cancel_state {
    weft_pool_t *pool;
    int step_rc;
    int cancel_rc;
    weft_pool_stats_t after_cancel;
    int await_rc[MAX_IDS];
    bool cancelled[MAX_IDS];
    void *res[MAX_IDS];
} cancel_state_t;

/* Two pool threads blocked at the gate (ids 0, 1), three jobs queued behind
 * them (ids 2, 3, 4); cancel id 3. */
static int cancel_queued_main(void *arg, void **result)
{
    cancel_state_t *st = arg;
    weft_future_t *f[5];
    int n = 0, rc = 0;
    (void)result;
    for (; n < 2 && (rc = weft_to_thread(st->pool, blocking_job, weft_int(n), &f[n])) == 0; n++)
        ;
    if (rc == 0)
        rc = task_wait_for(&g_blocked_started, 2);
    for (; rc == 0 && n < 5 && (rc = weft_to_thread(st->pool, id_job, weft_int(n), &f[n])) == 0;
         n++)
        ;
    if (rc != 0) {
        st->step_rc = rc;
        gate_open();
        for (int i = 0; i < n; i++) {
            if (weft_await(f[i], NULL) != 0)
                st->step_rc = UV_EIO;
            weft_future_unref(f[i]);
        }
        return rc;
    }
    st->cancel_rc = weft_future_cancel(f[3]);
    /* The unlink happens in the future's done callback: let it run. */
    st->step_rc = weft_yield();
    weft_pool_stats(st->pool, &st->after_cancel);
    gate_open();
    for (int i = 0; i < 5; i++) {
        st->await_rc[i] = weft_await(f[i], &st->res[i]);
        st->cancelled[i] = weft_future_cancelled(f[i]);
        weft_future_unref(f[i]);
    }
    return 0;
}

Test(pool, cancelling_a_queued_job_unlinks_it_and_it_never_runs, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 2};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    cancel_state_t st = {.pool = pool};
    run_main(&loop, cancel_queued_main, &st);

    EXPECT_OK(st.step_rc);
    EXPECT_OK(st.cancel_rc);
    cr_expect_eq(st.after_cancel.cancelled_queued, 1);
    cr_expect_eq(st.after_cancel.queued, 2);
    cr_expect_eq(st.after_cancel.submitted, 5);
    EXPECT_RC(st.await_rc[3], UV_ECANCELED);
    cr_expect(st.cancelled[3]);
    cr_expect_eq(atomic_load(&g_ran[3]), 0, "the cancelled job ran");
    for (int i = 0; i < 5; i++) {
        if (i == 3)
            continue;
        EXPECT_OK(st.await_rc[i]);
        cr_expect_eq(weft_to_int(st.res[i]), i);
        cr_expect_eq(atomic_load(&g_ran[i]), 1, "job %d ran %d times", i, atomic_load(&g_ran[i]));
    }
    cr_expect_eq(atomic_load(&g_gate_timeouts), 0);

    weft_pool_stats_t ps;
    weft_pool_stats(pool, &ps);
    cr_expect_eq(ps.completed, 4);
    cr_expect_eq(ps.cancelled_queued, 1);
    cr_expect_eq(ps.cancelled_running, 0);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* Spins until its future is cancelled (bounded), then gives up. */
static atomic_int g_spin_started, g_spin_finished, g_spin_saw_cancel;

static int spin_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_store(&g_spin_started, 1);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (weft_pool_cancelled()) {
            atomic_store(&g_spin_saw_cancel, 1);
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > WAIT_MS / 1000)
            break; /* bounded: the check below fails instead of a hang */
    }
    atomic_store(&g_spin_finished, 1);
    return UV_ECANCELED;
}

typedef struct spin_state {
    weft_pool_t *pool;
    int step_rc, cancel_rc, await_rc;
    bool cancelled_at_once;
    weft_pool_stats_t after_cancel;
} spin_state_t;

static int cancel_running_main(void *arg, void **result)
{
    spin_state_t *st = arg;
    weft_future_t *f;
    (void)result;
    int rc = weft_to_thread(st->pool, spin_job, NULL, &f);
    if (rc != 0)
        return rc;
    if ((st->step_rc = task_wait_for(&g_spin_started, 1)) == 0) {
        st->cancel_rc = weft_future_cancel(f);
        /* Cancelled at once, without waiting for the job. */
        st->cancelled_at_once = weft_future_cancelled(f);
        st->await_rc = weft_await(f, NULL);
        st->step_rc = task_wait_for(&g_spin_finished, 1);
        weft_pool_stats(st->pool, &st->after_cancel);
    }
    weft_future_unref(f);
    return 0;
}

Test(pool, cancelling_a_running_job_sets_its_cancel_flag_and_cancels_the_future,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 1};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    cr_expect_not(weft_pool_cancelled(), "true outside a job");
    spin_state_t st = {.pool = pool};
    run_main(&loop, cancel_running_main, &st);

    EXPECT_OK(st.step_rc);
    EXPECT_OK(st.cancel_rc);
    cr_expect(st.cancelled_at_once);
    EXPECT_RC(st.await_rc, UV_ECANCELED);
    cr_expect_eq(atomic_load(&g_spin_saw_cancel), 1, "the job never saw weft_pool_cancelled()");
    cr_expect_eq(st.after_cancel.cancelled_running, 1);
    cr_expect_eq(st.after_cancel.cancelled_queued, 0);

    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* --- shutdown ------------------------------------------------------------------- */

typedef struct shutdown_state {
    weft_pool_t *pool;
    pthread_t opener;
    bool opener_started;
    atomic_int opener_saw_cancel; /* saw cancelled_queued reach 3 */
    int step_rc, shutdown_rc, after_rc;
    int ran_when_shutdown_returned;
    bool pending_after_shutdown;
    int await_rc[4];
    void *res[4];
    bool cancelled[4];
    weft_pool_stats_t after;
} shutdown_state_t;

/* Opens the gate once shutdown has cancelled the queued jobs, so that the
 * running job is still running while shutdown has to wait for it. */
static void *opener_thread(void *arg)
{
    shutdown_state_t *st = arg;
    if (thread_wait_cancelled_queued(st->pool, 3))
        atomic_store(&st->opener_saw_cancel, 1);
    gate_open();
    return NULL;
}

static int shutdown_main(void *arg, void **result)
{
    shutdown_state_t *st = arg;
    weft_future_t *f[4];
    (void)result;
    int rc = weft_to_thread(st->pool, blocking_job, weft_int(0), &f[0]);
    if (rc != 0)
        return rc;
    if ((rc = task_wait_for(&g_blocked_started, 1)) != 0) {
        gate_open();
        if (weft_await(f[0], NULL) != 0)
            rc = UV_EIO;
        weft_future_unref(f[0]);
        return rc;
    }
    int n = 1;
    for (; n < 4 && rc == 0; n++)
        rc = weft_to_thread(st->pool, id_job, weft_int(n), &f[n]);
    if (rc == 0 && pthread_create(&st->opener, NULL, opener_thread, st) == 0)
        st->opener_started = true;
    if (!st->opener_started)
        gate_open();
    /* From the loop's own thread: blocks until the running job is done. */
    st->shutdown_rc = weft_pool_shutdown(st->pool);
    st->ran_when_shutdown_returned = atomic_load(&g_ran[0]);
    weft_pool_stats(st->pool, &st->after);
    /* The deliveries are posted to this loop but not received yet: the
     * futures are pending, and the pool still refuses new jobs. */
    st->pending_after_shutdown = !weft_future_done(f[0]) && !weft_future_done(f[1]);
    weft_future_t *late = NULL;
    st->after_rc = weft_to_thread(st->pool, id_job, weft_int(9), &late);
    for (int i = 0; i < n - (rc != 0); i++) {
        st->await_rc[i] = weft_await(f[i], &st->res[i]);
        st->cancelled[i] = weft_future_cancelled(f[i]);
        weft_future_unref(f[i]);
    }
    st->step_rc = rc;
    return 0;
}

Test(pool, shutdown_cancels_queued_jobs_and_waits_for_running_ones, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 1};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    shutdown_state_t st = {.pool = pool};
    run_main(&loop, shutdown_main, &st);
    if (st.opener_started)
        pthread_join(st.opener, NULL);

    EXPECT_OK(st.step_rc);
    cr_expect_eq(st.shutdown_rc, 3, "shutdown returned %d", st.shutdown_rc);
    cr_expect_eq(atomic_load(&st.opener_saw_cancel), 1);
    cr_expect_eq(st.ran_when_shutdown_returned, 1, "shutdown returned before the running job");
    cr_expect_eq(st.after.cancelled_queued, 3);
    cr_expect_eq(st.after.completed, 1);
    cr_expect_eq(st.after.queued, 0);
    cr_expect(st.pending_after_shutdown);
    EXPECT_RC(st.after_rc, WEFT_ECLOSED);
    EXPECT_OK(st.await_rc[0]);
    cr_expect_eq(weft_to_int(st.res[0]), 0);
    for (int i = 1; i < 4; i++) {
        EXPECT_RC(st.await_rc[i], UV_ECANCELED);
        cr_expect(st.cancelled[i]);
        cr_expect_eq(atomic_load(&g_ran[i]), 0, "queued job %d ran", i);
    }
    cr_expect_eq(atomic_load(&g_ran[9]), 0);
    cr_expect_eq(atomic_load(&g_gate_timeouts), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* Shut down while the loop is not running: the deliveries wait in the loop,
 * which refuses to close until it has been run and has received them. */
static weft_future_t *g_fut[3];

static int submit_then_stop_main(void *arg, void **result)
{
    weft_pool_t *pool = arg;
    (void)result;
    int rc = weft_to_thread(pool, blocking_job, weft_int(0), &g_fut[0]);
    if (rc != 0)
        return rc;
    for (int i = 1; i < 3 && rc == 0; i++)
        rc = weft_to_thread(pool, id_job, weft_int(i), &g_fut[i]);
    if (rc == 0)
        rc = task_wait_for(&g_blocked_started, 1);
    /* Leave with the jobs in flight: a pending job would keep the loop
     * running, so stop it explicitly. */
    weft_loop_stop(weft_loop_current());
    return rc;
}

static void *shutdown_opener_thread(void *arg)
{
    (void)thread_wait_cancelled_queued(arg, 2);
    gate_open();
    return NULL;
}

Test(pool, loops_must_be_run_after_shutdown_to_receive_the_deliveries, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 1};
    pthread_t opener;
    ASSERT_OK(weft_pool_new(&opts, &pool));
    run_main(&loop, submit_then_stop_main, pool);
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(g_fut[i]);

    ASSERT_OK(pthread_create(&opener, NULL, shutdown_opener_thread, pool));
    /* From a thread that runs no loop. */
    cr_expect_eq(weft_pool_shutdown(pool), 2);
    pthread_join(opener, NULL);
    cr_expect_eq(atomic_load(&g_ran[0]), 1);
    cr_expect_eq(atomic_load(&g_gate_timeouts), 0);

    /* Nothing has arrived yet, and the loop knows it has work coming. */
    for (int i = 0; i < 3; i++)
        cr_expect_not(weft_future_done(g_fut[i]));
    EXPECT_RC(weft_loop_close(&loop), UV_EBUSY);

    EXPECT_OK(weft_loop_run(&loop));
    void *v = NULL;
    EXPECT_OK(weft_future_result(g_fut[0], &v));
    cr_expect_eq(weft_to_int(v), 0);
    for (int i = 1; i < 3; i++) {
        EXPECT_RC(weft_future_result(g_fut[i], NULL), UV_ECANCELED);
        cr_expect(weft_future_cancelled(g_fut[i]));
        cr_expect_eq(atomic_load(&g_ran[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        weft_future_unref(g_fut[i]);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* A job nobody awaits still keeps its loop running until it came back. */
static weft_future_t *g_unawaited;

static int submit_and_leave_main(void *arg, void **result)
{
    (void)result;
    return weft_to_thread(arg, id_job, weft_int(5), &g_unawaited);
}

Test(pool, a_pending_job_keeps_its_loop_running_until_delivered, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 1};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    run_main(&loop, submit_and_leave_main, pool);
    cr_assert_not_null(g_unawaited);
    cr_expect(weft_future_done(g_unawaited));
    void *v = NULL;
    EXPECT_OK(weft_future_result(g_unawaited, &v));
    cr_expect_eq(weft_to_int(v), 5);
    weft_future_unref(g_unawaited);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* --- argument and thread checks -------------------------------------------------- */

static atomic_int g_rc_in_job = 1;

static int submit_from_job(void *arg, void **result)
{
    weft_future_t *f = NULL;
    (void)result;
    atomic_store(&g_rc_in_job, weft_to_thread(arg, id_job, weft_int(1), &f));
    return 0;
}

typedef struct args_state {
    weft_pool_t *pool;
    int rc_null_pool, rc_null_fn, rc_null_out, rc_from_job, rc_shutdown_in_job;
} args_state_t;

static weft_pool_t *g_pool_for_job;
static atomic_int g_shutdown_in_job_rc = 1;

static int shutdown_from_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_store(&g_shutdown_in_job_rc, weft_pool_shutdown(g_pool_for_job));
    return 0;
}

static int args_main(void *arg, void **result)
{
    args_state_t *st = arg;
    weft_future_t *f = NULL;
    (void)result;
    st->rc_null_pool = weft_to_thread(NULL, id_job, NULL, &f);
    st->rc_null_fn = weft_to_thread(st->pool, NULL, NULL, &f);
    st->rc_null_out = weft_to_thread(st->pool, id_job, NULL, NULL);
    int rc = weft_to_thread(st->pool, submit_from_job, st->pool, &f);
    if (rc != 0)
        return rc;
    st->rc_from_job = weft_await(f, NULL);
    weft_future_unref(f);
    g_pool_for_job = st->pool;
    if ((rc = weft_to_thread(st->pool, shutdown_from_job, NULL, &f)) != 0)
        return rc;
    st->rc_shutdown_in_job = weft_await(f, NULL);
    weft_future_unref(f);
    return 0;
}

static atomic_int g_rc_plain_thread = 1;

static void *submit_from_plain_thread(void *arg)
{
    weft_future_t *f = NULL;
    atomic_store(&g_rc_plain_thread, weft_to_thread(arg, id_job, weft_int(1), &f));
    return NULL;
}

Test(pool, bad_arguments_and_calls_off_a_loop_thread_are_refused, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_future_t *f = NULL;
    weft_pool_stats_t ps;
    pthread_t th;

    EXPECT_RC(weft_pool_new(NULL, NULL), UV_EINVAL);
    weft_pool_opts_t tiny = {.threads = 1, .stack_size = 1};
    EXPECT_RC(weft_pool_new(&tiny, &pool), UV_EINVAL);
    cr_expect_null(pool);
    EXPECT_RC(weft_pool_shutdown(NULL), UV_EINVAL);
    memset(&ps, 0xff, sizeof(ps));
    weft_pool_stats(NULL, &ps);
    cr_expect_eq(ps.threads, 0);
    cr_expect_eq(ps.submitted, 0);
    weft_pool_stats(NULL, NULL);
    cr_expect_not(weft_pool_cancelled());

    /* Defaults: one thread per CPU the process may run on. */
    ASSERT_OK(weft_pool_new(NULL, &pool));
    weft_pool_stats(pool, &ps);
    cr_expect_geq(ps.threads, 1);
    cr_expect_eq(ps.threads, weft_cpu_count());

    /* No loop runs on this thread, nor on a plain thread. */
    EXPECT_RC(weft_to_thread(pool, id_job, NULL, &f), WEFT_EWRONGLOOP);
    ASSERT_OK(pthread_create(&th, NULL, submit_from_plain_thread, pool));
    pthread_join(th, NULL);
    EXPECT_RC(atomic_load(&g_rc_plain_thread), WEFT_EWRONGLOOP);

    args_state_t st = {.pool = pool};
    run_main(&loop, args_main, &st);
    EXPECT_RC(st.rc_null_pool, UV_EINVAL);
    EXPECT_RC(st.rc_null_fn, UV_EINVAL);
    EXPECT_RC(st.rc_null_out, UV_EINVAL);
    EXPECT_OK(st.rc_from_job);
    /* A job runs on a pool thread, which runs no loop. */
    EXPECT_RC(atomic_load(&g_rc_in_job), WEFT_EWRONGLOOP);
    /* A pool cannot be shut down from one of its own threads. */
    EXPECT_OK(st.rc_shutdown_in_job);
    EXPECT_RC(atomic_load(&g_shutdown_in_job_rc), UV_EINVAL);

    weft_pool_stats(pool, &ps);
    cr_expect_eq(ps.submitted, 2);
    cr_expect_eq(ps.completed, 2);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* --- two loops, one pool ------------------------------------------------------------ */

typedef struct loop_thread_state {
    weft_loop_t loop;
    sum_state_t sum;
    int init_rc, spawn_rc, run_rc, task_rc;
} loop_thread_state_t;

static void *loop_thread(void *arg)
{
    loop_thread_state_t *lt = arg;
    weft_task_t *t = NULL;
    lt->sum.thread = pthread_self();
    if ((lt->init_rc = weft_loop_init(&lt->loop, NULL)) != 0)
        return NULL;
    if ((lt->spawn_rc = weft_spawn(&lt->loop, sum_main, &lt->sum, &t)) != 0)
        return NULL;
    lt->run_rc = weft_loop_run(&lt->loop);
    lt->task_rc = weft_task_result(t, NULL);
    weft_task_unref(t);
    return NULL;
}

Test(pool, two_loops_on_two_threads_sharing_a_pool_get_their_own_results, .timeout = TEST_TIMEOUT_S)
{
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 3};
    static loop_thread_state_t lt[2];
    pthread_t th[2];
    ASSERT_OK(weft_pool_new(&opts, &pool));
    g_loop_thread = pthread_self(); /* jobs must not run here either */
    for (int i = 0; i < 2; i++) {
        lt[i].sum = (sum_state_t){.pool = pool, .base = 1000000 * (i + 1), .njobs = 500};
        ASSERT_OK(pthread_create(&th[i], NULL, loop_thread, &lt[i]));
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(lt[i].init_rc);
        EXPECT_OK(lt[i].spawn_rc);
        EXPECT_OK(lt[i].run_rc);
        EXPECT_OK(lt[i].task_rc);
        cr_expect_eq(lt[i].sum.errors, 0);
        cr_expect_eq(lt[i].sum.wrong_loop, 0);
        cr_expect_eq(lt[i].sum.cbs, 500);
        cr_expect_eq(lt[i].sum.wrong_thread_cbs, 0, "loop %d: %d completions off its thread", i,
                     lt[i].sum.wrong_thread_cbs);
        cr_expect_eq(lt[i].sum.sum, expected_sum(1000000 * (i + 1), 500), "loop %d: wrong sum", i);
    }
    cr_expect_eq(atomic_load(&g_jobs_on_loop_thread), 0);
    weft_pool_stats_t ps;
    weft_pool_stats(pool, &ps);
    cr_expect_eq(ps.submitted, 1000);
    cr_expect_eq(ps.completed, 1000);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(weft_loop_run(&lt[i].loop));
        EXPECT_OK(weft_loop_close(&lt[i].loop));
    }
    weft_pool_free(pool);
}

/* --- memory -------------------------------------------------------------------------- */

typedef struct fault_state {
    int attempts, enomem, other, ok_at;
    int await_rc;
    void *res;
} fault_state_t;

/* Each attempt uses a fresh pool (made with memory available), so the first
 * submit from this loop needs every allocation a submit can make; failing the
 * n-th of them must return UV_ENOMEM and leave nothing behind. */
static int fault_main(void *arg, void **result)
{
    fault_state_t *st = arg;
    (void)result;
    st->ok_at = -1;
    for (int n = 0; n < 64 && st->ok_at < 0; n++) {
        weft_pool_t *pool = NULL;
        weft_pool_opts_t opts = {.threads = 1};
        int rc = weft_pool_new(&opts, &pool);
        if (rc != 0)
            return rc;
        weft_future_t *f = NULL;
        st->attempts++;
        weft__alloc_fail_after(n);
        rc = weft_to_thread(pool, id_job, weft_int(6), &f);
        weft__alloc_fail_after(-1);
        if (rc == 0) {
            st->ok_at = n;
            st->await_rc = weft_await(f, &st->res);
            weft_future_unref(f);
        } else if (rc == UV_ENOMEM) {
            st->enomem++;
            cr_expect_null(f);
        } else {
            st->other++;
        }
        rc = weft_pool_shutdown(pool);
        weft_pool_free(pool);
        if (rc != 0)
            return rc;
    }
    return 0;
}

Test(pool, allocation_failures_in_submit_return_enomem_and_leak_nothing, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    fault_state_t st = {0};
    run_main(&loop, fault_main, &st);
    weft__alloc_fail_after(-1);
    cr_log_info("pool: submit succeeded once %d allocations were allowed", st.ok_at);
    cr_expect_gt(st.ok_at, 0, "no allocation failure was injected");
    cr_expect_eq(st.enomem, st.ok_at);
    cr_expect_eq(st.other, 0);
    EXPECT_OK(st.await_rc);
    cr_expect_eq(weft_to_int(st.res), 6);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

/* After a warm-up, submitting and awaiting jobs makes no allocator calls. */
typedef struct steady_state {
    weft_pool_t *pool;
    int errors;
    uint64_t calls;
} steady_state_t;

static int steady_round(steady_state_t *st, int n)
{
    weft_future_t *fs[64];
    for (int i = 0; i < n; i++) {
        if (weft_to_thread(st->pool, double_job, weft_int(i), &fs[i]) != 0) {
            st->errors++;
            n = i;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        if (weft_await(fs[i], &v) != 0 || weft_to_int(v) != 2 * i)
            st->errors++;
        weft_future_unref(fs[i]);
    }
    /* Let the done callbacks release the jobs. */
    return weft_yield();
}

static int steady_main(void *arg, void **result)
{
    steady_state_t *st = arg;
    (void)result;
    for (int r = 0; r < 20; r++)
        if (steady_round(st, 64) != 0)
            st->errors++;
    uint64_t before = weft__alloc_calls();
    for (int r = 0; r < 100; r++)
        if (steady_round(st, 1 + r % 64) != 0)
            st->errors++;
    st->calls = weft__alloc_calls() - before;
    return 0;
}

Test(pool, submit_and_await_in_steady_state_make_no_allocator_calls, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 2};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    steady_state_t st = {.pool = pool};
    run_main(&loop, steady_main, &st);
    cr_expect_eq(st.errors, 0);
    cr_expect_eq(st.calls, 0, "%llu allocator calls", (unsigned long long)st.calls);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(pool);
}

/* --- cancellation under load ------------------------------------------------------------
 * Two loops share a pool of three threads; each submits 2,000 jobs of varying
 * length and cancels a pseudo-random third of them at varying moments (at
 * once, after a yield, after awaiting others), so that cancels meet jobs
 * queued, starting, running and finishing. Every future must end exactly
 * once, with the right value or cancelled, and the pool's counts must add
 * up: every job either ran or was taken off the queue. */

#define STORM_JOBS 2000

static atomic_int g_storm_ran;

static int storm_job(void *arg, void **result)
{
    intptr_t v = weft_to_int(arg);
    uint64_t x = (uint64_t)v * 2654435761u + 1;
    int spins = (int)(x % 2000);
    for (int i = 0; i < spins && !weft_pool_cancelled(); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    atomic_fetch_add(&g_storm_ran, 1);
    *result = weft_int(2 * v + (x == 0)); /* x is never 0: keeps the loop */
    return 0;
}

typedef struct storm_state {
    weft_pool_t *pool;
    intptr_t base;
    int errors, wrong_value, cancelled, done, requested;
} storm_state_t;

static int storm_main(void *arg, void **result)
{
    storm_state_t *st = arg;
    weft_future_t **fs = weft__calloc(STORM_JOBS, sizeof(*fs));
    uint64_t lcg = (uint64_t)st->base;
    int n = 0, rc = 0;
    (void)result;
    if (fs == NULL)
        return UV_ENOMEM;
    for (; n < STORM_JOBS; n++) {
        if ((rc = weft_to_thread(st->pool, storm_job, weft_int(st->base + n), &fs[n])) != 0)
            break;
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        int pick = (int)((lcg >> 33) % 9);
        if (pick == 0) { /* cancel at once: most likely still queued */
            st->requested++;
            (void)weft_future_cancel(fs[n]);
        } else if (pick == 1 && n >= 8) { /* cancel an earlier one: maybe running */
            if (weft_future_cancel(fs[n - 8]) == 0)
                st->requested++;
        }
        if (n % 64 == 0 && (rc = weft_yield()) != 0)
            break;
    }
    for (int i = 0; i < n; i++) {
        if (i % 7 == 3 && i + 5 < n && weft_future_cancel(fs[i + 5]) == 0)
            st->requested++; /* cancel one that is likely running or finishing */
        void *v = NULL;
        int arc = weft_await(fs[i], &v);
        if (arc == UV_ECANCELED && weft_future_cancelled(fs[i])) {
            st->cancelled++;
        } else if (arc == 0) {
            st->done++;
            if (weft_to_int(v) != 2 * (st->base + i))
                st->wrong_value++;
        } else {
            st->errors++;
        }
        weft_future_unref(fs[i]);
    }
    weft__free(fs);
    return rc;
}

typedef struct storm_thread {
    weft_loop_t loop;
    storm_state_t st;
    int init_rc, spawn_rc, run_rc, task_rc;
} storm_thread_t;

static void *storm_thread(void *arg)
{
    storm_thread_t *s = arg;
    weft_task_t *t = NULL;
    if ((s->init_rc = weft_loop_init(&s->loop, NULL)) != 0)
        return NULL;
    if ((s->spawn_rc = weft_spawn(&s->loop, storm_main, &s->st, &t)) != 0)
        return NULL;
    s->run_rc = weft_loop_run(&s->loop);
    s->task_rc = weft_task_result(t, NULL);
    weft_task_unref(t);
    return NULL;
}

Test(pool, cancels_racing_with_jobs_on_two_loops_end_every_future_exactly_once,
     .timeout = TEST_TIMEOUT_S)
{
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 3};
    static storm_thread_t s[2];
    pthread_t th[2];
    ASSERT_OK(weft_pool_new(&opts, &pool));
    for (int i = 0; i < 2; i++) {
        s[i].st = (storm_state_t){.pool = pool, .base = 1 + 100000 * i};
        ASSERT_OK(pthread_create(&th[i], NULL, storm_thread, &s[i]));
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int cancelled = 0;
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(s[i].init_rc);
        EXPECT_OK(s[i].spawn_rc);
        EXPECT_OK(s[i].run_rc);
        EXPECT_OK(s[i].task_rc);
        cr_expect_eq(s[i].st.errors, 0);
        cr_expect_eq(s[i].st.wrong_value, 0);
        cr_expect_eq(s[i].st.done + s[i].st.cancelled, STORM_JOBS);
        cr_expect_eq(s[i].st.cancelled, s[i].st.requested);
        cancelled += s[i].st.cancelled;
    }
    /* Both loops ran until every job had come back, so the counts are final:
     * each job ran or was taken off the queue, and each cancelled future was
     * counted once, as queued or as running. */
    weft_pool_stats_t ps;
    weft_pool_stats(pool, &ps);
    cr_expect_eq(ps.submitted, 2 * STORM_JOBS);
    cr_expect_eq(ps.completed + ps.cancelled_queued, ps.submitted);
    cr_expect_eq(ps.completed, (uint64_t)atomic_load(&g_storm_ran));
    cr_expect_eq(ps.cancelled_queued + ps.cancelled_running, (uint64_t)cancelled);
    cr_expect_eq(ps.queued, 0);
    cr_log_info("pool: %d of %d futures cancelled (%llu queued, %llu running)", cancelled,
                2 * STORM_JOBS, (unsigned long long)ps.cancelled_queued,
                (unsigned long long)ps.cancelled_running);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(weft_loop_run(&s[i].loop));
        EXPECT_OK(weft_loop_close(&s[i].loop));
    }
    weft_pool_free(pool);
}

/* --- _new/_free ------------------------------------------------------------------ */

static int one_job_main(void *arg, void **result)
{
    weft_future_t *f = NULL;
    int rc = weft_to_thread(arg, id_job, weft_int(5), &f);
    if (rc != 0)
        return rc;
    rc = weft_await(f, result);
    weft_future_unref(f);
    return rc;
}

/* The pool pairs weft_pool_new with weft_pool_free: after shutdown it is
 * still named (final counts, a second shutdown) until freed, and free shuts a
 * pool down itself when nobody did. */
Test(pool, free_releases_a_pool_shut_down_or_not, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t opts = {.threads = 1};
    ASSERT_OK(weft_pool_new(&opts, &pool));
    run_main(&loop, one_job_main, pool);
    EXPECT_RC(weft_pool_shutdown(pool), 0);
    EXPECT_OK(weft_loop_run(&loop));
    weft_pool_stats_t ps;
    weft_pool_stats(pool, &ps); /* shut down, every outcome received: still named */
    cr_expect_eq(ps.submitted, 1);
    cr_expect_eq(ps.completed, 1);
    EXPECT_RC(weft_pool_shutdown(pool), WEFT_ECLOSED);
    weft_pool_free(pool);
    EXPECT_OK(weft_loop_close(&loop));

    pool = NULL;
    ASSERT_OK(weft_pool_new(&opts, &pool));
    run_main(&loop, one_job_main, pool);
    weft_pool_free(pool); /* not shut down: free does it */
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    weft_pool_free(NULL);
}

/* The default thread count follows the affinity mask (taskset, a cgroup
 * cpuset), not the machine's online CPUs: under a one-CPU mask, one thread. */
Test(pool, default_thread_count_follows_the_allowed_cpus, .timeout = TEST_TIMEOUT_S)
{
    cpu_set_t all, one;
    ASSERT_RC(sched_getaffinity(0, sizeof(all), &all), 0);
    if (CPU_COUNT(&all) < 2)
        cr_skip("only one CPU is allowed: no smaller mask to run under");
    int first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_RC(sched_setaffinity(0, sizeof(one), &one), 0);
    weft_pool_t *pool = NULL;
    int rc = weft_pool_new(NULL, &pool);
    weft_pool_stats_t ps = {0};
    weft_pool_stats(rc == 0 ? pool : NULL, &ps);
    int src = rc == 0 ? weft_pool_shutdown(pool) : 0;
    if (rc == 0)
        weft_pool_free(pool); /* shutdown only stops it (pool.h) */
    /* Restored before any assert: the rest of the process keeps its mask. */
    int restored = sched_setaffinity(0, sizeof(all), &all);
    ASSERT_OK(rc);
    EXPECT_RC(src, 0);
    ASSERT_RC(restored, 0);
    cr_expect_eq(ps.threads, 1);
    cr_expect_eq((int)weft_cpu_count(), CPU_COUNT(&all));
}

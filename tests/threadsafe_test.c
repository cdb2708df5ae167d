/*
 * tests/threadsafe_test.c - the loop's thread-safe inbox under contention
 * (weft_call_soon_threadsafe from plain threads).
 *
 * Built twice (tests/BUILD, weft_test(tsan = True)): as a Criterion test and,
 * through tests/plain_test.h, as a plain program that runs under TSan. So it
 * uses only the assertion forms the shim provides.
 *
 * The stress test proves that nothing is lost or duplicated (per-thread
 * counts and a checksum of every argument) and that each thread's posts run
 * in its posting order. Threads are started by a task, so they post while the
 * loop runs; a future completed by the last callback keeps the loop alive
 * until everything is counted. Posting threads are joined before the loop is
 * closed (the loop must outlive every thread that may post to it).
 */
#include "plain_test.h"
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include <weft/weft.h>

#include "core/testhooks.h"

/* --- 4 threads x 100,000 posts --------------------------------------------- */

#define NTHREADS   4
#define PER_THREAD 100000

static weft_loop_t g_loop;
static pthread_t g_loop_thread;
static pthread_t g_posters[NTHREADS];
static int g_created[NTHREADS];
static int g_create_errors;

/* Written by the loop thread only; read by the test after run returned. */
static uint64_t g_count[NTHREADS];
static uint64_t g_next_seq[NTHREADS];
static uint64_t g_out_of_order;
static uint64_t g_first_bad_tid, g_first_bad_want, g_first_bad_got, g_first_bad_at;
static uint64_t g_bad_tid;
static uint64_t g_off_thread;
static uint64_t g_total;
static uint64_t g_checksum;
static weft_future_t *g_all_counted;
static int g_set_rc = 1;

/* Written by each poster for itself; read after join. */
static int g_post_errors[NTHREADS];
/* Posters that have posted their first 2,048: the loop does not consume
 * until all have, so the 4,096-slot ring must overflow. */
static atomic_int g_half_posted;

static void count_cb(void *arg)
{
    uint64_t v = (uint64_t)(uintptr_t)arg;
    uint64_t tid = v >> 32;
    uint64_t seq = v & 0xffffffffu;
    if (!pthread_equal(pthread_self(), g_loop_thread)) {
        g_off_thread++;
    }
    if (tid >= NTHREADS) {
        g_bad_tid++;
        return;
    }
    if (seq != g_next_seq[tid]) {
        if (g_out_of_order++ == 0) {
            g_first_bad_tid = tid;
            g_first_bad_want = g_next_seq[tid];
            g_first_bad_got = seq;
            g_first_bad_at = g_total;
        }
    }
    g_next_seq[tid] = seq + 1;
    g_count[tid]++;
    g_checksum += v;
    if (++g_total == (uint64_t)NTHREADS * PER_THREAD) {
        g_set_rc = weft_future_set_result(g_all_counted, NULL);
    }
}

static void *poster(void *arg)
{
    uint64_t tid = (uint64_t)(uintptr_t)arg;
    for (uint64_t seq = 0; seq < PER_THREAD; seq++) {
        void *msg = (void *)(uintptr_t)((tid << 32) | seq);
        if (weft_call_soon_threadsafe(&g_loop, count_cb, msg) != 0) {
            g_post_errors[tid]++;
        }
        if (seq == 2047) {
            atomic_fetch_add(&g_half_posted, 1);
        }
        /* Random-ish yields so the posters interleave differently each run. */
        if ((seq & 1023) == 0 && ((seq >> 10) + tid) % 3 == 0) {
            sched_yield();
        }
    }
    return NULL;
}

static int start_posters_then_wait(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (uintptr_t i = 0; i < NTHREADS; i++) {
        if (pthread_create(&g_posters[i], NULL, poster, (void *)i) == 0) {
            g_created[i] = 1;
        } else {
            g_create_errors++;
        }
    }
    if (g_create_errors != 0) {
        return UV_EAGAIN;
    }
    /* Hold the loop (no yield: nothing is consumed) until 8,192 messages are
     * posted, so the overflow path runs, and is then drained while the
     * posters go on - in order with the ring, which the checks below see. */
    while (atomic_load(&g_half_posted) < NTHREADS) {
        sched_yield();
    }
    return weft_await(g_all_counted, NULL);
}

Test(threadsafe, posts_from_4_threads_arrive_exactly_once_in_per_thread_order,
     .timeout = TEST_TIMEOUT_S)
{
    weft_task_t *main_task = NULL;
    weft_loop_stats_t st;
    uint64_t want_checksum = 0;

    g_loop_thread = pthread_self();
    cr_assert_eq(weft_loop_init(&g_loop, NULL), 0);
    cr_assert_eq(weft_future_new(&g_loop, &g_all_counted), 0);
    cr_assert_eq(weft_spawn(&g_loop, start_posters_then_wait, NULL, &main_task), 0);
    cr_expect_eq(weft_loop_run(&g_loop), 0);

    for (int i = 0; i < NTHREADS; i++) {
        if (g_created[i]) {
            pthread_join(g_posters[i], NULL);
        }
    }
    cr_assert_eq(g_create_errors, 0);

    for (uint64_t i = 0; i < NTHREADS; i++) {
        cr_expect_eq(g_post_errors[i], 0);
        cr_expect_eq(g_count[i], PER_THREAD);
        want_checksum += (i << 32) * PER_THREAD + (uint64_t)PER_THREAD * (PER_THREAD - 1) / 2;
    }
    cr_expect_eq(g_total, (uint64_t)NTHREADS * PER_THREAD);
    cr_expect_eq(g_checksum, want_checksum);
    cr_expect_eq(g_out_of_order, 0,
                 "%llu out of order; first: thread %llu sent seq %llu where %llu was due "
                 "(after %llu messages)",
                 (unsigned long long)g_out_of_order, (unsigned long long)g_first_bad_tid,
                 (unsigned long long)g_first_bad_got, (unsigned long long)g_first_bad_want,
                 (unsigned long long)g_first_bad_at);
    cr_expect_eq(g_bad_tid, 0);
    cr_expect_eq(g_off_thread, 0);
    cr_expect_eq(g_set_rc, 0);
    cr_expect_eq(weft_task_state(main_task), WEFT_TASK_DONE);

    weft_loop_stats(&g_loop, &st);
    cr_expect_geq(st.threadsafe_received, (uint64_t)NTHREADS * PER_THREAD);
    cr_expect_gt(st.inbox_overflows, 0, "the overflow path never ran");
    cr_log_info("threadsafe: %llu received, %llu ring overflows, %llu wakeups",
                (unsigned long long)st.threadsafe_received, (unsigned long long)st.inbox_overflows,
                (unsigned long long)st.wakeups);

    weft_task_unref(main_task);
    weft_future_unref(g_all_counted);
    cr_expect_eq(weft_loop_close(&g_loop), 0);
}

/* --- waking an idle loop ----------------------------------------------------
 * One thread posts a message only after the loop has handled the previous
 * one, so the loop goes idle (and mostly to sleep in the poller) before every
 * post. A lost wake-up would hang the test (caught by the timeout). */

#define ROUNDS 2000

static weft_loop_t g_idle_loop;
static atomic_uint g_acked;
static weft_future_t *g_idle_done;
static int g_idle_set_rc = 1;
static int g_idle_post_errors;
static int g_idle_off_thread;
static atomic_uint g_slept; /* times the loop blocked in the poller */

static void count_sleep(void)
{
    atomic_fetch_add(&g_slept, 1);
}

static void ack_cb(void *arg)
{
    unsigned round = (unsigned)(uintptr_t)arg;
    if (!pthread_equal(pthread_self(), g_loop_thread)) {
        g_idle_off_thread++;
    }
    /* Release: the poster may post the next round only after this one ran. */
    atomic_store_explicit(&g_acked, round + 1, memory_order_release);
    if (round + 1 == ROUNDS) {
        g_idle_set_rc = weft_future_set_result(g_idle_done, NULL);
    }
}

static void *pinger(void *arg)
{
    (void)arg;
    for (unsigned round = 0; round < ROUNDS; round++) {
        /* Acquire: pairs with the release in ack_cb. */
        while (atomic_load_explicit(&g_acked, memory_order_acquire) != round) {
            sched_yield();
        }
        if (round % 8 == 0) {
            /* Wait until the loop is about to block (no idle poll): this
             * post must then wake it through the eventfd. */
            while (atomic_load(&g_slept) < round / 8 + 1) {
                sched_yield();
            }
        }
        if (weft_call_soon_threadsafe(&g_idle_loop, ack_cb, (void *)(uintptr_t)round) != 0) {
            g_idle_post_errors++;
            return NULL;
        }
    }
    return NULL;
}

static int idle_waiter(void *arg, void **result)
{
    (void)arg;
    return weft_await(g_idle_done, result);
}

Test(threadsafe, posts_wake_an_idle_loop_every_time, .timeout = TEST_TIMEOUT_S)
{
    pthread_t th;
    weft_task_t *waiter = NULL;

    g_loop_thread = pthread_self();
    atomic_store(&g_acked, 0);
    atomic_store(&g_slept, 0);
    weft_loop_opts_t o = {.idle_poll_us = -1};
    cr_assert_eq(weft_loop_init(&g_idle_loop, &o), 0);
    weft__test_sleep_hook = count_sleep;
    cr_assert_eq(weft_future_new(&g_idle_loop, &g_idle_done), 0);
    cr_assert_eq(weft_spawn(&g_idle_loop, idle_waiter, NULL, &waiter), 0);
    cr_assert_eq(pthread_create(&th, NULL, pinger, NULL), 0);
    cr_expect_eq(weft_loop_run(&g_idle_loop), 0);
    pthread_join(th, NULL);
    weft__test_sleep_hook = NULL;
    weft_loop_stats_t st;
    weft_loop_stats(&g_idle_loop, &st);
    cr_expect_geq(st.wakeups, ROUNDS / 8, "the loop did not really sleep");

    cr_expect_eq(g_idle_post_errors, 0);
    cr_expect_eq(atomic_load(&g_acked), ROUNDS);
    cr_expect_eq(g_idle_set_rc, 0);
    cr_expect_eq(g_idle_off_thread, 0);
    cr_expect_eq(weft_task_state(waiter), WEFT_TASK_DONE);

    weft_task_unref(waiter);
    weft_future_unref(g_idle_done);
    cr_expect_eq(weft_loop_close(&g_idle_loop), 0);
}

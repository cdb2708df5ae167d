/*
 * tests/debug_test.c - debug mode (docs/core.md, "Debug mode"): owner-thread
 * assertions (abort in debug mode, WEFT_EWRONGLOOP outside it), the seeded
 * ready-queue shuffle (same seed, same order; what it keeps in order), the
 * warning about tasks left pending when weft_run's main finishes, and the
 * rate-limited stall report of opts.slow_task_ms.
 *
 * Tests that must see the messages run the code in a forked child whose
 * stderr goes to a pipe (run_captured). Every loop sets opts.debug and
 * opts.shuffle explicitly, so WEFT_DEBUG and WEFT_SEED in the environment
 * (tools/test.sh runs the suite under two seeds) change nothing here. No
 * test asserts anything about timing beyond "it was reported".
 */
#include <criterion/criterion.h>
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <weft/weft.h>

#define HOUR_MS (3600u * 1000u)

/* ---- helpers ---------------------------------------------------------------- */

/* Run fn() in a forked child with stderr going into buf (NUL-terminated,
 * truncated to len - 1); returns the child's wait status. */
static int run_captured(void (*fn)(void), char *buf, size_t len)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        fn();
        fflush(stderr);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + n, len - 1 - n)) > 0 && n + (size_t)r < len - 1)
        n += (size_t)r;
    if (r > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

/* ---- owner-thread assertions ---------------------------------------------- */

/* Which loop-only call the foreign thread makes. */
enum foreign_call {
    CALL_SET_RESULT,
    CALL_FUTURE_REF,
    CALL_CALL_SOON,
    CALL_SPAWN,
    CALL_HANDLE_CANCEL,
    CALL_LOCK_TRY,
};

static weft_loop_t g_loop;
static weft_future_t *g_fut;
static weft_handle_t g_handle;
static weft_lock_t g_lock;
static enum foreign_call g_call;
static atomic_int g_foreign_rc = 1;
static atomic_int g_foreign_done;

static void noop_cb(void *arg)
{
    (void)arg;
}

static int noop_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static void *foreign_thread(void *arg)
{
    (void)arg;
    int rc = 0;
    switch (g_call) {
    case CALL_SET_RESULT:
        rc = weft_future_set_result(g_fut, weft_int(1));
        break;
    case CALL_FUTURE_REF:
        weft_future_ref(g_fut); /* no error return: checked in debug mode only */
        weft_future_unref(g_fut);
        break;
    case CALL_CALL_SOON:
        rc = weft_call_soon(&g_loop, noop_cb, NULL, NULL);
        break;
    case CALL_SPAWN:
        rc = weft_spawn(&g_loop, noop_body, NULL, NULL);
        break;
    case CALL_HANDLE_CANCEL:
        rc = weft_handle_cancel(g_handle);
        break;
    case CALL_LOCK_TRY:
        rc = weft_lock_try(&g_lock);
        break;
    }
    atomic_store(&g_foreign_rc, rc);
    atomic_store(&g_foreign_done, 1);
    return NULL;
}

/* While the loop runs: start the foreign thread and wait (suspended, in
 * short sleeps) until it is done, then complete the future. */
static int owner_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    pthread_t th;
    /* The lock is bound to this loop by its first use here. */
    if (weft_lock_try(&g_lock) != 0 || weft_lock_release(&g_lock) != 0)
        return UV_EIO;
    if (weft_call_later(&g_loop, HOUR_MS, noop_cb, NULL, &g_handle) != 0)
        return UV_ENOMEM;
    if (pthread_create(&th, NULL, foreign_thread, NULL) != 0)
        return UV_EAGAIN;
    while (!atomic_load(&g_foreign_done)) {
        int rc = weft_sleep(1);
        if (rc != 0)
            return rc;
    }
    pthread_join(th, NULL);
    (void)weft_handle_cancel(g_handle);
    return weft_future_set_result(g_fut, NULL);
}

/* Runs owner_main on g_loop with debug mode on (> 0) or off (< 0). */
static void run_owner(enum foreign_call call, int debug)
{
    weft_loop_opts_t opts = {.debug = debug, .shuffle = -1};
    weft_task_t *t;
    g_call = call;
    atomic_store(&g_foreign_rc, 1);
    atomic_store(&g_foreign_done, 0);
    ASSERT_OK(weft_loop_init(&g_loop, &opts));
    ASSERT_OK(weft_lock_init(&g_lock));
    ASSERT_OK(weft_future_new(&g_loop, &g_fut));
    ASSERT_OK(weft_spawn(&g_loop, owner_main, NULL, &t));
    EXPECT_OK(weft_loop_run(&g_loop));
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    weft_future_unref(g_fut);
    EXPECT_OK(weft_lock_close(&g_lock));
    EXPECT_OK(weft_loop_close(&g_loop));
}

Test(debug, set_result_from_a_foreign_thread_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    run_owner(CALL_SET_RESULT, 1);
}

Test(debug, future_ref_from_a_foreign_thread_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    run_owner(CALL_FUTURE_REF, 1);
}

Test(debug, call_soon_from_a_foreign_thread_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    run_owner(CALL_CALL_SOON, 1);
}

Test(debug, spawn_from_a_foreign_thread_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    run_owner(CALL_SPAWN, 1);
}

Test(debug, handle_cancel_from_a_foreign_thread_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    run_owner(CALL_HANDLE_CANCEL, 1);
}

Test(debug, lock_try_from_a_foreign_thread_aborts_in_debug_mode, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    run_owner(CALL_LOCK_TRY, 1);
}

Test(debug, the_same_calls_return_ewrongloop_when_debug_mode_is_off, .timeout = TEST_TIMEOUT_S)
{
    static const enum foreign_call calls[] = {CALL_SET_RESULT, CALL_CALL_SOON, CALL_SPAWN,
                                              CALL_LOCK_TRY};
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        run_owner(calls[i], -1);
        cr_expect_eq(atomic_load(&g_foreign_rc), WEFT_EWRONGLOOP,
                     "call %zu from a foreign thread returned %d (%s), want WEFT_EWRONGLOOP", i,
                     atomic_load(&g_foreign_rc), weft_err_name(atomic_load(&g_foreign_rc)));
    }
}

static void set_result_abort_child(void)
{
    run_owner(CALL_SET_RESULT, 1);
}

Test(debug, the_abort_message_names_the_call_the_object_and_both_threads, .timeout = TEST_TIMEOUT_S)
{
    char out[4096];
    int status = run_captured(set_result_abort_child, out, sizeof out);
    cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x, stderr: %s", status,
              out);
    cr_expect(strstr(out, "weft_future_set_result") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "future 0x") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "from thread") != NULL && strstr(out, "runs on thread") != NULL,
              "stderr: %s", out);
    cr_expect(strstr(out, "core/future.c:") != NULL, "stderr: %s", out);
}

/* opts.debug = 0: WEFT_DEBUG decides, read at init; unset, the build's
 * default (on in --config=dbg, which defines WEFT_DEBUG_DEFAULT=1). Each
 * test runs in a process of its own, so setenv stays there. */
Test(debug, weft_debug_1_in_the_environment_turns_debug_mode_on, .signal = SIGABRT,
     .timeout = TEST_TIMEOUT_S)
{
    setenv("WEFT_DEBUG", "1", 1);
    run_owner(CALL_SET_RESULT, 0);
}

Test(debug, weft_debug_0_in_the_environment_turns_debug_mode_off, .timeout = TEST_TIMEOUT_S)
{
    setenv("WEFT_DEBUG", "0", 1);
    run_owner(CALL_SET_RESULT, 0);
    EXPECT_RC(atomic_load(&g_foreign_rc), WEFT_EWRONGLOOP);
}

static void default_debug_child(void)
{
    unsetenv("WEFT_DEBUG");
    run_owner(CALL_SET_RESULT, 0);
}

Test(debug, without_weft_debug_the_build_default_decides, .timeout = TEST_TIMEOUT_S)
{
#if defined(WEFT_DEBUG_DEFAULT) && WEFT_DEBUG_DEFAULT
    const bool on = true;
#else
    const bool on = false;
#endif
    char out[4096];
    int status = run_captured(default_debug_child, out, sizeof out);
    cr_expect_eq(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, on,
                 "build default %s, status %#x, stderr: %s", on ? "on" : "off", status, out);
}

/* ---- the shuffle ----------------------------------------------------------- */

#define N_TASKS  24
#define N_ROUNDS 4
static int g_order[N_TASKS * N_ROUNDS + 64];
static int g_norder;

static void record(int v)
{
    if (g_norder < (int)(sizeof g_order / sizeof g_order[0]))
        g_order[g_norder] = v;
    g_norder++;
}

/* Logs its index N_ROUNDS times: after a yield, then after timers (tasks
 * woken together). */
static int logging_body(void *arg, void **result)
{
    (void)result;
    int i = (int)weft_to_int(arg);
    for (int r = 0; r < N_ROUNDS; r++) {
        record(i);
        int rc = weft_sleep(r == 0 ? 0 : 1); /* yield once, then timers */
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The run order of N_TASKS tasks (spawned 0..N-1), with opts. */
static void run_order(int shuffle, uint64_t seed, int *out, int *n)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.shuffle = shuffle, .seed = seed};
    g_norder = 0;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    for (int i = 0; i < N_TASKS; i++)
        ASSERT_OK(weft_spawn(&loop, logging_body, weft_int(i), NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
    cr_assert_eq(g_norder, N_TASKS * N_ROUNDS);
    memcpy(out, g_order, sizeof(int) * (size_t)g_norder);
    *n = g_norder;
}

static bool same(const int *a, const int *b, int n)
{
    return memcmp(a, b, sizeof(int) * (size_t)n) == 0;
}

/* The first round: spawn order shuffled, or not. */
static bool first_round_is_spawn_order(const int *o)
{
    for (int i = 0; i < N_TASKS; i++)
        if (o[i] != i)
            return false;
    return true;
}

Test(debug, the_shuffle_replays_one_order_per_seed_and_another_seed_gives_another,
     .timeout = TEST_TIMEOUT_S)
{
    static int a[N_TASKS * N_ROUNDS], b[N_TASKS * N_ROUNDS], c[N_TASKS * N_ROUNDS],
        d[N_TASKS * N_ROUNDS];
    int na, nb, nc, nd;
    run_order(-1, 0, d, &nd);
    cr_expect(first_round_is_spawn_order(d), "without the shuffle tasks start in spawn order");
    run_order(1, 42, a, &na);
    run_order(1, 42, b, &nb);
    run_order(1, 4242, c, &nc);
    cr_expect(same(a, b, na), "seed 42 gave two different orders");
    cr_expect(!same(a, c, na), "seeds 42 and 4242 gave the same order");
    cr_expect(!first_round_is_spawn_order(a), "seed 42 did not reorder the start");
}

/* Done callbacks of one future, and call_soon callbacks, keep their order
 * under the shuffle; a yield still runs after what was ready before it. */
static void record_cb(void *arg)
{
    record((int)weft_to_int(arg));
}

static void record_done_cb(weft_future_t *f, void *arg)
{
    (void)f;
    record((int)weft_to_int(arg));
}

static int yielder_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    record(-1);
    for (int i = 0; i < 8; i++)
        if (weft_call_soon(weft_loop_current(), record_cb, weft_int(1000 + i), NULL) != 0)
            return UV_ENOMEM;
    int rc = weft_yield(); /* the eight callbacks run first */
    record(-2);
    return rc;
}

Test(debug, the_shuffle_keeps_callback_fifo_done_callback_order_and_yield,
     .timeout = TEST_TIMEOUT_S)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        weft_loop_t loop;
        weft_loop_opts_t opts = {.shuffle = 1, .seed = seed};
        weft_future_t *f, *g;
        g_norder = 0;
        ASSERT_OK(weft_loop_init(&loop, &opts));
        ASSERT_OK(weft_future_new(&loop, &f));
        ASSERT_OK(weft_future_new(&loop, &g));
        for (int i = 0; i < 6; i++) {
            ASSERT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(100 + i)));
            ASSERT_OK(weft_future_add_done_callback(g, record_done_cb, weft_int(200 + i)));
            ASSERT_OK(weft_call_soon(&loop, record_cb, weft_int(300 + i), NULL));
            ASSERT_OK(weft_spawn(&loop, noop_body, NULL, NULL));
        }
        ASSERT_OK(weft_future_set_result(f, NULL));
        ASSERT_OK(weft_future_set_result(g, NULL));
        ASSERT_OK(weft_spawn(&loop, yielder_body, NULL, NULL));
        EXPECT_OK(weft_loop_run(&loop));
        int last[3] = {99, 199, 299}, yield_at = -1, resumed_at = -1;
        for (int k = 0; k < g_norder; k++) {
            int v = g_order[k];
            if (v == -1)
                yield_at = k;
            else if (v == -2)
                resumed_at = k;
            else if (v >= 1000)
                cr_expect(yield_at >= 0 && resumed_at < 0,
                          "seed %llu: callback %d ran outside the yield", (unsigned long long)seed,
                          v);
            if (v < 0)
                continue;
            /* f's done callbacks, g's, and call_soon's (one FIFO) */
            int cls = v >= 1000 ? 2 : v / 100 - 1;
            cr_expect_gt(v, last[cls], "seed %llu: %d ran after %d", (unsigned long long)seed, v,
                         last[cls]);
            last[cls] = v;
        }
        cr_expect_eq(g_norder, 6 * 3 + 8 + 2);
        weft_future_unref(f);
        weft_future_unref(g);
        EXPECT_OK(weft_loop_close(&loop));
    }
}

/* ---- tasks left pending at weft_run's end --------------------------------- */

static uint64_t g_pending_seen;

/* Sleeps until cancelled by weft_run's clean-up, then reads the counter. */
static int left_behind_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_sleep(HOUR_MS);
    weft_loop_stats_t st;
    weft_loop_stats(weft_loop_current(), &st);
    g_pending_seen = st.tasks_pending_at_exit;
    return rc;
}

static int leaving_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_opts_t named = {.name = "left-behind"};
    int rc = weft_spawn_ex(NULL, left_behind_body, NULL, &named, NULL);
    if (rc == 0)
        rc = weft_spawn(NULL, left_behind_body, NULL, NULL);
    if (rc == 0)
        rc = weft_yield(); /* both start and sleep */
    return rc;
}

static void run_leaving(bool quiet)
{
    weft_loop_opts_t opts = {.quiet = quiet, .shuffle = -1};
    g_pending_seen = 0;
    EXPECT_OK(weft_run_ex(leaving_main, NULL, &opts, NULL));
}

static void leaving_child(void)
{
    run_leaving(false);
}

Test(debug, tasks_pending_when_main_finishes_are_counted_and_named, .timeout = TEST_TIMEOUT_S)
{
    run_leaving(true);
    cr_expect_eq(g_pending_seen, 2, "stats.tasks_pending_at_exit = %llu, want 2",
                 (unsigned long long)g_pending_seen);

    char out[4096];
    int status = run_captured(leaving_child, out, sizeof out);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_expect(strstr(out, "main finished with 2 task(s) still pending") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "left-behind") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "awaits sleep") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "spawned at tests/debug_test.c:") != NULL, "stderr: %s", out);
}

static void leaving_quiet_child(void)
{
    run_leaving(true);
}

Test(debug, a_quiet_run_counts_pending_tasks_without_printing, .timeout = TEST_TIMEOUT_S)
{
    char out[4096];
    int status = run_captured(leaving_quiet_child, out, sizeof out);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_expect(strstr(out, "still pending") == NULL, "a quiet loop printed: %s", out);
}

/* ---- stall reports ---------------------------------------------------------- */

#define STALLS 8

/* Holds the loop for ~2 ms (past slow_task_ms = 1) STALLS times. */
static int staller_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < STALLS; i++) {
        uint64_t end = weft_loop_now_ns() + 2u * 1000u * 1000u;
        while (weft_loop_now_ns() < end)
            ;
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    return 0;
}

static weft_loop_stats_t g_stall_st;

static void run_stalls(bool quiet)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.slow_task_ms = 1, .quiet = quiet, .shuffle = -1};
    weft_task_opts_t named = {.name = "staller"};
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn_ex(&loop, staller_body, NULL, &named, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    weft_loop_stats(&loop, &g_stall_st);
    EXPECT_OK(weft_loop_close(&loop));
}

static void stalls_child(void)
{
    run_stalls(false);
}

Test(debug, stalls_are_all_counted_and_reported_at_most_five_times_a_minute,
     .timeout = TEST_TIMEOUT_S)
{
    run_stalls(true);
    cr_expect_geq(g_stall_st.slow_tasks, STALLS, "slow_tasks = %llu",
                  (unsigned long long)g_stall_st.slow_tasks);
    cr_expect_eq(g_stall_st.slow_reports, 5, "slow_reports = %llu, want 5",
                 (unsigned long long)g_stall_st.slow_reports);

    char out[8192];
    int status = run_captured(stalls_child, out, sizeof out);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    int n = 0;
    for (const char *p = out; (p = strstr(p, "weft: stall: ")) != NULL; p++)
        n++;
    cr_expect_eq(n, 5, "%d reports printed, want 5: %s", n, out);
    cr_expect(strstr(out, "\"staller\" (spawned at tests/debug_test.c:") != NULL, "stderr: %s",
              out);
    cr_expect(strstr(out, "without suspending") != NULL, "stderr: %s", out);
    cr_expect(strstr(out, "last report this minute") != NULL, "stderr: %s", out);
}

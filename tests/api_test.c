/*
 * tests/api_test.c - the asyncio/Tokio/Seastar extras: run_until_complete,
 * stop_threadsafe, per-loop signal handlers (weft/loop.h), task-local
 * storage and copied task names (weft/task.h), result destructors
 * (weft/future.h), queue item destructors (weft/queue.h), weft_foreign_t
 * and runtime statistics (weft/runtime.h).
 *
 * Cross-thread tests (stop_threadsafe, a signal from another thread,
 * foreign_free from a thread, stats read while the loops run) are why this
 * file also builds as a plain program for TSan. Every test that creates a
 * loop ends by closing it and expecting 0.
 */
#include "plain_test.h"
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft/runtime.h>
#include <weft/weft.h>

#include "core/loop_int.h"

#define WAIT_MS 20000 /* bound of every wait; never reached when passing */

#ifdef __SANITIZE_THREAD__
#define NO_ARENAS true /* see runtime_test.c */
#else
#define NO_ARENAS false
#endif

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int sleep_forever_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_sleep(WEFT_FOREVER);
}

/* Cancel every live task of loop, run it dry and close it. */
static void finish_loop(weft_loop_t *loop)
{
    struct weft__loop *l = weft__L(loop);
    WEFT__FOR_EACH_TASK(l, x)
    {
        if (weft__task_live(x))
            weft_task_cancel(x);
    }
    EXPECT_OK(weft_loop_run(loop));
    EXPECT_OK(weft_loop_close(loop));
}

/* ==== weft_loop_run_until_complete ======================================== */

static void set_result_cb(void *arg)
{
    cr_expect_eq(weft_future_set_result(arg, weft_int(42)), 0);
}

Test(api, run_until_complete_returns_when_the_future_is_done_and_leaves_the_rest,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_future_t *f;
    ASSERT_OK(weft_future_new(&loop, &f));
    weft_task_t *sleeper;
    ASSERT_OK(weft_spawn(&loop, sleep_forever_body, NULL, &sleeper));
    ASSERT_OK(weft_call_later(&loop, 5, set_result_cb, f, NULL));
    EXPECT_OK(weft_loop_run_until_complete(&loop, f));
    void *r = NULL;
    EXPECT_OK(weft_future_result(f, &r));
    cr_expect_eq(weft_to_int(r), 42);
    /* The sleeper is left alive for a later run. */
    cr_expect_eq(weft_task_state(sleeper), WEFT_TASK_SUSPENDED);
    /* Already done: one tick, then 0. */
    EXPECT_OK(weft_loop_run_until_complete(&loop, f));
    weft_future_unref(f);
    weft_task_unref(sleeper);
    finish_loop(&loop);
}

static int answer_body(void *arg, void **result)
{
    (void)arg;
    int rc = weft_sleep(1);
    *result = weft_int(7);
    return rc;
}

Test(api, run_until_complete_of_a_task_future, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, answer_body, NULL, &t));
    EXPECT_OK(weft_loop_run_until_complete(&loop, weft_task_future(t)));
    void *r = NULL;
    EXPECT_OK(weft_task_result(t, &r));
    cr_expect_eq(weft_to_int(r), 7);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_loop_t *g_loop;
static weft_future_t *g_fut;
static int g_rc;

static int reenter_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_rc = weft_loop_run_until_complete(g_loop, g_fut);
    return 0;
}

static void stop_cb(void *arg)
{
    weft_loop_stop(arg);
}

Test(api, run_until_complete_misuse, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop, other;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_loop_init(&other, NULL));
    weft_future_t *f, *g;
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_new(&other, &g));

    EXPECT_RC(weft_loop_run_until_complete(&loop, NULL), UV_EINVAL);
    EXPECT_RC(weft_loop_run_until_complete(NULL, f), UV_EINVAL); /* no loop here */
    EXPECT_RC(weft_loop_run_until_complete(&loop, g), WEFT_EWRONGLOOP);
    /* Nothing will complete f: the loop runs dry first. */
    EXPECT_RC(weft_loop_run_until_complete(&loop, f), WEFT_EPENDING);
    /* Stopped before f is done. */
    weft_task_t *sleeper;
    ASSERT_OK(weft_spawn(&loop, sleep_forever_body, NULL, &sleeper));
    ASSERT_OK(weft_call_later(&loop, 1, stop_cb, &loop, NULL));
    EXPECT_RC(weft_loop_run_until_complete(&loop, f), WEFT_EPENDING);
    /* From inside the loop: re-entrant. */
    g_loop = &loop;
    g_fut = f;
    ASSERT_OK(weft_spawn(&loop, reenter_body, NULL, NULL));
    ASSERT_OK(weft_future_set_result(f, NULL));
    EXPECT_OK(weft_loop_run_until_complete(&loop, f));
    cr_expect_eq(g_rc, WEFT_EREENTRANT, "got %d", g_rc);
    weft_task_unref(sleeper);
    weft_future_unref(f);
    weft_future_unref(g);
    finish_loop(&loop);
    EXPECT_OK(weft_loop_close(&other));
    /* Closed. */
    EXPECT_RC(weft_loop_run_until_complete(&loop, f), WEFT_ECLOSED);
}

/* ==== weft_loop_stop_threadsafe ============================================ */

static void *stopper_thread(void *arg)
{
    sleep_ms(20);
    cr_expect_eq(weft_loop_stop_threadsafe(arg), 0);
    cr_expect_eq(weft_loop_stop_threadsafe(NULL), UV_EINVAL); /* no loop here */
    return NULL;
}

Test(api, stop_threadsafe_ends_a_run_from_another_thread, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, sleep_forever_body, NULL, &t));
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stopper_thread, &loop), 0);
    EXPECT_OK(weft_loop_run(&loop)); /* returns only because of the stop */
    pthread_join(th, NULL);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_SUSPENDED);
    weft_task_unref(t);
    finish_loop(&loop);
    EXPECT_RC(weft_loop_stop_threadsafe(&loop), WEFT_ECLOSED);
}

static int g_ticks;
static void count_cb(void *arg)
{
    (void)arg;
    g_ticks++;
}

Test(api, stop_threadsafe_before_a_run_and_twice_stops_one_run, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, sleep_forever_body, NULL, &t));
    EXPECT_OK(weft_loop_stop_threadsafe(&loop));
    EXPECT_OK(weft_loop_stop_threadsafe(&loop));
    EXPECT_OK(weft_loop_run(&loop)); /* both taken in its first tick */
    /* The next run is not stopped: it runs the timer, then is stopped by it. */
    ASSERT_OK(weft_call_later(&loop, 10, count_cb, NULL, NULL));
    ASSERT_OK(weft_call_later(&loop, 20, stop_cb, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_ticks, 1);
    weft_task_unref(t);
    finish_loop(&loop);
}

/* ==== signal handlers ========================================================= */

static int g_sig_seen, g_sig_other;

static void sig_set_future(int signum, void *arg)
{
    cr_expect_eq(signum, SIGUSR1);
    cr_expect_not_null(weft_loop_current(), "a handler runs on the loop");
    cr_expect_null(weft_task_current(), "a handler is a callback, not a task");
    g_sig_seen++;
    if (!weft_future_done(arg))
        cr_expect_eq(weft_future_set_result(arg, NULL), 0);
}

static void sig_other(int signum, void *arg)
{
    (void)signum;
    (void)arg;
    g_sig_other++;
}

static int raise_and_wait_body(void *arg, void **result)
{
    (void)result;
    if (raise(SIGUSR1) != 0)
        return UV_EIO;
    return weft_await_timeout(arg, WAIT_MS, NULL);
}

Test(api, signal_raised_on_the_loop_thread_runs_the_handler, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_future_t *f;
    ASSERT_OK(weft_future_new(&loop, &f));
    /* Replacing: the second handler for the signal is the one that runs. */
    ASSERT_OK(weft_loop_add_signal_handler(&loop, SIGUSR1, sig_other, NULL));
    ASSERT_OK(weft_loop_add_signal_handler(&loop, SIGUSR1, sig_set_future, f));
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, raise_and_wait_body, f, &t));
    EXPECT_OK(weft_loop_run_until_complete(&loop, weft_task_future(t)));
    EXPECT_OK(weft_task_result(t, NULL));
    cr_expect_eq(g_sig_seen, 1);
    cr_expect_eq(g_sig_other, 0);
    EXPECT_OK(weft_loop_remove_signal_handler(&loop, SIGUSR1));
    EXPECT_RC(weft_loop_remove_signal_handler(&loop, SIGUSR1), UV_ENOENT);
    /* Added again: the stopped watcher is reused. */
    ASSERT_OK(weft_loop_add_signal_handler(&loop, SIGUSR1, sig_other, NULL));
    EXPECT_OK(weft_loop_remove_signal_handler(&loop, SIGUSR1));
    weft_task_unref(t);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

static void *kill_thread(void *arg)
{
    (void)arg;
    sleep_ms(10);
    cr_expect_eq(kill(getpid(), SIGUSR1), 0);
    return NULL;
}

static int wait_body(void *arg, void **result)
{
    (void)result;
    return weft_await_timeout(arg, WAIT_MS, NULL);
}

Test(api, signal_sent_from_another_thread_runs_the_handler_on_the_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_future_t *f;
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_loop_add_signal_handler(&loop, SIGUSR1, sig_set_future, f));
    /* A task awaits what the handler sets: the live task keeps the run. */
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, wait_body, f, &t));
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, kill_thread, NULL), 0);
    EXPECT_OK(weft_loop_run_until_complete(&loop, weft_task_future(t)));
    pthread_join(th, NULL);
    EXPECT_OK(weft_task_result(t, NULL));
    cr_expect_eq(g_sig_seen, 1);
    weft_task_unref(t);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop)); /* closes the handler too */
}

Test(api, a_signal_handler_does_not_keep_the_loop_running, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_loop_add_signal_handler(&loop, SIGUSR2, sig_other, NULL));
    EXPECT_OK(weft_loop_run(&loop)); /* returns: no work */
    weft_loop_stats_t st;
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0);
    EXPECT_OK(weft_loop_close(&loop)); /* with the handler still installed */
}

static int g_busy_iters;

static int busy_raise_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    if (raise(SIGUSR1) != 0)
        return UV_EIO;
    /* Never idle: the loop always has ready work, yet the handler runs. */
    while (g_sig_other == 0 && g_busy_iters < 10000000) {
        g_busy_iters++;
        int rc = weft_yield();
        if (rc != 0)
            return rc;
    }
    return g_sig_other > 0 ? 0 : UV_ETIMEDOUT;
}

Test(api, a_signal_reaches_a_loop_that_is_never_idle, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_loop_add_signal_handler(&loop, SIGUSR1, sig_other, NULL));
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, busy_raise_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, NULL));
    cr_expect_eq(g_sig_other, 1);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

static void *add_from_thread(void *arg)
{
    g_rc = weft_loop_add_signal_handler(arg, SIGUSR2, sig_other, NULL);
    int rc2 = weft_loop_remove_signal_handler(arg, SIGUSR2);
    if (g_rc == 0)
        g_rc = rc2;
    return NULL;
}

static int wrong_thread_body(void *arg, void **result)
{
    (void)result;
    pthread_t th;
    if (pthread_create(&th, NULL, add_from_thread, arg) != 0)
        return UV_EIO;
    pthread_join(th, NULL); /* blocks the loop briefly: fine in a test */
    return 0;
}

Test(api, signal_handler_misuse, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    EXPECT_RC(weft_loop_add_signal_handler(NULL, SIGUSR1, sig_other, NULL), UV_EINVAL);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_RC(weft_loop_add_signal_handler(&loop, SIGUSR1, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_loop_add_signal_handler(&loop, 0, sig_other, NULL), UV_EINVAL);
    EXPECT_RC(weft_loop_add_signal_handler(&loop, SIGKILL, sig_other, NULL), UV_EINVAL);
    EXPECT_RC(weft_loop_add_signal_handler(&loop, SIGSTOP, sig_other, NULL), UV_EINVAL);
    EXPECT_RC(weft_loop_add_signal_handler(&loop, 100000, sig_other, NULL), UV_EINVAL);
    EXPECT_RC(weft_loop_remove_signal_handler(&loop, SIGUSR2), UV_ENOENT);
    EXPECT_RC(weft_loop_remove_signal_handler(&loop, -1), UV_EINVAL);
    g_rc = 1;
    ASSERT_OK(weft_spawn(&loop, wrong_thread_body, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_rc, WEFT_EWRONGLOOP, "got %d", g_rc);
    EXPECT_OK(weft_loop_close(&loop));
    EXPECT_RC(weft_loop_add_signal_handler(&loop, SIGUSR1, sig_other, NULL), WEFT_ECLOSED);
    EXPECT_RC(weft_loop_remove_signal_handler(&loop, SIGUSR1), WEFT_ECLOSED);
}

/* ==== task-local storage ====================================================== */

static int g_freed;
static void count_free(void *v)
{
    (void)v;
    g_freed++;
}
static void *dup_str(void *v)
{
    return strdup(v);
}

static weft_task_key_t k_plain, k_copy, k_local;
static int g_child_rc;

static int child_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    /* Copies of the parent's values at the spawn. */
    cr_expect_eq(weft_to_int(weft_task_local_get(k_plain)), 1);
    const char *s = weft_task_local_get(k_copy);
    cr_expect(s != NULL && strcmp(s, "parent") == 0);
    cr_expect_null(weft_task_local_get(k_local), "no_inherit: not copied");
    /* The child's own changes stay its own. */
    g_child_rc = weft_task_local_set(k_copy, strdup("child"));
    return weft_task_local_set(k_plain, weft_int(2));
}

static int parent_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    cr_expect_null(weft_task_local_get(k_plain), "a task starts with no values");
    int rc = weft_task_local_set(k_plain, weft_int(1));
    rc = rc ? rc : weft_task_local_set(k_copy, strdup("parent"));
    rc = rc ? rc : weft_task_local_set(k_local, weft_int(3));
    if (rc != 0)
        return rc;
    weft_task_t *c;
    rc = weft_spawn(NULL, child_body, NULL, &c);
    if (rc != 0)
        return rc;
    /* Set after the spawn: the child does not see it. */
    rc = weft_task_local_set(k_local, weft_int(4)); /* replaces 3: one destructor */
    if (rc != 0)
        return rc;
    rc = weft_await_task(c, NULL);
    weft_task_unref(c);
    cr_expect_eq(weft_to_int(weft_task_local_get(k_plain)), 1);
    cr_expect_str_eq((const char *)weft_task_local_get(k_copy), "parent");
    cr_expect_eq(weft_to_int(weft_task_local_get(k_local)), 4);
    /* The same pointer again: no destructor. */
    int rc2 = weft_task_local_set(k_local, weft_int(4));
    return rc ? rc : rc2;
}

Test(api, task_locals_are_per_task_inherited_as_copies_and_destroyed_at_the_end,
     .timeout = TEST_TIMEOUT_S)
{
    ASSERT_OK(weft_task_key_new(count_free, &k_plain)); /* shallow */
    ASSERT_OK(weft_task_key_new_ex(free, &(weft_task_key_opts_t){.copy = dup_str}, &k_copy));
    ASSERT_OK(
        weft_task_key_new_ex(count_free, &(weft_task_key_opts_t){.no_inherit = true}, &k_local));
    cr_expect_neq(k_plain.weft__id, k_copy.weft__id);
    EXPECT_OK(weft_run(parent_body, NULL, NULL));
    EXPECT_OK(g_child_rc);
    /* k_plain: 1 held by two tasks (destroyed once by each) and the child's
     * 2 (which replaced its 1: once more); k_local: 3 replaced, 4 at the end. */
    cr_expect_eq(g_freed, 3 + 2, "destructors ran %d times", g_freed);
}

static int inherit_none_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    cr_expect_null(weft_task_local_get(k_plain), "spawned from a callback: nothing inherited");
    return 0;
}

static void spawn_from_cb(void *arg)
{
    (void)arg;
    cr_expect_null(weft_task_local_get(k_plain));
    cr_expect_eq(weft_task_local_set(k_plain, weft_int(1)), WEFT_ENOTASK);
    cr_expect_eq(weft_spawn(NULL, inherit_none_body, NULL, NULL), 0);
}

static int locals_then_callback_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_task_local_set(k_plain, weft_int(9));
    if (rc != 0)
        return rc;
    return weft_call_soon(NULL, spawn_from_cb, NULL, NULL); /* spawns from a callback */
}

Test(api, task_local_misuse_and_no_inheritance_outside_tasks, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_RC(weft_task_key_new(NULL, NULL), UV_EINVAL);
    ASSERT_OK(weft_task_key_new(count_free, &k_plain));
    EXPECT_RC(weft_task_local_set(k_plain, weft_int(1)), WEFT_ENOTASK);
    cr_expect_null(weft_task_local_get(k_plain));
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_call_soon(&loop, spawn_from_cb, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    ASSERT_OK(weft_spawn(&loop, locals_then_callback_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

static int bad_key_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_key_t none = {0}, bogus = {WEFT_TASK_KEYS_MAX + 1};
    cr_expect_eq(weft_task_local_set(none, weft_int(1)), UV_EINVAL);
    cr_expect_eq(weft_task_local_set(bogus, weft_int(1)), UV_EINVAL);
    cr_expect_null(weft_task_local_get(none));
    cr_expect_eq(weft_task_local_set(k_plain, NULL), 0, "clearing what was never set");
    return 0;
}

Test(api, task_local_keys_run_out_at_the_maximum, .timeout = TEST_TIMEOUT_S)
{
    weft_task_key_t k;
    int made = 0, rc;
    while ((rc = weft_task_key_new(NULL, &k)) == 0)
        made++;
    cr_expect_eq(rc, UV_ENOSPC);
    cr_expect_leq(made, WEFT_TASK_KEYS_MAX);
    cr_expect_gt(made, 0);
    cr_expect_eq(k.weft__id, 0u, "a failed key_new leaves an invalid key");
    k_plain = (weft_task_key_t){WEFT_TASK_KEYS_MAX}; /* made above */
    EXPECT_OK(weft_run(bad_key_body, NULL, NULL));
}

/* ==== task names =============================================================== */

static int named_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_sleep(1);
}

static void *rename_from_thread(void *arg)
{
    g_rc = weft_task_set_name(arg, "x");
    return NULL;
}

static int rename_wrong_thread_body(void *arg, void **result)
{
    (void)result;
    pthread_t th;
    if (pthread_create(&th, NULL, rename_from_thread, arg) != 0)
        return UV_EIO;
    pthread_join(th, NULL);
    return 0;
}

Test(api, task_set_name_copies_and_shows_in_dump_and_labels, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_task_t *t;
    ASSERT_OK(weft_spawn_ex(&loop, named_body, NULL, &(weft_task_opts_t){.name = "literal"}, &t));
    cr_expect_str_eq(weft_task_name(t), "literal");
    char buf[32];
    snprintf(buf, sizeof buf, "worker-%d", 17);
    EXPECT_OK(weft_task_set_name(t, buf));
    EXPECT_OK(weft_task_set_name(t, buf)); /* twice: the first copy is freed */
    memset(buf, 'z', sizeof buf - 1);      /* the task kept its own copy */
    cr_expect_str_eq(weft_task_name(t), "worker-17");
    char label[160];
    weft__task_label(t, label, sizeof label);
    cr_expect(strstr(label, "\"worker-17\"") != NULL, "label: %s", label);
    char *dump = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&dump, &len);
    cr_assert_not_null(out);
    cr_expect_eq(weft_loop_dump(&loop, out), 1);
    fclose(out);
    cr_expect(strstr(dump, "worker-17") != NULL, "dump: %s", dump);
    free(dump);
    EXPECT_RC(weft_task_set_name(NULL, "x"), UV_EINVAL);
    g_rc = 1;
    ASSERT_OK(weft_spawn(&loop, rename_wrong_thread_body, t, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_rc, WEFT_EWRONGLOOP, "got %d", g_rc);
    /* Finished and still referenced: renaming works; NULL clears. */
    EXPECT_OK(weft_task_set_name(t, "after"));
    cr_expect_str_eq(weft_task_name(t), "after");
    EXPECT_OK(weft_task_set_name(t, NULL));
    cr_expect_str_eq(weft_task_name(t), "");
    EXPECT_OK(weft_task_set_name(t, "again"));
    weft_task_unref(t); /* recycled: the copy is freed (ASan/LSan check) */
    /* The slot's next task has no name. */
    ASSERT_OK(weft_spawn(&loop, named_body, NULL, &t));
    cr_expect_str_eq(weft_task_name(t), "");
    weft_task_unref(t);
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_loop_close(&loop));
}

/* ==== result destructors ======================================================== */

static int g_rfreed;
static void result_free(void *r)
{
    g_rfreed++;
    free(r);
}

static int malloc_result_body(void *arg, void **result)
{
    (void)arg;
    *result = malloc(16);
    return weft_sleep(1);
}

Test(api, future_result_dtor_frees_an_unread_result_only, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_future_t *f;
    /* Unread: freed at release. */
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_result_dtor(f, result_free));
    EXPECT_OK(weft_future_set_result_dtor(f, result_free)); /* twice: same */
    ASSERT_OK(weft_future_set_result(f, malloc(8)));
    EXPECT_RC(weft_future_set_result(f, NULL), UV_EINVAL); /* stays the caller's (NULL) */
    weft_future_unref(f);
    cr_expect_eq(g_rfreed, 1);
    /* Read: the reader's. */
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_result_dtor(f, result_free));
    void *mine = malloc(8);
    ASSERT_OK(weft_future_set_result(f, mine));
    void *r = NULL;
    EXPECT_OK(weft_future_result(f, &r));
    cr_expect_eq(r, mine);
    weft_future_unref(f);
    cr_expect_eq(g_rfreed, 1);
    free(mine);
    /* Cleared, or cancelled: nothing. */
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_result_dtor(f, result_free));
    EXPECT_OK(weft_future_set_result_dtor(f, NULL));
    EXPECT_OK(weft_future_cancel(f));
    weft_future_unref(f);
    cr_expect_eq(g_rfreed, 1);
    /* A task's future whose result nobody reads. */
    weft_task_t *t;
    ASSERT_OK(weft_spawn(&loop, malloc_result_body, NULL, &t));
    EXPECT_OK(weft_future_set_result_dtor(weft_task_future(t), result_free));
    EXPECT_OK(weft_loop_run(&loop));
    weft_task_unref(t);
    cr_expect_eq(g_rfreed, 2);
    EXPECT_RC(weft_future_set_result_dtor(NULL, result_free), UV_EINVAL);
    EXPECT_OK(weft_loop_close(&loop));
}

static weft_future_token_t g_tok;
static void *late_result_thread(void *arg)
{
    (void)arg;
    cr_expect_eq(weft_future_set_result_threadsafe(g_tok, malloc(4)), 0);
    return NULL;
}

static void *set_dtor_from_thread(void *arg)
{
    g_rc = weft_future_set_result_dtor(arg, result_free);
    return NULL;
}

static int late_body(void *arg, void **result)
{
    (void)result;
    weft_future_t *f = arg;
    pthread_t th;
    if (pthread_create(&th, NULL, set_dtor_from_thread, f) != 0)
        return UV_EIO;
    pthread_join(th, NULL);
    int rc = weft_future_token(f, &g_tok);
    if (rc != 0)
        return rc;
    weft_future_cancel(f); /* done before the thread's result comes */
    if (pthread_create(&th, NULL, late_result_thread, NULL) != 0)
        return UV_EIO;
    pthread_join(th, NULL);
    return weft_sleep(5); /* the message is taken meanwhile */
}

Test(api, future_result_dtor_frees_a_late_threadsafe_result, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    weft_future_t *f;
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_result_dtor(f, result_free));
    g_rc = 1;
    ASSERT_OK(weft_spawn(&loop, late_body, f, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_rc, WEFT_EWRONGLOOP, "got %d", g_rc);
    cr_expect_eq(g_rfreed, 1);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

/* ==== queue item destructors ====================================================== */

Test(api, queue_item_dtor_frees_what_shutdown_and_close_discard, .timeout = TEST_TIMEOUT_S)
{
    weft_queue_opts_t qo = {.item_dtor = result_free};
    for (int kind = WEFT_QUEUE_FIFO; kind <= WEFT_QUEUE_PRIORITY; kind++) {
        g_rfreed = 0;
        weft_queue_t q;
        ASSERT_OK(weft_queue_init_ex(&q, (weft_queue_kind_t)kind, 0, &qo));
        for (int i = 0; i < 5; i++)
            ASSERT_OK(weft_queue_put_prio_try(&q, 5 - i, malloc(8)));
        void *item;
        ASSERT_OK(weft_queue_get_try(&q, &item, NULL)); /* the getter's */
        free(item);
        cr_expect_eq(weft_queue_shutdown(&q, true), 4);
        cr_expect_eq(g_rfreed, 4, "kind %d: %d freed", kind, g_rfreed);
        cr_expect_eq(weft_queue_shutdown(&q, true), 0, "again: nothing left");
        EXPECT_RC(weft_queue_put_try(&q, &qo), WEFT_ECLOSED); /* stays the caller's */
        EXPECT_OK(weft_queue_close(&q));
        cr_expect_eq(g_rfreed, 4);

        /* Close frees what is still queued; a wrapped ring too. */
        ASSERT_OK(weft_queue_init_ex(&q, (weft_queue_kind_t)kind, 4, &qo));
        for (int i = 0; i < 4; i++)
            ASSERT_OK(weft_queue_put_prio_try(&q, i, malloc(8)));
        ASSERT_OK(weft_queue_get_try(&q, &item, NULL));
        free(item);
        ASSERT_OK(weft_queue_put_prio_try(&q, 9, malloc(8)));
        EXPECT_OK(weft_queue_close(&q));
        cr_expect_eq(g_rfreed, 8);
        EXPECT_OK(weft_queue_close(&q)); /* twice: nothing left */
    }
    weft_queue_t q;
    ASSERT_OK(weft_queue_init_ex(&q, WEFT_QUEUE_FIFO, 0, NULL)); /* NULL = defaults */
    EXPECT_OK(weft_queue_close(&q));
    EXPECT_RC(weft_queue_init_ex(NULL, WEFT_QUEUE_FIFO, 0, &qo), UV_EINVAL);
}

/* ==== weft_foreign_t =================================================================== */

static weft_loop_t *g_freed_on;
static pthread_t g_freed_thread;
static void foreign_dtor(void *p)
{
    g_freed_on = weft_loop_current();
    g_freed_thread = pthread_self();
    free(p);
}

static void *foreign_free_thread(void *arg)
{
    cr_expect_eq(weft_foreign_free(arg), 0);
    return NULL;
}

static int foreign_body(void *arg, void **result)
{
    (void)result;
    weft_foreign_t *f;
    int rc = weft_foreign_new(NULL, malloc(8), foreign_dtor, &f);
    if (rc != 0)
        return rc;
    cr_expect_eq(weft_foreign_owner(f), weft_loop_current());
    pthread_t th;
    if (pthread_create(&th, NULL, foreign_free_thread, f) != 0)
        return UV_EIO;
    pthread_join(th, NULL);
    cr_expect_null(g_freed_on, "not run on the freeing thread");
    rc = weft_sleep(5); /* the owner takes the message */
    cr_expect_eq(g_freed_on, arg);
    cr_expect(pthread_equal(g_freed_thread, pthread_self()));
    /* On the owner: at once. */
    g_freed_on = NULL;
    int rc2 = weft_foreign_new(NULL, malloc(8), foreign_dtor, &f);
    if (rc2 == 0) {
        rc2 = weft_foreign_free(f);
        cr_expect_eq(g_freed_on, arg);
    }
    return rc ? rc : rc2;
}

Test(api, foreign_free_runs_the_destructor_on_the_owner_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, foreign_body, &loop, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    weft_foreign_t *f;
    int x = 5;
    EXPECT_RC(weft_foreign_new(NULL, &x, foreign_dtor, &f), UV_EINVAL); /* no loop here */
    EXPECT_RC(weft_foreign_new(&loop, &x, NULL, &f), UV_EINVAL);
    EXPECT_RC(weft_foreign_new(&loop, &x, foreign_dtor, NULL), UV_EINVAL);
    EXPECT_RC(weft_foreign_free(NULL), UV_EINVAL);
    cr_expect_null(weft_foreign_get(NULL));
    ASSERT_OK(weft_foreign_new(&loop, &x, foreign_dtor, &f));
    cr_expect_eq(weft_foreign_get(f), &x);
    EXPECT_OK(weft_loop_close(&loop));
    EXPECT_RC(weft_foreign_free(f), WEFT_ECLOSED); /* still ours */
    cr_expect_eq(weft_foreign_take(f), &x);
    cr_expect_null(weft_foreign_take(NULL));
}

/* ==== runtime statistics ============================================================== */

#define N_SUBMITS 20
static int g_dfreed; /* atomic */

static void late_free(void *r)
{
    __atomic_fetch_add(&g_dfreed, 1, __ATOMIC_RELAXED);
    free(r);
}

static int remote_body(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(1);
    return 0;
}

static int g_started; /* atomic */

static int slow_malloc_body(void *arg, void **result)
{
    (void)arg;
    __atomic_store_n(&g_started, 1, __ATOMIC_RELEASE);
    int rc = weft_nocancel_begin();
    if (rc != 0)
        return rc;
    rc = weft_sleep(20); /* in a no-cancel region: the cancel waits */
    weft_nocancel_end();
    *result = malloc(8);
    return rc == 0 ? 0 : rc;
}

static void noop_cb(void *arg)
{
    (void)arg;
}

static volatile int g_reader_stop; /* atomic */

static void *stats_reader(void *arg)
{
    weft_runtime_loop_stats_t st[2];
    while (!__atomic_load_n(&g_reader_stop, __ATOMIC_ACQUIRE)) {
        cr_expect_eq(weft_runtime_stats(arg, 2, st), 2);
        sched_yield();
    }
    return NULL;
}

static int stats_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    weft_loop_t *l1 = weft_runtime_loop(rt, 1);
    pthread_t th;
    if (pthread_create(&th, NULL, stats_reader, rt) != 0)
        return UV_EIO;
    int rc = 0;
    weft_future_t *f[N_SUBMITS];
    for (int i = 0; i < N_SUBMITS && rc == 0; i++)
        rc = weft_submit_to(l1, remote_body, NULL, &f[i]);
    weft_runtime_loop_stats_t st[2];
    if (rc == 0) {
        cr_expect_eq(weft_runtime_stats(rt, 2, st), 2);
        cr_expect_eq(st[0].submits_inflight, N_SUBMITS);
    }
    for (int i = 0; i < N_SUBMITS; i++) {
        rc = rc ? rc : weft_await(f[i], NULL);
        weft_future_unref(f[i]);
    }
    /* A burst of calls into a ring of 4 slots overflows. */
    for (int i = 0; i < 64 && rc == 0; i++)
        rc = weft_call_on(l1, noop_cb, NULL);
    rc = rc ? rc : weft_sleep(20);
    /* A cancelled submit's late result goes to the destructor. */
    weft_future_t *g;
    rc = rc ? rc : weft_submit_to(l1, slow_malloc_body, NULL, &g);
    if (rc == 0) {
        rc = weft_future_set_result_dtor(g, late_free);
        /* Cancel once it runs (a task cancelled before it starts never
         * produces a result). */
        for (int i = 0; i < 5000 && !__atomic_load_n(&g_started, __ATOMIC_ACQUIRE); i++)
            rc = rc ? rc : weft_sleep(1);
        weft_future_cancel(g);
        for (int i = 0; i < 500 && __atomic_load_n(&g_dfreed, __ATOMIC_RELAXED) == 0; i++)
            rc = rc ? rc : weft_sleep(2);
        weft_future_unref(g);
    }
    cr_expect_eq(__atomic_load_n(&g_dfreed, __ATOMIC_RELAXED), 1);
    __atomic_store_n(&g_reader_stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    cr_expect_eq(weft_runtime_stats(rt, 2, st), 2);
    cr_expect_geq(st[0].mesh_sent, N_SUBMITS + 64 + 1);
    cr_expect_geq(st[1].mesh_received, N_SUBMITS + 64 + 1);
    cr_expect_geq(st[1].mesh_sent, N_SUBMITS + 1); /* the replies */
    cr_expect_geq(st[0].mesh_received, N_SUBMITS + 1);
    cr_expect_gt(st[0].ring_overflows, 0);
    cr_expect_eq(st[0].overflow_depth, 0);
    cr_expect_eq(st[0].submits_inflight, 0);
    cr_expect_eq(st[1].submits_inflight, 0);
    EXPECT_RC(weft_runtime_stats(NULL, 2, st), UV_EINVAL);
    EXPECT_RC(weft_runtime_stats(rt, 2, NULL), UV_EINVAL);
    cr_expect_eq(weft_runtime_stats(rt, 0, NULL), 2);
    cr_expect_eq(weft_runtime_stats(rt, 1, st), 2);
    return rc;
}

Test(api, runtime_stats_count_mesh_traffic_and_overflows, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_opts_t o = {
        .loops = 2, .no_pinning = true, .no_arenas = NO_ARENAS, .ring_size = 4};
    EXPECT_OK(weft_runtime_run(stats_main, NULL, &o, NULL));
}

/*
 * tests/future_test.c - one-shot futures (weft/future.h): completion rules,
 * done callbacks, the *_threadsafe completions, and awaiting a future owned by
 * another loop on another thread.
 *
 * Every test ends by running what is left on its loop(s) and closing them,
 * expecting 0. Values computed on other threads are stored and checked on the
 * test's thread after a join, never asserted from the other thread.
 *
 * Also built as a plain program for TSan (tests/plain_test.h): there all tests
 * share one process, so each test resets the file's globals (.init).
 */
#include "plain_test.h"
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <weft/weft.h>

#include "core/testhooks.h"

static void reset_globals(void);

static void run_and_close(weft_loop_t *loop)
{
    EXPECT_OK(weft_loop_run(loop));
    EXPECT_OK(weft_loop_close(loop));
}

/* Done callbacks record (arg, what the future looked like) in run order. */
#define MAX_CALLS 64
static struct call {
    int id;
    weft_future_t *f;
    bool done;
    int result_rc;
} g_calls[MAX_CALLS];
static int g_ncalls;

static void record_done_cb(weft_future_t *f, void *arg)
{
    if (g_ncalls < MAX_CALLS) {
        g_calls[g_ncalls].id = (int)weft_to_int(arg);
        g_calls[g_ncalls].f = f;
        g_calls[g_ncalls].done = weft_future_done(f);
        g_calls[g_ncalls].result_rc = weft_future_result(f, NULL);
    }
    g_ncalls++;
}

static void other_done_cb(weft_future_t *f, void *arg)
{
    record_done_cb(f, weft_int(1000 + weft_to_int(arg)));
}

/* --- completion ----------------------------------------------------------- */

Test(future, set_result_then_result_returns_it, .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    cr_expect_eq(weft_future_loop(f), &loop);
    cr_expect_not(weft_future_done(f));
    EXPECT_OK(weft_future_set_result(f, weft_int(42)));
    cr_expect(weft_future_done(f));
    cr_expect_not(weft_future_cancelled(f));
    EXPECT_OK(weft_future_result(f, &v));
    cr_expect_eq(weft_to_int(v), 42);
    cr_expect_null(weft_future_message(f));
    /* A NULL result pointer is allowed when only the outcome matters. */
    EXPECT_OK(weft_future_result(f, NULL));
    weft_future_unref(f);
    run_and_close(&loop);
}

Test(future, set_error_copies_the_message_and_result_returns_the_code, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f, *g;
    char msg[32];
    void *v = weft_int(7);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_new(&loop, &g));

    strcpy(msg, "disk on fire");
    EXPECT_OK(weft_future_set_error(f, UV_EIO, msg));
    memset(msg, 'X', sizeof msg - 1);
    cr_expect(weft_future_done(f));
    cr_expect_not(weft_future_cancelled(f));
    EXPECT_RC(weft_future_result(f, &v), UV_EIO);
    cr_assert_not_null(weft_future_message(f));
    cr_expect_str_eq(weft_future_message(f), "disk on fire");

    /* A NULL message is allowed: the error then has none. */
    EXPECT_OK(weft_future_set_error(g, UV_EPIPE, NULL));
    EXPECT_RC(weft_future_result(g, NULL), UV_EPIPE);
    cr_expect_null(weft_future_message(g));

    weft_future_unref(f);
    weft_future_unref(g);
    run_and_close(&loop);
}

Test(future, second_completion_returns_einval_and_keeps_the_first_outcome, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f, *g;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_new(&loop, &g));

    EXPECT_OK(weft_future_set_result(f, weft_int(1)));
    EXPECT_RC(weft_future_set_result(f, weft_int(2)), UV_EINVAL);
    EXPECT_RC(weft_future_set_error(f, UV_EIO, "late"), UV_EINVAL);
    EXPECT_OK(weft_future_result(f, &v));
    cr_expect_eq(weft_to_int(v), 1);
    cr_expect_null(weft_future_message(f));

    EXPECT_OK(weft_future_set_error(g, UV_EIO, "first"));
    EXPECT_RC(weft_future_set_error(g, UV_EPIPE, "second"), UV_EINVAL);
    EXPECT_RC(weft_future_set_result(g, weft_int(3)), UV_EINVAL);
    EXPECT_RC(weft_future_result(g, NULL), UV_EIO);
    cr_expect_str_eq(weft_future_message(g), "first");

    weft_future_unref(f);
    weft_future_unref(g);
    run_and_close(&loop);
}

Test(future, cancel_pending_returns_0_and_cancel_done_returns_edone, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f, *g;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_new(&loop, &g));

    EXPECT_OK(weft_future_cancel(f));
    cr_expect(weft_future_done(f));
    cr_expect(weft_future_cancelled(f));
    EXPECT_RC(weft_future_result(f, &v), UV_ECANCELED);
    EXPECT_RC(weft_future_cancel(f), WEFT_EDONE);
    EXPECT_RC(weft_future_set_result(f, weft_int(1)), UV_EINVAL);
    cr_expect(weft_future_cancelled(f));

    EXPECT_OK(weft_future_set_result(g, weft_int(5)));
    EXPECT_RC(weft_future_cancel(g), WEFT_EDONE);
    cr_expect_not(weft_future_cancelled(g));
    EXPECT_OK(weft_future_result(g, &v));
    cr_expect_eq(weft_to_int(v), 5);

    weft_future_unref(f);
    weft_future_unref(g);
    run_and_close(&loop);
}

Test(future, result_of_a_pending_future_returns_epending, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    void *v = weft_int(9);
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_RC(weft_future_result(f, &v), WEFT_EPENDING);
    cr_expect_not(weft_future_done(f));
    cr_expect_not(weft_future_cancelled(f));
    cr_expect_null(weft_future_message(f));
    weft_future_unref(f);
    run_and_close(&loop);
}

Test(future, set_error_with_a_code_that_is_not_negative_returns_einval, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_RC(weft_future_set_error(f, 0, "zero"), UV_EINVAL);
    EXPECT_RC(weft_future_set_error(f, 5, "positive"), UV_EINVAL);
    cr_expect_not(weft_future_done(f), "a refused completion changes nothing");
    EXPECT_RC(weft_future_result(f, NULL), WEFT_EPENDING);
    weft_future_unref(f);
    run_and_close(&loop);
}

Test(future, null_arguments_return_einval, .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    void *v;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));

    /* No loop given and none running. */
    weft_future_t *none = NULL;
    EXPECT_RC(weft_future_new(NULL, &none), UV_EINVAL);

    EXPECT_RC(weft_future_set_result(NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_future_set_error(NULL, UV_EIO, "x"), UV_EINVAL);
    EXPECT_RC(weft_future_result(NULL, &v), UV_EINVAL);
    EXPECT_RC(weft_future_add_done_callback(NULL, record_done_cb, NULL), UV_EINVAL);
    EXPECT_RC(weft_future_add_done_callback(f, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_future_remove_done_callback(NULL, record_done_cb, NULL), UV_EINVAL);
    weft_future_token_t empty = {0}, tok;
    EXPECT_RC(weft_future_set_result_threadsafe(empty, NULL), UV_EINVAL);
    EXPECT_RC(weft_future_set_error_threadsafe(empty, UV_EIO, "x"), UV_EINVAL);
    EXPECT_RC(weft_future_cancel_threadsafe(empty), UV_EINVAL);
    EXPECT_RC(weft_future_token_drop(empty), UV_EINVAL);
    EXPECT_RC(weft_future_token(NULL, &tok), UV_EINVAL);
    EXPECT_RC(weft_future_token(f, NULL), UV_EINVAL);
    /* A non-negative code is not an error, whatever the token. */
    ASSERT_OK(weft_future_token(f, &tok));
    EXPECT_RC(weft_future_set_error_threadsafe(tok, 0, "x"), UV_EINVAL);
    EXPECT_OK(weft_future_token_drop(tok));

    cr_expect_not(weft_future_done(f));
    weft_future_unref(f);
    run_and_close(&loop);
}

Test(future, ref_keeps_a_future_readable_until_the_last_unref, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    weft_future_ref(f);
    EXPECT_OK(weft_future_set_error(f, UV_EIO, "kept"));
    weft_future_unref(f);
    EXPECT_RC(weft_future_result(f, &v), UV_EIO);
    cr_expect_str_eq(weft_future_message(f), "kept");
    weft_future_unref(f);
    run_and_close(&loop);
}

static weft_loop_t *g_new_in_task_loop;
static int g_new_in_task_rc = 1;

static int new_in_task_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_future_t *f = NULL;
    g_new_in_task_rc = weft_future_new(NULL, &f);
    if (g_new_in_task_rc == 0) {
        g_new_in_task_loop = weft_future_loop(f);
        weft_future_unref(f);
    }
    return 0;
}

Test(future, new_with_a_null_loop_uses_the_current_loop, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, new_in_task_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_new_in_task_rc);
    cr_expect_eq(g_new_in_task_loop, &loop);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- done callbacks ------------------------------------------------------- */

Test(future, done_callbacks_never_run_inline_and_run_in_registration_order, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    for (int i = 1; i <= 5; i++) {
        ASSERT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(i)));
    }
    EXPECT_OK(weft_future_set_result(f, weft_int(11)));
    cr_expect_eq(g_ncalls, 0, "done callbacks ran inline in set_result");
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_ncalls, 5);
    for (int i = 0; i < 5 && i < g_ncalls; i++) {
        cr_expect_eq(g_calls[i].id, i + 1, "position %d ran callback %d", i, g_calls[i].id);
        cr_expect_eq(g_calls[i].f, f);
        cr_expect(g_calls[i].done);
        cr_expect_eq(g_calls[i].result_rc, 0);
    }
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(future, done_callbacks_run_for_errors_and_cancellation_too, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f, *g;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_new(&loop, &g));
    ASSERT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(1)));
    ASSERT_OK(weft_future_add_done_callback(g, record_done_cb, weft_int(2)));
    EXPECT_OK(weft_future_set_error(f, UV_EIO, NULL));
    EXPECT_OK(weft_future_cancel(g));
    cr_expect_eq(g_ncalls, 0);
    EXPECT_OK(weft_loop_run(&loop));
    cr_assert_eq(g_ncalls, 2);
    /* Two futures: their callbacks' order is open under the shuffle. */
    int first = g_calls[0].id == 1 ? 0 : 1;
    cr_expect_eq(g_calls[first].id, 1);
    cr_expect_eq(g_calls[first].result_rc, UV_EIO);
    cr_expect_eq(g_calls[1 - first].id, 2);
    cr_expect_eq(g_calls[1 - first].result_rc, UV_ECANCELED);
    weft_future_unref(f);
    weft_future_unref(g);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(future, done_callback_added_after_completion_still_runs_via_call_soon, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    EXPECT_OK(weft_future_set_result(f, NULL));
    EXPECT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(1)));
    cr_expect_eq(g_ncalls, 0, "a callback on a done future still waits for the loop");
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_ncalls, 1);
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(future, remove_done_callback_returns_how_many_it_removed_and_they_never_run,
     .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(1)));
    ASSERT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(2)));
    ASSERT_OK(weft_future_add_done_callback(f, record_done_cb, weft_int(1)));
    ASSERT_OK(weft_future_add_done_callback(f, other_done_cb, weft_int(1)));

    EXPECT_RC(weft_future_remove_done_callback(f, record_done_cb, weft_int(1)), 2);
    EXPECT_RC(weft_future_remove_done_callback(f, record_done_cb, weft_int(1)), 0);
    EXPECT_RC(weft_future_remove_done_callback(f, record_done_cb, weft_int(99)), 0);

    EXPECT_OK(weft_future_set_result(f, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_ncalls, 2);
    if (g_ncalls == 2) {
        cr_expect_eq(g_calls[0].id, 2);
        cr_expect_eq(g_calls[1].id, 1001);
    }
    weft_future_unref(f);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- waking tasks --------------------------------------------------------- */

static weft_future_t *g_f;
static int g_await_rc = 1;
static void *g_await_value;
static int g_resumed;
static int g_resumed_inline;

static int waiter_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    g_await_rc = weft_await(g_f, &g_await_value);
    g_resumed = 1;
    return 0;
}

static void complete_later_cb(void *arg)
{
    (void)arg;
    int rc = weft_future_set_result(g_f, weft_int(31));
    cr_expect_eq(rc, 0);
    /* Waiting tasks are woken via call_soon, not run inside set_result. */
    g_resumed_inline = g_resumed;
}

Test(future, completion_wakes_a_waiting_task_through_the_loop_not_inline, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &g_f));
    ASSERT_OK(weft_spawn(&loop, waiter_body, NULL, NULL));
    ASSERT_OK(weft_call_later(&loop, 1, complete_later_cb, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_resumed_inline, 0, "the waiter ran inside set_result");
    cr_expect_eq(g_resumed, 1);
    EXPECT_OK(g_await_rc);
    cr_expect_eq(weft_to_int(g_await_value), 31);
    weft_future_unref(g_f);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- *_threadsafe completions ---------------------------------------------- */

enum ts_kind {
    TS_RESULT,
    TS_ERROR,
    TS_CANCEL
};

struct ts_job {
    weft_future_t *f;
    weft_future_token_t tok; /* f, for the completer thread */
    enum ts_kind kind;
    bool after_sleep; /* complete only once the loop sleeps (the task waits) */
    int post_rc;
};

/* The loop is about to block in the poller (core/testhooks.h): its task is
 * suspended in its await, and the completion must wake the loop. */
static atomic_int g_loop_slept;

static void note_sleep(void)
{
    atomic_store(&g_loop_slept, 1);
}

static void *completer_thread(void *arg)
{
    struct ts_job *job = arg;
    char msg[64];
    if (job->after_sleep) {
        while (!atomic_load(&g_loop_slept)) {
            sched_yield();
        }
    }
    switch (job->kind) {
    case TS_RESULT:
        job->post_rc = weft_future_set_result_threadsafe(job->tok, weft_int(77));
        break;
    case TS_ERROR:
        strcpy(msg, "remote end hung up");
        job->post_rc = weft_future_set_error_threadsafe(job->tok, UV_EPIPE, msg);
        /* The message must have been copied by the call. */
        memset(msg, 'X', sizeof msg - 1);
        msg[sizeof msg - 1] = '\0';
        break;
    case TS_CANCEL:
        job->post_rc = weft_future_cancel_threadsafe(job->tok);
        break;
    }
    return NULL;
}

static pthread_t g_loop_thread;
static int g_on_loop_thread;
static weft_loop_t *g_current_after_await;

static int ts_waiter_body(void *arg, void **result)
{
    (void)result;
    struct ts_job *job = arg;
    pthread_t th;
    if (pthread_create(&th, NULL, completer_thread, job) != 0) {
        return UV_EAGAIN;
    }
    g_await_rc = weft_await(job->f, &g_await_value);
    g_on_loop_thread = pthread_equal(pthread_self(), g_loop_thread);
    g_current_after_await = weft_loop_current();
    pthread_join(th, NULL);
    return 0;
}

Test(future, set_result_threadsafe_from_another_thread_wakes_the_task_on_its_loop_thread,
     .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    struct ts_job job;
    weft_task_t *t;
    memset(&job, 0, sizeof job);
    g_loop_thread = pthread_self();
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &job.f));
    ASSERT_OK(weft_future_token(job.f, &job.tok));
    job.kind = TS_RESULT;
    job.after_sleep = true;
    atomic_store(&g_loop_slept, 0);
    weft__test_sleep_hook = note_sleep;
    ASSERT_OK(weft_spawn(&loop, ts_waiter_body, &job, &t));
    EXPECT_OK(weft_loop_run(&loop));
    weft__test_sleep_hook = NULL;

    EXPECT_OK(job.post_rc);
    EXPECT_OK(g_await_rc);
    cr_expect_eq(weft_to_int(g_await_value), 77);
    cr_expect(g_on_loop_thread, "the task resumed on a thread that is not its loop's");
    cr_expect_eq(g_current_after_await, &loop);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    weft_task_unref(t);
    weft_future_unref(job.f);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(future, set_error_threadsafe_carries_the_code_and_a_copy_of_the_message, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    struct ts_job job;
    memset(&job, 0, sizeof job);
    g_loop_thread = pthread_self();
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &job.f));
    ASSERT_OK(weft_future_token(job.f, &job.tok));
    job.kind = TS_ERROR;
    job.after_sleep = true;
    atomic_store(&g_loop_slept, 0);
    weft__test_sleep_hook = note_sleep;
    ASSERT_OK(weft_spawn(&loop, ts_waiter_body, &job, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    weft__test_sleep_hook = NULL;

    EXPECT_OK(job.post_rc);
    EXPECT_RC(g_await_rc, UV_EPIPE);
    cr_expect(g_on_loop_thread);
    EXPECT_RC(weft_future_result(job.f, NULL), UV_EPIPE);
    cr_assert_not_null(weft_future_message(job.f));
    cr_expect_str_eq(weft_future_message(job.f), "remote end hung up");
    weft_future_unref(job.f);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(future, cancel_threadsafe_cancels_the_future_and_the_waiter_sees_ecanceled,
     .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    struct ts_job job;
    memset(&job, 0, sizeof job);
    g_loop_thread = pthread_self();
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &job.f));
    ASSERT_OK(weft_future_token(job.f, &job.tok));
    job.kind = TS_CANCEL;
    job.after_sleep = true;
    atomic_store(&g_loop_slept, 0);
    weft__test_sleep_hook = note_sleep;
    ASSERT_OK(weft_spawn(&loop, ts_waiter_body, &job, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    weft__test_sleep_hook = NULL;

    EXPECT_OK(job.post_rc);
    EXPECT_RC(g_await_rc, UV_ECANCELED);
    cr_expect(weft_future_cancelled(job.f));
    weft_future_unref(job.f);
    EXPECT_OK(weft_loop_close(&loop));
}

/* The plain completions are for the owner loop's thread only: from another
 * thread, while the loop runs, they are refused and change nothing. */
struct wrong_thread_job {
    weft_future_t *f;
    weft_future_token_t tok;
    int result_rc;
    int error_rc;
    int threadsafe_rc;
};

static void *wrong_thread(void *arg)
{
    struct wrong_thread_job *j = arg;
    j->result_rc = weft_future_set_result(j->f, weft_int(1));
    j->error_rc = weft_future_set_error(j->f, UV_EIO, "wrong thread");
    j->threadsafe_rc = weft_future_set_result_threadsafe(j->tok, weft_int(2));
    return NULL;
}

static int wrong_thread_waiter_body(void *arg, void **result)
{
    (void)result;
    struct wrong_thread_job *j = arg;
    pthread_t th;
    if (pthread_create(&th, NULL, wrong_thread, j) != 0) {
        return UV_EAGAIN;
    }
    g_await_rc = weft_await(j->f, &g_await_value);
    pthread_join(th, NULL);
    return 0;
}

Test(future, set_result_from_a_foreign_thread_while_the_loop_runs_returns_ewrongloop,
     .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    struct wrong_thread_job j;
    /* Outside debug mode (which aborts instead: tests/debug_test.c). */
    weft_loop_opts_t opts = {.debug = -1};
    memset(&j, 0, sizeof j);
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_future_new(&loop, &j.f));
    ASSERT_OK(weft_future_token(j.f, &j.tok));
    ASSERT_OK(weft_spawn(&loop, wrong_thread_waiter_body, &j, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_RC(j.result_rc, WEFT_EWRONGLOOP);
    EXPECT_RC(j.error_rc, WEFT_EWRONGLOOP);
    EXPECT_OK(j.threadsafe_rc);
    EXPECT_OK(g_await_rc);
    cr_expect_eq(weft_to_int(g_await_value), 2, "the refused completion changed the future");
    cr_expect_null(weft_future_message(j.f));
    weft_future_unref(j.f);
    EXPECT_OK(weft_loop_close(&loop));
}

/* A threadsafe completion of a future that is already done is ignored. The
 * thread posts a marker after the completion; the marker completes `g_marker`
 * that a task awaits, so the loop runs until the completion was handled. */
static weft_future_t *g_marker;
static int g_marker_set_rc = 1;

static void marker_cb(void *arg)
{
    (void)arg;
    g_marker_set_rc = weft_future_set_result(g_marker, NULL);
}

static int await_marker_body(void *arg, void **result)
{
    (void)arg;
    return weft_await(g_marker, result);
}

struct late_jobs {
    weft_loop_t *loop;
    weft_future_t *cancelled, *done, *failed;
    weft_future_token_t cancelled_tok, done_tok, failed_tok;
    int rc[4];
};

/* One thread, so per-thread FIFO puts the marker after the three completions. */
static void *late_completer(void *arg)
{
    struct late_jobs *j = arg;
    j->rc[0] = weft_future_set_result_threadsafe(j->cancelled_tok, weft_int(9));
    j->rc[1] = weft_future_set_error_threadsafe(j->done_tok, UV_EPIPE, "late");
    j->rc[2] = weft_future_cancel_threadsafe(j->failed_tok);
    j->rc[3] = weft_call_soon_threadsafe(j->loop, marker_cb, NULL);
    return NULL;
}

Test(future, threadsafe_completion_of_an_already_done_future_is_ignored, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    struct late_jobs j;
    pthread_t th;
    void *v = NULL;
    memset(&j, 0, sizeof j);
    j.loop = &loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &j.cancelled));
    ASSERT_OK(weft_future_new(&loop, &j.done));
    ASSERT_OK(weft_future_new(&loop, &j.failed));
    ASSERT_OK(weft_future_new(&loop, &g_marker));
    EXPECT_OK(weft_future_cancel(j.cancelled));
    EXPECT_OK(weft_future_set_result(j.done, weft_int(5)));
    EXPECT_OK(weft_future_set_error(j.failed, UV_EIO, "first"));
    ASSERT_OK(weft_future_token(j.cancelled, &j.cancelled_tok));
    ASSERT_OK(weft_future_token(j.done, &j.done_tok));
    ASSERT_OK(weft_future_token(j.failed, &j.failed_tok));
    ASSERT_OK(weft_spawn(&loop, await_marker_body, NULL, NULL));
    cr_assert_eq(pthread_create(&th, NULL, late_completer, &j), 0);
    EXPECT_OK(weft_loop_run(&loop));
    pthread_join(th, NULL);

    for (int i = 0; i < 4; i++) {
        EXPECT_OK(j.rc[i]);
    }
    EXPECT_OK(g_marker_set_rc);
    cr_expect(weft_future_cancelled(j.cancelled));
    EXPECT_RC(weft_future_result(j.cancelled, NULL), UV_ECANCELED);
    EXPECT_OK(weft_future_result(j.done, &v));
    cr_expect_eq(weft_to_int(v), 5);
    cr_expect_null(weft_future_message(j.done));
    cr_expect_not(weft_future_cancelled(j.failed));
    EXPECT_RC(weft_future_result(j.failed, NULL), UV_EIO);
    cr_expect_str_eq(weft_future_message(j.failed), "first");

    weft_future_unref(j.cancelled);
    weft_future_unref(j.done);
    weft_future_unref(j.failed);
    weft_future_unref(g_marker);
    EXPECT_OK(weft_loop_close(&loop));
}

/* The token holds a reference: the caller may release its own before the
 * completion arrives, and the slot is not recycled (the free lists are LIFO,
 * so a recycled slot would be the next future made). The completion lands on
 * the token's future and then releases it; the new futures stay pending. */
Test(future, threadsafe_completion_after_the_caller_released_the_future_leaves_new_futures_alone,
     .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *gone, *fresh[8];
    weft_future_token_t tok;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &gone));
    ASSERT_OK(weft_future_new(&loop, &g_marker));
    ASSERT_OK(weft_future_token(gone, &tok));
    /* Post (any thread may; here the owner itself), then release before the
     * message can arrive. */
    EXPECT_OK(weft_future_set_result_threadsafe(tok, weft_int(1)));
    weft_future_unref(gone);
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(weft_future_new(&loop, &fresh[i]));
        cr_expect_neq(fresh[i], gone, "a future with a token out was recycled");
    }
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tokens_live, 1);
    EXPECT_OK(weft_call_soon_threadsafe(&loop, marker_cb, NULL));
    ASSERT_OK(weft_spawn(&loop, await_marker_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_marker_set_rc);
    for (int i = 0; i < 8; i++) {
        cr_expect_not(weft_future_done(fresh[i]), "a completion landed on another future");
        weft_future_unref(fresh[i]);
    }
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tokens_live, 0);
    cr_expect_eq(st.tokens_stale, 0);
    weft_future_unref(g_marker);
    EXPECT_OK(weft_loop_close(&loop));
}

/* A token is used once. Used twice, the second message finds the slot
 * recycled - here into a new future - and is dropped and counted; the new
 * occupant is untouched. */
Test(future, a_token_used_twice_is_dropped_and_leaves_the_slots_new_occupant_alone,
     .init = reset_globals, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_future_t *f, *next;
    weft_future_token_t tok;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_future_new(&loop, &f));
    ASSERT_OK(weft_future_new(&loop, &g_marker));
    ASSERT_OK(weft_future_token(f, &tok));
    weft_future_unref(f); /* the token's reference is the last one */
    EXPECT_OK(weft_future_cancel_threadsafe(tok));
    EXPECT_OK(weft_call_soon_threadsafe(&loop, marker_cb, NULL));
    ASSERT_OK(weft_spawn(&loop, await_marker_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop)); /* cancelled, then released: recycled */
    ASSERT_OK(weft_future_new(&loop, &next));
    cr_assert_eq(next, f, "expected the LIFO free list to hand out the same slot");
    EXPECT_OK(weft_future_set_result_threadsafe(tok, weft_int(5))); /* misuse */
    EXPECT_OK(weft_future_token_drop(tok));                         /* misuse again */
    g_marker_set_rc = 1;
    weft_future_unref(g_marker);
    ASSERT_OK(weft_future_new(&loop, &g_marker));
    EXPECT_OK(weft_call_soon_threadsafe(&loop, marker_cb, NULL));
    ASSERT_OK(weft_spawn(&loop, await_marker_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(g_marker_set_rc);
    cr_expect_not(weft_future_done(next), "a stale token completed the slot's new future");
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tokens_stale, 2);
    cr_expect_eq(st.tokens_live, 0);
    weft_future_unref(next);
    weft_future_unref(g_marker);
    EXPECT_OK(weft_loop_close(&loop));
}

/* A task's future is completed by its body only. */
static int return_seven(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(7);
    return 0;
}

Test(future, completing_a_tasks_future_from_outside_returns_eperm, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    weft_future_token_t tok;
    void *v = NULL;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, return_seven, NULL, &t));
    weft_future_t *tf = weft_task_future(t);
    EXPECT_RC(weft_future_set_result(tf, weft_int(1)), UV_EPERM);
    EXPECT_RC(weft_future_set_error(tf, UV_EIO, "no"), UV_EPERM);
    ASSERT_OK(weft_future_token(tf, &tok));
    EXPECT_RC(weft_future_set_result_threadsafe(tok, weft_int(1)), UV_EPERM);
    EXPECT_RC(weft_future_set_error_threadsafe(tok, UV_EIO, "no"), UV_EPERM);
    EXPECT_OK(weft_future_token_drop(tok)); /* still ours after EPERM */
    EXPECT_OK(weft_loop_run(&loop));        /* the body returns: no abort */
    EXPECT_OK(weft_task_result(t, &v));
    cr_expect_eq(weft_to_int(v), 7);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- a future of loop A awaited by a task on loop B --------------------------
 * A's task waits for B to ask (go), then completes `value`; B's task awaits
 * `value` and must resume on B's thread, then tells A it is done so that A
 * stays alive until B no longer uses A's future. */

static weft_loop_t g_a, g_b;
static weft_future_t *g_value, *g_go, *g_b_finished;
static weft_future_token_t g_value_tok;
static pthread_t g_thread_a, g_thread_b;
static int g_a_run_rc = 1, g_b_run_rc = 1;
static int g_go_rc = 1, g_value_rc = 1, g_finished_rc = 1;
static int g_b_await_rc = 1;
static void *g_b_value;
static int g_b_on_own_thread;
static weft_loop_t *g_b_current;

static void go_cb(void *arg)
{
    (void)arg;
    g_go_rc = weft_future_set_result(g_go, NULL);
}

static void b_finished_cb(void *arg)
{
    (void)arg;
    g_finished_rc = weft_future_set_result(g_b_finished, NULL);
}

static int a_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_await(g_go, NULL);
    if (rc != 0) {
        return rc;
    }
    g_value_rc = weft_future_set_result(g_value, weft_int(4242));
    return weft_await(g_b_finished, NULL);
}

static int b_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_call_soon_threadsafe(&g_a, go_cb, NULL);
    if (rc != 0) {
        return rc;
    }
    g_b_await_rc = weft_await_token(g_value_tok, &g_b_value);
    g_b_on_own_thread = pthread_equal(pthread_self(), g_thread_b);
    g_b_current = weft_loop_current();
    return weft_call_soon_threadsafe(&g_a, b_finished_cb, NULL);
}

static void *run_a(void *arg)
{
    (void)arg;
    g_thread_a = pthread_self();
    g_a_run_rc = weft_loop_run(&g_a);
    return NULL;
}

static void *run_b(void *arg)
{
    (void)arg;
    g_thread_b = pthread_self();
    g_b_run_rc = weft_loop_run(&g_b);
    return NULL;
}

Test(future, future_of_loop_a_awaited_on_loop_b_resumes_the_task_on_b_thread, .init = reset_globals,
     .timeout = TEST_TIMEOUT_S)
{
    pthread_t ta, tb;
    weft_task_t *ta_task, *tb_task;
    ASSERT_OK(weft_loop_init(&g_a, NULL));
    ASSERT_OK(weft_loop_init(&g_b, NULL));
    ASSERT_OK(weft_future_new(&g_a, &g_value));
    ASSERT_OK(weft_future_new(&g_a, &g_go));
    ASSERT_OK(weft_future_new(&g_a, &g_b_finished));
    ASSERT_OK(weft_future_token(g_value, &g_value_tok));
    ASSERT_OK(weft_spawn(&g_a, a_body, NULL, &ta_task));
    ASSERT_OK(weft_spawn(&g_b, b_body, NULL, &tb_task));
    cr_assert_eq(pthread_create(&ta, NULL, run_a, NULL), 0);
    cr_assert_eq(pthread_create(&tb, NULL, run_b, NULL), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);

    EXPECT_OK(g_a_run_rc);
    EXPECT_OK(g_b_run_rc);
    EXPECT_OK(g_go_rc);
    EXPECT_OK(g_value_rc);
    EXPECT_OK(g_finished_rc);
    EXPECT_OK(g_b_await_rc);
    cr_expect_eq(weft_to_int(g_b_value), 4242);
    cr_expect(g_b_on_own_thread, "the task on loop B resumed on another thread");
    cr_expect_eq(g_b_current, &g_b);
    cr_expect_eq(weft_task_state(ta_task), WEFT_TASK_DONE);
    cr_expect_eq(weft_task_state(tb_task), WEFT_TASK_DONE);

    weft_task_unref(ta_task);
    weft_task_unref(tb_task);
    weft_future_unref(g_value);
    weft_future_unref(g_go);
    weft_future_unref(g_b_finished);
    EXPECT_OK(weft_loop_close(&g_b));
    EXPECT_OK(weft_loop_close(&g_a));
}

/* Start values of every global above (the plain build runs all tests in one
 * process). */
static void reset_globals(void)
{
    memset(g_calls, 0, sizeof g_calls);
    g_ncalls = 0;
    g_new_in_task_loop = NULL;
    g_new_in_task_rc = 1;
    g_f = NULL;
    g_await_rc = 1;
    g_await_value = NULL;
    g_resumed = 0;
    g_resumed_inline = 0;
    g_loop_thread = pthread_self();
    g_on_loop_thread = 0;
    g_current_after_await = NULL;
    g_marker = NULL;
    g_marker_set_rc = 1;
    g_value = g_go = g_b_finished = NULL;
    g_a_run_rc = g_b_run_rc = 1;
    g_go_rc = g_value_rc = g_finished_rc = 1;
    g_b_await_rc = 1;
    g_b_value = NULL;
    g_b_on_own_thread = 0;
    g_b_current = NULL;
}

/* --- await_timeout on a future of another loop ---------------------------------
 * B waits for A's future with a timeout of 0 (UV_ETIMEDOUT at once), then of
 * 20 ms while nobody completes it (UV_ETIMEDOUT; the late reply to that wait
 * must be dropped), then asks A to complete it and waits with a long
 * timeout (the value). */

static weft_loop_t g_ta, g_tb;
static weft_future_t *g_t_value, *g_t_go, *g_t_done;
static weft_future_token_t g_t_tok[3]; /* g_t_value, one per wait */
static int g_t_rc0 = 1, g_t_rc1 = 1, g_t_rc2 = 1, g_ta_rc = 1, g_tb_rc = 1;
static void *g_t_got;

static void t_go_cb(void *arg)
{
    (void)arg;
    if (weft_future_set_result(g_t_go, NULL) != 0) {
        g_t_rc2 = -1;
    }
}

static void t_done_cb(void *arg)
{
    (void)arg;
    if (weft_future_set_result(g_t_done, NULL) != 0) {
        g_t_rc2 = -1;
    }
}

static int ta_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = weft_await(g_t_go, NULL);
    if (rc == 0) {
        rc = weft_future_set_result(g_t_value, weft_int(77));
    }
    if (rc == 0) {
        rc = weft_await(g_t_done, NULL); /* keep A (and its future) alive */
    }
    return rc;
}

static int tb_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    /* A bare pointer to another loop's future is refused. */
    if (weft_await(g_t_value, NULL) != WEFT_EWRONGLOOP)
        return -1;
    g_t_rc0 = weft_await_token_timeout(g_t_tok[0], 0, NULL);
    g_t_rc1 = weft_await_token_timeout(g_t_tok[1], 20, NULL);
    int rc = weft_call_soon_threadsafe(&g_ta, t_go_cb, NULL);
    if (rc != 0) {
        return rc;
    }
    g_t_rc2 = weft_await_token_timeout(g_t_tok[2], 30000, &g_t_got);
    return weft_call_soon_threadsafe(&g_ta, t_done_cb, NULL);
}

static void *run_ta(void *arg)
{
    (void)arg;
    g_ta_rc = weft_loop_run(&g_ta);
    return NULL;
}

static void *run_tb(void *arg)
{
    (void)arg;
    g_tb_rc = weft_loop_run(&g_tb);
    return NULL;
}

Test(future, await_timeout_on_another_loops_future_times_out_then_gets_the_value,
     .timeout = TEST_TIMEOUT_S)
{
    pthread_t ta, tb;
    ASSERT_OK(weft_loop_init(&g_ta, NULL));
    ASSERT_OK(weft_loop_init(&g_tb, NULL));
    ASSERT_OK(weft_future_new(&g_ta, &g_t_value));
    ASSERT_OK(weft_future_new(&g_ta, &g_t_go));
    ASSERT_OK(weft_future_new(&g_ta, &g_t_done));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_future_token(g_t_value, &g_t_tok[i]));
    ASSERT_OK(weft_spawn(&g_ta, ta_body, NULL, NULL));
    ASSERT_OK(weft_spawn(&g_tb, tb_body, NULL, NULL));
    cr_assert_eq(pthread_create(&ta, NULL, run_ta, NULL), 0);
    cr_assert_eq(pthread_create(&tb, NULL, run_tb, NULL), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    EXPECT_OK(g_ta_rc);
    EXPECT_OK(g_tb_rc);
    EXPECT_RC(g_t_rc0, UV_ETIMEDOUT);
    EXPECT_RC(g_t_rc1, UV_ETIMEDOUT);
    EXPECT_OK(g_t_rc2);
    cr_expect_eq(weft_to_int(g_t_got), 77);
    weft_loop_stats_t st;
    weft_loop_stats(&g_ta, &st);
    cr_expect_eq(st.tokens_live, 0, "a token was neither used nor given back");
    weft_loop_stats(&g_tb, &st);
    cr_expect_eq(st.remote_waits, 0);
    weft_future_unref(g_t_value);
    weft_future_unref(g_t_go);
    weft_future_unref(g_t_done);
    EXPECT_OK(weft_loop_close(&g_tb));
    EXPECT_OK(weft_loop_close(&g_ta));
}

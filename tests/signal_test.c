/*
 * tests/signal_test.c - awaiting signals in tasks (weft/signal.h): a
 * delivery wakes a waiter, one that came before the wait is kept, every
 * watcher of a signal sees it, timeouts, cancel, close, the loop's own
 * handlers (a program's handler is not replaced), misuse. Signals are sent
 * to this process only (kill(getpid())), and only while watched.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <unistd.h>
#include <weft/weft.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

static weft_signal_t *w1, *w2;
static int wait_rc;
static unsigned wait_count;

static int waiter(void *arg, void **result)
{
    (void)arg;
    (void)result;
    wait_rc = weft_signal_wait(w1, &wait_count);
    return 0;
}

TASK_TEST(signal, delivery_wakes_a_waiting_task)
{
    EXPECT_OK(weft_signal_open(NULL, SIGUSR1, &w1));
    cr_expect_eq(weft_signal_signum(w1), SIGUSR1);
    weft_task_t *t;
    wait_rc = 1;
    EXPECT_OK(weft_spawn(NULL, waiter, NULL, &t));
    EXPECT_OK(weft_sleep(5));
    cr_expect_eq(wait_rc, 1);
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    EXPECT_OK(wait_rc);
    cr_expect_geq(wait_count, 1);
    EXPECT_OK(weft_signal_close(w1));
    return 0;
}

TASK_TEST(signal, a_delivery_before_the_wait_is_kept_and_every_watcher_sees_it)
{
    EXPECT_OK(weft_signal_open(NULL, SIGUSR1, &w1));
    EXPECT_OK(weft_signal_open(NULL, SIGUSR1, &w2));
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    unsigned n = 0;
    EXPECT_OK(weft_signal_wait_timeout(w1, 5000, &n));
    cr_expect_eq(n, 1);
    EXPECT_OK(weft_signal_wait_timeout(w2, 0, &n)); /* already counted */
    cr_expect_eq(n, 1);
    EXPECT_RC(weft_signal_wait_timeout(w1, 0, &n), UV_ETIMEDOUT); /* taken */
    EXPECT_RC(weft_signal_wait_timeout(w1, 5, &n), UV_ETIMEDOUT);
    EXPECT_OK(weft_signal_close(w1));
    /* The other watcher still works with the first one closed. */
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    EXPECT_OK(weft_signal_wait_timeout(w2, 5000, &n));
    EXPECT_OK(weft_signal_close(w2));
    /* The last close removed the loop's handler. */
    EXPECT_RC(weft_loop_remove_signal_handler(NULL, SIGUSR1), UV_ENOENT);
    return 0;
}

TASK_TEST(signal, cancel_and_close_end_a_wait)
{
    EXPECT_OK(weft_signal_open(NULL, SIGUSR2, &w1));
    weft_task_t *t;
    wait_rc = 1;
    EXPECT_OK(weft_spawn(NULL, waiter, NULL, &t));
    EXPECT_OK(weft_sleep(5));
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    EXPECT_RC(wait_rc, UV_ECANCELED);
    wait_rc = 1;
    EXPECT_OK(weft_spawn(NULL, waiter, NULL, &t));
    EXPECT_OK(weft_sleep(5));
    EXPECT_OK(weft_signal_close(w1));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    EXPECT_RC(wait_rc, WEFT_ECLOSED);
    return 0;
}

static void own_handler(int signum, void *arg)
{
    (void)signum;
    (void)arg;
}

TASK_TEST(signal, a_programs_own_handler_is_not_replaced)
{
    EXPECT_OK(weft_loop_add_signal_handler(NULL, SIGUSR2, own_handler, NULL));
    weft_signal_t *s = (weft_signal_t *)1;
    EXPECT_RC(weft_signal_open(NULL, SIGUSR2, &s), UV_EBUSY);
    cr_expect_null(s);
    EXPECT_OK(weft_loop_remove_signal_handler(NULL, SIGUSR2));
    EXPECT_OK(weft_signal_open(NULL, SIGUSR2, &s));
    EXPECT_OK(weft_signal_close(s));
    return 0;
}

TASK_TEST(signal_misuse, bad_arguments)
{
    weft_signal_t *s;
    EXPECT_RC(weft_signal_open(NULL, SIGKILL, &s), UV_EINVAL);
    EXPECT_RC(weft_signal_open(NULL, SIGSTOP, &s), UV_EINVAL);
    EXPECT_RC(weft_signal_open(NULL, 0, &s), UV_EINVAL);
    EXPECT_RC(weft_signal_open(NULL, 100000, &s), UV_EINVAL);
    EXPECT_RC(weft_signal_open(NULL, SIGUSR1, NULL), UV_EINVAL);
    EXPECT_RC(weft_signal_wait(NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_signal_close(NULL), UV_EINVAL);
    EXPECT_RC(weft_signal_signum(NULL), UV_EINVAL);
    return 0;
}

Test(signal_misuse, outside_tasks, .timeout = TEST_TIMEOUT_S)
{
    weft_signal_t *s;
    EXPECT_RC(weft_signal_open(NULL, SIGUSR1, &s), UV_EINVAL); /* no loop */
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    EXPECT_OK(weft_signal_open(&loop, SIGUSR1, &s)); /* before the loop runs: allowed */
    EXPECT_RC(weft_signal_wait(s, NULL), WEFT_ENOTASK);
    EXPECT_OK(weft_signal_close(s));
    EXPECT_OK(weft_loop_close(&loop));
}

TASK_TEST(signal_misuse, out_of_memory)
{
    weft_signal_t *s;
    for (long n = 0; n < 2; n++) { /* the watcher, the loop's record */
        weft__alloc_fail_after(n);
        EXPECT_RC(weft_signal_open(NULL, SIGUSR1, &s), UV_ENOMEM);
        weft__alloc_fail_after(-1);
    }
    EXPECT_RC(weft_loop_remove_signal_handler(NULL, SIGUSR1), UV_ENOENT); /* nothing installed */
    return 0;
}

/*
 * Self-test of tests/plain_test.h: the same file runs under Criterion
 * (//tests:plain_shim_test) and as a plain program (//tests:plain_shim_test_plain,
 * also under TSan). Every test here passes in both builds; a broken shim shows
 * up as a failed test, a skipped .init or a run .disabled test.
 */
#include "plain_test.h"

#include <pthread.h>
#include <stddef.h>

static int fixture_value;
static int fini_calls;

static void fixture_init(void)
{
    fixture_value = 42;
}

static void fixture_fini(void)
{
    fini_calls++;
}

Test(plain_shim, comparisons_pass)
{
    int three = 3;
    size_t n = 3;

    cr_assert(three == 3);
    cr_assert(three == 3, "three is %d", three);
    cr_assert_eq(three, 3);
    cr_assert_eq(n, 3, "n is %zu", n);
    cr_assert_neq(three, 4);
    cr_assert_lt(three, 4);
    cr_assert_gt(three, 2);
    cr_assert_leq(three, 3);
    cr_assert_geq(three, 3);
    cr_expect(three == 3);
    cr_expect_eq(three, 3, "with a message");
    cr_expect_neq(three, 4);
    cr_expect_lt(three, 4);
    cr_expect_gt(three, 2);
    cr_expect_leq(three, 3);
    cr_expect_geq(three, 3);
}

Test(plain_shim, pointers_and_strings_pass)
{
    const char *hello = "hello";
    const char *none = NULL;

    cr_assert_null(none);
    cr_assert_not_null(hello, "%s", "must be set");
    cr_expect_null(none);
    cr_expect_not_null(hello);
    cr_assert_str_eq(hello, "hello");
    cr_assert_str_eq(hello, "hello", "hello is %s", hello);
    cr_log_info("logging with %s", "arguments");
    cr_log_info("logging without arguments");
}

Test(plain_shim, init_runs_before_the_body, .init = fixture_init, .fini = fixture_fini)
{
    cr_assert_eq(fixture_value, 42);
}

Test(plain_shim, disabled_test_does_not_run, .disabled = true)
{
    cr_assert_fail("a disabled test ran");
}

/* A skipped test ends at cr_skip and is not a failure, in both builds: the
 * assertion after it would fail the test if the skip did not unwind. */
Test(plain_shim, skip_ends_the_test_without_failing)
{
    cr_skip("skipped on purpose, %d", 1);
    cr_assert_fail("ran past cr_skip");
}

/* Each test runs in a process of its own (Criterion's fork, and the plain
 * runner's), so the earlier test's init and fini left nothing behind here. */
Test(plain_shim, tests_do_not_share_globals)
{
    cr_assert_eq(fixture_value, 0);
    cr_assert_eq(fini_calls, 0);
}

static void *expect_from_thread(void *arg)
{
    int *value = arg;

    cr_expect_eq(*value, 7);
    *value = 8;
    return NULL;
}

Test(plain_shim, expectations_work_on_other_threads)
{
    pthread_t thread;
    int value = 7;

    cr_assert_eq(pthread_create(&thread, NULL, expect_from_thread, &value), 0);
    cr_assert_eq(pthread_join(thread, NULL), 0);
    cr_expect_eq(value, 8);
}

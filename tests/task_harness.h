/*
 * tests/task_harness.h - TASK_TEST: a Criterion test whose body runs as the
 * main task of a fresh loop, once with guarded stacks and once (suite
 * <suite>_compact) with compact stacks. Include after <criterion/criterion.h>
 * and "check.h".
 */
#ifndef WEFT_TESTS_TASK_HARNESS_H
#define WEFT_TESTS_TASK_HARNESS_H

#include <weft/weft.h>

static const weft_task_opts_t main_opts = {.name = "main", .stack_size = 256 * 1024};

static void run_main(weft_task_fn fn, weft_stack_mode_t mode)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = {.stack_mode = mode, .shared_stack_size = 1024 * 1024};
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn_ex(&loop, fn, NULL, &main_opts, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, NULL));
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* A test whose body runs as a task on a fresh loop: once with guarded
 * stacks, once (suite_compact) with WEFT_STACK_COMPACT, where a suspended
 * task's locals are not in place, so what other tasks touch is static.
 * cr_expect only inside: cr_assert would jump off the task's stack. */
#define TASK_TEST(suite, name)                                          \
    static int suite##_##name##_main(void *arg, void **result);         \
    Test(suite, name, .timeout = TEST_TIMEOUT_S)                        \
    {                                                                   \
        run_main(suite##_##name##_main, WEFT_STACK_GUARDED);            \
    }                                                                   \
    Test(suite##_compact, name, .timeout = TEST_TIMEOUT_S)              \
    {                                                                   \
        run_main(suite##_##name##_main, WEFT_STACK_COMPACT);            \
    }                                                                   \
    static int suite##_##name##_main(void *arg __attribute__((unused)), \
                                     void **result __attribute__((unused)))

#endif /* WEFT_TESTS_TASK_HARNESS_H */

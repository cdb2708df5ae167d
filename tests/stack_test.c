/*
 * tests/stack_test.c - task stacks: usable depth of the default and of a
 * requested size, the guard page, compact (shared, copied) stacks, and the
 * stack pool's counters.
 *
 * Recursion depth is measured in bytes of real stack (frame addresses), not
 * in calls, so the tests ask for the same stack use whatever the frame size
 * (optimisation level, sanitizer redzones). The guard-page test is
 * Criterion-only (it expects the test process to die of SIGSEGV); this file
 * is never built as a plain TSan program.
 */
#include <criterion/criterion.h>
#include "check.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>

#include <weft/weft.h>

#define KiB 1024u

/* --- deep recursion --------------------------------------------------------- */

static int g_corrupt;

/* Recurse until `target` bytes of stack below `base` are in use; every frame
 * holds a 256-byte pattern that is checked on the way back up. Returns the
 * deepest stack use seen. Not a tail call (the pattern is read after). */
__attribute__((noinline)) static size_t recurse_until(uintptr_t base, size_t target, unsigned depth)
{
    volatile unsigned char pad[256];
    for (size_t i = 0; i < sizeof pad; i++) {
        pad[i] = (unsigned char)(depth + i);
    }
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    size_t used = base > here ? base - here : 0;
    size_t deepest = used;
    if (used < target) {
        deepest = recurse_until(base, target, depth + 1);
    }
    for (size_t i = 0; i < sizeof pad; i++) {
        if (pad[i] != (unsigned char)(depth + i)) {
            g_corrupt++;
            break;
        }
    }
    return deepest;
}

static size_t g_deepest;

static int deep_body(void *arg, void **result)
{
    (void)result;
    size_t target = (size_t)weft_to_int(arg);
    uintptr_t base = (uintptr_t)__builtin_frame_address(0);
    g_deepest = recurse_until(base, target, 0);
    /* Suspend once with the deep frames gone, then go deep again. */
    int rc = weft_yield();
    if (rc == 0) {
        size_t again = recurse_until(base, target, 7);
        if (again < g_deepest) {
            g_deepest = again;
        }
    }
    return rc;
}

Test(stack, default_64k_stack_takes_40k_of_recursion, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, deep_body, weft_int(40 * KiB), &t));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_geq(g_deepest, 40 * KiB, "recursed only %zu bytes", g_deepest);
    cr_expect_eq(g_corrupt, 0);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(stack, requested_256k_stack_takes_200k_of_recursion, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    weft_task_opts_t opts = {.name = "deep", .stack_size = 256 * KiB};
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn_ex(&loop, deep_body, weft_int(200 * KiB), &opts, &t));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_geq(g_deepest, 200 * KiB, "recursed only %zu bytes", g_deepest);
    cr_expect_eq(g_corrupt, 0);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

Test(stack, loop_default_stack_size_option_applies_to_tasks, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    weft_loop_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.stack_size = 256 * KiB;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    ASSERT_OK(weft_spawn(&loop, deep_body, weft_int(200 * KiB), &t));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_geq(g_deepest, 200 * KiB);
    cr_expect_eq(g_corrupt, 0);
    cr_expect_eq(weft_task_state(t), WEFT_TASK_DONE);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- the guard page --------------------------------------------------------- */

static volatile unsigned g_never = 0xffffffffu;

__attribute__((noinline)) static unsigned recurse_forever(unsigned depth)
{
    volatile unsigned char pad[256];
    pad[0] = (unsigned char)depth;
    pad[255] = (unsigned char)depth;
    if (depth == g_never) {
        return 0;
    }
    return recurse_forever(depth + 1) + pad[0] + pad[255];
}

static int overflow_body(void *arg, void **result)
{
    (void)arg;
    *result = weft_int((intptr_t)recurse_forever(0));
    return 0;
}

/* Sanitizers install their own SIGSEGV handlers, which would turn the signal
 * into an abort or an exit code. Our handler runs on an alternate stack (the
 * task stack is exhausted), restores the default action and returns: the
 * faulting store runs again and the kernel kills us with SIGSEGV. */
static char g_altstack[64 * 1024];

static void segv_handler(int sig)
{
    signal(sig, SIG_DFL);
}

Test(stack, unbounded_recursion_hits_the_guard_page, .signal = SIGSEGV, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    stack_t ss;
    struct sigaction sa;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = g_altstack;
    ss.ss_size = sizeof g_altstack;
    cr_assert_eq(sigaltstack(&ss, NULL), 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = segv_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);

    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, overflow_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_log_error("the task recursed without limit and nothing stopped it");
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- compact mode ----------------------------------------------------------- */

static weft_loop_opts_t compact_opts(void)
{
    weft_loop_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.stack_mode = WEFT_STACK_COMPACT;
    return opts;
}

#define INTERLEAVED 64
#define ROUNDS      40

static int g_pattern_errors;
static int g_suspend_errors;
static int g_finished;

static uint32_t pattern(uint32_t id, uint32_t round, uint32_t i)
{
    return id * 0x9e3779b9u ^ (round * 0x85ebca6bu) ^ (i * 0xc2b2ae35u);
}

/* Yields from `depth` frames down, so tasks suspend with frames of different
 * sizes on the shared stack; each frame checks its own pattern afterwards. */
__attribute__((noinline)) static int yield_deep(uint32_t id, uint32_t round, int depth)
{
    volatile uint32_t frame[32];
    for (uint32_t i = 0; i < 32; i++) {
        frame[i] = pattern(id, round + 1000u * (uint32_t)depth, i);
    }
    int rc = depth > 0 ? yield_deep(id, round, depth - 1) : weft_yield();
    for (uint32_t i = 0; i < 32; i++) {
        if (frame[i] != pattern(id, round + 1000u * (uint32_t)depth, i)) {
            g_pattern_errors++;
            break;
        }
    }
    return rc;
}

static int interleave_body(void *arg, void **result)
{
    (void)result;
    uint32_t id = (uint32_t)weft_to_int(arg);
    uint32_t local[64];
    uint32_t *alias = local; /* the task's own pointer stays valid after resuming */
    for (uint32_t i = 0; i < 64; i++) {
        local[i] = pattern(id, 0, i);
    }
    for (uint32_t round = 0; round < ROUNDS; round++) {
        if (yield_deep(id, round, (int)((id + round) % 6)) != 0) {
            g_suspend_errors++;
        }
        for (uint32_t i = 0; i < 64; i++) {
            if (alias[i] != pattern(id, round, i)) {
                g_pattern_errors++;
                break;
            }
            alias[i] = pattern(id, round + 1, i);
        }
        if (round % 10 == 9 && weft_sleep(1) != 0) {
            g_suspend_errors++;
        }
    }
    g_finished++;
    return 0;
}

Test(stack, compact_mode_tasks_keep_their_locals_across_yields, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = compact_opts();
    weft_task_t *t[INTERLEAVED];
    ASSERT_OK(weft_loop_init(&loop, &opts));
    for (int i = 0; i < INTERLEAVED; i++) {
        ASSERT_OK(weft_spawn(&loop, interleave_body, weft_int(i), &t[i]));
    }
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_finished, INTERLEAVED);
    cr_expect_eq(g_pattern_errors, 0, "%d locals were clobbered", g_pattern_errors);
    cr_expect_eq(g_suspend_errors, 0);
    for (int i = 0; i < INTERLEAVED; i++) {
        cr_expect_eq(weft_task_state(t[i]), WEFT_TASK_DONE);
        weft_task_unref(t[i]);
    }
    EXPECT_OK(weft_loop_close(&loop));
}

#define PARKED 10000
static int g_parked;
static int g_unwound;
static int g_parked_bad_rc;
static int g_parked_future_not_cancelled;
static weft_task_t *g_parked_tasks[PARKED];
static int g_cancel_errors;

static int parked_body(void *arg, void **result)
{
    (void)result;
    uint32_t id = (uint32_t)weft_to_int(arg);
    uint32_t local[16];
    weft_future_t *never = NULL;
    int rc = weft_future_new(NULL, &never);
    if (rc != 0) {
        return rc;
    }
    for (uint32_t i = 0; i < 16; i++) {
        local[i] = pattern(id, 7, i);
    }
    g_parked++;
    rc = weft_await(never, NULL);
    if (rc != UV_ECANCELED) {
        g_parked_bad_rc++;
    }
    if (!weft_future_cancelled(never)) {
        g_parked_future_not_cancelled++;
    }
    for (uint32_t i = 0; i < 16; i++) {
        if (local[i] != pattern(id, 7, i)) {
            g_pattern_errors++;
            break;
        }
    }
    weft_future_unref(never);
    g_unwound++;
    return rc;
}

static int cancel_all_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < 100 && g_parked < PARKED; i++) {
        int rc = weft_yield();
        if (rc != 0) {
            return rc;
        }
    }
    for (int i = 0; i < PARKED; i++) {
        if (weft_task_cancel(g_parked_tasks[i]) != 0) {
            g_cancel_errors++;
        }
    }
    return 0;
}

Test(stack, compact_mode_ten_thousand_parked_tasks_unwind_cleanly_when_cancelled,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = compact_opts();
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, &opts));
    for (int i = 0; i < PARKED; i++) {
        ASSERT_OK(weft_spawn(&loop, parked_body, weft_int(i), &g_parked_tasks[i]));
    }
    ASSERT_OK(weft_spawn(&loop, cancel_all_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_parked, PARKED);
    cr_expect_eq(g_unwound, PARKED);
    cr_expect_eq(g_cancel_errors, 0);
    cr_expect_eq(g_parked_bad_rc, 0);
    cr_expect_eq(g_parked_future_not_cancelled, 0);
    cr_expect_eq(g_pattern_errors, 0);
    int not_cancelled = 0;
    for (int i = 0; i < PARKED; i++) {
        not_cancelled += weft_task_state(g_parked_tasks[i]) != WEFT_TASK_CANCELLED;
        weft_task_unref(g_parked_tasks[i]);
    }
    cr_expect_eq(not_cancelled, 0);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.tasks_live, 0);
    EXPECT_OK(weft_loop_close(&loop));
}

static int compact_leaf_body(void *arg, void **result)
{
    int rc = weft_sleep(1);
    *result = weft_int(weft_to_int(arg) * 2);
    return rc;
}

static int g_compact_sum;
static int g_compact_errors;

static int compact_parent_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *kids[8];
    for (int i = 0; i < 8; i++) {
        if (weft_spawn(NULL, compact_leaf_body, weft_int(i), &kids[i]) != 0) {
            g_compact_errors++;
            kids[i] = NULL;
        }
    }
    for (int i = 0; i < 8; i++) {
        void *v = NULL;
        if (kids[i] == NULL) {
            continue;
        }
        if (weft_await_task(kids[i], &v) != 0) {
            g_compact_errors++;
        }
        g_compact_sum += (int)weft_to_int(v);
        weft_task_unref(kids[i]);
    }
    return 0;
}

Test(stack, compact_mode_runs_nested_awaits_and_sleeps, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_opts_t opts = compact_opts();
    ASSERT_OK(weft_loop_init(&loop, &opts));
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_spawn(&loop, compact_parent_body, NULL, NULL));
    }
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_compact_errors, 0);
    cr_expect_eq(g_compact_sum, 4 * 56);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- the stack pool --------------------------------------------------------- */

#define SEQUENTIAL 1000
static uint64_t g_max_in_use;
static uint64_t g_pooled_after[2];
static int g_seq_errors;

static int yield_once_body(void *arg, void **result)
{
    weft_loop_stats_t st;
    int rc = weft_yield();
    weft_loop_stats(weft_loop_current(), &st);
    if (st.stacks_in_use > g_max_in_use) {
        g_max_in_use = st.stacks_in_use;
    }
    *result = arg;
    return rc;
}

static int sequential_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_loop_stats_t st;
    for (int batch = 0; batch < 2; batch++) {
        for (int i = 0; i < SEQUENTIAL; i++) {
            weft_task_t *child = NULL;
            void *v = NULL;
            if (weft_spawn(NULL, yield_once_body, weft_int(i), &child) != 0) {
                g_seq_errors++;
                continue;
            }
            /* Let the child start on a stack of its own before awaiting it. */
            if (weft_yield() != 0 || weft_await_task(child, &v) != 0 || weft_to_int(v) != i) {
                g_seq_errors++;
            }
            weft_task_unref(child);
        }
        weft_loop_stats(weft_loop_current(), &st);
        g_pooled_after[batch] = st.stacks_pooled;
    }
    return 0;
}

Test(stack, stacks_are_reused_and_in_use_drops_to_zero, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, sequential_body, NULL, NULL));
    EXPECT_OK(weft_loop_run(&loop));
    cr_expect_eq(g_seq_errors, 0);
    cr_expect_geq(g_max_in_use, 2, "parent and child both hold a stack while the child yields");
    cr_expect_leq(g_max_in_use, 4, "%llu stacks in use for 2 live tasks",
                  (unsigned long long)g_max_in_use);
    cr_expect_leq(g_pooled_after[1], g_pooled_after[0],
                  "the pool grew from %llu to %llu stacks although every stack was free again",
                  (unsigned long long)g_pooled_after[0], (unsigned long long)g_pooled_after[1]);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.stacks_in_use, 0);
    cr_expect_gt(st.stacks_pooled, 0, "finished tasks' stacks are kept for reuse");
    cr_expect_lt(st.stacks_pooled, SEQUENTIAL, "%llu stacks pooled after tasks ran one by one",
                 (unsigned long long)st.stacks_pooled);
    cr_expect_eq(st.tasks_finished, 2 * SEQUENTIAL + 1);
    EXPECT_OK(weft_loop_close(&loop));
}

/* --- idle trimming ------------------------------------------------------------ */

#define TRIM_TASKS   2000
#define TRIM_TOUCH   (8 * KiB)
#define TRIM_PATTERN 0x5a

static weft_future_t *g_trim_gate;
static int g_trim_bad;

/* Touch TRIM_TOUCH bytes of stack, park until the gate opens, then check
 * the bytes are still ours. Run on a trimmed (zero-filled) stack, the fill
 * must still work: the pages come back on first touch. */
static int touch_and_park_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    volatile unsigned char buf[TRIM_TOUCH];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = TRIM_PATTERN;
    int rc = weft_await(g_trim_gate, NULL);
    for (size_t i = 0; i < sizeof(buf); i++)
        if (buf[i] != TRIM_PATTERN)
            g_trim_bad++;
    return rc;
}

static long resident_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * 4096;
}

static long g_rss_before_trim, g_rss_after_trim;
static uint64_t g_trimmed_seen;

static int burst(void)
{
    int rc = weft_future_new(NULL, &g_trim_gate);
    if (rc != 0)
        return rc;
    for (int i = 0; i < TRIM_TASKS && rc == 0; i++)
        rc = weft_spawn(NULL, touch_and_park_body, NULL, NULL);
    if (rc == 0)
        rc = weft_sleep(1); /* every task has run and parked */
    if (rc == 0)
        rc = weft_future_set_result(g_trim_gate, NULL);
    if (rc == 0)
        rc = weft_sleep(1); /* and finished */
    weft_future_unref(g_trim_gate);
    return rc;
}

static int trim_main_body(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_loop_stats_t st;
    int rc = burst();
    if (rc != 0)
        return rc;
    g_rss_before_trim = resident_bytes();
    /* Idle (sleeping) for a few trim windows, until every stack beyond the
     * warm reserve was handed back; bounded at ~6 s. */
    for (int i = 0; i < 120; i++) {
        if ((rc = weft_sleep(50)) != 0)
            return rc;
        weft_loop_stats(weft_loop_current(), &st);
        g_trimmed_seen = st.stacks_trimmed;
        if (st.stacks_trimmed >= TRIM_TASKS - 256)
            break;
    }
    g_rss_after_trim = resident_bytes();
    /* Trimmed stacks are reused and work. */
    return burst();
}

Test(stack, an_idle_loop_gives_back_the_pages_of_stacks_a_burst_left_behind,
     .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    weft_task_t *t;
    weft_loop_stats_t st;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    ASSERT_OK(weft_spawn(&loop, trim_main_body, NULL, &t));
    EXPECT_OK(weft_loop_run(&loop));
    EXPECT_OK(weft_task_result(t, NULL));
    cr_expect_eq(g_trim_bad, 0, "%d stack bytes changed under a parked task", g_trim_bad);
    cr_expect_geq(g_trimmed_seen, TRIM_TASKS - 256, "only %llu stacks trimmed",
                  (unsigned long long)g_trimmed_seen);
    /* Each trimmed stack had at least TRIM_TOUCH bytes resident. */
    cr_expect_geq(g_rss_before_trim - g_rss_after_trim, (long)(TRIM_TASKS - 256) * (long)TRIM_TOUCH,
                  "RSS went from %ld to %ld", g_rss_before_trim, g_rss_after_trim);
    weft_loop_stats(&loop, &st);
    cr_expect_eq(st.stacks_in_use, 0);
    weft_task_unref(t);
    EXPECT_OK(weft_loop_close(&loop));
}

/*
 * benchmarks/bench_core.c - the workloads that need only core/: one loop on
 * one thread (plus a plain poster thread for threadsafe_post).
 *
 * Each workload follows docs/workloads.md to the letter, times only the
 * work the definition names (never loop set-up or allocation of the
 * harness's own arrays), and checks its answer before it reports a value:
 * a wrong answer is a FAIL, never a number. Task bodies return a negative
 * code (with weft_fail() for a message) when a weft call fails; the checks
 * of the answer happen after the loop has stopped, in plain code.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/bench_list.h"

_Static_assert(sizeof(void *) == 8, "the workloads carry 64-bit sums in void *");

/* ------------------------------------------------------------------------ */
/* switch: two tasks on ONE loop alternately yield to each other, 10M yields
 * in total. Value: ns per yield. Check: each task yielded 5M times and no
 * task ever ran twice in a row. */

enum {
    SWITCH_YIELDS = 10000000
};

typedef struct switch_state {
    uint64_t yields[2];
    uint64_t out_of_turn; /* times a task ran right after itself */
    int last;             /* id of the task that yielded last, -1 at first */
    int finished;
    uint64_t start_ns, end_ns;
} switch_state_t;

typedef struct switch_side {
    switch_state_t *st;
    int id;
} switch_side_t;

static int switch_body(void *arg, void **result)
{
    switch_side_t *side = arg;
    switch_state_t *st = side->st;

    (void)result;
    if (st->start_ns == 0)
        st->start_ns = bench_now_ns();
    for (uint64_t i = 0; i < SWITCH_YIELDS / 2; i++) {
        if (st->last == side->id)
            st->out_of_turn++;
        st->last = side->id;
        st->yields[side->id]++;
        int rc = weft_yield();
        if (rc != 0)
            return weft_fail(rc, "weft_yield failed");
    }
    if (++st->finished == 2)
        st->end_ns = bench_now_ns();
    return 0;
}

int bench_switch(weft_loop_t *loop, double *value)
{
    switch_state_t st = {.last = -1};
    switch_side_t sides[2] = {{&st, 0}, {&st, 1}};
    weft_task_t *tasks[2];
    int rc;

    /* Both tasks are spawned from outside any task, so that neither runs
     * inline on a third task's stack: this is a plain switch between two
     * task stacks. */
    for (int i = 0; i < 2; i++) {
        rc = weft_spawn(loop, switch_body, &sides[i], &tasks[i]);
        if (rc != 0) {
            if (i == 1)
                weft_task_unref(tasks[0]);
            return bench_fail("weft_spawn: %s", weft_err_name(rc));
        }
    }
    rc = weft_loop_run(loop);
    int ok0 = bench_check_task(tasks[0], "first yielding", NULL);
    int ok1 = bench_check_task(tasks[1], "second yielding", NULL);
    if (rc != 0)
        return bench_fail("weft_loop_run: %s", weft_err_name(rc));
    if (ok0 != 0 || ok1 != 0)
        return -1;
    if (st.yields[0] != SWITCH_YIELDS / 2 || st.yields[1] != SWITCH_YIELDS / 2)
        return bench_fail("yields %lu + %lu, expected %d each", (unsigned long)st.yields[0],
                          (unsigned long)st.yields[1], SWITCH_YIELDS / 2);
    if (st.out_of_turn != 0)
        return bench_fail("the tasks did not alternate: %lu times a task ran twice in a row",
                          (unsigned long)st.out_of_turn);
    *value = (double)(st.end_ns - st.start_ns) / SWITCH_YIELDS;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* spawn: a main task spawns 1,000,000 tasks that return their index, then
 * awaits each and sums the results. Value: tasks per second, spawn and
 * await included. Check: the sum. */

enum {
    SPAWN_TASKS = 1000000
};

typedef struct spawn_state {
    weft_task_t **tasks;
    int64_t sum;
    uint64_t ns;
} spawn_state_t;

static int spawn_leaf(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int spawn_main(void *arg, void **result)
{
    spawn_state_t *st = arg;
    int rc = 0;
    int spawned = 0;

    (void)result;
    uint64_t t0 = bench_now_ns();
    for (; spawned < SPAWN_TASKS; spawned++) {
        rc = weft_spawn(NULL, spawn_leaf, weft_int(spawned), &st->tasks[spawned]);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        for (int i = 0; i < spawned; i++)
            weft_task_unref(st->tasks[i]);
        return weft_fail(rc, "weft_spawn failed");
    }
    int64_t sum = 0;
    for (int i = 0; i < SPAWN_TASKS; i++) {
        void *r = NULL;
        int arc = weft_await_task(st->tasks[i], &r);
        weft_task_unref(st->tasks[i]);
        if (arc != 0 && rc == 0)
            rc = arc;
        sum += weft_to_int(r);
    }
    st->ns = bench_now_ns() - t0;
    st->sum = sum;
    return rc != 0 ? weft_fail(rc, "awaiting a spawned task failed") : 0;
}

int bench_spawn(weft_loop_t *loop, double *value)
{
    spawn_state_t st = {.tasks = malloc(SPAWN_TASKS * sizeof(weft_task_t *))};
    const int64_t expected = (int64_t)SPAWN_TASKS * (SPAWN_TASKS - 1) / 2;

    if (st.tasks == NULL)
        return bench_fail("out of memory");
    /* Fault the array in now, not inside the timed spawn loop. */
    memset(st.tasks, 0, SPAWN_TASKS * sizeof(weft_task_t *));
    int rc = bench_run_main(loop, spawn_main, &st, NULL);
    free(st.tasks);
    if (rc != 0)
        return -1;
    if (st.sum != expected)
        return bench_fail("sum %ld, expected %ld", (long)st.sum, (long)expected);
    *value = SPAWN_TASKS / ((double)st.ns / 1e9);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* skynet1: a root task spawns 10 children, recursively, 6 levels deep; the
 * 1,000,000 leaves return their ordinal and every parent spawns its 10
 * children, then awaits each and returns the sum. Value: ms from spawning
 * the root to its result. Check: 499999500000.
 *
 * A node's argument packs its first leaf ordinal and its level into the
 * pointer (ordinal << 3 | level), so the tree allocates nothing itself. */

enum {
    SKYNET_LEVELS = 6,
    SKYNET_FANOUT = 10
};
static const uintptr_t skynet_leaves_below[SKYNET_LEVELS + 1] = {
    1000000, 100000, 10000, 1000, 100, 10, 1,
};
static const int64_t SKYNET_ANSWER = 499999500000;

static int skynet_node(void *arg, void **result)
{
    uintptr_t level = (uintptr_t)arg & 7;
    uintptr_t first = (uintptr_t)arg >> 3;
    weft_task_t *kids[SKYNET_FANOUT];
    int rc = 0;
    int spawned = 0;

    if (level == SKYNET_LEVELS) {
        *result = weft_int((intptr_t)first);
        return 0;
    }
    uintptr_t step = skynet_leaves_below[level + 1];
    for (; spawned < SKYNET_FANOUT; spawned++) {
        uintptr_t child = ((first + (uintptr_t)spawned * step) << 3) | (level + 1);
        rc = weft_spawn(NULL, skynet_node, (void *)child, &kids[spawned]);
        if (rc != 0)
            break;
    }
    intptr_t sum = 0;
    for (int i = 0; i < spawned; i++) {
        void *r = NULL;
        int arc = weft_await_task(kids[i], &r);
        weft_task_unref(kids[i]);
        if (arc != 0 && rc == 0)
            rc = arc;
        sum += weft_to_int(r);
    }
    if (rc != 0)
        return weft_fail(rc, "spawning or awaiting a child failed");
    *result = weft_int(sum);
    return 0;
}

typedef struct skynet_state {
    int64_t answer;
    uint64_t ns;
} skynet_state_t;

static int skynet_main(void *arg, void **result)
{
    skynet_state_t *st = arg;
    weft_task_t *root;
    void *r = NULL;

    (void)result;
    uint64_t t0 = bench_now_ns();
    int rc = weft_spawn(NULL, skynet_node, (void *)(uintptr_t)0, &root);
    if (rc != 0)
        return weft_fail(rc, "cannot spawn the root");
    rc = weft_await_task(root, &r);
    st->ns = bench_now_ns() - t0;
    if (rc != 0) {
        const char *msg = weft_task_message(root);
        rc = weft_fail(rc, msg != NULL ? msg : "the root failed");
    }
    weft_task_unref(root);
    st->answer = weft_to_int(r);
    return rc;
}

int bench_skynet1(weft_loop_t *loop, double *value)
{
    skynet_state_t st = {0};

    if (bench_run_main(loop, skynet_main, &st, NULL) != 0)
        return -1;
    if (st.answer != SKYNET_ANSWER)
        return bench_fail("answer %ld, expected %ld", (long)st.answer, (long)SKYNET_ANSWER);
    *value = (double)st.ns / 1e6;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* pingpong_future: pingpong_local's exchange (1,000,000 round trips on ONE
 * loop, ns per round trip) without a queue, for comparison with the
 * weft_queue_t version (bench_asyncio.c). Check: checksums of what each side
 * got.
 *
 * The message goes through a one-slot handoff made of futures: each side awaits a fresh future of
 * its own ("its box") that the other side completes with the message. Pong makes its next box
 * before it answers, so a box is always waiting when ping sends; the first
 * one is made before either task runs. Ping sends i, pong answers 2i + 1. */

enum {
    PINGPONG_ROUNDS = 1000000
};

typedef struct pingpong {
    weft_future_t *pong_box; /* what pong awaits next; owned (referenced) by pong */
    weft_future_t *ping_box; /* what ping awaits next; owned (referenced) by ping */
    uint64_t pong_got;       /* sum of messages pong received */
    uint64_t ping_got;       /* sum of answers ping received */
    uint64_t rounds;
    uint64_t ns;
} pingpong_t;

static int ping_body(void *arg, void **result)
{
    pingpong_t *pp = arg;

    (void)result;
    uint64_t t0 = bench_now_ns();
    for (intptr_t i = 0; i < PINGPONG_ROUNDS; i++) {
        weft_future_t *box;
        void *answer = NULL;
        int rc = weft_future_new(NULL, &box);
        if (rc != 0)
            return weft_fail(rc, "ping: weft_future_new failed");
        pp->ping_box = box;
        if (pp->pong_box == NULL)
            rc = weft_fail(UV_EINVAL, "ping: pong has no box to receive");
        else
            rc = weft_future_set_result(pp->pong_box, weft_int(i));
        if (rc == 0)
            rc = weft_await(box, &answer);
        pp->ping_box = NULL;
        weft_future_unref(box);
        if (rc != 0)
            return rc;
        pp->ping_got += (uint64_t)weft_to_int(answer);
        pp->rounds++;
    }
    pp->ns = bench_now_ns() - t0;
    return 0;
}

static int pong_body(void *arg, void **result)
{
    pingpong_t *pp = arg;

    (void)result;
    for (int i = 0; i < PINGPONG_ROUNDS; i++) {
        weft_future_t *box = pp->pong_box;
        void *msg = NULL;
        int rc = weft_await(box, &msg);
        pp->pong_box = NULL;
        weft_future_unref(box);
        if (rc != 0)
            return weft_fail(rc, "pong: awaiting a message failed");
        pp->pong_got += (uint64_t)weft_to_int(msg);
        if (i + 1 < PINGPONG_ROUNDS) {
            rc = weft_future_new(NULL, &pp->pong_box);
            if (rc != 0)
                return weft_fail(rc, "pong: weft_future_new failed");
        }
        if (pp->ping_box == NULL)
            return weft_fail(UV_EINVAL, "pong: ping has no box to receive");
        rc = weft_future_set_result(pp->ping_box, weft_int(2 * weft_to_int(msg) + 1));
        if (rc != 0)
            return weft_fail(rc, "pong: weft_future_set_result failed");
    }
    return 0;
}

int bench_pingpong_future(weft_loop_t *loop, double *value)
{
    pingpong_t pp = {0};
    weft_task_t *ping, *pong;
    const uint64_t n = PINGPONG_ROUNDS;

    int rc = weft_future_new(loop, &pp.pong_box);
    if (rc != 0)
        return bench_fail("weft_future_new: %s", weft_err_name(rc));
    rc = weft_spawn(loop, pong_body, &pp, &pong);
    if (rc != 0) {
        weft_future_unref(pp.pong_box);
        return bench_fail("weft_spawn: %s", weft_err_name(rc));
    }
    rc = weft_spawn(loop, ping_body, &pp, &ping);
    if (rc != 0) {
        /* Pong waits for a message that never comes: cancel it and let it
         * unwind before the loop is reused. */
        weft_task_cancel(pong);
        int rrc = weft_loop_run(loop);
        (void)rrc;
        weft_task_unref(pong);
        return bench_fail("weft_spawn: %s", weft_err_name(rc));
    }
    rc = weft_loop_run(loop);
    int ok_ping = bench_check_task(ping, "ping", NULL);
    int ok_pong = bench_check_task(pong, "pong", NULL);
    if (rc != 0)
        return bench_fail("weft_loop_run: %s", weft_err_name(rc));
    if (ok_ping != 0 || ok_pong != 0)
        return -1;
    if (pp.rounds != n || pp.pong_got != n * (n - 1) / 2 || pp.ping_got != n * n)
        return bench_fail("checksum: %lu rounds, pong got %lu (expected %lu), ping got %lu "
                          "(expected %lu)",
                          (unsigned long)pp.rounds, (unsigned long)pp.pong_got,
                          (unsigned long)(n * (n - 1) / 2), (unsigned long)pp.ping_got,
                          (unsigned long)(n * n));
    *value = (double)pp.ns / (double)n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* timers: 100,000 tasks each sleep a pseudo-random 1..100 ms (LCG seeded 42:
 * ms = 1 + (state >> 33) % 100) and finish. Value: ms from the first spawn
 * until the last has finished (ideal ~100). Check: all finished, the whole
 * run took at least the longest sleep, and none of every 64th sleeper (the
 * ones that read the clock: reading it in every task would add a few ms to
 * the measurement) woke up more than 1 ms (clock granularity) early. */

enum {
    TIMER_CHECK_EVERY = 64,
    TIMER_TASKS = 100000,
    TIMER_WAIT_MS = 20000
};

typedef struct timers_state timers_state_t;

typedef struct timer_sleeper {
    timers_state_t *st;
    uint32_t ms;
    bool check; /* time the sleep and count it if it ended early */
} timer_sleeper_t;

struct timers_state {
    timer_sleeper_t *sleepers;
    weft_future_t *all_done; /* set by the last task to finish; NULL once nobody waits */
    uint64_t finished;
    uint64_t early;         /* woke up more than 1 ms before their time */
    int64_t worst_early_ns; /* the earliest of those, in ns before the time */
    uint64_t max_ms;
    uint64_t ns;
};

static int timer_body(void *arg, void **result)
{
    timer_sleeper_t *s = arg;
    timers_state_t *st = s->st;

    (void)result;
    uint64_t t0 = s->check ? bench_now_ns() : 0;
    int rc = weft_sleep(s->ms);
    if (rc != 0)
        return weft_fail(rc, "weft_sleep failed");
    if (s->check) {
        int64_t early_ns = (int64_t)s->ms * 1000000 - (int64_t)(bench_now_ns() - t0);
        if (early_ns > 1000000) {
            st->early++;
            if (early_ns > st->worst_early_ns)
                st->worst_early_ns = early_ns;
        }
    }
    if (++st->finished == TIMER_TASKS && st->all_done != NULL) {
        rc = weft_future_set_result(st->all_done, NULL);
        if (rc != 0)
            return weft_fail(rc, "cannot complete the all-done future");
    }
    return 0;
}

static int timers_main(void *arg, void **result)
{
    timers_state_t *st = arg;

    (void)result;
    int rc = weft_future_new(NULL, &st->all_done);
    if (rc != 0)
        return weft_fail(rc, "weft_future_new failed");
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < TIMER_TASKS; i++) {
        rc = weft_spawn(NULL, timer_body, &st->sleepers[i], NULL);
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = weft_await_timeout(st->all_done, TIMER_WAIT_MS, NULL);
    st->ns = bench_now_ns() - t0;
    weft_future_unref(st->all_done);
    st->all_done = NULL;
    if (rc != 0) {
        char why[128];
        snprintf(why, sizeof why, "%s after %lu of %d sleepers finished",
                 rc == UV_ETIMEDOUT ? "timed out" : "spawning or waiting failed",
                 (unsigned long)st->finished, TIMER_TASKS);
        return weft_fail(rc, why);
    }
    return 0;
}

int bench_timers(weft_loop_t *loop, double *value)
{
    timers_state_t st = {.sleepers = malloc(TIMER_TASKS * sizeof(timer_sleeper_t))};
    uint64_t lcg = 42;

    if (st.sleepers == NULL)
        return bench_fail("out of memory");
    for (int i = 0; i < TIMER_TASKS; i++) {
        uint32_t ms = (uint32_t)(1 + (bench_lcg_next(&lcg) >> 33) % 100);
        st.sleepers[i] = (timer_sleeper_t){&st, ms, i % TIMER_CHECK_EVERY == 0};
        if (ms > st.max_ms)
            st.max_ms = ms;
    }
    int rc = bench_run_main(loop, timers_main, &st, NULL);
    free(st.sleepers);
    if (rc != 0)
        return -1;
    if (st.finished != TIMER_TASKS)
        return bench_fail("%lu of %d sleepers finished", (unsigned long)st.finished, TIMER_TASKS);
    if (st.ns < st.max_ms * 1000000)
        return bench_fail("all finished after %.2f ms, before the longest sleep (%lu ms)",
                          (double)st.ns / 1e6, (unsigned long)st.max_ms);
    if (st.early != 0)
        return bench_fail("%lu checked sleepers woke up more than 1 ms early (worst: %.2f ms "
                          "early)",
                          (unsigned long)st.early, (double)st.worst_early_ns / 1e6);
    *value = (double)st.ns / 1e6;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* mem_per_task, mem_per_task_compact: resident memory growth per suspended
 * task, 100,000 tasks all awaiting one never-set future. Value: KiB/task.
 * Check: all 100,000 were suspended at the measurement and all finish with
 * UV_ECANCELED once the future is cancelled.
 *
 * Each run happens in a fresh child process on a fresh loop, so that memory
 * freed by an earlier run (kept by jemalloc or by weft's pools) cannot hide
 * growth. Within the child the loop is first warmed by one small round of
 * the same work; the growth is measured from just before the spawns to the
 * moment all tasks are suspended. */

enum {
    MEM_TASKS = 100000,
    MEM_WARM_TASKS = 10,
    MEM_CHILD_TIMEOUT_S = 60
};

typedef struct mem_state {
    int tasks;
    weft_future_t *never;    /* never set: cancelled after the measurement */
    weft_future_t *all_done; /* set by the last task to finish; NULL once nobody waits */
    int started, finished, not_cancelled;
    int measured; /* tasks started (and so suspended) when rss_after was read */
    uint64_t rss_before, rss_after;
} mem_state_t;

static int mem_waiter(void *arg, void **result)
{
    mem_state_t *st = arg;

    (void)result;
    st->started++;
    int rc = weft_await(st->never, NULL);
    if (rc != UV_ECANCELED)
        st->not_cancelled++;
    if (++st->finished == st->tasks && st->all_done != NULL) {
        rc = weft_future_set_result(st->all_done, NULL);
        if (rc != 0)
            return weft_fail(rc, "cannot complete the all-done future");
    }
    return 0;
}

static int mem_main(void *arg, void **result)
{
    mem_state_t *st = arg;
    int rc;

    (void)result;
    if ((rc = weft_future_new(NULL, &st->never)) != 0)
        return weft_fail(rc, "weft_future_new failed");
    if ((rc = weft_future_new(NULL, &st->all_done)) != 0) {
        weft_future_unref(st->never);
        return weft_fail(rc, "weft_future_new failed");
    }
    st->rss_before = bench_rss_bytes();
    int spawned = 0;
    for (; spawned < st->tasks; spawned++) {
        rc = weft_spawn(NULL, mem_waiter, st, NULL);
        if (rc != 0)
            break;
    }
    int wanted = st->tasks;
    st->tasks = spawned; /* the last of these completes all_done */
    /* Every spawned task runs up to its await, then this task runs again. A
     * few more rounds (bounded) in case the loop starts them in batches, then
     * a short sleep lets deferred work settle before the measurement. */
    for (int round = 0; rc == 0 && st->started < spawned && round < 100; round++)
        rc = weft_yield();
    if (rc == 0)
        rc = weft_sleep(1);
    if (rc == 0) {
        st->rss_after = bench_rss_bytes();
        st->measured = st->started;
    }

    weft_future_cancel(st->never);
    int wrc = 0;
    if (spawned > 0 && st->finished < spawned)
        wrc = weft_await_timeout(st->all_done, 20000, NULL);
    weft_future_unref(st->all_done);
    st->all_done = NULL;
    weft_future_unref(st->never);
    st->never = NULL;
    if (rc != 0) {
        char why[128];
        snprintf(why, sizeof why, "spawning or suspending failed after %d of %d spawns", spawned,
                 wanted);
        return weft_fail(rc, why);
    }
    if (wrc != 0)
        return weft_fail(wrc, "waiting for the cancelled tasks failed");
    return 0;
}

static int mem_run_child(void *arg, double *value)
{
    const weft_loop_opts_t *opts = arg;
    weft_loop_t loop;
    mem_state_t warm = {.tasks = MEM_WARM_TASKS};
    mem_state_t st = {.tasks = MEM_TASKS};

    int rc = weft_loop_init(&loop, opts);
    if (rc != 0)
        return bench_fail("weft_loop_init: %s", weft_err_name(rc));
    rc = bench_run_main(&loop, mem_main, &warm, NULL);
    if (rc == 0)
        rc = bench_run_main(&loop, mem_main, &st, NULL);
    int crc = weft_loop_close(&loop);
    if (rc != 0)
        return -1;
    if (crc != 0)
        return bench_fail("weft_loop_close: %s", weft_err_name(crc));
    if (st.measured != MEM_TASKS)
        return bench_fail("only %d of %d tasks were suspended at the measurement", st.measured,
                          MEM_TASKS);
    if (st.finished != MEM_TASKS || st.not_cancelled != 0)
        return bench_fail("%d of %d tasks finished, %d not with ECANCELED", st.finished, MEM_TASKS,
                          st.not_cancelled);
    if (st.rss_before == 0 || st.rss_after == 0)
        return -1;
    *value = ((double)st.rss_after - (double)st.rss_before) / 1024.0 / MEM_TASKS;
    return 0;
}

int bench_mem_per_task(weft_loop_t *loop, double *value)
{
    weft_loop_opts_t opts = {.stack_mode = WEFT_STACK_GUARDED};

    (void)loop;
    return bench_in_child(mem_run_child, &opts, MEM_CHILD_TIMEOUT_S, value);
}

int bench_mem_per_task_compact(weft_loop_t *loop, double *value)
{
    weft_loop_opts_t opts = {.stack_mode = WEFT_STACK_COMPACT};

    (void)loop;
    return bench_in_child(mem_run_child, &opts, MEM_CHILD_TIMEOUT_S, value);
}

/* ------------------------------------------------------------------------ */
/* threadsafe_post: a plain OS thread posts 1,000,000 callbacks to a running
 * loop with weft_call_soon_threadsafe; the loop counts them. Value: posts per
 * second, from the first post to the loop having run the last callback.
 * Check: the count, the sum of the arguments (1..N), and that they ran in
 * posting order (the API promises FIFO per posting thread): a callback whose
 * number is below the highest already run is counted as late.
 *
 * The callback's one argument carries the sequence number for the checksum,
 * so the callback finds the counters through post_current, which points at
 * the state of the one run in progress (runs never overlap in a process). */

enum {
    POST_COUNT = 1000000,
    POST_WAIT_MS = 30000
};

typedef struct post_state {
    /* Written by the loop thread only. */
    weft_future_t *all_done; /* set by the last callback; NULL once nobody waits */
    uint64_t count, sum;
    uint64_t max_seen;           /* highest sequence number run so far */
    uint64_t late;               /* callbacks that ran after a later-posted one */
    uint64_t late_seq, late_max; /* the first of those, and max_seen then */
    int done_error;              /* completing all_done failed */
    uint64_t end_ns;
    /* Set before the poster starts, then only read. The poster gets its own
     * cache lines so that the measurement is not slowed by false sharing
     * with the counters above. poster_done names all_done for the poster
     * to fail it from its thread; the poster uses it once either way (fails
     * the future, or drops the token). */
    _Alignas(64) weft_loop_t *loop;
    weft_future_token_t poster_done;
    /* Written by the poster thread; read after pthread_join. */
    _Alignas(64) uint64_t start_ns;
    uint64_t posted;
    int post_error;
} post_state_t;

static post_state_t *post_current;

static void post_cb(void *arg)
{
    post_state_t *st = post_current;
    uint64_t seq = (uint64_t)(uintptr_t)arg;

    if (seq < st->max_seen) {
        if (st->late++ == 0) {
            st->late_seq = seq;
            st->late_max = st->max_seen;
        }
    } else {
        st->max_seen = seq;
    }
    st->count++;
    st->sum += seq;
    if (st->count == POST_COUNT) {
        st->end_ns = bench_now_ns();
        if (st->all_done != NULL)
            st->done_error = weft_future_set_result(st->all_done, NULL);
    }
}

static void *poster(void *arg)
{
    post_state_t *st = arg;
    weft_loop_t *loop = st->loop;
    uintptr_t seq;

    st->start_ns = bench_now_ns();
    for (seq = 1; seq <= POST_COUNT; seq++) {
        int rc = weft_call_soon_threadsafe(loop, post_cb, (void *)seq);
        if (rc != 0) {
            /* Wake the waiting main task early if the inbox still works. */
            st->post_error = rc;
            rc = weft_future_set_error_threadsafe(st->poster_done, rc, "a post failed");
            (void)rc;
            st->posted = seq - 1;
            return NULL;
        }
    }
    int rc = weft_future_token_drop(st->poster_done);
    (void)rc; /* WEFT_ECLOSED cannot happen: the loop waits for us */
    st->posted = seq - 1;
    return NULL;
}

static int post_main(void *arg, void **result)
{
    post_state_t *st = arg;
    pthread_t thread;

    (void)result;
    st->loop = weft_loop_current();
    int rc = weft_future_new(NULL, &st->all_done);
    if (rc != 0)
        return weft_fail(rc, "weft_future_new failed");
    if ((rc = weft_future_token(st->all_done, &st->poster_done)) != 0) {
        weft_future_unref(st->all_done);
        return weft_fail(rc, "weft_future_token failed");
    }
    int prc = pthread_create(&thread, NULL, poster, st);
    if (prc != 0) {
        int drc = weft_future_token_drop(st->poster_done);
        (void)drc; /* on its own loop: cannot fail */
        weft_future_unref(st->all_done);
        st->all_done = NULL;
        return weft_fail(UV_EAGAIN, "pthread_create failed");
    }
    rc = weft_await_timeout(st->all_done, POST_WAIT_MS, NULL);
    weft_future_unref(st->all_done);
    st->all_done = NULL;
    /* The poster has finished or is about to (it never waits for the loop);
     * blocking the loop thread for that is fine. */
    pthread_join(thread, NULL);
    if (rc != 0) {
        char why[128];
        snprintf(why, sizeof why, "%s after %lu of %d callbacks ran",
                 rc == UV_ETIMEDOUT ? "timed out" : "waiting failed", (unsigned long)st->count,
                 POST_COUNT);
        return weft_fail(rc, why);
    }
    return 0;
}

int bench_threadsafe_post(weft_loop_t *loop, double *value)
{
    post_state_t st = {0};
    const uint64_t n = POST_COUNT;

    post_current = &st;
    int rc = bench_run_main(loop, post_main, &st, NULL);
    post_current = NULL;
    if (st.post_error != 0)
        return bench_fail("weft_call_soon_threadsafe failed after %lu posts: %s",
                          (unsigned long)st.posted, weft_err_name(st.post_error));
    if (rc != 0)
        return -1;
    if (st.count != n || st.sum != n * (n + 1) / 2)
        return bench_fail("%lu callbacks ran (expected %lu), argument sum %lu (expected %lu)",
                          (unsigned long)st.count, (unsigned long)n, (unsigned long)st.sum,
                          (unsigned long)(n * (n + 1) / 2));
    if (st.late != 0)
        return bench_fail("not in posting order: %lu callbacks ran after a later-posted one "
                          "(the first: post #%lu ran after post #%lu)",
                          (unsigned long)st.late, (unsigned long)st.late_seq,
                          (unsigned long)st.late_max);
    if (st.done_error != 0)
        return bench_fail("completing the all-done future failed: %s",
                          weft_err_name(st.done_error));
    *value = (double)n / ((double)(st.end_ns - st.start_ns) / 1e9);
    return 0;
}

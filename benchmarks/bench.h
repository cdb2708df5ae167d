/*
 * benchmarks/bench.h - what the harness (bench.c) and the workloads share.
 *
 * A workload is one function in the registry (bench_list.h). It does its
 * work exactly once, checks its own answer and returns 0 with the measured
 * value in *value, or calls bench_fail() and returns -1. The harness owns
 * everything else: warm-up, repetitions, time limits, medians, output.
 *
 * Workloads never wait without bound: they await with a timeout where the
 * API has one, and the harness arms alarm() around every run as a backstop.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include <weft/runtime.h>
#include <weft/weft.h>

/* Run the workload once. `loop` is a default-options loop that the harness
 * keeps open (and warm) across the warm-up and all repetitions of one
 * workload, or NULL for workloads registered with own_loop (they make their
 * own, e.g. with other options or in a child process). Returns 0 and sets
 * *value, or -1 after bench_fail(). */
typedef int (*bench_fn)(weft_loop_t *loop, double *value);

typedef struct bench_workload {
    const char *name;
    const char *unit;
    bool higher_is_better;
    bool own_loop;      /* the harness passes loop = NULL */
    unsigned timeout_s; /* per run; the run is killed when it is exceeded */
    bench_fn run;
} bench_workload_t;

/* Print `FAIL weft <current workload> <why>` on stdout, flushed. Returns -1
 * so that `return bench_fail(...)` reads well. Any thread. */
int bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Name of the workload being run, for bench_fail(). Set by the harness. */
extern const char *bench__current_name;

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC; comparable across
 * threads). */
uint64_t bench_now_ns(void);

/* Resident set size of this process in bytes, from /proc/self/statm, or 0
 * after bench_fail() if it cannot be read. */
uint64_t bench_rss_bytes(void);

/* Check that task t finished with 0 (its result goes to *result, which may
 * be NULL) and release the caller's reference to it. Any other outcome is
 * reported with bench_fail(), naming the task `what`. Returns 0 or -1. */
int bench_check_task(weft_task_t *t, const char *what, void **result);

/* Spawn main(arg) on `loop`, run the loop until it has no work left, then
 * bench_check_task() the main task. Loop thread, outside any task. Returns 0
 * or -1 after bench_fail(). */
int bench_run_main(weft_loop_t *loop, weft_task_fn main, void *arg, void **result);

/* Run fn(arg, value) in a forked child process, so that it starts from the
 * memory state of this process and leaves nothing behind, and bring *value
 * back through a pipe. The child is killed by alarm() after timeout_s.
 * Returns 0, or -1 after bench_fail() (the child reports its own failures). */
int bench_in_child(int (*fn)(void *arg, double *value), void *arg, unsigned timeout_s,
                   double *value);

/* The classic 64-bit LCG (Knuth's MMIX constants), the same in every runtime
 * that runs these workloads. */
static inline uint64_t bench_lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return *state;
}

/* Options of a quiet runtime of two loops (the cross-loop workloads). */
weft_runtime_opts_t bench_two_loops(void);

#endif /* WEFT_BENCH_H */

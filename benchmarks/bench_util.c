/*
 * benchmarks/bench_util.c - the small services workloads use: failure
 * reporting, clocks, resident memory, running a main task, and running a
 * measurement in a child process.
 *
 * Failures are printed the moment they are found, on stdout, in the one
 * format the result collectors parse (`FAIL weft <workload> <why>`), and
 * flushed at once because the process may be a forked child that ends with
 * _exit().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchmarks/bench.h"

const char *bench__current_name = "?";

int bench_fail(const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    printf("FAIL weft %s %s\n", bench__current_name, why);
    fflush(stdout);
    return -1;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL) {
        bench_fail("cannot open /proc/self/statm: %s", strerror(errno));
        return 0;
    }
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2) {
        bench_fail("cannot parse /proc/self/statm");
        return 0;
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static bool task_finished(weft_task_state_t state)
{
    return state == WEFT_TASK_DONE || state == WEFT_TASK_FAILED || state == WEFT_TASK_CANCELLED;
}

int bench_check_task(weft_task_t *t, const char *what, void **result)
{
    weft_task_state_t state = weft_task_state(t);
    int ok = -1;

    if (!task_finished(state)) {
        bench_fail("%s task did not finish (state %s)", what, weft_task_state_name(state));
    } else {
        void *r = NULL;
        int rc = weft_task_result(t, &r);
        const char *msg = weft_task_message(t);
        if (rc != 0) {
            bench_fail("%s task ended with %s%s%s", what, weft_err_name(rc), msg ? ": " : "",
                       msg ? msg : "");
        } else {
            if (result != NULL)
                *result = r;
            ok = 0;
        }
    }
    weft_task_unref(t);
    return ok;
}

int bench_run_main(weft_loop_t *loop, weft_task_fn main, void *arg, void **result)
{
    weft_task_t *t;
    int rc = weft_spawn(loop, main, arg, &t);

    if (rc != 0)
        return bench_fail("cannot spawn the main task: %s", weft_err_name(rc));
    rc = weft_loop_run(loop);
    if (rc != 0) {
        weft_task_unref(t);
        return bench_fail("weft_loop_run: %s", weft_err_name(rc));
    }
    return bench_check_task(t, "main", result);
}

int bench_in_child(int (*fn)(void *arg, double *value), void *arg, unsigned timeout_s,
                   double *value)
{
    int fds[2];

    if (pipe(fds) != 0)
        return bench_fail("pipe: %s", strerror(errno));
    /* Flush first, or the child would print our buffered output again. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return bench_fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        double v = 0;
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the harness */
        alarm(timeout_s);
        int rc = fn(arg, &v);
        if (rc == 0 && write(fds[1], &v, sizeof v) != (ssize_t)sizeof v)
            rc = bench_fail("cannot send the result to the parent: %s", strerror(errno));
        fflush(stdout);
        _exit(rc == 0 ? 0 : 1);
    }

    close(fds[1]);
    double v;
    size_t got = 0;
    while (got < sizeof v) {
        ssize_t n = read(fds[0], (char *)&v + got, sizeof v - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return bench_fail("waitpid: %s", strerror(errno));
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        return bench_fail("child process timed out after %u s", timeout_s);
    if (WIFSIGNALED(status))
        return bench_fail("child process killed by signal %d (%s)", WTERMSIG(status),
                          strsignal(WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0)
        return -1; /* the child printed its FAIL line */
    if (got != sizeof v)
        return bench_fail("child process sent no result");
    *value = v;
    return 0;
}

weft_runtime_opts_t bench_two_loops(void)
{
    weft_runtime_opts_t o;
    memset(&o, 0, sizeof(o));
    o.loops = 2;
    o.loop.quiet = true;
    return o;
}

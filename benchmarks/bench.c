/*
 * benchmarks/bench.c - weft's benchmark suite: the workloads of
 * docs/workloads.md, measured the same way every time.
 *
 * Run:
 *   bazel run -c opt //benchmarks:bench                        every workload
 *   bazel run -c opt //benchmarks:bench -- skynet1 timers      some of them
 *   bazel run -c opt //benchmarks:bench -- --reps 9 --json out.json switch
 *   bazel run -c opt //benchmarks:bench -- --list
 *   bash tools/bench.sh [workload ...]                         the same as the first
 *   perf record -g bazel-bin/benchmarks/bench --no-fork switch (after a -c opt build)
 * Options: --reps N (measured runs, default 5), --json FILE (default
 * bench-results.json in the directory `bazel run` was started from),
 * --no-fork (run in this process, e.g. under gdb or perf), --stats (loop
 * counters per run on stderr).
 *
 * What it does: for each selected workload, one warm-up run, then N measured
 * runs; the median is the result. stdout gets exactly one line per workload,
 * `RESULT weft <workload> <median> <unit>` (lower is better for ns/op, ms and
 * KiB/task; higher for tasks/s and ops/s), or `FAIL weft <workload> <why>`
 * when a run could not check its own answer; then a summary table headed by
 * a `#` line naming the machine. stderr gets progress, every run's value and
 * the min/max spread. The JSON file has every value of every run. The exit
 * status is 1 if any workload failed.
 *
 * The workloads (definitions in docs/workloads.md, code in bench_core.c):
 *   switch               ns per weft_yield() between two tasks: one task switch
 *   spawn                tasks/s to spawn 1M trivial tasks and await them all
 *   skynet1              ms for a tree of 1.1M tasks (1M leaves) summing ordinals
 *   pingpong_local       ns per round trip of a message between two tasks on one
 *                        loop through two channels (bench_chan.c); pingpong_queue
 *                        is the same through weft_queue_t
 *   pingpong_cross, stream_cross, chan_fanin, select_2   channels between loops
 *                        (bench_chan.c); pingpong_submit and stream_call_on are
 *                        the earlier forms through submit_to and call_on
 *   timers               ms of wall time for 100k sleeps of 1..100 ms (ideal ~100)
 *   mem_per_task[_compact]  resident KiB per suspended task, default (guarded)
 *                        or compact stacks
 *   threadsafe_post      callbacks/s posted by a plain thread to a running loop
 *   offload              jobs/s of 10k CPU jobs through a 2-thread pool (bench_pool.c;
 *                        also prints a LIMIT line: 2 / one job's time alone)
 *   http_hello, echo     req/s of a server on every loop under wrk / weft's own echo
 *                        load (bench_net.c); http_hello_1 and echo_1 on one loop;
 *                        each run prints the server/load CPU split on stderr
 *
 * Reading the numbers: each workload times only the work its definition
 * names, in a warm loop (the same loop serves the warm-up and all runs of a
 * workload; the memory workloads use a fresh process and loop per run
 * instead, so freed memory cannot hide growth). A spread (max - min) of more
 * than a few percent of the median means the machine was noisy: run again
 * with more repetitions before drawing conclusions.
 *
 * Isolation and time limits: each workload runs in a forked child process,
 * so a crash or a hang in one cannot take the others down; every run is
 * bounded by alarm() (the registry's limit per run), and the parent kills a
 * child that overstays the limit of all its runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <weft/runtime.h>

#include "benchmarks/bench_list.h"

enum {
    DEFAULT_REPS = 5,
    MAX_REPS = 1000
};

static const bench_workload_t workloads[] = {
#define BENCH_ENTRY(name, unit, higher, own_loop, timeout) \
    {#name, unit, higher, own_loop, timeout, bench_##name},
    BENCH_LIST(BENCH_ENTRY)
#undef BENCH_ENTRY
};
enum {
    NWORKLOADS = sizeof workloads / sizeof workloads[0]
};

typedef struct options {
    int reps;
    const char *json_path;
    bool no_fork;
    bool stats;
} options_t;

/* What one workload produced: the warm-up value and every measured run. */
typedef struct result {
    const bench_workload_t *w;
    bool ok;
    char why[160]; /* for failures the harness itself detects */
    double warmup;
    int nvalues;
    double values[MAX_REPS];
    double median, min, max;
    double steal_pct; /* CPU time the hypervisor took meanwhile, or -1 */
} result_t;

/* ------------------------------------------------------------------------ */
/* Formatting */

/* Enough digits to compare runs, no more: 4.41 ns/op, 52.31 ms, 412.7 ms,
 * 45123456 tasks/s, 0.312 KiB/task. */
static const char *fmt_value(double v, char *buf, size_t size)
{
    double a = fabs(v);
    int decimals = a >= 10000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3;

    snprintf(buf, size, "%.*f", decimals, v);
    return buf;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void summarise(result_t *r)
{
    double sorted[MAX_REPS];
    int n = r->nvalues;

    memcpy(sorted, r->values, (size_t)n * sizeof sorted[0]);
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_double);
    r->min = sorted[0];
    r->max = sorted[n - 1];
    r->median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/* ------------------------------------------------------------------------ */
/* Measuring one workload (in the child, or in-process with --no-fork) */

static void print_stats_delta(const weft_loop_stats_t *a, const weft_loop_stats_t *b)
{
#define D(field) (unsigned long)(b->field - a->field)
    fprintf(stderr,
            "      stats: spawned %lu finished %lu inline %lu switches %lu callbacks %lu "
            "threadsafe %lu overflows %lu wakeups %lu iterations %lu; stacks in use %lu "
            "pooled %lu; max lag %.3f ms\n",
            D(tasks_spawned), D(tasks_finished), D(tasks_inline), D(switches), D(callbacks_run),
            D(threadsafe_received), D(inbox_overflows), D(wakeups), D(iterations),
            (unsigned long)b->stacks_in_use, (unsigned long)b->stacks_pooled,
            (double)b->max_lag_ns / 1e6);
#undef D
}

/* One warm-up run and opts->reps measured runs of w into r. Returns 0, or -1
 * after a FAIL line. */
static int measure(const bench_workload_t *w, const options_t *opts, result_t *r)
{
    weft_loop_t *lp = NULL;
    char buf[64];
    int rc;

    bench__current_name = w->name;
    if (!w->own_loop) {
        lp = aligned_alloc(_Alignof(weft_loop_t), sizeof *lp);
        if (lp == NULL)
            return bench_fail("out of memory");
        if ((rc = weft_loop_init(lp, NULL)) != 0) {
            free(lp);
            return bench_fail("weft_loop_init: %s", weft_err_name(rc));
        }
    }
    rc = 0;
    for (int i = -1; i < opts->reps && rc == 0; i++) {
        weft_loop_stats_t before, after;
        double v = NAN;

        if (lp != NULL)
            weft_loop_stats(lp, &before);
        alarm(w->timeout_s);
        rc = w->run(lp, &v);
        alarm(0);
        if (rc != 0)
            break;
        if (!isfinite(v) || v < 0) {
            rc = bench_fail("the run reported an impossible value (%g)", v);
            break;
        }
        if (i < 0) {
            r->warmup = v;
            fprintf(stderr, "      warm-up  %s %s\n", fmt_value(v, buf, sizeof buf), w->unit);
        } else {
            r->values[r->nvalues++] = v;
            fprintf(stderr, "      run %d/%d  %s %s\n", i + 1, opts->reps,
                    fmt_value(v, buf, sizeof buf), w->unit);
        }
        if (opts->stats && lp != NULL) {
            weft_loop_stats(lp, &after);
            print_stats_delta(&before, &after);
        }
    }
    if (lp != NULL) {
        /* After a failure tasks may legitimately still be alive; a loop that
         * does not close is left allocated, never reused. */
        int crc = weft_loop_close(lp);
        if (crc == 0)
            free(lp);
        else if (rc == 0)
            rc = bench_fail("weft_loop_close after the runs: %s (something was left behind)",
                            weft_err_name(crc));
    }
    r->ok = rc == 0;
    return rc;
}

/* The child's report to the parent: ok, warm-up, count, values. */
static int send_result(int fd, const result_t *r)
{
    size_t len = offsetof(result_t, values) + (size_t)r->nvalues * sizeof r->values[0];
    const char *p = (const char *)r;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read the child's report until EOF or the deadline. Returns bytes read, or
 * -1 if the deadline passed. */
static ssize_t recv_result(int fd, result_t *r, uint64_t deadline_ns)
{
    char *p = (char *)r;
    size_t got = 0;

    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= deadline_ns)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int timeout_ms = (int)((deadline_ns - now) / 1000000) + 1;
        int n = poll(&pfd, 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            continue;
        if (n < 0)
            return (ssize_t)got;
        ssize_t m = read(fd, p + got, sizeof *r - got);
        if (m < 0 && errno == EINTR)
            continue;
        if (m <= 0)
            return (ssize_t)got;
        got += (size_t)m;
    }
}

/* Run measure() in a child process and collect its report into r. */
static void measure_in_child(const bench_workload_t *w, const options_t *opts, result_t *r)
{
    int fds[2];

    r->ok = false;
    if (pipe(fds) != 0) {
        snprintf(r->why, sizeof r->why, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->why, sizeof r->why, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the harness */
        measure(w, opts, r);
        int rc = send_result(fds[1], r);
        fflush(stdout);
        _exit(rc == 0 && r->ok ? 0 : 1);
    }

    close(fds[1]);
    /* Every run has its own alarm; this is the backstop for a child that
     * blocks SIGALRM or hangs between runs. */
    uint64_t limit_s = (uint64_t)(opts->reps + 1) * w->timeout_s + 10;
    ssize_t got = recv_result(fds[0], r, bench_now_ns() + limit_s * 1000000000u);
    if (got < 0)
        kill(pid, SIGKILL);
    close(fds[0]);

    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r->w = w;
    size_t header = offsetof(result_t, values);
    bool complete = got >= (ssize_t)header && r->nvalues >= 0 && r->nvalues <= MAX_REPS &&
                    (size_t)got == header + (size_t)r->nvalues * sizeof r->values[0];
    bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    r->why[0] = '\0';
    if (complete && clean_exit && r->ok)
        return;
    r->ok = false;
    if (got < 0) {
        snprintf(r->why, sizeof r->why, "timed out: no report within %lu s; killed",
                 (unsigned long)limit_s);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        snprintf(r->why, sizeof r->why, "timed out: a run took longer than %u s", w->timeout_s);
    } else if (WIFSIGNALED(status)) {
        snprintf(r->why, sizeof r->why, "crashed: signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else if (!complete) {
        snprintf(r->why, sizeof r->why, "the child exited with status %d without a full report",
                 WEXITSTATUS(status));
    }
    /* Otherwise the child printed its own FAIL line. */
}

/* ------------------------------------------------------------------------ */
/* Machine description, summary and JSON */

/* All CPUs' time from /proc/stat, in ticks: the total and the part stolen by
 * the hypervisor. On a shared VM steal is the first suspect for a spread. */
typedef struct cpu_times {
    uint64_t total, steal;
} cpu_times_t;

static bool read_cpu_times(cpu_times_t *t)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");

    if (f == NULL)
        return false;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return false;
    t->total = 0;
    for (int i = 0; i < 8; i++)
        t->total += v[i];
    t->steal = v[7];
    return true;
}

static double steal_pct(const cpu_times_t *a, const cpu_times_t *b)
{
    if (b->total <= a->total)
        return -1;
    return 100.0 * (double)(b->steal - a->steal) / (double)(b->total - a->total);
}

typedef struct machine {
    long nproc;
    char cpu[128];
    char kernel[256];
    char date[32];
    char loadavg[32]; /* 1, 5 and 15 minute load averages at the start */
} machine_t;

static void describe_machine(machine_t *m)
{
    struct utsname u;
    char line[256];
    time_t now = time(NULL);

    m->nproc = weft_cpu_count(); /* what the loops may use, not every online CPU */
    snprintf(m->cpu, sizeof m->cpu, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (colon == NULL || strncmp(line, "model name", 10) != 0)
            continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(m->cpu, sizeof m->cpu, "%s", colon);
        break;
    }
    if (f != NULL)
        fclose(f);
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof m->kernel, "%s %s %s", u.sysname, u.release, u.machine);
    else
        snprintf(m->kernel, sizeof m->kernel, "unknown kernel");
    strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(m->loadavg, sizeof m->loadavg, "?");
    f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        double l1, l5, l15;
        if (fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
            snprintf(m->loadavg, sizeof m->loadavg, "%.2f %.2f %.2f", l1, l5, l15);
        fclose(f);
    }
}

static void print_summary(const machine_t *m, const options_t *opts, const result_t *res, int n)
{
    char med[32], lo[32], hi[32];

    printf("# weft benchmarks, %s: %ld CPUs, %s, %s, load %s; median of %d run%s after 1 "
           "warm-up\n",
           m->date, m->nproc, m->cpu, m->kernel, m->loadavg, opts->reps,
           opts->reps == 1 ? "" : "s");
    printf("# %-22s %12s %-9s %12s %12s %5s %7s\n", "workload", "median", "unit", "min", "max",
           "reps", "steal%");
    for (int i = 0; i < n; i++) {
        const result_t *r = &res[i];
        if (!r->ok) {
            printf("  %-22s %12s %-9s %12s %12s %5d %7.1f\n", r->w->name, "FAIL", r->w->unit, "-",
                   "-", r->nvalues, r->steal_pct);
            continue;
        }
        printf("  %-22s %12s %-9s %12s %12s %5d %7.1f\n", r->w->name,
               fmt_value(r->median, med, sizeof med), r->w->unit, fmt_value(r->min, lo, sizeof lo),
               fmt_value(r->max, hi, sizeof hi), r->nvalues, r->steal_pct);
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int write_json(const char *path, const machine_t *m, const options_t *opts,
                      const result_t *res, int n)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fprintf(f, "{\n  \"runtime\": \"weft\",\n  \"date\": ");
    json_string(f, m->date);
    fprintf(f, ",\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", m->nproc);
    json_string(f, m->cpu);
    fprintf(f, ", \"kernel\": ");
    json_string(f, m->kernel);
    fprintf(f, ", \"loadavg\": ");
    json_string(f, m->loadavg);
    fprintf(f, "},\n  \"reps\": %d,\n  \"warmup_runs\": 1,\n  \"results\": [", opts->reps);
    for (int i = 0; i < n; i++) {
        const result_t *r = &res[i];
        fprintf(f, "%s\n    {\"workload\": ", i ? "," : "");
        json_string(f, r->w->name);
        fprintf(f, ", \"unit\": ");
        json_string(f, r->w->unit);
        fprintf(f, ", \"higher_is_better\": %s, \"ok\": %s",
                r->w->higher_is_better ? "true" : "false", r->ok ? "true" : "false");
        if (r->ok)
            fprintf(f, ", \"median\": %.9g, \"min\": %.9g, \"max\": %.9g, \"warmup\": %.9g",
                    r->median, r->min, r->max, r->warmup);
        fprintf(f, ", \"steal_pct\": %.1f, \"reps\": [", r->steal_pct);
        for (int j = 0; j < r->nvalues; j++)
            fprintf(f, "%s%.9g", j ? ", " : "", r->values[j]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* `bazel run` starts the binary in its runfiles tree; relative paths are
 * meant relative to where the user typed the command. */
static void resolve_path(const char *path, char *out, size_t size)
{
    const char *base = getenv("BUILD_WORKING_DIRECTORY");

    if (path[0] == '/' || base == NULL || base[0] == '\0')
        snprintf(out, size, "%s", path);
    else
        snprintf(out, size, "%s/%s", base, path);
}

/* ------------------------------------------------------------------------ */
/* Command line */

static const bench_workload_t *find_workload(const char *name)
{
    for (int i = 0; i < NWORKLOADS; i++) {
        if (strcmp(workloads[i].name, name) == 0)
            return &workloads[i];
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench [--reps N] [--json FILE] [--no-fork] [--stats] [--list] "
               "[workload ...]\nworkloads:");
    for (int i = 0; i < NWORKLOADS; i++)
        fprintf(f, " %s", workloads[i].name);
    fprintf(f, "\n");
}

int main(int argc, char **argv)
{
    options_t opts = {.reps = DEFAULT_REPS, .json_path = "bench-results.json"};
    const bench_workload_t *selected[NWORKLOADS * 4];
    int nselected = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--reps") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end != '\0' || n < 1 || n > MAX_REPS) {
                fprintf(stderr, "bench: --reps takes 1..%d\n", MAX_REPS);
                return 2;
            }
            opts.reps = (int)n;
        } else if (strcmp(a, "--json") == 0 && i + 1 < argc) {
            opts.json_path = argv[++i];
        } else if (strcmp(a, "--no-fork") == 0) {
            opts.no_fork = true;
        } else if (strcmp(a, "--stats") == 0) {
            opts.stats = true;
        } else if (strcmp(a, "--list") == 0) {
            for (int j = 0; j < NWORKLOADS; j++)
                printf("%-22s %-9s %s is better\n", workloads[j].name, workloads[j].unit,
                       workloads[j].higher_is_better ? "higher" : "lower");
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else if (find_workload(a) == NULL) {
            fprintf(stderr, "bench: unknown workload %s\n", a);
            usage(stderr);
            return 2;
        } else if (nselected < (int)(sizeof selected / sizeof selected[0])) {
            selected[nselected++] = find_workload(a);
        }
    }
    if (nselected == 0) {
        for (int i = 0; i < NWORKLOADS; i++)
            selected[nselected++] = &workloads[i];
    }

    machine_t machine;
    describe_machine(&machine);
    result_t *results = calloc((size_t)nselected, sizeof *results);
    if (results == NULL) {
        fprintf(stderr, "bench: out of memory\n");
        return 2;
    }

    int failures = 0;
    for (int i = 0; i < nselected; i++) {
        const bench_workload_t *w = selected[i];
        result_t *r = &results[i];
        char med[32], lo[32], hi[32];

        cpu_times_t cpu0, cpu1;

        fprintf(stderr, "[%d/%d] %s ...\n", i + 1, nselected, w->name);
        r->w = w;
        bool have_cpu = read_cpu_times(&cpu0);
        if (opts.no_fork)
            measure(w, &opts, r);
        else
            measure_in_child(w, &opts, r);
        r->steal_pct = have_cpu && read_cpu_times(&cpu1) ? steal_pct(&cpu0, &cpu1) : -1;
        bench__current_name = w->name;
        if (!r->ok || r->nvalues != opts.reps) {
            if (r->why[0] != '\0')
                bench_fail("%s", r->why);
            r->ok = false;
            failures++;
            fprintf(stderr, "      FAILED\n");
            continue;
        }
        summarise(r);
        printf("RESULT weft %s %s %s\n", w->name, fmt_value(r->median, med, sizeof med), w->unit);
        fflush(stdout);
        fprintf(stderr,
                "      median %s %s, min %s, max %s, spread %.1f%% of the median; CPU steal "
                "%.1f%%\n",
                med, w->unit, fmt_value(r->min, lo, sizeof lo), fmt_value(r->max, hi, sizeof hi),
                r->median > 0 ? 100.0 * (r->max - r->min) / r->median : 0.0, r->steal_pct);
    }

    print_summary(&machine, &opts, results, nselected);
    char path[4096];
    resolve_path(opts.json_path, path, sizeof path);
    if (write_json(path, &machine, &opts, results, nselected) != 0) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        failures++;
    } else {
        fprintf(stderr, "results written to %s\n", path);
    }
    free(results);
    return failures ? 1 : 0;
}

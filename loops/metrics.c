/*
 * loops/metrics.c - weft_metrics_write (weft/metrics.h): the loops' counters
 * and the runtime's mesh counters in the Prometheus text format
 * (docs/observability.md).
 *
 * A loop's counters are plain fields that its own thread writes (making
 * them atomics would cost the hot paths that bump them). So a runtime's are
 * copied the way the loops themselves would: a message through each loop's
 * inbox runs weft_loop_stats on the loop's thread and hands the copy back
 * under a mutex (which orders the copy before the caller reads it), while
 * the caller waits. The mesh counters are the relaxed atomics that
 * weft_runtime_stats reads from any thread.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <weft/error.h>
#include <weft/loop.h>
#include <weft/metrics.h>
#include <weft/runtime.h>

#include "core/alloc.h"
#include "core/ext.h"

/* ---- snapshots ---------------------------------------------------------------- */

struct snap {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned left;         /* copies not made yet */
    weft_loop_stats_t *st; /* one per loop */
};

/* On loop b's thread (ctx: the loop): copy its counters into s->st[b]. */
static void snap_cb(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)c;
    (void)d;
    struct snap *s = (struct snap *)a;
    weft_loop_stats_t st;
    weft_loop_stats(weft__pub((struct weft__loop *)ctx), &st);
    pthread_mutex_lock(&s->mu);
    s->st[b] = st;
    s->left--;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Every loop of rt copies its own counters into st[i]; the caller waits. */
static int snap_runtime(weft_runtime_t *rt, unsigned n, weft_loop_stats_t *st)
{
    struct snap s = {.left = 0, .st = st};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_mutex_lock(&s.mu);
        s.left++;
        pthread_mutex_unlock(&s.mu);
        rc = weft__post(weft__L(weft_runtime_loop(rt, i)), snap_cb, (uintptr_t)&s, i, 0, 0);
        if (rc != 0) {
            pthread_mutex_lock(&s.mu);
            s.left--;
            pthread_mutex_unlock(&s.mu);
            break; /* still wait for the copies already asked for */
        }
    }
    pthread_mutex_lock(&s.mu);
    while (s.left > 0)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return rc;
}

/* ---- the text format ----------------------------------------------------------- */

enum {
    M_COUNT, /* an integer */
    M_NS,    /* nanoseconds, written as seconds */
};

struct mdef {
    const char *name;
    const char *type; /* "counter" or "gauge" */
    const char *help;
    size_t off; /* of the uint64_t in weft_loop_stats_t */
    int unit;
};

#define F(field) offsetof(weft_loop_stats_t, field)

static const struct mdef loop_metrics[] = {
    {"weft_loop_tasks_spawned_total", "counter", "Tasks spawned.", F(tasks_spawned), M_COUNT},
    {"weft_loop_tasks_finished_total", "counter", "Tasks finished.", F(tasks_finished), M_COUNT},
    {"weft_loop_tasks_live", "gauge", "Tasks alive now.", F(tasks_live), M_COUNT},
    {"weft_loop_tasks_inline_total", "counter", "Tasks started inline by their first awaiter.",
     F(tasks_inline), M_COUNT},
    {"weft_loop_switches_total", "counter", "Stack switches.", F(switches), M_COUNT},
    {"weft_loop_callbacks_total", "counter",
     "Callbacks run (call_soon/later/at, threadsafe, done callbacks).", F(callbacks_run), M_COUNT},
    {"weft_loop_threadsafe_received_total", "counter", "Inbox messages processed.",
     F(threadsafe_received), M_COUNT},
    {"weft_loop_inbox_overflows_total", "counter", "Posts that found the inbox ring full.",
     F(inbox_overflows), M_COUNT},
    {"weft_loop_wakeups_total", "counter", "Times the loop blocked in the poller.", F(wakeups),
     M_COUNT},
    {"weft_loop_iterations_total", "counter", "Scheduler ticks.", F(iterations), M_COUNT},
    {"weft_loop_stacks_in_use", "gauge", "Task stacks in use now.", F(stacks_in_use), M_COUNT},
    {"weft_loop_stacks_pooled", "gauge", "Task stacks pooled for reuse now.", F(stacks_pooled),
     M_COUNT},
    {"weft_loop_stacks_trimmed_total", "counter",
     "Pooled stacks whose pages an idle loop gave back.", F(stacks_trimmed), M_COUNT},
    {"weft_loop_max_tick_seconds", "gauge",
     "Longest time a tick spent running ready work, since the loop was made.", F(max_lag_ns), M_NS},
    {"weft_loop_errors_unretrieved_total", "counter", "Failed tasks or futures released unread.",
     F(errors_unretrieved), M_COUNT},
    {"weft_loop_slow_tasks_total", "counter", "Times a task ran longer than slow_task_ms.",
     F(slow_tasks), M_COUNT},
    {"weft_loop_tokens_live", "gauge", "Future tokens made and not yet used.", F(tokens_live),
     M_COUNT},
    {"weft_loop_tokens_stale_total", "counter", "Token messages that found their future recycled.",
     F(tokens_stale), M_COUNT},
    {"weft_loop_remote_waits", "gauge", "Waits on other loops' futures not yet answered.",
     F(remote_waits), M_COUNT},
    {"weft_loop_slow_reports_total", "counter", "Slow-task reports made.", F(slow_reports),
     M_COUNT},
    {"weft_loop_tasks_pending_at_exit_total", "counter",
     "Tasks still pending when weft_run's main task finished.", F(tasks_pending_at_exit), M_COUNT},
    {"weft_loop_run_seconds_total", "counter", "Time the loop spent running (weft_loop_run).",
     F(run_ns), M_NS},
    {"weft_loop_asleep_seconds_total", "counter", "Part of the running time blocked in the poller.",
     F(asleep_ns), M_NS},
    {"weft_loop_polling_seconds_total", "counter",
     "Part of the running time spent spinning in the idle poll before sleeping.", F(polling_ns),
     M_NS},
};

#undef F

static uint64_t field(const weft_loop_stats_t *st, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)st + off, sizeof(v));
    return v;
}

/* Nanoseconds as exact decimal seconds. */
static void put_seconds(FILE *out, uint64_t ns)
{
    fprintf(out, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
            (unsigned long long)(ns % 1000000000u));
}

static void put_head(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_value(FILE *out, const char *name, unsigned loop, uint64_t v, int unit)
{
    fprintf(out, "%s{loop=\"%u\"} ", name, loop);
    if (unit == M_NS)
        put_seconds(out, v);
    else
        fprintf(out, "%llu", (unsigned long long)v);
    fputc('\n', out);
}

/* The loops' metrics: st[i] is loop first + i. */
static void put_loops(FILE *out, const weft_loop_stats_t *st, unsigned n, unsigned first)
{
    for (size_t m = 0; m < sizeof(loop_metrics) / sizeof(loop_metrics[0]); m++) {
        const struct mdef *d = &loop_metrics[m];
        put_head(out, d->name, d->type, d->help);
        for (unsigned i = 0; i < n; i++)
            put_value(out, d->name, first + i, field(&st[i], d->off), d->unit);
    }

    put_head(out, "weft_loop_utilisation_ratio", "gauge",
             "Share of the running time not blocked in the poller, "
             "1 - asleep / run (0 before the first run).");
    for (unsigned i = 0; i < n; i++) {
        double u = 0.0;
        if (st[i].run_ns > 0) {
            u = 1.0 - (double)st[i].asleep_ns / (double)st[i].run_ns;
            if (u < 0.0)
                u = 0.0;
        }
        fprintf(out, "weft_loop_utilisation_ratio{loop=\"%u\"} %.6f\n", first + i, u);
    }

    const char *h = "weft_loop_lag_seconds";
    put_head(out, h, "histogram",
             "Sampled time a runnable waits in the ready queue before it runs "
             "(about one sample per tick).");
    for (unsigned i = 0; i < n; i++) {
        uint64_t cum = 0;
        for (unsigned b = 0; b < WEFT_LAG_BUCKETS - 1; b++) {
            cum += st[i].lag_buckets[b];
            fprintf(out, "%s_bucket{loop=\"%u\",le=\"", h, first + i);
            put_seconds(out, (uint64_t)1 << (WEFT_LAG_MIN_LOG2 + b));
            fprintf(out, "\"} %llu\n", (unsigned long long)cum);
        }
        cum += st[i].lag_buckets[WEFT_LAG_BUCKETS - 1];
        fprintf(out, "%s_bucket{loop=\"%u\",le=\"+Inf\"} %llu\n", h, first + i,
                (unsigned long long)cum);
        fprintf(out, "%s_sum{loop=\"%u\"} ", h, first + i);
        put_seconds(out, st[i].lag_sum_ns);
        fprintf(out, "\n%s_count{loop=\"%u\"} %llu\n", h, first + i,
                (unsigned long long)st[i].lag_count);
    }
}

static void put_mesh(FILE *out, const weft_runtime_loop_stats_t *ms, unsigned n)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } defs[] = {
        {"weft_mesh_sent_total", "counter", "Messages this loop sent over the mesh.",
         offsetof(weft_runtime_loop_stats_t, mesh_sent)},
        {"weft_mesh_received_total", "counter", "Messages this loop took from its incoming rings.",
         offsetof(weft_runtime_loop_stats_t, mesh_received)},
        {"weft_mesh_ring_overflows_total", "counter",
         "Sends that found their ring full and went to the overflow list.",
         offsetof(weft_runtime_loop_stats_t, ring_overflows)},
        {"weft_mesh_overflow_depth", "gauge", "Messages waiting in this loop's overflow lists now.",
         offsetof(weft_runtime_loop_stats_t, overflow_depth)},
        {"weft_mesh_submits_inflight", "gauge",
         "This loop's weft_submit_to calls to other loops not answered yet.",
         offsetof(weft_runtime_loop_stats_t, submits_inflight)},
    };
    for (size_t m = 0; m < sizeof(defs) / sizeof(defs[0]); m++) {
        put_head(out, defs[m].name, defs[m].type, defs[m].help);
        for (unsigned i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&ms[i] + defs[m].off, sizeof(v));
            put_value(out, defs[m].name, i, v, M_COUNT);
        }
    }
}

int weft_metrics_write(FILE *out, weft_runtime_t *rt, weft_loop_t *loop)
{
    if (out == NULL || (rt != NULL && loop != NULL))
        return UV_EINVAL;
    if (rt == NULL) {
        weft_loop_t *lp = loop != NULL ? loop : weft_loop_current();
        if (lp == NULL || !weft__loop_valid(weft__L(lp)))
            return UV_EINVAL;
        if (weft__loop_wrong_thread(weft__L(lp), "weft_metrics_write"))
            return WEFT_EWRONGLOOP;
        weft_loop_stats_t st;
        weft_loop_stats(lp, &st);
        int idx = weft_loop_current() == lp ? weft_loop_index() : -1;
        put_loops(out, &st, 1, idx >= 0 ? (unsigned)idx : 0);
        fflush(out);
        return ferror(out) ? UV_EIO : 0;
    }

    if (weft_runtime_current() == rt)
        return WEFT_EWRONGLOOP; /* it would wait for its own loop */
    unsigned n = weft_runtime_count(rt);
    weft_loop_stats_t *st = weft__calloc(n, sizeof(*st));
    weft_runtime_loop_stats_t *ms = weft__calloc(n, sizeof(*ms));
    int rc = st != NULL && ms != NULL ? 0 : UV_ENOMEM;
    if (rc == 0)
        rc = snap_runtime(rt, n, st);
    if (rc == 0) {
        rc = weft_runtime_stats(rt, n, ms);
        rc = rc < 0 ? rc : 0;
    }
    if (rc == 0) {
        put_loops(out, st, n, 0);
        put_mesh(out, ms, n);
        fflush(out);
        rc = ferror(out) ? UV_EIO : 0;
    }
    weft__free(ms);
    weft__free(st);
    return rc;
}

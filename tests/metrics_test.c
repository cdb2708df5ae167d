/*
 * tests/metrics_test.c - weft_metrics_write (weft/metrics.h): the output is
 * valid Prometheus text (a small checker below), its numbers are the
 * stats struct's taken at the same quiescent moment, utilisation is in
 * [0, 1], a loop that slept shows time asleep, the lag histogram is
 * cumulative; for a runtime, from a plain thread, every loop and the mesh.
 *
 * Built twice (weft_test(tsan = True)): Criterion and the plain shim, so
 * that the runtime's cross-thread snapshot runs under TSan. Assertions run
 * on the test's thread only. No timed assertions: "slept" is asleep > 0.
 */
#include "plain_test.h"
#include "check.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#define WAIT_MS 20000
#define YIELDS  1000

#ifdef __SANITIZE_THREAD__
#define NO_ARENAS true /* see runtime_test.c */
#else
#define NO_ARENAS false
#endif

/* ---- the checker ---------------------------------------------------------------- */

#define MAX_SAMPLES 2048
#define MAX_TYPES   128

struct sample {
    char name[96];
    char labels[96]; /* between the braces, "" if none */
    char value[48];
};

struct parsed {
    struct sample s[MAX_SAMPLES];
    size_t n;
    char type_name[MAX_TYPES][96];
    char type_kind[MAX_TYPES][16];
    size_t ntypes;
};

static bool name_ok(const char *p, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)p[0]) || p[0] == '_' || p[0] == ':'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)p[i]) || p[i] == '_' || p[i] == ':'))
            return false;
    return true;
}

static const char *type_of(const struct parsed *P, const char *name)
{
    for (size_t i = 0; i < P->ntypes; i++)
        if (strcmp(P->type_name[i], name) == 0)
            return P->type_kind[i];
    return NULL;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* The family a sample belongs to: its name, or a histogram's name for its
 * _bucket/_sum/_count series. */
static const char *family(const struct parsed *P, const char *name, char *buf, size_t len)
{
    static const char *sufs[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        if (!ends_with(name, sufs[i]))
            continue;
        size_t k = strlen(name) - strlen(sufs[i]);
        if (k >= len)
            continue;
        memcpy(buf, name, k);
        buf[k] = '\0';
        const char *t = type_of(P, buf);
        if (t != NULL && strcmp(t, "histogram") == 0)
            return buf;
    }
    return name;
}

/* Parse and check the text: returns NULL, or what is wrong (static). */
static const char *parse(const char *text, struct parsed *P)
{
    static char why[256];
    memset(P, 0, sizeof(*P));
    const char *p = text;
    unsigned lineno = 0;
    while (*p != '\0') {
        const char *e = strchr(p, '\n');
        if (e == NULL)
            return "last line not terminated";
        size_t len = (size_t)(e - p);
        char line[512];
        if (len >= sizeof(line))
            return "line too long";
        memcpy(line, p, len);
        line[len] = '\0';
        p = e + 1;
        lineno++;
        if (line[0] == '#') {
            char kw[16], nm[96], rest[64];
            if (sscanf(line, "# %15s %95s %63s", kw, nm, rest) < 2) {
                snprintf(why, sizeof(why), "line %u: bad comment", lineno);
                return why;
            }
            if (!name_ok(nm, strlen(nm))) {
                snprintf(why, sizeof(why), "line %u: bad name %s", lineno, nm);
                return why;
            }
            if (strcmp(kw, "TYPE") == 0) {
                if (type_of(P, nm) != NULL || P->ntypes == MAX_TYPES)
                    return "TYPE repeated";
                if (strcmp(rest, "counter") != 0 && strcmp(rest, "gauge") != 0 &&
                    strcmp(rest, "histogram") != 0)
                    return "unknown type";
                if (strcmp(rest, "counter") == 0 && !ends_with(nm, "_total"))
                    return "counter not ending in _total";
                snprintf(P->type_name[P->ntypes], 96, "%.95s", nm);
                snprintf(P->type_kind[P->ntypes], 16, "%.15s", rest);
                P->ntypes++;
            }
            continue;
        }
        if (P->n == MAX_SAMPLES)
            return "too many samples";
        struct sample *s = &P->s[P->n];
        size_t nl = strcspn(line, "{ ");
        if (!name_ok(line, nl) || nl >= sizeof(s->name)) {
            snprintf(why, sizeof(why), "line %u: bad name", lineno);
            return why;
        }
        memcpy(s->name, line, nl);
        const char *q = line + nl;
        if (*q == '{') {
            const char *c = strchr(q, '}');
            if (c == NULL || (size_t)(c - q - 1) >= sizeof(s->labels))
                return "bad labels";
            memcpy(s->labels, q + 1, (size_t)(c - q - 1));
            /* each label: name="value", comma separated */
            const char *r = s->labels;
            while (*r != '\0') {
                size_t ln = strcspn(r, "=");
                if (!name_ok(r, ln) || r[ln] != '=' || r[ln + 1] != '"')
                    return "bad label";
                const char *v = strchr(r + ln + 2, '"');
                if (v == NULL)
                    return "unterminated label value";
                r = v + 1;
                if (*r == ',')
                    r++;
                else if (*r != '\0')
                    return "bad label separator";
            }
            q = c + 1;
        }
        if (*q != ' ' || q[1] == '\0' || strlen(q + 1) >= sizeof(s->value))
            return "bad value";
        snprintf(s->value, sizeof(s->value), "%s", q + 1);
        char *end;
        (void)strtod(s->value, &end);
        if (*end != '\0' && strcmp(s->value, "+Inf") != 0 && strcmp(s->value, "NaN") != 0) {
            snprintf(why, sizeof(why), "line %u: bad number %s", lineno, s->value);
            return why;
        }
        char fb[96];
        if (type_of(P, family(P, s->name, fb, sizeof(fb))) == NULL) {
            snprintf(why, sizeof(why), "line %u: %s has no # TYPE before it", lineno, s->name);
            return why;
        }
        P->n++;
    }
    return NULL;
}

static const struct sample *find(const struct parsed *P, const char *name, const char *labels)
{
    for (size_t i = 0; i < P->n; i++)
        if (strcmp(P->s[i].name, name) == 0 && strcmp(P->s[i].labels, labels) == 0)
            return &P->s[i];
    return NULL;
}

static uint64_t u64(const struct parsed *P, const char *name, unsigned loop)
{
    char lb[32];
    snprintf(lb, sizeof(lb), "loop=\"%u\"", loop);
    const struct sample *s = find(P, name, lb);
    cr_assert_not_null(s, "no %s{%s}", name, lb);
    char *end;
    unsigned long long v = strtoull(s->value, &end, 10);
    cr_assert(*end == '\0', "%s{%s} = %s is not an integer", name, lb, s->value);
    return (uint64_t)v;
}

/* Seconds as written (exact decimals) back to ns. */
static uint64_t ns(const struct parsed *P, const char *name, unsigned loop)
{
    char lb[32];
    snprintf(lb, sizeof(lb), "loop=\"%u\"", loop);
    const struct sample *s = find(P, name, lb);
    cr_assert_not_null(s, "no %s{%s}", name, lb);
    unsigned long long a = 0, b = 0;
    cr_assert_eq(sscanf(s->value, "%llu.%9llu", &a, &b), 2, "%s = %s", name, s->value);
    return (uint64_t)a * 1000000000u + (uint64_t)b;
}

static double dbl(const struct parsed *P, const char *name, unsigned loop)
{
    char lb[32];
    snprintf(lb, sizeof(lb), "loop=\"%u\"", loop);
    const struct sample *s = find(P, name, lb);
    cr_assert_not_null(s, "no %s{%s}", name, lb);
    return strtod(s->value, NULL);
}

/* The lag histogram of one loop: cumulative, le ascending, ending with
 * +Inf == _count, and each bucket equal to the stats' running sum. */
static void check_histogram(const struct parsed *P, unsigned loop, const weft_loop_stats_t *st)
{
    char pre[48];
    snprintf(pre, sizeof(pre), "loop=\"%u\",le=\"", loop);
    uint64_t last = 0, cum = 0;
    double last_le = -1.0;
    unsigned nb = 0;
    bool inf = false;
    for (size_t i = 0; i < P->n; i++) {
        const struct sample *s = &P->s[i];
        if (strcmp(s->name, "weft_loop_lag_seconds_bucket") != 0 ||
            strncmp(s->labels, pre, strlen(pre)) != 0)
            continue;
        cr_assert(!inf, "a bucket after +Inf");
        const char *le = s->labels + strlen(pre);
        uint64_t v = strtoull(s->value, NULL, 10);
        cr_assert_geq(v, last, "buckets not cumulative");
        last = v;
        if (nb < WEFT_LAG_BUCKETS && st != NULL) {
            cum += st->lag_buckets[nb];
            cr_expect_eq(v, cum, "bucket %u: %llu, stats say %llu", nb, (unsigned long long)v,
                         (unsigned long long)cum);
        }
        nb++;
        if (strncmp(le, "+Inf\"", 5) == 0) {
            inf = true;
        } else {
            double x = strtod(le, NULL);
            cr_assert_gt(x, last_le, "le not ascending");
            last_le = x;
        }
    }
    cr_assert(inf, "no +Inf bucket for loop %u", loop);
    cr_expect_eq(nb, WEFT_LAG_BUCKETS);
    cr_expect_eq(last, u64(P, "weft_loop_lag_seconds_count", loop), "+Inf != _count");
    if (st != NULL) {
        cr_expect_eq(last, st->lag_count);
        cr_expect_eq(ns(P, "weft_loop_lag_seconds_sum", loop), st->lag_sum_ns);
    }
}

/* The counters of the output against a stats struct of the same moment.
 * exact_time: run_ns too (a loop that is not running). */
static void check_against(const struct parsed *P, unsigned loop, const weft_loop_stats_t *st,
                          bool exact_time)
{
    cr_expect_eq(u64(P, "weft_loop_tasks_spawned_total", loop), st->tasks_spawned);
    cr_expect_eq(u64(P, "weft_loop_tasks_finished_total", loop), st->tasks_finished);
    cr_expect_eq(u64(P, "weft_loop_tasks_live", loop), st->tasks_live);
    cr_expect_eq(u64(P, "weft_loop_switches_total", loop), st->switches);
    cr_expect_eq(u64(P, "weft_loop_stacks_in_use", loop), st->stacks_in_use);
    if (exact_time) {
        cr_expect_eq(ns(P, "weft_loop_asleep_seconds_total", loop), st->asleep_ns);
        cr_expect_eq(ns(P, "weft_loop_max_tick_seconds", loop), st->max_lag_ns);
        cr_expect_eq(u64(P, "weft_loop_iterations_total", loop), st->iterations);
        cr_expect_eq(u64(P, "weft_loop_wakeups_total", loop), st->wakeups);
        cr_expect_eq(u64(P, "weft_loop_callbacks_total", loop), st->callbacks_run);
        cr_expect_eq(ns(P, "weft_loop_run_seconds_total", loop), st->run_ns);
        cr_expect_eq(ns(P, "weft_loop_polling_seconds_total", loop), st->polling_ns);
    } else { /* the loop ran on (slept, woke for the snapshot) in between */
        cr_expect_geq(ns(P, "weft_loop_asleep_seconds_total", loop), st->asleep_ns);
        cr_expect_geq(ns(P, "weft_loop_run_seconds_total", loop), st->run_ns);
        cr_expect_geq(u64(P, "weft_loop_iterations_total", loop), st->iterations);
    }
    double u = dbl(P, "weft_loop_utilisation_ratio", loop);
    cr_expect(u >= 0.0 && u <= 1.0, "utilisation %f", u);
    check_histogram(P, loop, st);
}

static char *capture(weft_runtime_t *rt, weft_loop_t *loop, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = weft_metrics_write(f, rt, loop);
    fclose(f);
    return buf;
}

/* ---- one loop ------------------------------------------------------------------- */

struct work {
    int rc_in_task; /* weft_metrics_write from the loop's own task */
    size_t len_in_task;
};

static int work_task(void *arg, void **res)
{
    (void)res;
    struct work *w = arg;
    for (int i = 0; i < YIELDS; i++)
        if (weft_yield() != 0)
            return UV_EINVAL;
    int rc = weft_sleep(5); /* the loop sleeps in the poller */
    if (rc != 0)
        return rc;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return UV_ENOMEM;
    w->rc_in_task = weft_metrics_write(f, NULL, NULL);
    fclose(f);
    w->len_in_task = len;
    free(buf);
    return 0;
}

Test(metrics, one_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_loop_t loop;
    ASSERT_OK(weft_loop_init(&loop, NULL));
    struct work w = {.rc_in_task = -1};
    weft_task_t *t = NULL;
    ASSERT_OK(weft_spawn(&loop, work_task, &w, &t));
    ASSERT_OK(weft_loop_run(&loop));
    weft_task_unref(t);
    EXPECT_OK(w.rc_in_task);
    cr_expect_gt(w.len_in_task, 0u);

    /* Quiescent: the loop does not run; its stats and the output agree. */
    weft_loop_stats_t st;
    weft_loop_stats(&loop, &st);
    int rc;
    char *text = capture(NULL, &loop, &rc);
    ASSERT_OK(rc);
    static struct parsed P;
    const char *why = parse(text, &P);
    cr_assert_null(why, "%s", why);
    check_against(&P, 0, &st, true);
    cr_expect_gt(st.switches, 0u);
    cr_expect_eq(st.tasks_finished, 1);
    cr_expect_gt(st.run_ns, 0u);
    cr_expect_gt(st.asleep_ns, 0u, "the loop slept 5 ms");
    cr_expect_leq(st.asleep_ns + st.polling_ns, st.run_ns);
    cr_expect_gt(st.lag_count, 0u);
    cr_expect_leq(st.lag_count, st.iterations, "at most one sample per tick");
    free(text);

    /* Bad input. */
    EXPECT_RC(weft_metrics_write(NULL, NULL, &loop), UV_EINVAL);
    char *t2 = capture(NULL, NULL, &rc); /* no loop on this thread */
    EXPECT_RC(rc, UV_EINVAL);
    free(t2);
    EXPECT_OK(weft_loop_close(&loop));
}

/* ---- a runtime, from a plain thread --------------------------------------------- */

static int busy_task(void *arg, void **res)
{
    (void)arg;
    (void)res;
    for (int i = 0; i < YIELDS; i++)
        if (weft_yield() != 0)
            return UV_EINVAL;
    return weft_sleep(5);
}

/* From a loop of the runtime: refused (it would wait for itself). */
static int self_task(void *arg, void **res)
{
    (void)arg;
    FILE *f = fopen("/dev/null", "w");
    if (f == NULL)
        return UV_ENOMEM;
    int rc = weft_metrics_write(f, weft_runtime_current(), NULL);
    fclose(f);
    *res = (void *)(intptr_t)rc;
    return 0;
}

static int run_on(weft_runtime_t *rt, unsigned i, weft_task_fn fn, void **res)
{
    weft_tsfuture_t *f = NULL;
    int rc = weft_spawn_threadsafe(weft_runtime_loop(rt, i), fn, NULL, &f);
    if (rc != 0)
        return rc;
    rc = weft_tsfuture_wait_blocking(f, WAIT_MS, res);
    weft_tsfuture_unref(f);
    return rc;
}

/* Loop i's stats, copied on its thread (a threadsafe callback: it runs from
 * the inbox, so tasks, switches and lag do not change). */
struct grab {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    weft_loop_t *loop;
    weft_loop_stats_t st;
};

static void grab_cb(void *arg)
{
    struct grab *g = arg;
    weft_loop_stats_t st;
    weft_loop_stats(g->loop, &st);
    pthread_mutex_lock(&g->mu);
    g->st = st;
    g->done = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void grab(weft_runtime_t *rt, unsigned i, weft_loop_stats_t *out)
{
    static struct grab g; /* static: outlives a failed test */
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    g.done = false;
    g.loop = weft_runtime_loop(rt, i);
    ASSERT_OK(weft_call_soon_threadsafe(g.loop, grab_cb, &g));
    pthread_mutex_lock(&g.mu);
    while (!g.done)
        pthread_cond_wait(&g.cv, &g.mu);
    *out = g.st;
    pthread_mutex_unlock(&g.mu);
}

Test(metrics, runtime, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = NULL;
    weft_runtime_opts_t o = {.loops = 2, .no_pinning = true, .no_arenas = NO_ARENAS};
    ASSERT_OK(weft_runtime_start(&o, &rt));
    ASSERT_OK(run_on(rt, 1, busy_task, NULL));

    /* Quiescent for tasks: nothing runs on either loop now. */
    weft_loop_stats_t st[2];
    grab(rt, 0, &st[0]);
    grab(rt, 1, &st[1]);
    int rc;
    char *text = capture(rt, NULL, &rc);
    ASSERT_OK(rc);
    static struct parsed P;
    const char *why = parse(text, &P);
    cr_assert_null(why, "%s", why);
    for (unsigned i = 0; i < 2; i++)
        check_against(&P, i, &st[i], false);
    cr_expect_gt(u64(&P, "weft_loop_switches_total", 1), 0u);
    cr_expect_gt(ns(&P, "weft_loop_asleep_seconds_total", 1), 0u, "loop 1 slept");
    cr_expect_gt(ns(&P, "weft_loop_run_seconds_total", 1), 0u);
    cr_expect_geq(ns(&P, "weft_loop_run_seconds_total", 1), st[1].run_ns);
    cr_expect_gt(u64(&P, "weft_loop_lag_seconds_count", 1), 0u);

    /* The mesh: one series per loop, as weft_runtime_stats. */
    weft_runtime_loop_stats_t ms[2];
    cr_assert_eq(weft_runtime_stats(rt, 2, ms), 2);
    for (unsigned i = 0; i < 2; i++) {
        cr_expect_eq(u64(&P, "weft_mesh_sent_total", i), ms[i].mesh_sent);
        cr_expect_eq(u64(&P, "weft_mesh_received_total", i), ms[i].mesh_received);
        (void)u64(&P, "weft_mesh_ring_overflows_total", i);
        (void)u64(&P, "weft_mesh_overflow_depth", i);
        (void)u64(&P, "weft_mesh_submits_inflight", i);
    }
    free(text);

    /* From one of its own loops: refused. A single running loop from this
     * thread: refused. Both given: bad input. */
    void *res = NULL;
    ASSERT_OK(run_on(rt, 0, self_task, &res));
    EXPECT_RC((int)(intptr_t)res, WEFT_EWRONGLOOP);
    char *t2 = capture(NULL, weft_runtime_loop(rt, 1), &rc);
    EXPECT_RC(rc, WEFT_EWRONGLOOP);
    free(t2);
    t2 = capture(rt, weft_runtime_loop(rt, 1), &rc);
    EXPECT_RC(rc, UV_EINVAL);
    free(t2);

    uint64_t left = 1;
    EXPECT_OK(weft_runtime_stop(rt, &left));
    cr_expect_eq(left, 0u);
}

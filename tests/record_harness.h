/*
 * tests/record_harness.h - checks that record a mismatch (line, expression,
 * got and want) instead of reporting it at once, for checks inside tasks:
 * the test reports them after its loop stopped (report_misses). Include
 * after <criterion/criterion.h> and <weft/weft.h>. TASK_FN declares a task
 * body whose arguments may go unused.
 */
#ifndef WEFT_TESTS_RECORD_HARNESS_H
#define WEFT_TESTS_RECORD_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#define SHORT_MS 50 /* a sleep that only ends early if cancelled */
#define NOT_SET  1  /* no weft call returns 1: "not recorded yet" */

/* A task body; arg and result may go unused. */
#define TASK_FN(name) \
    static int name(void *arg __attribute__((unused)), void **result __attribute__((unused)))

/* --- recorded checks -------------------------------------------------------- */

typedef struct miss {
    int line;
    const char *expr;
    long long got, want;
    bool rc;
} miss_t;

#define MAX_MISSES 64
static miss_t g_miss[MAX_MISSES];
static int g_nmiss;

static void t_check(int line, const char *expr, long long got, long long want, bool rc)
{
    if (got == want) {
        return;
    }
    if (g_nmiss < MAX_MISSES) {
        g_miss[g_nmiss] = (miss_t){line, expr, got, want, rc};
    }
    g_nmiss++;
}

#define T_RC(expr, want) t_check(__LINE__, #expr, (expr), (want), true)
#define T_OK(expr)       T_RC(expr, 0)
#define T_EQ(expr, want) t_check(__LINE__, #expr, (long long)(expr), (long long)(want), false)
#define T_PTR(expr, want) \
    t_check(__LINE__, #expr, (long long)(intptr_t)(expr), (long long)(intptr_t)(want), false)

/* Report every recorded mismatch as a Criterion failure (after the loop
 * stopped) and reset the record. */
static void report_misses(void)
{
    for (int i = 0; i < g_nmiss && i < MAX_MISSES; i++) {
        const miss_t *m = &g_miss[i];
        cr_expect_fail("line %d: %s is %lld (%s), want %lld (%s)", m->line, m->expr, m->got,
                       m->rc ? weft_err_name((int)m->got) : "-", m->want,
                       m->rc ? weft_err_name((int)m->want) : "-");
    }
    cr_expect_eq(g_nmiss, 0, "%d check(s) failed inside tasks", g_nmiss);
    g_nmiss = 0;
}

#endif /* WEFT_TESTS_RECORD_HARNESS_H */

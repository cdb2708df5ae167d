/*
 * tests/supervisor_test.c - supervisors (weft/supervisor.h) on one loop: a
 * crash restarts the child with fresh state and later messages reach the
 * new incarnation; each strategy stops and restarts exactly the right
 * children in the right order (a log of starts and stops says which);
 * transient and temporary children; intensity exceeded ends the
 * supervisor and its own supervisor restarts it (a tree); an ordered
 * shutdown kills a child that outlives its shutdown time; dynamic
 * children of simple_one_for_one.
 */
#include <criterion/criterion.h>

#include "check.h"
#include "task_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

static char LOG[1024];

static void logf_(const char *what, uintptr_t id)
{
    size_t n = strlen(LOG);
    snprintf(LOG + n, sizeof LOG - n, "%s%lu ", what, (unsigned long)id);
}

struct worker {
    uintptr_t id;
    int count;
};

enum {
    W_INC = 1,
    W_CRASH,
    W_QUIT,
    W_STUBBORN
};

static int worker_fn(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    struct worker *w = state;
    if (m->kind == WEFT_MSG_EXIT) { /* a stubborn worker ignores shutdown */
        return weft_sleep(WEFT_FOREVER) == 0 ? 0 : UV_ECANCELED;
    }
    switch (m->tag) {
    case W_INC:
        return weft_actor_reply(self, (void *)(uintptr_t)++w->count);
    case W_CRASH:
        return UV_EIO;
    case W_QUIT:
        return weft_actor_stop_self(self, WEFT_EXIT_NORMAL, 0);
    case W_STUBBORN:
        (void)weft_actor_trap_exit(self, true);
        return 0;
    default:
        return 0;
    }
}

static void worker_stop(void *state, const weft_exit_t *why)
{
    struct worker *w = state;
    (void)why;
    logf_("x", w->id);
    free(w);
}

static int start_worker(void *arg, weft_aref_t *out)
{
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return UV_ENOMEM;
    w->id = (uintptr_t)arg;
    weft_actor_opts_t o = {.on_stop = worker_stop};
    int rc = weft_actor_spawn(NULL, worker_fn, w, &o, out);
    if (rc != 0)
        free(w);
    else
        logf_("s", w->id);
    return rc;
}

static void specs3(weft_child_spec_t *sp, weft_child_restart_t r)
{
    for (uintptr_t i = 0; i < 3; i++)
        sp[i] = (weft_child_spec_t){
            .id = "w", .start = start_worker, .arg = (void *)i, .restart = r, .shutdown_ms = 1000};
}

/* Wait until the supervisor has made `want` restarts. */
static int wait_restarts(weft_aref_t sup, uint64_t want)
{
    for (int i = 0; i < 5000; i++) {
        uint64_t n = 0;
        int rc = weft_sup_restarts(sup, &n);
        if (rc != 0)
            return rc;
        if (n >= want)
            return 0;
        if ((rc = weft_sleep(1)) != 0)
            return rc;
    }
    return UV_ETIMEDOUT;
}

static int kids(weft_aref_t sup, weft_aref_t *k)
{
    size_t n = 0;
    int rc = weft_sup_which_children(sup, k, 3, &n);
    return rc != 0 ? rc : (int)n;
}

static weft_aref_t start_sup(weft_sup_strategy_t st, weft_child_restart_t r, unsigned intensity)
{
    weft_child_spec_t sp[3];
    specs3(sp, r);
    weft_sup_opts_t o = {.strategy = st, .intensity = intensity};
    weft_aref_t sup = WEFT_AREF_NONE;
    EXPECT_OK(weft_sup_start(NULL, &o, sp, 3, &sup));
    return sup;
}

static void end_sup(weft_aref_t sup)
{
    EXPECT_OK(weft_actor_exit(sup, WEFT_EXIT_SHUTDOWN, 0));
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(sup, 10000, &why));
}

static void strategy_case(weft_sup_strategy_t st, const char *want)
{
    LOG[0] = '\0';
    weft_aref_t sup = start_sup(st, WEFT_CHILD_PERMANENT, 5);
    weft_aref_t k[3], k2[3];
    cr_expect_eq(kids(sup, k), 3);
    void *r;
    EXPECT_OK(weft_actor_ask(k[1], W_INC, NULL, 5000, &r));
    EXPECT_OK(weft_actor_ask(k[1], W_INC, NULL, 5000, &r));
    cr_expect_eq((uintptr_t)r, 2u);
    EXPECT_OK(weft_actor_send(k[1], W_CRASH, NULL));
    EXPECT_OK(wait_restarts(sup, 1));
    cr_expect_eq(kids(sup, k2), 3);
    cr_expect_str_eq(LOG, want);
    /* The new incarnation has fresh state and takes messages. */
    EXPECT_OK(weft_actor_ask(k2[1], W_INC, NULL, 5000, &r));
    cr_expect_eq((uintptr_t)r, 1u);
    cr_expect(!weft_aref_eq(k2[1], k[1]));
    cr_expect_eq(weft_aref_eq(k2[0], k[0]),
                 st == WEFT_SUP_ONE_FOR_ONE || st == WEFT_SUP_REST_FOR_ONE);
    cr_expect_eq(weft_aref_eq(k2[2], k[2]), st == WEFT_SUP_ONE_FOR_ONE);
    LOG[0] = '\0';
    end_sup(sup);
    cr_expect_str_eq(LOG, "x2 x1 x0 ", "children stop in reverse order");
}

TASK_TEST(sup, one_for_one_restarts_only_the_crashed_child)
{
    strategy_case(WEFT_SUP_ONE_FOR_ONE, "s0 s1 s2 x1 s1 ");
    return 0;
}

TASK_TEST(sup, one_for_all_restarts_every_child_in_order)
{
    strategy_case(WEFT_SUP_ONE_FOR_ALL, "s0 s1 s2 x1 x2 x0 s0 s1 s2 ");
    return 0;
}

TASK_TEST(sup, rest_for_one_restarts_the_child_and_the_later_ones)
{
    strategy_case(WEFT_SUP_REST_FOR_ONE, "s0 s1 s2 x1 x2 s1 s2 ");
    return 0;
}

TASK_TEST(sup, transient_is_not_restarted_after_a_normal_exit)
{
    LOG[0] = '\0';
    weft_aref_t sup = start_sup(WEFT_SUP_ONE_FOR_ONE, WEFT_CHILD_TRANSIENT, 5);
    weft_aref_t k[3];
    cr_expect_eq(kids(sup, k), 3);
    EXPECT_OK(weft_actor_send(k[0], W_QUIT, NULL));
    EXPECT_OK(weft_actor_join(k[0], 5000, NULL));
    EXPECT_OK(weft_actor_send(k[1], W_CRASH, NULL));
    EXPECT_OK(wait_restarts(sup, 1));
    weft_aref_t k2[3];
    cr_expect_eq(kids(sup, k2), 3);
    cr_expect(weft_aref_is_none(k2[0]), "a normal exit of a transient child: no restart");
    cr_expect(!weft_aref_is_none(k2[1]) && !weft_aref_eq(k2[1], k[1]));
    uint64_t n;
    EXPECT_OK(weft_sup_restarts(sup, &n));
    cr_expect_eq(n, 1u);
    end_sup(sup);
    return 0;
}

TASK_TEST(sup, temporary_is_never_restarted)
{
    LOG[0] = '\0';
    weft_aref_t sup = start_sup(WEFT_SUP_ONE_FOR_ONE, WEFT_CHILD_TEMPORARY, 5);
    weft_aref_t k[3];
    cr_expect_eq(kids(sup, k), 3);
    EXPECT_OK(weft_actor_send(k[2], W_CRASH, NULL));
    EXPECT_OK(weft_actor_join(k[2], 5000, NULL));
    EXPECT_OK(weft_sleep(2));
    cr_expect_eq(kids(sup, k), 3);
    cr_expect(weft_aref_is_none(k[2]));
    uint64_t n;
    EXPECT_OK(weft_sup_restarts(sup, &n));
    cr_expect_eq(n, 0u);
    end_sup(sup);
    return 0;
}

/* A tree: top (one_for_one) supervises a child supervisor of 3 workers. */
static weft_sup_opts_t inner_opts = {.strategy = WEFT_SUP_ONE_FOR_ONE, .intensity = 1};
static int start_inner(void *arg, weft_aref_t *out)
{
    (void)arg;
    weft_child_spec_t sp[3];
    specs3(sp, WEFT_CHILD_PERMANENT);
    logf_("S", 9);
    return weft_sup_start(NULL, &inner_opts, sp, 3, out);
}

TASK_TEST(sup, intensity_exceeded_ends_the_supervisor_and_its_parent_restarts_it)
{
    LOG[0] = '\0';
    weft_child_spec_t top_spec = {.id = "inner",
                                  .start = start_inner,
                                  .restart = WEFT_CHILD_PERMANENT,
                                  .shutdown_ms = WEFT_FOREVER};
    weft_sup_opts_t o = {.strategy = WEFT_SUP_ONE_FOR_ONE, .intensity = 3};
    weft_aref_t top, inner[1], k[3];
    EXPECT_OK(weft_sup_start(NULL, &o, &top_spec, 1, &top));
    size_t n = 0;
    EXPECT_OK(weft_sup_which_children(top, inner, 1, &n));
    cr_expect_eq(n, 1u);
    cr_expect_eq(kids(inner[0], k), 3);
    EXPECT_OK(weft_actor_send(k[0], W_CRASH, NULL)); /* restart 1: allowed */
    EXPECT_OK(wait_restarts(inner[0], 1));
    cr_expect_eq(kids(inner[0], k), 3);
    EXPECT_OK(weft_actor_send(k[0], W_CRASH, NULL)); /* restart 2 in 5 s: too many */
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(inner[0], 5000, &why));
    cr_expect(why.kind == WEFT_EXIT_SHUTDOWN || why.kind == WEFT_EXIT_NOPROC);
    EXPECT_OK(wait_restarts(top, 1));
    weft_aref_t inner2[1];
    EXPECT_OK(weft_sup_which_children(top, inner2, 1, &n));
    cr_expect(!weft_aref_eq(inner2[0], inner[0]));
    cr_expect_eq(kids(inner2[0], k), 3);
    void *r;
    EXPECT_OK(weft_actor_ask(k[0], W_INC, NULL, 5000, &r));
    cr_expect_eq((uintptr_t)r, 1u);
    cr_expect_str_eq(LOG, "S9 s0 s1 s2 x0 s0 x0 x2 x1 S9 s0 s1 s2 ");
    LOG[0] = '\0';
    end_sup(top);
    cr_expect_str_eq(LOG, "x2 x1 x0 ");
    return 0;
}

TASK_TEST(sup, shutdown_kills_a_child_that_outlives_its_time)
{
    LOG[0] = '\0';
    weft_child_spec_t sp[2];
    for (uintptr_t i = 0; i < 2; i++)
        sp[i] = (weft_child_spec_t){.start = start_worker, .arg = (void *)i, .shutdown_ms = 20};
    weft_aref_t sup, k[2];
    EXPECT_OK(weft_sup_start(NULL, NULL, sp, 2, &sup));
    size_t n;
    EXPECT_OK(weft_sup_which_children(sup, k, 2, &n));
    EXPECT_OK(weft_actor_ask(k[1], W_STUBBORN, NULL, 5000, NULL));
    LOG[0] = '\0';
    end_sup(sup);
    cr_expect_str_eq(LOG, "x1 x0 ");
    cr_expect(!weft_actor_alive(k[1]));
    return 0;
}

TASK_TEST(sup, simple_one_for_one_starts_dynamic_children)
{
    LOG[0] = '\0';
    weft_child_spec_t sp = {.start = start_worker, .restart = WEFT_CHILD_TRANSIENT};
    weft_sup_opts_t o = {.strategy = WEFT_SUP_SIMPLE_ONE_FOR_ONE, .intensity = 5};
    weft_aref_t sup, c[3];
    EXPECT_OK(weft_sup_start(NULL, &o, &sp, 1, &sup));
    for (uintptr_t i = 0; i < 3; i++)
        EXPECT_OK(weft_sup_start_child(sup, (void *)(i + 10), &c[i]));
    cr_expect_str_eq(LOG, "s10 s11 s12 ");
    EXPECT_OK(weft_actor_send(c[1], W_CRASH, NULL));
    EXPECT_OK(wait_restarts(sup, 1));
    EXPECT_OK(weft_actor_send(c[2], W_QUIT, NULL)); /* transient, normal: removed */
    EXPECT_OK(weft_actor_join(c[2], 5000, NULL));
    EXPECT_OK(weft_sleep(2));
    weft_aref_t k[3];
    cr_expect_eq(kids(sup, k), 2);
    cr_expect(weft_aref_eq(k[0], c[0]));
    cr_expect(!weft_aref_eq(k[1], c[1]) && !weft_aref_is_none(k[1]));
    end_sup(sup);
    return 0;
}

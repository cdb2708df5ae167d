/*
 * tests/actor_test.c - actors on one loop (weft/actor.h): send order, ask
 * and reply (auto-reply, crash code, timeout with a late reply dropped),
 * forward, dead letters and their hook, stop / poison / kill with
 * "handled + dead letters = sent", the four overflow policies counted
 * exactly, stash/unstash, timers to self, names freed on death, links,
 * trapped exits, monitors (once, also for the already dead), and zero
 * allocator calls in a steady-state ping-pong.
 *
 * Every TASK_TEST runs twice, the second time with compact stacks, where a
 * suspended task's locals are elsewhere: what actors and the test's main
 * task share is static.
 */
#include <criterion/criterion.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

#include <stdlib.h>
#include <string.h>
#include <weft/actor.h>
#include <weft/weft.h>

#define MAX_LOG 256

struct rec {
    uint64_t log[MAX_LOG];
    int n;
    uint64_t sum;
    int stopped;
    weft_exit_t why;
    int exits, downs;
    weft_exit_t sig;
    weft_aref_t sig_from;
    int handler_rc_seen;
};

static struct rec R[4];

static void rec_reset(void)
{
    memset(R, 0, sizeof R);
}

static void on_stop_rec(void *state, const weft_exit_t *why)
{
    struct rec *r = state;
    r->stopped++;
    r->why = (weft_exit_t){why->kind, why->code, NULL};
}

enum {
    T_ADD = 1,
    T_ECHO,
    T_CRASH,
    T_SLEEP,
    T_FWD,
    T_STOPME,
    T_SLEEP_FOREVER,
    T_OPEN
};

static int logger(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    struct rec *r = state;
    if (m->kind == WEFT_MSG_EXIT) {
        r->exits++;
        r->sig = *m->exit;
        r->sig_from = m->from;
        return 0;
    }
    if (m->kind == WEFT_MSG_DOWN) {
        r->downs++;
        r->sig = *m->exit;
        r->sig_from = m->from;
        return 0;
    }
    if (r->n < MAX_LOG)
        r->log[r->n] = m->tag;
    r->n++;
    switch (m->tag) {
    case T_ECHO:
        return weft_actor_reply(self, m->data);
    case T_CRASH:
        return weft_actor_fail(self, UV_EIO, "told to crash");
    case T_SLEEP:
        return weft_sleep((uint64_t)(uintptr_t)m->data) == 0 ? 0 : UV_ECANCELED;
    case T_SLEEP_FOREVER:
        r->handler_rc_seen = weft_sleep(WEFT_FOREVER);
        return r->handler_rc_seen;
    case T_STOPME:
        return weft_actor_stop_self(self, WEFT_EXIT_NORMAL, 0);
    default:
        r->sum += (uintptr_t)m->data;
        return 0;
    }
}

static int spawn_rec(int i, const weft_actor_opts_t *extra, weft_aref_t *out)
{
    weft_actor_opts_t o = extra != NULL ? *extra : (weft_actor_opts_t){0};
    o.on_stop = on_stop_rec;
    return weft_actor_spawn(NULL, logger, &R[i], &o, out);
}

TASK_TEST(actor, send_arrives_in_order_and_stop_joins_normal)
{
    rec_reset();
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    for (uintptr_t i = 0; i < 100; i++)
        EXPECT_OK(weft_actor_send(a, 100 + i, (void *)i));
    EXPECT_OK(weft_actor_poison(a));
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(a, 10000, &why));
    cr_expect_eq(why.kind, WEFT_EXIT_NORMAL);
    cr_expect_eq(R[0].n, 100);
    for (int i = 0; i < 100; i++)
        cr_expect_eq(R[0].log[i], 100u + (unsigned)i);
    cr_expect_eq(R[0].sum, 4950u);
    cr_expect_eq(R[0].stopped, 1);
    cr_expect(!weft_actor_alive(a));
    return 0;
}

static int reply_dtor_calls;
static void reply_dtor(void *p)
{
    (void)p;
    reply_dtor_calls++;
}

TASK_TEST(actor, ask_replies_auto_replies_and_reports_crash)
{
    rec_reset();
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    void *r = NULL;
    EXPECT_OK(weft_actor_ask(a, T_ECHO, (void *)42, 5000, &r));
    cr_expect_eq((uintptr_t)r, 42u);
    r = (void *)1;
    EXPECT_OK(weft_actor_ask(a, T_ADD, (void *)1, 5000, &r)); /* no reply: NULL */
    cr_expect_null(r);
    EXPECT_RC(weft_actor_ask(a, T_CRASH, NULL, 5000, &r), UV_EIO);
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(a, 5000, &why));
    cr_expect(why.kind == WEFT_EXIT_ERROR || why.kind == WEFT_EXIT_NOPROC); /* dead already? */
    cr_expect_eq(R[0].why.kind, WEFT_EXIT_ERROR);
    cr_expect_eq(R[0].why.code, UV_EIO);
    EXPECT_RC(weft_actor_ask(a, T_ECHO, NULL, 5000, &r), UV_ESRCH);
    return 0;
}

static int echo_late(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state;
    if (m->tag == T_SLEEP) {
        if (weft_sleep(30) != 0)
            return UV_ECANCELED;
        int *p = malloc(sizeof *p); /* the late reply: the dtor must get it */
        *p = 7;
        return weft_actor_reply(self, p);
    }
    return 0;
}

static void free_dtor(void *p)
{
    reply_dtor_calls++;
    free(p);
}

TASK_TEST(actor, ask_timeout_drops_the_late_reply)
{
    reply_dtor_calls = 0;
    weft_aref_t a;
    EXPECT_OK(weft_actor_spawn(NULL, echo_late, NULL, NULL, &a));
    void *r = NULL;
    EXPECT_RC(weft_actor_ask_ex(a, T_SLEEP, NULL, 5, free_dtor, &r), UV_ETIMEDOUT);
    cr_expect_null(r);
    EXPECT_OK(weft_actor_stop(a));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    EXPECT_OK(weft_sleep(5)); /* the late reply's completion message */
    cr_expect_eq(reply_dtor_calls, 1);
    (void)reply_dtor;
    return 0;
}

static weft_aref_t fwd_target;
static int forwarder(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state, (void)m;
    return weft_actor_forward(self, fwd_target);
}

static weft_aref_t seen_sender;
static int sender_echo(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state;
    seen_sender = weft_actor_sender(self);
    return weft_actor_reply(self, (void *)(uintptr_t)(m->tag * 2));
}

static weft_aref_t asker_target;
static int asker(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state, (void)m;
    void *r = NULL;
    int rc = weft_actor_ask(asker_target, 21, NULL, 5000, &r);
    if (rc != 0)
        return rc;
    return weft_actor_reply(self, r);
}

TASK_TEST(actor, forward_keeps_sender_and_reply)
{
    weft_aref_t fw, echo, ask;
    EXPECT_OK(weft_actor_spawn(NULL, sender_echo, NULL, NULL, &echo));
    fwd_target = echo;
    EXPECT_OK(weft_actor_spawn(NULL, forwarder, NULL, NULL, &fw));
    asker_target = fw;
    EXPECT_OK(weft_actor_spawn(NULL, asker, NULL, NULL, &ask));
    void *r = NULL;
    EXPECT_OK(weft_actor_ask(ask, 1, NULL, 5000, &r));
    cr_expect_eq((uintptr_t)r, 42u);
    cr_expect(weft_aref_eq(seen_sender, ask), "the forwarded message keeps its sender");
    weft_aref_t all[] = {fw, echo, ask};
    for (int i = 0; i < 3; i++) {
        EXPECT_OK(weft_actor_stop(all[i]));
        EXPECT_OK(weft_actor_join(all[i], 5000, NULL));
    }
    return 0;
}

static int hook_calls;
static weft_aref_t hook_to;
static void dl_hook(void *arg, weft_aref_t to, const weft_msg_t *m)
{
    (void)m;
    hook_calls += arg == &hook_calls;
    hook_to = to;
}

TASK_TEST(actor, dead_letters_are_counted_and_hooked)
{
    rec_reset();
    hook_calls = 0;
    weft_actor_set_dead_letter_hook(dl_hook, &hook_calls);
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    EXPECT_OK(weft_actor_stop(a));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    uint64_t before = weft_actor_dead_letters();
    EXPECT_RC(weft_actor_send(a, 1, NULL), UV_ESRCH);
    EXPECT_RC(weft_actor_send(a, 2, NULL), UV_ESRCH);
    cr_expect_eq(weft_actor_dead_letters() - before, 2u);
    cr_expect_eq(hook_calls, 2);
    cr_expect(weft_aref_eq(hook_to, a));
    EXPECT_RC(weft_actor_send(WEFT_AREF_NONE, 1, NULL), UV_EINVAL);
    weft_actor_set_dead_letter_hook(NULL, NULL);
    return 0;
}

TASK_TEST(actor, stop_after_current_message_leaves_dead_letters)
{
    rec_reset();
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    uint64_t before = weft_actor_dead_letters();
    EXPECT_OK(weft_actor_send(a, T_STOPME, NULL));
    for (int i = 0; i < 50; i++)
        EXPECT_OK(weft_actor_send(a, T_ADD, (void *)1));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    uint64_t dead = weft_actor_dead_letters() - before;
    cr_expect_eq(R[0].n, 1);
    cr_expect_eq((uint64_t)R[0].n + dead, 51u, "handled + dead letters = sent");
    return 0;
}

TASK_TEST(actor, poison_stops_after_the_messages_before_it)
{
    rec_reset();
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    uint64_t before = weft_actor_dead_letters();
    for (int i = 0; i < 10; i++)
        EXPECT_OK(weft_actor_send(a, T_ADD, (void *)1));
    EXPECT_OK(weft_actor_poison(a));
    for (int i = 0; i < 7; i++)
        EXPECT_OK(weft_actor_send(a, T_ADD, (void *)1));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    cr_expect_eq(R[0].n, 10);
    cr_expect_eq(weft_actor_dead_letters() - before, 7u);
    return 0;
}

TASK_TEST(actor, kill_cancels_a_suspended_handler)
{
    rec_reset();
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    EXPECT_OK(weft_actor_send(a, T_SLEEP_FOREVER, NULL));
    EXPECT_OK(weft_actor_send(a, T_ADD, NULL));
    EXPECT_OK(weft_sleep(2));
    EXPECT_OK(weft_actor_kill(a));
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(a, 5000, &why));
    cr_expect_eq(why.kind, WEFT_EXIT_KILLED);
    cr_expect_eq(R[0].handler_rc_seen, UV_ECANCELED);
    cr_expect_eq(R[0].n, 1);
    cr_expect_eq(R[0].why.kind, WEFT_EXIT_KILLED);
    return 0;
}

/* ---- overflow policies: the actor cannot run while the test sends (same
 * loop, no suspension), so exactly capacity messages fit. ---- */

static int dtor_calls;
static void msg_dtor(uint64_t tag, void *data)
{
    (void)tag, (void)data;
    dtor_calls++;
}

static void overflow_case(weft_overflow_t pol, int want_ok, uint64_t first_tag)
{
    rec_reset();
    dtor_calls = 0;
    weft_actor_opts_t o = {.capacity = 8, .overflow = pol, .msg_dtor = msg_dtor};
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, &o, &a));
    int ok = 0, again = 0;
    for (uint64_t i = 0; i < 20; i++) {
        int rc = weft_actor_send(a, 1000 + i, NULL);
        ok += rc == 0;
        again += rc == UV_EAGAIN;
    }
    cr_expect_eq(ok, want_ok);
    cr_expect_eq(again, 20 - want_ok);
    weft_actor_stats_t st;
    EXPECT_OK(weft_actor_stats(a, &st));
    cr_expect_eq(st.queued, 8u);
    switch (pol) {
    case WEFT_OVERFLOW_FAIL:
        cr_expect_eq(st.rejected, 12u);
        break;
    case WEFT_OVERFLOW_DROP_NEWEST:
        cr_expect_eq(st.dropped_newest, 12u);
        cr_expect_eq(dtor_calls, 12);
        break;
    case WEFT_OVERFLOW_DROP_OLDEST:
        cr_expect_eq(st.dropped_oldest, 12u);
        cr_expect_eq(dtor_calls, 12);
        break;
    default:
        break;
    }
    EXPECT_OK(weft_sleep(1)); /* let it handle the 8 */
    EXPECT_OK(weft_actor_stats(a, &st));
    cr_expect_eq(st.handled, 8u);
    for (int i = 0; i < 8 && i < R[0].n; i++)
        cr_expect_eq(R[0].log[i], first_tag + (unsigned)i);
    EXPECT_OK(weft_actor_stop(a));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
}

TASK_TEST(actor, overflow_fail_counts_rejections)
{
    overflow_case(WEFT_OVERFLOW_FAIL, 8, 1000);
    return 0;
}

TASK_TEST(actor, overflow_drop_newest_counts_drops)
{
    overflow_case(WEFT_OVERFLOW_DROP_NEWEST, 20, 1000);
    return 0;
}

TASK_TEST(actor, overflow_drop_oldest_keeps_the_newest)
{
    overflow_case(WEFT_OVERFLOW_DROP_OLDEST, 20, 1012);
    return 0;
}

TASK_TEST(actor, overflow_suspend_waits_and_loses_nothing)
{
    rec_reset();
    weft_actor_opts_t o = {.capacity = 4, .overflow = WEFT_OVERFLOW_SUSPEND};
    weft_aref_t a;
    EXPECT_OK(spawn_rec(0, &o, &a));
    for (uint64_t i = 0; i < 100; i++)
        EXPECT_OK(weft_actor_send(a, 1000 + i, NULL));
    EXPECT_OK(weft_actor_poison(a));
    weft_actor_stats_t st;
    EXPECT_OK(weft_actor_stats(a, &st));
    cr_expect_geq(st.suspended, 1u);
    cr_expect_eq(st.dropped_newest + st.dropped_oldest + st.rejected, 0u);
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    cr_expect_eq(R[0].n, 100);
    for (int i = 0; i < 100; i++)
        cr_expect_eq(R[0].log[i], 1000u + (unsigned)i);
    return 0;
}

/* ---- stash ---- */

static int stasher(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    struct rec *r = state;
    if (m->tag == T_OPEN) {
        r->sum = 1;
        weft_actor_unstash_all(self);
        return 0;
    }
    if (r->sum == 0)
        return weft_actor_stash(self);
    if (r->n < MAX_LOG)
        r->log[r->n++] = m->tag;
    return 0;
}

TASK_TEST(actor, stash_defers_and_unstash_keeps_order)
{
    rec_reset();
    weft_aref_t a;
    weft_actor_opts_t o = {.on_stop = on_stop_rec};
    EXPECT_OK(weft_actor_spawn(NULL, stasher, &R[0], &o, &a));
    for (uint64_t i = 0; i < 5; i++)
        EXPECT_OK(weft_actor_send(a, 100 + i, NULL));
    EXPECT_OK(weft_actor_send(a, T_OPEN, NULL));
    EXPECT_OK(weft_actor_send(a, 200, NULL));
    EXPECT_OK(weft_actor_poison(a));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    cr_expect_eq(R[0].n, 6);
    uint64_t want[] = {100, 101, 102, 103, 104, 200};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(R[0].log[i], want[i]);
    return 0;
}

/* ---- timers ---- */

static int ticker(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    struct rec *r = state;
    static weft_actor_timer_t iv;
    if (m->tag == 1) { /* start */
        int rc = weft_actor_send_interval(self, 1, 2, NULL, &iv);
        if (rc == 0)
            rc = weft_actor_send_after(self, 3, 3, NULL, NULL);
        return rc;
    }
    if (m->tag == 2 && ++r->n == 5) {
        int rc = weft_actor_timer_cancel(self, iv);
        if (rc != 0)
            return rc;
        if (weft_actor_timer_cancel(self, iv) != UV_ENOENT)
            return UV_EPROTO;
    }
    if (m->tag == 3)
        r->exits++;
    if (r->n >= 5 && r->exits == 1)
        return weft_actor_send_interval(self, 1, 9, NULL, NULL) == 0
                   ? weft_actor_stop_self(self, WEFT_EXIT_NORMAL, 0)
                   : UV_ENOMEM; /* dies with a live interval: cancelled at death */
    return 0;
}

TASK_TEST(actor, timers_fire_and_are_cancelled_at_death)
{
    rec_reset();
    weft_aref_t a;
    weft_actor_opts_t o = {.on_stop = on_stop_rec};
    EXPECT_OK(weft_actor_spawn(NULL, ticker, &R[0], &o, &a));
    EXPECT_OK(weft_actor_send(a, 1, NULL));
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(a, 10000, &why));
    cr_expect_eq(why.kind, WEFT_EXIT_NORMAL);
    cr_expect_eq(R[0].n, 5);
    cr_expect_eq(R[0].exits, 1);
    return 0;
}

/* ---- names ---- */

TASK_TEST(actor, names_register_whereis_and_free_on_death)
{
    rec_reset();
    weft_aref_t a, b, got;
    EXPECT_OK(spawn_rec(0, NULL, &a));
    EXPECT_OK(spawn_rec(1, NULL, &b));
    EXPECT_OK(weft_actor_register(NULL, "svc", a));
    EXPECT_RC(weft_actor_register(NULL, "svc", b), UV_EEXIST);
    EXPECT_OK(weft_actor_register(NULL, "svc2", a));
    EXPECT_OK(weft_actor_whereis(NULL, "svc", &got));
    cr_expect(weft_aref_eq(got, a));
    EXPECT_RC(weft_actor_whereis(NULL, "nope", &got), UV_ENOENT);
    EXPECT_OK(weft_actor_unregister(NULL, "svc2"));
    EXPECT_RC(weft_actor_unregister(NULL, "svc2"), UV_ENOENT);
    EXPECT_OK(weft_actor_stop(a));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    EXPECT_RC(weft_actor_whereis(NULL, "svc", &got), UV_ENOENT);
    EXPECT_OK(weft_actor_register(NULL, "svc", b)); /* free again */
    EXPECT_RC(weft_actor_register(NULL, "x", a), UV_ESRCH);
    EXPECT_OK(weft_actor_stop(b));
    EXPECT_OK(weft_actor_join(b, 5000, NULL));
    EXPECT_RC(weft_actor_whereis(NULL, "svc", &got), UV_ENOENT);
    return 0;
}

/* ---- links and monitors ---- */

static weft_aref_t link_to;
static uint64_t mon_ref;
static int linker(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    if (m->kind == WEFT_MSG_USER && m->tag == 50) {
        (void)weft_actor_trap_exit(self, m->data != NULL);
        return weft_actor_link(self, link_to);
    }
    if (m->kind == WEFT_MSG_USER && m->tag == 51)
        return weft_actor_monitor(self, link_to, &mon_ref);
    if (m->kind == WEFT_MSG_USER && m->tag == 52)
        return weft_actor_demonitor(self, mon_ref);
    return logger(self, state, m);
}

static int spawn_linker(int i, weft_aref_t *out)
{
    weft_actor_opts_t o = {.on_stop = on_stop_rec};
    return weft_actor_spawn(NULL, linker, &R[i], &o, out);
}

TASK_TEST(actor, link_kills_the_linked_actor_with_the_reason)
{
    rec_reset();
    weft_aref_t a, b;
    EXPECT_OK(spawn_rec(1, NULL, &b));
    link_to = b;
    EXPECT_OK(spawn_linker(0, &a));
    EXPECT_OK(weft_actor_ask(a, 50, NULL, 5000, NULL)); /* link, not trapping */
    EXPECT_OK(weft_actor_send(b, T_CRASH, NULL));
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(a, 5000, &why));
    cr_expect_eq(why.kind, WEFT_EXIT_ERROR);
    cr_expect_eq(why.code, UV_EIO);
    return 0;
}

TASK_TEST(actor, trapped_link_delivers_a_message_and_normal_exit_is_ignored)
{
    rec_reset();
    weft_aref_t a, b, c;
    EXPECT_OK(spawn_rec(1, NULL, &b));
    link_to = b;
    EXPECT_OK(spawn_linker(0, &a));
    EXPECT_OK(weft_actor_ask(a, 50, (void *)1, 5000, NULL)); /* link, trapping */
    EXPECT_OK(weft_actor_send(b, T_CRASH, NULL));
    EXPECT_OK(weft_actor_join(b, 5000, NULL));
    EXPECT_OK(weft_actor_ask(a, T_ADD, NULL, 5000, NULL)); /* after the signal */
    cr_expect_eq(R[0].exits, 1);
    cr_expect_eq(R[0].sig.kind, WEFT_EXIT_ERROR);
    cr_expect_eq(R[0].sig.code, UV_EIO);
    cr_expect(weft_aref_eq(R[0].sig_from, b));
    cr_expect(weft_actor_alive(a));
    /* Not trapping: a normal exit of a linked actor is ignored. */
    EXPECT_OK(spawn_rec(2, NULL, &c));
    link_to = c;
    EXPECT_OK(weft_actor_ask(a, 50, NULL, 5000, NULL));
    EXPECT_OK(weft_actor_stop(c));
    EXPECT_OK(weft_actor_join(c, 5000, NULL));
    EXPECT_OK(weft_actor_ask(a, T_ADD, NULL, 5000, NULL));
    cr_expect(weft_actor_alive(a));
    /* Linking to the dead: NOPROC kills a non-trapping actor. */
    EXPECT_OK(weft_actor_ask(a, 50, NULL, 5000, NULL));
    weft_exit_t why;
    EXPECT_OK(weft_actor_join(a, 5000, &why));
    cr_expect_eq(why.kind, WEFT_EXIT_NOPROC);
    return 0;
}

TASK_TEST(actor, monitor_fires_once_also_for_the_already_dead)
{
    rec_reset();
    weft_aref_t a, b;
    EXPECT_OK(spawn_rec(1, NULL, &b));
    link_to = b;
    EXPECT_OK(spawn_linker(0, &a));
    EXPECT_OK(weft_actor_ask(a, 51, NULL, 5000, NULL));
    EXPECT_OK(weft_actor_ask(a, 51, NULL, 5000, NULL));
    EXPECT_OK(weft_actor_ask(a, 52, NULL, 5000, NULL)); /* drop the second */
    EXPECT_OK(weft_actor_send(b, T_CRASH, NULL));
    EXPECT_OK(weft_actor_join(b, 5000, NULL));
    EXPECT_OK(weft_sleep(2));
    EXPECT_OK(weft_actor_ask(a, T_ADD, NULL, 5000, NULL));
    cr_expect_eq(R[0].downs, 1);
    cr_expect_eq(R[0].sig.kind, WEFT_EXIT_ERROR);
    cr_expect(weft_aref_eq(R[0].sig_from, b));
    EXPECT_OK(weft_actor_ask(a, 51, NULL, 5000, NULL)); /* b is dead now */
    EXPECT_OK(weft_actor_ask(a, T_ADD, NULL, 5000, NULL));
    cr_expect_eq(R[0].downs, 2);
    cr_expect_eq(R[0].sig.kind, WEFT_EXIT_NOPROC);
    EXPECT_OK(weft_actor_stop(a));
    EXPECT_OK(weft_actor_join(a, 5000, NULL));
    cr_expect_eq(R[0].downs, 2);
    return 0;
}

/* ---- steady state: no allocator calls ---- */

static weft_aref_t pp_peer;
static int pp_left;
static weft_reply_t pp_done;
static int pinger(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state;
    if (m->is_ask) { /* start: N round trips, reply when done */
        pp_left = (int)(intptr_t)m->data;
        int rc = weft_actor_defer_reply(self, &pp_done);
        return rc != 0 ? rc : weft_actor_send(pp_peer, 1, NULL);
    }
    if (--pp_left > 0)
        return weft_actor_send(pp_peer, 1, NULL);
    return weft_reply_send(pp_done, NULL);
}

static int ponger(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state;
    return weft_actor_send(weft_actor_sender(self), m->tag, NULL);
}

TASK_TEST(actor, steady_state_pingpong_makes_no_allocator_calls)
{
    weft_aref_t pi, po;
    EXPECT_OK(weft_actor_spawn(NULL, ponger, NULL, NULL, &po));
    pp_peer = po;
    EXPECT_OK(weft_actor_spawn(NULL, pinger, NULL, NULL, &pi));
    EXPECT_OK(weft_actor_ask(pi, 0, (void *)(intptr_t)1000, 10000, NULL)); /* warm up */
    uint64_t before = weft__alloc_calls();
    EXPECT_OK(weft_actor_ask(pi, 0, (void *)(intptr_t)10000, 10000, NULL));
    uint64_t calls = weft__alloc_calls() - before;
    cr_expect_eq(calls, 0u, "%llu allocator calls in 10000 round trips", (unsigned long long)calls);
    EXPECT_OK(weft_actor_stop(pi));
    EXPECT_OK(weft_actor_stop(po));
    EXPECT_OK(weft_actor_join(pi, 5000, NULL));
    EXPECT_OK(weft_actor_join(po, 5000, NULL));
    return 0;
}

Test(actor, misuse_returns_codes)
{
    weft_aref_t a;
    EXPECT_RC(weft_actor_spawn(NULL, logger, NULL, NULL, &a), UV_EINVAL); /* no loop */
    EXPECT_RC(weft_actor_spawn(NULL, NULL, NULL, NULL, &a), UV_EINVAL);
    EXPECT_RC(weft_actor_ask(a, 0, NULL, 1, NULL), WEFT_ENOTASK);
    EXPECT_RC(weft_actor_send(WEFT_AREF_NONE, 0, NULL), UV_EINVAL);
    EXPECT_RC(weft_actor_stop(WEFT_AREF_NONE), UV_EINVAL);
    EXPECT_RC(weft_actor_reply(NULL, NULL), UV_EINVAL);
    cr_expect_null(weft_actor_current());
}

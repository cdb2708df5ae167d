/*
 * tests/actor_mt_test.c - actors across loops and plain threads
 * (weft/actor.h): every actor on every loop sends N messages to every
 * other, checksummed and in per-sender order; plain threads sending into
 * an unbounded mailbox (ring and spill list) while the actor is stopped -
 * handled + dead letters = sent; asks across loops (and a timed-out one
 * whose late reply is dropped); kill from another thread; a bounded
 * SUSPEND mailbox fed by a blocking plain thread; spawn from a plain
 * thread and names from several threads.
 *
 * Built twice (tests/BUILD, weft_test(tsan = True)): Criterion, and through
 * tests/plain_test.h a plain program run under TSan. Results are written
 * by actors (their on_stop) and read by the test after an atomic counter
 * says they are done, which orders them. Every wait is bounded.
 */
#include "plain_test.h"
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <weft/actor.h>
#include <weft/weft.h>

#if defined(__SANITIZE_THREAD__)
#define NO_ARENAS true
#define N_ALL     20000
#define N_THREAD  50000
#define N_ASK     5000
#elif defined(__SANITIZE_ADDRESS__)
#define NO_ARENAS false
#define N_ALL     50000
#define N_THREAD  100000
#define N_ASK     20000
#else
#define NO_ARENAS false
#define N_ALL     100000
#define N_THREAD  200000
#define N_ASK     50000
#endif
#define WAIT_MS 30000

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool wait_atomic(atomic_int *v, int want)
{
    for (int i = 0; i < WAIT_MS && atomic_load(v) < want; i++)
        sleep_ms(1);
    return atomic_load(v) >= want;
}

static weft_runtime_t *start_rt(void)
{
    weft_runtime_t *rt = NULL;
    weft_runtime_opts_t o = {.loops = 2, .no_pinning = true, .no_arenas = NO_ARENAS};
    ASSERT_OK(weft_runtime_start(&o, &rt));
    cr_assert_not_null(rt);
    return rt;
}

static void stop_rt(weft_runtime_t *rt)
{
    uint64_t left = 0;
    EXPECT_OK(weft_runtime_stop(rt, &left));
}

/* ---- all to all ---- */

#define NA 4
struct peer {
    int id;
    uint64_t got[NA]; /* next sequence expected from each sender */
    uint64_t sum;
    int disorder;
    uint64_t total;
    weft_exit_kind_t why;
};
static struct peer P[NA];
static weft_aref_t PA[NA];
static atomic_int all_done;

static void peer_stop(void *state, const weft_exit_t *why)
{
    struct peer *p = state;
    p->why = why->kind;
    atomic_fetch_add(&all_done, 1);
}

static int peer_fn(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    struct peer *p = state;
    if (m->tag == 0) { /* go: N to every other, yielding now and then */
        for (uint64_t i = 0; i < N_ALL; i++) {
            for (int j = 0; j < NA; j++) {
                if (j == p->id)
                    continue;
                int rc = weft_actor_send(PA[j], 1 + (uint64_t)p->id, (void *)(uintptr_t)i);
                if (rc != 0)
                    return rc;
            }
            if ((i & 63) == 63 && weft_yield() != 0)
                return UV_ECANCELED;
        }
        return 0;
    }
    int from = (int)m->tag - 1;
    uint64_t seq = (uintptr_t)m->data;
    if (seq != p->got[from])
        p->disorder++;
    p->got[from] = seq + 1;
    p->sum += seq;
    if (++p->total == (uint64_t)N_ALL * (NA - 1))
        return weft_actor_stop_self(self, WEFT_EXIT_NORMAL, 0);
    return 0;
}

Test(actor_mt, every_actor_sends_to_every_other_none_lost, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt();
    memset(P, 0, sizeof P);
    atomic_store(&all_done, 0);
    weft_actor_opts_t o = {.on_stop = peer_stop};
    for (int i = 0; i < NA; i++) {
        P[i].id = i;
        ASSERT_OK(
            weft_actor_spawn(weft_runtime_loop(rt, (unsigned)i % 2), peer_fn, &P[i], &o, &PA[i]));
    }
    for (int i = 0; i < NA; i++)
        EXPECT_OK(weft_actor_send(PA[i], 0, NULL));
    cr_expect(wait_atomic(&all_done, NA), "every actor got every message");
    uint64_t want = (uint64_t)N_ALL * (N_ALL - 1) / 2 * (NA - 1);
    for (int i = 0; i < NA; i++) {
        cr_expect_eq(P[i].total, (uint64_t)N_ALL * (NA - 1), "actor %d", i);
        cr_expect_eq(P[i].sum, want, "actor %d checksum", i);
        cr_expect_eq(P[i].disorder, 0, "actor %d order", i);
        cr_expect_eq(P[i].why, WEFT_EXIT_NORMAL);
    }
    stop_rt(rt);
}

/* ---- plain threads, stop in flight ---- */

#define NT 2
struct sink {
    uint64_t next[NT];
    uint64_t handled;
    int disorder;
};
static struct sink S;
static atomic_int sink_done;
static weft_aref_t sink_ref;
static atomic_uint_fast64_t sent_ok, sent_dead;

static void sink_stop(void *state, const weft_exit_t *why)
{
    (void)state, (void)why;
    atomic_fetch_add(&sink_done, 1);
}

static int sink_fn(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)self;
    struct sink *s = state;
    if (m->kind != WEFT_MSG_USER)
        return 0;
    uint64_t seq = (uintptr_t)m->data;
    if (seq < s->next[m->tag])
        s->disorder++;
    s->next[m->tag] = seq + 1;
    s->handled++;
    return 0;
}

static void *thread_sender(void *arg)
{
    uint64_t id = (uintptr_t)arg;
    for (uint64_t i = 0; i < N_THREAD; i++) {
        int rc = weft_actor_send(sink_ref, id, (void *)(uintptr_t)i);
        if (rc == 0)
            atomic_fetch_add(&sent_ok, 1);
        else if (rc == UV_ESRCH)
            atomic_fetch_add(&sent_dead, 1);
    }
    return NULL;
}

Test(actor_mt, threads_send_while_stopped_handled_plus_dead_is_sent, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt();
    memset(&S, 0, sizeof S);
    atomic_store(&sink_done, 0);
    atomic_store(&sent_ok, 0);
    atomic_store(&sent_dead, 0);
    uint64_t dead_before = weft_actor_dead_letters();
    weft_actor_opts_t o = {.on_stop = sink_stop, .ring = 64};
    ASSERT_OK(weft_actor_spawn(weft_runtime_loop(rt, 1), sink_fn, &S, &o, &sink_ref));
    pthread_t th[NT];
    for (uintptr_t i = 0; i < NT; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, thread_sender, (void *)i), 0);
    sleep_ms(5);
    EXPECT_OK(weft_actor_stop(sink_ref));
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    cr_expect(wait_atomic(&sink_done, 1));
    uint64_t dead = weft_actor_dead_letters() - dead_before;
    cr_expect_eq(atomic_load(&sent_ok) + atomic_load(&sent_dead), (uint64_t)NT * N_THREAD);
    cr_expect_eq(S.handled + dead, (uint64_t)NT * N_THREAD, "handled %llu + dead %llu",
                 (unsigned long long)S.handled, (unsigned long long)dead);
    cr_expect_eq(S.disorder, 0);
    stop_rt(rt);
}

/* ---- asks across loops ---- */

static atomic_int asker_gave_up;
static int doubler(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state;
    if (m->tag == 2) { /* slow: replies only once the asker has given up */
        for (int i = 0; i < WAIT_MS && !atomic_load(&asker_gave_up); i++)
            if (weft_sleep(1) != 0)
                return UV_ECANCELED;
        return weft_actor_reply(self, malloc(16));
    }
    return weft_actor_reply(self, (void *)(uintptr_t)((uintptr_t)m->data * 2));
}

static weft_aref_t dbl;
static int asks_bad;
static atomic_int late_freed;

static void late_dtor(void *p)
{
    free(p);
    atomic_fetch_add(&late_freed, 1);
}

static int ask_task(void *arg, void **result)
{
    (void)arg, (void)result;
    for (uintptr_t i = 0; i < N_ASK; i++) {
        void *r = NULL;
        int rc = weft_actor_ask(dbl, 1, (void *)i, WAIT_MS, &r);
        if (rc != 0 || (uintptr_t)r != 2 * i)
            asks_bad++;
    }
    void *r = NULL;
    int rc = weft_actor_ask_ex(dbl, 2, NULL, 2, late_dtor, &r);
    atomic_store(&asker_gave_up, 1);
    if (rc != UV_ETIMEDOUT)
        asks_bad++;
    for (int i = 0; i < WAIT_MS && atomic_load(&late_freed) == 0; i++)
        if (weft_sleep(1) != 0)
            break;
    return 0;
}

Test(actor_mt, asks_cross_loops_and_late_replies_are_dropped, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt();
    asks_bad = 0;
    atomic_store(&late_freed, 0);
    atomic_store(&asker_gave_up, 0);
    ASSERT_OK(weft_actor_spawn(weft_runtime_loop(rt, 1), doubler, NULL, NULL, &dbl));
    weft_tsfuture_t *f;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), ask_task, NULL, &f));
    EXPECT_OK(weft_tsfuture_wait_blocking(f, WAIT_MS * 2, NULL));
    weft_tsfuture_unref(f);
    cr_expect_eq(asks_bad, 0);
    cr_expect_eq(atomic_load(&late_freed), 1);
    EXPECT_OK(weft_actor_stop(dbl));
    stop_rt(rt);
}

/* ---- kill from another thread, join from a task ---- */

static atomic_int kill_seen, sleeper_in;
static int sleeper(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)self, (void)state, (void)m;
    atomic_store(&sleeper_in, 1); /* in the handler: a kill now cancels it */
    int rc = weft_sleep(WEFT_FOREVER);
    atomic_store(&kill_seen, rc == UV_ECANCELED ? 1 : 2);
    return rc;
}

static atomic_int victim_end = -1;
static void victim_stop(void *state, const weft_exit_t *why)
{
    (void)state;
    atomic_store(&victim_end, (int)why->kind);
}

static weft_aref_t victim;
static weft_exit_t victim_why;
static int join_task(void *arg, void **result)
{
    (void)arg, (void)result;
    return weft_actor_join(victim, WAIT_MS, &victim_why);
}

Test(actor_mt, kill_from_a_thread_and_join_from_another_loop, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt();
    atomic_store(&kill_seen, 0);
    atomic_store(&sleeper_in, 0);
    atomic_store(&victim_end, -1);
    weft_actor_opts_t vo = {.on_stop = victim_stop};
    ASSERT_OK(weft_actor_spawn(weft_runtime_loop(rt, 1), sleeper, NULL, &vo, &victim));
    EXPECT_OK(weft_actor_send(victim, 1, NULL));
    weft_tsfuture_t *f;
    ASSERT_OK(weft_spawn_threadsafe(weft_runtime_loop(rt, 0), join_task, NULL, &f));
    cr_expect(wait_atomic(&sleeper_in, 1), "the handler ran");
    EXPECT_OK(weft_actor_register(rt, "victim", victim));
    EXPECT_OK(weft_actor_kill(victim));
    EXPECT_OK(weft_tsfuture_wait_blocking(f, WAIT_MS, NULL));
    weft_tsfuture_unref(f);
    /* The join may have come after the death (NOPROC); on_stop knows. */
    cr_expect(victim_why.kind == WEFT_EXIT_KILLED || victim_why.kind == WEFT_EXIT_NOPROC);
    cr_expect_eq(atomic_load(&victim_end), (int)WEFT_EXIT_KILLED);
    cr_expect_eq(atomic_load(&kill_seen), 1);
    weft_aref_t got;
    EXPECT_RC(weft_actor_whereis(rt, "victim", &got), UV_ENOENT);
    EXPECT_RC(weft_actor_kill(victim), UV_ESRCH);
    stop_rt(rt);
}

/* ---- bounded SUSPEND fed by a blocking thread ---- */

static struct sink B;
static atomic_int b_done;
static void b_stop(void *state, const weft_exit_t *why)
{
    (void)state, (void)why;
    atomic_fetch_add(&b_done, 1);
}

Test(actor_mt, bounded_mailbox_blocks_a_plain_thread_and_loses_nothing, .timeout = TEST_TIMEOUT_S)
{
    weft_runtime_t *rt = start_rt();
    memset(&B, 0, sizeof B);
    atomic_store(&b_done, 0);
    weft_aref_t a;
    weft_actor_opts_t o = {.capacity = 4, .overflow = WEFT_OVERFLOW_SUSPEND, .on_stop = b_stop};
    ASSERT_OK(weft_actor_spawn(weft_runtime_loop(rt, 1), sink_fn, &B, &o, &a));
    int again = 0, bad = 0;
    for (uint64_t i = 0; i < 20000; i++) {
        int rc = weft_actor_send_timeout(a, 0, (void *)(uintptr_t)i, WAIT_MS);
        bad += rc != 0;
    }
    for (int i = 0; i < 1000; i++)
        again += weft_actor_send(a, 1, (void *)(uintptr_t)i) == UV_EAGAIN;
    EXPECT_OK(weft_actor_send_timeout(a, 1, (void *)(uintptr_t)100000, WAIT_MS));
    /* The poison queues behind everything sent (stop would not wait for
     * them): a plain thread gets UV_EAGAIN while the mailbox is full. */
    int prc = UV_EAGAIN;
    for (int i = 0; i < WAIT_MS && prc == UV_EAGAIN; i++)
        if ((prc = weft_actor_poison(a)) == UV_EAGAIN)
            sleep_ms(1);
    EXPECT_OK(prc);
    cr_expect(wait_atomic(&b_done, 1));
    cr_expect_eq(bad, 0);
    cr_expect_eq(B.disorder, 0);
    cr_expect_eq(B.handled, 20000u + 1 + (uint64_t)(1000 - again));
    weft_actor_stats_t st;
    EXPECT_RC(weft_actor_stats(a, &st), UV_ESRCH);
    stop_rt(rt);
}

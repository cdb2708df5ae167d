/*
 * benchmarks/bench_actor.c - the actor workloads of docs/workloads.md:
 * actor_pingpong, thread_ring, actor_ask_cross, actor_fanout (weft/actor.h).
 * Each checks its own answer. Measured figures are in docs/actors.md.
 */
#include <stdatomic.h>
#include <weft/actor.h>

#include "benchmarks/bench.h"
#include "benchmarks/bench_list.h"

#define JOIN_MS 60000

static int stop_join(weft_aref_t a)
{
    (void)weft_actor_stop(a);
    return weft_actor_join(a, JOIN_MS, NULL);
}

/* ---- actor_pingpong: two actors on ONE loop, 1,000,000 round trips ---- */

enum {
    PP_ROUNDS = 1000000
};

typedef struct pp {
    weft_aref_t peer;
    long left;
    uint64_t t0, ns;
    weft_reply_t done;
} pp_t;

static pp_t pp_state;

static int pp_ping(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    pp_t *p = state;
    if (m->is_ask) {
        p->left = PP_ROUNDS;
        int rc = weft_actor_defer_reply(self, &p->done);
        p->t0 = bench_now_ns();
        return rc != 0 ? rc : weft_actor_send(p->peer, 1, NULL);
    }
    if (--p->left > 0)
        return weft_actor_send(p->peer, 1, NULL);
    p->ns = bench_now_ns() - p->t0;
    return weft_reply_send(p->done, NULL);
}

static int pp_pong(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state, (void)m;
    return weft_actor_send(weft_actor_sender(self), 2, NULL);
}

static int pp_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_aref_t pi, po;
    int rc = weft_actor_spawn(NULL, pp_pong, NULL, NULL, &po);
    if (rc != 0)
        return rc;
    pp_state = (pp_t){.peer = po};
    if ((rc = weft_actor_spawn(NULL, pp_ping, &pp_state, NULL, &pi)) != 0)
        return rc;
    rc = weft_actor_ask(pi, 0, NULL, JOIN_MS, NULL);
    int rc2 = stop_join(pi), rc3 = stop_join(po);
    return rc != 0 ? rc : rc2 != 0 ? rc2 : rc3;
}

int bench_actor_pingpong(weft_loop_t *loop, double *value)
{
    if (bench_run_main(loop, pp_main, NULL, NULL) != 0)
        return -1;
    if (pp_state.left != 0)
        return bench_fail("%ld round trips left", pp_state.left);
    *value = (double)pp_state.ns / PP_ROUNDS;
    return 0;
}

/* ---- thread_ring: 503 actors on ONE loop, 10,000,000 hops ---- */

enum {
    RING_N = 503,
    RING_HOPS = 10000000
};

typedef struct ring {
    weft_aref_t next[RING_N];
    weft_aref_t ref[RING_N];
    int ids[RING_N];
    weft_reply_t done;
    int winner;
    uint64_t t0, ns;
} ring_t;

static ring_t ring;

static int ring_fn(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    int id = *(int *)state;
    if (m->is_ask) {
        int rc = weft_actor_defer_reply(self, &ring.done);
        ring.t0 = bench_now_ns();
        return rc != 0 ? rc : weft_actor_send(ring.next[id], RING_HOPS - 1, NULL);
    }
    if (m->tag == 0) {
        ring.ns = bench_now_ns() - ring.t0;
        ring.winner = id;
        return weft_reply_send(ring.done, NULL);
    }
    return weft_actor_send(ring.next[id], m->tag - 1, NULL);
}

static int ring_main(void *arg, void **result)
{
    (void)arg, (void)result;
    int rc = 0;
    ring.winner = -1;
    for (int i = 0; i < RING_N && rc == 0; i++) {
        ring.ids[i] = i;
        rc = weft_actor_spawn(NULL, ring_fn, &ring.ids[i], NULL, &ring.ref[i]);
    }
    for (int i = 0; i < RING_N; i++)
        ring.next[i] = ring.ref[(i + 1) % RING_N];
    if (rc == 0)
        rc = weft_actor_ask(ring.ref[0], 0, NULL, JOIN_MS, NULL);
    for (int i = 0; i < RING_N; i++)
        if (!weft_aref_is_none(ring.ref[i]))
            (void)stop_join(ring.ref[i]);
    return rc;
}

int bench_thread_ring(weft_loop_t *loop, double *value)
{
    if (bench_run_main(loop, ring_main, NULL, NULL) != 0)
        return -1;
    /* Hop h is taken by actor (h + 1) mod N: the token ends at HOPS mod N. */
    if (ring.winner != RING_HOPS % RING_N)
        return bench_fail("the token ended at %d, want %d", ring.winner, RING_HOPS % RING_N);
    *value = (double)ring.ns / RING_HOPS;
    return 0;
}

/* ---- actor_ask_cross: an actor on loop 0 asks one on loop 1, 200,000 times ---- */

enum {
    ASK_N = 200000
};

static struct {
    weft_aref_t target;
    uint64_t sum, ns;
} askx;

static int ask_echo(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)state;
    return weft_actor_reply(self, m->data);
}

static int ask_driver(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)self, (void)state, (void)m;
    uint64_t t0 = bench_now_ns();
    for (uintptr_t i = 0; i < ASK_N; i++) {
        void *r = NULL;
        int rc = weft_actor_ask(askx.target, 1, (void *)i, JOIN_MS, &r);
        if (rc != 0)
            return rc;
        askx.sum += (uintptr_t)r;
    }
    askx.ns = bench_now_ns() - t0;
    return 0;
}

static int askx_main(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    weft_aref_t drv;
    int rc = weft_actor_spawn(weft_runtime_loop(rt, 1), ask_echo, NULL, NULL, &askx.target);
    if (rc == 0)
        rc = weft_actor_spawn(weft_runtime_loop(rt, 0), ask_driver, NULL, NULL, &drv);
    if (rc != 0)
        return rc;
    rc = weft_actor_ask(drv, 0, NULL, JOIN_MS, NULL);
    (void)stop_join(drv);
    (void)stop_join(askx.target);
    return rc;
}

int bench_actor_ask_cross(weft_loop_t *loop, double *value)
{
    (void)loop;
    askx.sum = 0;
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(askx_main, NULL, &o, NULL);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    if (askx.sum != (uint64_t)ASK_N * (ASK_N - 1) / 2)
        return bench_fail("reply sum %llu", (unsigned long long)askx.sum);
    *value = (double)askx.ns / ASK_N;
    return 0;
}

/* ---- actor_fanout: one actor, 10,000,000 messages round-robin to 1,000
 * actors over all loops; each counts ---- */

enum {
    FAN_N = 1000,
    FAN_MSGS = 10000000
};

static struct {
    weft_aref_t to[FAN_N];
    uint64_t counts[FAN_N];
    int ids[FAN_N];
    atomic_uint_fast64_t total;
} fan;

static int fan_count(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)self, (void)m;
    fan.counts[*(int *)state]++;
    return 0;
}

static void fan_stop(void *state, const weft_exit_t *why)
{
    (void)why;
    atomic_fetch_add(&fan.total, fan.counts[*(int *)state]);
}

static int fan_src(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    (void)self, (void)state, (void)m;
    for (long i = 0; i < FAN_MSGS; i++) {
        int rc = weft_actor_send(fan.to[i % FAN_N], 1, NULL);
        if (rc != 0)
            return rc;
        if ((i & 1023) == 1023 && weft_yield() != 0) /* let the local counters run */
            return UV_ECANCELED;
    }
    for (int i = 0; i < FAN_N; i++) {
        int rc = weft_actor_poison(fan.to[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int fan_main(void *arg, void **result)
{
    (void)result;
    double *value = arg;
    weft_runtime_t *rt = weft_runtime_current();
    unsigned nl = weft_runtime_count(rt);
    weft_actor_opts_t o = {.on_stop = fan_stop};
    int rc = 0;
    for (int i = 0; i < FAN_N && rc == 0; i++) {
        fan.ids[i] = i;
        fan.counts[i] = 0;
        rc = weft_actor_spawn(weft_runtime_loop(rt, (unsigned)i % nl), fan_count, &fan.ids[i], &o,
                              &fan.to[i]);
    }
    weft_aref_t src;
    if (rc == 0)
        rc = weft_actor_spawn(NULL, fan_src, NULL, NULL, &src);
    if (rc != 0)
        return rc;
    uint64_t t0 = bench_now_ns();
    rc = weft_actor_ask(src, 0, NULL, JOIN_MS, NULL);
    for (int i = 0; i < FAN_N; i++)
        if (weft_actor_join(fan.to[i], JOIN_MS, NULL) != 0)
            rc = rc != 0 ? rc : UV_ETIMEDOUT;
    *value = (double)FAN_MSGS / ((double)(bench_now_ns() - t0) / 1e9);
    (void)stop_join(src);
    return rc;
}

int bench_actor_fanout(weft_loop_t *loop, double *value)
{
    (void)loop;
    atomic_store(&fan.total, 0);
    weft_runtime_opts_t o = bench_two_loops();
    o.loops = 0; /* all loops */
    int rc = weft_runtime_run(fan_main, value, &o, NULL);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    if (atomic_load(&fan.total) != FAN_MSGS)
        return bench_fail("counted %llu", (unsigned long long)atomic_load(&fan.total));
    return 0;
}

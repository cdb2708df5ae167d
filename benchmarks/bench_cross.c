/*
 * benchmarks/bench_cross.c - the multi-loop workloads: two hardware probes
 * (limit_pingpong, limit_stream) measured in the same run as weft's
 * pingpong_submit and stream_call_on, skynetN, and the SCALING tables
 * (with their own probe, limit_split); the channel forms of the cross-loop
 * workloads are in bench_chan.c.
 *
 * All of them start their own runtime (own_loop in bench_list.h). Loops 0
 * and 1 are pinned to the first two CPUs the process may use (weft_cpu_id);
 * the probes pin their two threads the same way.
 * The VM flips between fast and slow cross-core states every few seconds
 * (docs/machine.md), so compare weft's numbers with the probe's from the same run.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <weft/runtime.h>

#include "benchmarks/bench.h"
#include "benchmarks/bench_list.h"

/* Pin the calling thread to CPU `cpu` (best effort). */
static void pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* A probe's two threads: the CPUs of runtime loops 0 and 1, read before the
 * probe pins its first thread (whose mask then holds one CPU, and the second
 * thread would inherit that), and the caller's own mask, put back when the
 * probe ends so that later workloads in this process (--no-fork) still see
 * every allowed CPU. */
static struct {
    int cpu0, cpu1;
    cpu_set_t saved;
} g_probe;

static void probe_begin(void)
{
    g_probe.cpu0 = weft_cpu_id(0);
    g_probe.cpu1 = weft_cpu_id(1);
    if (pthread_getaffinity_np(pthread_self(), sizeof(g_probe.saved), &g_probe.saved) != 0)
        CPU_ZERO(&g_probe.saved);
    pin_self(g_probe.cpu0);
}

static void probe_end(void)
{
    if (CPU_COUNT(&g_probe.saved) > 0)
        (void)pthread_setaffinity_np(pthread_self(), sizeof(g_probe.saved), &g_probe.saved);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* ------------------------------------------------------------------------ */
/* limit_pingpong: two threads pinned to CPUs 0 and 1 bounce one cache line,
 * 200,000 round trips. Value: ns per round trip. */

enum {
    PP_ROUNDS = 200000
};

static struct {
    _Alignas(64) volatile uint64_t ball;
} g_line;

static void *pong_thread(void *arg)
{
    (void)arg;
    pin_self(g_probe.cpu1);
    for (uint64_t i = 1; i <= PP_ROUNDS; i++) {
        while (__atomic_load_n(&g_line.ball, __ATOMIC_ACQUIRE) != 2 * i - 1)
            cpu_relax();
        __atomic_store_n(&g_line.ball, 2 * i, __ATOMIC_RELEASE);
    }
    return NULL;
}

int bench_limit_pingpong(weft_loop_t *loop, double *value)
{
    (void)loop;
    pthread_t th;
    g_line.ball = 0;
    probe_begin();
    if (pthread_create(&th, NULL, pong_thread, NULL) != 0) {
        probe_end();
        return bench_fail("pthread_create failed");
    }
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 1; i <= PP_ROUNDS; i++) {
        __atomic_store_n(&g_line.ball, 2 * i - 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&g_line.ball, __ATOMIC_ACQUIRE) != 2 * i)
            cpu_relax();
    }
    uint64_t ns = bench_now_ns() - t0;
    pthread_join(th, NULL);
    probe_end();
    *value = (double)ns / PP_ROUNDS;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* limit_stream: a bare unbatched SPSC ring (capacity 1024, head and tail
 * indices, the tail published after every message) between two threads
 * pinned to CPUs 0 and 1; 10,000,000 integers summed. Value: msgs/s. */

enum {
    STREAM_N = 10000000,
    STREAM_CAP = 1024
};

static struct {
    _Alignas(64) uint32_t head;
    _Alignas(64) uint32_t tail;
    _Alignas(64) uint64_t slot[STREAM_CAP];
    uint64_t sum;
} g_ring;

static void *stream_consumer(void *arg)
{
    (void)arg;
    pin_self(g_probe.cpu1);
    uint64_t sum = 0;
    uint32_t h = 0;
    for (uint64_t got = 0; got < STREAM_N;) {
        uint32_t t = __atomic_load_n(&g_ring.tail, __ATOMIC_ACQUIRE);
        if (t == h) {
            cpu_relax();
            continue;
        }
        sum += g_ring.slot[h % STREAM_CAP];
        h++;
        got++;
        __atomic_store_n(&g_ring.head, h, __ATOMIC_RELEASE);
    }
    g_ring.sum = sum;
    return NULL;
}

int bench_limit_stream(weft_loop_t *loop, double *value)
{
    (void)loop;
    pthread_t th;
    memset(&g_ring, 0, sizeof(g_ring));
    probe_begin();
    if (pthread_create(&th, NULL, stream_consumer, NULL) != 0) {
        probe_end();
        return bench_fail("pthread_create failed");
    }
    uint64_t t0 = bench_now_ns();
    uint32_t t = 0;
    for (uint64_t i = 0; i < STREAM_N; i++) {
        while (t - __atomic_load_n(&g_ring.head, __ATOMIC_ACQUIRE) >= STREAM_CAP)
            cpu_relax();
        g_ring.slot[t % STREAM_CAP] = i;
        t++;
        __atomic_store_n(&g_ring.tail, t, __ATOMIC_RELEASE);
    }
    pthread_join(th, NULL);
    uint64_t ns = bench_now_ns() - t0;
    probe_end();
    const uint64_t want = (uint64_t)STREAM_N * (STREAM_N - 1) / 2;
    if (g_ring.sum != want)
        return bench_fail("sum %llu, expected %llu", (unsigned long long)g_ring.sum,
                          (unsigned long long)want);
    *value = (double)STREAM_N * 1e9 / (double)ns;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* pingpong_submit (pingpong_cross before channels): a task on loop 0 submits to loop 1 a task that
 * answers 2i + 1, and awaits it; 200,000 round trips. Value: ns per round trip. Loops keep their
 * default idle poll (50 us), printed with the result. */

static int answer(void *arg, void **result)
{
    *result = weft_int(2 * weft_to_int(arg) + 1);
    return 0;
}

typedef struct cross_pp {
    uint64_t sum, ns;
} cross_pp_t;

static int cross_ping(void *arg, void **result)
{
    cross_pp_t *s = arg;
    (void)result;
    weft_loop_t *other = weft_runtime_loop(weft_runtime_current(), 1);
    uint64_t t0 = bench_now_ns();
    for (intptr_t i = 0; i < PP_ROUNDS; i++) {
        weft_future_t *f;
        void *v;
        int rc = weft_submit_to(other, answer, weft_int(i), &f);
        if (rc != 0)
            return weft_fail(rc, "submit_to failed");
        rc = weft_await(f, &v);
        weft_future_unref(f);
        if (rc != 0)
            return weft_fail(rc, "the answer failed");
        s->sum += (uint64_t)weft_to_int(v);
    }
    s->ns = bench_now_ns() - t0;
    return 0;
}

int bench_pingpong_submit(weft_loop_t *loop, double *value)
{
    (void)loop;
    cross_pp_t s = {0};
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(cross_ping, &s, &o, NULL);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    const uint64_t n = PP_ROUNDS;
    if (s.sum != n * n)
        return bench_fail("sum %llu, expected %llu", (unsigned long long)s.sum,
                          (unsigned long long)(n * n));
    *value = (double)s.ns / (double)n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* stream_call_on (stream_cross before channels): a task on loop 0 sends
 * 10,000,000 integers to loop 1 with
 * weft_call_on_try (one ring slot each, ring of 1024, published every 32),
 * yielding when the ring is full; a callback on loop 1 sums them and the
 * last one completes a thread-safe future. Value: msgs/s. */

static struct {
    uint64_t sum, got;
    weft_future_t *done;     /* on loop 0 */
    weft_future_token_t tok; /* done, for loop 1 */
} g_stream;

static void stream_add(void *arg)
{
    g_stream.sum += (uint64_t)weft_to_int(arg);
    if (++g_stream.got == STREAM_N) {
        int rc = weft_future_set_result_threadsafe(g_stream.tok, NULL);
        (void)rc;
    }
}

static int stream_producer(void *arg, void **result)
{
    uint64_t *ns = arg;
    (void)result;
    weft_loop_t *other = weft_runtime_loop(weft_runtime_current(), 1);
    int rc = weft_future_new(NULL, &g_stream.done);
    if (rc != 0)
        return rc;
    if ((rc = weft_future_token(g_stream.done, &g_stream.tok)) != 0) {
        weft_future_unref(g_stream.done);
        return rc;
    }
    uint64_t t0 = bench_now_ns();
    for (intptr_t i = 0; i < STREAM_N; i++) {
        while ((rc = weft_call_on_try(other, stream_add, weft_int(i))) == UV_EAGAIN) {
            rc = weft_yield();
            if (rc != 0)
                break;
        }
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = weft_await_timeout(g_stream.done, 30000, NULL);
    *ns = bench_now_ns() - t0;
    weft_future_unref(g_stream.done);
    return rc;
}

int bench_stream_call_on(weft_loop_t *loop, double *value)
{
    (void)loop;
    uint64_t ns = 0;
    memset(&g_stream, 0, sizeof(g_stream));
    weft_runtime_opts_t o = bench_two_loops();
    int rc = weft_runtime_run(stream_producer, &ns, &o, NULL);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    const uint64_t want = (uint64_t)STREAM_N * (STREAM_N - 1) / 2;
    if (g_stream.got != STREAM_N || g_stream.sum != want)
        return bench_fail("got %llu messages summing to %llu", (unsigned long long)g_stream.got,
                          (unsigned long long)g_stream.sum);
    *value = (double)STREAM_N * 1e9 / (double)ns;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* skynetN: skynet (10 children per node, 6 levels, 1,000,000 leaves, answer
 * 499999500000) spread over all loops: the root's 10 children are submitted
 * round-robin to the loops, everything below them stays on its loop. Value:
 * ms. Also run with 1 .. cores loops for the SCALING table, which also gives
 * the CPU time of the 10 subtrees summed over the loops (each subtree runs
 * inline, without suspending, so its thread's CPU clock is its cost). */

static int skynet_node(void *arg, void **result);

static int skynet_children(intptr_t num, intptr_t size, uint64_t *sum)
{
    weft_task_t *kids[10];
    intptr_t step = size / 10;
    int rc = 0;
    int made = 0;
    for (; made < 10; made++) {
        intptr_t packed = ((num + made * step) << 24) | step; /* size < 2^24 */
        rc = weft_spawn(NULL, skynet_node, weft_int(packed), &kids[made]);
        if (rc != 0)
            break;
    }
    for (int i = 0; i < made; i++) {
        void *v;
        int r = weft_await_task(kids[i], &v);
        if (r == 0)
            *sum += (uint64_t)weft_to_int(v);
        else if (rc == 0)
            rc = r;
        weft_task_unref(kids[i]);
    }
    return rc;
}

static int skynet_node(void *arg, void **result)
{
    intptr_t packed = weft_to_int(arg);
    intptr_t num = packed >> 24, size = packed & 0xffffff;
    if (size == 1) {
        *result = weft_int(num);
        return 0;
    }
    uint64_t sum = 0;
    int rc = skynet_children(num, size, &sum);
    *result = weft_int((intptr_t)sum);
    return rc;
}

/* The CPU clock of the calling thread, in ns. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t g_sky_cpu_ns; /* atomic: CPU time of the root's children */

/* One of the root's 10 children: skynet_node, timed by its thread's clock. */
static int skynet_top(void *arg, void **result)
{
    uint64_t c0 = thread_cpu_ns();
    int rc = skynet_node(arg, result);
    __atomic_add_fetch(&g_sky_cpu_ns, thread_cpu_ns() - c0, __ATOMIC_RELAXED);
    return rc;
}

typedef struct skyn {
    uint64_t sum, ns;
} skyn_t;

static int skynet_root(void *arg, void **result)
{
    skyn_t *s = arg;
    (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    unsigned n = weft_runtime_count(rt);
    weft_future_t *f[10];
    uint64_t t0 = bench_now_ns();
    const intptr_t size = 1000000, step = size / 10;
    int rc = 0, made = 0;
    for (; made < 10; made++) {
        intptr_t packed = ((made * step) << 24) | step;
        rc = weft_submit_to(weft_runtime_loop(rt, (unsigned)made % n), skynet_top, weft_int(packed),
                            &f[made]);
        if (rc != 0)
            break;
    }
    for (int i = 0; i < made; i++) {
        void *v;
        int r = weft_await(f[i], &v);
        if (r == 0)
            s->sum += (uint64_t)weft_to_int(v);
        else if (rc == 0)
            rc = r;
        weft_future_unref(f[i]);
    }
    s->ns = bench_now_ns() - t0;
    return rc;
}

/* One run on `loops` loops: wall ms, and (cpu_ms != NULL) the CPU ms of
 * the subtrees, summed over the loops. */
static int skynet_run(unsigned loops, double *ms, double *cpu_ms)
{
    skyn_t s = {0};
    weft_runtime_opts_t o = bench_two_loops();
    o.loops = loops;
    __atomic_store_n(&g_sky_cpu_ns, 0, __ATOMIC_RELAXED);
    int rc = weft_runtime_run(skynet_root, &s, &o, NULL);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    if (s.sum != 499999500000ULL)
        return bench_fail("skynet sum %llu", (unsigned long long)s.sum);
    *ms = (double)s.ns / 1e6;
    if (cpu_ms != NULL) /* the loops were joined: their adds are visible */
        *cpu_ms = (double)__atomic_load_n(&g_sky_cpu_ns, __ATOMIC_RELAXED) / 1e6;
    return 0;
}

static int skynet_on(unsigned loops, double *ms)
{
    return skynet_run(loops, ms, NULL);
}

int bench_skynetN(weft_loop_t *loop, double *value)
{
    (void)loop;
    return skynet_on(weft_cpu_count(), value);
}

/* ------------------------------------------------------------------------ */
/* Scaling: skynetN and a sharded counter at 1 .. cores loops, printed as
 * `SCALING weft <workload> <loops> <value> <unit>` (median of 3 after a
 * warm-up), with two more lines per loop count:
 *   skynetN_cpu: the CPU time of skynet's 10 subtrees summed over the loops,
 *     i.e. the work; if it stays flat while skynetN falls, the loops split
 *     the work without paying for it (more loops cost no more CPU);
 *   limit_split: the bare probe of what the cores give in this run - a
 *     fixed integer computation (a dependent LCG/xorshift chain, no memory)
 *     split evenly over that many threads pinned like the loops; ms of wall
 *     time. skynetN's ratio to it is what weft loses to the split.
 * The sharded counter: a task on every loop sends 1,000,000
 * increments of key k (LCG keys, 4,096 keys) to the loop owning k (k mod
 * loops) with weft_call_on_try; each loop counts its own keys. Value:
 * increments/s over all loops. */

enum {
    SPLIT_ITERS = 25000000 /* ~50 ms on one core here, about skynet1 */
};

static struct {
    unsigned n;
    unsigned ready; /* atomic: threads pinned and waiting */
    int go;         /* atomic: 1 run, -1 give up */
    uint64_t start[64], end[64], out[64];
} g_split;

static void *split_thread(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    pin_self(weft_cpu_id(i));
    __atomic_add_fetch(&g_split.ready, 1, __ATOMIC_ACQ_REL);
    int go;
    while ((go = __atomic_load_n(&g_split.go, __ATOMIC_ACQUIRE)) == 0)
        cpu_relax();
    if (go < 0)
        return NULL;
    g_split.start[i] = bench_now_ns();
    uint64_t x = i + 1, iters = SPLIT_ITERS / g_split.n;
    for (uint64_t k = 0; k < iters; k++) {
        x = x * 6364136223846793005ULL + k;
        x ^= x >> 17;
    }
    g_split.end[i] = bench_now_ns();
    g_split.out[i] = x;
    return NULL;
}

/* limit_split at n threads: ms from the first start to the last end. */
static int split_on(unsigned n, double *ms)
{
    pthread_t th[64];
    if (n == 0 || n > 64)
        return bench_fail("limit_split: %u threads", n);
    g_split.n = n;
    g_split.ready = 0;
    g_split.go = 0;
    unsigned made = 0;
    for (; made < n; made++)
        if (pthread_create(&th[made], NULL, split_thread, (void *)(uintptr_t)made) != 0)
            break;
    while (__atomic_load_n(&g_split.ready, __ATOMIC_ACQUIRE) < made)
        sched_yield();
    __atomic_store_n(&g_split.go, made == n ? 1 : -1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < made; i++)
        pthread_join(th[i], NULL);
    if (made < n)
        return bench_fail("pthread_create failed");
    uint64_t first = UINT64_MAX, last = 0, sink = 0;
    for (unsigned i = 0; i < n; i++) {
        first = g_split.start[i] < first ? g_split.start[i] : first;
        last = g_split.end[i] > last ? g_split.end[i] : last;
        sink ^= g_split.out[i];
    }
    if (sink == 0x5eed) /* uses the chains' results; never true in practice */
        fputc(' ', stderr);
    *ms = (double)(last - first) / 1e6;
    return 0;
}

enum {
    SHARD_OPS = 1000000,
    SHARD_KEYS = 4096
};

typedef struct shard_state {
    uint64_t counts[SHARD_KEYS]; /* key k is touched only by loop k % n */
    unsigned *seen;              /* [j] of n: senders finished, seen by loop j */
    unsigned done_loops;         /* atomic: loops that saw every sender */
    unsigned n;
    weft_future_t *all_done;     /* on loop 0 */
    weft_future_token_t all_tok; /* all_done, for the last loop to finish */
} shard_state_t;

static shard_state_t *g_shard;

static void shard_inc(void *arg)
{
    g_shard->counts[(uintptr_t)arg]++;
}

/* Sent by every worker to every loop after its increments, through the
 * same FIFO rings: once loop j has it from all senders, j counted all. */
static void shard_sender_done(void *arg)
{
    (void)arg;
    if (++g_shard->seen[weft_loop_index()] < g_shard->n)
        return;
    if (__atomic_add_fetch(&g_shard->done_loops, 1, __ATOMIC_ACQ_REL) == g_shard->n) {
        int rc = weft_future_set_result_threadsafe(g_shard->all_tok, NULL);
        (void)rc;
    }
}

static int shard_worker(void *arg, void **result)
{
    (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    unsigned n = weft_runtime_count(rt);
    uint64_t state = 42 + (uint64_t)weft_loop_index();
    int rc = 0;
    for (int i = 0; i < SHARD_OPS && rc == 0; i++) {
        uintptr_t k = (uintptr_t)(bench_lcg_next(&state) >> 33) % SHARD_KEYS;
        weft_loop_t *owner = weft_runtime_loop(rt, (unsigned)(k % n));
        while ((rc = weft_call_on_try(owner, shard_inc, (void *)k)) == UV_EAGAIN)
            if ((rc = weft_yield()) != 0)
                break;
    }
    for (unsigned j = 0; j < n && rc == 0; j++)
        rc = weft_call_on(weft_runtime_loop(rt, j), shard_sender_done, NULL);
    (void)arg;
    return rc;
}

static int shard_main(void *arg, void **result)
{
    (void)result;
    uint64_t *ns = arg;
    int rc = weft_future_new(NULL, &g_shard->all_done);
    if (rc != 0)
        return rc;
    if ((rc = weft_future_token(g_shard->all_done, &g_shard->all_tok)) != 0) {
        weft_future_unref(g_shard->all_done);
        return rc;
    }
    uint64_t t0 = bench_now_ns();
    rc = weft_submit_to_all(shard_worker, NULL, NULL, NULL);
    if (rc == 0)
        rc = weft_await_timeout(g_shard->all_done, 30000, NULL);
    *ns = bench_now_ns() - t0;
    weft_future_unref(g_shard->all_done);
    return rc;
}

static int shard_on(unsigned loops, double *ops)
{
    uint64_t ns = 0;
    g_shard = calloc(1, sizeof(*g_shard));
    if (g_shard != NULL)
        g_shard->seen = calloc(loops, sizeof(*g_shard->seen));
    if (g_shard == NULL || g_shard->seen == NULL) {
        free(g_shard);
        return bench_fail("out of memory");
    }
    g_shard->n = loops;
    weft_runtime_opts_t o = bench_two_loops();
    o.loops = loops;
    int rc = weft_runtime_run(shard_main, &ns, &o, NULL);
    uint64_t total = 0;
    for (int k = 0; k < SHARD_KEYS; k++)
        total += g_shard->counts[k];
    free(g_shard->seen);
    free(g_shard);
    if (rc != 0)
        return bench_fail("weft_runtime_run: %s", weft_err_name(rc));
    if (total != (uint64_t)SHARD_OPS * loops)
        return bench_fail("counted %llu increments, sent %llu", (unsigned long long)total,
                          (unsigned long long)SHARD_OPS * loops);
    *ops = (double)total * 1e9 / (double)ns;
    return 0;
}

static double mid3(double a, double b, double c)
{
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

static int median3(int (*fn)(unsigned, double *), unsigned loops, double *out)
{
    double v[3], warm;
    if (fn(loops, &warm) != 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (fn(loops, &v[i]) != 0)
            return -1;
    *out = mid3(v[0], v[1], v[2]);
    return 0;
}

/* The same for skynet's two values (each its own median). */
static int skynet_median3(unsigned loops, double *ms, double *cpu_ms)
{
    double v[3], c[3];
    if (skynet_run(loops, &v[0], &c[0]) != 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (skynet_run(loops, &v[i], &c[i]) != 0)
            return -1;
    *ms = mid3(v[0], v[1], v[2]);
    *cpu_ms = mid3(c[0], c[1], c[2]);
    return 0;
}

/* Registered as a workload whose value is the speed-up of skynet from 1 to
 * all loops; the table itself goes to stdout as SCALING lines, printed by
 * the first measured run only (the harness calls this once to warm up, then
 * once per repetition). */
int bench_scaling(weft_loop_t *loop, double *value)
{
    (void)loop;
    static int calls;
    bool print = ++calls == 2;
    unsigned cores = weft_cpu_count();
    double sky1 = 0, skyN = 0;
    for (unsigned n = 1; n <= cores; n++) {
        double ms, cpu_ms, ops, split_ms = 0;
        if (skynet_median3(n, &ms, &cpu_ms) != 0 || median3(shard_on, n, &ops) != 0 ||
            (print && median3(split_on, n, &split_ms) != 0))
            return -1;
        if (print) {
            printf("SCALING weft skynetN %u %.2f ms\n", n, ms);
            printf("SCALING weft skynetN_cpu %u %.2f ms\n", n, cpu_ms);
            printf("SCALING weft limit_split %u %.2f ms\n", n, split_ms);
            printf("SCALING weft sharded_counter %u %.0f ops/s\n", n, ops);
            fflush(stdout);
        }
        if (n == 1)
            sky1 = ms;
        skyN = ms;
    }
    *value = sky1 / skyN;
    return 0;
}

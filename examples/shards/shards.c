/*
 * examples/shards - a sharded counter map over every loop of a runtime.
 *
 * Each loop owns the keys k with k % loops == its index, in a table only its
 * own thread touches: no locks, no atomics. Producers on every loop route
 * each increment to the owner with weft_call_on (one mesh message, no
 * reply); reads go to the owner with weft_submit_to and come back as a
 * future. At the end every loop reports its share (weft_submit_to_all).
 *
 * Run: bazel run //examples/shards [-- LOOPS]   (prints one line per loop;
 * exits 0 if the counts add up). LOOPS defaults to one per allowed CPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define KEYS          1024
#define INCS_PER_LOOP 200000

/* Shard j's table, g_count[j]: written only on loop j. Sized by the loop
 * count, which follows the machine (one loop per allowed CPU), so no fixed
 * bound can be right everywhere. */
static uint64_t (*g_count)[KEYS];
static unsigned g_loops;
/* Done markers, counted on each loop (see finish_cb): g_seen[j] on loop j. */
static unsigned *g_seen;
static weft_future_t *g_all_seen;     /* on loop 0 */
static weft_future_token_t g_all_tok; /* names it on the other loops */
static unsigned g_loops_done;         /* atomic */

static void inc_cb(void *arg)
{
    uintptr_t k = (uintptr_t)arg;
    g_count[weft_loop_index()][k]++;
}

/* Every producer sends this to every loop after its increments; the rings
 * are FIFO per pair of loops, so once a loop has it from every producer it
 * has counted everything sent to it. */
static void finish_cb(void *arg)
{
    (void)arg;
    if (++g_seen[weft_loop_index()] < g_loops)
        return;
    if (__atomic_add_fetch(&g_loops_done, 1, __ATOMIC_ACQ_REL) == g_loops) {
        int rc = weft_future_set_result_threadsafe(g_all_tok, NULL);
        (void)rc;
    }
}

static int produce(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    uint64_t x = 88172645463325252ULL + (uint64_t)weft_loop_index(); /* xorshift */
    for (int i = 0; i < INCS_PER_LOOP; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uintptr_t k = (uintptr_t)(x % KEYS);
        int rc = weft_call_on(weft_runtime_loop(rt, (unsigned)(k % g_loops)), inc_cb, (void *)k);
        if (rc != 0)
            return rc;
        if ((i & 1023) == 1023 && (rc = weft_yield()) != 0) /* let the loop deliver */
            return rc;
    }
    for (unsigned j = 0; j < g_loops; j++) {
        int rc = weft_call_on(weft_runtime_loop(rt, j), finish_cb, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Runs on the owner of key k: read it there. */
static int read_key(void *arg, void **result)
{
    *result = (void *)(uintptr_t)g_count[weft_loop_index()][(uintptr_t)arg];
    return 0;
}

/* Runs on each loop: its share of the increments. */
static int shard_total(void *arg, void **result)
{
    (void)arg;
    uint64_t sum = 0;
    for (int k = 0; k < KEYS; k++)
        sum += g_count[weft_loop_index()][k];
    *result = (void *)(uintptr_t)sum;
    return 0;
}

/* The tables are made here, before any producer starts (submit_to_all
 * orders the loops' first touches after these writes), and freed by main()
 * once the runtime has stopped: on an early return, increments may still be
 * on their way to their loops. */
static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    g_loops = weft_runtime_count(rt);
    g_count = calloc(g_loops, sizeof(*g_count));
    g_seen = calloc(g_loops, sizeof(*g_seen));
    if (g_count == NULL || g_seen == NULL)
        return UV_ENOMEM;
    int rc = weft_future_new(NULL, &g_all_seen);
    if (rc != 0)
        return rc;
    /* The last loop to finish completes g_all_seen from its own thread: it
     * does so through a token, taken here on loop 0, which keeps the future
     * alive until the completion has arrived - even if we stopped waiting. */
    if ((rc = weft_future_token(g_all_seen, &g_all_tok)) != 0) {
        weft_future_unref(g_all_seen);
        return rc;
    }
    rc = weft_submit_to_all(produce, NULL, NULL, NULL);
    if (rc == 0)
        rc = weft_await_timeout(g_all_seen, 30000, NULL);
    weft_future_unref(g_all_seen);
    if (rc != 0)
        return rc;

    void **totals = calloc(g_loops, sizeof(*totals));
    if (totals == NULL)
        return UV_ENOMEM;
    rc = weft_submit_to_all(shard_total, NULL, totals, NULL);
    uint64_t all = 0;
    for (unsigned j = 0; rc == 0 && j < g_loops; j++) {
        printf("loop %u: %llu increments over its %u keys\n", j,
               (unsigned long long)(uintptr_t)totals[j], (KEYS + g_loops - 1 - j) / g_loops);
        all += (uintptr_t)totals[j];
    }
    free(totals);
    if (rc != 0)
        return rc;
    /* One read through the owner, as a client would do it. */
    weft_future_t *f;
    rc = weft_submit_to(weft_runtime_loop(rt, 7 % g_loops), read_key, (void *)7, &f);
    void *v = NULL;
    if (rc == 0) {
        rc = weft_await(f, &v);
        weft_future_unref(f);
    }
    if (rc != 0)
        return rc;
    printf("key 7 = %llu (read on loop %u)\n", (unsigned long long)(uintptr_t)v, 7 % g_loops);
    uint64_t want = (uint64_t)INCS_PER_LOOP * g_loops;
    printf("total %llu of %llu: %s\n", (unsigned long long)all, (unsigned long long)want,
           all == want ? "ok" : "MISMATCH");
    return all == want ? 0 : UV_EIO;
}

int main(int argc, char **argv)
{
    weft_runtime_opts_t opts;
    memset(&opts, 0, sizeof(opts)); /* one loop per allowed CPU, pinned */
    if (argc > 1) {                 /* or as many as asked for, wrapping over the CPUs */
        char *end;
        unsigned long n = strtoul(argv[1], &end, 10);
        if (*end != '\0' || n < 1 || n > 1024) {
            fprintf(stderr, "usage: shards [LOOPS (1..1024)]\n");
            return 2;
        }
        opts.loops = (unsigned)n;
    }
    int rc = weft_runtime_run(main_task, NULL, &opts, NULL);
    free(g_count);
    free(g_seen);
    if (rc != 0)
        fprintf(stderr, "shards: %s\n", weft_strerror(rc));
    return rc == 0 ? 0 : 1;
}

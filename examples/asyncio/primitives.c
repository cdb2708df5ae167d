/* examples/asyncio/primitives.c: six workers start together (Event), download
 * through a rate limiter (Semaphore), append to a shared log (Lock), meet
 * between phases (Barrier) and report to a supervisor that waits on a
 * Condition. docs/primitives.md quotes it. Exits 1 if any outcome is not the
 * expected one. */
#include <stdio.h>
#include <weft/weft.h>

static int bad; /* outcomes that were not the expected ones */
#define EXPECT(c) \
    ((c) ? (void)0 : (void)(bad++, printf("UNEXPECTED: %s (line %d)\n", #c, __LINE__)))

#define WORKERS       6
#define MAX_IN_FLIGHT 2

static weft_event_t start;   /* asyncio.Event() */
static weft_sem_t limiter;   /* asyncio.Semaphore(MAX_IN_FLIGHT) */
static weft_lock_t log_lock; /* asyncio.Lock() */
static weft_barrier_t phase; /* asyncio.Barrier(WORKERS) */
static weft_lock_t lock;     /* the condition's lock */
static weft_cond_t reported; /* asyncio.Condition(lock) */
static int in_flight, max_in_flight, writing, overlaps, done, arrivals[WORKERS];
static char log_buf[WORKERS + 1];
static int log_len;

/* A write that suspends half-way: two writers at once would interleave. */
static int append_log(int id)
{
    overlaps += writing++;
    int rc = weft_sleep(1);
    log_buf[log_len++] = (char)('A' + id);
    writing--;
    return rc;
}

/* Under the condition's lock; any return releases it (WEFT_LOCK_GUARD). */
static int report(void)
{
    WEFT_LOCK_GUARD(g, &lock);
    if (g.rc != 0)
        return g.rc; /* not acquired: nothing to release */
    if (++done < WORKERS)
        return 0;
    int n = weft_cond_notify_all(&reported); /* the last one wakes the supervisor */
    return n < 0 ? n : 0;
}

static bool all_reported(void *arg)
{
    (void)arg;
    return done == WORKERS;
}

static int worker(void *arg, void **result)
{
    (void)result;
    int id = (int)weft_to_int(arg), rc, wrc = 0;
    if ((rc = weft_event_wait(&start)) != 0) /* await start.wait() */
        return rc;

    if ((rc = weft_sem_acquire(&limiter)) != 0) /* async with limiter: */
        return rc;
    if (++in_flight > max_in_flight)
        max_in_flight = in_flight;
    rc = weft_sleep(10); /* the download */
    in_flight--;
    (void)weft_sem_release(&limiter);
    if (rc != 0)
        return rc;

    WEFT_WITH_LOCK(&log_lock, rc) /* async with log_lock: */
    {
        wrc = append_log(id); /* no return or goto in here: see the docs */
    }
    if (rc != 0 || wrc != 0)
        return rc != 0 ? rc : wrc;

    int idx = weft_barrier_wait(&phase); /* every download is logged */
    if (idx < 0)
        return idx;
    arrivals[idx]++;
    return report();
}

/* The supervisor: start the workers, wait until all have reported. */
static int run_workers(void)
{
    WEFT_GROUP(g); /* on any return, workers still running are cancelled */
    if (g.weft__init_rc != 0)
        return g.weft__init_rc;
    for (int i = 0; i < WORKERS; i++) {
        int rc = weft_group_spawn(&g, worker, weft_int(i), NULL);
        if (rc != 0)
            return rc;
    }
    EXPECT(weft_event_set(&start) == 0); /* start.set(): the workers go */
    int rc, wrc = 0;
    WEFT_WITH_LOCK(&lock, rc) /* async with cond: await cond.wait_for(all_reported) */
    {
        wrc = weft_cond_wait_for(&reported, all_reported, NULL);
    }
    if (rc != 0 || wrc != 0)
        return rc != 0 ? rc : wrc;
    return weft_group_wait(&g);
}

static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    EXPECT(weft_event_init(&start) == 0 && weft_sem_init(&limiter, MAX_IN_FLIGHT) == 0);
    EXPECT(weft_lock_init(&log_lock) == 0 && weft_barrier_init(&phase, WORKERS) == 0);
    EXPECT(weft_lock_init(&lock) == 0 && weft_cond_init(&reported, &lock) == 0);
    EXPECT(run_workers() == 0);
    for (int i = 0; i < WORKERS; i++)
        EXPECT(arrivals[i] == 1); /* each arrival index was handed out once */
    printf("limiter: at most %d downloads at once\n", max_in_flight);
    printf("log: %s, %d overlapping writes\n", log_buf, overlaps);
    EXPECT(max_in_flight == MAX_IN_FLIGHT && overlaps == 0 && log_len == WORKERS);

    weft_sem_t pool; /* asyncio.BoundedSemaphore(2): a release too many is a bug */
    EXPECT(weft_sem_init_bounded(&pool, 2) == 0 && weft_sem_acquire(&pool) == 0);
    EXPECT(weft_sem_release(&pool) == 0);
    int rc = weft_sem_release(&pool);
    printf("bounded: extra release -> %s\n", weft_err_name(rc));
    EXPECT(rc == UV_EINVAL && weft_sem_value(&pool) == 2);

    EXPECT(weft_event_close(&start) == 0 && weft_sem_close(&limiter) == 0);
    EXPECT(weft_lock_close(&log_lock) == 0 && weft_barrier_close(&phase) == 0);
    EXPECT(weft_cond_close(&reported) == 0 && weft_lock_close(&lock) == 0);
    EXPECT(weft_sem_close(&pool) == 0);
    return 0;
}

int main(void)
{
    int rc = weft_run(main_task, NULL, NULL);
    EXPECT(rc == 0);
    printf("%s\n", bad == 0 ? "primitives: all as expected" : "primitives: FAILED");
    return bad == 0 ? 0 : 1;
}

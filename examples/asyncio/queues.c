/* examples/asyncio/queues.c: a producer/consumer pipeline through a bounded
 * queue with join and shutdown, a priority job queue, an undo stack
 * (LifoQueue) and an immediate shutdown. docs/queues.md quotes it.
 * Exits 1 if any outcome is not the expected one. */
#include <stdio.h>
#include <string.h>
#include <weft/weft.h>

static int bad; /* outcomes that were not the expected ones */
#define EXPECT(c) \
    ((c) ? (void)0 : (void)(bad++, printf("UNEXPECTED: %s (line %d)\n", #c, __LINE__)))

#define JOBS      10
#define CONSUMERS 3

static weft_queue_t jobs; /* asyncio.Queue(maxsize=2) */
static intptr_t sum;

static int consumer(void *arg, void **result)
{
    (void)arg;
    void *item;
    int rc, n = 0;
    while ((rc = weft_queue_get(&jobs, &item)) == 0) { /* item = await q.get() */
        rc = weft_sleep(5);                            /* the work */
        sum += weft_to_int(item);
        n++;
        (void)weft_queue_task_done(&jobs);
        if (rc != 0)
            return rc;
    }
    *result = weft_int(n);
    return rc == WEFT_ECLOSED ? 0 : rc; /* QueueShutDown ends the loop */
}

static int pipeline(void)
{
    weft_task_t *t[CONSUMERS];
    int rc = weft_queue_init(&jobs, WEFT_QUEUE_FIFO, 2), started = 0, waits = 0;
    if (rc != 0)
        return rc;
    while (rc == 0 && started < CONSUMERS)
        if ((rc = weft_spawn(NULL, consumer, NULL, &t[started])) == 0)
            started++;
    for (intptr_t i = 1; rc == 0 && i <= JOBS; i++) {
        rc = weft_queue_put_try(&jobs, weft_int(i)); /* q.put_nowait(i) */
        if (rc == UV_EAGAIN) {                       /* full: wait for room */
            waits++;
            rc = weft_queue_put(&jobs, weft_int(i));
        }
    }
    if (rc == 0)
        rc = weft_queue_join(&jobs); /* await q.join(): every job processed */
    /* Idle consumers' get fails with WEFT_ECLOSED; after an error, drop the rest. */
    (void)weft_queue_shutdown(&jobs, rc != 0);
    intptr_t total = 0;
    for (int i = 0; i < started; i++) {
        void *n;
        if (weft_await_task(t[i], &n) == 0)
            total += weft_to_int(n);
        weft_task_unref(t[i]);
    }
    printf("pipeline: %ld jobs by %d consumers, sum %ld\n", (long)total, started, (long)sum);
    EXPECT(total == JOBS && sum == JOBS * (JOBS + 1) / 2 && waits > 0); /* the bound held it back */
    int crc = weft_queue_close(&jobs);
    return rc != 0 ? rc : crc;
}

static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    EXPECT(pipeline() == 0);

    weft_queue_t pq; /* asyncio.PriorityQueue(): smallest first, ties in put order */
    EXPECT(weft_queue_init(&pq, WEFT_QUEUE_PRIORITY, 0) == 0);
    EXPECT(weft_queue_put_prio_try(&pq, 2, "resize") == 0);
    EXPECT(weft_queue_put_prio_try(&pq, 1, "login") == 0);
    EXPECT(weft_queue_put_prio_try(&pq, 2, "thumbnail") == 0);
    EXPECT(weft_queue_put_prio_try(&pq, 0, "health") == 0);
    void *item;
    int64_t prio;
    char out[80] = "";
    int len = 0;
    while (weft_queue_get_try(&pq, &item, &prio) == 0) /* q.get_nowait() */
        len += snprintf(out + len, sizeof(out) - (size_t)len, " %s/%ld", (char *)item, (long)prio);
    printf("priority:%s\n", out);
    EXPECT(strcmp(out, " health/0 login/1 resize/2 thumbnail/2") == 0);
    EXPECT(weft_queue_close(&pq) == 0);

    weft_queue_t undo; /* asyncio.LifoQueue(): an undo stack */
    EXPECT(weft_queue_init(&undo, WEFT_QUEUE_LIFO, 0) == 0);
    EXPECT(weft_queue_put(&undo, "type a") == 0 && weft_queue_put(&undo, "type b") == 0);
    EXPECT(weft_queue_put(&undo, "delete") == 0);
    len = 0;
    while (weft_queue_get_try(&undo, &item, NULL) == 0)
        len += snprintf(out + len, sizeof(out) - (size_t)len, " [%s]", (char *)item);
    int rc = weft_queue_get_timeout(&undo, &item, NULL, 10); /* nothing left to undo */
    printf("undo:%s, then %s\n", out, weft_err_name(rc));
    EXPECT(strcmp(out, " [delete] [type b] [type a]") == 0 && rc == UV_ETIMEDOUT);
    EXPECT(weft_queue_close(&undo) == 0);

    weft_queue_t q; /* q.shutdown(immediate=True): queued items are dropped */
    EXPECT(weft_queue_init(&q, WEFT_QUEUE_FIFO, 0) == 0);
    for (intptr_t i = 0; i < 3; i++)
        EXPECT(weft_queue_put(&q, weft_int(i)) == 0);
    rc = weft_queue_shutdown(&q, true);
    printf("shutdown(immediate): %d dropped\n", rc);
    EXPECT(rc == 3 && weft_queue_join(&q) == 0); /* the dropped count as done */
    EXPECT(weft_queue_get(&q, &item) == WEFT_ECLOSED && weft_queue_put(&q, NULL) == WEFT_ECLOSED);
    EXPECT(weft_queue_close(&q) == 0);
    return 0;
}

int main(void)
{
    int rc = weft_run(main_task, NULL, NULL);
    EXPECT(rc == 0);
    printf("%s\n", bad == 0 ? "queues: all as expected" : "queues: FAILED");
    return bad == 0 ? 0 : 1;
}

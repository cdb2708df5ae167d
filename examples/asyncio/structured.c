/* examples/asyncio/structured.c: task groups and timeout scopes. Crawl pages
 * as a group, upload files with WEFT_GROUP (an early return reaps the
 * children), download with an idle timeout, run a job under a budget.
 * docs/structured.md quotes it. Exits 1 if any outcome is not the expected one. */
#include <stdio.h>
#include <string.h>
#include <weft/weft.h>

static int bad; /* outcomes that were not the expected ones */
#define EXPECT(c) \
    ((c) ? (void)0 : (void)(bad++, printf("UNEXPECTED: %s (line %d)\n", #c, __LINE__)))

struct page {
    const char *url;
    uint64_t ms; /* how long the server takes */
    int fail;    /* the code it fails with, or 0 */
};

static int fetch(void *arg, void **result)
{
    const struct page *p = arg;
    int rc = weft_sleep(p->ms);
    if (rc != 0)
        return rc; /* cancelled */
    *result = (void *)p->url;
    return p->fail;
}

/* async with asyncio.TaskGroup() as g: for p in pages: g.create_task(fetch(p)) */
static int crawl(struct page *pages, size_t n, weft_task_state_t *states)
{
    weft_group_t g;
    int rc = weft_group_init(&g);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = weft_group_spawn(&g, fetch, &pages[i], NULL)) != 0) {
            (void)weft_group_leave(&g); /* cancels and reaps those spawned */
            return rc;
        }
    rc = weft_group_wait(&g); /* every child finished: 0 or the first failure */
    printf("crawl: %-12s", weft_err_name(rc));
    for (size_t i = 0; i < n; i++) {
        states[i] = weft_task_state(weft_group_task(&g, i)); /* readable until close */
        printf(" %s %s", pages[i].url, weft_task_state_name(states[i]));
    }
    printf("\n");
    EXPECT(weft_group_close(&g) == 0);
    return rc;
}

static int uploads_cancelled;

static int upload(void *arg, void **result)
{
    (void)arg, (void)result;
    int rc = weft_sleep(1000); /* the transfer */
    uploads_cancelled += rc == UV_ECANCELED;
    return rc;
}

static int open_file(const char *name)
{
    int rc = weft_sleep(1);
    return rc != 0 ? rc : strcmp(name, "missing.txt") == 0 ? UV_ENOENT : 0;
}

/* Upload every file; stop at the first that cannot be opened. Whichever way
 * the function returns, WEFT_GROUP cancels and reaps the uploads started. */
static int upload_all(const char *const *names, size_t n)
{
    WEFT_GROUP(g);
    if (g.weft__init_rc != 0)
        return g.weft__init_rc;
    for (size_t i = 0; i < n; i++) {
        int rc = open_file(names[i]);
        if (rc == 0)
            rc = weft_group_spawn(&g, upload, (void *)names[i], NULL);
        if (rc != 0)
            return rc;
    }
    return weft_group_wait(&g);
}

/* Each chunk that arrives pushes the deadline 100 ms on (Timeout.reschedule):
 * the download may take any time, but not stall for 100 ms. */
static int download(int *chunks)
{
    weft_timeout_t idle;
    int rc = weft_timeout_begin(&idle, 100);
    if (rc != 0)
        return rc;
    while ((rc = weft_sleep(*chunks < 5 ? 30 : 10000)) == 0) { /* recv(): chunk 6 never comes */
        (*chunks)++;
        (void)weft_timeout_reschedule(&idle, 100);
    }
    EXPECT(rc == UV_ETIMEDOUT && weft_timeout_expired(&idle));
    return weft_timeout_end(&idle); /* UV_ETIMEDOUT: this scope's deadline passed */
}

static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_task_state_t st[3];
    struct page site[3] = {{"/a", 10, 0}, {"/b", 30, 0}, {"/c", 20, 0}};
    EXPECT(crawl(site, 3, st) == 0 && st[0] == WEFT_TASK_DONE && st[1] == WEFT_TASK_DONE);
    struct page broken[3] = {{"/a", 10, 0}, {"/b", 200, UV_ECONNREFUSED}, {"/c", 10000, 0}};
    EXPECT(crawl(broken, 3, st) == UV_ECONNREFUSED && st[0] == WEFT_TASK_DONE);
    EXPECT(st[1] == WEFT_TASK_FAILED && st[2] == WEFT_TASK_CANCELLED); /* /c was cancelled */

    weft_timeout_t tmo; /* async with asyncio.timeout(0.2): */
    struct page slow[2] = {{"/a", 10, 0}, {"/huge", 10000, 0}};
    EXPECT(weft_timeout_begin(&tmo, 200) == 0);
    EXPECT(crawl(slow, 2, st) == UV_ETIMEDOUT && st[1] == WEFT_TASK_CANCELLED);
    EXPECT(weft_timeout_end(&tmo) == UV_ETIMEDOUT);

    const char *files[4] = {"a.txt", "b.txt", "missing.txt", "c.txt"};
    EXPECT(upload_all(files, 4) == UV_ENOENT && uploads_cancelled == 2);
    printf("upload_all: ENOENT, %d uploads cancelled and reaped\n", uploads_cancelled);

    int chunks = 0;
    EXPECT(download(&chunks) == UV_ETIMEDOUT && chunks == 5);
    printf("download: %d chunks, then the idle timeout\n", chunks);

    /* asyncio.timeout_at: a job with a 50 ms budget, and a step in it with
     * a limit of its own (1 s). The earlier deadline, the budget's, wins. */
    weft_timeout_t job, step;
    EXPECT(weft_timeout_begin_at(&job, weft_loop_now_ns() + 50 * 1000000u) == 0);
    EXPECT(weft_timeout_begin(&step, 1000) == 0);
    int rc = weft_sleep(10000);             /* the step's work: cut short */
    int step_end = weft_timeout_end(&step); /* 0: its own deadline did not pass */
    int job_end = weft_timeout_end(&job);   /* UV_ETIMEDOUT */
    printf("job: the step got %s, its scope ended with %d, ", weft_err_name(rc), step_end);
    printf("the budget's with %s\n", weft_err_name(job_end));
    EXPECT(rc == UV_ETIMEDOUT && step_end == 0 && job_end == UV_ETIMEDOUT);
    return 0;
}

int main(void)
{
    int rc = weft_run(main_task, NULL, NULL);
    EXPECT(rc == 0);
    printf("%s\n", bad == 0 ? "structured: all as expected" : "structured: FAILED");
    return bad == 0 ? 0 : 1;
}

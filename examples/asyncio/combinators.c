/* examples/asyncio/combinators.c: fetch (simulated) URLs with gather, wait_for,
 * as_completed, wait, shield and retry. docs/combinators.md quotes it.
 * Prints what happened; exits 1 if any outcome is not the expected one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

static int bad; /* outcomes that were not the expected ones */
#define EXPECT(c) \
    ((c) ? (void)0 : (void)(bad++, printf("UNEXPECTED: %s (line %d)\n", #c, __LINE__)))

struct req {
    const char *url;
    uint64_t ms;    /* how long the server takes */
    int fail;       /* the code it fails with, or 0 */
    int fail_times; /* fail only the first fail_times calls (0 = always) */
    int calls;
};

/* The network call: sleep, then fail or return a size (100 bytes a letter). */
static int fetch(void *arg, void **result)
{
    struct req *r = arg;
    r->calls++;
    int rc = weft_sleep(r->ms);
    if (rc != 0)
        return rc; /* cancelled */
    if (r->fail != 0 && (r->fail_times == 0 || r->calls <= r->fail_times))
        return r->fail;
    *result = weft_int((intptr_t)(100 * strlen(r->url)));
    return 0;
}

/* asyncio.wait_for(fetch(r), 0.1): on timeout the fetch is cancelled. */
static int fetch_100ms(void *arg, void **result)
{
    weft_task_t *t;
    int rc = weft_spawn(NULL, fetch, arg, &t);
    if (rc != 0)
        return rc;
    rc = weft_wait_for(weft_task_future(t), 100, result);
    weft_task_unref(t);
    return rc;
}

static void spawn_all(weft_task_fn fn, struct req *r, int n, weft_task_t **t, weft_future_t **fs)
{
    for (int i = 0; i < n; i++) {
        if (weft_spawn(NULL, fn, &r[i], &t[i]) != 0)
            exit(2); /* out of memory: not worth more code in an example */
        fs[i] = weft_task_future(t[i]);
    }
}

static bool retry_if_reset(int code, void *arg)
{
    (void)arg;
    return code == UV_ECONNRESET;
}

static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_task_t *t[4];
    weft_future_t *fs[4];

    /* gather: fetch a page's four resources, each with its own timeout. */
    struct req page[4] = {{.url = "/index", .ms = 10},
                          {.url = "/style.css", .ms = 30},
                          {.url = "/slow", .ms = 10000},
                          {.url = "/down", .ms = 20, .fail = UV_ECONNREFUSED}};
    spawn_all(fetch_100ms, page, 4, t, fs);
    void *res[4];
    int err[4];
    EXPECT(weft_gather(fs, 4, res, err, WEFT_RETURN_ERRORS) == 0);
    for (int i = 0; i < 4; i++) {
        printf("gather: %-10s %-12s %4ld bytes\n", page[i].url, weft_err_name(err[i]),
               (long)weft_to_int(res[i]));
        weft_task_unref(t[i]);
    }
    EXPECT(err[0] == 0 && weft_to_int(res[0]) == 600 && err[1] == 0);
    EXPECT(err[2] == UV_ETIMEDOUT && err[3] == UV_ECONNREFUSED);

    /* as_completed: handle each answer as soon as it arrives. */
    struct req imgs[3] = {
        {.url = "/c.png", .ms = 30}, {.url = "/a.png", .ms = 10}, {.url = "/b.png", .ms = 20}};
    spawn_all(fetch, imgs, 3, t, fs);
    weft_as_completed_t it;
    EXPECT(weft_as_completed_init(&it, fs, 3, 1000) == 0);
    weft_future_t *f;
    int rc, order = 0;
    printf("as_completed:");
    while ((rc = weft_as_completed_next(&it, &f)) == 0)
        for (int i = 0; i < 3; i++)
            if (f == fs[i]) {
                printf(" %s", imgs[i].url);
                EXPECT(i == (order++ + 1) % 3); /* /a.png, /b.png, /c.png */
            }
    printf("\n");
    EXPECT(rc == UV_EOF && order == 3);
    weft_as_completed_close(&it);
    for (int i = 0; i < 3; i++)
        weft_task_unref(t[i]);

    /* wait(FIRST_COMPLETED): a hedged request; the slower mirror is cancelled. */
    struct req mirrors[2] = {{.url = "/eu/file", .ms = 40}, {.url = "/us/file", .ms = 15}};
    spawn_all(fetch, mirrors, 2, t, fs);
    bool done[2];
    EXPECT(weft_wait(fs, 2, WEFT_FOREVER, WEFT_FIRST_COMPLETED, done) == 0);
    EXPECT(!done[0] && done[1]);
    weft_task_cancel(t[0]);
    EXPECT(weft_await_task(t[0], NULL) == UV_ECANCELED);
    printf("wait: %s answered first, %s was cancelled\n", mirrors[1].url, mirrors[0].url);
    weft_task_unref(t[0]);
    weft_task_unref(t[1]);

    /* shield: a save that must not be cut off when its caller gives up. */
    struct req save = {.url = "/save", .ms = 50};
    weft_future_t *shielded;
    spawn_all(fetch, &save, 1, t, fs);
    EXPECT(weft_shield(fs[0], &shielded) == 0);
    EXPECT(weft_wait_for(shielded, 10, NULL) == UV_ETIMEDOUT); /* cancels the shield only */
    EXPECT(weft_future_cancelled(shielded) && !weft_future_done(fs[0]));
    EXPECT(weft_await_task(t[0], &res[0]) == 0 && weft_to_int(res[0]) == 500);
    printf("shield: wait_for gave up, the save went on: %ld bytes\n", (long)weft_to_int(res[0]));
    weft_future_unref(shielded);
    weft_task_unref(t[0]);

    /* retry: connection resets are retried (10 ms, then 20 ms); a refusal is not. */
    weft_retry_opts_t ro = {.attempts = 5, .base_delay_ms = 10, .retry_if = retry_if_reset};
    struct req flaky = {.url = "/flaky", .ms = 5, .fail = UV_ECONNRESET, .fail_times = 2};
    struct req down = {.url = "/down", .ms = 5, .fail = UV_ECONNREFUSED};
    EXPECT(weft_retry(fetch, &flaky, &ro, &res[0]) == 0 && flaky.calls == 3);
    EXPECT(weft_retry(fetch, &down, &ro, &res[1]) == UV_ECONNREFUSED && down.calls == 1);
    printf("retry: %s took %d calls, %s took %d\n", flaky.url, flaky.calls, down.url, down.calls);
    return 0;
}

int main(void)
{
    int rc = weft_run(main_task, NULL, NULL);
    EXPECT(rc == 0);
    printf("%s\n", bad == 0 ? "combinators: all as expected" : "combinators: FAILED");
    return bad == 0 ? 0 : 1;
}

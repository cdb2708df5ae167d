/* examples/asyncio/generators.c: an async generator that pages through a
 * (simulated) API, read to the end with `async for` and cut short with
 * aclose(); and a running average driven by asend() and athrow().
 * docs/generators.md quotes it. Exits 1 if any outcome is not the expected one. */
#include <stdio.h>
#include <weft/weft.h>

static int bad; /* outcomes that were not the expected ones */
#define EXPECT(c) \
    ((c) ? (void)0 : (void)(bad++, printf("UNEXPECTED: %s (line %d)\n", #c, __LINE__)))

struct api {
    int total, page_size; /* items on the server, items per page */
    int pages_fetched;
    bool released; /* the connection was given back */
};

/* async def results(api): fetch a page at a time, yield its items (1, 2, ...) */
static int results(void *arg, void **result)
{
    (void)result;
    struct api *api = arg;
    int rc = 0;
    for (int next = 0; rc == 0 && next < api->total;) {
        if ((rc = weft_sleep(5)) != 0) /* GET /items?offset=next */
            break;
        api->pages_fetched++;
        for (int end = next + api->page_size; rc == 0 && next < end && next < api->total; next++)
            rc = weft_gen_yield(weft_int(next + 1), NULL); /* UV_ECANCELED once closed */
    }
    api->released = true; /* the finally: block runs on every exit */
    return rc;
}

#define RESET (-7000) /* an application's own code: athrow(Reset) */

/* async def averager(): x = yield avg, forever; Reset starts over. */
static int averager(void *arg, void **result)
{
    (void)arg, (void)result;
    intptr_t total = 0, n = 0;
    void *avg = NULL, *x;
    for (;;) {
        int rc = weft_gen_yield(avg, &x);
        if (rc == RESET) {
            total = n = 0;
            avg = NULL;
            continue;
        }
        if (rc != 0)
            return rc; /* closed (UV_ECANCELED) or a code it does not handle */
        total += weft_to_int(x);
        avg = weft_int(total / ++n);
    }
}

static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_gen_t *g;
    void *v;
    int rc, n = 0;

    /* async for item in results(api): ... */
    struct api all = {.total = 7, .page_size = 3};
    EXPECT(weft_gen_new(NULL, results, &all, &g) == 0);
    intptr_t sum = 0;
    while ((rc = weft_gen_next(g, &v)) == 0) { /* v = await anext(g) */
        sum += weft_to_int(v);
        n++;
    }
    EXPECT(rc == UV_EOF);
    EXPECT(weft_gen_free(g) == 0);
    printf("async for: %d items, sum %ld, %d pages\n", n, (long)sum, all.pages_fetched);
    EXPECT(n == 7 && sum == 28 && all.pages_fetched == 3 && all.released);

    /* Stop at item 4: weft_gen_free (aclose) makes the pending yield return
     * UV_ECANCELED, the body releases its connection, free waits for it. */
    struct api big = {.total = 100, .page_size = 3};
    EXPECT(weft_gen_new(NULL, results, &big, &g) == 0);
    while ((rc = weft_gen_next(g, &v)) == 0 && weft_to_int(v) != 4)
        ;
    EXPECT(rc == 0 && !big.released);
    EXPECT(weft_gen_free(g) == 0 && big.released);
    printf("found 4: closed after %d of 34 pages\n", big.pages_fetched);
    EXPECT(big.pages_fetched == 2);

    /* asend / athrow. */
    EXPECT(weft_gen_new(NULL, averager, NULL, &g) == 0);
    EXPECT(weft_gen_next(g, &v) == 0 && v == NULL); /* start it: runs to the first yield */
    printf("averager:");
    intptr_t in[] = {10, 20, 60};
    for (int i = 0; i < 3; i++) {
        EXPECT(weft_gen_send(g, weft_int(in[i]), &v) == 0); /* await g.asend(x) */
        printf(" %ld", (long)weft_to_int(v));
    }
    EXPECT(weft_to_int(v) == 30);
    EXPECT(weft_gen_throw(g, RESET, &v) == 0 && v == NULL); /* handled: yields again */
    EXPECT(weft_gen_send(g, weft_int(4), &v) == 0 && weft_to_int(v) == 4);
    rc = weft_gen_throw(g, UV_EIO, &v); /* not handled: the body ends with it */
    printf(", reset, 4, then %s", weft_err_name(rc));
    EXPECT(rc == UV_EIO);
    rc = weft_gen_next(g, &v); /* finished: UV_EOF from now on */
    printf(", then %s\n", weft_err_name(rc));
    EXPECT(rc == UV_EOF);
    EXPECT(weft_gen_free(g) == 0);
    return 0;
}

int main(void)
{
    int rc = weft_run(main_task, NULL, NULL);
    EXPECT(rc == 0);
    printf("%s\n", bad == 0 ? "generators: all as expected" : "generators: FAILED");
    return bad == 0 ? 0 : 1;
}

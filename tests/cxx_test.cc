// tests/cxx_test.cc - the public headers compile as C++ (-std=c++17 -Wall
// -Wextra -Werror, as every weft target) and work from C++: weft_run with a
// trivial task, and the examples of the headers' doc comments (timeout.h,
// gen.h, group.h, combine.h, sync.h), written out as they are shown there,
// so that they keep compiling under -Werror. A plain program: it prints
// "PLAIN: N passed, M failed" (read by tools/test.sh) and exits 1 on a
// failure.
#include <weft/weft.h>

#include <cstdint>
#include <cstdio>

static int g_passed, g_failed;

static void check(bool ok, const char *what, int rc)
{
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        std::printf("FAIL: %s (rc %d, %s)\n", what, rc, weft_err_name(rc));
    }
}

static int answer(void *arg, void **result)
{
    (void)arg;
    *result = weft_int(42);
    return 0;
}

// timeout.h
static int do_work(void)
{
    return weft_yield();
}

static int timeout_example(void)
{
    weft_timeout_t tmo;
    int rc = weft_timeout_begin(&tmo, 100); // deadline = now + 100 ms
    if (rc != 0)
        return rc;
    rc = do_work(); // any suspensions inside
    if (weft_timeout_end(&tmo) == UV_ETIMEDOUT)
        return UV_ETIMEDOUT; // ... this scope expired ...
    return rc;
}

// gen.h
static int count(void *arg, void **result)
{ // the body
    (void)arg;
    (void)result;
    for (intptr_t i = 0; i < 3; i++)
        if (weft_gen_yield(weft_int(i), NULL) != 0)
            break; // closed: clean up
    return 0;
}

static intptr_t g_gen_sum;

static int gen_example(void)
{
    weft_gen_t *g;
    int rc = weft_gen_new(NULL, count, NULL, &g);
    if (rc != 0)
        return rc;
    void *v;
    while ((rc = weft_gen_next(g, &v)) == 0)
        g_gen_sum += weft_to_int(v); // rc == UV_EOF at the end
    int frc = weft_gen_free(g);
    return rc == UV_EOF ? frc : rc;
}

// group.h
static int fetch(void *arg, void **result)
{
    *result = arg;
    return weft_yield();
}

static int group_example(void)
{
    int a = 1, b = 2;
    weft_group_t g;
    int rc = weft_group_init(&g);
    if (rc != 0)
        return rc;
    if ((rc = weft_group_spawn(&g, fetch, &a, NULL)) == 0)
        rc = weft_group_spawn(&g, fetch, &b, NULL);
    int wrc = weft_group_wait(&g); // all done; first error or 0
    weft_group_close(&g);
    return rc != 0 ? rc : wrc;
}

static int child(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_sleep(WEFT_FOREVER); // until the group cancels it
}

static int group_macro_example(bool something)
{
    WEFT_GROUP(g);
    if (g.weft__init_rc != 0)
        return g.weft__init_rc;
    int rc = weft_group_spawn(&g, child, NULL, NULL);
    if (rc != 0 || something)
        return -1; // children cancelled and reaped
    return weft_group_wait(&g);
}

// combine.h
static int as_completed_example(void)
{
    weft_future_t *fs[2];
    for (int i = 0; i < 2; i++) {
        int rc = weft_future_new(NULL, &fs[i]);
        if (rc != 0)
            return rc;
        rc = weft_future_set_result(fs[i], weft_int(i));
        if (rc != 0)
            return rc;
    }
    size_t n = 2, seen = 0;
    weft_as_completed_t it;
    int rc = weft_as_completed_init(&it, fs, n, 1000); // overall timeout
    if (rc != 0)
        return rc;
    weft_future_t *f;
    while ((rc = weft_as_completed_next(&it, &f)) == 0)
        seen++; // ... f is done ...
    // rc: UV_EOF after the last, UV_ETIMEDOUT, UV_ECANCELED
    weft_as_completed_close(&it);
    for (int i = 0; i < 2; i++)
        weft_future_unref(fs[i]);
    return rc == UV_EOF && seen == n ? 0 : rc;
}

// sync.h
static int lock_examples(void)
{
    weft_lock_t lock;
    int rc = weft_lock_init(&lock);
    if (rc != 0)
        return rc;
    int n = 0;
    WEFT_WITH_LOCK(&lock, rc)
    {
        n++; // ... critical section ...
    }
    if (rc != 0)
        return rc; // ... not acquired (cancelled, timed out) ...
    {
        WEFT_LOCK_GUARD(g, &lock);
        if (g.rc != 0)
            return g.rc; // not acquired: nothing to release
        n++;             // ... critical section; any return releases ...
        rc = weft_lock_try(&lock);
        if (rc != UV_EAGAIN)
            return UV_EPROTO;
    }
    rc = weft_lock_close(&lock);
    return rc != 0 ? rc : n == 2 ? 0 : UV_EPROTO;
}

static int main_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rc = timeout_example();
    check(rc == 0, "timeout.h example", rc);
    rc = gen_example();
    check(rc == 0 && g_gen_sum == 3, "gen.h example", rc);
    rc = group_example();
    check(rc == 0, "group.h example", rc);
    rc = group_macro_example(true);
    check(rc == -1, "group.h WEFT_GROUP example", rc);
    rc = as_completed_example();
    check(rc == 0, "combine.h example", rc);
    rc = lock_examples();
    check(rc == 0, "sync.h examples", rc);

    weft_future_t *f = NULL;
    void *v = NULL;
    rc = weft_future_new(NULL, &f);
    if (rc == 0)
        rc = weft_future_set_result(f, weft_int(7));
    if (rc == 0)
        rc = weft_await_timeout(f, WEFT_FOREVER, &v);
    check(rc == 0 && weft_to_int(v) == 7, "weft_await_timeout(WEFT_FOREVER)", rc);
    weft_future_unref(f);
    return 0;
}

int main()
{
    void *r = NULL;
    int rc = weft_run(answer, NULL, &r);
    check(rc == 0 && weft_to_int(r) == 42, "weft_run of a trivial task", rc);
    rc = weft_run(main_task, NULL, NULL);
    check(rc == 0, "weft_run of the examples", rc);
    static_assert(alignof(weft_loop_t) == 64, "weft_loop_t keeps its alignment in C++");
    static_assert(sizeof(weft_loop_t) == WEFT_LOOP_SIZE, "and its size");
    std::printf("PLAIN: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

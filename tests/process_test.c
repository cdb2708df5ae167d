/*
 * tests/process_test.c - subprocesses (weft/process.h): exit codes and
 * signals, pipes as streams, env/cwd, kill, waits that time out or are
 * cancelled (the child stays reapable), close's SIGTERM-then-SIGKILL, and
 * misuse. Children: /bin/sh, /bin/cat, /bin/true, /bin/false only.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <weft/weft.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

static int run_status(const char *const argv[], int64_t *st, int *sig)
{
    weft_process_t *p;
    int rc = weft_process_spawn(argv, NULL, &p);
    if (rc != 0)
        return rc;
    rc = weft_process_wait(p, st, sig);
    int crc = weft_process_close(p);
    return rc != 0 ? rc : crc;
}

TASK_TEST(process, exit_codes_and_signals)
{
    int64_t st = -1;
    int sig = -1;
    EXPECT_OK(run_status((const char *[]){"/bin/true", NULL}, &st, &sig));
    cr_expect_eq(st, 0);
    cr_expect_eq(sig, 0);
    EXPECT_OK(run_status((const char *[]){"/bin/false", NULL}, &st, &sig));
    cr_expect_eq(st, 1);
    EXPECT_OK(run_status((const char *[]){"/bin/sh", "-c", "exit 7", NULL}, &st, &sig));
    cr_expect_eq(st, 7);
    EXPECT_OK(run_status((const char *[]){"/bin/sh", "-c", "kill -9 $$", NULL}, &st, &sig));
    cr_expect_eq(sig, SIGKILL);
    /* PATH search for a bare name. */
    EXPECT_OK(run_status((const char *[]){"true", NULL}, &st, &sig));
    cr_expect_eq(st, 0);
    return 0;
}

/* Read a stream to its end into buf (NUL-terminated). */
static int slurp(weft_stream_t *s, char *buf, size_t cap)
{
    size_t have = 0;
    for (;;) {
        size_t got;
        int rc = weft_stream_read(s, buf + have, cap - 1 - have, &got);
        if (rc == UV_EOF)
            break;
        if (rc != 0)
            return rc;
        have += got;
        if (have == cap - 1)
            break;
    }
    buf[have] = 0;
    return 0;
}

TASK_TEST(process, cat_through_pipes)
{
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_PIPE}, {WEFT_STDIO_PIPE}, {WEFT_STDIO_NULL}}};
    weft_process_t *p;
    EXPECT_OK(weft_process_spawn((const char *[]){"/bin/cat", NULL}, &o, &p));
    cr_expect_gt(weft_process_pid(p), 0);
    weft_stream_t *in = weft_process_take_stream(p, 0);
    weft_stream_t *out = weft_process_take_stream(p, 1);
    cr_assert_not_null(in);
    cr_assert_not_null(out);
    cr_expect_null(weft_process_take_stream(p, 0)); /* handed over once */
    cr_expect_null(weft_process_take_stream(p, 2)); /* not a pipe */
    /* More than a pipe buffer each way, so both sides must make progress:
     * cat writes while we still write. */
    static char big[300000], back[300000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('A' + i % 23);
    EXPECT_OK(weft_stream_write(in, big, sizeof big));
    size_t got;
    EXPECT_OK(weft_stream_read_exactly(out, back, sizeof back, &got));
    cr_expect(memcmp(big, back, sizeof big) == 0);
    EXPECT_OK(weft_stream_write(in, "last\n", 5));
    EXPECT_OK(weft_stream_close(in)); /* flush, then cat sees EOF */
    char line[16];
    size_t len;
    EXPECT_OK(weft_stream_readline(out, line, sizeof line, &len));
    cr_expect_eq(len, 5);
    EXPECT_RC(weft_stream_read(out, line, sizeof line, &got), UV_EOF);
    int64_t st = -1;
    EXPECT_OK(weft_process_wait(p, &st, NULL));
    cr_expect_eq(st, 0);
    cr_expect(weft_process_exited(p));
    EXPECT_RC(weft_process_kill(p, SIGTERM), UV_ESRCH);
    EXPECT_OK(weft_process_close(p));
    EXPECT_OK(weft_stream_close(out)); /* a taken stream outlives its process */
    return 0;
}

TASK_TEST(process, env_cwd_and_stderr)
{
    const char *env[] = {"WEFT_X=forty-two", "PATH=/usr/bin:/bin", NULL};
    weft_process_opts_t o = {
        .env = env,
        .cwd = "/tmp",
        .stdio = {{WEFT_STDIO_NULL}, {WEFT_STDIO_PIPE}, {WEFT_STDIO_PIPE}},
    };
    weft_process_t *p;
    EXPECT_OK(weft_process_spawn(
        (const char *[]){"/bin/sh", "-c", "echo \"$WEFT_X\"; pwd; echo oops >&2; exit 3", NULL}, &o,
        &p));
    weft_stream_t *out = weft_process_take_stream(p, 1);
    weft_stream_t *err = weft_process_take_stream(p, 2);
    char buf[256];
    EXPECT_OK(slurp(out, buf, sizeof buf));
    cr_expect_str_eq(buf, "forty-two\n/tmp\n");
    EXPECT_OK(slurp(err, buf, sizeof buf));
    cr_expect_str_eq(buf, "oops\n");
    int64_t st;
    EXPECT_OK(weft_process_wait(p, &st, NULL));
    cr_expect_eq(st, 3);
    EXPECT_OK(weft_process_close(p));
    EXPECT_OK(weft_stream_close(out));
    EXPECT_OK(weft_stream_close(err));
    return 0;
}

TASK_TEST(process, stdio_fd_and_untaken_streams)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_PIPE}, {WEFT_STDIO_FD, fds[1]}}};
    weft_process_t *p;
    EXPECT_OK(weft_process_spawn((const char *[]){"/bin/sh", "-c", "echo via-fd", NULL}, &o, &p));
    close(fds[1]); /* the child has its own copy */
    weft_stream_t *r;
    EXPECT_OK(weft_pipe_open(fds[0], NULL, &r));
    char buf[64];
    EXPECT_OK(slurp(r, buf, sizeof buf));
    cr_expect_str_eq(buf, "via-fd\n");
    int64_t st;
    EXPECT_OK(weft_process_wait(p, &st, NULL));
    EXPECT_OK(weft_process_close(p)); /* closes the stdin pipe nobody took */
    EXPECT_OK(weft_stream_close(r));
    return 0;
}

TASK_TEST(process, kill_and_wait_timeouts)
{
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_PIPE}, {WEFT_STDIO_NULL}}};
    weft_process_t *p;
    EXPECT_OK(weft_process_spawn((const char *[]){"/bin/cat", NULL}, &o, &p));
    int64_t st = 5;
    int sig = 5;
    EXPECT_RC(weft_process_wait_timeout(p, 0, &st, &sig), UV_ETIMEDOUT);
    cr_expect_eq(st, 0);
    EXPECT_RC(weft_process_wait_timeout(p, 10, &st, &sig), UV_ETIMEDOUT);
    cr_expect(!weft_process_exited(p));
    EXPECT_RC(weft_process_kill(p, NSIG), UV_EINVAL);
    EXPECT_OK(weft_process_kill(p, 0)); /* alive? */
    EXPECT_OK(weft_process_kill(p, SIGTERM));
    EXPECT_OK(weft_process_wait(p, &st, &sig));
    cr_expect_eq(sig, SIGTERM);
    EXPECT_OK(weft_process_close(p));
    return 0;
}

/* A cancelled wait leaves the child running and reapable. */
static weft_process_t *waited;
static int wait_rc, wait_sig;

static int waiter(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int64_t st;
    wait_rc = weft_process_wait(waited, &st, &wait_sig);
    return 0;
}

TASK_TEST(process, cancelled_wait_leaves_the_child_reapable)
{
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_PIPE}}};
    EXPECT_OK(weft_process_spawn((const char *[]){"/bin/cat", NULL}, &o, &waited));
    weft_task_t *t;
    wait_rc = 1;
    EXPECT_OK(weft_spawn(NULL, waiter, NULL, &t));
    EXPECT_OK(weft_sleep(10));
    cr_expect_eq(wait_rc, 1);
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(wait_rc, UV_ECANCELED);
    cr_expect(!weft_process_exited(waited));
    EXPECT_OK(weft_process_kill(waited, 0)); /* still running */
    /* Two waiters, both get the exit. */
    wait_rc = 1;
    EXPECT_OK(weft_spawn(NULL, waiter, NULL, &t));
    weft_stream_t *in = weft_process_take_stream(waited, 0);
    EXPECT_OK(weft_stream_close(in)); /* cat ends */
    int64_t st = -1;
    EXPECT_OK(weft_process_wait(waited, &st, NULL));
    cr_expect_eq(st, 0);
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(wait_rc, 0);
    EXPECT_OK(weft_process_close(waited));
    return 0;
}

/* A child that ignores SIGTERM, says so on its stdout, then blocks. */
static const char *const ignoring_term[] = {
    "/bin/sh", "-c", "trap '' TERM; echo ready; exec /bin/cat >/dev/null", NULL};

static int await_ready(weft_process_t *p)
{
    weft_stream_t *out = weft_process_take_stream(p, 1);
    char line[16];
    size_t len;
    int rc = weft_stream_readline_timeout(out, line, sizeof line, 10000, &len);
    if (rc == 0 && (len != 6 || memcmp(line, "ready\n", 6) != 0))
        rc = UV_EPROTO;
    (void)weft_stream_close(out);
    return rc;
}

TASK_TEST(process, close_terminates_a_running_child)
{
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_PIPE}}};
    weft_process_t *p;
    EXPECT_OK(weft_process_spawn((const char *[]){"/bin/cat", NULL}, &o, &p));
    EXPECT_OK(weft_process_close(p)); /* SIGTERM: cat ends at once */
    /* A child that ignores SIGTERM gets SIGKILL after the grace. Its stdin
     * is a pipe this test holds open (close drops a pipe stream, and cat
     * would end at that EOF alone). */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    weft_process_opts_t h = {.stdio = {{WEFT_STDIO_FD, fds[0]}, {WEFT_STDIO_PIPE}},
                             .kill_grace_ms = 20};
    EXPECT_OK(weft_process_spawn(ignoring_term, &h, &p));
    EXPECT_OK(await_ready(p)); /* the trap is set */
    weft_task_t *t;
    waited = p;
    wait_rc = 1;
    EXPECT_OK(weft_spawn(NULL, waiter, NULL, &t));
    EXPECT_OK(weft_sleep(1));
    EXPECT_OK(weft_process_close(p));
    EXPECT_OK(weft_await_task(t, NULL)); /* a waiter still gets the exit */
    weft_task_unref(t);
    cr_expect_eq(wait_rc, 0);
    cr_expect_eq(wait_sig, SIGKILL);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

/* A task cancelled inside close: SIGKILL at once, reaped in the background,
 * and the loop still closes clean (the harness checks). */
static weft_process_t *closing_p;
static int close_rc;

static int closer(void *arg, void **result)
{
    (void)arg;
    (void)result;
    close_rc = weft_process_close(closing_p);
    return 0;
}

TASK_TEST(process, cancel_during_close_kills_and_reaps)
{
    static int fds[2];
    cr_assert_eq(pipe(fds), 0);
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_FD, fds[0]}, {WEFT_STDIO_PIPE}},
                             .kill_grace_ms = 60000};
    EXPECT_OK(weft_process_spawn(ignoring_term, &o, &closing_p));
    EXPECT_OK(await_ready(closing_p));
    weft_task_t *t;
    close_rc = 1;
    EXPECT_OK(weft_spawn(NULL, closer, NULL, &t));
    EXPECT_OK(weft_sleep(10));
    cr_expect_eq(close_rc, 1); /* in its grace period */
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(close_rc, UV_ECANCELED);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

TASK_TEST(process, spawn_errors_and_misuse)
{
    weft_process_t *p = (weft_process_t *)1;
    EXPECT_RC(weft_process_spawn((const char *[]){"/nonexistent/weft", NULL}, NULL, &p), UV_ENOENT);
    cr_expect_null(p);
    EXPECT_RC(weft_process_spawn(NULL, NULL, &p), UV_EINVAL);
    EXPECT_RC(weft_process_spawn((const char *[]){NULL}, NULL, &p), UV_EINVAL);
    EXPECT_RC(weft_process_spawn((const char *[]){"/bin/true", NULL}, NULL, NULL), UV_EINVAL);
    weft_process_opts_t bad = {.stdio = {{(weft_stdio_kind_t)99}}};
    EXPECT_RC(weft_process_spawn((const char *[]){"/bin/true", NULL}, &bad, &p), UV_EINVAL);
    weft_process_opts_t badfd = {.stdio = {{WEFT_STDIO_PIPE}, {WEFT_STDIO_FD, -1}}};
    EXPECT_RC(weft_process_spawn((const char *[]){"/bin/true", NULL}, &badfd, &p), UV_EINVAL);
    weft_process_opts_t badso = {.stdio = {{WEFT_STDIO_PIPE}},
                                 .stream_opts = {.write_high = 1, .write_low = 2}};
    EXPECT_RC(weft_process_spawn((const char *[]){"/bin/true", NULL}, &badso, &p), UV_EINVAL);
    weft_process_opts_t nocwd = {.cwd = "/nonexistent/weft"};
    EXPECT_RC(weft_process_spawn((const char *[]){"/bin/true", NULL}, &nocwd, &p), UV_ENOENT);
    EXPECT_RC(weft_process_wait(NULL, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_process_kill(NULL, SIGTERM), UV_EINVAL);
    EXPECT_RC(weft_process_close(NULL), UV_EINVAL);
    EXPECT_RC(weft_process_pid(NULL), UV_EINVAL);
    cr_expect(!weft_process_exited(NULL));
    cr_expect_null(weft_process_take_stream(NULL, 0));
    return 0;
}

TASK_TEST(process, out_of_memory_leaks_nothing)
{
    weft_process_t *p;
    weft_process_opts_t o = {.stdio = {{WEFT_STDIO_PIPE}, {WEFT_STDIO_PIPE}}};
    for (long n = 0; n < 3; n++) { /* the process, its stdin pipe, its stdout pipe */
        weft__alloc_fail_after(n);
        EXPECT_RC(weft_process_spawn((const char *[]){"/bin/true", NULL}, &o, &p), UV_ENOMEM);
        weft__alloc_fail_after(-1);
    }
    EXPECT_OK(run_status((const char *[]){"/bin/true", NULL}, NULL, NULL));
    return 0;
}

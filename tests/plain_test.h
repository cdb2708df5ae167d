/*
 * plain_test.h - one test source, two builds: Criterion, or a plain program.
 *
 * Criterion 2.4.1 aborts under ThreadSanitizer (its fork sandbox maps an arena
 * where TSan's shadow memory lives; Criterion issue #274). So a test file that
 * must also run under TSan includes this header instead of
 * <criterion/criterion.h>. Normally it is just Criterion. Built with
 * -DWEFT_PLAIN_TEST=1 (weft_test(..., tsan = True) makes that <name>_plain
 * target), it becomes a small stand-in with the same spelling:
 *
 *   - Test(suite, name, .init = f, .fini = g, ...) { body } registers the body
 *     from a constructor. .init and .fini are called around the body; .disabled
 *     skips the test; .timeout bounds it (alarm); .description is ignored.
 *     Tests that expect a .signal or an .exit_code are skipped.
 *   - main() runs every test, one after the other in the order the
 *     constructors ran, each in a forked child process as Criterion does (so
 *     tests do not share globals, and a crash fails only its test), and
 *     prints "PLAIN: N passed, M failed"; it exits non-zero when a test
 *     failed. tools/test.sh counts that line.
 *   - cr_assert* stops the test (longjmp back to the runner) and fails it;
 *     cr_expect* fails it and carries on. Both may take Criterion's optional
 *     message: a string literal format plus arguments.
 *   - cr_skip(...) ends the test there as skipped (printed as [SKIP], counted
 *     as passed unless an expectation had already failed), from the test's
 *     own thread only: a test that cannot run where it is (e.g. one CPU).
 *   - A failing cr_expect* may come from any thread. A failing cr_assert* on a
 *     thread other than main's cannot unwind that thread, so it aborts the
 *     whole program (which tools/test.sh counts as a failure).
 *
 * Not provided: TestSuite(), parameterized tests and theories, the new
 * cr_assert(eq(...)) API, redirections. A test that uses them does not compile
 * as a plain program, which is the intended signal.
 *
 * All definitions are weak, so a test binary may be built from several files
 * that each include this header.
 */
#ifndef WEFT_TESTS_PLAIN_TEST_H
#define WEFT_TESTS_PLAIN_TEST_H

#ifndef WEFT_PLAIN_TEST

#include <criterion/criterion.h>
#include <criterion/logging.h>

#else /* WEFT_PLAIN_TEST */

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct weft_plain_opts {
    void (*init)(void);
    void (*fini)(void);
    int signal;
    int exit_code;
    bool disabled;
    const char *description;
    double timeout;
    void *data;
};

struct weft_plain_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct weft_plain_opts opts;
    struct weft_plain_test *next;
};

#define WEFT_PLAIN_WEAK __attribute__((weak))

/* The registry and the state of the test that is running. `failed` may be
 * set from any thread, hence the atomics; everything else is main's. */
WEFT_PLAIN_WEAK struct weft_plain_test *weft_plain_head_;
WEFT_PLAIN_WEAK struct weft_plain_test **weft_plain_tail_;
WEFT_PLAIN_WEAK int weft_plain_failed_;
WEFT_PLAIN_WEAK jmp_buf weft_plain_jmp_;
WEFT_PLAIN_WEAK pthread_t weft_plain_main_thread_;

void weft_plain_register_(struct weft_plain_test *t);
void weft_plain_fail_(bool fatal, const char *file, int line, const char *expr, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
__attribute__((noreturn)) void weft_plain_skip_(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool weft_plain_run_(struct weft_plain_test *volatile t);
int main(void);

WEFT_PLAIN_WEAK void weft_plain_register_(struct weft_plain_test *t)
{
    if (!weft_plain_tail_)
        weft_plain_tail_ = &weft_plain_head_;
    *weft_plain_tail_ = t;
    weft_plain_tail_ = &t->next;
}

/* `fmt` always starts with one space that the macros put before the user's
 * optional message (an empty format would trip -Wformat-zero-length). */
WEFT_PLAIN_WEAK void weft_plain_fail_(bool fatal, const char *file, int line, const char *expr,
                                      const char *fmt, ...)
{
    va_list ap;

    flockfile(stderr);
    fprintf(stderr, "%s:%d: %s failed: %s", file, line, fatal ? "assertion" : "expectation", expr);
    if (fmt[1] != '\0') {
        fputs(" --", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    funlockfile(stderr);
    __atomic_store_n(&weft_plain_failed_, 1, __ATOMIC_RELAXED);
    if (!fatal)
        return;
    if (!pthread_equal(pthread_self(), weft_plain_main_thread_)) {
        fprintf(stderr, "%s:%d: cr_assert failed off the main thread; aborting\n", file, line);
        abort();
    }
    longjmp(weft_plain_jmp_, 1);
}

/* Same leading space in `fmt` as weft_plain_fail_. A skip unwinds like a
 * failed cr_assert, but leaves the test's outcome as it was. */
WEFT_PLAIN_WEAK void weft_plain_skip_(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    flockfile(stderr);
    fprintf(stderr, "[SKIP] %s:%d:", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
    if (!pthread_equal(pthread_self(), weft_plain_main_thread_)) {
        fprintf(stderr, "%s:%d: cr_skip off the main thread; aborting\n", file, line);
        abort();
    }
    longjmp(weft_plain_jmp_, 1);
}

/* Runs one test; returns true when it failed. `t` is volatile because it is
 * read again after longjmp returns to a setjmp here. */
WEFT_PLAIN_WEAK bool weft_plain_run_(struct weft_plain_test *volatile t)
{
    __atomic_store_n(&weft_plain_failed_, 0, __ATOMIC_RELAXED);
    if (setjmp(weft_plain_jmp_) == 0) {
        if (t->opts.init)
            t->opts.init();
        t->fn();
    }
    if (t->opts.fini) {
        if (setjmp(weft_plain_jmp_) == 0)
            t->opts.fini();
    }
    return __atomic_load_n(&weft_plain_failed_, __ATOMIC_RELAXED);
}

WEFT_PLAIN_WEAK int main(void)
{
    int passed = 0, failed = 0;

    weft_plain_main_thread_ = pthread_self();
    for (struct weft_plain_test *t = weft_plain_head_; t; t = t->next) {
        if (t->opts.disabled)
            continue;
        if (t->opts.signal || t->opts.exit_code) {
            printf("[SKIP] %s::%s: expects a signal or exit code\n", t->suite, t->name);
            continue;
        }
        /* Like Criterion, each test runs in a child process of its own, so
         * tests cannot see each other's globals, and a crash or a hang (the
         * .timeout, by alarm) fails only that test. The runner is still
         * single-threaded when it forks, which ThreadSanitizer supports. */
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            if (t->opts.timeout > 0)
                alarm((unsigned)t->opts.timeout + 1);
            bool bad = weft_plain_run_(t);
            fflush(stdout);
            fflush(stderr);
            _exit(bad ? 1 : 0);
        }
        int status = 0;
        bool ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                  WEXITSTATUS(status) == 0;
        if (!ok) {
            if (pid > 0 && WIFSIGNALED(status))
                printf("[FAIL] %s::%s: killed by signal %d\n", t->suite, t->name, WTERMSIG(status));
            else
                printf("[FAIL] %s::%s\n", t->suite, t->name);
            failed++;
        } else {
            passed++;
        }
        fflush(stdout);
    }
    printf("PLAIN: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define Test(suite, name, ...)                                                     \
    static void weft_plain_fn_##suite##_##name(void);                              \
    __attribute__((constructor)) static void weft_plain_reg_##suite##_##name(void) \
    {                                                                              \
        static struct weft_plain_test t = {                                        \
            #suite, #name, weft_plain_fn_##suite##_##name, {__VA_ARGS__}, NULL};   \
        weft_plain_register_(&t);                                                  \
    }                                                                              \
    static void weft_plain_fn_##suite##_##name(void)

#define WEFT_PLAIN_CHECK_(fatal, cond, expr, ...)                               \
    do {                                                                        \
        if (!(cond))                                                            \
            weft_plain_fail_(fatal, __FILE__, __LINE__, expr, " " __VA_ARGS__); \
    } while (0)

#define WEFT_PLAIN_CMP_(fatal, a, op, b, ...) \
    WEFT_PLAIN_CHECK_(fatal, (a)op(b), #a " " #op " " #b, __VA_ARGS__)

#define WEFT_PLAIN_STRCMP_(fatal, a, op, b, ...) \
    WEFT_PLAIN_CHECK_(fatal, strcmp((a), (b)) op 0, "strcmp(" #a ", " #b ") " #op " 0", __VA_ARGS__)

#define cr_assert(cond, ...)     WEFT_PLAIN_CHECK_(true, cond, #cond, __VA_ARGS__)
#define cr_expect(cond, ...)     WEFT_PLAIN_CHECK_(false, cond, #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...) WEFT_PLAIN_CHECK_(true, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_expect_not(cond, ...) WEFT_PLAIN_CHECK_(false, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_fail(...)      WEFT_PLAIN_CHECK_(true, false, "cr_assert_fail", __VA_ARGS__)
#define cr_expect_fail(...)      WEFT_PLAIN_CHECK_(false, false, "cr_expect_fail", __VA_ARGS__)

#define cr_assert_eq(a, b, ...)  WEFT_PLAIN_CMP_(true, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) WEFT_PLAIN_CMP_(true, a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)  WEFT_PLAIN_CMP_(true, a, <, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)  WEFT_PLAIN_CMP_(true, a, >, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) WEFT_PLAIN_CMP_(true, a, <=, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) WEFT_PLAIN_CMP_(true, a, >=, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...)  WEFT_PLAIN_CMP_(false, a, ==, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) WEFT_PLAIN_CMP_(false, a, !=, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)  WEFT_PLAIN_CMP_(false, a, <, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)  WEFT_PLAIN_CMP_(false, a, >, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) WEFT_PLAIN_CMP_(false, a, <=, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) WEFT_PLAIN_CMP_(false, a, >=, b, __VA_ARGS__)

#define cr_assert_null(p, ...)     WEFT_PLAIN_CHECK_(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) WEFT_PLAIN_CHECK_(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_null(p, ...)     WEFT_PLAIN_CHECK_(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) WEFT_PLAIN_CHECK_(false, (p) != NULL, #p " != NULL", __VA_ARGS__)

#define cr_skip(...) weft_plain_skip_(__FILE__, __LINE__, " " __VA_ARGS__)

#define cr_assert_str_eq(a, b, ...)       WEFT_PLAIN_STRCMP_(true, a, ==, b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)      WEFT_PLAIN_STRCMP_(true, a, !=, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)       WEFT_PLAIN_STRCMP_(false, a, ==, b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...)      WEFT_PLAIN_STRCMP_(false, a, !=, b, __VA_ARGS__)

/* Criterion's logging goes to stderr with a prefix; so does this. The format
 * must be a string literal, as in Criterion. */
#define WEFT_PLAIN_LOG_(prefix, fmt, ...) fprintf(stderr, prefix fmt "\n", ##__VA_ARGS__)

#define cr_log_info(...)  WEFT_PLAIN_LOG_("[----] ", __VA_ARGS__)
#define cr_log_warn(...)  WEFT_PLAIN_LOG_("[WARN] ", __VA_ARGS__)
#define cr_log_error(...) WEFT_PLAIN_LOG_("[ERR ] ", __VA_ARGS__)

#endif /* WEFT_PLAIN_TEST */
#endif /* WEFT_TESTS_PLAIN_TEST_H */

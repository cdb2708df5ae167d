/*
 * tests/check.h - checks shared by weft's test files: compare a weft call's
 * return code with the one expected and, on a mismatch, say which call it
 * was and both codes by name. Include after <criterion/criterion.h> or
 * "plain_test.h" (works with both).
 */
#ifndef WEFT_TESTS_CHECK_H
#define WEFT_TESTS_CHECK_H

#include <weft/error.h>

/* Criterion 2.4.1's runner leaks (LeakSanitizer reports it) when tests with
 * different .timeout values run in parallel, so every test uses this one
 * (a hang then fails the test that hung, by name). */
#define TEST_TIMEOUT_S 60

#define CHECK_RC(kind, expr, want)                                                            \
    do {                                                                                      \
        int rc_ = (expr);                                                                     \
        int want_ = (want);                                                                   \
        kind(rc_, want_, "%s returned %d (%s), want %d (%s)", #expr, rc_, weft_err_name(rc_), \
             want_, weft_err_name(want_));                                                    \
    } while (0)
#define EXPECT_RC(expr, want) CHECK_RC(cr_expect_eq, expr, want)
#define ASSERT_RC(expr, want) CHECK_RC(cr_assert_eq, expr, want)
#define EXPECT_OK(expr)       EXPECT_RC(expr, 0)
#define ASSERT_OK(expr)       ASSERT_RC(expr, 0)

#endif /* WEFT_TESTS_CHECK_H */

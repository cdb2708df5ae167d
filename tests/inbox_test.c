/*
 * tests/inbox_test.c - the inbox ring itself (core/inbox.h), driven from one
 * thread with a test hook, for the cases that need one producer's reads to
 * be out of date: a post whose tail read is older than the head another
 * producer cached must not see a full ring (issue 8, section 10: it did, and
 * a post that may not spin went to the overflow list for nothing).
 */
#include <criterion/criterion.h>
#include "check.h"

#include <stdint.h>

#include "core/inbox.h"
#include "core/testhooks.h"

static unsigned g_ran;
static void count_msg(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx, (void)a, (void)b, (void)c, (void)d;
    g_ran++;
}

static struct weft__inbox g_q;

static int post(void)
{
    bool wake;
    return weft__inbox_post(&g_q, count_msg, 0, 0, 0, 0, false, &wake);
}

/* Runs inside the outer post, after it read tail = 8: other posts and
 * drains move the ring on until the producers' cached head (16) is past
 * that tail. */
static void move_the_ring_on(void)
{
    weft__test_inbox_tail_hook = NULL;
    for (int i = 0; i < 8; i++)
        cr_expect_eq(post(), 0);
    cr_expect_eq(weft__inbox_drain(&g_q, NULL, 100), 8u); /* publishes head 16 */
    cr_expect_eq(post(), 0); /* sees "full" against its cached head, refreshes it to 16 */
}

Test(inbox, a_post_with_a_stale_tail_does_not_see_a_full_ring, .timeout = TEST_TIMEOUT_S)
{
    ASSERT_OK(weft__inbox_init(&g_q, 8));
    g_ran = 0;
    for (int i = 0; i < 8; i++)
        ASSERT_OK(post());
    cr_assert_eq(weft__inbox_drain(&g_q, NULL, 100), 8u); /* head 8 */
    weft__test_inbox_tail_hook = move_the_ring_on;
    EXPECT_OK(post()); /* reads tail 8, then the hook runs */
    weft__test_inbox_tail_hook = NULL;
    cr_expect_eq(g_q.overflows, 0u, "a post with a stale tail took the overflow list");
    cr_expect_eq(weft__inbox_drain(&g_q, NULL, 100), 2u);
    cr_expect_eq(g_ran, 18u);
    weft__inbox_destroy(&g_q);
}

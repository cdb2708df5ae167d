/*
 * tests/udp_test.c - UDP sockets (weft/net.h) on 127.0.0.1 with ephemeral
 * ports: send_to/recv_from, the bounded receive ring, truncation, connected
 * UDP and its ECONNREFUSED, timeouts, cancel, close waking a receiver,
 * misuse.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <weft/weft.h>

#include "check.h"
#include "core/alloc.h"
#include "task_harness.h"

static struct sockaddr_storage addr_of(const weft_udp_t *u)
{
    struct sockaddr_storage ss;
    cr_assert_eq(weft_ip_addr("127.0.0.1", weft_udp_port(u), &ss), 0);
    return ss;
}

TASK_TEST(udp, send_to_and_recv_from)
{
    weft_udp_t *a, *b;
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &a));
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &b));
    cr_expect_gt(weft_udp_port(a), 0);
    struct sockaddr_storage to = addr_of(b);
    EXPECT_OK(weft_udp_send_to(a, "ping", 4, (struct sockaddr *)&to));
    EXPECT_OK(weft_udp_send_to(a, "", 0, (struct sockaddr *)&to)); /* empty datagram */
    char buf[64];
    size_t len;
    struct sockaddr_storage from;
    EXPECT_OK(weft_udp_recv_from(b, buf, sizeof buf, &len, &from));
    cr_expect_eq(len, 4);
    cr_expect(memcmp(buf, "ping", 4) == 0);
    cr_expect_eq(weft_ip_port((struct sockaddr *)&from), weft_udp_port(a));
    EXPECT_OK(weft_udp_recv_from(b, buf, sizeof buf, &len, NULL));
    cr_expect_eq(len, 0);
    /* Reply to the sender's address. */
    EXPECT_OK(weft_udp_send_to(b, "pong", 4, (struct sockaddr *)&from));
    EXPECT_OK(weft_udp_recv_from(a, buf, sizeof buf, &len, NULL));
    cr_expect(len == 4 && memcmp(buf, "pong", 4) == 0);
    EXPECT_OK(weft_udp_close(a));
    EXPECT_OK(weft_udp_close(b));
    return 0;
}

TASK_TEST(udp, ipv6_loopback)
{
    weft_udp_t *a;
    int rc = weft_udp_bind("::1", 0, NULL, &a);
    if (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
        cr_log_warn("no ::1 here: skipped");
        return 0;
    }
    EXPECT_OK(rc);
    struct sockaddr_storage to;
    EXPECT_OK(weft_ip_addr("::1", weft_udp_port(a), &to));
    EXPECT_OK(weft_udp_send_to(a, "six", 3, (struct sockaddr *)&to)); /* to itself */
    char buf[8];
    size_t len;
    struct sockaddr_storage from;
    EXPECT_OK(weft_udp_recv_from(a, buf, sizeof buf, &len, &from));
    cr_expect_eq(len, 3);
    cr_expect_eq(from.ss_family, AF_INET6);
    EXPECT_OK(weft_udp_close(a));
    return 0;
}

/* The receive ring holds recv_queue datagrams; beyond that reading pauses
 * and the kernel keeps the rest (a few small datagrams on loopback), which
 * arrive, in order, as the ring drains. */
TASK_TEST(udp, receive_ring_is_bounded)
{
    weft_udp_opts_t o = {.recv_queue = 4, .max_datagram = 64};
    weft_udp_t *a, *b;
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &a));
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, &o, &b));
    struct sockaddr_storage to = addr_of(b);
    enum {
        N = 50
    };
    for (int i = 0; i < N; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "%d", i);
        EXPECT_OK(weft_udp_send_to(a, m, (size_t)n, (struct sockaddr *)&to));
    }
    for (int i = 0; i < 50 && weft_udp_pending(b) < 4; i++)
        EXPECT_OK(weft_sleep(1));
    EXPECT_OK(weft_sleep(5));
    cr_expect_eq(weft_udp_pending(b), 4);
    for (int i = 0; i < N; i++) {
        char m[16], want[16];
        size_t len;
        int n = snprintf(want, sizeof want, "%d", i);
        EXPECT_OK(weft_udp_recv_from_timeout(b, m, sizeof m, 5000, &len, NULL));
        cr_expect(len == (size_t)n && memcmp(m, want, len) == 0, "datagram %d", i);
        cr_expect_leq(weft_udp_pending(b), 4);
    }
    EXPECT_OK(weft_udp_close(a));
    EXPECT_OK(weft_udp_close(b));
    return 0;
}

TASK_TEST(udp, truncation_is_emsgsize)
{
    weft_udp_opts_t o = {.max_datagram = 8};
    weft_udp_t *a, *b;
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &a));
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, &o, &b));
    struct sockaddr_storage to = addr_of(b);
    EXPECT_OK(weft_udp_send_to(a, "0123456789", 10, (struct sockaddr *)&to)); /* > slot */
    EXPECT_OK(weft_udp_send_to(a, "abcdef", 6, (struct sockaddr *)&to));      /* > cap */
    EXPECT_OK(weft_udp_send_to(a, "ok", 2, (struct sockaddr *)&to));
    char buf[8];
    size_t len;
    EXPECT_RC(weft_udp_recv_from(b, buf, sizeof buf, &len, NULL), UV_EMSGSIZE);
    cr_expect_eq(len, 8);
    cr_expect(memcmp(buf, "01234567", 8) == 0);
    EXPECT_RC(weft_udp_recv_from(b, buf, 4, &len, NULL), UV_EMSGSIZE);
    cr_expect_eq(len, 4);
    EXPECT_OK(weft_udp_recv_from(b, buf, sizeof buf, &len, NULL)); /* consumed: the next */
    cr_expect(len == 2 && memcmp(buf, "ok", 2) == 0);
    static char huge[70000];
    EXPECT_RC(weft_udp_send_to(a, huge, sizeof huge, (struct sockaddr *)&to), UV_EMSGSIZE);
    EXPECT_OK(weft_udp_close(a));
    EXPECT_OK(weft_udp_close(b));
    return 0;
}

TASK_TEST(udp, connected_udp)
{
    weft_udp_t *a, *b, *c, *gone;
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &a));
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &b));
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &c));
    EXPECT_RC(weft_udp_send(a, "x", 1), UV_EDESTADDRREQ);
    EXPECT_OK(weft_udp_connect(a, "127.0.0.1", weft_udp_port(b)));
    EXPECT_RC(weft_udp_connect(a, "127.0.0.1", weft_udp_port(b)), UV_EISCONN);
    struct sockaddr_storage to_a = addr_of(a), to_b = addr_of(b);
    EXPECT_RC(weft_udp_send_to(a, "x", 1, (struct sockaddr *)&to_b), UV_EISCONN);
    EXPECT_OK(weft_udp_send(a, "hi", 2));
    char buf[8];
    size_t len;
    EXPECT_OK(weft_udp_recv_from(b, buf, sizeof buf, &len, NULL));
    cr_expect(len == 2 && memcmp(buf, "hi", 2) == 0);
    /* a hears only from b. */
    EXPECT_OK(weft_udp_send_to(c, "stranger", 8, (struct sockaddr *)&to_a));
    EXPECT_OK(weft_udp_send_to(b, "peer", 4, (struct sockaddr *)&to_a));
    struct sockaddr_storage from;
    EXPECT_OK(weft_udp_recv_from(a, buf, sizeof buf, &len, &from));
    cr_expect(len == 4 && memcmp(buf, "peer", 4) == 0);
    cr_expect_eq(weft_ip_port((struct sockaddr *)&from), weft_udp_port(b));
    /* A peer that went away: ICMP port unreachable -> ECONNREFUSED. */
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &gone));
    int port = weft_udp_port(gone);
    EXPECT_OK(weft_udp_close(gone));
    EXPECT_OK(weft_sleep(1)); /* the close callback: the port is free */
    EXPECT_OK(weft_udp_connect(c, "127.0.0.1", port));
    EXPECT_OK(weft_udp_send(c, "anyone", 6));
    EXPECT_RC(weft_udp_recv_from_timeout(c, buf, sizeof buf, 5000, &len, NULL), UV_ECONNREFUSED);
    EXPECT_OK(weft_udp_close(a));
    EXPECT_OK(weft_udp_close(b));
    EXPECT_OK(weft_udp_close(c));
    return 0;
}

static weft_udp_t *blocked_u;
static int blocked_rc;

static int recv_blocked(void *arg, void **result)
{
    (void)arg;
    (void)result;
    char b[8];
    size_t len;
    blocked_rc = weft_udp_recv_from(blocked_u, b, sizeof b, &len, NULL);
    return 0;
}

TASK_TEST(udp, timeouts_cancel_and_close)
{
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &blocked_u));
    char b[8];
    size_t len;
    EXPECT_RC(weft_udp_recv_from_timeout(blocked_u, b, sizeof b, 0, &len, NULL), UV_ETIMEDOUT);
    EXPECT_RC(weft_udp_recv_from_timeout(blocked_u, b, sizeof b, 5, &len, NULL), UV_ETIMEDOUT);
    weft_task_t *t;
    blocked_rc = 1;
    EXPECT_OK(weft_spawn(NULL, recv_blocked, NULL, &t));
    EXPECT_OK(weft_sleep(5));
    cr_expect_eq(blocked_rc, 1);
    EXPECT_OK(weft_task_cancel(t));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(blocked_rc, UV_ECANCELED);
    /* Still usable after the cancel. */
    struct sockaddr_storage self = addr_of(blocked_u);
    EXPECT_OK(weft_udp_send_to(blocked_u, "me", 2, (struct sockaddr *)&self));
    EXPECT_OK(weft_udp_recv_from(blocked_u, b, sizeof b, &len, NULL));
    cr_expect_eq(len, 2);
    /* Close wakes a blocked receiver. */
    blocked_rc = 1;
    EXPECT_OK(weft_spawn(NULL, recv_blocked, NULL, &t));
    EXPECT_OK(weft_sleep(5));
    EXPECT_OK(weft_udp_close(blocked_u));
    EXPECT_OK(weft_await_task(t, NULL));
    weft_task_unref(t);
    cr_expect_eq(blocked_rc, WEFT_ECLOSED);
    return 0;
}

TASK_TEST(udp_misuse, bad_arguments)
{
    weft_udp_t *u = (weft_udp_t *)1;
    EXPECT_RC(weft_udp_bind("nope", 0, NULL, &u), UV_EINVAL);
    cr_expect_null(u);
    EXPECT_RC(weft_udp_bind("127.0.0.1", 70000, NULL, &u), UV_EINVAL);
    EXPECT_RC(weft_udp_bind("127.0.0.1", 0, NULL, NULL), UV_EINVAL);
    weft_udp_opts_t big = {.max_datagram = 1 << 20};
    EXPECT_RC(weft_udp_bind("127.0.0.1", 0, &big, &u), UV_EINVAL);
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &u));
    weft_udp_t *again;
    EXPECT_RC(weft_udp_bind("127.0.0.1", weft_udp_port(u), NULL, &again), UV_EADDRINUSE);
    char b[4];
    size_t len;
    struct sockaddr_storage ss;
    EXPECT_RC(weft_udp_recv_from(u, NULL, 4, &len, NULL), UV_EINVAL);
    EXPECT_RC(weft_udp_recv_from(u, b, 0, &len, NULL), UV_EINVAL);
    EXPECT_RC(weft_udp_recv_from(u, b, 4, NULL, NULL), UV_EINVAL);
    EXPECT_RC(weft_udp_send_to(u, b, 4, NULL), UV_EINVAL);
    EXPECT_RC(weft_udp_send_to(u, NULL, 4, (struct sockaddr *)&ss), UV_EINVAL);
    EXPECT_RC(weft_udp_connect(u, "nope", 1), UV_EINVAL);
    cr_expect_not_null(weft_udp_handle(u));
    EXPECT_OK(weft_udp_close(u));
    EXPECT_RC(weft_udp_recv_from(NULL, b, 4, &len, NULL), UV_EINVAL);
    EXPECT_RC(weft_udp_send(NULL, b, 4), UV_EINVAL);
    EXPECT_RC(weft_udp_close(NULL), UV_EINVAL);
    EXPECT_RC(weft_udp_port(NULL), UV_EINVAL);
    cr_expect_eq(weft_udp_pending(NULL), 0);
    cr_expect_null(weft_udp_handle(NULL));
    EXPECT_RC(weft_ip_addr(NULL, 1, &ss), UV_EINVAL);
    EXPECT_RC(weft_ip_port(NULL), UV_EINVAL);
    return 0;
}

Test(udp_misuse, outside_tasks, .timeout = TEST_TIMEOUT_S)
{
    weft_udp_t *u;
    EXPECT_RC(weft_udp_bind("127.0.0.1", 0, NULL, &u), UV_EINVAL); /* no loop */
}

TASK_TEST(udp, steady_state_round_trip_makes_no_allocator_calls)
{
    weft_udp_t *a, *b;
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &a));
    EXPECT_OK(weft_udp_bind("127.0.0.1", 0, NULL, &b));
    struct sockaddr_storage to = addr_of(b);
    char msg[64], back[64];
    memset(msg, 'u', sizeof msg);
    size_t len;
    struct sockaddr_storage from;
    for (int i = 0; i < 50; i++) { /* warm up */
        EXPECT_OK(weft_udp_send_to(a, msg, sizeof msg, (struct sockaddr *)&to));
        EXPECT_OK(weft_udp_recv_from(b, back, sizeof back, &len, &from));
    }
    uint64_t before = weft__alloc_calls();
    for (int i = 0; i < 1000; i++) {
        EXPECT_OK(weft_udp_send_to(a, msg, sizeof msg, (struct sockaddr *)&to));
        EXPECT_OK(weft_udp_recv_from(b, back, sizeof back, &len, &from));
        EXPECT_OK(weft_udp_send_to(b, back, len, (struct sockaddr *)&from));
        EXPECT_OK(weft_udp_recv_from(a, back, sizeof back, &len, NULL));
    }
    cr_expect_eq(weft__alloc_calls() - before, 0);
    EXPECT_OK(weft_udp_close(a));
    EXPECT_OK(weft_udp_close(b));
    return 0;
}

TASK_TEST(udp_misuse, out_of_memory)
{
    weft_udp_t *u;
    weft__alloc_fail_after(0);
    EXPECT_RC(weft_udp_bind("127.0.0.1", 0, NULL, &u), UV_ENOMEM);
    weft__alloc_fail_after(-1);
    return 0;
}

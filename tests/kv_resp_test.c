/*
 * tests/kv_resp_test.c - weft-kv's RESP2 parser (apps/kv/resp.h) and its
 * hash table (apps/kv/dict.h): every form Redis accepts, every protocol
 * error with Redis 7.0's text, commands cut anywhere, and the table's
 * growth, shrink, deletion and SCAN across resizes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/kv/dict.h"
#include "apps/kv/resp.h"
#include "check.h"
#include "core/alloc.h"

#define CAP 64

/* Parse s whole: the code, with argv and *used. */
static int parse_all(const char *s, size_t n, char *buf, kv_slice *argv, size_t *argc, size_t *used,
                     const char **err)
{
    resp_parser_t p;
    resp_parser_init(&p, RESP_DEFAULT_MAX_BULK);
    memcpy(buf, s, n);
    int rc = resp_parse(&p, buf, n, argv, CAP, used);
    static char errcopy[128];
    *argc = p.argc;
    *err = NULL;
    if (p.err != NULL) {
        snprintf(errcopy, sizeof(errcopy), "%s", p.err);
        *err = errcopy;
    }
    return rc;
}

static bool arg_eq(const kv_slice *a, const char *s)
{
    return a->len == strlen(s) && memcmp(a->p, s, a->len) == 0;
}

Test(kv_resp, multibulk_command_gives_its_arguments, .timeout = TEST_TIMEOUT_S)
{
    char buf[256];
    kv_slice argv[CAP];
    size_t argc, used;
    const char *err;
    const char *s = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n";
    cr_assert_eq(parse_all(s, strlen(s), buf, argv, &argc, &used, &err), RESP_OK);
    cr_assert_eq(argc, 3);
    cr_expect(arg_eq(&argv[0], "SET") && arg_eq(&argv[1], "key") && arg_eq(&argv[2], ""));
    cr_expect_eq(used, strlen(s));
}

Test(kv_resp, binary_bulk_keeps_crlf_and_nul_inside, .timeout = TEST_TIMEOUT_S)
{
    char buf[64];
    kv_slice argv[CAP];
    size_t argc, used;
    const char *err;
    const char s[] = "*1\r\n$5\r\na\r\n\0b\r\n";
    cr_assert_eq(parse_all(s, sizeof(s) - 1, buf, argv, &argc, &used, &err), RESP_OK);
    cr_assert_eq(argv[0].len, 5);
    cr_expect_eq(memcmp(argv[0].p, "a\r\n\0b", 5), 0);
}

Test(kv_resp, inline_commands_split_and_unquote_as_redis, .timeout = TEST_TIMEOUT_S)
{
    char buf[256];
    kv_slice argv[CAP];
    size_t argc, used;
    const char *err;
    const char *s = "SET  \"a b\\n\\x41\" 'it\\'s'  plain\r\n";
    cr_assert_eq(parse_all(s, strlen(s), buf, argv, &argc, &used, &err), RESP_OK);
    cr_assert_eq(argc, 4);
    cr_expect(arg_eq(&argv[0], "SET"));
    cr_expect(arg_eq(&argv[1], "a b\nA"));
    cr_expect(arg_eq(&argv[2], "it's"));
    cr_expect(arg_eq(&argv[3], "plain"));
    cr_expect_eq(used, strlen(s));
    /* a bare LF ends a line too; a blank line is an empty command */
    cr_assert_eq(parse_all("PING\n", 5, buf, argv, &argc, &used, &err), RESP_OK);
    cr_expect_eq(argc, 1);
    cr_assert_eq(parse_all("\r\n", 2, buf, argv, &argc, &used, &err), RESP_OK);
    cr_expect_eq(argc, 0);
    cr_expect_eq(used, 2);
}

Test(kv_resp, empty_and_negative_multibulk_are_skipped, .timeout = TEST_TIMEOUT_S)
{
    char buf[64];
    kv_slice argv[CAP];
    size_t argc, used;
    const char *err;
    cr_assert_eq(parse_all("*0\r\n", 4, buf, argv, &argc, &used, &err), RESP_OK);
    cr_expect_eq(argc, 0);
    cr_expect_eq(used, 4);
    cr_assert_eq(parse_all("*-1\r\n", 5, buf, argv, &argc, &used, &err), RESP_OK);
    cr_expect_eq(argc, 0);
}

static void expect_error(const char *s, size_t n, const char *want)
{
    char *buf = malloc(n + 1);
    kv_slice argv[CAP];
    size_t argc, used;
    const char *err;
    cr_assert_eq(parse_all(s, n, buf, argv, &argc, &used, &err), RESP_ERR, "input %.40s", s);
    cr_expect_str_eq(err, want);
    free(buf);
}

Test(kv_resp, protocol_errors_have_redis_texts, .timeout = TEST_TIMEOUT_S)
{
    expect_error("*x\r\n", 4, "Protocol error: invalid multibulk length");
    expect_error("*3000000000\r\n", 13, "Protocol error: invalid multibulk length");
    expect_error("*01\r\n", 5, "Protocol error: invalid multibulk length");
    expect_error("*1\r\n+3\r\n", 8, "Protocol error: expected '$', got '+'");
    expect_error("*1\r\n$-1\r\n", 9, "Protocol error: invalid bulk length");
    expect_error("*1\r\n$1073741824\r\n", 17, "Protocol error: invalid bulk length");
    expect_error("SET \"abc\r\n", 10, "Protocol error: unbalanced quotes in request");
    expect_error("SET \"abc\"x\r\n", 12, "Protocol error: unbalanced quotes in request");
    /* lines longer than 64 KiB with no end in sight */
    size_t n = RESP_INLINE_MAX + 10;
    char *big = malloc(n);
    memset(big, 'a', n);
    expect_error(big, n, "Protocol error: too big inline request");
    big[0] = '*';
    expect_error(big, n, "Protocol error: too big mbulk count string");
    memcpy(big, "*1\r\n$", 5);
    expect_error(big, n, "Protocol error: too big bulk count string");
    free(big);
}

Test(kv_resp, bulk_limit_is_configurable, .timeout = TEST_TIMEOUT_S)
{
    resp_parser_t p;
    resp_parser_init(&p, 10);
    kv_slice argv[CAP];
    size_t used;
    char ok[] = "*1\r\n$10\r\n0123456789\r\n";
    cr_expect_eq(resp_parse(&p, ok, strlen(ok), argv, CAP, &used), RESP_OK);
    char bad[] = "*1\r\n$11\r\n";
    cr_expect_eq(resp_parse(&p, bad, strlen(bad), argv, CAP, &used), RESP_ERR);
    cr_expect_str_eq(p.err, "Protocol error: invalid bulk length");
}

/* Feed a pipeline one byte at a time, moving the unread bytes to a fresh
 * buffer each time (as a connection may): the same commands come out. */
Test(kv_resp, commands_cut_anywhere_resume_where_they_stopped, .timeout = TEST_TIMEOUT_S)
{
    const char *s = "*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\nPING\r\n*1\r\n$4\r\nPING\r\n"
                    "*3\r\n$4\r\nMSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    size_t n = strlen(s);
    resp_parser_t p;
    resp_parser_init(&p, RESP_DEFAULT_MAX_BULK);
    kv_slice *argv = NULL;
    size_t cap = 0, have = 0, start = 0, cmds = 0;
    char *buf = NULL;
    size_t argcs[4];
    for (size_t fed = 1; fed <= n; fed++) {
        have = fed - start;
        free(buf);
        buf = malloc(have);
        memcpy(buf, s + start, have);
        for (;;) {
            size_t used;
            int rc = resp_parse(&p, buf, have, argv, cap, &used);
            if (rc == RESP_ROOM) {
                argv = realloc(argv, p.need * sizeof(*argv));
                cap = p.need;
                continue;
            }
            cr_assert_neq(rc, RESP_ERR);
            if (rc == RESP_MORE)
                break;
            if (cmds == 0)
                cr_expect(arg_eq(&argv[1], "0123456789"));
            argcs[cmds++] = p.argc;
            memmove(buf, buf + used, have - used);
            start += used;
            have -= used;
        }
    }
    cr_assert_eq(cmds, 4);
    cr_expect(argcs[0] == 2 && argcs[1] == 1 && argcs[2] == 1 && argcs[3] == 3);
    free(buf);
    free(argv);
}

Test(kv_resp, room_asks_for_more_argument_slots, .timeout = TEST_TIMEOUT_S)
{
    char s[] = "*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n";
    resp_parser_t p;
    resp_parser_init(&p, RESP_DEFAULT_MAX_BULK);
    kv_slice small[2];
    size_t used;
    cr_assert_eq(resp_parse(&p, s, strlen(s), small, 2, &used), RESP_ROOM);
    cr_expect_geq(p.need, 3);
    kv_slice big[8];
    memcpy(big, small, sizeof(small));
    cr_assert_eq(resp_parse(&p, s, strlen(s), big, 8, &used), RESP_OK);
    cr_expect(p.argc == 4 && arg_eq(&big[3], "d") && arg_eq(&big[0], "a"));
}

Test(kv_resp, str2ll_is_strict, .timeout = TEST_TIMEOUT_S)
{
    long long v;
    cr_expect(resp_str2ll("0", 1, &v) && v == 0);
    cr_expect(resp_str2ll("-9223372036854775808", 20, &v) && v == INT64_MIN);
    cr_expect(resp_str2ll("9223372036854775807", 19, &v) && v == INT64_MAX);
    cr_expect(!resp_str2ll("9223372036854775808", 19, &v));
    cr_expect(!resp_str2ll("01", 2, &v));
    cr_expect(!resp_str2ll("+1", 2, &v));
    cr_expect(!resp_str2ll(" 1", 2, &v));
    cr_expect(!resp_str2ll("-", 1, &v));
    cr_expect(!resp_str2ll("-0", 2, &v));
    cr_expect(!resp_str2ll("", 0, &v));
}

/* ---- the table ----------------------------------------------------------- */

static kv_ent *mk(unsigned i)
{
    char k[32];
    int n = snprintf(k, sizeof(k), "key:%u", i);
    return kv_ent_new(k, (size_t)n, 0, KV_STRING, false);
}

static kv_ent *find(kv_dict *d, unsigned i, kv_ent ***link)
{
    char k[32];
    int n = snprintf(k, sizeof(k), "key:%u", i);
    return kv_dict_find(d, k, (size_t)n, kv_hash(k, (size_t)n), link);
}

struct seen {
    unsigned char *hits;
};

static void mark(kv_ent *e, void *arg)
{
    struct seen *s = arg;
    unsigned i = (unsigned)strtoul(kv_ent_key(e) + 4, NULL, 10);
    s->hits[i]++;
}

Test(kv_dict, grows_finds_deletes_and_shrinks, .timeout = TEST_TIMEOUT_S)
{
    kv_dict d;
    kv_dict_init(&d);
    const unsigned n = 100000;
    for (unsigned i = 0; i < n; i++) {
        kv_ent *e = mk(i);
        char *k = kv_ent_key(e);
        kv_dict_add(&d, e, kv_hash(k, e->klen));
    }
    cr_assert_eq(d.count, n);
    for (unsigned i = 0; i < n; i++)
        cr_assert_not_null(find(&d, i, NULL), "key %u", i);
    cr_expect_null(find(&d, n, NULL));
    for (unsigned i = 0; i < n; i += 2) {
        kv_ent **l;
        cr_assert_not_null(find(&d, i, &l));
        weft__free(kv_dict_unlink(&d, l));
        kv_dict_maybe_shrink(&d);
    }
    cr_assert_eq(d.count, n / 2);
    while (kv_dict_rehash_step(&d, 100))
        ;
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(find(&d, i, NULL) != NULL, i % 2 == 1, "key %u", i);
    cr_expect_lt(kv_dict_buckets(&d), 4 * (uint64_t)n);
    kv_dict_clear(&d, NULL, NULL);
}

/* SCAN sees every key present for the whole scan, while the table grows
 * under it. */
Test(kv_dict, scan_sees_every_key_across_a_resize, .timeout = TEST_TIMEOUT_S)
{
    kv_dict d;
    kv_dict_init(&d);
    const unsigned base = 5000, more = 20000;
    for (unsigned i = 0; i < base; i++) {
        kv_ent *e = mk(i);
        kv_dict_add(&d, e, kv_hash(kv_ent_key(e), e->klen));
    }
    struct seen s = {calloc(base + more, 1)};
    uint64_t cur = 0;
    unsigned added = base;
    do {
        cur = kv_dict_scan(&d, cur, mark, &s);
        for (int k = 0; k < 10 && added < base + more; k++, added++) {
            kv_ent *e = mk(added);
            kv_dict_add(&d, e, kv_hash(kv_ent_key(e), e->klen));
        }
    } while (cur != 0);
    for (unsigned i = 0; i < base; i++)
        cr_assert_geq(s.hits[i], 1, "key %u missed", i);
    free(s.hits);
    kv_dict_clear(&d, NULL, NULL);
}

Test(kv_dict, random_reaches_every_entry, .timeout = TEST_TIMEOUT_S)
{
    kv_dict d;
    kv_dict_init(&d);
    for (unsigned i = 0; i < 64; i++) {
        kv_ent *e = mk(i);
        kv_dict_add(&d, e, kv_hash(kv_ent_key(e), e->klen));
    }
    unsigned char hit[64] = {0};
    uint64_t st = 12345;
    for (int k = 0; k < 5000; k++) {
        kv_ent *e = kv_dict_random(&d, &st, NULL);
        cr_assert_not_null(e);
        hit[strtoul(kv_ent_key(e) + 4, NULL, 10)] = 1;
    }
    for (unsigned i = 0; i < 64; i++)
        cr_expect(hit[i], "entry %u never drawn", i);
    kv_dict_clear(&d, NULL, NULL);
}

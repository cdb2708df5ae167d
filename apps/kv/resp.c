/*
 * apps/kv/resp.c - the RESP2 request parser (resp.h, docs/kv.md).
 *
 * The texts and the order of the checks follow Redis 7.0's
 * processMultibulkBuffer/processInlineBuffer: a count line is looked for up
 * to its CR (which must not be the last byte read), "*N" with N <= 0 is an
 * empty command, a bulk's trailing CRLF is skipped without being checked,
 * and inline lines are split as sdssplitargs splits them.
 */
#include "resp.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

void resp_parser_init(resp_parser_t *p, uint64_t max_bulk)
{
    memset(p, 0, sizeof(*p));
    p->max_bulk = max_bulk;
    p->left = -1;
}

int resp_str2ll(const char *s, size_t len, long long *out)
{
    size_t i = 0;
    int neg = 0;
    unsigned long long v = 0;

    if (len == 0 || len > 20)
        return 0;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }
    if (s[0] == '-') {
        neg = 1;
        if (++i == len)
            return 0;
    }
    if (s[i] < '1' || s[i] > '9')
        return 0;
    if (len - i <= 18) {
        /* 18 digits cannot overflow: no checks per digit */
        for (; i < len; i++) {
            unsigned d = (unsigned)(s[i] - '0');
            if (d > 9)
                return 0;
            v = v * 10 + d;
        }
        *out = neg ? -(long long)v : (long long)v;
        return 1;
    }
    for (; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9)
            return 0;
        if (v > (ULLONG_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return 0;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return 0;
        *out = (long long)v;
    }
    return 1;
}

static int fail(resp_parser_t *p, const char *msg)
{
    p->err = msg;
    p->left = -1;
    p->pos = 0;
    return RESP_ERR;
}

static int is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char unescape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/* One argument of an inline line from *rp (before end), written at *wp
 * (which never passes *rp). 1, 0 at the end of the line, -1 unbalanced. */
static int inline_arg(char **rp, char *end, char **wp)
{
    char *r = *rp, *w = *wp;
    int inq = 0, insq = 0;

    while (r < end && is_space(*r))
        r++;
    if (r == end)
        return 0;
    for (;;) {
        char c = r < end ? *r : '\0';
        char next = r + 1 < end ? r[1] : '\0';
        if (inq) {
            if (r == end)
                return -1;
            if (c == '\\' && next == 'x' && r + 3 < end && hex_val(r[2]) >= 0 &&
                hex_val(r[3]) >= 0) {
                *w++ = (char)(hex_val(r[2]) * 16 + hex_val(r[3]));
                r += 3;
            } else if (c == '\\' && r + 1 < end) {
                r++;
                *w++ = unescape(*r);
            } else if (c == '"') {
                if (r + 1 < end && !is_space(next))
                    return -1;
                r++;
                break;
            } else {
                *w++ = c;
            }
        } else if (insq) {
            if (r == end)
                return -1;
            if (c == '\\' && next == '\'') {
                r++;
                *w++ = '\'';
            } else if (c == '\'') {
                if (r + 1 < end && !is_space(next))
                    return -1;
                r++;
                break;
            } else {
                *w++ = c;
            }
        } else {
            if (r == end || is_space(c))
                break;
            if (c == '"')
                inq = 1;
            else if (c == '\'')
                insq = 1;
            else
                *w++ = c;
        }
        r++;
    }
    *rp = r;
    *wp = w;
    return 1;
}

static int parse_inline(resp_parser_t *p, char *buf, size_t len, kv_slice *argv, size_t cap,
                        size_t *consumed)
{
    char *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        if (len > RESP_INLINE_MAX)
            return fail(p, "Protocol error: too big inline request");
        return RESP_MORE;
    }
    char *end = nl;
    if (end != buf && end[-1] == '\r')
        end--;
    /* sdssplitargs reads a C string: a NUL ends the line. */
    char *nul = memchr(buf, '\0', (size_t)(end - buf));
    if (nul != NULL)
        end = nul;
    /* Count first (unquoting is in place, so a second pass cannot rerun
     * it): the arguments of a line are at most half its length + 1. */
    size_t most = (size_t)(end - buf) / 2 + 1;
    if (cap < most) {
        p->need = most;
        return RESP_ROOM;
    }
    char *r = buf, *w = buf;
    size_t argc = 0;
    for (;;) {
        char *start = w;
        int rc = inline_arg(&r, end, &w);
        if (rc < 0)
            return fail(p, "Protocol error: unbalanced quotes in request");
        if (rc == 0)
            break;
        argv[argc].p = start;
        argv[argc].len = (size_t)(w - start);
        argc++;
    }
    p->argc = argc;
    *consumed = (size_t)(nl - buf) + 1;
    return RESP_OK;
}

/* The line at b (rem bytes) up to its CR: 1 with *linelen, 0 = not all
 * there yet. */
static int find_line(const char *b, size_t rem, size_t *linelen)
{
    const char *cr = memchr(b, '\r', rem);
    if (cr == NULL || (size_t)(cr - b) + 2 > rem)
        return 0;
    *linelen = (size_t)(cr - b);
    return 1;
}

int resp_parse(resp_parser_t *p, char *buf, size_t len, kv_slice *argv, size_t cap,
               size_t *consumed)
{
    long long ll;
    size_t line;

    *consumed = 0;
    if (p->left < 0) {
        p->argc = 0;
        if (len == 0)
            return RESP_MORE;
        if (buf[0] != '*')
            return parse_inline(p, buf, len, argv, cap, consumed);
        if (!find_line(buf, len, &line)) {
            if (memchr(buf, '\r', len) == NULL && len > RESP_INLINE_MAX)
                return fail(p, "Protocol error: too big mbulk count string");
            return RESP_MORE;
        }
        if (!resp_str2ll(buf + 1, line - 1, &ll) || ll > INT_MAX)
            return fail(p, "Protocol error: invalid multibulk length");
        if (ll <= 0) {
            *consumed = line + 2;
            return RESP_OK;
        }
        p->left = ll;
        p->pos = line + 2;
    }
    while (p->left > 0) {
        if (p->argc == cap) {
            size_t want = cap < 8 ? 16 : cap * 2;
            size_t all = p->argc + (size_t)p->left;
            p->need = want < all ? want : all;
            return RESP_ROOM;
        }
        const char *b = buf + p->pos;
        size_t rem = len - p->pos;
        /* the common header, "$<1-9 digits>\r\n" with its bytes here: read
         * in one pass; anything else takes the exact path below */
        if (rem > 3 && b[0] == '$' && b[1] >= '1' && b[1] <= '9') {
            size_t i = 1;
            uint64_t v = 0;
            while (i < rem && i < 10 && b[i] >= '0' && b[i] <= '9')
                v = v * 10 + (uint64_t)(b[i++] - '0');
            if (i + 1 < rem && b[i] == '\r' && v <= p->max_bulk) {
                if (rem - (i + 2) < v + 2)
                    return RESP_MORE;
                argv[p->argc].p = (const char *)(uintptr_t)(p->pos + i + 2);
                argv[p->argc].len = (size_t)v;
                p->argc++;
                p->left--;
                p->pos += i + 2 + (size_t)v + 2;
                continue;
            }
        }
        if (!find_line(b, rem, &line)) {
            if (memchr(b, '\r', rem) == NULL && rem > RESP_INLINE_MAX)
                return fail(p, "Protocol error: too big bulk count string");
            return RESP_MORE;
        }
        if (b[0] != '$') {
            snprintf(p->errbuf, sizeof(p->errbuf), "Protocol error: expected '$', got '%c'", b[0]);
            return fail(p, p->errbuf);
        }
        if (!resp_str2ll(b + 1, line - 1, &ll) || ll < 0 || (uint64_t)ll > p->max_bulk)
            return fail(p, "Protocol error: invalid bulk length");
        if (rem - (line + 2) < (size_t)ll + 2)
            return RESP_MORE;
        /* an offset until the command is complete (buf may move) */
        argv[p->argc].p = (const char *)(uintptr_t)(p->pos + line + 2);
        argv[p->argc].len = (size_t)ll;
        p->argc++;
        p->left--;
        p->pos += line + 2 + (size_t)ll + 2;
    }
    for (size_t i = 0; i < p->argc; i++)
        argv[i].p = buf + (uintptr_t)argv[i].p;
    *consumed = p->pos;
    p->left = -1;
    p->pos = 0;
    return RESP_OK;
}

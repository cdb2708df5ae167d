/*
 * apps/kv/reply.c - RESP2 reply writers (reply.h).
 */
#include "reply.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "resp.h"

char *kv_buf_grow(kv_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return b->p + b->len;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    char *p = weft__realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return NULL;
    }
    b->p = p;
    b->cap = cap;
    return p + b->len;
}

void kv_buf_free(kv_buf *b)
{
    weft__free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Digits of v into the end of tmp (24 bytes); the start. */
static char *fmt_ll(char *end, long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    char *p = end;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return p;
}

void kv_reply_hdr(kv_buf *b, char prefix, long long n)
{
    char tmp[32];
    char *end = tmp + sizeof(tmp) - 2;
    end[0] = '\r';
    end[1] = '\n';
    char *p = fmt_ll(end, n);
    *--p = prefix;
    kv_buf_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void kv_reply_int(kv_buf *b, long long v)
{
    kv_reply_hdr(b, ':', v);
}

void kv_reply_bulk(kv_buf *b, const void *s, size_t n)
{
    if (b->cap - b->len < n + 32 && kv_buf_grow(b, n + 32) == NULL)
        return;
    kv_reply_hdr(b, '$', (long long)n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
}

void kv_reply_null(kv_buf *b)
{
    KV_LIT(b, "$-1\r\n");
}

void kv_reply_null_array(kv_buf *b)
{
    KV_LIT(b, "*-1\r\n");
}

void kv_reply_ok(kv_buf *b)
{
    KV_LIT(b, "+OK\r\n");
}

void kv_reply_status(kv_buf *b, const char *s)
{
    kv_buf_put(b, "+", 1);
    kv_buf_put(b, s, strlen(s));
    kv_buf_put(b, "\r\n", 2);
}

void kv_reply_err(kv_buf *b, const char *msg)
{
    kv_buf_put(b, "-", 1);
    kv_buf_put(b, msg, strlen(msg));
    kv_buf_put(b, "\r\n", 2);
}

void kv_reply_errf(kv_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    /* no CR/LF inside an error line (Redis maps them to spaces) */
    for (char *c = tmp; *c; c++)
        if (*c == '\r' || *c == '\n')
            *c = ' ';
    kv_reply_err(b, tmp);
}

int kv_fmt_double(char *out, double d)
{
    if (isinf(d))
        return snprintf(out, 32, "%s", d > 0 ? "inf" : "-inf");
    return snprintf(out, 32, "%.17g", d);
}

void kv_reply_double(kv_buf *b, double d)
{
    char tmp[32];
    int n = kv_fmt_double(tmp, d);
    kv_reply_bulk(b, tmp, (size_t)n);
}

/* The number after the type byte of the line at p (n bytes there). */
long long kv_reply_num(const char *p, size_t n)
{
    const char *cr = memchr(p, '\r', n);
    long long v = 0;
    if (cr == NULL || !resp_str2ll(p + 1, (size_t)(cr - p - 1), &v))
        return 0;
    return v;
}

size_t kv_reply_len(const char *p, size_t avail)
{
    const char *cr = memchr(p, '\r', avail);
    if (cr == NULL)
        return avail;
    size_t n = (size_t)(cr - p) + 2;
    long long v = kv_reply_num(p, avail);
    switch (p[0]) {
    case '$':
        return v < 0 ? n : n + (size_t)v + 2;
    case '*':
        for (long long i = 0; i < v && n < avail; i++)
            n += kv_reply_len(p + n, avail - n);
        return n;
    default:
        return n;
    }
}

/*
 * apps/kv/reply.h - RESP2 replies appended to a growable buffer.
 *
 * A connection's replies for one read go into one buffer and leave in one
 * write (docs/kv.md, "Pipelining"); a shard's replies to another loop's
 * commands go into the batch's buffer. The buffer keeps its memory between
 * batches, so the steady state does not allocate. A failed growth sets
 * oom: the batch then answers with an error instead of a torn reply.
 */
#ifndef WEFT_KV_REPLY_H
#define WEFT_KV_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct kv_buf {
    char *p;
    size_t len, cap;
    bool oom;
} kv_buf;

/* Make room for n more bytes: a pointer to them, or NULL (oom set). */
char *kv_buf_grow(kv_buf *b, size_t n);
void kv_buf_free(kv_buf *b);

static inline void kv_buf_put(kv_buf *b, const void *s, size_t n)
{
    if (n == 0)
        return;
    if (b->cap - b->len < n && kv_buf_grow(b, n) == NULL)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define KV_LIT(b, s) kv_buf_put((b), (s), sizeof(s) - 1)

void kv_reply_int(kv_buf *b, long long v);
/* "*N" / "$N" / ":N" style header: the prefix byte and a count. */
void kv_reply_hdr(kv_buf *b, char prefix, long long n);
void kv_reply_bulk(kv_buf *b, const void *s, size_t n);
void kv_reply_null(kv_buf *b);       /* $-1 */
void kv_reply_null_array(kv_buf *b); /* *-1 */
void kv_reply_ok(kv_buf *b);
/* "-<msg>\r\n": msg carries its own code ("ERR ...", "WRONGTYPE ..."). */
void kv_reply_err(kv_buf *b, const char *msg);
void kv_reply_errf(kv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kv_reply_status(kv_buf *b, const char *s);
/* A double as Redis 7.0 writes it (%.17g, inf/-inf) in a bulk string. */
void kv_reply_double(kv_buf *b, double d);
/* Format a double as Redis does into out (>= 32 bytes); its length. */
int kv_fmt_double(char *out, double d);
/* The length of the (complete) reply that starts at p, avail bytes
 * there: for merging per-shard parts. */
size_t kv_reply_len(const char *p, size_t avail);
/* The number of a ":N" / "*N" / "$N" line at p (0 if none). */
long long kv_reply_num(const char *p, size_t avail);

#endif /* WEFT_KV_REPLY_H */

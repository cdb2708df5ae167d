/*
 * apps/kv/resp.h - the RESP2 request parser of weft-kv (docs/kv.md).
 *
 * Pure C, no I/O and no allocation, so that the fuzz target
 * (apps/kv/fuzz/) builds it alone. It reads one command at a time from the
 * unconsumed bytes of a connection, in either form Redis accepts:
 * multibulk ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") and inline ("GET k\r\n",
 * with redis-cli's quoting). A multibulk command that arrives in pieces is
 * resumed where it stopped (the state is kept in resp_parser_t), so a
 * command of a million arguments read 64 KiB at a time costs O(bytes),
 * not O(bytes^2). Errors carry Redis 7.0's exact texts (src/networking.c),
 * after which the connection is to be closed, as Redis does.
 */
#ifndef WEFT_KV_RESP_H
#define WEFT_KV_RESP_H

#include <stddef.h>
#include <stdint.h>

/* One argument: bytes inside the caller's buffer (not NUL-terminated). */
typedef struct kv_slice {
    const char *p;
    size_t len;
} kv_slice;

/* Redis's limits: an inline line, or a count line without its CR, longer
 * than this is an error (PROTO_INLINE_MAX_SIZE). */
#define RESP_INLINE_MAX (64 * 1024)
/* proto-max-bulk-len's default, 512 MB. */
#define RESP_DEFAULT_MAX_BULK (512ull * 1024 * 1024)

enum {
    RESP_ERR = -1, /* protocol error: reply "-ERR <p->err>" and close */
    RESP_MORE = 0, /* the command is not complete: read more, call again */
    RESP_OK = 1,   /* one command: p->argc arguments, *consumed bytes */
    RESP_ROOM = 2, /* argv is too small: grow it to p->need (keeping its
                    * contents) and call again with the same bytes */
};

typedef struct resp_parser {
    uint64_t max_bulk; /* proto-max-bulk-len */
    /* state of a multibulk command in progress */
    int64_t left;    /* arguments still to read; -1 = count line not read */
    size_t pos;      /* bytes of the command read so far */
    size_t argc;     /* arguments read so far (then: the command's count) */
    size_t need;     /* RESP_ROOM: the argv capacity needed */
    const char *err; /* RESP_ERR: the message after "ERR " */
    char errbuf[48];
} resp_parser_t;

void resp_parser_init(resp_parser_t *p, uint64_t max_bulk);
/* Parse the command that starts at buf[0] (len bytes are there). Inline
 * commands are unquoted in place (buf is written). Arguments go to
 * argv[0..p->argc), pointing into buf; give the same argv again after
 * RESP_MORE/RESP_ROOM (its first p->argc entries are kept, as offsets, and
 * made pointers into the new buf when the command completes - so buf may
 * move between calls, as long as the command's bytes stay at its start).
 * RESP_OK with argc 0 is an empty command ("*0", a blank line): skip it. */
int resp_parse(resp_parser_t *p, char *buf, size_t len, kv_slice *argv, size_t cap,
               size_t *consumed);

/* Redis's string2ll: a strict decimal (no spaces, no '+', no leading
 * zeros), in range. 1 on success. */
int resp_str2ll(const char *s, size_t len, long long *out);

#endif /* WEFT_KV_RESP_H */

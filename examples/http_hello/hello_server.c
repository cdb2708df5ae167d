/*
 * examples/http_hello/hello_server.c - the "hello" HTTP/1.1 handler
 * (hello_server.h). Only what keep-alive needs is parsed: the request
 * line's version, Connection and Content-Length (a body is skipped).
 */
#include "examples/http_hello/hello_server.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define IN_CAP  8192
#define OUT_CAP 8192

static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                         "Content-Type: text/plain\r\n\r\nhello";
static const char OK_CLOSE[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                               "Content-Type: text/plain\r\nConnection: close\r\n\r\nhello";
static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n";

enum parse {
    NEED_MORE,
    GOT_ONE,
    BAD_REQUEST
};

struct request {
    size_t len; /* head and body */
    bool close;
};

/* The value of header `name` (lower case, with the colon) in the line
 * [p, end), or NULL. */
static const char *header_value(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(end - p) < n || strncasecmp(p, name, n) != 0)
        return NULL;
    p += n;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* One request from [buf, buf + n). */
static enum parse parse_one(const char *buf, size_t n, struct request *r)
{
    const char *head_end = memmem(buf, n, "\r\n\r\n", 4);
    if (head_end == NULL)
        return n >= IN_CAP ? BAD_REQUEST : NEED_MORE;
    const char *end = head_end + 2; /* through the last header's CRLF */
    const char *eol = memchr(buf, '\r', (size_t)(end - buf));
    /* "GET / HTTP/1.1": a method, a target, a version. */
    if (eol == NULL || eol - buf < 14 || memcmp(eol - 8, "HTTP/1.", 7) != 0 ||
        memchr(buf, ' ', (size_t)(eol - buf)) == NULL)
        return BAD_REQUEST;
    bool http10 = eol[-1] == '0';
    bool keep_alive = false;
    r->close = false;
    size_t body = 0;
    for (const char *p = eol + 2; p < end;) {
        const char *q = memchr(p, '\r', (size_t)(end - p));
        if (q == NULL || q[1] != '\n')
            return BAD_REQUEST;
        const char *v;
        if ((v = header_value(p, q, "connection:")) != NULL) {
            if (q - v >= 5 && strncasecmp(v, "close", 5) == 0)
                r->close = true;
            else if (q - v >= 10 && strncasecmp(v, "keep-alive", 10) == 0)
                keep_alive = true;
        } else if ((v = header_value(p, q, "content-length:")) != NULL) {
            body = 0;
            for (; v < q && *v >= '0' && *v <= '9'; v++) {
                body = body * 10 + (size_t)(*v - '0');
                if (body > IN_CAP)
                    return BAD_REQUEST; /* this server takes no uploads */
            }
        }
        p = q + 2;
    }
    if (http10 && !keep_alive)
        r->close = true;
    size_t len = (size_t)(head_end + 4 - buf) + body;
    if (len > n)
        return len > IN_CAP ? BAD_REQUEST : NEED_MORE;
    r->len = len;
    return GOT_ONE;
}

int hello_http_handler(weft_stream_t *s, void *arg)
{
    (void)arg;
    char in[IN_CAP];
    char out[OUT_CAP];
    size_t have = 0;
    for (;;) {
        size_t got;
        int rc = weft_stream_read(s, in + have, sizeof in - have, &got);
        if (rc == UV_EOF)
            return 0;
        if (rc != 0)
            return rc;
        have += got;
        size_t off = 0, olen = 0;
        bool close = false;
        while (!close) {
            struct request r;
            enum parse p = parse_one(in + off, have - off, &r);
            if (p == NEED_MORE)
                break;
            const char *reply = p == BAD_REQUEST ? BAD : r.close ? OK_CLOSE : OK;
            size_t rlen = p == BAD_REQUEST ? sizeof BAD - 1
                          : r.close        ? sizeof OK_CLOSE - 1
                                           : sizeof OK - 1;
            if (olen + rlen > sizeof out) { /* a long pipeline: flush a batch */
                rc = weft_stream_write(s, out, olen);
                if (rc != 0)
                    return rc;
                olen = 0;
            }
            memcpy(out + olen, reply, rlen);
            olen += rlen;
            close = p == BAD_REQUEST || r.close;
            if (p == GOT_ONE)
                off += r.len;
        }
        if (olen > 0) {
            rc = weft_stream_write(s, out, olen);
            if (rc == 0)
                rc = weft_stream_drain(s);
            if (rc != 0)
                return rc;
        }
        if (close)
            return 0; /* the server flushes and closes */
        memmove(in, in + off, have - off);
        have -= off;
    }
}

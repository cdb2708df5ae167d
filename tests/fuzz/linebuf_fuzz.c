/*
 * tests/fuzz/linebuf_fuzz.c - libFuzzer target for a stream's read-buffer
 * logic (io/linebuf.h: compaction, consume, when to read, read_until's
 * decision), run by tools/fuzz.sh. The input drives a simulated stream:
 * the "socket" delivers chunks into the room the buffer offers, readers
 * read n bytes or read_until a delimiter with a cap, the peer ends the
 * stream. A plain model (the readable bytes as one array) says what every
 * call must return; any difference, or a buffer index out of bounds, aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linebuf.h"

#define CHECK(c)     \
    do {             \
        if (!(c))    \
            abort(); \
    } while (0)

struct input {
    const uint8_t *p;
    size_t n;
};

static int next(struct input *in)
{
    if (in->n == 0)
        return -1;
    in->n--;
    return *in->p++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    int b = next(&in);
    if (b < 0)
        return 0;
    size_t cap = 1 + (size_t)b % 64;
    char buf[64], model[64], out[128];
    size_t start = 0, end = 0, mlen = 0;
    bool eof = false;
    int op;
    while ((op = next(&in)) >= 0) {
        switch (op % 4) {
        case 0: { /* the socket delivers up to n bytes, if reading */
            int n = next(&in);
            if (n < 0 || eof || !weft__lb_should_read(end - start, cap, true))
                break;
            size_t room;
            char *dst = weft__lb_room(buf, cap, &start, &end, &room);
            CHECK(room > 0 && dst == buf + end && end + room == cap);
            size_t k = (size_t)n % 80;
            if (k > room)
                k = room;
            for (size_t i = 0; i < k; i++) {
                int c = next(&in);
                dst[i] = (char)(c < 0 ? '\n' : c);
            }
            memcpy(model + mlen, dst, k);
            end += k;
            mlen += k;
            break;
        }
        case 1: { /* read(n): what is there, up to n */
            int n = next(&in);
            size_t want = 1 + (size_t)(n < 0 ? 0 : n) % 70;
            size_t used = end - start;
            if (used == 0)
                break; /* would wait */
            size_t k = used < want ? used : want;
            CHECK(memcmp(buf + start, model, k) == 0);
            weft__lb_consume(&start, &end, k);
            memmove(model, model + k, mlen - k);
            mlen -= k;
            break;
        }
        case 2: { /* read_until(delim, cap2) */
            int d = next(&in), c = next(&in);
            if (d < 0 || c < 0)
                break;
            size_t cap2 = 1 + (size_t)c % 80;
            size_t k;
            int r = weft__lb_until(buf + start, end - start, cap, cap2, d, eof, &k);
            size_t limit = cap2 < cap ? cap2 : cap;
            size_t look = mlen < limit ? mlen : limit;
            const char *p = memchr(model, (unsigned char)d, look);
            if (p != NULL) {
                CHECK(r == WEFT__LB_FOUND && k == (size_t)(p - model) + 1);
            } else if (mlen >= limit) {
                CHECK(r == WEFT__LB_LIMIT && k == 0);
            } else if (eof) {
                CHECK(r == (mlen == 0 ? WEFT__LB_EOF : WEFT__LB_PARTIAL) && k == mlen);
            } else {
                CHECK(r == WEFT__LB_MORE && k == 0);
            }
            if (r == WEFT__LB_FOUND || r == WEFT__LB_PARTIAL) {
                CHECK(k <= cap2 && k <= sizeof out);
                memcpy(out, buf + start, k);
                CHECK(memcmp(out, model, k) == 0);
                weft__lb_consume(&start, &end, k);
                memmove(model, model + k, mlen - k);
                mlen -= k;
            }
            break;
        }
        default: /* the peer ends the stream */
            eof = true;
            break;
        }
        CHECK(start <= end && end <= cap);
        CHECK(end - start == mlen);
        CHECK(memcmp(buf + start, model, mlen) == 0);
        /* Backpressure: a full buffer is never read into. */
        if (mlen == cap)
            CHECK(!weft__lb_should_read(mlen, cap, true));
    }
    return 0;
}

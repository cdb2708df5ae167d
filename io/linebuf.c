/*
 * io/linebuf.c - a stream's read-buffer logic, free of libuv (io/linebuf.h).
 */
#include "linebuf.h"

#include <string.h>

char *weft__lb_room(char *buf, size_t cap, size_t *start, size_t *end, size_t *room)
{
    size_t used = *end - *start;
    if (used == 0) {
        *start = *end = 0;
    } else if (*start > 0 && cap - *end < cap / 2) {
        memmove(buf, buf + *start, used);
        *start = 0;
        *end = used;
    }
    *room = cap - *end;
    return buf + *end;
}

void weft__lb_consume(size_t *start, size_t *end, size_t n)
{
    *start += n;
    if (*start == *end)
        *start = *end = 0;
}

bool weft__lb_should_read(size_t used, size_t cap, bool need)
{
    if (used >= cap)
        return false;
    return need || used <= cap / 2;
}

int weft__lb_until(const char *base, size_t used, size_t bufsize, size_t cap, int delim, bool eof,
                   size_t *k)
{
    size_t limit = cap < bufsize ? cap : bufsize;
    size_t look = used < limit ? used : limit;
    const char *p = look > 0 ? memchr(base, (unsigned char)delim, look) : NULL;
    *k = 0;
    if (p != NULL) {
        *k = (size_t)(p - base) + 1;
        return WEFT__LB_FOUND;
    }
    if (used >= limit)
        return WEFT__LB_LIMIT;
    if (eof) {
        *k = used;
        return used == 0 ? WEFT__LB_EOF : WEFT__LB_PARTIAL;
    }
    return WEFT__LB_MORE;
}

/*
 * io/linebuf.h - the pure buffer logic of a stream's read side: where
 * libuv may write next (and when to compact), taking bytes, when to read
 * from the socket, and read_until's decision. No libuv, no tasks: io/
 * stream.c calls it, and tools/fuzz.sh fuzzes it (io/linebuf_fuzz.c)
 * against a model.
 *
 * The buffer is buf[0, cap); bytes [start, end) are readable.
 */
#ifndef WEFT_IO_LINEBUF_H
#define WEFT_IO_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Where the next bytes go: *room (free bytes after them, 0 when full).
 * Compacts (moves the readable bytes to the front) when it is empty, or
 * when less than half the buffer is free at the end and the front has
 * room. */
char *weft__lb_room(char *buf, size_t cap, size_t *start, size_t *end, size_t *room);
/* n readable bytes were taken (n <= end - start). */
void weft__lb_consume(size_t *start, size_t *end, size_t n);
/* Read from the socket now? Never when full; when `need` (a reader waits
 * for more) whenever there is room; otherwise once drained to half. */
bool weft__lb_should_read(size_t used, size_t cap, bool need);

/* read_until(delim) over the `used` readable bytes at base, with the
 * caller's cap and the buffer's size: */
enum {
    WEFT__LB_FOUND,   /* *k bytes, the delimiter included, are the line */
    WEFT__LB_LIMIT,   /* min(cap, bufsize) bytes and no delimiter */
    WEFT__LB_PARTIAL, /* at the end of the stream: the *k bytes left */
    WEFT__LB_EOF,     /* at the end of the stream, nothing left */
    WEFT__LB_MORE,    /* wait for more bytes */
};
int weft__lb_until(const char *base, size_t used, size_t bufsize, size_t cap, int delim, bool eof,
                   size_t *k);

#endif /* WEFT_IO_LINEBUF_H */

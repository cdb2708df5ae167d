/*
 * io/io_int.h - what io/'s files share that is not public: pipe streams
 * made by io/stream.c for the unix server (io/pipe.c) and subprocesses
 * (io/process.c), and the deadline arithmetic every wait uses.
 */
#ifndef WEFT_IO_INT_H
#define WEFT_IO_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/stream.h>

/* 0 if opts (NULL = defaults) are valid for a stream, else UV_EINVAL. */
int weft__stream_check_opts(const weft_stream_opts_t *opts);
/* A stream over a fresh uv_pipe_t of loop (not open, not connected), or
 * NULL with *err (UV_EINVAL for bad opts, UV_ENOMEM). Its handle is
 * weft_stream_uv(s); weft__stream_discard closes it if it goes unused. */
weft_stream_t *weft__stream_pipe_new(weft_loop_t *loop, const weft_stream_opts_t *opts, int *err);
/* The pipe is open (connected, accepted, opened on an fd, or spawned):
 * start reading eagerly, or (readable false: a write-only end) mark it so
 * that reads return UV_EBADF. 0 or uv_read_start's error. */
int weft__stream_pipe_start(weft_stream_t *s, bool readable);
/* Close a stream nobody was given (uv_close; freed in its callback). */
void weft__stream_discard(weft_stream_t *s);

/* timeout_ms from now as a deadline on the loop's clock (WEFT_FOREVER
 * stays), and the time left until one. */
static inline uint64_t weft__io_deadline(uint64_t timeout_ms)
{
    if (timeout_ms == WEFT_FOREVER)
        return WEFT_FOREVER;
    uint64_t now = weft_loop_now();
    return timeout_ms > WEFT_FOREVER - now - 1 ? WEFT_FOREVER : now + timeout_ms;
}

static inline uint64_t weft__io_remaining(uint64_t deadline)
{
    if (deadline == WEFT_FOREVER)
        return WEFT_FOREVER;
    uint64_t now = weft_loop_now();
    return deadline > now ? deadline - now : 0;
}

#endif /* WEFT_IO_INT_H */

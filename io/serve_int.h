/*
 * io/serve_int.h - what the servers (io/serve.c) need of the streams
 * (io/stream.c): a stream made from a socket accepted by hand, and the
 * byte counters a server shares with its streams.
 */
#ifndef WEFT_IO_SERVE_INT_H
#define WEFT_IO_SERVE_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <weft/stream.h>

/* Bytes a server's streams on one loop read and wrote. Written by that
 * loop's thread only (a relaxed load and store: no locked instruction on
 * the hot path), read by any thread (weft_server_stats). */
typedef struct weft__io_counters {
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
} weft__io_counters_t;

/* Add n to a counter that only the calling thread writes. */
static inline void weft__count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* 0 when the stream options are valid, else UV_EINVAL. */
int weft__tcp_opts_check(const weft_stream_opts_t *opts);

/* A stream of `loop` (its thread) over fd, a connected, non-blocking TCP
 * socket (accept4), with TCP_NODELAY/keepalive per opts and reading
 * started; ctr (may be NULL) counts its bytes. fd is the stream's from
 * now on: on an error it is closed. 0 with *out, or the error. */
int weft__tcp_stream_adopt(weft_loop_t *loop, int fd, const weft_stream_opts_t *opts,
                           weft__io_counters_t *ctr, weft_stream_t **out);

#endif /* WEFT_IO_SERVE_INT_H */

/*
 * examples/echo/echo_server.h - a TCP echo handler and an echo load
 * generator on weft's own client streams: examples/echo and the echo
 * benchmark.
 */
#ifndef WEFT_EXAMPLES_ECHO_SERVER_H
#define WEFT_EXAMPLES_ECHO_SERVER_H

#include <stdint.h>
#include <weft/weft.h>

/* A weft_stream_handler_fn (arg unused): writes back what it reads until
 * the peer's EOF, draining when the peer does not keep up. */
int echo_handler(weft_stream_t *s, void *arg);

typedef struct echo_load {
    const char *host;
    int port;
    unsigned conns;       /* connections, each a task */
    size_t msg_size;      /* bytes per message (<= 4096) */
    uint64_t duration_ms; /* send until then (0: use max_msgs only) */
    uint64_t max_msgs;    /* per connection; 0 = no limit */
    /* out: */
    uint64_t round_trips; /* messages whose full echo came back, checked */
    uint64_t elapsed_ns;
    int error; /* the first failure (connect, read, a wrong echo) */
} echo_load_t;

/* In a task: open `conns` connections, and on each send a message (its
 * bytes depend on the connection and the count), wait for its whole echo,
 * compare, repeat, until duration_ms passed or max_msgs were sent; then
 * close. Fills the out fields; returns `error`. */
int echo_load_run(echo_load_t *load);

#endif

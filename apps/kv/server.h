/*
 * apps/kv/server.h - weft-kv's connections, sharding and command line
 * (docs/kv.md). kv_main runs the server as redis-server would.
 */
#ifndef WEFT_KV_SERVER_H
#define WEFT_KV_SERVER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kv_opts {
    int port;         /* 0 = pick one, printed */
    const char *bind; /* default 127.0.0.1 */
    unsigned loops;   /* 0 = the allowed CPUs */
    bool appendonly;
    int appendfsync; /* AOF_FSYNC_* */
    const char *dir;
    unsigned maxclients;
    uint64_t max_bulk;        /* proto-max-bulk-len */
    uint64_t query_limit;     /* client-query-buffer-limit */
    uint64_t aof_rewrite_min; /* auto-aof-rewrite-min-size (64 MiB) */
    bool pin;                 /* --pin yes: loop i on CPU i (weft's default) */
    int idle_poll_us;         /* --idle-poll-us: the loops' idle poll (0 = weft's 50 us) */
} kv_opts;

/* Parse redis-server style arguments ("--port 0 --loops 2", "port 0");
 * 0, or -1 with a message on stderr. */
int kv_parse_args(int argc, char **argv, kv_opts *o);
/* Run until SHUTDOWN, SIGINT or SIGTERM; the exit status. */
int kv_main(const kv_opts *o);

void kv_cmd_index_init(void);

#endif /* WEFT_KV_SERVER_H */

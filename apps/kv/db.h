/*
 * apps/kv/db.h - one shard's keyspace and the commands that run on it
 * (docs/kv.md).
 *
 * A shard is owned by one loop and touched only on its thread: commands
 * on its keys come from its own connections directly and from other loops'
 * connections in batches over the mesh (server.c). Its counters are read
 * by INFO on any loop: each has one writer (the owner) and is read with
 * relaxed loads.
 */
#ifndef WEFT_KV_DB_H
#define WEFT_KV_DB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dict.h"
#include "reply.h"
#include "resp.h"

struct kv_conn;
struct kv_aof;

typedef struct kv_stats {
    _Atomic uint64_t keys, expires; /* now */
    _Atomic uint64_t ops;           /* commands run on this shard */
    _Atomic uint64_t expired;       /* keys removed by expiry */
    _Atomic uint64_t hits, misses;  /* keyspace reads */
    _Atomic uint64_t conns;         /* connections of this loop now */
    _Atomic uint64_t conns_total;   /* accepted so far */
    _Atomic uint64_t hops_out;      /* batches this loop's connections sent */
    _Atomic uint64_t hops_in;       /* batches this shard ran for others */
    _Atomic uint64_t net_in, net_out;
} kv_stats;

typedef struct kv_db {
    kv_dict d;
    uint64_t nexp;       /* keys with a TTL */
    uint64_t exp_cursor; /* active expiry's scan cursor */
    uint64_t rnd;        /* xorshift state (SPOP, random levels) */
    unsigned idx;
    struct kv_aof *aof; /* NULL unless --appendonly yes */
    kv_stats st;
} kv_db;

/* What a command runs with. */
typedef struct kv_ctx {
    kv_db *db;
    kv_buf *out;
    struct kv_conn *conn; /* the client (local commands only) */
    bool part;            /* a shard's part of a split command */
    bool loading;         /* replaying the append-only file */
    int64_t now;          /* unix ms, read once per batch */
    const kv_slice *hkey; /* a key whose hash is known already: h */
    uint64_t h;
} kv_ctx;

typedef void kv_cmd_fn(kv_ctx *c, int argc, kv_slice *argv);

/* How a command finds its shard (server.c routes). */
enum {
    ROUTE_LOCAL, /* no key: runs on the connection's loop */
    ROUTE_KEY,   /* argv[1] is the key */
    ROUTE_MULTI, /* keys at 1, 1+step, ...: split per shard, merged */
    ROUTE_ALL,   /* every shard runs it, replies merged */
    ROUTE_SCAN,  /* the cursor names the shard */
};
/* How split replies merge. */
enum {
    MERGE_SUM,    /* integers added (DEL, EXISTS, DBSIZE) */
    MERGE_OK,     /* +OK once (MSET, FLUSHDB) */
    MERGE_ORDER,  /* one reply per key, in the request's key order (MGET) */
    MERGE_CONCAT, /* arrays concatenated (KEYS) */
};

typedef struct kv_cmd {
    const char *name; /* lower case */
    int arity;        /* Redis's: N exact, -N at least N */
    uint8_t route, merge, step;
    bool write; /* logged to the append-only file */
    kv_cmd_fn *fn;
} kv_cmd;

/* The command named by s (any case), or NULL. */
const kv_cmd *kv_cmd_lookup(const char *s, size_t len);
extern const kv_cmd kv_cmd_table[];
extern const unsigned kv_cmd_count;

void kv_db_init(kv_db *db, unsigned idx, uint64_t seed);
void kv_db_free(kv_db *db);
/* Active expiry and background rehash, for at most budget_us. */
void kv_db_cron(kv_db *db, uint64_t budget_us);
/* Unix time in ms. */
int64_t kv_now_ms(void);

/* Redis's stringmatchlen (glob: * ? [a-z] [^x] \x), with nocase. */
bool kv_glob(const char *pat, size_t plen, const char *s, size_t slen, bool nocase);

/* Run one command (argument count already checked) with the AOF hook. */
void kv_exec(kv_ctx *c, const kv_cmd *cmd, int argc, kv_slice *argv);

/* server.c: the local commands that need the connection or the server. */
kv_cmd_fn kv_cmd_client, kv_cmd_info, kv_cmd_quit, kv_cmd_shutdown, kv_cmd_config;
/* the shard of a key, given the number of shards */
static inline unsigned kv_shard_of(uint64_t h, unsigned n)
{
    return (unsigned)(((h >> 32) * n) >> 32);
}
extern unsigned kv_nshards;

#endif /* WEFT_KV_DB_H */

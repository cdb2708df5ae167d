/*
 * apps/kv/server.c - weft-kv: connections on every loop, sharding over
 * the mesh, the server-level commands, start and stop (docs/kv.md).
 *
 * Every loop owns one shard (its kv_db) and one listener on the shared
 * port (SO_REUSEPORT). A connection's task reads what is there, parses
 * every complete command, and sorts them into one batch per shard: the
 * shard of its key, or the connection's own loop for keyless commands,
 * and a part for each shard a multi-key command touches. The batches for
 * other shards cross the mesh as one weft_call_on each (so a pipeline of
 * 16 costs at most one hop per shard it touches), the own shard's batch
 * runs inline, and when every batch is back the replies are put together
 * in request order and leave in one write. A shard runs a batch's
 * commands in order, so a connection's commands on one key keep their
 * order, and a command that spans shards (MSET, DEL, FLUSHDB...) is
 * ordered with each shard's share of the connection's other commands.
 */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>
#include <weft/weft.h>

#include "aof.h"
#include "core/alloc.h"
#include "core/ext.h"
#include "db.h"

unsigned kv_nshards;
static kv_db *g_dbs;
static weft_loop_t **g_loops;
static weft_server_t **g_servers;
static weft_task_t **g_crons;
static kv_opts g_o;
static int g_port;
static int64_t g_start_ms;
static weft_future_t *g_stop; /* loop 0's: completed by SHUTDOWN */

/* ---- the client registry (CLIENT LIST / INFO clients) -------------------- */

/* Connections register once, at connect, under a mutex; CLIENT LIST reads
 * it. Not on the per-command path: the per-command fields are atomics
 * written by the connection's own loop. */
typedef struct kv_client {
    struct weft__list link;
    uint64_t id;
    unsigned loop;
    char addr[64], laddr[64];
    char *name; /* under g_clients_mu */
    int64_t created_ms;
    _Atomic int64_t last_ms;
    _Atomic(const char *) last_cmd;
} kv_client;

static pthread_mutex_t g_clients_mu = PTHREAD_MUTEX_INITIALIZER;
static struct weft__list g_clients = {&g_clients, &g_clients};
static _Atomic uint64_t g_next_id = 1;
static _Atomic uint64_t g_nclients;

/* ---- connections and batches ----------------------------------------------- */

/* A command of a batch: its arguments are the connection's (own == 0,
 * argv offset into conn->argv) or the batch's own copy (a split part). */
typedef struct kv_bent {
    const kv_cmd *cmd;
    uint32_t off, argc;
    bool own;
    uint64_t h; /* ROUTE_KEY: the key's hash, computed once when routed */
} kv_bent;

struct kv_conn;

typedef struct kv_batch {
    struct kv_conn *conn;
    unsigned shard;
    kv_bent *ents;
    uint32_t *ends; /* reply i ends at out.p + ends[i] */
    uint32_t n, cap;
    kv_slice *args;
    size_t nargs, acap;
    kv_buf out;
} kv_batch;

enum {
    ORD_ONE,
    ORD_MERGE
};

/* A request, in arrival order: where its reply is. */
typedef struct kv_order {
    const kv_cmd *cmd;
    uint32_t off, argc; /* the request's arguments (conn->argv) */
    uint8_t kind;
    uint32_t shard, idx; /* ORD_ONE */
    uint32_t parts;      /* ORD_MERGE: conn->parts[parts + s] = entry of shard s */
} kv_order;

#define NO_PART UINT32_MAX

typedef struct kv_conn {
    weft_stream_t *s;
    unsigned self;
    char *rbuf;
    size_t rlen, rcap;
    resp_parser_t ps;
    kv_slice *argv;
    size_t nargv, argv_cap;
    kv_order *ord;
    uint32_t nord, ord_cap;
    uint32_t *parts;
    size_t nparts, parts_cap;
    kv_batch *b;    /* one per shard */
    unsigned *used; /* shards with commands this round */
    unsigned nused;
    size_t *cursor; /* MGET merge scratch, one per shard */
    kv_buf out;
    struct weft__list waitq;
    unsigned pending;
    bool quit, shutdown, broken;
    uint32_t round_max;
    kv_client cl;
} kv_conn;

/* the most commands put into one round before it runs; fewer when the
 * replies are big (kv_conn.round_max: about ROUND_BYTES of replies), so
 * that a client that does not read holds at most about that much */
#define ROUND_MAX   1024
#define ROUND_MIN   8
#define ROUND_BYTES (1u << 20)

static kv_db *my_db(void)
{
    return &g_dbs[weft_loop_index()];
}

static void bump(_Atomic uint64_t *c, int64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)by,
                          memory_order_relaxed);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = weft__realloc(*p, n * elem);
    if (q == NULL)
        return false;
    *p = q;
    *cap = n;
    return true;
}

static kv_conn *conn_new(weft_stream_t *s)
{
    kv_conn *c = weft__calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->b = weft__calloc(kv_nshards, sizeof(*c->b));
    c->used = weft__calloc(kv_nshards, sizeof(*c->used));
    c->cursor = weft__calloc(kv_nshards, sizeof(*c->cursor));
    c->rcap = 16 * 1024;
    c->rbuf = weft__malloc(c->rcap);
    if (c->b == NULL || c->used == NULL || c->cursor == NULL || c->rbuf == NULL) {
        weft__free(c->b);
        weft__free(c->used);
        weft__free(c->cursor);
        weft__free(c->rbuf);
        weft__free(c);
        return NULL;
    }
    c->s = s;
    c->self = (unsigned)weft_loop_index();
    c->round_max = ROUND_MAX;
    for (unsigned i = 0; i < kv_nshards; i++) {
        c->b[i].conn = c;
        c->b[i].shard = i;
    }
    resp_parser_init(&c->ps, g_o.max_bulk);
    weft__list_init(&c->waitq);
    return c;
}

static void conn_free(kv_conn *c)
{
    for (unsigned i = 0; i < kv_nshards; i++) {
        weft__free(c->b[i].ents);
        weft__free(c->b[i].ends);
        weft__free(c->b[i].args);
        kv_buf_free(&c->b[i].out);
    }
    weft__free(c->b);
    weft__free(c->used);
    weft__free(c->cursor);
    weft__free(c->rbuf);
    weft__free(c->argv);
    weft__free(c->ord);
    weft__free(c->parts);
    kv_buf_free(&c->out);
    weft__free(c);
}

static void addr_str(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char host[48] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        uv_ip4_name(a, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(out, n, "%s:%d", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        uv_ip6_name(a, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(out, n, "%s:%d", host, port);
    } else {
        snprintf(out, n, "?");
    }
}

static void client_register(kv_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_t *t = weft_stream_tcp(c->s);
    strcpy(c->cl.addr, "?");
    strcpy(c->cl.laddr, "?");
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0)
        addr_str(&ss, c->cl.addr, sizeof(c->cl.addr));
    len = sizeof(ss);
    if (uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len) == 0)
        addr_str(&ss, c->cl.laddr, sizeof(c->cl.laddr));
    c->cl.id = atomic_fetch_add(&g_next_id, 1);
    c->cl.loop = c->self;
    c->cl.created_ms = kv_now_ms();
    atomic_store(&c->cl.last_ms, c->cl.created_ms);
    atomic_store(&c->cl.last_cmd, "NULL");
    pthread_mutex_lock(&g_clients_mu);
    weft__list_push_back(&g_clients, &c->cl.link);
    pthread_mutex_unlock(&g_clients_mu);
    atomic_fetch_add(&g_nclients, 1);
}

static void client_unregister(kv_conn *c)
{
    pthread_mutex_lock(&g_clients_mu);
    weft__list_remove(&c->cl.link);
    char *name = c->cl.name;
    c->cl.name = NULL;
    pthread_mutex_unlock(&g_clients_mu);
    weft__free(name);
    atomic_fetch_sub(&g_nclients, 1);
}

/* ---- routing ----------------------------------------------------------------- */

static void cmd_unknown(kv_ctx *c, int argc, kv_slice *argv);
static void cmd_arity(kv_ctx *c, int argc, kv_slice *argv);
static void cmd_command(kv_ctx *c, int argc, kv_slice *argv);
static const kv_cmd unknown_cmd = {"unknown", -1, ROUTE_LOCAL, 0, 0, false, cmd_unknown};
static const kv_cmd arity_cmd = {"arity", -1, ROUTE_LOCAL, 0, 0, false, cmd_arity};
static const kv_cmd command_cmd = {"command", -1, ROUTE_LOCAL, 0, 0, false, cmd_command};

/* Add a command to shard s's batch: its entry index, or NO_PART without
 * memory. */
static uint32_t batch_add(kv_conn *c, unsigned s, const kv_cmd *cmd, uint32_t off, uint32_t argc,
                          bool own, uint64_t h)
{
    kv_batch *b = &c->b[s];
    if (b->n == b->cap) {
        size_t cap = b->cap, cap2 = b->cap;
        if (!grow((void **)&b->ents, &cap, b->n + 1, sizeof(*b->ents)) ||
            !grow((void **)&b->ends, &cap2, b->n + 1, sizeof(*b->ends)))
            return NO_PART;
        b->cap = (uint32_t)(cap < cap2 ? cap : cap2);
    }
    if (b->n == 0)
        c->used[c->nused++] = s;
    b->ents[b->n] = (kv_bent){cmd, off, argc, own, h};
    return b->n++;
}

static bool batch_arg(kv_batch *b, const kv_slice *a)
{
    if (!grow((void **)&b->args, &b->acap, b->nargs + 1, sizeof(*b->args)))
        return false;
    b->args[b->nargs++] = *a;
    return true;
}

static kv_order *order_new(kv_conn *c)
{
    size_t cap = c->ord_cap;
    if (!grow((void **)&c->ord, &cap, c->nord + 1, sizeof(*c->ord)))
        return NULL;
    c->ord_cap = (uint32_t)cap;
    return &c->ord[c->nord++];
}

static bool route_one(kv_conn *c, const kv_cmd *cmd, uint32_t off, uint32_t argc, unsigned s,
                      uint64_t h)
{
    kv_order *o = order_new(c);
    if (o == NULL)
        return false;
    uint32_t idx = batch_add(c, s, cmd, off, argc, false, h);
    if (idx == NO_PART) {
        c->nord--;
        return false;
    }
    *o = (kv_order){cmd, off, argc, ORD_ONE, s, idx, 0};
    return true;
}

static unsigned key_shard(const kv_slice *k)
{
    return kv_shard_of(kv_hash(k->p, k->len), kv_nshards);
}

/* A command over several keys (step 1: keys; step 2: key value pairs), or
 * one for every shard (ROUTE_ALL): a part per shard, merged later. */
static bool route_split(kv_conn *c, const kv_cmd *cmd, uint32_t off, uint32_t argc)
{
    kv_slice *a = c->argv + off;
    size_t pbase = c->nparts;
    if (!grow((void **)&c->parts, &c->parts_cap, pbase + kv_nshards, sizeof(*c->parts)))
        return false;
    uint32_t *parts = c->parts + pbase;
    for (unsigned s = 0; s < kv_nshards; s++)
        parts[s] = NO_PART;
    if (cmd->route == ROUTE_ALL) {
        for (unsigned s = 0; s < kv_nshards; s++)
            if ((parts[s] = batch_add(c, s, cmd, off, argc, false, 0)) == NO_PART)
                return false;
    } else {
        /* each shard's part is contiguous in its batch's args: build them
         * one shard at a time */
        for (uint32_t i = 1; i < argc; i += cmd->step) {
            unsigned s = key_shard(&a[i]);
            if (parts[s] != NO_PART)
                continue;
            kv_batch *b = &c->b[s];
            uint32_t start = (uint32_t)b->nargs;
            if (!batch_arg(b, &a[0]))
                return false;
            uint32_t n = 1;
            for (uint32_t j = i; j < argc; j += cmd->step) {
                if (j != i && key_shard(&a[j]) != s)
                    continue;
                for (uint32_t k = 0; k < cmd->step; k++)
                    if (!batch_arg(b, &a[j + k]))
                        return false;
                n += cmd->step;
            }
            if ((parts[s] = batch_add(c, s, cmd, start, n, true, 0)) == NO_PART)
                return false;
        }
    }
    kv_order *o = order_new(c);
    if (o == NULL)
        return false;
    c->nparts += kv_nshards;
    *o = (kv_order){cmd, off, argc, ORD_MERGE, 0, 0, (uint32_t)pbase};
    return true;
}

static bool arity_ok(const kv_cmd *cmd, uint32_t argc)
{
    return cmd->arity > 0 ? argc == (uint32_t)cmd->arity : argc >= (uint32_t)-cmd->arity;
}

/* Sort one parsed request (c->argv[off..off+argc)) into the round. */
static bool route(kv_conn *c, uint32_t off, uint32_t argc)
{
    kv_slice *a = c->argv + off;
    const kv_cmd *cmd = kv_cmd_lookup(a[0].p, a[0].len);
    if (cmd == NULL)
        return route_one(c, &unknown_cmd, off, argc, c->self, 0);
    if (!arity_ok(cmd, argc) || (cmd->step == 2 && (argc - 1) % 2 != 0))
        return route_one(c, &arity_cmd, off, argc, c->self, 0);
    atomic_store_explicit(&c->cl.last_cmd, cmd->name, memory_order_relaxed);
    if (cmd->fn == NULL)
        cmd = &command_cmd;
    if (cmd->fn == kv_cmd_quit)
        c->quit = true;
    switch (cmd->route) {
    case ROUTE_KEY: {
        uint64_t h = kv_hash(a[1].p, a[1].len);
        return route_one(c, cmd, off, argc, kv_shard_of(h, kv_nshards), h);
    }
    case ROUTE_SCAN: {
        unsigned long long cur = 0;
        unsigned s = c->self;
        bool ok = a[1].len > 0 && a[1].len <= 20;
        for (size_t i = 0; ok && i < a[1].len; i++) {
            unsigned d = (unsigned)(a[1].p[i] - '0');
            ok = d <= 9 && cur <= (ULLONG_MAX - d) / 10;
            cur = cur * 10 + d;
        }
        if (ok)
            s = (unsigned)(cur % kv_nshards);
        return route_one(c, cmd, off, argc, s, 0);
    }
    case ROUTE_MULTI:
    case ROUTE_ALL:
        return route_split(c, cmd, off, argc);
    default:
        return route_one(c, cmd, off, argc, c->self, 0);
    }
}

/* ---- running a round ---------------------------------------------------------- */

static void aof_done_remote(void *arg);
static void aof_done_local(void *arg);

/* Run a batch on its shard (the calling loop). True when its replies must
 * wait for the append-only file's fsync (aof_commit calls back). */
static bool batch_exec(kv_batch *b, bool remote)
{
    kv_db *db = &g_dbs[b->shard];
    kv_conn *c = b->conn;
    kv_ctx ctx = {.db = db, .out = &b->out, .conn = remote ? NULL : c};
    b->out.len = 0;
    b->out.oom = false;
    /* Each key's bucket, then its first entry, is fetched ahead of the
     * commands: a batch's lookups then overlap their cache misses instead
     * of taking them one after the other (a 1M-key table is far bigger
     * than the caches). */
    if (b->n > 1) {
        for (uint32_t i = 0; i < b->n; i++) {
            kv_bent *e = &b->ents[i];
            if (e->cmd->route == ROUTE_KEY)
                kv_dict_prefetch(&db->d, e->h, false);
        }
        for (uint32_t i = 0; i < b->n; i++) {
            kv_bent *e = &b->ents[i];
            if (e->cmd->route == ROUTE_KEY)
                kv_dict_prefetch(&db->d, e->h, true);
        }
    }
    for (uint32_t i = 0; i < b->n; i++) {
        kv_bent *e = &b->ents[i];
        kv_slice *argv = e->own ? b->args + e->off : c->argv + e->off;
        ctx.part = e->cmd->route == ROUTE_MULTI || e->cmd->route == ROUTE_ALL;
        ctx.hkey = e->cmd->route == ROUTE_KEY ? &argv[1] : NULL;
        ctx.h = e->h;
        kv_exec(&ctx, e->cmd, (int)e->argc, argv);
        b->ends[i] = (uint32_t)b->out.len;
    }
    atomic_store_explicit(&db->st.keys, db->d.count, memory_order_relaxed);
    atomic_store_explicit(&db->st.expires, db->nexp, memory_order_relaxed);
    if (db->aof != NULL)
        return aof_commit(db->aof, remote ? aof_done_remote : aof_done_local, b);
    return false;
}

static void batch_done(void *arg)
{
    kv_batch *b = arg;
    kv_conn *c = b->conn;
    if (--c->pending == 0)
        weft__waitq_grant(&c->waitq, 0);
}

/* On the shard's loop: run another loop's batch and send it back. */
static void batch_remote(void *arg)
{
    kv_batch *b = arg;
    bump(&g_dbs[b->shard].st.hops_in, 1);
    if (batch_exec(b, true))
        return; /* aof_done_remote sends it back */
    if (weft_call_on(g_loops[b->conn->self], batch_done, b) != 0 &&
        weft_call_soon_threadsafe(g_loops[b->conn->self], batch_done, b) != 0)
        fprintf(stderr, "weft-kv: a reply could not be sent back (stopping?)\n");
}

/* the writer thread, once the batch's log is on disk */
static void aof_done_remote(void *arg)
{
    kv_batch *b = arg;
    if (weft_call_soon_threadsafe(g_loops[b->conn->self], batch_done, b) != 0)
        fprintf(stderr, "weft-kv: a reply could not be sent back (stopping?)\n");
}

static void aof_done_local(void *arg)
{
    aof_done_remote(arg);
}

static const char *batch_reply(kv_batch *b, uint32_t i, size_t *len)
{
    size_t start = i == 0 ? 0 : b->ends[i - 1];
    *len = b->ends[i] - start;
    return b->out.p + start;
}

#define E_OOMREPLY "-OOM command not allowed when used memory > 'maxmemory'.\r\n"

static void merge(kv_conn *c, kv_order *o)
{
    uint32_t *parts = c->parts + o->parts;
    kv_buf *out = &c->out;
    /* an error in any part is the reply */
    for (unsigned s = 0; s < kv_nshards; s++) {
        if (parts[s] == NO_PART)
            continue;
        if (c->b[s].out.oom) {
            KV_LIT(out, E_OOMREPLY);
            return;
        }
        size_t n;
        const char *r = batch_reply(&c->b[s], parts[s], &n);
        if (n > 0 && r[0] == '-') {
            kv_buf_put(out, r, n);
            return;
        }
    }
    switch (o->cmd->merge) {
    case MERGE_SUM: {
        long long sum = 0;
        for (unsigned s = 0; s < kv_nshards; s++) {
            size_t n;
            if (parts[s] != NO_PART) {
                const char *r = batch_reply(&c->b[s], parts[s], &n);
                sum += kv_reply_num(r, n);
            }
        }
        kv_reply_int(out, sum);
        break;
    }
    case MERGE_OK:
        kv_reply_ok(out);
        break;
    case MERGE_ORDER: {
        kv_slice *a = c->argv + o->off;
        for (unsigned s = 0; s < kv_nshards; s++) {
            size_t n;
            if (parts[s] != NO_PART)
                c->cursor[s] = (size_t)(batch_reply(&c->b[s], parts[s], &n) - c->b[s].out.p);
        }
        kv_reply_hdr(out, '*', o->argc - 1);
        for (uint32_t i = 1; i < o->argc; i++) {
            unsigned s = key_shard(&a[i]);
            const char *r = c->b[s].out.p + c->cursor[s];
            size_t n = kv_reply_len(r, c->b[s].out.len - c->cursor[s]);
            kv_buf_put(out, r, n);
            c->cursor[s] += n;
        }
        break;
    }
    case MERGE_CONCAT: {
        long long total = 0;
        for (unsigned s = 0; s < kv_nshards; s++) {
            size_t n;
            if (parts[s] != NO_PART) {
                const char *r = batch_reply(&c->b[s], parts[s], &n);
                total += kv_reply_num(r, n);
            }
        }
        kv_reply_hdr(out, '*', total);
        for (unsigned s = 0; s < kv_nshards; s++) {
            size_t n;
            if (parts[s] == NO_PART)
                continue;
            const char *r = batch_reply(&c->b[s], parts[s], &n);
            const char *body = (const char *)memchr(r, '\n', n) + 1;
            kv_buf_put(out, body, n - (size_t)(body - r));
        }
        break;
    }
    }
}

/* Run the round's batches (others' over the mesh first, then ours
 * inline), wait for them, and put the replies together in order. */
static void run_round(kv_conn *c)
{
    kv_db *self = &g_dbs[c->self];
    for (unsigned i = 0; i < c->nused; i++) {
        unsigned s = c->used[i];
        if (s == c->self)
            continue;
        c->pending++;
        bump(&self->st.hops_out, 1);
        if (weft_call_on(g_loops[s], batch_remote, &c->b[s]) != 0) {
            /* the mesh refused (no memory, stopping): this batch fails */
            c->pending--;
            kv_batch *b = &c->b[s];
            b->out.len = 0;
            b->out.oom = true;
            for (uint32_t k = 0; k < b->n; k++)
                b->ends[k] = 0;
        }
    }
    if (c->b[c->self].n > 0) {
        if (batch_exec(&c->b[c->self], false))
            c->pending++;
    }
    if (c->pending > 0) {
        /* the batches point into this connection's buffers: wait for them
         * whatever happens (a cancel is taken after) */
        int nc = weft_nocancel_begin();
        while (c->pending > 0)
            (void)weft__waitq_wait(&c->waitq, WEFT_FOREVER);
        if (nc == 0)
            weft_nocancel_end();
    }
    for (uint32_t i = 0; i < c->nord; i++) {
        kv_order *o = &c->ord[i];
        if (o->kind == ORD_MERGE) {
            merge(c, o);
            continue;
        }
        kv_batch *b = &c->b[o->shard];
        if (b->out.oom) {
            KV_LIT(&c->out, E_OOMREPLY);
            continue;
        }
        size_t n;
        const char *r = batch_reply(b, o->idx, &n);
        kv_buf_put(&c->out, r, n);
    }
    for (unsigned i = 0; i < c->nused; i++) {
        kv_batch *b = &c->b[c->used[i]];
        b->n = 0;
        b->nargs = 0;
        /* a big reply's memory is not kept for ever */
        if (b->out.cap > (1u << 20))
            kv_buf_free(&b->out);
    }
    c->nused = 0;
    c->nord = 0;
    c->nparts = 0;
}

/* Write the round's replies (one write) and wait while the peer is not
 * taking them (the output high-water mark: no more reading until it does). */
static int flush_out(kv_conn *c)
{
    int rc = 0;
    if (c->out.oom) {
        c->out.len = 0;
        c->out.oom = false;
        KV_LIT(&c->out, "-ERR out of memory building the reply\r\n");
        c->broken = true;
    }
    if (c->out.len > 0) {
        bump(&g_dbs[c->self].st.net_out, (int64_t)c->out.len);
        rc = weft_stream_write(c->s, c->out.p, c->out.len);
        c->out.len = 0;
        if (c->out.cap > (1u << 20))
            kv_buf_free(&c->out);
    }
    if (rc == 0)
        rc = weft_stream_drain(c->s);
    return rc;
}

/* Parse and run what the read buffer holds. 0 to read on, 1 to close
 * (QUIT, SHUTDOWN, a protocol error: after the replies), < 0 an error. */
static int serve_buffer(kv_conn *c)
{
    size_t pos = 0;
    int rc = 0, pr = RESP_MORE;
    for (;;) {
        size_t base = c->nargv;
        while (c->nord < c->round_max && !c->quit) {
            size_t used;
            pr = resp_parse(&c->ps, c->rbuf + pos, c->rlen - pos, c->argv + c->nargv,
                            c->argv_cap - c->nargv, &used);
            if (pr == RESP_ROOM) {
                if (!grow((void **)&c->argv, &c->argv_cap, c->nargv + c->ps.need,
                          sizeof(*c->argv))) {
                    c->broken = true;
                    break;
                }
                continue;
            }
            if (pr != RESP_OK)
                break;
            pos += used;
            if (c->ps.argc == 0)
                continue;
            if (!route(c, (uint32_t)c->nargv, (uint32_t)c->ps.argc)) {
                c->broken = true;
                break;
            }
            c->nargv += c->ps.argc;
        }
        (void)base;
        if (c->nord > 0) {
            uint32_t nord = c->nord;
            run_round(c);
            size_t per = c->out.len / nord + 1;
            size_t m = ROUND_BYTES / per;
            c->round_max = m > ROUND_MAX ? ROUND_MAX : m < ROUND_MIN ? ROUND_MIN : (uint32_t)m;
        }
        if (pr == RESP_ERR) {
            kv_reply_errf(&c->out, "ERR %s", c->ps.err);
            c->broken = true;
        }
        rc = flush_out(c);
        if (rc != 0)
            return rc;
        if (c->quit || c->broken || c->shutdown)
            return 1;
        /* the partial command's arguments (offsets) move to the front */
        if (pr == RESP_MORE && c->ps.argc > 0 && c->nargv > 0)
            memmove(c->argv, c->argv + c->nargv, c->ps.argc * sizeof(*c->argv));
        c->nargv = 0;
        if (pr != RESP_OK)
            break; /* need more bytes */
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    return 0;
}

static int conn_main(weft_stream_t *s, void *arg)
{
    (void)arg;
    kv_db *db = my_db();
    kv_conn *c = conn_new(s);
    if (c == NULL)
        return UV_ENOMEM;
    client_register(c);
    bump(&db->st.conns, 1);
    bump(&db->st.conns_total, 1);
    int rc = 0;
    for (;;) {
        if (c->rlen == c->rcap) {
            if (c->rcap >= g_o.query_limit) {
                rc = UV_ENOBUFS; /* client-query-buffer-limit: closed */
                break;
            }
            size_t cap = c->rcap;
            if (!grow((void **)&c->rbuf, &cap, c->rcap * 2, 1)) {
                rc = UV_ENOMEM;
                break;
            }
            c->rcap = cap;
        } else if (c->rcap > (1u << 20) && c->rlen < 16 * 1024) {
            char *small = weft__realloc(c->rbuf, 64 * 1024);
            if (small != NULL) {
                c->rbuf = small;
                c->rcap = 64 * 1024;
            }
        }
        size_t got;
        rc = weft_stream_read(s, c->rbuf + c->rlen, c->rcap - c->rlen, &got);
        if (rc != 0)
            break;
        c->rlen += got;
        bump(&db->st.net_in, (int64_t)got);
        atomic_store_explicit(&c->cl.last_ms, kv_now_ms(), memory_order_relaxed);
        rc = serve_buffer(c);
        if (rc != 0)
            break;
    }
    if (rc == 1 || rc == UV_EOF)
        rc = 0;
    client_unregister(c);
    conn_free(c);
    bump(&db->st.conns, -1);
    return rc;
}

/* ---- server-level commands (run on the connection's loop) ------------------- */

/* Redis's unknown-command text (7.0's processCommand). */
static void cmd_unknown(kv_ctx *c, int argc, kv_slice *argv)
{
    char args[200];
    size_t n = 0;
    args[0] = '\0';
    for (int i = 1; i < argc && n < 128; i++) {
        int room = 128 - (int)n;
        int w = snprintf(args + n, sizeof(args) - n, "'%.*s' ",
                         (int)(argv[i].len < (size_t)room ? argv[i].len : (size_t)room), argv[i].p);
        if (w < 0)
            break;
        n += (size_t)w;
        if (n >= sizeof(args))
            n = sizeof(args) - 1;
    }
    int nl = argv[0].len < 128 ? (int)argv[0].len : 128;
    kv_reply_errf(c->out, "ERR unknown command '%.*s', with args beginning with: %s", nl, argv[0].p,
                  args);
}

static void cmd_arity(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    const kv_cmd *cmd = kv_cmd_lookup(argv[0].p, argv[0].len);
    kv_reply_errf(c->out, "ERR wrong number of arguments for '%s' command",
                  cmd != NULL ? cmd->name : "?");
}

static bool is(const kv_slice *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

void kv_cmd_quit(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    (void)argv;
    kv_reply_ok(c->out);
}

static void stop_cb(void *arg)
{
    (void)arg;
    if (g_stop != NULL && !weft_future_done(g_stop))
        if (weft_future_set_result(g_stop, NULL) != 0)
            fprintf(stderr, "weft-kv: SHUTDOWN could not be signalled\n");
}

void kv_cmd_shutdown(kv_ctx *c, int argc, kv_slice *argv)
{
    for (int i = 1; i < argc; i++) {
        if (!is(&argv[i], "nosave") && !is(&argv[i], "save") && !is(&argv[i], "now") &&
            !is(&argv[i], "force")) {
            kv_reply_err(c->out, "ERR syntax error");
            return;
        }
    }
    /* Redis sends no reply: the connection closes as the server stops
     * (after the append-only files are flushed). */
    c->conn->shutdown = true;
    if (c->conn->self == 0)
        stop_cb(NULL);
    else if (weft_call_on(g_loops[0], stop_cb, NULL) != 0)
        kv_reply_err(c->out, "ERR Errors trying to SHUTDOWN. Check logs.");
}

static bool name_ok(const kv_slice *a)
{
    for (size_t i = 0; i < a->len; i++)
        if (a->p[i] < '!' || a->p[i] > '~')
            return false;
    return true;
}

static void client_line(kv_buf *b, kv_client *cl, int64_t now)
{
    char line[512];
    const char *cmd = atomic_load_explicit(&cl->last_cmd, memory_order_relaxed);
    int n = snprintf(
        line, sizeof(line),
        "id=%" PRIu64 " addr=%s laddr=%s fd=-1 name=%s age=%" PRId64 " idle=%" PRId64
        " flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 "
        "qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 "
        "events=r cmd=%s user=default redir=-1 resp=2 loop=%u\n",
        cl->id, cl->addr, cl->laddr, cl->name ? cl->name : "", (now - cl->created_ms) / 1000,
        (now - atomic_load_explicit(&cl->last_ms, memory_order_relaxed)) / 1000, cmd, cl->loop);
    kv_buf_put(b, line, (size_t)n);
}

void kv_cmd_client(kv_ctx *c, int argc, kv_slice *argv)
{
    kv_conn *conn = c->conn;
    if (is(&argv[1], "setname") && argc == 3) {
        if (!name_ok(&argv[2])) {
            kv_reply_err(c->out,
                         "ERR Client names cannot contain spaces, newlines or special characters.");
            return;
        }
        char *name = NULL;
        if (argv[2].len > 0) {
            name = weft__malloc(argv[2].len + 1);
            if (name == NULL) {
                kv_reply_err(c->out, "ERR out of memory");
                return;
            }
            memcpy(name, argv[2].p, argv[2].len);
            name[argv[2].len] = '\0';
        }
        pthread_mutex_lock(&g_clients_mu);
        char *old = conn->cl.name;
        conn->cl.name = name;
        pthread_mutex_unlock(&g_clients_mu);
        weft__free(old);
        kv_reply_ok(c->out);
    } else if (is(&argv[1], "getname") && argc == 2) {
        pthread_mutex_lock(&g_clients_mu);
        if (conn->cl.name == NULL)
            kv_reply_null(c->out);
        else
            kv_reply_bulk(c->out, conn->cl.name, strlen(conn->cl.name));
        pthread_mutex_unlock(&g_clients_mu);
    } else if (is(&argv[1], "id") && argc == 2) {
        kv_reply_int(c->out, (long long)conn->cl.id);
    } else if (is(&argv[1], "list")) {
        kv_buf lines = {0};
        int64_t now = kv_now_ms();
        pthread_mutex_lock(&g_clients_mu);
        for (struct weft__list *l = g_clients.next; l != &g_clients; l = l->next)
            client_line(&lines, WEFT_CONTAINER_OF(l, kv_client, link), now);
        pthread_mutex_unlock(&g_clients_mu);
        if (lines.oom)
            kv_reply_err(c->out, "ERR out of memory");
        else
            kv_reply_bulk(c->out, lines.p, lines.len);
        kv_buf_free(&lines);
    } else if (is(&argv[1], "info") && argc == 2) {
        kv_buf line = {0};
        pthread_mutex_lock(&g_clients_mu);
        client_line(&line, &conn->cl, kv_now_ms());
        pthread_mutex_unlock(&g_clients_mu);
        kv_reply_bulk(c->out, line.p, line.len);
        kv_buf_free(&line);
    } else if (is(&argv[1], "setinfo") && argc == 4) {
        kv_reply_ok(c->out);
    } else {
        kv_reply_errf(c->out, "ERR unknown subcommand '%.*s'. Try CLIENT HELP.",
                      (int)(argv[1].len < 128 ? argv[1].len : 128), argv[1].p);
    }
}

/* CONFIG GET's parameters. */
static const char *const config_names[] = {
    "save",
    "appendonly",
    "appendfsync",
    "port",
    "bind",
    "dir",
    "maxclients",
    "proto-max-bulk-len",
    "databases",
    "maxmemory",
    "client-query-buffer-limit",
};

static void config_value(const char *name, char *out, size_t n)
{
    if (!strcmp(name, "save"))
        snprintf(out, n, "%s", "");
    else if (!strcmp(name, "appendonly"))
        snprintf(out, n, "%s", g_o.appendonly ? "yes" : "no");
    else if (!strcmp(name, "appendfsync"))
        snprintf(out, n, "%s",
                 g_o.appendfsync == AOF_FSYNC_ALWAYS ? "always"
                 : g_o.appendfsync == AOF_FSYNC_NO   ? "no"
                                                     : "everysec");
    else if (!strcmp(name, "port"))
        snprintf(out, n, "%d", g_port);
    else if (!strcmp(name, "bind"))
        snprintf(out, n, "%s", g_o.bind);
    else if (!strcmp(name, "dir"))
        snprintf(out, n, "%s", g_o.dir);
    else if (!strcmp(name, "maxclients"))
        snprintf(out, n, "%u", g_o.maxclients);
    else if (!strcmp(name, "proto-max-bulk-len"))
        snprintf(out, n, "%" PRIu64, g_o.max_bulk);
    else if (!strcmp(name, "databases"))
        snprintf(out, n, "1");
    else if (!strcmp(name, "maxmemory"))
        snprintf(out, n, "0");
    else
        snprintf(out, n, "%" PRIu64, g_o.query_limit);
}

void kv_cmd_config(kv_ctx *c, int argc, kv_slice *argv)
{
    if (!is(&argv[1], "get")) {
        if (is(&argv[1], "set") || is(&argv[1], "resetstat") || is(&argv[1], "rewrite")) {
            kv_reply_errf(c->out, "ERR CONFIG %.*s is not supported by weft-kv", (int)argv[1].len,
                          argv[1].p);
            return;
        }
        kv_reply_errf(c->out, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.",
                      (int)(argv[1].len < 128 ? argv[1].len : 128), argv[1].p);
        return;
    }
    if (argc < 3) {
        kv_reply_err(c->out, "ERR wrong number of arguments for 'config|get' command");
        return;
    }
    size_t nnames = sizeof(config_names) / sizeof(config_names[0]);
    bool hit[sizeof(config_names) / sizeof(config_names[0])] = {0};
    long long n = 0;
    for (int i = 2; i < argc; i++)
        for (size_t k = 0; k < nnames; k++)
            if (!hit[k] &&
                kv_glob(argv[i].p, argv[i].len, config_names[k], strlen(config_names[k]), true)) {
                hit[k] = true;
                n++;
            }
    kv_reply_hdr(c->out, '*', n * 2);
    for (size_t k = 0; k < nnames; k++) {
        if (!hit[k])
            continue;
        char v[256];
        config_value(config_names[k], v, sizeof(v));
        kv_reply_bulk(c->out, config_names[k], strlen(config_names[k]));
        kv_reply_bulk(c->out, v, strlen(v));
    }
}

static const char *cmd_group(const kv_cmd *k)
{
    static const struct {
        const char *name, *group;
    } g[] = {
        {"lpush", "list"},         {"rpush", "list"},        {"lpushx", "list"},
        {"rpushx", "list"},        {"lpop", "list"},         {"rpop", "list"},
        {"llen", "list"},          {"lrange", "list"},       {"lindex", "list"},
        {"sadd", "set"},           {"srem", "set"},          {"smembers", "set"},
        {"sismember", "set"},      {"scard", "set"},         {"spop", "set"},
        {"hset", "hash"},          {"hmset", "hash"},        {"hget", "hash"},
        {"hdel", "hash"},          {"hgetall", "hash"},      {"hlen", "hash"},
        {"zadd", "sorted-set"},    {"zrange", "sorted-set"}, {"zscore", "sorted-set"},
        {"zpopmin", "sorted-set"}, {"zcard", "sorted-set"},  {"zrem", "sorted-set"},
        {"ping", "connection"},    {"echo", "connection"},   {"select", "connection"},
        {"client", "connection"},  {"quit", "connection"},   {"info", "server"},
        {"config", "server"},      {"command", "server"},    {"shutdown", "server"},
        {"dbsize", "server"},      {"flushdb", "server"},    {"flushall", "server"},
    };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
        if (!strcmp(g[i].name, k->name))
            return g[i].group;
    static const char *const strings[] = {"get",    "set",    "setnx", "setex",  "psetex",
                                          "getset", "incr",   "decr",  "incrby", "decrby",
                                          "append", "strlen", "mget",  "mset"};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if (!strcmp(strings[i], k->name))
            return "string";
    return "generic";
}

static void command_info(kv_buf *b, const kv_cmd *k)
{
    bool keyed = k->route == ROUTE_KEY || k->route == ROUTE_MULTI;
    KV_LIT(b, "*10\r\n");
    kv_reply_bulk(b, k->name, strlen(k->name));
    kv_reply_int(b, k->arity);
    kv_reply_hdr(b, '*', 1);
    kv_reply_status(b, k->write ? "write" : k->route == ROUTE_LOCAL ? "fast" : "readonly");
    kv_reply_int(b, keyed ? 1 : 0);
    kv_reply_int(b, keyed ? (k->route == ROUTE_MULTI ? -1 : 1) : 0);
    kv_reply_int(b, keyed ? (k->step ? k->step : 1) : 0);
    KV_LIT(b, "*0\r\n*0\r\n*0\r\n*0\r\n");
}

static void command_docs(kv_buf *b, const kv_cmd *k)
{
    kv_reply_bulk(b, k->name, strlen(k->name));
    KV_LIT(b, "*6\r\n");
    kv_reply_bulk(b, "summary", 7);
    char sum[96];
    int n = snprintf(sum, sizeof(sum), "%s (weft-kv)", k->name);
    kv_reply_bulk(b, sum, (size_t)n);
    kv_reply_bulk(b, "since", 5);
    kv_reply_bulk(b, "1.0.0", 5);
    kv_reply_bulk(b, "group", 5);
    const char *g = cmd_group(k);
    kv_reply_bulk(b, g, strlen(g));
}

static void cmd_command(kv_ctx *c, int argc, kv_slice *argv)
{
    if (argc == 1) {
        kv_reply_hdr(c->out, '*', kv_cmd_count);
        for (unsigned i = 0; i < kv_cmd_count; i++)
            command_info(c->out, &kv_cmd_table[i]);
    } else if (is(&argv[1], "count") && argc == 2) {
        kv_reply_int(c->out, kv_cmd_count);
    } else if (is(&argv[1], "info") || is(&argv[1], "docs")) {
        bool docs = is(&argv[1], "docs");
        if (argc == 2) {
            kv_reply_hdr(c->out, '*', (long long)kv_cmd_count * (docs ? 2 : 1));
            for (unsigned i = 0; i < kv_cmd_count; i++) {
                if (docs)
                    command_docs(c->out, &kv_cmd_table[i]);
                else
                    command_info(c->out, &kv_cmd_table[i]);
            }
            return;
        }
        long long found = 0;
        for (int i = 2; i < argc; i++)
            found += kv_cmd_lookup(argv[i].p, argv[i].len) != NULL;
        kv_reply_hdr(c->out, '*', docs ? found * 2 : argc - 2);
        for (int i = 2; i < argc; i++) {
            const kv_cmd *k = kv_cmd_lookup(argv[i].p, argv[i].len);
            if (k != NULL && docs)
                command_docs(c->out, k);
            else if (k != NULL)
                command_info(c->out, k);
            else if (!docs)
                kv_reply_null_array(c->out);
        }
    } else {
        kv_reply_errf(c->out, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.",
                      (int)(argv[1].len < 128 ? argv[1].len : 128), argv[1].p);
    }
}

/* ---- INFO ------------------------------------------------------------------ */

static uint64_t sum_stat(size_t off)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < kv_nshards; i++)
        n += atomic_load_explicit((_Atomic uint64_t *)((char *)&g_dbs[i].st + off),
                                  memory_order_relaxed);
    return n;
}
#define SUM(field) sum_stat(offsetof(kv_stats, field))

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, rss = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t je_allocated(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    size_t allocated = 0;
    sz = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
}

static void human(char *out, size_t n, uint64_t v)
{
    if (v >= (1ull << 30))
        snprintf(out, n, "%.2fG", (double)v / (1ull << 30));
    else if (v >= (1ull << 20))
        snprintf(out, n, "%.2fM", (double)v / (1ull << 20));
    else
        snprintf(out, n, "%.2fK", (double)v / 1024);
}

static bool want(const kv_slice *argv, int argc, const char *sec, bool dflt)
{
    if (argc == 1)
        return dflt;
    for (int i = 1; i < argc; i++) {
        if (is(&argv[i], sec) || is(&argv[i], "all") || is(&argv[i], "everything"))
            return true;
        if (is(&argv[i], "default") && dflt)
            return true;
    }
    return false;
}

void kv_cmd_info(kv_ctx *c, int argc, kv_slice *argv)
{
    kv_buf b = {0};
    char line[512];
    int64_t now = kv_now_ms();
#define ADD(...)                                            \
    do {                                                    \
        int n_ = snprintf(line, sizeof(line), __VA_ARGS__); \
        kv_buf_put(&b, line, (size_t)n_);                   \
    } while (0)
    if (want(argv, argc, "server", true)) {
        ADD("# Server\r\nredis_version:7.0.0\r\nweft_kv_version:0.1\r\nredis_mode:standalone\r\n"
            "os:Linux\r\narch_bits:64\r\nmultiplexing_api:epoll (libuv)\r\nprocess_id:%d\r\n"
            "tcp_port:%d\r\nuptime_in_seconds:%" PRId64 "\r\nuptime_in_days:%" PRId64
            "\r\nexecutable:weft-kv\r\n\r\n",
            (int)getpid(), g_port, (now - g_start_ms) / 1000, (now - g_start_ms) / 86400000);
    }
    if (want(argv, argc, "clients", true)) {
        ADD("# Clients\r\nconnected_clients:%" PRIu64
            "\r\nmaxclients:%u\r\nblocked_clients:0\r\n\r\n",
            atomic_load(&g_nclients), g_o.maxclients);
    }
    if (want(argv, argc, "memory", true)) {
        char h1[32], h2[32];
        uint64_t used = je_allocated(), rss = rss_bytes();
        human(h1, sizeof(h1), used);
        human(h2, sizeof(h2), rss);
        ADD("# Memory\r\nused_memory:%" PRIu64
            "\r\nused_memory_human:%s\r\nused_memory_rss:%" PRIu64
            "\r\nused_memory_rss_human:%s\r\nmaxmemory:0\r\nmem_allocator:jemalloc\r\n\r\n",
            used, h1, rss, h2);
    }
    if (want(argv, argc, "persistence", true)) {
        uint64_t size = 0, rewrites = 0;
        for (unsigned i = 0; i < kv_nshards; i++)
            if (g_dbs[i].aof != NULL) {
                size += aof_size(g_dbs[i].aof);
                rewrites += aof_rewrites(g_dbs[i].aof);
            }
        ADD("# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\naof_enabled:%d\r\n"
            "aof_current_size:%" PRIu64 "\r\naof_rewrites:%" PRIu64 "\r\n\r\n",
            g_o.appendonly ? 1 : 0, size, rewrites);
    }
    if (want(argv, argc, "stats", true)) {
        ADD("# Stats\r\ntotal_connections_received:%" PRIu64 "\r\ntotal_commands_processed:%" PRIu64
            "\r\ntotal_net_input_bytes:%" PRIu64 "\r\ntotal_net_output_bytes:%" PRIu64
            "\r\nexpired_keys:%" PRIu64 "\r\nkeyspace_hits:%" PRIu64 "\r\nkeyspace_misses:%" PRIu64
            "\r\n\r\n",
            SUM(conns_total), SUM(ops), SUM(net_in), SUM(net_out), SUM(expired), SUM(hits),
            SUM(misses));
    }
    if (want(argv, argc, "keyspace", true)) {
        ADD("# Keyspace\r\n");
        uint64_t keys = SUM(keys), exp = SUM(expires);
        if (keys > 0)
            ADD("db0:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=0\r\n", keys, exp);
        ADD("\r\n");
    }
    if (want(argv, argc, "weft", true)) {
        ADD("# Weft\r\nloops:%u\r\n", kv_nshards);
        for (unsigned i = 0; i < kv_nshards; i++) {
            kv_stats *s = &g_dbs[i].st;
            ADD("loop%u:ops=%" PRIu64 ",connections=%" PRIu64 ",hops_out=%" PRIu64
                ",hops_in=%" PRIu64 ",keys=%" PRIu64 "\r\n",
                i, atomic_load_explicit(&s->ops, memory_order_relaxed),
                atomic_load_explicit(&s->conns, memory_order_relaxed),
                atomic_load_explicit(&s->hops_out, memory_order_relaxed),
                atomic_load_explicit(&s->hops_in, memory_order_relaxed),
                atomic_load_explicit(&s->keys, memory_order_relaxed));
        }
        ADD("\r\n");
    }
#undef ADD
    /* Redis ends the text without the last blank line */
    if (b.len >= 2)
        b.len -= 2;
    if (b.oom)
        kv_reply_err(c->out, "ERR out of memory");
    else
        kv_reply_bulk(c->out, b.p, b.len);
    kv_buf_free(&b);
}

/* ---- start and stop ----------------------------------------------------------- */

static int cron_task(void *arg, void **result)
{
    (void)result;
    kv_db *db = arg;
    for (;;) {
        int rc = weft_sleep(100);
        if (rc != 0)
            return rc == UV_ECANCELED ? 0 : rc;
        kv_db_cron(db, 1000);
        if (db->aof != NULL)
            aof_maybe_rewrite(db);
    }
}

/* Redis's "max number of clients reached": accept, say so, close. */
static int conn_entry(weft_stream_t *s, void *arg)
{
    if (g_o.maxclients > 0 && atomic_load(&g_nclients) >= g_o.maxclients) {
        static const char msg[] = "-ERR max number of clients reached\r\n";
        return weft_stream_write(s, msg, sizeof(msg) - 1);
    }
    return conn_main(s, arg);
}

/* On each loop: its shard (replayed from its file), its listener, its cron. */
static int loop_start(void *arg, void **result)
{
    int port = (int)weft_to_int(arg);
    unsigned i = (unsigned)weft_loop_index();
    kv_db *db = &g_dbs[i];
    kv_db_init(db, i, (uint64_t)kv_now_ms() * 0x9e3779b97f4a7c15ull + i);
    if (g_o.appendonly) {
        int rc = aof_open(db, g_o.dir, g_o.appendfsync, g_o.max_bulk, g_o.aof_rewrite_min);
        if (rc != 0)
            return rc;
    }
    weft_server_opts_t so = {.backlog = 511, .reuseport = true};
    int rc = weft_tcp_serve(g_loops[i], g_o.bind, port, conn_entry, NULL, &so, &g_servers[i]);
    if (rc != 0) {
        fprintf(stderr, "weft-kv: loop %u: listen on %s:%d: %s\n", i, g_o.bind, port,
                weft_strerror(rc));
        return rc;
    }
    rc = weft_spawn(NULL, cron_task, db, &g_crons[i]);
    if (rc != 0)
        return rc;
    *result = weft_int(weft_server_port(g_servers[i]));
    return 0;
}

static int loop_close(void *arg, void **result)
{
    (void)arg;
    (void)result;
    unsigned i = (unsigned)weft_loop_index();
    if (g_servers[i] != NULL) {
        (void)weft_server_close(g_servers[i]);
        g_servers[i] = NULL;
    }
    if (g_crons[i] != NULL) {
        weft_task_cancel(g_crons[i]);
        if (weft_await_task(g_crons[i], NULL) != 0)
            fprintf(stderr, "weft-kv: loop %u: cron ended with an error\n", i);
        weft_task_unref(g_crons[i]);
        g_crons[i] = NULL;
    }
    return 0;
}

static int loop_free(void *arg, void **result)
{
    (void)arg;
    (void)result;
    kv_db *db = &g_dbs[weft_loop_index()];
    if (db->aof != NULL)
        aof_close(db);
    kv_db_free(db);
    return 0;
}

static int start_on(unsigned i, int port, int *bound)
{
    weft_future_t *f;
    void *r = NULL;
    int rc = weft_submit_to(g_loops[i], loop_start, weft_int(port), &f);
    if (rc != 0)
        return rc;
    rc = weft_await(f, &r);
    weft_future_unref(f);
    if (rc == 0)
        *bound = (int)weft_to_int(r);
    return rc;
}

static int main_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    for (unsigned i = 0; i < kv_nshards; i++)
        g_loops[i] = weft_runtime_loop(rt, i);
    int rc = weft_future_new(NULL, &g_stop);
    if (rc != 0)
        return rc;
    /* loop 0 first: with --port 0 it picks the port the others share */
    rc = start_on(0, g_o.port, &g_port);
    for (unsigned i = 1; rc == 0 && i < kv_nshards; i++) {
        int p;
        rc = start_on(i, g_port, &p);
    }
    if (rc == 0) {
        printf("weft-kv ready: %s:%d, %u loops, pid %d\n", g_o.bind, g_port, kv_nshards,
               (int)getpid());
        fflush(stdout);
        rc = weft_await(g_stop, NULL);
        if (rc == UV_ECANCELED)
            weft_task_uncancel(weft_task_current());
        printf("weft-kv: %s, stopping\n", rc == 0 ? "SHUTDOWN" : "signal");
        fflush(stdout);
        rc = 0;
    }
    /* first every connection ends (no batch is in flight after that),
     * then the shards go */
    int rc2 = weft_submit_to_all(loop_close, NULL, NULL, NULL);
    int rc3 = weft_submit_to_all(loop_free, NULL, NULL, NULL);
    weft_future_unref(g_stop);
    g_stop = NULL;
    if (rc == 0)
        rc = rc2 != 0 ? rc2 : rc3;
    return rc;
}

static void raise_nofile(unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)want + 64;
    if (rl.rlim_cur >= need)
        return;
    rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
}

/* The append-only files hold each shard's keys, and a key's shard comes
 * from its hash: so the files are only valid with the loop count and hash
 * seed that wrote them. <dir>/weft-kv.meta keeps both; a restart takes
 * the seed from it and refuses another loop count. 0 or -1 (said). */
static int meta(const char *dir, unsigned loops, uint64_t *seed)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/weft-kv.meta", dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        unsigned n = 0;
        unsigned long long s = 0;
        int ok = fscanf(f, "loops %u seed %llu", &n, &s) == 2;
        fclose(f);
        if (!ok) {
            fprintf(stderr, "weft-kv: %s is not readable; remove it with the .aof files\n", path);
            return -1;
        }
        if (n != loops) {
            fprintf(stderr,
                    "weft-kv: the append-only files in %s were written by %u loops; "
                    "start with --loops %u\n",
                    dir, n, n);
            return -1;
        }
        *seed = s;
        return 0;
    }
    f = fopen(path, "w");
    if (f == NULL || fprintf(f, "loops %u seed %llu\n", loops, (unsigned long long)*seed) < 0 ||
        fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fprintf(stderr, "weft-kv: cannot write %s: %s\n", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

int kv_main(const kv_opts *o)
{
    g_o = *o;
    g_start_ms = kv_now_ms();
    weft_runtime_opts_t ro = {.loops = o->loops, .no_pinning = !o->pin};
    ro.loop.idle_poll_us = o->idle_poll_us;
    kv_nshards = o->loops ? o->loops : weft_cpu_count();
    uint64_t seed = (uint64_t)g_start_ms ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ro;
    if (o->appendonly && meta(o->dir, kv_nshards, &seed) != 0)
        return 1;
    kv_hash_seed(seed);
    ro.loops = kv_nshards;
    raise_nofile(o->maxclients);
    g_dbs = weft__calloc(kv_nshards, sizeof(*g_dbs));
    g_loops = weft__calloc(kv_nshards, sizeof(*g_loops));
    g_servers = weft__calloc(kv_nshards, sizeof(*g_servers));
    g_crons = weft__calloc(kv_nshards, sizeof(*g_crons));
    int rc = UV_ENOMEM;
    if (g_dbs != NULL && g_loops != NULL && g_servers != NULL && g_crons != NULL)
        rc = weft_runtime_run(main_task, NULL, &ro, NULL);
    weft__free(g_dbs);
    weft__free(g_loops);
    weft__free(g_servers);
    weft__free(g_crons);
    if (rc != 0) {
        fprintf(stderr, "weft-kv: %s\n", weft_strerror(rc));
        return 1;
    }
    return 0;
}

/* ---- the command line ------------------------------------------------------------ */

static int bad(const char *name, const char *why)
{
    fprintf(stderr, "weft-kv: --%s: %s\n", name, why);
    return -1;
}

int kv_parse_args(int argc, char **argv, kv_opts *o)
{
    *o = (kv_opts){.port = 6379,
                   .bind = "127.0.0.1",
                   .appendfsync = AOF_FSYNC_EVERYSEC,
                   .dir = ".",
                   .maxclients = 10000,
                   .max_bulk = RESP_DEFAULT_MAX_BULK,
                   .query_limit = 1ull << 30,
                   .aof_rewrite_min = 64ull << 20,
                   .idle_poll_us = -1};
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i];
        while (*name == '-')
            name++;
        if (i + 1 >= argc)
            return bad(name, "needs a value");
        const char *v = argv[++i];
        char *end;
        if (!strcmp(name, "port")) {
            long p = strtol(v, &end, 10);
            if (*end || p < 0 || p > 65535)
                return bad(name, "not a port");
            o->port = (int)p;
        } else if (!strcmp(name, "bind")) {
            o->bind = v;
        } else if (!strcmp(name, "loops")) {
            long n = strtol(v, &end, 10);
            if (*end || n < 0 || n > 1024)
                return bad(name, "0..1024");
            o->loops = (unsigned)n;
        } else if (!strcmp(name, "appendonly")) {
            if (strcmp(v, "yes") && strcmp(v, "no"))
                return bad(name, "yes or no");
            o->appendonly = !strcmp(v, "yes");
        } else if (!strcmp(name, "appendfsync")) {
            if (!strcmp(v, "always"))
                o->appendfsync = AOF_FSYNC_ALWAYS;
            else if (!strcmp(v, "everysec"))
                o->appendfsync = AOF_FSYNC_EVERYSEC;
            else if (!strcmp(v, "no"))
                o->appendfsync = AOF_FSYNC_NO;
            else
                return bad(name, "always, everysec or no");
        } else if (!strcmp(name, "dir")) {
            o->dir = v;
        } else if (!strcmp(name, "maxclients")) {
            long n = strtol(v, &end, 10);
            if (*end || n < 1)
                return bad(name, "a positive number");
            o->maxclients = (unsigned)n;
        } else if (!strcmp(name, "proto-max-bulk-len")) {
            long long n = strtoll(v, &end, 10);
            if (*end || n < 1024 * 1024 || n > (long long)KV_MAX_LEN)
                return bad(name, "1 MiB .. 1 GiB - 1");
            o->max_bulk = (uint64_t)n;
        } else if (!strcmp(name, "pin")) {
            if (strcmp(v, "yes") && strcmp(v, "no"))
                return bad(name, "yes or no");
            o->pin = !strcmp(v, "yes");
        } else if (!strcmp(name, "idle-poll-us")) {
            long n = strtol(v, &end, 10);
            if (*end || n < -1 || n > 100000)
                return bad(name, "-1 (never) .. 100000");
            o->idle_poll_us = n == 0 ? -1 : (int)n;
        } else if (!strcmp(name, "auto-aof-rewrite-min-size")) {
            long long n = strtoll(v, &end, 10);
            if (*end || n < 1)
                return bad(name, "a positive number of bytes");
            o->aof_rewrite_min = (uint64_t)n;
        } else if (!strcmp(name, "save")) {
            if (*v)
                fprintf(stderr, "weft-kv: --save: RDB snapshots are not supported; ignored\n");
        } else if (!strcmp(name, "daemonize") || !strcmp(name, "protected-mode")) {
            if (strcmp(v, "no"))
                return bad(name, "only 'no' is supported");
        } else {
            fprintf(stderr, "weft-kv: unknown option --%s\n", name);
            return -1;
        }
    }
    return 0;
}

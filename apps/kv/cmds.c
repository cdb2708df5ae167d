/*
 * apps/kv/cmds.c - the commands that run on a shard's keyspace, their
 * table, expiry, and the shard's cron (db.h, docs/kv.md).
 *
 * Replies and error texts are Redis 7.0's, as redis-cli and redis-benchmark
 * expect them. A command that is part of a split one (c->part) writes only
 * its shard's share: MGET's bulks without the array header, DEL/EXISTS's
 * count, MSET's +OK; server.c merges the parts.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "aof.h"
#include "core/alloc.h"
#include "db.h"
#include "types.h"

#define E_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define E_NOTINT    "ERR value is not an integer or out of range"
#define E_NOTFLOAT  "ERR value is not a valid float"
#define E_SYNTAX    "ERR syntax error"
#define E_OVERFLOW  "ERR increment or decrement would overflow"
#define E_TOOBIG    "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
#define E_OOM       "OOM command not allowed when used memory > 'maxmemory'."

int64_t kv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now(kv_ctx *c)
{
    if (c->now == 0)
        c->now = kv_now_ms();
    return c->now;
}

static uint64_t rnd(kv_db *db)
{
    uint64_t x = db->rnd;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return db->rnd = x;
}

static bool arg_is(const kv_slice *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

static bool arg_ll(const kv_slice *a, long long *v)
{
    return resp_str2ll(a->p, a->len, v);
}

/* Redis's getLongLongFromObjectOrReply. */
static bool arg_ll_or_reply(kv_ctx *c, const kv_slice *a, long long *v)
{
    if (arg_ll(a, v))
        return true;
    kv_reply_err(c->out, E_NOTINT);
    return false;
}

/* A double as Redis's strtod-based parse takes it (inf allowed, nan not). */
static bool arg_double(const kv_slice *a, double *v)
{
    char tmp[64];
    if (a->len == 0 || a->len >= sizeof(tmp))
        return false;
    memcpy(tmp, a->p, a->len);
    tmp[a->len] = '\0';
    if (isspace((unsigned char)tmp[0]))
        return false;
    char *end;
    errno = 0;
    double d = strtod(tmp, &end);
    if (*end != '\0' || isnan(d) || (errno == ERANGE && !isinf(d) && d != 0))
        return false;
    *v = d;
    return true;
}

/* ---- values -------------------------------------------------------------- */

static void list_free(kv_list *l)
{
    for (uint64_t i = 0; i < l->len; i++)
        weft__free(l->a[(l->head + i) & (l->cap - 1)]);
    weft__free(l->a);
    weft__free(l);
}

static void zset_free(kv_zset *z)
{
    zs_node *n = z->head->fw[0];
    while (n != NULL) {
        zs_node *next = n->fw[0];
        weft__free(n);
        n = next;
    }
    weft__free(z->head);
    kv_dict_clear(&z->d, NULL, NULL);
    weft__free(z);
}

static void ent_free(kv_ent *e)
{
    switch (e->type) {
    case KV_LIST:
        list_free(kv_ent_ptr(e));
        break;
    case KV_SET:
    case KV_HASH: {
        kv_dict *d = kv_ent_ptr(e);
        kv_dict_clear(d, NULL, NULL);
        weft__free(d);
        break;
    }
    case KV_ZSET:
        zset_free(kv_ent_ptr(e));
        break;
    default:
        break;
    }
    weft__free(e);
}

static void ent_free_cb(kv_ent *e, void *arg)
{
    (void)arg;
    ent_free(e);
}

void kv_db_init(kv_db *db, unsigned idx, uint64_t seed)
{
    memset(db, 0, sizeof(*db));
    kv_dict_init(&db->d);
    db->idx = idx;
    db->rnd = seed | 1;
}

static void sync_counts(kv_db *db)
{
    atomic_store_explicit(&db->st.keys, db->d.count, memory_order_relaxed);
    atomic_store_explicit(&db->st.expires, db->nexp, memory_order_relaxed);
}

void kv_db_free(kv_db *db)
{
    kv_dict_clear(&db->d, ent_free_cb, NULL);
    db->nexp = 0;
    sync_counts(db);
}

static void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

/* ---- the keyspace ---------------------------------------------------------- */

static void db_unlink_free(kv_db *db, kv_ent **link)
{
    kv_ent *e = kv_dict_unlink(&db->d, link);
    if (e->has_exp)
        db->nexp--;
    ent_free(e);
}

/* The live entry for key (expired ones are removed here: lazy expiry),
 * with its hash and link. */
static kv_ent *lookup(kv_ctx *c, const kv_slice *k, uint64_t *hp, kv_ent ***link)
{
    uint64_t h = k == c->hkey ? c->h : kv_hash(k->p, k->len);
    kv_ent **l = NULL;
    kv_ent *e = kv_dict_find(&c->db->d, k->p, k->len, h, &l);
    if (hp != NULL)
        *hp = h;
    if (e != NULL && e->has_exp && kv_ent_exp(e) <= now(c)) {
        db_unlink_free(c->db, l);
        bump(&c->db->st.expired, 1);
        e = NULL;
    }
    if (link != NULL)
        *link = l;
    return e;
}

/* lookup for a read: counts hits and misses. */
static kv_ent *lookup_read(kv_ctx *c, const kv_slice *k, kv_ent ***link)
{
    kv_ent *e = lookup(c, k, NULL, link);
    bump(e != NULL ? &c->db->st.hits : &c->db->st.misses, 1);
    return e;
}

/* The entry if it has this type; a wrong type replies WRONGTYPE and sets
 * *bad. */
static kv_ent *lookup_type(kv_ctx *c, const kv_slice *k, int type, uint64_t *hp, kv_ent ***link,
                           bool *bad)
{
    kv_ent *e = lookup(c, k, hp, link);
    *bad = false;
    if (e != NULL && e->type != type) {
        kv_reply_err(c->out, E_WRONGTYPE);
        *bad = true;
        return NULL;
    }
    return e;
}

/* Replace the entry at link (or add when link's entry is NULL) with ne;
 * keeps nexp right. */
static void db_put(kv_ctx *c, kv_ent **link, kv_ent *old, kv_ent *ne, uint64_t h)
{
    if (old != NULL) {
        kv_dict_replace(link, ne);
        if (old->has_exp)
            c->db->nexp--;
        ent_free(old);
    } else {
        kv_dict_add(&c->db->d, ne, h);
    }
    if (ne->has_exp)
        c->db->nexp++;
}

static void ent_set_exp(kv_ent *e, int64_t at)
{
    memcpy(e->data, &at, 8);
}

/* A string entry for key = v with expiry `exp` (-1 none). NULL: no memory
 * (an OOM error is written). */
static kv_ent *new_string(kv_ctx *c, const kv_slice *k, const void *v, size_t vlen, int64_t exp)
{
    kv_ent *e = kv_ent_new(k->p, k->len, vlen, KV_STRING, exp >= 0);
    if (e == NULL) {
        kv_reply_err(c->out, E_OOM);
        return NULL;
    }
    if (exp >= 0)
        ent_set_exp(e, exp);
    memcpy(kv_ent_val(e), v, vlen);
    return e;
}

/* Set key to the string v: reuses the entry in place when the shape
 * matches (same length, same TTL presence), the common overwrite. */
static bool set_string(kv_ctx *c, const kv_slice *k, kv_ent *old, kv_ent **link, uint64_t h,
                       const void *v, size_t vlen, int64_t exp)
{
    if (old != NULL && old->type == KV_STRING && old->vlen == vlen && old->has_exp == (exp >= 0)) {
        memcpy(kv_ent_val(old), v, vlen);
        if (exp >= 0)
            ent_set_exp(old, exp);
        return true;
    }
    kv_ent *e = new_string(c, k, v, vlen, exp);
    if (e == NULL)
        return false;
    db_put(c, link, old, e, h);
    return true;
}

/* A new container entry holding obj. */
static kv_ent *new_container(kv_ctx *c, const kv_slice *k, int type, void *obj, uint64_t h)
{
    kv_ent *e = kv_ent_new(k->p, k->len, sizeof(void *), type, false);
    if (e == NULL)
        return NULL;
    memcpy(kv_ent_val(e), &obj, sizeof(obj));
    kv_dict_add(&c->db->d, e, h);
    return e;
}

/* Remove key's entry if its container became empty (Redis deletes empty
 * lists, sets, hashes and sorted sets). Looks the key up again, since the
 * container's own changes do not touch the keyspace's links. */
static void drop_if_empty(kv_ctx *c, const kv_slice *k, uint64_t n)
{
    if (n != 0)
        return;
    kv_ent **l;
    if (kv_dict_find(&c->db->d, k->p, k->len, kv_hash(k->p, k->len), &l) != NULL)
        db_unlink_free(c->db, l);
}

/* ---- generic --------------------------------------------------------------- */

static void cmd_ping(kv_ctx *c, int argc, kv_slice *argv)
{
    if (argc > 2) {
        kv_reply_err(c->out, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    if (argc == 2)
        kv_reply_bulk(c->out, argv[1].p, argv[1].len);
    else
        KV_LIT(c->out, "+PONG\r\n");
}

static void cmd_echo(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    kv_reply_bulk(c->out, argv[1].p, argv[1].len);
}

static void cmd_select(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    long long id;
    if (!arg_ll(&argv[1], &id)) {
        kv_reply_err(c->out, E_NOTINT);
        return;
    }
    if (id != 0) {
        kv_reply_err(c->out, "ERR DB index is out of range");
        return;
    }
    kv_reply_ok(c->out);
}

static void cmd_del(kv_ctx *c, int argc, kv_slice *argv)
{
    long long n = 0;
    for (int i = 1; i < argc; i++) {
        kv_ent **l;
        if (lookup(c, &argv[i], NULL, &l) != NULL) {
            db_unlink_free(c->db, l);
            n++;
        }
    }
    kv_dict_maybe_shrink(&c->db->d);
    kv_reply_int(c->out, n);
}

static void cmd_exists(kv_ctx *c, int argc, kv_slice *argv)
{
    long long n = 0;
    for (int i = 1; i < argc; i++)
        if (lookup(c, &argv[i], NULL, NULL) != NULL)
            n++;
    kv_reply_int(c->out, n);
}

static const char *type_name(int t)
{
    static const char *names[] = {"string", "list", "set", "hash", "zset"};
    return names[t];
}

static void cmd_type(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    kv_ent *e = lookup(c, &argv[1], NULL, NULL);
    kv_reply_status(c->out, e == NULL ? "none" : type_name(e->type));
}

static void cmd_dbsize(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    (void)argv;
    kv_reply_int(c->out, (long long)c->db->d.count);
}

static void cmd_flushdb(kv_ctx *c, int argc, kv_slice *argv)
{
    if (argc > 2 || (argc == 2 && !arg_is(&argv[1], "async") && !arg_is(&argv[1], "sync"))) {
        kv_reply_err(c->out, E_SYNTAX);
        return;
    }
    kv_db_free(c->db);
    kv_reply_ok(c->out);
}

struct keys_walk {
    kv_ctx *c;
    const kv_slice *pat;
    long long n;
    int type; /* -1 = any */
};

static void keys_cb(kv_ent *e, void *arg)
{
    struct keys_walk *w = arg;
    if (e->has_exp && kv_ent_exp(e) <= now(w->c))
        return;
    if (w->type >= 0 && e->type != w->type)
        return;
    if (w->pat != NULL && !kv_glob(w->pat->p, w->pat->len, kv_ent_key(e), e->klen, false))
        return;
    kv_reply_bulk(w->c->out, kv_ent_key(e), e->klen);
    w->n++;
}

/* KEYS: this shard's matches as one array (server.c concatenates). */
static void cmd_keys(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    kv_buf *out = c->out;
    kv_buf items = {0};
    c->out = &items;
    struct keys_walk w = {c, &argv[1], 0, -1};
    if (argv[1].len == 1 && argv[1].p[0] == '*')
        w.pat = NULL;
    uint64_t cur = 0;
    do {
        cur = kv_dict_scan(&c->db->d, cur, keys_cb, &w);
    } while (cur != 0);
    c->out = out;
    kv_reply_hdr(out, '*', w.n);
    kv_buf_put(out, items.p, items.len);
    if (items.oom)
        out->oom = true;
    kv_buf_free(&items);
}

static int type_by_name(const kv_slice *a)
{
    for (int t = 0; t <= KV_ZSET; t++)
        if (arg_is(a, type_name(t)))
            return t;
    return -2;
}

/* SCAN on this shard; the cursor's low part names the shard (server.c):
 * cursor = inner * nshards + shard. */
static void cmd_scan(kv_ctx *c, int argc, kv_slice *argv)
{
    /* an unsigned 64-bit decimal, as Redis's parseScanCursorOrReply */
    unsigned long long cur = 0;
    bool okc = argv[1].len > 0 && argv[1].len <= 20;
    for (size_t i = 0; okc && i < argv[1].len; i++) {
        unsigned d = (unsigned)(argv[1].p[i] - '0');
        if (d > 9 || cur > (ULLONG_MAX - d) / 10)
            okc = false;
        else
            cur = cur * 10 + d;
    }
    if (!okc) {
        kv_reply_err(c->out, "ERR invalid cursor");
        return;
    }
    long long count = 10;
    struct keys_walk w = {c, NULL, 0, -1};
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) {
            kv_reply_err(c->out, E_SYNTAX);
            return;
        }
        if (arg_is(&argv[i], "count")) {
            if (!arg_ll_or_reply(c, &argv[i + 1], &count))
                return;
            if (count < 1) {
                kv_reply_err(c->out, E_SYNTAX);
                return;
            }
        } else if (arg_is(&argv[i], "match")) {
            w.pat = &argv[i + 1];
        } else if (arg_is(&argv[i], "type")) {
            w.type = type_by_name(&argv[i + 1]);
            if (w.type == -2)
                w.type = 99; /* an unknown type matches nothing, as Redis */
        } else {
            kv_reply_err(c->out, E_SYNTAX);
            return;
        }
        i++;
    }
    unsigned n = kv_nshards;
    unsigned shard = (unsigned)(cur % n);
    uint64_t inner = cur / n;
    kv_buf *out = c->out;
    kv_buf items = {0};
    c->out = &items;
    long long steps = 0;
    do {
        inner = kv_dict_scan(&c->db->d, inner, keys_cb, &w);
    } while (inner != 0 && ++steps < count);
    c->out = out;
    uint64_t next;
    if (inner != 0)
        next = inner * n + shard;
    else
        next = shard + 1 < n ? shard + 1 : 0;
    char tmp[32];
    int tl = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)next);
    KV_LIT(out, "*2\r\n");
    kv_reply_bulk(out, tmp, (size_t)tl);
    kv_reply_hdr(out, '*', w.n);
    kv_buf_put(out, items.p, items.len);
    if (items.oom)
        out->oom = true;
    kv_buf_free(&items);
}

/* ---- expiry ---------------------------------------------------------------- */

/* Give e the absolute expiry `at` (ms), reallocating it to make room for
 * the stamp if it has none. */
static bool ent_expire_at(kv_ctx *c, kv_ent **link, kv_ent *e, int64_t at)
{
    if (e->has_exp) {
        ent_set_exp(e, at);
        return true;
    }
    size_t body = e->klen + e->vlen;
    kv_ent *ne = weft__realloc(e, sizeof(kv_ent) + 8 + body);
    if (ne == NULL) {
        kv_reply_err(c->out, E_OOM);
        return false;
    }
    memmove(ne->data + 8, ne->data, body);
    ne->has_exp = 1;
    ent_set_exp(ne, at);
    *link = ne;
    c->db->nexp++;
    return true;
}

static void ent_persist(kv_ctx *c, kv_ent **link, kv_ent *e)
{
    size_t body = e->klen + e->vlen;
    memmove(e->data, e->data + 8, body);
    e->has_exp = 0;
    kv_ent *ne = weft__realloc(e, sizeof(kv_ent) + body);
    if (ne != NULL)
        *link = ne;
    c->db->nexp--;
}

/* EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT key t [NX|XX|GT|LT]. */
static void expire_generic(kv_ctx *c, int argc, kv_slice *argv, int64_t unit, bool abs)
{
    long long t;
    if (!arg_ll_or_reply(c, &argv[2], &t))
        return;
    bool nx = false, xx = false, gt = false, lt = false;
    for (int i = 3; i < argc; i++) {
        if (arg_is(&argv[i], "nx"))
            nx = true;
        else if (arg_is(&argv[i], "xx"))
            xx = true;
        else if (arg_is(&argv[i], "gt"))
            gt = true;
        else if (arg_is(&argv[i], "lt"))
            lt = true;
        else {
            kv_reply_errf(c->out, "ERR Unsupported option %.*s", (int)argv[i].len, argv[i].p);
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        kv_reply_err(c->out, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        kv_reply_err(c->out, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    if ((t > 0 && t > INT64_MAX / unit) || (t < 0 && t < INT64_MIN / unit)) {
        kv_reply_err(c->out, "ERR invalid expire time in 'expire' command");
        return;
    }
    int64_t at = t * unit;
    if (!abs) {
        if (at > 0 && at > INT64_MAX - now(c)) {
            kv_reply_err(c->out, "ERR invalid expire time in 'expire' command");
            return;
        }
        at += now(c);
    }
    kv_ent **l;
    kv_ent *e = lookup(c, &argv[1], NULL, &l);
    if (e == NULL) {
        kv_reply_int(c->out, 0);
        return;
    }
    int64_t cur = kv_ent_exp(e); /* -1 = none, i.e. infinite */
    if ((nx && cur >= 0) || (xx && cur < 0) || (gt && (cur < 0 || at <= cur)) ||
        (lt && cur >= 0 && at >= cur)) {
        kv_reply_int(c->out, 0);
        return;
    }
    if (at <= now(c) && !c->loading) {
        db_unlink_free(c->db, l);
        kv_reply_int(c->out, 1);
        return;
    }
    if (ent_expire_at(c, l, e, at))
        kv_reply_int(c->out, 1);
}

static void cmd_expire(kv_ctx *c, int argc, kv_slice *argv)
{
    expire_generic(c, argc, argv, 1000, false);
}
static void cmd_pexpire(kv_ctx *c, int argc, kv_slice *argv)
{
    expire_generic(c, argc, argv, 1, false);
}
static void cmd_expireat(kv_ctx *c, int argc, kv_slice *argv)
{
    expire_generic(c, argc, argv, 1000, true);
}
static void cmd_pexpireat(kv_ctx *c, int argc, kv_slice *argv)
{
    expire_generic(c, argc, argv, 1, true);
}

static void ttl_generic(kv_ctx *c, kv_slice *argv, bool ms)
{
    kv_ent *e = lookup(c, &argv[1], NULL, NULL);
    if (e == NULL) {
        kv_reply_int(c->out, -2);
        return;
    }
    int64_t at = kv_ent_exp(e);
    if (at < 0) {
        kv_reply_int(c->out, -1);
        return;
    }
    int64_t left = at - now(c);
    if (left < 0)
        left = 0;
    kv_reply_int(c->out, ms ? left : (left + 500) / 1000);
}

static void cmd_ttl(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    ttl_generic(c, argv, false);
}
static void cmd_pttl(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    ttl_generic(c, argv, true);
}

static void cmd_persist(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    kv_ent **l;
    kv_ent *e = lookup(c, &argv[1], NULL, &l);
    if (e == NULL || !e->has_exp) {
        kv_reply_int(c->out, 0);
        return;
    }
    ent_persist(c, l, e);
    kv_reply_int(c->out, 1);
}

struct cron_walk {
    kv_db *db;
    int64_t now;
    uint64_t seen;
};

/* Active expiry: walk the table from a cursor, a budget at a time, and
 * drop what has expired (entries are unlinked by looking them up again,
 * since the scan callback has no link). */
void kv_db_cron(kv_db *db, uint64_t budget_us)
{
    uint64_t t0 = (uint64_t)kv_now_ms();
    int64_t tnow = kv_now_ms();
    uint64_t buckets = 0;
    while (db->nexp > 0 && db->d.count > 0) {
        /* one bucket's chain, looked at by hand so that expired entries
         * can be unlinked as we go */
        kv_dict *d = &db->d;
        for (int t = 0; t < 2 && db->nexp > 0; t++) {
            if (d->t[t] == NULL || (t == 1 && d->rehash < 0))
                continue;
            uint64_t i = db->exp_cursor & d->mask[t];
            if (t == 0 && d->rehash >= 0 && i < (uint64_t)d->rehash)
                continue;
            kv_ent **l = &d->t[t][i];
            while (*l != NULL) {
                kv_ent *e = *l;
                if (e->has_exp && kv_ent_exp(e) <= tnow) {
                    *l = e->next;
                    d->count--;
                    db->nexp--;
                    ent_free(e);
                    bump(&db->st.expired, 1);
                } else {
                    l = &e->next;
                }
            }
        }
        db->exp_cursor++;
        if (++buckets % 1024 == 0 && ((uint64_t)kv_now_ms() - t0) * 1000 >= budget_us)
            break;
        if (buckets > d->mask[0] + 1)
            break; /* a whole lap this time */
    }
    /* finish resizes that reads alone would not */
    for (int i = 0; i < 64 && kv_dict_rehash_step(&db->d, 100); i++)
        if (((uint64_t)kv_now_ms() - t0) * 1000 >= budget_us)
            break;
    kv_dict_maybe_shrink(&db->d);
    sync_counts(db);
}

/* ---- strings --------------------------------------------------------------- */

static void cmd_get(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    kv_ent *e = lookup_read(c, &argv[1], NULL);
    if (e == NULL)
        kv_reply_null(c->out);
    else if (e->type != KV_STRING)
        kv_reply_err(c->out, E_WRONGTYPE);
    else
        kv_reply_bulk(c->out, kv_ent_val(e), e->vlen);
}

/* SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL] */
static void cmd_set(kv_ctx *c, int argc, kv_slice *argv)
{
    bool nx = false, xx = false, get = false, keepttl = false;
    int64_t exp = -1;
    int expflags = 0;
    for (int i = 3; i < argc; i++) {
        kv_slice *a = &argv[i];
        if (arg_is(a, "nx") && !xx)
            nx = true;
        else if (arg_is(a, "xx") && !nx)
            xx = true;
        else if (arg_is(a, "get"))
            get = true;
        else if (arg_is(a, "keepttl") && !expflags)
            keepttl = true, expflags++;
        else if ((arg_is(a, "ex") || arg_is(a, "px") || arg_is(a, "exat") || arg_is(a, "pxat")) &&
                 !expflags && !keepttl && i + 1 < argc) {
            long long t;
            if (!arg_ll_or_reply(c, &argv[i + 1], &t))
                return;
            bool sec = arg_is(a, "ex") || arg_is(a, "exat");
            bool abs = arg_is(a, "exat") || arg_is(a, "pxat");
            if (t <= 0 || (sec && t > INT64_MAX / 1000)) {
                kv_reply_err(c->out, "ERR invalid expire time in 'set' command");
                return;
            }
            exp = sec ? t * 1000 : t;
            if (!abs) {
                if (exp > INT64_MAX - now(c)) {
                    kv_reply_err(c->out, "ERR invalid expire time in 'set' command");
                    return;
                }
                exp += now(c);
            }
            expflags++;
            i++;
        } else {
            kv_reply_err(c->out, E_SYNTAX);
            return;
        }
    }
    uint64_t h;
    kv_ent **l;
    kv_ent *old = lookup(c, &argv[1], &h, &l);
    if (get) {
        if (old != NULL && old->type != KV_STRING) {
            kv_reply_err(c->out, E_WRONGTYPE);
            return;
        }
    }
    if ((nx && old != NULL) || (xx && old == NULL)) {
        if (get) {
            if (old == NULL)
                kv_reply_null(c->out);
            else
                kv_reply_bulk(c->out, kv_ent_val(old), old->vlen);
        } else {
            kv_reply_null(c->out);
        }
        return;
    }
    if (keepttl && old != NULL)
        exp = kv_ent_exp(old);
    if (get) {
        if (old == NULL)
            kv_reply_null(c->out);
        else
            kv_reply_bulk(c->out, kv_ent_val(old), old->vlen);
    }
    if (!set_string(c, &argv[1], old, l, h, argv[2].p, argv[2].len, exp))
        return;
    if (!get)
        kv_reply_ok(c->out);
}

static void cmd_setnx(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    uint64_t h;
    kv_ent **l;
    kv_ent *old = lookup(c, &argv[1], &h, &l);
    if (old != NULL) {
        kv_reply_int(c->out, 0);
        return;
    }
    if (set_string(c, &argv[1], NULL, l, h, argv[2].p, argv[2].len, -1))
        kv_reply_int(c->out, 1);
}

static void cmd_setex_generic(kv_ctx *c, kv_slice *argv, int64_t unit, const char *name)
{
    long long t;
    if (!arg_ll_or_reply(c, &argv[2], &t))
        return;
    if (t <= 0 || t > INT64_MAX / unit / 2) {
        kv_reply_errf(c->out, "ERR invalid expire time in '%s' command", name);
        return;
    }
    uint64_t h;
    kv_ent **l;
    kv_ent *old = lookup(c, &argv[1], &h, &l);
    if (set_string(c, &argv[1], old, l, h, argv[3].p, argv[3].len, now(c) + t * unit))
        kv_reply_ok(c->out);
}

static void cmd_setex(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    cmd_setex_generic(c, argv, 1000, "setex");
}
static void cmd_psetex(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    cmd_setex_generic(c, argv, 1, "psetex");
}

static void cmd_getset(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    uint64_t h;
    kv_ent **l;
    kv_ent *old = lookup(c, &argv[1], &h, &l);
    if (old != NULL && old->type != KV_STRING) {
        kv_reply_err(c->out, E_WRONGTYPE);
        return;
    }
    if (old == NULL)
        kv_reply_null(c->out);
    else
        kv_reply_bulk(c->out, kv_ent_val(old), old->vlen);
    size_t mark = c->out->len;
    if (!set_string(c, &argv[1], old, l, h, argv[2].p, argv[2].len, -1))
        c->out->len = mark; /* keep one reply: the OOM error replaces it */
}

static void cmd_mget(kv_ctx *c, int argc, kv_slice *argv)
{
    if (!c->part)
        kv_reply_hdr(c->out, '*', argc - 1);
    for (int i = 1; i < argc; i++) {
        kv_ent *e = lookup_read(c, &argv[i], NULL);
        if (e == NULL || e->type != KV_STRING)
            kv_reply_null(c->out);
        else
            kv_reply_bulk(c->out, kv_ent_val(e), e->vlen);
    }
}

static void cmd_mset(kv_ctx *c, int argc, kv_slice *argv)
{
    if (argc % 2 == 0) {
        kv_reply_err(c->out, "ERR wrong number of arguments for 'mset' command");
        return;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        uint64_t h;
        kv_ent **l;
        kv_ent *old = lookup(c, &argv[i], &h, &l);
        size_t mark = c->out->len;
        if (!set_string(c, &argv[i], old, l, h, argv[i + 1].p, argv[i + 1].len, -1)) {
            c->out->len = mark;
            kv_reply_err(c->out, E_OOM);
            return;
        }
    }
    kv_reply_ok(c->out);
}

static void incr_generic(kv_ctx *c, kv_slice *argv, long long by)
{
    uint64_t h;
    kv_ent **l;
    bool bad;
    kv_ent *e = lookup_type(c, &argv[1], KV_STRING, &h, &l, &bad);
    if (bad)
        return;
    long long v = 0;
    if (e != NULL && !resp_str2ll(kv_ent_val(e), e->vlen, &v)) {
        kv_reply_err(c->out, E_NOTINT);
        return;
    }
    if ((by < 0 && v < 0 && by < LLONG_MIN - v) || (by > 0 && v > 0 && by > LLONG_MAX - v)) {
        kv_reply_err(c->out, E_OVERFLOW);
        return;
    }
    v += by;
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    if (set_string(c, &argv[1], e, l, h, tmp, (size_t)n, e != NULL ? kv_ent_exp(e) : -1))
        kv_reply_int(c->out, v);
}

static void cmd_incr(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    incr_generic(c, argv, 1);
}
static void cmd_decr(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    incr_generic(c, argv, -1);
}
static void cmd_incrby(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    long long by;
    if (arg_ll_or_reply(c, &argv[2], &by))
        incr_generic(c, argv, by);
}
static void cmd_decrby(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    long long by;
    if (!arg_ll_or_reply(c, &argv[2], &by))
        return;
    if (by == LLONG_MIN) {
        kv_reply_err(c->out, "ERR decrement would overflow");
        return;
    }
    incr_generic(c, argv, -by);
}

static void cmd_append(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    uint64_t h;
    kv_ent **l;
    bool bad;
    kv_ent *e = lookup_type(c, &argv[1], KV_STRING, &h, &l, &bad);
    if (bad)
        return;
    if (e == NULL) {
        if (set_string(c, &argv[1], NULL, l, h, argv[2].p, argv[2].len, -1))
            kv_reply_int(c->out, (long long)argv[2].len);
        return;
    }
    size_t nl = e->vlen + argv[2].len;
    if (nl > RESP_DEFAULT_MAX_BULK || nl > KV_MAX_LEN) {
        kv_reply_err(c->out, E_TOOBIG);
        return;
    }
    size_t head = sizeof(kv_ent) + (e->has_exp ? 8 : 0) + e->klen;
    kv_ent *ne = weft__realloc(e, head + nl);
    if (ne == NULL) {
        kv_reply_err(c->out, E_OOM);
        return;
    }
    memcpy((char *)ne + head + ne->vlen, argv[2].p, argv[2].len);
    ne->vlen = nl;
    *l = ne;
    kv_reply_int(c->out, (long long)nl);
}

static void cmd_strlen(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    kv_ent *e = lookup_read(c, &argv[1], NULL);
    if (e != NULL && e->type != KV_STRING)
        kv_reply_err(c->out, E_WRONGTYPE);
    else
        kv_reply_int(c->out, e == NULL ? 0 : (long long)e->vlen);
}

/* ---- lists ----------------------------------------------------------------- */

static kv_blob *blob_new(const kv_slice *a)
{
    kv_blob *b = weft__malloc(sizeof(kv_blob) + a->len);
    if (b != NULL) {
        b->len = (uint32_t)a->len;
        memcpy(b->d, a->p, a->len);
    }
    return b;
}

static bool list_grow(kv_list *l)
{
    uint64_t cap = l->cap ? l->cap * 2 : 8;
    kv_blob **a = weft__malloc(cap * sizeof(*a));
    if (a == NULL)
        return false;
    for (uint64_t i = 0; i < l->len; i++)
        a[i] = l->a[(l->head + i) & (l->cap - 1)];
    weft__free(l->a);
    l->a = a;
    l->cap = cap;
    l->head = 0;
    return true;
}

static kv_blob *list_at(kv_list *l, uint64_t i)
{
    return l->a[(l->head + i) & (l->cap - 1)];
}

/* The list at key, made if missing (create). NULL with a reply written
 * when it cannot be had (wrong type, no memory) or is missing. */
static kv_list *get_list(kv_ctx *c, const kv_slice *k, bool create, bool *replied)
{
    uint64_t h;
    kv_ent **l;
    bool bad;
    kv_ent *e = lookup_type(c, k, KV_LIST, &h, &l, &bad);
    *replied = bad;
    if (bad)
        return NULL;
    if (e != NULL)
        return kv_ent_ptr(e);
    if (!create)
        return NULL;
    kv_list *li = weft__calloc(1, sizeof(*li));
    if (li == NULL || new_container(c, k, KV_LIST, li, h) == NULL) {
        weft__free(li);
        kv_reply_err(c->out, E_OOM);
        *replied = true;
        return NULL;
    }
    return li;
}

static void push_generic(kv_ctx *c, int argc, kv_slice *argv, bool left, bool only_existing)
{
    bool replied;
    kv_list *l = get_list(c, &argv[1], !only_existing, &replied);
    if (replied)
        return;
    if (l == NULL) {
        kv_reply_int(c->out, 0);
        return;
    }
    for (int i = 2; i < argc; i++) {
        kv_blob *b = blob_new(&argv[i]);
        if (b == NULL || (l->len == l->cap && !list_grow(l))) {
            weft__free(b);
            kv_reply_err(c->out, E_OOM);
            drop_if_empty(c, &argv[1], l->len);
            return;
        }
        if (left) {
            l->head = (l->head - 1) & (l->cap - 1);
            l->a[l->head] = b;
        } else {
            l->a[(l->head + l->len) & (l->cap - 1)] = b;
        }
        l->len++;
    }
    kv_reply_int(c->out, (long long)l->len);
}

static void cmd_lpush(kv_ctx *c, int argc, kv_slice *argv)
{
    push_generic(c, argc, argv, true, false);
}
static void cmd_rpush(kv_ctx *c, int argc, kv_slice *argv)
{
    push_generic(c, argc, argv, false, false);
}
static void cmd_lpushx(kv_ctx *c, int argc, kv_slice *argv)
{
    push_generic(c, argc, argv, true, true);
}
static void cmd_rpushx(kv_ctx *c, int argc, kv_slice *argv)
{
    push_generic(c, argc, argv, false, true);
}

static void pop_generic(kv_ctx *c, int argc, kv_slice *argv, bool left)
{
    long long count = 1;
    bool has_count = argc == 3;
    if (argc > 3) {
        kv_reply_errf(c->out, "ERR wrong number of arguments for '%s' command",
                      left ? "lpop" : "rpop");
        return;
    }
    if (has_count && (!arg_ll(&argv[2], &count) || count < 0)) {
        kv_reply_err(c->out, "ERR value is out of range, must be positive");
        return;
    }
    bool replied;
    kv_list *l = get_list(c, &argv[1], false, &replied);
    if (replied)
        return;
    if (l == NULL) {
        if (has_count)
            kv_reply_null_array(c->out);
        else
            kv_reply_null(c->out);
        return;
    }
    if (has_count) {
        if ((uint64_t)count > l->len)
            count = (long long)l->len;
        kv_reply_hdr(c->out, '*', count);
    }
    for (long long i = 0; i < count; i++) {
        kv_blob *b;
        if (left) {
            b = l->a[l->head];
            l->head = (l->head + 1) & (l->cap - 1);
        } else {
            b = list_at(l, l->len - 1);
        }
        l->len--;
        kv_reply_bulk(c->out, b->d, b->len);
        weft__free(b);
    }
    drop_if_empty(c, &argv[1], l->len);
}

static void cmd_lpop(kv_ctx *c, int argc, kv_slice *argv)
{
    pop_generic(c, argc, argv, true);
}
static void cmd_rpop(kv_ctx *c, int argc, kv_slice *argv)
{
    pop_generic(c, argc, argv, false);
}

static void cmd_llen(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_list *l = get_list(c, &argv[1], false, &replied);
    if (!replied)
        kv_reply_int(c->out, l == NULL ? 0 : (long long)l->len);
}

/* Redis's start/stop normalisation: a [start, end] within [0, len), or
 * false for an empty range. */
static bool range_norm(long long start, long long end, long long len, long long *s, long long *e)
{
    if (start < 0)
        start += len;
    if (end < 0)
        end += len;
    if (start < 0)
        start = 0;
    if (start > end || start >= len)
        return false;
    if (end >= len)
        end = len - 1;
    *s = start;
    *e = end;
    return true;
}

static void cmd_lrange(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    long long start, end, s, e;
    if (!arg_ll_or_reply(c, &argv[2], &start) || !arg_ll_or_reply(c, &argv[3], &end))
        return;
    bool replied;
    kv_list *l = get_list(c, &argv[1], false, &replied);
    if (replied)
        return;
    if (l == NULL || !range_norm(start, end, (long long)l->len, &s, &e)) {
        KV_LIT(c->out, "*0\r\n");
        return;
    }
    kv_reply_hdr(c->out, '*', e - s + 1);
    for (long long i = s; i <= e; i++) {
        kv_blob *b = list_at(l, (uint64_t)i);
        kv_reply_bulk(c->out, b->d, b->len);
    }
}

static void cmd_lindex(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    long long i;
    if (!arg_ll_or_reply(c, &argv[2], &i))
        return;
    bool replied;
    kv_list *l = get_list(c, &argv[1], false, &replied);
    if (replied)
        return;
    if (l != NULL && i < 0)
        i += (long long)l->len;
    if (l == NULL || i < 0 || (uint64_t)i >= l->len) {
        kv_reply_null(c->out);
        return;
    }
    kv_blob *b = list_at(l, (uint64_t)i);
    kv_reply_bulk(c->out, b->d, b->len);
}

/* ---- sets and hashes (a kv_dict of members / fields) ---------------------- */

static kv_dict *get_dict(kv_ctx *c, const kv_slice *k, int type, bool create, bool *replied)
{
    uint64_t h;
    kv_ent **l;
    bool bad;
    kv_ent *e = lookup_type(c, k, type, &h, &l, &bad);
    *replied = bad;
    if (bad)
        return NULL;
    if (e != NULL)
        return kv_ent_ptr(e);
    if (!create)
        return NULL;
    kv_dict *d = weft__malloc(sizeof(*d));
    if (d != NULL)
        kv_dict_init(d);
    if (d == NULL || new_container(c, k, type, d, h) == NULL) {
        weft__free(d);
        kv_reply_err(c->out, E_OOM);
        *replied = true;
        return NULL;
    }
    return d;
}

static void cmd_sadd(kv_ctx *c, int argc, kv_slice *argv)
{
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_SET, true, &replied);
    if (replied)
        return;
    long long added = 0;
    for (int i = 2; i < argc; i++) {
        uint64_t h = kv_hash(argv[i].p, argv[i].len);
        if (kv_dict_find(d, argv[i].p, argv[i].len, h, NULL) != NULL)
            continue;
        kv_ent *m = kv_ent_new(argv[i].p, argv[i].len, 0, KV_STRING, false);
        if (m == NULL) {
            kv_reply_err(c->out, E_OOM);
            drop_if_empty(c, &argv[1], d->count);
            return;
        }
        kv_dict_add(d, m, h);
        added++;
    }
    kv_reply_int(c->out, added);
}

static void cmd_srem(kv_ctx *c, int argc, kv_slice *argv)
{
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_SET, false, &replied);
    if (replied)
        return;
    long long n = 0;
    for (int i = 2; d != NULL && i < argc; i++) {
        kv_ent **l;
        if (kv_dict_find(d, argv[i].p, argv[i].len, kv_hash(argv[i].p, argv[i].len), &l)) {
            weft__free(kv_dict_unlink(d, l));
            n++;
        }
    }
    if (d != NULL) {
        kv_dict_maybe_shrink(d);
        drop_if_empty(c, &argv[1], d->count);
    }
    kv_reply_int(c->out, n);
}

struct members_walk {
    kv_buf *out;
    bool values;
};

static void members_cb(kv_ent *e, void *arg)
{
    struct members_walk *w = arg;
    kv_reply_bulk(w->out, kv_ent_key(e), e->klen);
    if (w->values)
        kv_reply_bulk(w->out, kv_ent_val(e), e->vlen);
}

static void dict_all(kv_ctx *c, kv_dict *d, bool values)
{
    kv_reply_hdr(c->out, '*', d == NULL ? 0 : (long long)d->count * (values ? 2 : 1));
    if (d == NULL)
        return;
    struct members_walk w = {c->out, values};
    uint64_t cur = 0;
    do {
        cur = kv_dict_scan(d, cur, members_cb, &w);
    } while (cur != 0);
}

static void cmd_smembers(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_SET, false, &replied);
    if (!replied)
        dict_all(c, d, false);
}

static void cmd_sismember(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_SET, false, &replied);
    if (replied)
        return;
    bool in =
        d != NULL && kv_dict_find(d, argv[2].p, argv[2].len, kv_hash(argv[2].p, argv[2].len), NULL);
    kv_reply_int(c->out, in);
}

static void cmd_scard(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_SET, false, &replied);
    if (!replied)
        kv_reply_int(c->out, d == NULL ? 0 : (long long)d->count);
}

static void cmd_spop(kv_ctx *c, int argc, kv_slice *argv)
{
    long long count = 1;
    bool has_count = argc == 3;
    if (argc > 3) {
        kv_reply_err(c->out, E_SYNTAX);
        return;
    }
    if (has_count && (!arg_ll(&argv[2], &count) || count < 0)) {
        kv_reply_err(c->out, "ERR value is out of range, must be positive");
        return;
    }
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_SET, false, &replied);
    if (replied)
        return;
    if (d == NULL) {
        if (has_count)
            KV_LIT(c->out, "*0\r\n");
        else
            kv_reply_null(c->out);
        return;
    }
    if (has_count) {
        if ((uint64_t)count > d->count)
            count = (long long)d->count;
        kv_reply_hdr(c->out, '*', count);
    }
    for (long long i = 0; i < count; i++) {
        kv_ent **l;
        kv_ent *m = kv_dict_random(d, &c->db->rnd, &l);
        kv_reply_bulk(c->out, kv_ent_key(m), m->klen);
        aof_note_pop(c, &argv[1], kv_ent_key(m), m->klen);
        weft__free(kv_dict_unlink(d, l));
    }
    kv_dict_maybe_shrink(d);
    drop_if_empty(c, &argv[1], d->count);
}

static void cmd_hset(kv_ctx *c, int argc, kv_slice *argv)
{
    if (argc % 2 != 0) {
        kv_reply_errf(c->out, "ERR wrong number of arguments for '%.*s' command", (int)argv[0].len,
                      argv[0].p);
        return;
    }
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_HASH, true, &replied);
    if (replied)
        return;
    long long added = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        kv_slice *f = &argv[i], *v = &argv[i + 1];
        uint64_t h = kv_hash(f->p, f->len);
        kv_ent **l;
        kv_ent *old = kv_dict_find(d, f->p, f->len, h, &l);
        if (old != NULL && old->vlen == v->len) {
            memcpy(kv_ent_val(old), v->p, v->len);
            continue;
        }
        kv_ent *ne = kv_ent_new(f->p, f->len, v->len, KV_STRING, false);
        if (ne == NULL) {
            kv_reply_err(c->out, E_OOM);
            drop_if_empty(c, &argv[1], d->count);
            return;
        }
        memcpy(kv_ent_val(ne), v->p, v->len);
        if (old != NULL) {
            kv_dict_replace(l, ne);
            weft__free(old);
        } else {
            kv_dict_add(d, ne, h);
            added++;
        }
    }
    if (argv[0].len == 5) /* HMSET */
        kv_reply_ok(c->out);
    else
        kv_reply_int(c->out, added);
}

static void cmd_hget(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_HASH, false, &replied);
    if (replied)
        return;
    kv_ent *f =
        d == NULL ? NULL
                  : kv_dict_find(d, argv[2].p, argv[2].len, kv_hash(argv[2].p, argv[2].len), NULL);
    if (f == NULL)
        kv_reply_null(c->out);
    else
        kv_reply_bulk(c->out, kv_ent_val(f), f->vlen);
}

static void cmd_hdel(kv_ctx *c, int argc, kv_slice *argv)
{
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_HASH, false, &replied);
    if (replied)
        return;
    long long n = 0;
    for (int i = 2; d != NULL && i < argc; i++) {
        kv_ent **l;
        if (kv_dict_find(d, argv[i].p, argv[i].len, kv_hash(argv[i].p, argv[i].len), &l)) {
            weft__free(kv_dict_unlink(d, l));
            n++;
        }
    }
    if (d != NULL) {
        kv_dict_maybe_shrink(d);
        drop_if_empty(c, &argv[1], d->count);
    }
    kv_reply_int(c->out, n);
}

static void cmd_hgetall(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_HASH, false, &replied);
    if (!replied)
        dict_all(c, d, true);
}

static void cmd_hlen(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_dict *d = get_dict(c, &argv[1], KV_HASH, false, &replied);
    if (!replied)
        kv_reply_int(c->out, d == NULL ? 0 : (long long)d->count);
}

/* ---- sorted sets ----------------------------------------------------------- */

static int zs_level(kv_db *db)
{
    int l = 1;
    while (l < ZS_MAXLEVEL && (rnd(db) & 3) == 0)
        l++;
    return l;
}

static zs_node *zs_node_new(int lvl, double score, kv_ent *m)
{
    zs_node *n = weft__calloc(1, sizeof(zs_node) + (size_t)lvl * sizeof(zs_node *));
    if (n != NULL) {
        n->lvl = (uint32_t)lvl;
        n->score = score;
        n->m = m;
    }
    return n;
}

/* (score, member) of node n before (s, m)? */
static bool zs_before(const zs_node *n, double s, const char *m, size_t ml)
{
    if (n->score != s)
        return n->score < s;
    size_t nl = n->m->klen, k = nl < ml ? nl : ml;
    int r = memcmp(kv_ent_key(n->m), m, k);
    return r < 0 || (r == 0 && nl < ml);
}

static kv_zset *zset_new(void)
{
    kv_zset *z = weft__calloc(1, sizeof(*z));
    if (z == NULL)
        return NULL;
    z->head = zs_node_new(ZS_MAXLEVEL, 0, NULL);
    if (z->head == NULL) {
        weft__free(z);
        return NULL;
    }
    kv_dict_init(&z->d);
    z->level = 1;
    return z;
}

static void zs_insert(kv_zset *z, zs_node *n)
{
    zs_node *update[ZS_MAXLEVEL];
    zs_node *x = z->head;
    const char *m = kv_ent_key(n->m);
    size_t ml = n->m->klen;
    for (int i = z->level - 1; i >= 0; i--) {
        while (x->fw[i] != NULL && zs_before(x->fw[i], n->score, m, ml))
            x = x->fw[i];
        update[i] = x;
    }
    int lvl = (int)n->lvl;
    for (int i = z->level; i < lvl; i++)
        update[i] = z->head;
    if (lvl > z->level)
        z->level = lvl;
    for (int i = 0; i < lvl; i++) {
        n->fw[i] = update[i]->fw[i];
        update[i]->fw[i] = n;
    }
    n->back = update[0] == z->head ? NULL : update[0];
    if (n->fw[0] != NULL)
        n->fw[0]->back = n;
    else
        z->tail = n;
}

static void zs_remove(kv_zset *z, zs_node *n)
{
    zs_node *update[ZS_MAXLEVEL];
    zs_node *x = z->head;
    const char *m = kv_ent_key(n->m);
    size_t ml = n->m->klen;
    for (int i = z->level - 1; i >= 0; i--) {
        while (x->fw[i] != NULL && x->fw[i] != n && zs_before(x->fw[i], n->score, m, ml))
            x = x->fw[i];
        update[i] = x;
    }
    for (int i = 0; i < z->level; i++)
        if (update[i]->fw[i] == n)
            update[i]->fw[i] = n->fw[i];
    if (n->fw[0] != NULL)
        n->fw[0]->back = n->back;
    else
        z->tail = n->back;
    while (z->level > 1 && z->head->fw[z->level - 1] == NULL)
        z->level--;
}

static kv_zset *get_zset(kv_ctx *c, const kv_slice *k, bool create, bool *replied)
{
    uint64_t h;
    kv_ent **l;
    bool bad;
    kv_ent *e = lookup_type(c, k, KV_ZSET, &h, &l, &bad);
    *replied = bad;
    if (bad)
        return NULL;
    if (e != NULL)
        return kv_ent_ptr(e);
    if (!create)
        return NULL;
    kv_zset *z = zset_new();
    if (z == NULL || new_container(c, k, KV_ZSET, z, h) == NULL) {
        if (z != NULL)
            zset_free(z);
        kv_reply_err(c->out, E_OOM);
        *replied = true;
        return NULL;
    }
    return z;
}

static zs_node *zs_of(kv_ent *m)
{
    return kv_ent_ptr(m);
}

/* Remove member entry m (at link l) and its node. */
static void zs_delete(kv_zset *z, kv_ent **l)
{
    kv_ent *m = kv_dict_unlink(&z->d, l);
    zs_node *n = zs_of(m);
    zs_remove(z, n);
    weft__free(n);
    weft__free(m);
}

/* ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...] */
static void cmd_zadd(kv_ctx *c, int argc, kv_slice *argv)
{
    bool nx = false, xx = false, gt = false, lt = false, ch = false, incr = false;
    int i = 2;
    for (; i < argc; i++) {
        if (arg_is(&argv[i], "nx"))
            nx = true;
        else if (arg_is(&argv[i], "xx"))
            xx = true;
        else if (arg_is(&argv[i], "gt"))
            gt = true;
        else if (arg_is(&argv[i], "lt"))
            lt = true;
        else if (arg_is(&argv[i], "ch"))
            ch = true;
        else if (arg_is(&argv[i], "incr"))
            incr = true;
        else
            break;
    }
    int pairs = argc - i;
    if (pairs == 0 || pairs % 2 != 0) {
        kv_reply_err(c->out, E_SYNTAX);
        return;
    }
    if (nx && xx) {
        kv_reply_err(c->out, "ERR XX and NX options at the same time are not compatible");
        return;
    }
    if ((gt && nx) || (lt && nx) || (gt && lt)) {
        kv_reply_err(c->out, "ERR GT, LT, and/or NX options at the same time are not compatible");
        return;
    }
    if (incr && pairs > 2) {
        kv_reply_err(c->out, "ERR INCR option supports a single increment-element pair");
        return;
    }
    for (int j = i; j < argc; j += 2) {
        double d;
        if (!arg_double(&argv[j], &d)) {
            kv_reply_err(c->out, E_NOTFLOAT);
            return;
        }
    }
    bool replied;
    kv_zset *z = get_zset(c, &argv[1], !xx, &replied);
    if (replied)
        return;
    if (z == NULL) {
        if (incr)
            kv_reply_null(c->out);
        else
            kv_reply_int(c->out, 0);
        return;
    }
    long long added = 0, changed = 0;
    double last = 0;
    bool skipped = false;
    for (int j = i; j < argc; j += 2) {
        double s;
        arg_double(&argv[j], &s);
        kv_slice *mem = &argv[j + 1];
        uint64_t h = kv_hash(mem->p, mem->len);
        kv_ent **l;
        kv_ent *m = kv_dict_find(&z->d, mem->p, mem->len, h, &l);
        if (m != NULL) {
            zs_node *n = zs_of(m);
            if (nx) {
                skipped = true;
                continue;
            }
            if (incr) {
                s += n->score;
                if (isnan(s)) {
                    kv_reply_err(c->out, "ERR resulting score is not a number (NaN)");
                    return;
                }
            }
            if ((gt && s <= n->score) || (lt && s >= n->score)) {
                skipped = true;
                continue;
            }
            last = s;
            if (s != n->score) {
                zs_remove(z, n);
                n->score = s;
                zs_insert(z, n);
                changed++;
            }
        } else {
            if (xx) {
                skipped = true;
                continue;
            }
            m = kv_ent_new(mem->p, mem->len, sizeof(void *), KV_ZMEMBER, false);
            zs_node *n = m == NULL ? NULL : zs_node_new(zs_level(c->db), s, m);
            if (n == NULL) {
                weft__free(m);
                kv_reply_err(c->out, E_OOM);
                drop_if_empty(c, &argv[1], z->d.count);
                return;
            }
            memcpy(kv_ent_val(m), &n, sizeof(n));
            kv_dict_add(&z->d, m, h);
            zs_insert(z, n);
            added++;
            last = s;
        }
    }
    if (incr) {
        if (skipped)
            kv_reply_null(c->out);
        else
            kv_reply_double(c->out, last);
    } else {
        kv_reply_int(c->out, ch ? added + changed : added);
    }
    drop_if_empty(c, &argv[1], z->d.count);
}

static void cmd_zscore(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_zset *z = get_zset(c, &argv[1], false, &replied);
    if (replied)
        return;
    kv_ent *m = z == NULL ? NULL
                          : kv_dict_find(&z->d, argv[2].p, argv[2].len,
                                         kv_hash(argv[2].p, argv[2].len), NULL);
    if (m == NULL)
        kv_reply_null(c->out);
    else
        kv_reply_double(c->out, zs_of(m)->score);
}

static void cmd_zcard(kv_ctx *c, int argc, kv_slice *argv)
{
    (void)argc;
    bool replied;
    kv_zset *z = get_zset(c, &argv[1], false, &replied);
    if (!replied)
        kv_reply_int(c->out, z == NULL ? 0 : (long long)z->d.count);
}

static void zs_reply_node(kv_ctx *c, zs_node *n, bool scores)
{
    kv_reply_bulk(c->out, kv_ent_key(n->m), n->m->klen);
    if (scores)
        kv_reply_double(c->out, n->score);
}

/* ZRANGE key start stop [REV] [WITHSCORES] (by index). */
static void cmd_zrange(kv_ctx *c, int argc, kv_slice *argv)
{
    long long start, end, s, e;
    bool scores = false, rev = false;
    for (int i = 4; i < argc; i++) {
        if (arg_is(&argv[i], "withscores"))
            scores = true;
        else if (arg_is(&argv[i], "rev"))
            rev = true;
        else {
            kv_reply_err(c->out, E_SYNTAX);
            return;
        }
    }
    if (!arg_ll_or_reply(c, &argv[2], &start) || !arg_ll_or_reply(c, &argv[3], &end))
        return;
    bool replied;
    kv_zset *z = get_zset(c, &argv[1], false, &replied);
    if (replied)
        return;
    long long len = z == NULL ? 0 : (long long)z->d.count;
    if (z == NULL || !range_norm(start, end, len, &s, &e)) {
        KV_LIT(c->out, "*0\r\n");
        return;
    }
    long long n = e - s + 1;
    kv_reply_hdr(c->out, '*', scores ? n * 2 : n);
    zs_node *x;
    if (!rev) {
        x = z->head->fw[0];
        for (long long i = 0; i < s; i++)
            x = x->fw[0];
        for (long long i = 0; i < n; i++, x = x->fw[0])
            zs_reply_node(c, x, scores);
    } else {
        x = z->tail;
        for (long long i = 0; i < s; i++)
            x = x->back;
        for (long long i = 0; i < n; i++, x = x->back)
            zs_reply_node(c, x, scores);
    }
}

static void cmd_zpopmin(kv_ctx *c, int argc, kv_slice *argv)
{
    long long count = 1;
    if (argc > 3) {
        kv_reply_err(c->out, E_SYNTAX);
        return;
    }
    if (argc == 3 && (!arg_ll(&argv[2], &count) || count < 0)) {
        kv_reply_err(c->out, "ERR value is out of range, must be positive");
        return;
    }
    bool replied;
    kv_zset *z = get_zset(c, &argv[1], false, &replied);
    if (replied)
        return;
    if (z == NULL) {
        KV_LIT(c->out, "*0\r\n");
        return;
    }
    if ((uint64_t)count > z->d.count)
        count = (long long)z->d.count;
    kv_reply_hdr(c->out, '*', count * 2);
    for (long long i = 0; i < count; i++) {
        zs_node *n = z->head->fw[0];
        zs_reply_node(c, n, true);
        kv_ent **l;
        kv_dict_find(&z->d, kv_ent_key(n->m), n->m->klen, kv_hash(kv_ent_key(n->m), n->m->klen),
                     &l);
        aof_note_zpop(c, &argv[1], kv_ent_key(n->m), n->m->klen);
        zs_delete(z, l);
    }
    drop_if_empty(c, &argv[1], z->d.count);
}

static void cmd_zrem(kv_ctx *c, int argc, kv_slice *argv)
{
    bool replied;
    kv_zset *z = get_zset(c, &argv[1], false, &replied);
    if (replied)
        return;
    long long n = 0;
    for (int i = 2; z != NULL && i < argc; i++) {
        kv_ent **l;
        if (kv_dict_find(&z->d, argv[i].p, argv[i].len, kv_hash(argv[i].p, argv[i].len), &l)) {
            zs_delete(z, l);
            n++;
        }
    }
    if (z != NULL)
        drop_if_empty(c, &argv[1], z->d.count);
    kv_reply_int(c->out, n);
}

/* ---- glob ------------------------------------------------------------------ */

static int fold(int ch, bool nocase)
{
    return nocase ? tolower(ch) : ch;
}

bool kv_glob(const char *p, size_t pl, const char *s, size_t sl, bool nocase)
{
    while (pl > 0 && sl > 0) {
        switch (*p) {
        case '*':
            while (pl > 1 && p[1] == '*')
                p++, pl--;
            if (pl == 1)
                return true;
            while (sl > 0) {
                if (kv_glob(p + 1, pl - 1, s, sl, nocase))
                    return true;
                s++, sl--;
            }
            return false;
        case '?':
            break;
        case '[': {
            p++, pl--;
            bool not = pl > 0 && *p == '^';
            if (not )
                p++, pl--;
            bool match = false;
            int ch = fold((unsigned char)*s, nocase);
            while (pl > 0 && *p != ']') {
                if (*p == '\\' && pl >= 2) {
                    p++, pl--;
                    if (fold((unsigned char)*p, nocase) == ch)
                        match = true;
                } else if (pl >= 3 && p[1] == '-') {
                    int a = fold((unsigned char)p[0], nocase),
                        b = fold((unsigned char)p[2], nocase);
                    if (a > b) {
                        int t = a;
                        a = b;
                        b = t;
                    }
                    if (ch >= a && ch <= b)
                        match = true;
                    p += 2, pl -= 2;
                } else if (fold((unsigned char)*p, nocase) == ch) {
                    match = true;
                }
                p++, pl--;
            }
            if (pl == 0) {
                /* no closing bracket: the last byte was taken as the end */
                p--, pl++;
            }
            if (not )
                match = !match;
            if (!match)
                return false;
            break;
        }
        case '\\':
            if (pl >= 2)
                p++, pl--;
            /* fall through */
        default:
            if (fold((unsigned char)*p, nocase) != fold((unsigned char)*s, nocase))
                return false;
            break;
        }
        p++, pl--;
        s++, sl--;
    }
    while (pl > 0 && *p == '*')
        p++, pl--;
    return pl == 0 && sl == 0;
}

/* ---- the table -------------------------------------------------------------- */

#define LOCAL(n, a, f)                    \
    {                                     \
        n, a, ROUTE_LOCAL, 0, 0, false, f \
    }
#define RD(n, a, f)                     \
    {                                   \
        n, a, ROUTE_KEY, 0, 0, false, f \
    }
#define WR(n, a, f)                    \
    {                                  \
        n, a, ROUTE_KEY, 0, 0, true, f \
    }
#define MULTI(n, a, m, s, w, f)       \
    {                                 \
        n, a, ROUTE_MULTI, m, s, w, f \
    }
#define ALL(n, a, m, w, f)          \
    {                               \
        n, a, ROUTE_ALL, m, 0, w, f \
    }

const kv_cmd kv_cmd_table[] = {
    LOCAL("ping", -1, cmd_ping),
    LOCAL("echo", 2, cmd_echo),
    LOCAL("select", 2, cmd_select),
    LOCAL("client", -2, kv_cmd_client),
    LOCAL("info", -1, kv_cmd_info),
    LOCAL("config", -2, kv_cmd_config),
    LOCAL("command", -1, NULL), /* server.c: needs the table */
    LOCAL("quit", -1, kv_cmd_quit),
    LOCAL("shutdown", -1, kv_cmd_shutdown),
    RD("get", 2, cmd_get),
    WR("set", -3, cmd_set),
    WR("setnx", 3, cmd_setnx),
    WR("setex", 4, cmd_setex),
    WR("psetex", 4, cmd_psetex),
    WR("getset", 3, cmd_getset),
    WR("incr", 2, cmd_incr),
    WR("decr", 2, cmd_decr),
    WR("incrby", 3, cmd_incrby),
    WR("decrby", 3, cmd_decrby),
    WR("append", 3, cmd_append),
    RD("strlen", 2, cmd_strlen),
    MULTI("mget", -2, MERGE_ORDER, 1, false, cmd_mget),
    MULTI("mset", -3, MERGE_OK, 2, true, cmd_mset),
    MULTI("del", -2, MERGE_SUM, 1, true, cmd_del),
    MULTI("unlink", -2, MERGE_SUM, 1, true, cmd_del),
    MULTI("exists", -2, MERGE_SUM, 1, false, cmd_exists),
    WR("expire", -3, cmd_expire),
    WR("pexpire", -3, cmd_pexpire),
    WR("expireat", -3, cmd_expireat),
    WR("pexpireat", -3, cmd_pexpireat),
    RD("ttl", 2, cmd_ttl),
    RD("pttl", 2, cmd_pttl),
    WR("persist", 2, cmd_persist),
    RD("type", 2, cmd_type),
    ALL("keys", 2, MERGE_CONCAT, false, cmd_keys),
    {"scan", -2, ROUTE_SCAN, 0, 0, false, cmd_scan},
    ALL("dbsize", 1, MERGE_SUM, false, cmd_dbsize),
    ALL("flushdb", -1, MERGE_OK, true, cmd_flushdb),
    ALL("flushall", -1, MERGE_OK, true, cmd_flushdb),
    WR("lpush", -3, cmd_lpush),
    WR("rpush", -3, cmd_rpush),
    WR("lpushx", -3, cmd_lpushx),
    WR("rpushx", -3, cmd_rpushx),
    WR("lpop", -2, cmd_lpop),
    WR("rpop", -2, cmd_rpop),
    RD("llen", 2, cmd_llen),
    RD("lrange", 4, cmd_lrange),
    RD("lindex", 3, cmd_lindex),
    WR("sadd", -3, cmd_sadd),
    WR("srem", -3, cmd_srem),
    RD("smembers", 2, cmd_smembers),
    RD("sismember", 3, cmd_sismember),
    RD("scard", 2, cmd_scard),
    WR("spop", -2, cmd_spop),
    WR("hset", -4, cmd_hset),
    WR("hmset", -4, cmd_hset),
    RD("hget", 3, cmd_hget),
    WR("hdel", -3, cmd_hdel),
    RD("hgetall", 2, cmd_hgetall),
    RD("hlen", 2, cmd_hlen),
    WR("zadd", -4, cmd_zadd),
    RD("zrange", -4, cmd_zrange),
    RD("zscore", 3, cmd_zscore),
    WR("zpopmin", -2, cmd_zpopmin),
    RD("zcard", 2, cmd_zcard),
    WR("zrem", -3, cmd_zrem),
};
const unsigned kv_cmd_count = sizeof(kv_cmd_table) / sizeof(kv_cmd_table[0]);

/* A small open-addressing index of the table by name, built on first use
 * (on the main thread, before any loop runs: kv_cmd_index_init). */
#define CMD_SLOTS 256
static const kv_cmd *cmd_slots[CMD_SLOTS];

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint32_t)(s[i] | 0x20)) * 16777619u;
    return h;
}

void kv_cmd_index_init(void)
{
    for (unsigned i = 0; i < kv_cmd_count; i++) {
        const kv_cmd *c = &kv_cmd_table[i];
        uint32_t h = name_hash(c->name, strlen(c->name)) & (CMD_SLOTS - 1);
        while (cmd_slots[h] != NULL)
            h = (h + 1) & (CMD_SLOTS - 1);
        cmd_slots[h] = c;
    }
}

/* s (n bytes, any case) equals the lower-case name? */
static bool name_eq(const char *name, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if (ch != name[i])
            return false;
    }
    return name[n] == '\0';
}

const kv_cmd *kv_cmd_lookup(const char *s, size_t n)
{
    if (n == 0 || n > 16)
        return NULL;
    uint32_t h = name_hash(s, n) & (CMD_SLOTS - 1);
    for (const kv_cmd *c; (c = cmd_slots[h]) != NULL; h = (h + 1) & (CMD_SLOTS - 1))
        if (name_eq(c->name, s, n))
            return c;
    return NULL;
}

void kv_exec(kv_ctx *c, const kv_cmd *cmd, int argc, kv_slice *argv)
{
    size_t mark = c->out->len;
    bump(&c->db->st.ops, 1);
    cmd->fn(c, argc, argv);
    if (cmd->write && c->db->aof != NULL && !c->loading && c->out->len > mark &&
        c->out->p[mark] != '-')
        aof_log(c, cmd, argc, argv);
}

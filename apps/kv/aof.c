/*
 * apps/kv/aof.c - the append-only file of a shard (aof.h, docs/kv.md).
 *
 * Why a thread and not the libuv bridge: with appendfsync always every
 * acknowledged write must be on disk before its reply leaves, and an
 * fsync takes milliseconds. A writer thread lets the loop serve other
 * connections meanwhile and turns every batch committed while one fsync
 * runs into one shared fsync (group commit); uv_fs_* requests would go
 * through libuv's shared pool of 4 threads, one request per write, with no
 * such batching, and the order of two queued writes to one file would be
 * ours to enforce.
 *
 * Between the loop and its writer: a mutex-protected queue of bytes and of
 * waiters (callbacks to run once the bytes before them are on disk). The
 * loop holds the mutex only to append; the writer swaps the queue out and
 * writes without it.
 */
#include "aof.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "types.h"

typedef struct aof_waiter {
    void (*done)(void *arg);
    void *arg;
} aof_waiter;

struct kv_aof {
    int fd;
    int mode;
    char path[4096];
    kv_buf pend; /* loop thread: logged since the last commit */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    kv_buf q;
    aof_waiter *w;
    size_t nw, wcap;
    kv_buf *rewrite;   /* a snapshot to replace the file with */
    size_t rewrite_at; /* bytes of q that still go to the old file */
    bool stop;
    uint64_t queued, synced; /* bytes handed to the writer / on disk */
    /* the writer's */
    pthread_t th;
    _Atomic uint64_t size;
    uint64_t base; /* size after the last rewrite */
    uint64_t rewrite_min;
    _Atomic uint64_t rewrites;
    bool rewriting; /* loop: a snapshot is with the writer */
    _Atomic bool rewrite_done;
};

static void put_cmd(kv_buf *b, int argc, const kv_slice *argv)
{
    kv_reply_hdr(b, '*', argc);
    for (int i = 0; i < argc; i++)
        kv_reply_bulk(b, argv[i].p, argv[i].len);
}

static void put_pexpireat(kv_buf *b, const char *key, size_t klen, int64_t at)
{
    char t[24];
    int n = snprintf(t, sizeof(t), "%" PRId64, at);
    kv_slice a[3] = {{"PEXPIREAT", 9}, {key, klen}, {t, (size_t)n}};
    put_cmd(b, 3, a);
}

void aof_log(kv_ctx *c, const kv_cmd *cmd, int argc, kv_slice *argv)
{
    kv_aof *a = c->db->aof;
    put_cmd(&a->pend, argc, argv);
    /* relative expiry times are written as the absolute time they gave */
    if (cmd->route == ROUTE_KEY && argc >= 2) {
        kv_ent *e =
            kv_dict_find(&c->db->d, argv[1].p, argv[1].len, kv_hash(argv[1].p, argv[1].len), NULL);
        if (e != NULL && e->has_exp)
            put_pexpireat(&a->pend, argv[1].p, argv[1].len, kv_ent_exp(e));
    }
}

static void note(kv_ctx *c, const char *verb, const kv_slice *key, const char *m, size_t ml)
{
    if (c->db->aof == NULL || c->loading)
        return;
    kv_slice a[3] = {{verb, strlen(verb)}, *key, {m, ml}};
    put_cmd(&c->db->aof->pend, 3, a);
}

void aof_note_pop(kv_ctx *c, const kv_slice *key, const char *m, size_t ml)
{
    note(c, "SREM", key, m, ml);
}

void aof_note_zpop(kv_ctx *c, const kv_slice *key, const char *m, size_t ml)
{
    note(c, "ZREM", key, m, ml);
}

static bool buf_append(kv_buf *dst, const kv_buf *src)
{
    kv_buf_put(dst, src->p, src->len);
    return !dst->oom;
}

bool aof_commit(kv_aof *a, void (*done)(void *arg), void *arg)
{
    bool wait = false;
    if (a->pend.len == 0 && a->mode != AOF_FSYNC_ALWAYS)
        return false;
    pthread_mutex_lock(&a->mu);
    if (a->pend.len > 0) {
        if (!buf_append(&a->q, &a->pend)) {
            fprintf(stderr, "weft-kv: out of memory for the append-only file; exiting\n");
            _exit(1);
        }
        a->queued += a->pend.len;
        a->pend.len = 0;
    }
    /* always: a reply waits for everything logged before it - a read too,
     * so that nobody is shown a write that could still be lost */
    if (a->mode == AOF_FSYNC_ALWAYS && a->synced < a->queued) {
        if (a->nw == a->wcap) {
            size_t cap = a->wcap ? a->wcap * 2 : 64;
            aof_waiter *w = weft__realloc(a->w, cap * sizeof(*w));
            if (w == NULL) {
                fprintf(stderr, "weft-kv: out of memory for the append-only file; exiting\n");
                _exit(1);
            }
            a->w = w;
            a->wcap = cap;
        }
        a->w[a->nw++] = (aof_waiter){done, arg};
        wait = true;
    }
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return wait;
}

static void write_all(kv_aof *a, int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            /* as Redis with appendfsync always: a write that cannot be
             * made durable ends the server rather than acknowledging it */
            fprintf(stderr, "weft-kv: writing %s: %s; exiting\n", a->path, strerror(errno));
            _exit(1);
        }
        p += w;
        n -= (size_t)w;
        if (fd == a->fd)
            atomic_fetch_add(&a->size, (uint64_t)w);
    }
}

static void sync_fd(kv_aof *a, int fd)
{
    if (fdatasync(fd) != 0) {
        fprintf(stderr, "weft-kv: fsync %s: %s; exiting\n", a->path, strerror(errno));
        _exit(1);
    }
}

/* Replace the file with the snapshot: tmp file, fsync, rename. */
static void do_rewrite(kv_aof *a, kv_buf *snap)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.rewrite", a->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "weft-kv: rewrite %s: %s (keeping the old file)\n", tmp, strerror(errno));
        return;
    }
    int old = a->fd;
    a->fd = fd;
    atomic_store(&a->size, 0);
    write_all(a, fd, snap->p, snap->len);
    sync_fd(a, fd);
    if (rename(tmp, a->path) != 0) {
        fprintf(stderr, "weft-kv: rename %s: %s\n", tmp, strerror(errno));
        close(fd);
        a->fd = old;
        return;
    }
    close(old);
    a->base = atomic_load(&a->size);
    atomic_fetch_add(&a->rewrites, 1);
}

static void *writer(void *arg)
{
    kv_aof *a = arg;
    kv_buf mine = {0};
    aof_waiter *w = NULL;
    size_t wcap = 0;
    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stop && a->q.len == 0 && a->nw == 0 && a->rewrite == NULL) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
            if (a->mode == AOF_FSYNC_EVERYSEC)
                break;
        }
        /* take the queue */
        kv_buf t = a->q;
        a->q = mine;
        mine = t;
        size_t nw = a->nw;
        if (nw > wcap) {
            aof_waiter *nwp = weft__realloc(w, a->wcap * sizeof(*w));
            if (nwp == NULL) {
                fprintf(stderr, "weft-kv: out of memory in the aof writer; exiting\n");
                _exit(1);
            }
            w = nwp;
            wcap = a->wcap;
        }
        if (nw > 0)
            memcpy(w, a->w, nw * sizeof(*w));
        a->nw = 0;
        kv_buf *snap = a->rewrite;
        size_t at = a->rewrite_at;
        a->rewrite = NULL;
        bool stop = a->stop;
        uint64_t upto = a->queued;
        pthread_mutex_unlock(&a->mu);

        if (snap != NULL) {
            write_all(a, a->fd, mine.p, at);
            do_rewrite(a, snap);
            write_all(a, a->fd, mine.p + at, mine.len - at);
            kv_buf_free(snap);
            weft__free(snap);
            atomic_store(&a->rewrite_done, true);
        } else {
            write_all(a, a->fd, mine.p, mine.len);
        }
        mine.len = 0;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (a->mode == AOF_FSYNC_ALWAYS || stop ||
            (a->mode == AOF_FSYNC_EVERYSEC && now.tv_sec != last.tv_sec)) {
            sync_fd(a, a->fd);
            last = now;
        }
        pthread_mutex_lock(&a->mu);
        a->synced = upto;
        pthread_mutex_unlock(&a->mu);
        for (size_t i = 0; i < nw; i++)
            w[i].done(w[i].arg);
        pthread_mutex_lock(&a->mu);
        if (stop && a->q.len == 0 && a->nw == 0)
            break;
    }
    pthread_mutex_unlock(&a->mu);
    kv_buf_free(&mine);
    weft__free(w);
    return NULL;
}

/* Replay the file; a torn last command is cut off. */
static int replay(kv_db *db, kv_aof *a, uint64_t max_bulk)
{
    struct stat st;
    if (fstat(a->fd, &st) != 0)
        return -errno;
    size_t n = (size_t)st.st_size;
    if (n == 0)
        return 0;
    char *buf = weft__malloc(n);
    if (buf == NULL)
        return -ENOMEM;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(a->fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            weft__free(buf);
            return r < 0 ? -errno : -EIO;
        }
        got += (size_t)r;
    }
    resp_parser_t ps;
    resp_parser_init(&ps, max_bulk);
    kv_slice *argv = NULL;
    size_t cap = 0, pos = 0, cmds = 0;
    kv_buf out = {0};
    kv_ctx c = {.db = db, .out = &out, .loading = true};
    int rc = 0;
    while (pos < n) {
        size_t used;
        int pr = resp_parse(&ps, buf + pos, n - pos, argv, cap, &used);
        if (pr == RESP_ROOM) {
            size_t nc = ps.need;
            kv_slice *na = weft__realloc(argv, nc * sizeof(*na));
            if (na == NULL) {
                rc = -ENOMEM;
                break;
            }
            argv = na;
            cap = nc;
            continue;
        }
        if (pr == RESP_MORE) {
            fprintf(stderr,
                    "weft-kv: %s: a torn last record (%zu bytes at offset %zu) is cut off\n",
                    a->path, n - pos, pos);
            if (ftruncate(a->fd, (off_t)pos) != 0)
                rc = -errno;
            break;
        }
        if (pr == RESP_ERR || buf[pos] != '*') {
            fprintf(stderr, "weft-kv: %s: bad record at offset %zu; not starting\n", a->path, pos);
            rc = -EINVAL;
            break;
        }
        pos += used;
        const kv_cmd *cmd = ps.argc ? kv_cmd_lookup(argv[0].p, argv[0].len) : NULL;
        if (cmd == NULL || cmd->fn == NULL) {
            fprintf(stderr, "weft-kv: %s: unknown command at offset %zu; not starting\n", a->path,
                    pos - used);
            rc = -EINVAL;
            break;
        }
        c.now = 0;
        out.len = 0;
        cmd->fn(&c, (int)ps.argc, argv);
        cmds++;
    }
    if (rc == 0 && cmds > 0)
        fprintf(stderr, "weft-kv: shard %u: replayed %zu commands from %s\n", db->idx, cmds,
                a->path);
    weft__free(argv);
    weft__free(buf);
    kv_buf_free(&out);
    return rc;
}

int aof_open(kv_db *db, const char *dir, int fsync_mode, uint64_t max_bulk, uint64_t rewrite_min)
{
    kv_aof *a = weft__calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    snprintf(a->path, sizeof(a->path), "%s/weft-kv-%u.aof", dir, db->idx);
    a->mode = fsync_mode;
    a->rewrite_min = rewrite_min;
    a->fd = open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (a->fd < 0) {
        int e = errno;
        fprintf(stderr, "weft-kv: open %s: %s\n", a->path, strerror(e));
        weft__free(a);
        return -e;
    }
    int rc = replay(db, a, max_bulk);
    if (rc != 0) {
        close(a->fd);
        weft__free(a);
        kv_db_free(db);
        return rc;
    }
    struct stat st;
    fstat(a->fd, &st);
    atomic_store(&a->size, (uint64_t)st.st_size);
    a->base = (uint64_t)st.st_size;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    rc = pthread_create(&a->th, NULL, writer, a);
    if (rc != 0) {
        close(a->fd);
        weft__free(a);
        return -rc;
    }
    db->aof = a;
    return 0;
}

/* ---- rewrite: the keyspace as commands ------------------------------------- */

struct snap_walk {
    kv_buf *b;
    int64_t now;
};

struct coll {
    kv_buf *b;
    const char *verb;
    kv_ent *key;
    kv_slice args[130];
    int n;
    int per; /* slices per item */
};

static void coll_flush(struct coll *c)
{
    if (c->n <= 2)
        return;
    put_cmd(c->b, c->n, c->args);
    c->n = 2;
}

static void coll_item(struct coll *c, const char *p1, size_t l1, const char *p2, size_t l2)
{
    c->args[c->n++] = (kv_slice){p1, l1};
    if (p2 != NULL)
        c->args[c->n++] = (kv_slice){p2, l2};
    if (c->n >= 128)
        coll_flush(c);
}

static void set_cb(kv_ent *m, void *arg)
{
    coll_item(arg, kv_ent_key(m), m->klen, NULL, 0);
}

static void hash_cb(kv_ent *m, void *arg)
{
    coll_item(arg, kv_ent_key(m), m->klen, kv_ent_val(m), m->vlen);
}

static void snap_ent(kv_ent *e, void *arg)
{
    struct snap_walk *w = arg;
    if (e->has_exp && kv_ent_exp(e) <= w->now)
        return;
    kv_slice key = {kv_ent_key(e), e->klen};
    struct coll c = {.b = w->b, .key = e, .n = 2};
    c.args[1] = key;
    switch (e->type) {
    case KV_STRING: {
        kv_slice a[3] = {{"SET", 3}, key, {kv_ent_val(e), e->vlen}};
        put_cmd(w->b, 3, a);
        break;
    }
    case KV_LIST: {
        kv_list *l = kv_ent_ptr(e);
        c.args[0] = (kv_slice){"RPUSH", 5};
        for (uint64_t i = 0; i < l->len; i++) {
            kv_blob *b = l->a[(l->head + i) & (l->cap - 1)];
            coll_item(&c, b->d, b->len, NULL, 0);
        }
        coll_flush(&c);
        break;
    }
    case KV_SET:
    case KV_HASH: {
        kv_dict *d = kv_ent_ptr(e);
        c.args[0] = e->type == KV_SET ? (kv_slice){"SADD", 4} : (kv_slice){"HSET", 4};
        uint64_t cur = 0;
        do {
            cur = kv_dict_scan(d, cur, e->type == KV_SET ? set_cb : hash_cb, &c);
        } while (cur != 0);
        coll_flush(&c);
        break;
    }
    case KV_ZSET: {
        kv_zset *z = kv_ent_ptr(e);
        c.args[0] = (kv_slice){"ZADD", 4};
        char scores[64][32];
        int k = 0;
        for (zs_node *n = z->head->fw[0]; n != NULL; n = n->fw[0]) {
            int sl = kv_fmt_double(scores[k], n->score);
            coll_item(&c, scores[k], (size_t)sl, kv_ent_key(n->m), n->m->klen);
            if (c.n == 2)
                k = 0;
            else
                k++;
            if (k == 64) {
                coll_flush(&c);
                k = 0;
            }
        }
        coll_flush(&c);
        break;
    }
    default:
        break;
    }
    if (e->has_exp)
        put_pexpireat(w->b, key.p, key.len, kv_ent_exp(e));
}

void aof_maybe_rewrite(kv_db *db)
{
    kv_aof *a = db->aof;
    if (a->rewriting) {
        if (!atomic_load(&a->rewrite_done))
            return;
        a->rewriting = false;
        atomic_store(&a->rewrite_done, false);
    }
    uint64_t size = atomic_load(&a->size);
    uint64_t limit = a->base * 2 > a->rewrite_min ? a->base * 2 : a->rewrite_min;
    if (size < limit)
        return;
    kv_buf *snap = weft__calloc(1, sizeof(*snap));
    if (snap == NULL)
        return;
    struct snap_walk w = {snap, kv_now_ms()};
    uint64_t cur = 0;
    do {
        cur = kv_dict_scan(&db->d, cur, snap_ent, &w);
    } while (cur != 0);
    if (snap->oom) {
        kv_buf_free(snap);
        weft__free(snap);
        return;
    }
    pthread_mutex_lock(&a->mu);
    /* what is logged before this point still goes to the old file; the
     * loop's pending bytes (this tick) go first */
    if (a->pend.len > 0) {
        buf_append(&a->q, &a->pend);
        a->queued += a->pend.len;
        a->pend.len = 0;
    }
    a->rewrite = snap;
    a->rewrite_at = a->q.len;
    a->rewriting = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

void aof_close(kv_db *db)
{
    kv_aof *a = db->aof;
    pthread_mutex_lock(&a->mu);
    if (a->pend.len > 0) {
        buf_append(&a->q, &a->pend);
        a->queued += a->pend.len;
        a->pend.len = 0;
    }
    a->stop = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->th, NULL);
    close(a->fd);
    if (a->rewrite != NULL) {
        kv_buf_free(a->rewrite);
        weft__free(a->rewrite);
    }
    kv_buf_free(&a->pend);
    kv_buf_free(&a->q);
    weft__free(a->w);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    weft__free(a);
    db->aof = NULL;
}

uint64_t aof_size(const kv_aof *a)
{
    return atomic_load(&((kv_aof *)a)->size);
}

uint64_t aof_rewrites(const kv_aof *a)
{
    return atomic_load(&((kv_aof *)a)->rewrites);
}

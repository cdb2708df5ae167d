/*
 * io/net.c - UDP sockets (weft/net.h, docs/io.md).
 *
 * One allocation per socket: the uv_udp_t, the bookkeeping and the receive
 * ring (recv_queue slots of max_datagram bytes) behind it, so receiving
 * never allocates. libuv reads into the slot after the last full one
 * (alloc_cb); when every slot is full it gets no buffer and reading stops
 * until recv_from frees one. A send the socket does not take at once is
 * copied into a request of its own, which outlives a waiter that gives up
 * (its callback frees it). Lifetime as for streams: freed after libuv's
 * close callback and once no task is inside a wait on it (`inuse`).
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <weft/net.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"
#include "io_int.h"

#define UDP_MAGIC        0x77756470u /* "wudp" */
#define DEFAULT_DATAGRAM 2048u
#define DEFAULT_QUEUE    16u

struct slot {
    size_t len;
    bool cut; /* longer than the slot: the kernel dropped the rest */
    struct sockaddr_storage from;
};

struct weft_udp {
    uv_udp_t h; /* first */
    uint32_t magic;
    size_t slot_size;
    unsigned nslots, head, count;
    bool reading;
    bool connected;
    bool closing, closed_cb;
    unsigned inuse;
    int port;
    /* Errors the socket reported, returned by recv_from in order (a small
     * ring: more than it holds are dropped, as datagrams would be). */
    int errs[4];
    unsigned ehead, ecount;
    struct weft__list readers;
    struct slot *slots;
    char *data;
};

/* A send the socket did not take at once. */
struct sendreq {
    uv_udp_send_t req;
    bool done, abandoned;
    int status;
    struct weft__list waiters;
    char data[];
};

static bool valid(const weft_udp_t *u)
{
    return u != NULL && u->magic == UDP_MAGIC;
}

int weft_ip_addr(const char *host, int port, struct sockaddr_storage *out)
{
    if (host == NULL || out == NULL || port < 0 || port > 65535)
        return UV_EINVAL;
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return UV_EINVAL;
}

int weft_ip_port(const struct sockaddr *addr)
{
    if (addr == NULL)
        return UV_EINVAL;
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    return UV_EINVAL;
}

/* ---- receiving -------------------------------------------------------------------- */

static void maybe_free(weft_udp_t *u)
{
    if (u->closed_cb && u->inuse == 0) {
        u->magic = 0;
        weft__free(u);
    }
}

static void close_cb(uv_handle_t *h)
{
    weft_udp_t *u = (weft_udp_t *)h;
    u->closed_cb = true;
    maybe_free(u);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    weft_udp_t *u = (weft_udp_t *)h;
    if (u->count == u->nslots) {
        *buf = uv_buf_init(NULL, 0); /* full: recv_cb gets UV_ENOBUFS */
        return;
    }
    unsigned i = (u->head + u->count) % u->nslots;
    *buf = uv_buf_init(u->data + (size_t)i * u->slot_size, (unsigned)u->slot_size);
}

static void stop_reading(weft_udp_t *u)
{
    if (u->reading) {
        (void)uv_udp_recv_stop(&u->h);
        u->reading = false;
    }
}

static void start_reading(weft_udp_t *u);

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    (void)buf;
    weft_udp_t *u = (weft_udp_t *)h;
    if (nread == UV_ENOBUFS) {
        stop_reading(u); /* until recv_from frees a slot */
        return;
    }
    if (nread < 0) {
        if (u->ecount < sizeof u->errs / sizeof u->errs[0])
            u->errs[(u->ehead + u->ecount++) % 4] = (int)nread;
        (void)weft__waitq_grant(&u->readers, 0);
        return;
    }
    if (addr == NULL)
        return; /* nothing more to read now (nread 0) */
    struct slot *s = &u->slots[(u->head + u->count) % u->nslots];
    s->len = (size_t)nread;
    s->cut = (flags & UV_UDP_PARTIAL) != 0;
    memset(&s->from, 0, sizeof s->from);
    memcpy(&s->from, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (++u->count == u->nslots)
        stop_reading(u);
    (void)weft__waitq_grant(&u->readers, 0);
}

static void start_reading(weft_udp_t *u)
{
    if (u->reading || u->closing || u->count == u->nslots)
        return;
    if (uv_udp_recv_start(&u->h, alloc_cb, recv_cb) == 0)
        u->reading = true;
}

int weft_udp_recv_from_timeout(weft_udp_t *u, void *buf, size_t cap, uint64_t timeout_ms,
                               size_t *len, struct sockaddr_storage *from)
{
    if (len != NULL)
        *len = 0;
    if (!valid(u) || u->closing || buf == NULL || len == NULL || cap == 0)
        return UV_EINVAL;
    uint64_t deadline = weft__io_deadline(timeout_ms);
    for (;;) {
        if (u->ecount > 0 && u->count == 0) {
            int e = u->errs[u->ehead];
            u->ehead = (u->ehead + 1) % 4;
            u->ecount--;
            return e;
        }
        if (u->count > 0) {
            struct slot *s = &u->slots[u->head];
            size_t k = s->len < cap ? s->len : cap;
            memcpy(buf, u->data + (size_t)u->head * u->slot_size, k);
            if (from != NULL)
                *from = s->from;
            *len = k;
            int rc = s->cut || s->len > cap ? UV_EMSGSIZE : 0;
            u->head = (u->head + 1) % u->nslots;
            u->count--;
            start_reading(u);
            return rc;
        }
        if (weft_task_current() == NULL)
            return WEFT_ENOTASK;
        start_reading(u);
        u->inuse++;
        int rc = weft__waitq_wait(&u->readers, weft__io_remaining(deadline));
        u->inuse--;
        if (u->closing) {
            maybe_free(u);
            return rc == 0 ? WEFT_ECLOSED : rc;
        }
        if (rc != 0)
            return rc;
    }
}

int weft_udp_recv_from(weft_udp_t *u, void *buf, size_t cap, size_t *len,
                       struct sockaddr_storage *from)
{
    return weft_udp_recv_from_timeout(u, buf, cap, WEFT_FOREVER, len, from);
}

size_t weft_udp_pending(const weft_udp_t *u)
{
    return valid(u) ? u->count : 0;
}

/* ---- sending ---------------------------------------------------------------------- */

static void send_cb(uv_udp_send_t *req, int status)
{
    struct sendreq *r = WEFT_CONTAINER_OF(req, struct sendreq, req);
    if (r->abandoned) {
        weft__free(r);
        return;
    }
    r->done = true;
    r->status = status;
    (void)weft__waitq_grant(&r->waiters, 0);
}

static int send_any(weft_udp_t *u, const void *data, size_t n, const struct sockaddr *addr,
                    uint64_t timeout_ms)
{
    if (!valid(u) || u->closing || (data == NULL && n > 0))
        return UV_EINVAL;
    if (n > 65507)
        return UV_EMSGSIZE;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int rc = uv_udp_try_send(&u->h, &b, 1, addr);
    if (rc >= 0)
        return 0;
    if (rc != UV_EAGAIN)
        return rc;
    /* The socket's buffer is full (or sends are queued): copy and wait. */
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    struct sendreq *r = weft__malloc(sizeof *r + n);
    if (r == NULL)
        return UV_ENOMEM;
    memcpy(r->data, data, n);
    r->done = r->abandoned = false;
    weft__list_init(&r->waiters);
    b = uv_buf_init(r->data, (unsigned)n);
    rc = uv_udp_send(&r->req, &u->h, &b, 1, addr, send_cb);
    if (rc != 0) {
        weft__free(r);
        return rc;
    }
    uint64_t deadline = weft__io_deadline(timeout_ms);
    while (!r->done) {
        rc = weft__waitq_wait(&r->waiters, weft__io_remaining(deadline));
        if (rc != 0 && !r->done) {
            r->abandoned = true; /* send_cb frees it */
            return rc;
        }
    }
    rc = r->status;
    weft__free(r);
    return rc;
}

int weft_udp_send_to_timeout(weft_udp_t *u, const void *data, size_t n, const struct sockaddr *addr,
                             uint64_t timeout_ms)
{
    if (addr == NULL)
        return UV_EINVAL;
    if (valid(u) && u->connected)
        return UV_EISCONN;
    return send_any(u, data, n, addr, timeout_ms);
}

int weft_udp_send_to(weft_udp_t *u, const void *data, size_t n, const struct sockaddr *addr)
{
    return weft_udp_send_to_timeout(u, data, n, addr, WEFT_FOREVER);
}

int weft_udp_send_timeout(weft_udp_t *u, const void *data, size_t n, uint64_t timeout_ms)
{
    if (valid(u) && !u->connected)
        return UV_EDESTADDRREQ;
    return send_any(u, data, n, NULL, timeout_ms);
}

int weft_udp_send(weft_udp_t *u, const void *data, size_t n)
{
    return weft_udp_send_timeout(u, data, n, WEFT_FOREVER);
}

/* ---- making and closing --------------------------------------------------------------- */

int weft_udp_bind(const char *host, int port, const weft_udp_opts_t *opts, weft_udp_t **out)
{
    if (out != NULL)
        *out = NULL;
    weft_loop_t *loop = weft_loop_current();
    struct sockaddr_storage ss;
    if (out == NULL || loop == NULL || weft_ip_addr(host ? host : "0.0.0.0", port, &ss) != 0)
        return UV_EINVAL;
    size_t size = opts && opts->max_datagram ? opts->max_datagram : DEFAULT_DATAGRAM;
    unsigned nslots = opts && opts->recv_queue ? opts->recv_queue : DEFAULT_QUEUE;
    if (size > 65536 || nslots > 65536)
        return UV_EINVAL;
    weft_udp_t *u = weft__calloc(1, sizeof *u + nslots * (sizeof(struct slot) + size));
    if (u == NULL)
        return UV_ENOMEM;
    u->slots = (struct slot *)(u + 1);
    u->data = (char *)(u->slots + nslots);
    u->slot_size = size;
    u->nslots = nslots;
    weft__list_init(&u->readers);
    int rc = uv_udp_init(weft_loop_uv(loop), &u->h);
    if (rc != 0) {
        weft__free(u);
        return rc;
    }
    u->magic = UDP_MAGIC;
    unsigned flags = 0;
    if (opts && opts->reuseaddr)
        flags |= UV_UDP_REUSEADDR;
    if (opts && opts->ipv6only && ss.ss_family == AF_INET6)
        flags |= UV_UDP_IPV6ONLY;
    rc = uv_udp_bind(&u->h, (const struct sockaddr *)&ss, flags);
    if (rc == 0) {
        struct sockaddr_storage name;
        int len = sizeof name;
        rc = uv_udp_getsockname(&u->h, (struct sockaddr *)&name, &len);
        if (rc == 0)
            u->port = weft_ip_port((struct sockaddr *)&name);
    }
    if (rc == 0) {
        start_reading(u);
        if (!u->reading)
            rc = UV_EIO;
    }
    if (rc != 0) {
        u->magic = 0;
        uv_close((uv_handle_t *)&u->h, close_cb);
        return rc;
    }
    *out = u;
    return 0;
}

int weft_udp_port(const weft_udp_t *u)
{
    return valid(u) ? u->port : UV_EINVAL;
}

int weft_udp_connect(weft_udp_t *u, const char *host, int port)
{
    struct sockaddr_storage ss;
    if (!valid(u) || u->closing || weft_ip_addr(host, port, &ss) != 0)
        return UV_EINVAL;
    if (u->connected)
        return UV_EISCONN;
    int rc = uv_udp_connect(&u->h, (const struct sockaddr *)&ss);
    if (rc == 0)
        u->connected = true;
    return rc;
}

int weft_udp_close(weft_udp_t *u)
{
    if (!valid(u) || u->closing)
        return UV_EINVAL;
    u->closing = true;
    stop_reading(u);
    while (weft__waitq_grant(&u->readers, WEFT_ECLOSED)) {
    }
    uv_close((uv_handle_t *)&u->h, close_cb); /* queued sends end with UV_ECANCELED first */
    return 0;
}

uv_udp_t *weft_udp_handle(weft_udp_t *u)
{
    return valid(u) ? &u->h : NULL;
}

/*
 * io/serve.c - TCP servers on one loop and on every loop of a runtime
 * (weft/stream.h, docs/io.md "Servers").
 *
 * A server is a top record (weft_server_t, owned by the loop that made it)
 * and one shard per loop it serves on. A shard holds that loop's
 * connections (a task each), its counters and a wait queue for the close.
 * Listeners are our own non-blocking sockets watched by a uv_poll_t, not
 * uv_listen: accepting by hand gives the raw descriptor, which can travel
 * to another loop (a libuv handle cannot), and lets an EMFILE pause the
 * listener (uv_listen's callback has no way to stop being called).
 *
 * Designs: with REUSEPORT every shard has a listener of its own (one port,
 * SO_REUSEPORT); with ACCEPTOR one listener on the owner's loop picks the
 * shard with the fewest live connections and sends it the descriptor with
 * weft_call_on. A shard's `live` counts connections handed to it and not
 * ended yet, handoffs in flight included, so a close that waits for live
 * to reach 0 also waits for the handoffs still on their way.
 *
 * Lifetime: srv->refs is 1 (the owner's) plus one per connection placed;
 * whoever drops the last frees the server - the close, or the last
 * connection of a handler that closed its own server.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft/runtime.h>
#include <weft/stream.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"
#include "serve_int.h"

#define SERVER_MAGIC     0x77737276u /* "wsrv" */
#define BACKOFF_FIRST_MS 10u
#define BACKOFF_MAX_MS   1000u
#define ACCEPT_BATCH     64 /* accepts per readiness, then other work runs */

struct listener;

struct shard {
    weft_server_t *srv;
    weft_loop_t *loop;
    unsigned index;       /* runtime loop index, 0 on one loop */
    struct listener *lis; /* this loop's listener, or NULL */
    struct weft__list conns;
    struct weft__list idleq; /* the close waits here for live to fall */
    bool closing;
    uint64_t grace_ms; /* for the close task (set by the owner before it) */
    int close_rc;
    _Atomic unsigned live;
    _Atomic uint64_t accepted, refused, accept_errors;
    weft__io_counters_t ctr;
};

struct weft_server {
    uint32_t magic;
    weft_loop_t *owner;
    weft_stream_handler_fn handler;
    void *arg;
    weft_server_opts_t opts;
    struct sockaddr_storage addr; /* where to listen (its port once known) */
    int port;
    bool acceptor; /* ACCEPTOR: shard[owner_shard].lis dispatches */
    _Atomic bool closing;
    _Atomic unsigned total_live; /* for max_connections */
    _Atomic unsigned refs;
    unsigned nshards, owner_shard, rr;
    struct shard *shards; /* nshards of them, behind this record */
};

struct listener {
    uv_poll_t poll; /* first */
    uv_timer_t timer;
    int fd;
    int handles; /* open libuv handles; freed at 0 */
    struct shard *home;
    bool dispatch;
    uint64_t backoff_ms; /* the last pause, 0 after a success */
};

struct conn {
    struct weft__list link;
    struct shard *sh;
    weft_stream_t *s;
    weft_task_t *task;
    bool started;
};

struct handoff {
    struct shard *sh;
    int fd;
};

static void relaxed_inc(_Atomic uint64_t *c)
{
    weft__count(c, 1);
}

static void server_unref(weft_server_t *srv)
{
    if (atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1) {
        srv->magic = 0;
        weft__free(srv);
    }
}

/* A connection placed on sh ended (or never started): the counts fall,
 * and a close waiting for them hears it. */
static void conn_gone(struct shard *sh)
{
    weft_server_t *srv = sh->srv;
    atomic_fetch_sub_explicit(&sh->live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&srv->total_live, 1, memory_order_relaxed);
    if (sh->closing)
        (void)weft__waitq_grant(&sh->idleq, 0);
    server_unref(srv);
}

/* Close at once with a reset (SO_LINGER 0): the peer sees a refusal, and no
 * TIME_WAIT is left behind on this side. */
static void reset_fd(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    (void)close(fd);
}

/* ---- connections ------------------------------------------------------------- */

static int conn_main(void *arg, void **result)
{
    (void)result;
    struct conn *c = arg;
    c->started = true;
    struct shard *sh = c->sh;
    int rc = sh->srv->handler(c->s, sh->srv->arg);
    /* Still linked while flushing, so that the close cancels a flush to a
     * peer that does not read. */
    if (rc == 0)
        (void)weft_stream_close(c->s);
    else
        (void)weft_stream_abort(c->s);
    weft__list_remove(&c->link);
    weft_task_unref(c->task);
    weft__free(c);
    conn_gone(sh);
    return rc == UV_ECANCELED ? UV_ECANCELED : 0;
}

/* On sh's loop: a task for the accepted fd (already counted in sh->live). */
static void adopt(struct shard *sh, int fd)
{
    weft_server_t *srv = sh->srv;
    if (sh->closing) {
        reset_fd(fd);
        relaxed_inc(&sh->refused);
        conn_gone(sh);
        return;
    }
    weft_stream_t *s;
    int rc = weft__tcp_stream_adopt(sh->loop, fd, &srv->opts.stream_opts, &sh->ctr, &s);
    if (rc != 0) {
        relaxed_inc(&sh->refused);
        conn_gone(sh);
        return;
    }
    struct conn *c = weft__calloc(1, sizeof *c);
    rc = c == NULL ? UV_ENOMEM : 0;
    if (rc == 0) {
        c->sh = sh;
        c->s = s;
        weft__list_init(&c->link);
        weft_task_opts_t to = {.name = "weft-tcp-conn"};
        rc = weft_spawn_ex(sh->loop, conn_main, c, &to, &c->task);
    }
    if (rc != 0) {
        weft__free(c);
        (void)weft_stream_abort(s);
        relaxed_inc(&sh->refused);
        conn_gone(sh);
        return;
    }
    relaxed_inc(&sh->accepted);
    weft__list_push_back(&sh->conns, &c->link);
}

static void handoff_cb(void *arg)
{
    struct handoff h = *(struct handoff *)arg;
    weft__free(arg);
    adopt(h.sh, h.fd);
}

/* The shard with the fewest live connections, ties broken round-robin. */
static struct shard *least_loaded(weft_server_t *srv)
{
    unsigned n = srv->nshards, start = srv->rr++ % n;
    struct shard *best = &srv->shards[start];
    unsigned best_live = atomic_load_explicit(&best->live, memory_order_relaxed);
    for (unsigned k = 1; k < n; k++) {
        struct shard *sh = &srv->shards[(start + k) % n];
        unsigned live = atomic_load_explicit(&sh->live, memory_order_relaxed);
        if (live < best_live) {
            best = sh;
            best_live = live;
        }
    }
    return best;
}

/* A connection the listener of l just accepted: refuse it, or count it on
 * a shard and make its stream there. */
static void place(struct listener *l, int fd)
{
    struct shard *home = l->home;
    weft_server_t *srv = home->srv;
    unsigned max = srv->opts.max_connections;
    if (home->closing) {
        reset_fd(fd);
        relaxed_inc(&home->refused);
        return;
    }
    unsigned was = atomic_fetch_add_explicit(&srv->total_live, 1, memory_order_relaxed);
    if (max != 0 && was >= max) {
        atomic_fetch_sub_explicit(&srv->total_live, 1, memory_order_relaxed);
        reset_fd(fd);
        relaxed_inc(&home->refused);
        return;
    }
    struct shard *to = l->dispatch ? least_loaded(srv) : home;
    atomic_fetch_add_explicit(&to->live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    if (to == home) {
        adopt(home, fd);
        return;
    }
    struct handoff *h = weft__malloc(sizeof *h);
    int rc = h == NULL ? UV_ENOMEM : 0;
    if (rc == 0) {
        h->sh = to;
        h->fd = fd;
        rc = weft_call_on(to->loop, handoff_cb, h);
    }
    if (rc != 0) {
        /* Undone here, on the acceptor's loop: `to` never heard of it. */
        weft__free(h);
        reset_fd(fd);
        relaxed_inc(&home->refused);
        atomic_fetch_sub_explicit(&to->live, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&srv->total_live, 1, memory_order_relaxed);
        server_unref(srv);
    }
}

/* ---- listeners --------------------------------------------------------------- */

static void on_readable(uv_poll_t *p, int status, int events);

static void resume_cb(uv_timer_t *t)
{
    struct listener *l = WEFT_CONTAINER_OF(t, struct listener, timer);
    (void)uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

/* Out of descriptors or memory: stop watching the listener for a while
 * (10 ms, doubling to 1 s while it goes on). The connections wait in the
 * kernel's backlog meanwhile. */
static void back_off(struct listener *l)
{
    relaxed_inc(&l->home->accept_errors);
    l->backoff_ms = l->backoff_ms == 0 ? BACKOFF_FIRST_MS : l->backoff_ms * 2;
    if (l->backoff_ms > BACKOFF_MAX_MS)
        l->backoff_ms = BACKOFF_MAX_MS;
    (void)uv_poll_stop(&l->poll);
    (void)uv_timer_start(&l->timer, resume_cb, l->backoff_ms, 0);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct listener *l = (struct listener *)p;
    if (status < 0) {
        back_off(l);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
                errno == EPERM) /* the peer went, or a firewall said no: next */
                continue;
            back_off(l); /* EMFILE, ENFILE, ENOBUFS, ENOMEM... */
            return;
        }
        l->backoff_ms = 0;
        place(l, fd);
    }
}

static void listener_handle_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (--l->handles == 0) {
        if (l->fd >= 0)
            (void)close(l->fd);
        weft__free(l);
    }
}

/* The socket closes at once (uv_close stopped watching it), so that the
 * port is free when the close returns, as with a uv_tcp_t. */
static void listener_close(struct listener *l)
{
    (void)uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->poll, listener_handle_closed);
    uv_close((uv_handle_t *)&l->timer, listener_handle_closed);
    (void)close(l->fd);
    l->fd = -1;
}

/* A bound, listening, non-blocking socket for srv->addr: the fd or a
 * negative code. */
static int listen_socket(weft_server_t *srv, bool reuseport)
{
    const struct sockaddr *sa = (const struct sockaddr *)&srv->addr;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int one = 1;
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int backlog = srv->opts.backlog > 0 ? srv->opts.backlog : 128;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, sa, len) != 0 || listen(fd, backlog) != 0) {
        int rc = uv_translate_sys_error(errno);
        (void)close(fd);
        return rc;
    }
    return fd;
}

/* Listen for shard sh on its loop (its thread). 0 or the error. */
static int listener_open(struct shard *sh, bool reuseport, bool dispatch)
{
    weft_server_t *srv = sh->srv;
    struct listener *l = weft__calloc(1, sizeof *l);
    if (l == NULL)
        return UV_ENOMEM;
    l->fd = listen_socket(srv, reuseport);
    if (l->fd < 0) {
        int rc = l->fd;
        weft__free(l);
        return rc;
    }
    l->home = sh;
    l->dispatch = dispatch;
    uv_loop_t *uv = weft_loop_uv(sh->loop);
    int rc = uv_poll_init(uv, &l->poll, l->fd);
    if (rc != 0) {
        (void)close(l->fd);
        weft__free(l);
        return rc;
    }
    l->poll.data = l;
    l->handles = 1;
    rc = uv_timer_init(uv, &l->timer);
    if (rc == 0) {
        l->timer.data = l;
        l->handles = 2;
        rc = uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
    if (rc != 0) {
        if (l->handles == 2)
            listener_close(l);
        else
            uv_close((uv_handle_t *)&l->poll, listener_handle_closed);
        return rc;
    }
    sh->lis = l;
    return 0;
}

/* ---- making servers ----------------------------------------------------------- */

static int port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                     : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* A server record with n shards (loops[i] each), not listening yet. */
static int server_new(const char *host, int port, weft_stream_handler_fn handler, void *arg,
                      const weft_server_opts_t *opts, unsigned n, weft_server_t **out)
{
    if (handler == NULL || out == NULL || port < 0 || port > 65535)
        return UV_EINVAL;
    if (host == NULL)
        host = "0.0.0.0";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return UV_EINVAL;
    if (opts != NULL &&
        (weft__tcp_opts_check(&opts->stream_opts) != 0 || opts->balance > WEFT_BALANCE_REUSEPORT))
        return UV_EINVAL;
    weft_server_t *srv = weft__calloc(1, sizeof *srv + n * sizeof srv->shards[0]);
    if (srv == NULL)
        return UV_ENOMEM;
    srv->magic = SERVER_MAGIC;
    if (opts != NULL)
        srv->opts = *opts;
    srv->handler = handler;
    srv->arg = arg;
    srv->addr = ss;
    srv->nshards = n;
    srv->shards = (struct shard *)(srv + 1);
    atomic_init(&srv->refs, 1);
    for (unsigned i = 0; i < n; i++) {
        struct shard *sh = &srv->shards[i];
        sh->srv = srv;
        weft__list_init(&sh->conns);
        weft__list_init(&sh->idleq);
    }
    *out = srv;
    return 0;
}

/* The first listener decides the port (an ephemeral one when 0): the
 * others bind to it. */
static int first_listener(struct shard *sh, bool reuseport, bool dispatch)
{
    weft_server_t *srv = sh->srv;
    int rc = listener_open(sh, reuseport, dispatch);
    if (rc != 0)
        return rc;
    struct sockaddr_storage name;
    socklen_t len = sizeof name;
    if (getsockname(sh->lis->fd, (struct sockaddr *)&name, &len) != 0)
        return uv_translate_sys_error(errno);
    srv->port = port_of(&name);
    set_port(&srv->addr, srv->port);
    return 0;
}

int weft_tcp_serve(weft_loop_t *loop, const char *host, int port, weft_stream_handler_fn handler,
                   void *arg, const weft_server_opts_t *opts, weft_server_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL)
        loop = weft_loop_current();
    if (loop == NULL)
        return UV_EINVAL;
    weft_server_t *srv;
    int rc = server_new(host, port, handler, arg, opts, 1, &srv);
    if (rc != 0)
        return rc;
    srv->owner = loop;
    srv->shards[0].loop = loop;
    int idx = weft_loop_current() == loop ? weft_loop_index() : 0;
    srv->shards[0].index = idx < 0 ? 0 : (unsigned)idx;
    rc = first_listener(&srv->shards[0], srv->opts.reuseport, false);
    if (rc != 0) {
        if (srv->shards[0].lis != NULL)
            listener_close(srv->shards[0].lis);
        server_unref(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

/* On a shard's loop: its own listener on the server's port (REUSEPORT). */
static int start_shard_task(void *arg, void **result)
{
    (void)result;
    struct shard *sh = arg;
    return listener_open(sh, true, false);
}

static int shard_close(struct shard *sh);

static int close_shard_task(void *arg, void **result)
{
    (void)result;
    struct shard *sh = arg;
    if (weft_nocancel_begin() != 0)
        return UV_EOVERFLOW;
    int rc = shard_close(sh);
    (void)weft_nocancel_end();
    return rc;
}

/* Run fn(shard) on every shard's loop but the owner's, in parallel, and
 * await them all; the first failure, or 0. In a task on the owner. */
static int on_other_shards(weft_server_t *srv, weft_task_fn fn)
{
    weft_future_t *fut[srv->nshards];
    int first = 0;
    for (unsigned i = 0; i < srv->nshards; i++) {
        fut[i] = NULL;
        if (i == srv->owner_shard)
            continue;
        int rc = weft_submit_to(srv->shards[i].loop, fn, &srv->shards[i], &fut[i]);
        if (rc != 0 && first == 0)
            first = rc;
    }
    for (unsigned i = 0; i < srv->nshards; i++) {
        if (fut[i] == NULL)
            continue;
        int rc = weft_await(fut[i], NULL);
        if (rc != 0 && first == 0)
            first = rc;
        weft_future_unref(fut[i]);
    }
    return first;
}

int weft_tcp_serve_rt(weft_runtime_t *rt, const char *host, int port,
                      weft_stream_handler_fn handler, void *arg, const weft_server_opts_t *opts,
                      weft_server_t **out)
{
    if (out != NULL)
        *out = NULL;
    weft_runtime_t *cur = weft_runtime_current();
    if (rt == NULL)
        rt = cur;
    if (rt == NULL || out == NULL)
        return rt == NULL && cur == NULL && out != NULL ? WEFT_EWRONGLOOP : UV_EINVAL;
    if (cur != rt)
        return WEFT_EWRONGLOOP;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    unsigned n = weft_runtime_count(rt);
    weft_server_t *srv;
    int rc = server_new(host, port, handler, arg, opts, n, &srv);
    if (rc != 0)
        return rc;
    srv->owner = weft_loop_current();
    srv->owner_shard = (unsigned)weft_loop_index();
    for (unsigned i = 0; i < n; i++) {
        srv->shards[i].loop = weft_runtime_loop(rt, i);
        srv->shards[i].index = i;
    }
    srv->acceptor = srv->opts.balance != WEFT_BALANCE_REUSEPORT && n > 1;
    bool reuseport = srv->opts.reuseport || !srv->acceptor;
    rc = first_listener(&srv->shards[srv->owner_shard], reuseport, srv->acceptor);
    if (rc == 0 && !srv->acceptor)
        rc = on_other_shards(srv, start_shard_task);
    if (rc != 0) {
        (void)weft_server_close(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

/* ---- reading ----------------------------------------------------------------- */

static bool server_valid(const weft_server_t *srv)
{
    return srv != NULL && srv->magic == SERVER_MAGIC;
}

int weft_server_port(const weft_server_t *srv)
{
    return server_valid(srv) ? srv->port : UV_EINVAL;
}

unsigned weft_server_connections(const weft_server_t *srv)
{
    unsigned sum = 0;
    for (unsigned i = 0; server_valid(srv) && i < srv->nshards; i++)
        sum += atomic_load_explicit(&srv->shards[i].live, memory_order_relaxed);
    return sum;
}

uint64_t weft_server_refused(const weft_server_t *srv)
{
    uint64_t sum = 0;
    for (unsigned i = 0; server_valid(srv) && i < srv->nshards; i++)
        sum += atomic_load_explicit(&srv->shards[i].refused, memory_order_relaxed);
    return sum;
}

int weft_server_stats(const weft_server_t *srv, size_t n, weft_server_loop_stats_t *out)
{
    if (!server_valid(srv) || (out == NULL && n > 0))
        return UV_EINVAL;
    for (size_t i = 0; i < n && i < srv->nshards; i++) {
        const struct shard *sh = &srv->shards[i];
        out[i] = (weft_server_loop_stats_t){
            .accepted = atomic_load_explicit(&sh->accepted, memory_order_relaxed),
            .refused = atomic_load_explicit(&sh->refused, memory_order_relaxed),
            .accept_errors = atomic_load_explicit(&sh->accept_errors, memory_order_relaxed),
            .bytes_in = atomic_load_explicit(&sh->ctr.bytes_in, memory_order_relaxed),
            .bytes_out = atomic_load_explicit(&sh->ctr.bytes_out, memory_order_relaxed),
            .live = atomic_load_explicit(&sh->live, memory_order_relaxed),
            .loop_index = sh->index,
        };
    }
    return (int)srv->nshards;
}

bool weft_server_closing(const weft_server_t *srv)
{
    return server_valid(srv) && atomic_load_explicit(&srv->closing, memory_order_relaxed);
}

/* ---- closing ----------------------------------------------------------------- */

static uint64_t deadline_of(uint64_t ms)
{
    if (ms == WEFT_FOREVER)
        return WEFT_FOREVER;
    uint64_t now = weft_loop_now();
    return ms > WEFT_FOREVER - now - 1 ? WEFT_FOREVER : now + ms;
}

static uint64_t remaining(uint64_t deadline)
{
    if (deadline == WEFT_FOREVER)
        return WEFT_FOREVER;
    uint64_t now = weft_loop_now();
    return deadline > now ? deadline - now : 0;
}

/* The first connection of sh that is not the calling task's (a handler may
 * close its own server: its connection ends when it returns). */
static struct conn *other_conn(struct shard *sh, bool *self_here)
{
    weft_task_t *self = weft_task_current();
    struct conn *found = NULL;
    *self_here = false;
    for (struct weft__list *n = sh->conns.next; n != &sh->conns; n = n->next) {
        struct conn *x = WEFT_CONTAINER_OF(n, struct conn, link);
        if (x->task == self)
            *self_here = true;
        else if (found == NULL)
            found = x;
    }
    return found;
}

static unsigned live_of(struct shard *sh)
{
    return atomic_load_explicit(&sh->live, memory_order_relaxed);
}

/* Cancel conn c and wait for it to end (it unlinks itself). */
static void cancel_conn(struct shard *sh, struct conn *c)
{
    if (!c->started) {
        /* Cancelled before it ran, it never will: clean up for it. */
        weft__list_remove(&c->link);
        (void)weft_task_cancel(c->task);
        weft_task_unref(c->task);
        (void)weft_stream_abort(c->s);
        weft__free(c);
        conn_gone(sh);
        return;
    }
    weft_task_t *t = c->task;
    weft_task_ref(t);
    (void)weft_task_cancel(t);
    int rc = weft_await_task(t, NULL); /* in a no-cancel region: until t ended */
    (void)rc;
    weft_task_unref(t);
}

/* On sh's loop, in a no-cancel region: stop listening, give the
 * connections sh->grace_ms to end, cancel the rest, and wait until none is
 * left (handoffs in flight included) but the caller's own. */
static int shard_close(struct shard *sh)
{
    sh->closing = true;
    if (sh->lis != NULL) {
        listener_close(sh->lis);
        sh->lis = NULL;
    }
    uint64_t deadline = deadline_of(sh->grace_ms);
    bool self_here;
    (void)other_conn(sh, &self_here);
    while (live_of(sh) > (self_here ? 1u : 0u)) {
        if (weft__waitq_wait(&sh->idleq, remaining(deadline)) != 0)
            break; /* the grace is over */
        (void)other_conn(sh, &self_here);
    }
    for (;;) {
        struct conn *c = other_conn(sh, &self_here);
        if (c != NULL) {
            cancel_conn(sh, c);
            continue;
        }
        if (live_of(sh) <= (self_here ? 1u : 0u))
            break;
        /* Handoffs still on their way: they arrive, are refused, and
         * grant the queue. */
        (void)weft__waitq_wait(&sh->idleq, WEFT_FOREVER);
    }
    return 0;
}

int weft_server_close_timeout(weft_server_t *srv, uint64_t grace_ms)
{
    if (!server_valid(srv) || atomic_load_explicit(&srv->closing, memory_order_relaxed))
        return UV_EINVAL;
    if (weft_loop_current() != srv->owner)
        return WEFT_EWRONGLOOP;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    int rc = weft_nocancel_begin();
    if (rc != 0)
        return rc;
    atomic_store_explicit(&srv->closing, true, memory_order_relaxed);
    for (unsigned i = 0; i < srv->nshards; i++)
        srv->shards[i].grace_ms = grace_ms;
    struct shard *own = &srv->shards[srv->owner_shard];
    /* The acceptor stops first, so that no handoff starts after the other
     * shards began to close (those in flight are waited for). */
    if (own->lis != NULL) {
        listener_close(own->lis);
        own->lis = NULL;
    }
    weft_future_t *fut[srv->nshards];
    for (unsigned i = 0; i < srv->nshards; i++) {
        fut[i] = NULL;
        if (i != srv->owner_shard &&
            weft_submit_to(srv->shards[i].loop, close_shard_task, &srv->shards[i], &fut[i]) != 0)
            fut[i] = NULL; /* the runtime is stopping: its tasks are being cancelled */
    }
    (void)shard_close(own);
    for (unsigned i = 0; i < srv->nshards; i++) {
        if (fut[i] != NULL) {
            int frc = weft_await(fut[i], NULL);
            (void)frc;
            weft_future_unref(fut[i]);
        }
    }
    (void)weft_nocancel_end();
    server_unref(srv);
    return 0;
}

int weft_server_close(weft_server_t *srv)
{
    return weft_server_close_timeout(srv, 0);
}

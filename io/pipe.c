/*
 * io/pipe.c - a unix socket server on one loop (weft/pipe.h). The streams
 * themselves (connect, pipe_open) are io/stream.c's, over a uv_pipe_t.
 *
 * The server's shape is weft_tcp_serve's: a task per connection, tracked
 * in a list so that close can cancel and await each; the struct lives
 * until the listener's close callback ran and the last connection task is
 * gone (a handler may close its own server).
 */
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include <weft/pipe.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"
#include "io_int.h"

struct weft_unix_server {
    uv_pipe_t pipe; /* first */
    weft_loop_t *loop;
    weft_stream_handler_fn handler;
    void *arg;
    weft_unix_server_opts_t opts;
    unsigned live;
    uint64_t accepted, refused;
    bool closing;
    bool closed_cb;
    struct weft__list conns;
    char path[]; /* removed at close */
};

struct uconn {
    struct weft__list link;
    weft_unix_server_t *srv;
    weft_stream_t *s;
    weft_task_t *task;
    bool started;
};

static void maybe_free(weft_unix_server_t *srv)
{
    if (srv->closed_cb && srv->live == 0)
        weft__free(srv);
}

static void listener_closed(uv_handle_t *h)
{
    weft_unix_server_t *srv = (weft_unix_server_t *)h;
    srv->closed_cb = true;
    maybe_free(srv);
}

static void free_handle(uv_handle_t *h)
{
    weft__free(h);
}

/* Take the pending connection off the backlog and close it at once: the
 * peer reads EOF. */
static void refuse(weft_unix_server_t *srv)
{
    srv->refused++;
    uv_pipe_t *p = weft__malloc(sizeof *p);
    if (p == NULL)
        return;
    if (uv_pipe_init(weft_loop_uv(srv->loop), p, 0) != 0) {
        weft__free(p);
        return;
    }
    (void)uv_accept((uv_stream_t *)&srv->pipe, (uv_stream_t *)p);
    uv_close((uv_handle_t *)p, free_handle);
}

static int conn_main(void *arg, void **result)
{
    (void)result;
    struct uconn *c = arg;
    c->started = true;
    weft_unix_server_t *srv = c->srv;
    int rc = srv->handler(c->s, srv->arg);
    if (rc == 0)
        (void)weft_stream_close(c->s);
    else
        (void)weft_stream_abort(c->s);
    weft__list_remove(&c->link);
    srv->live--;
    weft_task_unref(c->task);
    weft__free(c);
    maybe_free(srv);
    return rc == UV_ECANCELED ? UV_ECANCELED : 0;
}

static void on_connection(uv_stream_t *h, int status)
{
    weft_unix_server_t *srv = (weft_unix_server_t *)h;
    if (status < 0)
        return;
    if (srv->closing ||
        (srv->opts.max_connections != 0 && srv->live >= srv->opts.max_connections)) {
        refuse(srv);
        return;
    }
    int rc;
    weft_stream_t *s = weft__stream_pipe_new(srv->loop, &srv->opts.stream_opts, &rc);
    if (s == NULL) {
        refuse(srv);
        return;
    }
    struct uconn *c = NULL;
    rc = uv_accept(h, weft_stream_uv(s));
    if (rc == 0)
        rc = weft__stream_pipe_start(s, true);
    if (rc == 0) {
        c = weft__calloc(1, sizeof *c);
        rc = c == NULL ? UV_ENOMEM : 0;
    }
    if (rc == 0) {
        c->srv = srv;
        c->s = s;
        weft__list_init(&c->link);
        weft_task_opts_t to = {.name = "weft-unix-conn"};
        rc = weft_spawn_ex(srv->loop, conn_main, c, &to, &c->task);
    }
    if (rc != 0) {
        weft__free(c);
        weft__stream_discard(s);
        return;
    }
    srv->accepted++;
    srv->live++;
    weft__list_push_back(&srv->conns, &c->link);
}

int weft_unix_serve(weft_loop_t *loop, const char *path, weft_stream_handler_fn handler, void *arg,
                    const weft_unix_server_opts_t *opts, weft_unix_server_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL)
        loop = weft_loop_current();
    if (loop == NULL || path == NULL || handler == NULL || out == NULL)
        return UV_EINVAL;
    size_t n = strlen(path);
    if (n == 0)
        return UV_EINVAL;
    if (n >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return UV_ENAMETOOLONG;
    weft_unix_server_t *srv = weft__calloc(1, sizeof *srv + n + 1);
    if (srv == NULL)
        return UV_ENOMEM;
    if (opts != NULL)
        srv->opts = *opts;
    int rc = weft__stream_check_opts(&srv->opts.stream_opts);
    if (rc != 0) {
        weft__free(srv);
        return rc;
    }
    memcpy(srv->path, path, n + 1);
    srv->loop = loop;
    srv->handler = handler;
    srv->arg = arg;
    weft__list_init(&srv->conns);
    rc = uv_pipe_init(weft_loop_uv(loop), &srv->pipe, 0);
    if (rc != 0) {
        weft__free(srv);
        return rc;
    }
    if (srv->opts.unlink_existing)
        (void)unlink(path);
    rc = uv_pipe_bind(&srv->pipe, path);
    bool bound = rc == 0;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->pipe, srv->opts.backlog > 0 ? srv->opts.backlog : 128,
                       on_connection);
    if (rc != 0) {
        if (bound)
            (void)unlink(path);
        uv_close((uv_handle_t *)&srv->pipe, listener_closed);
        return rc;
    }
    *out = srv;
    return 0;
}

unsigned weft_unix_server_connections(const weft_unix_server_t *srv)
{
    return srv == NULL ? 0 : srv->live;
}

uint64_t weft_unix_server_accepted(const weft_unix_server_t *srv)
{
    return srv == NULL ? 0 : srv->accepted;
}

uint64_t weft_unix_server_refused(const weft_unix_server_t *srv)
{
    return srv == NULL ? 0 : srv->refused;
}

/* The first connection that is not the caller's own (a handler may close
 * its server: its connection ends when it returns). */
static struct uconn *other_conn(weft_unix_server_t *srv, weft_task_t *self)
{
    for (struct weft__list *n = srv->conns.next; n != &srv->conns; n = n->next) {
        struct uconn *x = WEFT_CONTAINER_OF(n, struct uconn, link);
        if (x->task != self)
            return x;
    }
    return NULL;
}

int weft_unix_server_close(weft_unix_server_t *srv)
{
    if (srv == NULL || srv->closing)
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    srv->closing = true; /* on_connection refuses from now on */
    weft_task_t *self = weft_task_current();
    struct uconn *c;
    while ((c = other_conn(srv, self)) != NULL) {
        if (!c->started) {
            /* Cancelled before it ran, it never will: clean up for it. */
            weft__list_remove(&c->link);
            srv->live--;
            (void)weft_task_cancel(c->task);
            weft_task_unref(c->task);
            (void)weft_stream_abort(c->s);
            weft__free(c);
            continue;
        }
        weft_task_t *t = c->task;
        weft_task_ref(t);
        (void)weft_task_cancel(t);
        int arc = weft_await_task(t, NULL); /* returns once t ended; it unlinked c */
        (void)arc;
        weft_task_unref(t);
    }
    (void)unlink(srv->path);
    uv_close((uv_handle_t *)&srv->pipe, listener_closed);
    return 0;
}

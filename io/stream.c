/*
 * io/stream.c - TCP streams (weft/stream.h, docs/io.md); the servers that
 * accept them are in io/serve.c.
 *
 * A stream is one allocation: the uv_tcp_t, the bookkeeping and the read
 * buffer behind it. Tasks wait through core's wait queues (the records live
 * on their stacks, no allocation), one queue per condition: data arrived,
 * output drained to the low-water mark, output flushed, shutdown done,
 * connected. libuv's callbacks grant the waiters. Steady state makes no
 * allocator call: the read buffer is fixed, the two write buffers (one in
 * libuv's hands, one filling) keep their capacity.
 *
 * Lifetime: close/abort start uv_close and release the caller's hold; the
 * struct is freed when libuv's close callback ran and no task is inside a
 * wait on it any more (`inuse`), so a task woken by the close (with
 * WEFT_ECLOSED) never touches freed memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <weft/stream.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"
#include "io_int.h"
#include "linebuf.h"
#include "serve_int.h"

#define STREAM_MAGIC       0x77737472u /* "wstr" */
#define DEFAULT_READ_LIMIT (64u * 1024u)
#define DEFAULT_HIGH       (64u * 1024u)
#define DEFAULT_LOW        (16u * 1024u)

struct weft_stream {
    union { /* first: the handle's pointer is the stream's */
        uv_tcp_t tcp;
        uv_pipe_t pipe; /* unix sockets and pipes (io/pipe.c) */
        uv_stream_t uvs;
    };
    uint32_t magic;
    weft_loop_t *loop;
    size_t rlimit, whigh, wlow;

    /* Read side: bytes [rstart, rend) of rbuf (rlimit bytes) are readable. */
    char *rbuf;
    size_t rstart, rend;
    bool reading; /* uv_read_start in effect */
    bool eof;
    int rerr;
    struct weft__list readers;

    /* Write side: wbuf[wcur] fills while wbuf[1 - wcur] is in libuv's hands
     * (inflight bytes of it). */
    char *wbuf[2];
    size_t wcap[2];
    size_t wlen[2];
    int wcur;
    bool writing;
    size_t inflight;
    int werr;
    uv_write_t wreq;
    struct weft__list drainers; /* until buffered <= wlow */
    struct weft__list flushers; /* until buffered == 0 */

    uv_shutdown_t sreq;
    bool shut, sdone;
    int sstatus;
    struct weft__list shutq;

    uv_connect_t creq;
    bool cdone;
    int cstatus;
    struct weft__list connq;

    bool closing;   /* close/abort called: the caller's hold is gone */
    bool closed_cb; /* libuv's close callback ran */
    unsigned inuse; /* tasks inside a wait on this stream */

    weft__io_counters_t *ctr; /* a server's bytes in/out of this loop, or NULL */
};

/* ---- lifetime ---------------------------------------------------------------- */

static void maybe_free(weft_stream_t *s)
{
    if (s->closed_cb && s->inuse == 0) {
        weft__free(s->wbuf[0]);
        weft__free(s->wbuf[1]);
        s->magic = 0;
        weft__free(s);
    }
}

static void close_cb(uv_handle_t *h)
{
    weft_stream_t *s = (weft_stream_t *)h;
    s->closed_cb = true;
    maybe_free(s);
}

static void grant_all(struct weft__list *q, int code)
{
    while (weft__waitq_grant(q, code)) {
    }
}

static void begin_close(weft_stream_t *s, bool reset)
{
    s->closing = true;
    grant_all(&s->readers, WEFT_ECLOSED);
    grant_all(&s->drainers, WEFT_ECLOSED);
    grant_all(&s->flushers, WEFT_ECLOSED);
    grant_all(&s->shutq, WEFT_ECLOSED);
    grant_all(&s->connq, WEFT_ECLOSED);
    if (reset && s->tcp.type == UV_TCP && uv_tcp_close_reset(&s->tcp, close_cb) == 0)
        return;
    uv_close((uv_handle_t *)&s->tcp, close_cb);
}

/* Wait on q, holding s alive while the task is suspended. */
static int wait_q(weft_stream_t *s, struct weft__list *q, uint64_t timeout_ms)
{
    s->inuse++;
    int rc = weft__waitq_wait(q, timeout_ms);
    s->inuse--;
    if (s->closing) {
        maybe_free(s);
        return rc == 0 ? WEFT_ECLOSED : rc;
    }
    return rc;
}

static uint64_t deadline_of(uint64_t timeout_ms)
{
    if (timeout_ms == WEFT_FOREVER)
        return WEFT_FOREVER;
    uint64_t now = weft_loop_now();
    return timeout_ms > WEFT_FOREVER - now - 1 ? WEFT_FOREVER : now + timeout_ms;
}

static uint64_t remaining(uint64_t deadline)
{
    if (deadline == WEFT_FOREVER)
        return WEFT_FOREVER;
    uint64_t now = weft_loop_now();
    return deadline > now ? deadline - now : 0;
}

static bool valid(const weft_stream_t *s)
{
    return s != NULL && s->magic == STREAM_MAGIC;
}

/* ---- read side ------------------------------------------------------------- */

static size_t rused(const weft_stream_t *s)
{
    return s->rend - s->rstart;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    weft_stream_t *s = (weft_stream_t *)h;
    size_t room;
    buf->base = weft__lb_room(s->rbuf, s->rlimit, &s->rstart, &s->rend, &room);
    buf->len = room;
}

static void pause_reading(weft_stream_t *s)
{
    if (s->reading) {
        (void)uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    weft_stream_t *s = (weft_stream_t *)h;
    if (nread > 0) {
        s->rend += (size_t)nread;
        if (s->ctr != NULL)
            weft__count(&s->ctr->bytes_in, (uint64_t)nread);
        if (rused(s) >= s->rlimit)
            pause_reading(s); /* full: backpressure until a reader drains it */
        (void)weft__waitq_grant(&s->readers, 0);
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) { /* no room: alloc_cb gave nothing */
        pause_reading(s);
        return;
    }
    pause_reading(s);
    if (nread == UV_EOF)
        s->eof = true;
    else
        s->rerr = (int)nread;
    grant_all(&s->readers, 0);
}

/* Read from the socket again if it is paused and there is room: always when
 * `need` (a reader waits for more), else once it drained to half. */
static void resume_reading(weft_stream_t *s, bool need)
{
    if (s->reading || s->eof || s->rerr != 0 || s->closing)
        return;
    if (!weft__lb_should_read(rused(s), s->rlimit, need))
        return;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
    if (rc != 0)
        s->rerr = rc;
    else
        s->reading = true;
}

static void consume(weft_stream_t *s, void *dst, size_t n)
{
    if (dst != NULL)
        memcpy(dst, s->rbuf + s->rstart, n);
    weft__lb_consume(&s->rstart, &s->rend, n);
    resume_reading(s, false);
    if (rused(s) > 0) /* what is left goes to the next reader */
        (void)weft__waitq_grant(&s->readers, 0);
}

/* Wait for more bytes than there are now: 0 (look again), UV_EOF, the read
 * error, WEFT_ECLOSED, UV_ECANCELED, UV_ETIMEDOUT. s may be freed when this
 * returns nonzero after a close. */
static int await_more(weft_stream_t *s, uint64_t deadline)
{
    if (s->rerr != 0)
        return s->rerr;
    if (s->eof)
        return UV_EOF;
    resume_reading(s, true);
    if (s->rerr != 0)
        return s->rerr;
    return wait_q(s, &s->readers, remaining(deadline));
}

static int check_task(void)
{
    return weft_task_current() == NULL ? WEFT_ENOTASK : 0;
}

static int do_read(weft_stream_t *s, void *buf, size_t n, uint64_t deadline, size_t *got)
{
    for (;;) {
        size_t used = rused(s);
        if (used > 0) {
            size_t k = used < n ? used : n;
            consume(s, buf, k);
            *got = k;
            return 0;
        }
        int rc = await_more(s, deadline);
        if (rc != 0)
            return rc;
    }
}

int weft_stream_read_timeout(weft_stream_t *s, void *buf, size_t n, uint64_t timeout_ms,
                             size_t *got)
{
    if (got != NULL)
        *got = 0;
    if (!valid(s) || buf == NULL || got == NULL || n == 0 || s->closing)
        return UV_EINVAL;
    if (rused(s) == 0 && check_task() != 0)
        return WEFT_ENOTASK;
    return do_read(s, buf, n, deadline_of(timeout_ms), got);
}

int weft_stream_read(weft_stream_t *s, void *buf, size_t n, size_t *got)
{
    return weft_stream_read_timeout(s, buf, n, WEFT_FOREVER, got);
}

int weft_stream_read_exactly(weft_stream_t *s, void *buf, size_t n, size_t *got)
{
    if (got != NULL)
        *got = 0;
    if (!valid(s) || buf == NULL || got == NULL || s->closing)
        return UV_EINVAL;
    if (n == 0)
        return 0;
    if (check_task() != 0)
        return WEFT_ENOTASK;
    size_t have = 0;
    while (have < n) {
        size_t k = 0;
        int rc = do_read(s, (char *)buf + have, n - have, WEFT_FOREVER, &k);
        have += k;
        if (rc != 0) {
            *got = have;
            return rc;
        }
    }
    *got = have;
    return 0;
}

int weft_stream_read_until_timeout(weft_stream_t *s, int delim, void *buf, size_t cap,
                                   uint64_t timeout_ms, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (!valid(s) || buf == NULL || len == NULL || cap == 0 || s->closing)
        return UV_EINVAL;
    if (check_task() != 0)
        return WEFT_ENOTASK;
    uint64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        size_t k;
        switch (weft__lb_until(s->rbuf + s->rstart, rused(s), s->rlimit, cap, delim, s->eof, &k)) {
        case WEFT__LB_FOUND:
            consume(s, buf, k);
            *len = k;
            return 0;
        case WEFT__LB_LIMIT:
            return WEFT_ELIMIT; /* nothing consumed: the bytes stay readable */
        case WEFT__LB_PARTIAL:
            consume(s, buf, k);
            *len = k;
            return UV_EOF;
        case WEFT__LB_EOF:
            return UV_EOF;
        default: /* WEFT__LB_MORE */
            break;
        }
        int rc = await_more(s, deadline);
        if (rc != 0)
            return rc;
    }
}

int weft_stream_read_until(weft_stream_t *s, int delim, void *buf, size_t cap, size_t *len)
{
    return weft_stream_read_until_timeout(s, delim, buf, cap, WEFT_FOREVER, len);
}

int weft_stream_readline_timeout(weft_stream_t *s, void *buf, size_t cap, uint64_t timeout_ms,
                                 size_t *len)
{
    return weft_stream_read_until_timeout(s, '\n', buf, cap, timeout_ms, len);
}

int weft_stream_readline(weft_stream_t *s, void *buf, size_t cap, size_t *len)
{
    return weft_stream_read_until_timeout(s, '\n', buf, cap, WEFT_FOREVER, len);
}

size_t weft_stream_readable(const weft_stream_t *s)
{
    return valid(s) ? rused(s) : 0;
}

/* ---- write side ---------------------------------------------------------- */

size_t weft_stream_buffered(const weft_stream_t *s)
{
    return valid(s) ? s->wlen[s->wcur] + s->inflight : 0;
}

static void write_cb(uv_write_t *req, int status);

static void wake_writers(weft_stream_t *s)
{
    if (s->werr != 0) {
        grant_all(&s->drainers, s->werr);
        grant_all(&s->flushers, s->werr);
        return;
    }
    size_t b = weft_stream_buffered(s);
    if (b <= s->wlow)
        grant_all(&s->drainers, 0);
    if (b == 0)
        grant_all(&s->flushers, 0);
}

static void start_write(weft_stream_t *s)
{
    int i = s->wcur;
    if (s->writing || s->wlen[i] == 0 || s->werr != 0 || s->closing)
        return;
    s->wcur = 1 - i; /* empty: nothing is in flight */
    s->inflight = s->wlen[i];
    s->wlen[i] = 0;
    uv_buf_t b = uv_buf_init(s->wbuf[i], (unsigned)s->inflight);
    int rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, write_cb);
    if (rc != 0) {
        s->inflight = 0;
        s->werr = rc;
        wake_writers(s);
        return;
    }
    s->writing = true;
}

static void write_cb(uv_write_t *req, int status)
{
    weft_stream_t *s = WEFT_CONTAINER_OF(req, weft_stream_t, wreq);
    if (status == 0 && s->ctr != NULL)
        weft__count(&s->ctr->bytes_out, s->inflight);
    s->writing = false;
    s->inflight = 0;
    if (s->closing)
        return; /* uv_close cancelled it; the close callback follows */
    if (status < 0 && s->werr == 0)
        s->werr = status;
    start_write(s);
    wake_writers(s);
}

int weft_stream_write(weft_stream_t *s, const void *data, size_t n)
{
    if (!valid(s) || (data == NULL && n > 0) || s->closing)
        return UV_EINVAL;
    if (s->shut)
        return WEFT_ECLOSED;
    if (s->werr != 0)
        return s->werr;
    if (n == 0)
        return 0;
    size_t off = 0;
    int i = s->wcur;
    if (!s->writing && s->wlen[i] == 0) {
        uv_buf_t b = uv_buf_init((char *)data, n > UINT32_MAX ? UINT32_MAX : (unsigned)n);
        int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (r >= 0) {
            off = (size_t)r;
            if (s->ctr != NULL)
                weft__count(&s->ctr->bytes_out, off);
        } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
            s->werr = r;
            return r;
        }
        if (off == n)
            return 0;
    }
    size_t rest = n - off;
    size_t need = s->wlen[i] + rest;
    if (need > s->wcap[i]) {
        size_t cap = s->wcap[i] ? s->wcap[i] * 2 : 16384;
        while (cap < need)
            cap *= 2;
        char *nb = weft__realloc(s->wbuf[i], cap);
        if (nb == NULL)
            return UV_ENOMEM;
        s->wbuf[i] = nb;
        s->wcap[i] = cap;
    }
    memcpy(s->wbuf[i] + s->wlen[i], (const char *)data + off, rest);
    s->wlen[i] += rest;
    start_write(s);
    return s->werr;
}

/* Wait until buffered <= target (target 0: on flushers, else drainers). */
static int wait_written(weft_stream_t *s, size_t target, uint64_t deadline)
{
    struct weft__list *q = target == 0 ? &s->flushers : &s->drainers;
    while (weft_stream_buffered(s) > target) {
        if (s->werr != 0)
            return s->werr;
        int rc = wait_q(s, q, remaining(deadline));
        if (rc != 0)
            return rc;
    }
    return s->werr;
}

int weft_stream_drain_timeout(weft_stream_t *s, uint64_t timeout_ms)
{
    if (!valid(s) || s->closing)
        return UV_EINVAL;
    if (s->werr != 0)
        return s->werr;
    if (weft_stream_buffered(s) <= s->whigh)
        return 0;
    if (check_task() != 0)
        return WEFT_ENOTASK;
    return wait_written(s, s->wlow, deadline_of(timeout_ms));
}

int weft_stream_drain(weft_stream_t *s)
{
    return weft_stream_drain_timeout(s, WEFT_FOREVER);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    weft_stream_t *s = WEFT_CONTAINER_OF(req, weft_stream_t, sreq);
    s->sdone = true;
    s->sstatus = status;
    (void)weft__waitq_grant(&s->shutq, 0);
}

int weft_stream_shutdown(weft_stream_t *s)
{
    if (!valid(s) || s->closing)
        return UV_EINVAL;
    if (s->shut)
        return WEFT_ECLOSED;
    if (check_task() != 0)
        return WEFT_ENOTASK;
    int rc = wait_written(s, 0, WEFT_FOREVER);
    if (rc != 0)
        return rc;
    rc = uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, shutdown_cb);
    if (rc != 0)
        return rc;
    s->shut = true;
    while (!s->sdone) {
        rc = wait_q(s, &s->shutq, WEFT_FOREVER);
        if (rc != 0)
            return rc;
    }
    return s->sstatus;
}

int weft_stream_close(weft_stream_t *s)
{
    if (!valid(s) || s->closing)
        return UV_EINVAL;
    int rc = s->werr;
    if (rc == 0 && weft_task_current() != NULL)
        rc = wait_written(s, 0, WEFT_FOREVER);
    begin_close(s, false);
    return rc;
}

int weft_stream_abort(weft_stream_t *s)
{
    if (!valid(s) || s->closing)
        return UV_EINVAL;
    begin_close(s, true);
    return 0;
}

uv_tcp_t *weft_stream_tcp(weft_stream_t *s)
{
    return valid(s) && s->tcp.type == UV_TCP ? &s->tcp : NULL;
}

uv_stream_t *weft_stream_uv(weft_stream_t *s)
{
    return valid(s) ? &s->uvs : NULL;
}

/* ---- making streams -------------------------------------------------------- */

static int check_opts(const weft_stream_opts_t *o, size_t *rlimit, size_t *high, size_t *low)
{
    *rlimit = o && o->read_limit ? o->read_limit : DEFAULT_READ_LIMIT;
    *high = o && o->write_high ? o->write_high : DEFAULT_HIGH;
    *low = o && o->write_low ? o->write_low : (DEFAULT_LOW < *high ? DEFAULT_LOW : *high);
    if (*low > *high || *rlimit > UINT32_MAX)
        return UV_EINVAL;
    return 0;
}

/* A write to a socket the peer closed raises SIGPIPE, which by default ends
 * the process; libuv does not prevent it (plain write(2)). As Python does,
 * the first stream ignores SIGPIPE unless the program installed a handler
 * of its own: the write then fails with UV_EPIPE. */
static void ignore_sigpipe(void)
{
    static atomic_bool done;
    if (atomic_load_explicit(&done, memory_order_acquire))
        return;
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO))
        (void)signal(SIGPIPE, SIG_IGN);
    atomic_store_explicit(&done, true, memory_order_release);
}

/* A stream with an initialised (not connected) handle of type (UV_TCP or
 * UV_NAMED_PIPE), or NULL. */
static weft_stream_t *stream_new_of(weft_loop_t *loop, uv_handle_type type, size_t rlimit,
                                    size_t high, size_t low, int *err)
{
    ignore_sigpipe();
    weft_stream_t *s = weft__calloc(1, sizeof *s + rlimit);
    if (s == NULL) {
        *err = UV_ENOMEM;
        return NULL;
    }
    int rc = type == UV_TCP ? uv_tcp_init(weft_loop_uv(loop), &s->tcp)
                            : uv_pipe_init(weft_loop_uv(loop), &s->pipe, 0);
    if (rc != 0) {
        weft__free(s);
        *err = rc;
        return NULL;
    }
    s->magic = STREAM_MAGIC;
    s->loop = loop;
    s->rlimit = rlimit;
    s->whigh = high;
    s->wlow = low;
    s->rbuf = (char *)(s + 1);
    weft__list_init(&s->readers);
    weft__list_init(&s->drainers);
    weft__list_init(&s->flushers);
    weft__list_init(&s->shutq);
    weft__list_init(&s->connq);
    return s;
}

static weft_stream_t *stream_new(weft_loop_t *loop, size_t rlimit, size_t high, size_t low,
                                 int *err)
{
    return stream_new_of(loop, UV_TCP, rlimit, high, low, err);
}

/* A connected stream: options, then read eagerly. */
static int stream_ready(weft_stream_t *s, const weft_stream_opts_t *o)
{
    int rc = 0;
    if (o == NULL || !o->no_nodelay)
        rc = uv_tcp_nodelay(&s->tcp, 1);
    if (rc == 0 && o != NULL && o->keepalive)
        rc = uv_tcp_keepalive(&s->tcp, 1, o->keepalive_s ? o->keepalive_s : 60);
    if (rc == 0)
        resume_reading(s, true);
    return rc != 0 ? rc : s->rerr;
}

static void connect_cb(uv_connect_t *req, int status)
{
    weft_stream_t *s = WEFT_CONTAINER_OF(req, weft_stream_t, creq);
    s->cdone = true;
    s->cstatus = status;
    (void)weft__waitq_grant(&s->connq, 0);
}

static int connect_one(const struct sockaddr *addr, const weft_stream_opts_t *opts,
                       uint64_t deadline, weft_stream_t **out)
{
    size_t rlimit, high, low;
    int rc = check_opts(opts, &rlimit, &high, &low);
    if (rc != 0)
        return rc;
    weft_stream_t *s = stream_new(weft_loop_current(), rlimit, high, low, &rc);
    if (s == NULL)
        return rc;
    rc = uv_tcp_connect(&s->creq, &s->tcp, addr, connect_cb);
    while (rc == 0 && !s->cdone)
        rc = wait_q(s, &s->connq, remaining(deadline));
    if (rc == 0)
        rc = s->cstatus;
    if (rc == 0)
        rc = stream_ready(s, opts);
    if (rc != 0) {
        /* A pending connect completes (UV_ECANCELED) before the close
         * callback frees s. */
        begin_close(s, false);
        return rc;
    }
    *out = s;
    return 0;
}

int weft_tcp_connect_timeout(const char *host, int port, const weft_stream_opts_t *opts,
                             uint64_t timeout_ms, weft_stream_t **out)
{
    if (out != NULL)
        *out = NULL;
    size_t a, b, c;
    if (host == NULL || out == NULL || port < 0 || port > 65535 || check_opts(opts, &a, &b, &c))
        return UV_EINVAL;
    if (check_task() != 0)
        return WEFT_ENOTASK;
    uint64_t deadline = deadline_of(timeout_ms);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0)
        return connect_one((const struct sockaddr *)&ss, opts, deadline, out);

    uv_getaddrinfo_t *req = (uv_getaddrinfo_t *)weft_uv_req_new(UV_GETADDRINFO);
    if (req == NULL)
        return UV_ENOMEM;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    int rc = uv_getaddrinfo(weft_loop_uv(NULL), req, weft_uv_getaddrinfo_cb, host, service, &hints);
    if (rc == 0)
        rc = weft_uv_await((uv_req_t *)req, remaining(deadline), NULL);
    if (rc == 0) {
        rc = UV_EAI_NONAME;
        for (struct addrinfo *ai = req->addrinfo; ai != NULL; ai = ai->ai_next) {
            if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                continue;
            rc = connect_one(ai->ai_addr, opts, deadline, out);
            if (rc == 0 || rc == UV_ECANCELED || rc == UV_ETIMEDOUT || rc == UV_ENOMEM)
                break;
        }
    }
    weft_uv_req_free((uv_req_t *)req);
    return rc;
}

int weft_tcp_connect(const char *host, int port, const weft_stream_opts_t *opts,
                     weft_stream_t **out)
{
    uint64_t t = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : WEFT_FOREVER;
    return weft_tcp_connect_timeout(host, port, opts, t, out);
}

/* ---- accepted sockets (io/serve_int.h) ------------------------------------------ */

int weft__tcp_opts_check(const weft_stream_opts_t *opts)
{
    size_t a, b, c;
    return check_opts(opts, &a, &b, &c);
}

int weft__tcp_stream_adopt(weft_loop_t *loop, int fd, const weft_stream_opts_t *opts,
                           weft__io_counters_t *ctr, weft_stream_t **out)
{
    size_t rlimit, high, low;
    int rc = check_opts(opts, &rlimit, &high, &low);
    weft_stream_t *s = rc == 0 ? stream_new(loop, rlimit, high, low, &rc) : NULL;
    if (s == NULL) {
        (void)close(fd);
        return rc;
    }
    rc = uv_tcp_open(&s->tcp, fd);
    if (rc != 0) {
        (void)close(fd); /* uv_tcp_open did not take it */
        begin_close(s, false);
        return rc;
    }
    s->ctr = ctr;
    rc = stream_ready(s, opts);
    if (rc != 0) {
        begin_close(s, true); /* the handle owns fd now: uv_close closes it */
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- pipes and unix sockets (io/io_int.h, weft/pipe.h) ------------------------
 *
 * The same stream over a uv_pipe_t: everything above works on it but the
 * TCP options (no nodelay/keepalive) and abort's reset (a pipe has none:
 * abort closes at once, dropping buffered output). */

int weft__stream_check_opts(const weft_stream_opts_t *opts)
{
    size_t a, b, c;
    return check_opts(opts, &a, &b, &c);
}

weft_stream_t *weft__stream_pipe_new(weft_loop_t *loop, const weft_stream_opts_t *opts, int *err)
{
    size_t rlimit, high, low;
    *err = check_opts(opts, &rlimit, &high, &low);
    if (*err != 0)
        return NULL;
    return stream_new_of(loop, UV_NAMED_PIPE, rlimit, high, low, err);
}

int weft__stream_pipe_start(weft_stream_t *s, bool readable)
{
    if (!readable) {
        s->rerr = UV_EBADF; /* a write-only end: reads say so, nothing polls */
        return 0;
    }
    resume_reading(s, true);
    return s->rerr;
}

void weft__stream_discard(weft_stream_t *s)
{
    begin_close(s, false);
}

int weft_unix_connect_timeout(const char *path, const weft_stream_opts_t *opts, uint64_t timeout_ms,
                              weft_stream_t **out)
{
    if (out != NULL)
        *out = NULL;
    size_t a, b, c;
    if (path == NULL || out == NULL || check_opts(opts, &a, &b, &c))
        return UV_EINVAL;
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return UV_ENAMETOOLONG; /* libuv 1.44 would truncate it */
    if (check_task() != 0)
        return WEFT_ENOTASK;
    uint64_t deadline = deadline_of(timeout_ms);
    int rc;
    weft_stream_t *s = weft__stream_pipe_new(weft_loop_current(), opts, &rc);
    if (s == NULL)
        return rc;
    uv_pipe_connect(&s->creq, &s->pipe, path, connect_cb); /* errors come to connect_cb */
    while (rc == 0 && !s->cdone)
        rc = wait_q(s, &s->connq, remaining(deadline));
    if (rc == 0)
        rc = s->cstatus;
    if (rc == 0)
        rc = weft__stream_pipe_start(s, true);
    if (rc != 0) {
        begin_close(s, false); /* a pending connect completes first (UV_ECANCELED) */
        return rc;
    }
    *out = s;
    return 0;
}

int weft_unix_connect(const char *path, const weft_stream_opts_t *opts, weft_stream_t **out)
{
    uint64_t t = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : WEFT_FOREVER;
    return weft_unix_connect_timeout(path, opts, t, out);
}

int weft_pipe_open(int fd, const weft_stream_opts_t *opts, weft_stream_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || fd < 0)
        return UV_EINVAL;
    weft_loop_t *loop = weft_loop_current();
    if (loop == NULL)
        return UV_EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return uv_translate_sys_error(errno);
    /* epoll refuses regular files and most devices (libuv 1.44 aborts
     * when it does): pipes, sockets and terminals only. */
    struct stat st;
    if (fstat(fd, &st) != 0)
        return uv_translate_sys_error(errno);
    if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !isatty(fd))
        return UV_ENOTSUP;
    int rc;
    weft_stream_t *s = weft__stream_pipe_new(loop, opts, &rc);
    if (s == NULL)
        return rc;
    rc = uv_pipe_open(&s->pipe, fd);
    if (rc == 0)
        rc = weft__stream_pipe_start(s, (fl & O_ACCMODE) != O_WRONLY);
    if (rc != 0) {
        /* uv_pipe_open failed before it took fd: the close leaves it alone. */
        begin_close(s, false);
        return rc;
    }
    *out = s;
    return 0;
}

/*
 * weft/stream.h - I/O on one loop: awaiting libuv requests (the bridge) and
 * TCP streams (asyncio's open_connection / start_server, StreamReader and
 * StreamWriter in one object). docs/io.md has the design.
 *
 * Everything here runs on the thread of the loop that owns the object
 * (a stream, a server, a request), and every call that waits runs in a task
 * (WEFT_ENOTASK otherwise) and returns UV_ECANCELED if the task is
 * cancelled while it waits, UV_ETIMEDOUT when its own timeout (the
 * _timeout forms) or a deadline scope (weft/timeout.h) passes. As for the
 * primitives, an outcome that arrived first wins: a read that was handed
 * its bytes before the cancel returns them, and the cancel is delivered at
 * the task's next suspension.
 */
#ifndef WEFT_STREAM_H
#define WEFT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "loop.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the bridge: a task awaits any libuv request --------------------------
 *
 * A request the bridge owns is allocated by weft_uv_req_new (zeroed memory
 * big enough for any uv_*_t, of the given type) and started by the caller
 * with the matching libuv call and the matching weft_uv_*_cb below as its
 * callback, on this loop's uv_loop_t (weft_loop_uv). Then:
 *
 *   uv_fs_t *req = (uv_fs_t *)weft_uv_req_new(UV_FS);
 *   if (req == NULL) return UV_ENOMEM;
 *   int rc = uv_fs_open(weft_loop_uv(NULL), req, path, O_RDONLY, 0, weft_uv_fs_cb);
 *   if (rc == 0) rc = weft_uv_await((uv_req_t *)req, WEFT_FOREVER, &res);
 *   ... read req->result etc. ...
 *   weft_uv_req_free((uv_req_t *)req);
 *
 * The lifetime rule: the request's memory stays valid until its callback
 * ran, whatever happens to the waiter. A waiter that is cancelled, or
 * whose timeout passes, returns UV_ECANCELED / UV_ETIMEDOUT at once; the
 * bridge asks libuv to cancel the request where libuv can (uv_cancel: fs,
 * getaddrinfo, getnameinfo, work requests still queued) and otherwise lets
 * it run to its end. The callback, when it comes, then only cleans up and
 * frees (uv_fs_req_cleanup, uv_freeaddrinfo). So weft_uv_req_free is
 * always called exactly once, after weft_uv_await returned (whatever it
 * returned) or when the start call failed; it frees at once if the
 * callback ran (or the request never started), else it leaves the freeing
 * to the callback. A uv_write/uv_connect/uv_shutdown request names a
 * handle: a cancelled waiter must close that handle (uv_close) or keep it
 * open until the callback ran - libuv completes such requests (with
 * UV_ECANCELED) when their handle closes, before the handle's close
 * callback. Any request on the loop: none of this crosses threads. */

/* A new request of `type` (UV_FS, UV_GETADDRINFO, UV_GETNAMEINFO, UV_WRITE,
 * UV_CONNECT, UV_SHUTDOWN, UV_WORK, UV_RANDOM, UV_UDP_SEND): zeroed, or
 * NULL (no memory, or a type the bridge does not know). */
uv_req_t *weft_uv_req_new(uv_req_type type);
/* Wait for the started request's callback, at most timeout_ms
 * (WEFT_FOREVER = no timeout; 0 = UV_ETIMEDOUT unless it already ran).
 * Returns the request's status (0 or the libuv error its callback got: for
 * uv_fs_* a negative req->result; for uv_work the after_work status), with
 * *result (may be NULL) = uv_fs_t's result (bytes read, the new fd...), 0
 * for other types. UV_ECANCELED / UV_ETIMEDOUT: see the lifetime rule.
 * UV_EINVAL (req NULL, not the bridge's, awaited twice), WEFT_ENOTASK. */
WEFT_WARN_UNUSED int weft_uv_await(uv_req_t *req, uint64_t timeout_ms, int64_t *result);
/* weft_uv_await for a request that points at the caller's memory (the
 * buffers of uv_fs_read/uv_fs_write: libuv copies paths, not data). A
 * cancel or timeout cancels the request if libuv still can (it never ran:
 * UV_ECANCELED / UV_ETIMEDOUT at once); if it is already running in the
 * thread pool, it waits for its end in a no-cancel region (the cancel
 * stays pending and ends the task's next suspension) and returns what
 * really happened, so the memory is never touched after the call. */
WEFT_WARN_UNUSED int weft_uv_await_pinned(uv_req_t *req, uint64_t timeout_ms, int64_t *result);
/* Release the request (the lifetime rule above). NULL is ignored. */
void weft_uv_req_free(uv_req_t *req);

/* The callbacks to start the bridge's requests with. */
void weft_uv_fs_cb(uv_fs_t *req);
void weft_uv_getaddrinfo_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res);
void weft_uv_getnameinfo_cb(uv_getnameinfo_t *req, int status, const char *hostname,
                            const char *service);
void weft_uv_write_cb(uv_write_t *req, int status);
void weft_uv_connect_cb(uv_connect_t *req, int status);
void weft_uv_shutdown_cb(uv_shutdown_t *req, int status);
void weft_uv_after_work_cb(uv_work_t *req, int status);
void weft_uv_udp_send_cb(uv_udp_send_t *req, int status);

/* ---- TCP streams ------------------------------------------------------------
 *
 * A stream is one TCP connection with a read buffer and a write buffer,
 * owned by its loop's thread. Reads take bytes out of the read buffer,
 * which libuv fills while it has room: when it holds read_limit bytes,
 * reading from the socket pauses (uv_read_stop) until a reader drains it
 * to half (backpressure to the peer). Writes never wait: what the socket
 * does not take at once (uv_try_write) is copied into the write buffer and
 * written in the background; weft_stream_drain waits while more than
 * write_high bytes are buffered, until at most write_low are. Making the
 * first stream sets SIGPIPE to be ignored, unless the program installed a
 * handler of its own (a write to a closed peer then fails with UV_EPIPE
 * instead of ending the process, as in Python). One task
 * reads and one task writes at a time (more are allowed and served
 * FIFO). */

typedef struct weft_stream weft_stream_t;

typedef struct weft_stream_opts {
    uint64_t connect_timeout_ms; /* name resolution and connect; 0 = none */
    size_t read_limit;           /* read buffer; 0 = 64 KiB */
    size_t write_high;           /* drain's high-water mark; 0 = 64 KiB */
    size_t write_low;            /* drain's low-water mark; 0 = 16 KiB (<= high) */
    bool no_nodelay;             /* leave Nagle on (TCP_NODELAY is on by default) */
    bool keepalive;              /* SO_KEEPALIVE, with keepalive_s seconds (0 = 60) */
    unsigned keepalive_s;
} weft_stream_opts_t;

/* asyncio.open_connection: resolve host (a name or an IPv4/IPv6 literal;
 * literals skip the resolver) and connect to port, trying each address in
 * turn; the first that connects wins. In a task. opts NULL = defaults.
 * Returns 0 with *out (close or abort it), UV_EINVAL (NULL host or out, a
 * port outside 0..65535, bad opts), UV_ETIMEDOUT (connect_timeout_ms
 * passed), UV_ECANCELED, the resolver's error (UV_EAI_*), the last
 * address's connect error (UV_ECONNREFUSED...), UV_ENOMEM, WEFT_ENOTASK. */
WEFT_WARN_UNUSED int weft_tcp_connect(const char *host, int port, const weft_stream_opts_t *opts,
                                      weft_stream_t **out);
/* connect with this timeout instead of opts' connect_timeout_ms. */
WEFT_WARN_UNUSED int weft_tcp_connect_timeout(const char *host, int port,
                                              const weft_stream_opts_t *opts, uint64_t timeout_ms,
                                              weft_stream_t **out);

/* Read 1..n bytes (waiting until at least one is there) into buf: 0 with
 * *got, UV_EOF at the end of the stream (nothing left), the socket's error
 * (UV_ECONNRESET...), WEFT_ECLOSED (the stream is being closed), UV_EINVAL
 * (NULL s, buf or got, n == 0). The _timeout form: UV_ETIMEDOUT (*got 0). */
WEFT_WARN_UNUSED int weft_stream_read(weft_stream_t *s, void *buf, size_t n, size_t *got);
WEFT_WARN_UNUSED int weft_stream_read_timeout(weft_stream_t *s, void *buf, size_t n,
                                              uint64_t timeout_ms, size_t *got);
/* Read exactly n bytes: 0 with *got == n; UV_EOF with the partial count in
 * *got when the peer ends the stream first (asyncio's IncompleteReadError);
 * on other errors (UV_ECANCELED included) *got says how many bytes were
 * read into buf before it, which are consumed. n == 0 returns 0. */
WEFT_WARN_UNUSED int weft_stream_read_exactly(weft_stream_t *s, void *buf, size_t n, size_t *got);
/* Read up to and including the first delim byte, into buf (cap bytes, not
 * NUL-terminated): 0 with *len. When cap bytes (or the read buffer, if it
 * is smaller) are buffered without a delim: WEFT_ELIMIT, and nothing is
 * consumed - the data stays readable (weft_stream_read). At the end of the
 * stream before a delim: UV_EOF with what was left in buf and *len (0 if
 * nothing). Other errors: *len 0, nothing consumed. */
WEFT_WARN_UNUSED int weft_stream_read_until(weft_stream_t *s, int delim, void *buf, size_t cap,
                                            size_t *len);
WEFT_WARN_UNUSED int weft_stream_read_until_timeout(weft_stream_t *s, int delim, void *buf,
                                                    size_t cap, uint64_t timeout_ms, size_t *len);
/* read_until('\n'). */
WEFT_WARN_UNUSED int weft_stream_readline(weft_stream_t *s, void *buf, size_t cap, size_t *len);
WEFT_WARN_UNUSED int weft_stream_readline_timeout(weft_stream_t *s, void *buf, size_t cap,
                                                  uint64_t timeout_ms, size_t *len);

/* Queue n bytes for writing; never waits. Tries the socket first
 * (uv_try_write) when nothing is buffered, copies the rest into the write
 * buffer. 0, a write error seen earlier (UV_EPIPE, UV_ECONNRESET...),
 * WEFT_ECLOSED (after shutdown), UV_EINVAL (s NULL, data NULL with n > 0),
 * UV_ENOMEM (nothing queued). Callable outside tasks (loop thread). */
WEFT_WARN_UNUSED int weft_stream_write(weft_stream_t *s, const void *data, size_t n);
/* asyncio's drain: if more than write_high bytes are buffered, wait until
 * at most write_low are. 0, the write error, UV_ECANCELED, UV_ETIMEDOUT. */
WEFT_WARN_UNUSED int weft_stream_drain(weft_stream_t *s);
WEFT_WARN_UNUSED int weft_stream_drain_timeout(weft_stream_t *s, uint64_t timeout_ms);
/* Bytes written by the caller and not yet taken by the socket (in the write
 * buffer or in libuv's hands). 0 for NULL. */
size_t weft_stream_buffered(const weft_stream_t *s);
/* Bytes in the read buffer. 0 for NULL. */
size_t weft_stream_readable(const weft_stream_t *s);
/* Half-close (write_eof): wait until everything buffered is written, then
 * shut the sending side down (the peer reads UV_EOF); reading goes on.
 * 0, the write error, WEFT_ECLOSED (already shut down), UV_ECANCELED. */
WEFT_WARN_UNUSED int weft_stream_shutdown(weft_stream_t *s);
/* Close: wait until the buffered output is written (a cancel, a deadline or
 * a write error ends that wait and closes anyway, dropping the rest), then
 * close the socket. s is released: it is freed after libuv's close
 * callback, and must not be used after the call. Tasks waiting in other
 * calls on s return WEFT_ECLOSED. Returns 0 or the write error / the code
 * that ended the flush. Callable outside tasks (then it does not flush).
 * UV_EINVAL for NULL. */
int weft_stream_close(weft_stream_t *s);
/* Close at once with a reset (RST, uv_tcp_close_reset), dropping buffered
 * output. s is released as by close. 0, UV_EINVAL for NULL. */
int weft_stream_abort(weft_stream_t *s);
/* The underlying handle (for uv_tcp_getsockname and such; do not close or
 * read it). */
uv_tcp_t *weft_stream_tcp(weft_stream_t *s);
/* The underlying handle of any stream (a uv_tcp_t or a uv_pipe_t:
 * weft/pipe.h), NULL for NULL; the same rules. weft_stream_tcp is NULL for
 * a pipe. */
uv_stream_t *weft_stream_uv(weft_stream_t *s);

/* ---- TCP servers: on one loop, or on every loop of a runtime -------------------
 *
 * Every accepted connection gets a task that runs handler(stream, arg); when
 * the handler returns the server closes the stream: a return of 0 closes it
 * (flushing what the handler wrote; a cancel ends the flush), any other code
 * (UV_ECANCELED included) aborts it. The handler must not close or abort the
 * stream itself; it may close its own server (weft_server_close then waits
 * for every connection but the caller's, which ends when its handler
 * returns).
 *
 * A server on a runtime (weft_tcp_serve_rt) runs its connections on every
 * loop, in one of two designs (docs/io.md has both, measured):
 * - WEFT_BALANCE_ACCEPTOR: one listener on the calling loop accepts every
 *   connection and hands it to the loop that has the fewest live ones
 *   (the socket goes over the mesh; the stream is made on the target loop);
 * - WEFT_BALANCE_REUSEPORT: a listener on every loop, all bound to one port
 *   with SO_REUSEPORT; the kernel spreads the connections by a hash of the
 *   peer's address and port, each loop serves what it accepted.
 * Either way a loop's connections stay on it. accept(2) failures for lack
 * of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) pause that
 * listener for 10 ms, doubling up to 1 s while they go on (the kernel keeps
 * the waiting connections in the backlog: they are deferred, not lost),
 * and it accepts again after the pause; no hot loop, no crash. */

typedef struct weft_server weft_server_t;
typedef int (*weft_stream_handler_fn)(weft_stream_t *s, void *arg);

typedef enum weft_serve_balance {
    WEFT_BALANCE_DEFAULT = 0, /* the measured better one: ACCEPTOR (docs/io.md) */
    WEFT_BALANCE_ACCEPTOR,
    WEFT_BALANCE_REUSEPORT,
} weft_serve_balance_t;

typedef struct weft_server_opts {
    int backlog;                    /* listen backlog; 0 = 128 */
    bool reuseport;                 /* set SO_REUSEPORT before the bind, so
                                     * that other servers (or processes) can
                                     * listen on the same port */
    unsigned max_connections;       /* live connections at most, over all the
                                     * server's loops; 0 = no limit. Above
                                     * it, new ones are accepted and reset at
                                     * once (the peer reads UV_ECONNRESET or
                                     * UV_EOF): refused */
    weft_serve_balance_t balance;   /* weft_tcp_serve_rt only */
    weft_stream_opts_t stream_opts; /* for the accepted streams
                                     * (connect_timeout_ms unused) */
} weft_server_opts_t;

/* asyncio.start_server on one loop: listen on host (an IPv4 or IPv6
 * literal; NULL = 0.0.0.0) and port (0 = an ephemeral port:
 * weft_server_port). Loop thread, in a task or not. 0 with *out, UV_EINVAL
 * (NULL handler or out, port outside 0..65535, host not a literal, no
 * loop, bad stream_opts), the socket/bind/listen error (UV_EADDRINUSE...),
 * UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_tcp_serve(weft_loop_t *loop, const char *host, int port,
                                    weft_stream_handler_fn handler, void *arg,
                                    const weft_server_opts_t *opts, weft_server_t **out);
/* The same server on every loop of rt (NULL = the caller's runtime), in
 * opts->balance's design. In a task on one of rt's loops, which owns the
 * server (close it there). WEFT_EWRONGLOOP when the caller is not on a
 * loop of rt, WEFT_ENOTASK outside a task, else as weft_tcp_serve (a
 * failure on any loop closes what was started). */
WEFT_WARN_UNUSED int weft_tcp_serve_rt(weft_runtime_t *rt, const char *host, int port,
                                       weft_stream_handler_fn handler, void *arg,
                                       const weft_server_opts_t *opts, weft_server_t **out);
/* The port the server listens on; UV_EINVAL for NULL. Any thread. */
int weft_server_port(const weft_server_t *srv);
/* Live connections over all its loops (any thread; each loop's count is
 * exact, the sum is not one instant's). */
unsigned weft_server_connections(const weft_server_t *srv);
/* Connections refused so far (max_connections, or arriving while closing). */
uint64_t weft_server_refused(const weft_server_t *srv);

/* Counters of a server on one loop; cumulative, but `live`. */
typedef struct weft_server_loop_stats {
    uint64_t accepted;      /* connections that got a handler task on this loop */
    uint64_t refused;       /* closed at once by this loop (max_connections,
                             * closing, no memory) */
    uint64_t accept_errors; /* accept(2) failures of this loop's listener
                             * (EMFILE, ENFILE...): each starts or lengthens a
                             * pause */
    uint64_t bytes_in;      /* read from this loop's connections */
    uint64_t bytes_out;     /* written to them (taken by the kernel) */
    unsigned live;          /* connections now (with the acceptor: handed to
                             * this loop and not ended yet) */
    unsigned loop_index;    /* the runtime loop (weft_loop_index), 0 on one loop */
} weft_server_loop_stats_t;

/* Fill out[i] for i < n with the counters of the server's i-th loop and
 * return how many loops it has (n = 0 only counts). Any thread while srv
 * is open; relaxed loads of counters each written by one loop. UV_EINVAL
 * for NULL srv, or out NULL with n > 0. */
int weft_server_stats(const weft_server_t *srv, size_t n, weft_server_loop_stats_t *out);

/* Graceful stop: stop accepting (close the listeners; a connection that
 * arrives from now on is refused), let the live connections end by
 * themselves for up to grace_ms (0 = none, WEFT_FOREVER = as long as they
 * take), then cancel those left and wait for each to end. srv is released
 * (freed after the last connection; a handler's own connection ends when
 * it returns). In a task on the loop that made srv; the calling task is
 * not cancellable meanwhile (a cancel is delivered after). 0, UV_EINVAL
 * (NULL, closed twice), WEFT_ENOTASK / WEFT_EWRONGLOOP (nothing is done). */
int weft_server_close_timeout(weft_server_t *srv, uint64_t grace_ms);
/* weft_server_close_timeout(srv, 0): cancel the live connections at once. */
int weft_server_close(weft_server_t *srv);
/* A close of srv has begun: a handler's hint to finish (e.g. answer the
 * request in hand with "Connection: close"). Any thread. */
bool weft_server_closing(const weft_server_t *srv);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_STREAM_H */

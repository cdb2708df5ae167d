/*
 * weft/pipe.h - unix domain sockets and pipes as streams (weft/stream.h):
 * every reader/writer call of weft_stream_t works on them, under the same
 * rules (loop thread, waits in a task, _timeout forms, UV_ECANCELED).
 * docs/io.md, "Pipes and unix sockets".
 *
 * What differs from TCP: no TCP options (no_nodelay, keepalive are
 * ignored), abort closes at once without a reset (a pipe has none), and
 * weft_stream_tcp is NULL (weft_stream_uv gives the uv_pipe_t). Shutdown
 * (half-close) works on unix sockets and on the pipes of subprocesses
 * (libuv makes those socketpairs); on a plain pipe(2) fd it fails with
 * UV_ENOTSOCK - close the writing end instead.
 */
#ifndef WEFT_PIPE_H
#define WEFT_PIPE_H

#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Connect to the unix socket at path (a filesystem path; shorter than
 * sun_path, 108 bytes). In a task; opts as for weft_tcp_connect (NULL =
 * defaults; connect_timeout_ms is the connect's timeout). 0 with *out,
 * UV_EINVAL (NULL path or out, bad opts), UV_ENAMETOOLONG, UV_ENOENT (no
 * such socket), UV_ECONNREFUSED (nobody listens), UV_ETIMEDOUT,
 * UV_ECANCELED, UV_ENOMEM, WEFT_ENOTASK. */
WEFT_WARN_UNUSED int weft_unix_connect(const char *path, const weft_stream_opts_t *opts,
                                       weft_stream_t **out);
WEFT_WARN_UNUSED int weft_unix_connect_timeout(const char *path, const weft_stream_opts_t *opts,
                                               uint64_t timeout_ms, weft_stream_t **out);

/* A stream on an open fd of this process: a pipe, a socket or a terminal
 * (0 and 1 for stdin and stdout, or either end of pipe(2), or a
 * socketpair). Loop thread (a task or not). The stream takes fd: closing
 * the stream closes it. libuv sets fd non-blocking, which is a property
 * of the open file shared with every process that has it (a parent
 * shell's terminal too). A write-only fd (O_WRONLY, e.g. a pipe's write
 * end) is not read: reads on it return UV_EBADF. 0 with *out, UV_EINVAL
 * (fd < 0, out NULL, no loop on this thread, bad opts), UV_EBADF (fd not
 * open), UV_ENOTSUP (a regular file or other fd that epoll cannot poll;
 * weft/fs.h reads files), UV_ENOMEM: fd is left open. Once libuv took fd,
 * the one error left (uv_read_start's, which epoll does not give for a
 * pipe or socket) closes it with the stream. */
WEFT_WARN_UNUSED int weft_pipe_open(int fd, const weft_stream_opts_t *opts, weft_stream_t **out);

/* ---- a unix socket server on one loop -----------------------------------------
 *
 * As weft_tcp_serve: every accepted connection gets a task of the server's
 * loop running handler(stream, arg) (the same handler type), and the
 * server closes the stream when the handler returns (0: flushing; any
 * other code: at once). Handlers may close their own server. */

typedef struct weft_unix_server weft_unix_server_t;

typedef struct weft_unix_server_opts {
    int backlog;                    /* listen backlog; 0 = 128 */
    unsigned max_connections;       /* live connections at most; 0 = no
                                     * limit. Above it, new ones are
                                     * accepted and closed at once. */
    bool unlink_existing;           /* remove a file already at path
                                     * before binding (a stale socket) */
    weft_stream_opts_t stream_opts; /* for the accepted streams */
} weft_unix_server_opts_t;

/* Bind a unix socket at path and listen, on loop (NULL: this thread's).
 * Loop thread, in a task or not. The socket file is removed again when the
 * server closes. 0 with *out, UV_EINVAL (NULL path/handler/out, no loop,
 * bad opts), UV_ENAMETOOLONG, UV_EADDRINUSE (path exists and
 * unlink_existing is false), the bind/listen error, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_unix_serve(weft_loop_t *loop, const char *path,
                                     weft_stream_handler_fn handler, void *arg,
                                     const weft_unix_server_opts_t *opts, weft_unix_server_t **out);
/* Live connections; 0 for NULL. */
unsigned weft_unix_server_connections(const weft_unix_server_t *srv);
/* Connections accepted so far, and refused for max_connections; 0 for
 * NULL. */
uint64_t weft_unix_server_accepted(const weft_unix_server_t *srv);
uint64_t weft_unix_server_refused(const weft_unix_server_t *srv);
/* As weft_server_close: stop accepting, cancel each live connection's task
 * and wait for it, close the listener, remove the socket file; srv is
 * released. In a task. 0, UV_EINVAL (NULL, closed twice), WEFT_ENOTASK
 * (nothing is done). */
int weft_unix_server_close(weft_unix_server_t *srv);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PIPE_H */

/*
 * weft/process.h - subprocesses (asyncio's create_subprocess_exec): spawn
 * with argv/env/cwd, the child's stdin/stdout/stderr as pipes (streams,
 * weft/stream.h), inherited, /dev/null or a given fd; await its exit;
 * send it signals. docs/io.md, "Subprocesses".
 *
 * A process belongs to the loop that spawned it and is used on its thread;
 * the waits run in a task (WEFT_ENOTASK otherwise). A cancelled or timed
 * out wait (UV_ECANCELED / UV_ETIMEDOUT) leaves the child running and the
 * process handle as it was: wait again, kill it, or close it. A child is
 * always reaped: libuv's SIGCHLD watcher collects its status as soon as it
 * exits, whether or not anybody waits.
 */
#ifndef WEFT_PROCESS_H
#define WEFT_PROCESS_H

#include <stdint.h>

#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_process weft_process_t;

/* What the child's fd 0, 1 or 2 is. */
typedef enum weft_stdio_kind {
    WEFT_STDIO_INHERIT = 0, /* the parent's own fd (the default) */
    WEFT_STDIO_NULL,        /* /dev/null */
    WEFT_STDIO_PIPE,        /* a pipe to a stream of the parent: stdin is
                             * written (reads on it return UV_EBADF),
                             * stdout/stderr are read */
    WEFT_STDIO_FD,          /* the parent's fd `fd` (dup'ed into place;
                             * the parent keeps its own) */
} weft_stdio_kind_t;

typedef struct weft_stdio {
    weft_stdio_kind_t kind;
    int fd; /* WEFT_STDIO_FD only */
} weft_stdio_t;

typedef struct weft_process_opts {
    const char *const *env;         /* "NAME=value" strings, NULL-terminated;
                                     * NULL = the parent's environment */
    const char *cwd;                /* NULL = the parent's */
    weft_stdio_t stdio[3];          /* stdin, stdout, stderr */
    weft_stream_opts_t stream_opts; /* for the pipes (TCP fields unused) */
    uint64_t kill_grace_ms;         /* close: SIGTERM, then SIGKILL after
                                     * this long; 0 = 2000 */
} weft_process_opts_t;

/* Start argv[0] (searched in PATH when it has no '/') with argv
 * (NULL-terminated) on this thread's loop. Loop thread, a task or not.
 * 0 with *out, UV_EINVAL (NULL argv, argv[0] or out, a bad stdio kind or
 * fd, bad stream opts, no loop), UV_ENOENT / UV_EACCES... (exec failed;
 * nothing is left running), UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_process_spawn(const char *const argv[], const weft_process_opts_t *opts,
                                        weft_process_t **out);
/* The child's pid; UV_EINVAL for NULL. */
int weft_process_pid(const weft_process_t *p);
/* The stream of the child's fd (0, 1, 2) spawned as WEFT_STDIO_PIPE,
 * handed over: the caller now owns it (weft_stream_close it, e.g. stdin to
 * send EOF; it outlives the process handle if need be). A second call for
 * the same fd, another kind, NULL p: NULL. Streams never taken are closed
 * by weft_process_close. */
weft_stream_t *weft_process_take_stream(weft_process_t *p, int fd);

/* Wait for the child to exit: 0 with *exit_status (its exit code; may be
 * NULL) and *term_signal (the signal that ended it, 0 if it exited; may
 * be NULL) - at once if it already exited, as often as asked. UV_EINVAL
 * (NULL p, p being closed), UV_ECANCELED, UV_ETIMEDOUT (timeout_ms passed;
 * 0 = just look), WEFT_ENOTASK. */
WEFT_WARN_UNUSED int weft_process_wait(weft_process_t *p, int64_t *exit_status, int *term_signal);
WEFT_WARN_UNUSED int weft_process_wait_timeout(weft_process_t *p, uint64_t timeout_ms,
                                               int64_t *exit_status, int *term_signal);
/* The child has exited (the status is there for weft_process_wait). */
bool weft_process_exited(const weft_process_t *p);
/* Send signum to the child. 0, UV_ESRCH (it exited already), UV_EINVAL
 * (NULL p, a bad signal). */
int weft_process_kill(weft_process_t *p, int signum);
/* Release p. A child still running is stopped: in a task, SIGTERM, then
 * SIGKILL if it has not exited after kill_grace_ms, waiting for it to end;
 * outside a task (nothing can wait), SIGKILL at once. A cancel during that
 * wait sends SIGKILL at once and returns UV_ECANCELED. Either way the
 * child is reaped by the loop in the background and the handle freed after
 * it. Untaken pipe streams are closed at once. Tasks already waiting on p
 * still get the exit status when it comes. 0, UV_ECANCELED,
 * UV_EINVAL (NULL, closed twice). */
int weft_process_close(weft_process_t *p);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROCESS_H */

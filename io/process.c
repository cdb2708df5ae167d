/*
 * io/process.c - subprocesses (weft/process.h, docs/io.md).
 *
 * One allocation per process: the uv_process_t, the exit status, one wait
 * queue for every waiter (the exit wakes them all) and the pipe streams not
 * yet taken. Lifetime as for streams: the struct is freed once libuv's
 * close callback ran and no task is inside a wait on it (`inuse`). The
 * handle is closed only after the exit callback ran: libuv reaps only the
 * children of open handles, so closing earlier would leave a zombie. A
 * released process whose child still runs is an orphan: its exit callback
 * closes the handle.
 */
#include <signal.h>
#include <string.h>
#include <weft/process.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"
#include "io_int.h"

#define PROCESS_MAGIC    0x77707263u /* "wprc" */
#define DEFAULT_GRACE_MS 2000u

struct weft_process {
    uv_process_t h; /* first */
    uint32_t magic;
    int pid;
    bool exited;
    bool closing;   /* weft_process_close was called */
    bool orphan;    /* released with the child running: exit closes */
    bool closed_cb; /* libuv's close callback ran */
    unsigned inuse; /* tasks inside a wait on p */
    int64_t status;
    int termsig;
    uint64_t grace_ms;
    weft_stream_t *pipes[3]; /* not yet taken */
    struct weft__list waiters;
};

static bool valid(const weft_process_t *p)
{
    return p != NULL && p->magic == PROCESS_MAGIC;
}

static void maybe_free(weft_process_t *p)
{
    if (p->closed_cb && p->inuse == 0) {
        p->magic = 0;
        weft__free(p);
    }
}

static void close_cb(uv_handle_t *h)
{
    weft_process_t *p = (weft_process_t *)h;
    p->closed_cb = true;
    maybe_free(p);
}

static void exit_cb(uv_process_t *h, int64_t status, int termsig)
{
    weft_process_t *p = (weft_process_t *)h;
    p->exited = true;
    p->status = status;
    p->termsig = termsig;
    while (weft__waitq_grant(&p->waiters, 0)) {
    }
    if (p->orphan)
        uv_close((uv_handle_t *)&p->h, close_cb);
}

/* ---- spawn ------------------------------------------------------------------- */

static int stdio_of(const weft_stdio_t *io, int fd, weft_process_t *p, const weft_stream_opts_t *so,
                    uv_stdio_container_t *c)
{
    int rc = 0;
    switch (io->kind) {
    case WEFT_STDIO_INHERIT:
        c->flags = UV_INHERIT_FD;
        c->data.fd = fd;
        return 0;
    case WEFT_STDIO_NULL:
        c->flags = UV_IGNORE; /* libuv opens /dev/null for fds 0..2 */
        return 0;
    case WEFT_STDIO_FD:
        if (io->fd < 0)
            return UV_EINVAL;
        c->flags = UV_INHERIT_FD;
        c->data.fd = io->fd;
        return 0;
    case WEFT_STDIO_PIPE:
        p->pipes[fd] = weft__stream_pipe_new(weft_loop_current(), so, &rc);
        if (p->pipes[fd] == NULL)
            return rc;
        /* The flags are the child's view: it reads its stdin. */
        c->flags = UV_CREATE_PIPE | (fd == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
        c->data.stream = weft_stream_uv(p->pipes[fd]);
        return 0;
    }
    return UV_EINVAL;
}

static void drop_pipes(weft_process_t *p)
{
    for (int i = 0; i < 3; i++) {
        if (p->pipes[i] != NULL)
            weft__stream_discard(p->pipes[i]);
        p->pipes[i] = NULL;
    }
}

int weft_process_spawn(const char *const argv[], const weft_process_opts_t *opts,
                       weft_process_t **out)
{
    if (out != NULL)
        *out = NULL;
    weft_loop_t *loop = weft_loop_current();
    if (argv == NULL || argv[0] == NULL || out == NULL || loop == NULL)
        return UV_EINVAL;
    static const weft_process_opts_t defaults;
    if (opts == NULL)
        opts = &defaults;
    weft_process_t *p = weft__calloc(1, sizeof *p);
    if (p == NULL)
        return UV_ENOMEM;
    p->magic = PROCESS_MAGIC;
    p->grace_ms = opts->kill_grace_ms ? opts->kill_grace_ms : DEFAULT_GRACE_MS;
    weft__list_init(&p->waiters);
    uv_stdio_container_t stdio[3];
    memset(stdio, 0, sizeof stdio);
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = stdio_of(&opts->stdio[i], i, p, &opts->stream_opts, &stdio[i]);
    if (rc != 0) {
        drop_pipes(p);
        weft__free(p);
        return rc;
    }
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.exit_cb = exit_cb;
    o.file = argv[0];
    o.args = (char **)argv; /* libuv does not write them */
    o.env = (char **)opts->env;
    o.cwd = opts->cwd;
    o.stdio_count = 3;
    o.stdio = stdio;
    rc = uv_spawn(weft_loop_uv(loop), &p->h, &o);
    if (rc != 0) {
        /* Nothing runs; the handle is initialised all the same and must be
         * closed (libuv's rule), the pipes were never opened. */
        drop_pipes(p);
        p->magic = 0;
        uv_close((uv_handle_t *)&p->h, close_cb);
        return rc;
    }
    p->pid = p->h.pid;
    for (int i = 0; i < 3; i++) {
        if (p->pipes[i] != NULL && (rc = weft__stream_pipe_start(p->pipes[i], i != 0)) != 0)
            break;
    }
    if (rc != 0) {
        (void)weft_process_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

int weft_process_pid(const weft_process_t *p)
{
    return valid(p) ? p->pid : UV_EINVAL;
}

weft_stream_t *weft_process_take_stream(weft_process_t *p, int fd)
{
    if (!valid(p) || p->closing || fd < 0 || fd > 2)
        return NULL;
    weft_stream_t *s = p->pipes[fd];
    p->pipes[fd] = NULL;
    return s;
}

/* ---- wait, kill, close ---------------------------------------------------------- */

/* Wait on p's queue, holding p alive while the task is suspended. */
static int wait_exit(weft_process_t *p, uint64_t timeout_ms)
{
    while (!p->exited) {
        p->inuse++;
        int rc = weft__waitq_wait(&p->waiters, timeout_ms);
        p->inuse--;
        if (p->closed_cb) {
            maybe_free(p); /* never: the exit closes, and it grants first */
            return WEFT_ECLOSED;
        }
        if (rc != 0 && !p->exited)
            return rc;
    }
    return 0;
}

int weft_process_wait_timeout(weft_process_t *p, uint64_t timeout_ms, int64_t *exit_status,
                              int *term_signal)
{
    if (exit_status != NULL)
        *exit_status = 0;
    if (term_signal != NULL)
        *term_signal = 0;
    if (!valid(p) || p->closing)
        return UV_EINVAL;
    if (!p->exited && weft_task_current() == NULL)
        return WEFT_ENOTASK;
    int rc = wait_exit(p, timeout_ms);
    if (rc != 0)
        return rc;
    if (exit_status != NULL)
        *exit_status = p->status;
    if (term_signal != NULL)
        *term_signal = p->termsig;
    return 0;
}

int weft_process_wait(weft_process_t *p, int64_t *exit_status, int *term_signal)
{
    return weft_process_wait_timeout(p, WEFT_FOREVER, exit_status, term_signal);
}

bool weft_process_exited(const weft_process_t *p)
{
    return valid(p) && p->exited;
}

int weft_process_kill(weft_process_t *p, int signum)
{
    if (!valid(p) || signum < 0 || signum >= NSIG)
        return UV_EINVAL;
    if (p->exited)
        return UV_ESRCH; /* the pid may belong to somebody else by now */
    return uv_process_kill(&p->h, signum);
}

int weft_process_close(weft_process_t *p)
{
    if (!valid(p) || p->closing)
        return UV_EINVAL;
    p->closing = true;
    drop_pipes(p);
    int rc = 0;
    if (!p->exited && weft_task_current() != NULL) {
        (void)uv_process_kill(&p->h, SIGTERM);
        rc = wait_exit(p, p->grace_ms);
        if (rc == UV_ETIMEDOUT) {
            (void)uv_process_kill(&p->h, SIGKILL);
            rc = wait_exit(p, WEFT_FOREVER);
        }
    }
    if (!p->exited) {
        (void)uv_process_kill(&p->h, SIGKILL);
        p->orphan = true; /* exit_cb closes the handle */
        return rc;
    }
    uv_close((uv_handle_t *)&p->h, close_cb);
    return rc;
}

/*
 * io/signal.c - awaitable signals (weft/signal.h, docs/io.md) on top of
 * the loop's signal handlers (core/loopx.c).
 *
 * Per (loop, signal) one record, `struct sigset_reg`, is the argument of
 * the loop's handler for that signal; the handler (dispatch) adds one
 * delivery to every watcher in the record's list and wakes its waiters.
 * A new watcher finds the record by asking the loop which handler it has
 * (weft__loop_signal_handler): no registry of our own, nothing shared
 * between threads.
 */
#include <signal.h>
#include <weft/signal.h>
#include <weft/task.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"

#define SIGNAL_MAGIC 0x77736967u /* "wsig" */

struct sigset_reg {
    weft_loop_t *loop;
    int signum;
    struct weft__list watchers;
};

struct weft_signal {
    uint32_t magic;
    struct weft__list link; /* in reg->watchers */
    struct sigset_reg *reg;
    int signum;
    unsigned pending;
    bool closing;
    unsigned inuse;
    struct weft__list waiters;
};

static bool valid(const weft_signal_t *s)
{
    return s != NULL && s->magic == SIGNAL_MAGIC && !s->closing;
}

static void dispatch(int signum, void *arg)
{
    (void)signum;
    struct sigset_reg *reg = arg;
    for (struct weft__list *n = reg->watchers.next; n != &reg->watchers; n = n->next) {
        weft_signal_t *s = WEFT_CONTAINER_OF(n, weft_signal_t, link);
        if (s->pending < UINT32_MAX)
            s->pending++;
        (void)weft__waitq_grant(&s->waiters, 0);
    }
}

int weft_signal_open(weft_loop_t *loop, int signum, weft_signal_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL)
        loop = weft_loop_current();
    if (out == NULL || loop == NULL || !weft__loop_valid(weft__L_cur(loop)))
        return UV_EINVAL;
    weft_signal_t *s = weft__calloc(1, sizeof *s);
    if (s == NULL)
        return UV_ENOMEM;
    weft_signal_fn cb;
    void *arg;
    struct sigset_reg *reg = NULL;
    if (signum > 0 && signum < NSIG &&
        weft__loop_signal_handler(weft__L_cur(loop), signum, &cb, &arg)) {
        if (cb != dispatch) {
            weft__free(s);
            return UV_EBUSY; /* the program's own handler: not ours to replace */
        }
        reg = arg;
    } else {
        reg = weft__calloc(1, sizeof *reg);
        if (reg == NULL) {
            weft__free(s);
            return UV_ENOMEM;
        }
        reg->loop = loop;
        reg->signum = signum;
        weft__list_init(&reg->watchers);
        int rc = weft_loop_add_signal_handler(loop, signum, dispatch, reg);
        if (rc != 0) {
            weft__free(reg);
            weft__free(s);
            return rc;
        }
    }
    s->magic = SIGNAL_MAGIC;
    s->reg = reg;
    s->signum = signum;
    weft__list_init(&s->waiters);
    weft__list_push_back(&reg->watchers, &s->link);
    *out = s;
    return 0;
}

static void maybe_free(weft_signal_t *s)
{
    if (s->closing && s->inuse == 0) {
        s->magic = 0;
        weft__free(s);
    }
}

int weft_signal_wait_timeout(weft_signal_t *s, uint64_t timeout_ms, unsigned *count)
{
    if (count != NULL)
        *count = 0;
    if (!valid(s))
        return UV_EINVAL;
    while (s->pending == 0) {
        if (weft_task_current() == NULL)
            return WEFT_ENOTASK;
        s->inuse++;
        int rc = weft__waitq_wait(&s->waiters, timeout_ms);
        s->inuse--;
        if (s->closing) {
            maybe_free(s);
            return rc == 0 ? WEFT_ECLOSED : rc;
        }
        if (rc != 0)
            return rc;
    }
    if (count != NULL)
        *count = s->pending;
    s->pending = 0;
    return 0;
}

int weft_signal_wait(weft_signal_t *s, unsigned *count)
{
    return weft_signal_wait_timeout(s, WEFT_FOREVER, count);
}

int weft_signal_signum(const weft_signal_t *s)
{
    return valid(s) ? s->signum : UV_EINVAL;
}

int weft_signal_close(weft_signal_t *s)
{
    if (!valid(s))
        return UV_EINVAL;
    struct sigset_reg *reg = s->reg;
    weft__list_remove(&s->link);
    s->closing = true;
    while (weft__waitq_grant(&s->waiters, WEFT_ECLOSED)) {
    }
    if (weft__list_empty(&reg->watchers)) {
        weft_signal_fn cb;
        void *arg;
        /* Remove the loop's handler only if it is still ours. */
        if (weft__loop_signal_handler(weft__L_cur(reg->loop), reg->signum, &cb, &arg) &&
            cb == dispatch && arg == reg)
            (void)weft_loop_remove_signal_handler(reg->loop, reg->signum);
        weft__free(reg);
    }
    maybe_free(s);
    return 0;
}

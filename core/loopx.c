/*
 * core/loopx.c - loop calls built on the scheduler of loop.c:
 * run_until_complete, stop_threadsafe and per-loop signal handlers.
 *
 * Signal handlers are libuv signal watchers (uv_signal_t), one per signal
 * per loop, unreferenced so that they never keep a run from ending (see
 * weft/loop.h for why). A removed watcher is stopped and kept for reuse;
 * closing the loop closes them all. libuv polls them only when it runs,
 * and a loop busy with ready work runs libuv (UV_RUN_NOWAIT) only while it
 * has referenced handles (uv_run does nothing on a loop that is not
 * alive) - so loop.c calls weft__signals_poll while sigs_active > 0.
 */
#include <signal.h>
#include <weft/future.h>
#include <weft/loop.h>

#include "alloc.h"
#include "future_int.h"

/* ---- run_until_complete / stop_threadsafe ------------------------------------ */

int weft_loop_run_until_complete(weft_loop_t *loop, weft_future_t *fut)
{
    struct weft__loop *l = weft__L_cur(loop);
    if (l == NULL || fut == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (l->closed)
        return WEFT_ECLOSED;
    if (fut->loop != l)
        return WEFT_EWRONGLOOP;
    int rc = weft__loop_run_until(l, fut);
    if (rc != 0)
        return rc;
    return fut->state == WEFT__F_PENDING ? WEFT_EPENDING : 0;
}

static void stop_msg(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    ((struct weft__loop *)ctx)->stopping = true;
}

int weft_loop_stop_threadsafe(weft_loop_t *loop)
{
    /* Only the inbox is touched (as weft_call_soon_threadsafe): a closed
     * loop is refused by its door. */
    struct weft__loop *l = weft__L_cur(loop);
    if (l == NULL)
        return UV_EINVAL;
    return weft__post(l, stop_msg, 0, 0, 0, 0);
}

/* ---- signal handlers ------------------------------------------------------------ */

static void sig_cb(uv_signal_t *h, int signum)
{
    struct weft__sig *s = WEFT_CONTAINER_OF(h, struct weft__sig, h);
    s->loop->st.callbacks_run++;
    s->cb(signum, s->arg);
}

static int sig_check(struct weft__loop *l, int signum)
{
    if (l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (!weft__loop_usable(l))
        return WEFT_ECLOSED;
    if (l->running && weft__tls_loop != l)
        return WEFT_EWRONGLOOP;
    if (signum <= 0 || signum >= NSIG || signum == SIGKILL || signum == SIGSTOP)
        return UV_EINVAL;
    return 0;
}

static struct weft__sig *sig_find(struct weft__loop *l, int signum)
{
    for (struct weft__sig *s = l->sigs; s != NULL; s = s->next)
        if (s->signum == signum)
            return s;
    return NULL;
}

int weft_loop_add_signal_handler(weft_loop_t *loop, int signum, weft_signal_fn cb, void *arg)
{
    struct weft__loop *l = weft__L_cur(loop);
    if (cb == NULL)
        return UV_EINVAL;
    int rc = sig_check(l, signum);
    if (rc != 0)
        return rc;
    struct weft__sig *s = sig_find(l, signum);
    if (s != NULL) { /* asyncio: a new handler replaces the old one */
        s->cb = cb;
        s->arg = arg;
        return 0;
    }
    s = sig_find(l, 0); /* a stopped watcher */
    if (s == NULL) {
        s = weft__calloc(1, sizeof(*s));
        if (s == NULL)
            return UV_ENOMEM;
        rc = uv_signal_init(&l->uv, &s->h);
        if (rc != 0) {
            weft__free(s);
            return rc;
        }
        uv_unref((uv_handle_t *)&s->h);
        s->loop = l;
        s->next = l->sigs;
        l->sigs = s;
    }
    rc = uv_signal_start(&s->h, sig_cb, signum);
    if (rc != 0)
        return rc; /* s stays stopped, for reuse */
    s->cb = cb;
    s->arg = arg;
    s->signum = signum;
    l->sigs_active++;
    return 0;
}

int weft_loop_remove_signal_handler(weft_loop_t *loop, int signum)
{
    struct weft__loop *l = weft__L_cur(loop);
    int rc = sig_check(l, signum);
    if (rc != 0)
        return rc;
    struct weft__sig *s = sig_find(l, signum);
    if (s == NULL)
        return UV_ENOENT;
    uv_signal_stop(&s->h);
    s->signum = 0;
    s->cb = NULL;
    s->arg = NULL;
    l->sigs_active--;
    return 0;
}

void weft__signals_poll(struct weft__loop *l)
{
    uv_ref((uv_handle_t *)&l->async); /* alive for this one poll, as block() does */
    uv_run(&l->uv, UV_RUN_NOWAIT);
    uv_unref((uv_handle_t *)&l->async);
}

static void sig_closed(uv_handle_t *h)
{
    weft__free(WEFT_CONTAINER_OF((uv_signal_t *)h, struct weft__sig, h));
}

void weft__signals_close(struct weft__loop *l)
{
    while (l->sigs != NULL) {
        struct weft__sig *s = l->sigs;
        l->sigs = s->next;
        uv_close((uv_handle_t *)&s->h, sig_closed); /* freed by close's uv_run */
    }
    l->sigs_active = 0;
}

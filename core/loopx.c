/*
 * core/loopx.c - loop calls built on the scheduler of loop.c:
 * run_until_complete and stop_threadsafe.
 */
#include <weft/future.h>
#include <weft/loop.h>

#include "loop_int.h"

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

/*
 * channels/lockwait.c - waiting under one container lock
 * (channels/lockwait.h).
 */
#include "lockwait.h"

#include <stdbool.h>
#include <uv.h>

#include "core/alloc.h"

void weft__lw_wake_all(struct weft__lw_queue *q)
{
    while (!weft__list_empty(&q->list)) {
        struct weft__lw_rec *r =
            WEFT_CONTAINER_OF(weft__list_pop_front(&q->list), struct weft__lw_rec, link);
        q->n--;
        (void)weft__xwait_claim(r->x, r->tag);
    }
}

/* A waiter and its record (weft__xwait_block_begin). */
struct lw_pair {
    struct weft__xwait x;
    struct weft__lw_rec r;
};

int weft__lw_wait(weft__spin_t *lock, struct weft__lw_queue *q, int (*attempt)(void *arg),
                  void *arg, uint64_t deadline)
{
    for (;;) {
        struct lw_pair stack_p,
            *p = weft__xwait_block_begin(&stack_p, sizeof stack_p, sizeof stack_p);
        if (p == NULL)
            return UV_ENOMEM;
        weft__list_init(&p->r.link);
        p->r.x = &p->x;
        p->r.tag = 0;

        weft__spin_lock(lock);
        int rc = attempt(arg);
        if (rc == UV_EAGAIN && deadline != UINT64_MAX && uv_hrtime() >= deadline)
            rc = UV_ETIMEDOUT;
        if (rc != UV_EAGAIN) {
            /* Never linked: nobody else has seen the record. */
            weft__spin_unlock(lock);
            weft__xwait_block_end(p, &stack_p);
            return rc;
        }
        weft__list_push_back(&q->list, &p->r.link);
        q->n++;
        weft__spin_unlock(lock);

        int prc = weft__xwait_park(&p->x, deadline);
        (void)weft__xwait_settle(&p->x);
        weft__spin_lock(lock);
        if (weft__list_linked(&p->r.link)) {
            weft__list_remove(&p->r.link);
            q->n--;
        }
        weft__spin_unlock(lock);
        weft__xwait_block_end(p, &stack_p);
        /* Claimed or not, a cancel or timeout ends the wait: a claim only
         * said "look again", it handed nothing over. */
        if (prc != 0)
            return prc;
    }
}

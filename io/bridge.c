/*
 * io/bridge.c - a task awaits a libuv request (weft/stream.h, "the bridge").
 *
 * The request lives in a heap record behind a small header: the waiter's
 * wait queue (a task waits through core's wait queues, so a completion that
 * came first wins over a later cancel, as for the primitives) and the
 * request's state. A waiter that gives up (cancel, timeout) marks the
 * record abandoned and asks libuv to cancel; the callback then frees.
 */
#include <stdalign.h>
#include <string.h>
#include <unistd.h>
#include <weft/stream.h>

#include "core/alloc.h"
#include "core/ext.h"
#include "core/list.h"

enum {
    REQ_NEW = 0,   /* not awaited yet */
    REQ_WAITING,   /* a task awaits its callback */
    REQ_DONE,      /* its callback ran */
    REQ_ABANDONED, /* the waiter gave up: the callback frees */
    REQ_FREED,     /* weft_uv_req_free was called before the callback */
};

#define BRIDGE_MAGIC 0x77627267u /* "wbrg" */

struct bridge {
    uint32_t magic;
    uint8_t state;
    bool awaited;
    int status;
    int64_t result;
    struct weft__list waiters;
    alignas(max_align_t) union uv_any_req req;
};

static struct bridge *of(uv_req_t *req)
{
    struct bridge *b = WEFT_CONTAINER_OF((union uv_any_req *)req, struct bridge, req);
    return b->magic == BRIDGE_MAGIC ? b : NULL;
}

static void cleanup(struct bridge *b)
{
    switch (b->req.req.type) {
    case UV_FS:
        uv_fs_req_cleanup(&b->req.fs);
        break;
    case UV_GETADDRINFO:
        if (b->req.getaddrinfo.addrinfo != NULL)
            uv_freeaddrinfo(b->req.getaddrinfo.addrinfo);
        b->req.getaddrinfo.addrinfo = NULL;
        break;
    default:
        break;
    }
}

static void release(struct bridge *b)
{
    cleanup(b);
    b->magic = 0;
    weft__free(b);
}

uv_req_t *weft_uv_req_new(uv_req_type type)
{
    switch (type) {
    case UV_FS:
    case UV_GETADDRINFO:
    case UV_GETNAMEINFO:
    case UV_WRITE:
    case UV_CONNECT:
    case UV_SHUTDOWN:
    case UV_WORK:
    case UV_RANDOM:
    case UV_UDP_SEND:
        break;
    default:
        return NULL;
    }
    struct bridge *b = weft__calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->magic = BRIDGE_MAGIC;
    b->state = REQ_NEW;
    weft__list_init(&b->waiters);
    b->req.req.type = type; /* libuv sets it again when the request starts */
    return &b->req.req;
}

/* Every callback ends here, on the loop's thread. */
static void complete(uv_req_t *req, int status, int64_t result)
{
    struct bridge *b = of(req);
    if (b == NULL)
        return; /* not the bridge's request: a misuse, nothing we own */
    if (b->state == REQ_ABANDONED || b->state == REQ_FREED) {
        /* Nobody will see the fd an abandoned open made: close it. */
        if (b->req.req.type == UV_FS && b->req.fs.fs_type == UV_FS_OPEN && b->req.fs.result >= 0)
            (void)close((int)b->req.fs.result);
        release(b);
        return;
    }
    b->status = status;
    b->result = result;
    b->state = REQ_DONE;
    (void)weft__waitq_grant(&b->waiters, 0);
}

int weft_uv_await(uv_req_t *req, uint64_t timeout_ms, int64_t *result)
{
    if (result != NULL)
        *result = 0;
    struct bridge *b = req == NULL ? NULL : of(req);
    if (b == NULL || b->awaited)
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    b->awaited = true;
    if (b->state == REQ_NEW)
        b->state = REQ_WAITING;
    if (b->state != REQ_DONE) {
        int rc = weft__waitq_wait(&b->waiters, timeout_ms);
        if (b->state != REQ_DONE) {
            /* Gave up (a grant always comes with REQ_DONE): the callback
             * will still run, into memory that stays ours until then. */
            b->state = REQ_ABANDONED;
            (void)uv_cancel(req); /* fs, getaddrinfo, work: if still queued */
            return rc != 0 ? rc : UV_ECANCELED;
        }
    }
    if (result != NULL)
        *result = b->result;
    return b->status;
}

int weft_uv_await_pinned(uv_req_t *req, uint64_t timeout_ms, int64_t *result)
{
    if (result != NULL)
        *result = 0;
    struct bridge *b = req == NULL ? NULL : of(req);
    if (b == NULL || b->awaited)
        return UV_EINVAL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    b->awaited = true;
    if (b->state == REQ_NEW)
        b->state = REQ_WAITING;
    if (b->state != REQ_DONE) {
        int rc = weft__waitq_wait(&b->waiters, timeout_ms);
        if (b->state != REQ_DONE) {
            if (uv_cancel(req) == 0) {
                /* Still queued: it will never touch the memory; its
                 * callback (UV_ECANCELED) frees. */
                b->state = REQ_ABANDONED;
                return rc != 0 ? rc : UV_ECANCELED;
            }
            /* Running in the thread pool, with the caller's memory: wait
             * it out where no cancel ends the wait (the cancel stays
             * pending for the task's next suspension), and report what
             * really happened. */
            int nc = weft_nocancel_begin();
            while (b->state != REQ_DONE)
                (void)weft__waitq_wait(&b->waiters, WEFT_FOREVER);
            if (nc == 0)
                (void)weft_nocancel_end();
            if (rc == UV_ECANCELED) {
                /* That wait took delivery of the cancel: make it pending
                 * again, for the next suspension (one more request, one
                 * withdrawn: the count stays). */
                weft_task_t *self = weft_task_current();
                if (weft_task_cancel(self) == 0)
                    (void)weft_task_uncancel(self);
            }
        }
    }
    if (result != NULL)
        *result = b->result;
    return b->status;
}

void weft_uv_req_free(uv_req_t *req)
{
    struct bridge *b = req == NULL ? NULL : of(req);
    if (b == NULL)
        return;
    switch (b->state) {
    case REQ_NEW: /* never started (its start call failed) */
    case REQ_DONE:
        release(b);
        break;
    case REQ_ABANDONED: /* the callback frees */
        break;
    default: /* started and not awaited, or freed twice: leave it to the callback */
        b->state = REQ_FREED;
        break;
    }
}

void weft_uv_fs_cb(uv_fs_t *req)
{
    int64_t r = (int64_t)req->result;
    complete((uv_req_t *)req, r < 0 ? (int)r : 0, r < 0 ? 0 : r);
}

void weft_uv_getaddrinfo_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    (void)res; /* libuv also keeps it in req->addrinfo, which cleanup frees */
    complete((uv_req_t *)req, status, 0);
}

void weft_uv_getnameinfo_cb(uv_getnameinfo_t *req, int status, const char *hostname,
                            const char *service)
{
    (void)hostname; /* also in req->host and req->service */
    (void)service;
    complete((uv_req_t *)req, status, 0);
}

void weft_uv_write_cb(uv_write_t *req, int status)
{
    complete((uv_req_t *)req, status, 0);
}

void weft_uv_connect_cb(uv_connect_t *req, int status)
{
    complete((uv_req_t *)req, status, 0);
}

void weft_uv_shutdown_cb(uv_shutdown_t *req, int status)
{
    complete((uv_req_t *)req, status, 0);
}

void weft_uv_after_work_cb(uv_work_t *req, int status)
{
    complete((uv_req_t *)req, status, 0);
}

void weft_uv_udp_send_cb(uv_udp_send_t *req, int status)
{
    complete((uv_req_t *)req, status, 0);
}

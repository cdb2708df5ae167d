/*
 * loops/runtime.c - N loops on N pinned threads, the mesh of rings between
 * them, submit_to, and spawn_threadsafe (weft/runtime.h).
 *
 * Each loop thread: pin itself, take its own jemalloc arena, init its loop,
 * install the mesh as the loop's extra message source (core's ext hooks:
 * drain every iteration, a pending check before sleeping), keep the loop
 * alive with a referenced uv_async handle, run. Stopping posts a callback to
 * every loop that cancels its tasks and closes that handle; the loop then
 * runs until its work is gone and returns.
 *
 * Wake-up ordering (the rule DESIGN.md calls "wake only the sleeping"):
 *   producer: write a slot, its sequence number last (release); then, once
 *             per 32 messages and at the end of its loop's tick: seq_cst
 *             fence; load the target's `sleeping` flag; if set, claim it
 *             (CAS 1 -> 0) and write its eventfd.
 *   consumer: store sleeping = 1 (seq_cst, in core's inbox); seq_cst fence;
 *             load the next slot's sequence number of every incoming ring;
 *             sleep only if none is there.
 * With both fences, either the consumer's slot loads see the message or the
 * producer's flag load sees 1 (store-buffer litmus test: both cannot miss).
 * tests/runtime_test.c's ping-pong of 100,000 messages with polling off
 * would hang on a lost wake-up.
 */

#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <weft/combine.h>
#include <weft/runtime.h>

#include "core/alloc.h"
#include "core/loop_int.h"
#include "loops/mesh.h"

struct rt_loop;

struct weft_runtime {
    unsigned n;
    unsigned max_inflight;
    bool pin, arenas;
    int stopping; /* atomic */
    struct rt_loop *loops;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned started;
    int start_rc;
    weft_runtime_opts_t opts;
};

/* A submit being run on its target loop. */
struct sub {
    struct sub *next;       /* free list */
    struct sub *all_next;   /* every record of the loop (freed with the runtime) */
    struct weft__list live; /* in the loop's live_subs while the task runs */
    weft_task_t *task;      /* no reference: the record dies with the task */
    void *fut;              /* the submitter's future (on loop src) */
    uint32_t gen, src;
};

struct rt_loop {
    _Alignas(64) weft_loop_t loop;
    weft_runtime_t *rt;
    unsigned idx;
    pthread_t th;
    uv_async_t keep;
    struct mesh_ring *out;      /* out[j]: ring from this loop to loop j */
    uint32_t *inflight;         /* per target: submits without a reply yet */
    struct weft__list *waiters; /* per target: submitters over the limit */
    struct sub *free_subs;
    struct sub *all_subs;
    struct weft__list live_subs; /* submits running here (cancellation) */
    bool replying;               /* on_reply is completing a future */
    bool dirty;                  /* some outgoing ring has unpublished messages */
    bool stopped;                /* stop_cb ran: cancel whatever is spawned from now on */
    uint64_t spawned_at_stop;
    uint64_t leftovers;
};

static __thread struct rt_loop *tls_rt_loop;

static struct mesh_ring *ring(weft_runtime_t *rt, unsigned from, unsigned to)
{
    return &rt->loops[from].out[to];
}

/* ---- the rings --------------------------------------------------------------- */

static int ring_init(struct mesh_ring *r, unsigned size)
{
    memset(r, 0, sizeof(*r));
    r->slots = weft__calloc(size, sizeof(struct mesh_msg));
    if (r->slots == NULL)
        return UV_ENOMEM;
    r->mask = size - 1;
    return 0;
}

static void ring_free(struct mesh_ring *r)
{
    /* Undelivered messages (the loop stopped first): free their messages. */
    for (uint32_t h = r->chead; h != r->ptail; h++)
        if (r->slots[h & r->mask].kind == MESH_REPLY)
            weft__free(r->slots[h & r->mask].msg);
    while (r->ovf_head != NULL) {
        struct mesh_node *n = r->ovf_head;
        r->ovf_head = n->next;
        weft__free(n->m.msg);
        weft__free(n);
    }
    weft__free(r->slots);
    r->slots = NULL;
}

/* Producer: room for one more slot? */
static bool ring_room(struct mesh_ring *r)
{
    if (r->ptail - r->head_cache <= r->mask)
        return true;
    r->head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    return r->ptail - r->head_cache <= r->mask;
}

/* Producer: write a message into the next slot and publish it with the
 * slot's own sequence number (release): the consumer needs that one line. */
static void ring_write(struct mesh_ring *r, const struct mesh_msg *m)
{
    struct mesh_msg *slot = &r->slots[r->ptail & r->mask];
    uint32_t seq = r->ptail + 1;
    slot->kind = m->kind;
    slot->src = m->src;
    slot->gen = m->gen;
    slot->err = m->err;
    slot->fn = m->fn;
    slot->arg = m->arg;
    slot->fut = m->fut;
    slot->result = m->result;
    slot->msg = m->msg;
    __atomic_store_n(&slot->seq, seq, __ATOMIC_RELEASE);
    r->ptail = seq;
}

/* Producer: move overflowed messages into the ring while there is room. */
static void ring_refill(struct mesh_ring *r)
{
    while (r->ovf_head != NULL && ring_room(r)) {
        struct mesh_node *n = r->ovf_head;
        r->ovf_head = n->next;
        if (r->ovf_head == NULL)
            r->ovf_tail = NULL;
        ring_write(r, &n->m);
        weft__free(n);
    }
}

/* Producer: queue one message (by value). 0 or UV_ENOMEM. */
static int ring_put(struct mesh_ring *r, const struct mesh_msg *m)
{
    if (r->ovf_head == NULL && ring_room(r)) {
        ring_write(r, m);
        return 0;
    }
    struct mesh_node *n = weft__malloc(sizeof(*n));
    if (n == NULL)
        return UV_ENOMEM;
    n->next = NULL;
    n->m = *m;
    if (r->ovf_tail != NULL)
        r->ovf_tail->next = n;
    else
        r->ovf_head = n;
    r->ovf_tail = n;
    r->overflows++;
    return 0;
}

/* Consumer: is the next message there? */
static bool ring_ready(const struct mesh_ring *r)
{
    return __atomic_load_n(&r->slots[r->chead & r->mask].seq, __ATOMIC_ACQUIRE) == r->chead + 1;
}

/* ---- sending ------------------------------------------------------------------- */

static void wake(struct rt_loop *self, unsigned to)
{
    struct mesh_ring *r = &self->out[to];
    r->woken = r->ptail;
    weft__loop_wake_if_sleeping(weft__L(&self->rt->loops[to].loop));
}

static int send_to(struct rt_loop *self, unsigned to, const struct mesh_msg *m)
{
    struct mesh_ring *r = &self->out[to];
    int rc = ring_put(r, m);
    if (rc < 0)
        return rc;
    self->dirty = true;
    if (r->ptail - r->woken >= MESH_WAKE_EVERY)
        wake(self, to); /* a batch is waiting: a sleeping consumer should start */
    return 0;
}

/* Publish every outgoing ring and wake the targets that sleep. */
static void flush(struct rt_loop *self)
{
    if (!self->dirty)
        return;
    weft_runtime_t *rt = self->rt;
    bool more = false;
    for (unsigned j = 0; j < rt->n; j++) {
        struct mesh_ring *r = &self->out[j];
        if (r->ovf_head != NULL) {
            ring_refill(r);
            more |= r->ovf_head != NULL;
        }
        if (r->ptail != r->woken) /* written since the last wake check */
            wake(self, j);
    }
    self->dirty = more;
}

/* ---- receiving ----------------------------------------------------------------- */

static struct sub *sub_get(struct rt_loop *self)
{
    struct sub *s = self->free_subs;
    if (s != NULL) {
        self->free_subs = s->next;
        return s;
    }
    s = weft__malloc(sizeof(*s));
    if (s != NULL) {
        s->all_next = self->all_subs;
        self->all_subs = s;
    }
    return s;
}

static void sub_put(struct rt_loop *self, struct sub *s)
{
    s->next = self->free_subs;
    self->free_subs = s;
}

static void reply(struct rt_loop *self, unsigned to, void *fut, uint32_t gen, int err, void *res,
                  const char *msg)
{
    struct mesh_msg m = {.kind = MESH_REPLY,
                         .src = self->idx,
                         .gen = gen,
                         .err = err,
                         .fut = fut,
                         .result = err == 0 ? res : NULL};
    if (err != 0 && err != UV_ECANCELED && msg != NULL)
        m.msg = weft__strdup(msg);
    if (send_to(self, to, &m) != 0) {
        weft__free(m.msg); /* out of memory: the submitter's future stays pending */
    }
}

/* Target side: the submitted task finished (or was cancelled before it
 * ran): send its outcome home. A hook, so it runs in every case. */
static void sub_done(struct weft__handle *h, struct weft_future *f)
{
    struct sub *s = h->arg;
    struct rt_loop *self = tls_rt_loop;
    weft__handle_put(h->loop, h);
    weft__list_remove(&s->live);
    f->retrieved = true; /* the submitter gets the code */
    reply(self, s->src, s->fut, s->gen, f->err, f->state == WEFT__F_DONE ? f->result : NULL,
          f->msg);
    sub_put(self, s);
}

static void on_submit(struct rt_loop *self, const struct mesh_msg *m)
{
    if (self->stopped) {
        reply(self, m->src, m->fut, m->gen, WEFT_ECLOSED, NULL, NULL);
        return;
    }
    struct sub *s = sub_get(self);
    weft_task_t *t = NULL;
    int rc = s != NULL ? weft_spawn(&self->loop, m->fn, m->arg, &t) : UV_ENOMEM;
    if (rc == 0) {
        s->task = t;
        s->fut = m->fut;
        s->gen = m->gen;
        s->src = m->src;
        if (weft__hook_add(&t->fut, sub_done, s) != NULL) {
            weft__list_push_back(&self->live_subs, &s->live);
            weft_task_unref(t); /* the loop keeps it alive until it is done */
            return;
        }
        weft_task_cancel(t);
        weft_task_unref(t);
        rc = UV_ENOMEM;
    }
    if (s != NULL)
        sub_put(self, s);
    reply(self, m->src, m->fut, m->gen, rc, NULL, "submit_to: cannot spawn on the target");
}

static void on_cancel(struct rt_loop *self, const struct mesh_msg *m)
{
    struct weft__list *it;
    for (it = self->live_subs.next; it != &self->live_subs; it = it->next) {
        struct sub *s = WEFT_CONTAINER_OF(it, struct sub, live);
        if (s->fut == m->fut && s->gen == m->gen && s->src == m->src) {
            weft_task_cancel(s->task);
            return;
        }
    }
}

static void grant_submitter(struct rt_loop *self, unsigned to)
{
    struct weft__waiter *w = weft__waiter_first(&self->waiters[to]);
    if (w != NULL)
        weft__waiter_grant(w, 0);
}

static void on_reply(struct rt_loop *self, const struct mesh_msg *m)
{
    struct weft_future *f = m->fut;
    if (self->inflight[m->src] > 0)
        self->inflight[m->src]--;
    if (self->rt->max_inflight != 0)
        grant_submitter(self, m->src);
    /* f is still ours: the submit's hook holds a reference until now. */
    if (f->state != WEFT__F_PENDING) {
        weft__free(m->msg); /* cancelled before the reply came */
    } else {
        uint8_t st = m->err == 0              ? WEFT__F_DONE
                     : m->err == UV_ECANCELED ? WEFT__F_CANCELLED
                                              : WEFT__F_FAILED;
        self->replying = true;
        weft__future_complete(f, st, m->result, m->err, m->msg);
        self->replying = false;
    }
    weft_future_unref(f); /* the hook's */
}

/* Source side: a submit's future completed. If it was not the reply that
 * completed it (the caller cancelled it, or cancelled a task awaiting it),
 * tell the target to cancel the task. The future's reference stays until
 * the reply comes (on_reply), so the reply always finds it. */
static void submit_fut_done(struct weft__handle *h, struct weft_future *f)
{
    struct rt_loop *self = h->arg;
    unsigned to = h->rseq;
    weft__handle_put(h->loop, h);
    if (self->replying)
        return;
    struct mesh_msg m = {.kind = MESH_CANCEL,
                         .src = self->idx,
                         .fut = f,
                         .gen = __atomic_load_n(&f->gen, __ATOMIC_RELAXED)};
    if (send_to(self, to, &m) != 0) {
        /* out of memory: the remote task runs to its end */
    }
}

static void drain_ring(struct rt_loop *self, struct mesh_ring *r)
{
    if (!ring_ready(r))
        return;
    do {
        struct mesh_msg m = r->slots[r->chead & r->mask];
        r->chead++;
        if ((r->chead & (MESH_HEAD_EVERY - 1)) == 0)
            __atomic_store_n(&r->head, r->chead, __ATOMIC_RELEASE);
        if (m.kind == MESH_CALL) {
            weft_cb_fn cb = (weft_cb_fn)m.fut;
            cb(m.arg);
        } else if (m.kind == MESH_SUBMIT) {
            on_submit(self, &m);
        } else if (m.kind == MESH_CANCEL) {
            on_cancel(self, &m);
        } else {
            on_reply(self, &m);
        }
    } while (ring_ready(r));
    __atomic_store_n(&r->head, r->chead, __ATOMIC_RELEASE);
}

static void cancel_all(struct rt_loop *self);

static void mesh_drain(void *arg)
{
    struct rt_loop *self = arg;
    weft_runtime_t *rt = self->rt;
    if (self->stopped && weft__L(&self->loop)->st.tasks_spawned != self->spawned_at_stop)
        cancel_all(self); /* spawned after the stop began (e.g. from the inbox) */
    flush(self);
    for (unsigned j = 0; j < rt->n; j++)
        if (j != self->idx)
            drain_ring(self, ring(rt, j, self->idx));
    flush(self); /* replies of callbacks run just now */
}

static bool mesh_pending(void *arg)
{
    struct rt_loop *self = arg;
    weft_runtime_t *rt = self->rt;
    flush(self);
    for (unsigned j = 0; j < rt->n; j++) {
        struct mesh_ring *r = ring(rt, j, self->idx);
        if (j != self->idx && ring_ready(r))
            return true;
    }
    /* Overflowed messages still to move keep the loop awake - but not once
     * it is stopping: their target may have stopped already and would never
     * make room (what is left is freed with the runtime). */
    return self->dirty && !self->stopped;
}

/* ---- submit_to -------------------------------------------------------------------- */

/* The calling runtime loop and the target, which must be a loop of the same
 * runtime: 0, UV_EINVAL, WEFT_EWRONGLOOP (not on a runtime loop),
 * WEFT_ECLOSED (the runtime is stopping). */
static int resolve(weft_loop_t *target, struct rt_loop **self, struct rt_loop **to)
{
    if (target == NULL)
        return UV_EINVAL;
    *self = tls_rt_loop;
    if (*self == NULL)
        return WEFT_EWRONGLOOP;
    weft_runtime_t *rt = (*self)->rt;
    if (__atomic_load_n(&rt->stopping, __ATOMIC_ACQUIRE))
        return WEFT_ECLOSED;
    *to = (struct rt_loop *)(void *)target;
    if (*to < rt->loops || *to >= rt->loops + rt->n || &(*to)->loop != target)
        return UV_EINVAL; /* not a loop of this runtime */
    return 0;
}

int weft_submit_to(weft_loop_t *target, weft_task_fn fn, void *arg, weft_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (fn == NULL || out == NULL)
        return UV_EINVAL;
    struct rt_loop *self, *to;
    int rc = resolve(target, &self, &to);
    if (rc != 0)
        return rc;
    weft_runtime_t *rt = self->rt;
    if (to == self) {
        weft_task_t *t;
        rc = weft_spawn(target, fn, arg, &t);
        if (rc == 0)
            *out = weft_task_future(t);
        return rc;
    }
    unsigned j = to->idx;
    if (rt->max_inflight != 0) {
        while (self->inflight[j] >= rt->max_inflight) {
            if (weft_task_current() == NULL)
                return UV_EAGAIN;
            struct weft__waiter w;
            rc = weft__wait_here(&self->waiters[j], &w, WEFT_NO_DEADLINE);
            if (rc != 0)
                return rc;
        }
    }
    weft_future_t *f;
    rc = weft_future_new(&self->loop, &f);
    if (rc != 0)
        return rc;
    struct weft__handle *h = weft__hook_add(f, submit_fut_done, self);
    if (h == NULL) {
        weft_future_unref(f);
        return UV_ENOMEM;
    }
    h->rseq = j;
    weft_future_ref(f); /* the hook's, released by the reply */
    struct mesh_msg m = {.kind = MESH_SUBMIT,
                         .src = self->idx,
                         .fn = fn,
                         .arg = arg,
                         .fut = f,
                         .gen = __atomic_load_n(&f->gen, __ATOMIC_RELAXED)};
    rc = send_to(self, j, &m);
    if (rc != 0) {
        weft__hook_remove(h);
        weft_future_unref(f);
        weft_future_unref(f);
        return rc;
    }
    self->inflight[j]++;
    *out = f;
    return 0;
}

static int call_on(weft_loop_t *target, weft_cb_fn cb, void *arg, bool may_queue)
{
    if (cb == NULL)
        return UV_EINVAL;
    struct rt_loop *self, *to;
    int rc = resolve(target, &self, &to);
    if (rc != 0)
        return rc;
    if (to == self)
        return weft_call_soon(target, cb, arg, NULL);
    struct mesh_ring *r = &self->out[to->idx];
    if (!may_queue && (r->ovf_head != NULL || !ring_room(r)))
        return UV_EAGAIN;
    struct mesh_msg m = {.kind = MESH_CALL, .src = self->idx, .fut = (void *)cb, .arg = arg};
    return send_to(self, to->idx, &m);
}

int weft_call_on(weft_loop_t *target, weft_cb_fn cb, void *arg)
{
    return call_on(target, cb, arg, true);
}

int weft_call_on_try(weft_loop_t *target, weft_cb_fn cb, void *arg)
{
    return call_on(target, cb, arg, false);
}

int weft_submit_to_all(weft_task_fn fn, void *arg, void **results, int *errors)
{
    struct rt_loop *self = tls_rt_loop;
    if (fn == NULL)
        return UV_EINVAL;
    if (self == NULL)
        return WEFT_EWRONGLOOP;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    weft_runtime_t *rt = self->rt;
    unsigned n = rt->n;
    weft_future_t **fs = weft__calloc(n, sizeof(*fs));
    int *errs = weft__calloc(n, sizeof(*errs));
    if (fs == NULL || errs == NULL) {
        weft__free(fs);
        weft__free(errs);
        return UV_ENOMEM;
    }
    int rc = 0;
    unsigned made = 0;
    for (; made < n; made++) {
        rc = weft_submit_to(&rt->loops[made].loop, fn, arg, &fs[made]);
        if (rc != 0)
            break;
    }
    int grc = weft_gather(fs, made, results, errs, WEFT_RETURN_ERRORS);
    for (unsigned i = 0; i < made; i++)
        weft_future_unref(fs[i]);
    for (unsigned i = 0; i < n; i++) {
        if (i >= made)
            errs[i] = rc;
        if (errors != NULL)
            errors[i] = errs[i];
        if (rc == 0 && grc == 0 && errs[i] != 0)
            rc = errs[i];
    }
    if (grc != 0)
        rc = grc;
    weft__free(fs);
    weft__free(errs);
    return rc;
}

/* ---- loop threads ----------------------------------------------------------------- */

static void keep_cb(uv_async_t *h)
{
    (void)h;
}

static void pin(unsigned idx)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(idx % (unsigned)cores, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Give this thread a jemalloc arena of its own, so a loop's allocations
 * stay in memory its core touched (best effort). */
static void own_arena(void)
{
#if defined(__SANITIZE_THREAD__)
    /* TSan reports jemalloc's internal trylock in arenas.create as a double
     * lock (a false positive of its mutex interceptors): no own arenas. */
    return;
#endif
    unsigned arena;
    size_t sz = sizeof(arena);
    if (mallctl("arenas.create", &arena, &sz, NULL, 0) == 0)
        (void)mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena));
}

static void *loop_thread(void *arg)
{
    struct rt_loop *self = arg;
    weft_runtime_t *rt = self->rt;
    if (rt->pin)
        pin(self->idx);
    if (rt->arenas)
        own_arena();
    int rc = weft_loop_init(&self->loop, &rt->opts.loop);
    if (rc == 0) {
        weft__loop_set_index(weft__L(&self->loop), self->idx); /* the shuffle's stream */
        rc = uv_async_init(weft_loop_uv(&self->loop), &self->keep, keep_cb);
        if (rc != 0) {
            int crc = weft_loop_close(&self->loop);
            (void)crc;
        }
    }
    pthread_mutex_lock(&rt->mu);
    if (rc != 0 && rt->start_rc == 0)
        rt->start_rc = rc;
    rt->started++;
    pthread_cond_broadcast(&rt->cv);
    /* Run only once every loop is up: the mesh needs them all. */
    while (rt->started < rt->n)
        pthread_cond_wait(&rt->cv, &rt->mu);
    int start_rc = rt->start_rc;
    pthread_mutex_unlock(&rt->mu);
    if (rc != 0)
        return NULL;
    if (start_rc != 0) {
        uv_close((uv_handle_t *)&self->keep, NULL);
    } else {
        tls_rt_loop = self;
        weft__loop_set_ext(weft__L(&self->loop), mesh_drain, mesh_pending, self);
    }
    int rrc = weft_loop_run(&self->loop);
    (void)rrc;
    /* Stopped: let close callbacks run, then close. */
    int close_rc;
    while ((close_rc = weft_loop_close(&self->loop)) == UV_EBUSY) {
        rrc = weft_loop_run(&self->loop);
        (void)rrc;
    }
    tls_rt_loop = NULL;
    return NULL;
}

static void free_runtime(weft_runtime_t *rt)
{
    if (rt->loops != NULL) {
        for (unsigned i = 0; i < rt->n; i++) {
            struct rt_loop *x = &rt->loops[i];
            if (x->out != NULL)
                for (unsigned j = 0; j < rt->n; j++)
                    ring_free(&x->out[j]);
            weft__free(x->out);
            weft__free(x->inflight);
            weft__free(x->waiters);
            while (x->all_subs != NULL) {
                struct sub *s = x->all_subs;
                x->all_subs = s->all_next;
                weft__free(s);
            }
        }
        weft__free(rt->loops);
    }
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cv);
    weft__free(rt);
}

int weft_runtime_start(const weft_runtime_opts_t *opts, weft_runtime_t **out)
{
    if (out == NULL)
        return UV_EINVAL;
    *out = NULL;
    weft_runtime_opts_t o = opts != NULL ? *opts : (weft_runtime_opts_t){0};
    if (o.loops == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        o.loops = c > 0 ? (unsigned)c : 1;
    }
    if (o.ring_size == 0)
        o.ring_size = 1024;
    if (o.loops > 1024 || o.ring_size < 2 || (o.ring_size & (o.ring_size - 1)) != 0 ||
        o.ring_size > (1u << 24))
        return UV_EINVAL;
    weft_runtime_t *rt = weft__calloc(1, sizeof(*rt));
    if (rt == NULL)
        return UV_ENOMEM;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);
    rt->n = o.loops;
    rt->max_inflight = o.max_inflight;
    rt->pin = !o.no_pinning;
    rt->arenas = !o.no_arenas;
    rt->opts = o;
    rt->loops = weft__aligned_calloc(64, rt->n, sizeof(struct rt_loop));
    int rc = rt->loops != NULL ? 0 : UV_ENOMEM;
    for (unsigned i = 0; rc == 0 && i < rt->n; i++) {
        struct rt_loop *x = &rt->loops[i];
        x->rt = rt;
        x->idx = i;
        weft__list_init(&x->live_subs);
        x->out = weft__calloc(rt->n, sizeof(struct mesh_ring));
        x->inflight = weft__calloc(rt->n, sizeof(uint32_t));
        x->waiters = weft__calloc(rt->n, sizeof(struct weft__list));
        if (x->out == NULL || x->inflight == NULL || x->waiters == NULL) {
            rc = UV_ENOMEM;
            break;
        }
        for (unsigned j = 0; rc == 0 && j < rt->n; j++) {
            weft__list_init(&x->waiters[j]);
            rc = j != i ? ring_init(&x->out[j], o.ring_size) : 0;
        }
    }
    if (rc != 0) {
        free_runtime(rt);
        return rc;
    }
    unsigned made = 0;
    for (; made < rt->n; made++) {
        rc = -pthread_create(&rt->loops[made].th, NULL, loop_thread, &rt->loops[made]);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        /* The threads that exist wait for all: tell them it failed. */
        pthread_mutex_lock(&rt->mu);
        rt->start_rc = rc;
        rt->started += rt->n - made;
        pthread_cond_broadcast(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
    }
    pthread_mutex_lock(&rt->mu);
    while (rt->started < rt->n)
        pthread_cond_wait(&rt->cv, &rt->mu);
    if (rc == 0)
        rc = rt->start_rc;
    pthread_mutex_unlock(&rt->mu);
    if (rc != 0) {
        for (unsigned i = 0; i < made; i++)
            pthread_join(rt->loops[i].th, NULL);
        free_runtime(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

unsigned weft_runtime_count(const weft_runtime_t *rt)
{
    return rt != NULL ? rt->n : 0;
}

weft_loop_t *weft_runtime_loop(weft_runtime_t *rt, unsigned i)
{
    return rt != NULL && i < rt->n ? &rt->loops[i].loop : NULL;
}

int weft_loop_index(void)
{
    return tls_rt_loop != NULL ? (int)tls_rt_loop->idx : -1;
}

weft_runtime_t *weft_runtime_current(void)
{
    return tls_rt_loop != NULL ? tls_rt_loop->rt : NULL;
}

static void cancel_all(struct rt_loop *self)
{
    struct weft__loop *l = weft__L(&self->loop);
    self->spawned_at_stop = l->st.tasks_spawned;
    WEFT__FOR_EACH_TASK(l, x)
    {
        if (weft__task_live(x))
            weft_task_cancel(x);
    }
}

/* On each loop: cancel what runs (and, from then on, whatever is spawned),
 * refuse submits, let the loop run dry. */
static void stop_cb(void *arg)
{
    struct rt_loop *self = arg;
    self->leftovers = weft__L(&self->loop)->st.tasks_live;
    self->stopped = true;
    cancel_all(self);
    uv_close((uv_handle_t *)&self->keep, NULL);
}

int weft_runtime_stop(weft_runtime_t *rt, uint64_t *leftovers)
{
    if (leftovers != NULL)
        *leftovers = 0;
    if (rt == NULL)
        return UV_EINVAL;
    if (tls_rt_loop != NULL || weft_loop_current() != NULL)
        return WEFT_EWRONGLOOP;
    __atomic_store_n(&rt->stopping, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < rt->n; i++) {
        int rc = weft_call_soon_threadsafe(&rt->loops[i].loop, stop_cb, &rt->loops[i]);
        (void)rc; /* a closed loop has stopped already */
    }
    uint64_t left = 0;
    for (unsigned i = 0; i < rt->n; i++) {
        pthread_join(rt->loops[i].th, NULL);
        left += rt->loops[i].leftovers;
    }
    if (leftovers != NULL)
        *leftovers = left;
    free_runtime(rt);
    return 0;
}

/* ---- weft_runtime_run ---------------------------------------------------------------- */

struct run_state {
    weft_task_fn main;
    void *arg;
    weft_tsfuture_t *done;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

int weft_runtime_run(const weft_runtime_opts_t *opts, weft_task_fn main, void *arg, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (main == NULL)
        return UV_EINVAL;
    if (weft_loop_current() != NULL)
        return WEFT_EREENTRANT;
    weft_runtime_t *rt;
    int rc = weft_runtime_start(opts, &rt);
    if (rc != 0)
        return rc;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    got_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    weft_tsfuture_t *f;
    rc = weft_spawn_threadsafe(&rt->loops[0].loop, main, arg, &f);
    if (rc == 0) {
        bool cancelled = false;
        for (;;) {
            rc = weft_tsfuture_wait_blocking(f, 50, result);
            if (rc != UV_ETIMEDOUT)
                break;
            if (got_signal && !cancelled) {
                (void)weft_tsfuture_cancel(f);
                cancelled = true;
            }
        }
        weft_tsfuture_unref(f);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    int src = weft_runtime_stop(rt, NULL);
    return rc != 0 ? rc : src;
}

/*
 * loops/runtime.c - N loops on N pinned threads, the mesh of rings between
 * them, submit_to, and spawn_threadsafe (weft/runtime.h).
 *
 * Each loop thread: pin itself, take a jemalloc arena of its own (reused
 * from loops that ended), init its loop, install the mesh as the loop's
 * extra message source (core's ext hooks: drain every iteration, a pending
 * check before sleeping), keep the loop alive with a referenced uv_async
 * handle, run. Stopping posts a callback to every loop that cancels its
 * tasks and closes that handle; the loop then runs until its work is gone
 * and returns.
 *
 * Wake-up ordering (the rule docs/multiloop.md calls "waking only the sleeping"):
 *   producer: write a slot, its sequence number last (release); then, once
 *             per 32 messages and at the end of its loop's tick: seq_cst
 *             fence; load the target's `sleeping` flag; if set, claim it
 *             (CAS 1 -> 0) and write its eventfd. Also at the first message
 *             since the last check, and on any message whose plain
 *             (unfenced) load of the flag sees it set: a consumer asleep
 *             for a while is woken at once, not when the tick ends.
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
#include "core/ext.h"
#include "core/testhooks.h"
#include "loops/mesh.h"

void (*weft__test_stop_hook)(unsigned idx);
unsigned long weft__test_replies_parked;

struct rt_loop;

struct weft_runtime {
    unsigned n;
    unsigned max_inflight;
    bool pin, arenas;
    int stopping;    /* atomic */
    unsigned nquiet; /* atomic: loops that are quiet (see stop_progress) */
    struct rt_loop *loops;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned started;
    int start_rc;
    weft_runtime_opts_t opts;
};

/* A submit being run on its target loop. */
struct sub {
    struct sub *next;     /* free list */
    struct sub *all_next; /* every record of the loop (freed with the runtime) */
    struct sub *hnext;    /* in the loop's table of running submits (on_cancel) */
    weft_task_t *task;    /* no reference: the record dies with the task */
    void *fut;            /* the submitter's future (on loop src) */
    uint32_t gen, src;
    /* A reply that could not be queued (no memory for an overflow node) is
     * parked here, in the loop's unsent list, and sent by a later flush:
     * a submitter's future always gets its answer. */
    int err;
    void *result;
    char *msg;
};

struct rt_loop {
    _Alignas(64) weft_loop_t loop;
    weft_runtime_t *rt;
    unsigned idx;
    int cpu; /* where the thread pins itself (weft_cpu_id(idx) at the start) */
    pthread_t th;
    uv_async_t keep;
    struct mesh_ring **out;     /* out[j]: ring from this loop to loop j, or NULL */
    struct mesh_ring **in;      /* in[j]: ring from loop j to this one (atomic; see ring_to) */
    uint32_t *inflight;         /* per target: submits without a reply yet */
    struct weft__list *waiters; /* per target: submitters over the limit */
    struct weft__source source; /* the mesh, as a message source of the loop */
    struct sub *free_subs;
    struct sub *all_subs;
    /* Submits running here, by (submitter's future, source loop), so that a
     * cancel finds its task in O(1): a stop that cancels n submits used to
     * scan a list n times. Chained; the bucket count doubles with the load,
     * and stays as it is if there is no memory to grow (longer chains). */
    struct sub **live;
    unsigned live_mask, live_n;
    bool replying;                    /* on_reply is completing a future */
    bool dirty;                       /* some outgoing ring has unpublished messages or an
                                       * overflow list, or a reply is parked */
    bool retry_in;                    /* a submit was left in its ring for lack of memory */
    bool stopped;                     /* stop_cb ran: cancel whatever is spawned from now on */
    bool quiet;                       /* stopped, and every call and submit it sent is in a
                                       * ring (counted once in rt->nquiet) */
    bool keep_closed;                 /* nothing more to wait for: the loop may run dry */
    struct sub *unsent, *unsent_tail; /* parked replies, in order */
    uint64_t spawned_at_stop;
    uint64_t leftovers;
    /* weft_runtime_stats: written by this loop's thread only (stat_add),
     * read by any thread with relaxed loads. */
    uint64_t st_sent, st_received, st_inflight;
};

/* A counter with one writer and readers anywhere: a relaxed load and store
 * (no read-modify-write: plain moves on x86-64 and aarch64). */
static inline void stat_add(uint64_t *c, uint64_t d)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED);
}

static __thread struct rt_loop *tls_rt_loop;

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

/* Producer: the ring to loop `to`, made by the first message that goes there.
 *
 * Why lazily: a ring is ring_size 64-byte slots (64 KiB by default) and a
 * full mesh has N x (N - 1) of them, most of which many programs never use
 * (a front loop submitting to workers uses 2 x (N - 1)). Made up front, a
 * whole runtime took (jemalloc's stats.allocated just after the start, no
 * message sent; no_pinning, 2-CPU VM) 0.9 MiB at 2 loops, 19.8 MiB at 16,
 * 1062 MiB at 128; made on first use, 0.7, 4.7 and 40.9 MiB (the loops
 * themselves), growing with the pairs that talk: after every loop sent one
 * message to every other loop, 1.4, 23.7 and 1063 MiB. A default ring size
 * shrinking with the loop count would bound that worst case (128 slots at
 * 128 loops: 195 MiB), but it was measured to slow the all-to-all shards
 * example from 1.9 s to 5.6 s at 72 loops on 2 CPUs (full rings spill to
 * the overflow list), so the size stays the caller's (ring_size).
 *
 * Publication: the sender initialises the ring and stores it into the
 * receiver's in[] with release; the receiver loads in[] with acquire in
 * every drain and in its check before sleeping, so it sees an initialised
 * ring (zeroed slots: nothing to read yet). The wake-up rule still holds:
 * the pointer, like the slot, is stored before the sender's fence and
 * loaded after the receiver's, so either the receiver, about to sleep,
 * finds both, or the sender finds it asleep and wakes it. The memory is
 * freed with the runtime. NULL when out of memory. */
static struct mesh_ring *ring_to(struct rt_loop *self, unsigned to)
{
    struct mesh_ring *r = self->out[to];
    if (__builtin_expect(r != NULL, 1))
        return r;
    r = weft__aligned_calloc(64, 1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (ring_init(r, self->rt->opts.ring_size) != 0) {
        weft__free(r);
        return NULL;
    }
    self->out[to] = r;
    __atomic_store_n(&self->rt->loops[to].in[self->idx], r, __ATOMIC_RELEASE);
    return r;
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
        stat_add(&r->ovf_len, (uint64_t)-1);
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
    stat_add(&r->overflows, 1);
    stat_add(&r->ovf_len, 1);
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
    struct mesh_ring *r = self->out[to];
    r->woken = r->ptail;
    weft__loop_wake_if_sleeping(weft__L(&self->rt->loops[to].loop));
}

static int send_to(struct rt_loop *self, unsigned to, const struct mesh_msg *m)
{
    struct mesh_ring *r = ring_to(self, to);
    if (r == NULL)
        return UV_ENOMEM;
    int rc = ring_put(r, m);
    if (rc < 0)
        return rc;
    stat_add(&self->st_sent, 1);
    self->dirty = true;
    /* Wake a sleeping consumer now, not when this loop's tick ends: a tick
     * lasts as long as its tasks run without suspending, and a submit sat
     * behind it - skynetN's root submitted to loop 1 and ran loop 0's share
     * of the tree inline (~25 ms) while loop 1 slept, so 2 loops were slower
     * than 1; with tasks yielding to each other a submit waited for 256 task
     * runs (400 ms with 1 ms tasks, examples/pipeline). So: the fenced check
     * (wake) at the first message since the last check and then every
     * MESH_WAKE_EVERY; and on every message a plain load of the consumer's
     * sleep flag, which costs nothing while it is awake (the flag's line is
     * rarely written, so it stays in this core's cache) and catches a
     * consumer that fell asleep after the first message. A sleep announced
     * at this very instant and missed by the plain load is caught by the
     * end-of-tick check, as before. */
    uint32_t since = r->ptail - r->woken;
    if (since == 1 || since >= MESH_WAKE_EVERY ||
        weft__loop_maybe_sleeping(weft__L(&self->rt->loops[to].loop)))
        wake(self, to);
    return 0;
}

static int send_reply(struct rt_loop *self, struct sub *s);
static void sub_put(struct rt_loop *self, struct sub *s);

/* Producer: move what overflowed into r; if the ring is still full, ask the
 * consumer for a room wake-up, so that this loop may sleep instead of
 * polling a full ring. Dekker's pattern with the consumer's check in
 * wake_producers(): we store want_room, fence, and look at the consumer's
 * head again; it stores head, fences and looks at want_room - so either we
 * see the room it made, or it sees our request. Returns true if messages
 * are still waiting. */
static bool refill_or_ask(struct mesh_ring *r)
{
    ring_refill(r);
    if (r->ovf_head == NULL)
        return false;
    __atomic_store_n(&r->want_room, 1, __ATOMIC_RELAXED);
    weft__fence_seq_cst();
    ring_refill(r);
    return r->ovf_head != NULL;
}

/* Publish every outgoing ring, wake the targets that sleep, and send the
 * parked replies. */
static void flush(struct rt_loop *self)
{
    if (!self->dirty)
        return;
    weft_runtime_t *rt = self->rt;
    /* Parked replies first: what they queue is published below. */
    while (self->unsent != NULL && send_reply(self, self->unsent) == 0) {
        struct sub *s = self->unsent;
        self->unsent = s->next;
        if (self->unsent == NULL)
            self->unsent_tail = NULL;
        sub_put(self, s);
    }
    bool more = self->unsent != NULL;
    for (unsigned j = 0; j < rt->n; j++) {
        struct mesh_ring *r = self->out[j];
        if (r == NULL)
            continue;
        if (r->ovf_head != NULL)
            more |= refill_or_ask(r);
        if (r->ptail != r->woken) /* written since the last wake check */
            wake(self, j);
    }
    self->dirty = more;
}

/* Consumer, after draining: wake the producers that asked for room (see
 * refill_or_ask). One fence for all rings, only when something was taken. */
static void wake_producers(struct rt_loop *self)
{
    weft_runtime_t *rt = self->rt;
    weft__fence_seq_cst();
    for (unsigned j = 0; j < rt->n; j++) {
        struct mesh_ring *r = __atomic_load_n(&self->in[j], __ATOMIC_ACQUIRE);
        if (r != NULL && __atomic_load_n(&r->want_room, __ATOMIC_RELAXED) &&
            __atomic_exchange_n(&r->want_room, 0, __ATOMIC_RELAXED))
            weft__loop_wake_if_sleeping(weft__L(&rt->loops[j].loop));
    }
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

static unsigned live_hash(const void *fut, uint32_t src)
{
    uint64_t x = (uint64_t)(uintptr_t)fut ^ ((uint64_t)src << 56);
    x ^= x >> 33; /* a 64-bit finaliser (MurmurHash3's fmix64) */
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (unsigned)x;
}

static void live_add(struct rt_loop *self, struct sub *s)
{
    if (self->live_n > self->live_mask) { /* load 1: double, if memory allows */
        unsigned mask = self->live_mask * 2 + 1;
        struct sub **t = weft__calloc((size_t)mask + 1, sizeof(*t));
        if (t != NULL) {
            for (unsigned i = 0; i <= self->live_mask; i++) {
                while (self->live[i] != NULL) {
                    struct sub *x = self->live[i];
                    self->live[i] = x->hnext;
                    unsigned b = live_hash(x->fut, x->src) & mask;
                    x->hnext = t[b];
                    t[b] = x;
                }
            }
            weft__free(self->live);
            self->live = t;
            self->live_mask = mask;
        }
    }
    unsigned b = live_hash(s->fut, s->src) & self->live_mask;
    s->hnext = self->live[b];
    self->live[b] = s;
    self->live_n++;
}

static void live_remove(struct rt_loop *self, struct sub *s)
{
    struct sub **p = &self->live[live_hash(s->fut, s->src) & self->live_mask];
    while (*p != s)
        p = &(*p)->hnext;
    *p = s->hnext;
    self->live_n--;
}

/* Send the reply that s holds: 0, or UV_ENOMEM (nothing sent, s unchanged). */
static int send_reply(struct rt_loop *self, struct sub *s)
{
    struct mesh_msg m = {.kind = MESH_REPLY,
                         .src = self->idx,
                         .gen = s->gen,
                         .err = s->err,
                         .fut = s->fut,
                         .result = s->err == 0 ? s->result : NULL,
                         .msg = s->msg};
    int rc = send_to(self, s->src, &m);
    if (rc == 0)
        s->msg = NULL; /* the message's now */
    return rc;
}

/* Answer the submit that s records (s->src, fut, gen): send the reply, or
 * park it in s until a later flush can (no memory for an overflow node). s
 * is released once the reply is on its way. Every submit that reached this
 * loop is answered exactly once, so the submitter's future completes and
 * its max_inflight credit comes back. */
static void reply(struct rt_loop *self, struct sub *s, int err, void *res, const char *msg)
{
    s->err = err;
    s->result = err == 0 ? res : NULL;
    s->msg = err != 0 && err != UV_ECANCELED && msg != NULL ? weft__strdup(msg) : NULL;
    if (self->unsent == NULL && send_reply(self, s) == 0) {
        sub_put(self, s);
        return;
    }
    __atomic_fetch_add(&weft__test_replies_parked, 1, __ATOMIC_RELAXED);
    s->next = NULL; /* behind the replies parked before it: keep their order */
    if (self->unsent_tail != NULL)
        self->unsent_tail->next = s;
    else
        self->unsent = s;
    self->unsent_tail = s;
    self->dirty = true;
}

/* Target side: the submitted task finished (or was cancelled before it
 * ran): send its outcome home. A hook, so it runs in every case. */
static void sub_done(struct weft__handle *h, struct weft_future *f)
{
    struct sub *s = weft__hook_arg(h);
    struct rt_loop *self = tls_rt_loop;
    weft__hook_release(h);
    live_remove(self, s);
    void *res;
    const char *msg;
    int err = weft__future_take(f, &res, &msg); /* the submitter gets the code */
    reply(self, s, err, res, msg);
}

/* Returns false if the submit could not even get a record to answer with:
 * it then stays in its ring and is taken again later (drain_ring). */
static bool on_submit(struct rt_loop *self, const struct mesh_msg *m)
{
    struct sub *s = sub_get(self);
    if (s == NULL)
        return false;
    s->fut = m->fut;
    s->gen = m->gen;
    s->src = m->src;
    if (self->stopped) {
        reply(self, s, WEFT_ECLOSED, NULL, NULL);
        return true;
    }
    weft_task_t *t = NULL;
    int rc = weft_spawn(&self->loop, m->fn, m->arg, &t);
    if (rc == 0) {
        s->task = t;
        if (weft__hook_add(weft_task_future(t), sub_done, s) != NULL) {
            live_add(self, s);
            weft_task_unref(t); /* the loop keeps it alive until it is done */
            return true;
        }
        weft_task_cancel(t);
        weft_task_unref(t);
        rc = UV_ENOMEM;
    }
    reply(self, s, rc, NULL, "submit_to: cannot spawn on the target");
    return true;
}

static void on_cancel(struct rt_loop *self, const struct mesh_msg *m)
{
    for (struct sub *s = self->live[live_hash(m->fut, m->src) & self->live_mask]; s != NULL;
         s = s->hnext) {
        if (s->fut == m->fut && s->gen == m->gen && s->src == m->src) {
            weft_task_cancel(s->task);
            return;
        }
    }
}

/* A credit for submits to loop `to` is free again (a reply came, or a
 * submit failed after taking one): hand it straight to the oldest waiting
 * submitter - inflight stays, the credit moves - or count it free. With the
 * handover, a submitter that arrives meanwhile cannot overtake the waiters
 * (it sees them and queues behind). */
static void credit_release(struct rt_loop *self, unsigned to)
{
    if (self->rt->max_inflight != 0) {
        if (weft__waitq_grant(&self->waiters[to], 0))
            return;
    }
    if (self->inflight[to] > 0) {
        self->inflight[to]--;
        stat_add(&self->st_inflight, (uint64_t)-1);
    }
}

static void on_reply(struct rt_loop *self, const struct mesh_msg *m)
{
    struct weft_future *f = m->fut;
    credit_release(self, m->src);
    /* f is still ours: the submit's hook holds a reference until now. */
    if (weft_future_done(f)) {
        weft__free(m->msg); /* cancelled before the reply came */
        if (m->err == 0)
            weft__side_drop_result(f, m->result); /* its result destructor, if any */
    } else {
        self->replying = true;
        weft__future_settle(f, m->err, m->result, m->msg);
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
    struct rt_loop *self = weft__hook_arg(h);
    unsigned to = weft__hook_tag(h);
    weft__hook_release(h);
    if (self->replying)
        return;
    struct mesh_msg m = {
        .kind = MESH_CANCEL, .src = self->idx, .fut = f, .gen = weft__future_gen(f)};
    if (send_to(self, to, &m) != 0) {
        /* out of memory: the remote task runs to its end */
    }
}

/* Run what r holds, in order. Returns true if anything was taken. A
 * message is taken (chead moves past it, and may be published) only once
 * it has been handled, so a submit that cannot be handled yet stays. */
static bool drain_ring(struct rt_loop *self, struct mesh_ring *r)
{
    if (!ring_ready(r))
        return false;
    do {
        struct mesh_msg m = r->slots[r->chead & r->mask];
        if (m.kind == MESH_CALL) {
            weft_cb_fn cb = (weft_cb_fn)m.fut;
            cb(m.arg);
        } else if (m.kind == MESH_SUBMIT) {
            if (!on_submit(self, &m)) {
                self->retry_in = true; /* out of memory: take it again later */
                break;
            }
        } else if (m.kind == MESH_CANCEL) {
            on_cancel(self, &m);
        } else {
            on_reply(self, &m);
        }
        r->chead++;
        stat_add(&self->st_received, 1);
        if ((r->chead & (MESH_HEAD_EVERY - 1)) == 0)
            __atomic_store_n(&r->head, r->chead, __ATOMIC_RELEASE);
    } while (ring_ready(r));
    __atomic_store_n(&r->head, r->chead, __ATOMIC_RELEASE);
    return true;
}

static void cancel_all(struct rt_loop *self);
static void stop_progress(struct rt_loop *self);
static bool overflowing(const struct rt_loop *self);

static bool inbound_ready(struct rt_loop *self)
{
    weft_runtime_t *rt = self->rt;
    for (unsigned j = 0; j < rt->n; j++) {
        struct mesh_ring *r = __atomic_load_n(&self->in[j], __ATOMIC_ACQUIRE);
        if (r != NULL && ring_ready(r))
            return true;
    }
    return false;
}

static void mesh_drain(void *arg)
{
    struct rt_loop *self = arg;
    weft_runtime_t *rt = self->rt;
    if (self->stopped && weft__loop_tasks_spawned(weft__L(&self->loop)) != self->spawned_at_stop)
        cancel_all(self); /* spawned after the stop began (e.g. from the inbox) */
    flush(self);
    bool took = false;
    self->retry_in = false;
    for (unsigned j = 0; j < rt->n; j++) {
        struct mesh_ring *r = __atomic_load_n(&self->in[j], __ATOMIC_ACQUIRE);
        if (r != NULL) /* in[idx] stays NULL: a loop sends itself nothing */
            took |= drain_ring(self, r);
    }
    if (took)
        wake_producers(self);
    flush(self); /* replies of callbacks run just now */
    if (self->stopped)
        stop_progress(self);
}

/* Is there work for this loop now? Inbound messages, and what only memory
 * can unblock (parked replies, a submit left in its ring), which is retried
 * on every tick. An overflow list waiting for room in a full ring does not
 * count: its consumer wakes this loop when it makes room (refill_or_ask),
 * so a sender to a stalled receiver sleeps instead of spinning. */
static bool mesh_pending(void *arg)
{
    struct rt_loop *self = arg;
    flush(self);
    if (inbound_ready(self) || self->unsent != NULL || self->retry_in)
        return true;
    if (!self->stopped || self->keep_closed)
        return false;
    /* Stopping, and a step of stop_progress is due: our overflow lists just
     * emptied (the flush above), or every loop became quiet since our last
     * tick (the last one to do so wakes us after its increment; this load
     * after our sleep announcement closes the window). */
    if (!self->quiet)
        return !overflowing(self);
    return weft__loop_tasks_live(weft__L(&self->loop)) == 0 &&
           __atomic_load_n(&self->rt->nquiet, __ATOMIC_ACQUIRE) == self->rt->n;
}

/* ---- submit_to -------------------------------------------------------------------- */

/* The calling runtime loop and the target, which must be a loop of the same
 * runtime: 0, UV_EINVAL, WEFT_EWRONGLOOP (not on a runtime loop),
 * WEFT_ECLOSED (the runtime is stopping). */
static int resolve(weft_loop_t *target, struct rt_loop **self, struct rt_loop **to)
{
    *self = tls_rt_loop;
    if (*self == NULL)
        return target == NULL ? UV_EINVAL : WEFT_EWRONGLOOP;
    if (target == NULL)
        target = &(*self)->loop; /* NULL = the calling loop (loop.h) */
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
    /* Take a credit: free ones only when nobody waits for one (FIFO). */
    if (rt->max_inflight != 0 &&
        (self->inflight[j] >= rt->max_inflight || weft__waitq_busy(&self->waiters[j]))) {
        if (weft_task_current() == NULL)
            return UV_EAGAIN;
        rc = weft__waitq_wait(&self->waiters[j], WEFT_FOREVER);
        if (rc != 0)
            return rc; /* not granted: no credit taken */
    } else {
        self->inflight[j]++;
        stat_add(&self->st_inflight, 1);
    }
    weft_future_t *f;
    rc = weft_future_new(&self->loop, &f);
    if (rc != 0) {
        credit_release(self, j);
        return rc;
    }
    struct weft__handle *h = weft__hook_add(f, submit_fut_done, self);
    if (h == NULL) {
        weft_future_unref(f);
        credit_release(self, j);
        return UV_ENOMEM;
    }
    weft__hook_set_tag(h, j);
    weft_future_ref(f); /* the hook's, released by the reply */
    struct mesh_msg m = {.kind = MESH_SUBMIT,
                         .src = self->idx,
                         .fn = fn,
                         .arg = arg,
                         .fut = f,
                         .gen = weft__future_gen(f)};
    rc = send_to(self, j, &m);
    if (rc != 0) {
        weft__hook_remove(h);
        weft_future_unref(f);
        weft_future_unref(f);
        credit_release(self, j);
        return rc;
    }
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
    struct mesh_ring *r = self->out[to->idx]; /* none yet: it will be empty */
    if (!may_queue && r != NULL && (r->ovf_head != NULL || !ring_room(r)))
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

/* Pin the calling loop thread to CPU `cpu` (best effort: a CPU beyond
 * glibc's fixed set, or a mask changed since the start, leaves it floating
 * within what it inherited). */
static void pin(int cpu)
{
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Arenas of loops that have ended, for the next loops to take. jemalloc
 * cannot give an arena back: arena.<i>.destroy discards every allocation
 * still in it, and a loop's memory outlives its thread (the runtime frees
 * rings and records after the join, a task's result may be freed anywhere).
 * So an arena, once made, lives as long as the process, and a process that
 * starts and stops runtimes reuses the ones it has instead of making N new
 * ones each time (which grew arenas.narenas, and the metadata of each, by N
 * per start). One loop uses an arena at a time; the pool is process-wide,
 * behind a mutex, touched once per loop start and end. */
static pthread_mutex_t arenas_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned *arenas_free; /* indices, arenas_nfree of arenas_cap used */
static unsigned arenas_nfree, arenas_cap;

/* An arena for a starting loop: a free one, else a new one. 0 or UV_ENOMEM. */
static int arena_take(unsigned *arena)
{
    pthread_mutex_lock(&arenas_mu);
    bool reused = arenas_nfree > 0;
    if (reused)
        *arena = arenas_free[--arenas_nfree];
    pthread_mutex_unlock(&arenas_mu);
    size_t sz = sizeof(*arena);
    if (reused || mallctl("arenas.create", arena, &sz, NULL, 0) == 0)
        return 0;
    return UV_ENOMEM;
}

/* Back to the pool. If the list cannot grow, the arena is only not reused
 * (it stays valid, with whatever it still holds). */
static void arena_give_back(unsigned arena)
{
    pthread_mutex_lock(&arenas_mu);
    if (arenas_nfree == arenas_cap) {
        unsigned cap = arenas_cap != 0 ? 2 * arenas_cap : 16;
        unsigned *a = weft__realloc(arenas_free, cap * sizeof(*a));
        if (a != NULL) {
            arenas_free = a;
            arenas_cap = cap;
        }
    }
    if (arenas_nfree < arenas_cap)
        arenas_free[arenas_nfree++] = arena;
    pthread_mutex_unlock(&arenas_mu);
}

/* Give this thread a jemalloc arena of its own, so a loop's allocations
 * stay in memory its core touched (best effort). Returns the arena to give
 * back when the loop ends, or -1. */
static int own_arena(void)
{
#if defined(__SANITIZE_THREAD__)
    /* TSan reports jemalloc's internal trylock in arenas.create as a double
     * lock (a false positive of its mutex interceptors): no own arenas. */
    return -1;
#endif
    unsigned arena;
    if (arena_take(&arena) != 0)
        return -1;
    if (mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena)) != 0) {
        arena_give_back(arena);
        return -1;
    }
    return (int)arena;
}

static void *loop_thread(void *arg)
{
    struct rt_loop *self = arg;
    weft_runtime_t *rt = self->rt;
    if (rt->pin)
        pin(self->cpu);
    int arena = rt->arenas ? own_arena() : -1;
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
    if (rc != 0) {
        if (arena >= 0)
            arena_give_back((unsigned)arena);
        return NULL;
    }
    if (start_rc != 0) {
        uv_close((uv_handle_t *)&self->keep, NULL);
    } else {
        tls_rt_loop = self;
        self->source =
            (struct weft__source){.drain = mesh_drain, .pending = mesh_pending, .arg = self};
        weft__loop_add_source(weft__L(&self->loop), &self->source);
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
    /* The thread ends here: a later loop may take the arena even before
     * this thread's exit unbinds it (sharing an arena is safe, only slower,
     * and only for that moment). */
    if (arena >= 0)
        arena_give_back((unsigned)arena);
    return NULL;
}

static void free_runtime(weft_runtime_t *rt)
{
    if (rt->loops != NULL) {
        for (unsigned i = 0; i < rt->n; i++) {
            struct rt_loop *x = &rt->loops[i];
            for (unsigned j = 0; x->out != NULL && j < rt->n; j++) {
                if (x->out[j] != NULL)
                    ring_free(x->out[j]);
                weft__free(x->out[j]);
            }
            weft__free(x->out);
            weft__free(x->in);
            weft__free(x->inflight);
            weft__free(x->live);
            weft__free(x->waiters);
            for (struct sub *s = x->unsent; s != NULL; s = s->next)
                weft__free(s->msg); /* replies to loops that ran dry */
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
    if (o.loops == 0)
        o.loops = weft_cpu_count();
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
        /* Read here, on the starting thread, whose mask the loop threads
         * inherit: a loop that pinned itself first cannot shrink it. */
        x->cpu = rt->pin ? weft_cpu_id(i) : -1;
        x->live_mask = 63;
        x->live = weft__calloc(x->live_mask + 1, sizeof(*x->live));
        x->out = weft__calloc(rt->n, sizeof(*x->out));
        x->in = weft__calloc(rt->n, sizeof(*x->in));
        x->inflight = weft__calloc(rt->n, sizeof(uint32_t));
        x->waiters = weft__calloc(rt->n, sizeof(struct weft__list));
        if (x->out == NULL || x->in == NULL || x->inflight == NULL || x->waiters == NULL ||
            x->live == NULL) {
            rc = UV_ENOMEM;
            break;
        }
        for (unsigned j = 0; j < rt->n; j++)
            weft__list_init(&x->waiters[j]);
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

int weft_runtime_stats(const weft_runtime_t *rt, size_t n, weft_runtime_loop_stats_t *out)
{
    if (rt == NULL || (out == NULL && n > 0))
        return UV_EINVAL;
    for (unsigned i = 0; i < rt->n && i < n; i++) {
        const struct rt_loop *x = &rt->loops[i];
        weft_runtime_loop_stats_t *o = &out[i];
        o->mesh_sent = __atomic_load_n(&x->st_sent, __ATOMIC_RELAXED);
        o->mesh_received = __atomic_load_n(&x->st_received, __ATOMIC_RELAXED);
        o->submits_inflight = __atomic_load_n(&x->st_inflight, __ATOMIC_RELAXED);
        o->ring_overflows = 0;
        o->overflow_depth = 0;
        /* Loop i's outgoing rings are the in[i] of the others: published
         * with release by their producer (ring_to), never freed before the
         * runtime. */
        for (unsigned j = 0; j < rt->n; j++) {
            struct mesh_ring *r = __atomic_load_n(&rt->loops[j].in[i], __ATOMIC_ACQUIRE);
            if (r == NULL)
                continue;
            o->ring_overflows += __atomic_load_n(&r->overflows, __ATOMIC_RELAXED);
            o->overflow_depth += __atomic_load_n(&r->ovf_len, __ATOMIC_RELAXED);
        }
    }
    return (int)rt->n;
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
    self->spawned_at_stop = weft__loop_tasks_spawned(l);
    weft__loop_cancel_tasks(l);
    weft__loop_cancel_proxies(l);
}

/* On each loop: cancel what runs (and, from then on, whatever is spawned),
 * answer submits with WEFT_ECLOSED, and deliver what is in flight before
 * running dry (stop_progress). */
static void stop_cb(void *arg)
{
    struct rt_loop *self = arg;
    self->leftovers = weft__loop_tasks_live(weft__L(&self->loop));
    self->stopped = true;
    cancel_all(self);
    if (__builtin_expect(weft__test_stop_hook != NULL, 0))
        weft__test_stop_hook(self->idx);
    stop_progress(self);
}

static bool overflowing(const struct rt_loop *self)
{
    for (unsigned j = 0; j < self->rt->n; j++)
        if (self->out[j] != NULL && self->out[j]->ovf_head != NULL)
            return true;
    return false;
}

/* The second phase of a stop, on each stopped loop, every tick. A call or a
 * submit that a sender accepted (returned 0 for) is delivered - run, or
 * answered WEFT_ECLOSED - even if its target stops first: no loop runs dry
 * before every loop is quiet, i.e. stopped (so it sends no new calls or
 * submits: resolve() refuses them) with its overflow lists moved into the
 * rings, and before it has run everything in its incoming rings after
 * that. The last loop to become quiet wakes the others; a loop waiting for
 * room wakes through its consumer (refill_or_ask). Replies and cancels that
 * come later, for loops that ran dry already, are for tasks that were
 * cancelled by the stop; they are freed with the runtime. */
static void stop_progress(struct rt_loop *self)
{
    weft_runtime_t *rt = self->rt;
    if (self->keep_closed)
        return;
    if (!self->quiet && !overflowing(self)) {
        self->quiet = true;
        /* acq_rel: our ring writes happen before a loop that sees the count
         * complete reads its rings. */
        if (__atomic_add_fetch(&rt->nquiet, 1, __ATOMIC_ACQ_REL) == rt->n)
            for (unsigned j = 0; j < rt->n; j++)
                if (j != self->idx)
                    weft__loop_wake_if_sleeping(weft__L(&rt->loops[j].loop));
    }
    if (!self->quiet || __atomic_load_n(&rt->nquiet, __ATOMIC_ACQUIRE) != rt->n)
        return;
    if (weft__loop_tasks_live(weft__L(&self->loop)) > 0 || inbound_ready(self) ||
        self->unsent != NULL || self->retry_in)
        return;
    self->keep_closed = true;
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

int weft_runtime_run(weft_task_fn main, void *arg, const weft_runtime_opts_t *opts, void **result)
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

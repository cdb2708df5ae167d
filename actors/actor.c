/*
 * actors/actor.c - actors: mailboxes, send/ask/reply/forward, stop, kill,
 * exit signals, links, monitors, timers and stash (weft/actor.h,
 * docs/actors.md).
 *
 * An actor is a task that loops: system messages first, then the next
 * mailbox message, then park. Its mailbox has up to three parts:
 *
 *   - local: a loop-local deque for messages sent from the actor's own
 *     loop (unbounded mailboxes), its timers and unstash. A same-loop send
 *     is a copy into the deque plus, if the actor is parked, a grant of its
 *     wait queue: no atomic read-modify-write at all (slots.c says why no
 *     pin is needed), so the cost is about one task switch.
 *   - mb: an MPSC channel (weft/chan.h) for messages from other loops and
 *     plain threads. A bounded mailbox sends EVERY message through it, so
 *     that its capacity and overflow policy are exact whoever sends
 *     (DROP_OLDEST makes it MPMC: the sender takes the oldest out).
 *   - spill: for unbounded mailboxes, a locked list a cross-thread sender
 *     uses when the channel is full (it allocates; it never drops). Once
 *     the list is not empty every sender goes there until the actor takes
 *     it, and the actor takes it only when the channel is empty under the
 *     list's lock, so each sender's messages stay in order.
 *
 * Parking: the actor sets `waiting` (plain, for same-loop senders) and
 * `parked` (seq_cst exchange), then re-reads the channel, the spill flag,
 * the system flag and its control flags; a cross-thread sender, after its
 * channel CAS (or its seq_cst store of a flag), reads `parked` and, if it
 * wins the exchange 1 -> 0, posts a wake-up to the actor's loop (the
 * inbox, as channels wake tasks of other loops). One side sees the other.
 *
 * System messages (link requests, exit signals, monitors, DOWN, joins) go
 * on a separate locked list that is never bounded and never dropped: their
 * records are allocated when the relation is made (weft_actor_link,
 * weft_actor_monitor, weft_actor_join), so an actor's death allocates
 * nothing to tell its links and monitors. stop and kill are flags. Ask
 * replies do not pass through any mailbox: they complete the asker's
 * future through its token (weft/future.h), on the asker's loop.
 *
 * Death happens in the actor's task and never suspends: the slot stops
 * taking pins (cross-thread senders get UV_ESRCH), the lists close, the
 * channel closes, and everything left (local, stash, channel until UV_EOF,
 * spill) is reported as dead letters - so handled + dead letters = sent.
 *
 * Measured (docs/actors.md, "Costs measured here", 2026-12-03, the 2-core
 * VM under a load of 9-14 from other builds, so read ratios): actor_pingpong
 * 512-967 ns per round trip, 1.26x the channel ping-pong and 2.6x the
 * weft_queue_t ping-pong of the same run, against a target of 60 ns that
 * this load cannot show met or missed; thread_ring 640 ns per hop.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <weft/actor.h>
#include <weft/error.h>
#include <weft/task.h>

#include "actor_int.h"
#include "core/alloc.h"
#include "core/base.h"
#include "core/ext.h"

#define BATCH 64

enum {
    WAKE_CANCEL = 1
};

static weft_task_key_t cur_key;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;
static uint64_t dead_total;
static weft_dead_letter_fn dl_hook;
static void *dl_arg;
static uint64_t next_monitor_ref;

static void init_globals(void)
{
    init_rc = weft_task_key_new(NULL, &cur_key);
}

static int ensure_init(void)
{
    pthread_once(&init_once, init_globals);
    return init_rc;
}

static inline weft_loop_t *cur_loop(void)
{
    struct weft__loop *l = weft__tls_loop;
    return l != NULL ? weft__pub(l) : NULL;
}

static inline void count(uint64_t *c)
{
    __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* ---- the local deque ------------------------------------------------------- */

static int dq_grow(struct deque *d)
{
    uint32_t cap = d->buf != NULL ? d->mask + 1 : 0;
    uint32_t ncap = cap != 0 ? cap * 2 : 16;
    if (ncap == 0)
        return UV_ENOMEM;
    struct env *nb = weft__malloc((size_t)ncap * sizeof *nb);
    if (nb == NULL)
        return UV_ENOMEM;
    for (uint32_t i = 0; i < d->len; i++)
        nb[i] = d->buf[(d->head + i) & d->mask];
    weft__free(d->buf);
    d->buf = nb;
    d->mask = ncap - 1;
    d->head = 0;
    return 0;
}

static inline int dq_push(struct deque *d, const struct env *e)
{
    if (__builtin_expect(d->buf == NULL || d->len == d->mask + 1, 0)) {
        int rc = dq_grow(d);
        if (rc != 0)
            return rc;
    }
    d->buf[(d->head + d->len++) & d->mask] = *e;
    return 0;
}

static int dq_push_front(struct deque *d, const struct env *e)
{
    if (d->buf == NULL || d->len == d->mask + 1) {
        int rc = dq_grow(d);
        if (rc != 0)
            return rc;
    }
    d->head = (d->head - 1) & d->mask;
    d->buf[d->head] = *e;
    d->len++;
    return 0;
}

static inline bool dq_pop(struct deque *d, struct env *out)
{
    if (d->len == 0)
        return false;
    *out = d->buf[d->head];
    d->head = (d->head + 1) & d->mask;
    d->len--;
    return true;
}

/* ---- replies ----------------------------------------------------------------- */

/* Complete an ask's future: directly when it belongs to the calling loop,
 * else by a message to its loop. The token's reference goes either way. */
static void tok_complete(weft_future_token_t tok, int code, void *value, const char *msg)
{
    weft_future_t *f = tok.weft__f;
    /* Same loop: the token turns back into our reference, no message. */
    if (weft_future_loop(f) == cur_loop() && weft_future_from_token(tok, &f) == 0) {
        if (weft_future_done(f)) {
            if (code == 0)
                weft__side_drop_result(f, value);
        } else if (code == 0) {
            if (weft_future_set_result(f, value) != 0)
                weft__side_drop_result(f, value);
        } else if (weft_future_set_error(f, code, msg) != 0) {
            (void)weft_future_cancel(f); /* no memory for the message */
        }
        weft_future_unref(f);
        return;
    }
    int rc = code == 0 ? weft_future_set_result_threadsafe(tok, value)
                       : weft_future_set_error_threadsafe(tok, code, msg);
    if (rc == UV_ENOMEM && code != 0) /* the message could not be copied */
        rc = weft_future_set_error_threadsafe(tok, code, NULL);
    if (rc == UV_ENOMEM && weft_future_token_drop(tok) != 0) {
        /* No memory even to give the reference back: it is the one leak
         * left, named here so that it is not a silent one. */
    }
}

/* A token of the calling loop's future that will not be used. */
static void drop_token(weft_future_token_t tok)
{
    weft_future_t *f;
    if (weft_future_from_token(tok, &f) == 0)
        weft_future_unref(f);
}

/* ---- dead letters ------------------------------------------------------------ */

uint64_t weft_actor_dead_letters(void)
{
    return __atomic_load_n(&dead_total, __ATOMIC_RELAXED);
}

void weft_actor_set_dead_letter_hook(weft_dead_letter_fn hook, void *arg)
{
    __atomic_store_n(&dl_arg, arg, __ATOMIC_RELAXED);
    __atomic_store_n(&dl_hook, hook, __ATOMIC_RELEASE);
}

static void report_dead(weft_aref_t to, const struct env *e)
{
    count(&dead_total);
    weft_dead_letter_fn hook = __atomic_load_n(&dl_hook, __ATOMIC_ACQUIRE);
    if (hook != NULL) {
        weft_msg_t m = {.kind = WEFT_MSG_USER,
                        .tag = e->tag,
                        .data = e->data,
                        .from = e->from,
                        .is_ask = e->is_ask != 0};
        hook(__atomic_load_n(&dl_arg, __ATOMIC_RELAXED), to, &m);
    }
}

/* A message a will never handle: its ask fails with UV_ESRCH, it is
 * counted and reported, and (to_dtor) its data goes to the msg_dtor. */
void weft__actor_dead_letter(weft_aref_t to, struct weft_actor *a, const struct env *e,
                             bool to_dtor)
{
    if (e->kind == ENV_POISON)
        return;
    if (e->is_ask)
        tok_complete(e->tok, UV_ESRCH, NULL, "the actor is dead");
    if (a != NULL)
        count(&a->n_dead);
    report_dead(to, e);
    if (to_dtor && a != NULL && a->opts.msg_dtor != NULL)
        a->opts.msg_dtor(e->tag, e->data);
}

/* A message dropped by the overflow policy (not a dead letter). */
static void drop_msg(struct weft_actor *a, const struct env *e)
{
    if (e->kind == ENV_POISON)
        return;
    if (e->is_ask)
        tok_complete(e->tok, UV_ENOBUFS, NULL, "dropped: the mailbox was full");
    if (a->opts.msg_dtor != NULL)
        a->opts.msg_dtor(e->tag, e->data);
}

/* ---- waking ------------------------------------------------------------------ */

static inline void wake_local(struct weft_actor *a)
{
    a->waiting = false;
    __atomic_store_n(&a->parked, 0, __ATOMIC_RELAXED);
    (void)weft__waitq_grant(&a->wq, 0);
}

static void wake_msg(void *ctx, uintptr_t ap, uintptr_t slot, uintptr_t gen, uintptr_t flags)
{
    (void)ctx;
    struct weft_actor *a = (struct weft_actor *)ap;
    if ((flags & WAKE_CANCEL) && a->in_handler && a->task != NULL)
        (void)weft_task_cancel(a->task);
    if (a->waiting)
        wake_local(a);
    weft__aslot_unpin((weft_aref_t){(uint32_t)slot, (uint32_t)gen});
}

/* From another thread: a message to a's loop, holding a pin until it ran.
 * A dying actor takes no pin, and needs no wake-up: it drains by itself. */
static void post_wake(struct weft_actor *a, uintptr_t flags)
{
    if (weft__aslot_pin(a->self) == NULL)
        return;
    if (weft__post(weft__L(a->loop), wake_msg, (uintptr_t)a, a->self.weft__slot, a->self.weft__gen,
                   flags) != 0)
        weft__aslot_unpin(a->self);
}

/* After something was put in a's mailbox or lists (the caller holds a pin
 * or runs on a's loop). */
static void wake_any(struct weft_actor *a)
{
    if (a->loop == cur_loop()) {
        if (a->waiting)
            wake_local(a);
        return;
    }
    if (__atomic_load_n(&a->parked, __ATOMIC_SEQ_CST) == 0)
        return;
    if (__atomic_exchange_n(&a->parked, 0, __ATOMIC_SEQ_CST) == 0)
        return;
    post_wake(a, 0);
}

/* ---- system messages ---------------------------------------------------------- */

void weft__sysrec_free(struct sysrec *r)
{
    if (r == NULL)
        return;
    weft__free(r->rmsg);
    weft__free(r);
}

static struct sysrec *sysrec_new(int kind, weft_aref_t peer)
{
    struct sysrec *r = weft__calloc(1, sizeof *r);
    if (r != NULL) {
        r->kind = kind;
        r->peer = peer;
    }
    return r;
}

/* Push r onto a's system list (a pinned or ours). */
static int sys_push_to(struct weft_actor *a, struct sysrec *r)
{
    pthread_mutex_lock(&a->lock);
    if (a->closed) {
        pthread_mutex_unlock(&a->lock);
        return UV_ESRCH;
    }
    r->next = NULL;
    if (a->sys_tail != NULL)
        a->sys_tail->next = r;
    else
        a->sys_head = r;
    a->sys_tail = r;
    __atomic_store_n(&a->sys_pending, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&a->lock);
    wake_any(a);
    return 0;
}

int weft__actor_sys_push(weft_aref_t to, struct sysrec *r)
{
    struct weft_actor *a = weft__aslot_pin(to);
    if (a == NULL)
        return UV_ESRCH;
    int rc = sys_push_to(a, r);
    weft__aslot_unpin(to);
    return rc;
}

static struct sysrec *sys_take(struct weft_actor *a)
{
    __atomic_store_n(&a->sys_pending, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&a->lock);
    struct sysrec *r = a->sys_head;
    a->sys_head = a->sys_tail = NULL;
    pthread_mutex_unlock(&a->lock);
    return r;
}

static struct sysrec **find_peer(struct sysrec **list, weft_aref_t peer)
{
    for (; *list != NULL; list = &(*list)->next)
        if (weft_aref_eq((*list)->peer, peer))
            return list;
    return NULL;
}

static struct sysrec **find_ref(struct sysrec **list, uint64_t ref)
{
    for (; *list != NULL; list = &(*list)->next)
        if ((*list)->ref == ref)
            return list;
    return NULL;
}

static bool mon_ref_take(struct weft_actor *a, uint64_t ref, weft_aref_t *target)
{
    for (size_t i = 0; i < a->mon_n; i++)
        if (a->mon_refs[i].ref == ref) {
            if (target != NULL)
                *target = a->mon_refs[i].target;
            a->mon_refs[i] = a->mon_refs[--a->mon_n];
            return true;
        }
    return false;
}

/* ---- exiting ------------------------------------------------------------------ */

static void begin_exit(struct weft_actor *a, weft_exit_kind_t kind, int code, const char *msg)
{
    if (a->exiting)
        return;
    a->exiting = true;
    a->reason = (weft_exit_t){kind, kind == WEFT_EXIT_ERROR ? code : 0, NULL};
    if (msg != NULL)
        a->reason_msg = weft__strdup(msg); /* NULL (no memory): no message */
    a->reason.message = a->reason_msg;
}

/* A handler's negative code: KILLED if a kill is why, SHUTDOWN if the task
 * was cancelled from outside (a runtime stopping), else a crash. */
static void crashed(struct weft_actor *a, int rc)
{
    uint32_t ctl = __atomic_load_n(&a->ctl, __ATOMIC_ACQUIRE);
    if (ctl & CTL_KILL)
        begin_exit(a, WEFT_EXIT_KILLED, 0, NULL);
    else if (rc == UV_ECANCELED && weft_task_cancelling(a->task) > 0)
        begin_exit(a, WEFT_EXIT_SHUTDOWN, 0, NULL);
    else
        begin_exit(a, WEFT_EXIT_ERROR, rc, a->fail_msg);
}

/* ---- handling ------------------------------------------------------------------ */

static int call_handler(struct weft_actor *a, const weft_msg_t *m)
{
    weft__free(a->fail_msg);
    a->fail_msg = NULL;
    a->in_handler = true;
    int rc = a->fn(a, a->state, m);
    a->in_handler = false;
    return rc;
}

static void dispatch(struct weft_actor *a, struct env *e)
{
    if (e->kind == ENV_POISON) {
        begin_exit(a, WEFT_EXIT_NORMAL, 0, NULL);
        return;
    }
    weft_msg_t m = {.kind = WEFT_MSG_USER,
                    .tag = e->tag,
                    .data = e->data,
                    .from = e->from,
                    .is_ask = e->is_ask != 0};
    a->cur = e;
    a->cur_owned = e->is_ask != 0;
    int rc = call_handler(a, &m);
    __atomic_store_n(&a->n_handled, a->n_handled + 1, __ATOMIC_RELAXED);
    if (a->cur_owned)
        tok_complete(e->tok, rc < 0 ? rc : 0, NULL, rc < 0 ? a->fail_msg : NULL);
    a->cur = NULL;
    a->cur_owned = false;
    if (rc < 0)
        crashed(a, rc);
}

/* Deliver an exit signal or a DOWN to the handler as a message. */
static void deliver_signal(struct weft_actor *a, weft_msg_kind_t kind, const struct sysrec *r)
{
    weft_exit_t why = {r->rkind, r->rcode, r->rmsg};
    weft_msg_t m = {.kind = kind, .from = r->peer, .exit = &why, .ref = r->ref};
    int rc = call_handler(a, &m);
    if (rc < 0)
        crashed(a, rc);
}

static void on_exit_signal(struct weft_actor *a, struct sysrec *r)
{
    if (r->link) {
        struct sysrec **l = find_peer(&a->links, r->peer);
        if (l == NULL) { /* unlinked meanwhile */
            weft__sysrec_free(r);
            return;
        }
        struct sysrec *mine = *l;
        *l = mine->next;
        weft__sysrec_free(mine);
    }
    if (a->trap)
        deliver_signal(a, WEFT_MSG_EXIT, r);
    else if (r->rkind != WEFT_EXIT_NORMAL)
        begin_exit(a, r->rkind, r->rcode, r->rmsg);
    weft__sysrec_free(r);
}

static void on_sys(struct weft_actor *a, struct sysrec *r)
{
    struct sysrec **l;
    switch (r->kind) {
    case SYS_LINK_REQ:
        if (find_peer(&a->links, r->peer) != NULL) {
            weft__sysrec_free(r);
        } else {
            r->next = a->links;
            a->links = r;
        }
        return;
    case SYS_UNLINK:
        if ((l = find_peer(&a->links, r->peer)) != NULL) {
            struct sysrec *mine = *l;
            *l = mine->next;
            weft__sysrec_free(mine);
        }
        weft__sysrec_free(r);
        return;
    case SYS_EXIT:
        on_exit_signal(a, r);
        return;
    case SYS_MONITOR:
        r->next = a->watchers;
        a->watchers = r;
        return;
    case SYS_DEMONITOR:
        if ((l = find_ref(&a->watchers, r->ref)) != NULL) {
            struct sysrec *w = *l;
            *l = w->next;
            weft__sysrec_free(w);
        }
        weft__sysrec_free(r);
        return;
    case SYS_DOWN:
        if (mon_ref_take(a, r->ref, NULL))
            deliver_signal(a, WEFT_MSG_DOWN, r);
        weft__sysrec_free(r);
        return;
    case SYS_JOIN:
        r->next = a->joins;
        a->joins = r;
        return;
    default:
        weft__sysrec_free(r);
    }
}

static void process_sys(struct weft_actor *a)
{
    struct sysrec *r = sys_take(a);
    while (r != NULL && !a->exiting) {
        struct sysrec *next = r->next;
        r->next = NULL;
        on_sys(a, r);
        r = next;
    }
    if (r == NULL)
        return;
    /* Ending: the rest goes back to the list, which death answers. */
    struct sysrec *t = r;
    while (t->next != NULL)
        t = t->next;
    pthread_mutex_lock(&a->lock);
    t->next = a->sys_head;
    a->sys_head = r;
    if (a->sys_tail == NULL)
        a->sys_tail = t;
    pthread_mutex_unlock(&a->lock);
}

static bool check_ctl(struct weft_actor *a)
{
    uint32_t ctl = __atomic_load_n(&a->ctl, __ATOMIC_ACQUIRE);
    if (ctl & CTL_KILL)
        begin_exit(a, WEFT_EXIT_KILLED, 0, NULL);
    else if (ctl & CTL_STOP)
        begin_exit(a, WEFT_EXIT_NORMAL, 0, NULL);
    return a->exiting;
}

/* ---- the mailbox, consumer side --------------------------------------------------- */

/* Move what other threads sent into the local deque (unbounded mailboxes):
 * a batch from the channel, else - when the channel is empty under the
 * lock - the whole spill list. */
static bool refill(struct weft_actor *a)
{
    struct env buf[BATCH];
    size_t got = 0;
    if (weft_chan_len(a->mb) > 0 && weft_chan_recv_batch(a->mb, buf, BATCH, &got) == 0) {
        for (size_t i = 0; i < got; i++)
            if (dq_push(&a->local, &buf[i]) != 0) /* no memory: handle it now */
                dispatch(a, &buf[i]);
        return true;
    }
    if (!__atomic_load_n(&a->spill_flag, __ATOMIC_ACQUIRE))
        return false;
    struct spill *s = NULL;
    pthread_mutex_lock(&a->lock);
    if (weft_chan_len(a->mb) == 0) {
        s = a->spill_head;
        a->spill_head = a->spill_tail = NULL;
        __atomic_store_n(&a->spill_flag, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&a->lock);
    bool any = s != NULL;
    while (s != NULL) {
        struct spill *next = s->next;
        if (dq_push(&a->local, &s->e) != 0)
            dispatch(a, &s->e);
        weft__free(s);
        s = next;
    }
    return any || weft_chan_len(a->mb) > 0;
}

/* Bounded mailboxes: one message straight from the channel, so that the
 * bound holds (nothing waits outside it but the message being handled). */
static bool take_bounded(struct weft_actor *a, struct env *e)
{
    return weft_chan_recv_try(a->mb, e) == 0;
}

static void park(struct weft_actor *a)
{
    a->waiting = true;
    (void)__atomic_exchange_n(&a->parked, 1, __ATOMIC_SEQ_CST);
    if (weft_chan_len(a->mb) > 0 || __atomic_load_n(&a->spill_flag, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&a->sys_pending, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&a->ctl, __ATOMIC_SEQ_CST) || a->local.len > 0) {
        a->waiting = false;
        __atomic_store_n(&a->parked, 0, __ATOMIC_RELAXED);
        return;
    }
    int rc = weft__waitq_wait(&a->wq, WEFT_FOREVER);
    a->waiting = false;
    __atomic_store_n(&a->parked, 0, __ATOMIC_RELAXED);
    if (rc == UV_ECANCELED && !check_ctl(a))
        begin_exit(a, WEFT_EXIT_SHUTDOWN, 0, NULL);
}

/* ---- death --------------------------------------------------------------------- */

static void drain_dead(struct weft_actor *a)
{
    struct env e;
    while (dq_pop(&a->local, &e))
        weft__actor_dead_letter(a->self, a, &e, true);
    while (dq_pop(&a->stash, &e))
        weft__actor_dead_letter(a->self, a, &e, true);
    /* Until UV_EOF, not UV_EAGAIN: a sender that claimed a slot before the
     * close may still be writing it (a few instructions on its thread). */
    for (;;) {
        int rc = weft_chan_recv_try(a->mb, &e);
        if (rc == 0)
            weft__actor_dead_letter(a->self, a, &e, true);
        else if (rc == UV_EAGAIN)
            sched_yield();
        else
            break;
    }
    pthread_mutex_lock(&a->lock);
    struct spill *s = a->spill_head;
    a->spill_head = a->spill_tail = NULL;
    pthread_mutex_unlock(&a->lock);
    while (s != NULL) {
        struct spill *next = s->next;
        weft__actor_dead_letter(a->self, a, &s->e, true);
        weft__free(s);
        s = next;
    }
}

static intptr_t encode_exit(weft_exit_kind_t kind, int code)
{
    return (intptr_t)code * 16 + (intptr_t)kind;
}

static void set_reason(struct sysrec *r, const weft_exit_t *why, weft_aref_t self)
{
    r->peer = self;
    r->rkind = why->kind;
    r->rcode = why->code;
    weft__free(r->rmsg);
    r->rmsg = why->message != NULL ? weft__strdup(why->message) : NULL;
}

/* Tell every link, monitor and joiner how a ended. */
static void notify_all(struct weft_actor *a)
{
    /* Requests that came in while we were ending join the lists first. */
    struct sysrec *r = sys_take(a);
    while (r != NULL) {
        struct sysrec *next = r->next;
        if (r->kind == SYS_LINK_REQ && find_peer(&a->links, r->peer) == NULL) {
            r->next = a->links;
            a->links = r;
        } else if (r->kind == SYS_MONITOR) {
            r->next = a->watchers;
            a->watchers = r;
        } else if (r->kind == SYS_JOIN) {
            r->next = a->joins;
            a->joins = r;
        } else {
            weft__sysrec_free(r);
        }
        r = next;
    }
    const weft_exit_t *why = &a->reason;
    for (r = a->links; r != NULL;) {
        struct sysrec *next = r->next;
        weft_aref_t to = r->peer;
        r->kind = SYS_EXIT;
        r->link = true;
        set_reason(r, why, a->self);
        if (weft__actor_sys_push(to, r) != 0)
            weft__sysrec_free(r);
        r = next;
    }
    for (r = a->watchers; r != NULL;) {
        struct sysrec *next = r->next;
        weft_aref_t to = r->peer;
        r->kind = SYS_DOWN;
        set_reason(r, why, a->self);
        if (weft__actor_sys_push(to, r) != 0)
            weft__sysrec_free(r);
        r = next;
    }
    for (r = a->joins; r != NULL;) {
        struct sysrec *next = r->next;
        tok_complete(r->tok, 0, (void *)encode_exit(why->kind, why->code), NULL);
        weft__sysrec_free(r);
        r = next;
    }
    a->links = a->watchers = a->joins = NULL;
}

static void cancel_timers(struct weft_actor *a)
{
    while (!weft__list_empty(&a->timers)) {
        struct atimer *t = WEFT_CONTAINER_OF(weft__list_pop_front(&a->timers), struct atimer, node);
        (void)weft_handle_cancel(t->h);
        weft__free(t);
    }
}

static void die(struct weft_actor *a)
{
    weft__aslot_kill(a->self);
    pthread_mutex_lock(&a->lock);
    a->closed = true;
    pthread_mutex_unlock(&a->lock);
    (void)weft_chan_close(a->mb);
    cancel_timers(a);
    weft__names_drop(a);
    drain_dead(a);
    notify_all(a);
    if (a->opts.on_stop != NULL)
        a->opts.on_stop(a->state, &a->reason);
    a->task = NULL;
    weft__aslot_unpin(a->self); /* may free a */
}

void weft__actor_free(struct weft_actor *a)
{
    weft_chan_unref(a->mb);
    weft__free(a->local.buf);
    weft__free(a->stash.buf);
    weft__free(a->mon_refs);
    weft__free(a->reason_msg);
    weft__free(a->fail_msg);
    weft__free(a->name);
    pthread_mutex_destroy(&a->lock);
    weft__free(a);
}

/* ---- the actor's task ------------------------------------------------------------ */

static int actor_main(void *arg, void **result)
{
    (void)result;
    struct weft_actor *a = arg;
    a->task = weft_task_current();
    if (a->name != NULL)
        if (weft_task_set_name(a->task, a->name) != 0) {
            /* no memory: the task keeps the name "actor" */
        }
    int rc = weft_task_local_set(cur_key, a);
    if (rc != 0)
        begin_exit(a, WEFT_EXIT_ERROR, rc, "no memory for the actor's task-local");
    if (!a->exiting && a->opts.on_start != NULL) {
        a->in_handler = true;
        rc = a->opts.on_start(a, a->state);
        a->in_handler = false;
        if (rc < 0)
            crashed(a, rc);
    }
    unsigned burst = 0;
    while (!a->exiting) {
        if (__builtin_expect(__atomic_load_n(&a->ctl, __ATOMIC_RELAXED) != 0, 0) && check_ctl(a))
            break;
        if (__builtin_expect(__atomic_load_n(&a->sys_pending, __ATOMIC_RELAXED) != 0, 0)) {
            process_sys(a);
            continue;
        }
        struct env e;
        if (dq_pop(&a->local, &e) || (a->bounded && take_bounded(a, &e))) {
            dispatch(a, &e);
            if (++burst >= BATCH) { /* let the rest of the loop run */
                burst = 0;
                if (!a->bounded)
                    (void)refill(a);
                if (weft_yield() == UV_ECANCELED && !check_ctl(a))
                    begin_exit(a, WEFT_EXIT_SHUTDOWN, 0, NULL);
            }
            continue;
        }
        if (!a->bounded && refill(a))
            continue;
        burst = 0;
        park(a);
    }
    (void)weft_task_uncancel(a->task);
    die(a);
    return 0;
}

/* ---- spawning --------------------------------------------------------------------- */

static void start_msg(void *ctx, uintptr_t ap, uintptr_t b, uintptr_t c, uintptr_t d);

static int start_task(struct weft_actor *a)
{
    weft_task_opts_t to = {.name = "actor", .stack_size = a->opts.stack_size};
    return weft_spawn_ex(a->loop, actor_main, a, &to, NULL);
}

/* A start that failed on the loop: the actor ends before it began. */
static void stillborn(struct weft_actor *a, int rc)
{
    begin_exit(a, WEFT_EXIT_ERROR, rc, "the actor's task could not start");
    die(a);
}

static void start_msg(void *ctx, uintptr_t ap, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)ctx, (void)b, (void)c, (void)d;
    struct weft_actor *a = (struct weft_actor *)ap;
    int rc = start_task(a);
    if (rc != 0)
        stillborn(a, rc);
}

static int check_opts(const weft_actor_opts_t *o)
{
    if (o == NULL)
        return 0;
    if ((unsigned)o->overflow > WEFT_OVERFLOW_DROP_OLDEST || o->capacity > (1u << 30) ||
        o->ring > (1u << 30))
        return UV_EINVAL;
    return 0;
}

static struct weft_actor *actor_new(weft_loop_t *loop, weft_actor_fn fn, void *state,
                                    const weft_actor_opts_t *opts, int *rc)
{
    struct weft_actor *a = weft__calloc(1, sizeof *a);
    *rc = UV_ENOMEM;
    if (a == NULL)
        return NULL;
    if (opts != NULL)
        a->opts = *opts;
    a->opts.name = NULL;
    a->loop = loop;
    a->fn = fn;
    a->state = state;
    a->trap = a->opts.trap_exit;
    a->bounded = a->opts.capacity > 0;
    weft__list_init(&a->wq);
    weft__list_init(&a->timers);
    pthread_mutex_init(&a->lock, NULL);
    weft_chan_opts_t co = {
        .elem_size = sizeof(struct env),
        .capacity = a->bounded ? a->opts.capacity : (a->opts.ring ? a->opts.ring : 256),
        .kind = a->bounded && a->opts.overflow == WEFT_OVERFLOW_DROP_OLDEST ? WEFT_CHAN_MPMC
                                                                            : WEFT_CHAN_MPSC,
        .name = "mailbox",
    };
    if ((opts != NULL && opts->name != NULL && (a->name = weft__strdup(opts->name)) == NULL) ||
        (*rc = weft_chan_new(&co, &a->mb)) != 0) {
        *rc = *rc != 0 ? *rc : UV_ENOMEM;
        weft_chan_unref(a->mb);
        weft__free(a->name);
        pthread_mutex_destroy(&a->lock);
        weft__free(a);
        return NULL;
    }
    *rc = 0;
    return a;
}

int weft_actor_spawn(weft_loop_t *loop, weft_actor_fn fn, void *state,
                     const weft_actor_opts_t *opts, weft_aref_t *out)
{
    if (out != NULL)
        *out = WEFT_AREF_NONE;
    if (fn == NULL || out == NULL || check_opts(opts) != 0)
        return UV_EINVAL;
    int rc = ensure_init();
    if (rc != 0)
        return rc;
    struct weft__loop *L = weft__L_cur(loop);
    if (L == NULL || !weft__loop_valid(L))
        return UV_EINVAL;
    struct weft_actor *a = actor_new(weft__pub(L), fn, state, opts, &rc);
    if (a == NULL)
        return rc;
    rc = weft__aslot_alloc(a, a->loop, &a->self);
    if (rc != 0) {
        weft__actor_free(a);
        return rc;
    }
    if (L == weft__tls_loop)
        rc = start_task(a);
    else
        rc = weft__post(L, start_msg, (uintptr_t)a, 0, 0, 0);
    if (rc != 0) {
        weft__aslot_kill(a->self);
        weft__aslot_unpin(a->self); /* frees a */
        return rc;
    }
    *out = a->self;
    return 0;
}

unsigned weft_actor_shard(const weft_runtime_t *rt, uint64_t key)
{
    unsigned n = rt != NULL ? weft_runtime_count(rt) : 1;
    key ^= key >> 33; /* murmur3's finaliser: neighbouring keys spread */
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return n > 0 ? (unsigned)(key % n) : 0;
}

int weft_actor_spawn_sharded(weft_runtime_t *rt, uint64_t key, weft_actor_fn fn, void *state,
                             const weft_actor_opts_t *opts, weft_aref_t *out)
{
    if (rt == NULL) {
        if (out != NULL)
            *out = WEFT_AREF_NONE;
        return UV_EINVAL;
    }
    return weft_actor_spawn(weft_runtime_loop(rt, weft_actor_shard(rt, key)), fn, state, opts, out);
}

/* ---- sending ------------------------------------------------------------------------ */

static weft_aref_t current_sender(void)
{
    if (weft__tls_loop == NULL)
        return WEFT_AREF_NONE;
    struct weft_actor *me = weft_task_local_get(cur_key);
    return me != NULL ? me->self : WEFT_AREF_NONE;
}

static int send_unbounded(struct weft_actor *a, const struct env *e)
{
    if (!__atomic_load_n(&a->spill_flag, __ATOMIC_ACQUIRE)) {
        int rc = weft_chan_send_try(a->mb, e);
        if (rc != UV_EAGAIN)
            return rc;
    }
    struct spill *s = weft__malloc(sizeof *s);
    if (s == NULL)
        return UV_ENOMEM;
    s->next = NULL;
    s->e = *e;
    pthread_mutex_lock(&a->lock);
    if (a->closed) {
        pthread_mutex_unlock(&a->lock);
        weft__free(s);
        return WEFT_ECLOSED;
    }
    if (a->spill_tail != NULL)
        a->spill_tail->next = s;
    else
        a->spill_head = s;
    a->spill_tail = s;
    __atomic_store_n(&a->spill_flag, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&a->lock);
    count(&a->n_spilled);
    return 0;
}

static int send_drop_oldest(struct weft_actor *a, const struct env *e)
{
    for (;;) {
        int rc = weft_chan_send_try(a->mb, e);
        if (rc != UV_EAGAIN)
            return rc;
        struct env old;
        if (weft_chan_recv_try(a->mb, &old) == 0) {
            count(&a->n_drop_old);
            drop_msg(a, &old);
        }
    }
}

static int send_bounded(struct weft_actor *a, const struct env *e, uint64_t timeout_ms, bool timed)
{
    int rc;
    switch (a->opts.overflow) {
    case WEFT_OVERFLOW_DROP_OLDEST:
        return send_drop_oldest(a, e);
    case WEFT_OVERFLOW_DROP_NEWEST:
        rc = weft_chan_send_try(a->mb, e);
        if (rc == UV_EAGAIN) {
            count(&a->n_drop_new);
            drop_msg(a, e);
            rc = 0;
        }
        return rc;
    case WEFT_OVERFLOW_FAIL:
        rc = weft_chan_send_try(a->mb, e);
        if (rc == UV_EAGAIN)
            count(&a->n_rejected);
        return rc;
    default:
        break;
    }
    rc = weft_chan_send_try(a->mb, e);
    if (rc != UV_EAGAIN)
        return rc;
    if (weft_task_current() != NULL) {
        count(&a->n_suspended);
        return timed ? weft_chan_send_timeout(a->mb, e, timeout_ms) : weft_chan_send(a->mb, e);
    }
    if (!timed) {
        count(&a->n_rejected);
        return UV_EAGAIN;
    }
    count(&a->n_suspended);
    return weft_chan_send_blocking(a->mb, e, timeout_ms);
}

/* Put e in to's mailbox: 0, UV_ESRCH (a dead letter, reported here), or
 * another send code. */
static int deliver(weft_aref_t to, const struct env *e, uint64_t timeout_ms, bool timed)
{
    if (to.weft__slot == 0)
        return UV_EINVAL;
    bool other;
    struct weft_actor *a = weft__aslot_local(to, cur_loop(), &other);
    if (a != NULL && !a->bounded) { /* the fast path: same loop */
        int rc = dq_push(&a->local, e);
        if (rc == 0 && a->waiting)
            wake_local(a);
        return rc;
    }
    if (a == NULL && !other) {
        report_dead(to, e);
        return UV_ESRCH;
    }
    a = weft__aslot_pin(to);
    if (a == NULL) {
        report_dead(to, e);
        return UV_ESRCH;
    }
    int rc = a->bounded ? send_bounded(a, e, timeout_ms, timed) : send_unbounded(a, e);
    if (rc == 0) {
        wake_any(a);
    } else if (rc == WEFT_ECLOSED) {
        count(&a->n_dead);
        report_dead(to, e);
        rc = UV_ESRCH;
    }
    weft__aslot_unpin(to);
    return rc;
}

int weft_actor_send(weft_aref_t to, uint64_t tag, void *data)
{
    struct env e = {.tag = tag, .data = data, .from = current_sender(), .kind = ENV_USER};
    return deliver(to, &e, WEFT_FOREVER, false);
}

int weft_actor_send_timeout(weft_aref_t to, uint64_t tag, void *data, uint64_t timeout_ms)
{
    struct env e = {.tag = tag, .data = data, .from = current_sender(), .kind = ENV_USER};
    return deliver(to, &e, timeout_ms, true);
}

int weft_actor_poison(weft_aref_t to)
{
    struct env e = {.from = current_sender(), .kind = ENV_POISON};
    return deliver(to, &e, WEFT_FOREVER, false);
}

int weft_actor_ask_ex(weft_aref_t to, uint64_t tag, void *data, uint64_t timeout_ms,
                      void (*reply_dtor)(void *), void **reply)
{
    if (reply != NULL)
        *reply = NULL;
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    if (to.weft__slot == 0)
        return UV_EINVAL;
    int rc = ensure_init();
    if (rc != 0)
        return rc;
    weft_future_t *f;
    if ((rc = weft_future_new(NULL, &f)) != 0)
        return rc;
    struct env e = {.tag = tag, .data = data, .from = current_sender(), .kind = ENV_USER};
    e.is_ask = 1;
    if ((reply_dtor != NULL && (rc = weft_future_set_result_dtor(f, reply_dtor)) != 0) ||
        (rc = weft_future_token(f, &e.tok)) != 0) {
        weft_future_unref(f);
        return rc;
    }
    rc = deliver(to, &e, timeout_ms, timeout_ms != WEFT_FOREVER);
    if (rc != 0) {
        drop_token(e.tok);
        weft_future_unref(f);
        return rc;
    }
    void *res = NULL;
    rc = weft_await_timeout(f, timeout_ms, &res);
    if (rc == UV_ETIMEDOUT)
        (void)weft_future_cancel(f); /* a late reply finds it done: dropped */
    if (rc == 0) {
        if (reply != NULL)
            *reply = res;
        else if (reply_dtor != NULL && res != NULL)
            reply_dtor(res);
    }
    weft_future_unref(f);
    return rc;
}

int weft_actor_ask(weft_aref_t to, uint64_t tag, void *data, uint64_t timeout_ms, void **reply)
{
    return weft_actor_ask_ex(to, tag, data, timeout_ms, NULL, reply);
}

/* ---- in the handler ------------------------------------------------------------------ */

weft_aref_t weft_actor_self(const weft_actor_t *self)
{
    return self != NULL ? self->self : WEFT_AREF_NONE;
}

weft_aref_t weft_actor_sender(const weft_actor_t *self)
{
    return self != NULL && self->cur != NULL ? self->cur->from : WEFT_AREF_NONE;
}

weft_actor_t *weft_actor_current(void)
{
    if (weft__tls_loop == NULL || ensure_init() != 0)
        return NULL;
    return weft_task_local_get(cur_key);
}

weft_loop_t *weft_actor_loop(const weft_actor_t *self)
{
    return self != NULL ? self->loop : NULL;
}

int weft_actor_reply(weft_actor_t *self, void *value)
{
    if (self == NULL || self->cur == NULL || !self->cur_owned)
        return UV_EINVAL;
    self->cur_owned = false;
    tok_complete(self->cur->tok, 0, value, NULL);
    return 0;
}

int weft_actor_reply_error(weft_actor_t *self, int code, const char *message)
{
    if (self == NULL || self->cur == NULL || !self->cur_owned || code >= 0)
        return UV_EINVAL;
    self->cur_owned = false;
    tok_complete(self->cur->tok, code, NULL, message);
    return 0;
}

int weft_actor_defer_reply(weft_actor_t *self, weft_reply_t *out)
{
    if (self == NULL || out == NULL || self->cur == NULL || !self->cur_owned)
        return UV_EINVAL;
    self->cur_owned = false;
    *out = (weft_reply_t){self->cur->tok.weft__f, self->cur->tok.weft__gen};
    return 0;
}

int weft_reply_send(weft_reply_t r, void *value)
{
    if (r.weft__f == NULL)
        return UV_EINVAL;
    tok_complete((weft_future_token_t){r.weft__f, r.weft__gen}, 0, value, NULL);
    return 0;
}

int weft_reply_error(weft_reply_t r, int code, const char *message)
{
    if (r.weft__f == NULL || code >= 0)
        return UV_EINVAL;
    tok_complete((weft_future_token_t){r.weft__f, r.weft__gen}, code, NULL, message);
    return 0;
}

int weft_actor_fail(weft_actor_t *self, int code, const char *message)
{
    if (self == NULL)
        return code;
    weft__free(self->fail_msg);
    self->fail_msg = message != NULL ? weft__strdup(message) : NULL;
    return code;
}

int weft_actor_forward(weft_actor_t *self, weft_aref_t to)
{
    if (self == NULL || self->cur == NULL)
        return UV_EINVAL;
    struct env e = *self->cur;
    e.is_ask = self->cur_owned ? 1 : 0;
    int rc = deliver(to, &e, WEFT_FOREVER, false);
    if (rc == 0)
        self->cur_owned = false;
    return rc;
}

int weft_actor_stash(weft_actor_t *self)
{
    if (self == NULL || self->cur == NULL)
        return UV_EINVAL;
    struct env e = *self->cur;
    e.is_ask = self->cur_owned ? 1 : 0;
    int rc = dq_push(&self->stash, &e);
    if (rc == 0)
        self->cur_owned = false;
    return rc;
}

size_t weft_actor_unstash_all(weft_actor_t *self)
{
    if (self == NULL)
        return 0;
    size_t n = 0;
    struct env e;
    /* Newest first to the front, so the oldest ends up first. A push that
     * fails (no memory) leaves the rest stashed. */
    while (self->stash.len > 0) {
        uint32_t last = (self->stash.head + self->stash.len - 1) & self->stash.mask;
        e = self->stash.buf[last];
        if (dq_push_front(&self->local, &e) != 0)
            break;
        self->stash.len--;
        n++;
    }
    return n;
}

bool weft_actor_trap_exit(weft_actor_t *self, bool on)
{
    if (self == NULL)
        return false;
    bool was = self->trap;
    self->trap = on;
    return was;
}

int weft_actor_stop_self(weft_actor_t *self, weft_exit_kind_t kind, int code)
{
    if (self == NULL || (unsigned)kind > WEFT_EXIT_ERROR || (kind == WEFT_EXIT_ERROR && code >= 0))
        return UV_EINVAL;
    begin_exit(self, kind, code, NULL);
    return 0;
}

/* ---- timers ------------------------------------------------------------------------- */

static void timer_cb(void *arg)
{
    struct atimer *t = arg;
    struct weft_actor *a = t->a;
    struct env e = {.tag = t->tag, .data = t->data, .from = a->self, .kind = ENV_USER};
    if (dq_push(&a->local, &e) == 0) {
        if (a->waiting)
            wake_local(a);
    } else {
        report_dead(a->self, &e); /* no memory for the tick: counted, not silent */
    }
    if (t->period != 0) {
        t->next_at += t->period;
        if (weft_call_at(a->loop, t->next_at, timer_cb, t, &t->h) == 0)
            return;
    }
    weft__list_remove(&t->node);
    weft__free(t);
}

static int add_timer(weft_actor_t *self, uint64_t delay, uint64_t period, uint64_t tag, void *data,
                     weft_actor_timer_t *out)
{
    if (out != NULL)
        *out = 0;
    if (self == NULL)
        return UV_EINVAL;
    struct atimer *t = weft__calloc(1, sizeof *t);
    if (t == NULL)
        return UV_ENOMEM;
    t->a = self;
    t->id = ++self->next_timer_id;
    t->tag = tag;
    t->data = data;
    t->period = period;
    t->next_at = weft_loop_now() + delay;
    int rc = weft_call_at(self->loop, t->next_at, timer_cb, t, &t->h);
    if (rc != 0) {
        weft__free(t);
        return rc;
    }
    weft__list_push_back(&self->timers, &t->node);
    if (out != NULL)
        *out = t->id;
    return 0;
}

int weft_actor_send_after(weft_actor_t *self, uint64_t delay_ms, uint64_t tag, void *data,
                          weft_actor_timer_t *timer)
{
    if (delay_ms == WEFT_FOREVER)
        return UV_EINVAL;
    return add_timer(self, delay_ms, 0, tag, data, timer);
}

int weft_actor_send_interval(weft_actor_t *self, uint64_t period_ms, uint64_t tag, void *data,
                             weft_actor_timer_t *timer)
{
    if (period_ms == 0 || period_ms == WEFT_FOREVER)
        return UV_EINVAL;
    return add_timer(self, period_ms, period_ms, tag, data, timer);
}

int weft_actor_timer_cancel(weft_actor_t *self, weft_actor_timer_t timer)
{
    if (self == NULL)
        return UV_EINVAL;
    for (struct weft__list *n = self->timers.next; n != &self->timers; n = n->next) {
        struct atimer *t = WEFT_CONTAINER_OF(n, struct atimer, node);
        if (t->id == timer) {
            (void)weft_handle_cancel(t->h);
            weft__list_remove(&t->node);
            weft__free(t);
            return 0;
        }
    }
    return UV_ENOENT;
}

/* ---- stop, kill, exit, join, stats ----------------------------------------------------- */

static int set_ctl(weft_aref_t r, uint32_t flag)
{
    if (r.weft__slot == 0)
        return UV_EINVAL;
    struct weft_actor *a = weft__aslot_pin(r);
    if (a == NULL)
        return UV_ESRCH;
    __atomic_fetch_or(&a->ctl, flag, __ATOMIC_SEQ_CST);
    if (flag == CTL_KILL && a->loop == cur_loop()) {
        if (a->in_handler && a->task != NULL && a->task != weft_task_current())
            (void)weft_task_cancel(a->task);
        if (a->waiting)
            wake_local(a);
    } else if (flag == CTL_KILL) {
        post_wake(a, WAKE_CANCEL);
    } else {
        wake_any(a);
    }
    weft__aslot_unpin(r);
    return 0;
}

int weft_actor_stop(weft_aref_t a)
{
    return set_ctl(a, CTL_STOP);
}

int weft_actor_kill(weft_aref_t a)
{
    return set_ctl(a, CTL_KILL);
}

int weft_actor_exit(weft_aref_t a, weft_exit_kind_t kind, int code)
{
    if (a.weft__slot == 0 || (kind != WEFT_EXIT_NORMAL && kind != WEFT_EXIT_SHUTDOWN &&
                              !(kind == WEFT_EXIT_ERROR && code < 0)))
        return UV_EINVAL;
    if (ensure_init() != 0)
        return UV_ENOMEM;
    struct sysrec *r = sysrec_new(SYS_EXIT, current_sender());
    if (r == NULL)
        return UV_ENOMEM;
    r->rkind = kind;
    r->rcode = kind == WEFT_EXIT_ERROR ? code : 0;
    int rc = weft__actor_sys_push(a, r);
    if (rc != 0)
        weft__sysrec_free(r);
    return rc;
}

int weft_actor_join(weft_aref_t a, uint64_t timeout_ms, weft_exit_t *out)
{
    if (out != NULL)
        *out = (weft_exit_t){WEFT_EXIT_NOPROC, 0, NULL};
    if (weft_task_current() == NULL)
        return WEFT_ENOTASK;
    if (a.weft__slot == 0)
        return UV_EINVAL;
    weft_future_t *f;
    int rc = weft_future_new(NULL, &f);
    if (rc != 0)
        return rc;
    struct sysrec *r = sysrec_new(SYS_JOIN, WEFT_AREF_NONE);
    if (r == NULL || (rc = weft_future_token(f, &r->tok)) != 0) {
        weft__free(r);
        weft_future_unref(f);
        return r == NULL ? UV_ENOMEM : rc;
    }
    rc = weft__actor_sys_push(a, r);
    if (rc != 0) { /* dead already */
        drop_token(r->tok);
        weft__sysrec_free(r);
        weft_future_unref(f);
        return 0;
    }
    void *res = NULL;
    rc = weft_await_timeout(f, timeout_ms, &res);
    if (rc == UV_ETIMEDOUT)
        (void)weft_future_cancel(f);
    if (rc == 0 && out != NULL) {
        intptr_t v = (intptr_t)res;
        out->kind = (weft_exit_kind_t)((uintptr_t)v & 15u);
        out->code = (int)(v >> 4);
    }
    weft_future_unref(f);
    return rc;
}

int weft_actor_stats(weft_aref_t r, weft_actor_stats_t *out)
{
    if (out == NULL || r.weft__slot == 0)
        return UV_EINVAL;
    struct weft_actor *a = weft__aslot_pin(r);
    if (a == NULL)
        return UV_ESRCH;
    out->handled = __atomic_load_n(&a->n_handled, __ATOMIC_RELAXED);
    out->dead_letters = __atomic_load_n(&a->n_dead, __ATOMIC_RELAXED);
    out->rejected = __atomic_load_n(&a->n_rejected, __ATOMIC_RELAXED);
    out->dropped_newest = __atomic_load_n(&a->n_drop_new, __ATOMIC_RELAXED);
    out->dropped_oldest = __atomic_load_n(&a->n_drop_old, __ATOMIC_RELAXED);
    out->suspended = __atomic_load_n(&a->n_suspended, __ATOMIC_RELAXED);
    out->spilled = __atomic_load_n(&a->n_spilled, __ATOMIC_RELAXED);
    out->queued = weft_chan_len(a->mb) + (a->loop == cur_loop() ? a->local.len : 0);
    weft__aslot_unpin(r);
    return 0;
}

bool weft_actor_alive(weft_aref_t r)
{
    if (r.weft__slot == 0 || weft__aslot_pin(r) == NULL)
        return false;
    weft__aslot_unpin(r);
    return true;
}

/* ---- links and monitors ---------------------------------------------------------------- */

int weft_actor_link(weft_actor_t *self, weft_aref_t other)
{
    if (self == NULL || other.weft__slot == 0 || weft_aref_eq(other, self->self))
        return UV_EINVAL;
    if (find_peer(&self->links, other) != NULL)
        return 0;
    struct sysrec *mine = sysrec_new(SYS_LINK_REQ, other);
    struct sysrec *theirs = sysrec_new(SYS_LINK_REQ, self->self);
    if (mine == NULL || theirs == NULL) {
        weft__free(mine);
        weft__free(theirs);
        return UV_ENOMEM;
    }
    if (weft__actor_sys_push(other, theirs) != 0) {
        /* Linking to the dead: an exit signal NOPROC, as Erlang's link/1. */
        weft__sysrec_free(theirs);
        mine->kind = SYS_EXIT;
        mine->rkind = WEFT_EXIT_NOPROC;
        return sys_push_to(self, mine);
    }
    mine->next = self->links;
    self->links = mine;
    return 0;
}

int weft_actor_unlink(weft_actor_t *self, weft_aref_t other)
{
    if (self == NULL || other.weft__slot == 0)
        return UV_EINVAL;
    struct sysrec **l = find_peer(&self->links, other);
    if (l == NULL)
        return 0;
    struct sysrec *mine = *l;
    *l = mine->next;
    /* The record becomes the unlink message; if other is dead, its exit
     * signal (if any) finds no link here and is ignored. */
    mine->kind = SYS_UNLINK;
    mine->peer = self->self;
    if (weft__actor_sys_push(other, mine) != 0)
        weft__sysrec_free(mine);
    return 0;
}

int weft_actor_monitor(weft_actor_t *self, weft_aref_t target, uint64_t *ref)
{
    if (ref != NULL)
        *ref = 0;
    if (self == NULL || target.weft__slot == 0 || ref == NULL)
        return UV_EINVAL;
    if (self->mon_n == self->mon_cap) {
        size_t ncap = self->mon_cap ? self->mon_cap * 2 : 8;
        struct monref *nr = weft__realloc(self->mon_refs, ncap * sizeof *nr);
        if (nr == NULL)
            return UV_ENOMEM;
        self->mon_refs = nr;
        self->mon_cap = ncap;
    }
    struct sysrec *r = sysrec_new(SYS_MONITOR, self->self);
    if (r == NULL)
        return UV_ENOMEM;
    r->ref = __atomic_add_fetch(&next_monitor_ref, 1, __ATOMIC_RELAXED);
    self->mon_refs[self->mon_n++] = (struct monref){r->ref, target};
    *ref = r->ref;
    if (weft__actor_sys_push(target, r) != 0) {
        /* Dead already: the one DOWN comes now, through our own list. */
        r->kind = SYS_DOWN;
        r->peer = target;
        r->rkind = WEFT_EXIT_NOPROC;
        return sys_push_to(self, r);
    }
    return 0;
}

int weft_actor_demonitor(weft_actor_t *self, uint64_t ref)
{
    weft_aref_t target;
    if (self == NULL)
        return UV_EINVAL;
    if (!mon_ref_take(self, ref, &target))
        return UV_ENOENT;
    /* Tell the target to drop its record. Without memory for that it keeps
     * it until it dies; the DOWN then finds no ref here and is dropped. */
    struct sysrec *r = sysrec_new(SYS_DEMONITOR, self->self);
    if (r == NULL)
        return 0;
    r->ref = ref;
    if (weft__actor_sys_push(target, r) != 0)
        weft__sysrec_free(r);
    return 0;
}

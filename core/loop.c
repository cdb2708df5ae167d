/*
 * core/loop.c - the loop: object pools, timers, callbacks, the inbox and
 * the scheduler tick.
 *
 * One tick: drain the inbox, fire due timers, run up to WEFT__TICK_BUDGET
 * runnables from the ready queue (tasks switch straight to the next ready
 * task while the budget lasts; see task.c), poll libuv without blocking if
 * it has user handles, and block in libuv only when nothing is ready. Before
 * blocking the loop announces it is going to sleep (inbox.h), so producers
 * on other threads write the eventfd only then.
 *
 * Pools: tasks, futures and handles are carved from chunks and recycled
 * through free lists; chunks are freed only when the loop closes, so a
 * steady-state spawn/await/call_soon never calls the allocator and a stale
 * pointer held by another thread always points at memory of the same type.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <weft/future.h>
#include <weft/loop.h>

#include "alloc.h"
#include "task_int.h"
#include "testhooks.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

__thread struct weft__loop *weft__tls_loop;
void (*weft__test_post_hook)(void);
void (*weft__test_sleep_hook)(void);

void weft__assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "weft: assertion failed: %s (%s:%d)\n", what, file, line);
    abort();
}

/* ---- debug mode ------------------------------------------------------------ */

/* On in --config=dbg builds (.bazelrc); WEFT_DEBUG and opts.debug override. */
#ifndef WEFT_DEBUG_DEFAULT
#define WEFT_DEBUG_DEFAULT 0
#endif

static long thread_id(void)
{
    static __thread long tid; /* one system call per thread */
    if (tid == 0)
        tid = (long)syscall(SYS_gettid);
    return tid;
}

static void describe(char *buf, size_t len, int kind, const void *obj)
{
    const struct weft_future *f = obj;
    switch (kind) {
    case WEFT__OBJ_FUTURE:
        if (f != NULL && f->is_task)
            weft__task_label((const struct weft_task *)obj, buf, len);
        else
            snprintf(buf, len, "future %p", obj);
        break;
    case WEFT__OBJ_HANDLE:
        snprintf(buf, len, "handle %p", obj);
        break;
    case WEFT__OBJ_OTHER:
        snprintf(buf, len, "object %p", obj);
        break;
    default:
        buf[0] = '\0';
        break;
    }
}

bool weft__wrong_thread_slow(const struct weft__loop *l, const char *call, int kind,
                             const void *obj, const char *file, int line)
{
    if (!l->debug)
        return true;
    char who[192];
    describe(who, sizeof(who), kind, obj);
    fprintf(stderr,
            "weft: debug: %s(%s) called from thread %ld, but loop %p runs on thread %ld: a "
            "loop-only call from another thread (%s:%d)\n",
            call, who, thread_id(), (const void *)l, l->owner_tid, file, line);
    abort();
}

void weft__owner_check(const struct weft__loop *l, const char *call, int kind, const void *obj,
                       const char *file, int line)
{
    if (l->running && weft__tls_loop != l)
        (void)weft__wrong_thread_slow(l, call, kind, obj, file, line);
}

/* ---- the shuffle ------------------------------------------------------------ */

/* How far from the head the shuffle looks: each pick moves one of the
 * first SHUFFLE_WINDOW runnables to the head. */
#define SHUFFLE_WINDOW 8

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint64_t xorshift64s(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1du;
}

static void shuffle_seed(struct weft__loop *l, unsigned idx)
{
    l->rng = splitmix64(l->seed ^ splitmix64(idx));
    if (l->rng == 0)
        l->rng = 1; /* xorshift's one fixed point */
}

void weft__loop_set_index(struct weft__loop *l, unsigned idx)
{
    shuffle_seed(l, idx);
}

/* A random seed, one per process: every loop of a run shares it (mixed
 * with its index), so one printed seed replays them all. */
static uint64_t process_seed(void)
{
    static uint64_t seed; /* 0 = not picked yet */
    uint64_t s = __atomic_load_n(&seed, __ATOMIC_ACQUIRE);
    if (s != 0)
        return s;
    uint64_t mine = splitmix64(uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1u;
    uint64_t none = 0;
    if (__atomic_compare_exchange_n(&seed, &none, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return mine;
    return none;
}

/* opts.shuffle / WEFT_SEED: 0 = off, else on with *seed set. */
static bool shuffle_config(const weft_loop_opts_t *o, uint64_t *seed)
{
    const char *env = getenv("WEFT_SEED");
    bool env_on = env != NULL && *env != '\0';
    if (o->shuffle < 0 || (o->shuffle == 0 && !env_on))
        return false;
    if (o->seed != 0) {
        *seed = o->seed;
        return true;
    }
    if (env_on && strcmp(env, "random") != 0) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0') {
            *seed = v;
            return true;
        }
        fprintf(stderr, "weft: WEFT_SEED=%s is not a number or \"random\": using a random seed\n",
                env);
    }
    *seed = process_seed();
    return true;
}

/* Print the seed the first time a loop runs with it (once per process for
 * each seed in use), quiet or not: it is what replays a failure. */
static void shuffle_announce(const struct weft__loop *l)
{
    static uint64_t announced; /* seed + 1 of the last announcement */
    if (__atomic_exchange_n(&announced, l->seed + 1, __ATOMIC_RELAXED) == l->seed + 1)
        return;
    fprintf(stderr,
            "weft: ready-queue shuffle on, seed %" PRIu64 " (replay: WEFT_SEED=%" PRIu64 ")\n",
            l->seed, l->seed);
}

/* Runnables whose relative order the shuffle keeps (docs/core.md): the
 * callbacks of call_soon/call_later/call_at among themselves (FIFO, as
 * loop.h promises), and the done callbacks of one future (registration
 * order, as future.h promises). Tasks, remote wake-up records and done
 * callbacks of different futures are independent of each other. */
static bool same_chain(const struct weft__rnode *a, const struct weft__rnode *b)
{
    if (a->kind != WEFT__RN_HANDLE || b->kind != WEFT__RN_HANDLE)
        return false;
    const struct weft__handle *x = WEFT_CONTAINER_OF(a, struct weft__handle, rn);
    const struct weft__handle *y = WEFT_CONTAINER_OF(b, struct weft__handle, rn);
    if (x->what != y->what)
        return false;
    return x->what == WEFT__H_CALLBACK || (x->what == WEFT__H_FUTURE_CB && x->fut == y->fut);
}

void weft__shuffle_step(struct weft__loop *l)
{
    if (l->shuffle_hold) { /* a direct hand-over (weft__switch_to_task) */
        l->shuffle_hold = false;
        return;
    }
    struct weft__list *win[SHUFFLE_WINDOW];
    unsigned n = 0;
    for (struct weft__list *it = l->ready.next; it != &l->ready && n < SHUFFLE_WINDOW;
         it = it->next)
        win[n++] = it;
    if (n < 2)
        return;
    unsigned j = (unsigned)(xorshift64s(&l->rng) % n);
    /* The first of j's chain in the window goes instead: moving j past an
     * earlier runnable of its chain would break the chain's order. */
    const struct weft__rnode *pick = WEFT_CONTAINER_OF(win[j], struct weft__rnode, link);
    if (pick->kind == WEFT__RN_TASK && WEFT_CONTAINER_OF(pick, struct weft_task, rn)->yielded)
        return; /* a yield runs after what was ready before it */
    for (unsigned i = 0; i < j; i++) {
        if (same_chain(WEFT_CONTAINER_OF(win[i], struct weft__rnode, link), pick)) {
            j = i;
            break;
        }
    }
    if (j == 0)
        return;
    weft__list_remove(win[j]);
    weft__list_push_front(&l->ready, win[j]);
}

/* ---- pools ---------------------------------------------------------------- */

#define CHUNK_OBJECTS 64

void *weft__chunk_carve(struct weft__chunk **list, size_t align, size_t bytes)
{
    struct weft__chunk *c = weft__calloc(1, sizeof(*c) + align - 1 + bytes);
    if (c == NULL)
        return NULL;
    c->next = *list;
    *list = c;
    return weft__chunk_start(c, align);
}

struct weft__handle *weft__handle_get(struct weft__loop *l)
{
    if (weft__list_empty(&l->free_handles)) {
        struct weft__handle *h = weft__chunk_carve(&l->chunks, 16, CHUNK_OBJECTS * sizeof(*h));
        if (h == NULL)
            return NULL;
        for (int i = 0; i < CHUNK_OBJECTS; i++) {
            h[i].rn.kind = WEFT__RN_HANDLE;
            h[i].loop = l;
            h[i].tm.owner = WEFT__TM_HANDLE;
            weft__list_push_back(&l->free_handles, &h[i].rn.link);
        }
    }
    struct weft__list *n = weft__list_pop_front(&l->free_handles);
    return WEFT_CONTAINER_OF(n, struct weft__handle, rn.link);
}

void weft__handle_put(struct weft__loop *l, struct weft__handle *h)
{
    h->gen++; /* outstanding weft_handle_t copies become stale */
    h->state = WEFT__HS_FREE;
    h->fut = NULL;
    h->arg = NULL;
    weft__list_push_front(&l->free_handles, &h->rn.link);
}

/* ---- small helpers -------------------------------------------------------- */

int weft__timer_arm(struct weft__loop *l, struct weft__timer *t, uint64_t deadline_ns)
{
    t->deadline_ns = deadline_ns;
    return weft__heap_insert(&l->timers, t);
}

uint64_t weft_loop_now_ns(void)
{
    return uv_hrtime();
}

uint64_t weft_loop_now(void)
{
    return uv_hrtime() / 1000000u;
}

weft_loop_t *weft_loop_current(void)
{
    return weft__tls_loop ? weft__pub(weft__tls_loop) : NULL;
}

uv_loop_t *weft_loop_uv(weft_loop_t *loop)
{
    struct weft__loop *l = weft__L_cur(loop);
    return weft__loop_usable(l) ? &l->uv : NULL;
}

/* ---- init / close --------------------------------------------------------- */

/* Every initialised, not yet closed loop, so that an object bound to a loop
 * that is gone (its storage freed or reused) is recognised without reading
 * that storage (weft__bind_slow). Init and close are rare: one mutex. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct weft__list live_loops = {&live_loops, &live_loops};

int weft__loop_if_live(struct weft__loop *o, int (*fn)(struct weft__loop *, void *), void *arg,
                       int dead)
{
    int rc = dead;
    pthread_mutex_lock(&live_mu);
    for (struct weft__list *n = live_loops.next; n != &live_loops; n = n->next) {
        if (n == &o->live) {
            rc = fn(o, arg);
            break;
        }
    }
    pthread_mutex_unlock(&live_mu);
    return rc;
}

static void async_cb(uv_async_t *a)
{
    (void)a; /* the tick drains the inbox; this only ends the poll */
}

static void timer_cb(uv_timer_t *t)
{
    (void)t; /* the tick fires weft timers; this only ends the poll */
}

struct weft__stack_pool *weft__pool_for(struct weft__loop *l, size_t size)
{
    size_t want = weft__stack_round(size) + (l->compact ? 0 : WEFT__INLINE_RESERVE);
    for (unsigned i = 0; i < l->npools; i++)
        if (l->pools[i].size == want || l->compact)
            return &l->pools[i];
    if (l->npools == WEFT__MAX_POOLS)
        return NULL;
    if (weft__stack_pool_init(&l->pools[l->npools], want, false, 0) != 0)
        return NULL;
    return &l->pools[l->npools++];
}

int weft_loop_init(weft_loop_t *loop, const weft_loop_opts_t *opts)
{
    if (loop == NULL)
        return UV_EINVAL;
    weft_loop_opts_t o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.stack_mode != WEFT_STACK_GUARDED && o.stack_mode != WEFT_STACK_COMPACT)
        return UV_EINVAL;
    if (o.stack_size != 0 && (o.stack_size < 8192 || o.stack_size > ((size_t)1 << 30)))
        return UV_EINVAL;
    struct weft__loop *l = weft__L(loop);
    memset(l, 0, sizeof(*l));
    l->compact = o.stack_mode == WEFT_STACK_COMPACT;
    l->default_stack = weft__stack_round(o.stack_size);
    if (l->compact) {
        size_t shared = weft__stack_round(o.shared_stack_size ? o.shared_stack_size : 256u * 1024u);
        if (shared < l->default_stack)
            shared = l->default_stack;
        if (weft__stack_pool_init(&l->pools[0], l->default_stack, true, shared) != 0)
            return UV_ENOMEM;
    } else if (weft__stack_pool_init(&l->pools[0], l->default_stack + WEFT__INLINE_RESERVE, false,
                                     0) != 0) {
        return UV_ENOMEM;
    }
    l->npools = 1;
    l->slow_ns = (uint64_t)o.slow_task_ms * 1000000u;
    l->quiet = o.quiet;
    int debug = o.debug;
    if (debug == 0) {
        const char *env = getenv("WEFT_DEBUG");
        if (env != NULL && *env != '\0')
            debug = strcmp(env, "0") != 0 ? 1 : -1;
        else
            debug = WEFT_DEBUG_DEFAULT ? 1 : -1;
    }
    l->debug = debug > 0;
    l->shuffle = shuffle_config(&o, &l->seed);
    if (l->shuffle)
        shuffle_seed(l, 0);
    l->idle_poll_ns =
        o.idle_poll_us < 0 ? 0 : (uint64_t)(o.idle_poll_us ? o.idle_poll_us : 50) * 1000u;
    int rc = weft__inbox_init(&l->inbox, WEFT__INBOX_SLOTS);
    if (rc != 0)
        goto fail_pools;
    rc = uv_loop_init(&l->uv);
    if (rc != 0)
        goto fail_inbox;
    rc = uv_async_init(&l->uv, &l->async, async_cb);
    if (rc != 0)
        goto fail_uv;
    uv_unref((uv_handle_t *)&l->async);
    uv_timer_init(&l->uv, &l->uv_timer);
    uv_unref((uv_handle_t *)&l->uv_timer);
    weft__list_init(&l->ready);
    weft__list_init(&l->free_tasks);
    weft__list_init(&l->free_handles);
    weft__list_init(&l->free_gens);
    weft__list_init(&l->free_waiters);
    weft__list_init(&l->remote_records);
    weft__list_init(&l->proxies);
    weft__list_init(&l->sources);
    weft__heap_init(&l->timers);
    l->next_task_id = 1;
    l->magic = WEFT__LOOP_MAGIC;
    l->initialised = true;
    pthread_mutex_lock(&live_mu);
    weft__list_push_back(&live_loops, &l->live);
    pthread_mutex_unlock(&live_mu);
    return 0;

fail_uv:
    uv_loop_close(&l->uv);
fail_inbox:
    weft__inbox_destroy(&l->inbox);
fail_pools:
    weft__stack_pool_destroy(&l->pools[0]);
    memset(l, 0, sizeof(*l));
    return rc == UV_ENOMEM || rc == 0 ? UV_ENOMEM : rc;
}

int weft_loop_close(weft_loop_t *loop)
{
    struct weft__loop *l = weft__L_cur(loop);
    if (l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (l->closed)
        return WEFT_ECLOSED;
    if (l->running || l->st.tasks_live > 0 || !weft__list_empty(&l->ready) || l->timers.live > 0 ||
        weft__inbox_nonempty(&l->inbox) || uv_loop_alive(&l->uv) || l->remote_out > 0)
        return UV_EBUSY;
    /* Other loops' tasks waiting for futures of this loop get WEFT_ECLOSED:
     * nothing here will complete them now. */
    weft__remote_records_close(l);
    /* The gate (two phases). First shut the door: from the seq_cst store on,
     * every new post sees `closed` and returns WEFT_ECLOSED (weft__post
     * announces itself in `posters` before it looks: Dekker's pattern, so
     * either it sees closed or we see it in posters). Then wait for the posts
     * already through the door to finish - their message published and their
     * eventfd write done - so none of them touches this loop after close
     * returns and the caller frees it. A message that got in is delivered:
     * the loop is busy, the door stays shut, and the caller runs the loop
     * again before the next close (weft_run does). */
    __atomic_store_n(&l->inbox.closed, 1, __ATOMIC_SEQ_CST);
    for (unsigned spins = 0; __atomic_load_n(&l->inbox.posters, __ATOMIC_SEQ_CST) != 0; spins++) {
        if (spins > 64)
            sched_yield(); /* a poster was preempted in the window */
    }
    if (weft__inbox_nonempty(&l->inbox))
        return UV_EBUSY;
    if (l->tokens_live > 0 && !l->quiet)
        fprintf(stderr,
                "weft: loop %p closes with %" PRIu64
                " future token(s) never used (their futures leak until now)\n",
                (void *)l, l->tokens_live);
    weft__signals_close(l);
    uv_close((uv_handle_t *)&l->async, NULL);
    uv_close((uv_handle_t *)&l->uv_timer, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&l->uv);
    WEFT_ASSERT(rc == 0);
    weft__heap_destroy(&l->timers);
    /* Messages that raced with the close flag are dropped with the inbox. */
    weft__inbox_destroy(&l->inbox);
    for (unsigned i = 0; i < l->npools; i++)
        weft__stack_pool_destroy(&l->pools[i]);
    weft__side_close(l); /* records of objects never released */
    /* Pooled futures own their messages until recycled. */
    for (struct weft_future *f = l->free_futures; f != NULL; f = f->result)
        WEFT_ASSERT(f->msg == NULL);
    while (l->chunks != NULL) {
        struct weft__chunk *c = l->chunks;
        l->chunks = c->next;
        weft__free(c);
    }
    while (l->task_chunks != NULL) {
        struct weft__chunk *c = l->task_chunks;
        l->task_chunks = c->next;
        weft__free(c);
    }
    pthread_mutex_lock(&live_mu);
    weft__list_remove(&l->live);
    pthread_mutex_unlock(&live_mu);
    l->closed = true;
    return 0;
}

/* ---- callbacks ------------------------------------------------------------ */

static int schedule(struct weft__loop *l, uint64_t deadline_ns, bool timed, weft_cb_fn fn,
                    void *arg, weft_handle_t *out, const char *call)
{
    if (fn == NULL || l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (!weft__loop_usable(l))
        return WEFT_ECLOSED;
    if (WEFT__WRONG_THREAD(l, call, WEFT__OBJ_NONE, NULL))
        return WEFT_EWRONGLOOP;
    struct weft__handle *h = weft__handle_get(l);
    if (h == NULL)
        return UV_ENOMEM;
    h->what = WEFT__H_CALLBACK;
    h->u.fn = fn;
    h->arg = arg;
    if (timed) {
        if (weft__timer_arm(l, &h->tm, deadline_ns) != 0) {
            weft__handle_put(l, h);
            return UV_ENOMEM;
        }
        h->state = WEFT__HS_TIMER;
    } else {
        h->state = WEFT__HS_READY;
        weft__ready_push(l, &h->rn);
    }
    if (out != NULL) {
        out->weft__node = h;
        out->weft__gen = h->gen;
    }
    return 0;
}

int weft_call_soon(weft_loop_t *loop, weft_cb_fn fn, void *arg, weft_handle_t *out)
{
    return schedule(weft__L_cur(loop), 0, false, fn, arg, out, "weft_call_soon");
}

int weft_call_later(weft_loop_t *loop, uint64_t delay_ms, weft_cb_fn fn, void *arg,
                    weft_handle_t *out)
{
    if (delay_ms >= WEFT__MS_MAX) /* WEFT_FOREVER: refused (loop.h) */
        return UV_EINVAL;
    return schedule(weft__L_cur(loop), uv_hrtime() + delay_ms * 1000000u, true, fn, arg, out,
                    "weft_call_later");
}

int weft_call_at(weft_loop_t *loop, uint64_t when_ms, weft_cb_fn fn, void *arg, weft_handle_t *out)
{
    if (when_ms >= WEFT__MS_MAX) /* WEFT_FOREVER: refused (loop.h) */
        return UV_EINVAL;
    return schedule(weft__L_cur(loop), when_ms * 1000000u, true, fn, arg, out, "weft_call_at");
}

int weft_handle_cancel(weft_handle_t hd)
{
    struct weft__handle *h = hd.weft__node;
    if (h == NULL)
        return UV_EINVAL;
    if (h->gen != hd.weft__gen || h->what != WEFT__H_CALLBACK)
        return UV_ENOENT;
    struct weft__loop *l = h->loop;
    WEFT__OWNER_ASSERT(l, "weft_handle_cancel", WEFT__OBJ_HANDLE, h);
    if (h->state == WEFT__HS_TIMER)
        weft__timer_disarm(l, &h->tm);
    else if (h->state == WEFT__HS_READY) {
        weft__lag_forget(l, &h->rn.link);
        weft__list_remove(&h->rn.link);
    } else
        return UV_ENOENT; /* running now */
    weft__handle_put(l, h);
    return 0;
}

/* ---- the inbox ------------------------------------------------------------ */

void weft__loop_add_source(struct weft__loop *l, struct weft__source *s)
{
    weft__list_push_back(&l->sources, &s->link);
}

void weft__loop_remove_source(struct weft__source *s)
{
    weft__list_remove(&s->link);
}

static void sources_drain(struct weft__loop *l)
{
    for (struct weft__list *it = l->sources.next; it != &l->sources;) {
        struct weft__source *s = WEFT_CONTAINER_OF(it, struct weft__source, link);
        it = it->next; /* a drain may remove its own source */
        s->drain(s->arg);
    }
}

static bool sources_pending(struct weft__loop *l)
{
    for (struct weft__list *it = l->sources.next; it != &l->sources; it = it->next) {
        struct weft__source *s = WEFT_CONTAINER_OF(it, struct weft__source, link);
        if (s->pending(s->arg))
            return true;
    }
    return false;
}

void weft__loop_wake_if_sleeping(struct weft__loop *l)
{
    /* A fence and a plain load, not an RMW of the flag: an RMW would take
     * the flag's line from the consumer (whose idle poll reads that line)
     * on every wake check. */
    weft__fence_seq_cst();
    if (!__atomic_load_n(&l->inbox.sleeping, __ATOMIC_RELAXED))
        return;
    /* It sleeps: wake it - through the door (weft_loop_close), since the
     * loop may wake by itself meanwhile, run dry and close before our
     * uv_async_send. Only this rare path pays for the announcement. */
    __atomic_fetch_add(&l->inbox.posters, 1, __ATOMIC_SEQ_CST);
    int one = 1;
    if (!__atomic_load_n(&l->inbox.closed, __ATOMIC_SEQ_CST) &&
        __atomic_compare_exchange_n(&l->inbox.sleeping, &one, 0, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED))
        uv_async_send(&l->async);
    __atomic_fetch_sub(&l->inbox.posters, 1, __ATOMIC_RELEASE);
}

int weft__post(struct weft__loop *l, weft__inbox_fn fn, uintptr_t a, uintptr_t b, uintptr_t c,
               uintptr_t d)
{
    /* Announce the post before looking at the door (see weft_loop_close):
     * seq_cst, paired with close's store of `closed` and load of posters. */
    __atomic_fetch_add(&l->inbox.posters, 1, __ATOMIC_SEQ_CST);
    int rc;
    if (__atomic_load_n(&l->inbox.closed, __ATOMIC_SEQ_CST)) {
        rc = WEFT_ECLOSED;
    } else {
        bool wake;
        bool spin_ok =
            weft__tls_loop != l && !__atomic_load_n(&l->inbox.sleeping, __ATOMIC_RELAXED);
        rc = weft__inbox_post(&l->inbox, fn, a, b, c, d, spin_ok, &wake);
        if (__builtin_expect(weft__test_post_hook != NULL, 0))
            weft__test_post_hook(); /* tests: widen the publish-to-wake window */
        if (rc == 0 && wake)
            uv_async_send(&l->async);
    }
    /* release: everything this post did to the loop happens before the load
     * in weft_loop_close that sees posters back at 0. */
    __atomic_fetch_sub(&l->inbox.posters, 1, __ATOMIC_RELEASE);
    return rc;
}

static void run_posted_callback(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    ((struct weft__loop *)ctx)->st.callbacks_run++;
    (void)c;
    (void)d;
    weft_cb_fn fn;
    memcpy(&fn, &a, sizeof(fn));
    fn((void *)b);
}

int weft_call_soon_threadsafe(weft_loop_t *loop, weft_cb_fn fn, void *arg)
{
    /* Touch only the inbox here: the loop's other lines are written by its
     * own thread all the time. A closed loop is refused by the inbox. */
    struct weft__loop *l = weft__L_cur(loop);
    if (l == NULL || fn == NULL)
        return UV_EINVAL;
    uintptr_t a;
    memcpy(&a, &fn, sizeof(a));
    return weft__post(l, run_posted_callback, a, (uintptr_t)arg, 0, 0);
}

/* ---- the tick ------------------------------------------------------------- */

void weft__handle_run(struct weft__loop *l, struct weft__handle *h)
{
    l->st.callbacks_run++;
    h->state = WEFT__HS_RUNNING;
    switch (h->what) {
    case WEFT__H_CALLBACK:
        h->u.fn(h->arg);
        break;
    case WEFT__H_FUTURE_CB:
        h->u.ffn(h->fut, h->arg);
        weft_future_unref(h->fut);
        break;
    case WEFT__H_REMOTE_WAKE:
        weft__remote_record_fire(l, h);
        break;
    default:
        WEFT_ASSERT(!"bad handle");
    }
    weft__handle_put(l, h);
}

static unsigned drain_inbox(struct weft__loop *l)
{
    unsigned n = weft__inbox_drain(&l->inbox, l, WEFT__INBOX_SLOTS);
    l->st.threadsafe_received += n;
    return n;
}

static void fire_timers(struct weft__loop *l)
{
    uint64_t now = uv_hrtime();
    struct weft__timer *m;
    while ((m = weft__heap_min(&l->timers)) != NULL && m->deadline_ns <= now) {
        weft__heap_remove(&l->timers, m);
        if (m->owner == WEFT__TM_HANDLE) {
            struct weft__handle *h = WEFT_CONTAINER_OF(m, struct weft__handle, tm);
            h->state = WEFT__HS_READY;
            weft__ready_push(l, &h->rn);
        } else {
            weft__task_timer_fired(l, m);
        }
    }
}

/* One lag sample (run_ready): out of line, it runs about once per tick. */
__attribute__((noinline)) void weft__lag_hit(struct weft__loop *l)
{
    uint64_t lag = uv_hrtime() - l->lag_stamp_ns;
    l->lag_probe = NULL;
    unsigned i = 0;
    if (lag > (1u << WEFT_LAG_MIN_LOG2)) {
        i = (unsigned)(64 - __builtin_clzll(lag - 1)) - WEFT_LAG_MIN_LOG2;
        if (i > WEFT_LAG_BUCKETS - 1)
            i = WEFT_LAG_BUCKETS - 1;
    }
    l->st.lag_buckets[i]++;
    l->st.lag_count++;
    l->st.lag_sum_ns += lag;
}

/* Loop lag is sampled, not measured per runnable: a clock read per push or
 * per run (~20 ns, uv_hrtime) would double the cost of a switch (~17 ns).
 * So one runnable at a time is the probe: the one at the tail of the ready
 * queue when a tick starts (stamped with the tick's start time, which the
 * tick reads anyway for max_lag_ns) or, when the previous probe ran during
 * the tick and runnables are left, the tail at the tick's end (stamped with
 * the end time, read anyway too). When the probe is taken off the queue to
 * run - here, or by a task handing over to it directly (task.c, leave) -
 * one clock read gives its lag (weft__lag_hit): how long it waited behind
 * the work queued ahead of it (and, for an end-of-tick probe, the poll of
 * libuv, the inbox and the timers between the ticks). That is a lower
 * bound of its whole queueing time (it was pushed before the stamp), and
 * about one sample per tick: per runnable, one compare of the popped node
 * with l->lag_probe (a line the pop touches anyway); per tick, at most one
 * clock read (a tick runs up to WEFT__TICK_BUDGET runnables). A probe that
 * leaves the queue without running (a cancelled handle, a task started
 * inline by its awaiter, a new generator) is forgotten (weft__lag_forget),
 * and the queue running empty forgets it too; a new one is picked at the
 * next tick. */
static void run_ready(struct weft__loop *l)
{
    uint64_t t0 = uv_hrtime();
    if (l->lag_probe == NULL) {
        l->lag_probe = l->ready.prev;
        l->lag_stamp_ns = t0;
    }
    l->budget = WEFT__TICK_BUDGET;
    while (l->budget > 0) {
        weft__ready_pick(l);
        struct weft__list *n = weft__list_pop_front(&l->ready);
        if (n == NULL)
            break;
        l->budget--;
        if (__builtin_expect(n == l->lag_probe, 0))
            weft__lag_hit(l);
        struct weft__rnode *rn = WEFT_CONTAINER_OF(n, struct weft__rnode, link);
        /* Two kinds, one compare, two direct calls - kept over a function per
         * runnable. A pointer in the rnode would push a task past its three
         * cache lines (192 bytes, none spare); a table indexed by kind was measured
         * (issue 8, a chain of call_soon callbacks with and without a yielding
         * task, gcc -O2, 10 alternating runs): the same instruction count
         * under cachegrind, and per runnable 26.5 vs 24.5 ns mixed and 22.4 vs
         * 20.7 ns callbacks only (medians; the indirect call loses). Layers
         * above core add work as handles (WEFT__H_CALLBACK) or message
         * sources, not as new kinds. */
        if (rn->kind == WEFT__RN_TASK)
            weft__sched_run_task(l, WEFT_CONTAINER_OF(rn, struct weft_task, rn));
        else
            weft__handle_run(l, WEFT_CONTAINER_OF(rn, struct weft__handle, rn));
    }
    uint64_t t1 = uv_hrtime(), lag = t1 - t0;
    if (lag > l->st.max_lag_ns)
        l->st.max_lag_ns = lag;
    if (weft__list_empty(&l->ready)) {
        l->lag_probe = NULL;
    } else if (l->lag_probe == NULL) {
        l->lag_probe = l->ready.prev;
        l->lag_stamp_ns = t1;
    }
}

/* Poll the inbox for up to idle_poll_ns before sleeping: waking a sleeping
 * loop through the eventfd costs 4-11 us here, a cache line ~0.1-0.5 us
 * (docs/machine.md). Checks every 16 pauses (~350 ns) so as not to hammer the
 * line the producers write. Returns true if work arrived or is due. */
static bool idle_poll(struct weft__loop *l)
{
    if (l->idle_poll_ns == 0)
        return false;
    uint64_t now = uv_hrtime(), end = now + l->idle_poll_ns, start = now;
    struct weft__timer *m = weft__heap_min(&l->timers);
    if (m != NULL && m->deadline_ns < end)
        end = m->deadline_ns;
    /* Check often (every 2 pauses, ~45 ns here): the time between a
     * message's arrival and its discovery is latency on every cross-loop
     * hop. Reading lines that nobody writes costs the writers nothing; the
     * clock is read every 8 checks. */
    for (unsigned k = 0; now < end; k++) {
        if (weft__inbox_pending(&l->inbox) || sources_pending(l)) {
            l->st.polling_ns += now - start; /* now: up to 8 checks old */
            return true;
        }
        for (int i = 0; i < 2; i++) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ volatile("yield");
#endif
        }
        if ((k & 7) == 7)
            now = uv_hrtime();
    }
    l->st.polling_ns += now - start;
    return m != NULL && m->deadline_ns <= now;
}

/* An idle loop hands back the pages of pooled stacks that were not needed
 * for a whole second (beyond a warm reserve), a few per pass so that going
 * to sleep is not delayed (MADV_DONTNEED of a stack with one or two touched
 * pages is ~1-2 us). Back-to-back bursts keep their stacks warm. */
static void trim_stacks(struct weft__loop *l)
{
    size_t budget = WEFT__TRIM_BUDGET;
    uint64_t now = uv_hrtime();
    for (unsigned i = 0; i < l->npools && budget > 0; i++)
        budget -= weft__stack_pool_trim(&l->pools[i], WEFT__STACK_KEEP, budget, now,
                                        WEFT__TRIM_WINDOW_NS);
}

static void block(struct weft__loop *l)
{
    if (idle_poll(l))
        return;
    trim_stacks(l);
    if (!weft__inbox_prepare_sleep(&l->inbox))
        return;
    if (!weft__list_empty(&l->sources)) {
        weft__fence_seq_cst(); /* see weft__loop_wake_if_sleeping */
        if (sources_pending(l)) {
            weft__inbox_end_sleep(&l->inbox);
            return;
        }
    }
    struct weft__timer *m = weft__heap_min(&l->timers);
    if (m != NULL) {
        uint64_t now = uv_hrtime();
        uint64_t ms = m->deadline_ns > now ? (m->deadline_ns - now + 999999u) / 1000000u : 0;
        uv_update_time(&l->uv);
        /* Repeating: libuv 1.44's UV_RUN_ONCE runs due timers before it
         * computes the poll timeout, so a one-shot timer that is already due
         * would fire there and leave the poll with no timeout at all. */
        uv_timer_start(&l->uv_timer, timer_cb, ms, 1);
    }
    l->st.wakeups++;
    if (__builtin_expect(weft__test_sleep_hook != NULL, 0))
        weft__test_sleep_hook();
    uv_ref((uv_handle_t *)&l->async);
    uint64_t slept = uv_hrtime();
    uv_run(&l->uv, UV_RUN_ONCE);
    l->st.asleep_ns += uv_hrtime() - slept;
    uv_unref((uv_handle_t *)&l->async);
    if (m != NULL)
        uv_timer_stop(&l->uv_timer);
    weft__inbox_end_sleep(&l->inbox);
}

/* Nothing left that could ever give the loop work. */
static bool out_of_work(struct weft__loop *l)
{
    return l->timers.live == 0 && l->st.tasks_live == 0 && l->remote_out == 0 &&
           !uv_loop_alive(&l->uv) && !weft__inbox_nonempty(&l->inbox) && !sources_pending(l);
}

int weft__loop_run_until(struct weft__loop *l, weft_future_t *until)
{
    if (l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return UV_EINVAL;
    if (l->closed)
        return WEFT_ECLOSED;
    if (l->running || weft__tls_loop != NULL)
        return WEFT_EREENTRANT;
    l->running = true;
    weft__tls_loop = l; /* a stop before the run is kept: one tick, then out */
    l->owner_tid = thread_id();
    l->run_start_ns = uv_hrtime();
    if (__builtin_expect(l->shuffle, 0))
        shuffle_announce(l);
#if defined(__SANITIZE_THREAD__)
    l->sched_tsan_fiber = __tsan_get_current_fiber();
#endif
    for (;;) {
        l->st.iterations++;
        if (weft__inbox_pending(&l->inbox))
            drain_inbox(l);
        if (!weft__list_empty(&l->sources))
            sources_drain(l);
        if (l->timers.live > 0)
            fire_timers(l);
        if (!weft__list_empty(&l->ready))
            run_ready(l);
        if (l->stopping || (until != NULL && until->state != WEFT__F_PENDING))
            break;
        if (!weft__list_empty(&l->ready)) {
            if (uv_loop_alive(&l->uv))
                uv_run(&l->uv, UV_RUN_NOWAIT);
            else if (l->sigs_active > 0)
                weft__signals_poll(l); /* unreferenced watchers (loopx.c) */
            continue;
        }
        if (out_of_work(l))
            break;
        if (!weft__list_empty(&l->sources)) { /* publish what this tick sent first */
            sources_drain(l);
            if (!weft__list_empty(&l->ready))
                continue;
            /* The drain may have taken the last message (the check above
             * saw it pending): check again, or the loop would sleep with
             * nothing left that could wake it. */
            if (out_of_work(l))
                break;
        }
        block(l);
    }
    l->st.run_ns += uv_hrtime() - l->run_start_ns;
    weft__tls_loop = NULL;
    l->running = false;
    l->stopping = false; /* the stop is consumed by the run it ended */
    return 0;
}

int weft_loop_run(weft_loop_t *loop)
{
    return weft__loop_run_until(weft__L_cur(loop), NULL);
}

void weft_loop_stop(weft_loop_t *loop)
{
    struct weft__loop *l = weft__L_cur(loop);
    if (l != NULL && l->magic == WEFT__LOOP_MAGIC)
        l->stopping = true;
}

/* ---- observability -------------------------------------------------------- */

void weft_loop_stats(const weft_loop_t *loop, weft_loop_stats_t *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    const struct weft__loop *l = weft__L_cur(loop);
    if (l == NULL || l->magic != WEFT__LOOP_MAGIC)
        return;
    *out = l->st;
    out->inbox_overflows = __atomic_load_n(&l->inbox.overflows, __ATOMIC_RELAXED);
    out->tokens_live = l->tokens_live;
    out->remote_waits = l->remote_out;
    if (l->running) /* the run in progress: the loop's thread (or torn anyway) */
        out->run_ns += uv_hrtime() - l->run_start_ns;
    for (unsigned i = 0; i < l->npools; i++) {
        out->stacks_in_use += l->pools[i].in_use;
        out->stacks_pooled += l->pools[i].pooled;
        out->stacks_trimmed += l->pools[i].trimmed;
    }
}

void weft__dump_task(FILE *out, const struct weft_task *t)
{
    char what[96];
    const struct weft_task *child = weft__inline_child(t);
    if (child != NULL)
        snprintf(what, sizeof(what), "task %" PRIu64 " (inline)", child->id);
    else if (t->awaiting != NULL && !t->remote_wait && t->awaiting->is_task)
        snprintf(what, sizeof(what), "task %" PRIu64,
                 ((const struct weft_task *)(const void *)t->awaiting)->id);
    else if (t->awaiting != NULL)
        snprintf(what, sizeof(what), "future %p%s", (const void *)t->awaiting,
                 t->remote_wait ? " (other loop)" : "");
    else if (t->tm.armed)
        snprintf(what, sizeof(what), "sleep");
    else if (t->queued)
        snprintf(what, sizeof(what), "ready");
    else
        snprintf(what, sizeof(what), "-");
    fprintf(out, "  task %" PRIu64 " %-20s %-10s awaits %-24s spawned at %s:%d\n", t->id,
            t->name ? t->name : "-", weft_task_state_name((weft_task_state_t)t->state), what,
            t->file ? t->file : "?", t->line);
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = (*(const struct weft_task *const *)a)->id;
    uint64_t y = (*(const struct weft_task *const *)b)->id;
    return x < y ? -1 : x > y;
}

/* Print the live tasks of l, in spawn order (unsorted if there
 * is no memory to sort); returns how many. */
static size_t dump_live(struct weft__loop *l, FILE *out)
{
    size_t n = 0, cap = (size_t)l->st.tasks_live;
    const struct weft_task **all = cap ? weft__malloc(cap * sizeof(*all)) : NULL;
    WEFT__FOR_EACH_TASK(l, t)
    {
        if (!weft__task_live(t))
            continue;
        if (all != NULL && n < cap)
            all[n] = t;
        else
            weft__dump_task(out, t);
        n++;
    }
    if (all != NULL) {
        size_t k = n < cap ? n : cap;
        qsort(all, k, sizeof(*all), by_id);
        for (size_t i = 0; i < k; i++)
            weft__dump_task(out, all[i]);
        weft__free(all);
    }
    return n;
}

int weft_loop_dump(const weft_loop_t *loop, FILE *out)
{
    struct weft__loop *l = weft__L_cur((weft_loop_t *)(uintptr_t)(const void *)loop);
    if (l == NULL || out == NULL || l->magic != WEFT__LOOP_MAGIC || l->closed)
        return UV_EINVAL;
    fprintf(out, "weft loop %p: %" PRIu64 " live tasks, %zu timers\n", (const void *)l,
            l->st.tasks_live, l->timers.live);
    return (int)dump_live(l, out);
}

size_t weft__report_pending(struct weft__loop *l, const struct weft_task *main_task)
{
    /* A finished main is not live: every live task is one main left behind. */
    size_t n = (size_t)l->st.tasks_live;
    if (n == 0)
        return 0;
    l->st.tasks_pending_at_exit += n;
    if (l->quiet)
        return n;
    if (weft__task_live(main_task))
        fprintf(stderr,
                "weft: weft_run: the loop ran out of work before main finished; %zu task(s) "
                "pending (main included), cancelled now:\n",
                n);
    else
        fprintf(stderr,
                "weft: weft_run: main finished with %zu task(s) still pending, cancelled now:\n",
                n);
    dump_live(l, stderr);
    return n;
}

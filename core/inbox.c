/*
 * core/inbox.c - the MPSC inbox (see inbox.h for the protocol).
 */
#include "inbox.h"
#include "testhooks.h"

#include <string.h>
#include <uv.h>
#include <weft/error.h>

#include "alloc.h"

/* ~2,000 pauses is ~45 us here (one pause is ~22 ns, docs/machine.md). */
#define FULL_SPINS 2000u
/* The consumer publishes its head this often (and at the end of a drain). */
#define PUBLISH_EVERY 32u

void (*weft__test_inbox_tail_hook)(void);

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

_Static_assert(sizeof(struct weft__inbox_slot) == 64, "one cache line per slot");

int weft__inbox_init(struct weft__inbox *q, uint32_t capacity_pow2)
{
    memset(q, 0, sizeof(*q));
    q->slots = weft__calloc(capacity_pow2, sizeof(*q->slots));
    if (q->slots == NULL)
        return UV_ENOMEM;
    q->mask = capacity_pow2 - 1;
    q->c_slots = q->slots;
    q->c_mask = q->mask;
    /* calloc: every seq is 0, which no ticket's seq (ticket + 1) equals in
     * the first lap; later laps find the previous lap's seq there. */
    pthread_mutex_init(&q->lock, NULL);
    return 0;
}

void weft__inbox_destroy(struct weft__inbox *q)
{
    while (q->ov_head != NULL) {
        struct weft__inbox_node *n = q->ov_head;
        q->ov_head = n->next;
        weft__free(n);
    }
    pthread_mutex_destroy(&q->lock);
    weft__free(q->slots);
    q->slots = NULL;
}

static bool claim_wake(struct weft__inbox *q)
{
    /* seq_cst load: ordered after our seq_cst publication (see inbox.h). */
    if (!__atomic_load_n(&q->sleeping, __ATOMIC_SEQ_CST))
        return false;
    int one = 1;
    return __atomic_compare_exchange_n(&q->sleeping, &one, 0, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_RELAXED);
}

static int post_overflow(struct weft__inbox *q, weft__inbox_fn fn, uintptr_t a, uintptr_t b,
                         uintptr_t c, uintptr_t d)
{
    struct weft__inbox_node *n = weft__malloc(sizeof(*n));
    if (n == NULL)
        return UV_ENOMEM;
    n->next = NULL;
    n->fn = fn;
    n->a = a;
    n->b = b;
    n->c = c;
    n->d = d;
    pthread_mutex_lock(&q->lock);
    if (q->ov_tail != NULL)
        q->ov_tail->next = n;
    else
        q->ov_head = n;
    q->ov_tail = n;
    q->overflows++;
    /* seq_cst store: the consumer's sleep check reads it (see inbox.h). */
    __atomic_store_n(&q->overflowing, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

int weft__inbox_post(struct weft__inbox *q, weft__inbox_fn fn, uintptr_t a, uintptr_t b,
                     uintptr_t c, uintptr_t d, bool spin_ok, bool *wake)
{
    int rc = 0;
    unsigned spins = 0;
    *wake = false;
    if (__atomic_load_n(&q->closed, __ATOMIC_ACQUIRE))
        return WEFT_ECLOSED;
    if (q->slots == NULL)
        return UV_EINVAL; /* never initialised */
    if (__atomic_load_n(&q->overflowing, __ATOMIC_ACQUIRE)) {
        rc = post_overflow(q, fn, a, b, c, d);
        goto out;
    }
    uint64_t pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
    if (__builtin_expect(weft__test_inbox_tail_hook != NULL, 0))
        weft__test_inbox_tail_hook(); /* tests: let the ring move on under us */
    for (;;) {
        /* acquire: pairs with the release that stored head_cache, which
         * carries the consumer's release of head_pub: the consumer has
         * finished reading every slot below the head we see. */
        uint64_t head = __atomic_load_n(&q->head_cache, __ATOMIC_ACQUIRE);
        if ((int64_t)(pos - head) < 0) {
            /* Our tail is older than the head another producer cached: the
             * ring has moved on since we read it. Without this re-read, the
             * unsigned difference wraps, the ring looks full, and a post
             * that may not spin goes to the overflow list for nothing. */
            pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
            continue;
        }
        if (pos - head > q->mask) {
            /* Looks full: refresh from what the consumer published. */
            head = __atomic_load_n(&q->head_pub, __ATOMIC_ACQUIRE);
            __atomic_store_n(&q->head_cache, head, __ATOMIC_RELEASE);
            if (pos - head > q->mask) {
                /* Full. A consumer that is awake frees slots within
                 * microseconds, so wait a bounded while (never on the
                 * consumer's own thread: it would wait for itself) before
                 * paying for the overflow list. */
                if (spin_ok && spins < FULL_SPINS) {
                    spins++;
                    cpu_relax();
                    pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
                    continue;
                }
                rc = post_overflow(q, fn, a, b, c, d);
                goto out;
            }
        }
        /* seq_cst: also the store half of the sleep protocol (inbox.h). */
        if (__atomic_compare_exchange_n(&q->tail, &pos, pos + 1, true, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            break;
    }
    struct weft__inbox_slot *s = &q->slots[pos & q->mask];
    s->fn = fn;
    s->a = a;
    s->b = b;
    s->c = c;
    s->d = d;
    /* release: the payload is visible before the consumer sees the seq. */
    __atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
out:
    if (rc == 0)
        *wake = claim_wake(q);
    return rc;
}

static inline void publish_head(struct weft__inbox *q)
{
    /* release: our reads of the consumed slots happen before a producer,
     * acquiring this, may overwrite them. */
    __atomic_store_n(&q->head_pub, q->head, __ATOMIC_RELEASE);
    q->unpublished = 0;
}

unsigned weft__inbox_drain(struct weft__inbox *q, void *ctx, unsigned max)
{
    unsigned n = 0;
    while (n < max) {
        const struct weft__inbox_slot *s = &q->c_slots[q->head & q->c_mask];
        uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (seq != q->head + 1) {
            /* Empty, or a producer holds a ticket but has not published.
             * Either way the ring is drained as far as it can be now. */
            break;
        }
        weft__inbox_fn fn = s->fn;
        uintptr_t a = s->a, b = s->b, c = s->c, d = s->d;
        q->head++;
        if (++q->unpublished == PUBLISH_EVERY)
            publish_head(q);
        fn(ctx, a, b, c, d);
        n++;
    }
    if (q->unpublished != 0)
        publish_head(q);
    /* Take the overflow list only once the ring is empty - every ticket
     * handed out has been consumed. A producer's ring messages are older
     * than its overflow messages; if one of them is still behind another
     * producer's unpublished ticket, running the list now would overtake it
     * (tests/threadsafe_test caught this under TSan). Producers in overflow
     * mode add nothing to the ring, so the ring empties and the list is
     * taken on a later drain. */
    if (n < max && __atomic_load_n(&q->overflowing, __ATOMIC_ACQUIRE)) {
        /* The emptiness check must be inside the lock: a producer takes its
         * ring ticket before it appends its next message under this lock,
         * so once we hold the lock, every list entry's older ring messages
         * have tickets we can see. Checked outside, the tail could be read
         * before a ticket whose successor is already in the list. */
        struct weft__inbox_node *list = NULL;
        pthread_mutex_lock(&q->lock);
        if (__atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) == q->head) {
            list = q->ov_head;
            q->ov_head = q->ov_tail = NULL;
            __atomic_store_n(&q->overflowing, 0, __ATOMIC_SEQ_CST);
        }
        pthread_mutex_unlock(&q->lock);
        while (list != NULL) {
            struct weft__inbox_node *next = list->next;
            list->fn(ctx, list->a, list->b, list->c, list->d);
            weft__free(list);
            list = next;
            n++;
        }
    }
    return n;
}

bool weft__inbox_pending(struct weft__inbox *q)
{
    const struct weft__inbox_slot *s = &q->c_slots[q->head & q->c_mask];
    return __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) == q->head + 1 ||
           __atomic_load_n(&q->overflowing, __ATOMIC_ACQUIRE);
}

bool weft__inbox_nonempty(struct weft__inbox *q)
{
    return __atomic_load_n(&q->tail, __ATOMIC_SEQ_CST) != q->head ||
           __atomic_load_n(&q->overflowing, __ATOMIC_SEQ_CST);
}

bool weft__inbox_prepare_sleep(struct weft__inbox *q)
{
    __atomic_store_n(&q->sleeping, 1, __ATOMIC_SEQ_CST);
    if (weft__inbox_nonempty(q)) {
        __atomic_store_n(&q->sleeping, 0, __ATOMIC_SEQ_CST);
        return false;
    }
    return true;
}

void weft__inbox_end_sleep(struct weft__inbox *q)
{
    __atomic_store_n(&q->sleeping, 0, __ATOMIC_RELAXED);
}

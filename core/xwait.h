/*
 * core/xwait.h - a waiter any thread can end: one task or one plain OS
 * thread waiting on one or several things at once (internal; used by
 * channels/ and select).
 *
 * The single-loop primitives (sync, queue) keep struct weft__waiter records
 * that only their own loop touches. A channel is shared by many loops and
 * plain threads, and a select waits on several channels under several locks,
 * so its waiter needs one word that says who ended the wait: the "claim".
 *
 *   state: XW_WAITING, or XW_SLEEPING (a plain thread about to block on the
 *   futex), until exactly one party moves it with a compare-and-swap:
 *     - a waker: to XW_CLAIMED | tag << 8 (the tag names the case that fired,
 *       e.g. a select's case index); weft__xwait_claim() then wakes the
 *       waiter: directly if the waker runs on the waiter's loop, through the
 *       loop's inbox otherwise (no eventfd write unless the loop sleeps), or
 *       with a futex wake if the thread blocked;
 *     - the waiter itself, when its wait ends otherwise (timeout, cancel,
 *       or it found the thing ready on re-checking): to XW_GONE.
 *
 * Whoever loses the race learns it from the CAS: a waker that loses moves on
 * to the next waiter; a waiter that loses was claimed and takes the claim
 * (the "grant wins" rule of docs/core.md: a wait that was granted when a
 * cancel came returns what the grant gave, and the cancel stays pending).
 *
 * Lifetime. The record lives on the waiter's stack (or is owned by it) for
 * the whole wait. Containers link their per-case records under their own
 * lock, claim under that lock and wake under it too; the waiter unlinks its
 * records under the same locks before it reads them or returns. So once the
 * waiter holds the lock of the container that claimed it, the wake is done,
 * and no other thread touches the record after the waiter has unlinked it.
 * A claimer unlinks the record before it claims, and reads what the wake
 * needs before its CAS, so a waiter that sees its claim may also leave
 * without taking the lock (channels/chan.c does, for a single wait).
 * A stale cross-thread wake message (the task has moved on) is recognised
 * by the task's wait_seq, which weft__xwait_begin and weft__xwait_end bump.
 */
#ifndef WEFT_CORE_XWAIT_H
#define WEFT_CORE_XWAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft__loop;
struct weft_task;

enum {
    WEFT__XW_WAITING = 0,
    WEFT__XW_SLEEPING = 1, /* a plain thread is (about to be) in futex_wait */
    WEFT__XW_GONE = 2,     /* the waiter left on its own */
    WEFT__XW_CLAIMED = 3,  /* low byte; the tag is state >> 8 */
};

struct weft__xwait {
    uint32_t state;          /* atomic; see above */
    uint32_t seq;            /* task: its wait_seq for this wait */
    struct weft_task *task;  /* NULL: a plain thread */
    struct weft__loop *loop; /* the task's loop */
};

/* Start a wait on the calling thread: for the running task of the calling
 * thread's loop if there is one, else for the plain thread. Returns true
 * for a task. */
bool weft__xwait_begin(struct weft__xwait *x);
/* End it (after every container has unlinked its records). */
void weft__xwait_end(struct weft__xwait *x);

/* Any thread: claim x with `tag` (0 .. 2^23) and wake its waiter. False if
 * it was already claimed or gone. Call it under the lock of the container
 * that holds x's record (see Lifetime). */
bool weft__xwait_claim(struct weft__xwait *x, uint32_t tag);

/* The waiter: mark x gone unless it was claimed. Returns the claim's tag,
 * or -1 if x was not claimed (it is gone now). */
int weft__xwait_settle(struct weft__xwait *x);

/* The waiter: block until x is claimed, until deadline_ns (absolute, on
 * uv_hrtime's clock; UINT64_MAX = none) or - for a task - until it is
 * cancelled or its deadline scope passes. Returns 0, UV_ETIMEDOUT or
 * UV_ECANCELED; the caller then calls weft__xwait_settle, which decides. */
int weft__xwait_park(struct weft__xwait *x, uint64_t deadline_ns);

/* For task waits, what every suspension point checks first: WEFT_ENOTASK
 * outside a task, a pending cancel (UV_ECANCELED) or a passed scope
 * deadline (UV_ETIMEDOUT), else 0. */
int weft__xwait_check(void);
/* Absolute deadline on uv_hrtime's clock of a timeout in ms (WEFT_FOREVER
 * and anything too long to represent: UINT64_MAX). */
uint64_t weft__xwait_deadline(uint64_t timeout_ms);
/* A task's wait was claimed (granted) although a cancel ended its park:
 * the grant wins, and the cancel is delivered at the next suspension. */
void weft__xwait_keep_cancel(struct weft__xwait *x);
/* Whether records on the waiter's stack can be read by other threads while
 * it waits (false on a COMPACT loop, whose suspended stacks are saved
 * elsewhere: such waiters allocate their records). */
bool weft__xwait_stack_shared(const struct weft__xwait *x);
/* A wait in one block of `size` bytes that starts with its waiter and goes
 * on with the caller's records. Other threads read the records while the
 * task is suspended, so the block is the caller's own (`stack`, on its
 * stack, `stack_size` bytes) unless the loop is COMPACT - whose suspended
 * stacks are saved elsewhere - or `size` does not fit there: then it is a
 * heap block. Begins the wait in it
 * (weft__xwait_begin). Returns the block (its waiter first) or NULL:
 * UV_ENOMEM, nothing begun. */
void *weft__xwait_block_begin(void *stack, size_t stack_size, size_t size);
/* Ends the block's wait (weft__xwait_end) and frees a heap block: after
 * every container has unlinked its records, and after the caller has read
 * what they hold. */
void weft__xwait_block_end(void *block, const void *stack);

/* Select's other cases, on the caller's own loop. A future: claim x with
 * tag when it completes (a hook on the future; the caller keeps f alive
 * while watching). 0, UV_ENOMEM or WEFT_EWRONGLOOP. */
struct weft_future;
struct weft_queue;
struct weft__xwatch {
    struct weft__xwait *x;
    uint32_t tag;
    void *hook;
};
int weft__xwait_watch_future(struct weft_future *f, struct weft__xwatch *w);
void weft__xwait_unwatch_future(struct weft__xwatch *w);
/* A queue get: a waiter record among the queue's getters, granted (with
 * the item) only if x can be claimed with tag. weft__xq_t is storage for
 * core's waiter record. Unlink returns whether it was granted, with the
 * item and the code the grant gave (0, or WEFT_ECLOSED at shutdown). */
typedef struct weft__xq {
    _Alignas(8) unsigned char b[80];
} weft__xq_t;
void weft__xwait_queue_link(struct weft_queue *q, weft__xq_t *w, struct weft__xwait *x,
                            uint32_t tag);
bool weft__xwait_queue_unlink(weft__xq_t *w, void **item, int *code);

/* A task about to wait may first poll for a while instead, when its loop
 * has nothing else to do: parking, being woken through the inbox and
 * resuming costs several cache-line transfers, and the loop would only
 * poll its inbox anyway (idle_poll_us, docs/multiloop.md). Returns the
 * budget in ns (0: do not spin: not a task, other work ready, or the loop
 * does not poll). */
uint64_t weft__xwait_spin_budget(void);
/* While spinning: true if the caller's loop got other work (ready tasks,
 * inbox messages), which the spin must not delay. */
bool weft__xwait_loop_busy(void);
/* True if other tasks or callbacks of the caller's loop are ready to run:
 * a task about to wait may yield to them once first (channels/chan.c). */
bool weft__xwait_others_ready(void);

/* The claim's state word for a tag. */
static inline uint32_t weft__xw_claimed(uint32_t tag)
{
    return WEFT__XW_CLAIMED | (tag << 8);
}

/* A small test-and-test-and-set spinlock for containers whose critical
 * sections are a few dozen instructions and never suspend: spins with
 * `pause`, yields the CPU after a while (a preempted holder on a 2-core
 * machine). */
static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

typedef struct weft__spin {
    uint32_t v; /* atomic */
} weft__spin_t;
void weft__spin_lock_slow(weft__spin_t *s);
static inline void weft__spin_lock(weft__spin_t *s)
{
    if (__builtin_expect(__atomic_exchange_n(&s->v, 1, __ATOMIC_ACQUIRE) == 0, 1))
        return;
    weft__spin_lock_slow(s);
}
static inline void weft__spin_unlock(weft__spin_t *s)
{
    __atomic_store_n(&s->v, 0, __ATOMIC_RELEASE);
}

#endif /* WEFT_CORE_XWAIT_H */

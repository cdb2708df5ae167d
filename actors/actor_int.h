/*
 * actors/actor_int.h - the actor's layout, shared by the files of actors/
 * (internal; docs/actors.md has the design).
 *
 * Threads: fields marked [loop] belong to the actor's loop thread; [any]
 * fields are atomics or are guarded by the lock named next to them.
 */
#ifndef WEFT_ACTORS_ACTOR_INT_H
#define WEFT_ACTORS_ACTOR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <weft/actor.h>
#include <weft/chan.h>
#include <weft/future.h>

#include "core/list.h"

/* A message in a mailbox: 48 bytes, so a channel slot is one cache line. */
enum {
    ENV_USER = 0,
    ENV_POISON = 1
};
struct env {
    uint64_t tag;
    void *data;
    weft_aref_t from;
    uint32_t kind;
    uint32_t is_ask;
    weft_future_token_t tok; /* is_ask: the asker's future */
};

/* A loop-local FIFO that can also push at the front (unstash); grows. */
struct deque {
    struct env *buf;
    uint32_t mask, head, len; /* capacity mask + 1 is a power of two */
};

/* System messages: never bounded, never dropped. Records are allocated
 * when the relation is made (link, monitor, join), so delivering them at
 * death allocates nothing. */
enum sys_kind {
    SYS_LINK_REQ,  /* peer asks to be linked */
    SYS_UNLINK,    /* peer unlinked */
    SYS_EXIT,      /* an exit signal from peer (link = from a link) */
    SYS_MONITOR,   /* peer monitors us with ref (kept until we die) */
    SYS_DEMONITOR, /* peer dropped ref */
    SYS_DOWN,      /* the peer we monitored with ref exited */
    SYS_JOIN,      /* complete tok when we die */
};

struct sysrec {
    struct sysrec *next;
    int kind;
    bool link; /* SYS_EXIT: came from a link */
    weft_aref_t peer;
    uint64_t ref;
    weft_exit_kind_t rkind;
    int rcode;
    char *rmsg; /* owned */
    weft_future_token_t tok;
};

struct monref {
    uint64_t ref;
    weft_aref_t target;
};

struct atimer {
    struct weft__list node; /* [loop] a->timers */
    struct weft_actor *a;
    weft_handle_t h;
    uint64_t id, tag, period, next_at;
    void *data;
};

struct weft_actor {
    /* ---- read-only after spawn ---- */
    weft_aref_t self;
    weft_loop_t *loop;
    weft_actor_fn fn;
    void *state;
    weft_actor_opts_t opts;
    char *name;
    bool bounded;
    weft_chan_t *mb; /* cross-thread messages (and every message, bounded) */

    /* ---- [loop] ---- */
    struct deque local; /* same-loop messages, unstash, timers (unbounded) */
    struct deque stash;
    struct weft__list wq; /* the actor's task, parked */
    bool waiting;         /* parked in wq: a same-loop sender grants it */
    bool trap;
    bool in_handler;
    bool exiting;
    weft_exit_t reason;
    char *reason_msg;
    char *fail_msg;
    struct env *cur; /* the message being handled */
    bool cur_owned;  /* its reply obligation is still the handler's */
    weft_task_t *task;
    struct sysrec *links;    /* SYS_LINK_REQ records: one per peer */
    struct sysrec *watchers; /* SYS_MONITOR records: who monitors us */
    struct sysrec *joins;    /* SYS_JOIN records */
    struct monref *mon_refs; /* our monitors not yet fired */
    size_t mon_n, mon_cap;
    struct weft__list timers;
    uint64_t next_timer_id;

    /* ---- [any] ---- */
    _Alignas(64) uint32_t parked; /* the task is (about to be) parked: wake it */
    uint32_t ctl;                 /* CTL_* flags */
    uint32_t sys_pending;
    pthread_mutex_t lock; /* sys list, spill list, closed */
    struct sysrec *sys_head, *sys_tail;
    struct spill *spill_head, *spill_tail;
    uint32_t spill_flag;
    bool closed;       /* under lock: no more sys / spill records */
    bool names_closed; /* under the registry's lock (names.c) */
    void *names;       /* likewise: this actor's entries */
    /* counters: each has one writer at a time, or is atomic */
    uint64_t n_handled, n_dead, n_rejected, n_drop_new, n_drop_old, n_suspended, n_spilled;
};

struct spill {
    struct spill *next;
    struct env e;
};

enum {
    CTL_STOP = 1,
    CTL_KILL = 2
};

/* ---- slots.c: the table that arefs name ---- */
/* A new slot for a (pins 1 = the actor's own, alive). 0 or UV_ENOMEM. */
int weft__aslot_alloc(struct weft_actor *a, weft_loop_t *loop, weft_aref_t *out);
/* Pin the actor named by r (it stays allocated until unpinned): NULL when
 * r is stale or its actor is dead. Any thread. */
struct weft_actor *weft__aslot_pin(weft_aref_t r);
void weft__aslot_unpin(weft_aref_t r);
/* The actor named by r if it is alive and runs on the calling loop `cur`
 * (no pin needed: it cannot die while the caller runs); else NULL, with
 * *other set when it is alive on another loop. */
struct weft_actor *weft__aslot_local(weft_aref_t r, weft_loop_t *cur, bool *other);
/* The actor is dying: no pin succeeds from now on. Its own pin is dropped
 * with weft__aslot_unpin. */
void weft__aslot_kill(weft_aref_t r);
/* Free the actor's memory (slots.c calls it at the last unpin). */
void weft__actor_free(struct weft_actor *a);

/* ---- actor.c for the others ---- */
int weft__actor_sys_push(weft_aref_t to, struct sysrec *r);
void weft__sysrec_free(struct sysrec *r);
void weft__actor_dead_letter(weft_aref_t to, struct weft_actor *a, const struct env *e,
                             bool to_dtor);

/* ---- names.c ---- */
void weft__names_drop(struct weft_actor *a);

#endif /* WEFT_ACTORS_ACTOR_INT_H */

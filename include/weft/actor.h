/*
 * weft/actor.h - actors: state + a behaviour pinned to one loop, mailboxes
 * built on channels, send/ask/reply/forward, names, links, monitors and exit
 * signals with Erlang/OTP semantics (docs/actors.md). Supervisors are in
 * weft/supervisor.h. Virtual actors (entities) are not built yet.
 *
 * An actor is a task on one loop that takes messages from its mailbox one at
 * a time and calls its handler for each. The handler runs in that task, so
 * it may await (an ask, a sleep, I/O); the actor does not take its next
 * message while a handler is suspended (Orleans' non-reentrant rule).
 *
 * An actor reference (weft_aref_t) is a plain 8-byte value: copy it, send it
 * to any loop or thread. It names one incarnation of one actor and keeps
 * naming it after it died: a message to a dead actor is a dead letter
 * (UV_ESRCH for the sender, counted, reported to the dead-letter hook).
 *
 * Threads: send, ask (in a task), stop, kill, exit, stats and the names work
 * from any loop and any plain thread. Calls that take weft_actor_t *self
 * belong to the actor's own handler (its task), and to nobody else.
 *
 * Codes: UV_EINVAL (NULL, a NONE aref, a bad option), UV_ESRCH (the actor is
 * dead: the message was not taken, it is still the caller's), UV_EAGAIN (a
 * bounded mailbox is full under WEFT_OVERFLOW_FAIL, or a plain thread met
 * WEFT_OVERFLOW_SUSPEND), UV_ETIMEDOUT, UV_ECANCELED, WEFT_ENOTASK,
 * UV_ENOMEM.
 */
#ifndef WEFT_ACTOR_H
#define WEFT_ACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- references ------------------------------------------------------------ */

typedef struct weft_aref {
    uint32_t weft__slot; /* 0: no actor */
    uint32_t weft__gen;
} weft_aref_t;

#define WEFT_AREF_NONE ((weft_aref_t){0, 0})

static inline bool weft_aref_is_none(weft_aref_t a)
{
    return a.weft__slot == 0;
}

static inline bool weft_aref_eq(weft_aref_t a, weft_aref_t b)
{
    return a.weft__slot == b.weft__slot && a.weft__gen == b.weft__gen;
}

/* A number that names the reference (for logs, hash tables). */
static inline uint64_t weft_aref_id(weft_aref_t a)
{
    return ((uint64_t)a.weft__gen << 32) | a.weft__slot;
}

/* ---- messages and exit reasons --------------------------------------------- */

typedef enum weft_exit_kind {
    WEFT_EXIT_NORMAL = 0,   /* stop, poison, on_start/handler asked to stop */
    WEFT_EXIT_SHUTDOWN = 1, /* told to shut down (a supervisor, a runtime stop) */
    WEFT_EXIT_KILLED = 2,   /* weft_actor_kill */
    WEFT_EXIT_NOPROC = 3,   /* the target was already dead (link, monitor) */
    WEFT_EXIT_ERROR = 4,    /* a handler returned code < 0 (a crash) */
} weft_exit_kind_t;

typedef struct weft_exit {
    weft_exit_kind_t kind;
    int code;            /* ERROR: the handler's code; else 0 */
    const char *message; /* ERROR: weft_actor_fail's message, or NULL; valid in the handler */
} weft_exit_t;

/* NORMAL and (for a transient child) SHUTDOWN are "normal" exits; the rest
 * are abnormal: they kill linked actors that do not trap exits. */
static inline bool weft_exit_is_normal(const weft_exit_t *e)
{
    return e->kind == WEFT_EXIT_NORMAL;
}

typedef enum weft_msg_kind {
    WEFT_MSG_USER = 0, /* send / ask / forward / timers */
    WEFT_MSG_EXIT = 1, /* a trapped exit signal: from = who, exit = why */
    WEFT_MSG_DOWN = 2, /* a monitor fired: from = who, exit = why, ref */
} weft_msg_kind_t;

typedef struct weft_msg {
    weft_msg_kind_t kind;
    uint64_t tag;            /* USER: the sender's tag */
    void *data;              /* USER: the sender's pointer (the receiver's now) */
    weft_aref_t from;        /* USER: the sender (NONE from outside actors);
                              * EXIT/DOWN: the actor that exited */
    const weft_exit_t *exit; /* EXIT/DOWN */
    uint64_t ref;            /* DOWN: weft_actor_monitor's ref */
    bool is_ask;             /* USER: the sender awaits a reply */
} weft_msg_t;

typedef struct weft_actor weft_actor_t; /* the running actor, for its handler */

/* The behaviour: called once per message, in the actor's task. 0 to go on;
 * a negative code is a crash (exit reason ERROR with that code). An ask the
 * handler did not reply to, forward or defer is answered when it returns:
 * with result NULL after 0, with the code after a crash. */
typedef int (*weft_actor_fn)(weft_actor_t *self, void *state, const weft_msg_t *msg);

/* ---- mailboxes --------------------------------------------------------------- */

typedef enum weft_overflow {
    WEFT_OVERFLOW_SUSPEND = 0,     /* a task sender waits for room; a plain thread gets
                                    * UV_EAGAIN (weft_actor_send_timeout blocks) */
    WEFT_OVERFLOW_FAIL = 1,        /* the send returns UV_EAGAIN */
    WEFT_OVERFLOW_DROP_NEWEST = 2, /* the new message is dropped (send returns 0) */
    WEFT_OVERFLOW_DROP_OLDEST = 3, /* the oldest queued message is dropped for it */
} weft_overflow_t;

typedef struct weft_actor_opts {
    /* 0 = unbounded (the default). Else the mailbox holds at most this
     * many messages, rounded up to a power of two as a channel's capacity
     * is (weft/chan.h); what happens to more is `overflow`. Messages an
     * actor sends itself (timers, unstash) do not count. */
    size_t capacity;
    weft_overflow_t overflow;
    /* Unbounded mailboxes: the ring that takes messages from other loops
     * and threads before they spill into a list (0 = 256). */
    size_t ring;
    bool trap_exit; /* start trapping exits (weft_actor_trap_exit) */
    /* In the actor's task before the first message; < 0 ends the actor
     * with an ERROR reason before it handled anything. */
    int (*on_start)(weft_actor_t *self, void *state);
    /* In the actor's task once it ended, whatever the reason: free state.
     * Must not suspend. */
    void (*on_stop)(void *state, const weft_exit_t *reason);
    /* Called for the data of every message this actor will not handle
     * (dead letters left in its mailbox, drops by the overflow policy),
     * after the dead-letter hook saw it. NULL = the data is not freed. */
    void (*msg_dtor)(uint64_t tag, void *data);
    const char *name;  /* the task's name (copied); NULL = "actor" */
    size_t stack_size; /* 0 = the loop's default */
} weft_actor_opts_t;

/* Per actor counters (weft_actor_stats). */
typedef struct weft_actor_stats {
    uint64_t handled;        /* handler calls for user messages */
    uint64_t dead_letters;   /* messages to it that it will never handle */
    uint64_t rejected;       /* sends that got UV_EAGAIN (full, FAIL / SUSPEND from a thread) */
    uint64_t dropped_newest; /* DROP_NEWEST drops */
    uint64_t dropped_oldest; /* DROP_OLDEST drops */
    uint64_t suspended;      /* sends that waited for room (SUSPEND) */
    uint64_t spilled;        /* unbounded: messages that went past the ring into the list */
    uint64_t queued;         /* now: messages in the mailbox (a snapshot) */
} weft_actor_stats_t;

/* ---- spawning ---------------------------------------------------------------- */

/* Spawn an actor on `loop` (NULL = the calling thread's loop), from any
 * thread: the reference is valid at once; messages sent before the actor's
 * task runs wait in its mailbox. state belongs to the actor (on_stop frees
 * it). 0, UV_EINVAL, UV_ENOMEM, WEFT_ECLOSED (the loop is closed). */
WEFT_WARN_UNUSED int weft_actor_spawn(weft_loop_t *loop, weft_actor_fn fn, void *state,
                                      const weft_actor_opts_t *opts, weft_aref_t *out);
/* On loop weft_actor_shard(rt, key) of rt. */
WEFT_WARN_UNUSED int weft_actor_spawn_sharded(weft_runtime_t *rt, uint64_t key, weft_actor_fn fn,
                                              void *state, const weft_actor_opts_t *opts,
                                              weft_aref_t *out);
/* The loop index a key maps to: a 64-bit mix of key modulo the loop count. */
unsigned weft_actor_shard(const weft_runtime_t *rt, uint64_t key);

/* ---- messages ---------------------------------------------------------------- */

/* Fire and forget, from any task or thread. The sender (weft_actor_sender)
 * is the calling actor, if the caller is one's handler. Per sender, messages
 * arrive in the order sent. 0, UV_ESRCH (dead: a dead letter, data is still
 * the caller's), UV_EAGAIN (see weft_overflow_t), UV_ECANCELED (a task
 * waiting for room was cancelled), UV_EINVAL, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_actor_send(weft_aref_t to, uint64_t tag, void *data);
/* As send; where the SUSPEND policy would wait, wait at most timeout_ms
 * (UV_ETIMEDOUT) - also on a plain thread, which blocks. */
WEFT_WARN_UNUSED int weft_actor_send_timeout(weft_aref_t to, uint64_t tag, void *data,
                                             uint64_t timeout_ms);
/* In a task (an actor's handler or any other): send and await the reply,
 * at most timeout_ms (WEFT_FOREVER: no limit). Returns the reply's code: 0
 * and *reply (may be NULL), the handler's error, UV_ESRCH (the target died
 * first), UV_ETIMEDOUT (a reply that comes later is dropped: given to
 * reply_dtor if set, see weft_actor_ask_ex), UV_ECANCELED, or a send error.
 * The reply is routed back to the asking task's loop. */
WEFT_WARN_UNUSED int weft_actor_ask(weft_aref_t to, uint64_t tag, void *data, uint64_t timeout_ms,
                                    void **reply);
WEFT_WARN_UNUSED int weft_actor_ask_ex(weft_aref_t to, uint64_t tag, void *data,
                                       uint64_t timeout_ms, void (*reply_dtor)(void *),
                                       void **reply);

/* In the handler: the current message. */
weft_aref_t weft_actor_self(const weft_actor_t *self);
weft_aref_t weft_actor_sender(const weft_actor_t *self);
/* The calling task's actor, or NULL outside actors' handlers. */
weft_actor_t *weft_actor_current(void);
/* Reply to the current message's ask: 0, UV_EINVAL (not an ask, already
 * answered, forwarded or deferred). The reply crosses to the asker's loop. */
int weft_actor_reply(weft_actor_t *self, void *value);
int weft_actor_reply_error(weft_actor_t *self, int code, const char *message);
/* Send the current message on to `to` with its original sender and its
 * reply obligation (an ask is then answered by `to`). 0 or a send error (the
 * message then stays this handler's). */
WEFT_WARN_UNUSED int weft_actor_forward(weft_actor_t *self, weft_aref_t to);
/* Take the current ask's reply obligation out of the handler, to answer it
 * later from any thread with weft_reply_send/weft_reply_error (exactly one
 * of them, once). UV_EINVAL when there is nothing to take. */
typedef struct weft_reply {
    void *weft__f;
    uint32_t weft__gen;
} weft_reply_t;
int weft_actor_defer_reply(weft_actor_t *self, weft_reply_t *out);
int weft_reply_send(weft_reply_t r, void *value);
int weft_reply_error(weft_reply_t r, int code, const char *message);
/* A crash message for the handler's coming negative return (copied). */
int weft_actor_fail(weft_actor_t *self, int code, const char *message);

/* Stash the current message (Akka's stash): it is taken out of this
 * handler's hands, with its reply obligation, and handled again after
 * weft_actor_unstash_all puts every stashed message back at the front of
 * the mailbox, in their order. 0, UV_EINVAL (not a user message), UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_actor_stash(weft_actor_t *self);
size_t weft_actor_unstash_all(weft_actor_t *self);

/* Timers to self, cancelled when the actor dies. send_after sends (tag,
 * data) once after delay_ms, send_interval every period_ms (> 0) until
 * cancelled; *timer (may be NULL) names it for weft_actor_timer_cancel.
 * The data of a timer that never fires is the caller's (msg_dtor is not
 * called for it). */
typedef uint64_t weft_actor_timer_t;
WEFT_WARN_UNUSED int weft_actor_send_after(weft_actor_t *self, uint64_t delay_ms, uint64_t tag,
                                           void *data, weft_actor_timer_t *timer);
WEFT_WARN_UNUSED int weft_actor_send_interval(weft_actor_t *self, uint64_t period_ms, uint64_t tag,
                                              void *data, weft_actor_timer_t *timer);
/* 0, or UV_ENOENT (fired already or unknown). */
int weft_actor_timer_cancel(weft_actor_t *self, weft_actor_timer_t timer);

/* ---- stopping ---------------------------------------------------------------- */

/* Any thread. stop: after the message being handled (reason NORMAL);
 * poison: a message in the mailbox, so after the messages queued before it
 * (NORMAL); kill: now - no other message is handled, a suspended handler is
 * cancelled (its wait returns UV_ECANCELED) and the exit reason is KILLED,
 * which exits cannot trap. Every message left in a stopped actor's
 * mailbox is a dead letter: handled + dead letters = sent. 0, UV_ESRCH
 * (already dead), UV_EINVAL; poison also the send codes. */
int weft_actor_stop(weft_aref_t a);
WEFT_WARN_UNUSED int weft_actor_poison(weft_aref_t a);
int weft_actor_kill(weft_aref_t a);
/* Erlang's exit/2: an exit signal with `reason` (NORMAL, SHUTDOWN or
 * ERROR with code < 0). An actor that traps exits gets it as a WEFT_MSG_EXIT
 * message; one that does not exits with that reason after its current
 * handler - except that NORMAL is ignored then. 0, UV_ESRCH, UV_EINVAL,
 * UV_ENOMEM. */
int weft_actor_exit(weft_aref_t a, weft_exit_kind_t kind, int code);
/* In a task: wait until a ends (at most timeout_ms) and get its exit kind
 * and code (message NULL). An actor dead already gives NOPROC.
 * 0, UV_ETIMEDOUT, UV_ECANCELED, WEFT_ENOTASK, UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_actor_join(weft_aref_t a, uint64_t timeout_ms, weft_exit_t *out);
/* Any thread, while a lives: its counters. UV_ESRCH once it is dead. */
int weft_actor_stats(weft_aref_t a, weft_actor_stats_t *out);
bool weft_actor_alive(weft_aref_t a);

/* ---- dead letters ------------------------------------------------------------ */

/* Every dead letter (of every actor) since the process started. */
uint64_t weft_actor_dead_letters(void);
/* hook(arg, to, msg) for each dead letter, on the thread that found it
 * (the sender's for a send to a dead actor, the actor's loop for its
 * mailbox at death); it must not suspend or send to `to`. NULL removes it.
 * Set it before actors run: it is one process-wide pair. */
typedef void (*weft_dead_letter_fn)(void *arg, weft_aref_t to, const weft_msg_t *msg);
void weft_actor_set_dead_letter_hook(weft_dead_letter_fn hook, void *arg);

/* ---- names (one registry per runtime; rt NULL = the registry of loops
 * outside runtimes). Any thread. A name is freed when its actor dies. ---- */

/* 0, UV_EEXIST (the name is taken), UV_ESRCH (a is dead), UV_EINVAL
 * (NULL name, longer than 255), UV_ENOMEM. */
int weft_actor_register(weft_runtime_t *rt, const char *name, weft_aref_t a);
/* 0 and *out, or UV_ENOENT. */
int weft_actor_whereis(weft_runtime_t *rt, const char *name, weft_aref_t *out);
/* 0 or UV_ENOENT. */
int weft_actor_unregister(weft_runtime_t *rt, const char *name);

/* ---- links, monitors, trapping exits (in the handler) ----------------------- */

/* Link self and other both ways: when either exits abnormally the other
 * gets an exit signal with the same reason (it exits too, unless it traps
 * exits: then it gets a WEFT_MSG_EXIT message). Linking to a dead actor
 * delivers an exit signal with NOPROC at once. A second link is a no-op.
 * 0, UV_EINVAL (self, NONE), UV_ENOMEM. */
int weft_actor_link(weft_actor_t *self, weft_aref_t other);
int weft_actor_unlink(weft_actor_t *self, weft_aref_t other);
/* Watch target: exactly one WEFT_MSG_DOWN message with its exit reason and
 * *ref, when it exits - at once (NOPROC) if it is dead already. demonitor:
 * no DOWN for ref after it (0, UV_ENOENT). */
int weft_actor_monitor(weft_actor_t *self, weft_aref_t target, uint64_t *ref);
int weft_actor_demonitor(weft_actor_t *self, uint64_t ref);
/* Trap exits (or stop): abnormal exit signals become WEFT_MSG_EXIT
 * messages. Returns the previous setting. */
bool weft_actor_trap_exit(weft_actor_t *self, bool on);
/* End self after this handler with reason kind (code for ERROR). */
int weft_actor_stop_self(weft_actor_t *self, weft_exit_kind_t kind, int code);
/* The loop the actor runs on. */
weft_loop_t *weft_actor_loop(const weft_actor_t *self);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_ACTOR_H */

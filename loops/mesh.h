/*
 * loops/mesh.h - the single-producer single-consumer ring of one ordered
 * pair of runtime loops (internal).
 *
 * Messages are stored by value in 64-byte slots (no allocation per message),
 * and each slot carries its own sequence number (position + 1), stored last
 * with release: the consumer learns that a message is there from the slot
 * itself, so a message moves exactly one cache line between the cores (the
 * layout docs/machine.md measured at ~1.3x a bare cache-line round trip, against
 * ~1.5-1.8x for head/tail indices and 2.0-2.3x for ck_ring as shipped,
 * whose SPSC enqueue also reads the consumer's head on every message). The
 * consumer never writes slots; it publishes its position every 32 messages
 * and after each drain, and the producer reads that position only when its
 * cached copy says the ring is full. The producer checks whether the
 * consumer sleeps (fence, then the flag) at the first message since its
 * last check, then once per 32 messages and at the end of its loop's tick,
 * and wakes it at once when a plain load of the flag, on every message,
 * sees it asleep already (runtime.c, send_to).
 *
 * Full ring: the producer keeps further messages, in order, in an overflow
 * list of heap nodes that it moves into the ring as the consumer frees slots
 * (never drops, never spins). Counted in overflows.
 */
#ifndef WEFT_LOOPS_MESH_H
#define WEFT_LOOPS_MESH_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/task.h>

enum {
    MESH_SUBMIT = 1, /* run fn(arg) as a task here, reply to src */
    MESH_REPLY = 2,  /* complete future fut (if its generation is still gen) */
    MESH_CALL = 3,   /* run cb(arg) as a callback here, no reply */
    MESH_CANCEL = 4, /* cancel the task running the submit (src, fut, gen) */
};

struct mesh_msg {
    uint8_t kind;
    uint32_t src;
    uint32_t gen;
    int32_t err;
    uint32_t seq; /* in a ring slot: position + 1 once written (release) */
    weft_task_fn fn;
    void *arg;
    void *fut; /* REPLY/SUBMIT: the source loop's future; CALL: the callback */
    void *result;
    char *msg; /* REPLY: owned error message, or NULL */
};
_Static_assert(sizeof(struct mesh_msg) <= 64, "a message is one slot");

struct mesh_node {
    struct mesh_node *next;
    struct mesh_msg m;
};

/* The producer checks whether the consumer sleeps after this many messages
 * (and whenever its loop ends a tick); the consumer publishes its position
 * every MESH_HEAD_EVERY messages (a power of two) and after each drain. */
#define MESH_WAKE_EVERY 32u
#define MESH_HEAD_EVERY 32u

struct mesh_ring {
    /* Producer's line. */
    _Alignas(64) uint32_t ptail; /* next slot to write */
    uint32_t head_cache;         /* consumer's head as last seen */
    uint32_t woken;              /* ptail when the consumer was last checked for sleep */
    struct mesh_node *ovf_head, *ovf_tail;
    uint64_t overflows; /* atomic: written by the producer, read by stats */
    uint64_t ovf_len;   /* atomic, likewise: nodes in the overflow list */
    /* Consumer's line. */
    _Alignas(64) uint32_t chead; /* next slot to read */
    /* Shared: the consumer's published position, on its own line, and the
     * producer's request for a "room" wake-up (runtime.c, flush): set by a
     * producer whose overflow list cannot move into the full ring, so that it
     * may sleep; cleared by the consumer, which then wakes it. */
    _Alignas(64) uint32_t head;
    int want_room;
    _Alignas(64) uint32_t mask;
    _Alignas(64) struct mesh_msg *slots;
};

#endif /* WEFT_LOOPS_MESH_H */

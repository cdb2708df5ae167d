/*
 * core/heap.h - the timer heap (internal): a 4-ary min-heap in one array,
 * with lazy deletion.
 *
 * Keyed by (deadline_ns, seq): seq is a per-loop counter taken when the
 * timer is armed, so timers with equal deadlines fire in the order they were
 * armed (FIFO). Keys live in the array next to the timer pointer, so sifting
 * compares and moves contiguous memory only. Disarming a timer just clears
 * its flag; its entry stays as a tombstone (recognised because the timer is
 * no longer armed with that seq) until it reaches the top or the heap is
 * rebuilt, which happens when tombstones outnumber live timers. Timers live
 * in pooled objects that are not freed before the loop closes, so a
 * tombstone's pointer always points at memory of the same type.
 *
 * Measured on the timers benchmark (100,000 sleeping tasks): a pointer-linked
 * binary heap spent 23% of the run in removal, an array heap that kept each
 * timer's index 17% (every sift step wrote into a cold timer); with lazy
 * deletion sifting never leaves the array.
 *
 * The array grows by doubling and never shrinks, so arming allocates only
 * when the loop reaches a new high-water mark.
 */
#ifndef WEFT_CORE_HEAP_H
#define WEFT_CORE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft__timer {
    uint64_t deadline_ns;
    uint64_t seq; /* of the arming that is live, if armed */
    bool armed;
    uint8_t owner; /* who armed it: see loop_int.h */
    bool scope;    /* a task's timer armed for its deadline scope (task.c) */
};

struct weft__heap_entry {
    uint64_t deadline_ns;
    uint64_t seq;
    struct weft__timer *t;
};

struct weft__heap {
    struct weft__heap_entry *a;
    size_t count; /* entries, tombstones included */
    size_t live;  /* armed timers */
    size_t cap;
    uint64_t next_seq;
};

void weft__heap_init(struct weft__heap *h);
void weft__heap_destroy(struct weft__heap *h);
/* Arm t at t->deadline_ns. Returns 0 or UV_ENOMEM (only when growing). */
int weft__heap_insert(struct weft__heap *h, struct weft__timer *t);
/* Disarm t (no-op if not armed). Never allocates, never fails. */
void weft__heap_remove(struct weft__heap *h, struct weft__timer *t);
/* The armed timer with the earliest deadline, or NULL (drops tombstones
 * found on top). */
struct weft__timer *weft__heap_min(struct weft__heap *h);

#endif /* WEFT_CORE_HEAP_H */

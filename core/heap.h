/*
 * core/heap.h - intrusive binary min-heap of timers (internal).
 *
 * Nodes are linked by pointers (no array to grow, so arming a timer never
 * allocates). Keyed by (deadline_ns, seq): seq is a per-loop counter taken
 * when the timer is armed, so timers with equal deadlines fire in the order
 * they were armed (FIFO). All operations are O(log n).
 */
#ifndef WEFT_CORE_HEAP_H
#define WEFT_CORE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft__timer {
    struct weft__timer *left, *right, *parent;
    uint64_t deadline_ns;
    uint64_t seq;
    bool armed;
    uint8_t owner; /* who armed it: see loop.c */
};

struct weft__heap {
    struct weft__timer *min;
    size_t count;
};

void weft__heap_init(struct weft__heap *h);
void weft__heap_insert(struct weft__heap *h, struct weft__timer *t);
void weft__heap_remove(struct weft__heap *h, struct weft__timer *t);

static inline struct weft__timer *weft__heap_min(const struct weft__heap *h)
{
    return h->min;
}

#endif /* WEFT_CORE_HEAP_H */

/*
 * core/stack.h - task stacks and their per-loop pool (internal).
 *
 * GUARDED mode: stacks of one size are carved from slabs (one mmap holds many
 * stacks), each with a guard page below it. The guard is installed with
 * madvise(MADV_GUARD_INSTALL) (Linux >= 6.13), which protects the page
 * without splitting the mapping, so 100,000 guarded stacks cost a handful of
 * kernel mappings instead of 200,000 (vm.max_map_count is 65,530 by default).
 * On older kernels it falls back to mprotect(PROT_NONE), two mappings per
 * stack, while under a budget of half of vm.max_map_count; past that budget
 * stacks get no guard page (counted in weft__stack_pool.unguarded).
 * Stacks are reused LIFO (the most recently used one is the warmest) and
 * never unmapped before the pool is destroyed; an idle loop hands the pages
 * of stacks it has not used for the longest back to the kernel
 * (weft__stack_pool_trim), so a burst of tasks does not stay resident.
 *
 * COMPACT mode: every task runs on one shared guarded stack; its descriptor
 * keeps a heap copy (image) of its live frames while another task uses the
 * shared stack. See task.c for when images are swapped.
 *
 * A descriptor also holds the saved stack pointer of the context that is
 * suspended on it: only the topmost context of a stack can be suspended
 * (inline children run above their awaiting parent on the parent's stack).
 */
#ifndef WEFT_CORE_STACK_H
#define WEFT_CORE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"

struct weft__stack {
    char *lo;               /* lowest usable byte (just above the guard) */
    size_t size;            /* usable bytes */
    void *sp;               /* saved sp of the suspended context on it */
    struct weft__list link; /* the pool's hot or cold list while pooled */
    void *image;            /* COMPACT: saved frames while swapped out */
    size_t image_len, image_cap;
    void *tsan_fiber;              /* TSan fiber of this stack, if any */
    struct weft__stack_pool *pool; /* where it returns */
};

struct weft__stack_slab {
    struct weft__stack_slab *next;
    void *map;
    size_t map_len;
    size_t count; /* stack descriptors that follow this record */
};

struct weft__stack_pool {
    size_t size; /* usable bytes per stack */
    bool compact;
    /* Pooled stacks: hot ones keep their pages and are reused LIFO (front =
     * most recently used); cold ones had their pages handed back. */
    struct weft__list hot, cold;
    struct weft__stack_slab *slabs;
    size_t next_slab_count; /* stacks in the next slab */
    uint64_t in_use, pooled, hot_n, unguarded, trimmed;
    /* Idle trimming: the fewest hot stacks seen in the current window; at
     * the window's end that many (less the warm reserve) were not needed
     * for a whole window and may be trimmed (trim_quota). */
    uint64_t min_hot, trim_quota, window_start_ns;
    /* COMPACT */
    struct weft__stack *shared;    /* the shared stack itself */
    struct weft__stack *on_shared; /* descriptor whose frames are live */
};

int weft__stack_pool_init(struct weft__stack_pool *p, size_t size, bool compact,
                          size_t shared_size);
void weft__stack_pool_destroy(struct weft__stack_pool *p);
/* A stack (GUARDED) or a descriptor on the shared stack (COMPACT); NULL on
 * out of memory. */
struct weft__stack *weft__stack_get(struct weft__stack_pool *p);
void weft__stack_put(struct weft__stack_pool *p, struct weft__stack *s);
/* Called by an idle loop: hand back the pages (madvise MADV_DONTNEED; the
 * guard page stays) of up to `budget` least recently used pooled stacks
 * that stayed unused for a whole window of `window_ns`, keeping `keep` warm
 * ones. Returns how many were trimmed. */
size_t weft__stack_pool_trim(struct weft__stack_pool *p, size_t keep, size_t budget,
                             uint64_t now_ns, uint64_t window_ns);
/* COMPACT: make `s` the descriptor whose frames are on the shared stack,
 * saving the current owner's frames first. Must run off the shared stack.
 * Returns 0 or UV_ENOMEM. */
int weft__stack_activate(struct weft__stack_pool *p, struct weft__stack *s);

/* Round up to whole pages; 0 -> default. */
size_t weft__stack_round(size_t size);

#endif /* WEFT_CORE_STACK_H */

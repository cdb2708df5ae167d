/*
 * core/source.h - message sources besides the inbox (the runtime's mesh of
 * rings; later channels and I/O), and waking a loop that sleeps.
 *
 * Layer: a leaf, next to base.h (see base.h for the map). The loop keeps
 * the list (sched_int.h); the layers above core register their sources through
 * ext.h, which includes this. Includes list.h and base.h only.
 */
#ifndef WEFT_CORE_SOURCE_H
#define WEFT_CORE_SOURCE_H

#include <stdbool.h>

#include "base.h"
#include "list.h"

/* A message source besides the inbox: drain() runs every iteration (it
 * takes what arrived and runs or queues it); pending() is asked while the
 * loop polls before sleeping and after it announced sleep (then after a
 * seq_cst fence: a producer publishes, fences, and reads the flag with
 * weft__loop_wake_if_sleeping). The record is the caller's; it stays
 * registered until removed. Add and remove on the loop's thread, or before
 * it runs. */
struct weft__source {
    struct weft__list link;
    void (*drain)(void *arg);
    bool (*pending)(void *arg);
    void *arg;
};
void weft__loop_add_source(struct weft__loop *l, struct weft__source *s);
void weft__loop_remove_source(struct weft__source *s);
/* Any thread, after publishing a message l will find through ext.pending()
 * (with a release store): wake l if it announced sleep. The seq_cst fence
 * here pairs with the one after the loop's announcement (block() in
 * loop.c): either the loop sees the message before it sleeps, or this sees
 * the announcement and writes the eventfd. */
void weft__loop_wake_if_sleeping(struct weft__loop *l);

#endif /* WEFT_CORE_SOURCE_H */

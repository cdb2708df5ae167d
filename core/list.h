/*
 * core/list.h - intrusive circular doubly linked list (internal).
 *
 * A list is a sentinel node; an element embeds a node and is found again with
 * WEFT_CONTAINER_OF. A node that is in no list points to itself, so
 * weft__list_linked() is a cheap question and removal is idempotent.
 */
#ifndef WEFT_CORE_LIST_H
#define WEFT_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define WEFT_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct weft__list {
    struct weft__list *next, *prev;
};

static inline void weft__list_init(struct weft__list *l)
{
    l->next = l->prev = l;
}

static inline bool weft__list_empty(const struct weft__list *l)
{
    return l->next == l;
}

/* A node initialised with weft__list_init() and not in a list is unlinked. */
static inline bool weft__list_linked(const struct weft__list *n)
{
    return n->next != n;
}

static inline void weft__list_push_back(struct weft__list *l, struct weft__list *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static inline void weft__list_push_front(struct weft__list *l, struct weft__list *n)
{
    n->next = l->next;
    n->prev = l;
    l->next->prev = n;
    l->next = n;
}

static inline void weft__list_remove(struct weft__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

static inline struct weft__list *weft__list_pop_front(struct weft__list *l)
{
    struct weft__list *n = l->next;
    if (n == l)
        return NULL;
    weft__list_remove(n);
    return n;
}

/* Move every node of `from` to the back of `to`, keeping order. */
static inline void weft__list_splice_back(struct weft__list *to, struct weft__list *from)
{
    if (weft__list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    weft__list_init(from);
}

#endif /* WEFT_CORE_LIST_H */

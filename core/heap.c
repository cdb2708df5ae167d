/*
 * core/heap.c - the 4-ary array timer heap with lazy deletion (see heap.h).
 *
 * Children of i are 4i+1 .. 4i+4; the parent of i is (i-1)/4. Four children
 * per node halve the depth of a binary heap (100,000 timers: 9 levels, not
 * 17) and the four child keys share one or two cache lines.
 */
#include "heap.h"

#include <uv.h>

#include "alloc.h"

static inline bool less(const struct weft__heap_entry *x, const struct weft__heap_entry *y)
{
    return x->deadline_ns < y->deadline_ns || (x->deadline_ns == y->deadline_ns && x->seq < y->seq);
}

static inline bool is_live(const struct weft__heap_entry *e)
{
    return e->t->armed && e->t->seq == e->seq;
}

void weft__heap_init(struct weft__heap *h)
{
    h->a = NULL;
    h->count = h->live = h->cap = 0;
    h->next_seq = 0;
}

void weft__heap_destroy(struct weft__heap *h)
{
    weft__free(h->a);
    weft__heap_init(h);
}

static void sift_up(struct weft__heap *h, size_t i, struct weft__heap_entry e)
{
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (!less(&e, &h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
}

static void sift_down(struct weft__heap *h, size_t i, struct weft__heap_entry e)
{
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= h->count)
            break;
        size_t end = c + 4 < h->count ? c + 4 : h->count;
        size_t m = c;
        for (size_t k = c + 1; k < end; k++)
            if (less(&h->a[k], &h->a[m]))
                m = k;
        if (!less(&h->a[m], &e))
            break;
        h->a[i] = h->a[m];
        i = m;
    }
    h->a[i] = e;
}

/* Drop every tombstone and re-heapify (Floyd): O(n). */
static void rebuild(struct weft__heap *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->count; i++)
        if (is_live(&h->a[i]))
            h->a[n++] = h->a[i];
    h->count = n;
    for (size_t i = n / 4 + 1; i-- > 0;)
        if (i < n)
            sift_down(h, i, h->a[i]);
}

int weft__heap_insert(struct weft__heap *h, struct weft__timer *t)
{
    if (t->armed)
        weft__heap_remove(h, t);
    if (h->count == h->cap) {
        if (h->count - h->live > h->live) {
            rebuild(h); /* room without growing */
        } else {
            size_t cap = h->cap ? h->cap * 2 : 64;
            struct weft__heap_entry *a = weft__realloc(h->a, cap * sizeof(*a));
            if (a == NULL)
                return UV_ENOMEM;
            h->a = a;
            h->cap = cap;
        }
    }
    t->seq = h->next_seq++;
    t->armed = true;
    h->live++;
    struct weft__heap_entry e = {t->deadline_ns, t->seq, t};
    sift_up(h, h->count++, e);
    return 0;
}

void weft__heap_remove(struct weft__heap *h, struct weft__timer *t)
{
    if (!t->armed)
        return;
    t->armed = false;
    h->live--;
    if (h->count - h->live > h->live + 1024)
        rebuild(h);
}

struct weft__timer *weft__heap_min(struct weft__heap *h)
{
    while (h->count > 0) {
        if (is_live(&h->a[0]))
            return h->a[0].t;
        struct weft__heap_entry last = h->a[--h->count];
        if (h->count > 0)
            sift_down(h, 0, last);
    }
    return NULL;
}

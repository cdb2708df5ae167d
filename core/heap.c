/*
 * core/heap.c - the timer heap (see heap.h).
 *
 * A complete binary tree addressed by the node count: the path from the root
 * to node k follows the bits of k below its top bit (0 = left, 1 = right).
 * Insertion appends at position count+1 and sifts up; removal moves the last
 * node into the hole and sifts it up or down. Sifting swaps nodes (not keys),
 * so a timer's address never changes while it is armed.
 */
#include "heap.h"

static bool less(const struct weft__timer *a, const struct weft__timer *b)
{
    if (a->deadline_ns != b->deadline_ns)
        return a->deadline_ns < b->deadline_ns;
    return a->seq < b->seq;
}

void weft__heap_init(struct weft__heap *h)
{
    h->min = NULL;
    h->count = 0;
}

/* Swap a parent with one of its children, relinking every neighbour. */
static void swap_with_child(struct weft__heap *h, struct weft__timer *parent,
                            struct weft__timer *child)
{
    struct weft__timer *sibling;
    struct weft__timer tmp = *child;

    child->parent = parent->parent;
    if (parent->left == child) {
        child->left = parent;
        child->right = parent->right;
        sibling = child->right;
    } else {
        child->right = parent;
        child->left = parent->left;
        sibling = child->left;
    }
    if (sibling != NULL)
        sibling->parent = child;

    parent->left = tmp.left;
    parent->right = tmp.right;
    parent->parent = child;
    if (parent->left != NULL)
        parent->left->parent = parent;
    if (parent->right != NULL)
        parent->right->parent = parent;

    if (child->parent == NULL)
        h->min = child;
    else if (child->parent->left == parent)
        child->parent->left = child;
    else
        child->parent->right = child;
}

/* Find the link that holds position n (1-based), and its parent. */
static struct weft__timer **position(struct weft__heap *h, size_t n, struct weft__timer **parent)
{
    struct weft__timer **link = &h->min;
    *parent = NULL;
    int bits = 0;
    for (size_t k = n; k > 1; k >>= 1)
        bits++;
    while (bits-- > 0) {
        *parent = *link;
        link = ((n >> bits) & 1) ? &(*link)->right : &(*link)->left;
    }
    return link;
}

static void sift_up(struct weft__heap *h, struct weft__timer *t)
{
    while (t->parent != NULL && less(t, t->parent))
        swap_with_child(h, t->parent, t);
}

static void sift_down(struct weft__heap *h, struct weft__timer *t)
{
    for (;;) {
        struct weft__timer *smallest = t;
        if (t->left != NULL && less(t->left, smallest))
            smallest = t->left;
        if (t->right != NULL && less(t->right, smallest))
            smallest = t->right;
        if (smallest == t)
            return;
        swap_with_child(h, t, smallest);
    }
}

void weft__heap_insert(struct weft__heap *h, struct weft__timer *t)
{
    struct weft__timer *parent;
    t->left = t->right = NULL;
    struct weft__timer **link = position(h, h->count + 1, &parent);
    *link = t;
    t->parent = parent;
    h->count++;
    t->armed = true;
    sift_up(h, t);
}

void weft__heap_remove(struct weft__heap *h, struct weft__timer *t)
{
    struct weft__timer *parent;
    if (!t->armed || h->count == 0)
        return;
    struct weft__timer **link = position(h, h->count, &parent);
    struct weft__timer *last = *link;
    *link = NULL;
    h->count--;
    t->armed = false;
    if (last == t) {
        if (h->count == 0)
            h->min = NULL;
        return;
    }
    /* Put `last` where `t` was. */
    last->left = t->left;
    last->right = t->right;
    last->parent = t->parent;
    if (last->left != NULL)
        last->left->parent = last;
    if (last->right != NULL)
        last->right->parent = last;
    if (t->parent == NULL)
        h->min = last;
    else if (t->parent->left == t)
        t->parent->left = last;
    else
        t->parent->right = last;
    sift_down(h, last);
    sift_up(h, last);
}

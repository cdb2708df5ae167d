/*
 * loops/foreign.c - weft_foreign_t, Seastar's foreign_ptr: a pointer whose
 * destructor runs on the loop that owns it, whichever thread lets it go.
 *
 * The wrapper is one small heap block (the allocator is thread-safe) with
 * the pointer, the destructor and the owner loop. Freeing it on the owner's
 * thread runs the destructor at once; from anywhere else it is one inbox
 * message (weft__post), which the owner runs like a threadsafe callback.
 */
#include <weft/runtime.h>

#include "core/alloc.h"
#include "core/ext.h"

struct weft_foreign {
    void *ptr;
    void (*dtor)(void *);
    struct weft__loop *owner;
};

int weft_foreign_new(weft_loop_t *owner, void *ptr, void (*dtor)(void *), weft_foreign_t **out)
{
    if (out != NULL)
        *out = NULL;
    struct weft__loop *l = weft__L_cur(owner);
    if (out == NULL || dtor == NULL || !weft__loop_valid(l))
        return UV_EINVAL;
    struct weft_foreign *f = weft__malloc(sizeof(*f));
    if (f == NULL)
        return UV_ENOMEM;
    f->ptr = ptr;
    f->dtor = dtor;
    f->owner = l;
    *out = f;
    return 0;
}

void *weft_foreign_get(const weft_foreign_t *f)
{
    return f != NULL ? f->ptr : NULL;
}

weft_loop_t *weft_foreign_owner(const weft_foreign_t *f)
{
    return f != NULL ? weft__pub(f->owner) : NULL;
}

static void destroy(struct weft_foreign *f)
{
    f->dtor(f->ptr);
    weft__free(f);
}

static void destroy_msg(void *ctx, uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d)
{
    (void)b;
    (void)c;
    (void)d;
    weft__loop_count_callback(ctx);
    destroy((struct weft_foreign *)a);
}

int weft_foreign_free(weft_foreign_t *f)
{
    if (f == NULL)
        return UV_EINVAL;
    if (weft__tls_loop == f->owner) { /* already home */
        destroy(f);
        return 0;
    }
    return weft__post(f->owner, destroy_msg, (uintptr_t)f, 0, 0, 0);
}

void *weft_foreign_take(weft_foreign_t *f)
{
    if (f == NULL)
        return NULL;
    void *p = f->ptr;
    weft__free(f);
    return p;
}

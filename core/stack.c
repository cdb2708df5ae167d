/*
 * core/stack.c - stack slabs, guard pages and the pool (see stack.h).
 */
#include "stack.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "alloc.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define PAGE          4096u
#define DEFAULT_STACK (64u * 1024u)
#define FIRST_SLAB    8u
#define MAX_SLAB      1024u

/* Guard strategy, decided once per process and shared by every loop thread
 * (hence atomics): 0 unknown, 1 madvise guard (no VMA split), 2 mprotect
 * within a budget of mappings. */
static int guard_kind;
static long mprotect_budget = -1;
static pthread_once_t budget_once = PTHREAD_ONCE_INIT;

size_t weft__stack_round(size_t size)
{
    if (size == 0)
        size = DEFAULT_STACK;
    return (size + PAGE - 1) & ~(size_t)(PAGE - 1);
}

static long read_max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

static void init_budget(void)
{
    __atomic_store_n(&mprotect_budget, read_max_map_count() / 2 - 4096, __ATOMIC_RELAXED);
}

/* Install a guard page at g. Returns true if the page is guarded. */
static bool install_guard(char *g)
{
    int kind = __atomic_load_n(&guard_kind, __ATOMIC_RELAXED);
    if (kind != 2) {
        if (madvise(g, PAGE, MADV_GUARD_INSTALL) == 0) {
            __atomic_store_n(&guard_kind, 1, __ATOMIC_RELAXED);
            return true;
        }
        if (kind == 1)
            return false; /* worked before: a real failure */
        __atomic_store_n(&guard_kind, 2, __ATOMIC_RELAXED);
    }
    pthread_once(&budget_once, init_budget);
    /* Each mprotect guard costs two mappings; take them from the budget. */
    if (__atomic_sub_fetch(&mprotect_budget, 2, __ATOMIC_RELAXED) < 0)
        return false;
    return mprotect(g, PAGE, PROT_NONE) == 0;
}

static int add_slab(struct weft__stack_pool *p, size_t count, size_t stride)
{
    size_t len = count * stride;
    void *map =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED)
        return UV_ENOMEM;
    /* One allocation for the slab record and its descriptors. */
    struct weft__stack_slab *slab =
        weft__calloc(1, sizeof(*slab) + count * sizeof(struct weft__stack));
    if (slab == NULL) {
        munmap(map, len);
        return UV_ENOMEM;
    }
    slab->map = map;
    slab->map_len = len;
    slab->count = count;
    slab->next = p->slabs;
    p->slabs = slab;
    struct weft__stack *d = (struct weft__stack *)(slab + 1);
    /* Push in reverse so the lowest stack is handed out first. */
    for (size_t i = count; i-- > 0;) {
        char *base = (char *)map + i * stride;
        if (!install_guard(base))
            p->unguarded++;
        d[i].lo = base + PAGE;
        d[i].size = stride - PAGE;
        d[i].pool = p;
        weft__list_push_front(&p->hot, &d[i].link);
        p->pooled++;
        p->hot_n++;
    }
    return 0;
}

int weft__stack_pool_init(struct weft__stack_pool *p, size_t size, bool compact, size_t shared_size)
{
    memset(p, 0, sizeof(*p));
    p->size = weft__stack_round(size);
    p->compact = compact;
    p->next_slab_count = FIRST_SLAB;
    weft__list_init(&p->hot);
    weft__list_init(&p->cold);
    if (!compact)
        return 0;
    size_t shared = weft__stack_round(shared_size ? shared_size : 256u * 1024u);
    if (add_slab(p, 1, shared + PAGE) != 0)
        return UV_ENOMEM;
    p->shared = WEFT_CONTAINER_OF(weft__list_pop_front(&p->hot), struct weft__stack, link);
    p->pooled = p->hot_n = 0;
    return 0;
}

/* TSan counts each fiber as a thread (at most 8,128): give them back. */
static void drop_fiber(struct weft__stack *s)
{
#if defined(__SANITIZE_THREAD__)
    if (s->tsan_fiber != NULL)
        __tsan_destroy_fiber(s->tsan_fiber);
#endif
    s->tsan_fiber = NULL;
}

void weft__stack_pool_destroy(struct weft__stack_pool *p)
{
    /* COMPACT descriptors are individually allocated; free the pooled ones. */
    if (p->compact) {
        struct weft__list *n;
        while ((n = weft__list_pop_front(&p->hot)) != NULL) {
            struct weft__stack *s = WEFT_CONTAINER_OF(n, struct weft__stack, link);
            drop_fiber(s);
            weft__free(s->image);
            weft__free(s);
        }
    }
    while (p->slabs != NULL) {
        struct weft__stack_slab *s = p->slabs;
        struct weft__stack *d = (struct weft__stack *)(s + 1);
        for (size_t i = 0; i < s->count; i++)
            drop_fiber(&d[i]);
        p->slabs = s->next;
        munmap(s->map, s->map_len);
        weft__free(s);
    }
    memset(p, 0, sizeof(*p));
}

struct weft__stack *weft__stack_get(struct weft__stack_pool *p)
{
    struct weft__list *n = weft__list_pop_front(&p->hot);
    if (n != NULL) {
        if (--p->hot_n < p->min_hot)
            p->min_hot = p->hot_n;
    } else if ((n = weft__list_pop_front(&p->cold)) == NULL) {
        if (p->compact) {
            struct weft__stack *s = weft__calloc(1, sizeof(*s));
            if (s == NULL)
                return NULL;
            s->lo = p->shared->lo;
            s->size = p->shared->size;
            s->pool = p;
            weft__list_init(&s->link);
            p->in_use++;
            UNPOISON(s->lo, s->size);
            return s;
        }
        if (add_slab(p, p->next_slab_count, p->size + PAGE) != 0)
            return NULL;
        if (p->next_slab_count < MAX_SLAB)
            p->next_slab_count *= 2;
        n = weft__list_pop_front(&p->hot);
        p->hot_n--;
    }
    struct weft__stack *s = WEFT_CONTAINER_OF(n, struct weft__stack, link);
    /* A finished task never unwinds its last frames, so their ASan redzones
     * are still poisoned; the next task starts from a clean stack. */
    UNPOISON(s->lo, s->size);
    s->sp = NULL;
    s->image_len = 0;
    p->pooled--;
    p->in_use++;
    return s;
}

void weft__stack_put(struct weft__stack_pool *p, struct weft__stack *s)
{
    if (p->compact && p->on_shared == s)
        p->on_shared = NULL;
    s->sp = NULL;
    s->image_len = 0;
    weft__list_push_front(&p->hot, &s->link);
    p->hot_n++;
    p->in_use--;
    p->pooled++;
}

size_t weft__stack_pool_trim(struct weft__stack_pool *p, size_t keep, size_t budget,
                             uint64_t now_ns, uint64_t window_ns)
{
    if (p->compact)
        return 0; /* descriptors only: nothing mapped per task */
    if (now_ns - p->window_start_ns >= window_ns) {
        /* min_hot stacks sat in the pool for the whole window. */
        p->trim_quota = p->min_hot > keep ? p->min_hot - keep : 0;
        p->min_hot = p->hot_n;
        p->window_start_ns = now_ns;
    }
    size_t done = 0;
    while (p->trim_quota > 0 && p->hot_n > keep && done < budget) {
        struct weft__list *n = p->hot.prev; /* least recently used */
        struct weft__stack *s = WEFT_CONTAINER_OF(n, struct weft__stack, link);
        weft__list_remove(n);
        p->hot_n--;
        p->trim_quota--;
        if (p->hot_n < p->min_hot)
            p->min_hot = p->hot_n;
        /* The guard page is below lo and keeps its marker. If the kernel
         * refuses, the stack just stays resident. */
        (void)madvise(s->lo, s->size, MADV_DONTNEED);
        weft__list_push_back(&p->cold, &s->link);
        done++;
    }
    p->trimmed += done;
    return done;
}

int weft__stack_activate(struct weft__stack_pool *p, struct weft__stack *s)
{
    if (p->on_shared == s)
        return 0;
    char *top = p->shared->lo + p->shared->size;
    struct weft__stack *old = p->on_shared;
    if (old != NULL && old->sp != NULL) {
        size_t len = (size_t)(top - (char *)old->sp);
        if (len > old->image_cap) {
            void *img = weft__realloc(old->image, len);
            if (img == NULL)
                return UV_ENOMEM;
            old->image = img;
            old->image_cap = len;
        }
        /* The shared stack holds ASan redzones of the frames being saved;
         * copy them as plain bytes. */
        UNPOISON(old->sp, len);
        memcpy(old->image, old->sp, len);
        old->image_len = len;
    }
    if (s->sp != NULL && s->image_len > 0) {
        UNPOISON(top - s->image_len, s->image_len);
        memcpy(top - s->image_len, s->image, s->image_len);
    }
    p->on_shared = s;
    return 0;
}

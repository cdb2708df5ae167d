/*
 * core/alloc.c - the allocation choke point (see alloc.h).
 *
 * jemalloc is the process allocator (linked with -ljemalloc), so plain
 * malloc/free here are jemalloc's. The counter is a relaxed atomic: it only
 * has to be exact once the threads that allocate have been joined.
 */
#include "alloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t alloc_calls;
static long fail_countdown = -1; /* < 0: never fail */

static bool should_fail(void)
{
    __atomic_fetch_add(&alloc_calls, 1, __ATOMIC_RELAXED);
    long n = __atomic_load_n(&fail_countdown, __ATOMIC_RELAXED);
    if (n < 0)
        return false;
    if (n == 0)
        return true;
    /* Racy between threads by design: fault injection is a test tool. */
    __atomic_store_n(&fail_countdown, n - 1, __ATOMIC_RELAXED);
    return false;
}

void *weft__malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *weft__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *weft__aligned_calloc(size_t align, size_t n, size_t size)
{
    if (should_fail() || (size != 0 && n > SIZE_MAX / size))
        return NULL;
    size_t total = n * size;
    total = (total + align - 1) / align * align; /* aligned_alloc wants a multiple */
    void *p = aligned_alloc(align, total != 0 ? total : align);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

void *weft__realloc(void *p, size_t size)
{
    return should_fail() ? NULL : realloc(p, size);
}

void weft__free(void *p)
{
    free(p);
}

char *weft__strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = weft__malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

uint64_t weft__alloc_calls(void)
{
    return __atomic_load_n(&alloc_calls, __ATOMIC_RELAXED);
}

void weft__alloc_fail_after(long n)
{
    __atomic_store_n(&fail_countdown, n, __ATOMIC_RELAXED);
}

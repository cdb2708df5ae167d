/*
 * core/alloc.h - the one allocation choke point (internal).
 *
 * Every allocation weft makes goes through these functions: jemalloc
 * underneath (linked as the process allocator), a call counter so tests can
 * prove hot paths do not allocate, and fault injection so tests can make the
 * N-th allocation fail. Thread-safe.
 */
#ifndef WEFT_CORE_ALLOC_H
#define WEFT_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *weft__malloc(size_t size);
void *weft__calloc(size_t n, size_t size);
void *weft__realloc(void *p, size_t size);
/* Zeroed n * size bytes aligned to `align` (a power of two); weft__free. */
void *weft__aligned_calloc(size_t align, size_t n, size_t size);
void weft__free(void *p);
char *weft__strdup(const char *s);

/* Number of weft__malloc/calloc/realloc/strdup calls so far (all threads). */
uint64_t weft__alloc_calls(void);
/* Fault injection: the next n allocations succeed, the one after fails
 * (returns NULL), and so on every later one until reset with n < 0. */
void weft__alloc_fail_after(long n);

#endif /* WEFT_CORE_ALLOC_H */

/*
 * apps/kv/dict.h - the hash table of weft-kv: a shard's keyspace, and the
 * members of sets, hashes and sorted sets (docs/kv.md, "Memory").
 *
 * Chained buckets with the chain pointer inside the entry (no node
 * allocation per key), one allocation per entry holding the key and, for
 * strings, the value; two tables during a resize, rehashed incrementally
 * (a bucket or so per operation, as Redis's dict does), so a growth past a
 * million keys never stops the loop for a full rehash.
 */
#ifndef WEFT_KV_DICT_H
#define WEFT_KV_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Value types (Redis's TYPE names in kv_type_name). */
enum {
    KV_STRING = 0,
    KV_LIST,
    KV_SET,
    KV_HASH,
    KV_ZSET,
    KV_ZMEMBER
};

/* An entry: 16 bytes of header, then [int64 expire-at ms if has_exp], the
 * key, then the value: a string's bytes, a hash field's value, or a
 * pointer to a list/set/hash/zset object. 30 bits of length are 1 GiB,
 * above the largest bulk weft-kv accepts (docs/kv.md). */
typedef struct kv_ent {
    struct kv_ent *next;
    uint64_t klen : 30, vlen : 30, type : 3, has_exp : 1;
    char data[];
} kv_ent;

#define KV_MAX_LEN ((1u << 30) - 1)

static inline char *kv_ent_key(kv_ent *e)
{
    return e->data + (e->has_exp ? 8 : 0);
}
static inline char *kv_ent_val(kv_ent *e)
{
    return kv_ent_key(e) + e->klen;
}
static inline int64_t kv_ent_exp(const kv_ent *e)
{
    int64_t t;
    if (!e->has_exp)
        return -1;
    memcpy(&t, e->data, 8);
    return t;
}
static inline void *kv_ent_ptr(kv_ent *e)
{
    void *p;
    memcpy(&p, kv_ent_val(e), sizeof(p));
    return p;
}

/* A new entry (not linked), value bytes uninitialised: NULL without memory. */
kv_ent *kv_ent_new(const void *key, size_t klen, size_t vlen, int type, bool has_exp);
size_t kv_ent_size(const kv_ent *e);

typedef struct kv_dict {
    kv_ent **t[2];
    uint64_t mask[2]; /* buckets - 1 of each table (t[1] only rehashing) */
    uint64_t count;
    int64_t rehash; /* next bucket of t[0] to move; -1 = not rehashing */
} kv_dict;

void kv_hash_seed(uint64_t seed);
uint64_t kv_hash(const void *p, size_t n);

void kv_dict_init(kv_dict *d);
/* Free the tables; each entry is handed to fn (may be NULL) first. */
void kv_dict_clear(kv_dict *d, void (*fn)(kv_ent *e, void *arg), void *arg);
/* The entry with this key (h = kv_hash(key)), and *link = the pointer that
 * points to it (for unlink/replace), or NULL. */
kv_ent *kv_dict_find(kv_dict *d, const void *key, size_t klen, uint64_t h, kv_ent ***link);
/* Prefetch the bucket of hash h (entry false) or the first entry of its
 * chain (entry true, after the bucket's prefetch had time to land). */
static inline void kv_dict_prefetch(const kv_dict *d, uint64_t h, bool entry)
{
    if (d->t[0] == NULL)
        return;
    int t = d->rehash >= 0 && (h & d->mask[0]) < (uint64_t)d->rehash ? 1 : 0;
    kv_ent *const *slot = &d->t[t][h & d->mask[t]];
    if (!entry)
        __builtin_prefetch(slot);
    else if (*slot != NULL)
        __builtin_prefetch(*slot);
}
/* Add e (its key is not in d). false without memory for a growth (e is
 * still added: the table just stays fuller). */
void kv_dict_add(kv_dict *d, kv_ent *e, uint64_t h);
/* Remove the entry *link points to (from kv_dict_find); it is returned. */
kv_ent *kv_dict_unlink(kv_dict *d, kv_ent **link);
/* Put ne where *link's entry is (same key), returning the old one. */
static inline void kv_dict_replace(kv_ent **link, kv_ent *ne)
{
    ne->next = (*link)->next;
    *link = ne;
}
/* A random entry (NULL if empty), with *link; *state is an xorshift
 * state (nonzero), advanced past every number used. */
kv_ent *kv_dict_random(kv_dict *d, uint64_t *state, kv_ent ***link);
/* Redis's SCAN over d: calls fn for each entry of the buckets at cursor,
 * returns the next cursor (0 = done). Every entry present for the whole
 * scan is seen at least once, across resizes. */
uint64_t kv_dict_scan(kv_dict *d, uint64_t cursor, void (*fn)(kv_ent *e, void *arg), void *arg);
/* Some rehash work (up to n buckets); true while there is more. */
bool kv_dict_rehash_step(kv_dict *d, int n);
/* Shrink if the table is far too big for its count (after deletions). */
void kv_dict_maybe_shrink(kv_dict *d);
/* Buckets of both tables (memory figures). */
uint64_t kv_dict_buckets(const kv_dict *d);

#endif /* WEFT_KV_DICT_H */

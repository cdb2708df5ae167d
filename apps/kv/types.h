/*
 * apps/kv/types.h - the value objects behind list, set, hash and sorted
 * set keys (the entry holds a pointer to one of these).
 */
#ifndef WEFT_KV_TYPES_H
#define WEFT_KV_TYPES_H

#include <stdint.h>

#include "dict.h"

/* A list element. */
typedef struct kv_blob {
    uint32_t len;
    char d[];
} kv_blob;

/* A list: a ring of element pointers (cap a power of two), so pushes and
 * pops at both ends are O(1) and LRANGE indexes directly. */
typedef struct kv_list {
    kv_blob **a;
    uint64_t head, len, cap;
} kv_list;

/* A sorted set: a skiplist ordered by (score, member) for ranges and pops,
 * and a dict member -> node for ZSCORE and updates (its entries are
 * KV_ZMEMBER: the member as the key, the node pointer as the value; the
 * node points back to its entry for the member's bytes). */
#define ZS_MAXLEVEL 32
typedef struct zs_node {
    double score;
    struct zs_node *back;
    kv_ent *m;
    uint32_t lvl;
    struct zs_node *fw[];
} zs_node;

typedef struct kv_zset {
    kv_dict d;
    zs_node *head, *tail;
    int level;
} kv_zset;

#endif /* WEFT_KV_TYPES_H */

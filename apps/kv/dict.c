/*
 * apps/kv/dict.c - chained hash table with incremental rehash (dict.h).
 *
 * Finds never move anything, so a link from kv_dict_find stays valid until
 * the next add/unlink/step on the same table. Rehash work is done by adds
 * and unlinks (one bucket each, as Redis) and by the shard's cron
 * (kv_dict_rehash_step), which finishes a resize that reads alone would
 * never finish.
 */
#include "dict.h"

#include "core/alloc.h"

static uint64_t g_seed = 0x9e3779b97f4a7c15ull;

void kv_hash_seed(uint64_t seed)
{
    g_seed = seed | 1;
}

/* wyhash's mixing step: the 128-bit product folded. */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t rd4(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define P0 0xa0761d6478bd642full
#define P1 0xe7037ed1a0b428dbull
#define P2 0x8ebc6af09c88c6e3ull

uint64_t kv_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t seed = g_seed ^ P0;
    uint64_t a, b;
    if (len <= 16) {
        if (len >= 4) {
            a = (rd4(p) << 32) | rd4(p + ((len >> 3) << 2));
            b = (rd4(p + len - 4) << 32) | rd4(p + len - 4 - ((len >> 3) << 2));
        } else if (len > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = len;
        while (i > 16) {
            seed = mum(rd8(p) ^ P1, rd8(p + 8) ^ seed);
            p += 16;
            i -= 16;
        }
        a = rd8(p + i - 16);
        b = rd8(p + i - 8);
    }
    return mum(P1 ^ len, mum(a ^ P1, b ^ seed ^ P2));
}

kv_ent *kv_ent_new(const void *key, size_t klen, size_t vlen, int type, bool has_exp)
{
    kv_ent *e = weft__malloc(sizeof(kv_ent) + (has_exp ? 8 : 0) + klen + vlen);
    if (e == NULL)
        return NULL;
    e->next = NULL;
    e->klen = klen;
    e->vlen = vlen;
    e->type = (unsigned)type;
    e->has_exp = has_exp;
    memcpy(kv_ent_key(e), key, klen);
    return e;
}

size_t kv_ent_size(const kv_ent *e)
{
    return sizeof(kv_ent) + (e->has_exp ? 8 : 0) + e->klen + e->vlen;
}

void kv_dict_init(kv_dict *d)
{
    memset(d, 0, sizeof(*d));
    d->rehash = -1;
}

void kv_dict_clear(kv_dict *d, void (*fn)(kv_ent *e, void *arg), void *arg)
{
    for (int t = 0; t < 2; t++) {
        if (d->t[t] == NULL)
            continue;
        for (uint64_t i = 0; i <= d->mask[t]; i++) {
            kv_ent *e = d->t[t][i];
            while (e != NULL) {
                kv_ent *next = e->next;
                if (fn != NULL)
                    fn(e, arg);
                else
                    weft__free(e);
                e = next;
            }
        }
        weft__free(d->t[t]);
    }
    kv_dict_init(d);
}

static inline bool key_eq(kv_ent *e, const void *key, size_t klen)
{
    return e->klen == klen && memcmp(kv_ent_key(e), key, klen) == 0;
}

kv_ent *kv_dict_find(kv_dict *d, const void *key, size_t klen, uint64_t h, kv_ent ***link)
{
    if (d->count == 0)
        return NULL;
    for (int t = 0; t < 2; t++) {
        if (d->t[t] == NULL)
            break;
        uint64_t i = h & d->mask[t];
        if (t == 0 && d->rehash >= 0 && i < (uint64_t)d->rehash)
            continue; /* moved to t[1] */
        kv_ent **l = &d->t[t][i];
        for (kv_ent *e = *l; e != NULL; l = &e->next, e = *l) {
            if (key_eq(e, key, klen)) {
                if (link != NULL)
                    *link = l;
                return e;
            }
        }
        if (d->rehash < 0)
            break;
    }
    return NULL;
}

bool kv_dict_rehash_step(kv_dict *d, int n)
{
    int empty = n * 10;
    while (d->rehash >= 0 && n > 0) {
        if ((uint64_t)d->rehash > d->mask[0]) {
            weft__free(d->t[0]);
            d->t[0] = d->t[1];
            d->mask[0] = d->mask[1];
            d->t[1] = NULL;
            d->mask[1] = 0;
            d->rehash = -1;
            return false;
        }
        kv_ent *e = d->t[0][d->rehash];
        if (e == NULL) {
            d->rehash++;
            if (--empty == 0)
                return true;
            continue;
        }
        while (e != NULL) {
            kv_ent *next = e->next;
            uint64_t i = kv_hash(kv_ent_key(e), e->klen) & d->mask[1];
            e->next = d->t[1][i];
            d->t[1][i] = e;
            e = next;
        }
        d->t[0][d->rehash++] = NULL;
        n--;
    }
    return d->rehash >= 0;
}

/* Start moving into a table of `buckets` (a power of two). */
static void resize(kv_dict *d, uint64_t buckets)
{
    kv_ent **t = weft__calloc(buckets, sizeof(*t));
    if (t == NULL)
        return; /* stays as it is: only slower */
    if (d->t[0] == NULL) {
        d->t[0] = t;
        d->mask[0] = buckets - 1;
        return;
    }
    d->t[1] = t;
    d->mask[1] = buckets - 1;
    d->rehash = 0;
}

void kv_dict_add(kv_dict *d, kv_ent *e, uint64_t h)
{
    if (d->rehash >= 0)
        kv_dict_rehash_step(d, 1);
    else if (d->t[0] == NULL)
        resize(d, 4);
    else if (d->count > d->mask[0])
        resize(d, (d->mask[0] + 1) * 2);
    if (d->t[0] == NULL)
        resize(d, 4);
    int t = d->rehash >= 0 ? 1 : 0;
    if (d->t[0] == NULL) {
        /* no memory for even the first table: nowhere to put it */
        weft__free(e);
        return;
    }
    uint64_t i = h & d->mask[t];
    e->next = d->t[t][i];
    d->t[t][i] = e;
    d->count++;
}

kv_ent *kv_dict_unlink(kv_dict *d, kv_ent **link)
{
    kv_ent *e = *link;
    *link = e->next;
    e->next = NULL;
    d->count--;
    if (d->rehash >= 0)
        kv_dict_rehash_step(d, 1);
    return e;
}

void kv_dict_maybe_shrink(kv_dict *d)
{
    if (d->rehash >= 0 || d->t[0] == NULL || d->mask[0] < 64)
        return;
    if (d->count * 8 >= d->mask[0] + 1)
        return;
    uint64_t n = 64;
    while (n < d->count)
        n *= 2;
    resize(d, n);
}

uint64_t kv_dict_buckets(const kv_dict *d)
{
    uint64_t n = 0;
    for (int t = 0; t < 2; t++)
        if (d->t[t] != NULL)
            n += d->mask[t] + 1;
    return n;
}

kv_ent *kv_dict_random(kv_dict *d, uint64_t *state, kv_ent ***link)
{
    uint64_t rnd = *state;
    if (d->count == 0)
        return NULL;
    kv_ent **l = NULL;
    for (;;) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        int t = 0;
        uint64_t i;
        if (d->rehash >= 0) {
            uint64_t s0 = d->mask[0] + 1 - (uint64_t)d->rehash;
            uint64_t s = s0 + d->mask[1] + 1;
            i = rnd % s;
            if (i < s0) {
                i += (uint64_t)d->rehash;
            } else {
                i -= s0;
                t = 1;
            }
        } else {
            i = rnd & d->mask[0];
        }
        l = &d->t[t][i];
        if (*l != NULL)
            break;
    }
    *state = rnd;
    uint64_t n = 0;
    for (kv_ent *e = *l; e != NULL; e = e->next)
        n++;
    for (uint64_t k = (rnd >> 32) % n; k > 0; k--)
        l = &(*l)->next;
    if (link != NULL)
        *link = l;
    return *l;
}

static uint64_t rev(uint64_t v)
{
    uint64_t s = 64, mask = ~0ull;
    while ((s >>= 1) > 0) {
        mask ^= mask << s;
        v = ((v >> s) & mask) | ((v << s) & ~mask);
    }
    return v;
}

static void emit(kv_ent *e, void (*fn)(kv_ent *, void *), void *arg)
{
    while (e != NULL) {
        kv_ent *next = e->next;
        fn(e, arg);
        e = next;
    }
}

uint64_t kv_dict_scan(kv_dict *d, uint64_t v, void (*fn)(kv_ent *e, void *arg), void *arg)
{
    if (d->count == 0 || d->t[0] == NULL)
        return 0;
    if (d->rehash < 0) {
        uint64_t m0 = d->mask[0];
        emit(d->t[0][v & m0], fn, arg);
        v |= ~m0;
        v = rev(v);
        v++;
        return rev(v);
    }
    int s = d->mask[0] <= d->mask[1] ? 0 : 1, l = 1 - s;
    uint64_t ms = d->mask[s], ml = d->mask[l];
    emit(d->t[s][v & ms], fn, arg);
    do {
        emit(d->t[l][v & ml], fn, arg);
        v |= ~ml;
        v = rev(v);
        v++;
        v = rev(v);
    } while (v & (ms ^ ml));
    return v;
}

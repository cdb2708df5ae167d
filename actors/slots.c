/*
 * actors/slots.c - the process-wide table that actor references name.
 *
 * A weft_aref_t is (slot index, generation). A slot's word packs the
 * generation (high 32 bits), a pin count (bits 1..31) and "alive" (bit 0).
 * The actor holds one pin of its own while it runs; a sender on another
 * thread pins the slot (a compare-and-swap that fails once the generation
 * moved on or the actor is dying) for the few instructions it touches the
 * actor, so the actor's memory cannot go while it is used. The last unpin
 * of a dead actor frees it and recycles the slot with the next generation:
 * every older reference then names nothing, forever (until 2^32 reuses of
 * that one slot), which is what lets an aref be a plain copyable value.
 *
 * A sender on the actor's own loop needs no pin: the actor dies only in
 * its own task, which cannot run while the sender runs. It reads the word,
 * the slot's loop, and the word again; the same generation, alive, in both
 * reads means the loop it read belongs to that incarnation (a slot is
 * recycled only after its generation moved on). No read-modify-write:
 * that is the same-loop fast path of docs/actors.md.
 *
 * Slots live in chunks of 4096 that are made as needed and kept for the
 * process (a reference names its slot forever); freed slots are reused
 * oldest first, so a reference to an actor that just died stays a dead
 * letter rather than naming a newcomer soon after.
 */
#include <pthread.h>
#include <stdint.h>
#include <weft/error.h>

#include "actor_int.h"
#include "core/alloc.h"

#define CHUNK_BITS 12
#define CHUNK      (1u << CHUNK_BITS)
#define MAX_CHUNKS 4096u /* 16M actors at once */

struct aslot {
    uint64_t word;            /* atomic: gen << 32 | pins << 1 | alive */
    struct weft_actor *actor; /* atomic (relaxed): stable for one generation */
    weft_loop_t *loop;        /* atomic (relaxed): likewise */
    uint32_t next_free;       /* under free_lock */
};

static struct aslot *chunks[MAX_CHUNKS]; /* atomic: written once each */
static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t free_head, free_tail; /* FIFO of free slot indexes; 0 = none */
static uint32_t next_new = 1;         /* slot 0 is WEFT_AREF_NONE */

static struct aslot *slot_of(uint32_t idx)
{
    struct aslot *c = __atomic_load_n(&chunks[idx >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    return c != NULL ? &c[idx & (CHUNK - 1)] : NULL;
}

static uint32_t take_index_locked(void)
{
    if (free_head != 0) {
        uint32_t i = free_head;
        free_head = slot_of(i)->next_free;
        if (free_head == 0)
            free_tail = 0;
        return i;
    }
    uint32_t i = next_new;
    if ((i >> CHUNK_BITS) >= MAX_CHUNKS)
        return 0;
    if (chunks[i >> CHUNK_BITS] == NULL) {
        struct aslot *c = weft__calloc(CHUNK, sizeof *c);
        if (c == NULL)
            return 0;
        __atomic_store_n(&chunks[i >> CHUNK_BITS], c, __ATOMIC_RELEASE);
    }
    next_new++;
    return i;
}

int weft__aslot_alloc(struct weft_actor *a, weft_loop_t *loop, weft_aref_t *out)
{
    pthread_mutex_lock(&free_lock);
    uint32_t i = take_index_locked();
    pthread_mutex_unlock(&free_lock);
    if (i == 0)
        return UV_ENOMEM;
    struct aslot *s = slot_of(i);
    uint32_t gen = (uint32_t)(__atomic_load_n(&s->word, __ATOMIC_RELAXED) >> 32);
    __atomic_store_n(&s->actor, a, __ATOMIC_RELAXED);
    __atomic_store_n(&s->loop, loop, __ATOMIC_RELAXED);
    __atomic_store_n(&s->word, ((uint64_t)gen << 32) | 2u | 1u, __ATOMIC_RELEASE);
    *out = (weft_aref_t){i, gen};
    return 0;
}

static struct aslot *slot_for(weft_aref_t r)
{
    if (r.weft__slot == 0 || (r.weft__slot >> CHUNK_BITS) >= MAX_CHUNKS)
        return NULL;
    return slot_of(r.weft__slot);
}

struct weft_actor *weft__aslot_pin(weft_aref_t r)
{
    struct aslot *s = slot_for(r);
    if (s == NULL)
        return NULL;
    uint64_t w = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((uint32_t)(w >> 32) != r.weft__gen || (w & 1u) == 0)
            return NULL;
        if (__atomic_compare_exchange_n(&s->word, &w, w + 2, true, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return __atomic_load_n(&s->actor, __ATOMIC_RELAXED);
    }
}

void weft__aslot_unpin(weft_aref_t r)
{
    struct aslot *s = slot_for(r);
    uint64_t w = __atomic_sub_fetch(&s->word, 2, __ATOMIC_ACQ_REL);
    if ((w & ~(((uint64_t)0xffffffffu) << 32)) != 0)
        return; /* pinned still, or alive */
    struct weft_actor *a = __atomic_load_n(&s->actor, __ATOMIC_RELAXED);
    __atomic_store_n(&s->actor, NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&s->loop, NULL, __ATOMIC_RELAXED);
    /* The next generation: every reference to this one is stale from here. */
    __atomic_store_n(&s->word, (uint64_t)(r.weft__gen + 1u) << 32, __ATOMIC_RELEASE);
    weft__actor_free(a);
    pthread_mutex_lock(&free_lock);
    s->next_free = 0;
    if (free_tail != 0)
        slot_of(free_tail)->next_free = r.weft__slot;
    else
        free_head = r.weft__slot;
    free_tail = r.weft__slot;
    pthread_mutex_unlock(&free_lock);
}

struct weft_actor *weft__aslot_local(weft_aref_t r, weft_loop_t *cur, bool *other)
{
    *other = false;
    struct aslot *s = slot_for(r);
    if (s == NULL)
        return NULL;
    uint64_t want = (uint64_t)r.weft__gen << 32;
    uint64_t w1 = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
    if ((w1 & ~(uint64_t)0xffffffffu) != want || (w1 & 1u) == 0)
        return NULL;
    weft_loop_t *l = __atomic_load_n(&s->loop, __ATOMIC_ACQUIRE);
    struct weft_actor *a = __atomic_load_n(&s->actor, __ATOMIC_ACQUIRE);
    uint64_t w2 = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
    if ((w2 & ~(uint64_t)0xffffffffu) != want || (w2 & 1u) == 0)
        return NULL;
    if (l != cur || cur == NULL) {
        *other = true;
        return NULL;
    }
    return a;
}

void weft__aslot_kill(weft_aref_t r)
{
    struct aslot *s = slot_for(r);
    __atomic_fetch_and(&s->word, ~(uint64_t)1u, __ATOMIC_ACQ_REL);
}

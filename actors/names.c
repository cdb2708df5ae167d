/*
 * actors/names.c - register/whereis/unregister: one name space per runtime
 * (rt NULL: loops outside runtimes), safe from any thread.
 *
 * One process-wide table under one mutex: names are looked up when a
 * service starts or reconnects, not per message, so a lock is the simple
 * right tool (a whereis is ~50 ns uncontended). Entries chain into their
 * bucket and into their actor's list, so the actor's death (actor.c's die)
 * drops all its names in one pass; `names_closed`, set then under the same
 * lock, keeps a register that pinned the actor before it died from adding
 * a name after that pass.
 */
#include <pthread.h>
#include <string.h>
#include <weft/actor.h>
#include <weft/error.h>

#include "actor_int.h"
#include "core/alloc.h"

#define NBUCKETS 1024u

struct name_ent {
    struct name_ent *next;    /* bucket chain */
    struct name_ent *a_next;  /* the actor's chain */
    struct weft_actor *actor; /* valid while the entry exists (death drops it first) */
    weft_runtime_t *rt;
    weft_aref_t ref;
    char name[];
};

static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static struct name_ent *buckets[NBUCKETS];

static unsigned bucket_of(const weft_runtime_t *rt, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)rt;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (unsigned)(h % NBUCKETS);
}

static struct name_ent **find(weft_runtime_t *rt, const char *name)
{
    struct name_ent **e = &buckets[bucket_of(rt, name)];
    for (; *e != NULL; e = &(*e)->next)
        if ((*e)->rt == rt && strcmp((*e)->name, name) == 0)
            return e;
    return e;
}

static bool bad_name(const char *name)
{
    return name == NULL || name[0] == '\0' || strlen(name) > 255;
}

int weft_actor_register(weft_runtime_t *rt, const char *name, weft_aref_t ref)
{
    if (bad_name(name) || ref.weft__slot == 0)
        return UV_EINVAL;
    size_t len = strlen(name);
    struct name_ent *n = weft__malloc(sizeof *n + len + 1);
    if (n == NULL)
        return UV_ENOMEM;
    memcpy(n->name, name, len + 1);
    n->rt = rt;
    n->ref = ref;
    struct weft_actor *a = weft__aslot_pin(ref);
    if (a == NULL) {
        weft__free(n);
        return UV_ESRCH;
    }
    int rc = 0;
    pthread_mutex_lock(&names_lock);
    struct name_ent **at = find(rt, name);
    if (*at != NULL) {
        rc = UV_EEXIST;
    } else if (a->names_closed) {
        rc = UV_ESRCH;
    } else {
        n->actor = a;
        n->next = NULL;
        *at = n;
        n->a_next = a->names;
        a->names = n;
    }
    pthread_mutex_unlock(&names_lock);
    weft__aslot_unpin(ref);
    if (rc != 0)
        weft__free(n);
    return rc;
}

int weft_actor_whereis(weft_runtime_t *rt, const char *name, weft_aref_t *out)
{
    if (out != NULL)
        *out = WEFT_AREF_NONE;
    if (bad_name(name) || out == NULL)
        return UV_EINVAL;
    pthread_mutex_lock(&names_lock);
    struct name_ent *e = *find(rt, name);
    if (e != NULL)
        *out = e->ref;
    pthread_mutex_unlock(&names_lock);
    return e != NULL ? 0 : UV_ENOENT;
}

/* Unlink e from its actor's chain (names_lock held). */
static void unchain(struct name_ent *e)
{
    struct name_ent **p = (struct name_ent **)&e->actor->names;
    while (*p != e)
        p = &(*p)->a_next;
    *p = e->a_next;
}

int weft_actor_unregister(weft_runtime_t *rt, const char *name)
{
    if (bad_name(name))
        return UV_EINVAL;
    pthread_mutex_lock(&names_lock);
    struct name_ent **at = find(rt, name);
    struct name_ent *e = *at;
    if (e != NULL) {
        *at = e->next;
        unchain(e);
    }
    pthread_mutex_unlock(&names_lock);
    weft__free(e);
    return e != NULL ? 0 : UV_ENOENT;
}

void weft__names_drop(struct weft_actor *a)
{
    pthread_mutex_lock(&names_lock);
    a->names_closed = true;
    struct name_ent *e = a->names;
    a->names = NULL;
    while (e != NULL) {
        struct name_ent *next = e->a_next;
        struct name_ent **at = find(e->rt, e->name);
        *at = e->next;
        weft__free(e);
        e = next;
    }
    pthread_mutex_unlock(&names_lock);
}

/*
 * core/side.c - side records: what a few tasks and futures carry and most
 * do not (task-local values, a copied task name, a result destructor).
 *
 * A task is exactly three cache lines with no spare byte, and the spawn
 * path writes all of them; these extras would cost every task a field for
 * the sake of a few. They live instead in a per-loop open-addressing table
 * (linear probing, backward-shift deletion) keyed by the object's address,
 * and one flag in what was the future's padding (f->side) says a record
 * exists, so an object without one never looks: the spawn path reads one
 * more flag (the spawner's, for inheritance) and the recycle paths one
 * each.
 *
 * Task-local keys are process-wide: a small registry of destructors and
 * copy functions indexed by key id, written once when a key is made.
 */
#include <string.h>
#include <weft/future.h>
#include <weft/task.h>

#include "alloc.h"
#include "task_int.h"

/* ---- the table --------------------------------------------------------- */

static size_t slot_of(const void *p, size_t mask)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & mask;
}

static struct weft__side *find(const struct weft__side_map *m, const void *key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (m->slots[i].key == key)
            return m->slots[i].rec;
        if (m->slots[i].key == NULL)
            return NULL;
    }
}

static void put_slot(struct weft__side_map *m, const void *key, struct weft__side *rec)
{
    size_t mask = m->cap - 1;
    size_t i = slot_of(key, mask);
    while (m->slots[i].key != NULL)
        i = (i + 1) & mask;
    m->slots[i].key = key;
    m->slots[i].rec = rec;
    m->n++;
}

static int insert(struct weft__side_map *m, const void *key, struct weft__side *rec)
{
    if ((m->n + 1) * 2 > m->cap) { /* at most half full */
        size_t ncap = m->cap ? m->cap * 2 : 16;
        struct weft__side_slot *ns = weft__calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return UV_ENOMEM;
        struct weft__side_slot *old = m->slots;
        size_t ocap = m->cap;
        m->slots = ns;
        m->cap = ncap;
        m->n = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].key != NULL)
                put_slot(m, old[i].key, old[i].rec);
        weft__free(old);
    }
    put_slot(m, key, rec);
    return 0;
}

static void erase(struct weft__side_map *m, const void *key)
{
    size_t mask = m->cap - 1;
    size_t i = slot_of(key, mask);
    while (m->slots[i].key != key) {
        WEFT_ASSERT(m->slots[i].key != NULL);
        i = (i + 1) & mask;
    }
    /* Backward shift: pull later entries of the run into the hole when
     * their home slot does not lie in (hole, j]. */
    for (size_t j = (i + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
        size_t home = slot_of(m->slots[j].key, mask);
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = NULL;
    m->slots[i].rec = NULL;
    m->n--;
}

/* f's record; with create, a new empty one if it has none (NULL: no
 * memory). */
static struct weft__side *side_of(struct weft_future *f, bool create)
{
    struct weft__loop *l = f->loop;
    if (f->side)
        return find(&l->side, f);
    if (!create)
        return NULL;
    struct weft__side *rec = weft__calloc(1, sizeof(*rec));
    if (rec == NULL)
        return NULL;
    if (insert(&l->side, f, rec) != 0) {
        weft__free(rec);
        return NULL;
    }
    f->side = true;
    return rec;
}

static void side_drop(struct weft_future *f, struct weft__side *rec)
{
    erase(&f->loop->side, f);
    weft__free(rec->vals);
    weft__free(rec);
    f->side = false;
}

/* A record that no longer holds anything goes. */
static void side_trim(struct weft_future *f, struct weft__side *rec)
{
    if (rec->name == NULL && rec->result_dtor == NULL && rec->vals == NULL)
        side_drop(f, rec);
}

static void run_local_dtors(struct weft__side *rec);

void weft__side_release(struct weft_future *f)
{
    struct weft__side *rec = find(&f->loop->side, f);
    WEFT_ASSERT(rec != NULL);
    if (rec->result_dtor != NULL && f->state == WEFT__F_DONE && !f->retrieved &&
        f->result != NULL) {
        void *r = f->result;
        f->result = NULL;
        rec->result_dtor(r);
    }
    if (f->is_task) {
        struct weft_task *t = (struct weft_task *)f;
        run_local_dtors(rec); /* finished tasks have none left; be safe */
        if (t->name == rec->name)
            t->name = NULL;
    }
    weft__free(rec->name);
    side_drop(f, rec);
}

void weft__side_drop_result(struct weft_future *f, void *result)
{
    if (result == NULL || !f->side)
        return;
    struct weft__side *rec = find(&f->loop->side, f);
    if (rec != NULL && rec->result_dtor != NULL)
        rec->result_dtor(result);
}

void weft__side_close(struct weft__loop *l)
{
    for (size_t i = 0; i < l->side.cap; i++) {
        struct weft__side *rec = l->side.slots[i].rec;
        if (rec == NULL)
            continue;
        weft__free(rec->name);
        weft__free(rec->vals);
        weft__free(rec);
    }
    weft__free(l->side.slots);
    memset(&l->side, 0, sizeof(l->side));
}

/* ---- result destructors -------------------------------------------------- */

int weft_future_set_result_dtor(weft_future_t *f, void (*dtor)(void *result))
{
    if (f == NULL)
        return UV_EINVAL;
    if (f->loop->running && weft__tls_loop != f->loop)
        return WEFT_EWRONGLOOP;
    struct weft__side *rec = side_of(f, dtor != NULL);
    if (rec == NULL)
        return dtor == NULL ? 0 : UV_ENOMEM;
    rec->result_dtor = dtor;
    if (dtor == NULL)
        side_trim(f, rec);
    return 0;
}

/* ---- task names ---------------------------------------------------------- */

int weft_task_set_name(weft_task_t *t, const char *name)
{
    if (t == NULL)
        return UV_EINVAL;
    struct weft_future *f = &t->fut;
    if (f->loop->running && weft__tls_loop != f->loop)
        return WEFT_EWRONGLOOP;
    if (name == NULL) {
        struct weft__side *rec = side_of(f, false);
        if (rec != NULL) {
            weft__free(rec->name);
            rec->name = NULL;
            side_trim(f, rec);
        }
        t->name = NULL;
        return 0;
    }
    char *copy = weft__strdup(name);
    if (copy == NULL)
        return UV_ENOMEM;
    struct weft__side *rec = side_of(f, true);
    if (rec == NULL) {
        weft__free(copy);
        return UV_ENOMEM;
    }
    weft__free(rec->name);
    rec->name = copy;
    t->name = copy;
    return 0;
}

/* ---- task-local storage --------------------------------------------------- */

/* Written once per key before its id is handed out; read by any thread that
 * got the id from the maker (which orders the writes before the reads). */
static struct {
    weft_task_local_dtor dtor;
    void *(*copy)(void *);
    bool no_inherit;
} g_keys[WEFT_TASK_KEYS_MAX];
static uint32_t g_nkeys; /* atomic */

int weft_task_key_new_ex(weft_task_local_dtor dtor, const weft_task_key_opts_t *opts,
                         weft_task_key_t *out)
{
    if (out == NULL)
        return UV_EINVAL;
    out->weft__id = 0;
    uint32_t n = __atomic_load_n(&g_nkeys, __ATOMIC_RELAXED);
    do {
        if (n >= WEFT_TASK_KEYS_MAX)
            return UV_ENOSPC;
    } while (!__atomic_compare_exchange_n(&g_nkeys, &n, n + 1, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    g_keys[n].dtor = dtor;
    g_keys[n].copy = opts != NULL ? opts->copy : NULL;
    g_keys[n].no_inherit = opts != NULL && opts->no_inherit;
    out->weft__id = n + 1;
    return 0;
}

int weft_task_key_new(weft_task_local_dtor dtor, weft_task_key_t *out)
{
    return weft_task_key_new_ex(dtor, NULL, out);
}

static bool key_ok(weft_task_key_t key)
{
    return key.weft__id >= 1 && key.weft__id <= __atomic_load_n(&g_nkeys, __ATOMIC_RELAXED);
}

/* Room for value index i in rec. 0 or UV_ENOMEM. */
static int vals_reserve(struct weft__side *rec, uint32_t i)
{
    if (i < rec->nvals)
        return 0;
    uint32_t n = rec->nvals ? rec->nvals : 4;
    while (n <= i)
        n *= 2;
    if (n > WEFT_TASK_KEYS_MAX)
        n = WEFT_TASK_KEYS_MAX;
    void **v = weft__realloc(rec->vals, n * sizeof(*v));
    if (v == NULL)
        return UV_ENOMEM;
    memset(v + rec->nvals, 0, (n - rec->nvals) * sizeof(*v));
    rec->vals = v;
    rec->nvals = n;
    return 0;
}

/* Each value is cleared before its destructor runs, so a destructor that
 * looks finds it gone. */
static void run_local_dtors(struct weft__side *rec)
{
    for (uint32_t i = 0; i < rec->nvals; i++) {
        void *v = rec->vals[i];
        if (v == NULL)
            continue;
        rec->vals[i] = NULL;
        if (g_keys[i].dtor != NULL)
            g_keys[i].dtor(v);
    }
    weft__free(rec->vals);
    rec->vals = NULL;
    rec->nvals = 0;
}

int weft_task_local_set(weft_task_key_t key, void *value)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL)
        return WEFT_ENOTASK;
    if (!key_ok(key))
        return UV_EINVAL;
    uint32_t i = key.weft__id - 1;
    struct weft__side *rec = side_of(&t->fut, value != NULL);
    if (rec == NULL)
        return value == NULL ? 0 : UV_ENOMEM;
    if (value != NULL && vals_reserve(rec, i) != 0) {
        side_trim(&t->fut, rec);
        return UV_ENOMEM;
    }
    if (i >= rec->nvals)
        return 0; /* clearing a value never set */
    void *old = rec->vals[i];
    rec->vals[i] = value;
    if (old != NULL && old != value && g_keys[i].dtor != NULL)
        g_keys[i].dtor(old);
    return 0;
}

void *weft_task_local_get(weft_task_key_t key)
{
    struct weft__loop *l;
    struct weft_task *t = weft__running(&l);
    if (t == NULL || !t->fut.side || !key_ok(key))
        return NULL;
    struct weft__side *rec = find(&l->side, &t->fut);
    uint32_t i = key.weft__id - 1;
    return rec != NULL && i < rec->nvals ? rec->vals[i] : NULL;
}

void weft__side_task_finished(struct weft_task *t)
{
    struct weft__side *rec = find(&t->fut.loop->side, &t->fut);
    if (rec == NULL || rec->vals == NULL)
        return;
    run_local_dtors(rec);
    side_trim(&t->fut, rec);
}

int weft__side_inherit(struct weft_task *parent, struct weft_task *child)
{
    struct weft__side *prec = find(&parent->fut.loop->side, &parent->fut);
    if (prec == NULL || prec->vals == NULL)
        return 0;      /* a name or a result destructor only: not inherited */
    uint32_t last = 0; /* 1 + the last index the child gets */
    for (uint32_t i = 0; i < prec->nvals; i++)
        if (prec->vals[i] != NULL && !g_keys[i].no_inherit)
            last = i + 1;
    if (last == 0)
        return 0;
    WEFT_ASSERT(!child->fut.side);
    struct weft__side *rec = side_of(&child->fut, true);
    if (rec == NULL || vals_reserve(rec, last - 1) != 0) {
        if (rec != NULL)
            side_drop(&child->fut, rec);
        return UV_ENOMEM;
    }
    for (uint32_t i = 0; i < last; i++) {
        void *v = prec->vals[i];
        if (v == NULL || g_keys[i].no_inherit)
            continue;
        rec->vals[i] = g_keys[i].copy != NULL ? g_keys[i].copy(v) : v;
    }
    return 0;
}

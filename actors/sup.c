/*
 * actors/sup.c - supervisors (weft/supervisor.h, docs/actors.md).
 *
 * A supervisor is an ordinary actor built on the public calls: it traps
 * exits, links to each child it starts, and reads the children's exits as
 * WEFT_MSG_EXIT messages. Its handler may suspend (a child's shutdown
 * waits for the child through weft_actor_join), and it handles one message
 * at a time, so a restart is never interleaved with another exit: exits
 * that come meanwhile wait in its system list. Before it shuts a child
 * down it unlinks it, so that child's exit signal finds no link and is
 * ignored; every exit signal from a linked child is therefore a child that
 * ended by itself, and one from anybody else is a request to terminate.
 */
#include <stdlib.h>
#include <string.h>
#include <weft/error.h>
#include <weft/supervisor.h>
#include <weft/task.h>

#include "core/alloc.h"

enum {
    Q_START_CHILD = 1,
    Q_WHICH,
    Q_RESTARTS
};

struct child {
    weft_aref_t ref; /* NONE: not running */
    size_t spec;
    void *arg; /* simple_one_for_one: the child's own */
};

struct sup {
    weft_sup_opts_t o;
    weft_child_spec_t *specs;
    size_t nspecs;
    struct child *kids;
    size_t nkids, capkids;
    uint64_t *stamps; /* the last `intensity` restart times, a ring */
    size_t nstamps, stamp_at;
    uint64_t restarts;
};

struct which_req {
    weft_aref_t *out;
    size_t max, n;
};

static uint64_t shutdown_of(const weft_child_spec_t *s)
{
    return s->shutdown_ms != 0 ? s->shutdown_ms : 5000;
}

/* Unlink, SHUTDOWN, wait its time, then kill. */
static void shutdown_child(weft_actor_t *self, struct sup *s, struct child *c)
{
    if (weft_aref_is_none(c->ref))
        return;
    weft_aref_t r = c->ref;
    c->ref = WEFT_AREF_NONE;
    (void)weft_actor_unlink(self, r);
    if (weft_actor_exit(r, WEFT_EXIT_SHUTDOWN, 0) != 0)
        return; /* dead already (or no memory: kill below) */
    if (weft_actor_join(r, shutdown_of(&s->specs[c->spec]), NULL) == UV_ETIMEDOUT) {
        (void)weft_actor_kill(r);
        if (weft_actor_join(r, WEFT_FOREVER, NULL) != 0) {
            /* cancelled (the runtime stops): the kill still ends it */
        }
    }
}

static int start_child(weft_actor_t *self, struct sup *s, struct child *c)
{
    const weft_child_spec_t *sp = &s->specs[c->spec];
    weft_aref_t r;
    int rc = sp->start(s->o.strategy == WEFT_SUP_SIMPLE_ONE_FOR_ONE ? c->arg : sp->arg, &r);
    if (rc != 0)
        return rc;
    if (weft_aref_is_none(r))
        return UV_EINVAL;
    c->ref = r;
    return weft_actor_link(self, r);
}

static void shutdown_from(weft_actor_t *self, struct sup *s, size_t first)
{
    for (size_t i = s->nkids; i-- > first;)
        shutdown_child(self, s, &s->kids[i]);
}

/* Another restart now: false when it is one too many for the period. */
static bool intensity_ok(struct sup *s)
{
    uint64_t now = weft_loop_now();
    s->restarts++;
    if (s->nstamps < s->o.intensity) {
        s->stamps[s->nstamps++] = now;
        return true;
    }
    /* The oldest of the last `intensity` restarts: still in the period? */
    uint64_t oldest = s->stamps[s->stamp_at];
    if (now - oldest < s->o.period_ms)
        return false;
    s->stamps[s->stamp_at] = now;
    s->stamp_at = (s->stamp_at + 1) % s->o.intensity;
    return true;
}

static bool wants_restart(const weft_child_spec_t *sp, const weft_exit_t *why)
{
    switch (sp->restart) {
    case WEFT_CHILD_PERMANENT:
        return true;
    case WEFT_CHILD_TRANSIENT:
        return why->kind != WEFT_EXIT_NORMAL && why->kind != WEFT_EXIT_SHUTDOWN;
    default:
        return false;
    }
}

static int terminate(weft_actor_t *self, struct sup *s, weft_exit_kind_t kind, int code)
{
    shutdown_from(self, s, 0);
    return weft_actor_stop_self(self, kind, code);
}

/* Start children [from, nkids) in order; a start that fails ends us. */
static int start_from(weft_actor_t *self, struct sup *s, size_t from)
{
    for (size_t i = from; i < s->nkids; i++) {
        int rc = start_child(self, s, &s->kids[i]);
        if (rc != 0) {
            shutdown_from(self, s, 0);
            return rc;
        }
    }
    return 0;
}

static void remove_kid(struct sup *s, size_t i)
{
    memmove(&s->kids[i], &s->kids[i + 1], (s->nkids - i - 1) * sizeof *s->kids);
    s->nkids--;
}

static int on_child_exit(weft_actor_t *self, struct sup *s, size_t i, const weft_exit_t *why)
{
    struct child *c = &s->kids[i];
    c->ref = WEFT_AREF_NONE;
    if (!wants_restart(&s->specs[c->spec], why)) {
        if (s->o.strategy == WEFT_SUP_SIMPLE_ONE_FOR_ONE)
            remove_kid(s, i);
        return 0;
    }
    if (!intensity_ok(s))
        return terminate(self, s, WEFT_EXIT_SHUTDOWN, 0);
    switch (s->o.strategy) {
    case WEFT_SUP_ONE_FOR_ALL:
        shutdown_from(self, s, 0);
        return start_from(self, s, 0);
    case WEFT_SUP_REST_FOR_ONE:
        shutdown_from(self, s, i + 1);
        return start_from(self, s, i);
    default: {
        int rc = start_child(self, s, c);
        if (rc != 0)
            shutdown_from(self, s, 0);
        return rc;
    }
    }
}

static int grow_kids(struct sup *s)
{
    if (s->nkids < s->capkids)
        return 0;
    size_t ncap = s->capkids ? s->capkids * 2 : 8;
    struct child *nk = weft__realloc(s->kids, ncap * sizeof *nk);
    if (nk == NULL)
        return UV_ENOMEM;
    s->kids = nk;
    s->capkids = ncap;
    return 0;
}

static int on_query(weft_actor_t *self, struct sup *s, const weft_msg_t *m)
{
    if (m->tag == Q_RESTARTS)
        return weft_actor_reply(self, (void *)(uintptr_t)s->restarts);
    if (m->tag == Q_WHICH) {
        struct which_req *q = m->data;
        q->n = s->nkids;
        for (size_t i = 0; i < s->nkids && i < q->max; i++)
            q->out[i] = s->kids[i].ref;
        return weft_actor_reply(self, NULL);
    }
    if (m->tag != Q_START_CHILD || s->o.strategy != WEFT_SUP_SIMPLE_ONE_FOR_ONE)
        return weft_actor_reply_error(self, UV_EINVAL, "not a simple_one_for_one query");
    int rc = grow_kids(s);
    if (rc != 0)
        return weft_actor_reply_error(self, rc, NULL);
    struct child *c = &s->kids[s->nkids];
    *c = (struct child){WEFT_AREF_NONE, 0, m->data};
    rc = start_child(self, s, c);
    if (rc != 0) {
        if (!weft_aref_is_none(c->ref))
            (void)weft_actor_kill(c->ref);
        return weft_actor_reply_error(self, rc, "the child's start failed");
    }
    s->nkids++;
    return weft_actor_reply(self, (void *)(uintptr_t)weft_aref_id(c->ref));
}

static int sup_fn(weft_actor_t *self, void *state, const weft_msg_t *m)
{
    struct sup *s = state;
    if (m->kind == WEFT_MSG_USER)
        return on_query(self, s, m);
    if (m->kind != WEFT_MSG_EXIT)
        return 0;
    for (size_t i = 0; i < s->nkids; i++)
        if (!weft_aref_is_none(s->kids[i].ref) && weft_aref_eq(s->kids[i].ref, m->from))
            return on_child_exit(self, s, i, m->exit);
    /* From outside the children: the parent, or a request to end. */
    if (m->exit->kind == WEFT_EXIT_NORMAL)
        return 0;
    return terminate(self, s, m->exit->kind == WEFT_EXIT_ERROR ? WEFT_EXIT_ERROR : m->exit->kind,
                     m->exit->code);
}

static int sup_start(weft_actor_t *self, void *state)
{
    struct sup *s = state;
    return s->o.strategy == WEFT_SUP_SIMPLE_ONE_FOR_ONE ? 0 : start_from(self, s, 0);
}

static void sup_free(struct sup *s)
{
    weft__free(s->specs);
    weft__free(s->kids);
    weft__free(s->stamps);
    weft__free(s);
}

static void sup_stop(void *state, const weft_exit_t *why)
{
    struct sup *s = state;
    (void)why;
    /* Ended without an ordered shutdown (stop, kill, a crash): tell the
     * children that are left; they end on their own time. */
    for (size_t i = 0; i < s->nkids; i++)
        if (!weft_aref_is_none(s->kids[i].ref))
            (void)weft_actor_exit(s->kids[i].ref, WEFT_EXIT_SHUTDOWN, 0);
    sup_free(s);
}

int weft_sup_start(weft_loop_t *loop, const weft_sup_opts_t *opts, const weft_child_spec_t *specs,
                   size_t n, weft_aref_t *out)
{
    if (out != NULL)
        *out = WEFT_AREF_NONE;
    weft_sup_opts_t o = opts != NULL ? *opts : (weft_sup_opts_t){0};
    if (out == NULL || (n > 0 && specs == NULL) || (unsigned)o.strategy > 3 ||
        (o.strategy == WEFT_SUP_SIMPLE_ONE_FOR_ONE && n != 1))
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (specs[i].start == NULL || (unsigned)specs[i].restart > WEFT_CHILD_TEMPORARY)
            return UV_EINVAL;
    if (o.intensity == 0)
        o.intensity = 1;
    if (o.period_ms == 0)
        o.period_ms = 5000;
    struct sup *s = weft__calloc(1, sizeof *s);
    if (s == NULL)
        return UV_ENOMEM;
    s->o = o;
    s->nspecs = n;
    s->specs = weft__calloc(n ? n : 1, sizeof *s->specs);
    s->stamps = weft__calloc(o.intensity, sizeof *s->stamps);
    s->nkids = o.strategy == WEFT_SUP_SIMPLE_ONE_FOR_ONE ? 0 : n;
    s->capkids = n ? n : 1;
    s->kids = weft__calloc(s->capkids, sizeof *s->kids);
    if (s->specs == NULL || s->stamps == NULL || s->kids == NULL) {
        sup_free(s);
        return UV_ENOMEM;
    }
    if (n > 0)
        memcpy(s->specs, specs, n * sizeof *specs);
    for (size_t i = 0; i < s->nkids; i++)
        s->kids[i] = (struct child){WEFT_AREF_NONE, i, NULL};
    weft_actor_opts_t ao = {
        .trap_exit = true, .on_start = sup_start, .on_stop = sup_stop, .name = "supervisor"};
    int rc = weft_actor_spawn(loop, sup_fn, s, &ao, out);
    if (rc != 0)
        sup_free(s);
    return rc;
}

int weft_sup_start_child(weft_aref_t sup, void *arg, weft_aref_t *child)
{
    if (child != NULL)
        *child = WEFT_AREF_NONE;
    void *r = NULL;
    int rc = weft_actor_ask(sup, Q_START_CHILD, arg, WEFT_FOREVER, &r);
    if (rc == 0 && child != NULL) {
        uint64_t id = (uintptr_t)r;
        *child = (weft_aref_t){(uint32_t)id, (uint32_t)(id >> 32)};
    }
    return rc;
}

int weft_sup_which_children(weft_aref_t sup, weft_aref_t *out, size_t max, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (n == NULL || (max > 0 && out == NULL))
        return UV_EINVAL;
    /* On the heap: the asker's stack may not be in place while it waits
     * (compact stacks), and the supervisor may run on another loop. */
    struct which_req *q = weft__calloc(1, sizeof *q);
    weft_aref_t *buf = weft__calloc(max ? max : 1, sizeof *buf);
    int rc = UV_ENOMEM;
    if (q != NULL && buf != NULL) {
        q->out = buf;
        q->max = max;
        rc = weft_actor_ask(sup, Q_WHICH, q, WEFT_FOREVER, NULL);
        if (rc == 0) {
            *n = q->n;
            memcpy(out, buf, (q->n < max ? q->n : max) * sizeof *buf);
        }
    }
    weft__free(q);
    weft__free(buf);
    return rc;
}

int weft_sup_restarts(weft_aref_t sup, uint64_t *out)
{
    void *r = NULL;
    int rc = weft_actor_ask(sup, Q_RESTARTS, NULL, WEFT_FOREVER, &r);
    if (out != NULL)
        *out = rc == 0 ? (uintptr_t)r : 0;
    return rc;
}

/*
 * apps/kv/aof.h - the append-only file of one shard (docs/kv.md,
 * "Persistence").
 *
 * Each shard logs its write commands, as RESP multibulk, to
 * <dir>/weft-kv-<shard>.aof. The loop only appends to a memory buffer;
 * a writer thread per shard writes it and fsyncs (always: before the
 * batch's replies leave; everysec: once a second; no: never), so a loop
 * never blocks in write(2) or fsync(2) and concurrent batches share one
 * fsync (group commit). On start the file is replayed; a torn last record
 * is cut off, and the file is rewritten from the keyspace when it has
 * grown past twice its size after the last rewrite (and
 * --auto-aof-rewrite-min-size, 64 MiB by default).
 */
#ifndef WEFT_KV_AOF_H
#define WEFT_KV_AOF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

enum {
    AOF_FSYNC_NO = 0,
    AOF_FSYNC_EVERYSEC,
    AOF_FSYNC_ALWAYS
};

typedef struct kv_aof kv_aof;

/* Open (creating) and replay shard db's file into db; db->aof is set.
 * 0 or a negative errno-style code (message on stderr). */
int aof_open(kv_db *db, const char *dir, int fsync_mode, uint64_t max_bulk, uint64_t rewrite_min);
/* Log a command that succeeded (kv_exec calls it). */
void aof_log(kv_ctx *c, const kv_cmd *cmd, int argc, kv_slice *argv);
/* SPOP/ZPOPMIN log what they removed as SREM/ZREM (their own choice is
 * random or not replayable as such). */
void aof_note_pop(kv_ctx *c, const kv_slice *key, const char *m, size_t ml);
void aof_note_zpop(kv_ctx *c, const kv_slice *key, const char *m, size_t ml);
/* End of a batch: hand what was logged to the writer. With always, done
 * is called (on the writer thread) once it is on disk, else at once with
 * false returned ("nothing to wait for"). True: wait for done(arg). */
bool aof_commit(kv_aof *a, void (*done)(void *arg), void *arg);
/* Rewrite from the keyspace if the file grew past its threshold (cron). */
void aof_maybe_rewrite(kv_db *db);
/* Flush everything, fsync, stop the writer, close. */
void aof_close(kv_db *db);
/* INFO persistence figures. */
uint64_t aof_size(const kv_aof *a);
uint64_t aof_rewrites(const kv_aof *a);

#endif /* WEFT_KV_AOF_H */

/*
 * examples/pipeline - word counting as a three-stage message-passing
 * pipeline over every loop of a runtime.
 *
 *   stage 1 (loop 0)        stage 2 (one task per loop)       stage 3 (last loop)
 *   reader  --chunks-->  tokenizer, tokenizer, ...  --records-->  merger
 *          MPMC, cap 16                             MPSC, batches
 *
 * - The reader reads the file in ~64 KiB chunks and cuts each at its last
 *   whitespace (or, in a chunk without any, its last non-letter; a word
 *   longer than a chunk makes the chunk grow), carrying the tail into the
 *   next chunk, so that no word straddles two chunks; it sends the chunks
 *   into an MPMC channel that every tokenizer receives from (whoever is free
 *   takes the next chunk: the load spreads by itself) and closes it at the
 *   end of the file.
 * - Each tokenizer counts the words of its chunks (runs of ASCII letters,
 *   lowercased; every other byte separates) in a table of its own: no
 *   sharing, no locks. When the chunk channel reports UV_EOF it sends its
 *   (word, count) records to the merger in batches (weft_chan_send_batch).
 * - The merger adds the records up. The main task closes the record channel
 *   once every tokenizer's future is done, so the merger's UV_EOF means "all
 *   counted"; it then prints the top N words, `<count> <word>`, by count
 *   descending and then word ascending (byte order, as LC_ALL=C sort).
 *
 * Per-stage throughput goes to stderr. Run:
 *   bazel run -c opt //examples/pipeline -- FILE [TOP_N [LOOPS]]
 * TOP_N defaults to 10, LOOPS to one per allowed CPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft/weft.h>

#define CHUNK_SIZE     (64 * 1024)
#define CHUNK_CHAN_CAP 16   /* chunks in flight: 1 MiB */
#define REC_CHAN_CAP   1024 /* records in flight */
#define REC_BATCH      256  /* records per send_batch / recv_batch */

/* ---- messages ------------------------------------------------------------- */

/* A chunk travels by value: an inline 16-byte channel element rather than a
 * channel of pointers. The text already is one allocation (buf), so a pointer
 * channel (elem_size > 56) would need a second object per chunk to point at
 * just to carry {buf, len}; inline, the two words are copied into the slot and
 * the receiver owns buf. The channel's destructor frees the buffers of chunks
 * still buffered when it is freed (an early exit). */
typedef struct chunk {
    char *buf;
    size_t len;
} chunk_t;

static void chunk_dtor(void *val)
{
    free(((chunk_t *)val)->buf);
}

/* A (word, count) record, 32 bytes inline. The word points into the sending
 * tokenizer's arena, which stays alive (it is freed by main() after the
 * runtime has stopped), so records own nothing and need no destructor; the
 * hash travels along so that the merger does not hash every word again.
 * It is also the hash table's entry: a tokenizer sends its table's slots. */
typedef struct rec {
    const char *word; /* NULL: an empty slot */
    size_t len;
    uint64_t hash;
    uint64_t count;
} rec_t;

/* ---- an open addressing table of words ----------------------------------- */

/* Words are copied into blocks that never move, so a word's pointer stays
 * valid while the table grows (and after, in the merger's table). */
typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block_t;

typedef struct table {
    rec_t *slots;
    size_t cap; /* a power of two */
    size_t n;
    bool copy;       /* copy words into blocks (tokenizers) or keep pointers (merger) */
    block_t *blocks; /* newest first */
} table_t;

#define BLOCK_SIZE (64 * 1024)

static int table_init(table_t *t, size_t cap, bool copy)
{
    memset(t, 0, sizeof(*t));
    t->slots = calloc(cap, sizeof(*t->slots));
    if (t->slots == NULL)
        return UV_ENOMEM;
    t->cap = cap;
    t->copy = copy;
    return 0;
}

static void table_free(table_t *t)
{
    free(t->slots);
    t->slots = NULL;
    for (block_t *b = t->blocks, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    t->blocks = NULL;
}

static const char *intern(table_t *t, const char *w, size_t len)
{
    block_t *b = t->blocks;
    if (b == NULL || b->cap - b->used < len) {
        size_t cap = len > BLOCK_SIZE ? len : BLOCK_SIZE;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = t->blocks;
        t->blocks = b;
    }
    char *p = b->data + b->used;
    memcpy(p, w, len);
    b->used += len;
    return p;
}

static int table_grow(table_t *t)
{
    size_t cap = t->cap * 2;
    rec_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].word == NULL)
            continue;
        size_t j = t->slots[i].hash & (cap - 1);
        while (slots[j].word != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* Add count to word w (linear probing; the table stays at most 3/4 full). */
static int table_add(table_t *t, const char *w, size_t len, uint64_t hash, uint64_t count)
{
    size_t mask = t->cap - 1;
    size_t i = hash & mask;
    for (;;) {
        rec_t *e = &t->slots[i];
        if (e->word == NULL)
            break;
        if (e->hash == hash && e->len == len && memcmp(e->word, w, len) == 0) {
            e->count += count;
            return 0;
        }
        i = (i + 1) & mask;
    }
    if (t->copy && (w = intern(t, w, len)) == NULL)
        return UV_ENOMEM;
    t->slots[i] = (rec_t){.word = w, .len = len, .hash = hash, .count = count};
    if (++t->n * 4 > t->cap * 3)
        return table_grow(t);
    return 0;
}

/* Move the used slots to the front (the table is no use as a table after). */
static size_t table_compact(table_t *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].word != NULL)
            t->slots[n++] = t->slots[i];
    return n;
}

/* ---- the pipeline's state -------------------------------------------------- */

typedef struct tokenizer {
    table_t table; /* its words live in table.blocks until main() frees them */
    int loop;
    uint64_t bytes, words, chunks;
    uint64_t t_first, t_counted, t_end; /* uv_hrtime(): first chunk, UV_EOF, records sent */
    uint64_t busy_ns;                   /* counting */
} tokenizer_t;

static const char *g_path;
static size_t g_top_n = 10;
static unsigned g_loops;
static weft_chan_t *g_chunks;  /* reader -> tokenizers */
static weft_chan_t *g_recs;    /* tokenizers -> merger */
static tokenizer_t *g_toks;    /* one per loop */
static weft_chan_t *g_started; /* every tokenizer and the merger: "running" */

static struct {
    uint64_t bytes, chunks;
    uint64_t t_start, t_end, read_ns, wait_ns;
} g_read;

static struct {
    uint64_t records, bytes, distinct;
    uint64_t t_first, t_eof, t_end;
    int loop;
} g_merge;

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void say_started(void)
{
    int one = 1;
    /* Room for all (capacity > loops + 1): never waits. A failure only
     * makes the main task's wait time out. */
    (void)weft_chan_send_try(g_started, &one);
}

/* ---- stage 1: the reader ---------------------------------------------------- */

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* ASCII letters only: bytes of 128 and above (UTF-8) separate, as every other
 * byte does. (c | 0x20) folds 'A'..'Z' onto 'a'..'z' and moves nothing else
 * into that range. */
static bool is_letter(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26u;
}

/* Where to cut buf[0, len): after the last whitespace; where a chunk has none
 * (a run of punctuation), after the last separator of any kind. 0: none at
 * all (one word fills the chunk). */
static size_t cut_point(const char *buf, size_t len)
{
    for (size_t i = len; i > 0; i--)
        if (is_space((unsigned char)buf[i - 1]))
            return i;
    for (size_t i = len; i > 0; i--)
        if (!is_letter((unsigned char)buf[i - 1]))
            return i;
    return 0;
}

/* Plain blocking read(2) on the loop's thread: weft's io/ (asynchronous
 * files and streams) does not exist yet. A regular file's read does not
 * wait for long (the page cache, or a disk read), and while this loop reads,
 * the other loops keep tokenizing what is already in the channel. */
static int read_full(int fd, char *buf, size_t want, size_t *got)
{
    size_t n = 0;
    while (n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return uv_translate_sys_error(errno);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *got = n;
    return 0;
}

static int send_chunk(char *buf, size_t len)
{
    chunk_t c = {buf, len};
    uint64_t t0 = uv_hrtime();
    int rc = weft_chan_send(g_chunks, &c); /* waits while the channel is full */
    g_read.wait_ns += uv_hrtime() - t0;
    if (rc != 0) {
        free(buf); /* not enqueued: still ours */
        if (rc != WEFT_ECLOSED && rc != UV_ECANCELED)
            fprintf(stderr, "pipeline: send a chunk: %s\n", weft_strerror(rc));
        return rc;
    }
    g_read.bytes += len;
    g_read.chunks++;
    return 0;
}

static int reader_loop(int fd)
{
    char *buf = NULL;
    size_t cap = 0, len = 0; /* buf[0, len) is the carried tail, then new text */
    for (;;) {
        if (buf == NULL) {
            cap = CHUNK_SIZE;
            if ((buf = malloc(cap)) == NULL)
                return UV_ENOMEM;
        }
        size_t got = 0;
        uint64_t t0 = uv_hrtime();
        int rc = read_full(fd, buf + len, cap - len, &got);
        g_read.read_ns += uv_hrtime() - t0;
        if (rc != 0) {
            fprintf(stderr, "pipeline: read %s: %s\n", g_path, weft_strerror(rc));
            free(buf);
            return rc;
        }
        len += got;
        if (len < cap) { /* end of file: the rest is the last chunk */
            if (len == 0) {
                free(buf);
                return 0;
            }
            return send_chunk(buf, len);
        }
        size_t cut = cut_point(buf, len);
        if (cut == 0) { /* a word longer than the chunk: read on */
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                return UV_ENOMEM;
            }
            buf = bigger;
            cap *= 2;
            continue;
        }
        size_t tail = len - cut, next_cap = tail > CHUNK_SIZE / 2 ? tail * 2 : CHUNK_SIZE;
        char *next = malloc(next_cap);
        if (next == NULL) {
            free(buf);
            return UV_ENOMEM;
        }
        memcpy(next, buf + cut, tail);
        if ((rc = send_chunk(buf, cut)) != 0) {
            free(next);
            return rc;
        }
        buf = next;
        cap = next_cap;
        len = tail;
    }
}

static int reader_task(void *arg, void **result)
{
    (void)arg, (void)result;
    g_read.t_start = uv_hrtime();
    int rc = 0, fd = open(g_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = uv_translate_sys_error(errno);
        fprintf(stderr, "pipeline: open %s: %s\n", g_path, weft_strerror(rc));
    } else {
        rc = reader_loop(fd);
        if (close(fd) != 0 && rc == 0) {
            rc = uv_translate_sys_error(errno);
            fprintf(stderr, "pipeline: close %s: %s\n", g_path, weft_strerror(rc));
        }
    }
    g_read.t_end = uv_hrtime();
    /* The end of the file, or of the reader: the tokenizers drain what is
     * buffered and then see UV_EOF. (The main task closes it too when a
     * tokenizer fails, to stop this reader: a second close is ECLOSED.) */
    int crc = weft_chan_close(g_chunks);
    if (crc != 0 && crc != WEFT_ECLOSED && rc == 0)
        rc = crc;
    return rc;
}

/* ---- stage 2: the tokenizers ------------------------------------------------ */

static uint64_t mix(uint64_t h) /* murmur3's finaliser: the table uses the low bits */
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Count the words of one chunk, lowercasing them in place (the chunk is
 * ours) and hashing them (FNV-1a) on the way. */
static int count_words(tokenizer_t *tk, char *buf, size_t len)
{
    unsigned char *p = (unsigned char *)buf, *end = p + len;
    for (;;) {
        while (p < end && !is_letter(*p))
            p++;
        if (p == end)
            return 0;
        unsigned char *w = p;
        uint64_t h = 0xcbf29ce484222325ull;
        do {
            unsigned char c = *p | 0x20;
            *p++ = c;
            h = (h ^ c) * 0x100000001b3ull;
        } while (p < end && is_letter(*p));
        int rc = table_add(&tk->table, (const char *)w, (size_t)(p - w), mix(h), 1);
        if (rc != 0)
            return rc;
        tk->words++;
    }
}

static int send_records(tokenizer_t *tk)
{
    size_t n = table_compact(&tk->table);
    for (size_t i = 0; i < n; i += REC_BATCH) {
        size_t k = n - i < REC_BATCH ? n - i : REC_BATCH;
        int rc = weft_chan_send_batch(g_recs, &tk->table.slots[i], k, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int tokenize_task(void *arg, void **result)
{
    (void)result;
    tokenizer_t *tk = arg;
    tk->loop = weft_loop_index();
    say_started();
    int rc = table_init(&tk->table, 4096, true);
    while (rc == 0) {
        chunk_t c;
        if ((rc = weft_chan_recv(g_chunks, &c)) != 0)
            break;
        uint64_t t0 = uv_hrtime();
        if (tk->chunks++ == 0)
            tk->t_first = t0;
        rc = count_words(tk, c.buf, c.len);
        tk->bytes += c.len;
        free(c.buf);
        tk->busy_ns += uv_hrtime() - t0;
        /* Let the other tasks of this loop run between chunks - on loop 0 the
         * reader, which refills the channel: without this, the tokenizer
         * there would drain the channel before the reader ran again, and
         * the other loops would go hungry meanwhile. */
        if (rc == 0)
            rc = weft_yield();
    }
    if (rc != UV_EOF) {
        if (rc != UV_ECANCELED)
            fprintf(stderr, "pipeline: tokenizer on loop %d: %s\n", tk->loop, weft_strerror(rc));
        return rc;
    }
    tk->t_counted = uv_hrtime();
    if ((rc = send_records(tk)) != 0) {
        if (rc != UV_ECANCELED)
            fprintf(stderr, "pipeline: tokenizer on loop %d: send records: %s\n", tk->loop,
                    weft_strerror(rc));
        return rc;
    }
    tk->t_end = uv_hrtime();
    return 0;
}

/* ---- stage 3: the merger ------------------------------------------------------ */

static int by_count_then_word(const void *a, const void *b)
{
    const rec_t *x = *(const rec_t *const *)a, *y = *(const rec_t *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    int c = memcmp(x->word, y->word, x->len < y->len ? x->len : y->len);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* The k first of the n entries in the output order: a heap of the best k
 * so far with the worst of them on top (n log k, not a sort of all n). */
static void sift_down(rec_t **h, size_t k, size_t i)
{
    for (;;) {
        size_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < k && by_count_then_word(&h[l], &h[w]) > 0)
            w = l;
        if (r < k && by_count_then_word(&h[r], &h[w]) > 0)
            w = r;
        if (w == i)
            return;
        rec_t *tmp = h[i];
        h[i] = h[w];
        h[w] = tmp;
        i = w;
    }
}

static size_t select_top(rec_t *e, size_t n, rec_t **h, size_t k)
{
    if (k > n)
        k = n;
    for (size_t i = 0; i < k; i++)
        h[i] = &e[i];
    for (size_t i = k / 2; i-- > 0;)
        sift_down(h, k, i);
    for (size_t i = k; i < n && k > 0; i++) {
        rec_t *x = &e[i];
        if (by_count_then_word(&x, &h[0]) < 0) { /* better than the worst kept */
            h[0] = x;
            sift_down(h, k, 0);
        }
    }
    qsort(h, k, sizeof(*h), by_count_then_word);
    return k;
}

static int print_top(table_t *t)
{
    size_t n = table_compact(t);
    size_t k = g_top_n < n ? g_top_n : n;
    rec_t **top = malloc((k ? k : 1) * sizeof(*top));
    if (top == NULL)
        return UV_ENOMEM;
    k = select_top(t->slots, n, top, k);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        if (printf("%llu ", (unsigned long long)top[i]->count) < 0 ||
            fwrite(top[i]->word, 1, top[i]->len, stdout) != top[i]->len || putchar('\n') == EOF)
            rc = UV_EIO;
    if (fflush(stdout) != 0)
        rc = UV_EIO;
    if (rc != 0)
        fprintf(stderr, "pipeline: write the result: %s\n", strerror(errno));
    free(top);
    return rc;
}

static int merge_task(void *arg, void **result)
{
    (void)arg, (void)result;
    g_merge.loop = weft_loop_index();
    say_started();
    table_t t;
    rec_t *batch = malloc(REC_BATCH * sizeof(*batch));
    int rc = batch == NULL ? UV_ENOMEM : table_init(&t, 4096, false);
    if (rc != 0) {
        free(batch);
        return rc;
    }
    for (;;) {
        size_t got = 0;
        if ((rc = weft_chan_recv_batch(g_recs, batch, REC_BATCH, &got)) != 0)
            break;
        if (g_merge.records == 0)
            g_merge.t_first = uv_hrtime();
        g_merge.records += got;
        for (size_t i = 0; i < got && rc == 0; i++) {
            g_merge.bytes += batch[i].len;
            rc = table_add(&t, batch[i].word, batch[i].len, batch[i].hash, batch[i].count);
        }
        if (rc != 0)
            break;
    }
    g_merge.t_eof = uv_hrtime();
    free(batch);
    if (rc == UV_EOF) { /* closed: every tokenizer is done */
        g_merge.distinct = t.n;
        rc = print_top(&t);
    } else if (rc != UV_ECANCELED) {
        fprintf(stderr, "pipeline: merger: %s\n", weft_strerror(rc));
        /* Nobody takes records any more: fail the tokenizers' sends rather
         * than leave them waiting for room. */
        (void)weft_chan_close(g_recs);
    }
    g_merge.t_end = uv_hrtime();
    table_free(&t); /* only the slots: the words are the tokenizers' */
    return rc;
}

/* ---- the main task -------------------------------------------------------------- */

static void report(void)
{
    fprintf(stderr, "loops: %u (reader on loop 0, a tokenizer on each, merger on loop %d)\n",
            g_loops, g_merge.loop);
    uint64_t rd = g_read.t_end - g_read.t_start;
    fprintf(stderr,
            "stage read: %.1f MiB in %.1f ms (%.0f MiB/s; %llu chunks, %.1f ms in read(2), "
            "%.1f ms waiting for room)\n",
            mib(g_read.bytes), ms(rd), mib(g_read.bytes) / (ms(rd) / 1e3 + 1e-12),
            (unsigned long long)g_read.chunks, ms(g_read.read_ns), ms(g_read.wait_ns));
    uint64_t first = UINT64_MAX, counted = 0, bytes = 0, words = 0;
    for (unsigned i = 0; i < g_loops; i++) {
        const tokenizer_t *tk = &g_toks[i];
        if (tk->chunks > 0 && tk->t_first < first)
            first = tk->t_first;
        if (tk->t_counted > counted)
            counted = tk->t_counted;
        bytes += tk->bytes;
        words += tk->words;
    }
    uint64_t td = first == UINT64_MAX ? 0 : counted - first;
    fprintf(stderr, "stage tokenize: %.1f MiB in %.1f ms (%.0f MiB/s; %llu words, %u tasks)\n",
            mib(bytes), ms(td), mib(bytes) / (ms(td) / 1e3 + 1e-12), (unsigned long long)words,
            g_loops);
    for (unsigned i = 0; i < g_loops; i++) {
        const tokenizer_t *tk = &g_toks[i];
        fprintf(stderr,
                "  tokenizer on loop %d: %.1f MiB in %llu chunks, %llu words, %zu distinct, "
                "busy %.1f ms, records sent in %.1f ms\n",
                tk->loop, mib(tk->bytes), (unsigned long long)tk->chunks,
                (unsigned long long)tk->words, tk->table.n, ms(tk->busy_ns),
                ms(tk->t_end - tk->t_counted));
    }
    /* From the first record to UV_EOF: mostly the tokenizers' sending, which
     * the merger keeps up with; then the sort and the printing. */
    uint64_t md = g_merge.records ? g_merge.t_eof - g_merge.t_first : 0;
    fprintf(stderr,
            "stage merge: %.1f MiB of words in %.1f ms (%.0f MiB/s; %llu records, %.1f M "
            "records/s, %llu distinct; top %zu sorted and printed in %.1f ms)\n",
            mib(g_merge.bytes), ms(md), mib(g_merge.bytes) / (ms(md) / 1e3 + 1e-12),
            (unsigned long long)g_merge.records, (double)g_merge.records / (ms(md) * 1e3 + 1e-12),
            (unsigned long long)g_merge.distinct, g_top_n, ms(g_merge.t_end - g_merge.t_eof));
}

static int await_unref(weft_future_t *f)
{
    int rc = weft_await(f, NULL);
    weft_future_unref(f);
    return rc;
}

/* Everything it makes is freed by main() after the runtime has stopped, when
 * no task can touch it any more (an early return leaves tasks to cancel). */
static int main_task(void *arg, void **result)
{
    (void)arg, (void)result;
    weft_runtime_t *rt = weft_runtime_current();
    g_loops = weft_runtime_count(rt);
    if ((g_toks = calloc(g_loops, sizeof(*g_toks))) == NULL)
        return UV_ENOMEM;
    weft_future_t **tok_f = calloc(g_loops, sizeof(*tok_f));
    if (tok_f == NULL)
        return UV_ENOMEM;
    int rc = weft_chan_new(&(weft_chan_opts_t){.elem_size = sizeof(chunk_t),
                                               .capacity = CHUNK_CHAN_CAP,
                                               .kind = WEFT_CHAN_MPMC,
                                               .dtor = chunk_dtor,
                                               .name = "chunks"},
                           &g_chunks);
    if (rc == 0)
        rc = weft_chan_new(&(weft_chan_opts_t){.elem_size = sizeof(rec_t),
                                               .capacity = REC_CHAN_CAP,
                                               .kind = WEFT_CHAN_MPSC,
                                               .name = "records"},
                           &g_recs);
    if (rc == 0)
        rc = weft_chan_new(&(weft_chan_opts_t){.elem_size = sizeof(int),
                                               .capacity = g_loops + 2,
                                               .kind = WEFT_CHAN_MPSC,
                                               .name = "started"},
                           &g_started);
    weft_future_t *merge_f = NULL, *read_f = NULL;
    if (rc == 0)
        rc = weft_submit_to(weft_runtime_loop(rt, g_loops - 1), merge_task, NULL, &merge_f);
    unsigned started = 0;
    for (; rc == 0 && started < g_loops; started++)
        rc = weft_submit_to(weft_runtime_loop(rt, started), tokenize_task, &g_toks[started],
                            &tok_f[started]);
    /* Start reading once the other stages run, so that every tokenizer
     * competes for the first chunk. (This example found that a submit to a
     * sleeping loop used to wait for the end of the sender's tick - up to
     * 256 task runs, while the reader and this loop's tokenizer handed the
     * loop to each other - which loops/runtime.c now fixes; the barrier
     * still saves the other loops' wake-up time.) A bound on the wait: a
     * stage that failed to start says so through its future; this only
     * loses the head start. */
    for (unsigned i = 0; rc == 0 && i < g_loops + 1; i++) {
        int one;
        if ((rc = weft_chan_recv_timeout(g_started, &one, 5000)) == UV_ETIMEDOUT) {
            rc = 0;
            break;
        }
    }
    if (rc == 0)
        rc = weft_submit_to(NULL, reader_task, NULL, &read_f); /* loop 0: this one */
    if (rc != 0) {
        fprintf(stderr, "pipeline: start the stages: %s\n", weft_strerror(rc));
        if (g_chunks != NULL)
            (void)weft_chan_close(g_chunks); /* ends the tokenizers already started */
    }
    /* The tokenizers first: when one fails, closing the chunk channel stops
     * the reader, which could otherwise wait for room forever. */
    for (unsigned i = 0; i < started; i++) {
        int trc = await_unref(tok_f[i]);
        if (trc != 0) {
            (void)weft_chan_close(g_chunks);
            if (rc == 0)
                rc = trc;
        }
    }
    free(tok_f);
    if (read_f != NULL) {
        int rrc = await_unref(read_f);
        if (rc == 0)
            rc = rrc;
    }
    if (merge_f == NULL)
        return rc;
    if (rc == 0) {
        /* Every record is in: the merger's UV_EOF now means "all counted".
         * (ECLOSED: the merger failed and closed it; its await says why.) */
        int crc = weft_chan_close(g_recs);
        rc = await_unref(merge_f);
        if (rc == 0 && crc != 0)
            rc = crc;
    } else { /* some stage failed: no partial answer */
        (void)weft_future_cancel(merge_f);
        weft_future_unref(merge_f);
    }
    if (rc == 0)
        report();
    return rc;
}

static int parse_count(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    weft_runtime_opts_t opts;
    memset(&opts, 0, sizeof(opts)); /* one loop per allowed CPU, pinned */
    unsigned long long v;
    if (argc < 2 || argc > 4 || (argc > 2 && parse_count(argv[2], SIZE_MAX, &v) != 0)) {
        fprintf(stderr, "usage: pipeline FILE [TOP_N [LOOPS]]\n"
                        "  prints the TOP_N (default 10) most frequent words of FILE as\n"
                        "  `<count> <word>` lines; LOOPS (1..1024) defaults to one per CPU\n");
        return 2;
    }
    g_path = argv[1];
    if (argc > 2)
        g_top_n = (size_t)v;
    if (argc > 3) {
        if (parse_count(argv[3], 1024, &v) != 0) {
            fprintf(stderr, "usage: pipeline FILE [TOP_N [LOOPS]]: LOOPS is 1..1024\n");
            return 2;
        }
        opts.loops = (unsigned)v;
    }
    int rc = weft_runtime_run(main_task, NULL, &opts, NULL);
    if (g_chunks != NULL)
        weft_chan_unref(g_chunks);
    if (g_recs != NULL)
        weft_chan_unref(g_recs);
    if (g_started != NULL)
        weft_chan_unref(g_started);
    for (unsigned i = 0; g_toks != NULL && i < g_loops; i++)
        table_free(&g_toks[i].table);
    free(g_toks);
    if (rc != 0) {
        fprintf(stderr, "pipeline: %s\n", weft_strerror(rc));
        return 1;
    }
    return 0;
}

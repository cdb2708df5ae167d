/*
 * examples/pipeline/gen_input - a deterministic text with a known word count,
 * for pipeline_test (and for trying the pipeline on a big file).
 *
 *   gen_input OUT MIB [EXPECT]
 *
 * writes about MIB MiB of text to OUT and, to EXPECT, every word with its
 * count as the pipeline prints them: `<count> <word>`, by count descending,
 * then word ascending (byte order). The text is a shuffled bag of words with
 * known counts:
 * - a vocabulary of VOCAB words (the 1-4 letter strings, named in an order
 *   unrelated to their ranks), word i appearing K / (i / 2 + 1) times: Zipf,
 *   with ties in pairs so that the word order of equal counts matters;
 * - two long words with the count of the 9th and 10th words (a three-way
 *   tie in the top 10), and one word of GIANT letters (longer than a chunk)
 *   that appears twice;
 * - every letter in random case; between words a random separator:
 *   whitespace, punctuation, digits, UTF-8 bytes and the ASCII neighbours of
 *   the letters (@ [ ` {); for a stretch of STRETCH words in the middle,
 *   no whitespace at all (longer than a chunk);
 * - separators before the first word, none after the last.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB   40000
#define STRIDE  7919 /* a prime: i -> 1 + i * STRIDE % VOCAB is a permutation */
#define GIANT   200000
#define STRETCH 20000

static const char *const g_long[2] = {
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidocious",
};

static const char *const g_seps[] = {
    " ",    " ",        " ",  " ",    " ",    " ", "  ", "\n", "\n\n", ", ",
    ". ",   ".\n",      "\t", "\r\n", " -- ", "'", "\"", " (", ") ",   "3",
    " 42 ", "\xc3\xa9", "_",  "@",    "[",    "`", "{",  "~",  "; ",   "!\n",
};
static const char *const g_seps_nospace[] = {
    ",", ".", "-", "'", "\"", "3", "_", "@", "[", "`", "{", "~", ";", "\xc3\xa9", "0123",
};

typedef struct word {
    char *text; /* lowercase */
    size_t len;
    uint64_t count;
} word_t;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void) /* splitmix64 */
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static char *dup_str(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL) {
        perror("gen_input");
        exit(1);
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* The n-th string of letters (n >= 1) in the order a..z, aa..zz, aaa...:
 * bijective base 26, so distinct n give distinct names. */
static char *name_of(uint64_t n, size_t *len)
{
    char tmp[16];
    size_t k = 0;
    while (n > 0) {
        n--;
        tmp[k++] = (char)('a' + n % 26);
        n /= 26;
    }
    for (size_t i = 0; i < k / 2; i++) {
        char c = tmp[i];
        tmp[i] = tmp[k - 1 - i];
        tmp[k - 1 - i] = c;
    }
    *len = k;
    return dup_str(tmp, k);
}

static int by_count_then_word(const void *a, const void *b)
{
    const word_t *x = *(const word_t *const *)a, *y = *(const word_t *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    int c = memcmp(x->text, y->text, x->len < y->len ? x->len : y->len);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void put_word(FILE *f, const word_t *w)
{
    unsigned style = (unsigned)(next_rand() % 20);
    for (size_t i = 0; i < w->len; i++) {
        int c = (unsigned char)w->text[i];
        if (style >= 18 || (style >= 12 && i == 0) || (style == 11 && (next_rand() & 1)))
            c -= 'a' - 'A'; /* UPPER, Capitalised, or MiXeD */
        putc(c, f);
    }
}

int main(int argc, char **argv)
{
    char *end;
    unsigned long mib = argc >= 3 ? strtoul(argv[2], &end, 10) : 0;
    if (argc < 3 || argc > 4 || *end != '\0' || mib < 1 || mib > 4096) {
        fprintf(stderr, "usage: gen_input OUT MIB [EXPECT]\n");
        return 2;
    }
    size_t nwords = VOCAB + 3;
    word_t *w = calloc(nwords, sizeof(*w));
    if (w == NULL) {
        perror("gen_input");
        return 1;
    }
    for (size_t i = 0; i < VOCAB; i++)
        w[i].text = name_of(1 + (uint64_t)i * STRIDE % VOCAB, &w[i].len);
    for (size_t i = 0; i < 2; i++) {
        w[VOCAB + i].len = strlen(g_long[i]);
        w[VOCAB + i].text = dup_str(g_long[i], w[VOCAB + i].len);
    }
    char giant[GIANT];
    for (size_t i = 0; i < GIANT; i++)
        giant[i] = (char)('a' + next_rand() % 26);
    w[VOCAB + 2].text = dup_str(giant, GIANT);
    w[VOCAB + 2].len = GIANT;

    /* K so that the text comes out near MIB MiB: a word of rank i costs its
     * letters and ~2 bytes of separator, K / (i / 2 + 1) times. */
    double per_k = 0;
    for (size_t i = 0; i < VOCAB; i++)
        per_k += (double)(w[i].len + 2) / (double)(i / 2 + 1);
    uint64_t k = (uint64_t)((double)mib * 1024 * 1024 / per_k);
    uint64_t total = 0;
    for (size_t i = 0; i < VOCAB; i++) {
        w[i].count = k / (i / 2 + 1);
        if (w[i].count == 0)
            w[i].count = 1;
    }
    w[VOCAB].count = w[VOCAB + 1].count = w[8].count;
    w[VOCAB + 2].count = 2;
    for (size_t i = 0; i < nwords; i++)
        total += w[i].count;

    uint32_t *bag = malloc(total * sizeof(*bag));
    if (bag == NULL) {
        perror("gen_input");
        return 1;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < nwords; i++)
        for (uint64_t j = 0; j < w[i].count; j++)
            bag[n++] = (uint32_t)i;
    for (uint64_t i = total - 1; i > 0; i--) { /* Fisher-Yates */
        uint64_t j = next_rand() % (i + 1);
        uint32_t t = bag[i];
        bag[i] = bag[j];
        bag[j] = t;
    }

    FILE *f = fopen(argv[1], "w");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    fputs("\n \t", f);
    uint64_t stretch = total / 2;
    for (uint64_t i = 0; i < total; i++) {
        put_word(f, &w[bag[i]]);
        if (i + 1 == total)
            break;
        if (i >= stretch && i < stretch + STRETCH)
            fputs(g_seps_nospace[next_rand() % (sizeof(g_seps_nospace) / sizeof(*g_seps_nospace))],
                  f);
        else
            fputs(g_seps[next_rand() % (sizeof(g_seps) / sizeof(*g_seps))], f);
    }
    if (ferror(f) || fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    free(bag);

    if (argc == 4) {
        word_t **order = malloc(nwords * sizeof(*order));
        FILE *e = fopen(argv[3], "w");
        if (order == NULL || e == NULL) {
            perror(argv[3]);
            return 1;
        }
        for (size_t i = 0; i < nwords; i++)
            order[i] = &w[i];
        qsort(order, nwords, sizeof(*order), by_count_then_word);
        for (size_t i = 0; i < nwords; i++)
            fprintf(e, "%llu %s\n", (unsigned long long)order[i]->count, order[i]->text);
        if (ferror(e) || fclose(e) != 0) {
            perror(argv[3]);
            return 1;
        }
        free(order);
    }
    for (size_t i = 0; i < nwords; i++)
        free(w[i].text);
    free(w);
    return 0;
}

/*
 * apps/kv/fuzz/resp_fuzz.c - libFuzzer target for weft-kv's RESP parser
 * (apps/kv/resp.c). Built by build.sh with clang-15 -fsanitize=fuzzer,
 * address,undefined; run, bounded, by tools/test.sh.
 *
 * The input is fed as a connection would get it: in pieces (the first
 * byte picks the piece size), with the unread bytes moved to a fresh
 * buffer after every piece, so the resume-after-RESP_MORE path is
 * exercised as well as whole commands. Each command's arguments must lie
 * inside the buffer; the parser must never ask for more argument slots
 * than a command can have, and the buffer stays bounded by the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    resp_parser_t p;
    resp_parser_init(&p, 1 << 20);
    kv_slice *argv = NULL;
    size_t cap = 0, start = 0, fed = 0;
    char *buf = NULL;
    while (fed < size) {
        fed = fed + piece < size ? fed + piece : size;
        size_t have = fed - start;
        free(buf);
        buf = malloc(have ? have : 1);
        memcpy(buf, data + start, have);
        for (;;) {
            size_t used = 0;
            int rc = resp_parse(&p, buf, have, argv, cap, &used);
            if (rc == RESP_ROOM) {
                if (p.need <= cap || p.need > size + 16)
                    abort(); /* it must ask for more, and never absurdly */
                argv = realloc(argv, p.need * sizeof(*argv));
                cap = p.need;
                continue;
            }
            if (rc == RESP_ERR) {
                if (p.err == NULL || strncmp(p.err, "Protocol error: ", 16) != 0)
                    abort();
                goto out;
            }
            if (rc == RESP_MORE)
                break;
            if (used == 0 || used > have)
                abort();
            for (size_t i = 0; i < p.argc; i++)
                if (argv[i].p < buf || argv[i].p + argv[i].len > buf + used)
                    abort();
            memmove(buf, buf + used, have - used);
            start += used;
            have -= used;
        }
    }
out:
    free(buf);
    free(argv);
    return 0;
}

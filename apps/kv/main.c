/*
 * apps/kv/main.c - weft-kv, a sharded Redis-protocol server on every loop
 * (docs/kv.md). Arguments as redis-server's: --port N (0 = pick, printed),
 * --bind ADDR, --loops N, --appendonly yes|no, --appendfsync
 * always|everysec|no, --dir PATH, --maxclients N.
 */
#include "server.h"

int main(int argc, char **argv)
{
    kv_opts o;
    if (kv_parse_args(argc, argv, &o) != 0)
        return 1;
    kv_cmd_index_init();
    return kv_main(&o);
}

/*
 * benchmarks/bench_list.h - the registry: every workload, in the order the
 * suite runs them. Definitions of the workloads are in docs/workloads.md;
 * the implementations in bench_*.c.
 *
 * Columns: name (also the C function bench_<name>), unit, higher is better,
 * own loop (the harness passes loop = NULL), time limit per run in seconds.
 * To add a workload: write `int bench_<name>(weft_loop_t *, double *)` and
 * add one line here.
 */
#ifndef WEFT_BENCH_LIST_H
#define WEFT_BENCH_LIST_H

#include "benchmarks/bench.h"

#define BENCH_LIST(XX)                                    \
    XX(switch, "ns/op", false, false, 60)                 \
    XX(spawn, "tasks/s", true, false, 60)                 \
    XX(skynet1, "ms", false, false, 60)                   \
    XX(pingpong_local, "ns/op", false, false, 60)         \
    XX(pingpong_queue, "ns/op", false, false, 60)         \
    XX(actor_pingpong, "ns/op", false, false, 60)         \
    XX(thread_ring, "ns/op", false, false, 60)            \
    XX(pingpong_future, "ns/op", false, false, 60)        \
    XX(lock_contended, "ns/op", false, false, 60)         \
    XX(gather_1000, "us/op", false, false, 60)            \
    XX(gen_iter, "ns/op", false, false, 60)               \
    XX(timers, "ms", false, false, 60)                    \
    XX(mem_per_task, "KiB/task", false, true, 90)         \
    XX(mem_per_task_compact, "KiB/task", false, true, 90) \
    XX(threadsafe_post, "ops/s", true, false, 60)         \
    XX(offload, "jobs/s", true, true, 60)                 \
    XX(limit_pingpong, "ns/op", false, true, 60)          \
    XX(pingpong_cross, "ns/op", false, true, 60)          \
    XX(pingpong_submit, "ns/op", false, true, 60)         \
    XX(actor_ask_cross, "ns/op", false, true, 60)         \
    XX(actor_fanout, "msgs/s", true, true, 120)           \
    XX(limit_stream, "msgs/s", true, true, 60)            \
    XX(stream_cross, "msgs/s", true, true, 60)            \
    XX(stream_call_on, "msgs/s", true, true, 60)          \
    XX(chan_fanin, "msgs/s", true, true, 60)              \
    XX(select_2, "ns/op", false, true, 60)                \
    XX(skynetN, "ms", false, true, 60)                    \
    XX(scaling, "x", true, true, 300)                     \
    XX(http_hello, "req/s", true, true, 60)               \
    XX(http_hello_1, "req/s", true, true, 60)             \
    XX(echo, "req/s", true, true, 60)                     \
    XX(echo_1, "req/s", true, true, 60)

#define BENCH_DECLARE(name, unit, higher, own_loop, timeout) \
    int bench_##name(weft_loop_t *loop, double *value);
BENCH_LIST(BENCH_DECLARE)
#undef BENCH_DECLARE

#endif /* WEFT_BENCH_LIST_H */

/*
 * benchmarks/bench_net.c - the network workloads (docs/workloads.md):
 * http_hello and echo, each with a server on every loop of a runtime and
 * (the _1 forms) on one loop, on 127.0.0.1.
 *
 * http_hello: the server of examples/http_hello; this process checks two
 * keep-alive GETs itself (a blocking socket), then runs
 * `wrk -t1 -c64 -d5s` as a child process and reads its Requests/sec.
 * echo: the server of examples/echo; the load is weft's own client streams
 * (examples/echo/echo_server.c: 64 connections, 64-byte messages, each
 * waits for its full, checked echo before the next, 5 s) in a child
 * process forked before the server's runtime starts, so that it has its
 * own loop and its CPU time is counted apart.
 *
 * Every run prints a CPU line on stderr: the server's CPU time (this
 * process: its loops, as the bench thread only waits) and the load's (the
 * child, RUSAGE_CHILDREN), each as a share of the wall time - the machine
 * has 2 cores for both. WEFT_BENCH_BALANCE=reuseport|acceptor picks the
 * multi-loop design (default: weft's default); WEFT_BENCH_IDLE_POLL_US sets
 * the loops' idle poll (default -1: none, the load needs the other core);
 * WEFT_BENCH_NO_PIN=1 leaves the loops unpinned (on a shared machine the
 * first CPU, where every runtime pins its loop 0, is the busiest).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/runtime.h>
#include <weft/weft.h>

#include "benchmarks/bench.h"
#include "benchmarks/bench_list.h"
#include "examples/echo/echo_server.h"
#include "examples/http_hello/hello_server.h"

#define LOAD_SECONDS 5

struct net_server {
    weft_stream_handler_fn handler;
    unsigned loops; /* 0 = all */
    weft_runtime_t *rt;
    weft_server_t *srv;
    int port;
    weft_server_loop_stats_t stats[8];
    int nstats;
};

static int start_task(void *arg, void **result)
{
    (void)result;
    struct net_server *ns = arg;
    weft_server_opts_t o = {.backlog = 1024};
    const char *bal = getenv("WEFT_BENCH_BALANCE");
    if (bal != NULL && strcmp(bal, "reuseport") == 0)
        o.balance = WEFT_BALANCE_REUSEPORT;
    else if (bal != NULL && strcmp(bal, "acceptor") == 0)
        o.balance = WEFT_BALANCE_ACCEPTOR;
    int rc = weft_tcp_serve_rt(NULL, "127.0.0.1", 0, ns->handler, NULL, &o, &ns->srv);
    if (rc == 0)
        ns->port = weft_server_port(ns->srv);
    return rc;
}

static int stop_task(void *arg, void **result)
{
    (void)result;
    struct net_server *ns = arg;
    ns->nstats = weft_server_stats(ns->srv, 8, ns->stats);
    return weft_server_close(ns->srv);
}

/* Run fn(ns) on loop 0 and wait for it. */
static int on_loop0(struct net_server *ns, weft_task_fn fn, const char *what)
{
    weft_tsfuture_t *f;
    int rc = weft_spawn_threadsafe(weft_runtime_loop(ns->rt, 0), fn, ns, &f);
    if (rc != 0)
        return bench_fail("%s: spawn: %s", what, weft_err_name(rc));
    rc = weft_tsfuture_wait_blocking(f, 30000, NULL);
    weft_tsfuture_unref(f);
    return rc == 0 ? 0 : bench_fail("%s: %s", what, weft_err_name(rc));
}

static int server_start(struct net_server *ns)
{
    weft_runtime_opts_t o;
    memset(&o, 0, sizeof o);
    o.loops = ns->loops;
    o.loop.quiet = true;
    const char *ip = getenv("WEFT_BENCH_IDLE_POLL_US");
    o.loop.idle_poll_us = ip != NULL ? atoi(ip) : -1;
    o.no_pinning = getenv("WEFT_BENCH_NO_PIN") != NULL;
    int rc = weft_runtime_start(&o, &ns->rt);
    if (rc != 0)
        return bench_fail("runtime: %s", weft_err_name(rc));
    if (on_loop0(ns, start_task, "serve") != 0) {
        (void)weft_runtime_stop(ns->rt, NULL);
        return -1;
    }
    return 0;
}

static int server_stop(struct net_server *ns)
{
    int rc = on_loop0(ns, stop_task, "close");
    (void)weft_runtime_stop(ns->rt, NULL);
    if (rc == 0) {
        fprintf(stderr, "      connections per loop:");
        for (int i = 0; i < ns->nstats && i < 8; i++)
            fprintf(stderr, " %llu", (unsigned long long)ns->stats[i].accepted);
        fprintf(stderr, "\n");
    }
    return rc;
}

/* CPU seconds (user + system) of this process or of its waited-for children. */
static double cpu_s(int who)
{
    struct rusage ru;
    if (getrusage(who, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void print_cpu(const char *what, double server, double load, double wall)
{
    fprintf(stderr, "      CPU %s: server %.0f%%, load %.0f%% of one core over %.2f s\n", what,
            100 * server / wall, 100 * load / wall, wall);
}

/* ---- http_hello ----------------------------------------------------------- */

/* A blocking client socket to 127.0.0.1:port with a 5 s receive timeout. */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        (void)close(fd);
        return -1;
    }
    return fd;
}

/* One GET on fd, and its whole reply checked: 0 or -1 after bench_fail. */
static int check_get(int fd, int nth)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    static const char want[] = "HTTP/1.1 200 OK\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        return bench_fail("GET %d: write: %s", nth, strerror(errno));
    char buf[1024];
    size_t have = 0;
    for (;;) {
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        if (end != NULL && (size_t)(end + 4 - buf) + 5 <= have) {
            bool ok = have == (size_t)(end + 4 - buf) + 5 && memcmp(end + 4, "hello", 5) == 0 &&
                      memcmp(buf, want, sizeof want - 1) == 0 &&
                      memmem(buf, (size_t)(end - buf), "Content-Length: 5\r\n", 19) != NULL;
            return ok ? 0 : bench_fail("GET %d: a wrong reply (%zu bytes)", nth, have);
        }
        if (have == sizeof buf)
            return bench_fail("GET %d: reply too long", nth);
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            return bench_fail("GET %d: read: %s", nth, n == 0 ? "EOF" : strerror(errno));
        have += (size_t)n;
    }
}

static int check_two_gets(int port)
{
    int fd = dial(port);
    if (fd < 0)
        return bench_fail("connect: %s", strerror(errno));
    int rc = check_get(fd, 1);
    if (rc == 0)
        rc = check_get(fd, 2); /* the same connection: keep-alive */
    (void)close(fd);
    return rc;
}

/* Run wrk and return its Requests/sec in *rps. */
static int run_wrk(int port, double *rps, double *load_cpu)
{
    char url[64], dur[16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(dur, sizeof dur, "-d%ds", LOAD_SECONDS);
    int p[2];
    if (pipe(p) != 0)
        return bench_fail("pipe: %s", strerror(errno));
    double before = cpu_s(RUSAGE_CHILDREN);
    pid_t pid = fork();
    if (pid < 0)
        return bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        (void)dup2(p[1], 1);
        (void)close(p[0]);
        (void)close(p[1]);
        execlp("wrk", "wrk", "-t1", "-c64", dur, url, (char *)NULL);
        _exit(127);
    }
    (void)close(p[1]);
    char out[8192];
    size_t have = 0;
    ssize_t n;
    while (have < sizeof out - 1 && (n = read(p[0], out + have, sizeof out - 1 - have)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        have += (size_t)n;
    }
    out[have] = 0;
    (void)close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    *load_cpu = cpu_s(RUSAGE_CHILDREN) - before;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return bench_fail("wrk failed (status %d; is wrk installed?): %s", st, out);
    if (strstr(out, "Non-2xx") != NULL || strstr(out, "Socket errors") != NULL)
        return bench_fail("wrk saw errors: %s", out);
    const char *r = strstr(out, "Requests/sec:");
    if (r == NULL || sscanf(r, "Requests/sec: %lf", rps) != 1)
        return bench_fail("no Requests/sec in wrk's output: %s", out);
    return 0;
}

static int http_hello_on(unsigned loops, double *value)
{
    struct net_server ns = {.handler = hello_http_handler, .loops = loops};
    if (server_start(&ns) != 0)
        return -1;
    int rc = check_two_gets(ns.port);
    double load = 0, t0 = (double)bench_now_ns(), s0 = cpu_s(RUSAGE_SELF);
    if (rc == 0)
        rc = run_wrk(ns.port, value, &load);
    double wall = ((double)bench_now_ns() - t0) / 1e9, server = cpu_s(RUSAGE_SELF) - s0;
    if (server_stop(&ns) != 0)
        rc = -1;
    if (rc == 0)
        print_cpu("http_hello", server, load, wall);
    return rc;
}

int bench_http_hello(weft_loop_t *loop, double *value)
{
    (void)loop;
    return http_hello_on(0, value);
}

int bench_http_hello_1(weft_loop_t *loop, double *value)
{
    (void)loop;
    return http_hello_on(1, value);
}

/* ---- echo ------------------------------------------------------------------- */

struct load_result {
    uint64_t round_trips, elapsed_ns;
    int error;
};

static int load_main(void *arg, void **result)
{
    (void)result;
    return echo_load_run(arg);
}

/* The load process: wait for the port, run the load, send the result. */
static void load_child(int port_fd, int result_fd)
{
    int port = 0;
    struct load_result r = {.error = UV_EIO};
    if (read(port_fd, &port, sizeof port) == (ssize_t)sizeof port && port > 0) {
        echo_load_t L = {.host = "127.0.0.1",
                         .port = port,
                         .conns = 64,
                         .msg_size = 64,
                         .duration_ms = LOAD_SECONDS * 1000};
        int rc = weft_run(load_main, &L, NULL);
        r = (struct load_result){L.round_trips, L.elapsed_ns, rc != 0 ? rc : L.error};
    }
    ssize_t w = write(result_fd, &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 1);
}

static int echo_on(unsigned loops, double *value)
{
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0)
        return bench_fail("pipe: %s", strerror(errno));
    double before = cpu_s(RUSAGE_CHILDREN);
    pid_t pid = fork(); /* before the runtime's threads exist */
    if (pid < 0)
        return bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        (void)close(to_child[1]);
        (void)close(from_child[0]);
        load_child(to_child[0], from_child[1]);
    }
    (void)close(to_child[0]);
    (void)close(from_child[1]);
    struct net_server ns = {.handler = echo_handler, .loops = loops};
    int rc = server_start(&ns);
    int port = rc == 0 ? ns.port : 0;
    double t0 = (double)bench_now_ns(), s0 = cpu_s(RUSAGE_SELF);
    struct load_result r = {.error = UV_EIO};
    if (write(to_child[1], &port, sizeof port) != (ssize_t)sizeof port ||
        read(from_child[0], &r, sizeof r) != (ssize_t)sizeof r)
        r.error = UV_EIO;
    double wall = ((double)bench_now_ns() - t0) / 1e9, server = cpu_s(RUSAGE_SELF) - s0;
    (void)close(to_child[1]);
    (void)close(from_child[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    double load = cpu_s(RUSAGE_CHILDREN) - before;
    if (rc == 0 && server_stop(&ns) != 0)
        rc = -1;
    if (rc != 0)
        return -1;
    if (r.error != 0 || r.elapsed_ns == 0 || r.round_trips == 0)
        return bench_fail("the load failed: %s", weft_err_name(r.error));
    print_cpu("echo", server, load, wall);
    *value = (double)r.round_trips / ((double)r.elapsed_ns / 1e9);
    return 0;
}

int bench_echo(weft_loop_t *loop, double *value)
{
    (void)loop;
    return echo_on(0, value);
}

int bench_echo_1(weft_loop_t *loop, double *value)
{
    (void)loop;
    return echo_on(1, value);
}

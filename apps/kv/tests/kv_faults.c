/*
 * apps/kv/tests/kv_faults.c - bad clients against a running weft-kv
 * (faults_test.sh starts it): kv_faults <port> <scenario>. Each scenario
 * checks what happened to the bad client and that the server still serves
 * others; it prints "ok <scenario>: ..." or "FAIL <scenario>: ..." and
 * exits 0 / 1. Plain POSIX sockets on 127.0.0.1.
 *
 *   bigbulk   a 1 GB bulk header: Redis's error, then closed
 *   half      half a command, then close: nothing is run
 *   pipeline  100,000 commands in one pipeline, all answered in order
 *   idle      5,000 idle connections (fewer if RLIMIT_NOFILE is lower:
 *             said), each still answered afterwards
 *   noread    a client that never reads: the server stops reading it
 *             (what it took stays bounded), memory stays bounded, another
 *             client is served meanwhile
 *   aofwrite FILE   SET aof:i i, 4 at a time, appending each i whose +OK
 *             came back to FILE, until the connection breaks (the test
 *             kills the server with -9 meanwhile)
 *   aofcheck FILE   every i in FILE reads back as i
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int g_port;
static const char *g_name;

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", g_name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fail("write: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* Read until `want` bytes or EOF/timeout (ms): bytes read. */
static size_t read_some(int fd, char *buf, size_t want, int timeout_ms)
{
    size_t got = 0;
    while (got < want) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        ssize_t r = read(fd, buf + got, want - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* Send a command, expect exactly this reply. */
static void expect(int fd, const char *cmd, const char *reply)
{
    send_all(fd, cmd, strlen(cmd));
    char buf[512];
    size_t n = strlen(reply);
    size_t got = read_some(fd, buf, n, 10000);
    if (got != n || memcmp(buf, reply, n) != 0)
        fail("'%.*s' got %zu bytes '%.*s', want '%s'", (int)strcspn(cmd, "\r"), cmd, got, (int)got,
             buf, reply);
}

/* Peer closed? (EOF within timeout) */
static int closed_by_peer(int fd)
{
    char b[64];
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0)
        return 0;
    ssize_t r = read(fd, b, sizeof(b));
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void server_alive(void)
{
    int fd = dial();
    if (fd < 0)
        fail("cannot connect afterwards");
    expect(fd, "PING\r\n", "+PONG\r\n");
    close(fd);
}

static long used_memory(void)
{
    int fd = dial();
    const char *cmd = "INFO memory\r\n";
    send_all(fd, cmd, strlen(cmd));
    char buf[4096];
    size_t got = read_some(fd, buf, sizeof(buf) - 1, 10000);
    buf[got] = '\0';
    close(fd);
    char *p = strstr(buf, "used_memory:");
    return p ? atol(p + 12) : -1;
}

static void bigbulk(void)
{
    int fd = dial();
    const char *cmd = "*2\r\n$3\r\nGET\r\n$1073741824\r\n";
    send_all(fd, cmd, strlen(cmd));
    char buf[128];
    const char *want = "-ERR Protocol error: invalid bulk length\r\n";
    size_t got = read_some(fd, buf, strlen(want), 10000);
    if (got != strlen(want) || memcmp(buf, want, got) != 0)
        fail("got '%.*s'", (int)got, buf);
    if (!closed_by_peer(fd))
        fail("not closed after the error");
    close(fd);
    /* the largest allowed header (512 MB): nothing is allocated ahead */
    long before = used_memory();
    fd = dial();
    cmd = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\nabc";
    send_all(fd, cmd, strlen(cmd));
    usleep(200000);
    long during = used_memory();
    close(fd);
    if (during - before > 64L << 20)
        fail("a 512 MB header took %ld bytes before its data came", during - before);
    server_alive();
    printf("ok bigbulk: 1 GB header refused with Redis's text and closed; a 512 MB header "
           "took %ld KB\n",
           (during - before) / 1024);
}

static void half(void)
{
    int fd = dial();
    const char *cmd = "*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nab";
    send_all(fd, cmd, strlen(cmd));
    usleep(100000);
    close(fd);
    fd = dial();
    expect(fd, "EXISTS half\r\n", ":0\r\n");
    close(fd);
    server_alive();
    printf("ok half: half a command then close ran nothing\n");
}

static void pipeline(void)
{
    const int n = 100000;
    size_t cap = (size_t)n * 48, len = 0;
    char *out = malloc(cap);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len,
                                "*3\r\n$3\r\nSET\r\n$8\r\np%07d\r\n$1\r\nx\r\n", i);
    int fd = dial();
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t sent = 0, want = (size_t)n * 5, got = 0;
    char *in = malloc(want);
    while (got < want) {
        struct pollfd p = {fd, (short)(POLLIN | (sent < len ? POLLOUT : 0)), 0};
        if (poll(&p, 1, 20000) <= 0)
            fail("stalled: sent %zu of %zu, got %zu of %zu", sent, len, got, want);
        if ((p.revents & POLLOUT) && sent < len) {
            ssize_t w = write(fd, out + sent, len - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(fd, in + got, want - got);
            if (r == 0)
                fail("closed after %zu reply bytes", got);
            if (r > 0)
                got += (size_t)r;
        }
    }
    for (int i = 0; i < n; i++)
        if (memcmp(in + (size_t)i * 5, "+OK\r\n", 5) != 0)
            fail("reply %d is not +OK", i);
    fcntl(fd, F_SETFL, 0);
    expect(fd, "EXISTS p0000000 p0050000 p0099999\r\n", ":3\r\n");
    close(fd);
    free(out);
    free(in);
    printf("ok pipeline: 100000 commands in one pipeline, 100000 +OK in order\n");
}

static void idle(void)
{
    int want = 5000;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)want + 50)
        want = (int)rl.rlim_cur - 50;
    int *fds = malloc(sizeof(int) * (size_t)want);
    int n = 0;
    for (; n < want; n++) {
        fds[n] = dial();
        if (fds[n] < 0)
            fail("connection %d: %s", n, strerror(errno));
    }
    server_alive();
    /* every 50th idle one still answers */
    for (int i = 0; i < n; i += 50)
        expect(fds[i], "PING\r\n", "+PONG\r\n");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    server_alive();
    printf("ok idle: %d idle connections held and answered%s\n", n,
           n < 5000 ? " (RLIMIT_NOFILE allowed no more)" : "");
}

static void noread(void)
{
    int setup = dial();
    /* a 64 KiB value: each GET's reply is 64 KiB */
    size_t vlen = 64 * 1024;
    char *set = malloc(vlen + 64);
    int hl = sprintf(set, "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%zu\r\n", vlen);
    memset(set + hl, 'v', vlen);
    memcpy(set + hl + vlen, "\r\n", 2);
    send_all(setup, set, (size_t)hl + vlen + 2);
    char ok[5];
    if (read_some(setup, ok, 5, 10000) != 5)
        fail("SET big");
    close(setup);
    long before = used_memory();

    int fd = dial();
    int small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    const char *get = "GET big\r\n";
    size_t sent = 0;
    int stalls = 0;
    /* write GETs, never read: the server must stop taking them */
    for (int round = 0; round < 2000 && stalls < 20; round++) {
        char chunk[9 * 512];
        for (int i = 0; i < 512; i++)
            memcpy(chunk + i * 9, get, 9);
        ssize_t w = write(fd, chunk, sizeof(chunk));
        if (w > 0) {
            sent += (size_t)w;
            stalls = 0;
        } else if (errno == EAGAIN) {
            stalls++;
            usleep(50000);
        } else {
            fail("write: %s", strerror(errno));
        }
    }
    if (stalls < 20)
        fail("the server kept reading: %zu bytes of GETs taken", sent);
    /* another client meanwhile */
    int other = dial();
    expect(other, "SET x 1\r\n", "+OK\r\n");
    expect(other, "GET x\r\n", "$1\r\n1\r\n");
    close(other);
    long during = used_memory();
    /* what it took: sent GETs (9 bytes each, 64 KiB reply each) */
    if (during - before > 256L << 20)
        fail("memory grew by %ld MB for a client that does not read", (during - before) >> 20);
    close(fd);
    server_alive();
    printf("ok noread: the server stopped reading after %zu bytes of GETs (%zu replies of "
           "64 KiB asked); memory +%ld MB; another client was served\n",
           sent, sent / 9, (during - before) >> 20);
    free(set);
}

static void aofwrite(const char *path)
{
    FILE *acks = fopen(path, "w");
    int fd = dial();
    if (acks == NULL || fd < 0)
        fail("open");
    char cmd[512], rep[64];
    for (long i = 0;; i += 4) {
        size_t n = 0;
        for (long k = i; k < i + 4; k++) {
            char v[24];
            int vl = snprintf(v, sizeof(v), "%ld", k);
            n += (size_t)snprintf(cmd + n, sizeof(cmd) - n,
                                  "*3\r\n$3\r\nSET\r\n$%d\r\naof:%s\r\n$%d\r\n%s\r\n", vl + 4, v,
                                  vl, v);
        }
        if (write(fd, cmd, n) != (ssize_t)n)
            break;
        for (long k = i; k < i + 4; k++) {
            if (read_some(fd, rep, 5, 10000) != 5 || memcmp(rep, "+OK\r\n", 5) != 0)
                goto out;
            fprintf(acks, "%ld\n", k);
            fflush(acks);
        }
    }
out:
    fclose(acks);
    printf("ok aofwrite: stopped when the connection broke\n");
}

static void aofcheck(const char *path)
{
    FILE *acks = fopen(path, "r");
    int fd = dial();
    if (acks == NULL || fd < 0)
        fail("open");
    long i, n = 0;
    char cmd[128], want[64], got[64];
    while (fscanf(acks, "%ld", &i) == 1) {
        snprintf(cmd, sizeof(cmd), "GET aof:%ld\r\n", i);
        char v[24];
        int vl = snprintf(v, sizeof(v), "%ld", i);
        snprintf(want, sizeof(want), "$%d\r\n%s\r\n", vl, v);
        send_all(fd, cmd, strlen(cmd));
        size_t len = strlen(want);
        if (read_some(fd, got, len, 10000) != len || memcmp(got, want, len) != 0)
            fail("acknowledged aof:%ld is not there after the restart", i);
        n++;
    }
    if (n < 100)
        fail("only %ld writes were acknowledged before the kill: too few to say much", n);
    printf("ok aofcheck: all %ld acknowledged writes are there\n", n);
    fclose(acks);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[2], "aofwrite")) {
        g_port = atoi(argv[1]);
        g_name = argv[2];
        aofwrite(argv[3]);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[2], "aofcheck")) {
        g_port = atoi(argv[1]);
        g_name = argv[2];
        aofcheck(argv[3]);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: kv_faults <port> bigbulk|half|pipeline|idle|noread\n");
        return 2;
    }
    g_port = atoi(argv[1]);
    g_name = argv[2];
    if (!strcmp(g_name, "bigbulk"))
        bigbulk();
    else if (!strcmp(g_name, "half"))
        half();
    else if (!strcmp(g_name, "pipeline"))
        pipeline();
    else if (!strcmp(g_name, "idle"))
        idle();
    else if (!strcmp(g_name, "noread"))
        noread();
    else
        return 2;
    return 0;
}

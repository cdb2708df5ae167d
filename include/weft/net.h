/*
 * weft/net.h - UDP sockets awaited from tasks (asyncio's datagram
 * endpoints, as calls rather than a protocol object). docs/io.md, "UDP".
 *
 * A socket belongs to the loop that bound it and is used on its thread.
 * Receiving is eager and bounded: from the bind on, libuv reads datagrams
 * into a ring of recv_queue slots of max_datagram bytes each (allocated
 * once, at the bind); when all slots are full, reading pauses (the
 * kernel's receive buffer then fills and drops, as UDP does) until
 * recv_from takes one. Sends never copy when the socket takes the
 * datagram at once (uv_udp_try_send, the usual case); otherwise the
 * datagram is copied and sent in the background, and the call waits for
 * it. Waits run in a task (WEFT_ENOTASK otherwise), have _timeout forms,
 * and return UV_ECANCELED when the task is cancelled.
 */
#ifndef WEFT_NET_H
#define WEFT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* host (an IPv4 or IPv6 literal) and port (0..65535) as a socket address:
 * 0, or UV_EINVAL. */
int weft_ip_addr(const char *host, int port, struct sockaddr_storage *out);
/* The port of an AF_INET/AF_INET6 address; UV_EINVAL otherwise. */
int weft_ip_port(const struct sockaddr *addr);

typedef struct weft_udp weft_udp_t;

typedef struct weft_udp_opts {
    size_t max_datagram; /* bytes per receive slot; 0 = 2048, at most
                          * 65536. A longer datagram is cut: UV_EMSGSIZE */
    unsigned recv_queue; /* datagrams buffered; 0 = 16, at most 65536 */
    bool reuseaddr;      /* SO_REUSEADDR (several sockets on one port) */
    bool ipv6only;       /* an IPv6 socket takes no IPv4 */
} weft_udp_opts_t;

/* Bind a UDP socket to host (an IPv4/IPv6 literal; NULL = 0.0.0.0) and
 * port (0 = ephemeral: weft_udp_port) on this thread's loop, and start
 * receiving. Loop thread, a task or not. 0 with *out, UV_EINVAL (bad
 * host, port or opts, out NULL, no loop), the bind error
 * (UV_EADDRINUSE...), UV_ENOMEM. */
WEFT_WARN_UNUSED int weft_udp_bind(const char *host, int port, const weft_udp_opts_t *opts,
                                   weft_udp_t **out);
/* The bound port; UV_EINVAL for NULL. */
int weft_udp_port(const weft_udp_t *u);
/* Connected UDP: fix the peer (host literal, port), so that weft_udp_send
 * sends to it and only its datagrams are received (the kernel filters);
 * an ICMP "port unreachable" then shows as UV_ECONNREFUSED from
 * recv_from. Datagrams already queued from others stay. 0, UV_EINVAL,
 * UV_EISCONN (connected already), the connect error. */
int weft_udp_connect(weft_udp_t *u, const char *host, int port);

/* Send one datagram of n bytes to addr (unconnected sockets). 0 when the
 * socket took it (not a promise of delivery), UV_EINVAL (NULL u, NULL data
 * with n > 0, NULL addr, closed), UV_EMSGSIZE (too long for UDP),
 * UV_EISCONN (connected: use weft_udp_send), UV_ECANCELED, UV_ETIMEDOUT
 * (only when it had to be queued), UV_ENOMEM, WEFT_ENOTASK (it had to be
 * queued, outside a task: nothing was sent), the socket's error. */
WEFT_WARN_UNUSED int weft_udp_send_to(weft_udp_t *u, const void *data, size_t n,
                                      const struct sockaddr *addr);
WEFT_WARN_UNUSED int weft_udp_send_to_timeout(weft_udp_t *u, const void *data, size_t n,
                                              const struct sockaddr *addr, uint64_t timeout_ms);
/* Send to the connected peer. As send_to; UV_EDESTADDRREQ if not
 * connected. */
WEFT_WARN_UNUSED int weft_udp_send(weft_udp_t *u, const void *data, size_t n);
WEFT_WARN_UNUSED int weft_udp_send_timeout(weft_udp_t *u, const void *data, size_t n,
                                           uint64_t timeout_ms);

/* Take the next datagram (waiting for one) into buf (cap bytes): 0 with
 * *len and the sender in *from (may be NULL). UV_EMSGSIZE with *len =
 * the bytes copied when the datagram did not fit in cap or in a slot
 * (it is consumed). An error the socket reported (UV_ECONNREFUSED on
 * connected UDP) is returned once, when no datagram is queued (the last
 * four are kept; older ones are dropped). WEFT_ECLOSED
 * (closed while waiting), UV_EINVAL (NULL u/buf/len, cap 0),
 * UV_ECANCELED, UV_ETIMEDOUT (timeout_ms passed; 0 = just look),
 * WEFT_ENOTASK (nothing queued, outside a task). An empty datagram is 0
 * with *len 0. */
WEFT_WARN_UNUSED int weft_udp_recv_from(weft_udp_t *u, void *buf, size_t cap, size_t *len,
                                        struct sockaddr_storage *from);
WEFT_WARN_UNUSED int weft_udp_recv_from_timeout(weft_udp_t *u, void *buf, size_t cap,
                                                uint64_t timeout_ms, size_t *len,
                                                struct sockaddr_storage *from);
/* Datagrams received and not taken yet (<= recv_queue); 0 for NULL. */
size_t weft_udp_pending(const weft_udp_t *u);
/* Close: tasks waiting in recv_from return WEFT_ECLOSED, queued sends
 * end with UV_ECANCELED; u is released (freed after libuv's close
 * callback) and must not be used after the call. Loop thread, a task or
 * not. 0, UV_EINVAL (NULL). */
int weft_udp_close(weft_udp_t *u);
/* The underlying handle (for options libuv has: uv_udp_set_broadcast,
 * uv_udp_set_membership...; do not close it or start receiving). */
uv_udp_t *weft_udp_handle(weft_udp_t *u);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_NET_H */

/*
 * examples/http_hello/hello_server.h - a minimal HTTP/1.1 keep-alive server
 * that answers every request with "hello" (200, Content-Length 5): the
 * handler of examples/http_hello and of the http_hello benchmark.
 */
#ifndef WEFT_EXAMPLES_HELLO_SERVER_H
#define WEFT_EXAMPLES_HELLO_SERVER_H

#include <weft/weft.h>

/* A weft_stream_handler_fn (arg unused): parses the requests in place in
 * one buffer, answers every complete one it holds with one write (pipelined
 * requests get their replies in one batch), keeps the connection open until
 * the peer closes it or asks for "Connection: close" (or speaks HTTP/1.0
 * without keep-alive). A request it cannot parse, or whose head is longer
 * than 8 KiB, gets 400 and the close. Allocates nothing per request. */
int hello_http_handler(weft_stream_t *s, void *arg);

#endif

/* handshake: what a Socket.IO connection remembers of its Engine.IO
 * handshake request (struct sio_handshake, public read-only accessors in
 * sockeye.h). Captured once per connection and shared by its sockets.
 *
 * Every idle connection keeps one, so it is stored compactly: one block of
 * NUL-terminated strings (address, URL, header name/value pairs, query
 * key/value pairs) with no pointers and no allocation of its own. The JSON
 * form (sio_handshake_json) is built on demand. */
#ifndef SOCKEYE_HANDSHAKE_H
#define SOCKEYE_HANDSHAKE_H

#include <stddef.h>

#include "http.h"

struct sio_handshake;

/* The alignment handshake_init() needs. */
#define HANDSHAKE_ALIGN _Alignof(long long)

/* The bytes a capture of req takes (an upper bound: repeated names and
 * percent escapes make the capture smaller). */
size_t handshake_size(struct http_request *req);

/* Captures req into mem, which holds handshake_size(req) bytes and is
 * aligned to HANDSHAKE_ALIGN. Never fails. The handshake lives in mem and
 * owns nothing else: releasing mem releases it. Header names are stored
 * lower-case; a repeated header or query key keeps its first value; a
 * query key or value is cut at a decoded %00, and an empty key (only
 * possible that way) is left out. */
struct sio_handshake *handshake_init(void *mem, struct http_request *req);

/* Decodes %XX and '+' of a query component into out (NUL-terminated; out
 * needs len + 1 bytes). Returns the decoded length. Invalid escapes are kept
 * as they are. */
size_t percent_decode(const char *in, size_t len, char *out);

#endif

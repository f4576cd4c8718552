/* handshake: what a Socket.IO connection remembers of its Engine.IO
 * handshake request (struct sio_handshake, public read-only accessors in
 * sockeye.h). Captured once per connection and shared by its sockets. */
#ifndef SOCKEYE_HANDSHAKE_H
#define SOCKEYE_HANDSHAKE_H

#include <cjson/cJSON.h>

#include "http.h"

struct sio_handshake {
    cJSON *headers; /* object, lower-case names */
    cJSON *query;   /* object, percent-decoded values */
    char *address;
    char *url;
    char *time;     /* like JavaScript's Date.toString() */
    int64_t issued; /* ms since the epoch */
    bool secure;
    bool xdomain; /* an Origin header was present */
};

/* Captures req. NULL on allocation failure. */
struct sio_handshake *handshake_new(struct http_request *req);
void handshake_free(struct sio_handshake *h);

/* Decodes %XX and '+' of a query component into out (NUL-terminated; out
 * needs len + 1 bytes). Returns the decoded length. Invalid escapes are kept
 * as they are. */
size_t percent_decode(const char *in, size_t len, char *out);

#endif

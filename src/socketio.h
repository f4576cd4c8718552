/* socketio: the Socket.IO v5 layer (protocol.md §H-§J) on top of the
 * engine: clients, namespaces, sockets, events, acks, rooms, broadcasts.
 * The public functions it implements are declared in sockeye.h. */
#ifndef SOCKEYE_SOCKETIO_H
#define SOCKEYE_SOCKETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "http.h"

struct sio_server;
struct socketio;

/* NULL on allocation failure. Creates the "/" namespace. */
struct socketio *socketio_new(struct sio_server *srv);
/* Frees namespaces and handlers; every client must be gone (engine_free
 * first). NULL is a no-op. */
void socketio_free(struct socketio *io);

/* Engine callbacks, forwarded by the server. */
void socketio_on_open(struct socketio *io, struct sio_session *s, struct http_request *req);
void socketio_on_message(struct socketio *io, struct sio_session *s, const uint8_t *data,
                         size_t len, bool binary);
void socketio_on_close(struct socketio *io, struct sio_session *s, const char *reason);

/* Number of connected sockets in all namespaces. */
size_t socketio_sockets(const struct socketio *io);

#endif

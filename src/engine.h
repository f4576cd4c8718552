/* engine: the Engine.IO v4 server (protocol.md §A-§G).
 *
 * Serves the requests under its path that the HTTP layer hands it: the
 * handshake, long-polling GET/POST, WebSocket connections and the upgrade
 * from polling to WebSocket. Owns every session (struct sio_session, the
 * public handle of one Engine.IO connection) and their heartbeats.
 *
 * Upward, it reports sessions opening, messages and closing through
 * engine_handlers. Downward, engine_send() queues a shared outpacket on a
 * session's transport. Event-loop thread only.
 */
#ifndef SOCKEYE_ENGINE_H
#define SOCKEYE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "deflate.h"
#include "http.h"
#include "log.h"
#include "outpacket.h"

struct engine;
struct sio_session;

struct engine_config {
    const char *path;            /* with leading and trailing '/', e.g. "/socket.io/" */
    unsigned ping_interval_ms;   /* 25000 */
    unsigned ping_timeout_ms;    /* 20000 */
    unsigned upgrade_timeout_ms; /* 10000 */
    size_t max_payload;          /* 1000000 */
    bool polling;                /* transports allowed (both by default) */
    bool websocket;
    bool allow_upgrades; /* true */
    /* CORS: cors_origins NULL = no CORS headers; "*" = any origin; else a
     * comma-separated list of exact origins. */
    const char *cors_origins;
    bool cors_credentials;
    const char *cookie;       /* session cookie name, NULL = none */
    bool per_message_deflate; /* false */
    struct deflate_config deflate;
    bool http_compression; /* true */
    size_t out_soft;       /* per-session queued bytes: drop volatile above */
    size_t out_hard;       /* ... close the session above */
};

void engine_config_default(struct engine_config *cfg);

struct engine_handlers {
    /* A session opened. req is the handshake request (valid during the call
     * only). */
    void (*open)(struct sio_session *s, struct http_request *req, void *arg);
    /* A message packet. data valid during the call only. */
    void (*message)(struct sio_session *s, const uint8_t *data, size_t len, bool binary, void *arg);
    /* The session closed (runs once; the session is freed after it returns
     * unless references are held). reason: "transport close", "transport
     * error", "ping timeout", "parse error", "forced close", "server shutting
     * down". */
    void (*close)(struct sio_session *s, const char *reason, void *arg);
    /* Optional: decide on a handshake request. Return true to allow, false
     * for 403 (code 4 "Forbidden"). */
    bool (*allow)(struct http_request *req, void *arg);
};

/* cfg is copied shallowly: its strings must outlive the engine (or the next
 * engine_set_config). */
struct engine *engine_new(struct event_base *base, const struct engine_config *cfg,
                          const struct engine_handlers *h, void *arg, const struct logger *log);

/* Closes every session with reason "server shutting down" (close handlers
 * run) and frees the engine. NULL is a no-op. */
void engine_free(struct engine *e);

/* Replaces the configuration for sessions created from now on (timers of
 * live sessions keep their values). */
void engine_set_config(struct engine *e, const struct engine_config *cfg);

/* True when the request's path is under the engine's path. */
bool engine_matches(const struct engine *e, const char *path, size_t len);

/* Serves a request under the engine's path. */
void engine_handle_request(struct engine *e, struct http_request *req);
/* The headers of a request with a body (a polling POST) are complete.
 * Returns 0 to read the body, or 400 when another POST of the same session
 * is still being received (the session is then closed, protocol.md §D.17). */
int engine_handle_head(struct engine *e, struct http_request *req);
/* The connection of a pending request (a long-poll GET, or a POST whose body
 * was announced by engine_handle_head) went away. */
void engine_handle_abort(struct engine *e, struct http_request *req);

/* Number of sessions (open ones, and closed polling ones still waiting to
 * hand their close packet to a GET). */
unsigned engine_sessions(const struct engine *e);

/* True while a session is open or a WebSocket is still finishing. Sessions
 * only waiting for their final GET do not count: a drain need not wait for
 * them. */
bool engine_busy(const struct engine *e);

/* Closes every session with the given reason (gracefully: polling sessions
 * get a close packet, WebSockets a close frame). */
void engine_close_all(struct engine *e, const char *reason);

/* --- sessions -------------------------------------------------------- */

enum engine_send_result {
    ENGINE_SENT = 0,
    ENGINE_DROPPED = 1, /* volatile packet dropped */
    ENGINE_CLOSED = -1, /* session closed (or closed now by the hard limit) */
};

/* Queues a packet (a reference is taken; the caller keeps its own). On a
 * WebSocket it is written by reference; on polling it waits for the next GET
 * (answered once per event-loop pass with everything queued). */
int engine_send(struct sio_session *s, struct outpacket *p);

/* Convenience: a message packet from bytes (copied). */
int engine_send_message(struct sio_session *s, const void *data, size_t len, bool binary);

/* Closes the session with a reason (a static string, one of those listed
 * for engine_handlers.close), e.g. "parse error" for a bad upper-layer
 * packet. */
void engine_session_close_reason(struct sio_session *s, const char *reason);

/* Closes the session ("forced close"). The close handler runs (deferred to
 * the event loop, never inside this call). Idempotent. */
void engine_session_close(struct sio_session *s);

const char *engine_session_id(const struct sio_session *s);
/* "polling" or "websocket". */
const char *engine_session_transport(const struct sio_session *s);
bool engine_session_is_open(const struct sio_session *s);
uint64_t engine_session_log_id(const struct sio_session *s);

/* One pointer for the layer above. */
void engine_session_set_data(struct sio_session *s, void *data);
void *engine_session_get_data(const struct sio_session *s);

/* Keep a closed session's memory alive across a callback chain. */
void engine_session_ref(struct sio_session *s);
void engine_session_unref(struct sio_session *s);

#endif

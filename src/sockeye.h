/* sockeye.h: the public C API of sockeye, a Socket.IO v5 / Engine.IO v4
 * server on libevent.
 *
 * Threads: a server lives on one libevent event base and every function here
 * must be called from the thread running that base (callbacks run there too).
 * Several servers may run on several threads, each with its own base.
 *
 * Ownership: strings passed in are copied unless stated otherwise; pointers
 * returned are owned by sockeye and valid as documented per function.
 *
 * Inside callbacks: every function may be called from inside any sockeye
 * callback, except sio_server_free().
 */
#ifndef SOCKEYE_H
#define SOCKEYE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOCKEYE_VERSION "0.1.0"

struct sio_server;
struct sio_session;

enum sio_log_level {
    SIO_LOG_DEBUG = 0,
    SIO_LOG_INFO = 1,
    SIO_LOG_WARN = 2,
    SIO_LOG_ERROR = 3,
    SIO_LOG_OFF = 4,
};

/* Server options. Initialise with sio_config_init(), then change fields.
 * Defaults match the reference Node server where it has one. */
struct sio_config {
    const char *path;            /* "/socket.io/" */
    unsigned ping_interval_ms;   /* 25000 */
    unsigned ping_timeout_ms;    /* 20000 */
    unsigned upgrade_timeout_ms; /* 10000 */
    unsigned connect_timeout_ms; /* 45000: time to join a namespace */
    size_t max_payload;          /* 1000000 bytes per message / polling POST */
    bool polling;                /* transports allowed: both by default */
    bool websocket;
    bool allow_upgrades;             /* true */
    const char *cors_origin;         /* NULL: no CORS; "*": any; or "https://a, https://b" */
    bool cors_credentials;           /* false */
    const char *cookie;              /* session cookie name; NULL (default) sets none */
    bool per_message_deflate;        /* false */
    bool http_compression;           /* true: gzip/deflate polling bodies >= 1 KiB */
    size_t output_soft_limit;        /* 1 MiB queued per client: drop volatile packets above */
    size_t output_hard_limit;        /* 8 MiB queued per client: disconnect it above */
    size_t max_http_header_bytes;    /* 16384 */
    unsigned http_header_timeout_ms; /* 10000 */
    unsigned http_idle_timeout_ms;   /* 60000 */
    unsigned max_connections;        /* 0 = unlimited */
    enum sio_log_level log_level;    /* SIO_LOG_INFO */
    bool log_json;                   /* false: plain text lines on stderr */
    size_t max_attachments;          /* binary attachments per packet: 10 */
    unsigned max_rooms_per_socket;   /* 1000; 0 = unlimited: sio_join fails past it */
    /* Connection state recovery (off when 0): how long a disconnected
     * socket's state and missed packets are kept (reference default 120000). */
    unsigned recovery_max_disconnection_ms;
    bool recovery_skip_middlewares; /* true */
};

void sio_config_init(struct sio_config *cfg);

/* Creates a server on base (not owned). Returns NULL and a reason in err on
 * failure (invalid option). */
struct sio_server *sio_server_new(struct event_base *base, const struct sio_config *cfg, char *err,
                                  size_t errlen);

/* Closes every connection at once and frees the server. NULL is a no-op.
 * Not from inside a callback. It runs the event base without blocking for a
 * few passes so that closing connections release their memory; for a
 * graceful stop call sio_server_shutdown() first. */
void sio_server_free(struct sio_server *srv);

/* Starts listening. address: numeric IPv4/IPv6 or "localhost" (NULL:
 * "0.0.0.0"; "::" also accepts IPv4); port 0 picks a free port; tls_cert and
 * tls_key (PEM files) make it an HTTPS/WSS listener (minimum TLS 1.2).
 * Returns the bound port, or -1 with a reason in err. */
int sio_server_listen(struct sio_server *srv, const char *address, uint16_t port,
                      const char *tls_cert, const char *tls_key, char *err, size_t errlen);

/* Graceful shutdown: stops accepting, closes every session cleanly and calls
 * done(ud) once every connection is gone or grace_ms passed (the rest are
 * then dropped). The server can then be freed. */
void sio_server_shutdown(struct sio_server *srv, unsigned grace_ms,
                         void (*done)(struct sio_server *srv, void *ud), void *ud);

/* --- Handshake requests ------------------------------------------------
 * An optional hook sees every new connection's handshake request (before a
 * session exists) and may refuse it: the client then gets HTTP 403 with
 * Engine.IO error code 4 "Forbidden". */
struct sio_request;

/* A request header (case-insensitive name), NULL when absent. */
const char *sio_request_header(const struct sio_request *req, const char *name);
/* The raw (still percent-encoded) value of a query parameter, copied into
 * out (NUL-terminated, truncated to outlen - 1); false when absent. */
bool sio_request_query(const struct sio_request *req, const char *key, char *out, size_t outlen);
/* The peer address as text ("127.0.0.1"). */
const char *sio_request_address(const struct sio_request *req);

typedef bool (*sio_allow_fn)(const struct sio_request *req, void *ud);
/* Installs the hook (NULL removes it). Return true to allow. */
void sio_server_set_allow_request(struct sio_server *srv, sio_allow_fn fn, void *ud);

/* --- Engine.IO level (like the npm `engine.io` package) ----------------
 * Setting engine handlers makes the server a plain Engine.IO server: every
 * message goes to these callbacks and no Socket.IO layer runs. */

struct sio_engine_handlers {
    void (*open)(struct sio_session *s, void *ud);
    /* data is valid during the call only. */
    void (*message)(struct sio_session *s, const void *data, size_t len, bool binary, void *ud);
    /* reason: "transport close", "transport error", "ping timeout", "parse
     * error", "forced close", "server shutting down". s is freed after this
     * returns. */
    void (*close)(struct sio_session *s, const char *reason, void *ud);
};

void sio_server_set_engine_handlers(struct sio_server *srv, const struct sio_engine_handlers *h,
                                    void *ud);

/* Sends one message (copied). Returns 0, or -1 when the session is closed or
 * was closed because its output exceeded the hard limit. */
int sio_session_send(struct sio_session *s, const void *data, size_t len, bool binary);

/* Closes the session; the close callback follows from the event loop. */
void sio_session_close(struct sio_session *s);

/* The Engine.IO session id (20 characters). Valid while s is. */
const char *sio_session_id(const struct sio_session *s);
/* "polling" or "websocket". */
const char *sio_session_transport(const struct sio_session *s);
void sio_session_set_data(struct sio_session *s, void *data);
void *sio_session_get_data(const struct sio_session *s);

/* --- Socket.IO level ----------------------------------------------------
 * Unless engine handlers are set, the server runs the Socket.IO v5 layer:
 * clients connect to namespaces; each connection to a namespace is a socket.
 *
 * JSON values are cJSON trees (<cjson/cJSON.h>). Binary data inside them is
 * a binary node made with sio_binary() (see sio_is_binary/sio_binary_data);
 * such trees must not be printed or duplicated with cJSON's own functions.
 * Functions that take a `cJSON *args` take ownership of it (also on failure);
 * args is an array of the event's arguments (NULL: none). Trees passed to
 * callbacks are owned by sockeye and valid during the call only (detach what
 * you keep with cJSON_DetachItemFromArray, or copy with sio_json_copy).
 */
struct sio_namespace;
struct sio_socket;
struct cJSON;

/* The namespace called name ("/" exists from the start; "chat" means
 * "/chat"), created if needed. NULL on allocation failure or an invalid
 * name. */
struct sio_namespace *sio_of(struct sio_server *srv, const char *name);

/* A dynamic namespace: clients may connect to any name matching the glob
 * pattern (`*` matches any run of characters, `?` one character, `[abc]` a
 * set, as fnmatch(3) without flags). Each matching name gets a child
 * namespace on first connect, sharing the handlers registered on the
 * returned parent; empty children are removed unless cleanup is false.
 * Static namespaces take precedence over patterns; patterns are tried in the
 * order they were added. */
struct sio_namespace *sio_of_pattern(struct sio_server *srv, const char *pattern, bool cleanup);

const char *sio_namespace_name(const struct sio_namespace *nsp);
/* Connected sockets of the namespace (for a pattern: of all its children). */
size_t sio_namespace_size(const struct sio_namespace *nsp);

/* The handshake of a connection, shared by all its sockets. */
struct sio_handshake;

/* Connect middleware: runs for every connection attempt, in order, before
 * the socket joins the namespace. Return true to continue; to refuse, call
 * sio_reject() and return false. Synchronous. */
typedef bool (*sio_middleware_fn)(struct sio_socket *sock, void *ud);
void sio_use(struct sio_namespace *nsp, sio_middleware_fn fn, void *ud);
/* Refuses the connection with a CONNECT_ERROR carrying message and data
 * (data may be NULL; taken). Only inside a middleware. */
void sio_reject(struct sio_socket *sock, const char *message, struct cJSON *data);

typedef void (*sio_connection_fn)(struct sio_socket *sock, void *ud);
/* Called when a socket joined the namespace (after its CONNECT reply). */
void sio_on_connection(struct sio_namespace *nsp, sio_connection_fn fn, void *ud);

/* Called after the socket left the namespace and its rooms.
 * reason: "client namespace disconnect", "server namespace disconnect",
 * "transport close", "transport error", "ping timeout", "parse error",
 * "forced close", "server shutting down". */
typedef void (*sio_disconnect_fn)(struct sio_socket *sock, const char *reason, void *ud);
void sio_on_disconnect(struct sio_namespace *nsp, sio_disconnect_fn fn, void *ud);
/* Like sio_on_disconnect, but called before the socket leaves its rooms
 * (the reference's "disconnecting"): sio_in_room still answers for them. */
void sio_on_disconnecting(struct sio_namespace *nsp, sio_disconnect_fn fn, void *ud);

/* An event from a client. args: the arguments after the event name (an
 * array, never NULL). ack_id: >= 0 when the client wants an ack (answer with
 * sio_ack(sock, ack_id, ...), now or later, at most once), else -1. */
typedef void (*sio_event_fn)(struct sio_socket *sock, const char *event, struct cJSON *args,
                             int64_t ack_id, void *ud);
/* Registers fn for event on every socket of the namespace. One handler per
 * event name; registering again replaces it. */
void sio_on(struct sio_namespace *nsp, const char *event, sio_event_fn fn, void *ud);
/* Catch-all: events with no handler of their own. */
void sio_on_any(struct sio_namespace *nsp, sio_event_fn fn, void *ud);

/* Emits event(args...) to one socket. Returns 0, 1 if dropped (volatile), or
 * -1 if the socket is disconnected. */
int sio_emit(struct sio_socket *sock, const char *event, struct cJSON *args);
int sio_emit_volatile(struct sio_socket *sock, const char *event, struct cJSON *args);

/* Emits and waits for the client's ack: fn runs once, with the ack's
 * arguments (an array) or with args NULL and timed_out true after timeout_ms
 * (0: no timeout) or when the socket disconnects first. */
typedef void (*sio_ack_fn)(struct sio_socket *sock, struct cJSON *args, bool timed_out, void *ud);
int sio_emit_with_ack(struct sio_socket *sock, const char *event, struct cJSON *args,
                      unsigned timeout_ms, sio_ack_fn fn, void *ud);

/* Answers an event's ack request. Returns 0 or -1 (disconnected). */
int sio_ack(struct sio_socket *sock, int64_t ack_id, struct cJSON *args);

/* Broadcast targets: rooms (union; none = the whole namespace) minus the
 * members of except rooms, minus except_socket. */
struct sio_target {
    const char *const *rooms;
    size_t n_rooms;
    const char *const *except;
    size_t n_except;
    struct sio_socket *except_socket; /* e.g. the sender; NULL for none */
    bool is_volatile;                 /* drop for clients that are not ready */
    bool no_compress;                 /* never permessage-deflate this packet (the
                                         reference's compress(false)) */
};

/* Emits to every targeted socket, encoding the packet once. Returns the
 * number of sockets it was queued for, or -1 on allocation failure. */
int sio_broadcast(struct sio_namespace *nsp, const struct sio_target *t, const char *event,
                  struct cJSON *args);

/* Broadcast expecting an ack from every targeted client: fn runs once, when
 * all answered or after timeout_ms, with an array of the responses received
 * (each client's first ack argument, as the reference collects them) and
 * timed_out. */
typedef void (*sio_broadcast_ack_fn)(struct sio_namespace *nsp, struct cJSON *responses,
                                     bool timed_out, void *ud);
int sio_broadcast_with_ack(struct sio_namespace *nsp, const struct sio_target *t, const char *event,
                           struct cJSON *args, unsigned timeout_ms, sio_broadcast_ack_fn fn,
                           void *ud);

/* Rooms. Returns 0 (also when already in / not in it) or -1 on allocation
 * failure or when the socket is already in max_rooms_per_socket rooms. */
int sio_join(struct sio_socket *sock, const char *room);
int sio_leave(struct sio_socket *sock, const char *room);
bool sio_in_room(const struct sio_socket *sock, const char *room);
/* Calls fn for each room the socket joined (not the room named by its own
 * id), in join order. fn must not join or leave rooms. */
void sio_socket_each_room(const struct sio_socket *sock, void (*fn)(const char *room, void *ud),
                          void *ud);
/* Members of a room in this namespace (on this node). */
size_t sio_room_size(const struct sio_namespace *nsp, const char *room);

/* Disconnects the socket from its namespace ("server namespace disconnect");
 * with close_connection also closes the whole connection. */
void sio_disconnect(struct sio_socket *sock, bool close_connection);

/* The socket id (20 characters), valid while the socket is. */
const char *sio_socket_id(const struct sio_socket *sock);
struct sio_namespace *sio_socket_namespace(const struct sio_socket *sock);
struct sio_server *sio_socket_server(const struct sio_socket *sock);
bool sio_socket_connected(const struct sio_socket *sock);
/* True when connection state recovery restored this socket. */
bool sio_socket_recovered(const struct sio_socket *sock);
/* The CONNECT payload (an object, {} when absent). */
const struct cJSON *sio_socket_auth(const struct sio_socket *sock);
const struct sio_handshake *sio_socket_handshake(const struct sio_socket *sock);

/* Handshake details. Header names are lower case. */
const char *sio_handshake_header(const struct sio_handshake *h, const char *name);
/* A query parameter, percent-decoded; NULL when absent. */
const char *sio_handshake_query(const struct sio_handshake *h, const char *name);
const char *sio_handshake_address(const struct sio_handshake *h);
const char *sio_handshake_url(const struct sio_handshake *h);
bool sio_handshake_secure(const struct sio_handshake *h);
/* Milliseconds since the epoch when the connection was established. */
int64_t sio_handshake_issued(const struct sio_handshake *h);
/* The whole handshake as {headers, time, address, xdomain, secure, issued,
 * url, query, auth}; the caller owns the result. */
struct cJSON *sio_handshake_json(const struct sio_handshake *h, const struct cJSON *auth);

/* Per-socket JSON data (an object; created empty). Restored with the socket
 * by connection state recovery. The tree belongs to the socket. */
struct cJSON *sio_socket_data(struct sio_socket *sock);
/* A pointer for the application, never touched by sockeye. */
void sio_socket_set_user(struct sio_socket *sock, void *user);
void *sio_socket_get_user(const struct sio_socket *sock);

/* Binary values inside argument trees. */
struct cJSON *sio_binary(const void *data, size_t len);
bool sio_is_binary(const struct cJSON *item);
const uint8_t *sio_binary_data(const struct cJSON *item, size_t *len);
/* A deep copy that also copies binary nodes. */
struct cJSON *sio_json_copy(const struct cJSON *item);

#ifdef __cplusplus
}
#endif

#endif

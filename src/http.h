/* http: HTTP/1.1 server connections on libevent bufferevents, parsed with
 * http-parser.
 *
 * An http_server owns every connection it accepted. Each connection parses
 * one request at a time: when a request is complete (headers and body) the
 * on_request callback runs; the handler answers at once or later (long
 * polling) with http_respond(). Bytes of a next pipelined request are kept
 * but not parsed until the current response has been queued. When the peer
 * closes or the connection fails while a request is unanswered, on_abort runs
 * for it and the request is freed afterwards.
 *
 * Limits enforced here (the handler never sees a request over them):
 * header bytes (431), URL length (414), body size (413, then close), a
 * header timeout (from a request's first byte until its headers are complete:
 * the connection is closed, no response), a body timeout and a keep-alive idle
 * timeout. Bodies may be sent with Content-Length or chunked.
 *
 * WebSocket upgrades: a request with "Connection: upgrade" + "Upgrade:" is
 * delivered with upgrade == true and an empty body; the handler either
 * responds (e.g. 400; the connection then closes, since the bytes behind the
 * request belong to the other protocol) or takes the bufferevent with
 * http_request_upgrade().
 *
 * Thread rules: everything runs on the server's event base thread. The
 * process must ignore SIGPIPE (writing to a peer that reset raises it).
 */
#ifndef SOCKEYE_HTTP_H
#define SOCKEYE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

struct http_server;
struct http_conn;
struct http_request;

enum http_method_kind {
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_OPTIONS,
    HTTP_M_PATCH,
    HTTP_M_OTHER,
};

struct http_config {
    size_t max_header_bytes;    /* request line + headers (default 16384) */
    size_t max_url;             /* default 8192 */
    size_t max_body;            /* default 1000000; larger bodies -> 413 */
    unsigned header_timeout_ms; /* default 10000 */
    unsigned body_timeout_ms;   /* default 30000 */
    unsigned idle_timeout_ms;   /* keep-alive idle, default 60000; a timeout of 0 is none */
    unsigned max_connections;   /* 0 = unlimited; past it new connections are closed */
    size_t compress_min;        /* compress responses with HTTP_RESP_COMPRESS from
                                   this body size (default 1024) */
};

void http_config_default(struct http_config *cfg);

struct http_callbacks {
    /* A complete request. The request stays valid until it is answered
     * (http_respond*), taken (http_request_upgrade) or aborted. */
    void (*on_request)(struct http_request *req, void *arg);
    /* Optional: the headers of a request with a body are complete and the
     * body is about to be read. Return 0 to read it, or an HTTP status
     * (>= 400) to refuse the request (answered with an empty body, then the
     * connection closes). After 0, the request reaches on_request, or
     * on_abort if the connection ends before the body is complete. */
    int (*on_head)(struct http_request *req, void *arg);
    /* The connection of an unanswered request went away. req is freed after
     * this returns; it must not be answered. May be NULL. */
    void (*on_abort)(struct http_request *req, void *arg);
};

/* Copies *cfg and *cb. Returns NULL on allocation failure. */
struct http_server *http_server_new(struct event_base *base, const struct http_config *cfg,
                                    const struct http_callbacks *cb, void *arg);

/* Closes every connection (on_abort runs for unanswered requests) and frees
 * the server. NULL is a no-op. Must not be called from on_request/on_abort. */
void http_server_free(struct http_server *hs);

/* Replaces the limits for requests parsed from now on. */
void http_server_set_config(struct http_server *hs, const struct http_config *cfg);

/* Takes ownership of bev (a connected socket or TLS bufferevent, created with
 * BEV_OPT_CLOSE_ON_FREE) and starts reading requests from it. peer is copied.
 * On failure (allocation, connection cap) bev is freed. */
void http_server_accept(struct http_server *hs, struct bufferevent *bev,
                        const struct sockaddr *peer, socklen_t peer_len, bool tls);

/* Number of open connections (not counting upgraded ones). */
unsigned http_server_connections(const struct http_server *hs);

/* Stops parsing new requests on every connection and closes each one as soon
 * as it has no unanswered request and its output is flushed (a request already
 * being received is still delivered and answered). New connections are closed. */
void http_server_drain(struct http_server *hs);

/* --- requests --------------------------------------------------------- */

enum http_method_kind http_request_method(const struct http_request *req);
/* The method's name as sent ("GET"). */
const char *http_request_method_name(const struct http_request *req);
/* The request target as sent, NUL-terminated ("/socket.io/?EIO=4&..."). */
const char *http_request_url(const struct http_request *req);
/* The path part of the target (before '?'), not percent-decoded. */
const char *http_request_path(const struct http_request *req, size_t *len);
/* The query string after '?' (empty when absent), not percent-decoded. */
const char *http_request_query(const struct http_request *req, size_t *len);

/* Looks up the first query parameter named key. Returns true and sets
 * *val and *len to its raw (still percent-encoded) value; false when absent. */
bool http_request_query_param(const struct http_request *req, const char *key, const char **val,
                              size_t *len);

/* The value of the first header named name (case-insensitive), NUL-terminated,
 * leading/trailing whitespace removed; NULL when absent. Valid while req is. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Iterates headers: returns false past the last. */
bool http_request_header_at(const struct http_request *req, size_t i, const char **name,
                            const char **value);

/* The body, contiguous and WRITABLE (decoders may work in place); valid while
 * req is. len 0 when there is none. */
uint8_t *http_request_body(struct http_request *req, size_t *len);

bool http_request_is_upgrade(const struct http_request *req);
bool http_request_is_tls(const struct http_request *req);
bool http_request_keep_alive(const struct http_request *req);
const struct sockaddr *http_request_peer(const struct http_request *req, socklen_t *len);
/* The peer address as text ("127.0.0.1", "::1"). */
const char *http_request_peer_address(const struct http_request *req);
/* Identifies the connection in logs. */
uint64_t http_request_conn_id(const struct http_request *req);

/* A per-request pointer for the handler (e.g. the session a long poll is
 * waiting on); NULL initially. */
void http_request_set_data(struct http_request *req, void *data);
void *http_request_get_data(const struct http_request *req);

/* --- responses -------------------------------------------------------- */

enum http_resp_flags {
    HTTP_RESP_CLOSE = 1,    /* close the connection after this response */
    HTTP_RESP_COMPRESS = 2, /* gzip/deflate the body when the request accepts
                               it and the body is >= compress_min */
    HTTP_RESP_NO_BODY = 4,  /* HEAD-style: send Content-Length of body but not the body */
};

/* Answers req and frees it. Writes the status line, `extra_headers` (zero or
 * more complete "Name: value\r\n" lines, may be NULL), Content-Length (and
 * Content-Encoding when compressed), Connection, then the body (copied).
 * content_type NULL means none. Afterwards the connection parses the next
 * request, or closes (HTTP_RESP_CLOSE, no keep-alive, or draining). */
void http_respond(struct http_request *req, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len, unsigned flags);

/* Same, taking the body from an evbuffer (drained into the output without a
 * copy where possible). */
void http_respond_buffer(struct http_request *req, int status, const char *content_type,
                         const char *extra_headers, struct evbuffer *body, unsigned flags);

/* Takes the connection of an upgrade request: returns its bufferevent (input
 * holds any bytes received after the request; callbacks and timeouts are
 * cleared; still owned by nobody else) and frees req and the http connection.
 * The caller now owns bev and must write the 101 response itself. */
struct bufferevent *http_request_upgrade(struct http_request *req);

/* The standard reason phrase for a status code ("Bad Request"). */
const char *http_status_reason(int status);

#endif

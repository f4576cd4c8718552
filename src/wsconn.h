/* wsconn: one server-side WebSocket connection on a bufferevent, after the
 * HTTP 101 response has been queued.
 *
 * Reads frames with protocol/ws (and protocol/deflate when permessage-deflate
 * was negotiated), answers pings, runs the close handshake, and writes
 * frames. Output is bounded: the bytes queued in the bufferevent's output are
 * compared with a soft limit (volatile packets are dropped above it) and a
 * hard limit (the connection is closed with 1008 "slow consumer" when a send
 * would go past it).
 *
 * Lifetime: the owner creates it with wsconn_new() and ends it with
 * wsconn_close() (graceful) or wsconn_abort(). Either way the `closed`
 * handler runs exactly once, never from inside a wsconn_* call made by the
 * owner (it is deferred to the event loop), and the wsconn frees itself after
 * it returns. Peer close, protocol errors, I/O errors and timeouts also end in
 * `closed`. Event-loop thread only.
 *
 * I/O: given a flusher (below), a plain-socket connection writes its output
 * itself, once per event-loop pass, and leaves only what the kernel refuses
 * to the bufferevent's write event. It also tops up a full 4 KiB read by
 * libevent with one read of its own, up to the bufferevent's
 * bufferevent_get_max_single_read() (16 KiB by default), so that a client's
 * burst is decoded, and what it broadcasts written, in fewer loop passes.
 * Otherwise (TLS, no flusher) the bufferevent reads and writes as usual.
 */
#ifndef SOCKEYE_WSCONN_H
#define SOCKEYE_WSCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>

#include "deflate.h"
#include "outpacket.h"

struct wsconn;

/* One per event base, shared by its connections. A connection that queued
 * output during a loop pass is listed; at the end of the pass (an active
 * event) the flusher writes each listed connection's whole output with one
 * writev. The write event (an epoll_ctl to arm it, another to disarm it) is
 * armed only when the kernel did not take everything, and disarmed once the
 * bufferevent has drained the rest. */
struct wsconn_flusher;

/* NULL on allocation failure. */
struct wsconn_flusher *wsconn_flusher_new(struct event_base *base);

/* Call once every connection created with it has ended (its `closed` ran),
 * before the event base is freed. NULL is a no-op. */
void wsconn_flusher_free(struct wsconn_flusher *f);

struct wsconn_config {
    size_t max_message;        /* received message limit (-> close 1009); 0 = none */
    size_t out_soft;           /* drop volatile packets above this many queued bytes */
    size_t out_hard;           /* close 1008 when a send would exceed this; 0 = none */
    unsigned close_timeout_ms; /* wait for the peer's close frame / flush (default 5000 if 0) */
    /* permessage-deflate: NULL when not negotiated. Copied. */
    const struct deflate_params *deflate;
    const struct deflate_config *deflate_cfg;
    /* Writes through this flusher; NULL: the bufferevent writes. Ignored
     * (the bufferevent writes) unless bev is a plain socket bufferevent:
     * TLS, filter and pair bufferevents always write through libevent. */
    struct wsconn_flusher *flusher;
};

struct wsconn_handlers {
    /* A complete message (inflated if compressed; text is valid UTF-8). data is
     * valid during the call only (it may point into a buffer that is reused). */
    void (*message)(struct wsconn *ws, const uint8_t *data, size_t len, bool binary, void *arg);
    /* The connection is finished. code: the close code sent or received
     * (1006 when the TCP connection simply ended), reason: a static English
     * string for logs ("peer closed", "protocol error", "message too big",
     * "slow consumer", "timeout", "closed by server", ...). The wsconn is freed
     * right after this returns. */
    void (*closed)(struct wsconn *ws, uint16_t code, const char *reason, void *arg);
};

/* Takes ownership of bev (its input may already hold frame bytes that
 * arrived with the upgrade request: they are processed from the event loop,
 * not inside this call). Returns NULL on allocation failure (bev is then
 * freed). */
struct wsconn *wsconn_new(struct bufferevent *bev, const struct wsconn_config *cfg,
                          const struct wsconn_handlers *h, void *arg);

/* Replaces the handlers and their argument (e.g. when an upgrade probe becomes
 * the session's transport). */
void wsconn_set_handlers(struct wsconn *ws, const struct wsconn_handlers *h, void *arg);

enum wsconn_send_result {
    WSCONN_OK = 0,
    WSCONN_DROPPED = 1, /* volatile packet dropped (above soft limit) */
    WSCONN_CLOSED = -1, /* the connection is closing or was closed by this send
                           (hard limit): nothing was queued */
};

/* Queues one text or binary message (copied; compressed when negotiated and
 * at least deflate_cfg->threshold bytes). */
int wsconn_send(struct wsconn *ws, bool binary, const void *data, size_t len);

/* Queues a shared packet: without deflate the packet's frame bytes are added
 * by reference (no copy); with deflate the data is compressed for this
 * connection. Honors p->is_volatile. */
int wsconn_send_packet(struct wsconn *ws, struct outpacket *p);

/* Starts a graceful close: sends a close frame with code/reason (code 0: an
 * empty close frame), stops delivering messages, flushes, waits for the
 * peer's close frame or close_timeout_ms, then ends. Idempotent. */
void wsconn_close(struct wsconn *ws, uint16_t code, const char *reason);

/* Ends the connection at once (queued output is discarded). `closed` still
 * runs, deferred. Idempotent. */
void wsconn_abort(struct wsconn *ws);

/* Bytes queued for writing. */
size_t wsconn_output_bytes(const struct wsconn *ws);

/* True once wsconn_close/abort was called or the connection failed. */
bool wsconn_is_closing(const struct wsconn *ws);

/* An id for log lines (set by the owner; 0 initially). */
void wsconn_set_id(struct wsconn *ws, uint64_t id);
uint64_t wsconn_id(const struct wsconn *ws);

#endif

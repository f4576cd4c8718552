/* wsconn: one server-side WebSocket connection, handed over on its
 * bufferevent after the HTTP 101 response has been queued.
 *
 * Reads frames with protocol/ws (and protocol/deflate when permessage-deflate
 * was negotiated), answers pings, runs the close handshake, and writes
 * frames. Output is bounded: the bytes queued for writing are
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
 * I/O has two modes.
 * - Direct (a plain-socket bufferevent and a wsconn_loop given): the wsconn
 *   takes the socket over from the bufferevent, which it frees at once. One
 *   event watches the socket; a readable event is one recv(2) into the loop's
 *   shared read buffer, decoded in place; output queued during a loop pass
 *   leaves in one writev at the end of the pass, and the write event is armed
 *   only while the kernel refuses bytes. Why not the bufferevent: libevent's
 *   socket read asks the kernel how much is waiting (an ioctl) before every
 *   read, and a bufferevent with its two buffers is most of an idle
 *   connection's memory (tests/bench/README.md has the numbers).
 * - Buffered (TLS, or no loop): the bufferevent reads and writes as usual.
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

/* What the direct-mode connections of one event base share: the read buffer
 * (16 KiB) and the list of connections that queued output during the current
 * loop pass, written at the end of the pass (an active event) with one
 * writev each. */
struct wsconn_loop;

/* NULL on allocation failure. */
struct wsconn_loop *wsconn_loop_new(struct event_base *base);

/* Call once every connection created with it has ended (its `closed` ran),
 * before the event base is freed. NULL is a no-op. */
void wsconn_loop_free(struct wsconn_loop *l);

struct wsconn_config {
    size_t max_message;        /* received message limit (-> close 1009); 0 = none */
    size_t out_soft;           /* drop volatile packets above this many queued bytes */
    size_t out_hard;           /* close 1008 when a send would exceed this; 0 = none */
    unsigned close_timeout_ms; /* wait for the peer's close frame / flush (default 5000 if 0) */
    /* permessage-deflate: NULL when not negotiated. Copied. */
    const struct deflate_params *deflate;
    const struct deflate_config *deflate_cfg;
    /* Direct mode on this loop; NULL: buffered mode. Ignored (buffered
     * mode) unless bev is a plain socket bufferevent: TLS, filter and pair
     * bufferevents always do their own I/O. */
    struct wsconn_loop *loop;
};

struct wsconn_handlers {
    /* A complete message (inflated if compressed; text is valid UTF-8). data is
     * valid during the call only (it may point into a buffer that is reused).
     * The handler may send and close, but must not run the event loop (a
     * direct connection's data may be in the loop's shared read buffer). */
    void (*message)(struct wsconn *ws, const uint8_t *data, size_t len, bool binary, void *arg);
    /* The connection is finished. code: the close code sent or received
     * (1006 when the TCP connection simply ended), reason: a static English
     * string for logs ("peer closed", "protocol error", "message too big",
     * "slow consumer", "timeout", "closed by server", ...). The wsconn is freed
     * right after this returns. */
    void (*closed)(struct wsconn *ws, uint16_t code, const char *reason, void *arg);
};

/* Takes ownership of bev (its input may already hold frame bytes that
 * arrived with the upgrade request, and its output the HTTP 101 response:
 * input is processed from the event loop, not inside this call). In direct
 * mode bev is freed here and its socket kept. Returns NULL on allocation
 * failure (bev and its socket are then freed). */
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

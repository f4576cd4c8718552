/* wsclient.h: one Socket.IO v5 client over a raw WebSocket, for the load
 * generator.
 *
 * A client connects to 127.0.0.1, upgrades to WebSocket straight away
 * (GET /socket.io/?EIO=4&transport=websocket), waits for the Engine.IO open
 * packet, sends CONNECT for namespace "/" ("40") and is ready when the
 * CONNECT reply ("40{...}") arrives. It answers Engine.IO pings by itself.
 * Frames it sends are masked (RFC 6455 client frames); frames it receives
 * must be unmasked and unfragmented (as server frames are).
 *
 * Everything runs on the event base given to wsc_ctx_init(); callbacks run
 * from that base's loop (and must not run it themselves: the data they get
 * lives in the context's shared read buffer). A client is never freed by this
 * module: after the closed callback it stays inert until the owner calls
 * wsc_free().
 */
#ifndef SOCKEYE_BENCH_WSCLIENT_H
#define SOCKEYE_BENCH_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include <event2/event.h>

struct wsc;

struct wsc_callbacks {
    /* The Socket.IO CONNECT reply arrived: the handshake is complete. */
    void (*ready)(struct wsc *c, void *ud);
    /* A Socket.IO EVENT packet for "/": data points at its JSON array (after
     * "42" and any ack id), valid only during the call. */
    void (*event)(struct wsc *c, const char *data, size_t len, void *ud);
    /* A Socket.IO ACK packet for "/": the ack id and its JSON array, valid
     * only during the call. */
    void (*ack)(struct wsc *c, uint64_t id, const char *data, size_t len, void *ud);
    /* The connection is over (error, protocol violation or close by the
     * server); reason is a static or short-lived string, valid during the
     * call. Called at most once per client; no other callback follows. */
    void (*closed)(struct wsc *c, const char *reason, void *ud);
};

/* The most one recv() takes (the size of the shared read buffer). */
#define WSC_READ_MAX 65536

/* Shared by every client of one run: where to connect, the WebSocket key and
 * the accept value expected back, the frame-mask generator state, and the
 * buffer every client receives into (all clients run on one loop, and a
 * read is parsed before the loop moves on). */
struct wsc_ctx {
    struct event_base *base;
    struct sockaddr_in addr;
    char host[32];       /* Host header value: "127.0.0.1:<port>" */
    char key[32];        /* Sec-WebSocket-Key (base64 of 16 random bytes) */
    char accept[32];     /* the Sec-WebSocket-Accept the server must answer */
    uint64_t mask_state; /* xorshift state for frame masks */
    const struct wsc_callbacks *cb;
    uint8_t rbuf[WSC_READ_MAX];
};

/* Fills ctx for 127.0.0.1:port. Returns 0, or -1 if the random key could not
 * be made. ctx must outlive every client made from it. */
int wsc_ctx_init(struct wsc_ctx *ctx, struct event_base *base, uint16_t port,
                 const struct wsc_callbacks *cb);

/* Starts one client: creates the socket (with SO_RCVBUF = rcvbuf when
 * rcvbuf > 0, set before connecting so that the TCP window stays small) and
 * begins the TCP connect. Returns NULL on failure with *err set to a static
 * reason (e.g. out of file descriptors); no callback is called then. */
struct wsc *wsc_new(struct wsc_ctx *ctx, int rcvbuf, void *ud, const char **err);

/* Frees the client and closes its socket at once (queued output is dropped).
 * NULL is a no-op. Must not be called from inside one of c's callbacks. */
void wsc_free(struct wsc *c);

/* Queues one masked text frame carrying len bytes of data. Returns 0, or -1
 * if the client is closed or memory ran out. */
int wsc_send_text(struct wsc *c, const char *data, size_t len);

/* Small frames are normally written to the socket at once when nothing is
 * queued; after this call every frame is queued and the bufferevent writes
 * them in one go per loop pass (for a sender that wants bursts). */
void wsc_batch_writes(struct wsc *c);

/* Stops reading from the socket for good: the kernel receive buffer fills and
 * the server's writes back up (a slow consumer). Frames already read are
 * still handled, even when this is called from one of c's callbacks. */
void wsc_stop_reading(struct wsc *c);

/* Microseconds from wsc_new() to the ready callback (0 before it). */
uint64_t wsc_handshake_us(const struct wsc *c);

/* True once the ready callback ran and before closed. */
bool wsc_is_ready(const struct wsc *c);

/* The ud given to wsc_new(). */
void *wsc_userdata(const struct wsc *c);

/* Monotonic time in microseconds. */
uint64_t wsc_now_us(void);

#endif

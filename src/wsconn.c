#include "wsconn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "buf.h"
#include "utf8.h"
#include "ws.h"

enum wsconn_state {
    ST_OPEN,
    ST_CLOSING, /* our close frame is queued: flush, maybe wait for the peer's */
    ST_DONE,    /* `closed` is scheduled; nothing more is read or written */
};

#define DEFAULT_CLOSE_TIMEOUT_MS 5000u

/* Buffered mode: the decoder consumes everything it is given, so the input
 * rarely holds more than one socket read. Bounding the pullup keeps a backlog
 * (e.g. bytes that arrived while a TLS handshake was in progress) from being
 * made contiguous in one huge copy; a frame larger than this simply goes
 * through the decoder's reassembly buffer. */
#define PULL_MAX (64 * 1024)

/* Direct mode: the size of the loop's read buffer, and so the most one
 * readable event takes from a socket (as much as a bufferevent reads per
 * callback). What is left is read on the next pass (the socket stays
 * readable), so one flooding client cannot hold the loop, and what one
 * client's burst makes the server queue (a broadcast to every receiver per
 * message) stays bounded per pass. 64 KiB reads made the fan-out benchmark
 * faster (fewer, larger writes) but its peak memory 2.6 times higher. */
#define READ_MAX (16 * 1024)

/* Frames up to this size are copied into the output instead of referenced:
 * an evbuffer reference costs a chain allocation plus a cleanup call, more
 * than copying a small frame into space the output buffer usually already
 * has. Most Socket.IO messages are below it. */
#define COPY_MAX 128

/* The inflate buffer is kept between messages up to this capacity (a client
 * that negotiated permessage-deflate usually compresses every message), and
 * freed above it so one large message does not pin memory. */
#define INFLATE_KEEP_MAX 4096

/* A compressed frame's storage is shrunk to fit when this much is unused. */
#define SHRINK_SLACK 1024

struct wsconn_loop {
    struct event *flush_ev; /* active while list is not empty */
    struct wsconn *list;    /* connections with output queued this pass */
    uint8_t *rbuf;          /* READ_MAX bytes: every direct read lands here */
};

/* Failure kinds for on_failure(). */
enum {
    FAIL_EOF = 1,
    FAIL_ERROR = 2,
    FAIL_TIMEOUT = 4,
};

struct wsconn {
    struct bufferevent *bev;  /* buffered mode; NULL in direct mode */
    struct event *ev;         /* direct mode: the socket's read (+ write while armed) event */
    struct evbuffer *out;     /* output: the bufferevent's, or our own in direct mode */
    struct wsconn_loop *loop; /* direct mode; NULL in buffered mode */
    struct wsconn *next_listed;
    struct wsconn_handlers h;
    void *arg;
    uint64_t id;
    size_t max_message;
    size_t out_soft;
    size_t out_hard;
    size_t deflate_threshold;
    struct deflate_ctx *deflate; /* NULL without permessage-deflate */
    struct event *timer;         /* close timeout; created when a close starts */
    struct buf inflated;         /* allocated by the first compressed message */
    struct buf early;            /* direct mode: bytes that came with the upgrade request */
    const char *end_reason;
    unsigned close_timeout_ms;
    uint16_t end_code;
    uint8_t state;
    bool got_close;      /* the peer's close frame arrived, or we stopped waiting for it */
    bool by_server;      /* the close was started by wsconn_close() */
    bool decoder_failed; /* input is discarded from now on */
    bool listed;         /* on loop->list */
    bool write_armed;    /* direct mode: ev waits for writability too */
    bool finished;       /* `closed` ran; only loop->list still holds it */
    struct ws_decoder dec;
};

static void bev_read_cb(struct bufferevent *bev, void *arg);
static void bev_write_cb(struct bufferevent *bev, void *arg);
static void bev_event_cb(struct bufferevent *bev, short what, void *arg);
static void direct_cb(evutil_socket_t fd, short what, void *arg);

static evutil_socket_t sock_fd(const struct wsconn *ws)
{
    return ws->bev ? bufferevent_getfd(ws->bev) : event_get_fd(ws->ev);
}

static struct event_base *base_of(const struct wsconn *ws)
{
    return ws->bev ? bufferevent_get_base(ws->bev) : event_get_base(ws->ev);
}

/* Sends RST instead of FIN on close: the kernel would otherwise keep trying
 * to deliver bytes nobody is going to read. */
static void discard_kernel_output(struct wsconn *ws)
{
    evutil_socket_t fd = sock_fd(ws);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Every ending goes through here and `closed` runs from a deferred callback
 * (the bufferevent's event callback, or the direct event made active):
 * never inside a call made by the owner, and never while a read callback is
 * still looking at the connection. Neither needs an allocation, so ending
 * cannot fail. */
static void end(struct wsconn *ws, uint16_t code, const char *reason, bool reset)
{
    if (ws->state == ST_DONE)
        return;
    ws->state = ST_DONE;
    ws->end_code = code;
    ws->end_reason = reason;
    if (ws->timer)
        event_del(ws->timer);
    if (reset)
        discard_kernel_output(ws);
    if (ws->bev) {
        bufferevent_disable(ws->bev, EV_READ | EV_WRITE);
        bufferevent_trigger_event(ws->bev, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
    } else {
        event_del(ws->ev);
        event_active(ws->ev, EV_READ, 0);
    }
}

static void finish(struct wsconn *ws)
{
    if (ws->h.closed)
        ws->h.closed(ws, ws->end_code, ws->end_reason, ws->arg);
    if (ws->bev) {
        bufferevent_free(ws->bev);
        ws->bev = NULL;
    } else {
        evutil_socket_t fd = event_get_fd(ws->ev);
        event_free(ws->ev);
        evutil_closesocket(fd);
        evbuffer_free(ws->out);
    }
    ws->out = NULL;
    ws->finished = true;
    if (ws->timer)
        event_free(ws->timer);
    ws_decoder_cleanup(&ws->dec);
    deflate_ctx_free(ws->deflate);
    buf_cleanup(&ws->inflated);
    buf_cleanup(&ws->early);
    /* A singly linked list cannot give it up early: the loop frees it when
     * its flush gets there. */
    if (!ws->listed)
        free(ws);
}

static void fail_nomem(struct wsconn *ws)
{
    end(ws, WS_CLOSE_INTERNAL, "out of memory", true);
}

/* Ends the close handshake once both close frames are through and our last
 * byte left the output buffer (freeing a bufferevent drops what it still
 * holds). */
static void maybe_end_closing(struct wsconn *ws)
{
    if (ws->state == ST_CLOSING && ws->got_close && evbuffer_get_length(ws->out) == 0)
        end(ws, ws->end_code, ws->end_reason, false);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wsconn *ws = arg;
    /* When we were only flushing, the original reason says more than the
     * timeout does. */
    const char *reason = ws->by_server && !ws->got_close ? "timeout" : ws->end_reason;
    end(ws, ws->end_code, reason, true);
}

static bool arm_timer(struct wsconn *ws)
{
    if (!ws->timer) {
        ws->timer = evtimer_new(base_of(ws), timer_cb, ws);
        if (!ws->timer)
            return false;
    }
    struct timeval tv = {.tv_sec = ws->close_timeout_ms / 1000,
                         .tv_usec = (ws->close_timeout_ms % 1000) * 1000};
    return evtimer_add(ws->timer, &tv) == 0;
}

/* The peer went away or the socket failed (what: FAIL_*). */
static void on_failure(struct wsconn *ws, int what)
{
    if (ws->state == ST_CLOSING)
        end(ws, ws->end_code, ws->end_reason, false);
    else if (what & FAIL_TIMEOUT)
        end(ws, WS_CLOSE_ABNORMAL, "timeout", true);
    else if (what & FAIL_EOF)
        end(ws, WS_CLOSE_ABNORMAL, "connection lost", false);
    else
        end(ws, WS_CLOSE_ABNORMAL, "I/O error", true);
}

/* Only a plain socket may be taken over from its bufferevent: a TLS one
 * carries ciphertext, and filters and pairs have no socket of their own. */
static bool is_plain_socket(struct bufferevent *bev)
{
    return bufferevent_getfd(bev) >= 0 && !bufferevent_get_underlying(bev) &&
           !bufferevent_openssl_get_ssl(bev);
}

/* Direct mode: watch the socket for reading, and for writing too while the
 * kernel refuses output. Returns -1 when the event could not be re-added. */
static int set_write_interest(struct wsconn *ws, bool on)
{
    evutil_socket_t fd = event_get_fd(ws->ev);
    struct event_base *base = event_get_base(ws->ev);
    short what = EV_READ | EV_PERSIST | (on ? EV_WRITE : 0);
    event_del(ws->ev);
    if (event_assign(ws->ev, base, fd, what, direct_cb, ws) < 0 || event_add(ws->ev, NULL) < 0)
        return -1;
    ws->write_armed = on;
    return 0;
}

/* Called after anything is queued. Buffered mode: the bufferevent writes.
 * Direct mode: listed for the end of the pass, unless the write event is
 * armed (the socket is known to be full and the event will write). */
static void schedule_flush(struct wsconn *ws)
{
    struct wsconn_loop *l = ws->loop;
    if (!l || ws->listed || ws->write_armed)
        return;
    ws->listed = true;
    ws->next_listed = l->list;
    if (!l->list)
        event_active(l->flush_ev, EV_WRITE, 0);
    l->list = ws;
}

/* Direct mode: one writev of everything queued (writev, not sendmsg, so that
 * the kernel's per-process write count in /proc/PID/io stays meaningful);
 * what the kernel refuses waits for the write event. */
static void flush(struct wsconn *ws)
{
    if (evbuffer_get_length(ws->out) > 0 && evbuffer_write(ws->out, event_get_fd(ws->ev)) < 0 &&
        errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        on_failure(ws, FAIL_ERROR);
        return;
    }
    bool rest = evbuffer_get_length(ws->out) > 0;
    if (rest != ws->write_armed && set_write_interest(ws, rest) < 0) {
        fail_nomem(ws);
        return;
    }
    if (!rest)
        maybe_end_closing(ws);
}

static void loop_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wsconn_loop *l = arg;
    struct wsconn *list = l->list;
    /* Nothing below queues output or finishes a connection (endings are
     * deferred), so the detached list stays valid. */
    l->list = NULL;
    while (list) {
        struct wsconn *ws = list;
        list = ws->next_listed;
        ws->next_listed = NULL;
        ws->listed = false;
        if (ws->finished)
            free(ws);
        else if (ws->state != ST_DONE && !ws->write_armed)
            flush(ws);
    }
}

struct wsconn_loop *wsconn_loop_new(struct event_base *base)
{
    struct wsconn_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->flush_ev = event_new(base, -1, 0, loop_flush_cb, l);
    l->rbuf = malloc(READ_MAX);
    if (!l->flush_ev || !l->rbuf) {
        if (l->flush_ev)
            event_free(l->flush_ev);
        free(l->rbuf);
        free(l);
        return NULL;
    }
    return l;
}

void wsconn_loop_free(struct wsconn_loop *l)
{
    if (!l)
        return;
    /* Only finished connections can still be listed (see finish). */
    struct wsconn *list = l->list;
    while (list) {
        struct wsconn *ws = list;
        list = ws->next_listed;
        ws->next_listed = NULL;
        ws->listed = false;
        if (ws->finished)
            free(ws);
    }
    event_free(l->flush_ev);
    free(l->rbuf);
    free(l);
}

/* True (and the connection is being aborted) when size more bytes would push
 * the output past the hard limit. */
static bool over_hard_limit(struct wsconn *ws, size_t size)
{
    size_t queued = evbuffer_get_length(ws->out);
    if (!ws->out_hard || (queued <= ws->out_hard && size <= ws->out_hard - queued))
        return false;
    end(ws, WS_CLOSE_POLICY, "slow consumer", true);
    return true;
}

/* Header and payload land in one chain: one copy of the payload, one iovec. */
static int queue_copy(struct wsconn *ws, enum ws_opcode op, const void *data, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hlen = ws_header_encode(hdr, op, false, len);
    struct evbuffer *out = ws->out;
    if (evbuffer_expand(out, hlen + len) < 0 || evbuffer_add(out, hdr, hlen) < 0 ||
        evbuffer_add(out, data, len) < 0)
        return -1;
    schedule_flush(ws);
    return 0;
}

static void free_chunk(const void *data, size_t len, void *extra)
{
    free(extra);
}

/* Compresses one message for this connection (the compressor's context is
 * per connection, so the result cannot be shared). The frame header is written
 * into room left in front of the compressed bytes, so the whole frame is
 * handed to the output buffer without another copy. */
static int send_compressed(struct wsconn *ws, enum ws_opcode op, const uint8_t *data, size_t len)
{
    static const uint8_t room[WS_MAX_HEADER];
    struct buf b;
    buf_init(&b);
    if (buf_append(&b, room, sizeof(room)) < 0 ||
        deflate_compress(ws->deflate, data, len, &b) < 0) {
        buf_cleanup(&b);
        fail_nomem(ws);
        return WSCONN_CLOSED;
    }
    uint8_t hdr[WS_MAX_HEADER];
    size_t clen = b.len - sizeof(room);
    size_t hlen = ws_header_encode(hdr, op, true, clen);
    size_t off = sizeof(room) - hlen;
    if (over_hard_limit(ws, hlen + clen)) {
        buf_cleanup(&b);
        return WSCONN_CLOSED;
    }
    memcpy(b.data + off, hdr, hlen);
    struct evbuffer *out = ws->out;
    int rc;
    if (hlen + clen <= COPY_MAX) {
        rc = evbuffer_add(out, b.data + off, hlen + clen);
        buf_cleanup(&b);
    } else {
        size_t n, cap = b.cap;
        uint8_t *mem = buf_steal(&b, &n);
        /* The compressor reserves room for incompressible input; give back
         * what compression saved rather than pin it until the peer reads. */
        if (cap - n > SHRINK_SLACK) {
            uint8_t *shrunk = realloc(mem, n);
            if (shrunk)
                mem = shrunk;
        }
        rc = evbuffer_add_reference(out, mem + off, hlen + clen, free_chunk, mem);
        if (rc < 0)
            free(mem);
    }
    if (rc < 0) {
        fail_nomem(ws);
        return WSCONN_CLOSED;
    }
    schedule_flush(ws);
    return WSCONN_OK;
}

static bool should_compress(const struct wsconn *ws, size_t len)
{
    return ws->deflate && len >= ws->deflate_threshold;
}

int wsconn_send(struct wsconn *ws, bool binary, const void *data, size_t len)
{
    if (ws->state != ST_OPEN)
        return WSCONN_CLOSED;
    enum ws_opcode op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    if (should_compress(ws, len))
        return send_compressed(ws, op, data, len);
    uint8_t hdr[WS_MAX_HEADER];
    if (over_hard_limit(ws, ws_header_encode(hdr, op, false, len) + len))
        return WSCONN_CLOSED;
    if (queue_copy(ws, op, data, len) < 0) {
        fail_nomem(ws);
        return WSCONN_CLOSED;
    }
    return WSCONN_OK;
}

int wsconn_send_packet(struct wsconn *ws, struct outpacket *p)
{
    if (ws->state != ST_OPEN)
        return WSCONN_CLOSED;
    struct evbuffer *out = ws->out;
    /* Checked before compressing: a dropped message must not have gone
     * through a compressor whose context the peer shares. */
    if (p->is_volatile && evbuffer_get_length(out) > ws->out_soft)
        return WSCONN_DROPPED;
    size_t flen;
    const uint8_t *frame = outpacket_frame(p, &flen);
    size_t plen = flen - p->hdr_len;
    if (!p->no_compress && should_compress(ws, plen))
        return send_compressed(ws, p->binary ? WS_OP_BINARY : WS_OP_TEXT, frame + p->hdr_len, plen);
    if (over_hard_limit(ws, flen))
        return WSCONN_CLOSED;
    int rc;
    if (flen <= COPY_MAX) {
        rc = evbuffer_add(out, frame, flen);
    } else {
        rc = evbuffer_add_reference(out, frame, flen, outpacket_evbuffer_cleanup, outpacket_ref(p));
        if (rc < 0)
            outpacket_unref(p);
    }
    if (rc < 0) {
        fail_nomem(ws);
        return WSCONN_CLOSED;
    }
    schedule_flush(ws);
    return WSCONN_OK;
}

/* Queues our close frame and enters ST_CLOSING. wait_peer: keep reading
 * until the peer's close frame arrives (we started the handshake). */
static void start_closing(struct wsconn *ws, uint16_t send_code, const char *send_reason,
                          uint16_t code, const char *reason, bool wait_peer)
{
    if (ws->state != ST_OPEN)
        return;
    struct buf frame;
    buf_init(&frame);
    int rc = ws_close_encode(&frame, send_code, send_reason);
    if (rc == 0)
        rc = evbuffer_add(ws->out, frame.data, frame.len);
    buf_cleanup(&frame);
    if (rc < 0 || !arm_timer(ws)) {
        fail_nomem(ws);
        return;
    }
    ws->state = ST_CLOSING;
    ws->end_code = code;
    ws->end_reason = reason;
    ws->got_close = !wait_peer;
    schedule_flush(ws);
}

void wsconn_close(struct wsconn *ws, uint16_t code, const char *reason)
{
    if (ws->state != ST_OPEN)
        return;
    ws->by_server = true;
    start_closing(ws, code, reason, code ? code : WS_CLOSE_NO_STATUS, "closed by server", true);
}

void wsconn_abort(struct wsconn *ws)
{
    end(ws, WS_CLOSE_ABNORMAL, "aborted by server", true);
}

static void on_decode_error(struct wsconn *ws, int rc)
{
    ws->decoder_failed = true;
    if (ws->state == ST_OPEN) {
        uint16_t code = ws_result_close_code(rc);
        start_closing(ws, code, ws_strerror(rc), code, ws_strerror(rc), false);
        return;
    }
    /* A valid close frame cannot come after garbage: stop waiting for it. */
    ws->got_close = true;
    maybe_end_closing(ws);
}

static void on_close_frame(struct wsconn *ws, const struct ws_event *ev)
{
    if (ws->state == ST_OPEN) {
        uint16_t echo = ev->close_code == WS_CLOSE_NO_STATUS ? 0 : ev->close_code;
        start_closing(ws, echo, NULL, ev->close_code, "peer closed", false);
        return;
    }
    ws->got_close = true;
    maybe_end_closing(ws);
}

static void on_ping(struct wsconn *ws, const struct ws_event *ev)
{
    /* After our close frame nothing else may be sent. */
    if (ws->state != ST_OPEN)
        return;
    uint8_t hdr[WS_MAX_HEADER];
    /* A peer that pings without reading the pongs is a slow consumer too. */
    if (over_hard_limit(ws, ws_header_encode(hdr, WS_OP_PONG, false, ev->len) + ev->len))
        return;
    if (queue_copy(ws, WS_OP_PONG, ev->data, ev->len) < 0)
        fail_nomem(ws);
}

static void deliver(struct wsconn *ws, const uint8_t *data, size_t len, bool binary)
{
    if (ws->h.message)
        ws->h.message(ws, data, len, binary, ws->arg);
}

/* RFC 7692 does not name a close code for a message that fails to inflate;
 * data that is not valid DEFLATE breaks the negotiated framing, so it is
 * treated as a protocol error (1002) like any other malformed frame. */
static void deliver_compressed(struct wsconn *ws, const struct ws_event *ev, bool binary)
{
    buf_reset(&ws->inflated);
    int rc = deflate_decompress(ws->deflate, ev->data, ev->len, ws->max_message, &ws->inflated);
    if (rc == DEFLATE_ETOOBIG) {
        start_closing(ws, WS_CLOSE_TOO_BIG, "message too big", WS_CLOSE_TOO_BIG, "message too big",
                      false);
    } else if (rc == DEFLATE_ENOMEM) {
        fail_nomem(ws);
    } else if (rc < 0) {
        start_closing(ws, WS_CLOSE_PROTOCOL_ERROR, "invalid compressed data",
                      WS_CLOSE_PROTOCOL_ERROR, "invalid compressed data", false);
    } else if (!binary && !utf8_valid(ws->inflated.data, ws->inflated.len)) {
        start_closing(ws, WS_CLOSE_INVALID_DATA, "invalid UTF-8", WS_CLOSE_INVALID_DATA,
                      "invalid UTF-8", false);
    } else {
        static const uint8_t empty[1];
        deliver(ws, ws->inflated.data ? ws->inflated.data : empty, ws->inflated.len, binary);
    }
    if (ws->inflated.cap > INFLATE_KEEP_MAX)
        buf_cleanup(&ws->inflated);
}

static void on_message(struct wsconn *ws, const struct ws_event *ev)
{
    /* Once closing, messages are read only to reach the close frame. */
    if (ws->state != ST_OPEN)
        return;
    bool binary = ev->opcode == WS_OP_BINARY;
    if (!ev->compressed) {
        deliver(ws, ev->data, ev->len, binary);
        return;
    }
    if (!ws->deflate) {
        /* The decoder rejects RSV1 unless deflate was negotiated. */
        on_decode_error(ws, WS_EPROTO);
        return;
    }
    deliver_compressed(ws, ev, binary);
}

static void on_event(struct wsconn *ws, const struct ws_event *ev)
{
    switch (ev->type) {
    case WS_EV_MESSAGE:
        on_message(ws, ev);
        break;
    case WS_EV_PING:
        on_ping(ws, ev);
        break;
    case WS_EV_PONG:
        break;
    case WS_EV_CLOSE:
        on_close_frame(ws, ev);
        break;
    }
}

/* Decodes in[0..len) and returns the bytes used. Event data may point into
 * in, so the caller drains only afterwards. */
static size_t decode_chunk(struct wsconn *ws, uint8_t *in, size_t len)
{
    size_t off = 0;
    while (off < len && ws->state != ST_DONE && !ws->decoder_failed) {
        size_t used;
        struct ws_event ev;
        int rc = ws_decode(&ws->dec, in + off, len - off, &used, &ev);
        off += used;
        if (rc == WS_EVENT)
            on_event(ws, &ev);
        else if (rc < 0)
            on_decode_error(ws, rc);
    }
    return off;
}

/* Buffered mode: decodes and drains the bufferevent's input. */
static void decode_input(struct wsconn *ws, struct evbuffer *in)
{
    size_t avail;
    while (ws->state != ST_DONE && (avail = evbuffer_get_length(in)) > 0) {
        if (ws->decoder_failed) {
            evbuffer_drain(in, avail);
            break;
        }
        size_t n = avail < PULL_MAX ? avail : PULL_MAX;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        if (!p) {
            fail_nomem(ws);
            return;
        }
        evbuffer_drain(in, decode_chunk(ws, p, n));
    }
}

static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    decode_input(arg, bufferevent_get_input(bev));
}

/* The output is empty. */
static void bev_write_cb(struct bufferevent *bev, void *arg)
{
    maybe_end_closing(arg);
}

static void bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wsconn *ws = arg;
    if (ws->state == ST_DONE) {
        finish(ws);
        return;
    }
    /* BEV_EVENT_CONNECTED (a TLS handshake finishing) needs nothing. */
    if (what & BEV_EVENT_TIMEOUT)
        on_failure(ws, FAIL_TIMEOUT);
    else if (what & BEV_EVENT_EOF)
        on_failure(ws, FAIL_EOF);
    else if (what & BEV_EVENT_ERROR)
        on_failure(ws, FAIL_ERROR);
}

/* Direct mode: one recv into the loop's buffer, decoded in place. The
 * decoder consumes every byte it is given (partial frames go to its own
 * buffers), so nothing has to stay in the shared buffer after the call. */
static void on_readable(struct wsconn *ws)
{
    if (ws->early.len > 0) {
        decode_chunk(ws, ws->early.data, ws->early.len);
        buf_cleanup(&ws->early);
        if (ws->state == ST_DONE)
            return;
    }
    ssize_t n;
    do
        n = recv(event_get_fd(ws->ev), ws->loop->rbuf, READ_MAX, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0 && !ws->decoder_failed)
        decode_chunk(ws, ws->loop->rbuf, (size_t)n);
    else if (n == 0)
        on_failure(ws, FAIL_EOF);
    else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        on_failure(ws, FAIL_ERROR);
}

static void direct_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wsconn *ws = arg;
    if (ws->state == ST_DONE) {
        finish(ws);
        return;
    }
    if (what & EV_WRITE)
        flush(ws);
    if ((what & EV_READ) && ws->state != ST_DONE)
        on_readable(ws);
}

/* Direct mode: takes bev's socket and what its buffers hold, then frees it.
 * Returns -1 on allocation failure (bev still owned by the caller). */
static int take_socket(struct wsconn *ws, struct bufferevent *bev, struct wsconn_loop *l)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t early = evbuffer_get_length(in);
    evutil_socket_t fd = bufferevent_getfd(bev);
    ws->out = evbuffer_new();
    ws->ev = event_new(bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST, direct_cb, ws);
    if (!ws->out || !ws->ev ||
        (early > 0 && buf_append(&ws->early, evbuffer_pullup(in, -1), early) < 0)) {
        if (ws->ev)
            event_free(ws->ev);
        if (ws->out)
            evbuffer_free(ws->out);
        buf_cleanup(&ws->early);
        return -1;
    }
    /* Detaching the socket also unfreezes the bufferevent's buffers, so its
     * output (the 101 response) can move to ours. */
    bufferevent_setfd(bev, -1);
    evbuffer_add_buffer(ws->out, bufferevent_get_output(bev));
    bufferevent_free(bev);
    ws->loop = l;
    return 0;
}

struct wsconn *wsconn_new(struct bufferevent *bev, const struct wsconn_config *cfg,
                          const struct wsconn_handlers *h, void *arg)
{
    struct wsconn *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        bufferevent_free(bev);
        return NULL;
    }
    buf_init(&ws->inflated);
    buf_init(&ws->early);
    if (cfg->deflate) {
        struct deflate_config dflt;
        const struct deflate_config *dcfg = cfg->deflate_cfg;
        if (!dcfg) {
            deflate_config_default(&dflt);
            dcfg = &dflt;
        }
        ws->deflate = deflate_ctx_new(cfg->deflate, dcfg);
        if (!ws->deflate) {
            free(ws);
            bufferevent_free(bev);
            return NULL;
        }
        ws->deflate_threshold = dcfg->threshold;
    }
    if (cfg->loop && is_plain_socket(bev)) {
        if (take_socket(ws, bev, cfg->loop) < 0) {
            deflate_ctx_free(ws->deflate);
            free(ws);
            bufferevent_free(bev);
            return NULL;
        }
    } else {
        ws->bev = bev;
        ws->out = bufferevent_get_output(bev);
    }
    ws->h = *h;
    ws->arg = arg;
    ws->max_message = cfg->max_message;
    ws->out_soft = cfg->out_soft;
    ws->out_hard = cfg->out_hard;
    ws->close_timeout_ms = cfg->close_timeout_ms ? cfg->close_timeout_ms : DEFAULT_CLOSE_TIMEOUT_MS;
    ws->state = ST_OPEN;
    struct ws_decoder_config dc = {.max_message = cfg->max_message,
                                   .allow_rsv1 = cfg->deflate != NULL};
    ws_decoder_init(&ws->dec, &dc);

    if (!ws->bev) {
        if (event_add(ws->ev, NULL) < 0) {
            /* Nothing was delivered yet: end it like any other failure. */
            fail_nomem(ws);
            return ws;
        }
        if (ws->early.len > 0)
            event_active(ws->ev, EV_READ, 0);
        if (evbuffer_get_length(ws->out) > 0)
            schedule_flush(ws);
        return ws;
    }
    bufferevent_setcb(bev, bev_read_cb, bev_write_cb, bev_event_cb, ws);
    /* bev_write_cb signals "output fully flushed", which needs a low
     * watermark of 0; a high read watermark would only delay reading. */
    bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    return ws;
}

void wsconn_set_handlers(struct wsconn *ws, const struct wsconn_handlers *h, void *arg)
{
    ws->h = *h;
    ws->arg = arg;
}

size_t wsconn_output_bytes(const struct wsconn *ws)
{
    return evbuffer_get_length(ws->out);
}

bool wsconn_is_closing(const struct wsconn *ws)
{
    return ws->state != ST_OPEN;
}

void wsconn_set_id(struct wsconn *ws, uint64_t id)
{
    ws->id = id;
}

uint64_t wsconn_id(const struct wsconn *ws)
{
    return ws->id;
}

#include "wsconn.h"

#include "bevwrite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

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

/* The decoder consumes everything it is given, so the input rarely holds
 * more than one socket read (libevent reads at most 16 KiB at a time).
 * Bounding the pullup keeps a backlog (e.g. bytes that arrived while a TLS
 * handshake or the upgrade was in progress) from being made contiguous in one
 * huge copy; a frame larger than this simply goes through the decoder's
 * reassembly buffer. */
#define PULL_MAX (64 * 1024)

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

struct wsconn_flusher {
    struct event *ev;    /* active while list is not empty */
    struct wsconn *list; /* connections with output queued this pass */
};

struct wsconn {
    struct bufferevent *bev;        /* NULL once finished (see finish) */
    struct wsconn_flusher *flusher; /* NULL: the bufferevent writes */
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
    const char *end_reason;
    unsigned close_timeout_ms;
    uint16_t end_code;
    uint8_t state;
    bool got_close;      /* the peer's close frame arrived, or we stopped waiting for it */
    bool by_server;      /* the close was started by wsconn_close() */
    bool decoder_failed; /* input is discarded from now on */
    bool listed;         /* on flusher->list */
    struct ws_decoder dec;
};

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static struct evbuffer *output(const struct wsconn *ws)
{
    return bufferevent_get_output(ws->bev);
}

/* Sends RST instead of FIN on close: the kernel would otherwise keep trying
 * to deliver bytes nobody is going to read. */
static void discard_kernel_output(struct wsconn *ws)
{
    evutil_socket_t fd = bufferevent_getfd(ws->bev);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Every ending goes through here and `closed` runs from the bufferevent's
 * deferred event callback: never inside a call made by the owner, and never
 * while read_cb is still looking at the connection. Deferring through the
 * bufferevent needs no allocation, so it cannot fail. */
static void end(struct wsconn *ws, uint16_t code, const char *reason, bool reset)
{
    if (ws->state == ST_DONE)
        return;
    ws->state = ST_DONE;
    ws->end_code = code;
    ws->end_reason = reason;
    if (ws->timer)
        event_del(ws->timer);
    bufferevent_disable(ws->bev, EV_READ | EV_WRITE);
    if (reset)
        discard_kernel_output(ws);
    bufferevent_trigger_event(ws->bev, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
}

static void finish(struct wsconn *ws)
{
    if (ws->h.closed)
        ws->h.closed(ws, ws->end_code, ws->end_reason, ws->arg);
    bufferevent_free(ws->bev);
    ws->bev = NULL;
    if (ws->timer)
        event_free(ws->timer);
    ws_decoder_cleanup(&ws->dec);
    deflate_ctx_free(ws->deflate);
    buf_cleanup(&ws->inflated);
    /* A singly linked list cannot give it up early: the flusher frees it
     * when it gets there. */
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
    if (ws->state == ST_CLOSING && ws->got_close && evbuffer_get_length(output(ws)) == 0)
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
        ws->timer = evtimer_new(bufferevent_get_base(ws->bev), timer_cb, ws);
        if (!ws->timer)
            return false;
    }
    struct timeval tv = {.tv_sec = ws->close_timeout_ms / 1000,
                         .tv_usec = (ws->close_timeout_ms % 1000) * 1000};
    return evtimer_add(ws->timer, &tv) == 0;
}

/* The peer went away or the socket failed (what: BEV_EVENT_* flags). */
static void on_failure(struct wsconn *ws, short what)
{
    if (ws->state == ST_CLOSING)
        end(ws, ws->end_code, ws->end_reason, false);
    else if (what & BEV_EVENT_TIMEOUT)
        end(ws, WS_CLOSE_ABNORMAL, "timeout", true);
    else if (what & BEV_EVENT_EOF)
        end(ws, WS_CLOSE_ABNORMAL, "connection lost", false);
    else if (what & BEV_EVENT_ERROR)
        end(ws, WS_CLOSE_ABNORMAL, "I/O error", true);
}

/* Only a plain socket bufferevent may be written to behind libevent's back:
 * a TLS one would put plaintext on the wire, and filters and pairs have no
 * socket of their own. */
static bool is_plain_socket(struct bufferevent *bev)
{
    return bufferevent_getfd(bev) >= 0 && !bufferevent_get_underlying(bev) &&
           !bufferevent_openssl_get_ssl(bev);
}

/* Called after anything is queued. While the write event is armed the
 * socket is known to be full and libevent is already waiting on it. */
static void schedule_flush(struct wsconn *ws)
{
    struct wsconn_flusher *f = ws->flusher;
    if (!f || ws->listed || (bufferevent_get_enabled(ws->bev) & EV_WRITE))
        return;
    ws->listed = true;
    ws->next_listed = f->list;
    if (!f->list)
        event_active(f->ev, EV_WRITE, 0);
    f->list = ws;
}

/* One writev of everything queued. The write event is armed only when the
 * kernel refused part of it; write_cb disarms it once libevent has written
 * the rest. */
static void flush(struct wsconn *ws)
{
    if (ws->state == ST_DONE || (bufferevent_get_enabled(ws->bev) & EV_WRITE))
        return;
    int rc = bev_write_now(ws->bev);
    if (rc < 0)
        on_failure(ws, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
    else if (rc == 0)
        maybe_end_closing(ws);
}

static void flusher_run(evutil_socket_t fd, short what, void *arg)
{
    struct wsconn_flusher *f = arg;
    struct wsconn *list = f->list;
    /* Nothing below queues output or finishes a connection (endings are
     * deferred), so the detached list stays valid. */
    f->list = NULL;
    while (list) {
        struct wsconn *ws = list;
        list = ws->next_listed;
        ws->next_listed = NULL;
        ws->listed = false;
        if (ws->bev)
            flush(ws);
        else
            free(ws);
    }
}

struct wsconn_flusher *wsconn_flusher_new(struct event_base *base)
{
    struct wsconn_flusher *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->ev = event_new(base, -1, 0, flusher_run, f);
    if (!f->ev) {
        free(f);
        return NULL;
    }
    return f;
}

void wsconn_flusher_free(struct wsconn_flusher *f)
{
    if (!f)
        return;
    /* Only finished connections can still be listed (see finish). */
    struct wsconn *list = f->list;
    while (list) {
        struct wsconn *ws = list;
        list = ws->next_listed;
        ws->next_listed = NULL;
        ws->listed = false;
        if (!ws->bev)
            free(ws);
    }
    event_free(f->ev);
    free(f);
}

/* True (and the connection is being aborted) when size more bytes would push
 * the output past the hard limit. */
static bool over_hard_limit(struct wsconn *ws, size_t size)
{
    size_t queued = evbuffer_get_length(output(ws));
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
    struct evbuffer *out = output(ws);
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
    struct evbuffer *out = output(ws);
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
    struct evbuffer *out = output(ws);
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
        rc = evbuffer_add(output(ws), frame.data, frame.len);
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

/* One readv into the input, for at most max bytes. Returns the bytes read;
 * 0 when none are waiting, or when the read ended the connection (EOF or an
 * error, reported as libevent would have). */
static size_t read_more(struct wsconn *ws, struct evbuffer *in, size_t max)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    /* The bufferevent freezes the end of its input against anyone but
     * itself adding to it; this read stands in for its own. */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    ssize_t n = -1;
    int err = EAGAIN;
    if (nv > 0) {
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len < max ? v[i].iov_len : max;
            max -= iov[i].iov_len;
        }
        n = readv(bufferevent_getfd(ws->bev), iov, nv);
        err = errno;
    }
    int used = 0;
    for (size_t left = n > 0 ? (size_t)n : 0; left > 0; used++) {
        v[used].iov_len = left < v[used].iov_len ? left : v[used].iov_len;
        left -= v[used].iov_len;
    }
    if (nv > 0)
        evbuffer_commit_space(in, v, used);
    evbuffer_freeze(in, 0);
    if (n == 0)
        on_failure(ws, BEV_EVENT_READING | BEV_EVENT_EOF);
    else if (n < 0 && nv > 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR)
        on_failure(ws, BEV_EVENT_READING | BEV_EVENT_ERROR);
    return n > 0 ? (size_t)n : 0;
}

/* libevent 2.1 reads at most 4 KiB per readable event (evbuffer_read's
 * cap), though it allows a bufferevent more per callback
 * (bufferevent_get_max_single_read, 16 KiB by default). A client sending a
 * burst would have it decoded 4 KiB per loop pass, and what it broadcasts
 * written out in as many small writes. So on a flusher, a read that came
 * back full is followed by one more, without libevent's FIONREAD ioctl,
 * for the rest of the budget. */
#define LIBEVENT_READ_MAX 4096

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct wsconn *ws = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    bool full = evbuffer_get_length(in) >= LIBEVENT_READ_MAX;
    decode_input(ws, in);
    if (!ws->flusher || !full || ws->state == ST_DONE)
        return;
    ev_ssize_t budget = bufferevent_get_max_single_read(bev);
    if (budget > LIBEVENT_READ_MAX && read_more(ws, in, (size_t)budget - LIBEVENT_READ_MAX) > 0)
        decode_input(ws, in);
}

/* The output is empty. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    struct wsconn *ws = arg;
    /* libevent wrote what the flusher could not: the flusher takes over. */
    if (ws->flusher)
        bufferevent_disable(bev, EV_WRITE);
    maybe_end_closing(ws);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wsconn *ws = arg;
    if (ws->state == ST_DONE) {
        finish(ws);
        return;
    }
    /* BEV_EVENT_CONNECTED (a TLS handshake finishing) needs nothing. */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        on_failure(ws, what);
}

struct wsconn *wsconn_new(struct bufferevent *bev, const struct wsconn_config *cfg,
                          const struct wsconn_handlers *h, void *arg)
{
    struct wsconn *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        bufferevent_free(bev);
        return NULL;
    }
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
    ws->bev = bev;
    ws->flusher = cfg->flusher && is_plain_socket(bev) ? cfg->flusher : NULL;
    ws->h = *h;
    ws->arg = arg;
    ws->max_message = cfg->max_message;
    ws->out_soft = cfg->out_soft;
    ws->out_hard = cfg->out_hard;
    ws->close_timeout_ms = cfg->close_timeout_ms ? cfg->close_timeout_ms : DEFAULT_CLOSE_TIMEOUT_MS;
    ws->state = ST_OPEN;
    buf_init(&ws->inflated);
    struct ws_decoder_config dc = {.max_message = cfg->max_message,
                                   .allow_rsv1 = cfg->deflate != NULL};
    ws_decoder_init(&ws->dec, &dc);

    bufferevent_setcb(bev, read_cb, write_cb, event_cb, ws);
    /* write_cb signals "output fully flushed", which needs a low watermark
     * of 0; a high read watermark would only delay reading. */
    bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
    if (ws->flusher) {
        bufferevent_disable(bev, EV_WRITE);
        bufferevent_enable(bev, EV_READ);
        /* e.g. the HTTP 101 response */
        if (evbuffer_get_length(output(ws)) > 0)
            schedule_flush(ws);
    } else {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
    }
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
    return evbuffer_get_length(output(ws));
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

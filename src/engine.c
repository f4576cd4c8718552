/* Engine.IO v4 server. See engine.h for the contract and protocol.md §A-§G
 * for the behaviour matched here. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* struct event embedded in sessions */
#include <openssl/rand.h>
#include <uthash.h>

#include "base64.h"
#include "buf.h"
#include "eio.h"
#include "ws.h"
#include "wsconn.h"

enum session_state {
    SS_OPEN,
    SS_CLOSING, /* polling: closed, waiting for a GET to deliver the close packet */
    SS_CLOSED,
};

enum transport_kind { T_POLLING, T_WEBSOCKET };

enum upgrade_state {
    UP_NONE,
    UP_PROBING, /* a WebSocket is open for this session, no probe yet */
    UP_PROBED,  /* 3probe sent: pending GETs get a noop */
};

/* How long a polling session closed by the server waits for the GET that
 * carries its close packet. */
#define CLOSE_GRACE_MS 10000

struct sio_session {
    UT_hash_handle hh;
    char sid[21];
    struct engine *eng;
    unsigned refs;
    uint8_t state;
    uint8_t transport;
    uint8_t upgrade;
    bool awaiting_pong;
    bool in_flush_list;
    bool close_pending; /* the close handler still has to run */
    bool in_hash;
    const char *close_reason;
    struct sio_session *next_deferred; /* flush / close work for this pass */
    uint64_t log_id;
    void *data;

    /* polling */
    struct http_request *get;  /* pending long poll */
    struct http_request *post; /* POST whose body is being received (holds a ref) */
    struct outpacket **q;
    unsigned q_len, q_cap;
    size_t q_bytes;

    /* websocket */
    struct wsconn *ws;
    struct wsconn *probe;
    struct event *upgrade_timer; /* allocated during an upgrade only */

    struct event timer; /* heartbeat, and the close grace period */
};

/* Every WebSocket of the engine (a session's transport, an upgrade probe, or
 * one closing), so that engine_free() can end them all. Each holds a
 * reference to its session. */
struct ws_entry {
    struct ws_entry *prev, *next;
    struct wsconn *ws;
    struct sio_session *s;
};

struct engine {
    struct event_base *base;
    struct engine_config cfg;
    struct engine_handlers h;
    void *arg;
    const struct logger *log;
    struct sio_session *sessions; /* by sid */
    unsigned n_sessions;
    struct event *deferred_ev;
    struct sio_session *deferred; /* sessions with flush or close work */
    uint64_t next_log_id;
    size_t path_len;
    struct ws_entry *ws_list;
};

/* Error codes of the Engine.IO HTTP errors (protocol.md §A.3). */
enum eio_http_error {
    EIO_ERR_TRANSPORT_UNKNOWN = 0,
    EIO_ERR_SID_UNKNOWN = 1,
    EIO_ERR_BAD_METHOD = 2,
    EIO_ERR_BAD_REQUEST = 3,
    EIO_ERR_FORBIDDEN = 4,
    EIO_ERR_BAD_VERSION = 5,
};

static const char *const eio_error_messages[] = {
    "Transport unknown", "Session ID unknown", "Bad handshake method",
    "Bad request",       "Forbidden",          "Unsupported protocol version",
};

static void session_close(struct sio_session *s, const char *reason, bool client_close);
static void schedule_deferred(struct sio_session *s);
static void ws_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary, void *arg);
static void ws_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg);
static void probe_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary,
                          void *arg);
static void probe_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg);

static const struct wsconn_handlers ws_handlers = {ws_message, ws_closed};
static const struct wsconn_handlers probe_handlers = {probe_message, probe_closed};

void engine_config_default(struct engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->path = "/engine.io/";
    cfg->ping_interval_ms = 25000;
    cfg->ping_timeout_ms = 20000;
    cfg->upgrade_timeout_ms = 10000;
    cfg->max_payload = 1000000;
    cfg->polling = true;
    cfg->websocket = true;
    cfg->allow_upgrades = true;
    cfg->cors_origins = NULL;
    cfg->cors_credentials = false;
    cfg->cookie = NULL;
    cfg->per_message_deflate = false;
    deflate_config_default(&cfg->deflate);
    cfg->http_compression = true;
    cfg->out_soft = 1 << 20;
    cfg->out_hard = 8 << 20;
}

/* --- session lifetime --------------------------------------------------- */

void engine_session_ref(struct sio_session *s)
{
    s->refs++;
}

static void queue_clear(struct sio_session *s)
{
    for (unsigned i = 0; i < s->q_len; i++)
        outpacket_unref(s->q[i]);
    s->q_len = 0;
    s->q_bytes = 0;
}

void engine_session_unref(struct sio_session *s)
{
    if (--s->refs > 0)
        return;
    queue_clear(s);
    free(s->q);
    free(s);
}

static void stop_upgrade_timer(struct sio_session *s)
{
    if (s->upgrade_timer) {
        event_free(s->upgrade_timer);
        s->upgrade_timer = NULL;
    }
}

static void unlink_session(struct sio_session *s)
{
    if (s->in_hash) {
        HASH_DEL(s->eng->sessions, s);
        s->in_hash = false;
        s->eng->n_sessions--;
    }
}

/* --- HTTP helpers -------------------------------------------------------- */

/* Whether origin is allowed by the CORS list (a comma-separated list of
 * exact origins). */
static bool origin_listed(const char *list, const char *origin)
{
    size_t olen = strlen(origin);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && last[-1] == ' ')
            last--;
        if ((size_t)(last - p) == olen && memcmp(p, origin, olen) == 0)
            return true;
        p = end;
    }
    return false;
}

/* Appends the CORS response headers for req into out (NUL-terminated). */
static void cors_headers(const struct engine *e, struct http_request *req, struct buf *out)
{
    const char *allowed = e->cfg.cors_origins;
    if (!allowed)
        return;
    const char *origin = http_request_header(req, "Origin");
    bool any = strcmp(allowed, "*") == 0;
    if (any && !e->cfg.cors_credentials) {
        buf_append_str(out, "Access-Control-Allow-Origin: *\r\n");
    } else if (origin && (any || origin_listed(allowed, origin))) {
        buf_append_str(out, "Access-Control-Allow-Origin: ");
        buf_append_str(out, origin);
        buf_append_str(out, "\r\nVary: Origin\r\n");
        if (e->cfg.cors_credentials)
            buf_append_str(out, "Access-Control-Allow-Credentials: true\r\n");
    }
}

static void respond(struct engine *e, struct http_request *req, int status, const char *ctype,
                    const char *extra, const void *body, size_t len, unsigned flags)
{
    struct buf h;
    buf_init(&h);
    cors_headers(e, req, &h);
    if (extra)
        buf_append_str(&h, extra);
    buf_append_byte(&h, 0);
    http_respond(req, status, ctype, h.data ? (const char *)h.data : NULL, body, len, flags);
    buf_cleanup(&h);
}

static void respond_error(struct engine *e, struct http_request *req, enum eio_http_error code)
{
    if (http_request_is_upgrade(req)) {
        /* Errors on an upgrade request are plain text and close the
         * connection (protocol.md §A.3). */
        const char *msg = eio_error_messages[code];
        http_respond(req, 400, "text/html", NULL, msg, strlen(msg), HTTP_RESP_CLOSE);
        return;
    }
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", (int)code,
                     eio_error_messages[code]);
    respond(e, req, code == EIO_ERR_FORBIDDEN ? 403 : 400, "application/json", NULL, body,
            (size_t)n, 0);
}

static void respond_payload(struct sio_session *s, struct http_request *req, const uint8_t *body,
                            size_t len)
{
    struct engine *e = s->eng;
    respond(e, req, 200, "text/plain; charset=UTF-8", "Cache-Control: no-store\r\n", body, len,
            e->cfg.http_compression ? HTTP_RESP_COMPRESS : 0);
}

/* Answers a pending GET with one packet of the given type and no data. */
static void respond_single(struct sio_session *s, struct http_request *req,
                           enum eio_packet_type type)
{
    uint8_t c = (uint8_t)('0' + type);
    respond_payload(s, req, &c, 1);
}

static void release_get(struct sio_session *s)
{
    if (s->get) {
        http_request_set_data(s->get, NULL);
        s->get = NULL;
    }
}

/* --- polling output ----------------------------------------------------- */

static int queue_push(struct sio_session *s, struct outpacket *p)
{
    if (s->q_len == s->q_cap) {
        unsigned cap = s->q_cap ? s->q_cap * 2 : 4;
        struct outpacket **q = realloc(s->q, cap * sizeof(*q));
        if (!q)
            return -1;
        s->q = q;
        s->q_cap = cap;
    }
    s->q[s->q_len++] = outpacket_ref(p);
    s->q_bytes += outpacket_size(p);
    return 0;
}

/* Answers the pending GET with every queued packet. */
static void flush_polling(struct sio_session *s)
{
    if (!s->get || s->q_len == 0)
        return;
    struct buf body;
    buf_init(&body);
    int rc = 0;
    for (unsigned i = 0; i < s->q_len && rc == 0; i++) {
        struct outpacket *p = s->q[i];
        struct eio_packet pk = {
            .type = p->type, .binary = p->binary, .data = outpacket_data(p), .len = p->data_len};
        rc = eio_payload_append(&body, &pk);
    }
    struct http_request *req = s->get;
    release_get(s);
    queue_clear(s);
    if (rc == 0) {
        respond_payload(s, req, body.data, body.len);
    } else {
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        session_close(s, "transport error", false);
    }
    buf_cleanup(&body);
    if (s->state == SS_CLOSING) {
        /* The close packet went out with this response. */
        s->state = SS_CLOSED;
        unlink_session(s);
        evtimer_del(&s->timer);
    }
}

/* --- deferred work: polling flushes and close notifications ------------- */

static void run_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct engine *e = arg;
    struct sio_session *list = e->deferred;
    e->deferred = NULL;
    while (list) {
        struct sio_session *s = list;
        list = s->next_deferred;
        s->next_deferred = NULL;
        s->in_flush_list = false;
        if (s->get)
            flush_polling(s);
        if (s->close_pending) {
            s->close_pending = false;
            if (e->h.close)
                e->h.close(s, s->close_reason, e->arg);
            /* Drop the engine's own reference; the one taken by
             * schedule_deferred is still held, so this cannot free. */
            s->refs--;
        }
        engine_session_unref(s);
    }
}

static void schedule_deferred(struct sio_session *s)
{
    if (s->in_flush_list)
        return;
    s->in_flush_list = true;
    engine_session_ref(s);
    s->next_deferred = s->eng->deferred;
    s->eng->deferred = s;
    event_active(s->eng->deferred_ev, 0, 0);
}

/* --- heartbeat ---------------------------------------------------------- */

static void arm_timer(struct sio_session *s, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(&s->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sio_session *s = arg;
    if (s->state == SS_CLOSING) {
        /* No GET came for the close packet. */
        s->state = SS_CLOSED;
        unlink_session(s);
        engine_session_unref(s); /* the grace period's reference */
        return;
    }
    if (s->state != SS_OPEN)
        return;
    if (s->awaiting_pong) {
        session_close(s, "ping timeout", false);
        return;
    }
    struct outpacket *ping = outpacket_new(EIO_PING, false, NULL, 0);
    if (!ping) {
        session_close(s, "transport error", false);
        return;
    }
    s->awaiting_pong = true;
    /* The timeout starts when the ping is queued (protocol.md §G.35). */
    arm_timer(s, s->eng->cfg.ping_timeout_ms);
    engine_send(s, ping);
    outpacket_unref(ping);
}

/* --- closing ------------------------------------------------------------ */

/* Ends the session: stops its timers, closes its transports and schedules
 * the close handler. client_close: the client sent a close packet (a pending
 * GET is then answered with a noop rather than a close packet). */
static void session_close(struct sio_session *s, const char *reason, bool client_close)
{
    if (s->state != SS_OPEN)
        return;
    struct engine *e = s->eng;
    LOG(e->log, LOG_DEBUG, s->log_id, "session %s closed: %s", s->sid, reason);
    s->state = SS_CLOSED;
    s->close_reason = reason;
    evtimer_del(&s->timer);
    stop_upgrade_timer(s);
    if (s->probe) {
        wsconn_abort(s->probe);
        s->probe = NULL;
    }
    bool forced =
        strcmp(reason, "forced close") == 0 || strcmp(reason, "server shutting down") == 0;
    if (s->transport == T_WEBSOCKET) {
        if (s->ws) {
            uint16_t code = forced ? WS_CLOSE_NORMAL : WS_CLOSE_GOING_AWAY;
            if (strcmp(reason, "parse error") == 0)
                code = WS_CLOSE_PROTOCOL_ERROR;
            wsconn_close(s->ws, code, NULL);
            s->ws = NULL;
        }
        queue_clear(s);
        unlink_session(s);
    } else if (s->get) {
        if (client_close) {
            struct http_request *req = s->get;
            release_get(s);
            respond_single(s, req, EIO_NOOP);
            queue_clear(s);
        } else {
            struct outpacket *c = outpacket_new(EIO_CLOSE, false, NULL, 0);
            if (c) {
                queue_push(s, c);
                outpacket_unref(c);
            }
            flush_polling(s);
        }
        unlink_session(s);
    } else if (forced && !client_close) {
        /* Deliver the close packet with the next GET (protocol.md §D.21). */
        struct outpacket *c = outpacket_new(EIO_CLOSE, false, NULL, 0);
        if (c) {
            if (s->q_len == 0) {
                struct outpacket *noop = outpacket_new(EIO_NOOP, false, NULL, 0);
                if (noop) {
                    queue_push(s, noop);
                    outpacket_unref(noop);
                }
            }
            queue_push(s, c);
            outpacket_unref(c);
            s->state = SS_CLOSING;
            engine_session_ref(s); /* held by the grace timer */
            arm_timer(s, CLOSE_GRACE_MS);
        } else {
            unlink_session(s);
        }
    } else {
        queue_clear(s);
        unlink_session(s);
    }
    s->close_pending = true;
    schedule_deferred(s);
}

void engine_session_close_reason(struct sio_session *s, const char *reason)
{
    session_close(s, reason, false);
}

void engine_session_close(struct sio_session *s)
{
    session_close(s, "forced close", false);
}

/* --- incoming packets --------------------------------------------------- */

static void on_packet(struct sio_session *s, const struct eio_packet *p)
{
    struct engine *e = s->eng;
    switch (p->type) {
    case EIO_PONG:
        if (s->awaiting_pong) {
            s->awaiting_pong = false;
            arm_timer(s, e->cfg.ping_interval_ms);
        }
        break;
    case EIO_PING:
        /* Under EIO4 the server pings; a client ping is an error. */
        session_close(s, "transport error", false);
        break;
    case EIO_MESSAGE:
        if (e->h.message)
            e->h.message(s, p->data, p->len, p->binary, e->arg);
        break;
    case EIO_CLOSE:
        session_close(s, "transport close", true);
        break;
    default:
        /* open, upgrade and noop mean nothing on an established transport */
        break;
    }
}

/* --- sending ------------------------------------------------------------ */

int engine_send(struct sio_session *s, struct outpacket *p)
{
    if (s->state != SS_OPEN)
        return ENGINE_CLOSED;
    struct engine *e = s->eng;
    if (s->transport == T_WEBSOCKET && s->ws) {
        int rc = wsconn_send_packet(s->ws, p);
        if (rc == WSCONN_DROPPED)
            return ENGINE_DROPPED;
        if (rc == WSCONN_CLOSED) {
            session_close(s, "transport error", false);
            return ENGINE_CLOSED;
        }
        return ENGINE_SENT;
    }
    if (p->is_volatile && (!s->get || s->q_bytes > e->cfg.out_soft))
        return ENGINE_DROPPED;
    if (e->cfg.out_hard && s->q_bytes + outpacket_size(p) > e->cfg.out_hard) {
        LOG(e->log, LOG_WARN, s->log_id, "session %s: output over %zu bytes, closing", s->sid,
            e->cfg.out_hard);
        session_close(s, "transport error", false);
        return ENGINE_CLOSED;
    }
    if (queue_push(s, p) < 0) {
        session_close(s, "transport error", false);
        return ENGINE_CLOSED;
    }
    if (s->get)
        schedule_deferred(s);
    return ENGINE_SENT;
}

int engine_send_message(struct sio_session *s, const void *data, size_t len, bool binary)
{
    struct outpacket *p = outpacket_new(EIO_MESSAGE, binary, data, len);
    if (!p) {
        session_close(s, "transport error", false);
        return ENGINE_CLOSED;
    }
    int rc = engine_send(s, p);
    outpacket_unref(p);
    return rc;
}

/* --- WebSocket transport ------------------------------------------------ */

static void ws_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary, void *arg)
{
    struct sio_session *s = ((struct ws_entry *)arg)->s;
    if (s->state != SS_OPEN)
        return;
    struct eio_packet p;
    if (binary) {
        p = (struct eio_packet){.type = EIO_MESSAGE, .binary = true, .data = data, .len = len};
    } else if (eio_packet_decode(data, len, &p) != EIO_OK) {
        session_close(s, "parse error", false);
        return;
    }
    engine_session_ref(s);
    on_packet(s, &p);
    engine_session_unref(s);
}

/* Forgets a finished WebSocket and drops its session reference. */
static void ws_entry_release(struct ws_entry *en)
{
    struct engine *e = en->s->eng;
    if (en->prev)
        en->prev->next = en->next;
    else
        e->ws_list = en->next;
    if (en->next)
        en->next->prev = en->prev;
    struct sio_session *s = en->s;
    free(en);
    engine_session_unref(s);
}

static void ws_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg)
{
    struct ws_entry *en = arg;
    struct sio_session *s = en->s;
    if (s->ws == ws) {
        s->ws = NULL;
        bool clean = code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ||
                     code == WS_CLOSE_NO_STATUS || code == WS_CLOSE_ABNORMAL;
        session_close(s, clean ? "transport close" : "transport error", false);
    }
    ws_entry_release(en);
}

/* Sends everything queued before the WebSocket was ready, in order. */
static void drain_queue_to_ws(struct sio_session *s)
{
    unsigned n = s->q_len;
    struct outpacket **q = s->q;
    s->q = NULL;
    s->q_len = s->q_cap = 0;
    s->q_bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        if (s->state == SS_OPEN)
            engine_send(s, q[i]);
        outpacket_unref(q[i]);
    }
    free(q);
}

static void end_upgrade(struct sio_session *s)
{
    stop_upgrade_timer(s);
    if (s->probe) {
        wsconn_close(s->probe, WS_CLOSE_NORMAL, NULL);
        s->probe = NULL;
    }
    s->upgrade = UP_NONE;
}

static void on_upgrade_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sio_session *s = arg;
    LOG(s->eng->log, LOG_DEBUG, s->log_id, "session %s: upgrade timed out", s->sid);
    end_upgrade(s);
}

static void complete_upgrade(struct sio_session *s, struct ws_entry *en)
{
    stop_upgrade_timer(s);
    struct wsconn *ws = s->probe;
    s->probe = NULL;
    s->upgrade = UP_NONE;
    s->ws = ws;
    s->transport = T_WEBSOCKET;
    wsconn_set_handlers(ws, &ws_handlers, en);
    if (s->get) {
        struct http_request *req = s->get;
        release_get(s);
        respond_single(s, req, EIO_NOOP);
    }
    drain_queue_to_ws(s);
    LOG(s->eng->log, LOG_DEBUG, s->log_id, "session %s upgraded to websocket", s->sid);
}

static void probe_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary,
                          void *arg)
{
    struct sio_session *s = ((struct ws_entry *)arg)->s;
    if (s->state != SS_OPEN || s->probe != ws)
        return;
    if (!binary && len == 6 && memcmp(data, "2probe", 6) == 0 && s->upgrade == UP_PROBING) {
        wsconn_send(ws, false, "3probe", 6);
        s->upgrade = UP_PROBED;
        if (s->get) {
            struct http_request *req = s->get;
            release_get(s);
            respond_single(s, req, EIO_NOOP);
        }
        return;
    }
    if (!binary && len == 1 && data[0] == '0' + EIO_UPGRADE) {
        complete_upgrade(s, arg);
        return;
    }
    /* Anything else during an upgrade: drop the new WebSocket, keep polling. */
    end_upgrade(s);
}

static void probe_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg)
{
    struct ws_entry *en = arg;
    struct sio_session *s = en->s;
    if (s->probe == ws) {
        s->probe = NULL;
        stop_upgrade_timer(s);
        s->upgrade = UP_NONE;
    }
    ws_entry_release(en);
}

/* Writes the 101 response and wraps the connection for session s (which it
 * references until the WebSocket is finished). Returns NULL after answering
 * the request with an error. */
static struct wsconn *accept_websocket(struct engine *e, struct http_request *req,
                                       struct sio_session *s, const struct wsconn_handlers *h)
{
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    const char *version = http_request_header(req, "Sec-WebSocket-Version");
    const char *upgrade = http_request_header(req, "Upgrade");
    char accept[WS_ACCEPT_LEN + 1];
    if (http_request_method(req) != HTTP_M_GET || !upgrade ||
        strcasecmp(upgrade, "websocket") != 0 || !key || !ws_accept_key(key, strlen(key), accept)) {
        respond_error(e, req, EIO_ERR_BAD_REQUEST);
        return NULL;
    }
    if (!version || strcmp(version, "13") != 0) {
        http_respond(req, 426, "text/plain", "Sec-WebSocket-Version: 13\r\n", "Upgrade Required",
                     16, HTTP_RESP_CLOSE);
        return NULL;
    }

    struct deflate_params dp;
    bool deflate = false;
    struct buf resp;
    buf_init(&resp);
    buf_append_str(&resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    buf_append_str(&resp, accept);
    buf_append_str(&resp, "\r\n");
    const char *ext = http_request_header(req, "Sec-WebSocket-Extensions");
    if (e->cfg.per_message_deflate && ext &&
        deflate_negotiate(ext, strlen(ext), &e->cfg.deflate, &dp) == 1) {
        deflate = true;
        buf_append_str(&resp, "Sec-WebSocket-Extensions: ");
        deflate_response_encode(&dp, &resp);
        buf_append_str(&resp, "\r\n");
    }
    buf_append_str(&resp, "\r\n");

    struct ws_entry *en = calloc(1, sizeof(*en));
    if (!en) {
        buf_cleanup(&resp);
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        return NULL;
    }
    struct bufferevent *bev = http_request_upgrade(req);
    if (!bev || bufferevent_write(bev, resp.data, resp.len) != 0) {
        buf_cleanup(&resp);
        free(en);
        if (bev)
            bufferevent_free(bev);
        return NULL;
    }
    buf_cleanup(&resp);
    struct wsconn_config wc = {
        .max_message = e->cfg.max_payload,
        .out_soft = e->cfg.out_soft,
        .out_hard = e->cfg.out_hard,
        .close_timeout_ms = 0,
        .deflate = deflate ? &dp : NULL,
        .deflate_cfg = &e->cfg.deflate,
    };
    struct wsconn *ws = wsconn_new(bev, &wc, h, en);
    if (!ws) {
        free(en);
        return NULL;
    }
    wsconn_set_id(ws, s->log_id);
    en->ws = ws;
    en->s = s;
    engine_session_ref(s);
    en->next = e->ws_list;
    if (e->ws_list)
        e->ws_list->prev = en;
    e->ws_list = en;
    return ws;
}

/* --- handshake ---------------------------------------------------------- */

static struct sio_session *session_new(struct engine *e)
{
    struct sio_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->eng = e;
    s->refs = 1; /* the engine's: dropped by the deferred close work */
    s->log_id = ++e->next_log_id;
    evtimer_assign(&s->timer, e->base, on_timer, s);
    for (;;) {
        uint8_t rnd[15];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            free(s);
            return NULL;
        }
        size_t n = base64url_encode(rnd, sizeof(rnd), s->sid);
        s->sid[n] = '\0';
        struct sio_session *dup;
        HASH_FIND_STR(e->sessions, s->sid, dup);
        if (!dup)
            break;
    }
    HASH_ADD_STR(e->sessions, sid, s);
    s->in_hash = true;
    e->n_sessions++;
    return s;
}

static int open_packet(const struct engine *e, const struct sio_session *s, bool websocket,
                       struct buf *out)
{
    static const char *const upgrades[] = {"websocket"};
    size_t n = (!websocket && e->cfg.websocket && e->cfg.allow_upgrades) ? 1 : 0;
    return eio_open_encode(out, s->sid, upgrades, n, e->cfg.ping_interval_ms,
                           e->cfg.ping_timeout_ms, e->cfg.max_payload);
}

static void handshake(struct engine *e, struct http_request *req, bool websocket)
{
    struct sio_session *s = session_new(e);
    if (!s) {
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        return;
    }
    struct buf open;
    buf_init(&open);
    if (open_packet(e, s, websocket, &open) < 0) {
        buf_cleanup(&open);
        unlink_session(s);
        engine_session_unref(s);
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        return;
    }
    LOG(e->log, LOG_DEBUG, s->log_id, "session %s opened over %s from %s", s->sid,
        websocket ? "websocket" : "polling", http_request_peer_address(req));
    /* The upper layer sees the handshake request while it is valid; what it
     * sends meanwhile waits in the queue behind the open packet. */
    s->transport = websocket ? T_WEBSOCKET : T_POLLING;
    if (e->h.open)
        e->h.open(s, req, e->arg);

    if (websocket) {
        struct wsconn *ws = accept_websocket(e, req, s, &ws_handlers);
        if (!ws) {
            buf_cleanup(&open);
            session_close(s, "transport error", false);
            return;
        }
        wsconn_send(ws, false, open.data, open.len);
        if (s->state == SS_OPEN) {
            s->ws = ws;
            drain_queue_to_ws(s);
        } else {
            wsconn_close(ws, WS_CLOSE_NORMAL, NULL);
        }
    } else {
        char extra[160];
        int n = snprintf(extra, sizeof(extra), "Cache-Control: no-store\r\n");
        if (e->cfg.cookie)
            snprintf(extra + n, sizeof(extra) - (size_t)n,
                     "Set-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax\r\n", e->cfg.cookie,
                     s->sid);
        respond(e, req, 200, "text/plain; charset=UTF-8", extra, open.data, open.len,
                e->cfg.http_compression ? HTTP_RESP_COMPRESS : 0);
    }
    buf_cleanup(&open);
    if (s->state == SS_OPEN)
        arm_timer(s, e->cfg.ping_interval_ms);
}

/* --- requests ----------------------------------------------------------- */

static void handle_upgrade_request(struct engine *e, struct sio_session *s,
                                   struct http_request *req)
{
    if (s->transport == T_WEBSOCKET || s->probe || !e->cfg.allow_upgrades) {
        /* Accept, then close at once: a plain 400 confuses some clients
         * (protocol.md §E.25). */
        struct wsconn *ws = accept_websocket(e, req, s, &probe_handlers);
        if (ws)
            wsconn_close(ws, WS_CLOSE_NORMAL, NULL);
        return;
    }
    struct wsconn *ws = accept_websocket(e, req, s, &probe_handlers);
    if (!ws)
        return;
    s->probe = ws;
    s->upgrade = UP_PROBING;
    s->upgrade_timer = evtimer_new(e->base, on_upgrade_timeout, s);
    if (s->upgrade_timer) {
        struct timeval tv = {e->cfg.upgrade_timeout_ms / 1000,
                             (e->cfg.upgrade_timeout_ms % 1000) * 1000};
        evtimer_add(s->upgrade_timer, &tv);
    }
}

static void handle_poll_get(struct engine *e, struct sio_session *s, struct http_request *req)
{
    if (s->get) {
        /* Overlapping polls: the client is broken (protocol.md §D.16). */
        respond_error(e, req, EIO_ERR_BAD_REQUEST);
        session_close(s, "transport error", false);
        return;
    }
    if (s->upgrade == UP_PROBED) {
        respond_single(s, req, EIO_NOOP);
        return;
    }
    s->get = req;
    http_request_set_data(req, s);
    if (s->q_len)
        schedule_deferred(s);
}

static void handle_poll_post(struct engine *e, struct sio_session *s, struct http_request *req)
{
    const char *ctype = http_request_header(req, "Content-Type");
    if (ctype && strncasecmp(ctype, "application/octet-stream", 24) == 0) {
        /* Binary payloads do not exist under EIO4. */
        respond_error(e, req, EIO_ERR_BAD_REQUEST);
        session_close(s, "transport error", false);
        return;
    }
    size_t len;
    uint8_t *body = http_request_body(req, &len);
    struct eio_payload_reader rd;
    eio_payload_reader_init(&rd, body, len);
    engine_session_ref(s);
    struct eio_packet p;
    int rc;
    while (s->state == SS_OPEN && (rc = eio_payload_next(&rd, &p)) == EIO_OK)
        on_packet(s, &p);
    if (s->state == SS_OPEN && rc < 0)
        session_close(s, "parse error", false);
    engine_session_unref(s);
    respond(e, req, 200, "text/html", NULL, "ok", 2, 0);
}

/* Origin header values may not contain control characters (protocol.md
 * §A.4: "invalid Origin characters"). */
static bool origin_valid(const char *origin)
{
    for (const unsigned char *p = (const unsigned char *)origin; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    return true;
}

static bool query_is(struct http_request *req, const char *key, const char *value)
{
    const char *v;
    size_t n;
    return http_request_query_param(req, key, &v, &n) && n == strlen(value) &&
           memcmp(v, value, n) == 0;
}

static struct sio_session *find_session(struct engine *e, struct http_request *req)
{
    const char *sid;
    size_t sid_len;
    struct sio_session *s = NULL;
    if (http_request_query_param(req, "sid", &sid, &sid_len) && sid_len < sizeof(s->sid)) {
        char key[sizeof(s->sid)];
        memcpy(key, sid, sid_len);
        key[sid_len] = '\0';
        HASH_FIND_STR(e->sessions, key, s);
    }
    return s;
}

/* Forgets the POST in progress of the session req was announced to. */
static void release_post(struct http_request *req)
{
    struct sio_session *s = http_request_get_data(req);
    if (s && s->post == req) {
        s->post = NULL;
        http_request_set_data(req, NULL);
        engine_session_unref(s);
    }
}

int engine_handle_head(struct engine *e, struct http_request *req)
{
    if (http_request_method(req) != HTTP_M_POST)
        return 0;
    struct sio_session *s = find_session(e, req);
    if (!s || s->state != SS_OPEN || s->transport != T_POLLING)
        return 0; /* answered with the right error once the body is in */
    if (s->post) {
        session_close(s, "transport error", false);
        return 400;
    }
    s->post = req;
    engine_session_ref(s);
    http_request_set_data(req, s);
    return 0;
}

void engine_handle_request(struct engine *e, struct http_request *req)
{
    release_post(req);
    enum http_method_kind method = http_request_method(req);
    if (method == HTTP_M_OPTIONS && e->cfg.cors_origins) {
        struct buf h;
        buf_init(&h);
        buf_append_str(&h, "Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n");
        const char *rh = http_request_header(req, "Access-Control-Request-Headers");
        if (rh && origin_valid(rh)) {
            buf_append_str(&h, "Access-Control-Allow-Headers: ");
            buf_append_str(&h, rh);
            buf_append_str(&h, "\r\nVary: Access-Control-Request-Headers\r\n");
        }
        buf_append_byte(&h, 0);
        respond(e, req, 204, NULL, (const char *)h.data, NULL, 0, 0);
        buf_cleanup(&h);
        return;
    }

    bool websocket = query_is(req, "transport", "websocket");
    bool polling = query_is(req, "transport", "polling");
    if ((!websocket || !e->cfg.websocket) && (!polling || !e->cfg.polling)) {
        respond_error(e, req, EIO_ERR_TRANSPORT_UNKNOWN);
        return;
    }
    const char *origin = http_request_header(req, "Origin");
    if (origin && !origin_valid(origin)) {
        respond_error(e, req, EIO_ERR_BAD_REQUEST);
        return;
    }
    bool upgrade = http_request_is_upgrade(req);
    const char *sid;
    size_t sid_len;
    if (http_request_query_param(req, "sid", &sid, &sid_len)) {
        struct sio_session *s = find_session(e, req);
        if (!s) {
            respond_error(e, req, EIO_ERR_SID_UNKNOWN);
            return;
        }
        if (websocket && upgrade && s->state == SS_OPEN) {
            handle_upgrade_request(e, s, req);
            return;
        }
        if (!polling || s->transport != T_POLLING) {
            respond_error(e, req, EIO_ERR_BAD_REQUEST);
            return;
        }
        if (method == HTTP_M_GET) {
            if (s->state == SS_CLOSING) {
                s->get = req;
                http_request_set_data(req, s);
                flush_polling(s);
                engine_session_unref(s); /* the grace period is over */
            } else {
                handle_poll_get(e, s, req);
            }
        } else if (method == HTTP_M_POST && s->state == SS_OPEN) {
            handle_poll_post(e, s, req);
        } else {
            respond_error(e, req, EIO_ERR_BAD_REQUEST);
        }
        return;
    }

    if (method != HTTP_M_GET) {
        respond_error(e, req, EIO_ERR_BAD_METHOD);
        return;
    }
    if (websocket && !upgrade) {
        respond_error(e, req, EIO_ERR_BAD_REQUEST);
        return;
    }
    if (e->h.allow && !e->h.allow(req, e->arg)) {
        respond_error(e, req, EIO_ERR_FORBIDDEN);
        return;
    }
    if (!query_is(req, "EIO", "4")) {
        respond_error(e, req, EIO_ERR_BAD_VERSION);
        return;
    }
    handshake(e, req, websocket);
}

void engine_handle_abort(struct engine *e, struct http_request *req)
{
    release_post(req);
    struct sio_session *s = http_request_get_data(req);
    if (!s || s->get != req)
        return;
    release_get(s);
    session_close(s, "transport error", false);
}

/* --- engine ------------------------------------------------------------- */

struct engine *engine_new(struct event_base *base, const struct engine_config *cfg,
                          const struct engine_handlers *h, void *arg, const struct logger *log)
{
    struct engine *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->base = base;
    e->h = *h;
    e->arg = arg;
    e->log = log;
    e->deferred_ev = event_new(base, -1, 0, run_deferred, e);
    if (!e->deferred_ev) {
        free(e);
        return NULL;
    }
    engine_set_config(e, cfg);
    return e;
}

void engine_set_config(struct engine *e, const struct engine_config *cfg)
{
    e->cfg = *cfg;
    e->path_len = strlen(cfg->path);
}

void engine_close_all(struct engine *e, const char *reason)
{
    struct sio_session *s, *tmp;
    HASH_ITER(hh, e->sessions, s, tmp)
    {
        if (s->state == SS_OPEN)
            session_close(s, reason, false);
    }
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    engine_close_all(e, "server shutting down");
    /* Run the close handlers now; nothing is left for the loop to do. */
    run_deferred(-1, 0, e);
    /* End every WebSocket at once. Their `closed` callbacks are deferred to
     * the event loop, so run it (without blocking) until they are all gone. */
    for (struct ws_entry *en = e->ws_list; en; en = en->next)
        wsconn_abort(en->ws);
    for (int pass = 0; e->ws_list && pass < 100; pass++)
        event_base_loop(e->base, EVLOOP_NONBLOCK);
    struct sio_session *s, *tmp;
    HASH_ITER(hh, e->sessions, s, tmp)
    {
        /* Sessions still waiting for their final GET. */
        evtimer_del(&s->timer);
        unlink_session(s);
        engine_session_unref(s);
    }
    event_free(e->deferred_ev);
    free(e);
}

bool engine_matches(const struct engine *e, const char *path, size_t len)
{
    /* "/socket.io/..." and the bare "/socket.io" both belong to the engine. */
    if (len >= e->path_len && memcmp(path, e->cfg.path, e->path_len) == 0)
        return true;
    return len == e->path_len - 1 && memcmp(path, e->cfg.path, len) == 0;
}

unsigned engine_sessions(const struct engine *e)
{
    return e->n_sessions;
}

bool engine_busy(const struct engine *e)
{
    if (e->ws_list)
        return true;
    for (const struct sio_session *s = e->sessions; s; s = s->hh.next)
        if (s->state == SS_OPEN)
            return true;
    return false;
}

const char *engine_session_id(const struct sio_session *s)
{
    return s->sid;
}

const char *engine_session_transport(const struct sio_session *s)
{
    return s->transport == T_WEBSOCKET ? "websocket" : "polling";
}

bool engine_session_is_open(const struct sio_session *s)
{
    return s->state == SS_OPEN;
}

uint64_t engine_session_log_id(const struct sio_session *s)
{
    return s->log_id;
}

void engine_session_set_data(struct sio_session *s, void *data)
{
    s->data = data;
}

void *engine_session_get_data(const struct sio_session *s)
{
    return s->data;
}

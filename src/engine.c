/* Engine.IO v4 server. See engine.h for the contract and protocol.md §A-§G
 * for the behaviour matched here. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/rand.h>

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

/* What a session waits for, each with one delay for every session: the next
 * ping (ping interval), the pong (ping timeout), or, for a polling session
 * closed by the server, the GET that collects its close packet. */
enum timer_kind { TK_NONE, TK_PING, TK_PONG, TK_GRACE, TK_COUNT };

/* Every WebSocket of the engine (a session's transport, an upgrade probe, or
 * one closing), so that engine_free() can end them all. Each holds a
 * reference to its session. A transport's entry is embedded in its session
 * (the transport handlers find the session from it); a probe's is a
 * struct probe_entry. */
struct ws_entry {
    struct ws_entry *prev, *next;
    struct wsconn *ws;
};

struct probe_entry {
    struct ws_entry en;
    struct sio_session *s;
};

/* The polling transport's state and an upgrade in progress. A session that
 * only ever speaks WebSocket never allocates one (unless something is sent
 * before its WebSocket is ready); an upgraded session frees its own once it
 * is empty. */
struct polling {
    struct http_request *get;  /* pending long poll */
    struct http_request *post; /* POST whose body is being received (holds a ref) */
    struct outpacket **q;      /* also packets sent before a WebSocket is ready */
    unsigned q_len, q_cap;
    size_t q_bytes;
    struct wsconn *probe;        /* the WebSocket of an upgrade */
    struct event *upgrade_timer; /* while probe is set */
};

/* Every idle client has one: keep it small (design.md §2). Timers are
 * engine-wide lists rather than a struct event each, the sid index is the
 * engine's compact table rather than a hash handle per session, and
 * polling state is allocated only for sessions that poll. */
struct sio_session {
    char sid[21];
    uint8_t state;
    uint8_t transport;
    uint8_t upgrade;
    uint8_t timer; /* enum timer_kind: the list the session is in */
    bool awaiting_pong;
    bool in_flush_list;
    bool close_pending; /* the close handler still has to run */
    bool in_table;      /* in the engine's sid table */
    bool ws_open;       /* ws_en.ws is the transport (not closing) */
    unsigned refs;
    struct engine *eng;
    const char *close_reason;
    struct sio_session *next_deferred; /* flush / close work for this pass */
    uint64_t log_id;
    void *data;
    struct polling *poll; /* NULL until the session polls */
    struct sio_session *timer_prev, *timer_next;
    uint64_t deadline;     /* monotonic ms, while in a timer list */
    struct ws_entry ws_en; /* the WebSocket transport's; ws_en.ws NULL when none */
};

/* Sessions waiting for one kind of timer, in deadline order (appending
 * keeps the order, as every session of a kind waits equally long). */
struct timer_list {
    struct sio_session *head, *tail;
};

struct engine {
    struct event_base *base;
    struct engine_config cfg;
    struct engine_handlers h;
    void *arg;
    const struct logger *log;
    /* Sessions by sid: open addressing, linear probing; at most 3/4 full. */
    struct sio_session **table;
    size_t table_cap; /* 0 or a power of two */
    unsigned n_sessions;
    struct event *deferred_ev;
    struct sio_session *deferred; /* sessions with flush or close work */
    uint64_t next_log_id;
    size_t path_len;
    struct ws_entry *ws_list;
    struct wsconn_loop *ws_loop;        /* direct WebSocket I/O, see wsconn.h */
    struct timer_list timers[TK_COUNT]; /* [TK_NONE] stays empty */
    struct event *timer_ev;             /* fires for the earliest deadline */
    uint64_t timer_at;                  /* when timer_ev fires; 0 when not pending */
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
    struct polling *p = s->poll;
    if (!p)
        return;
    for (unsigned i = 0; i < p->q_len; i++)
        outpacket_unref(p->q[i]);
    p->q_len = 0;
    p->q_bytes = 0;
}

static void poll_free(struct sio_session *s)
{
    queue_clear(s);
    free(s->poll->q);
    free(s->poll);
    s->poll = NULL;
}

/* The session's polling state, created on first use. NULL on allocation
 * failure. */
static struct polling *poll_of(struct sio_session *s)
{
    if (!s->poll)
        s->poll = calloc(1, sizeof(*s->poll));
    return s->poll;
}

/* Frees the polling state of a session that no longer polls once nothing
 * in it is in use. */
static void poll_trim(struct sio_session *s)
{
    const struct polling *p = s->poll;
    if (p && s->transport == T_WEBSOCKET && !p->get && !p->post && !p->q_len && !p->probe &&
        !p->upgrade_timer)
        poll_free(s);
}

static struct http_request *pending_get(const struct sio_session *s)
{
    return s->poll ? s->poll->get : NULL;
}

static unsigned queue_len(const struct sio_session *s)
{
    return s->poll ? s->poll->q_len : 0;
}

static struct wsconn *upgrade_probe(const struct sio_session *s)
{
    return s->poll ? s->poll->probe : NULL;
}

static struct wsconn *transport_ws(const struct sio_session *s)
{
    return s->ws_open ? s->ws_en.ws : NULL;
}

void engine_session_unref(struct sio_session *s)
{
    if (--s->refs > 0)
        return;
    if (s->poll)
        poll_free(s);
    free(s);
}

static void stop_upgrade_timer(struct sio_session *s)
{
    struct polling *p = s->poll;
    if (p && p->upgrade_timer) {
        event_free(p->upgrade_timer);
        p->upgrade_timer = NULL;
    }
}

/* --- the sid table ------------------------------------------------------ */

/* FNV-1a. Stored sids are random, so an attacker choosing the sid of a
 * lookup cannot build long probe runs. */
static size_t sid_hash(const char *sid)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *sid; sid++)
        h = (h ^ (uint8_t)*sid) * 1099511628211ULL;
    return (size_t)h;
}

static struct sio_session *table_find(const struct engine *e, const char *sid)
{
    if (!e->table_cap)
        return NULL;
    size_t mask = e->table_cap - 1;
    for (size_t i = sid_hash(sid) & mask; e->table[i]; i = (i + 1) & mask)
        if (strcmp(e->table[i]->sid, sid) == 0)
            return e->table[i];
    return NULL;
}

static void table_put(struct sio_session **table, size_t cap, struct sio_session *s)
{
    size_t i = sid_hash(s->sid) & (cap - 1);
    while (table[i])
        i = (i + 1) & (cap - 1);
    table[i] = s;
}

static int table_insert(struct engine *e, struct sio_session *s)
{
    if (((size_t)e->n_sessions + 1) * 4 > e->table_cap * 3) {
        size_t cap = e->table_cap ? e->table_cap * 2 : 64;
        struct sio_session **t = calloc(cap, sizeof(*t));
        if (!t)
            return -1;
        for (size_t i = 0; i < e->table_cap; i++)
            if (e->table[i])
                table_put(t, cap, e->table[i]);
        free(e->table);
        e->table = t;
        e->table_cap = cap;
    }
    table_put(e->table, e->table_cap, s);
    s->in_table = true;
    e->n_sessions++;
    return 0;
}

/* Removes s and shifts the rest of its probe run back into the hole, so
 * that lookups never need tombstones. Entries only move to slots at or
 * after the hole (cyclically): see engine_close_all for why that matters. */
static void table_remove(struct engine *e, struct sio_session *s)
{
    size_t mask = e->table_cap - 1;
    size_t i = sid_hash(s->sid) & mask;
    while (e->table[i] != s)
        i = (i + 1) & mask;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; e->table[j]; j = (j + 1) & mask) {
        size_t home = sid_hash(e->table[j]->sid) & mask;
        /* j may fill the hole unless its home lies cyclically in (hole, j] */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            e->table[hole] = e->table[j];
            hole = j;
        }
    }
    e->table[hole] = NULL;
}

static void unlink_session(struct sio_session *s)
{
    if (s->in_table) {
        table_remove(s->eng, s);
        s->in_table = false;
        s->eng->n_sessions--;
    }
}

/* --- timers ------------------------------------------------------------- */

static void on_timer(struct sio_session *s);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned timer_delay(const struct engine *e, enum timer_kind kind)
{
    switch (kind) {
    case TK_PING:
        return e->cfg.ping_interval_ms;
    case TK_PONG:
        return e->cfg.ping_timeout_ms;
    default:
        return CLOSE_GRACE_MS;
    }
}

/* Makes timer_ev fire at the earliest deadline (or not at all). */
static void timer_schedule(struct engine *e, uint64_t now)
{
    uint64_t first = 0;
    for (int k = TK_NONE + 1; k < TK_COUNT; k++) {
        const struct sio_session *h = e->timers[k].head;
        if (h && (!first || h->deadline < first))
            first = h->deadline;
    }
    if (first == e->timer_at)
        return;
    e->timer_at = first;
    if (!first) {
        evtimer_del(e->timer_ev);
        return;
    }
    uint64_t ms = first > now ? first - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(e->timer_ev, &tv);
}

static void timer_stop(struct sio_session *s)
{
    if (s->timer == TK_NONE)
        return;
    struct timer_list *l = &s->eng->timers[s->timer];
    if (s->timer_prev)
        s->timer_prev->timer_next = s->timer_next;
    else
        l->head = s->timer_next;
    if (s->timer_next)
        s->timer_next->timer_prev = s->timer_prev;
    else
        l->tail = s->timer_prev;
    s->timer_prev = s->timer_next = NULL;
    s->timer = TK_NONE;
    /* timer_ev may now fire for nothing; it then reschedules itself. */
}

/* (Re)starts the session's timer. */
static void timer_start(struct sio_session *s, enum timer_kind kind)
{
    struct engine *e = s->eng;
    timer_stop(s);
    uint64_t now = now_ms();
    s->deadline = now + timer_delay(e, kind);
    s->timer = (uint8_t)kind;
    /* Only a configuration change makes a later arrival due earlier. */
    struct timer_list *l = &e->timers[kind];
    struct sio_session *after = l->tail;
    while (after && after->deadline > s->deadline)
        after = after->timer_prev;
    s->timer_prev = after;
    s->timer_next = after ? after->timer_next : l->head;
    if (s->timer_next)
        s->timer_next->timer_prev = s;
    else
        l->tail = s;
    if (after)
        after->timer_next = s;
    else
        l->head = s;
    if (!e->timer_at || s->deadline < e->timer_at)
        timer_schedule(e, now);
}

/* Runs every session timer that is due, one at a time from the list heads,
 * so that whatever a timer does to other sessions' timers is seen. */
static void on_engine_timer(evutil_socket_t fd, short what, void *arg)
{
    struct engine *e = arg;
    e->timer_at = 0;
    uint64_t now = now_ms();
    for (;;) {
        struct sio_session *due = NULL;
        for (int k = TK_NONE + 1; k < TK_COUNT; k++) {
            struct sio_session *h = e->timers[k].head;
            if (h && h->deadline <= now && (!due || h->deadline < due->deadline))
                due = h;
        }
        if (!due)
            break;
        timer_stop(due);
        on_timer(due);
    }
    e->timer_at = 0;
    timer_schedule(e, now_ms());
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
    struct polling *p = s->poll;
    if (p && p->get) {
        http_request_set_data(p->get, NULL);
        p->get = NULL;
    }
}

/* --- polling output ----------------------------------------------------- */

static int queue_push(struct sio_session *s, struct outpacket *p)
{
    struct polling *pl = poll_of(s);
    if (!pl)
        return -1;
    if (pl->q_len == pl->q_cap) {
        unsigned cap = pl->q_cap ? pl->q_cap * 2 : 4;
        struct outpacket **q = realloc(pl->q, cap * sizeof(*q));
        if (!q)
            return -1;
        pl->q = q;
        pl->q_cap = cap;
    }
    pl->q[pl->q_len++] = outpacket_ref(p);
    pl->q_bytes += outpacket_size(p);
    return 0;
}

/* Answers the pending GET with every queued packet. */
static void flush_polling(struct sio_session *s)
{
    struct polling *pl = s->poll;
    if (!pl || !pl->get || pl->q_len == 0)
        return;
    struct buf body;
    buf_init(&body);
    int rc = 0;
    for (unsigned i = 0; i < pl->q_len && rc == 0; i++) {
        struct outpacket *p = pl->q[i];
        struct eio_packet pk = {
            .type = p->type, .binary = p->binary, .data = outpacket_data(p), .len = p->data_len};
        rc = eio_payload_append(&body, &pk);
    }
    struct http_request *req = pl->get;
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
        timer_stop(s);
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
        if (pending_get(s))
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

static void on_timer(struct sio_session *s)
{
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
    timer_start(s, TK_PONG);
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
    timer_stop(s);
    stop_upgrade_timer(s);
    struct wsconn *probe = upgrade_probe(s);
    if (probe) {
        s->poll->probe = NULL;
        wsconn_abort(probe);
    }
    bool forced =
        strcmp(reason, "forced close") == 0 || strcmp(reason, "server shutting down") == 0;
    if (s->transport == T_WEBSOCKET) {
        struct wsconn *ws = transport_ws(s);
        if (ws) {
            uint16_t code = forced ? WS_CLOSE_NORMAL : WS_CLOSE_GOING_AWAY;
            if (strcmp(reason, "parse error") == 0)
                code = WS_CLOSE_PROTOCOL_ERROR;
            s->ws_open = false;
            wsconn_close(ws, code, NULL);
        }
        queue_clear(s);
        unlink_session(s);
    } else if (pending_get(s)) {
        if (client_close) {
            struct http_request *req = s->poll->get;
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
        if (c && queue_len(s) == 0) {
            struct outpacket *noop = outpacket_new(EIO_NOOP, false, NULL, 0);
            if (noop) {
                queue_push(s, noop);
                outpacket_unref(noop);
            }
        }
        /* Closing waits for a GET only with the close packet queued. */
        int queued = c ? queue_push(s, c) : -1;
        outpacket_unref(c);
        if (queued == 0) {
            s->state = SS_CLOSING;
            engine_session_ref(s); /* held by the grace timer */
            timer_start(s, TK_GRACE);
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
            timer_start(s, TK_PING);
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
    struct wsconn *ws = transport_ws(s);
    if (s->transport == T_WEBSOCKET && ws) {
        int rc = wsconn_send_packet(ws, p);
        if (rc == WSCONN_DROPPED)
            return ENGINE_DROPPED;
        if (rc == WSCONN_CLOSED) {
            session_close(s, "transport error", false);
            return ENGINE_CLOSED;
        }
        return ENGINE_SENT;
    }
    size_t queued = s->poll ? s->poll->q_bytes : 0;
    if (p->is_volatile && (!pending_get(s) || queued > e->cfg.out_soft))
        return ENGINE_DROPPED;
    if (e->cfg.out_hard && queued + outpacket_size(p) > e->cfg.out_hard) {
        LOG(e->log, LOG_WARN, s->log_id, "session %s: output over %zu bytes, closing", s->sid,
            e->cfg.out_hard);
        session_close(s, "transport error", false);
        return ENGINE_CLOSED;
    }
    if (queue_push(s, p) < 0) {
        session_close(s, "transport error", false);
        return ENGINE_CLOSED;
    }
    if (pending_get(s))
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

static void ws_list_add(struct engine *e, struct ws_entry *en)
{
    en->prev = NULL;
    en->next = e->ws_list;
    if (e->ws_list)
        e->ws_list->prev = en;
    e->ws_list = en;
}

static void ws_list_remove(struct engine *e, struct ws_entry *en)
{
    if (en->prev)
        en->prev->next = en->next;
    else
        e->ws_list = en->next;
    if (en->next)
        en->next->prev = en->prev;
    en->prev = en->next = NULL;
}

/* The session of a transport's entry (the transport handlers' argument). */
static struct sio_session *session_of(void *transport_entry)
{
    return (struct sio_session *)((char *)transport_entry - offsetof(struct sio_session, ws_en));
}

static void ws_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary, void *arg)
{
    struct sio_session *s = session_of(arg);
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

/* Forgets a finished WebSocket of s and drops the reference its entry
 * held. */
static void ws_entry_release(struct sio_session *s, struct ws_entry *en)
{
    ws_list_remove(s->eng, en);
    if (en == &s->ws_en)
        en->ws = NULL;
    else
        free((struct probe_entry *)en);
    engine_session_unref(s);
}

static void ws_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg)
{
    struct sio_session *s = session_of(arg);
    if (s->ws_open) {
        s->ws_open = false;
        bool clean = code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ||
                     code == WS_CLOSE_NO_STATUS || code == WS_CLOSE_ABNORMAL;
        session_close(s, clean ? "transport close" : "transport error", false);
    }
    ws_entry_release(s, &s->ws_en);
}

/* Sends everything queued before the WebSocket was ready, in order. */
static void drain_queue_to_ws(struct sio_session *s)
{
    struct polling *pl = s->poll;
    if (!pl)
        return;
    unsigned n = pl->q_len;
    struct outpacket **q = pl->q;
    pl->q = NULL;
    pl->q_len = pl->q_cap = 0;
    pl->q_bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        if (s->state == SS_OPEN)
            engine_send(s, q[i]);
        outpacket_unref(q[i]);
    }
    free(q);
    poll_trim(s);
}

static void end_upgrade(struct sio_session *s)
{
    stop_upgrade_timer(s);
    struct wsconn *probe = upgrade_probe(s);
    if (probe) {
        s->poll->probe = NULL;
        wsconn_close(probe, WS_CLOSE_NORMAL, NULL);
    }
    s->upgrade = UP_NONE;
}

static void on_upgrade_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sio_session *s = arg;
    LOG(s->eng->log, LOG_DEBUG, s->log_id, "session %s: upgrade timed out", s->sid);
    end_upgrade(s);
}

/* pe (the probe's entry) is freed. */
static void complete_upgrade(struct sio_session *s, struct probe_entry *pe)
{
    struct engine *e = s->eng;
    stop_upgrade_timer(s);
    struct wsconn *ws = s->poll->probe;
    s->poll->probe = NULL;
    s->upgrade = UP_NONE;
    /* The WebSocket and the session reference move to the transport's
     * entry, unused so far: this session has been polling. */
    ws_list_remove(e, &pe->en);
    free(pe);
    s->ws_en.ws = ws;
    ws_list_add(e, &s->ws_en);
    s->ws_open = true;
    s->transport = T_WEBSOCKET;
    wsconn_set_handlers(ws, &ws_handlers, &s->ws_en);
    struct http_request *req = pending_get(s);
    if (req) {
        release_get(s);
        respond_single(s, req, EIO_NOOP);
    }
    drain_queue_to_ws(s);
    LOG(s->eng->log, LOG_DEBUG, s->log_id, "session %s upgraded to websocket", s->sid);
}

static void probe_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary,
                          void *arg)
{
    struct sio_session *s = ((struct probe_entry *)arg)->s;
    if (s->state != SS_OPEN || upgrade_probe(s) != ws)
        return;
    if (!binary && len == 6 && memcmp(data, "2probe", 6) == 0 && s->upgrade == UP_PROBING) {
        wsconn_send(ws, false, "3probe", 6);
        s->upgrade = UP_PROBED;
        struct http_request *req = pending_get(s);
        if (req) {
            release_get(s);
            respond_single(s, req, EIO_NOOP);
        }
        return;
    }
    if (!binary && len == 1 && data[0] == '0' + EIO_UPGRADE) {
        complete_upgrade(s, arg); /* frees arg */
        return;
    }
    /* Anything else during an upgrade: drop the new WebSocket, keep polling. */
    end_upgrade(s);
}

static void probe_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg)
{
    struct probe_entry *pe = arg;
    struct sio_session *s = pe->s;
    if (upgrade_probe(s) == ws) {
        s->poll->probe = NULL;
        stop_upgrade_timer(s);
        s->upgrade = UP_NONE;
    }
    ws_entry_release(s, &pe->en);
}

/* Writes the 101 response and wraps the connection for session s (which it
 * references until the WebSocket is finished): as its transport (whose
 * entry must be unused) or as an upgrade probe. Returns NULL after
 * answering the request with an error. */
static struct wsconn *accept_websocket(struct engine *e, struct http_request *req,
                                       struct sio_session *s, bool transport)
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

    struct probe_entry *pe = transport ? NULL : calloc(1, sizeof(*pe));
    struct ws_entry *en = transport ? &s->ws_en : pe ? &pe->en : NULL;
    if (!en) {
        buf_cleanup(&resp);
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        return NULL;
    }
    struct bufferevent *bev = http_request_upgrade(req);
    if (!bev || bufferevent_write(bev, resp.data, resp.len) != 0) {
        buf_cleanup(&resp);
        free(pe);
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
        .loop = e->ws_loop,
    };
    struct wsconn *ws = transport ? wsconn_new(bev, &wc, &ws_handlers, en)
                                  : wsconn_new(bev, &wc, &probe_handlers, pe);
    if (!ws) {
        free(pe);
        return NULL;
    }
    wsconn_set_id(ws, s->log_id);
    en->ws = ws;
    if (pe)
        pe->s = s;
    engine_session_ref(s);
    ws_list_add(e, en);
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
    for (;;) {
        uint8_t rnd[15];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            free(s);
            return NULL;
        }
        size_t n = base64url_encode(rnd, sizeof(rnd), s->sid);
        s->sid[n] = '\0';
        if (!table_find(e, s->sid))
            break;
    }
    if (table_insert(e, s) < 0) {
        free(s);
        return NULL;
    }
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
        struct wsconn *ws = accept_websocket(e, req, s, true);
        if (!ws) {
            buf_cleanup(&open);
            session_close(s, "transport error", false);
            return;
        }
        wsconn_send(ws, false, open.data, open.len);
        if (s->state == SS_OPEN) {
            s->ws_open = true;
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
        timer_start(s, TK_PING);
}

/* --- requests ----------------------------------------------------------- */

static void handle_upgrade_request(struct engine *e, struct sio_session *s,
                                   struct http_request *req)
{
    if (s->transport == T_WEBSOCKET || upgrade_probe(s) || !e->cfg.allow_upgrades) {
        /* Accept, then close at once: a plain 400 confuses some clients
         * (protocol.md §E.25). */
        struct wsconn *ws = accept_websocket(e, req, s, false);
        if (ws)
            wsconn_close(ws, WS_CLOSE_NORMAL, NULL);
        return;
    }
    /* A polling session has its polling state already (its GETs created
     * it), but creating it cannot hurt and keeps this self-contained. */
    struct polling *pl = poll_of(s);
    if (!pl) {
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        return;
    }
    struct wsconn *ws = accept_websocket(e, req, s, false);
    if (!ws)
        return;
    pl->probe = ws;
    s->upgrade = UP_PROBING;
    pl->upgrade_timer = evtimer_new(e->base, on_upgrade_timeout, s);
    if (pl->upgrade_timer) {
        struct timeval tv = {e->cfg.upgrade_timeout_ms / 1000,
                             (e->cfg.upgrade_timeout_ms % 1000) * 1000};
        evtimer_add(pl->upgrade_timer, &tv);
    }
}

static void handle_poll_get(struct engine *e, struct sio_session *s, struct http_request *req)
{
    if (pending_get(s)) {
        /* Overlapping polls: the client is broken (protocol.md §D.16). */
        respond_error(e, req, EIO_ERR_BAD_REQUEST);
        session_close(s, "transport error", false);
        return;
    }
    if (s->upgrade == UP_PROBED) {
        respond_single(s, req, EIO_NOOP);
        return;
    }
    struct polling *pl = poll_of(s);
    if (!pl) {
        http_respond(req, 500, NULL, NULL, NULL, 0, HTTP_RESP_CLOSE);
        session_close(s, "transport error", false);
        return;
    }
    pl->get = req;
    http_request_set_data(req, s);
    if (pl->q_len)
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
        s = table_find(e, key);
    }
    return s;
}

/* Forgets the POST in progress of the session req was announced to. */
static void release_post(struct http_request *req)
{
    struct sio_session *s = http_request_get_data(req);
    if (s && s->poll && s->poll->post == req) {
        s->poll->post = NULL;
        http_request_set_data(req, NULL);
        poll_trim(s);
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
    struct polling *pl = poll_of(s);
    if (!pl) {
        session_close(s, "transport error", false);
        return 400;
    }
    if (pl->post) {
        session_close(s, "transport error", false);
        return 400;
    }
    pl->post = req;
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
                /* its close packet is queued: the polling state exists */
                s->poll->get = req;
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
    if (!s || pending_get(s) != req)
        return;
    release_get(s);
    session_close(s, "transport error", false);
}

/* --- engine ------------------------------------------------------------- */

/* Sids come from RAND_bytes and every WebSocket handshake hashes with
 * SHA-1. The first use of each sets up part of libcrypto (providers, the
 * DRBG, the digest: about 2.7 MB, mostly code) and is where it would fail:
 * doing both here moves that one-time cost and that failure to start-up,
 * off the first clients' handshakes. The key and answer are RFC 6455's
 * example. */
static bool crypto_ready(void)
{
    uint8_t rnd;
    char accept[WS_ACCEPT_LEN + 1];
    return RAND_bytes(&rnd, 1) == 1 && ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept) &&
           strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0;
}

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
    e->timer_ev = evtimer_new(base, on_engine_timer, e);
    e->ws_loop = wsconn_loop_new(base);
    if (!e->deferred_ev || !e->timer_ev || !e->ws_loop || !crypto_ready()) {
        if (e->deferred_ev)
            event_free(e->deferred_ev);
        if (e->timer_ev)
            event_free(e->timer_ev);
        wsconn_loop_free(e->ws_loop);
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
    /* Closing a session may remove it from the table, which moves a later
     * entry of its probe run into its slot: look at the slot again. Entries
     * never move to slots before the one removed (table_remove), so none is
     * skipped; one already seen may come back and is skipped as not open. */
    for (size_t i = 0; i < e->table_cap;) {
        struct sio_session *s = e->table[i];
        if (s && s->state == SS_OPEN)
            session_close(s, reason, false);
        else
            i++;
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
    wsconn_loop_free(e->ws_loop);
    /* Sessions still waiting for their final GET. */
    for (size_t i = 0; i < e->table_cap;) {
        struct sio_session *s = e->table[i];
        if (!s) {
            i++;
            continue;
        }
        timer_stop(s);
        unlink_session(s);
        engine_session_unref(s);
    }
    event_free(e->deferred_ev);
    event_free(e->timer_ev);
    free(e->table);
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
    for (size_t i = 0; i < e->table_cap; i++)
        if (e->table[i] && e->table[i]->state == SS_OPEN)
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

/* http: HTTP/1.1 server connections (contract in http.h).
 *
 * Each connection is a small state machine (enum phase). Every entry point
 * that touches a connection (libevent callbacks, http_respond, drain) holds a
 * reference (busy) while it runs; a connection is only marked PH_DEAD and the
 * outermost frame frees it, so a handler may answer, upgrade or close from
 * inside on_request without pulling the connection from under the parser.
 *
 * Plain-TCP output is written by the server's flusher at the end of the
 * loop pass in which it was queued (one writev), not by the bufferevent,
 * whose write event would be armed and disarmed around every response (two
 * epoll_ctl calls); the write event is armed only when the kernel does not
 * take everything. TLS connections write through their bufferevent.
 */
#define ZLIB_CONST
#include "http.h"

#include "bevwrite.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <http_parser.h>
#include <zlib.h>

/* After the response of a closing connection is flushed, the write side is
 * shut and input is discarded until the peer's EOF, for at most this long:
 * closing a socket with unread input makes the kernel send a reset, which can
 * destroy the response before the client has read it (e.g. a 413 sent while
 * the body is still arriving). */
#define LINGER_MS 2000

enum phase {
    PH_IDLE,   /* waiting for the first byte of a request */
    PH_HEAD,   /* request line and headers */
    PH_BODY,   /* body */
    PH_WAIT,   /* handed to on_request, not answered yet */
    PH_FLUSH,  /* closing: writing out what is queued */
    PH_LINGER, /* closing: write side shut, discarding input until EOF */
    PH_DEAD,   /* freed when the last frame holding it returns */
};

enum last_token { TOK_URL, TOK_FIELD, TOK_VALUE };

enum coding { CODING_IDENTITY, CODING_GZIP, CODING_DEFLATE };

struct http_request {
    struct http_conn *conn;
    /* "url\0name\0value\0name\0value\0..." in one buffer */
    char *text;
    size_t text_len, text_cap;
    uint32_t *hdr; /* offsets into text: name, value, name, value... */
    size_t nhdr, hdr_cap;
    size_t url_len;
    uint8_t *body;
    size_t body_len, body_cap;
    size_t body_declared; /* Content-Length, 0 when unknown */
    void *data;
    unsigned char method; /* enum http_method */
    unsigned char last;   /* enum last_token */
    bool head_done, upgrade, keep_alive, expect_continue;
    bool head_seen; /* on_head accepted it: on_abort must hear of its end */
};

struct http_conn {
    struct http_server *hs;
    struct http_conn *prev, *next;
    struct bufferevent *bev;
    struct event *timer;
    struct http_request *req;
    http_parser parser;
    uint64_t id;
    size_t head_bytes;
    size_t out_mark; /* output length when the timer was armed */
    int reject;      /* status for a request refused while parsing; -1: no response */
    unsigned busy;
    unsigned char phase; /* enum phase */
    bool tls, eof, started, parsing, read_paused;
    bool direct; /* a plain socket: output is written by the flusher */
    bool listed; /* on hs->flush_list, holding a busy reference */
    struct http_conn *next_listed;
    socklen_t peer_len;
    struct sockaddr_storage peer;
    char peer_text[INET6_ADDRSTRLEN];
};

struct http_server {
    struct event_base *base;
    struct http_config cfg;
    struct http_callbacks cb;
    void *arg;
    struct http_conn *conns;
    unsigned nconns;
    struct event *flush_ev;       /* active while flush_list is not empty */
    struct http_conn *flush_list; /* plain-TCP connections with output queued */
    uint64_t next_id;
    bool draining;
};

struct resp_head {
    int status;
    const char *content_type;
    const char *extra;
    size_t len;
    enum coding coding;
    bool vary, close, with_length;
};

static void conn_parse(struct http_conn *c);

void http_config_default(struct http_config *cfg)
{
    cfg->max_header_bytes = 16384;
    cfg->max_url = 8192;
    cfg->max_body = 1000000;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->max_connections = 0;
    cfg->compress_min = 1024;
}

/* --- connection lifetime ---------------------------------------------- */

static struct evbuffer *conn_output(const struct http_conn *c)
{
    return bufferevent_get_output(c->bev);
}

static struct evbuffer *conn_input(const struct http_conn *c)
{
    return bufferevent_get_input(c->bev);
}

/* A zero timeout means "no limit". */
static void conn_arm(struct http_conn *c, unsigned ms)
{
    event_del(c->timer);
    if (ms == 0)
        return;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    c->out_mark = evbuffer_get_length(conn_output(c));
    event_add(c->timer, &tv);
}

static void request_free(struct http_request *req)
{
    if (!req)
        return;
    free(req->text);
    free(req->hdr);
    free(req->body);
    free(req);
}

static void conn_free(struct http_conn *c)
{
    struct http_server *hs = c->hs;
    if (c->prev)
        c->prev->next = c->next;
    else
        hs->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hs->nconns--;
    event_free(c->timer);
    if (c->bev)
        bufferevent_free(c->bev);
    request_free(c->req);
    free(c);
}

static void conn_unref(struct http_conn *c)
{
    if (--c->busy == 0 && c->phase == PH_DEAD)
        conn_free(c);
}

/* Closes at once, dropping queued output; on_abort runs for an unanswered
 * request. */
static void conn_kill(struct http_conn *c)
{
    if (c->phase == PH_DEAD)
        return;
    bool pending = c->phase == PH_WAIT || (c->phase == PH_BODY && c->req && c->req->head_seen);
    c->phase = PH_DEAD;
    event_del(c->timer);
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->busy++;
    if (pending && c->hs->cb.on_abort)
        c->hs->cb.on_abort(c->req, c->hs->arg);
    conn_unref(c);
}

static void conn_discard_input(struct http_conn *c)
{
    struct evbuffer *in = conn_input(c);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void conn_resume_reading(struct http_conn *c)
{
    if (c->read_paused) {
        c->read_paused = false;
        bufferevent_enable(c->bev, EV_READ);
    }
}

static unsigned linger_ms(const struct http_server *hs)
{
    unsigned idle = hs->cfg.idle_timeout_ms;
    return idle != 0 && idle < LINGER_MS ? idle : LINGER_MS;
}

static void conn_flushed(struct http_conn *c)
{
    if (c->eof) {
        conn_kill(c);
        return;
    }
    c->phase = PH_LINGER;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    conn_arm(c, linger_ms(c->hs));
}

/* Graceful close: no more requests, flush what is queued, then free. */
static void conn_close(struct http_conn *c)
{
    if (c->phase >= PH_FLUSH)
        return;
    /* A body announced to on_head that will never be delivered. */
    if (c->phase == PH_BODY && c->req && c->req->head_seen && c->hs->cb.on_abort)
        c->hs->cb.on_abort(c->req, c->hs->arg);
    c->phase = PH_FLUSH;
    request_free(c->req);
    c->req = NULL;
    conn_discard_input(c);
    conn_resume_reading(c);
    if (evbuffer_get_length(conn_output(c)) == 0)
        conn_flushed(c);
    else
        conn_arm(c, c->hs->cfg.idle_timeout_ms);
}

/* A request waiting for its answer keeps reading (so that a peer close is
 * seen) until the pipelined bytes behind it reach the limit. */
static void conn_check_backlog(struct http_conn *c)
{
    const struct http_config *cfg = &c->hs->cfg;
    size_t limit = cfg->max_header_bytes + cfg->max_body;
    if (limit < cfg->max_body)
        limit = SIZE_MAX;
    if (!c->read_paused && evbuffer_get_length(conn_input(c)) >= limit) {
        c->read_paused = true;
        bufferevent_disable(c->bev, EV_READ);
    }
}

/* --- libevent callbacks ------------------------------------------------ */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    c->busy++;
    if (c->phase <= PH_BODY)
        conn_parse(c);
    else if (c->phase == PH_WAIT)
        conn_check_backlog(c);
    else if (c->phase == PH_FLUSH || c->phase == PH_LINGER)
        conn_discard_input(c);
    conn_unref(c);
}

static void conn_drained(struct http_conn *c)
{
    if (c->phase == PH_FLUSH && evbuffer_get_length(conn_output(c)) == 0)
        conn_flushed(c);
}

/* The output is empty. */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    c->busy++;
    /* libevent wrote what the flusher could not: the flusher takes over. */
    if (c->direct)
        bufferevent_disable(bev, EV_WRITE);
    conn_drained(c);
    conn_unref(c);
}

/* Called after anything is queued. While the write event is armed the
 * socket is known to be full and libevent is already waiting on it. */
static void conn_schedule_flush(struct http_conn *c)
{
    struct http_server *hs = c->hs;
    if (!c->direct || c->listed || !c->bev || (bufferevent_get_enabled(c->bev) & EV_WRITE))
        return;
    c->listed = true;
    c->busy++;
    c->next_listed = hs->flush_list;
    if (!hs->flush_list)
        event_active(hs->flush_ev, EV_WRITE, 0);
    hs->flush_list = c;
}

/* One writev of everything queued; what the kernel refuses is left to the
 * bufferevent's write event (conn_write_cb disarms it once drained). */
static void conn_flush(struct http_conn *c)
{
    if (c->phase == PH_DEAD || !c->bev || (bufferevent_get_enabled(c->bev) & EV_WRITE))
        return;
    int rc = bev_write_now(c->bev);
    if (rc < 0)
        conn_kill(c);
    else if (rc == 0)
        conn_drained(c);
}

/* Empties the flush list, calling visit (may be NULL) on each connection
 * before dropping the list's reference. The list is detached first: a
 * callback run from visit (on_abort, via conn_kill) may queue output again,
 * which starts a new list and another run. */
static void flush_list_drain(struct http_server *hs, void (*visit)(struct http_conn *c))
{
    struct http_conn *list = hs->flush_list;
    hs->flush_list = NULL;
    while (list) {
        struct http_conn *c = list;
        list = c->next_listed;
        c->next_listed = NULL;
        c->listed = false;
        if (visit)
            visit(c);
        conn_unref(c);
    }
}

static void flush_run(evutil_socket_t fd, short what, void *arg)
{
    flush_list_drain(arg, conn_flush);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *c = arg;
    c->busy++;
    if (what & BEV_EVENT_ERROR) {
        conn_kill(c);
    } else if (what & BEV_EVENT_EOF) {
        c->eof = true;
        if (c->phase == PH_WAIT || c->phase == PH_LINGER)
            conn_kill(c);
        else if (c->phase < PH_WAIT)
            conn_close(c); /* a response still being written is finished first */
    }
    conn_unref(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    c->busy++;
    size_t out = evbuffer_get_length(conn_output(c));
    /* A peer still taking in a response is not idle: wait as long again. */
    if ((c->phase == PH_IDLE || c->phase == PH_FLUSH) && out > 0 && out != c->out_mark)
        conn_arm(c, c->hs->cfg.idle_timeout_ms);
    else
        conn_kill(c);
    conn_unref(c);
}

/* --- request text ------------------------------------------------------ */

static int text_add(struct http_conn *c, const char *p, size_t n)
{
    struct http_request *r = c->req;
    if (n > r->text_cap - r->text_len) {
        size_t cap = r->text_cap ? r->text_cap : 256;
        while (cap - r->text_len < n)
            cap *= 2;
        char *t = realloc(r->text, cap);
        if (!t) {
            c->reject = -1;
            return -1;
        }
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, p, n);
    r->text_len += n;
    return 0;
}

static int hdr_push(struct http_conn *c)
{
    struct http_request *r = c->req;
    if (r->nhdr == r->hdr_cap) {
        size_t cap = r->hdr_cap ? r->hdr_cap * 2 : 16;
        uint32_t *h = realloc(r->hdr, cap * 2 * sizeof(*h));
        if (!h) {
            c->reject = -1;
            return -1;
        }
        r->hdr = h;
        r->hdr_cap = cap;
    }
    r->hdr[2 * r->nhdr] = (uint32_t)r->text_len;
    r->hdr[2 * r->nhdr + 1] = (uint32_t)r->text_len;
    r->nhdr++;
    return 0;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Terminates the URL, header name or header value being collected. */
static int text_end(struct http_conn *c)
{
    struct http_request *r = c->req;
    if (r->last == TOK_FIELD) {
        /* a name without any value callback: the value is empty */
        if (text_add(c, "", 1))
            return -1;
        r->hdr[2 * r->nhdr - 1] = (uint32_t)r->text_len;
    } else if (r->last == TOK_VALUE) {
        uint32_t *voff = &r->hdr[2 * r->nhdr - 1];
        while (r->text_len > *voff && is_ows(r->text[r->text_len - 1]))
            r->text_len--;
        while (*voff < r->text_len && is_ows(r->text[*voff]))
            (*voff)++;
    }
    return text_add(c, "", 1);
}

/* --- http-parser callbacks --------------------------------------------- */

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    struct http_request *r = c->req;
    if (r->url_len > c->hs->cfg.max_url || n > c->hs->cfg.max_url - r->url_len) {
        c->reject = 414;
        return -1;
    }
    r->url_len += n;
    return text_add(c, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    struct http_request *r = c->req;
    if (r->head_done)
        return 0; /* chunked trailers are not kept */
    if (r->last != TOK_FIELD) {
        if (text_end(c) || hdr_push(c))
            return -1;
        r->last = TOK_FIELD;
    }
    return text_add(c, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    struct http_request *r = c->req;
    if (r->head_done)
        return 0;
    if (r->last == TOK_FIELD) {
        if (text_add(c, "", 1))
            return -1;
        r->hdr[2 * r->nhdr - 1] = (uint32_t)r->text_len;
        r->last = TOK_VALUE;
    }
    return text_add(c, at, n);
}

/* The buffer grows with the bytes that arrive, not with what Content-Length
 * promises: a header alone must not make us allocate max_body. */
static int body_reserve(struct http_conn *c, size_t n)
{
    struct http_request *r = c->req;
    size_t need = r->body_len + n + 1; /* + a NUL kept after the body */
    if (need <= r->body_cap)
        return 0;
    size_t cap = r->body_cap * 2;
    if (cap < 4096)
        cap = 4096;
    size_t most = r->body_declared ? r->body_declared : c->hs->cfg.max_body;
    if (cap > most + 1)
        cap = most + 1;
    if (cap < need)
        cap = need;
    uint8_t *b = realloc(r->body, cap);
    if (!b) {
        c->reject = -1;
        return -1;
    }
    r->body = b;
    r->body_cap = cap;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_request *r = c->req;
    const struct http_config *cfg = &c->hs->cfg;
    if (text_end(c))
        return -1;
    r->head_done = true;
    r->method = (unsigned char)p->method;
    bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_length && p->content_length > cfg->max_body) {
        c->reject = 413;
        return -1;
    }
    event_del(c->timer);
    c->phase = PH_BODY;
    if (!(p->flags & F_CHUNKED) && !(has_length && p->content_length > 0))
        return 0;
    if (has_length)
        r->body_declared = (size_t)p->content_length;
    if (c->hs->cb.on_head) {
        int status = c->hs->cb.on_head(r, c->hs->arg);
        if (status != 0) {
            c->reject = status;
            return -1;
        }
        r->head_seen = true;
    }
    conn_arm(c, cfg->body_timeout_ms);
    const char *expect = http_request_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1) {
        evbuffer_add(conn_output(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_schedule_flush(c);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    struct http_request *r = c->req;
    size_t max = c->hs->cfg.max_body;
    if (n > max || r->body_len > max - n) {
        c->reject = 413;
        return -1;
    }
    if (body_reserve(c, n))
        return -1;
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    return 0;
}

/* Pausing here makes http_parser_execute() return right after the request,
 * so that the bytes behind it stay unconsumed in the input buffer. */
static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_request *r = c->req;
    r->keep_alive = http_should_keep_alive(p) != 0;
    r->upgrade = p->upgrade != 0;
    if (r->body)
        r->body[r->body_len] = 0;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- parsing ----------------------------------------------------------- */

static int request_start(struct http_conn *c)
{
    c->req = calloc(1, sizeof(*c->req));
    if (!c->req)
        return -1;
    c->req->conn = c;
    c->phase = PH_HEAD;
    c->head_bytes = 0;
    c->reject = 0;
    /* The first request's header timer has run since the connection opened. */
    if (c->started)
        conn_arm(c, c->hs->cfg.header_timeout_ms);
    c->started = true;
    return 0;
}

static void write_head(struct evbuffer *out, const struct resp_head *h)
{
    static const char *const coding_names[] = {"", "gzip", "deflate"};
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", h->status, http_status_reason(h->status));
    if (h->extra)
        evbuffer_add(out, h->extra, strlen(h->extra));
    if (h->content_type)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", h->content_type);
    if (h->coding != CODING_IDENTITY)
        evbuffer_add_printf(out, "Content-Encoding: %s\r\n", coding_names[h->coding]);
    if (h->vary)
        evbuffer_add_printf(out, "Vary: Accept-Encoding\r\n");
    if (h->with_length)
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", h->len);
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n", h->close ? "close" : "keep-alive");
}

/* Answers a request refused while parsing (empty body) and closes. */
static void conn_reject(struct http_conn *c, int status)
{
    if (status < 0) {
        conn_kill(c);
        return;
    }
    struct resp_head h = {.status = status, .close = true, .with_length = true};
    write_head(conn_output(c), &h);
    conn_schedule_flush(c);
    conn_close(c);
}

static int reject_status(const struct http_conn *c, enum http_errno err)
{
    if (c->reject != 0)
        return c->reject;
    return err == HPE_HEADER_OVERFLOW ? 431 : 400;
}

static void request_deliver(struct http_conn *c)
{
    c->phase = PH_WAIT;
    event_del(c->timer);
    c->hs->cb.on_request(c->req, c->hs->arg);
    if (c->phase == PH_WAIT)
        conn_check_backlog(c);
}

static void conn_parse_loop(struct http_conn *c)
{
    const struct http_config *cfg = &c->hs->cfg;
    while (c->phase <= PH_BODY) {
        struct evbuffer *in = conn_input(c);
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        if (c->phase == PH_IDLE && c->hs->draining) {
            conn_close(c);
            return;
        }
        if (c->phase == PH_IDLE && request_start(c) < 0) {
            conn_kill(c);
            return;
        }
        bool head = c->phase == PH_HEAD;
        size_t n = v.iov_len;
        if (head) {
            /* Feeding at most the allowance left makes a head that is still
             * incomplete after it too large by definition. */
            if (c->head_bytes >= cfg->max_header_bytes) {
                conn_reject(c, 431);
                return;
            }
            if (n > cfg->max_header_bytes - c->head_bytes)
                n = cfg->max_header_bytes - c->head_bytes;
        }
        size_t used = http_parser_execute(&c->parser, &parser_settings, v.iov_base, n);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        evbuffer_drain(in, used);
        if (head)
            c->head_bytes += used;
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            request_deliver(c);
        } else if (err != HPE_OK) {
            conn_reject(c, reject_status(c, err));
            return;
        }
    }
}

static void conn_parse(struct http_conn *c)
{
    c->parsing = true;
    conn_parse_loop(c);
    c->parsing = false;
}

/* --- server ------------------------------------------------------------ */

struct http_server *http_server_new(struct event_base *base, const struct http_config *cfg,
                                    const struct http_callbacks *cb, void *arg)
{
    struct http_server *hs = calloc(1, sizeof(*hs));
    if (!hs)
        return NULL;
    hs->base = base;
    hs->cfg = *cfg;
    hs->cb = *cb;
    hs->arg = arg;
    hs->flush_ev = event_new(base, -1, 0, flush_run, hs);
    if (!hs->flush_ev) {
        free(hs);
        return NULL;
    }
    return hs;
}

void http_server_free(struct http_server *hs)
{
    if (!hs)
        return;
    /* Drops the flusher's references, so that conn_kill below frees the
     * head at once: nothing of ours is on the stack. */
    flush_list_drain(hs, NULL);
    while (hs->conns)
        conn_kill(hs->conns);
    event_free(hs->flush_ev);
    free(hs);
}

void http_server_set_config(struct http_server *hs, const struct http_config *cfg)
{
    hs->cfg = *cfg;
}

static void peer_format(struct http_conn *c)
{
    const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
    if (c->peer_len >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, c->peer_text, sizeof(c->peer_text));
    } else if (c->peer_len >= sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        /* IPv4 clients of a dual-stack listener read as plain IPv4 */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], c->peer_text, sizeof(c->peer_text));
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, c->peer_text, sizeof(c->peer_text));
    } else if (c->peer_len > 0 && sa->sa_family == AF_UNIX) {
        strcpy(c->peer_text, "unix");
    }
}

void http_server_accept(struct http_server *hs, struct bufferevent *bev,
                        const struct sockaddr *peer, socklen_t peer_len, bool tls)
{
    if (!bev)
        return;
    if (hs->draining || (hs->cfg.max_connections && hs->nconns >= hs->cfg.max_connections)) {
        bufferevent_free(bev);
        return;
    }
    struct http_conn *c = calloc(1, sizeof(*c));
    if (c)
        c->timer = event_new(hs->base, -1, 0, conn_timer_cb, c);
    if (!c || !c->timer) {
        free(c);
        bufferevent_free(bev);
        return;
    }
    c->hs = hs;
    c->bev = bev;
    c->tls = tls;
    /* A TLS bufferevent would put plaintext on the wire, and filters and
     * pairs have no socket of their own. */
    c->direct = !tls && bufferevent_getfd(bev) >= 0 && !bufferevent_get_underlying(bev) &&
                !bufferevent_openssl_get_ssl(bev);
    c->id = ++hs->next_id;
    if (peer && peer_len > 0) {
        c->peer_len = peer_len < sizeof(c->peer) ? peer_len : (socklen_t)sizeof(c->peer);
        memcpy(&c->peer, peer, c->peer_len);
        peer_format(c);
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = hs->conns;
    if (hs->conns)
        hs->conns->prev = c;
    hs->conns = c;
    hs->nconns++;

    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    if (c->direct) {
        /* A new bufferevent starts with writing enabled. */
        bufferevent_disable(bev, EV_WRITE);
        bufferevent_enable(bev, EV_READ);
    } else {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
    }
    c->phase = PH_IDLE;
    conn_arm(c, hs->cfg.header_timeout_ms);
    if (evbuffer_get_length(conn_input(c)) > 0)
        bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

unsigned http_server_connections(const struct http_server *hs)
{
    return hs->nconns;
}

/* A request already being received is still answered (then the connection
 * closes); the timeouts bound how long that can take. */
void http_server_drain(struct http_server *hs)
{
    hs->draining = true;
    struct http_conn *next;
    for (struct http_conn *c = hs->conns; c; c = next) {
        next = c->next;
        if (c->phase == PH_IDLE) {
            c->busy++;
            conn_close(c);
            conn_unref(c);
        }
    }
}

/* --- requests ---------------------------------------------------------- */

enum http_method_kind http_request_method(const struct http_request *req)
{
    switch (req->method) {
    case HTTP_GET:
        return HTTP_M_GET;
    case HTTP_HEAD:
        return HTTP_M_HEAD;
    case HTTP_POST:
        return HTTP_M_POST;
    case HTTP_PUT:
        return HTTP_M_PUT;
    case HTTP_DELETE:
        return HTTP_M_DELETE;
    case HTTP_OPTIONS:
        return HTTP_M_OPTIONS;
    case HTTP_PATCH:
        return HTTP_M_PATCH;
    default:
        return HTTP_M_OTHER;
    }
}

/* http-parser accepts only the methods it knows, so its name is the one sent. */
const char *http_request_method_name(const struct http_request *req)
{
    return http_method_str((enum http_method)req->method);
}

const char *http_request_url(const struct http_request *req)
{
    return req->text;
}

const char *http_request_path(const struct http_request *req, size_t *len)
{
    const char *p = req->text;
    if (*p != '/') {
        /* absolute-form ("http://host/path"), as sent to proxies */
        const char *scheme_end = strstr(p, "://");
        if (scheme_end) {
            p = scheme_end + 3;
            p += strcspn(p, "/?#");
        }
    }
    *len = strcspn(p, "?#");
    return p;
}

const char *http_request_query(const struct http_request *req, size_t *len)
{
    const char *q = strchr(req->text, '?');
    const char *fragment = strchr(req->text, '#');
    if (!q || (fragment && fragment < q)) {
        *len = 0;
        return "";
    }
    q++;
    *len = strcspn(q, "#");
    return q;
}

bool http_request_query_param(const struct http_request *req, const char *key, const char **val,
                              size_t *len)
{
    size_t qlen;
    const char *q = http_request_query(req, &qlen);
    const char *end = q + qlen;
    size_t klen = strlen(key);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp)
            amp = end;
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        const char *kend = eq ? eq : amp;
        if ((size_t)(kend - q) == klen && memcmp(q, key, klen) == 0) {
            *val = eq ? eq + 1 : amp;
            *len = (size_t)(amp - *val);
            return true;
        }
        if (amp == end)
            break;
        q = amp + 1;
    }
    return false;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nhdr; i++)
        if (strcasecmp(req->text + req->hdr[2 * i], name) == 0)
            return req->text + req->hdr[2 * i + 1];
    return NULL;
}

bool http_request_header_at(const struct http_request *req, size_t i, const char **name,
                            const char **value)
{
    if (i >= req->nhdr)
        return false;
    *name = req->text + req->hdr[2 * i];
    *value = req->text + req->hdr[2 * i + 1];
    return true;
}

uint8_t *http_request_body(struct http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body;
}

bool http_request_is_upgrade(const struct http_request *req)
{
    return req->upgrade;
}

bool http_request_is_tls(const struct http_request *req)
{
    return req->conn->tls;
}

bool http_request_keep_alive(const struct http_request *req)
{
    return req->keep_alive;
}

const struct sockaddr *http_request_peer(const struct http_request *req, socklen_t *len)
{
    *len = req->conn->peer_len;
    return (const struct sockaddr *)&req->conn->peer;
}

const char *http_request_peer_address(const struct http_request *req)
{
    return req->conn->peer_text;
}

uint64_t http_request_conn_id(const struct http_request *req)
{
    return req->conn->id;
}

void http_request_set_data(struct http_request *req, void *data)
{
    req->data = data;
}

void *http_request_get_data(const struct http_request *req)
{
    return req->data;
}

/* --- responses --------------------------------------------------------- */

static bool qvalue_is_zero(const char *s, size_t n)
{
    if (n == 0 || s[0] != '0')
        return false;
    for (size_t i = 1; i < n; i++)
        if (s[i] != '.' && s[i] != '0')
            return false;
    return true;
}

/* One element's acceptability: false when its parameters carry q=0. */
static bool coding_params_accept(const char **pp)
{
    const char *p = *pp;
    bool accept = true;
    for (;;) {
        p += strspn(p, " \t");
        if (*p != ';')
            break;
        p++;
        p += strspn(p, " \t");
        size_t n = strcspn(p, ";,");
        size_t t = n;
        while (t > 0 && is_ows(p[t - 1]))
            t--;
        if (t >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            accept = !qvalue_is_zero(p + 2, t - 2);
        p += n;
    }
    *pp = p + strcspn(p, ",");
    return accept;
}

static bool token_is(const char *tok, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(tok, name, n) == 0;
}

/* gzip if acceptable, else deflate; a coding not listed is acceptable only
 * through "*". */
static enum coding pick_coding(const char *accept_encoding)
{
    if (!accept_encoding)
        return CODING_IDENTITY;
    int gzip = -1, deflate = -1, any = -1;
    const char *p = accept_encoding;
    while (*p) {
        p += strspn(p, " \t,");
        if (!*p)
            break;
        const char *tok = p;
        size_t n = strcspn(p, " \t;,");
        p += n;
        int ok = coding_params_accept(&p);
        if (token_is(tok, n, "gzip") || token_is(tok, n, "x-gzip"))
            gzip = ok;
        else if (token_is(tok, n, "deflate"))
            deflate = ok;
        else if (token_is(tok, n, "*"))
            any = ok;
    }
    if (gzip < 0)
        gzip = any > 0;
    if (deflate < 0)
        deflate = any > 0;
    if (gzip > 0)
        return CODING_GZIP;
    return deflate > 0 ? CODING_DEFLATE : CODING_IDENTITY;
}

/* Returns the compressed body, or NULL to send it as it is. */
static struct evbuffer *compress_body(enum coding coding, const void *data, size_t len)
{
    if (!data || len > UINT_MAX / 2)
        return NULL;
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    int window_bits = coding == CODING_GZIP ? 15 + 16 : 15;
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return NULL;
    struct evbuffer *z = evbuffer_new();
    uLong bound = deflateBound(&zs, (uLong)len);
    struct evbuffer_iovec v;
    bool ok = false;
    if (z && evbuffer_reserve_space(z, (ev_ssize_t)bound, &v, 1) == 1) {
        zs.next_in = data;
        zs.avail_in = (uInt)len;
        zs.next_out = v.iov_base;
        zs.avail_out = (uInt)bound;
        if (deflate(&zs, Z_FINISH) == Z_STREAM_END && zs.total_out < len) {
            v.iov_len = zs.total_out;
            ok = evbuffer_commit_space(z, &v, 1) == 0;
        }
    }
    deflateEnd(&zs);
    if (!ok && z) {
        evbuffer_free(z);
        z = NULL;
    }
    return z;
}

static void respond(struct http_request *req, int status, const char *content_type,
                    const char *extra_headers, const void *mem, size_t mem_len,
                    struct evbuffer *buf, unsigned flags)
{
    struct http_conn *c = req->conn;
    struct http_server *hs = c->hs;
    size_t len = buf ? evbuffer_get_length(buf) : mem_len;
    bool bodyless_status = status < 200 || status == 204 || status == 304;
    bool send_body = !bodyless_status && !(flags & HTTP_RESP_NO_BODY) && req->method != HTTP_HEAD;
    struct resp_head h = {
        .status = status,
        .content_type = content_type,
        .extra = extra_headers,
        .len = len,
        /* bytes behind an upgrade request are in another protocol */
        .close = (flags & HTTP_RESP_CLOSE) || !req->keep_alive || req->upgrade || hs->draining,
        .with_length = !bodyless_status,
    };
    struct evbuffer *z = NULL;
    if ((flags & HTTP_RESP_COMPRESS) && send_body && len > 0 && len >= hs->cfg.compress_min) {
        h.vary = true;
        enum coding coding = pick_coding(http_request_header(req, "Accept-Encoding"));
        if (coding != CODING_IDENTITY)
            z = compress_body(coding, buf ? evbuffer_pullup(buf, -1) : mem, len);
        if (z) {
            h.coding = coding;
            h.len = evbuffer_get_length(z);
        }
    }

    c->busy++;
    struct evbuffer *out = conn_output(c);
    write_head(out, &h);
    if (send_body) {
        if (z)
            evbuffer_add_buffer(out, z);
        else if (buf)
            evbuffer_add_buffer(out, buf);
        else if (len > 0)
            evbuffer_add(out, mem, len);
    }
    if (z)
        evbuffer_free(z);
    if (buf)
        evbuffer_drain(buf, evbuffer_get_length(buf));
    request_free(req);
    c->req = NULL;
    conn_schedule_flush(c);

    if (h.close) {
        conn_close(c);
    } else {
        c->phase = PH_IDLE;
        conn_resume_reading(c);
        conn_arm(c, hs->cfg.idle_timeout_ms);
        /* Parsing the next request from inside http_respond would re-enter
         * the handler; the loop already on the stack, or a deferred read
         * callback, picks it up. */
        if (!c->parsing && evbuffer_get_length(conn_input(c)) > 0)
            bufferevent_trigger(c->bev, EV_READ,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
    conn_unref(c);
}

void http_respond(struct http_request *req, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len, unsigned flags)
{
    respond(req, status, content_type, extra_headers, body, body ? len : 0, NULL, flags);
}

void http_respond_buffer(struct http_request *req, int status, const char *content_type,
                         const char *extra_headers, struct evbuffer *body, unsigned flags)
{
    respond(req, status, content_type, extra_headers, NULL, 0, body, flags);
}

struct bufferevent *http_request_upgrade(struct http_request *req)
{
    struct http_conn *c = req->conn;
    struct bufferevent *bev = c->bev;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(bev, NULL, NULL);
    /* The new owner gets a bufferevent that writes by itself (the flusher
     * lets go of it: c->bev is cleared below). */
    if (c->direct)
        bufferevent_enable(bev, EV_WRITE);
    conn_resume_reading(c);
    c->bev = NULL;
    request_free(req);
    c->req = NULL;
    c->phase = PH_DEAD;
    event_del(c->timer);
    c->busy++;
    conn_unref(c);
    return bev;
}

const char *http_status_reason(int status)
{
    static const char *const class_names[] = {"Informational", "Success", "Redirection",
                                              "Client Error", "Server Error"};
    const char *s = http_status_str((enum http_status)status);
    if (strcmp(s, "<unknown>") != 0)
        return s;
    if (status >= 100 && status < 600)
        return class_names[status / 100 - 1];
    return "Unknown";
}

/* The public server object: configuration, listeners, the HTTP layer and
 * the Engine.IO engine, wired together. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sio_config_init(struct sio_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->path = "/socket.io/";
    cfg->ping_interval_ms = 25000;
    cfg->ping_timeout_ms = 20000;
    cfg->upgrade_timeout_ms = 10000;
    cfg->connect_timeout_ms = 45000;
    cfg->max_payload = 1000000;
    cfg->polling = true;
    cfg->websocket = true;
    cfg->allow_upgrades = true;
    cfg->http_compression = true;
    cfg->output_soft_limit = 1 << 20;
    cfg->output_hard_limit = 8 << 20;
    cfg->max_http_header_bytes = 16384;
    cfg->http_header_timeout_ms = 10000;
    cfg->http_idle_timeout_ms = 60000;
    cfg->log_level = SIO_LOG_INFO;
    cfg->max_attachments = 10;
    cfg->max_rooms_per_socket = 1000;
    cfg->recovery_skip_middlewares = true;
}

/* --- routing ------------------------------------------------------------ */

static void on_http_request(struct http_request *req, void *arg)
{
    struct sio_server *srv = arg;
    size_t len;
    const char *path = http_request_path(req, &len);
    if (srv->http_hook && srv->http_hook(req, path, len, srv->http_hook_ud))
        return;
    if (engine_matches(srv->engine, path, len)) {
        engine_handle_request(srv->engine, req);
        return;
    }
    static const char body[] = "Not Found";
    http_respond(req, 404, "text/plain", NULL, body, sizeof(body) - 1, 0);
}

static int on_http_head(struct http_request *req, void *arg)
{
    struct sio_server *srv = arg;
    size_t len;
    const char *path = http_request_path(req, &len);
    return engine_matches(srv->engine, path, len) ? engine_handle_head(srv->engine, req) : 0;
}

static void on_http_abort(struct http_request *req, void *arg)
{
    struct sio_server *srv = arg;
    engine_handle_abort(srv->engine, req);
}

/* --- engine callbacks: to the Socket.IO layer, or raw Engine.IO mode ---- */

static void on_engine_open(struct sio_session *s, struct http_request *req, void *arg)
{
    struct sio_server *srv = arg;
    if (!srv->raw_engine)
        socketio_on_open(srv->io, s, req);
    else if (srv->eio_handlers.open)
        srv->eio_handlers.open(s, srv->eio_ud);
}

static void on_engine_message(struct sio_session *s, const uint8_t *data, size_t len, bool binary,
                              void *arg)
{
    struct sio_server *srv = arg;
    if (!srv->raw_engine)
        socketio_on_message(srv->io, s, data, len, binary);
    else if (srv->eio_handlers.message)
        srv->eio_handlers.message(s, data, len, binary, srv->eio_ud);
}

static void on_engine_close(struct sio_session *s, const char *reason, void *arg)
{
    struct sio_server *srv = arg;
    if (!srv->raw_engine)
        socketio_on_close(srv->io, s, reason);
    else if (srv->eio_handlers.close)
        srv->eio_handlers.close(s, reason, srv->eio_ud);
}

/* struct sio_request is the public name of an HTTP request. */
static bool on_engine_allow(struct http_request *req, void *arg)
{
    struct sio_server *srv = arg;
    return !srv->allow || srv->allow((const struct sio_request *)req, srv->allow_ud);
}

const char *sio_request_header(const struct sio_request *req, const char *name)
{
    return http_request_header((const struct http_request *)req, name);
}

bool sio_request_query(const struct sio_request *req, const char *key, char *out, size_t outlen)
{
    const char *v;
    size_t n;
    if (!http_request_query_param((const struct http_request *)req, key, &v, &n))
        return false;
    if (outlen) {
        size_t c = n < outlen - 1 ? n : outlen - 1;
        memcpy(out, v, c);
        out[c] = '\0';
    }
    return true;
}

const char *sio_request_address(const struct sio_request *req)
{
    return http_request_peer_address((const struct http_request *)req);
}

void sio_server_set_allow_request(struct sio_server *srv, sio_allow_fn fn, void *ud)
{
    srv->allow = fn;
    srv->allow_ud = ud;
}

/* --- configuration ------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* A path is stored with leading and trailing slashes. */
static char *normalize_path(const char *p)
{
    size_t n = strlen(p);
    char *out = malloc(n + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    if (p[0] != '/')
        out[o++] = '/';
    memcpy(out + o, p, n);
    o += n;
    if (o == 0 || out[o - 1] != '/')
        out[o++] = '/';
    out[o] = '\0';
    return out;
}

static int validate(const struct sio_config *cfg, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!cfg->path || !*cfg->path)
        why = "path must not be empty";
    else if (strchr(cfg->path, '?') || strchr(cfg->path, ' '))
        why = "path must not contain '?' or spaces";
    else if (cfg->ping_interval_ms == 0 || cfg->ping_timeout_ms == 0)
        why = "ping_interval and ping_timeout must be positive";
    else if (cfg->max_payload == 0)
        why = "max_payload must be positive";
    else if (!cfg->polling && !cfg->websocket)
        why = "at least one transport must be enabled";
    else if (cfg->output_hard_limit && cfg->output_soft_limit > cfg->output_hard_limit)
        why = "output_soft_limit must not exceed output_hard_limit";
    else if (cfg->cookie && (strpbrk(cfg->cookie, "=;, \t\r\n") || strlen(cfg->cookie) > 64))
        why = "cookie name has invalid characters";
    if (why) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

static void engine_config_from(const struct sio_server *srv, struct engine_config *ec)
{
    const struct sio_config *c = &srv->cfg;
    engine_config_default(ec);
    ec->path = srv->path;
    ec->ping_interval_ms = c->ping_interval_ms;
    ec->ping_timeout_ms = c->ping_timeout_ms;
    ec->upgrade_timeout_ms = c->upgrade_timeout_ms;
    ec->max_payload = c->max_payload;
    ec->polling = c->polling;
    ec->websocket = c->websocket;
    ec->allow_upgrades = c->allow_upgrades;
    ec->cors_origins = srv->cors_origin;
    ec->cors_credentials = c->cors_credentials;
    ec->cookie = srv->cookie;
    ec->per_message_deflate = c->per_message_deflate;
    ec->http_compression = c->http_compression;
    ec->out_soft = c->output_soft_limit;
    ec->out_hard = c->output_hard_limit;
}

static void http_config_from(const struct sio_config *c, struct http_config *hc)
{
    http_config_default(hc);
    hc->max_header_bytes = c->max_http_header_bytes;
    hc->max_body = c->max_payload;
    hc->header_timeout_ms = c->http_header_timeout_ms;
    hc->idle_timeout_ms = c->http_idle_timeout_ms;
    hc->max_connections = c->max_connections;
}

struct sio_server *sio_server_new(struct event_base *base, const struct sio_config *cfg, char *err,
                                  size_t errlen)
{
    if (validate(cfg, err, errlen) < 0)
        return NULL;
    struct sio_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        goto nomem;
    srv->base = base;
    srv->cfg = *cfg;
    srv->path = normalize_path(cfg->path);
    srv->cors_origin = dup_or_null(cfg->cors_origin);
    srv->cookie = dup_or_null(cfg->cookie);
    if (!srv->path || (cfg->cors_origin && !srv->cors_origin) || (cfg->cookie && !srv->cookie))
        goto nomem;
    srv->cfg.path = srv->path;
    srv->cfg.cors_origin = srv->cors_origin;
    srv->cfg.cookie = srv->cookie;
    logger_init(&srv->log, (enum log_level)cfg->log_level, cfg->log_json, stderr);

    struct http_config hc;
    http_config_from(cfg, &hc);
    struct http_callbacks hcb = {
        .on_request = on_http_request, .on_head = on_http_head, .on_abort = on_http_abort};
    srv->http = http_server_new(base, &hc, &hcb, srv);
    struct engine_config ec;
    engine_config_from(srv, &ec);
    struct engine_handlers eh = {on_engine_open, on_engine_message, on_engine_close,
                                 on_engine_allow};
    srv->engine = engine_new(base, &ec, &eh, srv, &srv->log);
    srv->io = socketio_new(srv);
    if (!srv->http || !srv->engine || !srv->io)
        goto nomem;
    return srv;
nomem:
    snprintf(err, errlen, "out of memory");
    sio_server_free(srv);
    return NULL;
}

void sio_server_free(struct sio_server *srv)
{
    if (!srv)
        return;
    for (size_t i = 0; i < srv->n_listeners; i++)
        listener_free(srv->listeners[i]);
    free(srv->listeners);
    /* HTTP first: pending long polls are aborted into the engine, which then
     * closes every session (the Socket.IO layer hears of each) and ends its
     * WebSockets. */
    http_server_free(srv->http);
    engine_free(srv->engine);
    socketio_free(srv->io);
    if (srv->shutdown_timer)
        event_free(srv->shutdown_timer);
    free(srv->path);
    free(srv->cors_origin);
    free(srv->cookie);
    free(srv);
}

int sio_server_listen(struct sio_server *srv, const char *address, uint16_t port,
                      const char *tls_cert, const char *tls_key, char *err, size_t errlen)
{
    struct listener_config lc = {
        .address = address, .port = port, .tls_cert = tls_cert, .tls_key = tls_key};
    struct listener **grown = realloc(srv->listeners, (srv->n_listeners + 1) * sizeof(*grown));
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    srv->listeners = grown;
    struct listener *l = listener_new(srv->base, srv->http, &lc, err, errlen);
    if (!l)
        return -1;
    srv->listeners[srv->n_listeners++] = l;
    LOG(&srv->log, LOG_INFO, 0, "listening on %s%s", tls_cert ? "https://" : "http://",
        listener_name(l));
    return listener_port(l);
}

/* --- shutdown ----------------------------------------------------------- */

static uint64_t now_ms(struct event_base *base)
{
    struct timeval tv;
    event_base_gettimeofday_cached(base, &tv);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Polled every 50 ms during a shutdown: done once every connection is gone
 * or the grace period is over. */
static void shutdown_check(evutil_socket_t fd, short what, void *arg)
{
    struct sio_server *srv = arg;
    bool idle = http_server_connections(srv->http) == 0 && !engine_busy(srv->engine);
    if (!idle && now_ms(srv->base) < srv->shutdown_deadline)
        return;
    event_del(srv->shutdown_timer);
    if (!idle)
        LOG(&srv->log, LOG_WARN, 0, "shutdown: grace period over with %u connections open",
            http_server_connections(srv->http));
    if (srv->shutdown_done)
        srv->shutdown_done(srv, srv->shutdown_ud);
}

void sio_server_shutdown(struct sio_server *srv, unsigned grace_ms,
                         void (*done)(struct sio_server *srv, void *ud), void *ud)
{
    if (srv->shutdown_timer)
        return;
    for (size_t i = 0; i < srv->n_listeners; i++)
        listener_free(srv->listeners[i]);
    srv->n_listeners = 0;
    srv->shutdown_done = done;
    srv->shutdown_ud = ud;
    srv->shutdown_deadline = now_ms(srv->base) + grace_ms;
    engine_close_all(srv->engine, "server shutting down");
    http_server_drain(srv->http);
    srv->shutdown_timer = event_new(srv->base, -1, EV_PERSIST, shutdown_check, srv);
    if (srv->shutdown_timer) {
        struct timeval tick = {0, 50000};
        event_add(srv->shutdown_timer, &tick);
    } else if (done) {
        done(srv, ud);
    }
}

/* --- Engine.IO level API ------------------------------------------------ */

void sio_server_set_engine_handlers(struct sio_server *srv, const struct sio_engine_handlers *h,
                                    void *ud)
{
    srv->eio_handlers = *h;
    srv->eio_ud = ud;
    srv->raw_engine = true;
}

int sio_session_send(struct sio_session *s, const void *data, size_t len, bool binary)
{
    return engine_send_message(s, data, len, binary) == ENGINE_CLOSED ? -1 : 0;
}

void sio_session_close(struct sio_session *s)
{
    engine_session_close(s);
}

const char *sio_session_id(const struct sio_session *s)
{
    return engine_session_id(s);
}

const char *sio_session_transport(const struct sio_session *s)
{
    return engine_session_transport(s);
}

void sio_session_set_data(struct sio_session *s, void *data)
{
    engine_session_set_data(s, data);
}

void *sio_session_get_data(const struct sio_session *s)
{
    return engine_session_get_data(s);
}

/* --- daemon hooks ------------------------------------------------------- */

void server_set_http_hook(struct sio_server *srv,
                          bool (*fn)(struct http_request *req, const char *path, size_t len,
                                     void *ud),
                          void *ud)
{
    srv->http_hook = fn;
    srv->http_hook_ud = ud;
}

int server_reload_tls(struct sio_server *srv, size_t index, const char *cert, const char *key,
                      char *err, size_t errlen)
{
    if (index >= srv->n_listeners) {
        snprintf(err, errlen, "no listener %zu", index);
        return -1;
    }
    return listener_reload_tls(srv->listeners[index], cert, key, err, errlen);
}

const struct logger *server_logger(const struct sio_server *srv)
{
    return &srv->log;
}

void server_set_log_level(struct sio_server *srv, enum log_level level, bool json)
{
    srv->log.level = level;
    srv->log.json = json;
}

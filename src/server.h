/* server: the object everything hangs off (design.md §1: no process-wide
 * state). Internal view of struct sio_server for the modules of src/. */
#ifndef SOCKEYE_SERVER_H
#define SOCKEYE_SERVER_H

#include "engine.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "socketio.h"
#include "sockeye.h"

struct sio_server {
    struct event_base *base;
    struct sio_config cfg; /* strings point into owned copies below */
    char *path, *cors_origin, *cookie;
    struct logger log;
    struct http_server *http;
    struct engine *engine;
    struct socketio *io; /* the Socket.IO layer, unless raw_engine */
    bool raw_engine;     /* engine handlers set: plain Engine.IO server */
    struct listener **listeners;
    size_t n_listeners;

    /* the daemon's HTTP routes (static files, client bundle), tried first */
    bool (*http_hook)(struct http_request *req, const char *path, size_t len, void *ud);
    void *http_hook_ud;

    sio_allow_fn allow;
    void *allow_ud;

    struct sio_engine_handlers eio_handlers;
    void *eio_ud;

    /* graceful shutdown */
    struct event *shutdown_timer;
    uint64_t shutdown_deadline; /* ms, event-base clock */
    void (*shutdown_done)(struct sio_server *srv, void *ud);
    void *shutdown_ud;
};

/* Installs a handler tried before the engine for every request: it returns
 * true when it answered the request. */
void server_set_http_hook(struct sio_server *srv,
                          bool (*fn)(struct http_request *req, const char *path, size_t len,
                                     void *ud),
                          void *ud);

/* Loads a new certificate/key into the index-th listener (in the order of
 * sio_server_listen calls), e.g. on SIGHUP. Returns 0, or -1 with a reason in
 * err (the old certificate stays in use). */
int server_reload_tls(struct sio_server *srv, size_t index, const char *cert, const char *key,
                      char *err, size_t errlen);

/* The server's logger (shared with the daemon). */
const struct logger *server_logger(const struct sio_server *srv);
void server_set_log_level(struct sio_server *srv, enum log_level level, bool json);

#endif

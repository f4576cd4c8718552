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

    struct sio_engine_handlers eio_handlers;
    void *eio_ud;

    /* graceful shutdown */
    struct event *shutdown_timer;
    uint64_t shutdown_deadline; /* ms, event-base clock */
    void (*shutdown_done)(struct sio_server *srv, void *ud);
    void *shutdown_ud;
};

#endif

/* sockeye: the daemon. Serves the namespaces, rooms and event rules of a
 * sockeye.conf file, the app's static files and the socket.io client bundle.
 * See man/sockeye.8. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "rules.h"
#include "server.h"
#include "sockeye.h"
#include "static.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/sockeye.conf"

/* The files of the client bundle served under the engine path. */
static const char *const bundle_files[] = {STATIC_BUNDLE_FILES};

struct daemon {
    struct event_base *base;
    struct sio_server *srv;
    struct rules *rules;
    const char *conf_file;
    const char **overrides;
    size_t n_overrides;
    long port; /* --port, or -1 */
    struct static_files *app;
    struct static_files *bundle;
    char *engine_path;
    bool stopping;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sockeye [-c FILE] [--port N] [--set PATH=VALUE]... [--check-config]\n"
               "               [--version] [--help]\n"
               "  -c, --config FILE   configuration file (default " DEFAULT_CONF ")\n"
               "  -p, --port N        port of the first listener\n"
               "  -s, --set PATH=VAL  override a scalar setting, e.g. engine.ping_interval=300\n"
               "  -t, --check-config  validate the configuration and exit\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          print this help and exit\n");
}

/* --- HTTP routes -------------------------------------------------------- */

static bool route(struct http_request *req, const char *path, size_t len, void *ud)
{
    struct daemon *d = ud;
    size_t plen = strlen(d->engine_path);
    if (len > plen && memcmp(path, d->engine_path, plen) == 0) {
        /* Under the engine path only the bundle's files; the rest is the
         * engine's. */
        if (d->bundle && memchr(path + plen, '/', len - plen) == NULL)
            return static_files_serve(d->bundle, req, path + plen - 1, len - plen + 1);
        return false;
    }
    if (len >= plen - 1 && memcmp(path, d->engine_path, plen - 1) == 0)
        return false;
    return d->app && static_files_serve(d->app, req, path, len);
}

/* Opens the static file trees of conf. Returns -1 with err set. */
static int open_static(const struct sockeye_conf *conf, struct static_files **app,
                       struct static_files **bundle, char *err, size_t errlen)
{
    *app = NULL;
    *bundle = NULL;
    if (conf->static_root && !(*app = static_files_new(conf->static_root, NULL, 0, err, errlen)))
        return -1;
    if (conf->client_bundle &&
        !(*bundle =
              static_files_new(conf->client_bundle, bundle_files,
                               sizeof(bundle_files) / sizeof(bundle_files[0]), err, errlen))) {
        static_files_free(*app);
        *app = NULL;
        return -1;
    }
    return 0;
}

/* --- signals ------------------------------------------------------------ */

static void drained(struct sio_server *srv, void *ud)
{
    struct daemon *d = ud;
    event_base_loopbreak(d->base);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    const struct logger *log = server_logger(d->srv);
    if (d->stopping) {
        LOG(log, LOG_WARN, 0, "second signal: stopping now");
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    unsigned grace = rules_conf(d->rules)->shutdown_grace;
    LOG(log, LOG_INFO, 0, "%s: draining (up to %u ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
        grace);
    sio_server_shutdown(d->srv, grace, drained, d);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    const struct logger *log = server_logger(d->srv);
    char err[512];
    struct sockeye_conf *conf;
    if (conf_load(d->conf_file, d->overrides, d->n_overrides, &conf, err, sizeof(err)) < 0) {
        LOG(log, LOG_ERROR, 0, "SIGHUP: %s; keeping the running configuration", err);
        return;
    }
    struct static_files *app, *bundle;
    if (open_static(conf, &app, &bundle, err, sizeof(err)) < 0) {
        LOG(log, LOG_ERROR, 0, "SIGHUP: %s; keeping the running configuration", err);
        conf_free(conf);
        return;
    }
    for (size_t i = 0; i < conf->n_listeners; i++) {
        const struct conf_listener *l = &conf->listeners[i];
        if (l->tls_cert &&
            server_reload_tls(d->srv, i, l->tls_cert, l->tls_key, err, sizeof(err)) < 0)
            LOG(log, LOG_ERROR, 0, "SIGHUP: listener %zu: %s; keeping its certificate", i, err);
    }
    server_set_log_level(d->srv, (enum log_level)conf->server.log_level, conf->server.log_json);
    static_files_free(d->app);
    static_files_free(d->bundle);
    d->app = app;
    d->bundle = bundle;
    if (rules_reload(d->rules, conf) < 0)
        LOG(log, LOG_ERROR, 0, "SIGHUP: out of memory; keeping the running rules");
    else
        LOG(log, LOG_INFO, 0, "SIGHUP: configuration reloaded from %s", d->conf_file);
}

/* --- main --------------------------------------------------------------- */

static int parse_args(int argc, char **argv, struct daemon *d, bool *check_only)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, 'p'},
        {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    d->conf_file = DEFAULT_CONF;
    d->port = -1;
    d->overrides = calloc((size_t)argc, sizeof(*d->overrides));
    if (!d->overrides)
        return 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:p:s:tVh", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'c':
            d->conf_file = optarg;
            break;
        case 'p':
            d->port = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || d->port < 0 || d->port > 65535) {
                fprintf(stderr, "sockeye: --port: invalid port '%s'\n", optarg);
                return 2;
            }
            break;
        case 's':
            if (!strchr(optarg, '=')) {
                fprintf(stderr, "sockeye: --set %s: expected PATH=VALUE\n", optarg);
                return 2;
            }
            d->overrides[d->n_overrides++] = optarg;
            break;
        case 't':
            *check_only = true;
            break;
        case 'V':
            printf("sockeye %s\n", SOCKEYE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sockeye: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1; /* go on */
}

static int start(struct daemon *d, struct sockeye_conf *conf)
{
    char err[512];
    if (d->port >= 0) {
        if (conf->n_listeners == 0) {
            fprintf(stderr, "sockeye: --port: no listener configured\n");
            conf_free(conf);
            return 1;
        }
        conf->listeners[0].port = (uint16_t)d->port;
    }
    d->base = event_base_new();
    d->srv = d->base ? sio_server_new(d->base, &conf->server, err, sizeof(err)) : NULL;
    if (!d->srv) {
        fprintf(stderr, "sockeye: %s\n", d->base ? err : "cannot create the event loop");
        conf_free(conf);
        return 1;
    }
    d->engine_path = strdup(d->srv->path); /* normalized: "/socket.io/" */
    for (size_t i = 0; i < conf->n_listeners; i++) {
        const struct conf_listener *l = &conf->listeners[i];
        if (sio_server_listen(d->srv, l->address, l->port, l->tls_cert, l->tls_key, err,
                              sizeof(err)) < 0) {
            fprintf(stderr, "sockeye: %s\n", err);
            conf_free(conf);
            return 1;
        }
    }
    if (!d->engine_path || open_static(conf, &d->app, &d->bundle, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockeye: %s\n", d->engine_path ? err : "out of memory");
        conf_free(conf);
        return 1;
    }
    server_set_http_hook(d->srv, route, d);
    d->rules = rules_new(d->srv, conf, server_logger(d->srv));
    if (!d->rules) {
        fprintf(stderr, "sockeye: out of memory\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct daemon d = {0};
    bool check_only = false;
    int rc = parse_args(argc, argv, &d, &check_only);
    if (rc >= 0) {
        free(d.overrides);
        return rc;
    }
    char err[512];
    struct sockeye_conf *conf;
    if (conf_load(d.conf_file, d.overrides, d.n_overrides, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        free(d.overrides);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK\n", d.conf_file);
        conf_free(conf);
        free(d.overrides);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    rc = start(&d, conf);
    struct event *sigs[3] = {NULL, NULL, NULL};
    if (rc == 0) {
        sigs[0] = evsignal_new(d.base, SIGTERM, on_stop, &d);
        sigs[1] = evsignal_new(d.base, SIGINT, on_stop, &d);
        sigs[2] = evsignal_new(d.base, SIGHUP, on_reload, &d);
        for (int i = 0; i < 3; i++)
            if (sigs[i])
                event_add(sigs[i], NULL);
        event_base_dispatch(d.base);
        LOG(server_logger(d.srv), LOG_INFO, 0, "stopped");
    }
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    sio_server_free(d.srv);
    rules_free(d.rules);
    static_files_free(d.app);
    static_files_free(d.bundle);
    free(d.engine_path);
    if (d.base)
        event_base_free(d.base);
    free(d.overrides);
    return rc;
}

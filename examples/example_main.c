#include "example_main.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

static int parse_num(const char *prog, const char *flag, const char *text, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v > max) {
        fprintf(stderr, "%s: %s: invalid number '%s'\n", prog, flag, text);
        return -1;
    }
    *out = v;
    return 0;
}

int example_parse(const char *prog, int argc, char **argv, struct sio_config *cfg,
                  struct example_options *opt)
{
    opt->port = 3000;
    for (int i = 1; i < argc; i += 2) {
        const char *flag = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", prog, flag);
            return -1;
        }
        const char *val = argv[i + 1];
        if (strcmp(flag, "--tls-cert") == 0) {
            opt->tls_cert = val;
            continue;
        }
        if (strcmp(flag, "--tls-key") == 0) {
            opt->tls_key = val;
            continue;
        }
        if (strcmp(flag, "--cors") == 0) {
            cfg->cors_origin = val;
            continue;
        }
        if (strcmp(flag, "--cookie") == 0) {
            cfg->cookie = val;
            continue;
        }
        if (strcmp(flag, "--deny-origin") == 0) {
            opt->deny_origin = val;
            continue;
        }
        unsigned long long v;
        if (parse_num(prog, flag, val, strcmp(flag, "--port") == 0 ? 65535 : UINT_MAX, &v) < 0)
            return -1;
        if (strcmp(flag, "--port") == 0)
            opt->port = (unsigned)v;
        else if (strcmp(flag, "--ping-interval") == 0)
            cfg->ping_interval_ms = (unsigned)v;
        else if (strcmp(flag, "--ping-timeout") == 0)
            cfg->ping_timeout_ms = (unsigned)v;
        else if (strcmp(flag, "--upgrade-timeout") == 0)
            cfg->upgrade_timeout_ms = (unsigned)v;
        else if (strcmp(flag, "--connect-timeout") == 0)
            cfg->connect_timeout_ms = (unsigned)v;
        else if (strcmp(flag, "--header-timeout") == 0)
            cfg->http_header_timeout_ms = (unsigned)v;
        else if (strcmp(flag, "--max-payload") == 0)
            cfg->max_payload = (size_t)v;
        else if (strcmp(flag, "--cors-credentials") == 0)
            cfg->cors_credentials = v != 0;
        else if (strcmp(flag, "--per-message-deflate") == 0)
            cfg->per_message_deflate = v != 0;
        else if (strcmp(flag, "--recovery") == 0)
            cfg->recovery_max_disconnection_ms = (unsigned)v;
        else if (strcmp(flag, "--max-output") == 0) {
            cfg->output_hard_limit = (size_t)v;
            if (cfg->output_soft_limit > v)
                cfg->output_soft_limit = (size_t)v;
        } else {
            fprintf(stderr, "%s: unknown option %s\n", prog, flag);
            return -1;
        }
    }
    if ((opt->tls_cert == NULL) != (opt->tls_key == NULL)) {
        fprintf(stderr, "%s: --tls-cert and --tls-key go together\n", prog);
        return -1;
    }
    return 0;
}

static bool allow_request(const struct sio_request *req, void *ud)
{
    const char *origin = sio_request_header(req, "Origin");
    return !origin || strcmp(origin, ud) != 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

int example_run(const char *prog, const struct sio_config *cfg, const struct example_options *opt,
                void (*setup)(struct sio_server *srv))
{
    struct event_base *base = event_base_new();
    if (!base)
        return 1;
    char err[256];
    struct sio_server *srv = sio_server_new(base, cfg, err, sizeof(err));
    if (!srv) {
        fprintf(stderr, "%s: %s\n", prog, err);
        event_base_free(base);
        return 1;
    }
    setup(srv);
    if (opt->deny_origin)
        sio_server_set_allow_request(srv, allow_request, (void *)opt->deny_origin);
    int status = 0;
    if (sio_server_listen(srv, "127.0.0.1", (uint16_t)opt->port, opt->tls_cert, opt->tls_key, err,
                          sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        status = 1;
    } else {
        signal(SIGPIPE, SIG_IGN);
        struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
        event_add(sigterm, NULL);
        event_add(sigint, NULL);
        event_base_dispatch(base);
        event_free(sigterm);
        event_free(sigint);
    }
    sio_server_free(srv);
    event_base_free(base);
    return status;
}

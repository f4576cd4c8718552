/* listener: accepting sockets (plain or TLS) and handing each connection to
 * an http_server.
 *
 * TLS uses OpenSSL through bufferevent_openssl: a certificate chain file
 * (PEM, leaf first), a private key file, minimum TLS 1.2. An IPv6 wildcard
 * address ("::") also accepts IPv4 connections (IPV6_V6ONLY off).
 */
#ifndef SOCKEYE_LISTENER_H
#define SOCKEYE_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "http.h"

struct listener;

struct listener_config {
    const char *address;  /* numeric IPv4/IPv6 address or "localhost"; NULL = "0.0.0.0" */
    uint16_t port;        /* 0 = any free port (see listener_port) */
    const char *tls_cert; /* NULL for plain TCP */
    const char *tls_key;  /* required when tls_cert is set */
    int backlog;          /* 0 = default (511) */
};

/* Binds and starts accepting into hs. Returns NULL and writes a one-line
 * reason into err (e.g. "127.0.0.1:80: Permission denied",
 * "cert.pem: no such file") on failure. Strings in cfg are copied. */
struct listener *listener_new(struct event_base *base, struct http_server *hs,
                              const struct listener_config *cfg, char *err, size_t errlen);

/* Stops accepting and frees the listener (open connections are not touched).
 * NULL is a no-op. */
void listener_free(struct listener *l);

/* The bound port (useful after port 0). */
uint16_t listener_port(const struct listener *l);

/* "127.0.0.1:3000" / "[::]:443"; valid while l is. */
const char *listener_name(const struct listener *l);

/* Loads a new certificate and key for connections accepted from now on.
 * Returns 0, or -1 with a reason in err (the old certificate stays in use).
 * A plain listener fails with -1. */
int listener_reload_tls(struct listener *l, const char *cert, const char *key, char *err,
                        size_t errlen);

#endif

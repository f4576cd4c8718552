/* listener: plain and TLS accepting sockets (contract in listener.h). */
#include "listener.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define DEFAULT_BACKLOG 511

/* accept() failing for lack of descriptors or memory leaves the socket
 * readable; accepting pauses this long instead of spinning. */
#define ACCEPT_RETRY_MS 250

struct listener {
    struct event_base *base;
    struct http_server *hs;
    struct evconnlistener *evl;
    struct event *retry;
    SSL_CTX *tls; /* NULL for plain TCP */
    uint16_t port;
    char name[INET6_ADDRSTRLEN + 16];
};

/* "file: reason" from the oldest queued OpenSSL error, then clears the queue. */
static void tls_error(char *err, size_t errlen, const char *file)
{
    unsigned long e = ERR_get_error();
    const char *reason = NULL;
    if (e != 0 && ERR_SYSTEM_ERROR(e))
        reason = strerror(ERR_GET_REASON(e));
    else if (e != 0)
        reason = ERR_reason_error_string(e);
    snprintf(err, errlen, "%s: %s", file, reason ? reason : "TLS error");
    ERR_clear_error();
}

static SSL_CTX *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    if (!key) {
        snprintf(err, errlen, "%s: no private key file given", cert);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_error(err, errlen, cert);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their read/write buffers back (~34 KB each). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_error(err, errlen, cert);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        tls_error(err, errlen, key);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_error(err, errlen, key);
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct listener *l = arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct bufferevent *bev;
    /* No BEV_OPT_DEFER_CALLBACKS: http.c copes with callbacks that run
     * synchronously, and deferring would cost a loop pass per read. */
    if (l->tls) {
        SSL *ssl = SSL_new(l->tls);
        if (!ssl) {
            close(fd);
            return;
        }
        /* On failure this frees ssl (BEV_OPT_CLOSE_ON_FREE) but not fd. */
        bev = bufferevent_openssl_socket_new(l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev) {
        close(fd);
        return;
    }
    http_server_accept(l->hs, bev, sa, (socklen_t)salen, l->tls != NULL);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;
    evconnlistener_enable(l->evl);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    struct listener *l = arg;
    struct timeval tv = {.tv_sec = 0, .tv_usec = ACCEPT_RETRY_MS * 1000};
    evconnlistener_disable(evl);
    event_add(l->retry, &tv);
}

static int resolve(const char *address, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (!address)
        address = "0.0.0.0";
    else if (strcmp(address, "localhost") == 0)
        address = "127.0.0.1";
    size_t n = strlen(address);
    if (n >= 2 && address[0] == '[' && address[n - 1] == ']') {
        address++;
        n -= 2;
    }
    if (n >= sizeof(host))
        return -1;
    memcpy(host, address, n);
    host[n] = '\0';

    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                             .ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    return 0;
}

static void format_name(char *out, size_t outlen, const struct sockaddr_storage *ss, uint16_t *port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        *port = ntohs(in6->sin6_port);
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)*port);
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        *port = ntohs(in->sin_port);
        snprintf(out, outlen, "%s:%u", ip, (unsigned)*port);
    }
}

/* Returns a bound, not yet listening socket, or -1 with errno set. */
static int bind_socket(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

struct listener *listener_new(struct event_base *base, struct http_server *hs,
                              const struct listener_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *address = cfg->address ? cfg->address : "0.0.0.0";
    if (resolve(cfg->address, cfg->port, &ss, &sslen) != 0) {
        snprintf(err, errlen, "%s:%u: not a numeric IP address", address, (unsigned)cfg->port);
        return NULL;
    }
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "%s:%u: out of memory", address, (unsigned)cfg->port);
        return NULL;
    }
    l->base = base;
    l->hs = hs;
    if (cfg->tls_cert && !(l->tls = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, errlen))) {
        free(l);
        return NULL;
    }
    l->retry = event_new(base, -1, 0, on_retry, l);
    int fd = l->retry ? bind_socket(&ss, sslen) : -1;
    if (fd < 0) {
        snprintf(err, errlen, "%s:%u: %s", address, (unsigned)cfg->port,
                 l->retry ? strerror(errno) : "out of memory");
        listener_free(l);
        return NULL;
    }
    socklen_t namelen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &namelen);
    format_name(l->name, sizeof(l->name), &ss, &l->port);

    l->evl = evconnlistener_new(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                cfg->backlog > 0 ? cfg->backlog : DEFAULT_BACKLOG, fd);
    if (!l->evl) {
        snprintf(err, errlen, "%s: %s", l->name, strerror(errno));
        close(fd);
        listener_free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, on_accept_error);
    return l;
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    if (l->evl)
        evconnlistener_free(l->evl);
    if (l->retry)
        event_free(l->retry);
    SSL_CTX_free(l->tls);
    free(l);
}

uint16_t listener_port(const struct listener *l)
{
    return l->port;
}

const char *listener_name(const struct listener *l)
{
    return l->name;
}

/* SSL objects hold their own reference to the context they were made from,
 * so connections accepted before the swap keep the old certificate. */
int listener_reload_tls(struct listener *l, const char *cert, const char *key, char *err,
                        size_t errlen)
{
    if (!l->tls) {
        snprintf(err, errlen, "%s: not a TLS listener", l->name);
        return -1;
    }
    SSL_CTX *ctx = tls_ctx_new(cert, key, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(l->tls);
    l->tls = ctx;
    return 0;
}

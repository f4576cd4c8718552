/* Unit tests for src/http and src/listener: a real event base, the server on
 * socketpairs or 127.0.0.1 listeners, and raw-socket clients. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "http.h"
#include "listener.h"

#define MAX_CLIENTS 4
#define MAX_HELD    4
#define WAIT_MS     2000

struct client {
    int fd;
    struct event *ev;
    char *buf;
    size_t len, cap;
    bool eof;
};

struct fx;
typedef void (*handler_fn)(struct fx *f, struct http_request *req);

struct fx {
    struct event_base *base;
    struct http_server *hs;
    struct http_config cfg;
    handler_fn handler;
    int nreq, naborts;
    struct http_request *held[MAX_HELD];
    int nheld;
    struct http_request *aborted;
    struct bufferevent *upgraded;
    char upgraded_input[64];
    struct client cl[MAX_CLIENTS];
    int ncl;
    struct listener *lis;
    char dir[64];      /* temp dir with a test certificate */
    const char *reply; /* body sent by the default handler */
    size_t reply_len;
    unsigned reply_flags;
};

struct resp {
    int status;
    const char *head;
    size_t head_len;
    const char *body;
    size_t body_len;
};

/* --- harness ----------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_request(struct http_request *req, void *arg)
{
    struct fx *f = arg;
    f->nreq++;
    f->handler(f, req);
}

static void on_abort(struct http_request *req, void *arg)
{
    struct fx *f = arg;
    f->naborts++;
    f->aborted = req;
    for (int i = 0; i < f->nheld; i++)
        if (f->held[i] == req)
            f->held[i] = NULL;
}

static void reply_handler(struct fx *f, struct http_request *req)
{
    http_respond(req, 200, "text/plain", NULL, f->reply, f->reply_len, f->reply_flags);
}

static void hold_handler(struct fx *f, struct http_request *req)
{
    assert_true(f->nheld < MAX_HELD);
    f->held[f->nheld++] = req;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    http_config_default(&f->cfg);
    f->handler = reply_handler;
    f->reply = "hello";
    f->reply_len = 5;
    const struct http_callbacks cb = {.on_request = on_request, .on_abort = on_abort};
    f->hs = http_server_new(f->base, &f->cfg, &cb, f);
    *state = f;
    return f->base && f->hs ? 0 : -1;
}

static void remove_cert_dir(struct fx *f)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/cert.pem", f->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/key.pem", f->dir);
    unlink(path);
    rmdir(f->dir);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    listener_free(f->lis);
    http_server_free(f->hs);
    if (f->upgraded)
        bufferevent_free(f->upgraded);
    for (int i = 0; i < f->ncl; i++) {
        if (f->cl[i].ev)
            event_free(f->cl[i].ev);
        if (f->cl[i].fd >= 0)
            close(f->cl[i].fd);
        free(f->cl[i].buf);
    }
    if (f->dir[0])
        remove_cert_dir(f);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void set_config(struct fx *f)
{
    http_server_set_config(f->hs, &f->cfg);
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 8192;
            c->buf = realloc(c->buf, c->cap + 1);
        }
        ssize_t n = recv(fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        c->eof = true; /* EOF or reset */
        event_del(c->ev);
        return;
    }
}

static struct client *client_add(struct fx *f, int fd)
{
    assert_true(f->ncl < MAX_CLIENTS);
    struct client *c = &f->cl[f->ncl++];
    memset(c, 0, sizeof(*c));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->ev = event_new(f->base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
    event_add(c->ev, NULL);
    return c;
}

/* A client connected to the server through a socketpair. */
static struct client *client_pair(struct fx *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(sv[0], (struct sockaddr *)&ss, &len);
    http_server_accept(f->hs, bev, (struct sockaddr *)&ss, len, false);
    return client_add(f, sv[1]);
}

static struct client *client_tcp(struct fx *f, int family, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        in6->sin6_addr = in6addr_loopback;
        len = sizeof(*in6);
    }
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    return client_add(f, fd);
}

/* Runs the loop for about ms milliseconds. */
static void run_for(struct fx *f, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

/* Runs the loop in 2 ms steps until pred holds; false on timeout. */
static bool run_until(struct fx *f, bool (*pred)(struct fx *f, const void *arg), const void *arg,
                      unsigned timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (!pred(f, arg)) {
        if (now_ms() > deadline)
            return false;
        run_for(f, 2);
    }
    return true;
}

static void client_send(struct fx *f, struct client *c, const void *data, size_t len)
{
    const char *p = data;
    long deadline = now_ms() + WAIT_MS;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else {
            assert_true(n < 0 && errno == EAGAIN);
            assert_true(now_ms() < deadline);
            run_for(f, 2);
        }
    }
}

static void client_send_str(struct fx *f, struct client *c, const char *s)
{
    client_send(f, c, s, strlen(s));
}

/* Splits the client's bytes into complete responses. 1xx interim responses
 * are skipped; head_only: every response answers a HEAD request. */
static int parse_resps(const struct client *c, struct resp *out, int max, bool head_only)
{
    const char *buf = c->buf;
    size_t len = c->len, off = 0;
    int n = 0;
    while (n < max && off < len) {
        const char *end = memmem(buf + off, len - off, "\r\n\r\n", 4);
        if (!end)
            break;
        struct resp r = {.head = buf + off, .head_len = (size_t)(end - (buf + off)) + 4};
        if (sscanf(r.head, "HTTP/1.1 %d ", &r.status) != 1)
            break;
        const char *cl = memmem(r.head, r.head_len, "\r\nContent-Length: ", 18);
        size_t body = cl && !head_only ? strtoul(cl + 18, NULL, 10) : 0;
        if (off + r.head_len + body > len)
            break;
        r.body = r.head + r.head_len;
        r.body_len = body;
        off += r.head_len + body;
        if (r.status < 200)
            continue;
        out[n++] = r;
    }
    return n;
}

static bool resp_has(const struct resp *r, const char *line)
{
    return memmem(r->head, r->head_len, line, strlen(line)) != NULL;
}

struct want {
    const struct client *c;
    int n;
};

static bool have_resps(struct fx *f, const void *arg)
{
    const struct want *w = arg;
    struct resp r[8];
    return parse_resps(w->c, r, 8, false) >= w->n;
}

static bool have_eof(struct fx *f, const void *arg)
{
    return ((const struct client *)arg)->eof;
}

static bool have_requests(struct fx *f, const void *arg)
{
    return f->nreq >= *(const int *)arg;
}

static bool have_aborts(struct fx *f, const void *arg)
{
    return f->naborts >= *(const int *)arg;
}

static bool no_connections(struct fx *f, const void *arg)
{
    return http_server_connections(f->hs) == 0;
}

static void wait_resps(struct fx *f, struct client *c, int n)
{
    struct want w = {c, n};
    assert_true(run_until(f, have_resps, &w, WAIT_MS));
}

static void wait_requests(struct fx *f, int n)
{
    assert_true(run_until(f, have_requests, &n, WAIT_MS));
}

static void wait_eof(struct fx *f, struct client *c)
{
    assert_true(run_until(f, have_eof, c, WAIT_MS));
}

/* What a client does once it has read EOF; the server stops lingering. */
static void client_close(struct client *c)
{
    event_del(c->ev);
    close(c->fd);
    c->fd = -1;
}

/* --- requests and responses -------------------------------------------- */

static void check_get_handler(struct fx *f, struct http_request *req)
{
    size_t len;
    const char *s, *name, *value;
    assert_int_equal(http_request_method(req), HTTP_M_GET);
    assert_string_equal(http_request_method_name(req), "GET");
    assert_string_equal(http_request_url(req), "/socket.io/?EIO=4&transport=polling&t=N1&flag");
    s = http_request_path(req, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(s, "/socket.io/", 11);
    s = http_request_query(req, &len);
    assert_int_equal(len, strlen("EIO=4&transport=polling&t=N1&flag"));
    assert_true(http_request_query_param(req, "EIO", &s, &len));
    assert_int_equal(len, 1);
    assert_memory_equal(s, "4", 1);
    assert_true(http_request_query_param(req, "transport", &s, &len));
    assert_int_equal(len, 7);
    assert_memory_equal(s, "polling", 7);
    assert_true(http_request_query_param(req, "t", &s, &len));
    assert_memory_equal(s, "N1", 2);
    assert_true(http_request_query_param(req, "flag", &s, &len));
    assert_int_equal(len, 0);
    assert_false(http_request_query_param(req, "EI", &s, &len));
    assert_false(http_request_query_param(req, "sid", &s, &len));

    assert_string_equal(http_request_header(req, "x-test"), "spaced  value");
    assert_string_equal(http_request_header(req, "HOST"), "example.com");
    assert_string_equal(http_request_header(req, "X-Empty"), "");
    assert_null(http_request_header(req, "X-Missing"));
    size_t n = 0;
    int tests = 0;
    while (http_request_header_at(req, n, &name, &value)) {
        if (strcasecmp(name, "X-Test") == 0)
            tests++;
        n++;
    }
    assert_int_equal(n, 4);
    assert_int_equal(tests, 2);
    assert_true(http_request_header_at(req, 2, &name, &value));
    assert_string_equal(name, "x-test");
    assert_string_equal(value, "second");

    assert_true(http_request_keep_alive(req));
    assert_false(http_request_is_upgrade(req));
    assert_false(http_request_is_tls(req));
    assert_true(http_request_conn_id(req) > 0);
    assert_string_equal(http_request_peer_address(req), "unix");
    http_request_body(req, &len);
    assert_int_equal(len, 0);
    assert_null(http_request_get_data(req));
    http_request_set_data(req, f);
    assert_ptr_equal(http_request_get_data(req), f);
    http_respond(req, 200, "text/plain", "X-Extra: 1\r\n", "hello", 5, 0);
}

static void test_get_query_headers(void **state)
{
    struct fx *f = *state;
    f->handler = check_get_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c,
                    "GET /socket.io/?EIO=4&transport=polling&t=N1&flag HTTP/1.1\r\n"
                    "Host: example.com\r\n"
                    "X-Test: \t spaced  value \t\r\n"
                    "x-test: second\r\n"
                    "X-Empty:\r\n\r\n");
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.head, "HTTP/1.1 200 OK\r\n", 17);
    assert_true(resp_has(&r, "\r\nX-Extra: 1\r\n"));
    assert_true(resp_has(&r, "\r\nContent-Type: text/plain\r\n"));
    assert_true(resp_has(&r, "\r\nContent-Length: 5\r\n"));
    assert_true(resp_has(&r, "\r\nConnection: keep-alive\r\n"));
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "hello", 5);
    assert_int_equal(f->nreq, 1);
    assert_int_equal(http_server_connections(f->hs), 1);
}

static void path_handler(struct fx *f, struct http_request *req)
{
    size_t len;
    const char *p = http_request_path(req, &len);
    http_respond(req, 200, NULL, NULL, p, len, 0);
}

static void test_keep_alive_sequential(void **state)
{
    struct fx *f = *state;
    f->handler = path_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_resps(f, c, 1);
    client_send_str(f, c, "GET /two?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_resps(f, c, 2);
    struct resp r[2];
    assert_int_equal(parse_resps(c, r, 2, false), 2);
    assert_int_equal(r[0].body_len, 4);
    assert_memory_equal(r[0].body, "/one", 4);
    assert_int_equal(r[1].body_len, 4);
    assert_memory_equal(r[1].body, "/two", 4);
    assert_true(resp_has(&r[1], "\r\nConnection: keep-alive\r\n"));
    assert_false(c->eof);
    assert_int_equal(http_server_connections(f->hs), 1);
}

/* /2 is answered later; /3 must not be parsed before that. */
static void pipeline_handler(struct fx *f, struct http_request *req)
{
    size_t len;
    const char *p = http_request_path(req, &len);
    if (len == 2 && p[1] == '2')
        hold_handler(f, req);
    else
        path_handler(f, req);
}

static void test_pipelined_in_order(void **state)
{
    struct fx *f = *state;
    f->handler = pipeline_handler;
    struct client *c = client_pair(f);
    client_send_str(
        f, c, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_requests(f, 2);
    run_for(f, 30);
    assert_int_equal(f->nreq, 2);
    assert_int_equal(f->nheld, 1);
    http_respond(f->held[0], 200, NULL, NULL, "/2", 2, 0);
    wait_resps(f, c, 3);
    struct resp r[3];
    assert_int_equal(parse_resps(c, r, 3, false), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].body_len, 2);
        assert_int_equal(r[i].body[1], '1' + i);
    }
    assert_int_equal(f->nreq, 3);
}

static void body_handler(struct fx *f, struct http_request *req)
{
    size_t len;
    uint8_t *body = http_request_body(req, &len);
    assert_int_equal(http_request_method(req), HTTP_M_POST);
    for (size_t i = 0; i < len; i++) /* writable in place */
        body[i] = (uint8_t)(body[i] == ' ' ? '_' : body[i]);
    http_respond(req, 200, NULL, NULL, body, len, 0);
}

static void test_post_content_length(void **state)
{
    struct fx *f = *state;
    f->handler = body_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "POST /p HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world");
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "hello_world", 11);
}

static void test_post_chunked_bytewise(void **state)
{
    struct fx *f = *state;
    f->handler = body_handler;
    struct client *c = client_pair(f);
    const char *req = "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Long-Header-Name: "
                      "some value\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    /* byte by byte: every name, value and chunk arrives in pieces */
    for (size_t i = 0; req[i]; i++) {
        client_send(f, c, req + i, 1);
        run_for(f, 0);
    }
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "hello_world", 11);
}

static void trailer_handler(struct fx *f, struct http_request *req)
{
    const char *name, *value;
    assert_string_equal(http_request_header(req, "X-Long-Header-Name"), "some value");
    assert_null(http_request_header(req, "X-Trailer"));
    assert_false(http_request_header_at(req, 2, &name, &value));
    body_handler(f, req);
}

static void test_chunked_split_everywhere(void **state)
{
    struct fx *f = *state;
    f->handler = trailer_handler;
    const char *req = "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Long-Header-Name: "
                      "some value\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    size_t len = strlen(req);
    /* every 2-way split, on its own connection */
    for (size_t cut = 1; cut < len; cut += 7) {
        struct client c = {.fd = -1};
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        evutil_make_socket_nonblocking(sv[0]);
        http_server_accept(f->hs, bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE),
                           NULL, 0, false);
        c.fd = sv[1];
        fcntl(c.fd, F_SETFL, O_NONBLOCK);
        c.ev = event_new(f->base, c.fd, EV_READ | EV_PERSIST, client_read_cb, &c);
        event_add(c.ev, NULL);
        client_send(f, &c, req, cut);
        run_for(f, 0);
        client_send(f, &c, req + cut, len - cut);
        wait_resps(f, &c, 1);
        struct resp r;
        assert_int_equal(parse_resps(&c, &r, 1, false), 1);
        assert_memory_equal(r.body, "hello_world", 11);
        event_free(c.ev);
        close(c.fd);
        free(c.buf);
    }
    assert_true(run_until(f, no_connections, NULL, WAIT_MS));
}

static void answer_held(evutil_socket_t fd, short what, void *arg)
{
    struct fx *f = arg;
    http_respond(f->held[0], 202, "application/json", NULL, "{}", 2, 0);
    f->held[0] = NULL;
}

static void test_deferred_response(void **state)
{
    struct fx *f = *state;
    f->handler = hold_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET /poll HTTP/1.1\r\n\r\n");
    wait_requests(f, 1);
    struct timeval tv = {0, 50000};
    event_base_once(f->base, -1, EV_TIMEOUT, answer_held, f, &tv);
    long t0 = now_ms();
    wait_resps(f, c, 1);
    assert_true(now_ms() - t0 >= 40);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.status, 202);
    assert_memory_equal(r.head, "HTTP/1.1 202 Accepted\r\n", 23);
    assert_true(resp_has(&r, "\r\nContent-Type: application/json\r\n"));
    assert_memory_equal(r.body, "{}", 2);
    assert_int_equal(f->naborts, 0);
}

static void test_abort_on_client_close(void **state)
{
    struct fx *f = *state;
    f->handler = hold_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET /poll HTTP/1.1\r\n\r\n");
    wait_requests(f, 1);
    struct http_request *held = f->held[0];
    assert_int_equal(http_server_connections(f->hs), 1);
    client_close(c);
    int one = 1;
    assert_true(run_until(f, have_aborts, &one, WAIT_MS));
    assert_ptr_equal(f->aborted, held);
    assert_null(f->held[0]);
    assert_true(run_until(f, no_connections, NULL, WAIT_MS));
}

static void test_server_free_aborts_pending(void **state)
{
    struct fx *f = *state;
    f->handler = hold_handler;
    struct client *c = client_pair(f);
    client_pair(f); /* an idle one too */
    client_send_str(f, c, "GET /poll HTTP/1.1\r\n\r\n");
    wait_requests(f, 1);
    http_server_free(f->hs);
    f->hs = NULL;
    assert_int_equal(f->naborts, 1);
    wait_eof(f, c);
}

/* --- limits and errors ------------------------------------------------- */

static void expect_error_close(struct fx *f, struct client *c, int status)
{
    wait_eof(f, c);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.status, status);
    assert_true(resp_has(&r, "\r\nContent-Length: 0\r\n"));
    assert_true(resp_has(&r, "\r\nConnection: close\r\n"));
    assert_int_equal(r.body_len, 0);
    assert_int_equal(r.head_len, c->len); /* nothing after the head */
    assert_int_equal(f->nreq, 0);
    client_close(c);
    assert_true(run_until(f, no_connections, NULL, WAIT_MS));
}

static void test_header_too_large_431(void **state)
{
    struct fx *f = *state;
    f->cfg.max_header_bytes = 1000;
    set_config(f);
    struct client *c = client_pair(f);
    char big[2000];
    memset(big, 'a', sizeof(big));
    client_send_str(f, c, "GET / HTTP/1.1\r\nX-Big: ");
    client_send(f, c, big, sizeof(big));
    client_send_str(f, c, "\r\n\r\n");
    expect_error_close(f, c, 431);
    assert_memory_equal(c->buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46);
}

static void test_header_limit_exact(void **state)
{
    struct fx *f = *state;
    const char *req = "GET / HTTP/1.1\r\nX: 12345\r\n\r\n";
    f->cfg.max_header_bytes = strlen(req);
    set_config(f);
    struct client *c = client_pair(f);
    client_send_str(f, c, req);
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.status, 200);
    client_send_str(f, c, "GET / HTTP/1.1\r\nX: 123456\r\n\r\n");
    wait_eof(f, c);
    struct resp r2[2];
    assert_int_equal(parse_resps(c, r2, 2, false), 2);
    assert_int_equal(r2[1].status, 431);
}

static void test_url_too_long_414(void **state)
{
    struct fx *f = *state;
    f->cfg.max_url = 100;
    set_config(f);
    struct client *c = client_pair(f);
    char url[200];
    memset(url, 'u', sizeof(url));
    url[0] = '/';
    client_send_str(f, c, "GET ");
    client_send(f, c, url, sizeof(url));
    client_send_str(f, c, " HTTP/1.1\r\n\r\n");
    expect_error_close(f, c, 414);
}

static void test_body_too_large_413(void **state)
{
    struct fx *f = *state;
    f->cfg.max_body = 1000;
    set_config(f);
    struct client *c = client_pair(f);
    client_send_str(f, c, "POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
    expect_error_close(f, c, 413);
    assert_memory_equal(c->buf, "HTTP/1.1 413 Payload Too Large\r\n", 32);
}

static void test_chunked_too_large_413(void **state)
{
    struct fx *f = *state;
    f->cfg.max_body = 10;
    set_config(f);
    struct client *c = client_pair(f);
    client_send_str(f, c,
                    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    expect_error_close(f, c, 413);
}

static void test_garbage_400(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/9.Z\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = client_pair(f);
        client_send_str(f, c, bad[i]);
        expect_error_close(f, c, 400);
        event_free(c->ev);
        free(c->buf);
        f->ncl--;
    }
}

/* The client keeps sending body bytes; the 413 still arrives over TCP
 * (closing with unread input would reset the connection). */
static void test_413_survives_unread_body(void **state)
{
    struct fx *f = *state;
    f->cfg.max_body = 1000;
    set_config(f);
    char err[256];
    struct listener_config lc = {.address = "127.0.0.1"};
    f->lis = listener_new(f->base, f->hs, &lc, err, sizeof(err));
    assert_non_null(f->lis);
    struct client *c = client_tcp(f, AF_INET, listener_port(f->lis));
    client_send_str(f, c, "POST / HTTP/1.1\r\nContent-Length: 200000\r\n\r\n");
    char chunk[32768];
    memset(chunk, 'b', sizeof(chunk));
    client_send(f, c, chunk, sizeof(chunk));
    run_for(f, 20);
    client_send(f, c, chunk, sizeof(chunk));
    wait_eof(f, c);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.status, 413);
    assert_true(resp_has(&r, "\r\nConnection: close\r\n"));
    client_close(c);
    assert_true(run_until(f, no_connections, NULL, WAIT_MS));
}

static void test_upgrade_respond_closes(void **state)
{
    struct fx *f = *state;
    struct client *c = client_pair(f);
    client_send_str(f, c,
                    "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                    "\x81\x85garbage");
    wait_eof(f, c);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.status, 200);
    assert_true(resp_has(&r, "\r\nConnection: close\r\n"));
    assert_int_equal(f->nreq, 1);
}

/* --- timeouts ---------------------------------------------------------- */

static void test_header_timeout_silent(void **state)
{
    struct fx *f = *state;
    f->cfg.header_timeout_ms = 100;
    set_config(f);
    long t0 = now_ms();
    struct client *c = client_pair(f);
    wait_eof(f, c);
    long dt = now_ms() - t0;
    assert_true(dt >= 90);
    assert_true(dt < 1000);
    assert_int_equal(c->len, 0);
    assert_int_equal(http_server_connections(f->hs), 0);
}

static void test_header_timeout_trickle(void **state)
{
    struct fx *f = *state;
    f->cfg.header_timeout_ms = 100;
    set_config(f);
    struct client *c = client_pair(f);
    const char *req = "GET /slow HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    long t0 = now_ms();
    for (size_t i = 0; req[i] && !c->eof; i++) {
        send(c->fd, req + i, 1, MSG_NOSIGNAL);
        run_for(f, 30);
    }
    wait_eof(f, c);
    long dt = now_ms() - t0;
    assert_true(dt >= 90);
    assert_true(dt < 600);
    assert_int_equal(c->len, 0);
    assert_int_equal(f->nreq, 0);
}

static void test_body_timeout(void **state)
{
    struct fx *f = *state;
    f->cfg.body_timeout_ms = 100;
    set_config(f);
    struct client *c = client_pair(f);
    long t0 = now_ms();
    client_send_str(f, c, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    wait_eof(f, c);
    long dt = now_ms() - t0;
    assert_true(dt >= 90);
    assert_true(dt < 1000);
    assert_int_equal(c->len, 0);
    assert_int_equal(f->nreq, 0);
}

static void test_idle_timeout(void **state)
{
    struct fx *f = *state;
    f->cfg.idle_timeout_ms = 100;
    set_config(f);
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET / HTTP/1.1\r\n\r\n");
    wait_resps(f, c, 1);
    long t0 = now_ms();
    run_for(f, 50);
    assert_false(c->eof);
    wait_eof(f, c);
    long dt = now_ms() - t0;
    assert_true(dt >= 80);
    assert_true(dt < 1000);
    assert_int_equal(http_server_connections(f->hs), 0);
}

/* --- upgrade ----------------------------------------------------------- */

static void upgrade_handler(struct fx *f, struct http_request *req)
{
    assert_true(http_request_is_upgrade(req));
    assert_string_equal(http_request_header(req, "Upgrade"), "websocket");
    struct bufferevent *bev = http_request_upgrade(req);
    assert_non_null(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    assert_true(n < sizeof(f->upgraded_input));
    evbuffer_remove(in, f->upgraded_input, n);
    f->upgraded = bev;
    bufferevent_write(bev, "HTTP/1.1 101 Switching Protocols\r\n\r\nHELLO", 41);
}

static void test_upgrade_keeps_leftover(void **state)
{
    struct fx *f = *state;
    f->handler = upgrade_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c,
                    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
                    "Upgrade: websocket\r\n\r\nXYZ");
    wait_requests(f, 1);
    assert_string_equal(f->upgraded_input, "XYZ");
    assert_int_equal(http_server_connections(f->hs), 0);
    assert_true(run_until(f, have_eof, c, 100) == false); /* still open, data flows */
    assert_string_equal(c->buf, "HTTP/1.1 101 Switching Protocols\r\n\r\nHELLO");
    bufferevent_free(f->upgraded);
    f->upgraded = NULL;
    wait_eof(f, c);
}

/* --- compression ------------------------------------------------------- */

static char *make_text(size_t n)
{
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = "socket.io engine.io "[i % 20] + (char)(i / 997 % 3);
    return s;
}

static size_t inflate_all(const struct resp *r, int window_bits, char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, window_bits), Z_OK);
    zs.next_in = (Bytef *)r->body;
    zs.avail_in = (uInt)r->body_len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n = zs.total_out;
    inflateEnd(&zs);
    return n;
}

static void compressed_exchange(struct fx *f, const char *accept_encoding, size_t body_len,
                                struct resp *r, struct client **cp)
{
    f->reply = make_text(body_len);
    f->reply_len = body_len;
    f->reply_flags = HTTP_RESP_COMPRESS;
    struct client *c = client_pair(f);
    char req[256];
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n%s%s%s\r\n",
             accept_encoding ? "Accept-Encoding: " : "", accept_encoding ? accept_encoding : "",
             accept_encoding ? "\r\n" : "");
    client_send_str(f, c, req);
    wait_resps(f, c, 1);
    assert_int_equal(parse_resps(c, r, 1, false), 1);
    assert_int_equal(r->status, 200);
    *cp = c;
}

static void test_compress_gzip_round_trip(void **state)
{
    struct fx *f = *state;
    struct resp r;
    struct client *c;
    compressed_exchange(f, "deflate, gzip;q=0.5, br", 20000, &r, &c);
    assert_true(resp_has(&r, "\r\nContent-Encoding: gzip\r\n"));
    assert_true(resp_has(&r, "\r\nVary: Accept-Encoding\r\n"));
    assert_true(r.body_len < 20000);
    char *out = malloc(30000);
    assert_int_equal(inflate_all(&r, 15 + 16, out, 30000), 20000);
    assert_memory_equal(out, f->reply, 20000);
    free(out);
    free((char *)f->reply);
}

static void test_compress_deflate_when_gzip_refused(void **state)
{
    struct fx *f = *state;
    struct resp r;
    struct client *c;
    compressed_exchange(f, "gzip;q=0, deflate;q=0.1", 5000, &r, &c);
    assert_true(resp_has(&r, "\r\nContent-Encoding: deflate\r\n"));
    char out[6000];
    assert_int_equal(inflate_all(&r, 15, out, sizeof(out)), 5000);
    assert_memory_equal(out, f->reply, 5000);
    free((char *)f->reply);
}

static void test_compress_skipped(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *ae;
        size_t len;
        bool vary;
    } cases[] = {
        {"gzip", 100, false},     /* under compress_min */
        {NULL, 5000, true},       /* no Accept-Encoding */
        {"identity", 5000, true}, /* nothing we offer */
        {"*;q=0", 5000, true},    /* everything refused */
        {"gzip;q=0.000, br", 5000, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct resp r;
        struct client *c;
        compressed_exchange(f, cases[i].ae, cases[i].len, &r, &c);
        assert_false(resp_has(&r, "Content-Encoding"));
        assert_int_equal(resp_has(&r, "\r\nVary: Accept-Encoding\r\n"), cases[i].vary);
        assert_int_equal(r.body_len, cases[i].len);
        assert_memory_equal(r.body, f->reply, cases[i].len);
        free((char *)f->reply);
        event_free(c->ev);
        close(c->fd);
        free(c->buf);
        f->ncl--;
    }
}

static void test_compress_star_accepts_gzip(void **state)
{
    struct fx *f = *state;
    struct resp r;
    struct client *c;
    compressed_exchange(f, "*", 5000, &r, &c);
    assert_true(resp_has(&r, "\r\nContent-Encoding: gzip\r\n"));
    free((char *)f->reply);
}

/* --- response shapes --------------------------------------------------- */

static void test_head_request(void **state)
{
    struct fx *f = *state;
    struct client *c = client_pair(f);
    client_send_str(f, c, "HEAD / HTTP/1.1\r\n\r\n");
    wait_requests(f, 1);
    run_for(f, 10);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, true), 1);
    assert_true(resp_has(&r, "\r\nContent-Length: 5\r\n"));
    assert_int_equal(c->len, r.head_len); /* no body */
}

static void status_handler(struct fx *f, struct http_request *req)
{
    http_respond(req, 204, NULL, NULL, "ignored", 7, HTTP_RESP_NO_BODY);
}

static void test_no_content(void **state)
{
    struct fx *f = *state;
    f->handler = status_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "DELETE /x HTTP/1.1\r\n\r\nOPTIONS /y HTTP/1.1\r\n\r\n");
    wait_requests(f, 2);
    run_for(f, 10);
    assert_string_equal(c->buf, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
                                "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
}

static void test_http10_and_connection_close(void **state)
{
    struct fx *f = *state;
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    wait_resps(f, c, 1);
    struct resp r[2];
    assert_int_equal(parse_resps(c, r, 1, false), 1);
    assert_true(resp_has(&r[0], "\r\nConnection: keep-alive\r\n"));
    client_send_str(f, c, "GET / HTTP/1.0\r\n\r\n");
    wait_eof(f, c);
    assert_int_equal(parse_resps(c, r, 2, false), 2);
    assert_true(resp_has(&r[1], "\r\nConnection: close\r\n"));
    assert_memory_equal(r[1].body, "hello", 5);

    struct client *c2 = client_pair(f);
    client_send_str(f, c2,
                    "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
    wait_eof(f, c2);
    assert_int_equal(parse_resps(c2, r, 2, false), 1);
    assert_true(resp_has(&r[0], "\r\nConnection: close\r\n"));
    assert_int_equal(f->nreq, 3);
}

static void buffer_handler(struct fx *f, struct http_request *req)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "part1-");
    evbuffer_add_printf(b, "part2");
    http_respond_buffer(req, 404, "text/html", NULL, b, HTTP_RESP_CLOSE);
    assert_int_equal(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}

static void test_respond_buffer_and_close_flag(void **state)
{
    struct fx *f = *state;
    f->handler = buffer_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET / HTTP/1.1\r\n\r\n");
    wait_eof(f, c);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_memory_equal(r.head, "HTTP/1.1 404 Not Found\r\n", 24);
    assert_true(resp_has(&r, "\r\nConnection: close\r\n"));
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "part1-part2", 11);
}

static void test_expect_continue(void **state)
{
    struct fx *f = *state;
    f->handler = body_handler;
    struct client *c = client_pair(f);
    client_send_str(f, c, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    run_for(f, 20);
    assert_string_equal(c->buf, "HTTP/1.1 100 Continue\r\n\r\n");
    client_send_str(f, c, "a b");
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_memory_equal(r.body, "a_b", 3);
}

static void test_status_reason(void **state)
{
    assert_string_equal(http_status_reason(200), "OK");
    assert_string_equal(http_status_reason(400), "Bad Request");
    assert_string_equal(http_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_reason(499), "Client Error");
    assert_string_equal(http_status_reason(999), "Unknown");
}

/* --- server-wide ------------------------------------------------------- */

static void test_drain(void **state)
{
    struct fx *f = *state;
    f->handler = hold_handler;
    struct client *idle = client_pair(f);
    struct client *busy = client_pair(f);
    struct client *half = client_pair(f);
    client_send_str(f, busy, "GET /poll HTTP/1.1\r\n\r\n");
    client_send_str(f, half, "GET /half HTTP/1.1\r\n");
    wait_requests(f, 1);
    run_for(f, 5);
    http_server_drain(f->hs);
    wait_eof(f, idle);
    assert_int_equal(idle->len, 0);
    client_close(idle);
    run_for(f, 20);
    assert_false(busy->eof);
    assert_false(half->eof);
    assert_int_equal(http_server_connections(f->hs), 2);
    /* the request being received when the drain began is still served */
    client_send_str(f, half, "Host: x\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
    wait_requests(f, 2);
    assert_int_equal(f->nheld, 2);
    for (int i = 0; i < 2; i++)
        http_respond(f->held[i], 200, NULL, NULL, "bye", 3, 0);
    struct client *both[2] = {busy, half};
    for (int i = 0; i < 2; i++) {
        wait_eof(f, both[i]);
        struct resp r[2];
        assert_int_equal(parse_resps(both[i], r, 2, false), 1);
        assert_true(resp_has(&r[0], "\r\nConnection: close\r\n"));
        assert_memory_equal(r[0].body, "bye", 3);
        client_close(both[i]);
    }
    assert_int_equal(f->nreq, 2);
    assert_true(run_until(f, no_connections, NULL, WAIT_MS));
    struct client *late = client_pair(f); /* refused while draining */
    wait_eof(f, late);
    assert_int_equal(f->naborts, 0);
}

static void test_max_connections(void **state)
{
    struct fx *f = *state;
    f->cfg.max_connections = 1;
    set_config(f);
    struct client *a = client_pair(f);
    struct client *b = client_pair(f);
    assert_int_equal(http_server_connections(f->hs), 1);
    wait_eof(f, b);
    client_send_str(f, a, "GET / HTTP/1.1\r\n\r\n");
    wait_resps(f, a, 1);
}

/* A client that pipelines while its first request waits is read up to the
 * limit and then not any more, so its half-close goes unnoticed; answering
 * resumes reading and every pipelined request is served in turn. */
static void test_pipeline_backlog_bounded(void **state)
{
    struct fx *f = *state;
    f->handler = hold_handler;
    f->cfg.max_header_bytes = 1000;
    f->cfg.max_body = 1000;
    set_config(f);
    struct client *c = client_pair(f);
    client_send_str(f, c, "GET /first HTTP/1.1\r\n\r\n");
    wait_requests(f, 1);
    size_t n = 100000 / 19 * 19;
    char *more = malloc(n);
    for (size_t off = 0; off < n; off += 19)
        memcpy(more + off, "GET /b HTTP/1.1\r\n\r\n", 19);
    ssize_t sent = send(c->fd, more, n, MSG_NOSIGNAL);
    free(more);
    assert_true(sent > 20000);
    run_for(f, 30);
    shutdown(c->fd, SHUT_WR);
    run_for(f, 30);
    assert_int_equal(f->naborts, 0);
    assert_int_equal(f->nreq, 1);

    f->handler = reply_handler;
    http_respond(f->held[0], 200, NULL, NULL, "x", 1, 0);
    wait_eof(f, c);
    assert_int_equal(f->nreq, 1 + sent / 19);
    struct resp r[8];
    assert_int_equal(parse_resps(c, r, 8, false), 8);
    assert_memory_equal(r[7].body, "hello", 5);
}

/* --- listeners --------------------------------------------------------- */

static void peer_handler(struct fx *f, struct http_request *req)
{
    const char *peer = http_request_peer_address(req);
    socklen_t len;
    assert_non_null(http_request_peer(req, &len));
    assert_true(len > 0);
    http_respond(req, 200, NULL, NULL, peer, strlen(peer), 0);
}

static void test_listener_port0(void **state)
{
    struct fx *f = *state;
    f->handler = peer_handler;
    char err[256] = "";
    struct listener_config lc = {.address = "localhost", .port = 0};
    f->lis = listener_new(f->base, f->hs, &lc, err, sizeof(err));
    assert_non_null(f->lis);
    uint16_t port = listener_port(f->lis);
    assert_true(port != 0);
    char name[64];
    snprintf(name, sizeof(name), "127.0.0.1:%u", (unsigned)port);
    assert_string_equal(listener_name(f->lis), name);
    struct client *c = client_tcp(f, AF_INET, port);
    client_send_str(f, c, "GET / HTTP/1.1\r\n\r\n");
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.body_len, 9);
    assert_memory_equal(r.body, "127.0.0.1", 9);
    assert_int_equal(listener_reload_tls(f->lis, "a", "b", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a TLS listener"));

    /* the same port again cannot be bound */
    lc.port = port;
    struct listener *dup = listener_new(f->base, f->hs, &lc, err, sizeof(err));
    assert_null(dup);
    snprintf(name, sizeof(name), "localhost:%u: ", (unsigned)port);
    assert_memory_equal(err, name, strlen(name));
}

static void test_listener_ipv6_dual_stack(void **state)
{
    struct fx *f = *state;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0) {
        skip();
    }
    close(probe);
    f->handler = peer_handler;
    char err[256] = "";
    struct listener_config lc = {.address = "::"};
    f->lis = listener_new(f->base, f->hs, &lc, err, sizeof(err));
    if (!f->lis && strstr(err, "Address family"))
        skip();
    assert_non_null(f->lis);
    char name[64];
    snprintf(name, sizeof(name), "[::]:%u", (unsigned)listener_port(f->lis));
    assert_string_equal(listener_name(f->lis), name);
    /* an IPv4 client reaches the IPv6 wildcard and reads as IPv4 */
    struct client *c = client_tcp(f, AF_INET, listener_port(f->lis));
    client_send_str(f, c, "GET / HTTP/1.1\r\n\r\n");
    wait_resps(f, c, 1);
    struct resp r;
    assert_int_equal(parse_resps(c, &r, 1, false), 1);
    assert_int_equal(r.body_len, 9);
    assert_memory_equal(r.body, "127.0.0.1", 9);
}

static void test_listener_errors(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct listener_config lc = {.address = "not-an-ip", .port = 80};
    assert_null(listener_new(f->base, f->hs, &lc, err, sizeof(err)));
    assert_string_equal(err, "not-an-ip:80: not a numeric IP address");

    struct listener_config tls = {.address = "127.0.0.1",
                                  .tls_cert = "/nonexistent/cert.pem",
                                  .tls_key = "/nonexistent/key.pem"};
    assert_null(listener_new(f->base, f->hs, &tls, err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/cert.pem: No such file or directory");

    tls.tls_cert = "/dev/null";
    assert_null(listener_new(f->base, f->hs, &tls, err, sizeof(err)));
    assert_memory_equal(err, "/dev/null: ", 11);
}

static void make_cert(struct fx *f)
{
    strcpy(f->dir, "/tmp/sockeye-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s/key.pem -out %s/cert.pem -days 1 -subj /CN=localhost "
             ">/dev/null 2>&1",
             f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
}

struct tls_client {
    uint16_t port;
    atomic_int done;
    int version;
    char buf[4096];
    size_t len;
};

static void *tls_client_main(void *arg)
{
    struct tls_client *t = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(t->port)};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&in, sizeof(in)) == 0) {
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1) {
            t->version = SSL_version(ssl);
            const char *req = "GET /tls HTTP/1.1\r\nConnection: close\r\n\r\n";
            SSL_write(ssl, req, (int)strlen(req));
            int n;
            while (t->len < sizeof(t->buf) - 1 &&
                   (n = SSL_read(ssl, t->buf + t->len, (int)(sizeof(t->buf) - 1 - t->len))) > 0)
                t->len += (size_t)n;
        }
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    ERR_clear_error();
    atomic_store(&t->done, 1);
    return NULL;
}

static bool tls_done(struct fx *f, const void *arg)
{
    return atomic_load(&((struct tls_client *)arg)->done) != 0;
}

static void tls_handler(struct fx *f, struct http_request *req)
{
    assert_true(http_request_is_tls(req));
    http_respond(req, 200, "text/plain", NULL, "secure", 6, 0);
}

static void tls_round_trip(struct fx *f)
{
    struct tls_client t = {.port = listener_port(f->lis)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, tls_client_main, &t), 0);
    bool ok = run_until(f, tls_done, &t, 5000);
    pthread_join(th, NULL);
    assert_true(ok);
    assert_true(t.version >= TLS1_2_VERSION);
    t.buf[t.len] = '\0';
    assert_non_null(strstr(t.buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(t.buf, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(t.buf, "\r\n\r\nsecure"));
}

static void test_tls_listener(void **state)
{
    struct fx *f = *state;
    make_cert(f);
    f->handler = tls_handler;
    char cert[128], key[128], err[256] = "";
    snprintf(cert, sizeof(cert), "%s/cert.pem", f->dir);
    snprintf(key, sizeof(key), "%s/key.pem", f->dir);
    struct listener_config lc = {.address = "127.0.0.1", .tls_cert = cert, .tls_key = key};
    f->lis = listener_new(f->base, f->hs, &lc, err, sizeof(err));
    assert_non_null(f->lis);
    tls_round_trip(f);
    assert_int_equal(f->nreq, 1);

    /* key and certificate swapped: refused, the old context stays */
    assert_int_equal(listener_reload_tls(f->lis, key, cert, err, sizeof(err)), -1);
    assert_memory_equal(err, key, strlen(key));
    assert_int_equal(listener_reload_tls(f->lis, cert, key, err, sizeof(err)), 0);
    tls_round_trip(f);
    assert_int_equal(f->nreq, 2);
    assert_true(run_until(f, no_connections, NULL, WAIT_MS));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_get_query_headers),
        T(test_keep_alive_sequential),
        T(test_pipelined_in_order),
        T(test_post_content_length),
        T(test_post_chunked_bytewise),
        T(test_chunked_split_everywhere),
        T(test_deferred_response),
        T(test_abort_on_client_close),
        T(test_server_free_aborts_pending),
        T(test_header_too_large_431),
        T(test_header_limit_exact),
        T(test_url_too_long_414),
        T(test_body_too_large_413),
        T(test_chunked_too_large_413),
        T(test_garbage_400),
        T(test_413_survives_unread_body),
        T(test_upgrade_respond_closes),
        T(test_header_timeout_silent),
        T(test_header_timeout_trickle),
        T(test_body_timeout),
        T(test_idle_timeout),
        T(test_upgrade_keeps_leftover),
        T(test_compress_gzip_round_trip),
        T(test_compress_deflate_when_gzip_refused),
        T(test_compress_skipped),
        T(test_compress_star_accepts_gzip),
        T(test_head_request),
        T(test_no_content),
        T(test_http10_and_connection_close),
        T(test_respond_buffer_and_close_flag),
        T(test_expect_continue),
        cmocka_unit_test(test_status_reason),
        T(test_drain),
        T(test_max_connections),
        T(test_pipeline_backlog_bounded),
        T(test_listener_port0),
        T(test_listener_ipv6_dual_stack),
        T(test_listener_errors),
        T(test_tls_listener),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

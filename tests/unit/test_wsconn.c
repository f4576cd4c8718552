/* Unit tests for src/wsconn: the test plays the WebSocket client over a
 * socketpair, writing masked frames and reading the server's frames back,
 * while driving the event loop in bounded steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "deflate.h"
#include "outpacket.h"
#include "ws.h"
#include "wsconn.h"

#define MAX_MSGS    256
#define DEADLINE_MS 2000

enum action {
    ACT_NONE,
    ACT_CLOSE,      /* wsconn_close from inside `message` */
    ACT_ABORT,      /* wsconn_abort from inside `message` */
    ACT_ECHO,       /* wsconn_send the message back */
    ACT_ECHO_ABORT, /* wsconn_send the message back, then wsconn_abort */
};

/* Set for the groups whose connections run in direct mode (a wsconn_loop). */
static bool use_loop;

struct msg {
    uint8_t *data;
    size_t len;
    bool binary;
};

struct fx {
    struct event_base *base;
    int cfd;                 /* the client's end */
    struct bufferevent *tls; /* TLS tests: the client's end, on cfd */
    bool tls_eof;
    int sfd;
    struct wsconn_loop *loop;
    struct wsconn *ws;
    enum action action;
    int in_new; /* set while wsconn_new runs */
    struct msg msgs[MAX_MSGS];
    size_t nmsgs;
    int msgs_in_new;
    int closed;
    bool break_on_closed; /* `closed` ends the current loop pass */
    uint16_t code;
    const char *reason;
    struct buf rx; /* bytes read from the server, not yet parsed */
};

struct sframe {
    uint8_t op;
    bool fin, rsv1;
    uint8_t *data;
    size_t len;
};

/* ---- handlers ---- */

static void on_message(struct wsconn *ws, const uint8_t *data, size_t len, bool binary, void *arg)
{
    struct fx *fx = arg;
    if (fx->in_new)
        fx->msgs_in_new++;
    if (fx->nmsgs < MAX_MSGS) {
        struct msg *m = &fx->msgs[fx->nmsgs];
        m->data = malloc(len ? len : 1);
        assert_non_null(m->data);
        memcpy(m->data, data, len);
        m->len = len;
        m->binary = binary;
    }
    fx->nmsgs++;
    switch (fx->action) {
    case ACT_CLOSE:
        wsconn_close(ws, WS_CLOSE_NORMAL, "bye");
        break;
    case ACT_ABORT:
        wsconn_abort(ws);
        break;
    case ACT_ECHO:
        assert_int_equal(wsconn_send(ws, binary, data, len), WSCONN_OK);
        break;
    case ACT_ECHO_ABORT:
        assert_int_equal(wsconn_send(ws, binary, data, len), WSCONN_OK);
        wsconn_abort(ws);
        break;
    case ACT_NONE:
        break;
    }
}

static void on_closed(struct wsconn *ws, uint16_t code, const char *reason, void *arg)
{
    struct fx *fx = arg;
    assert_ptr_equal(ws, fx->ws);
    fx->closed++;
    fx->code = code;
    fx->reason = reason;
    if (fx->break_on_closed)
        event_base_loopbreak(fx->base);
    /* Calls on a finished connection are harmless no-ops. */
    assert_int_equal(wsconn_send(ws, false, "x", 1), WSCONN_CLOSED);
    wsconn_close(ws, 1000, NULL);
    wsconn_abort(ws);
}

static const struct wsconn_handlers handlers = {on_message, on_closed};

/* ---- fixture ---- */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_int_not_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), -1);
}

static void pump(struct fx *fx)
{
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
}

/* One loop pass, then a short wait for the client socket so that loops
 * waiting on the server do not spin. */
static void step(struct fx *fx)
{
    pump(fx);
    struct pollfd pfd = {.fd = fx->cfd, .events = POLLIN};
    (void)poll(&pfd, 1, 1);
    pump(fx);
}

static void fx_init(struct fx *fx)
{
    memset(fx, 0, sizeof(*fx));
    fx->base = event_base_new();
    assert_non_null(fx->base);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fx->sfd = sv[0];
    fx->cfd = sv[1];
    set_nonblock(fx->sfd);
    set_nonblock(fx->cfd);
    buf_init(&fx->rx);
    if (use_loop) {
        fx->loop = wsconn_loop_new(fx->base);
        assert_non_null(fx->loop);
    }
}

static struct bufferevent *fx_bev(struct fx *fx)
{
    struct bufferevent *bev = bufferevent_socket_new(fx->base, fx->sfd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    return bev;
}

static void fx_attach(struct fx *fx, struct bufferevent *bev, const struct wsconn_config *cfg)
{
    struct wsconn_config c = *cfg;
    c.loop = fx->loop;
    fx->in_new = 1;
    fx->ws = wsconn_new(bev, &c, &handlers, fx);
    fx->in_new = 0;
    assert_non_null(fx->ws);
}

static void fx_open(struct fx *fx, const struct wsconn_config *cfg)
{
    fx_init(fx);
    fx_attach(fx, fx_bev(fx), cfg);
}

static void wait_closed(struct fx *fx)
{
    long end = now_ms() + DEADLINE_MS;
    while (!fx->closed && now_ms() < end)
        step(fx);
    assert_int_equal(fx->closed, 1);
}

static void fx_done(struct fx *fx)
{
    if (!fx->closed) {
        wsconn_abort(fx->ws);
        wait_closed(fx);
    }
    /* A few more passes: `closed` must not run twice. */
    for (int i = 0; i < 3; i++)
        pump(fx);
    assert_int_equal(fx->closed, 1);
    for (size_t i = 0; i < fx->nmsgs && i < MAX_MSGS; i++)
        free(fx->msgs[i].data);
    buf_cleanup(&fx->rx);
    if (fx->tls)
        bufferevent_free(fx->tls);
    else
        close(fx->cfd);
    wsconn_loop_free(fx->loop);
    event_base_free(fx->base);
}

/* ---- the client side ---- */

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Appends one masked client frame. b0 carries FIN, RSV1 and the opcode. */
static void client_frame(struct buf *out, uint8_t b0, const void *payload, size_t len)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = b0;
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(hdr + h, mask_key, 4);
    h += 4;
    assert_int_equal(buf_append(out, hdr, h), 0);
    size_t start = out->len;
    assert_int_equal(buf_append(out, payload, len), 0);
    for (size_t i = 0; i < len; i++)
        out->data[start + i] ^= mask_key[i & 3];
}

#define FIN  0x80
#define RSV1 0x40

static void client_write(struct fx *fx, const void *data, size_t len)
{
    const uint8_t *p = data;
    long end = now_ms() + DEADLINE_MS;
    if (fx->tls) {
        assert_int_equal(bufferevent_write(fx->tls, data, len), 0);
        return;
    }
    while (len) {
        ssize_t n = write(fx->cfd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        assert_true(n < 0 && errno == EAGAIN);
        assert_true(now_ms() < end);
        step(fx);
    }
}

static void send_frame(struct fx *fx, uint8_t b0, const void *payload, size_t len)
{
    struct buf b;
    buf_init(&b);
    client_frame(&b, b0, payload, len);
    client_write(fx, b.data, b.len);
    buf_cleanup(&b);
}

static void send_close(struct fx *fx, uint16_t code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_frame(fx, FIN | WS_OP_CLOSE, p, code ? 2 : 0);
}

/* Parses one server frame from fx->rx; 0 when incomplete. */
static size_t parse_frame(struct fx *fx, struct sframe *f)
{
    const uint8_t *p = fx->rx.data;
    size_t n = fx->rx.len;
    if (n < 2)
        return 0;
    assert_int_equal(p[1] & 0x80, 0); /* server frames are never masked */
    size_t h = 2;
    uint64_t len = p[1] & 0x7F;
    if (len == 126 || len == 127) {
        size_t ext = len == 126 ? 2 : 8;
        if (n < 2 + ext)
            return 0;
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = len << 8 | p[2 + i];
        h += ext;
    }
    if (n - h < len)
        return 0;
    f->fin = (p[0] & 0x80) != 0;
    f->rsv1 = (p[0] & 0x40) != 0;
    f->op = p[0] & 0x0F;
    f->len = (size_t)len;
    f->data = malloc(f->len ? f->len : 1);
    assert_non_null(f->data);
    memcpy(f->data, p + h, f->len);
    return h + f->len;
}

/* Reads bytes from the server; returns 0 at EOF/reset, -1 when none yet. */
static int client_read_some(struct fx *fx)
{
    if (fx->tls) {
        struct evbuffer *in = bufferevent_get_input(fx->tls);
        size_t avail = evbuffer_get_length(in);
        if (avail) {
            assert_int_equal(buf_reserve(&fx->rx, avail), 0);
            evbuffer_remove(in, fx->rx.data + fx->rx.len, avail);
            fx->rx.len += avail;
            return 1;
        }
        return fx->tls_eof ? 0 : -1;
    }
    uint8_t tmp[65536];
    ssize_t n = read(fx->cfd, tmp, sizeof(tmp));
    if (n > 0) {
        assert_int_equal(buf_append(&fx->rx, tmp, (size_t)n), 0);
        return 1;
    }
    if (n == 0 || errno == ECONNRESET)
        return 0;
    assert_int_equal(errno, EAGAIN);
    return -1;
}

static void read_frame(struct fx *fx, struct sframe *f)
{
    long end = now_ms() + DEADLINE_MS;
    for (;;) {
        size_t used = parse_frame(fx, f);
        if (used) {
            memmove(fx->rx.data, fx->rx.data + used, fx->rx.len - used);
            fx->rx.len -= used;
            return;
        }
        assert_true(now_ms() < end);
        step(fx);
        assert_int_not_equal(client_read_some(fx), 0);
    }
}

static void expect_frame(struct fx *fx, uint8_t op, const void *payload, size_t len)
{
    struct sframe f;
    read_frame(fx, &f);
    assert_int_equal(f.op, op);
    assert_true(f.fin);
    assert_false(f.rsv1);
    assert_int_equal(f.len, len);
    if (len)
        assert_memory_equal(f.data, payload, len);
    free(f.data);
}

static void expect_close_frame(struct fx *fx, uint16_t code, const char *reason)
{
    struct sframe f;
    read_frame(fx, &f);
    assert_int_equal(f.op, WS_OP_CLOSE);
    if (code == 0) {
        assert_int_equal(f.len, 0);
    } else {
        assert_true(f.len >= 2);
        assert_int_equal(f.data[0] << 8 | f.data[1], code);
        if (reason) {
            assert_int_equal(f.len - 2, strlen(reason));
            assert_memory_equal(f.data + 2, reason, f.len - 2);
        }
    }
    free(f.data);
}

/* The server ends the TCP connection (after whatever it still sent). */
static void expect_eof(struct fx *fx)
{
    long end = now_ms() + DEADLINE_MS;
    for (;;) {
        step(fx);
        int rc = client_read_some(fx);
        if (rc == 0)
            return;
        assert_true(now_ms() < end);
    }
}

static void pump_messages(struct fx *fx, size_t want)
{
    long end = now_ms() + DEADLINE_MS;
    while (fx->nmsgs < want && now_ms() < end)
        step(fx);
    assert_int_equal(fx->nmsgs, want);
}

static void assert_msg(const struct fx *fx, size_t i, const void *data, size_t len, bool binary)
{
    assert_true(i < fx->nmsgs);
    assert_int_equal(fx->msgs[i].len, len);
    assert_int_equal(fx->msgs[i].binary, binary);
    if (len)
        assert_memory_equal(fx->msgs[i].data, data, len);
}

static const struct wsconn_config plain_cfg = {
    .max_message = 100000,
    .out_soft = 1 << 20,
    .out_hard = 8 << 20,
    .close_timeout_ms = 2000,
};

/* ---- receiving ---- */

static void test_text_and_binary_messages(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    send_frame(&fx, FIN | WS_OP_TEXT, "hello", 5);
    pump_messages(&fx, 1);
    assert_msg(&fx, 0, "hello", 5, false);
    const uint8_t bin[] = {0, 1, 2, 0xff, 0xfe};
    send_frame(&fx, FIN | WS_OP_BINARY, bin, sizeof(bin));
    pump_messages(&fx, 2);
    assert_msg(&fx, 1, bin, sizeof(bin), true);
    send_frame(&fx, FIN | WS_OP_TEXT, "", 0);
    pump_messages(&fx, 3);
    assert_msg(&fx, 2, "", 0, false);
    assert_false(wsconn_is_closing(fx.ws));
    fx_done(&fx);
}

/* A stream mixing a fragmented text message with an interleaved ping, a
 * binary message with a 16-bit length, and a small text message. */
static void build_stream(struct buf *b, uint8_t *big, size_t big_len)
{
    client_frame(b, WS_OP_TEXT, "frag", 4);
    client_frame(b, FIN | WS_OP_PING, "p!", 2);
    client_frame(b, WS_OP_CONTINUATION, "men", 3);
    client_frame(b, FIN | WS_OP_CONTINUATION, "ted", 3);
    client_frame(b, FIN | WS_OP_BINARY, big, big_len);
    client_frame(b, FIN | WS_OP_TEXT, "last", 4);
}

static void check_stream(struct fx *fx, const uint8_t *big, size_t big_len)
{
    pump_messages(fx, 3);
    assert_msg(fx, 0, "fragmented", 10, false);
    assert_msg(fx, 1, big, big_len, true);
    assert_msg(fx, 2, "last", 4, false);
    expect_frame(fx, WS_OP_PONG, "p!", 2);
}

static void test_stream_byte_by_byte(void **state)
{
    uint8_t big[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    struct buf b;
    buf_init(&b);
    build_stream(&b, big, sizeof(big));
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    for (size_t i = 0; i < b.len; i++) {
        client_write(&fx, b.data + i, 1);
        pump(&fx);
    }
    check_stream(&fx, big, sizeof(big));
    fx_done(&fx);
    buf_cleanup(&b);
}

static void test_stream_every_split(void **state)
{
    uint8_t big[130];
    memset(big, 0xab, sizeof(big));
    struct buf b;
    buf_init(&b);
    build_stream(&b, big, sizeof(big));
    for (size_t cut = 1; cut < b.len; cut++) {
        struct fx fx;
        fx_open(&fx, &plain_cfg);
        client_write(&fx, b.data, cut);
        pump(&fx);
        pump(&fx);
        client_write(&fx, b.data + cut, b.len - cut);
        check_stream(&fx, big, sizeof(big));
        fx_done(&fx);
    }
    buf_cleanup(&b);
}

static void test_many_messages_in_one_write(void **state)
{
    struct buf b;
    buf_init(&b);
    for (unsigned i = 0; i < 200; i++) {
        char s[16];
        int n = snprintf(s, sizeof(s), "m%u", i);
        client_frame(&b, FIN | WS_OP_TEXT, s, (size_t)n);
    }
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    client_write(&fx, b.data, b.len);
    pump_messages(&fx, 200);
    for (unsigned i = 0; i < 200; i++) {
        char s[16];
        int n = snprintf(s, sizeof(s), "m%u", i);
        assert_msg(&fx, i, s, (size_t)n, false);
    }
    fx_done(&fx);
    buf_cleanup(&b);
}

static void test_large_message_across_reads(void **state)
{
    size_t len = 90000; /* more than one socket read and than PULL_MAX */
    uint8_t *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)(i % 251);
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    send_frame(&fx, FIN | WS_OP_BINARY, big, len);
    pump_messages(&fx, 1);
    assert_msg(&fx, 0, big, len, true);
    fx_done(&fx);
    free(big);
}

/* A server bufferevent whose input already holds the client's text frame
 * (as when frames arrive with the upgrade request). */
static struct bufferevent *fx_bev_with_frame(struct fx *fx, const char *text)
{
    struct bufferevent *bev = fx_bev(fx);
    bufferevent_enable(bev, EV_READ);
    send_frame(fx, FIN | WS_OP_TEXT, text, strlen(text));
    long end = now_ms() + DEADLINE_MS;
    while (evbuffer_get_length(bufferevent_get_input(bev)) == 0 && now_ms() < end)
        step(fx);
    assert_int_not_equal(evbuffer_get_length(bufferevent_get_input(bev)), 0);
    return bev;
}

static void test_input_queued_before_new(void **state)
{
    struct fx fx;
    fx_init(&fx);
    fx_attach(&fx, fx_bev_with_frame(&fx, "early"), &plain_cfg);
    assert_int_equal(fx.nmsgs, 0);
    pump_messages(&fx, 1);
    assert_int_equal(fx.msgs_in_new, 0);
    assert_msg(&fx, 0, "early", 5, false);
    fx_done(&fx);
}

static void test_ping_pong(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    send_frame(&fx, FIN | WS_OP_PING, "abc", 3);
    expect_frame(&fx, WS_OP_PONG, "abc", 3);
    send_frame(&fx, FIN | WS_OP_PING, "", 0);
    expect_frame(&fx, WS_OP_PONG, "", 0);
    /* A pong from the peer is ignored. */
    send_frame(&fx, FIN | WS_OP_PONG, "zz", 2);
    send_frame(&fx, FIN | WS_OP_TEXT, "after", 5);
    pump_messages(&fx, 1);
    assert_msg(&fx, 0, "after", 5, false);
    assert_int_equal(fx.closed, 0);
    fx_done(&fx);
}

static void test_set_handlers(void **state)
{
    struct fx fx, other;
    memset(&other, 0, sizeof(other));
    fx_open(&fx, &plain_cfg);
    wsconn_set_handlers(fx.ws, &handlers, &other);
    other.ws = fx.ws;
    send_frame(&fx, FIN | WS_OP_TEXT, "to other", 8);
    long end = now_ms() + DEADLINE_MS;
    while (other.nmsgs == 0 && now_ms() < end)
        step(&fx);
    assert_int_equal(fx.nmsgs, 0);
    assert_int_equal(other.nmsgs, 1);
    assert_msg(&other, 0, "to other", 8, false);
    free(other.msgs[0].data);
    wsconn_set_handlers(fx.ws, &handlers, &fx);
    wsconn_set_id(fx.ws, 42);
    assert_int_equal(wsconn_id(fx.ws), 42);
    fx_done(&fx);
    assert_int_equal(other.closed, 0);
}

/* ---- closing ---- */

static void test_peer_close_handshake(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    send_close(&fx, 4001);
    expect_close_frame(&fx, 4001, "");
    wait_closed(&fx);
    assert_int_equal(fx.code, 4001);
    assert_string_equal(fx.reason, "peer closed");
    expect_eof(&fx);
    fx_done(&fx);
}

static void test_peer_close_without_code(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    send_close(&fx, 0);
    expect_close_frame(&fx, 0, NULL);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_NO_STATUS);
    expect_eof(&fx);
    fx_done(&fx);
}

/* Each bad stream is answered with a close frame carrying the right code,
 * then the connection ends with that code. */
static void expect_failure(const struct wsconn_config *cfg, const uint8_t *bytes, size_t len,
                           uint16_t code)
{
    struct fx fx;
    fx_open(&fx, cfg);
    client_write(&fx, bytes, len);
    expect_close_frame(&fx, code, NULL);
    wait_closed(&fx);
    assert_int_equal(fx.code, code);
    assert_int_equal(fx.nmsgs, 0);
    expect_eof(&fx);
    fx_done(&fx);
}

static void test_protocol_errors_close_1002(void **state)
{
    /* Unmasked frame, reserved opcode, RSV2, continuation without a start,
     * fragmented ping, RSV1 without permessage-deflate. */
    static const uint8_t unmasked[] = {0x81, 0x02, 'h', 'i'};
    static const uint8_t bad_op[] = {0x83, 0x80, 1, 2, 3, 4};
    static const uint8_t rsv2[] = {0xA1, 0x80, 1, 2, 3, 4};
    static const uint8_t cont[] = {0x80, 0x80, 1, 2, 3, 4};
    static const uint8_t frag_ping[] = {0x09, 0x80, 1, 2, 3, 4};
    static const uint8_t rsv1[] = {0xC1, 0x80, 1, 2, 3, 4};
    const struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{unmasked, sizeof(unmasked)},   {bad_op, sizeof(bad_op)},
                 {rsv2, sizeof(rsv2)},           {cont, sizeof(cont)},
                 {frag_ping, sizeof(frag_ping)}, {rsv1, sizeof(rsv1)}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_failure(&plain_cfg, cases[i].p, cases[i].n, WS_CLOSE_PROTOCOL_ERROR);
}

static void test_invalid_utf8_closes_1007(void **state)
{
    struct buf b;
    buf_init(&b);
    client_frame(&b, FIN | WS_OP_TEXT, "ok\xc3\x28", 4);
    expect_failure(&plain_cfg, b.data, b.len, WS_CLOSE_INVALID_DATA);
    buf_cleanup(&b);
}

static void test_too_big_closes_1009(void **state)
{
    struct wsconn_config cfg = plain_cfg;
    cfg.max_message = 16;
    uint8_t p[17] = {0};
    struct buf b;
    buf_init(&b);
    client_frame(&b, FIN | WS_OP_BINARY, p, sizeof(p));
    expect_failure(&cfg, b.data, b.len, WS_CLOSE_TOO_BIG);
    /* Exactly at the limit is fine. */
    struct fx fx;
    fx_open(&fx, &cfg);
    send_frame(&fx, FIN | WS_OP_BINARY, p, 16);
    pump_messages(&fx, 1);
    fx_done(&fx);
    buf_cleanup(&b);
}

static void test_server_close_handshake(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    wsconn_close(fx.ws, WS_CLOSE_GOING_AWAY, "going");
    assert_true(wsconn_is_closing(fx.ws));
    wsconn_close(fx.ws, WS_CLOSE_NORMAL, "again"); /* idempotent */
    assert_int_equal(wsconn_send(fx.ws, false, "no", 2), WSCONN_CLOSED);
    expect_close_frame(&fx, WS_CLOSE_GOING_AWAY, "going");
    /* Messages after our close are read but not delivered. */
    send_frame(&fx, FIN | WS_OP_TEXT, "late", 4);
    for (int i = 0; i < 5; i++)
        step(&fx);
    assert_int_equal(fx.nmsgs, 0);
    assert_int_equal(fx.closed, 0);
    send_close(&fx, WS_CLOSE_GOING_AWAY);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_GOING_AWAY);
    assert_string_equal(fx.reason, "closed by server");
    expect_eof(&fx);
    fx_done(&fx);
}

static void test_close_inside_message(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    fx.action = ACT_CLOSE;
    struct buf b;
    buf_init(&b);
    client_frame(&b, FIN | WS_OP_TEXT, "one", 3);
    client_frame(&b, FIN | WS_OP_TEXT, "two", 3);
    client_frame(&b, FIN | WS_OP_PING, "x", 1);
    client_write(&fx, b.data, b.len);
    pump_messages(&fx, 1);
    expect_close_frame(&fx, WS_CLOSE_NORMAL, "bye");
    for (int i = 0; i < 5; i++)
        step(&fx);
    assert_int_equal(fx.nmsgs, 1); /* "two" was discarded, the ping not answered */
    assert_int_equal(fx.rx.len, 0);
    assert_int_equal(fx.closed, 0);
    send_close(&fx, WS_CLOSE_NORMAL);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_NORMAL);
    expect_eof(&fx);
    fx_done(&fx);
    buf_cleanup(&b);
}

static void test_abort_inside_message(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    fx.action = ACT_ABORT;
    struct buf b;
    buf_init(&b);
    client_frame(&b, FIN | WS_OP_TEXT, "one", 3);
    client_frame(&b, FIN | WS_OP_TEXT, "two", 3);
    client_write(&fx, b.data, b.len);
    wait_closed(&fx);
    assert_int_equal(fx.nmsgs, 1);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    expect_eof(&fx);
    assert_int_equal(fx.rx.len, 0); /* nothing was sent */
    fx_done(&fx);
    buf_cleanup(&b);
}

static void test_closed_runs_once_and_deferred(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    wsconn_abort(fx.ws);
    assert_int_equal(fx.closed, 0);
    assert_true(wsconn_is_closing(fx.ws));
    wsconn_abort(fx.ws);
    wsconn_close(fx.ws, 1000, "x");
    assert_int_equal(wsconn_send(fx.ws, true, "x", 1), WSCONN_CLOSED);
    struct outpacket *p = outpacket_new(EIO_MESSAGE, false, "hi", 2);
    assert_non_null(p);
    assert_int_equal(wsconn_send_packet(fx.ws, p), WSCONN_CLOSED);
    assert_int_equal(p->refs, 1);
    outpacket_unref(p);
    assert_int_equal(fx.closed, 0);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    fx_done(&fx); /* asserts closed stays 1 */
}

static void test_close_then_abort(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    wsconn_close(fx.ws, 1000, NULL);
    wsconn_abort(fx.ws);
    assert_int_equal(fx.closed, 0);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    fx_done(&fx);
}

static void test_close_timeout(void **state)
{
    struct wsconn_config cfg = plain_cfg;
    cfg.close_timeout_ms = 60;
    struct fx fx;
    fx_open(&fx, &cfg);
    long t0 = now_ms();
    wsconn_close(fx.ws, 0, NULL);
    expect_close_frame(&fx, 0, NULL);
    wait_closed(&fx);
    long elapsed = now_ms() - t0;
    assert_true(elapsed >= 50);
    assert_true(elapsed < 1500);
    assert_int_equal(fx.code, WS_CLOSE_NO_STATUS);
    assert_string_equal(fx.reason, "timeout");
    expect_eof(&fx);
    fx_done(&fx);
}

static void test_peer_eof(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    send_frame(&fx, FIN | WS_OP_TEXT, "bye", 3);
    shutdown(fx.cfd, SHUT_WR);
    wait_closed(&fx);
    assert_int_equal(fx.nmsgs, 1);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    fx_done(&fx);
}

static void test_bufferevent_timeout(void **state)
{
    struct fx fx;
    fx_init(&fx);
    struct bufferevent *bev = fx_bev(&fx);
    struct timeval tv = {0, 30000};
    bufferevent_set_timeouts(bev, &tv, NULL);
    fx_attach(&fx, bev, &plain_cfg);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    assert_string_equal(fx.reason, "timeout");
    expect_eof(&fx);
    fx_done(&fx);
}

/* ---- sending ---- */

static void test_send_frames(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    size_t big_len = 70000; /* 64-bit length form */
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)i;
    uint8_t mid[200];
    memset(mid, 'm', sizeof(mid));
    assert_int_equal(wsconn_send(fx.ws, false, "hello", 5), WSCONN_OK);
    assert_int_equal(wsconn_send(fx.ws, true, mid, sizeof(mid)), WSCONN_OK);
    assert_int_equal(wsconn_send(fx.ws, true, big, big_len), WSCONN_OK);
    assert_int_equal(wsconn_send(fx.ws, false, "", 0), WSCONN_OK);
    assert_true(wsconn_output_bytes(fx.ws) >= 5 + sizeof(mid) + big_len);
    expect_frame(&fx, WS_OP_TEXT, "hello", 5);
    expect_frame(&fx, WS_OP_BINARY, mid, sizeof(mid));
    expect_frame(&fx, WS_OP_BINARY, big, big_len);
    expect_frame(&fx, WS_OP_TEXT, "", 0);
    assert_int_equal(wsconn_output_bytes(fx.ws), 0);
    fx_done(&fx);
    free(big);
}

static void test_echo_from_message(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    fx.action = ACT_ECHO;
    send_frame(&fx, FIN | WS_OP_TEXT, "echo me", 7);
    expect_frame(&fx, WS_OP_TEXT, "echo me", 7);
    fx_done(&fx);
}

static struct outpacket *make_packet(size_t len, bool binary)
{
    uint8_t *data;
    struct outpacket *p = outpacket_alloc(EIO_MESSAGE, binary, len, &data);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)('a' + i % 26);
    return p;
}

static void expect_packet(struct fx *fx, const struct outpacket *p)
{
    size_t flen;
    const uint8_t *frame = outpacket_frame(p, &flen);
    expect_frame(fx, p->binary ? WS_OP_BINARY : WS_OP_TEXT, frame + p->hdr_len, flen - p->hdr_len);
}

static void test_send_packet_shared(void **state)
{
    struct fx fx[3];
    struct outpacket *p = make_packet(1000, false);
    for (int i = 0; i < 3; i++) {
        fx_open(&fx[i], &plain_cfg);
        assert_int_equal(wsconn_send_packet(fx[i].ws, p), WSCONN_OK);
    }
    assert_int_equal(p->refs, 4); /* referenced, not copied */
    for (int i = 0; i < 3; i++)
        expect_packet(&fx[i], p);
    assert_int_equal(p->refs, 1);
    struct outpacket *b = make_packet(5000, true);
    assert_int_equal(wsconn_send_packet(fx[0].ws, b), WSCONN_OK);
    assert_int_equal(b->refs, 2);
    expect_packet(&fx[0], b);
    assert_int_equal(b->refs, 1);
    /* References still queued when a connection ends are released. */
    assert_int_equal(wsconn_send_packet(fx[1].ws, b), WSCONN_OK);
    assert_int_equal(b->refs, 2);
    wsconn_abort(fx[1].ws);
    for (int i = 0; i < 3; i++)
        fx_done(&fx[i]);
    assert_int_equal(b->refs, 1);
    outpacket_unref(p);
    outpacket_unref(b);
}

static void test_small_packet_copied(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    struct outpacket *p = make_packet(20, false);
    assert_int_equal(wsconn_send_packet(fx.ws, p), WSCONN_OK);
    assert_int_equal(p->refs, 1);
    expect_packet(&fx, p);
    outpacket_unref(p);
    fx_done(&fx);
}

static void test_volatile_dropped_above_soft_limit(void **state)
{
    struct wsconn_config cfg = plain_cfg;
    cfg.out_soft = 100;
    struct fx fx;
    fx_open(&fx, &cfg);
    struct outpacket *big = make_packet(500, false);
    struct outpacket *vol = make_packet(10, false);
    vol->is_volatile = true;
    /* Output is flushed by the loop, so right now it is all queued. */
    assert_int_equal(wsconn_send_packet(fx.ws, vol), WSCONN_OK);
    assert_int_equal(wsconn_send_packet(fx.ws, big), WSCONN_OK);
    assert_true(wsconn_output_bytes(fx.ws) > 100);
    assert_int_equal(wsconn_send_packet(fx.ws, vol), WSCONN_DROPPED);
    /* Non-volatile packets are still queued. */
    assert_int_equal(wsconn_send_packet(fx.ws, big), WSCONN_OK);
    expect_packet(&fx, vol);
    expect_packet(&fx, big);
    expect_packet(&fx, big);
    assert_int_equal(wsconn_send_packet(fx.ws, vol), WSCONN_OK);
    expect_packet(&fx, vol);
    assert_int_equal(fx.closed, 0);
    outpacket_unref(big);
    outpacket_unref(vol);
    fx_done(&fx);
}

static void test_hard_limit_closes_slow_consumer(void **state)
{
    struct wsconn_config cfg = plain_cfg;
    cfg.out_hard = 64 * 1024;
    struct fx fx;
    fx_init(&fx);
    int small = 4096;
    assert_int_equal(setsockopt(fx.sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(fx.cfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    fx_attach(&fx, fx_bev(&fx), &cfg);
    struct outpacket *p = make_packet(4000, true);
    int rc = WSCONN_OK;
    int i;
    /* The test never reads: the kernel buffers fill, then the output queue. */
    for (i = 0; i < 10000; i++) {
        rc = wsconn_send_packet(fx.ws, p);
        if (rc != WSCONN_OK)
            break;
        pump(&fx);
    }
    assert_int_equal(rc, WSCONN_CLOSED);
    assert_true(i > 16); /* not before the queue reached the limit */
    assert_int_equal(fx.closed, 0);
    assert_true(wsconn_is_closing(fx.ws));
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_POLICY);
    assert_string_equal(fx.reason, "slow consumer");
    fx_done(&fx);
    assert_int_equal(p->refs, 1);
    outpacket_unref(p);
}

static void test_ping_flood_is_bounded(void **state)
{
    struct wsconn_config cfg = plain_cfg;
    cfg.out_hard = 2000;
    struct fx fx;
    fx_open(&fx, &cfg);
    uint8_t payload[125];
    memset(payload, 'p', sizeof(payload));
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 100; i++)
        client_frame(&b, FIN | WS_OP_PING, payload, sizeof(payload));
    client_write(&fx, b.data, b.len);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_POLICY);
    fx_done(&fx);
    buf_cleanup(&b);
}

/* ---- permessage-deflate ---- */

static const struct deflate_params dparams = {
    .server_max_window_bits = 15,
    .client_max_window_bits = 15,
};

struct zclient {
    z_stream def, inf;
};

static void zclient_init(struct zclient *z)
{
    memset(z, 0, sizeof(*z));
    assert_int_equal(deflateInit2(&z->def, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    assert_int_equal(inflateInit2(&z->inf, -15), Z_OK);
}

static void zclient_end(struct zclient *z)
{
    deflateEnd(&z->def);
    inflateEnd(&z->inf);
}

/* Compresses one message as a permessage-deflate client would (context
 * taken over between messages). */
static void zcompress(struct zclient *z, const void *in, size_t len, struct buf *out)
{
    uint8_t tmp[65536];
    if (len == 0) {
        /* RFC 7692 7.2.3.6: zlib will not flush twice without input. */
        assert_int_equal(buf_append_byte(out, 0x00), 0);
        return;
    }
    z->def.next_in = (Bytef *)(uintptr_t)in;
    z->def.avail_in = (uInt)len;
    do {
        z->def.next_out = tmp;
        z->def.avail_out = sizeof(tmp);
        assert_int_equal(deflate(&z->def, Z_SYNC_FLUSH), Z_OK);
        assert_int_equal(buf_append(out, tmp, sizeof(tmp) - z->def.avail_out), 0);
    } while (z->def.avail_out == 0);
    assert_true(out->len >= 4);
    assert_memory_equal(out->data + out->len - 4, "\x00\x00\xff\xff", 4);
    out->len -= 4;
}

static void zinflate(struct zclient *z, const uint8_t *in, size_t len, struct buf *out)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    uint8_t tmp[65536];
    for (int part = 0; part < 2; part++) {
        z->inf.next_in = (Bytef *)(uintptr_t)(part ? tail : in);
        z->inf.avail_in = (uInt)(part ? sizeof(tail) : len);
        do {
            z->inf.next_out = tmp;
            z->inf.avail_out = sizeof(tmp);
            int zr = inflate(&z->inf, Z_SYNC_FLUSH);
            assert_true(zr == Z_OK || zr == Z_BUF_ERROR);
            assert_int_equal(buf_append(out, tmp, sizeof(tmp) - z->inf.avail_out), 0);
        } while (z->inf.avail_in > 0 || z->inf.avail_out == 0);
    }
}

static void send_compressed(struct fx *fx, struct zclient *z, uint8_t op, const void *data,
                            size_t len)
{
    struct buf c;
    buf_init(&c);
    zcompress(z, data, len, &c);
    send_frame(fx, FIN | RSV1 | op, c.data, c.len);
    buf_cleanup(&c);
}

static void expect_compressed(struct fx *fx, struct zclient *z, uint8_t op, const void *data,
                              size_t len)
{
    struct sframe f;
    read_frame(fx, &f);
    assert_int_equal(f.op, op);
    assert_true(f.rsv1);
    assert_true(f.len < len); /* it did compress */
    struct buf out;
    buf_init(&out);
    zinflate(z, f.data, f.len, &out);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, data, len);
    buf_cleanup(&out);
    free(f.data);
}

static struct wsconn_config deflate_cfg(struct deflate_config *dc)
{
    deflate_config_default(dc);
    struct wsconn_config cfg = plain_cfg;
    cfg.deflate = &dparams;
    cfg.deflate_cfg = dc;
    return cfg;
}

static char *repeated_text(size_t len)
{
    char *s = malloc(len);
    assert_non_null(s);
    for (size_t i = 0; i < len; i++)
        s[i] = "the quick brown fox jumps over the lazy dog \xc3\xa9 "[i % 48];
    return s;
}

static void test_deflate_receive(void **state)
{
    struct deflate_config dc;
    struct wsconn_config cfg = deflate_cfg(&dc);
    struct fx fx;
    fx_open(&fx, &cfg);
    struct zclient z;
    zclient_init(&z);
    char *text = repeated_text(4800);
    send_compressed(&fx, &z, WS_OP_TEXT, text, 4800);
    /* The second message refers back into the first one's window. */
    send_compressed(&fx, &z, WS_OP_TEXT, text, 4800);
    send_compressed(&fx, &z, WS_OP_BINARY, "\x01\x02", 2);
    send_compressed(&fx, &z, WS_OP_TEXT, "", 0);
    send_frame(&fx, FIN | WS_OP_TEXT, "plain", 5); /* uncompressed still allowed */
    pump_messages(&fx, 5);
    assert_msg(&fx, 0, text, 4800, false);
    assert_msg(&fx, 1, text, 4800, false);
    assert_msg(&fx, 2, "\x01\x02", 2, true);
    assert_msg(&fx, 3, "", 0, false);
    assert_msg(&fx, 4, "plain", 5, false);
    fx_done(&fx);
    zclient_end(&z);
    free(text);
}

static void test_deflate_send(void **state)
{
    struct deflate_config dc;
    struct wsconn_config cfg = deflate_cfg(&dc);
    struct fx fx;
    fx_open(&fx, &cfg);
    struct zclient z;
    zclient_init(&z);
    char *text = repeated_text(3000);
    assert_int_equal(wsconn_send(fx.ws, false, text, 3000), WSCONN_OK);
    expect_compressed(&fx, &z, WS_OP_TEXT, text, 3000);
    assert_int_equal(wsconn_send(fx.ws, true, text, 3000), WSCONN_OK);
    expect_compressed(&fx, &z, WS_OP_BINARY, text, 3000);
    /* Below the threshold: sent as is. */
    assert_int_equal(wsconn_send(fx.ws, false, "tiny", 4), WSCONN_OK);
    expect_frame(&fx, WS_OP_TEXT, "tiny", 4);
    /* A shared packet is compressed per connection, not referenced. */
    struct outpacket *p = make_packet(5000, false);
    assert_int_equal(wsconn_send_packet(fx.ws, p), WSCONN_OK);
    assert_int_equal(p->refs, 1);
    size_t flen;
    const uint8_t *frame = outpacket_frame(p, &flen);
    expect_compressed(&fx, &z, WS_OP_TEXT, frame + p->hdr_len, flen - p->hdr_len);
    struct outpacket *small = make_packet(10, false);
    assert_int_equal(wsconn_send_packet(fx.ws, small), WSCONN_OK);
    expect_packet(&fx, small);
    outpacket_unref(p);
    outpacket_unref(small);
    fx_done(&fx);
    zclient_end(&z);
    free(text);
}

static void test_deflate_errors(void **state)
{
    struct deflate_config dc;
    struct wsconn_config cfg = deflate_cfg(&dc);
    struct buf b;
    buf_init(&b);

    /* Corrupt data (an invalid block type) -> 1002. */
    static const uint8_t corrupt[] = {0xff, 0xff, 0xff, 0xff};
    client_frame(&b, FIN | RSV1 | WS_OP_BINARY, corrupt, sizeof(corrupt));
    expect_failure(&cfg, b.data, b.len, WS_CLOSE_PROTOCOL_ERROR);

    /* Inflates past max_message -> 1009, though the frame itself is small. */
    struct wsconn_config small = cfg;
    small.max_message = 1000;
    uint8_t *zeros = calloc(1, 100000);
    assert_non_null(zeros);
    struct zclient z;
    zclient_init(&z);
    struct buf c;
    buf_init(&c);
    zcompress(&z, zeros, 100000, &c);
    assert_true(c.len < 1000);
    buf_reset(&b);
    client_frame(&b, FIN | RSV1 | WS_OP_BINARY, c.data, c.len);
    expect_failure(&small, b.data, b.len, WS_CLOSE_TOO_BIG);

    /* Valid deflate, invalid UTF-8 inside -> 1007. */
    struct zclient z2;
    zclient_init(&z2);
    buf_reset(&c);
    zcompress(&z2, "bad \xff text", 10, &c);
    buf_reset(&b);
    client_frame(&b, FIN | RSV1 | WS_OP_TEXT, c.data, c.len);
    expect_failure(&cfg, b.data, b.len, WS_CLOSE_INVALID_DATA);

    zclient_end(&z);
    zclient_end(&z2);
    free(zeros);
    buf_cleanup(&c);
    buf_cleanup(&b);
}

/* ---- TLS (bufferevent_openssl on both ends) ---- */

/* A throwaway self-signed P-256 certificate, made in memory. */
static SSL_CTX *server_tls_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

static void tls_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct fx *fx = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        fx->tls_eof = true;
}

static void fx_open_tls(struct fx *fx, SSL_CTX *sctx, SSL_CTX *cctx)
{
    fx_init(fx);
    SSL *ss = SSL_new(sctx), *cs = SSL_new(cctx);
    assert_non_null(ss);
    assert_non_null(cs);
    struct bufferevent *server = bufferevent_openssl_socket_new(
        fx->base, fx->sfd, ss, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    fx->tls = bufferevent_openssl_socket_new(fx->base, fx->cfd, cs, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(server);
    assert_non_null(fx->tls);
    bufferevent_openssl_set_allow_dirty_shutdown(server, 1);
    bufferevent_openssl_set_allow_dirty_shutdown(fx->tls, 1);
    bufferevent_setcb(fx->tls, NULL, NULL, tls_client_event, fx);
    bufferevent_enable(fx->tls, EV_READ | EV_WRITE);
    fx_attach(fx, server, &plain_cfg);
    /* Flusher or not, a TLS connection is written by libevent. */
    assert_true(bufferevent_get_enabled(server) & EV_WRITE);
}

static void test_tls_messages_and_close(void **state)
{
    SSL_CTX *sctx = server_tls_ctx();
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);

    struct fx fx;
    fx_open_tls(&fx, sctx, cctx);
    fx.action = ACT_ECHO;
    send_frame(&fx, FIN | WS_OP_TEXT, "over tls", 8);
    send_frame(&fx, FIN | WS_OP_PING, "p", 1);
    expect_frame(&fx, WS_OP_TEXT, "over tls", 8);
    expect_frame(&fx, WS_OP_PONG, "p", 1);
    /* Larger than one TLS record and one socket write. */
    size_t big_len = 200000;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 13);
    struct outpacket *p = make_packet(3000, true);
    assert_int_equal(wsconn_send(fx.ws, true, big, big_len), WSCONN_OK);
    assert_int_equal(wsconn_send_packet(fx.ws, p), WSCONN_OK);
    expect_frame(&fx, WS_OP_BINARY, big, big_len);
    expect_packet(&fx, p);
    assert_int_equal(p->refs, 1);
    wsconn_close(fx.ws, WS_CLOSE_NORMAL, "done");
    expect_close_frame(&fx, WS_CLOSE_NORMAL, "done");
    send_close(&fx, WS_CLOSE_NORMAL);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_NORMAL);
    assert_string_equal(fx.reason, "closed by server");
    expect_eof(&fx);
    fx_done(&fx);

    /* The peer closes; a send queued on an aborted connection is dropped. */
    fx_open_tls(&fx, sctx, cctx);
    send_frame(&fx, FIN | WS_OP_TEXT, "hi", 2);
    pump_messages(&fx, 1);
    send_close(&fx, 1001);
    expect_close_frame(&fx, 1001, "");
    wait_closed(&fx);
    assert_int_equal(fx.code, 1001);
    fx_done(&fx);

    fx_open_tls(&fx, sctx, cctx);
    assert_int_equal(wsconn_send_packet(fx.ws, p), WSCONN_OK);
    assert_int_equal(p->refs, 2);
    wsconn_abort(fx.ws);
    wait_closed(&fx);
    fx_done(&fx);
    assert_int_equal(p->refs, 1);

    outpacket_unref(p);
    free(big);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* ---- memory ---- */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#if !defined(UNDER_ASAN) && defined(__GLIBC__)
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

/* An idle connection (bufferevent included) after one message each way
 * must stay within the 2 KB budget. */
static void test_idle_connection_memory(void **state)
{
#if defined(UNDER_ASAN) || !defined(__GLIBC__)
    skip();
#else
    enum { N = 100 };
    static struct fx fx[N];
    /* Skip where malloc is not glibc's (valgrind replaces it). */
    size_t base_use = heap_in_use();
    void *volatile probe = malloc(10000);
    bool measurable = heap_in_use() >= base_use + 10000;
    free(probe);
    if (!measurable)
        skip();
    struct event_base *base = event_base_new();
    assert_non_null(base);
    /* One per event base, not part of any connection. */
    struct wsconn_loop *loop = NULL;
    if (use_loop) {
        loop = wsconn_loop_new(base);
        assert_non_null(loop);
    }
    size_t before = heap_in_use();
    for (int i = 0; i < N; i++) {
        memset(&fx[i], 0, sizeof(fx[i]));
        fx[i].base = base;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        fx[i].sfd = sv[0];
        fx[i].cfd = sv[1];
        fx[i].loop = loop;
        set_nonblock(sv[0]);
        set_nonblock(sv[1]);
        fx_attach(&fx[i], fx_bev(&fx[i]), &plain_cfg);
        send_frame(&fx[i], FIN | WS_OP_TEXT, "hi", 2);
        assert_int_equal(wsconn_send(fx[i].ws, false, "hello", 5), WSCONN_OK);
    }
    for (int i = 0; i < N; i++) {
        pump_messages(&fx[i], 1);
        expect_frame(&fx[i], WS_OP_TEXT, "hello", 5);
    }
    for (int i = 0; i < 3; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    size_t after = heap_in_use();
    /* fx[].msgs and rx are test bookkeeping, not connection state. */
    size_t test_bytes = 0;
    for (int i = 0; i < N; i++)
        test_bytes += malloc_usable_size(fx[i].msgs[0].data) + malloc_usable_size(fx[i].rx.data);
    size_t per_conn = (after - before - test_bytes) / N;
    print_message("idle connection: %zu bytes\n", per_conn);
    assert_true(per_conn <= 2048);
    for (int i = 0; i < N; i++) {
        wsconn_abort(fx[i].ws);
        wait_closed(&fx[i]);
        free(fx[i].msgs[0].data);
        buf_cleanup(&fx[i].rx);
        close(fx[i].cfd);
    }
    wsconn_loop_free(loop);
    event_base_free(base);
#endif
}

/* ---- direct mode ---- */

/* write(2)-family calls this process has made; -1 where /proc cannot say. */
static long write_calls(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    char line[64];
    long n = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "syscw: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* Exactly one loop pass (pump() runs passes until one finds nothing to do). */
static void one_pass(struct fx *fx)
{
    event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

struct armed_probe {
    evutil_socket_t fd;
    bool write;
};

static int find_write_event(const struct event_base *base, const struct event *ev, void *arg)
{
    struct armed_probe *p = arg;
    if (event_get_fd(ev) == p->fd && (event_get_events(ev) & EV_WRITE) &&
        event_pending(ev, EV_WRITE, NULL))
        p->write = true;
    return 0;
}

/* Is any event of the base waiting for the server's socket to be writable? */
static bool write_armed(const struct fx *fx)
{
    struct armed_probe p = {.fd = fx->sfd, .write = false};
    event_base_foreach_event(fx->base, find_write_event, &p);
    return p.write;
}

/* Everything queued during a pass goes out in one writev at its end, and
 * the write event is never armed. */
static void test_direct_one_write_per_pass(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    assert_false(write_armed(&fx));
    struct outpacket *p = make_packet(1000, false);
    long before = write_calls();
    for (int i = 0; i < 20; i++) {
        assert_int_equal(wsconn_send(fx.ws, false, "small", 5), WSCONN_OK);
        assert_int_equal(wsconn_send_packet(fx.ws, p), WSCONN_OK);
    }
    assert_int_equal(write_calls(), before); /* not from inside a send */
    assert_int_equal(p->refs, 21);
    one_pass(&fx);
    if (before >= 0)
        assert_int_equal(write_calls() - before, 1);
    assert_int_equal(wsconn_output_bytes(fx.ws), 0);
    assert_false(write_armed(&fx));
    for (int i = 0; i < 20; i++) {
        expect_frame(&fx, WS_OP_TEXT, "small", 5);
        expect_packet(&fx, p);
    }
    assert_int_equal(p->refs, 1);
    /* A pong is flushed the same way. */
    send_frame(&fx, FIN | WS_OP_PING, "pp", 2);
    expect_frame(&fx, WS_OP_PONG, "pp", 2);
    assert_false(write_armed(&fx));
    outpacket_unref(p);
    fx_done(&fx);
}

/* What the kernel does not take waits for the write event, which is
 * disarmed again once the output has drained. */
static void test_direct_backpressure(void **state)
{
    struct fx fx;
    fx_init(&fx);
    int small = 4096;
    assert_int_equal(setsockopt(fx.sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(fx.cfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    fx_attach(&fx, fx_bev(&fx), &plain_cfg);
    size_t len = 300000;
    uint8_t *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)(i * 31);
    assert_int_equal(wsconn_send(fx.ws, true, big, len), WSCONN_OK);
    pump(&fx);
    assert_true(wsconn_output_bytes(fx.ws) > 0);
    assert_true(write_armed(&fx));
    /* Queued behind the blocked output, in order. */
    assert_int_equal(wsconn_send(fx.ws, false, "after", 5), WSCONN_OK);
    pump(&fx);
    assert_true(write_armed(&fx));
    /* Messages still arrive while the output is blocked. */
    send_frame(&fx, FIN | WS_OP_TEXT, "in", 2);
    pump_messages(&fx, 1);
    assert_msg(&fx, 0, "in", 2, false);
    expect_frame(&fx, WS_OP_BINARY, big, len);
    expect_frame(&fx, WS_OP_TEXT, "after", 5);
    /* The last byte was written by the write event, which was then
     * disarmed. */
    assert_int_equal(wsconn_output_bytes(fx.ws), 0);
    assert_false(write_armed(&fx));
    long before = write_calls();
    assert_int_equal(wsconn_send(fx.ws, false, "again", 5), WSCONN_OK);
    pump(&fx);
    if (before >= 0)
        assert_int_equal(write_calls() - before, 1);
    assert_false(write_armed(&fx));
    expect_frame(&fx, WS_OP_TEXT, "again", 5);
    fx_done(&fx);
    free(big);
}

/* Our close frame leaves at the end of the pass; the connection ends after
 * the peer's close frame and the flush, whichever comes last. */
static void test_direct_close_after_flush(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    assert_int_equal(wsconn_send(fx.ws, false, "last", 4), WSCONN_OK);
    wsconn_close(fx.ws, WS_CLOSE_NORMAL, "bye");
    expect_frame(&fx, WS_OP_TEXT, "last", 4);
    expect_close_frame(&fx, WS_CLOSE_NORMAL, "bye");
    assert_int_equal(fx.closed, 0);
    send_close(&fx, WS_CLOSE_NORMAL);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_NORMAL);
    expect_eof(&fx);
    fx_done(&fx);
}

/* Sends to a peer that has gone: the failed write ends the connection. */
static void test_direct_write_error(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    close(fx.cfd);
    fx.cfd = socket(AF_UNIX, SOCK_STREAM, 0); /* for fx_done to close */
    assert_true(fx.cfd >= 0);
    set_nonblock(fx.cfd);
    assert_int_equal(wsconn_send(fx.ws, false, "lost", 4), WSCONN_OK);
    wait_closed(&fx);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    /* The flush ran before the read that would have found the EOF. */
    assert_string_equal(fx.reason, "I/O error");
    fx_done(&fx);
}

/* Frames of 128 bytes on the wire (a 122-byte text payload). */
static void burst(struct buf *b, int n)
{
    char payload[122];
    for (int i = 0; i < n; i++) {
        memset(payload, 'a' + i % 26, sizeof(payload));
        client_frame(b, FIN | WS_OP_TEXT, payload, sizeof(payload));
    }
    assert_int_equal(b->len, (size_t)n * 128);
}

/* A burst is taken with one read in one loop pass: every message of it is
 * delivered, and what it made the server send leaves in one writev. */
static void test_direct_reads_burst_in_one_pass(void **state)
{
    struct fx fx;
    fx_init(&fx);
    int big = 256 * 1024; /* so the whole burst is waiting at once */
    assert_int_equal(setsockopt(fx.cfd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)), 0);
    fx_attach(&fx, fx_bev(&fx), &plain_cfg);
    fx.action = ACT_ECHO;
    struct buf b;
    buf_init(&b);
    burst(&b, 120); /* 15360 bytes */
    client_write(&fx, b.data, b.len);
    long before = write_calls();
    one_pass(&fx);
    assert_int_equal(fx.nmsgs, 120);
    char last[122];
    memset(last, 'a' + 119 % 26, sizeof(last));
    assert_msg(&fx, 119, last, sizeof(last), false);
    if (before >= 0)
        assert_int_equal(write_calls() - before, 1);
    fx_done(&fx);
    buf_cleanup(&b);
}

/* A flooding client gets at most the loop's read buffer (16 KiB) per pass;
 * the rest is read in later passes, and nothing is lost. */
static void test_direct_read_bounded_per_pass(void **state)
{
    struct fx fx;
    fx_init(&fx);
    int big = 512 * 1024;
    assert_int_equal(setsockopt(fx.cfd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)), 0);
    fx_attach(&fx, fx_bev(&fx), &plain_cfg);
    /* Four messages of 6000 bytes: 6008 bytes each on the wire. */
    size_t len = 6000;
    uint8_t *payload = malloc(len);
    assert_non_null(payload);
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 4; i++) {
        memset(payload, 'a' + i, len);
        client_frame(&b, FIN | WS_OP_BINARY, payload, len);
    }
    client_write(&fx, b.data, b.len);
    one_pass(&fx);
    assert_int_equal(fx.nmsgs, 2); /* 16384 bytes: two whole frames and a part */
    pump_messages(&fx, 4);
    memset(payload, 'a' + 3, len);
    assert_msg(&fx, 3, payload, len, true);
    fx_done(&fx);
    buf_cleanup(&b);
    free(payload);
}

/* The end of the stream right behind a burst: every message first, then
 * "connection lost". */
static void test_direct_burst_then_eof(void **state)
{
    struct fx fx;
    fx_open(&fx, &plain_cfg);
    struct buf b;
    buf_init(&b);
    burst(&b, 32);
    client_write(&fx, b.data, b.len);
    shutdown(fx.cfd, SHUT_WR);
    wait_closed(&fx);
    assert_int_equal(fx.nmsgs, 32);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    assert_string_equal(fx.reason, "connection lost");
    fx_done(&fx);
    buf_cleanup(&b);
}

/* What the bufferevent held when the socket was taken over: its output (the
 * HTTP 101 response) goes out first, then our frames; its input (frames that
 * came with the upgrade request) is decoded before anything read later. */
static void test_direct_takes_bufferevent_buffers(void **state)
{
    struct fx fx;
    fx_init(&fx);
    struct bufferevent *bev = fx_bev_with_frame(&fx, "first");
    bufferevent_disable(bev, EV_WRITE);
    assert_int_equal(bufferevent_write(bev, "HTTP/1.1 101 ok\r\n\r\n", 19), 0);
    fx_attach(&fx, bev, &plain_cfg);
    send_frame(&fx, FIN | WS_OP_TEXT, "second", 6);
    assert_int_equal(wsconn_send(fx.ws, false, "out", 3), WSCONN_OK);
    pump_messages(&fx, 2);
    assert_msg(&fx, 0, "first", 5, false);
    assert_msg(&fx, 1, "second", 6, false);
    long end = now_ms() + DEADLINE_MS;
    while (fx.rx.len < 19 && now_ms() < end) {
        step(&fx);
        assert_int_not_equal(client_read_some(&fx), 0);
    }
    assert_true(fx.rx.len >= 19);
    assert_memory_equal(fx.rx.data, "HTTP/1.1 101 ok\r\n\r\n", 19);
    memmove(fx.rx.data, fx.rx.data + 19, fx.rx.len - 19);
    fx.rx.len -= 19;
    expect_frame(&fx, WS_OP_TEXT, "out", 3);
    fx_done(&fx);
}

/* A connection that ends while listed for the end-of-pass flush (its read
 * callback deferred, so `closed` runs in the same callback that queued
 * output) is freed by the loop: in its flush, or by wsconn_loop_free when
 * that flush never comes. */
static void run_ended_while_listed(bool stop_pass)
{
    struct fx fx;
    fx_init(&fx);
    fx.action = ACT_ECHO_ABORT;
    fx.break_on_closed = stop_pass;
    fx_attach(&fx, fx_bev_with_frame(&fx, "early"), &plain_cfg);
    pump(&fx);
    assert_int_equal(fx.nmsgs, 1);
    assert_int_equal(fx.closed, 1);
    assert_int_equal(fx.code, WS_CLOSE_ABNORMAL);
    if (stop_pass) {
        wsconn_loop_free(fx.loop);
        fx.loop = NULL;
    }
    expect_eof(&fx);
    assert_int_equal(fx.rx.len, 0); /* the echo was discarded */
    fx_done(&fx);
}

static void test_direct_ended_while_listed(void **state)
{
    run_ended_while_listed(false);
    run_ended_while_listed(true);
}

/* Without a plain socket there is nothing to take over: buffered mode. */
static void test_direct_not_for_pair(void **state)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    struct wsconn_loop *l = wsconn_loop_new(base);
    assert_non_null(l);
    struct bufferevent *pair[2];
    assert_int_equal(bufferevent_pair_new(base, 0, pair), 0);
    bufferevent_enable(pair[1], EV_READ);
    struct fx fx;
    memset(&fx, 0, sizeof(fx));
    fx.base = base;
    struct wsconn_config cfg = plain_cfg;
    cfg.loop = l;
    fx.ws = wsconn_new(pair[0], &cfg, &handlers, &fx);
    assert_non_null(fx.ws);
    assert_true(bufferevent_get_enabled(pair[0]) & EV_WRITE);
    assert_int_equal(wsconn_send(fx.ws, false, "hi", 2), WSCONN_OK);
    struct evbuffer *in = bufferevent_get_input(pair[1]);
    for (int i = 0; i < 10 && evbuffer_get_length(in) < 4; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    uint8_t got[4];
    assert_int_equal(evbuffer_remove(in, got, sizeof(got)), 4);
    assert_memory_equal(got, "\x81\x02hi", 4);
    wsconn_abort(fx.ws);
    for (int i = 0; i < 10 && !fx.closed; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(fx.closed, 1);
    bufferevent_free(pair[1]);
    wsconn_loop_free(l);
    event_base_free(base);
}

static int direct_on(void **state)
{
    use_loop = true;
    return 0;
}

static int direct_off(void **state)
{
    use_loop = false;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_binary_messages),
        cmocka_unit_test(test_stream_byte_by_byte),
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_many_messages_in_one_write),
        cmocka_unit_test(test_large_message_across_reads),
        cmocka_unit_test(test_input_queued_before_new),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_set_handlers),
        cmocka_unit_test(test_peer_close_handshake),
        cmocka_unit_test(test_peer_close_without_code),
        cmocka_unit_test(test_protocol_errors_close_1002),
        cmocka_unit_test(test_invalid_utf8_closes_1007),
        cmocka_unit_test(test_too_big_closes_1009),
        cmocka_unit_test(test_server_close_handshake),
        cmocka_unit_test(test_close_inside_message),
        cmocka_unit_test(test_abort_inside_message),
        cmocka_unit_test(test_closed_runs_once_and_deferred),
        cmocka_unit_test(test_close_then_abort),
        cmocka_unit_test(test_close_timeout),
        cmocka_unit_test(test_peer_eof),
        cmocka_unit_test(test_send_frames),
        cmocka_unit_test(test_echo_from_message),
        cmocka_unit_test(test_send_packet_shared),
        cmocka_unit_test(test_small_packet_copied),
        cmocka_unit_test(test_volatile_dropped_above_soft_limit),
        cmocka_unit_test(test_hard_limit_closes_slow_consumer),
        cmocka_unit_test(test_ping_flood_is_bounded),
        cmocka_unit_test(test_deflate_receive),
        cmocka_unit_test(test_deflate_send),
        cmocka_unit_test(test_deflate_errors),
        cmocka_unit_test(test_tls_messages_and_close),
        cmocka_unit_test(test_idle_connection_memory),
    };
    /* The bufferevent's own timeouts: only buffered mode keeps them. */
    const struct CMUnitTest buffered_tests[] = {
        cmocka_unit_test(test_bufferevent_timeout),
    };
    const struct CMUnitTest direct_tests[] = {
        cmocka_unit_test(test_direct_one_write_per_pass),
        cmocka_unit_test(test_direct_backpressure),
        cmocka_unit_test(test_direct_close_after_flush),
        cmocka_unit_test(test_direct_write_error),
        cmocka_unit_test(test_direct_reads_burst_in_one_pass),
        cmocka_unit_test(test_direct_read_bounded_per_pass),
        cmocka_unit_test(test_direct_burst_then_eof),
        cmocka_unit_test(test_direct_takes_bufferevent_buffers),
        cmocka_unit_test(test_direct_ended_while_listed),
        cmocka_unit_test(test_direct_not_for_pair),
    };
    /* A peer that went away must fail a test, not kill the program. */
    signal(SIGPIPE, SIG_IGN);
    int failed = cmocka_run_group_tests_name("buffered mode", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("buffered mode only", buffered_tests, NULL, NULL);
    /* The same tests again, in direct mode. */
    failed += cmocka_run_group_tests_name("direct mode", tests, direct_on, direct_off);
    failed += cmocka_run_group_tests_name("direct mode only", direct_tests, direct_on, direct_off);
    return failed;
}

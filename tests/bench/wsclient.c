#include "wsclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define WS_GUID             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_RESPONSE_HEADER 8192
/* The generator only ever receives small packets; anything bigger is a bug
 * on one side or the other, and refusing it keeps memory bounded. */
#define MAX_FRAME_PAYLOAD (4u << 20)
/* Frames up to this size are sent straight from the stack when nothing is
 * queued. */
#define DIRECT_MAX 1024

enum wsc_state {
    WSC_CONNECTING, /* TCP connect in progress */
    WSC_UPGRADING,  /* upgrade request sent, waiting for 101 */
    WSC_OPENING,    /* waiting for the Engine.IO open packet */
    WSC_JOINING,    /* "40" sent, waiting for the CONNECT reply */
    WSC_READY,
    WSC_CLOSED,
};

struct wsc {
    struct wsc_ctx *ctx;
    struct bufferevent *bev;
    void *ud;
    enum wsc_state state;
    bool batch;
    uint64_t t_start;
    uint64_t t_ready;
};

uint64_t wsc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int wsc_ctx_init(struct wsc_ctx *ctx, struct event_base *base, uint16_t port,
                 const struct wsc_callbacks *cb)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->base = base;
    ctx->cb = cb;
    ctx->addr.sin_family = AF_INET;
    ctx->addr.sin_port = htons(port);
    ctx->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(ctx->host, sizeof(ctx->host), "127.0.0.1:%u", (unsigned)port);

    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1 ||
        RAND_bytes((unsigned char *)&ctx->mask_state, sizeof(ctx->mask_state)) != 1)
        return -1;
    ctx->mask_state |= 1; /* xorshift must never hold 0 */
    EVP_EncodeBlock((unsigned char *)ctx->key, nonce, sizeof(nonce));

    char both[sizeof(ctx->key) + sizeof(WS_GUID)];
    int n = snprintf(both, sizeof(both), "%s%s", ctx->key, WS_GUID);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)both, (size_t)n, digest);
    EVP_EncodeBlock((unsigned char *)ctx->accept, digest, sizeof(digest));
    return 0;
}

static uint32_t next_mask(struct wsc_ctx *ctx)
{
    uint64_t x = ctx->mask_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ctx->mask_state = x;
    return (uint32_t)(x >> 16);
}

static void close_with(struct wsc *c, const char *reason)
{
    if (c->state == WSC_CLOSED)
        return;
    c->state = WSC_CLOSED;
    /* libevent defers the real free while one of this bufferevent's callbacks
     * is running, so releasing the socket here is safe and frees the fd now. */
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->ctx->cb->closed)
        c->ctx->cb->closed(c, reason, c->ud);
}

static void mask_copy(uint8_t *dst, const void *data, size_t len, const uint8_t mask[4])
{
    const uint8_t *src = data;
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] ^ mask[i & 3];
}

/* Writes a small frame to the socket at once instead of queueing it for the
 * next loop pass: this spares the generator two epoll_ctl calls per frame
 * (libevent arms and disarms EV_WRITE around every queued write), which
 * matters because it must outrun the server it measures. Whatever the kernel
 * does not take goes to the output buffer as usual. */
static int send_direct(struct wsc *c, struct evbuffer *out, const uint8_t *hdr, size_t h,
                       const uint8_t mask[4], const void *data, size_t len)
{
    uint8_t frame[DIRECT_MAX];
    memcpy(frame, hdr, h);
    mask_copy(frame + h, data, len, mask);
    ssize_t n = send(bufferevent_getfd(c->bev), frame, h + len, MSG_NOSIGNAL);
    if (n < 0)
        n = 0; /* EAGAIN, or an error the bufferevent will report */
    if ((size_t)n == h + len)
        return 0;
    return evbuffer_add(out, frame + n, h + len - (size_t)n);
}

static int send_frame(struct wsc *c, unsigned opcode, const void *data, size_t len)
{
    if (c->state == WSC_CLOSED)
        return -1;
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t m = next_mask(c->ctx);
    uint8_t mask[4] = {(uint8_t)(m >> 24), (uint8_t)(m >> 16), (uint8_t)(m >> 8), (uint8_t)m};
    memcpy(hdr + h, mask, 4);
    h += 4;

    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (!c->batch && c->state != WSC_CONNECTING && h + len <= DIRECT_MAX &&
        evbuffer_get_length(out) == 0)
        return send_direct(c, out, hdr, h, mask, data, len);

    /* Mask straight into the output buffer: one contiguous reservation, no
     * temporary copy of the payload. */
    struct evbuffer_iovec vec;
    if (evbuffer_reserve_space(out, (ev_ssize_t)(h + len), &vec, 1) != 1)
        return -1;
    uint8_t *dst = vec.iov_base;
    memcpy(dst, hdr, h);
    mask_copy(dst + h, data, len, mask);
    vec.iov_len = h + len;
    return evbuffer_commit_space(out, &vec, 1) == 0 ? 0 : -1;
}

int wsc_send_text(struct wsc *c, const char *data, size_t len)
{
    return send_frame(c, 0x1, data, len);
}

static void handle_sio(struct wsc *c, const char *p, size_t n)
{
    const struct wsc_callbacks *cb = c->ctx->cb;
    if (n == 0) {
        close_with(c, "empty Socket.IO packet");
        return;
    }
    /* Packets for other namespaces ("2/nsp,...") are not ours; ignore them. */
    if (n > 1 && p[1] == '/')
        return;
    switch (p[0]) {
    case '0':
        if (c->state == WSC_JOINING) {
            c->state = WSC_READY;
            c->t_ready = wsc_now_us();
            if (cb->ready)
                cb->ready(c, c->ud);
        }
        return;
    case '1':
        close_with(c, "disconnected by the server (Socket.IO DISCONNECT)");
        return;
    case '4':
        close_with(c, "Socket.IO CONNECT_ERROR");
        return;
    case '2':
    case '3': {
        size_t i = 1;
        uint64_t id = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            id = id * 10 + (uint64_t)(p[i++] - '0');
        if (i == n || p[i] != '[') {
            close_with(c, "malformed Socket.IO EVENT/ACK packet");
            return;
        }
        if (p[0] == '2') {
            if (cb->event)
                cb->event(c, p + i, n - i, c->ud);
        } else if (i == 1) {
            close_with(c, "Socket.IO ACK without an id");
        } else if (cb->ack) {
            cb->ack(c, id, p + i, n - i, c->ud);
        }
        return;
    }
    default:
        return; /* binary events and other types are not used by the benchmark */
    }
}

static void handle_text(struct wsc *c, const char *p, size_t n)
{
    if (n == 0) {
        close_with(c, "empty Engine.IO packet");
        return;
    }
    switch (p[0]) {
    case '0':
        if (c->state != WSC_OPENING) {
            close_with(c, "unexpected Engine.IO open packet");
            return;
        }
        c->state = WSC_JOINING;
        if (wsc_send_text(c, "40", 2) < 0)
            close_with(c, "out of memory");
        return;
    case '1':
        close_with(c, "Engine.IO close packet");
        return;
    case '2':
        if (wsc_send_text(c, "3", 1) < 0)
            close_with(c, "out of memory");
        return;
    case '4':
        if (c->state == WSC_JOINING || c->state == WSC_READY)
            handle_sio(c, p + 1, n - 1);
        else
            close_with(c, "Engine.IO message before open");
        return;
    case '3':
    case '6':
        return;
    default:
        close_with(c, "invalid Engine.IO packet type");
        return;
    }
}

/* Parses one server frame at p (avail bytes). Returns the bytes it spans when
 * complete and handled, 0 when more input is needed, -1 after closing. */
static ssize_t handle_frame(struct wsc *c, const uint8_t *p, size_t avail)
{
    if (avail < 2)
        return 0;
    unsigned fin = p[0] & 0x80, rsv = p[0] & 0x70, opcode = p[0] & 0x0f;
    if (p[1] & 0x80) {
        close_with(c, "masked frame from the server");
        return -1;
    }
    if (rsv || !fin || opcode == 0) {
        close_with(c, "reserved bits or fragmentation in a server frame");
        return -1;
    }
    size_t h = 2;
    uint64_t len = p[1] & 0x7f;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        h = 10;
    }
    if (len > MAX_FRAME_PAYLOAD) {
        close_with(c, "server frame too large");
        return -1;
    }
    if (avail - h < len)
        return 0;
    const uint8_t *payload = p + h;
    switch (opcode) {
    case 0x1:
        handle_text(c, (const char *)payload, (size_t)len);
        break;
    case 0x2:
        break;
    case 0x8:
        close_with(c, "close frame from the server");
        return -1;
    case 0x9:
        if (len > 125 || send_frame(c, 0xA, payload, (size_t)len) < 0) {
            close_with(c, "bad ping frame");
            return -1;
        }
        break;
    case 0xA:
        break;
    default:
        close_with(c, "unknown frame opcode from the server");
        return -1;
    }
    return c->state == WSC_CLOSED ? -1 : (ssize_t)(h + len);
}

/* Returns 1 once the 101 response is consumed, 0 if incomplete, -1 after
 * closing. */
static int handle_upgrade(struct wsc *c, struct evbuffer *in)
{
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > MAX_RESPONSE_HEADER) {
            close_with(c, "upgrade response header too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)end.pos + 4;
    char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
    if (hlen < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
        close_with(c, "upgrade refused (no 101 response)");
        return -1;
    }
    static const char name[] = "\r\nsec-websocket-accept:";
    const char *accept = NULL;
    for (size_t i = 0; i + sizeof(name) - 1 < hlen; i++) {
        if (strncasecmp(head + i, name, sizeof(name) - 1) == 0) {
            accept = head + i + sizeof(name) - 1;
            break;
        }
    }
    while (accept && *accept == ' ')
        accept++;
    size_t alen = strlen(c->ctx->accept);
    if (!accept || memcmp(accept, c->ctx->accept, alen) != 0 ||
        (accept[alen] != '\r' && accept[alen] != ' ')) {
        close_with(c, "wrong Sec-WebSocket-Accept");
        return -1;
    }
    evbuffer_drain(in, hlen);
    c->state = WSC_OPENING;
    return 1;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct wsc *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == WSC_UPGRADING && handle_upgrade(c, in) <= 0)
        return;
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return;
    /* Make the input contiguous once and parse every whole frame in place;
     * a partial frame stays for the next read. */
    const uint8_t *p = evbuffer_pullup(in, -1);
    size_t off = 0;
    for (;;) {
        ssize_t used = handle_frame(c, p + off, avail - off);
        if (used < 0)
            return; /* closed: the input went with the bufferevent */
        if (used == 0)
            break;
        off += (size_t)used;
    }
    evbuffer_drain(in, off);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct wsc *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        struct evbuffer *out = bufferevent_get_output(bev);
        c->state = WSC_UPGRADING;
        if (evbuffer_add_printf(out,
                                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                                "Host: %s\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: %s\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n",
                                c->ctx->host, c->ctx->key) < 0)
            close_with(c, "out of memory");
        return;
    }
    if (what & BEV_EVENT_EOF)
        close_with(c, "connection closed by the server");
    else if (what & BEV_EVENT_ERROR)
        close_with(c, c->state == WSC_CONNECTING ? "TCP connect failed" : "socket error");
}

struct wsc *wsc_new(struct wsc_ctx *ctx, int rcvbuf, void *ud, const char **err)
{
    struct wsc *c = calloc(1, sizeof(*c));
    if (!c) {
        *err = "out of memory";
        return NULL;
    }
    c->ctx = ctx;
    c->ud = ud;
    c->t_start = wsc_now_us();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno == EMFILE || errno == ENFILE ? "out of file descriptors (raise ulimit -n)"
                                                  : "socket() failed";
        free(c);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    c->bev = bufferevent_socket_new(ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        free(c);
        *err = "out of memory";
        return NULL;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ctx->addr, sizeof(ctx->addr)) < 0) {
        bufferevent_free(c->bev);
        free(c);
        *err = "connect() failed (out of local ports?)";
        return NULL;
    }
    return c;
}

void wsc_free(struct wsc *c)
{
    if (!c)
        return;
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

void wsc_batch_writes(struct wsc *c)
{
    c->batch = true;
}

void wsc_stop_reading(struct wsc *c)
{
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ);
}

uint64_t wsc_handshake_us(const struct wsc *c)
{
    return c->t_ready ? c->t_ready - c->t_start : 0;
}

bool wsc_is_ready(const struct wsc *c)
{
    return c->state == WSC_READY;
}

void *wsc_userdata(const struct wsc *c)
{
    return c->ud;
}

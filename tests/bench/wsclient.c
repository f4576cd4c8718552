#define _GNU_SOURCE /* memmem */
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

/* Reading does not go through the bufferevent: libevent's socket read path
 * asks the kernel how much is readable (ioctl FIONREAD) before every readv,
 * one extra syscall per message that the generator, which must outrun the
 * server it measures, cannot afford. A client reads with its own event and
 * one recv() straight into the context's shared buffer, parses every whole
 * frame there in place and keeps only a partial frame at the end (carry).
 * The bufferevent still connects and writes what the socket does not take at
 * once; its EV_READ is never enabled. */
struct wsc {
    struct wsc_ctx *ctx;
    struct bufferevent *bev;
    struct event *rev; /* EV_READ|EV_PERSIST on the fd, from the TCP connect on */
    /* What the last read left unparsed: the start of a frame (or of the
     * upgrade response), allocated only while there is one. */
    uint8_t *carry;
    size_t carry_len;
    size_t carry_cap;
    /* The whole size of the frame in carry when it is too big for the shared
     * buffer (it is then completed in carry itself), else 0. */
    size_t carry_big;
    void *ud;
    enum wsc_state state;
    bool batch;
    bool stopped; /* wsc_stop_reading() was called */
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

static void drop_carry(struct wsc *c)
{
    free(c->carry);
    c->carry = NULL;
    c->carry_len = c->carry_cap = c->carry_big = 0;
}

/* Called from inside the read path too: the caller must then return at once,
 * without touching the input it was parsing (carry is freed here; the read
 * event is freed while its callback runs, which libevent allows). */
static void close_with(struct wsc *c, const char *reason)
{
    if (c->state == WSC_CLOSED)
        return;
    c->state = WSC_CLOSED;
    /* The read event goes first, while its fd is still open (epoll must be
     * told before the close). */
    if (c->rev) {
        event_free(c->rev);
        c->rev = NULL;
    }
    drop_carry(c);
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
 * complete and handled, 0 when more input is needed (with *need = the whole
 * frame's size once its header is complete, else 0), -1 after closing. */
static ssize_t handle_frame(struct wsc *c, const uint8_t *p, size_t avail, size_t *need)
{
    *need = 0;
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
    if (avail - h < len) {
        *need = h + (size_t)len;
        return 0;
    }
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

/* Checks the upgrade response at the start of p (avail bytes). Returns the
 * size of its head once complete and valid, 0 if incomplete, -1 after
 * closing. */
static ssize_t handle_upgrade(struct wsc *c, const uint8_t *p, size_t avail)
{
    const char *head = (const char *)p;
    const char *end = memmem(head, avail, "\r\n\r\n", 4);
    if (!end) {
        if (avail > MAX_RESPONSE_HEADER) {
            close_with(c, "upgrade response header too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - head) + 4;
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
    /* The value and the character after it must lie inside the head: the
     * buffer goes on past it (with the next frames, or stale bytes). */
    size_t alen = strlen(c->ctx->accept);
    if (!accept || (size_t)(head + hlen - accept) <= alen ||
        memcmp(accept, c->ctx->accept, alen) != 0 ||
        (accept[alen] != '\r' && accept[alen] != ' ')) {
        close_with(c, "wrong Sec-WebSocket-Accept");
        return -1;
    }
    c->state = WSC_OPENING;
    return (ssize_t)hlen;
}

/* Handles everything whole at the start of p: the upgrade response head while
 * upgrading, then frames. Returns the bytes used (the rest is the start of a
 * frame or head; *need as in handle_frame), or -1 after closing. */
static ssize_t handle_input(struct wsc *c, const uint8_t *p, size_t avail, size_t *need)
{
    size_t off = 0;
    *need = 0;
    if (c->state == WSC_UPGRADING) {
        ssize_t h = handle_upgrade(c, p, avail);
        if (h <= 0)
            return h;
        off = (size_t)h;
    }
    for (;;) {
        ssize_t used = handle_frame(c, p + off, avail - off, need);
        if (used < 0)
            return -1;
        if (used == 0)
            return (ssize_t)off;
        off += (size_t)used;
    }
}

/* One recv() of at most room bytes. Returns the bytes read, or 0 when there
 * was nothing (EAGAIN) or the connection is over (then after closing). */
static size_t recv_some(struct wsc *c, evutil_socket_t fd, uint8_t *dst, size_t room)
{
    ssize_t n = recv(fd, dst, room, 0);
    if (n > 0)
        return (size_t)n;
    if (n == 0)
        close_with(c, "connection closed by the server");
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        close_with(c, "socket error");
    return 0;
}

/* Keeps the unparsed end of a read (left bytes at p, outside carry) for the
 * next one. Returns 0, or -1 after closing. */
static int keep_rest(struct wsc *c, const uint8_t *p, size_t left, size_t need)
{
    if (left == 0 && c->carry_cap > 4096) {
        /* The room a big partial frame needed is not kept once it is done. */
        drop_carry(c);
        return 0;
    }
    c->carry_len = 0;
    c->carry_big = need > WSC_READ_MAX ? need : 0;
    size_t cap = c->carry_big ? need : left;
    if (cap > c->carry_cap) {
        /* At least 256 bytes: a partial frame is usually small, and the
         * next one is then kept without another allocation. */
        if (cap < 256)
            cap = 256;
        uint8_t *n = realloc(c->carry, cap);
        if (!n) {
            close_with(c, "out of memory");
            return -1;
        }
        c->carry = n;
        c->carry_cap = cap;
    }
    if (left)
        memcpy(c->carry, p, left);
    c->carry_len = left;
    return 0;
}

/* Reads once into the shared buffer, after what carry held, and handles every
 * whole frame in place. Returns true when the read filled the buffer (more
 * may be waiting). */
static bool read_shared(struct wsc *c, evutil_socket_t fd)
{
    uint8_t *buf = c->ctx->rbuf;
    size_t have = c->carry_len; /* < WSC_READ_MAX: bigger frames go to read_big */
    if (have)
        memcpy(buf, c->carry, have);
    size_t room = WSC_READ_MAX - have;
    size_t n = recv_some(c, fd, buf + have, room);
    if (n == 0)
        return false; /* carry still holds its bytes (or went with the close) */
    size_t avail = have + n, need;
    ssize_t used = handle_input(c, buf, avail, &need);
    if (used < 0)
        return false; /* closed: carry went with it */
    if (keep_rest(c, buf + used, avail - (size_t)used, need) < 0)
        return false;
    return n == room;
}

/* Completes a frame bigger than the shared buffer in carry itself (it was
 * sized for the whole frame), reading no further than its end; handles it
 * once whole. Returns true when the frame was whole (more may be waiting). */
static bool read_big(struct wsc *c, evutil_socket_t fd)
{
    size_t room = c->carry_big - c->carry_len;
    size_t n = recv_some(c, fd, c->carry + c->carry_len, room);
    if (n == 0)
        return false;
    c->carry_len += n;
    if (n < room)
        return false;
    size_t need;
    if (handle_frame(c, c->carry, c->carry_len, &need) < 0)
        return false; /* closed: carry went with it */
    /* Do not keep megabytes for the small frames that follow. */
    drop_carry(c);
    return true;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct wsc *c = arg;
    (void)what;
    /* One recv per event in the common case; read again only when a read
     * took all the room it had, and never after the client closed (c itself
     * stays valid: only its owner frees it) or stopped reading. */
    bool more;
    do {
        more = c->carry_big ? read_big(c, fd) : read_shared(c, fd);
    } while (more && c->state != WSC_CLOSED && !c->stopped);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct wsc *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        struct evbuffer *out = bufferevent_get_output(bev);
        c->state = WSC_UPGRADING;
        c->rev =
            event_new(c->ctx->base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, on_readable, c);
        if (!c->rev || (!c->stopped && event_add(c->rev, NULL) < 0)) {
            close_with(c, "out of memory");
            return;
        }
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
    /* Output and connect only: reading is on_readable's (see struct wsc). */
    bufferevent_setcb(c->bev, NULL, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_WRITE);
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
    if (c->rev)
        event_free(c->rev);
    free(c->carry);
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
    /* on_readable sees the flag too and does not read again, and the TCP
     * connect, if it is still in progress, does not add the event. */
    c->stopped = true;
    if (c->rev)
        event_del(c->rev);
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

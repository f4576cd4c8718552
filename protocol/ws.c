#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base64.h"

enum stage {
    ST_HEADER,  /* collecting hdr[0..hdr_need) */
    ST_PAYLOAD, /* `remaining` payload bytes of the current frame still to come */
    ST_CLOSED,  /* a close frame was delivered: everything after it is ignored */
};

#define HDR_MIN  2
#define MASK_LEN 4
#define CTL_MAX  125
/* Reassembly reserves at most this much ahead of the bytes that have actually
 * arrived, so a header announcing a large frame cannot make an idle peer cost
 * max_message bytes of memory. */
#define RESERVE_AHEAD (64 * 1024)

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Points at something valid for empty payloads that have no storage. */
static const uint8_t empty_payload[1];

static bool is_control(uint8_t op)
{
    return (op & 0x8) != 0;
}

static bool known_opcode(uint8_t op)
{
    switch (op) {
    case WS_OP_CONTINUATION:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return true;
    default:
        return false;
    }
}

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void write_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

/* XORs eight bytes at a time: unmasking touches every payload byte, and this
 * is the only per-byte work on the zero-copy path besides UTF-8 checks. */
static void unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
    uint8_t m[8];
    for (size_t i = 0; i < 8; i++)
        m[i] = mask[(off + i) & 3];
    uint64_t m64;
    memcpy(&m64, m, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= m64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= m[i & 7];
}

static void reset_header(struct ws_decoder *d)
{
    d->stage = ST_HEADER;
    d->hdr_len = 0;
    d->hdr_need = HDR_MIN;
}

void ws_decoder_init(struct ws_decoder *d, const struct ws_decoder_config *cfg)
{
    memset(d, 0, sizeof(*d));
    if (cfg)
        d->cfg = *cfg;
    buf_init(&d->msg);
    utf8_init(&d->utf8);
    reset_header(d);
}

void ws_decoder_cleanup(struct ws_decoder *d)
{
    buf_cleanup(&d->msg);
    free(d->ctl);
    d->ctl = NULL;
}

static int check_control(const struct ws_decoder *d, uint8_t len7)
{
    if (!d->fin || d->rsv1 || len7 > CTL_MAX)
        return WS_EPROTO;
    /* A close payload is empty or starts with a two-byte code. */
    if (d->opcode == WS_OP_CLOSE && len7 == 1)
        return WS_EPROTO;
    return 0;
}

static int check_data(const struct ws_decoder *d)
{
    bool starts = d->opcode != WS_OP_CONTINUATION;
    bool in_progress = d->msg_opcode != 0;
    /* A continuation needs a message to continue; a new message must wait
     * until the current one is finished. */
    if (starts == in_progress)
        return WS_EPROTO;
    /* permessage-deflate marks only the first frame of a message. */
    if (d->rsv1 && (!starts || !d->cfg.allow_rsv1))
        return WS_EPROTO;
    return 0;
}

/* Everything that can be judged from the first two bytes is judged there, so
 * garbage fails before any more of it is read. */
static int check_first_bytes(struct ws_decoder *d)
{
    uint8_t b0 = d->hdr[0], b1 = d->hdr[1];
    uint8_t len7 = b1 & 0x7F;
    d->fin = (b0 & 0x80) != 0;
    d->rsv1 = (b0 & 0x40) != 0;
    d->opcode = b0 & 0x0F;
    if ((b0 & 0x30) || !known_opcode(d->opcode) || !(b1 & 0x80))
        return WS_EPROTO;
    int rc = is_control(d->opcode) ? check_control(d, len7) : check_data(d);
    if (rc < 0)
        return rc;
    d->hdr_need = HDR_MIN + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + MASK_LEN;
    return 0;
}

/* The limit is checked against the header's length, before any payload is
 * read or stored. msg_len never exceeds the limit, so the subtraction cannot
 * wrap. */
static int account_data(struct ws_decoder *d, uint64_t len)
{
    if (d->opcode != WS_OP_CONTINUATION) {
        d->msg_opcode = d->opcode;
        d->msg_compressed = d->rsv1;
        d->msg_len = 0;
        utf8_init(&d->utf8);
    }
    uint64_t limit = d->cfg.max_message ? d->cfg.max_message : SIZE_MAX;
    if (len > limit - d->msg_len)
        return WS_ETOOBIG;
    d->msg_len += len;
    return 0;
}

static int begin_frame(struct ws_decoder *d)
{
    size_t ext = d->hdr_need - HDR_MIN - MASK_LEN;
    uint64_t len = ext ? read_be(d->hdr + HDR_MIN, ext) : (uint64_t)(d->hdr[1] & 0x7F);
    if (len >> 63)
        return WS_EPROTO;
    memcpy(d->mask, d->hdr + HDR_MIN + ext, MASK_LEN);
    d->remaining = len;
    d->frame_off = 0;
    d->stage = ST_PAYLOAD;
    if (is_control(d->opcode)) {
        d->ctl_len = 0;
        return 0;
    }
    return account_data(d, len);
}

static int close_event(struct ws_decoder *d, const uint8_t *p, size_t n, struct ws_event *ev)
{
    uint16_t code = WS_CLOSE_NO_STATUS;
    if (n > 0) {
        code = (uint16_t)(p[0] << 8 | p[1]);
        if (!ws_close_code_valid(code))
            return WS_EPROTO;
        if (!utf8_valid(p + 2, n - 2))
            return WS_EUTF8;
        ev->data = p + 2;
        ev->len = n - 2;
    }
    ev->type = WS_EV_CLOSE;
    ev->close_code = code;
    d->stage = ST_CLOSED;
    return WS_EVENT;
}

static int control_event(struct ws_decoder *d, const uint8_t *p, struct ws_event *ev)
{
    size_t n = (size_t)d->frame_off;
    memset(ev, 0, sizeof(*ev));
    ev->opcode = (enum ws_opcode)d->opcode;
    ev->data = p;
    ev->len = n;
    switch (d->opcode) {
    case WS_OP_PING:
        ev->type = WS_EV_PING;
        return WS_EVENT;
    case WS_OP_PONG:
        ev->type = WS_EV_PONG;
        return WS_EVENT;
    default:
        return close_event(d, p, n, ev);
    }
}

static int message_event(struct ws_decoder *d, const uint8_t *slice, struct ws_event *ev)
{
    /* A text message may not end in the middle of a code point. (Only
     * uncompressed text feeds the validator; for anything else it stays at
     * its initial, complete state.) */
    if (!utf8_complete(&d->utf8))
        return WS_EUTF8;
    memset(ev, 0, sizeof(*ev));
    ev->type = WS_EV_MESSAGE;
    ev->opcode = (enum ws_opcode)d->msg_opcode;
    ev->compressed = d->msg_compressed;
    if (slice) {
        ev->data = slice;
        ev->len = (size_t)d->frame_off;
    } else {
        ev->data = d->msg.data ? d->msg.data : empty_payload;
        ev->len = d->msg.len;
    }
    d->msg_opcode = 0;
    return WS_EVENT;
}

/* slice is the frame's payload inside the caller's input when the whole
 * payload arrived in one call, else NULL (it was copied aside). */
static int finish_frame(struct ws_decoder *d, const uint8_t *slice, struct ws_event *ev)
{
    reset_header(d);
    if (is_control(d->opcode))
        return control_event(d, slice ? slice : d->ctl ? d->ctl : empty_payload, ev);
    if (!d->fin)
        return WS_NEED_MORE;
    return message_event(d, slice, ev);
}

static int read_header(struct ws_decoder *d, const uint8_t *in, size_t len, size_t *pos,
                       struct ws_event *ev)
{
    while (*pos < len && d->hdr_len < d->hdr_need) {
        size_t take = d->hdr_need - d->hdr_len;
        if (take > len - *pos)
            take = len - *pos;
        memcpy(d->hdr + d->hdr_len, in + *pos, take);
        d->hdr_len += take;
        *pos += take;
        if (d->hdr_len == HDR_MIN && d->hdr_need == HDR_MIN) {
            int rc = check_first_bytes(d);
            if (rc < 0)
                return rc;
        }
    }
    if (d->hdr_len < d->hdr_need)
        return WS_NEED_MORE;
    int rc = begin_frame(d);
    if (rc < 0)
        return rc;
    return d->remaining ? WS_NEED_MORE : finish_frame(d, NULL, ev);
}

static int append_message(struct ws_decoder *d, const uint8_t *p, size_t n)
{
    size_t ahead = d->remaining < RESERVE_AHEAD ? (size_t)d->remaining : RESERVE_AHEAD;
    if (buf_reserve(&d->msg, n + ahead) < 0)
        return WS_ENOMEM;
    return buf_append(&d->msg, p, n);
}

static int take_data(struct ws_decoder *d, const uint8_t *p, size_t n, bool whole,
                     const uint8_t **slice)
{
    /* Validating each piece as it arrives rejects bad text without waiting
     * for (or storing) the rest of the message. */
    if (d->msg_opcode == WS_OP_TEXT && !d->msg_compressed && !utf8_feed(&d->utf8, p, n))
        return WS_EUTF8;
    if (whole && d->fin && d->opcode != WS_OP_CONTINUATION) {
        *slice = p;
        return 0;
    }
    return append_message(d, p, n);
}

static int take_control(struct ws_decoder *d, const uint8_t *p, size_t n, bool whole,
                        const uint8_t **slice)
{
    if (whole) {
        *slice = p;
        return 0;
    }
    if (!d->ctl && !(d->ctl = malloc(CTL_MAX)))
        return WS_ENOMEM;
    memcpy(d->ctl + d->ctl_len, p, n);
    d->ctl_len = (uint8_t)(d->ctl_len + n);
    return 0;
}

static int read_payload(struct ws_decoder *d, uint8_t *in, size_t len, size_t *pos,
                        struct ws_event *ev)
{
    size_t n = len - *pos;
    if (d->remaining < n)
        n = (size_t)d->remaining;
    uint8_t *p = in + *pos;
    bool whole = d->frame_off == 0 && n == d->remaining;
    unmask(p, n, d->mask, d->frame_off);
    *pos += n;
    d->frame_off += n;
    d->remaining -= n;
    const uint8_t *slice = NULL;
    int rc = is_control(d->opcode) ? take_control(d, p, n, whole, &slice)
                                   : take_data(d, p, n, whole, &slice);
    if (rc < 0)
        return rc;
    return d->remaining ? WS_NEED_MORE : finish_frame(d, slice, ev);
}

int ws_decode(struct ws_decoder *d, uint8_t *in, size_t len, size_t *consumed, struct ws_event *ev)
{
    size_t pos = 0;
    int rc = d->error;
    if (rc == 0 && d->stage == ST_CLOSED) {
        pos = len;
    } else if (rc == 0) {
        /* The previous message was delivered: its storage may go. Freeing
         * (not just emptying) keeps idle connections small. */
        if (d->msg_opcode == 0)
            buf_cleanup(&d->msg);
        if (d->ctl && !(d->stage == ST_PAYLOAD && is_control(d->opcode))) {
            free(d->ctl);
            d->ctl = NULL;
        }
        rc = WS_NEED_MORE;
        while (rc == WS_NEED_MORE && pos < len) {
            if (d->stage == ST_HEADER)
                rc = read_header(d, in, len, &pos, ev);
            else
                rc = read_payload(d, in, len, &pos, ev);
        }
        if (rc < 0)
            d->error = rc;
    }
    *consumed = pos;
    return rc;
}

uint16_t ws_result_close_code(int result)
{
    switch (result) {
    case WS_EPROTO:
        return WS_CLOSE_PROTOCOL_ERROR;
    case WS_EUTF8:
        return WS_CLOSE_INVALID_DATA;
    case WS_ETOOBIG:
        return WS_CLOSE_TOO_BIG;
    default:
        return WS_CLOSE_INTERNAL;
    }
}

const char *ws_strerror(int result)
{
    switch (result) {
    case WS_EVENT:
        return "event";
    case WS_NEED_MORE:
        return "need more input";
    case WS_EPROTO:
        return "websocket protocol error";
    case WS_EUTF8:
        return "invalid UTF-8";
    case WS_ETOOBIG:
        return "message too big";
    case WS_ENOMEM:
        return "out of memory";
    default:
        return "unknown websocket error";
    }
}

bool ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

size_t ws_header_encode(uint8_t out[WS_MAX_HEADER], enum ws_opcode op, bool rsv1, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | (op & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        write_be(out + 2, len, 2);
        return 4;
    }
    out[1] = 127;
    write_be(out + 2, len, 8);
    return 10;
}

int ws_frame_encode(struct buf *out, enum ws_opcode op, bool rsv1, const void *payload, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hlen = ws_header_encode(hdr, op, rsv1, len);
    /* Reserving both parts first makes the appends infallible, so a failure
     * leaves out unchanged rather than holding a header without a payload. */
    if (len > SIZE_MAX - hlen || buf_reserve(out, hlen + len) < 0)
        return PROTO_ENOMEM;
    (void)buf_append(out, hdr, hlen);
    (void)buf_append(out, payload, len);
    return 0;
}

/* Cuts at a code point boundary: a reason truncated mid-character would make
 * the peer fail the close with 1007. */
static size_t reason_len(const char *reason, size_t max)
{
    size_t n = strnlen(reason, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
        n--;
    return n;
}

int ws_close_encode(struct buf *out, uint16_t code, const char *reason)
{
    uint8_t payload[CTL_MAX];
    size_t n = 0;
    if (code) {
        write_be(payload, code, 2);
        size_t rlen = reason ? reason_len(reason, CTL_MAX - 2) : 0;
        if (rlen)
            memcpy(payload + 2, reason, rlen);
        n = 2 + rlen;
    }
    return ws_frame_encode(out, WS_OP_CLOSE, false, payload, n);
}

bool ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    enum { KEY_LEN = 24, GUID_LEN = sizeof(ws_guid) - 1 };
    uint8_t raw[(KEY_LEN / 4 + 1) * 3];
    if (key_len != KEY_LEN || base64_decode(key, key_len, raw) != 16)
        return false;
    unsigned char cat[KEY_LEN + GUID_LEN];
    memcpy(cat, key, KEY_LEN);
    memcpy(cat + KEY_LEN, ws_guid, GUID_LEN);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(cat, sizeof(cat), md);
    base64_encode(md, sizeof(md), out);
    out[WS_ACCEPT_LEN] = '\0';
    return true;
}

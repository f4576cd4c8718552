/* deflate: RFC 7692 permessage-deflate, server side.
 *
 * cfg->threshold is not applied here: whether a message is worth compressing
 * is the sender's decision (it also decides RSV1), so deflate_compress()
 * compresses whatever it is given.
 */
#define ZLIB_CONST
#include "deflate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Inflated output is produced at most this many bytes at a time, so a
 * message over its limit is caught after one chunk, not after inflating it
 * all. */
#define INFLATE_CHUNK 16384

static const char extension_name[] = "permessage-deflate";

/* RFC 7692 §7.2.1: the empty stored block a sync flush ends with; the sender
 * strips it, the receiver puts it back. */
static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

struct deflate_ctx {
    struct deflate_params p;
    int level;
    int mem_level;
    z_stream *def; /* outgoing messages; NULL until the first one */
    z_stream *inf; /* incoming messages; NULL until the first one */
};

void deflate_config_default(struct deflate_config *cfg)
{
    cfg->server_max_window_bits = 15;
    cfg->server_no_context_takeover = false;
    cfg->mem_level = 8;
    cfg->level = 1;
    cfg->threshold = 1024;
}

static const struct deflate_config *config_or_default(const struct deflate_config *cfg,
                                                      struct deflate_config *tmp)
{
    if (cfg)
        return cfg;
    deflate_config_default(tmp);
    return tmp;
}

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static bool window_bits_valid(int bits)
{
    return bits >= 8 && bits <= 15;
}

/* ---- Sec-WebSocket-Extensions (RFC 6455 §9.1, RFC 7230 §3.2.6 tokens) ---- */

struct cursor {
    const char *p;
    const char *end;
};

static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool at(const struct cursor *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

static void skip_ows(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static size_t take_token(struct cursor *c)
{
    const char *start = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p))
        c->p++;
    return (size_t)(c->p - start);
}

/* A parameter value after unquoting. Only the first few characters are
 * kept: no value we interpret is longer than two. */
struct value {
    bool present;
    size_t len;
    char s[3];
};

static void value_push(struct value *v, char ch)
{
    if (v->len < sizeof(v->s))
        v->s[v->len] = ch;
    v->len++;
}

/* token / quoted-string. RFC 6455 §9.1 requires a quoted value to still be
 * a token once unescaped, so anything else is a malformed header. */
static int take_value(struct cursor *c, struct value *v)
{
    v->present = true;
    v->len = 0;
    if (!at(c, '"')) {
        const char *start = c->p;
        size_t n = take_token(c);
        for (size_t i = 0; i < n; i++)
            value_push(v, start[i]);
        return n ? DEFLATE_OK : DEFLATE_EINVAL;
    }
    c->p++;
    for (;;) {
        if (c->p == c->end)
            return DEFLATE_EINVAL;
        char ch = *c->p++;
        if (ch == '"')
            break;
        if (ch == '\\') {
            if (c->p == c->end)
                return DEFLATE_EINVAL;
            ch = *c->p++;
        }
        if (!is_tchar((unsigned char)ch))
            return DEFLATE_EINVAL;
        value_push(v, ch);
    }
    return v->len ? DEFLATE_OK : DEFLATE_EINVAL;
}

/* RFC 7692 §7.1.2: 8..15, decimal, no leading zero. Returns -1 otherwise. */
static int value_window_bits(const struct value *v)
{
    if (v->len == 1 && v->s[0] >= '8' && v->s[0] <= '9')
        return v->s[0] - '0';
    if (v->len == 2 && v->s[0] == '1' && v->s[1] >= '0' && v->s[1] <= '5')
        return 10 + (v->s[1] - '0');
    return -1;
}

enum param_id { P_SERVER_NCT, P_CLIENT_NCT, P_SERVER_BITS, P_CLIENT_BITS, P_COUNT };

static const char *const param_names[P_COUNT] = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
};

/* Names are compared exactly, as the reference server (ws) does: RFC 7692
 * registers them in lower case. */
static bool token_is(const char *tok, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(tok, name, n) == 0;
}

struct offer {
    bool acceptable;
    unsigned seen; /* one bit per enum param_id, to refuse duplicates */
    bool server_nct;
    bool client_nct;
    int server_bits; /* 0: not offered */
    int client_bits; /* 0: not offered, or offered without a value */
};

static bool offer_param_ok(struct offer *o, enum param_id id, const struct value *v)
{
    switch (id) {
    case P_SERVER_NCT:
        o->server_nct = true;
        return !v->present;
    case P_CLIENT_NCT:
        o->client_nct = true;
        return !v->present;
    case P_SERVER_BITS:
        o->server_bits = v->present ? value_window_bits(v) : -1;
        return o->server_bits > 0;
    case P_CLIENT_BITS:
        if (!v->present)
            return true;
        o->client_bits = value_window_bits(v);
        return o->client_bits > 0;
    default:
        return false;
    }
}

static void offer_param(struct offer *o, const char *name, size_t n, const struct value *v)
{
    for (unsigned id = 0; id < P_COUNT; id++) {
        if (!token_is(name, n, param_names[id]))
            continue;
        if (o->seen & (1u << id)) {
            o->acceptable = false;
            return;
        }
        o->seen |= 1u << id;
        if (!offer_param_ok(o, (enum param_id)id, v))
            o->acceptable = false;
        return;
    }
    o->acceptable = false; /* unknown parameter */
}

/* One list element: token *( OWS ";" OWS token [ OWS "=" OWS value ] ),
 * ending at a ',' or the end of the header. Other extensions are parsed
 * (to reject garbage) but never acceptable. */
static int parse_extension(struct cursor *c, struct offer *o)
{
    const char *name = c->p;
    size_t n = take_token(c);
    if (n == 0)
        return DEFLATE_EINVAL;
    o->acceptable = token_is(name, n, extension_name);
    skip_ows(c);
    while (at(c, ';')) {
        c->p++;
        skip_ows(c);
        const char *pname = c->p;
        size_t pn = take_token(c);
        if (pn == 0)
            return DEFLATE_EINVAL;
        skip_ows(c);
        struct value v = {0};
        if (at(c, '=')) {
            c->p++;
            skip_ows(c);
            if (take_value(c, &v) < 0)
                return DEFLATE_EINVAL;
            skip_ows(c);
        }
        if (o->acceptable)
            offer_param(o, pname, pn, &v);
    }
    return c->p == c->end || at(c, ',') ? DEFLATE_OK : DEFLATE_EINVAL;
}

static void accept_offer(const struct offer *o, const struct deflate_config *cfg,
                         struct deflate_params *out)
{
    int limit = clamp(cfg->server_max_window_bits, 8, 15);
    out->server_no_context_takeover = o->server_nct || cfg->server_no_context_takeover;
    out->client_no_context_takeover = o->client_nct;
    out->server_max_window_bits = o->server_bits && o->server_bits < limit ? o->server_bits : limit;
    /* Without a value the client only announces that it understands the
     * parameter; we do not limit its window, so it stays 15. */
    out->client_max_window_bits = o->client_bits ? o->client_bits : 15;
}

int deflate_negotiate(const char *header, size_t len, const struct deflate_config *cfg,
                      struct deflate_params *out)
{
    struct deflate_config tmp;
    cfg = config_or_default(cfg, &tmp);
    struct cursor c = {header, header ? header + len : header};
    bool found = false;
    /* The whole header is parsed even after an acceptable offer, so that
     * garbage anywhere in it is refused. */
    for (;;) {
        skip_ows(&c);
        if (c.p == c.end)
            break;
        if (*c.p == ',') {
            c.p++; /* RFC 7230 §7: empty list elements are ignored */
            continue;
        }
        struct offer o = {0};
        if (parse_extension(&c, &o) < 0)
            return DEFLATE_EINVAL;
        if (o.acceptable && !found) {
            accept_offer(&o, cfg, out);
            found = true;
        }
    }
    return found ? 1 : 0;
}

static int append_bits_param(struct buf *out, const char *name, int bits)
{
    int rc = buf_append_str(out, name);
    return rc < 0 ? rc : buf_append_u64(out, (uint64_t)bits);
}

int deflate_response_encode(const struct deflate_params *p, struct buf *out)
{
    if (!window_bits_valid(p->server_max_window_bits) ||
        !window_bits_valid(p->client_max_window_bits))
        return DEFLATE_EINVAL;
    size_t mark = out->len;
    int rc = buf_append_str(out, extension_name);
    if (rc == 0 && p->server_no_context_takeover)
        rc = buf_append_str(out, "; server_no_context_takeover");
    if (rc == 0 && p->client_no_context_takeover)
        rc = buf_append_str(out, "; client_no_context_takeover");
    if (rc == 0 && p->server_max_window_bits != 15)
        rc = append_bits_param(out, "; server_max_window_bits=", p->server_max_window_bits);
    /* Below 15 only when the client offered the parameter with that value
     * (see accept_offer), which is when RFC 7692 §7.1.2.2 allows it here. */
    if (rc == 0 && p->client_max_window_bits != 15)
        rc = append_bits_param(out, "; client_max_window_bits=", p->client_max_window_bits);
    if (rc < 0) {
        out->len = mark;
        return DEFLATE_ENOMEM;
    }
    return DEFLATE_OK;
}

/* ---- per-connection state ---- */

struct deflate_ctx *deflate_ctx_new(const struct deflate_params *p,
                                    const struct deflate_config *cfg)
{
    struct deflate_config tmp;
    cfg = config_or_default(cfg, &tmp);
    struct deflate_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->p = *p;
    c->p.server_max_window_bits = clamp(p->server_max_window_bits, 8, 15);
    c->p.client_max_window_bits = clamp(p->client_max_window_bits, 8, 15);
    c->level = clamp(cfg->level, Z_DEFAULT_COMPRESSION, 9);
    c->mem_level = clamp(cfg->mem_level, 1, 9);
    return c;
}

static void end_stream(z_stream **s, int (*end)(z_streamp))
{
    if (*s) {
        end(*s);
        free(*s);
        *s = NULL;
    }
}

void deflate_ctx_free(struct deflate_ctx *c)
{
    if (!c)
        return;
    end_stream(&c->def, deflateEnd);
    end_stream(&c->inf, inflateEnd);
    free(c);
}

void deflate_ctx_trim(struct deflate_ctx *c)
{
    /* With context takeover the window is state the peer relies on, so it
     * must survive idleness. */
    if (c->p.server_no_context_takeover)
        end_stream(&c->def, deflateEnd);
    if (c->p.client_no_context_takeover)
        end_stream(&c->inf, inflateEnd);
}

static int make_compressor(struct deflate_ctx *c)
{
    if (c->def)
        return DEFLATE_OK;
    z_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return DEFLATE_ENOMEM;
    /* zlib refuses raw deflate with an 8-bit window (Z_STREAM_ERROR) and
     * itself turns 8 into 9 for zlib streams. Using 9 is safe for a peer
     * that inflates with 256 bytes: zlib never emits a distance beyond the
     * window minus MIN_LOOKAHEAD (262), i.e. 250 for a 512-byte window. */
    int bits = c->p.server_max_window_bits == 8 ? 9 : c->p.server_max_window_bits;
    /* Parameters are clamped in deflate_ctx_new, so only memory can fail. */
    if (deflateInit2(s, c->level, Z_DEFLATED, -bits, c->mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(s);
        return DEFLATE_ENOMEM;
    }
    c->def = s;
    return DEFLATE_OK;
}

static int make_decompressor(struct deflate_ctx *c)
{
    if (c->inf)
        return DEFLATE_OK;
    z_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return DEFLATE_ENOMEM;
    if (inflateInit2(s, -c->p.client_max_window_bits) != Z_OK) {
        free(s);
        return DEFLATE_ENOMEM;
    }
    c->inf = s;
    return DEFLATE_OK;
}

/* Runs deflate over s->next_in until it is consumed and, for a flush, until
 * the flush is complete (avail_out left non-zero). */
static int deflate_run(z_stream *s, int flush, struct buf *out)
{
    do {
        /* Room for the whole remaining input in one go in practice; the
         * slack covers the flush's empty stored block. */
        size_t room = (size_t)deflateBound(s, s->avail_in) + 16;
        if (room > UINT_MAX)
            room = UINT_MAX;
        if (buf_reserve(out, room) < 0)
            return DEFLATE_ENOMEM;
        s->next_out = out->data + out->len;
        s->avail_out = (uInt)room;
        int zr = deflate(s, flush);
        out->len += room - s->avail_out;
        /* Z_BUF_ERROR cannot occur with input or room left; Z_STREAM_ERROR
         * only on a corrupted stream. */
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return DEFLATE_ENOMEM;
    } while (s->avail_out == 0);
    return DEFLATE_OK;
}

static int compress_message(z_stream *s, const uint8_t *in, size_t len, struct buf *out)
{
    size_t left = len;
    while (left) {
        size_t take = left > UINT_MAX ? UINT_MAX : left;
        s->next_in = in + (len - left);
        s->avail_in = (uInt)take;
        left -= take;
        int rc = deflate_run(s, left ? Z_NO_FLUSH : Z_SYNC_FLUSH, out);
        if (rc < 0)
            return rc;
    }
    return DEFLATE_OK;
}

int deflate_compress(struct deflate_ctx *c, const uint8_t *in, size_t len, struct buf *out)
{
    /* RFC 7692 §7.2.3.6: an empty message is the single byte 0x00, the
     * header of an empty stored block whose LEN/NLEN are the stripped tail.
     * Written by hand because zlib refuses a second flush with no input in
     * between (Z_BUF_ERROR, no output), and it needs no zlib state. The
     * stream stays byte-aligned, so this block does not disturb it. */
    if (len == 0)
        return buf_append_byte(out, 0x00) < 0 ? DEFLATE_ENOMEM : DEFLATE_OK;
    int rc = make_compressor(c);
    if (rc < 0)
        return rc;
    size_t mark = out->len;
    rc = compress_message(c->def, in, len, out);
    if (rc == 0 && out->len - mark >= sizeof(sync_tail) &&
        memcmp(out->data + out->len - sizeof(sync_tail), sync_tail, sizeof(sync_tail)) == 0)
        out->len -= sizeof(sync_tail);
    /* After a failure the stream is mid-message; a fresh one is always safe
     * for the peer, whose inflater is at the end of our last message and
     * simply sees no back-references. */
    if (rc < 0 || c->p.server_no_context_takeover)
        deflateReset(c->def);
    if (rc < 0)
        out->len = mark;
    return rc;
}

/* Where inflated bytes go, and how many this message may produce. */
struct sink {
    struct buf *out;
    size_t start; /* out->len when the message began */
    size_t max;   /* 0: unlimited */
};

/* Grows out for n more bytes without going past the message's limit:
 * buf_reserve's doubling would otherwise allocate up to twice the limit
 * while a zip bomb is being stopped. */
static int sink_reserve(struct sink *k, size_t n)
{
    struct buf *b = k->out;
    if (b->cap - b->len >= n)
        return DEFLATE_OK;
    if (k->max == 0)
        return buf_reserve(b, n) < 0 ? DEFLATE_ENOMEM : DEFLATE_OK;
    size_t need = b->len + n; /* <= start + max: see inflate_slice */
    size_t cap = b->cap > SIZE_MAX / 2 ? need : b->cap * 2;
    size_t ceiling = k->max > SIZE_MAX - k->start ? SIZE_MAX : k->start + k->max;
    if (cap < need)
        cap = need;
    if (cap > ceiling)
        cap = ceiling > need ? ceiling : need;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return DEFLATE_ENOMEM;
    b->data = p;
    b->cap = cap;
    return DEFLATE_OK;
}

/* Inflates s->next_in completely into the sink. */
static int inflate_slice(z_stream *s, struct sink *k)
{
    for (;;) {
        size_t produced = k->out->len - k->start;
        size_t room = INFLATE_CHUNK;
        uint8_t probe;
        if (k->max && k->max - produced < room)
            room = k->max - produced;
        if (room) {
            if (sink_reserve(k, room) < 0)
                return DEFLATE_ENOMEM;
            s->next_out = k->out->data + k->out->len;
            s->avail_out = (uInt)room;
        } else {
            /* At the limit: one more byte of output means over it. */
            s->next_out = &probe;
            s->avail_out = 1;
        }
        uInt before = s->avail_out;
        int zr = inflate(s, Z_SYNC_FLUSH);
        size_t got = before - s->avail_out;
        if (room == 0 && got)
            return DEFLATE_ETOOBIG;
        k->out->len += got;
        switch (zr) {
        case Z_OK:
            break;
        case Z_STREAM_END:
            /* A block with BFINAL set (RFC 7692 §7.2.3.4). What follows is
             * normally the first byte of an empty stored block completed by
             * the appended tail; decode it as a new stream that keeps the
             * window, since the sender may still refer to it. */
            if (inflateResetKeep(s) != Z_OK)
                return DEFLATE_EINVAL;
            break;
        case Z_BUF_ERROR:
            /* No progress possible: fine once the input is used up. */
            return s->avail_in == 0 ? DEFLATE_OK : DEFLATE_EINVAL;
        case Z_MEM_ERROR:
            return DEFLATE_ENOMEM;
        default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
            return DEFLATE_EINVAL;
        }
        if (s->avail_in == 0 && s->avail_out != 0)
            return DEFLATE_OK;
    }
}

static int inflate_feed(z_stream *s, const uint8_t *in, size_t len, struct sink *k)
{
    while (len) {
        size_t take = len > UINT_MAX ? UINT_MAX : len;
        s->next_in = in;
        s->avail_in = (uInt)take;
        int rc = inflate_slice(s, k);
        if (rc < 0)
            return rc;
        in += take;
        len -= take;
    }
    return DEFLATE_OK;
}

int deflate_decompress(struct deflate_ctx *c, const uint8_t *in, size_t len, size_t max_out,
                       struct buf *out)
{
    /* No sender produces an empty payload for a compressed message (an
     * empty one is 0x00, see deflate_compress), and the tail alone would
     * leave the stream inside a stored block, wrecking the messages after
     * it; taking it as an empty message keeps the stream intact. */
    if (len == 0)
        return DEFLATE_OK;
    int rc = make_decompressor(c);
    if (rc < 0)
        return rc;
    struct sink k = {out, out->len, max_out};
    /* The tail goes in as a second chunk so the message is never copied. */
    rc = inflate_feed(c->inf, in, len, &k);
    if (rc == 0)
        rc = inflate_feed(c->inf, sync_tail, sizeof(sync_tail), &k);
    /* After an error the peer's and our windows no longer agree; a reset
     * stream makes any later back-reference fail instead of decoding
     * garbage. The caller is expected to fail the connection anyway. */
    if (rc < 0 || c->p.client_no_context_takeover)
        inflateReset(c->inf);
    if (rc < 0)
        out->len = k.start;
    return rc;
}

const char *deflate_strerror(int result)
{
    switch (result) {
    case DEFLATE_OK:
        return "ok";
    case DEFLATE_EINVAL:
        return "invalid extension header or compressed data";
    case DEFLATE_ETOOBIG:
        return "decompressed message too big";
    case DEFLATE_ENOMEM:
        return "out of memory";
    default:
        return "unknown deflate error";
    }
}

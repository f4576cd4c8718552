/* eio: Engine.IO v4 packets and long-polling payloads. */
#include "eio.h"

#include <string.h>

#include "base64.h"

static bool type_valid(enum eio_packet_type type)
{
    return (unsigned)type <= EIO_NOOP;
}

int eio_packet_decode(const uint8_t *in, size_t len, struct eio_packet *out)
{
    if (len == 0 || in[0] < '0' || in[0] > '0' + EIO_NOOP)
        return EIO_EINVAL;
    out->type = (enum eio_packet_type)(in[0] - '0');
    out->binary = false;
    out->data = in + 1;
    out->len = len - 1;
    return EIO_OK;
}

void eio_payload_reader_init(struct eio_payload_reader *r, uint8_t *body, size_t len)
{
    r->p = body;
    r->end = body ? body + len : body;
    r->done = false;
}

/* One element of a payload: 'b' + base64 (decoded in place, over itself),
 * or a text packet. */
static int decode_element(uint8_t *el, size_t len, struct eio_packet *out)
{
    if (len == 0)
        return EIO_EINVAL;
    if (el[0] != 'b')
        return eio_packet_decode(el, len, out);
    long n = base64_decode((const char *)el + 1, len - 1, el + 1);
    if (n < 0)
        return EIO_EINVAL;
    out->type = EIO_MESSAGE;
    out->binary = true;
    out->data = el + 1;
    out->len = (size_t)n;
    return EIO_OK;
}

int eio_payload_next(struct eio_payload_reader *r, struct eio_packet *out)
{
    /* After an error p is NULL, so the error repeats instead of turning
     * into a clean end. */
    if (r->done)
        return r->p ? EIO_END : EIO_EINVAL;
    uint8_t *el = r->p;
    size_t avail = (size_t)(r->end - el);
    uint8_t *sep = avail ? memchr(el, EIO_SEPARATOR, avail) : NULL;
    size_t len = sep ? (size_t)(sep - el) : avail;
    if (sep) {
        r->p = sep + 1;
    } else {
        r->p = r->end;
        r->done = true;
    }
    int rc = decode_element(el, len, out);
    if (rc < 0) {
        r->p = NULL;
        r->done = true;
    }
    return rc;
}

int eio_packet_encode(struct buf *out, enum eio_packet_type type, const void *data, size_t len)
{
    if (!type_valid(type))
        return EIO_EINVAL;
    if (len == SIZE_MAX || buf_reserve(out, len + 1) < 0)
        return EIO_ENOMEM;
    buf_append_byte(out, (uint8_t)('0' + type));
    buf_append(out, data, len);
    return EIO_OK;
}

static int append_binary(struct buf *out, bool sep, const uint8_t *data, size_t len)
{
    if (len > (SIZE_MAX - 8) / 4 * 3)
        return EIO_ENOMEM;
    size_t enc = BASE64_ENCODED_LEN(len);
    if (buf_reserve(out, (size_t)sep + 1 + enc) < 0)
        return EIO_ENOMEM;
    if (sep)
        buf_append_byte(out, EIO_SEPARATOR);
    buf_append_byte(out, 'b');
    out->len += base64_encode(data, len, (char *)out->data + out->len);
    return EIO_OK;
}

int eio_payload_append(struct buf *out, const struct eio_packet *p)
{
    bool sep = out->len > 0;
    if (p->binary)
        return p->type == EIO_MESSAGE ? append_binary(out, sep, p->data, p->len) : EIO_EINVAL;
    /* The payload has no escaping: a separator inside a text packet would
     * split it in two at the peer, so such a packet cannot be sent this
     * way. */
    if (!type_valid(p->type) || (p->len && memchr(p->data, EIO_SEPARATOR, p->len)))
        return EIO_EINVAL;
    if (p->len >= SIZE_MAX - 1 || buf_reserve(out, (size_t)sep + 1 + p->len) < 0)
        return EIO_ENOMEM;
    if (sep)
        buf_append_byte(out, EIO_SEPARATOR);
    return eio_packet_encode(out, p->type, p->data, p->len);
}

/* The open packet's strings go into JSON strings unescaped. */
static bool json_safe(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\')
            return false;
    return true;
}

/* Append helpers that carry the first error through a sequence. */
static int put_str(struct buf *out, int rc, const char *s)
{
    return rc < 0 ? rc : buf_append_str(out, s);
}

static int put_u64(struct buf *out, int rc, uint64_t v)
{
    return rc < 0 ? rc : buf_append_u64(out, v);
}

int eio_open_encode(struct buf *out, const char *sid, const char *const *upgrades,
                    size_t n_upgrades, uint32_t ping_interval, uint32_t ping_timeout,
                    uint64_t max_payload)
{
    if (!json_safe(sid))
        return EIO_EINVAL;
    for (size_t i = 0; i < n_upgrades; i++)
        if (!json_safe(upgrades[i]))
            return EIO_EINVAL;
    size_t mark = out->len;
    int rc = put_str(out, 0, "0{\"sid\":\"");
    rc = put_str(out, rc, sid);
    rc = put_str(out, rc, "\",\"upgrades\":[");
    for (size_t i = 0; i < n_upgrades; i++) {
        rc = put_str(out, rc, i ? ",\"" : "\"");
        rc = put_str(out, rc, upgrades[i]);
        rc = put_str(out, rc, "\"");
    }
    rc = put_str(out, rc, "],\"pingInterval\":");
    rc = put_u64(out, rc, ping_interval);
    rc = put_str(out, rc, ",\"pingTimeout\":");
    rc = put_u64(out, rc, ping_timeout);
    rc = put_str(out, rc, ",\"maxPayload\":");
    rc = put_u64(out, rc, max_payload);
    rc = put_str(out, rc, "}");
    if (rc < 0) {
        out->len = mark;
        return EIO_ENOMEM;
    }
    return EIO_OK;
}

const char *eio_strerror(int result)
{
    switch (result) {
    case EIO_OK:
        return "ok";
    case EIO_END:
        return "end of payload";
    case EIO_EINVAL:
        return "invalid Engine.IO packet";
    case EIO_ENOMEM:
        return "out of memory";
    default:
        return "unknown Engine.IO error";
    }
}

#include "handshake.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sockeye.h"

/* s holds, each string NUL-terminated:
 *
 *     address, URL, (header name, value)*, "", (query key, value)*, ""
 *
 * Header names are lower-case and query pairs percent-decoded. Neither a
 * header name nor a query key is ever empty, so an empty string ends each
 * list, and finding a part means skipping the ones before it: a few hundred
 * bytes of strlen, cheaper than storing offsets in every connection. */
struct sio_handshake {
    int64_t issued; /* ms since the epoch */
    bool secure;
    bool xdomain; /* an Origin header was present */
    char s[];
};

_Static_assert(_Alignof(struct sio_handshake) <= HANDSHAKE_ALIGN, "HANDSHAKE_ALIGN too small");

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

size_t percent_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%' && i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else {
            out[o++] = in[i] == '+' ? ' ' : in[i];
        }
    }
    out[o] = '\0';
    return o;
}

/* --- capture ------------------------------------------------------------ */

/* The string block being captured. The same code runs twice: first without
 * base, only counting (an upper bound, since it can neither decode nor see
 * repeated keys), then writing. */
struct block {
    char *base;
    size_t len;
};

enum copy_mode { COPY_RAW, COPY_LOWER, COPY_DECODE };

static void append(struct block *b, const char *s, size_t n, enum copy_mode mode)
{
    char *d = b->base ? b->base + b->len : NULL;
    if (!d) {
        b->len += n + 1;
    } else if (mode == COPY_DECODE) {
        /* A decoded %00 ends the string, as it always has for these. */
        percent_decode(s, n, d);
        b->len += strlen(d) + 1;
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = mode == COPY_LOWER ? (char)tolower((unsigned char)s[i]) : s[i];
        d[n] = '\0';
        b->len += n + 1;
    }
}

static const char *skip(const char *p)
{
    return p + strlen(p) + 1;
}

/* The value of key among the pairs from p up to end (NULL: none) or an
 * empty key, or NULL. */
static const char *pair_find(const char *p, const char *end, const char *key, bool nocase)
{
    while ((!end || p < end) && *p) {
        const char *v = skip(p);
        if ((nocase ? strcasecmp(p, key) : strcmp(p, key)) == 0)
            return v;
        p = skip(v);
    }
    return NULL;
}

/* Past the end of the pair list at p. */
static const char *skip_pairs(const char *p)
{
    while (*p)
        p = skip(skip(p));
    return p + 1;
}

static const char *url_of(const struct sio_handshake *h)
{
    return skip(h->s);
}

static const char *headers_of(const struct sio_handshake *h)
{
    return skip(url_of(h));
}

static const char *query_of(const struct sio_handshake *h)
{
    return skip_pairs(headers_of(h));
}

/* Appends a pair whose key was just appended at key_at, unless that key is
 * empty (it would end the list) or already among the pairs since start:
 * then the key is taken back. */
static void append_value(struct block *b, size_t start, size_t key_at, const char *v, size_t n,
                         enum copy_mode mode)
{
    if (b->base && (!b->base[key_at] ||
                    pair_find(b->base + start, b->base + key_at, b->base + key_at, false))) {
        b->len = key_at;
        return;
    }
    append(b, v, n, mode);
}

static void capture_query(struct block *b, const char *q, size_t len)
{
    size_t start = b->len;
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *kend = eq ? eq : stop;
        if (kend > q) {
            const char *vs = eq ? eq + 1 : stop;
            size_t key_at = b->len;
            append(b, q, (size_t)(kend - q), COPY_DECODE);
            append_value(b, start, key_at, vs, (size_t)(stop - vs), COPY_DECODE);
        }
        q = amp ? amp + 1 : end;
    }
}

/* Fills b with the strings of req (see struct sio_handshake). */
static void capture(struct block *b, struct http_request *req)
{
    const char *addr = http_request_peer_address(req);
    append(b, addr, strlen(addr), COPY_RAW);
    const char *u = http_request_url(req);
    append(b, u, strlen(u), COPY_RAW);
    size_t headers = b->len;
    const char *name, *value;
    for (size_t i = 0; http_request_header_at(req, i, &name, &value); i++) {
        size_t key_at = b->len;
        append(b, name, strlen(name), COPY_LOWER);
        append_value(b, headers, key_at, value, strlen(value), COPY_RAW);
    }
    append(b, "", 0, COPY_RAW);
    size_t qlen;
    const char *q = http_request_query(req, &qlen);
    capture_query(b, q, qlen);
    append(b, "", 0, COPY_RAW);
}

size_t handshake_size(struct http_request *req)
{
    struct block b = {NULL, 0};
    capture(&b, req);
    return offsetof(struct sio_handshake, s) + b.len;
}

struct sio_handshake *handshake_init(void *mem, struct http_request *req)
{
    struct sio_handshake *h = mem;
    struct block b = {h->s, 0};
    capture(&b, req);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    h->issued = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    h->secure = http_request_is_tls(req);
    h->xdomain = http_request_header(req, "Origin") != NULL;
    return h;
}

/* --- public accessors --------------------------------------------------- */

const char *sio_handshake_header(const struct sio_handshake *h, const char *name)
{
    return pair_find(headers_of(h), NULL, name, true);
}

const char *sio_handshake_query(const struct sio_handshake *h, const char *name)
{
    return pair_find(query_of(h), NULL, name, false);
}

const char *sio_handshake_address(const struct sio_handshake *h)
{
    return h->s;
}

const char *sio_handshake_url(const struct sio_handshake *h)
{
    return url_of(h);
}

bool sio_handshake_secure(const struct sio_handshake *h)
{
    return h->secure;
}

int64_t sio_handshake_issued(const struct sio_handshake *h)
{
    return h->issued;
}

/* An object of the pair list at p; NULL on allocation failure. */
static cJSON *pairs_json(const char *p)
{
    cJSON *o = cJSON_CreateObject();
    for (; o && *p; p = skip(skip(p))) {
        if (!cJSON_AddStringToObject(o, p, skip(p))) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* Like JavaScript's Date.toString() in UTC, as the reference reports it. */
static void format_time(int64_t ms, char *out, size_t size)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(out, size, "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", &tm);
}

struct cJSON *sio_handshake_json(const struct sio_handshake *h, const struct cJSON *auth)
{
    char t[80];
    format_time(h->issued, t, sizeof(t));
    cJSON *o = cJSON_CreateObject();
    cJSON *headers = pairs_json(headers_of(h));
    cJSON *query = pairs_json(query_of(h));
    cJSON *a = auth ? sio_json_copy(auth) : cJSON_CreateObject();
    if (!o || !headers || !query || !a) {
        cJSON_Delete(o);
        cJSON_Delete(headers);
        cJSON_Delete(query);
        cJSON_Delete(a);
        return NULL;
    }
    cJSON_AddItemToObject(o, "headers", headers);
    cJSON_AddStringToObject(o, "time", t);
    cJSON_AddStringToObject(o, "address", sio_handshake_address(h));
    cJSON_AddBoolToObject(o, "xdomain", h->xdomain);
    cJSON_AddBoolToObject(o, "secure", h->secure);
    cJSON_AddNumberToObject(o, "issued", (double)h->issued);
    cJSON_AddStringToObject(o, "url", sio_handshake_url(h));
    cJSON_AddItemToObject(o, "query", query);
    cJSON_AddItemToObject(o, "auth", a);
    return o;
}

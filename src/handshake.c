#include "handshake.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "sockeye.h"

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

/* Adds each key=value of the query string to obj. A repeated key keeps its
 * first value. */
static int parse_query(const char *q, size_t len, cJSON *obj)
{
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *kend = eq ? eq : stop;
        if (kend > q) {
            char *k = malloc((size_t)(kend - q) + 1);
            const char *vs = eq ? eq + 1 : stop;
            char *v = malloc((size_t)(stop - vs) + 1);
            if (!k || !v) {
                free(k);
                free(v);
                return -1;
            }
            percent_decode(q, (size_t)(kend - q), k);
            percent_decode(vs, (size_t)(stop - vs), v);
            if (!cJSON_GetObjectItemCaseSensitive(obj, k))
                cJSON_AddStringToObject(obj, k, v);
            free(k);
            free(v);
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    return d;
}

struct sio_handshake *handshake_new(struct http_request *req)
{
    struct sio_handshake *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->headers = cJSON_CreateObject();
    h->query = cJSON_CreateObject();
    h->address = strdup(http_request_peer_address(req));
    h->url = strdup(http_request_url(req));
    if (!h->headers || !h->query || !h->address || !h->url)
        goto fail;
    const char *name, *value;
    for (size_t i = 0; http_request_header_at(req, i, &name, &value); i++) {
        char *lname = lower_dup(name);
        if (!lname)
            goto fail;
        if (!cJSON_GetObjectItemCaseSensitive(h->headers, lname))
            cJSON_AddStringToObject(h->headers, lname, value);
        free(lname);
    }
    size_t qlen;
    const char *q = http_request_query(req, &qlen);
    if (parse_query(q, qlen, h->query) < 0)
        goto fail;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    h->issued = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char t[80];
    strftime(t, sizeof(t), "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", &tm);
    h->time = strdup(t);
    if (!h->time)
        goto fail;
    h->secure = http_request_is_tls(req);
    h->xdomain = http_request_header(req, "Origin") != NULL;
    return h;
fail:
    handshake_free(h);
    return NULL;
}

void handshake_free(struct sio_handshake *h)
{
    if (!h)
        return;
    cJSON_Delete(h->headers);
    cJSON_Delete(h->query);
    free(h->address);
    free(h->url);
    free(h->time);
    free(h);
}

/* --- public accessors --------------------------------------------------- */

static const char *string_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *sio_handshake_header(const struct sio_handshake *h, const char *name)
{
    char lname[128];
    size_t n = strlen(name);
    if (n >= sizeof(lname))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        lname[i] = (char)tolower((unsigned char)name[i]);
    return string_of(h->headers, lname);
}

const char *sio_handshake_query(const struct sio_handshake *h, const char *name)
{
    return string_of(h->query, name);
}

const char *sio_handshake_address(const struct sio_handshake *h)
{
    return h->address;
}

const char *sio_handshake_url(const struct sio_handshake *h)
{
    return h->url;
}

bool sio_handshake_secure(const struct sio_handshake *h)
{
    return h->secure;
}

int64_t sio_handshake_issued(const struct sio_handshake *h)
{
    return h->issued;
}

struct cJSON *sio_handshake_json(const struct sio_handshake *h, const struct cJSON *auth)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddItemToObject(o, "headers", cJSON_Duplicate(h->headers, true));
    cJSON_AddStringToObject(o, "time", h->time);
    cJSON_AddStringToObject(o, "address", h->address);
    cJSON_AddBoolToObject(o, "xdomain", h->xdomain);
    cJSON_AddBoolToObject(o, "secure", h->secure);
    cJSON_AddNumberToObject(o, "issued", (double)h->issued);
    cJSON_AddStringToObject(o, "url", h->url);
    cJSON_AddItemToObject(o, "query", cJSON_Duplicate(h->query, true));
    cJSON_AddItemToObject(o, "auth", auth ? sio_json_copy(auth) : cJSON_CreateObject());
    return o;
}

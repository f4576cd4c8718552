#include "sio.h"

#include "json.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* JavaScript's Number.MAX_SAFE_INTEGER: larger ack ids would not survive a
 * round trip through a JavaScript peer. */
#define MAX_ACK_ID ((int64_t)9007199254740991)

/* cJSON copies at most 63 characters of a number before calling strtod, so a
 * longer number is a syntax error to it (JSON.parse would accept it). */
#define MAX_NUMBER_TEXT 63

#define BASE_TYPE(item) ((item)->type & 0xFF)

/* The block a binary node's valuestring points to. One allocation, made with
 * cJSON_malloc, so that cJSON_Delete (which frees valuestring) releases it. */
struct sio_bin {
    size_t len;
    uint8_t bytes[];
};

static const struct {
    const char *name;
    size_t len;
} reserved_events[] = {
    {"connect", 7},        {"connect_error", 13}, {"disconnect", 10},
    {"disconnecting", 13}, {"newListener", 11},   {"removeListener", 14},
};

bool sio_event_name_reserved(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(reserved_events) / sizeof(reserved_events[0]); i++)
        if (len == reserved_events[i].len && memcmp(name, reserved_events[i].name, len) == 0)
            return true;
    return false;
}

const char *sio_strerror(int result)
{
    switch (result) {
    case SIO_OK:
        return "success";
    case SIO_EINVAL:
        return "malformed Socket.IO packet";
    case SIO_ETOOMANY:
        return "too many binary attachments";
    case SIO_EPLACEHOLDER:
        return "invalid or unused attachment placeholder";
    case SIO_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

/* ---- binary nodes ---- */

bool sio_is_binary(const cJSON *item)
{
    return item && BASE_TYPE(item) == cJSON_Invalid && (item->type & SIO_CJSON_BINARY) &&
           item->valuestring;
}

static struct sio_bin *bin_of(const cJSON *item)
{
    return (struct sio_bin *)(void *)item->valuestring;
}

static struct sio_bin *bin_alloc(const void *data, size_t len)
{
    if (len > SIZE_MAX - sizeof(struct sio_bin))
        return NULL;
    struct sio_bin *b = cJSON_malloc(sizeof(*b) + len);
    if (!b)
        return NULL;
    b->len = len;
    if (len)
        memcpy(b->bytes, data, len);
    return b;
}

/* Turns item, whatever it was, into a binary node owning b. Its key and its
 * place among its siblings are kept, so this works in place inside a tree. */
static void make_binary(cJSON *item, struct sio_bin *b)
{
    item->type = cJSON_Invalid | SIO_CJSON_BINARY | (item->type & cJSON_StringIsConst);
    item->valuestring = (char *)(void *)b;
    item->child = NULL;
}

cJSON *sio_binary_new(const void *data, size_t len)
{
    struct sio_bin *b = bin_alloc(data, len);
    if (!b)
        return NULL;
    cJSON *item = cJSON_CreateNull();
    if (!item) {
        cJSON_free(b);
        return NULL;
    }
    make_binary(item, b);
    return item;
}

const uint8_t *sio_binary_data(const cJSON *item, size_t *len)
{
    if (!sio_is_binary(item)) {
        *len = 0;
        return NULL;
    }
    *len = bin_of(item)->len;
    return bin_of(item)->bytes;
}

static cJSON *binary_copy(const cJSON *item)
{
    const struct sio_bin *b = bin_of(item);
    cJSON *copy = sio_binary_new(b->bytes, b->len);
    if (!copy || !item->string)
        return copy;
    if (item->type & cJSON_StringIsConst) {
        copy->string = item->string;
        copy->type |= cJSON_StringIsConst;
        return copy;
    }
    size_t n = strlen(item->string) + 1;
    copy->string = cJSON_malloc(n);
    if (!copy->string) {
        cJSON_Delete(copy);
        return NULL;
    }
    memcpy(copy->string, item->string, n);
    return copy;
}

cJSON *sio_json_duplicate(const cJSON *item)
{
    if (!item)
        return NULL;
    /* cJSON_Duplicate without recursion copies the node itself (key, value,
     * flags); the children are copied here so binary nodes anywhere are
     * handled. */
    cJSON *copy = sio_is_binary(item) ? binary_copy(item) : cJSON_Duplicate(item, false);
    if (!copy)
        return NULL;
    cJSON *tail = NULL;
    for (const cJSON *c = item->child; c; c = c->next) {
        cJSON *cc = sio_json_duplicate(c);
        if (!cc) {
            cJSON_Delete(copy);
            return NULL;
        }
        if (tail) {
            tail->next = cc;
            cc->prev = tail;
        } else {
            copy->child = cc;
        }
        tail = cc;
    }
    /* cJSON keeps the last child in the first child's prev for O(1) appends. */
    if (copy->child)
        copy->child->prev = tail;
    return copy;
}

static bool has_binary(const cJSON *item)
{
    if (!item)
        return false;
    if (sio_is_binary(item))
        return true;
    for (const cJSON *c = item->child; c; c = c->next)
        if (has_binary(c))
            return true;
    return false;
}

/* ---- attachments ---- */

void sio_attachments_init(struct sio_attachments *a)
{
    a->items = NULL;
    a->n = 0;
    a->cap = 0;
}

void sio_attachments_cleanup(struct sio_attachments *a)
{
    for (size_t i = 0; i < a->n; i++)
        cJSON_Delete(a->items[i]);
    free(a->items);
    sio_attachments_init(a);
}

static int attachments_reserve(struct sio_attachments *a)
{
    if (a->n < a->cap)
        return SIO_OK;
    size_t cap = a->cap ? a->cap * 2 : 4;
    if (cap < a->cap || cap > SIZE_MAX / sizeof(*a->items))
        return SIO_ENOMEM;
    cJSON **items = realloc(a->items, cap * sizeof(*items));
    if (!items)
        return SIO_ENOMEM;
    a->items = items;
    a->cap = cap;
    return SIO_OK;
}

int sio_attachments_add(struct sio_attachments *a, const void *data, size_t len)
{
    if (attachments_reserve(a) < 0)
        return SIO_ENOMEM;
    cJSON *item = sio_binary_new(data, len);
    if (!item)
        return SIO_ENOMEM;
    a->items[a->n++] = item;
    return SIO_OK;
}

/* ---- deconstruct / reconstruct ---- */

static cJSON *placeholder_new(size_t num)
{
    cJSON *ph = cJSON_CreateObject();
    if (!ph)
        return NULL;
    if (!cJSON_AddTrueToObject(ph, "_placeholder") ||
        !cJSON_AddNumberToObject(ph, "num", (double)num)) {
        cJSON_Delete(ph);
        return NULL;
    }
    return ph;
}

/* The binary node is turned into its placeholder in place and a fresh node
 * takes its bytes, which avoids having to know the node's parent (and works
 * on the root). Everything that can fail happens before the tree changes. */
static int binary_to_placeholder(cJSON *item, struct sio_attachments *a, size_t max)
{
    if (max && a->n >= max)
        return SIO_ETOOMANY;
    if (attachments_reserve(a) < 0)
        return SIO_ENOMEM;
    cJSON *ph = placeholder_new(a->n);
    if (!ph)
        return SIO_ENOMEM;
    struct sio_bin *b = bin_of(item);
    item->type = cJSON_Object | (item->type & cJSON_StringIsConst);
    item->valuestring = NULL;
    item->child = ph->child;
    ph->child = NULL;
    make_binary(ph, b);
    a->items[a->n++] = ph;
    return SIO_OK;
}

static int deconstruct(cJSON *item, struct sio_attachments *a, size_t max)
{
    if (sio_is_binary(item))
        return binary_to_placeholder(item, a, max);
    if (BASE_TYPE(item) != cJSON_Array && BASE_TYPE(item) != cJSON_Object)
        return SIO_OK;
    for (cJSON *c = item->child; c; c = c->next) {
        int rc = deconstruct(c, a, max);
        if (rc < 0)
            return rc;
    }
    return SIO_OK;
}

int sio_binary_deconstruct(cJSON *tree, struct sio_attachments *a, size_t max_attachments)
{
    if (!tree)
        return 0;
    size_t start = a->n;
    int rc = deconstruct(tree, a, max_attachments);
    if (rc < 0)
        return rc;
    size_t moved = a->n - start;
    return moved > INT_MAX ? INT_MAX : (int)moved;
}

struct reconstruction {
    struct sio_attachments *a;
    cJSON **placed; /* where attachment i went, for copies on reuse */
};

/* Like the reference parser, any object whose _placeholder member is true is a
 * placeholder (other members are ignored); its num must then name an
 * attachment. Returns 1 and *num for a placeholder, 0 for anything else. */
static int placeholder_num(const cJSON *item, size_t n, size_t *num)
{
    if (BASE_TYPE(item) != cJSON_Object ||
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "_placeholder")))
        return 0;
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(item, "num");
    if (!cJSON_IsNumber(jn))
        return SIO_EPLACEHOLDER;
    double d = jn->valuedouble;
    if (!(d >= 0 && d < (double)n) || d != (double)(size_t)d)
        return SIO_EPLACEHOLDER;
    *num = (size_t)d;
    return 1;
}

static int placeholder_to_binary(cJSON *item, size_t num, struct reconstruction *r)
{
    cJSON *src = r->a->items[num];
    struct sio_bin *b;
    if (src) {
        if (!sio_is_binary(src))
            return SIO_EPLACEHOLDER;
        b = bin_of(src);
        src->valuestring = NULL;
        cJSON_Delete(src);
        r->a->items[num] = NULL;
    } else if (r->placed[num]) {
        /* An index used twice would let one packet multiply an attachment's
         * memory; no conforming client does it. */
        return SIO_EPLACEHOLDER;
    } else {
        return SIO_EPLACEHOLDER; /* a hole left by an earlier failed call */
    }
    r->placed[num] = item;
    cJSON_Delete(item->child);
    make_binary(item, b);
    return SIO_OK;
}

static int reconstruct(cJSON *item, struct reconstruction *r)
{
    size_t num;
    int rc = placeholder_num(item, r->a->n, &num);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return placeholder_to_binary(item, num, r);
    if (BASE_TYPE(item) != cJSON_Array && BASE_TYPE(item) != cJSON_Object)
        return SIO_OK;
    for (cJSON *c = item->child; c; c = c->next) {
        rc = reconstruct(c, r);
        if (rc < 0)
            return rc;
    }
    return SIO_OK;
}

int sio_binary_reconstruct(cJSON *tree, struct sio_attachments *a)
{
    struct reconstruction r = {a, NULL};
    if (a->n) {
        r.placed = calloc(a->n, sizeof(*r.placed));
        if (!r.placed)
            return SIO_ENOMEM;
    }
    int rc = tree ? reconstruct(tree, &r) : SIO_OK;
    free(r.placed);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i])
            return SIO_EPLACEHOLDER;
    a->n = 0;
    return SIO_OK;
}

/* ---- JSON text check ----
 *
 * The packet's JSON is checked against the JSON grammar before cJSON sees it.
 * cJSON is laxer than JSON.parse (any byte <= 0x20 is whitespace, raw control
 * characters in strings, "01", "1.", "\uZZZZ"), and the raw text of a packet
 * may be relayed verbatim to JavaScript peers, whose decoders would throw on
 * such input. The check also rejects what cJSON itself refuses (nesting past
 * CJSON_NESTING_LIMIT, unpaired surrogate escapes, numbers it truncates), so
 * that a parse failure after a passing check can only mean out of memory. */

struct scan {
    const unsigned char *p, *end;
};

static bool scan_peek(const struct scan *s, unsigned char c)
{
    return s->p < s->end && *s->p == c;
}

static void scan_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool scan_digits(struct scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

static bool scan_number(struct scan *s)
{
    const unsigned char *start = s->p;
    if (scan_peek(s, '-'))
        s->p++;
    if (scan_peek(s, '0'))
        s->p++;
    else if (!scan_digits(s))
        return false;
    if (scan_peek(s, '.')) {
        s->p++;
        if (!scan_digits(s))
            return false;
    }
    if (scan_peek(s, 'e') || scan_peek(s, 'E')) {
        s->p++;
        if (scan_peek(s, '+') || scan_peek(s, '-'))
            s->p++;
        if (!scan_digits(s))
            return false;
    }
    return s->p - start <= MAX_NUMBER_TEXT;
}

static long scan_hex4(struct scan *s)
{
    if (s->end - s->p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = *s->p++;
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* After "\u": a code unit, or a high surrogate followed by "\u" and a low one. */
static bool scan_unicode_escape(struct scan *s)
{
    long hi = scan_hex4(s);
    if (hi < 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
        return false;
    if (hi < 0xD800 || hi > 0xDBFF)
        return true;
    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
        return false;
    s->p += 2;
    long lo = scan_hex4(s);
    return lo >= 0xDC00 && lo <= 0xDFFF;
}

static bool scan_string(struct scan *s)
{
    s->p++;
    while (s->p < s->end) {
        s->p += json_plain_run((const char *)s->p, (size_t)(s->end - s->p));
        if (s->p == s->end)
            break;
        unsigned char c = *s->p++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        /* c is '\\' */
        if (s->p == s->end)
            return false;
        c = *s->p++;
        if (c == 'u') {
            if (!scan_unicode_escape(s))
                return false;
        } else if (!memchr("\"\\/bfnrt", c, 8)) {
            return false;
        }
    }
    return false;
}

static bool scan_literal(struct scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool scan_scalar(struct scan *s)
{
    switch (*s->p) {
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        return scan_literal(s, "null", 4);
    case '-':
        return scan_number(s);
    default:
        return *s->p >= '0' && *s->p <= '9' && scan_number(s);
    }
}

/* An object member's key and colon; the value follows. */
static bool scan_key(struct scan *s)
{
    scan_ws(s);
    if (!scan_peek(s, '"') || !scan_string(s))
        return false;
    scan_ws(s);
    if (!scan_peek(s, ':'))
        return false;
    s->p++;
    return true;
}

struct nesting {
    size_t depth;
    unsigned char is_object[(CJSON_NESTING_LIMIT + 7) / 8]; /* one bit per level */
};

static bool nesting_top_is_object(const struct nesting *st)
{
    size_t i = st->depth - 1;
    return st->is_object[i / 8] & (1u << (i % 8));
}

static void nesting_push(struct nesting *st, bool object)
{
    size_t i = st->depth++;
    unsigned char bit = (unsigned char)(1u << (i % 8));
    if (object)
        st->is_object[i / 8] |= bit;
    else
        st->is_object[i / 8] &= (unsigned char)~bit;
}

/* After a complete value: closes containers. Returns 1 when another value
 * follows, 0 at a valid end of text, -1 on a syntax error. */
static int scan_after_value(struct scan *s, struct nesting *st)
{
    for (;;) {
        scan_ws(s);
        if (st->depth == 0)
            return s->p == s->end ? 0 : -1;
        bool object = nesting_top_is_object(st);
        if (scan_peek(s, ',')) {
            s->p++;
            return !object || scan_key(s) ? 1 : -1;
        }
        if (!scan_peek(s, object ? '}' : ']'))
            return -1;
        s->p++;
        st->depth--;
    }
}

static bool json_text_valid(const char *text, size_t len)
{
    struct scan s = {(const unsigned char *)text, (const unsigned char *)text + len};
    struct nesting st = {0};
    for (;;) {
        scan_ws(&s);
        if (s.p == s.end)
            return false;
        unsigned char c = *s.p;
        if (c == '[' || c == '{') {
            if (st.depth == CJSON_NESTING_LIMIT)
                return false;
            s.p++;
            nesting_push(&st, c == '{');
            scan_ws(&s);
            if (scan_peek(&s, c == '{' ? '}' : ']')) {
                s.p++;
                st.depth--;
            } else if (c == '[' || scan_key(&s)) {
                continue;
            } else {
                return false;
            }
        } else if (!scan_scalar(&s)) {
            return false;
        }
        int rc = scan_after_value(&s, &st);
        if (rc <= 0)
            return rc == 0;
    }
}

static int json_parse(const char *text, size_t len, cJSON **out)
{
    if (!json_text_valid(text, len))
        return SIO_EINVAL;
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!json)
        return SIO_ENOMEM;
    struct scan s = {(const unsigned char *)end, (const unsigned char *)text + len};
    scan_ws(&s);
    if (s.p != s.end) {
        /* Unreachable unless cJSON and the check above disagree. */
        cJSON_Delete(json);
        return SIO_EINVAL;
    }
    *out = json;
    return SIO_OK;
}

/* ---- packets ---- */

static bool is_binary_type(enum sio_packet_type t)
{
    return t == SIO_BINARY_EVENT || t == SIO_BINARY_ACK;
}

static bool event_name_valid(const cJSON *name)
{
    if (cJSON_IsNumber(name))
        return isfinite(name->valuedouble); /* Infinity would be sent as null */
    if (!cJSON_IsString(name))
        return false;
    const char *s = name->valuestring ? name->valuestring : "";
    return !sio_event_name_reserved(s, strlen(s));
}

static bool data_valid(enum sio_packet_type type, const cJSON *data)
{
    switch (type) {
    case SIO_CONNECT:
        return !data || cJSON_IsObject(data);
    case SIO_DISCONNECT:
        return !data;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        return cJSON_IsArray(data) && event_name_valid(data->child);
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return cJSON_IsArray(data);
    case SIO_CONNECT_ERROR:
        return cJSON_IsString(data) || cJSON_IsObject(data);
    }
    return false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "<digits>-" after the type of a binary packet. Zero attachments is invalid,
 * as in the reference parser; counts too large for size_t are too many. */
static int parse_attachments(const char *in, size_t len, size_t *p, size_t max, size_t *count)
{
    size_t i = *p, n = 0;
    bool overflow = false;
    while (i < len && is_digit(in[i])) {
        size_t d = (size_t)(in[i++] - '0');
        if (n > (SIZE_MAX - d) / 10)
            overflow = true;
        else
            n = n * 10 + d;
    }
    if (i == *p || i == len || in[i] != '-')
        return SIO_EINVAL;
    if (!overflow && n == 0)
        return SIO_EINVAL;
    if (overflow || n > max)
        return SIO_ETOOMANY;
    *p = i + 1;
    *count = n;
    return SIO_OK;
}

static int parse_ack_id(const char *in, size_t len, size_t *p, int64_t *id)
{
    int64_t v = 0;
    size_t i = *p;
    for (; i < len && is_digit(in[i]); i++) {
        v = v * 10 + (in[i] - '0');
        if (v > MAX_ACK_ID)
            return SIO_EINVAL;
    }
    *p = i;
    *id = v;
    return SIO_OK;
}

int sio_packet_decode(const char *in, size_t len, const struct sio_limits *lim,
                      struct sio_packet *out)
{
    *out = (struct sio_packet){.nsp = "/", .nsp_len = 1, .id = SIO_NO_ACK};
    size_t max = lim && lim->max_attachments ? lim->max_attachments : SIO_DEFAULT_MAX_ATTACHMENTS;
    if (!in || len == 0 || in[0] < '0' || in[0] > '6')
        return SIO_EINVAL;
    struct sio_packet pk = *out;
    pk.type = (enum sio_packet_type)(in[0] - '0');
    size_t p = 1;
    int rc;
    if (is_binary_type(pk.type) && (rc = parse_attachments(in, len, &p, max, &pk.attachments)) < 0)
        return rc;
    if (p < len && in[p] == '/') {
        const char *comma = memchr(in + p, ',', len - p);
        size_t end = comma ? (size_t)(comma - in) : len;
        pk.nsp = in + p;
        pk.nsp_len = end - p;
        p = comma ? end + 1 : len;
    }
    /* Digits are read as an ack id whatever the type, like the reference
     * parser does: "0123" is a CONNECT carrying id 123, which the layer above
     * ignores. No valid payload starts with a digit, so this is unambiguous. */
    if (p < len && is_digit(in[p]) && (rc = parse_ack_id(in, len, &p, &pk.id)) < 0)
        return rc;
    if (p < len) {
        pk.data = in + p;
        pk.data_len = len - p;
        if ((rc = json_parse(pk.data, pk.data_len, &pk.json)) < 0)
            return rc;
    }
    if (!data_valid(pk.type, pk.json)) {
        cJSON_Delete(pk.json);
        return SIO_EINVAL;
    }
    *out = pk;
    return SIO_OK;
}

void sio_packet_cleanup(struct sio_packet *p)
{
    cJSON_Delete(p->json);
    p->json = NULL;
}

/* JSON.stringify's text: cJSON's printer would round large integers. */
static int append_json(struct buf *out, cJSON *data)
{
    int rc = json_print(data, out, NULL);
    return rc == PROTO_ENOMEM ? SIO_ENOMEM : rc < 0 ? SIO_EINVAL : SIO_OK;
}

static int append_packet(struct buf *out, enum sio_packet_type type, size_t attachments,
                         const char *nsp, size_t nsp_len, int64_t id, cJSON *data)
{
    if (buf_append_byte(out, (uint8_t)('0' + type)) < 0)
        return SIO_ENOMEM;
    if (is_binary_type(type) &&
        (buf_append_u64(out, attachments) < 0 || buf_append_byte(out, '-') < 0))
        return SIO_ENOMEM;
    if (!(nsp_len == 1 && nsp[0] == '/') &&
        (buf_append(out, nsp, nsp_len) < 0 || buf_append_byte(out, ',') < 0))
        return SIO_ENOMEM;
    if (id != SIO_NO_ACK && buf_append_u64(out, (uint64_t)id) < 0)
        return SIO_ENOMEM;
    return data ? append_json(out, data) : SIO_OK;
}

/* The encoder refuses what the decoder would refuse, so that every packet it
 * writes can be read back. A BINARY_* type with nothing to attach is sent as
 * the plain type, since a zero attachment count is invalid on the wire. The
 * header count is att->n: att is expected to hold only this packet's
 * attachments (placeholder nums index it). */
int sio_packet_encode(struct buf *out, enum sio_packet_type type, const char *nsp, size_t nsp_len,
                      int64_t id, cJSON *data, struct sio_attachments *att)
{
    if ((unsigned)type > SIO_BINARY_ACK)
        return SIO_EINVAL;
    if (!nsp || nsp_len == 0) {
        nsp = "/";
        nsp_len = 1;
    }
    if (nsp[0] != '/' || memchr(nsp, ',', nsp_len))
        return SIO_EINVAL;
    if (id != SIO_NO_ACK && (id < 0 || id > MAX_ACK_ID))
        return SIO_EINVAL;
    if (!data_valid(type, data))
        return SIO_EINVAL;
    bool may_attach =
        type == SIO_EVENT || type == SIO_ACK || type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK;
    size_t attachments = 0;
    if (may_attach && att) {
        int rc = sio_binary_deconstruct(data, att, 0);
        if (rc < 0)
            return rc;
        attachments = att->n;
    } else if (has_binary(data)) {
        return SIO_EINVAL;
    }
    if (may_attach) {
        bool event = type == SIO_EVENT || type == SIO_BINARY_EVENT;
        if (attachments)
            type = event ? SIO_BINARY_EVENT : SIO_BINARY_ACK;
        else
            type = event ? SIO_EVENT : SIO_ACK;
    }
    size_t start = out->len;
    int rc = append_packet(out, type, attachments, nsp, nsp_len, id, data);
    if (rc < 0)
        out->len = start;
    return rc;
}

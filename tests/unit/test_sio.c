/* Unit tests for protocol/sio: packet decode/encode and binary attachments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "sio.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PH(n)        "{\"_placeholder\":true,\"num\":" #n "}"

/* ---- helpers ---- */

static cJSON *parse(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    return j;
}

static void assert_json(const cJSON *j, const char *expected)
{
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(s);
    assert_string_equal(s, expected);
    cJSON_free(s);
}

static void assert_bin(const cJSON *item, const void *bytes, size_t len)
{
    size_t n = 99;
    const uint8_t *p = sio_binary_data(item, &n);
    assert_true(sio_is_binary(item));
    assert_non_null(p);
    assert_int_equal(n, len);
    if (len)
        assert_memory_equal(p, bytes, len);
}

static void assert_buf(const struct buf *b, const char *expected)
{
    assert_int_equal(b->len, strlen(expected));
    assert_memory_equal(b->data, expected, b->len);
}

/* Structural equality that also compares binary nodes by content. */
static bool trees_equal(const cJSON *a, const cJSON *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type)
        return false;
    if ((a->string == NULL) != (b->string == NULL) ||
        (a->string && strcmp(a->string, b->string) != 0))
        return false;
    if (sio_is_binary(a)) {
        size_t la, lb;
        const uint8_t *pa = sio_binary_data(a, &la), *pb = sio_binary_data(b, &lb);
        return la == lb && memcmp(pa, pb, la) == 0;
    }
    if (cJSON_IsArray(a) || cJSON_IsObject(a)) {
        const cJSON *ca = a->child, *cb = b->child;
        for (; ca && cb; ca = ca->next, cb = cb->next)
            if (!trees_equal(ca, cb))
                return false;
        return ca == NULL && cb == NULL;
    }
    return cJSON_Compare(a, b, true);
}

static int decode_str(const char *in, struct sio_packet *p)
{
    return sio_packet_decode(in, strlen(in), NULL, p);
}

/* ---- decoding ---- */

struct valid_case {
    const char *in;
    enum sio_packet_type type;
    const char *nsp;
    int64_t id;
    size_t attachments;
    const char *data; /* raw JSON slice, NULL when absent */
    const char *json; /* compact print of the parsed JSON, NULL when absent */
};

static const struct valid_case valid_cases[] = {
    {"0", SIO_CONNECT, "/", SIO_NO_ACK, 0, NULL, NULL},
    {"0{\"token\":\"123\"}", SIO_CONNECT, "/", SIO_NO_ACK, 0, "{\"token\":\"123\"}",
     "{\"token\":\"123\"}"},
    {"0/admin,", SIO_CONNECT, "/admin", SIO_NO_ACK, 0, NULL, NULL},
    {"0/admin,{\"a\":[1,{}]}", SIO_CONNECT, "/admin", SIO_NO_ACK, 0, "{\"a\":[1,{}]}",
     "{\"a\":[1,{}]}"},
    /* "40/custom" and "41/custom" on the wire: the namespace runs to the end. */
    {"0/custom", SIO_CONNECT, "/custom", SIO_NO_ACK, 0, NULL, NULL},
    {"1/custom", SIO_DISCONNECT, "/custom", SIO_NO_ACK, 0, NULL, NULL},
    {"1", SIO_DISCONNECT, "/", SIO_NO_ACK, 0, NULL, NULL},
    {"1/admin,", SIO_DISCONNECT, "/admin", SIO_NO_ACK, 0, NULL, NULL},
    {"0/", SIO_CONNECT, "/", SIO_NO_ACK, 0, NULL, NULL},
    {"0/,", SIO_CONNECT, "/", SIO_NO_ACK, 0, NULL, NULL},
    /* Ack ids are read for every type, like the reference parser does. */
    {"0123", SIO_CONNECT, "/", 123, 0, NULL, NULL},
    {"01{}", SIO_CONNECT, "/", 1, 0, "{}", "{}"},
    {"1/admin,7", SIO_DISCONNECT, "/admin", 7, 0, NULL, NULL},
    {"2[\"foo\"]", SIO_EVENT, "/", SIO_NO_ACK, 0, "[\"foo\"]", "[\"foo\"]"},
    {"2/admin,[\"bar\"]", SIO_EVENT, "/admin", SIO_NO_ACK, 0, "[\"bar\"]", "[\"bar\"]"},
    {"212[\"foo\"]", SIO_EVENT, "/", 12, 0, "[\"foo\"]", "[\"foo\"]"},
    {"2/admin,13[\"foo\",{\"x\":null}]", SIO_EVENT, "/admin", 13, 0, "[\"foo\",{\"x\":null}]",
     "[\"foo\",{\"x\":null}]"},
    {"20[\"a\"]", SIO_EVENT, "/", 0, 0, "[\"a\"]", "[\"a\"]"},
    {"2007[\"a\"]", SIO_EVENT, "/", 7, 0, "[\"a\"]", "[\"a\"]"},
    {"29007199254740991[\"a\"]", SIO_EVENT, "/", 9007199254740991LL, 0, "[\"a\"]", "[\"a\"]"},
    {"2[1,\"x\"]", SIO_EVENT, "/", SIO_NO_ACK, 0, "[1,\"x\"]", "[1,\"x\"]"},
    {"2[-2.5e3]", SIO_EVENT, "/", SIO_NO_ACK, 0, "[-2.5e3]", "[-2500]"},
    {"2[\"message-back\",1,\"2\",{\"3\":[true]}]", SIO_EVENT, "/", SIO_NO_ACK, 0,
     "[\"message-back\",1,\"2\",{\"3\":[true]}]", "[\"message-back\",1,\"2\",{\"3\":[true]}]"},
    {"2[\"h\xc3\xa9llo\",\"\\u00e9\\ud83d\\ude00\",\"\xe6\x97\xa5\"]", SIO_EVENT, "/", SIO_NO_ACK,
     0, "[\"h\xc3\xa9llo\",\"\\u00e9\\ud83d\\ude00\",\"\xe6\x97\xa5\"]",
     "[\"h\xc3\xa9llo\",\"\xc3\xa9\xf0\x9f\x98\x80\",\"\xe6\x97\xa5\"]"},
    {"2[\"Connect\"]", SIO_EVENT, "/", SIO_NO_ACK, 0, "[\"Connect\"]", "[\"Connect\"]"},
    {"2[\"connected\"]", SIO_EVENT, "/", SIO_NO_ACK, 0, "[\"connected\"]", "[\"connected\"]"},
    {"2 [\"ws\"]\r\n", SIO_EVENT, "/", SIO_NO_ACK, 0, " [\"ws\"]\r\n", "[\"ws\"]"},
    {"2[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", SIO_EVENT, "/", SIO_NO_ACK, 0,
     "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "[\"\\\"\\\\/\\b\\f\\n\\r\\t\"]"},
    {"312[]", SIO_ACK, "/", 12, 0, "[]", "[]"},
    {"3/admin,13[\"bar\"]", SIO_ACK, "/admin", 13, 0, "[\"bar\"]", "[\"bar\"]"},
    {"3[]", SIO_ACK, "/", SIO_NO_ACK, 0, "[]", "[]"},
    {"4{\"message\":\"Not authorized\"}", SIO_CONNECT_ERROR, "/", SIO_NO_ACK, 0,
     "{\"message\":\"Not authorized\"}", "{\"message\":\"Not authorized\"}"},
    {"4/admin,\"nope\"", SIO_CONNECT_ERROR, "/admin", SIO_NO_ACK, 0, "\"nope\"", "\"nope\""},
    /* At this level "42{}" is a CONNECT_ERROR with id 2, not the Engine.IO
     * message "42{}" (that one is "2{}" here, and invalid). */
    {"42{}", SIO_CONNECT_ERROR, "/", 2, 0, "{}", "{}"},
    {"51-[\"baz\"," PH(0) "]", SIO_BINARY_EVENT, "/", SIO_NO_ACK, 1, "[\"baz\"," PH(0) "]",
     "[\"baz\"," PH(0) "]"},
    {"52-/admin,[\"baz\"," PH(0) "," PH(1) "]", SIO_BINARY_EVENT, "/admin", SIO_NO_ACK, 2,
     "[\"baz\"," PH(0) "," PH(1) "]", "[\"baz\"," PH(0) "," PH(1) "]"},
    {"51-14[\"foo\"," PH(0) "]", SIO_BINARY_EVENT, "/", 14, 1, "[\"foo\"," PH(0) "]",
     "[\"foo\"," PH(0) "]"},
    {"501-[\"a\"]", SIO_BINARY_EVENT, "/", SIO_NO_ACK, 1, "[\"a\"]", "[\"a\"]"},
    {"510-[\"a\"]", SIO_BINARY_EVENT, "/", SIO_NO_ACK, 10, "[\"a\"]", "[\"a\"]"},
    {"61-15[\"bar\"," PH(0) "]", SIO_BINARY_ACK, "/", 15, 1, "[\"bar\"," PH(0) "]",
     "[\"bar\"," PH(0) "]"},
    {"61-/admin,789[" PH(0) "]", SIO_BINARY_ACK, "/admin", 789, 1, "[" PH(0) "]", "[" PH(0) "]"},
};

static void check_valid(const struct valid_case *c)
{
    struct sio_packet p;
    size_t len = strlen(c->in);
    int rc = sio_packet_decode(c->in, len, NULL, &p);
    if (rc != SIO_OK)
        fail_msg("%s: %s", c->in, sio_strerror(rc));
    assert_int_equal(p.type, c->type);
    assert_int_equal(p.nsp_len, strlen(c->nsp));
    assert_memory_equal(p.nsp, c->nsp, p.nsp_len);
    if (p.nsp_len > 1)
        assert_true(p.nsp > c->in && p.nsp < c->in + len); /* a slice of the input */
    assert_int_equal(p.id, c->id);
    assert_int_equal(p.attachments, c->attachments);
    if (c->data) {
        assert_int_equal(p.data_len, strlen(c->data));
        assert_memory_equal(p.data, c->data, p.data_len);
        assert_ptr_equal(p.data + p.data_len, c->in + len);
        assert_json(p.json, c->json);
    } else {
        assert_int_equal(p.data_len, 0);
        assert_null(p.json);
    }
    sio_packet_cleanup(&p);
    assert_null(p.json);
    sio_packet_cleanup(&p); /* safe twice */
}

static void test_decode_valid(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(valid_cases); i++)
        check_valid(&valid_cases[i]);
}

struct invalid_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int rc;
};

static const struct invalid_case invalid_cases[] = {
    {"", 0, SIO_EINVAL},
    {"7", 0, SIO_EINVAL},
    {"9[\"a\"]", 0, SIO_EINVAL},
    {"a", 0, SIO_EINVAL},
    {"-2[\"a\"]", 0, SIO_EINVAL},
    {" 2[\"a\"]", 0, SIO_EINVAL},
    /* types and payload shapes */
    {"2", 0, SIO_EINVAL},
    {"2{}", 0, SIO_EINVAL},
    {"2abc[\"a\"]", 0, SIO_EINVAL},
    {"2[]", 0, SIO_EINVAL},
    {"2[null]", 0, SIO_EINVAL},
    {"2[true]", 0, SIO_EINVAL},
    {"2[{}]", 0, SIO_EINVAL},
    {"2[[\"a\"]]", 0, SIO_EINVAL},
    {"2\"a\"", 0, SIO_EINVAL},
    {"2[1e400]", 0, SIO_EINVAL},
    {"2/admin,", 0, SIO_EINVAL},
    {"2/admin", 0, SIO_EINVAL},
    {"0[]", 0, SIO_EINVAL},
    {"0\"x\"", 0, SIO_EINVAL},
    {"0null", 0, SIO_EINVAL},
    {"1{}", 0, SIO_EINVAL},
    {"1[]", 0, SIO_EINVAL},
    {"1/admin,\"x\"", 0, SIO_EINVAL},
    {"3", 0, SIO_EINVAL},
    {"3{}", 0, SIO_EINVAL},
    {"3\"x\"", 0, SIO_EINVAL},
    {"312", 0, SIO_EINVAL},
    {"4", 0, SIO_EINVAL},
    {"4abc", 0, SIO_EINVAL},
    {"4[]", 0, SIO_EINVAL},
    {"41", 0, SIO_EINVAL},
    {"4null", 0, SIO_EINVAL},
    {"4 ", 0, SIO_EINVAL},
    /* binary headers */
    {"5", 0, SIO_EINVAL},
    {"5-[\"a\"]", 0, SIO_EINVAL},
    {"51[\"a\"]", 0, SIO_EINVAL},
    {"51", 0, SIO_EINVAL},
    {"5a-[\"a\"]", 0, SIO_EINVAL},
    {"50-[\"a\"]", 0, SIO_EINVAL},
    {"51-", 0, SIO_EINVAL},
    {"51-{}", 0, SIO_EINVAL},
    {"51-[\"connect\"]", 0, SIO_EINVAL},
    {"61-{}", 0, SIO_EINVAL},
    {"6", 0, SIO_EINVAL},
    {"511-[\"a\"]", 0, SIO_ETOOMANY},
    {"5100-[\"a\"]", 0, SIO_ETOOMANY},
    {"599999999999999999999999999999-[\"a\"]", 0, SIO_ETOOMANY},
    {"599999999999999999999999999999[\"a\"]", 0, SIO_EINVAL},
    /* ack ids */
    {"29007199254740992[\"a\"]", 0, SIO_EINVAL},
    {"2999999999999999999999999999[\"a\"]", 0, SIO_EINVAL},
    /* JSON that cJSON or JSON.parse would refuse, and trailing garbage */
    {"2[\"a\"]x", 0, SIO_EINVAL},
    {"2[\"a\"][\"b\"]", 0, SIO_EINVAL},
    {"2[\"a\"]\0", 7, SIO_EINVAL},
    {"2[\"a\"\0]", 7, SIO_EINVAL},
    {"2[\"a\",]", 0, SIO_EINVAL},
    {"2[\"a\" \"b\"]", 0, SIO_EINVAL},
    {"2[\"a\"", 0, SIO_EINVAL},
    {"2[\"a", 0, SIO_EINVAL},
    {"2[\"a\\", 0, SIO_EINVAL},
    {"2[\"a\",{\"k\" 1}]", 0, SIO_EINVAL},
    {"2[\"a\",{1:2}]", 0, SIO_EINVAL},
    {"2[\"a\",{\"k\":}]", 0, SIO_EINVAL},
    {"2[\"a\",{\"k\":1,}]", 0, SIO_EINVAL},
    {"2[\"a\",{\"k\":1]", 0, SIO_EINVAL},
    {"2['a']", 0, SIO_EINVAL},
    {"2[\"a\",tru]", 0, SIO_EINVAL},
    {"2[\"a\",True]", 0, SIO_EINVAL},
    {"2[\"a\",NaN]", 0, SIO_EINVAL},
    {"2[\"a\",01]", 0, SIO_EINVAL},
    {"2[\"a\",1.]", 0, SIO_EINVAL},
    {"2[\"a\",.5]", 0, SIO_EINVAL},
    {"2[\"a\",-]", 0, SIO_EINVAL},
    {"2[\"a\",+1]", 0, SIO_EINVAL},
    {"2[\"a\",1e]", 0, SIO_EINVAL},
    {"2[\"a\",1e+]", 0, SIO_EINVAL},
    {"2[\"a\",0x10]", 0, SIO_EINVAL},
    {"2[\"a\",1234567890123456789012345678901234567890123456789012345678901234]", 0, SIO_EINVAL},
    {"2[\"a\",\x01]", 0, SIO_EINVAL},
    {"2[\"a\",\x0b\"b\"]", 0, SIO_EINVAL},
    {"2[\"a\x01\"]", 0, SIO_EINVAL},
    {"2[\"a\tb\"]", 0, SIO_EINVAL},
    {"2[\"\\x\"]", 0, SIO_EINVAL},
    {"2[\"\\u12\"]", 0, SIO_EINVAL},
    {"2[\"\\uZZZZ\"]", 0, SIO_EINVAL},
    {"2[\"\\ud800\"]", 0, SIO_EINVAL},
    {"2[\"\\ud800\\u0041\"]", 0, SIO_EINVAL},
    {"2[\"\\udc00\"]", 0, SIO_EINVAL},
    {"2\xef\xbb\xbf[\"a\"]", 0, SIO_EINVAL},
    {"2\x01[\"a\"]", 0, SIO_EINVAL},
};

static void test_decode_invalid(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(invalid_cases); i++) {
        const struct invalid_case *c = &invalid_cases[i];
        struct sio_packet p;
        size_t len = c->len ? c->len : strlen(c->in);
        int rc = sio_packet_decode(c->in, len, NULL, &p);
        if (rc != c->rc)
            fail_msg("case %zu (%.*s): got %d, want %d", i, (int)len, c->in, rc, c->rc);
        assert_null(p.json);
    }
}

static void test_decode_null_input(void **state)
{
    struct sio_packet p;
    assert_int_equal(sio_packet_decode(NULL, 0, NULL, &p), SIO_EINVAL);
    assert_null(p.json);
}

static void test_reserved_event_names(void **state)
{
    static const char *reserved[] = {"connect",       "connect_error", "disconnect",
                                     "disconnecting", "newListener",   "removeListener"};
    for (size_t i = 0; i < ARRAY_LEN(reserved); i++) {
        assert_true(sio_event_name_reserved(reserved[i], strlen(reserved[i])));
        char in[64];
        snprintf(in, sizeof(in), "2[\"%s\",1]", reserved[i]);
        struct sio_packet p;
        assert_int_equal(decode_str(in, &p), SIO_EINVAL);
        snprintf(in, sizeof(in), "51-7[\"%s\"," PH(0) "]", reserved[i]);
        assert_int_equal(decode_str(in, &p), SIO_EINVAL);
        /* fine as data, and as an ack's first element */
        snprintf(in, sizeof(in), "2[\"x\",\"%s\"]", reserved[i]);
        assert_int_equal(decode_str(in, &p), SIO_OK);
        sio_packet_cleanup(&p);
        snprintf(in, sizeof(in), "3[\"%s\"]", reserved[i]);
        assert_int_equal(decode_str(in, &p), SIO_OK);
        sio_packet_cleanup(&p);
    }
    assert_false(sio_event_name_reserved("connec", 6));
    assert_false(sio_event_name_reserved("Connect", 7));
    assert_false(sio_event_name_reserved("connect ", 8));
    assert_false(sio_event_name_reserved("", 0));
    assert_true(sio_event_name_reserved("connectx", 7)); /* length decides */
    struct sio_packet p;
    assert_int_equal(decode_str("2[42]", &p), SIO_OK); /* numbers are allowed */
    assert_true(cJSON_IsNumber(p.json->child));
    sio_packet_cleanup(&p);
}

static void test_decode_limits(void **state)
{
    struct sio_packet p;
    struct sio_limits one = {.max_attachments = 1};
    struct sio_limits twenty = {.max_attachments = 20};
    struct sio_limits dflt = {.max_attachments = 0};
    const char *two = "52-[\"a\"]";
    assert_int_equal(sio_packet_decode(two, strlen(two), &one, &p), SIO_ETOOMANY);
    assert_int_equal(sio_packet_decode("51-[\"a\"]", 8, &one, &p), SIO_OK);
    sio_packet_cleanup(&p);
    assert_int_equal(sio_packet_decode("515-[\"a\"]", 9, &twenty, &p), SIO_OK);
    assert_int_equal(p.attachments, 15);
    sio_packet_cleanup(&p);
    assert_int_equal(sio_packet_decode("511-[\"a\"]", 9, &dflt, &p), SIO_ETOOMANY);
    assert_int_equal(sio_packet_decode("511-[\"a\"]", 9, NULL, &p), SIO_ETOOMANY);
    assert_int_equal(sio_packet_decode("510-[\"a\"]", 9, &dflt, &p), SIO_OK);
    sio_packet_cleanup(&p);
}

static char *nested_event(size_t depth)
{
    /* ["a",[[...]]]: the outer array is one level, the inner ones the rest. */
    size_t n = depth - 1;
    char *s = malloc(2 * n + 16);
    assert_non_null(s);
    char *w = s;
    w += sprintf(w, "2[\"a\",");
    memset(w, '[', n);
    w += n;
    memset(w, ']', n);
    w += n;
    strcpy(w, "]");
    return s;
}

static void test_decode_nesting_limit(void **state)
{
    struct sio_packet p;
    char *ok = nested_event(CJSON_NESTING_LIMIT);
    assert_int_equal(decode_str(ok, &p), SIO_OK);
    sio_packet_cleanup(&p);
    free(ok);
    char *deep = nested_event(CJSON_NESTING_LIMIT + 1);
    assert_int_equal(decode_str(deep, &p), SIO_EINVAL);
    free(deep);
}

/* Every prefix of a valid packet, in an allocation of exactly that size, so
 * that the sanitizers see any read past the end. */
static void test_decode_prefixes(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(valid_cases); i++) {
        const char *in = valid_cases[i].in;
        size_t len = strlen(in);
        for (size_t n = 0; n <= len; n++) {
            char *copy = malloc(n ? n : 1);
            assert_non_null(copy);
            memcpy(copy, in, n);
            struct sio_packet p;
            int rc = sio_packet_decode(copy, n, NULL, &p);
            assert_true(rc == SIO_OK || rc == SIO_EINVAL);
            if (n == len)
                assert_int_equal(rc, SIO_OK);
            sio_packet_cleanup(&p);
            free(copy);
        }
    }
}

/* ---- encoding ---- */

struct encode_case {
    enum sio_packet_type type;
    const char *nsp;
    int64_t id;
    const char *json;
    const char *expected;
};

static const struct encode_case encode_cases[] = {
    {SIO_CONNECT, NULL, SIO_NO_ACK, NULL, "0"},
    {SIO_CONNECT, "/", SIO_NO_ACK, "{\"sid\":\"x\"}", "0{\"sid\":\"x\"}"},
    {SIO_CONNECT, "/admin", SIO_NO_ACK, NULL, "0/admin,"},
    {SIO_CONNECT, "/admin", SIO_NO_ACK, "{ \"sid\" : \"y\" }", "0/admin,{\"sid\":\"y\"}"},
    {SIO_DISCONNECT, NULL, SIO_NO_ACK, NULL, "1"},
    {SIO_DISCONNECT, "/admin", SIO_NO_ACK, NULL, "1/admin,"},
    {SIO_EVENT, NULL, SIO_NO_ACK, "[\"foo\"]", "2[\"foo\"]"},
    {SIO_EVENT, "/admin", SIO_NO_ACK, "[\"bar\"]", "2/admin,[\"bar\"]"},
    {SIO_EVENT, NULL, 12, "[\"foo\"]", "212[\"foo\"]"},
    {SIO_EVENT, "/admin", 13, "[\"foo\"]", "2/admin,13[\"foo\"]"},
    {SIO_EVENT, NULL, 0, "[7]", "20[7]"},
    {SIO_EVENT, NULL, 9007199254740991LL, "[\"a\"]", "29007199254740991[\"a\"]"},
    {SIO_BINARY_EVENT, NULL, SIO_NO_ACK, "[\"plain\"]", "2[\"plain\"]"},
    {SIO_ACK, NULL, 12, "[]", "312[]"},
    {SIO_ACK, "/admin", 13, "[\"bar\"]", "3/admin,13[\"bar\"]"},
    {SIO_BINARY_ACK, NULL, 1, "[]", "31[]"},
    {SIO_CONNECT_ERROR, NULL, SIO_NO_ACK, "{\"message\":\"Not authorized\"}",
     "4{\"message\":\"Not authorized\"}"},
    {SIO_CONNECT_ERROR, "/random", SIO_NO_ACK, "{\"message\":\"Invalid namespace\"}",
     "4/random,{\"message\":\"Invalid namespace\"}"},
    {SIO_CONNECT_ERROR, NULL, SIO_NO_ACK, "\"err\"", "4\"err\""},
    {SIO_EVENT, NULL, SIO_NO_ACK, "[\"k\", {\"b\": 1, \"a\": [true, null, 1.5, \"\\u00e9\"]}]",
     "2[\"k\",{\"b\":1,\"a\":[true,null,1.5,\"\xc3\xa9\"]}]"},
};

static void test_encode_table(void **state)
{
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < ARRAY_LEN(encode_cases); i++) {
        const struct encode_case *c = &encode_cases[i];
        cJSON *data = c->json ? parse(c->json) : NULL;
        struct sio_attachments att;
        sio_attachments_init(&att);
        buf_reset(&out);
        int rc = sio_packet_encode(&out, c->type, c->nsp, c->nsp ? strlen(c->nsp) : 0, c->id, data,
                                   &att);
        assert_int_equal(rc, SIO_OK);
        assert_buf(&out, c->expected);
        assert_int_equal(att.n, 0);
        /* att may be NULL when there is nothing binary */
        buf_reset(&out);
        rc = sio_packet_encode(&out, c->type, c->nsp, c->nsp ? strlen(c->nsp) : 0, c->id, data,
                               NULL);
        assert_int_equal(rc, SIO_OK);
        assert_buf(&out, c->expected);
        cJSON_Delete(data);
        sio_attachments_cleanup(&att);
    }
    buf_cleanup(&out);
}

static void test_encode_appends(void **state)
{
    struct buf out;
    buf_init(&out);
    assert_int_equal(buf_append_str(&out, "abc"), 0);
    cJSON *data = parse("[\"x\"]");
    assert_int_equal(sio_packet_encode(&out, SIO_EVENT, "/", 1, 5, data, NULL), SIO_OK);
    assert_buf(&out, "abc25[\"x\"]");
    cJSON_Delete(data);
    buf_cleanup(&out);
}

static void test_encode_large_json(void **state)
{
    /* Larger than any spare room: cJSON allocates, the result is appended. */
    char *big = malloc(20001);
    assert_non_null(big);
    memset(big, 'z', 20000);
    big[20000] = '\0';
    cJSON *data = cJSON_CreateArray();
    assert_non_null(data);
    cJSON_AddItemToArray(data, cJSON_CreateString("big"));
    cJSON_AddItemToArray(data, cJSON_CreateString(big));
    struct buf out;
    buf_init(&out);
    assert_int_equal(sio_packet_encode(&out, SIO_EVENT, NULL, 0, SIO_NO_ACK, data, NULL), SIO_OK);
    assert_int_equal(out.len, 1 + 20000 + 10);
    assert_memory_equal(out.data, "2[\"big\",\"zzz", 12);
    assert_memory_equal(out.data + out.len - 3, "z\"]", 3);
    /* Again into the now large buffer: printed in place, same bytes. */
    size_t first = out.len;
    assert_int_equal(sio_packet_encode(&out, SIO_EVENT, NULL, 0, SIO_NO_ACK, data, NULL), SIO_OK);
    assert_int_equal(out.len, 2 * first);
    assert_memory_equal(out.data, out.data + first, first);
    cJSON_Delete(data);
    buf_cleanup(&out);
    free(big);
}

struct encode_error_case {
    int type;
    const char *nsp;
    int64_t id;
    const char *json;
};

static const struct encode_error_case encode_errors[] = {
    {7, NULL, SIO_NO_ACK, NULL},
    {-1, NULL, SIO_NO_ACK, NULL},
    {SIO_CONNECT, "admin", SIO_NO_ACK, NULL},
    {SIO_CONNECT, "/a,b", SIO_NO_ACK, NULL},
    {SIO_EVENT, NULL, -2, "[\"a\"]"},
    {SIO_EVENT, NULL, 9007199254740992LL, "[\"a\"]"},
    {SIO_EVENT, NULL, SIO_NO_ACK, NULL},
    {SIO_EVENT, NULL, SIO_NO_ACK, "{}"},
    {SIO_EVENT, NULL, SIO_NO_ACK, "[]"},
    {SIO_EVENT, NULL, SIO_NO_ACK, "[\"disconnect\"]"},
    {SIO_BINARY_EVENT, NULL, SIO_NO_ACK, "[null]"},
    {SIO_ACK, NULL, 1, NULL},
    {SIO_ACK, NULL, 1, "{}"},
    {SIO_CONNECT, NULL, SIO_NO_ACK, "[]"},
    {SIO_DISCONNECT, NULL, SIO_NO_ACK, "{}"},
    {SIO_CONNECT_ERROR, NULL, SIO_NO_ACK, NULL},
    {SIO_CONNECT_ERROR, NULL, SIO_NO_ACK, "[]"},
};

static void test_encode_errors(void **state)
{
    struct buf out;
    buf_init(&out);
    assert_int_equal(buf_append_str(&out, "keep"), 0);
    for (size_t i = 0; i < ARRAY_LEN(encode_errors); i++) {
        const struct encode_error_case *c = &encode_errors[i];
        cJSON *data = c->json ? parse(c->json) : NULL;
        int rc = sio_packet_encode(&out, (enum sio_packet_type)c->type, c->nsp,
                                   c->nsp ? strlen(c->nsp) : 0, c->id, data, NULL);
        if (rc != SIO_EINVAL)
            fail_msg("encode error case %zu: got %d", i, rc);
        assert_buf(&out, "keep");
        cJSON_Delete(data);
    }
    buf_cleanup(&out);
}

static void test_encode_binary_rules(void **state)
{
    struct buf out;
    buf_init(&out);
    struct sio_attachments att;
    sio_attachments_init(&att);

    /* Binary data without somewhere to put it. */
    cJSON *ev = parse("[\"up\"]");
    cJSON_AddItemToArray(ev, sio_binary_new("ab", 2));
    assert_int_equal(sio_packet_encode(&out, SIO_EVENT, NULL, 0, SIO_NO_ACK, ev, NULL), SIO_EINVAL);
    assert_true(sio_is_binary(ev->child->next)); /* untouched */
    assert_int_equal(out.len, 0);
    cJSON_Delete(ev);

    /* Binary data in packet types that cannot carry attachments. */
    cJSON *conn = parse("{\"a\":[1]}");
    cJSON_AddItemToArray(cJSON_GetObjectItem(conn, "a"), sio_binary_new("x", 1));
    assert_int_equal(sio_packet_encode(&out, SIO_CONNECT, NULL, 0, SIO_NO_ACK, conn, &att),
                     SIO_EINVAL);
    assert_int_equal(att.n, 0);
    cJSON_Delete(conn);
    cJSON *err = parse("{}");
    cJSON_AddItemToObject(err, "data", sio_binary_new("x", 1));
    assert_int_equal(sio_packet_encode(&out, SIO_CONNECT_ERROR, NULL, 0, SIO_NO_ACK, err, &att),
                     SIO_EINVAL);
    assert_int_equal(att.n, 0);
    assert_int_equal(out.len, 0);
    cJSON_Delete(err);

    sio_attachments_cleanup(&att);
    buf_cleanup(&out);
}

static cJSON *message_with_two_buffers(void)
{
    cJSON *data = parse("[\"message\"]");
    cJSON_AddItemToArray(data, sio_binary_new("\x01\x02", 2));
    cJSON_AddItemToArray(data, sio_binary_new("\x03\x00\x04", 3));
    return data;
}

static void test_encode_binary_event(void **state)
{
    struct buf out;
    buf_init(&out);
    struct sio_attachments att;
    sio_attachments_init(&att);
    cJSON *data = message_with_two_buffers();
    assert_int_equal(sio_packet_encode(&out, SIO_EVENT, NULL, 0, SIO_NO_ACK, data, &att), SIO_OK);
    assert_buf(&out, "52-[\"message\"," PH(0) "," PH(1) "]");
    assert_int_equal(att.n, 2);
    assert_bin(att.items[0], "\x01\x02", 2);
    assert_bin(att.items[1], "\x03\x00\x04", 3);
    /* data keeps the placeholders */
    assert_json(data, "[\"message\"," PH(0) "," PH(1) "]");
    cJSON_Delete(data);
    sio_attachments_cleanup(&att);

    buf_reset(&out);
    data = message_with_two_buffers();
    assert_int_equal(sio_packet_encode(&out, SIO_ACK, "/admin", 6, 789, data, &att), SIO_OK);
    assert_buf(&out, "62-/admin,789[\"message\"," PH(0) "," PH(1) "]");
    assert_int_equal(att.n, 2);
    assert_bin(att.items[1], "\x03\x00\x04", 3);
    cJSON_Delete(data);
    sio_attachments_cleanup(&att);

    /* BINARY_ACK requested and binary present: stays binary. */
    buf_reset(&out);
    data = parse("[]");
    cJSON_AddItemToArray(data, sio_binary_new("", 0));
    assert_int_equal(sio_packet_encode(&out, SIO_BINARY_ACK, NULL, 0, 3, data, &att), SIO_OK);
    assert_buf(&out, "61-3[" PH(0) "]");
    assert_bin(att.items[0], "", 0);
    cJSON_Delete(data);
    sio_attachments_cleanup(&att);
    buf_cleanup(&out);
}

/* ---- round trips ---- */

static void test_roundtrip_message_back(void **state)
{
    const char *wire = "2[\"message-back\",1,\"2\",{\"3\":[true]}]";
    struct sio_packet p;
    assert_int_equal(decode_str(wire, &p), SIO_OK);
    struct buf out;
    buf_init(&out);
    assert_int_equal(sio_packet_encode(&out, p.type, p.nsp, p.nsp_len, p.id, p.json, NULL), SIO_OK);
    assert_buf(&out, wire);
    sio_packet_cleanup(&p);
    buf_cleanup(&out);
}

static void test_roundtrip_canonical(void **state)
{
    static const char *wires[] = {
        "0",
        "0{\"sid\":\"x\"}",
        "0/admin,",
        "0/admin,{\"token\":\"123\"}",
        "1",
        "1/admin,",
        "2[\"foo\"]",
        "2/admin,[\"bar\"]",
        "212[\"foo\"]",
        "2/admin,13[\"foo\"]",
        "312[]",
        "3/admin,13[\"bar\"]",
        "4{\"message\":\"Not authorized\"}",
        "4\"err\"",
        "2[1,2.5,-3,1e+300,null,false,\"\\\"\\\\\\n\",{},[]]",
        "2[\"\xe6\x97\xa5\xe6\x9c\xac\",{\"\xc3\xa9\":\"\xf0\x9f\x98\x80\"}]",
        "2[\"a\"," PH(0) "]", /* a non-binary packet keeps placeholder-like objects */
    };
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < ARRAY_LEN(wires); i++) {
        struct sio_packet p;
        assert_int_equal(decode_str(wires[i], &p), SIO_OK);
        buf_reset(&out);
        assert_int_equal(sio_packet_encode(&out, p.type, p.nsp, p.nsp_len, p.id, p.json, NULL),
                         SIO_OK);
        assert_buf(&out, wires[i]);
        sio_packet_cleanup(&p);
    }
    buf_cleanup(&out);
}

static void test_roundtrip_binary_packets(void **state)
{
    static const char *wires[] = {
        "51-[\"baz\"," PH(0) "]",
        "52-/admin,[\"baz\"," PH(0) "," PH(1) "]",
        "51-14[\"foo\"," PH(0) "]",
        "61-15[\"bar\"," PH(0) "]",
        "63-/x,1[{\"a\":[" PH(0) ",{\"b\":" PH(1) "}]}," PH(2) "]",
    };
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < ARRAY_LEN(wires); i++) {
        struct sio_packet p;
        assert_int_equal(decode_str(wires[i], &p), SIO_OK);
        struct sio_attachments in, att;
        sio_attachments_init(&in);
        sio_attachments_init(&att);
        for (size_t k = 0; k < p.attachments; k++) {
            uint8_t bytes[3] = {(uint8_t)k, 0, (uint8_t)(0xff - k)};
            assert_int_equal(sio_attachments_add(&in, bytes, k + 1), SIO_OK);
        }
        assert_int_equal(sio_binary_reconstruct(p.json, &in), SIO_OK);
        assert_int_equal(in.n, 0);
        buf_reset(&out);
        assert_int_equal(sio_packet_encode(&out, p.type, p.nsp, p.nsp_len, p.id, p.json, &att),
                         SIO_OK);
        assert_buf(&out, wires[i]);
        assert_int_equal(att.n, p.attachments);
        for (size_t k = 0; k < att.n; k++) {
            uint8_t bytes[3] = {(uint8_t)k, 0, (uint8_t)(0xff - k)};
            assert_bin(att.items[k], bytes, k + 1);
        }
        sio_attachments_cleanup(&in);
        sio_attachments_cleanup(&att);
        sio_packet_cleanup(&p);
    }
    buf_cleanup(&out);
}

/* ---- binary nodes, deconstruct, reconstruct ---- */

static void test_binary_node(void **state)
{
    cJSON *b = sio_binary_new("\x00\x01\x02", 3);
    assert_non_null(b);
    assert_bin(b, "\x00\x01\x02", 3);
    assert_true(b->type & SIO_CJSON_BINARY);
    assert_int_equal(b->type & 0xFF, cJSON_Invalid);
    assert_null(cJSON_PrintUnformatted(b)); /* cJSON cannot print it */
    cJSON *holder = cJSON_CreateArray();
    cJSON_AddItemToArray(holder, b);
    cJSON_Delete(holder); /* frees the node and its bytes */

    cJSON *empty = sio_binary_new(NULL, 0);
    assert_non_null(empty);
    assert_bin(empty, "", 0);
    cJSON_Delete(empty);

    size_t len = 42;
    cJSON *s = cJSON_CreateString("abc");
    assert_false(sio_is_binary(s));
    assert_null(sio_binary_data(s, &len));
    assert_int_equal(len, 0);
    cJSON_Delete(s);
    assert_false(sio_is_binary(NULL));
    len = 42;
    assert_null(sio_binary_data(NULL, &len));
    assert_int_equal(len, 0);
}

static void test_attachments_add(void **state)
{
    struct sio_attachments a;
    sio_attachments_init(&a);
    for (size_t i = 0; i < 50; i++) {
        uint8_t byte = (uint8_t)i;
        assert_int_equal(sio_attachments_add(&a, &byte, 1), SIO_OK);
    }
    assert_int_equal(a.n, 50);
    assert_true(a.cap >= 50);
    for (size_t i = 0; i < 50; i++) {
        uint8_t byte = (uint8_t)i;
        assert_bin(a.items[i], &byte, 1);
    }
    sio_attachments_cleanup(&a);
    assert_null(a.items);
    assert_int_equal(a.n, 0);
    sio_attachments_cleanup(&a);
}

/* {"a":[1,{"b":B0,"c":[B1]}],"d":B2,"e":"x"} */
static cJSON *nested_tree(void)
{
    cJSON *root = parse("{\"a\":[1,{\"c\":[]}]}");
    cJSON *inner = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "a"), 1);
    /* insert "b" before "c" to keep document order b, c */
    cJSON *b = sio_binary_new("B0", 2);
    b->string = strcpy(cJSON_malloc(2), "b");
    b->next = inner->child;
    b->prev = inner->child->prev;
    inner->child->prev = b;
    inner->child = b;
    cJSON_AddItemToArray(cJSON_GetObjectItem(inner, "c"), sio_binary_new("B1", 2));
    cJSON_AddItemToObject(root, "d", sio_binary_new("B2", 2));
    cJSON_AddStringToObject(root, "e", "x");
    return root;
}

static void test_deconstruct_nested_order(void **state)
{
    cJSON *tree = nested_tree();
    cJSON *orig = sio_json_duplicate(tree);
    assert_non_null(orig);
    struct sio_attachments a;
    sio_attachments_init(&a);
    assert_int_equal(sio_binary_deconstruct(tree, &a, 0), 3);
    assert_json(tree,
                "{\"a\":[1,{\"b\":" PH(0) ",\"c\":[" PH(1) "]}],\"d\":" PH(2) ",\"e\":\"x\"}");
    assert_int_equal(a.n, 3);
    assert_bin(a.items[0], "B0", 2);
    assert_bin(a.items[1], "B1", 2);
    assert_bin(a.items[2], "B2", 2);
    assert_null(a.items[0]->string); /* detached: no key, no siblings */
    assert_null(a.items[0]->next);
    assert_null(a.items[0]->prev);

    assert_int_equal(sio_binary_reconstruct(tree, &a), SIO_OK);
    assert_int_equal(a.n, 0);
    assert_true(trees_equal(tree, orig));
    /* the tree is still well formed for cJSON */
    cJSON_AddNumberToObject(tree, "f", 1);
    assert_int_equal(cJSON_GetArraySize(tree), 4);

    cJSON_Delete(tree);
    cJSON_Delete(orig);
    sio_attachments_cleanup(&a);
}

static void test_deconstruct_limits_and_append(void **state)
{
    struct sio_attachments a;
    sio_attachments_init(&a);
    cJSON *tree = nested_tree();
    assert_int_equal(sio_binary_deconstruct(tree, &a, 2), SIO_ETOOMANY);
    assert_int_equal(a.n, 2); /* partly done; the caller deletes both */
    cJSON_Delete(tree);
    sio_attachments_cleanup(&a);

    tree = nested_tree();
    assert_int_equal(sio_binary_deconstruct(tree, &a, 3), 3);
    cJSON_Delete(tree);
    sio_attachments_cleanup(&a);

    /* Numbers continue from what att already holds. */
    assert_int_equal(sio_attachments_add(&a, "z", 1), SIO_OK);
    tree = parse("[\"x\"]");
    cJSON_AddItemToArray(tree, sio_binary_new("y", 1));
    assert_int_equal(sio_binary_deconstruct(tree, &a, 0), 1);
    assert_json(tree, "[\"x\"," PH(1) "]");
    assert_int_equal(a.n, 2);
    cJSON_Delete(tree);
    sio_attachments_cleanup(&a);

    /* Nothing binary, and no tree at all. */
    tree = parse("{\"a\":[1,2,{\"b\":null}]}");
    assert_int_equal(sio_binary_deconstruct(tree, &a, 1), 0);
    assert_int_equal(sio_binary_deconstruct(NULL, &a, 1), 0);
    assert_int_equal(a.n, 0);
    cJSON_Delete(tree);
}

static void test_deconstruct_root(void **state)
{
    struct sio_attachments a;
    sio_attachments_init(&a);
    cJSON *root = sio_binary_new("root", 4);
    assert_int_equal(sio_binary_deconstruct(root, &a, 0), 1);
    assert_json(root, PH(0));
    assert_bin(a.items[0], "root", 4);
    assert_int_equal(sio_binary_reconstruct(root, &a), SIO_OK);
    assert_bin(root, "root", 4);
    cJSON_Delete(root);
    sio_attachments_cleanup(&a);
}

struct recon_case {
    const char *json;
    size_t attachments;
    int rc;
    const char *after; /* compact print after success, binaries shown as null */
};

static const struct recon_case recon_cases[] = {
    {"[" PH(1) "]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true,\"num\":-1}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true,\"num\":0.5}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true,\"num\":1e300}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true,\"num\":\"0\"}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true,\"num\":null}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[{\"_placeholder\":true,\"num\":[0]}]", 1, SIO_EPLACEHOLDER, NULL},
    {"[" PH(0) "]", 0, SIO_EPLACEHOLDER, NULL},
    {"[" PH(0) "]", 2, SIO_EPLACEHOLDER, NULL}, /* attachment 1 unused */
    {"[]", 1, SIO_EPLACEHOLDER, NULL},
    {"[\"x\"," PH(1) "," PH(0) "]", 2, SIO_OK, "[\"x\",null,null]"},
    {"[" PH(0) "," PH(0) "]", 1, SIO_EPLACEHOLDER, NULL}, /* index named twice */
    {"[{\"num\":0,\"_placeholder\":true,\"extra\":{\"_placeholder\":true,\"num\":9}}]", 1, SIO_OK,
     "[null]"},
    {"[{\"_placeholder\":false,\"num\":0,\"in\":" PH(0) "}]", 1, SIO_OK,
     "[{\"_placeholder\":false,\"num\":0,\"in\":null}]"},
    {"[{\"_placeholder\":\"true\",\"num\":0},{\"_placeholder\":1,\"num\":0}]", 0, SIO_OK,
     "[{\"_placeholder\":\"true\",\"num\":0},{\"_placeholder\":1,\"num\":0}]"},
    {"[[" PH(0) "]]", 1, SIO_OK, "[[null]]"},
    {"[\"_placeholder\",true]", 0, SIO_OK, "[\"_placeholder\",true]"},
};

static void binaries_to_null(cJSON *item)
{
    if (sio_is_binary(item)) {
        cJSON_free(item->valuestring);
        item->valuestring = NULL;
        item->type = cJSON_NULL;
        return;
    }
    for (cJSON *c = item->child; c; c = c->next)
        binaries_to_null(c);
}

/* Prints a tree with binary nodes shown as null, for comparisons. */
static void assert_json_binaries_null(const cJSON *tree, const char *expected)
{
    cJSON *copy = sio_json_duplicate(tree);
    assert_non_null(copy);
    binaries_to_null(copy);
    assert_json(copy, expected);
    cJSON_Delete(copy);
}

static void test_reconstruct_cases(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(recon_cases); i++) {
        const struct recon_case *c = &recon_cases[i];
        cJSON *tree = parse(c->json);
        struct sio_attachments a;
        sio_attachments_init(&a);
        for (size_t k = 0; k < c->attachments; k++)
            assert_int_equal(sio_attachments_add(&a, "ab", 2), SIO_OK);
        int rc = sio_binary_reconstruct(tree, &a);
        if (rc != c->rc)
            fail_msg("reconstruct case %zu (%s): got %d, want %d", i, c->json, rc, c->rc);
        if (rc == SIO_OK) {
            assert_int_equal(a.n, 0);
            assert_json_binaries_null(tree, c->after);
        }
        cJSON_Delete(tree);
        sio_attachments_cleanup(&a);
    }
}

/* An index named twice is refused: copying would let one packet multiply an
 * attachment's memory. */
static void test_reconstruct_reused_index(void **state)
{
    cJSON *tree = parse("[" PH(0) ",{\"k\":" PH(0) "}]");
    struct sio_attachments a;
    sio_attachments_init(&a);
    assert_int_equal(sio_attachments_add(&a, "\x00xyz", 4), SIO_OK);
    assert_int_equal(sio_binary_reconstruct(tree, &a), SIO_EPLACEHOLDER);
    cJSON_Delete(tree);
    sio_attachments_cleanup(&a);
}

/* Numbers keep every digit JavaScript would print (cJSON's printer rounds
 * 2^53 - 1), and use JavaScript's layout. */
static void test_encode_numbers_like_javascript(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"[\"n\",9007199254740991,-9007199254740991]",
         "2[\"n\",9007199254740991,-9007199254740991]"},
        {"[\"n\",1e21,1e-7,0.000001,123.456,-0,1e300]",
         "2[\"n\",1e+21,1e-7,0.000001,123.456,0,1e+300]"},
        {"[\"n\",100,1.5e20,0.1,5e-324]", "2[\"n\",100,150000000000000000000,0.1,5e-324]"},
        {"[\"s\",\"a\\u0001\\n\\\"\\\\\u00e9\"]", "2[\"s\",\"a\\u0001\\n\\\"\\\\\u00e9\"]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *tree = parse(cases[i].in);
        struct buf out;
        buf_init(&out);
        assert_int_equal(sio_packet_encode(&out, SIO_EVENT, NULL, 0, SIO_NO_ACK, tree, NULL),
                         SIO_OK);
        assert_int_equal(out.len, strlen(cases[i].out));
        assert_memory_equal(out.data, cases[i].out, out.len);
        buf_cleanup(&out);
        cJSON_Delete(tree);
    }
}

static void test_reconstruct_without_tree(void **state)
{
    struct sio_attachments a;
    sio_attachments_init(&a);
    assert_int_equal(sio_binary_reconstruct(NULL, &a), SIO_OK);
    assert_int_equal(sio_attachments_add(&a, "x", 1), SIO_OK);
    assert_int_equal(sio_binary_reconstruct(NULL, &a), SIO_EPLACEHOLDER);
    sio_attachments_cleanup(&a);
}

/* A decoded non-binary packet with placeholder-looking data is left alone:
 * only the caller decides to reconstruct, and only for binary packets. */
static void test_placeholder_in_plain_event(void **state)
{
    struct sio_packet p;
    assert_int_equal(decode_str("2[\"a\"," PH(0) "]", &p), SIO_OK);
    assert_int_equal(p.type, SIO_EVENT);
    assert_int_equal(p.attachments, 0);
    assert_true(cJSON_IsObject(p.json->child->next));
    sio_packet_cleanup(&p);
}

static void test_duplicate(void **state)
{
    cJSON *tree = nested_tree();
    cJSON_AddNumberToObject(tree, "n", 1.5);
    cJSON_AddTrueToObject(tree, "t");
    cJSON_AddNullToObject(tree, "z");
    cJSON_AddItemToObject(tree, "empty", sio_binary_new("", 0));
    cJSON *dup = sio_json_duplicate(tree);
    assert_non_null(dup);
    assert_true(trees_equal(tree, dup));
    const cJSON *d_orig = cJSON_GetObjectItem(tree, "d");
    const cJSON *d_dup = cJSON_GetObjectItem(dup, "d");
    size_t l;
    assert_ptr_not_equal(sio_binary_data(d_orig, &l), sio_binary_data(d_dup, &l));
    assert_ptr_not_equal(d_orig->string, d_dup->string);
    cJSON_Delete(tree);
    assert_bin(cJSON_GetObjectItem(dup, "d"), "B2", 2);
    /* the copy's child lists are usable by cJSON */
    cJSON_AddStringToObject(dup, "last", "v");
    assert_string_equal(dup->child->prev->string, "last");
    cJSON_Delete(dup);

    assert_null(sio_json_duplicate(NULL));
    cJSON *keyed = sio_binary_new("k", 1);
    keyed->string = strcpy(cJSON_malloc(4), "key");
    cJSON *kd = sio_json_duplicate(keyed);
    assert_non_null(kd);
    assert_string_equal(kd->string, "key");
    assert_bin(kd, "k", 1);
    cJSON_Delete(keyed);
    cJSON_Delete(kd);

    cJSON *plain = parse("[1,{\"a\":\"b\"},[],\"s\"]");
    cJSON *pd = sio_json_duplicate(plain);
    assert_true(cJSON_Compare(plain, pd, true));
    cJSON_Delete(plain);
    cJSON_Delete(pd);
}

/* ---- allocation failures (through cJSON's hooks) ---- */

static long alloc_budget = -1; /* < 0: unlimited */

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(n);
}

static int binary_scenario(struct buf *out)
{
    static const char wire[] = "52-/admin,7[\"up\"," PH(0) ",{\"k\":[" PH(1) "]},\"x\"]";
    struct sio_packet p;
    struct sio_attachments in, att;
    sio_attachments_init(&in);
    sio_attachments_init(&att);
    cJSON *dup = NULL;
    int rc = sio_packet_decode(wire, sizeof(wire) - 1, NULL, &p);
    if (rc < 0)
        goto done;
    if ((rc = sio_attachments_add(&in, "one", 3)) < 0 ||
        (rc = sio_attachments_add(&in, "two", 3)) < 0)
        goto done;
    if ((rc = sio_binary_reconstruct(p.json, &in)) < 0)
        goto done;
    dup = sio_json_duplicate(p.json);
    if (!dup) {
        rc = SIO_ENOMEM;
        goto done;
    }
    rc = sio_packet_encode(out, SIO_EVENT, "/admin", 6, 7, dup, &att);
    if (rc == SIO_OK) {
        assert_buf(out, "52-/admin,7[\"up\"," PH(0) ",{\"k\":[" PH(1) "]},\"x\"]");
        assert_int_equal(att.n, 2);
        assert_bin(att.items[1], "two", 3);
    } else {
        assert_int_equal(out->len, 0);
    }
done:
    cJSON_Delete(dup);
    sio_packet_cleanup(&p);
    sio_attachments_cleanup(&in);
    sio_attachments_cleanup(&att);
    return rc;
}

static void test_alloc_failures(void **state)
{
    cJSON_Hooks hooks = {failing_malloc, free};
    cJSON_InitHooks(&hooks);
    struct buf out;
    buf_init(&out);
    int rc = SIO_ENOMEM;
    long budget;
    for (budget = 0; budget < 1000 && rc != SIO_OK; budget++) {
        alloc_budget = budget;
        buf_reset(&out);
        rc = binary_scenario(&out);
        assert_true(rc == SIO_OK || rc == SIO_ENOMEM);
    }
    alloc_budget = -1;
    cJSON_InitHooks(NULL);
    assert_int_equal(rc, SIO_OK);
    assert_true(budget > 10); /* the loop did hit failures */
    buf_cleanup(&out);
}

static void test_strerror(void **state)
{
    static const int codes[] = {SIO_OK, SIO_EINVAL, SIO_ETOOMANY, SIO_EPLACEHOLDER, SIO_ENOMEM};
    for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
        assert_non_null(sio_strerror(codes[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(sio_strerror(codes[i]), sio_strerror(codes[j]));
    }
    assert_non_null(sio_strerror(-12345));
}

/* ---- JSON strings: the word-at-a-time scan ---- */

static bool special_in_string(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* Every byte value at every position of strings up to 40 bytes, in a heap
 * block of exactly that size (so a read past the end shows under ASan). */
static void test_json_plain_run(void **state)
{
    for (size_t n = 0; n <= 40; n++) {
        char *s = malloc(n ? n : 1);
        assert_non_null(s);
        memset(s, 'a', n);
        assert_int_equal(json_plain_run(s, n), n);
        for (size_t k = 0; k < n; k++) {
            for (int b = 0; b < 256; b++) {
                memset(s, 'a', n);
                s[k] = (char)b;
                size_t want = special_in_string((unsigned char)b) ? k : n;
                assert_int_equal(json_plain_run(s, n), want);
            }
        }
        free(s);
    }
}

/* The escapes JSON.stringify writes, one character at every position of a
 * 30-byte string: what the printer writes, and what the decoder accepts. */
static void test_json_string_escapes_everywhere(void **state)
{
    static const char hex[] = "0123456789abcdef";
    for (int c = 1; c < 0x80; c++) {
        for (size_t k = 0; k < 30; k++) {
            char raw[31];
            memset(raw, 'x', 30);
            raw[30] = '\0';
            raw[k] = (char)c;
            char want[64];
            size_t w = 0;
            want[w++] = '"';
            for (size_t i = 0; i < 30; i++) {
                unsigned char ch = (unsigned char)raw[i];
                const char *short_esc = ch == '"'    ? "\\\""
                                        : ch == '\\' ? "\\\\"
                                        : ch == '\b' ? "\\b"
                                        : ch == '\f' ? "\\f"
                                        : ch == '\n' ? "\\n"
                                        : ch == '\r' ? "\\r"
                                        : ch == '\t' ? "\\t"
                                                     : NULL;
                if (short_esc) {
                    memcpy(want + w, short_esc, 2);
                    w += 2;
                } else if (ch < 0x20) {
                    memcpy(want + w, "\\u00", 4);
                    want[w + 4] = hex[ch >> 4];
                    want[w + 5] = hex[ch & 15];
                    w += 6;
                } else {
                    want[w++] = (char)ch;
                }
            }
            want[w++] = '"';
            cJSON *str = cJSON_CreateString(raw);
            assert_non_null(str);
            struct buf out;
            buf_init(&out);
            assert_int_equal(json_print(str, &out, NULL), 0);
            assert_int_equal(out.len, w);
            assert_memory_equal(out.data, want, w);
            cJSON_Delete(str);
            buf_cleanup(&out);

            /* The printed form decodes back; the raw control byte does not. */
            char pkt[80];
            int len = snprintf(pkt, sizeof(pkt), "2[%.*s]", (int)w, want);
            struct sio_packet p;
            assert_int_equal(sio_packet_decode(pkt, (size_t)len, NULL, &p), SIO_OK);
            assert_string_equal(cJSON_GetArrayItem(p.json, 0)->valuestring, raw);
            sio_packet_cleanup(&p);
            if (c < 0x20) {
                len = snprintf(pkt, sizeof(pkt), "2[\"%s\"]", raw);
                assert_int_equal(sio_packet_decode(pkt, (size_t)len, NULL, &p), SIO_EINVAL);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid),
        cmocka_unit_test(test_decode_invalid),
        cmocka_unit_test(test_decode_null_input),
        cmocka_unit_test(test_reserved_event_names),
        cmocka_unit_test(test_decode_limits),
        cmocka_unit_test(test_decode_nesting_limit),
        cmocka_unit_test(test_decode_prefixes),
        cmocka_unit_test(test_encode_table),
        cmocka_unit_test(test_encode_appends),
        cmocka_unit_test(test_encode_large_json),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_encode_binary_rules),
        cmocka_unit_test(test_encode_binary_event),
        cmocka_unit_test(test_roundtrip_message_back),
        cmocka_unit_test(test_roundtrip_canonical),
        cmocka_unit_test(test_roundtrip_binary_packets),
        cmocka_unit_test(test_binary_node),
        cmocka_unit_test(test_attachments_add),
        cmocka_unit_test(test_deconstruct_nested_order),
        cmocka_unit_test(test_deconstruct_limits_and_append),
        cmocka_unit_test(test_deconstruct_root),
        cmocka_unit_test(test_reconstruct_cases),
        cmocka_unit_test(test_reconstruct_reused_index),
        cmocka_unit_test(test_encode_numbers_like_javascript),
        cmocka_unit_test(test_reconstruct_without_tree),
        cmocka_unit_test(test_placeholder_in_plain_event),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_json_plain_run),
        cmocka_unit_test(test_json_string_escapes_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for protocol/eio (Engine.IO v4 packets and polling payloads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "buf.h"
#include "eio.h"

/* A heap copy of exactly n bytes, so ASan catches any read past the end. */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void test_packet_decode_types(void **state)
{
    for (int t = EIO_OPEN; t <= EIO_NOOP; t++) {
        uint8_t in[4] = {(uint8_t)('0' + t), 'a', 'b', 'c'};
        struct eio_packet p;
        memset(&p, 0xff, sizeof(p));
        assert_int_equal(eio_packet_decode(in, sizeof(in), &p), EIO_OK);
        assert_int_equal(p.type, t);
        assert_false(p.binary);
        assert_ptr_equal(p.data, in + 1);
        assert_int_equal(p.len, 3);
    }
    struct eio_packet p;
    assert_int_equal(eio_packet_decode((const uint8_t *)"4", 1, &p), EIO_OK);
    assert_int_equal(p.type, EIO_MESSAGE);
    assert_int_equal(p.len, 0);
    assert_int_equal(eio_packet_decode((const uint8_t *)"3probe", 6, &p), EIO_OK);
    assert_int_equal(p.type, EIO_PONG);
    assert_memory_equal(p.data, "probe", 5);
}

static void test_packet_decode_invalid(void **state)
{
    static const char *bad[] = {"7", "9", "b", "bAQ==", "x4", "/", ":", "\x1e", " 4", "\xff"};
    struct eio_packet p;
    assert_int_equal(eio_packet_decode((const uint8_t *)"", 0, &p), EIO_EINVAL);
    assert_int_equal(eio_packet_decode(NULL, 0, &p), EIO_EINVAL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(eio_packet_decode((const uint8_t *)bad[i], strlen(bad[i]), &p),
                         EIO_EINVAL);
}

/* protocol.md §C.12: a text message then a binary one. */
static void test_payload_example(void **state)
{
    static const char body[] = "4hello\x1e"
                               "bAQIDBA==";
    uint8_t *b = dup_exact(body, sizeof(body) - 1);
    struct eio_payload_reader r;
    struct eio_packet p;
    eio_payload_reader_init(&r, b, sizeof(body) - 1);
    assert_int_equal(eio_payload_next(&r, &p), EIO_OK);
    assert_int_equal(p.type, EIO_MESSAGE);
    assert_false(p.binary);
    assert_int_equal(p.len, 5);
    assert_memory_equal(p.data, "hello", 5);
    assert_int_equal(eio_payload_next(&r, &p), EIO_OK);
    assert_int_equal(p.type, EIO_MESSAGE);
    assert_true(p.binary);
    assert_int_equal(p.len, 4);
    assert_memory_equal(p.data, "\x01\x02\x03\x04", 4);
    assert_true(p.data > b && p.data < b + sizeof(body) - 1);
    assert_int_equal(eio_payload_next(&r, &p), EIO_END);
    assert_int_equal(eio_payload_next(&r, &p), EIO_END);
    free(b);
}

static void test_payload_every_type(void **state)
{
    static const char body[] = "0{}\x1e"
                               "1\x1e"
                               "2\x1e"
                               "3probe\x1e"
                               "4\x1e"
                               "5\x1e"
                               "6\x1e"
                               "b";
    static const int types[] = {0, 1, 2, 3, 4, 5, 6, 4};
    static const size_t lens[] = {2, 0, 0, 5, 0, 0, 0, 0};
    uint8_t *b = dup_exact(body, sizeof(body) - 1);
    struct eio_payload_reader r;
    struct eio_packet p;
    eio_payload_reader_init(&r, b, sizeof(body) - 1);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        assert_int_equal(eio_payload_next(&r, &p), EIO_OK);
        assert_int_equal(p.type, types[i]);
        assert_int_equal(p.len, lens[i]);
        assert_int_equal(p.binary, i == 7);
    }
    assert_int_equal(eio_payload_next(&r, &p), EIO_END);
    free(b);
}

struct bad_payload {
    const char *body;
    size_t len;
    int good; /* packets yielded before the error */
};

#define BP(s, good)                                                                                \
    {                                                                                              \
        s, sizeof(s) - 1, good                                                                     \
    }

static void test_payload_invalid(void **state)
{
    static const struct bad_payload table[] = {
        BP("", 0),
        BP("\x1e", 0),
        BP("\x1e"
           "4a",
           0),
        BP("4a\x1e", 1),
        BP("4a\x1e\x1e"
           "4b",
           1),
        BP("4a\x1e"
           "9",
           1),
        BP("7", 0),
        BP("x", 0),
        BP("bAQ=x", 0),
        BP("bAQ=", 0),
        BP("b!!!!", 0),
        BP("bA", 0),
        BP("bAQ==\n", 0),
        BP("b====", 0),
        BP("2\x1e"
           "3\x1e"
           "bAQ==\x1e"
           "b*",
           3),
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        uint8_t *b = dup_exact(table[i].body, table[i].len);
        struct eio_payload_reader r;
        struct eio_packet p;
        eio_payload_reader_init(&r, b, table[i].len);
        for (int k = 0; k < table[i].good; k++)
            assert_int_equal(eio_payload_next(&r, &p), EIO_OK);
        assert_int_equal(eio_payload_next(&r, &p), EIO_EINVAL);
        /* An error is not followed by a clean end. */
        assert_int_equal(eio_payload_next(&r, &p), EIO_EINVAL);
        free(b);
    }
    struct eio_payload_reader r;
    struct eio_packet p;
    eio_payload_reader_init(&r, NULL, 0);
    assert_int_equal(eio_payload_next(&r, &p), EIO_EINVAL);
}

static void test_packet_encode(void **state)
{
    struct buf b;
    buf_init(&b);
    for (int t = EIO_OPEN; t <= EIO_NOOP; t++) {
        buf_reset(&b);
        assert_int_equal(eio_packet_encode(&b, (enum eio_packet_type)t, "xy", 2), EIO_OK);
        assert_int_equal(b.len, 3);
        assert_int_equal(b.data[0], '0' + t);
        assert_memory_equal(b.data + 1, "xy", 2);
    }
    buf_reset(&b);
    assert_int_equal(eio_packet_encode(&b, EIO_PING, NULL, 0), EIO_OK);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], '2');
    assert_int_equal(eio_packet_encode(&b, (enum eio_packet_type)7, "x", 1), EIO_EINVAL);
    assert_int_equal(eio_packet_encode(&b, (enum eio_packet_type) - 1, "x", 1), EIO_EINVAL);
    assert_int_equal(b.len, 1);
    buf_cleanup(&b);
}

static void test_payload_append(void **state)
{
    struct buf b;
    buf_init(&b);
    struct eio_packet text = {EIO_MESSAGE, false, (const uint8_t *)"hello", 5};
    struct eio_packet bin = {EIO_MESSAGE, true, (const uint8_t *)"\x01\x02\x03\x04", 4};
    assert_int_equal(eio_payload_append(&b, &text), EIO_OK);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "4hello", 6);
    assert_int_equal(eio_payload_append(&b, &bin), EIO_OK);
    static const char want[] = "4hello\x1e"
                               "bAQIDBA==";
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);

    /* Refused without touching the buffer. */
    struct eio_packet sep = {EIO_MESSAGE, false,
                             (const uint8_t *)"a\x1e"
                                              "b",
                             3};
    struct eio_packet bad_type = {(enum eio_packet_type)8, false, NULL, 0};
    struct eio_packet bin_ping = {EIO_PING, true, (const uint8_t *)"x", 1};
    assert_int_equal(eio_payload_append(&b, &sep), EIO_EINVAL);
    assert_int_equal(eio_payload_append(&b, &bad_type), EIO_EINVAL);
    assert_int_equal(eio_payload_append(&b, &bin_ping), EIO_EINVAL);
    assert_int_equal(b.len, sizeof(want) - 1);

    /* The server's "close while no GET is pending" answer (§D.21). */
    buf_reset(&b);
    struct eio_packet noop = {EIO_NOOP, false, NULL, 0}, close = {EIO_CLOSE, false, NULL, 0};
    assert_int_equal(eio_payload_append(&b, &noop), EIO_OK);
    assert_int_equal(eio_payload_append(&b, &close), EIO_OK);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data,
                        "6\x1e"
                        "1",
                        3);
    buf_cleanup(&b);
}

#define TEXT(s) (const uint8_t *)(s), sizeof(s) - 1

static void test_payload_round_trip(void **state)
{
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    const struct eio_packet in[] = {
        {EIO_MESSAGE, true, all, 0},       {EIO_MESSAGE, false, TEXT("42[\"chat\",\"h\xc3\xa9\"]")},
        {EIO_MESSAGE, true, all, 1},       {EIO_MESSAGE, true, all + 1, 2},
        {EIO_MESSAGE, true, all + 3, 3},   {EIO_PING, false, NULL, 0},
        {EIO_MESSAGE, true, all, 256},     {EIO_OPEN, false, TEXT("{}")},
        {EIO_MESSAGE, false, TEXT("b")},   {EIO_UPGRADE, false, NULL, 0},
        {EIO_MESSAGE, true, all + 250, 5},
    };
    const size_t n = sizeof(in) / sizeof(in[0]);
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(eio_payload_append(&b, &in[i]), EIO_OK);
    uint8_t *body = dup_exact(b.data, b.len);
    struct eio_payload_reader r;
    eio_payload_reader_init(&r, body, b.len);
    for (size_t i = 0; i < n; i++) {
        struct eio_packet p;
        assert_int_equal(eio_payload_next(&r, &p), EIO_OK);
        assert_int_equal(p.type, in[i].type);
        assert_int_equal(p.binary, in[i].binary);
        assert_int_equal(p.len, in[i].len);
        if (p.len)
            assert_memory_equal(p.data, in[i].data, p.len);
    }
    struct eio_packet p;
    assert_int_equal(eio_payload_next(&r, &p), EIO_END);
    free(body);
    buf_cleanup(&b);
}

static void test_open_encode(void **state)
{
    static const char want[] =
        "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],"
        "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}";
    const char *const ws[] = {"websocket"};
    struct buf b;
    buf_init(&b);
    assert_int_equal(eio_open_encode(&b, "lv_VI97HAXpY6yYWAAAC", ws, 1, 25000, 20000, 1000000),
                     EIO_OK);
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);

    /* The JSON after the type digit parses, with the keys in order. */
    assert_int_equal(buf_append_byte(&b, 0), 0);
    cJSON *j = cJSON_Parse((const char *)b.data + 1);
    assert_non_null(j);
    assert_string_equal(j->child->string, "sid");
    assert_string_equal(j->child->next->next->next->next->string, "maxPayload");
    cJSON_Delete(j);

    buf_reset(&b);
    assert_int_equal(eio_open_encode(&b, "abc", NULL, 0, 1, 2, UINT64_MAX), EIO_OK);
    static const char none[] = "0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":1,"
                               "\"pingTimeout\":2,\"maxPayload\":18446744073709551615}";
    assert_int_equal(b.len, sizeof(none) - 1);
    assert_memory_equal(b.data, none, b.len);

    buf_reset(&b);
    const char *const two[] = {"websocket", "webtransport"};
    assert_int_equal(eio_open_encode(&b, "s", two, 2, 0, 0, 0), EIO_OK);
    static const char both[] = "0{\"sid\":\"s\",\"upgrades\":[\"websocket\",\"webtransport\"],"
                               "\"pingInterval\":0,\"pingTimeout\":0,\"maxPayload\":0}";
    assert_int_equal(b.len, sizeof(both) - 1);
    assert_memory_equal(b.data, both, b.len);

    /* Strings that would break the JSON are refused, buffer untouched. */
    const char *const bad_up[] = {"web\"socket"};
    size_t len = b.len;
    assert_int_equal(eio_open_encode(&b, "a\"b", ws, 1, 1, 1, 1), EIO_EINVAL);
    assert_int_equal(eio_open_encode(&b, "a\\b", ws, 1, 1, 1, 1), EIO_EINVAL);
    assert_int_equal(eio_open_encode(&b, "a\nb", ws, 1, 1, 1, 1), EIO_EINVAL);
    assert_int_equal(eio_open_encode(&b, NULL, ws, 1, 1, 1, 1), EIO_EINVAL);
    assert_int_equal(eio_open_encode(&b, "ok", bad_up, 1, 1, 1, 1), EIO_EINVAL);
    assert_int_equal(b.len, len);
    buf_cleanup(&b);
}

static void test_strerror(void **state)
{
    static const int codes[] = {EIO_OK, EIO_END, EIO_EINVAL, EIO_ENOMEM, -42};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(eio_strerror(codes[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(eio_strerror(codes[i]), eio_strerror(codes[j]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packet_decode_types), cmocka_unit_test(test_packet_decode_invalid),
        cmocka_unit_test(test_payload_example),     cmocka_unit_test(test_payload_every_type),
        cmocka_unit_test(test_payload_invalid),     cmocka_unit_test(test_packet_encode),
        cmocka_unit_test(test_payload_append),      cmocka_unit_test(test_payload_round_trip),
        cmocka_unit_test(test_open_encode),         cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

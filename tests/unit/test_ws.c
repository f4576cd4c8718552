/* Unit tests for protocol/ws and protocol/utf8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "utf8.h"
#include "ws.h"

/* First-byte bits of a frame. */
#define FIN  0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

/* put_frame() flags. */
#define LEN_16   1u /* force the 16-bit length form */
#define LEN_64   2u /* force the 64-bit length form */
#define UNMASKED 4u
#define RAW      8u /* append the payload bytes verbatim, b0 ignored */

static const char zeros[300];

/* Appends a client frame. The mask key depends on where the frame starts, so
 * consecutive frames use different keys. */
static void put_frame(struct buf *out, uint8_t b0, const void *payload, size_t len, unsigned flags)
{
    if (flags & RAW) {
        assert_int_equal(buf_append(out, payload, len), 0);
        return;
    }
    const uint8_t key[4] = {(uint8_t)(0x37 + out->len), 0xfa, 0x21, (uint8_t)(0x3d ^ out->len)};
    bool masked = !(flags & UNMASKED);
    uint8_t mbit = masked ? 0x80 : 0;
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = b0;
    if (len < 126 && !(flags & (LEN_16 | LEN_64))) {
        h[hl++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff && !(flags & LEN_64)) {
        h[hl++] = mbit | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (masked) {
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    assert_int_equal(buf_append(out, h, hl), 0);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(buf_append_byte(out, (uint8_t)(p[i] ^ (masked ? key[i & 3] : 0))), 0);
}

/* Turns an encoded server frame into the same frame as a client would send
 * it (mask bit, key, masked payload). */
static void to_client(const uint8_t *srv, size_t n, struct buf *out)
{
    assert_true(n >= 2);
    size_t hl = (srv[1] & 0x7f) == 126 ? 4 : (srv[1] & 0x7f) == 127 ? 10 : 2;
    assert_true(n >= hl);
    uint64_t len = srv[1] & 0x7f;
    if (hl > 2) {
        len = 0;
        for (size_t i = 2; i < hl; i++)
            len = len << 8 | srv[i];
    }
    assert_int_equal(len, n - hl);
    put_frame(out, srv[0], srv + hl, n - hl, hl == 10 ? LEN_64 : hl == 4 ? LEN_16 : 0);
}

/* Appends a canonical record of an event, so that runs can be compared. */
static void log_event(struct buf *log, const struct ws_event *ev)
{
    uint8_t h[9] = {(uint8_t)ev->type, (uint8_t)ev->opcode, ev->compressed,
                    (uint8_t)(ev->close_code >> 8), (uint8_t)ev->close_code};
    for (int i = 0; i < 4; i++)
        h[5 + i] = (uint8_t)(ev->len >> (8 * (3 - i)));
    assert_int_equal(buf_append(log, h, sizeof(h)), 0);
    assert_int_equal(buf_append(log, ev->data, ev->len), 0);
}

static void log_expected(struct buf *log, enum ws_event_type type, enum ws_opcode op,
                         bool compressed, uint16_t code, const void *data, size_t len)
{
    struct ws_event ev = {.type = type,
                          .opcode = op,
                          .compressed = compressed,
                          .data = data,
                          .len = len,
                          .close_code = code};
    log_event(log, &ev);
}

/* Feeds one segment (copied to an exact-size allocation, so ASan catches any
 * read outside it) until it is used up or an error occurs. Checks the
 * progress guarantee on every call. */
static int feed(struct ws_decoder *d, const uint8_t *src, size_t n, struct buf *log)
{
    uint8_t *seg = malloc(n ? n : 1);
    assert_non_null(seg);
    if (n)
        memcpy(seg, src, n);
    int rc = 0;
    size_t off = 0;
    while (off < n) {
        size_t used = (size_t)-1;
        struct ws_event ev;
        rc = ws_decode(d, seg + off, n - off, &used, &ev);
        assert_true(used <= n - off);
        if (rc < 0)
            break;
        assert_true(used > 0);
        if (rc == WS_EVENT) {
            assert_non_null(ev.data);
            log_event(log, &ev);
        } else {
            assert_int_equal(rc, WS_NEED_MORE);
            assert_int_equal(used, n - off);
        }
        off += used;
    }
    free(seg);
    return rc < 0 ? rc : 0;
}

/* Decodes in[0..n): first in[0..split) (when split > 0), then the rest in
 * chunks of `step` bytes (0: all at once). Returns 0 or the error. */
static int run(const struct ws_decoder_config *cfg, const uint8_t *in, size_t n, size_t split,
               size_t step, struct buf *log)
{
    struct ws_decoder d;
    ws_decoder_init(&d, cfg);
    int rc = split ? feed(&d, in, split, log) : 0;
    for (size_t off = split; rc == 0 && off < n;) {
        size_t k = step && step < n - off ? step : n - off;
        rc = feed(&d, in + off, k, log);
        off += k;
    }
    ws_decoder_cleanup(&d);
    return rc;
}

/* Every 2-way split and byte-by-byte feeding must give the result and events
 * of feeding everything at once. */
static void check_all_splits(const struct ws_decoder_config *cfg, const struct buf *in,
                             int expect_rc, const struct buf *expect_log)
{
    struct buf ref = {0};
    assert_int_equal(run(cfg, in->data, in->len, 0, 0, &ref), expect_rc);
    if (expect_log) {
        assert_int_equal(ref.len, expect_log->len);
        assert_memory_equal(ref.data, expect_log->data, ref.len);
    }
    for (size_t split = 0; split <= in->len + 1; split++) {
        struct buf log = {0};
        bool bytewise = split == in->len + 1;
        int rc = bytewise ? run(cfg, in->data, in->len, 0, 1, &log)
                          : run(cfg, in->data, in->len, split, 0, &log);
        assert_int_equal(rc, expect_rc);
        assert_int_equal(log.len, ref.len);
        if (ref.len)
            assert_memory_equal(log.data, ref.data, ref.len);
        buf_cleanup(&log);
    }
    buf_cleanup(&ref);
}

/* ---- utf8 ---- */

static void test_utf8_valid_and_invalid(void **state)
{
    static const char *good[] = {
        "",
        "plain ascii, longer than one word of eight bytes",
        "\xc2\x80\xdf\xbf",                          /* U+0080, U+07FF */
        "\xe0\xa0\x80\xef\xbf\xbf",                  /* U+0800, U+FFFF */
        "\xed\x9f\xbf\xee\x80\x80",                  /* U+D7FF, U+E000 */
        "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",          /* U+10000, U+10FFFF */
        "\xf1\x80\x80\x80\xf3\xbf\xbf\xbf",          /* U+40000, U+FFFFF */
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x91\x8b", /* mixed */
    };
    static const char *bad[] = {
        "\x80",             /* lone continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xe0\x9f\xbf",     /* overlong U+07FF */
        "\xf0\x80\x80\xaf", /* overlong, 4 bytes */
        "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
        "\xed\xa0\x80",     /* U+D800 */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc3\x28",     /* lead without continuation */
        "\xe2\x82",     /* truncated */
        "\xf0\x9f\x91", /* truncated */
        "abcdefgh\xc3", /* truncated after an ASCII run */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(utf8_valid((const uint8_t *)good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(utf8_valid((const uint8_t *)bad[i], strlen(bad[i])));
}

static void test_utf8_incremental(void **state)
{
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x91\x8b-0123456789";
    size_t n = strlen(s);
    for (size_t cut = 0; cut <= n; cut++) {
        struct utf8_state u;
        utf8_init(&u);
        assert_true(utf8_feed(&u, (const uint8_t *)s, cut));
        assert_true(utf8_feed(&u, (const uint8_t *)s + cut, n - cut));
        assert_true(utf8_complete(&u));
    }
    /* Byte by byte: incomplete in the middle of a code point. */
    struct utf8_state u;
    utf8_init(&u);
    assert_true(utf8_feed(&u, (const uint8_t *)"\xf0", 1));
    assert_false(utf8_complete(&u));
    assert_true(utf8_feed(&u, (const uint8_t *)"\x9f\x91", 2));
    assert_false(utf8_complete(&u));
    assert_true(utf8_feed(&u, (const uint8_t *)"\x8b", 1));
    assert_true(utf8_complete(&u));
}

static void test_utf8_fails_fast_and_stays_rejected(void **state)
{
    struct utf8_state u;
    utf8_init(&u);
    /* The surrogate is known bad at its second byte. */
    assert_true(utf8_feed(&u, (const uint8_t *)"ok\xed", 3));
    assert_false(utf8_feed(&u, (const uint8_t *)"\xa0", 1));
    assert_int_equal(u.state, UTF8_REJECT);
    assert_false(utf8_feed(&u, (const uint8_t *)"fine", 4));
    assert_false(utf8_complete(&u));
    utf8_init(&u);
    assert_false(utf8_feed(&u, (const uint8_t *)"\xf4\x90", 2));
}

/* ---- encoder ---- */

static void test_header_encode_lengths(void **state)
{
    static const struct {
        uint64_t len;
        size_t hl;
        uint8_t b1;
    } cases[] = {{0, 2, 0},       {125, 2, 125},    {126, 4, 126},
                 {65535, 4, 126}, {65536, 10, 127}, {UINT64_C(1) << 40, 10, 127}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[WS_MAX_HEADER];
        size_t hl = ws_header_encode(h, WS_OP_BINARY, false, cases[i].len);
        assert_int_equal(hl, cases[i].hl);
        assert_int_equal(h[0], FIN | WS_OP_BINARY);
        assert_int_equal(h[1], cases[i].b1);
        uint64_t len = h[1];
        if (hl > 2) {
            len = 0;
            for (size_t j = 2; j < hl; j++)
                len = len << 8 | h[j];
        }
        assert_int_equal(len, cases[i].len);
    }
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_header_encode(h, WS_OP_TEXT, true, 3), 2);
    assert_int_equal(h[0], FIN | RSV1 | WS_OP_TEXT);
    assert_int_equal(h[1], 3);
}

static void test_frame_roundtrip(void **state)
{
    static const size_t lens[] = {0, 1, 125, 126, 1000, 65535, 65536, 70001};
    uint8_t *payload = malloc(70001);
    assert_non_null(payload);
    for (size_t i = 0; i < 70001; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    struct ws_decoder_config cfg = {0};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct buf srv = {0}, cli = {0}, log = {0}, expect = {0};
        assert_int_equal(ws_frame_encode(&srv, WS_OP_BINARY, false, payload, lens[i]), 0);
        /* The server frame is sent as is: unmasked. */
        assert_int_equal(srv.data[1] & 0x80, 0);
        assert_memory_equal(srv.data + srv.len - lens[i], payload, lens[i]);
        to_client(srv.data, srv.len, &cli);
        assert_int_equal(run(&cfg, cli.data, cli.len, 0, 0, &log), 0);
        log_expected(&expect, WS_EV_MESSAGE, WS_OP_BINARY, false, 0, payload, lens[i]);
        assert_int_equal(log.len, expect.len);
        assert_memory_equal(log.data, expect.data, log.len);
        buf_cleanup(&srv);
        buf_cleanup(&cli);
        buf_cleanup(&log);
        buf_cleanup(&expect);
    }
    free(payload);
}

static void test_control_roundtrip(void **state)
{
    struct buf srv = {0}, cli = {0}, expect = {0};
    struct ws_decoder_config cfg = {0};
    assert_int_equal(ws_frame_encode(&srv, WS_OP_TEXT, false, "h\xc3\xa9", 3), 0);
    assert_int_equal(ws_frame_encode(&srv, WS_OP_PING, false, "abc", 3), 0);
    assert_int_equal(ws_frame_encode(&srv, WS_OP_PONG, false, NULL, 0), 0);
    assert_int_equal(ws_close_encode(&srv, WS_CLOSE_GOING_AWAY, "shutting down"), 0);
    size_t off = 0;
    while (off < srv.len) {
        size_t n = 2 + (srv.data[off + 1] & 0x7f);
        to_client(srv.data + off, n, &cli);
        off += n;
    }
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, false, 0, "h\xc3\xa9", 3);
    log_expected(&expect, WS_EV_PING, WS_OP_PING, false, 0, "abc", 3);
    log_expected(&expect, WS_EV_PONG, WS_OP_PONG, false, 0, "", 0);
    log_expected(&expect, WS_EV_CLOSE, WS_OP_CLOSE, false, 1001, "shutting down", 13);
    check_all_splits(&cfg, &cli, 0, &expect);
    buf_cleanup(&srv);
    buf_cleanup(&cli);
    buf_cleanup(&expect);
}

static void test_frame_encode_overflow(void **state)
{
    struct buf out = {0};
    assert_int_equal(ws_frame_encode(&out, WS_OP_TEXT, false, "a", 1), 0);
    size_t before = out.len;
    /* The payload is never read: the size alone cannot be allocated. */
    assert_int_equal(ws_frame_encode(&out, WS_OP_BINARY, false, "", SIZE_MAX), PROTO_ENOMEM);
    assert_int_equal(ws_frame_encode(&out, WS_OP_BINARY, false, "", SIZE_MAX - 5), PROTO_ENOMEM);
    assert_int_equal(out.len, before);
    buf_cleanup(&out);
}

static void test_close_encode(void **state)
{
    struct buf out = {0};
    assert_int_equal(ws_close_encode(&out, 0, "ignored"), 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "\x88\x00", 2);
    buf_reset(&out);
    assert_int_equal(ws_close_encode(&out, 1000, NULL), 0);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "\x88\x02\x03\xe8", 4);
    buf_reset(&out);
    /* 122 ASCII bytes then a 2-byte character: 124 bytes do not fit in 123,
     * and the character is dropped whole. */
    char reason[200];
    memset(reason, 'r', 122);
    strcpy(reason + 122, "\xc3\xa9tail");
    assert_int_equal(ws_close_encode(&out, 4000, reason), 0);
    assert_int_equal(out.len, 2 + 2 + 122);
    assert_int_equal(out.data[1], 124);
    assert_memory_equal(out.data + 2, "\x0f\xa0", 2);
    assert_true(utf8_valid(out.data + 4, out.len - 4));
    buf_reset(&out);
    /* Long ASCII: cut to exactly 125 bytes of payload. */
    memset(reason, 'x', 199);
    reason[199] = '\0';
    assert_int_equal(ws_close_encode(&out, 1011, reason), 0);
    assert_int_equal(out.len, 127);
    assert_int_equal(out.data[1], 125);
    buf_cleanup(&out);
}

static void test_accept_key(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_true(ws_accept_key(key, strlen(key), out));
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "dGhlIHNhbXBsZSBub25jZQ!!",  /* outside the alphabet */
        "AAAAAAAAAAAAAAAAAAAAAAAA",  /* 18 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAA=",  /* 17 bytes */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ws_accept_key(bad[i], strlen(bad[i]), out));
    /* The length argument rules, not a NUL. */
    assert_false(ws_accept_key(key, 20, out));
}

static void test_result_codes(void **state)
{
    assert_int_equal(ws_result_close_code(WS_EPROTO), 1002);
    assert_int_equal(ws_result_close_code(WS_EUTF8), 1007);
    assert_int_equal(ws_result_close_code(WS_ETOOBIG), 1009);
    assert_int_equal(ws_result_close_code(WS_ENOMEM), 1011);
    static const int all[] = {WS_EVENT, WS_NEED_MORE, WS_EPROTO, WS_EUTF8, WS_ETOOBIG, WS_ENOMEM};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        assert_non_null(ws_strerror(all[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(ws_strerror(all[i]), ws_strerror(all[j]));
    }
    assert_non_null(ws_strerror(-12345));
}

static void test_close_code_valid(void **state)
{
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                    1009, 1010, 1011, 3000, 4999};
    static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(ws_close_code_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ws_close_code_valid(bad[i]));
}

/* ---- decoder: splits ---- */

static void test_split_fragmented_text_with_ping(void **state)
{
    struct buf in = {0}, expect = {0};
    struct ws_decoder_config cfg = {.max_message = 1000};
    put_frame(&in, WS_OP_TEXT, "Hel", 3, 0);
    put_frame(&in, FIN | WS_OP_PING, "p1", 2, 0);
    put_frame(&in, WS_OP_CONTINUATION, "lo \xf0\x9f", 5, 0); /* a code point split */
    put_frame(&in, FIN | WS_OP_CONTINUATION, "\x91\x8b!", 3, 0);
    put_frame(&in, FIN | WS_OP_PONG, "", 0, 0);
    put_frame(&in, FIN | WS_OP_CLOSE,
              "\x03\xe8"
              "bye",
              5, 0);
    log_expected(&expect, WS_EV_PING, WS_OP_PING, false, 0, "p1", 2);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, false, 0, "Hello \xf0\x9f\x91\x8b!", 11);
    log_expected(&expect, WS_EV_PONG, WS_OP_PONG, false, 0, "", 0);
    log_expected(&expect, WS_EV_CLOSE, WS_OP_CLOSE, false, 1000, "bye", 3);
    check_all_splits(&cfg, &in, 0, &expect);
    buf_cleanup(&in);
    buf_cleanup(&expect);
}

static void test_split_lengths(void **state)
{
    struct buf in = {0}, expect = {0};
    struct ws_decoder_config cfg = {0};
    uint8_t big[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)('a' + i % 26);
    put_frame(&in, FIN | WS_OP_BINARY, big, 300, 0);         /* 16-bit */
    put_frame(&in, FIN | WS_OP_TEXT, big, 200, LEN_64);      /* 64-bit, non-minimal */
    put_frame(&in, FIN | WS_OP_TEXT, "short", 5, LEN_16);    /* 16-bit, non-minimal */
    put_frame(&in, FIN | WS_OP_PING, big, 125, 0);           /* largest control */
    put_frame(&in, WS_OP_BINARY, big, 130, LEN_64);          /* fragment ... */
    put_frame(&in, FIN | WS_OP_CONTINUATION, "", 0, LEN_16); /* ... empty last one */
    put_frame(&in, FIN | WS_OP_CLOSE, "", 0, 0);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_BINARY, false, 0, big, 300);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, false, 0, big, 200);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, false, 0, "short", 5);
    log_expected(&expect, WS_EV_PING, WS_OP_PING, false, 0, big, 125);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_BINARY, false, 0, big, 130);
    log_expected(&expect, WS_EV_CLOSE, WS_OP_CLOSE, false, WS_CLOSE_NO_STATUS, "", 0);
    check_all_splits(&cfg, &in, 0, &expect);
    buf_cleanup(&in);
    buf_cleanup(&expect);
}

static void test_split_compressed_empty_and_trailing(void **state)
{
    struct buf in = {0}, expect = {0};
    struct ws_decoder_config cfg = {.allow_rsv1 = true};
    /* Compressed text is not UTF-8 checked here: it is deflate output. */
    put_frame(&in, FIN | RSV1 | WS_OP_TEXT, "\xff\xfe", 2, 0);
    put_frame(&in, RSV1 | WS_OP_TEXT, "\xc0", 1, 0);
    put_frame(&in, FIN | WS_OP_CONTINUATION, "\xaf", 1, 0);
    put_frame(&in, FIN | WS_OP_TEXT, "", 0, 0);
    put_frame(&in, WS_OP_TEXT, "", 0, 0);
    put_frame(&in, WS_OP_CONTINUATION, "", 0, 0);
    put_frame(&in, FIN | WS_OP_CONTINUATION, "", 0, 0);
    put_frame(&in, FIN | WS_OP_BINARY, "\xc3\xa9", 2, 0);
    put_frame(&in, FIN | WS_OP_CLOSE, "\x03\xe9", 2, 0);
    /* Anything after the close is ignored, even garbage. */
    put_frame(&in, FIN | WS_OP_TEXT, "late", 4, 0);
    put_frame(&in, 0, "\xff\xff\xff", 3, RAW);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, true, 0, "\xff\xfe", 2);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, true, 0, "\xc0\xaf", 2);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, false, 0, "", 0);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_TEXT, false, 0, "", 0);
    log_expected(&expect, WS_EV_MESSAGE, WS_OP_BINARY, false, 0, "\xc3\xa9", 2);
    log_expected(&expect, WS_EV_CLOSE, WS_OP_CLOSE, false, 1001, "", 0);
    check_all_splits(&cfg, &in, 0, &expect);
    buf_cleanup(&in);
    buf_cleanup(&expect);
}

/* ---- decoder: zero-copy and lifetimes ---- */

static bool inside(const uint8_t *p, size_t n, const uint8_t *base, size_t len)
{
    return p >= base && p + n <= base + len;
}

static void test_zero_copy_whole_frame(void **state)
{
    struct buf in = {0};
    put_frame(&in, FIN | WS_OP_TEXT, "hello", 5, 0);
    put_frame(&in, FIN | WS_OP_PING, "hi", 2, 0);
    struct ws_decoder d;
    struct ws_decoder_config cfg = {0};
    ws_decoder_init(&d, &cfg);
    struct ws_event ev;
    size_t used;
    assert_int_equal(ws_decode(&d, in.data, in.len, &used, &ev), WS_EVENT);
    assert_int_equal(used, 2 + 4 + 5);
    assert_int_equal(ev.type, WS_EV_MESSAGE);
    assert_ptr_equal(ev.data, in.data + 6); /* unmasked in place */
    assert_memory_equal(in.data + 6, "hello", 5);
    size_t off = used;
    assert_int_equal(ws_decode(&d, in.data + off, in.len - off, &used, &ev), WS_EVENT);
    assert_int_equal(ev.type, WS_EV_PING);
    assert_ptr_equal(ev.data, in.data + off + 6);
    assert_memory_equal(ev.data, "hi", 2);
    assert_int_equal(off + used, in.len);
    /* The first event's bytes were not touched by the second call. */
    assert_memory_equal(in.data + 6, "hello", 5);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
}

static void test_zero_copy_header_in_earlier_call(void **state)
{
    struct buf in = {0};
    put_frame(&in, FIN | WS_OP_BINARY, "payload", 7, 0);
    struct ws_decoder d;
    ws_decoder_init(&d, NULL);
    struct ws_event ev;
    size_t used;
    assert_int_equal(ws_decode(&d, in.data, 6, &used, &ev), WS_NEED_MORE);
    assert_int_equal(used, 6);
    assert_int_equal(ws_decode(&d, in.data + 6, 7, &used, &ev), WS_EVENT);
    assert_ptr_equal(ev.data, in.data + 6);
    assert_int_equal(ev.len, 7);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
}

static void test_reassembled_data_lives_until_next_call(void **state)
{
    struct buf in = {0};
    put_frame(&in, FIN | WS_OP_TEXT, "split payload", 13, 0);
    put_frame(&in, FIN | WS_OP_PING, "ping!", 5, 0);
    size_t first = in.len - 4; /* mid-way into the ping's payload */
    struct ws_decoder d;
    ws_decoder_init(&d, NULL);
    struct ws_event ev;
    size_t used;
    assert_int_equal(ws_decode(&d, in.data, 10, &used, &ev), WS_NEED_MORE);
    assert_int_equal(ws_decode(&d, in.data + 10, first - 10, &used, &ev), WS_EVENT);
    assert_int_equal(ev.type, WS_EV_MESSAGE);
    assert_false(inside(ev.data, ev.len, in.data, in.len));
    assert_int_equal(ev.len, 13);
    assert_memory_equal(ev.data, "split payload", 13);
    size_t off = 10 + used;
    assert_int_equal(ws_decode(&d, in.data + off, first - off, &used, &ev), WS_NEED_MORE);
    assert_int_equal(used, first - off);
    assert_int_equal(ws_decode(&d, in.data + first, in.len - first, &used, &ev), WS_EVENT);
    assert_int_equal(ev.type, WS_EV_PING);
    assert_false(inside(ev.data, ev.len, in.data, in.len));
    assert_memory_equal(ev.data, "ping!", 5);
    /* Nothing is held once the message was delivered and the next call ran. */
    assert_int_equal(ws_decode(&d, in.data, 0, &used, &ev), WS_NEED_MORE);
    assert_int_equal(used, 0);
    assert_null(d.msg.data);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
}

/* ---- decoder: malformed input ---- */

struct spec {
    uint8_t b0;
    const char *p;
    size_t len;
    unsigned flags;
};

#define F(b0, str)                                                                                 \
    {                                                                                              \
        (b0), (str), sizeof(str) - 1, 0                                                            \
    }
#define FF(b0, str, flags)                                                                         \
    {                                                                                              \
        (b0), (str), sizeof(str) - 1, (flags)                                                      \
    }

struct bad_case {
    const char *name;
    struct spec frames[4];
    bool allow_rsv1;
    size_t max;
    int expect;
};

static const struct bad_case bad_cases[] = {
    {"unmasked", {FF(FIN | WS_OP_TEXT, "hi", UNMASKED)}, false, 0, WS_EPROTO},
    {"unmasked empty", {FF(FIN | WS_OP_PING, "", UNMASKED)}, false, 0, WS_EPROTO},
    {"rsv1 not negotiated", {F(FIN | RSV1 | WS_OP_TEXT, "hi")}, false, 0, WS_EPROTO},
    {"rsv2", {F(FIN | RSV2 | WS_OP_BINARY, "hi")}, true, 0, WS_EPROTO},
    {"rsv3", {F(FIN | RSV3 | WS_OP_BINARY, "hi")}, true, 0, WS_EPROTO},
    {"rsv1 on continuation",
     {F(WS_OP_TEXT, "a"), F(FIN | RSV1 | WS_OP_CONTINUATION, "b")},
     true,
     0,
     WS_EPROTO},
    {"rsv1 on control", {F(FIN | RSV1 | WS_OP_PING, "")}, true, 0, WS_EPROTO},
    {"opcode 3", {F(FIN | 0x3, "x")}, false, 0, WS_EPROTO},
    {"opcode 7", {F(FIN | 0x7, "x")}, false, 0, WS_EPROTO},
    {"opcode 0xb", {F(FIN | 0xb, "")}, false, 0, WS_EPROTO},
    {"opcode 0xf", {F(FIN | 0xf, "")}, false, 0, WS_EPROTO},
    {"fragmented ping", {F(WS_OP_PING, "p")}, false, 0, WS_EPROTO},
    {"fragmented close", {F(WS_OP_CLOSE, "\x03\xe8")}, false, 0, WS_EPROTO},
    {"ping over 125", {{FIN | WS_OP_PING, zeros, 126, 0}}, false, 0, WS_EPROTO},
    {"close over 125", {{FIN | WS_OP_CLOSE, zeros, 200, 0}}, false, 0, WS_EPROTO},
    {"pong 64-bit length", {{FIN | WS_OP_PONG, zeros, 200, LEN_64}}, false, 0, WS_EPROTO},
    {"continuation first", {F(FIN | WS_OP_CONTINUATION, "x")}, false, 0, WS_EPROTO},
    {"continuation after message",
     {F(FIN | WS_OP_TEXT, "a"), F(FIN | WS_OP_CONTINUATION, "b")},
     false,
     0,
     WS_EPROTO},
    {"text mid-message", {F(WS_OP_TEXT, "a"), F(FIN | WS_OP_TEXT, "b")}, false, 0, WS_EPROTO},
    {"binary mid-message after ping",
     {F(WS_OP_BINARY, "a"), F(FIN | WS_OP_PING, ""), F(FIN | WS_OP_BINARY, "b")},
     false,
     0,
     WS_EPROTO},
    {"close code 0", {F(FIN | WS_OP_CLOSE, "\x00\x00")}, false, 0, WS_EPROTO},
    {"close code 999", {F(FIN | WS_OP_CLOSE, "\x03\xe7")}, false, 0, WS_EPROTO},
    {"close code 1004", {F(FIN | WS_OP_CLOSE, "\x03\xec")}, false, 0, WS_EPROTO},
    {"close code 1005", {F(FIN | WS_OP_CLOSE, "\x03\xed")}, false, 0, WS_EPROTO},
    {"close code 1006", {F(FIN | WS_OP_CLOSE, "\x03\xee")}, false, 0, WS_EPROTO},
    {"close code 1015", {F(FIN | WS_OP_CLOSE, "\x03\xf7reason")}, false, 0, WS_EPROTO},
    {"close code 2999", {F(FIN | WS_OP_CLOSE, "\x0b\xb7")}, false, 0, WS_EPROTO},
    {"close code 5000", {F(FIN | WS_OP_CLOSE, "\x13\x88")}, false, 0, WS_EPROTO},
    /* The next byte on the wire would complete the code 1000. */
    {"close 1 byte", {F(FIN | WS_OP_CLOSE, "\x03"), FF(0, "\xe8", RAW)}, false, 0, WS_EPROTO},
    {"64-bit length top bit",
     {FF(0, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", RAW)},
     false,
     0,
     WS_EPROTO},
    {"overlong", {F(FIN | WS_OP_TEXT, "a\xc0\xaf")}, false, 0, WS_EUTF8},
    {"overlong 3 bytes", {F(FIN | WS_OP_TEXT, "\xe0\x80\xaf")}, false, 0, WS_EUTF8},
    {"overlong 4 bytes", {F(FIN | WS_OP_TEXT, "\xf0\x80\x80\xaf")}, false, 0, WS_EUTF8},
    {"surrogate", {F(FIN | WS_OP_TEXT, "x\xed\xa0\x80y")}, false, 0, WS_EUTF8},
    {"above U+10FFFF", {F(FIN | WS_OP_TEXT, "\xf4\x90\x80\x80")}, false, 0, WS_EUTF8},
    {"byte 0xff", {F(FIN | WS_OP_TEXT, "ok\xff")}, false, 0, WS_EUTF8},
    {"truncated at end", {F(FIN | WS_OP_TEXT, "a\xe2\x82")}, false, 0, WS_EUTF8},
    {"truncated at end of fragments",
     {F(WS_OP_TEXT, "\xe2"), F(FIN | WS_OP_CONTINUATION, "\x82")},
     false,
     0,
     WS_EUTF8},
    {"surrogate across fragments",
     {F(WS_OP_TEXT, "ab\xed"), F(FIN | WS_OP_PING, ""), F(FIN | WS_OP_CONTINUATION, "\xa0\x80")},
     false,
     0,
     WS_EUTF8},
    {"invalid in a middle fragment",
     {F(WS_OP_TEXT, "ok"), F(WS_OP_CONTINUATION, "\xc3\x28"), F(FIN | WS_OP_CONTINUATION, "z")},
     false,
     0,
     WS_EUTF8},
    {"close reason",
     {F(FIN | WS_OP_CLOSE, "\x03\xe8"
                           "bad\xc0\x80")},
     false,
     0,
     WS_EUTF8},
    {"close reason truncated", {F(FIN | WS_OP_CLOSE, "\x03\xe8\xe2\x82")}, false, 0, WS_EUTF8},
    {"too big", {F(FIN | WS_OP_BINARY, "0123456789x")}, false, 10, WS_ETOOBIG},
    {"too big in a later fragment",
     {F(WS_OP_TEXT, "01234"), F(FIN | WS_OP_PING, "ping"), F(FIN | WS_OP_CONTINUATION, "56789x")},
     false,
     10,
     WS_ETOOBIG},
};

static void build(const struct spec *frames, size_t max_frames, struct buf *out)
{
    for (size_t i = 0; i < max_frames && frames[i].p; i++)
        put_frame(out, frames[i].b0, frames[i].p, frames[i].len, frames[i].flags);
}

static void test_malformed_table(void **state)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct ws_decoder_config cfg = {.max_message = c->max, .allow_rsv1 = c->allow_rsv1};
        struct buf in = {0};
        build(c->frames, 4, &in);
        struct buf log = {0};
        int rc = run(&cfg, in.data, in.len, 0, 0, &log);
        if (rc != c->expect)
            fail_msg("%s: got %d, expected %d", c->name, rc, c->expect);
        check_all_splits(&cfg, &in, c->expect, NULL);
        buf_cleanup(&log);
        buf_cleanup(&in);
    }
}

static void test_error_is_sticky(void **state)
{
    struct buf in = {0}, good = {0};
    put_frame(&in, FIN | WS_OP_TEXT, "hi", 2, UNMASKED);
    put_frame(&good, FIN | WS_OP_TEXT, "hi", 2, 0);
    struct ws_decoder d;
    ws_decoder_init(&d, NULL);
    struct ws_event ev;
    size_t used;
    assert_int_equal(ws_decode(&d, in.data, in.len, &used, &ev), WS_EPROTO);
    assert_int_equal(ws_decode(&d, good.data, good.len, &used, &ev), WS_EPROTO);
    assert_int_equal(used, 0);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
    buf_cleanup(&good);
}

/* Bad text is reported as soon as its bytes arrive, without the rest of the
 * frame. */
static void test_utf8_fails_before_frame_ends(void **state)
{
    char text[100];
    memset(text, 'a', sizeof(text));
    memcpy(text + 3, "\xed\xa0\x80", 3);
    struct buf in = {0};
    put_frame(&in, WS_OP_TEXT, "ok", 2, 0);
    size_t second = in.len;
    put_frame(&in, FIN | WS_OP_CONTINUATION, text, sizeof(text), 0);
    struct ws_decoder d;
    ws_decoder_init(&d, NULL);
    struct ws_event ev;
    size_t used;
    /* Second frame: 2 + 4 header bytes, then 5 payload bytes reach the
     * second byte of the surrogate. */
    assert_int_equal(ws_decode(&d, in.data, second + 6 + 4, &used, &ev), WS_NEED_MORE);
    assert_int_equal(ws_decode(&d, in.data + second + 10, 1, &used, &ev), WS_EUTF8);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
}

/* The limit is applied from the header, before any payload arrives. */
static void test_too_big_from_header_alone(void **state)
{
    struct buf in = {0};
    put_frame(&in, FIN | WS_OP_BINARY, zeros, 300, 0);
    struct ws_decoder_config cfg = {.max_message = 299};
    struct ws_decoder d;
    ws_decoder_init(&d, &cfg);
    struct ws_event ev;
    size_t used;
    assert_int_equal(ws_decode(&d, in.data, 8, &used, &ev), WS_ETOOBIG);
    assert_null(d.msg.data);
    ws_decoder_cleanup(&d);
    /* A 64-bit length far beyond memory is refused the same way. */
    const uint8_t huge[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    uint8_t copy[sizeof(huge)];
    memcpy(copy, huge, sizeof(huge));
    ws_decoder_init(&d, &cfg);
    assert_int_equal(ws_decode(&d, copy, sizeof(copy), &used, &ev), WS_ETOOBIG);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
}

static void test_limits(void **state)
{
    static const struct {
        struct spec frames[4];
        int expect;
    } cases[] = {
        {{F(FIN | WS_OP_BINARY, "0123456789abcdef")}, 0},
        {{F(FIN | WS_OP_BINARY, "0123456789abcdefg")}, WS_ETOOBIG},
        {{F(WS_OP_TEXT, "0123456789"), F(FIN | WS_OP_CONTINUATION, "abcdef")}, 0},
        {{F(WS_OP_TEXT, "0123456789"), F(FIN | WS_OP_CONTINUATION, "abcdefg")}, WS_ETOOBIG},
        {{F(WS_OP_TEXT, "0123456789"), F(WS_OP_CONTINUATION, "abcdef"),
          F(FIN | WS_OP_CONTINUATION, "")},
         0},
        {{F(WS_OP_TEXT, "0123456789"), F(WS_OP_CONTINUATION, "abcdef"),
          F(FIN | WS_OP_CONTINUATION, "g")},
         WS_ETOOBIG},
        /* Control frames do not count towards the message. */
        {{F(WS_OP_TEXT, "0123456789"), F(FIN | WS_OP_PING, "0123456789ping"),
          F(FIN | WS_OP_CONTINUATION, "abcdef")},
         0},
        /* The limit is per message, not per stream. */
        {{F(FIN | WS_OP_BINARY, "0123456789abcdef"), F(FIN | WS_OP_BINARY, "0123456789abcdef")}, 0},
    };
    struct ws_decoder_config cfg = {.max_message = 16};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf in = {0};
        build(cases[i].frames, 4, &in);
        check_all_splits(&cfg, &in, cases[i].expect, NULL);
        buf_cleanup(&in);
    }
    /* 0 means no limit. */
    struct ws_decoder_config unlimited = {0};
    struct buf in = {0};
    put_frame(&in, FIN | WS_OP_BINARY, zeros, sizeof(zeros), 0);
    struct buf log = {0};
    assert_int_equal(run(&unlimited, in.data, in.len, 0, 0, &log), 0);
    assert_int_equal(log.len, 9 + sizeof(zeros));
    buf_cleanup(&log);
    buf_cleanup(&in);
}

static void test_after_close_input_is_ignored(void **state)
{
    struct buf in = {0};
    put_frame(&in, FIN | WS_OP_CLOSE,
              "\x0f\xa0"
              "app",
              5, 0);
    size_t close_len = in.len;
    put_frame(&in, FIN | WS_OP_TEXT, "more", 4, 0);
    struct ws_decoder d;
    ws_decoder_init(&d, NULL);
    struct ws_event ev;
    size_t used;
    assert_int_equal(ws_decode(&d, in.data, in.len, &used, &ev), WS_EVENT);
    assert_int_equal(used, close_len);
    assert_int_equal(ev.type, WS_EV_CLOSE);
    assert_int_equal(ev.close_code, 4000);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.data, "app", 3);
    assert_int_equal(ws_decode(&d, in.data + used, in.len - used, &used, &ev), WS_NEED_MORE);
    assert_int_equal(used, in.len - close_len);
    ws_decoder_cleanup(&d);
    buf_cleanup(&in);
}

static void test_empty_input(void **state)
{
    struct ws_decoder d;
    ws_decoder_init(&d, NULL);
    struct ws_event ev;
    size_t used = 99;
    uint8_t dummy = 0;
    assert_int_equal(ws_decode(&d, &dummy, 0, &used, &ev), WS_NEED_MORE);
    assert_int_equal(used, 0);
    ws_decoder_cleanup(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_and_invalid),
        cmocka_unit_test(test_utf8_incremental),
        cmocka_unit_test(test_utf8_fails_fast_and_stays_rejected),
        cmocka_unit_test(test_header_encode_lengths),
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_control_roundtrip),
        cmocka_unit_test(test_frame_encode_overflow),
        cmocka_unit_test(test_close_encode),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_result_codes),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_split_fragmented_text_with_ping),
        cmocka_unit_test(test_split_lengths),
        cmocka_unit_test(test_split_compressed_empty_and_trailing),
        cmocka_unit_test(test_zero_copy_whole_frame),
        cmocka_unit_test(test_zero_copy_header_in_earlier_call),
        cmocka_unit_test(test_reassembled_data_lives_until_next_call),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_utf8_fails_before_frame_ends),
        cmocka_unit_test(test_too_big_from_header_alone),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_after_close_input_is_ignored),
        cmocka_unit_test(test_empty_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

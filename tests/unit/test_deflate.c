/* Unit tests for protocol/deflate (RFC 7692 permessage-deflate).
 *
 * cfg->threshold is the caller's business (deflate_compress compresses any
 * message it is given), so only the functions themselves are tested here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "deflate.h"

/* deflate.c inflates at most this much per step; a message over its limit
 * may allocate up to the limit plus this. */
#define INFLATE_CHUNK 16384

static const struct deflate_params default_params = {false, false, 15, 15};

static void test_config_default(void **state)
{
    struct deflate_config cfg;
    memset(&cfg, 0xa5, sizeof(cfg));
    deflate_config_default(&cfg);
    assert_int_equal(cfg.server_max_window_bits, 15);
    assert_false(cfg.server_no_context_takeover);
    assert_int_equal(cfg.mem_level, 8);
    assert_int_equal(cfg.level, 1);
    assert_int_equal(cfg.threshold, 1024);
}

struct negotiation {
    const char *header;
    int cfg_bits; /* 0: default */
    bool cfg_server_nct;
    int rc;
    struct deflate_params want; /* when rc == 1 */
};

#define PMD "permessage-deflate"

static const struct negotiation negotiations[] = {
    /* single offers */
    {PMD, 0, false, 1, {false, false, 15, 15}},
    {PMD "; client_max_window_bits", 0, false, 1, {false, false, 15, 15}},
    {PMD "; client_max_window_bits=10", 0, false, 1, {false, false, 15, 10}},
    {PMD "; client_max_window_bits=8", 0, false, 1, {false, false, 15, 8}},
    {PMD "; client_max_window_bits=\"12\"", 0, false, 1, {false, false, 15, 12}},
    {PMD "; server_max_window_bits=\"1\\0\"", 0, false, 1, {false, false, 10, 15}},
    {PMD "; server_max_window_bits=9", 0, false, 1, {false, false, 9, 15}},
    {PMD "; server_max_window_bits=15", 0, false, 1, {false, false, 15, 15}},
    {PMD "; server_no_context_takeover", 0, false, 1, {true, false, 15, 15}},
    {PMD "; client_no_context_takeover", 0, false, 1, {false, true, 15, 15}},
    {PMD ";server_no_context_takeover;client_no_context_takeover;server_max_window_bits=8;"
         "client_max_window_bits=9",
     0,
     false,
     1,
     {true, true, 8, 9}},
    {" \t" PMD " ;  server_max_window_bits = 11 \t; client_max_window_bits ",
     0,
     false,
     1,
     {false, false, 11, 15}},
    /* the server's own limits */
    {PMD, 10, false, 1, {false, false, 10, 15}},
    {PMD "; server_max_window_bits=12", 10, false, 1, {false, false, 10, 15}},
    {PMD "; server_max_window_bits=9", 10, false, 1, {false, false, 9, 15}},
    {PMD, 0, true, 1, {true, false, 15, 15}},
    {PMD "; client_no_context_takeover", 0, true, 1, {true, true, 15, 15}},
    /* several offers: the first acceptable one wins */
    {"x-webkit-deflate-frame, " PMD "; client_max_window_bits",
     0,
     false,
     1,
     {false, false, 15, 15}},
    {PMD "; server_max_window_bits=7, " PMD, 0, false, 1, {false, false, 15, 15}},
    {PMD "; server_max_window_bits=16, " PMD "; server_max_window_bits=12",
     0,
     false,
     1,
     {false, false, 12, 15}},
    {PMD "; foo, " PMD "; client_no_context_takeover", 0, false, 1, {false, true, 15, 15}},
    {PMD "; client_max_window_bits=10, " PMD "; client_max_window_bits=12",
     0,
     false,
     1,
     {false, false, 15, 10}},
    {", " PMD " ,, ", 0, false, 1, {false, false, 15, 15}},
    {"foo; bar=\"b\\az\", " PMD, 0, false, 1, {false, false, 15, 15}},
    /* nothing acceptable */
    {"", 0, false, 0, {0}},
    {" , ", 0, false, 0, {0}},
    {"x-webkit-deflate-frame", 0, false, 0, {0}},
    {"Permessage-Deflate", 0, false, 0, {0}},
    {PMD "; foo", 0, false, 0, {0}},
    {PMD "; foo=1", 0, false, 0, {0}},
    {PMD "; server_max_window_bits", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=7", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=16", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=010", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=08", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=1O", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=100", 0, false, 0, {0}},
    {PMD "; client_max_window_bits=x", 0, false, 0, {0}},
    {PMD "; client_max_window_bits=\"\\7\"", 0, false, 0, {0}},
    {PMD "; server_no_context_takeover=1", 0, false, 0, {0}},
    {PMD "; client_no_context_takeover=\"true\"", 0, false, 0, {0}},
    {PMD "; server_no_context_takeover; server_no_context_takeover", 0, false, 0, {0}},
    {PMD "; client_max_window_bits; client_max_window_bits=10", 0, false, 0, {0}},
    {PMD "; server_max_window_bits=10; server_max_window_bits=10", 0, false, 0, {0}},
    {PMD "; Server_No_Context_Takeover", 0, false, 0, {0}},
    /* malformed */
    {";", 0, false, DEFLATE_EINVAL, {0}},
    {PMD ";", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; ", 0, false, DEFLATE_EINVAL, {0}},
    {PMD ";; server_no_context_takeover", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; =3", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=b=c", 0, false, DEFLATE_EINVAL, {0}},
    {PMD " x", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; client_max_window_bits 10", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=\"unterminated", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=\"x\\", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=\"\"", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=\"b c\"", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; a=\"b,c\"", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; server_max_window_bits=1\"0\"", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "\r\n", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "\x01", 0, false, DEFLATE_EINVAL, {0}},
    {"perm\xc3\xa9ssage-deflate", 0, false, DEFLATE_EINVAL, {0}},
    {PMD ", @", 0, false, DEFLATE_EINVAL, {0}},
    {PMD "; server_max_window_bits=10, ;x", 0, false, DEFLATE_EINVAL, {0}},
    {"\"" PMD "\"", 0, false, DEFLATE_EINVAL, {0}},
};

static void test_negotiate_table(void **state)
{
    for (size_t i = 0; i < sizeof(negotiations) / sizeof(negotiations[0]); i++) {
        const struct negotiation *t = &negotiations[i];
        struct deflate_config cfg;
        deflate_config_default(&cfg);
        if (t->cfg_bits)
            cfg.server_max_window_bits = t->cfg_bits;
        cfg.server_no_context_takeover = t->cfg_server_nct;
        struct deflate_params p;
        memset(&p, 0x5a, sizeof(p));
        int rc = deflate_negotiate(t->header, strlen(t->header), &cfg, &p);
        if (rc != t->rc)
            fail_msg("header %zu [%s]: rc %d, want %d", i, t->header, rc, t->rc);
        if (rc != 1)
            continue;
        if (p.server_no_context_takeover != t->want.server_no_context_takeover ||
            p.client_no_context_takeover != t->want.client_no_context_takeover ||
            p.server_max_window_bits != t->want.server_max_window_bits ||
            p.client_max_window_bits != t->want.client_max_window_bits)
            fail_msg("header %zu [%s]: got %d %d %d %d", i, t->header, p.server_no_context_takeover,
                     p.client_no_context_takeover, p.server_max_window_bits,
                     p.client_max_window_bits);
    }
}

static void test_negotiate_respects_length(void **state)
{
    struct deflate_params p;
    const char h[] = PMD "; foo";
    assert_int_equal(deflate_negotiate(h, strlen(PMD), NULL, &p), 1);
    assert_int_equal(deflate_negotiate(h, strlen(h), NULL, &p), 0);
    const char nul[] = PMD "\0; x";
    assert_int_equal(deflate_negotiate(nul, sizeof(nul) - 1, NULL, &p), DEFLATE_EINVAL);
    assert_int_equal(deflate_negotiate(NULL, 0, NULL, &p), 0);
}

struct response {
    struct deflate_params p;
    const char *want;
};

static void test_response_encode(void **state)
{
    static const struct response table[] = {
        {{false, false, 15, 15}, PMD},
        {{true, false, 15, 15}, PMD "; server_no_context_takeover"},
        {{false, true, 15, 15}, PMD "; client_no_context_takeover"},
        {{false, false, 8, 15}, PMD "; server_max_window_bits=8"},
        {{false, false, 15, 10}, PMD "; client_max_window_bits=10"},
        {{true, true, 10, 12},
         PMD "; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=10; client_max_window_bits=12"},
    };
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        buf_reset(&b);
        assert_int_equal(buf_append_str(&b, "X"), 0);
        assert_int_equal(deflate_response_encode(&table[i].p, &b), DEFLATE_OK);
        assert_int_equal(b.len, 1 + strlen(table[i].want));
        assert_memory_equal(b.data, "X", 1);
        assert_memory_equal(b.data + 1, table[i].want, b.len - 1);
    }
    static const struct deflate_params bad[] = {
        {false, false, 7, 15}, {false, false, 16, 15}, {false, false, 15, 0}, {true, true, 15, 99}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf_reset(&b);
        assert_int_equal(deflate_response_encode(&bad[i], &b), DEFLATE_EINVAL);
        assert_int_equal(b.len, 0);
    }
    buf_cleanup(&b);
}

/* The response is itself a valid offer, and negotiating it under the
 * default config gives back the same parameters. */
static void test_response_negotiates_back(void **state)
{
    struct buf b;
    buf_init(&b);
    for (int flags = 0; flags < 4; flags++) {
        for (int sb = 8; sb <= 15; sb++) {
            for (int cb = 8; cb <= 15; cb++) {
                struct deflate_params p = {flags & 1, (flags & 2) != 0, sb, cb}, q;
                buf_reset(&b);
                assert_int_equal(deflate_response_encode(&p, &b), 0);
                assert_int_equal(deflate_negotiate((const char *)b.data, b.len, NULL, &q), 1);
                assert_int_equal(q.server_no_context_takeover, p.server_no_context_takeover);
                assert_int_equal(q.client_no_context_takeover, p.client_no_context_takeover);
                assert_int_equal(q.server_max_window_bits, sb);
                assert_int_equal(q.client_max_window_bits, cb);
            }
        }
    }
    buf_cleanup(&b);
}

static struct deflate_ctx *new_ctx(const struct deflate_params *p)
{
    struct deflate_ctx *c = deflate_ctx_new(p, NULL);
    assert_non_null(c);
    return c;
}

/* Decompresses one message with ctx c and checks the result. */
static void expect_inflate(struct deflate_ctx *c, const uint8_t *in, size_t len, const char *want)
{
    struct buf out;
    buf_init(&out);
    assert_int_equal(deflate_decompress(c, in, len, 0, &out), DEFLATE_OK);
    assert_int_equal(out.len, strlen(want));
    if (out.len)
        assert_memory_equal(out.data, want, out.len);
    buf_cleanup(&out);
}

/* RFC 7692 §7.2.3.1 to §7.2.3.5. */
static void test_rfc7692_examples(void **state)
{
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t hello_again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                     0x65, 0x6c, 0x6c, 0x6f, 0x00};
    static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t two_blocks[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                         0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};

    struct deflate_ctx *c = new_ctx(&default_params);
    expect_inflate(c, hello, sizeof(hello), "Hello");
    expect_inflate(c, hello_again, sizeof(hello_again), "Hello");
    expect_inflate(c, stored, sizeof(stored), "Hello");
    /* After a final block the window is kept. */
    expect_inflate(c, bfinal, sizeof(bfinal), "Hello");
    expect_inflate(c, hello_again, sizeof(hello_again), "Hello");
    expect_inflate(c, two_blocks, sizeof(two_blocks), "Hello");
    expect_inflate(c, (const uint8_t *)"\x00", 1, "");
    expect_inflate(c, hello, sizeof(hello), "Hello");
    deflate_ctx_free(c);
}

static void test_compress_matches_rfc7692(void **state)
{
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t hello_again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    struct deflate_ctx *c = new_ctx(&default_params);
    struct buf b;
    buf_init(&b);
    assert_int_equal(deflate_compress(c, (const uint8_t *)"Hello", 5, &b), 0);
    assert_int_equal(b.len, sizeof(hello));
    assert_memory_equal(b.data, hello, sizeof(hello));
    buf_reset(&b);
    assert_int_equal(deflate_compress(c, (const uint8_t *)"Hello", 5, &b), 0);
    assert_int_equal(b.len, sizeof(hello_again));
    assert_memory_equal(b.data, hello_again, sizeof(hello_again));
    /* §7.2.3.6: an empty message is a single 0x00. */
    buf_reset(&b);
    assert_int_equal(deflate_compress(c, NULL, 0, &b), 0);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], 0x00);
    deflate_ctx_free(c);
    buf_cleanup(&b);
}

/* A deterministic mix of text, repetition and noise. */
static uint8_t *make_message(size_t len, unsigned seed)
{
    uint8_t *m = malloc(len ? len : 1);
    assert_non_null(m);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        if (i >= 300 && (x >> 28) < 10)
            m[i] = m[i - 300 + (x >> 20) % 40];
        else
            m[i] = (uint8_t)("{\"event\":[1,2,3]} abcdefgh"[(x >> 16) % 26] ^ ((x >> 30) & 1));
    }
    return m;
}

/* The peer of a server ctx: decompresses what it sends. */
static struct deflate_params peer_of(const struct deflate_params *p)
{
    struct deflate_params q = {false, p->server_no_context_takeover, 15, p->server_max_window_bits};
    return q;
}

static void round_trip(const struct deflate_params *p, int level)
{
    static const size_t sizes[] = {1, 5, 0, 200, 1000, 70000, 3, 0, 40000, 1000};
    struct deflate_config cfg;
    deflate_config_default(&cfg);
    cfg.level = level;
    struct deflate_params q = peer_of(p);
    struct deflate_ctx *tx = deflate_ctx_new(p, &cfg);
    struct deflate_ctx *rx = deflate_ctx_new(&q, &cfg);
    assert_non_null(tx);
    assert_non_null(rx);
    struct buf z, out;
    buf_init(&z);
    buf_init(&out);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *m = make_message(sizes[i], (unsigned)i % 4);
        buf_reset(&z);
        buf_reset(&out);
        assert_int_equal(deflate_compress(tx, m, sizes[i], &z), 0);
        assert_true(z.len > 0);
        assert_int_equal(deflate_decompress(rx, z.data, z.len, sizes[i], &out), 0);
        assert_int_equal(out.len, sizes[i]);
        if (sizes[i])
            assert_memory_equal(out.data, m, sizes[i]);
        free(m);
    }
    deflate_ctx_free(tx);
    deflate_ctx_free(rx);
    buf_cleanup(&z);
    buf_cleanup(&out);
}

static void test_round_trips(void **state)
{
    for (int nct = 0; nct < 2; nct++) {
        for (int bits = 8; bits <= 15; bits++) {
            struct deflate_params p = {nct, false, bits, 15};
            round_trip(&p, 1);
            if (bits == 8 || bits == 15) {
                round_trip(&p, 9);
                round_trip(&p, 0);
            }
        }
    }
}

/* With context takeover a repeated message shrinks; without it, every copy
 * compresses to the same bytes. */
static void repeat_sizes(bool nct, size_t *first, size_t *second, bool *same)
{
    struct deflate_params p = {nct, false, 15, 15};
    struct deflate_ctx *c = new_ctx(&p);
    uint8_t *m = make_message(2000, 7);
    struct buf a, b;
    buf_init(&a);
    buf_init(&b);
    assert_int_equal(deflate_compress(c, m, 2000, &a), 0);
    assert_int_equal(deflate_compress(c, m, 2000, &b), 0);
    *first = a.len;
    *second = b.len;
    *same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    free(m);
    buf_cleanup(&a);
    buf_cleanup(&b);
    deflate_ctx_free(c);
}

static void test_context_takeover(void **state)
{
    size_t first, second;
    bool same;
    repeat_sizes(false, &first, &second, &same);
    assert_true(second * 4 < first);
    repeat_sizes(true, &first, &second, &same);
    assert_true(same);
}

/* The decompressor uses the negotiated client window: a reference 300 bytes
 * back into the previous message is out of reach with 8 bits. */
static void test_client_window_enforced(void **state)
{
    uint8_t *m = make_message(300, 3);
    struct buf z1, z2, out;
    buf_init(&z1);
    buf_init(&z2);
    buf_init(&out);
    struct deflate_ctx *tx = new_ctx(&default_params);
    assert_int_equal(deflate_compress(tx, m, 300, &z1), 0);
    assert_int_equal(deflate_compress(tx, m, 300, &z2), 0);
    assert_true(z2.len < 20);

    struct deflate_params wide = {false, false, 15, 15}, narrow = {false, false, 15, 8};
    struct deflate_ctx *rx = new_ctx(&wide);
    assert_int_equal(deflate_decompress(rx, z1.data, z1.len, 0, &out), 0);
    assert_int_equal(deflate_decompress(rx, z2.data, z2.len, 0, &out), 0);
    assert_int_equal(out.len, 600);
    deflate_ctx_free(rx);

    buf_reset(&out);
    rx = new_ctx(&narrow);
    assert_int_equal(deflate_decompress(rx, z1.data, z1.len, 0, &out), 0);
    assert_int_equal(deflate_decompress(rx, z2.data, z2.len, 0, &out), DEFLATE_EINVAL);
    assert_int_equal(out.len, 300);
    deflate_ctx_free(rx);
    deflate_ctx_free(tx);
    free(m);
    buf_cleanup(&z1);
    buf_cleanup(&z2);
    buf_cleanup(&out);
}

static void test_client_no_context_takeover_resets(void **state)
{
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t hello_again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    struct deflate_params p = {false, true, 15, 15};
    struct deflate_ctx *c = new_ctx(&p);
    struct buf out;
    buf_init(&out);
    expect_inflate(c, hello, sizeof(hello), "Hello");
    assert_int_equal(deflate_decompress(c, hello_again, sizeof(hello_again), 0, &out),
                     DEFLATE_EINVAL);
    assert_int_equal(out.len, 0);
    expect_inflate(c, hello, sizeof(hello), "Hello");
    deflate_ctx_free(c);
    buf_cleanup(&out);
}

static void test_zip_bomb(void **state)
{
    const size_t big = 8u << 20, limit = 64u << 10;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);
    struct deflate_config cfg;
    deflate_config_default(&cfg);
    cfg.level = 9; /* the best ratio deflate allows, about 1:1000 */
    struct deflate_ctx *tx = deflate_ctx_new(&default_params, &cfg);
    assert_non_null(tx);
    struct buf z, out;
    buf_init(&z);
    buf_init(&out);
    assert_int_equal(deflate_compress(tx, zeros, big, &z), 0);
    assert_true(z.len < big / 500);

    struct deflate_ctx *rx = new_ctx(&default_params);
    assert_int_equal(buf_append_str(&out, "kept"), 0);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, limit, &out), DEFLATE_ETOOBIG);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "kept", 4);
    assert_true(out.cap <= 4 + limit + INFLATE_CHUNK);
    deflate_ctx_free(rx);

    buf_cleanup(&out);
    rx = new_ctx(&default_params);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, 0, &out), 0);
    assert_int_equal(out.len, big);
    assert_memory_equal(out.data, zeros, big);
    deflate_ctx_free(rx);
    deflate_ctx_free(tx);
    free(zeros);
    buf_cleanup(&z);
    buf_cleanup(&out);
}

/* max_out is inclusive and counts only this message's output. */
static void test_limit_exact(void **state)
{
    const size_t n = 50000;
    uint8_t *m = make_message(n, 1);
    struct buf z, out;
    buf_init(&z);
    buf_init(&out);
    struct deflate_params p = {true, false, 15, 15}, q = peer_of(&p);
    struct deflate_ctx *tx = new_ctx(&p);
    assert_int_equal(deflate_compress(tx, m, n, &z), 0);
    struct deflate_ctx *rx = new_ctx(&q);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, n, &out), 0);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, n, &out), 0);
    assert_int_equal(out.len, 2 * n);
    assert_memory_equal(out.data + n, m, n);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, n - 1, &out), DEFLATE_ETOOBIG);
    assert_int_equal(out.len, 2 * n);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, 1, &out), DEFLATE_ETOOBIG);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, n, &out), 0);
    assert_int_equal(out.len, 3 * n);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, SIZE_MAX, &out), 0);
    assert_int_equal(out.len, 4 * n);
    assert_memory_equal(out.data + 3 * n, m, n);
    deflate_ctx_free(tx);
    deflate_ctx_free(rx);
    free(m);
    buf_cleanup(&z);
    buf_cleanup(&out);
}

static void test_corrupt(void **state)
{
    static const uint8_t bad_type[] = {0x07, 0x00};                          /* BTYPE 11 */
    static const uint8_t bad_stored[] = {0x00, 0x05, 0x00, 0x00, 0x00, 'a'}; /* NLEN */
    static const uint8_t far[] = {0xf2, 0x00, 0x11, 0x00, 0x00};             /* no history */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    const struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{bad_type, sizeof(bad_type)},
                 {bad_stored, sizeof(bad_stored)},
                 {far, sizeof(far)},
                 {junk, sizeof(junk)}};
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct deflate_ctx *c = new_ctx(&default_params);
        buf_reset(&out);
        assert_int_equal(deflate_decompress(c, cases[i].p, cases[i].n, 0, &out), DEFLATE_EINVAL);
        assert_int_equal(out.len, 0);
        /* Still usable for data that needs no history. */
        expect_inflate(c, hello, sizeof(hello), "Hello");
        deflate_ctx_free(c);
    }
    buf_cleanup(&out);
}

/* zlib cannot compress raw deflate with an 8-bit window; 9 is used instead
 * and its output must still inflate with a 256-byte window, across
 * messages too. */
static void test_window_8(void **state)
{
    struct deflate_params p = {false, false, 8, 15}, q = peer_of(&p);
    assert_int_equal(q.client_max_window_bits, 8);
    struct deflate_ctx *tx = new_ctx(&p), *rx = new_ctx(&q);
    struct buf z, out;
    buf_init(&z);
    buf_init(&out);
    for (unsigned i = 0; i < 6; i++) {
        uint8_t *m = make_message(5000 + i * 7, i % 2);
        buf_reset(&z);
        buf_reset(&out);
        assert_int_equal(deflate_compress(tx, m, 5000 + i * 7, &z), 0);
        assert_true(z.len < 5000);
        assert_int_equal(deflate_decompress(rx, z.data, z.len, 0, &out), 0);
        assert_int_equal(out.len, 5000 + i * 7);
        assert_memory_equal(out.data, m, out.len);
        free(m);
    }
    deflate_ctx_free(tx);
    deflate_ctx_free(rx);
    buf_cleanup(&z);
    buf_cleanup(&out);
}

static void test_trim(void **state)
{
    static const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t hello_again[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    struct buf b;
    buf_init(&b);

    /* With takeover, trim must not lose the window. */
    struct deflate_ctx *c = new_ctx(&default_params);
    deflate_ctx_trim(c);
    assert_int_equal(deflate_compress(c, (const uint8_t *)"Hello", 5, &b), 0);
    expect_inflate(c, hello, sizeof(hello), "Hello");
    deflate_ctx_trim(c);
    buf_reset(&b);
    assert_int_equal(deflate_compress(c, (const uint8_t *)"Hello", 5, &b), 0);
    assert_int_equal(b.len, sizeof(hello_again));
    assert_memory_equal(b.data, hello_again, b.len);
    expect_inflate(c, hello_again, sizeof(hello_again), "Hello");
    deflate_ctx_free(c);

    /* Without it, streams come back fresh after a trim. */
    struct deflate_params p = {true, true, 15, 15};
    c = new_ctx(&p);
    for (int i = 0; i < 3; i++) {
        buf_reset(&b);
        assert_int_equal(deflate_compress(c, (const uint8_t *)"Hello", 5, &b), 0);
        assert_int_equal(b.len, sizeof(hello));
        assert_memory_equal(b.data, hello, b.len);
        expect_inflate(c, hello, sizeof(hello), "Hello");
        deflate_ctx_trim(c);
    }
    deflate_ctx_free(c);
    deflate_ctx_free(NULL);
    buf_cleanup(&b);
}

static void test_empty_messages(void **state)
{
    struct deflate_ctx *tx = new_ctx(&default_params), *rx = new_ctx(&default_params);
    static const char *msgs[] = {"", "abcabc", "", "", "abcabcabc", ""};
    struct buf z, out;
    buf_init(&z);
    buf_init(&out);
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        buf_reset(&z);
        buf_reset(&out);
        assert_int_equal(deflate_compress(tx, (const uint8_t *)msgs[i], strlen(msgs[i]), &z), 0);
        assert_int_equal(deflate_decompress(rx, z.data, z.len, 0, &out), 0);
        assert_int_equal(out.len, strlen(msgs[i]));
        if (out.len)
            assert_memory_equal(out.data, msgs[i], out.len);
    }
    /* An empty payload is taken as an empty message and leaves the stream
     * as it was: the next message, which refers back, still decodes. */
    buf_reset(&out);
    assert_int_equal(deflate_decompress(rx, NULL, 0, 0, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(deflate_decompress(rx, (const uint8_t *)"", 0, 0, &out), 0);
    assert_int_equal(out.len, 0);
    buf_reset(&z);
    assert_int_equal(deflate_compress(tx, (const uint8_t *)"abcabcabc", 9, &z), 0);
    assert_true(z.len < 9);
    assert_int_equal(deflate_decompress(rx, z.data, z.len, 0, &out), 0);
    assert_int_equal(out.len, 9);
    assert_memory_equal(out.data, "abcabcabc", 9);
    deflate_ctx_free(tx);
    deflate_ctx_free(rx);
    buf_cleanup(&z);
    buf_cleanup(&out);
}

static void test_strerror(void **state)
{
    static const int codes[] = {DEFLATE_OK, DEFLATE_EINVAL, DEFLATE_ETOOBIG, DEFLATE_ENOMEM, 42};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(deflate_strerror(codes[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(deflate_strerror(codes[i]), deflate_strerror(codes[j]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_default),
        cmocka_unit_test(test_negotiate_table),
        cmocka_unit_test(test_negotiate_respects_length),
        cmocka_unit_test(test_response_encode),
        cmocka_unit_test(test_response_negotiates_back),
        cmocka_unit_test(test_rfc7692_examples),
        cmocka_unit_test(test_compress_matches_rfc7692),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_context_takeover),
        cmocka_unit_test(test_client_window_enforced),
        cmocka_unit_test(test_client_no_context_takeover_resets),
        cmocka_unit_test(test_zip_bomb),
        cmocka_unit_test(test_limit_exact),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_window_8),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_empty_messages),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

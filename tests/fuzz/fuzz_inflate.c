/* Fuzz target for permessage-deflate.
 *
 * Byte 0 picks the negotiated parameters (bits 0-2: client window - 8,
 * bits 3-5: server window - 8, bit 6: server_no_context_takeover, bit 7:
 * client_no_context_takeover); byte 1 the compression level (high nibble)
 * and where the rest is cut in two (low nibble). The rest is inflated as two
 * messages with a 1 MiB limit, then compressed as three messages (the two
 * parts and the whole) by one context and inflated by its peer, which must
 * give the input back. The whole input is also parsed as a
 * Sec-WebSocket-Extensions header, and an accepted offer must survive
 * response -> negotiation unchanged. A mismatch is a real bug and aborts;
 * nothing else does. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "deflate.h"

#define MAX_OUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_params(const struct deflate_params *a, const struct deflate_params *b)
{
    return a->server_no_context_takeover == b->server_no_context_takeover &&
           a->client_no_context_takeover == b->client_no_context_takeover &&
           a->server_max_window_bits == b->server_max_window_bits &&
           a->client_max_window_bits == b->client_max_window_bits;
}

static void negotiate(const uint8_t *data, size_t size)
{
    struct deflate_params p, q;
    if (deflate_negotiate((const char *)data, size, NULL, &p) != 1)
        return;
    struct buf b;
    buf_init(&b);
    if (deflate_response_encode(&p, &b) == DEFLATE_OK &&
        (deflate_negotiate((const char *)b.data, b.len, NULL, &q) != 1 || !same_params(&p, &q)))
        abort();
    buf_cleanup(&b);
}

/* Inflates one message from an allocation of exactly its size. */
static void inflate_one(struct deflate_ctx *c, const uint8_t *src, size_t n, struct buf *out)
{
    uint8_t *m = malloc(n ? n : 1);
    if (!m)
        return;
    if (n)
        memcpy(m, src, n);
    buf_reset(out);
    int rc = deflate_decompress(c, m, n, MAX_OUT, out);
    if (rc != DEFLATE_OK && rc != DEFLATE_EINVAL && rc != DEFLATE_ETOOBIG && rc != DEFLATE_ENOMEM)
        abort();
    if (out->len > MAX_OUT || (rc != DEFLATE_OK && out->len != 0))
        abort();
    free(m);
}

/* Sends one message from tx to rx. Returns false on allocation failure. */
static bool round_trip(struct deflate_ctx *tx, struct deflate_ctx *rx, const uint8_t *m, size_t n,
                       struct buf *z, struct buf *out)
{
    buf_reset(z);
    buf_reset(out);
    int rc = deflate_compress(tx, m, n, z);
    if (rc == DEFLATE_ENOMEM)
        return false;
    if (rc != DEFLATE_OK)
        abort();
    /* The exact size is the limit: inclusive, so it must pass. */
    rc = deflate_decompress(rx, z->data, z->len, n ? n : 1, out);
    if (rc == DEFLATE_ENOMEM)
        return false;
    if (rc != DEFLATE_OK || out->len != n || (n && memcmp(out->data, m, n) != 0))
        abort();
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    negotiate(data, size);
    if (size < 2)
        return 0;
    struct deflate_params p = {
        .server_no_context_takeover = (data[0] & 0x40) != 0,
        .client_no_context_takeover = (data[0] & 0x80) != 0,
        .server_max_window_bits = 8 + ((data[0] >> 3) & 7),
        .client_max_window_bits = 8 + (data[0] & 7),
    };
    struct deflate_params peer = {
        .client_no_context_takeover = p.server_no_context_takeover,
        .server_max_window_bits = 15,
        .client_max_window_bits = p.server_max_window_bits,
    };
    struct deflate_config cfg;
    deflate_config_default(&cfg);
    cfg.level = (data[1] >> 4) % 10;
    const uint8_t *rest = data + 2;
    size_t n = size - 2;
    size_t cut = n * (data[1] & 15) / 15;

    struct deflate_ctx *c = deflate_ctx_new(&p, &cfg);
    struct deflate_ctx *rx = deflate_ctx_new(&peer, &cfg);
    struct buf z, out;
    buf_init(&z);
    buf_init(&out);
    if (c && rx) {
        inflate_one(c, rest, cut, &out);
        inflate_one(c, rest + cut, n - cut, &out);
        deflate_ctx_trim(c);
        if (round_trip(c, rx, rest, cut, &z, &out) &&
            round_trip(c, rx, rest + cut, n - cut, &z, &out)) {
            deflate_ctx_trim(c);
            deflate_ctx_trim(rx);
            round_trip(c, rx, rest, n, &z, &out);
        }
    }
    deflate_ctx_free(c);
    deflate_ctx_free(rx);
    buf_cleanup(&z);
    buf_cleanup(&out);
    return 0;
}

/* deflate: RFC 7692 permessage-deflate for the server side.
 *
 * Negotiation parses a client's Sec-WebSocket-Extensions header and picks the
 * first offer the server accepts; per-message compression/decompression runs
 * zlib raw deflate with the negotiated window bits and context takeover.
 * zlib streams are created lazily, on the first message in each direction,
 * so idle connections cost no zlib memory.
 */
#ifndef SOCKEYE_PROTOCOL_DEFLATE_H
#define SOCKEYE_PROTOCOL_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum deflate_result {
    DEFLATE_OK = 0,
    DEFLATE_EINVAL = -1,  /* malformed header or corrupt compressed data */
    DEFLATE_ETOOBIG = -2, /* inflated size over the limit */
    DEFLATE_ENOMEM = PROTO_ENOMEM,
};

/* What the server is willing to do. Memory-safe defaults come from
 * deflate_config_default(). */
struct deflate_config {
    int server_max_window_bits;      /* 8..15: upper bound for our compressor (default 15) */
    bool server_no_context_takeover; /* force it even if the client did not ask */
    int mem_level;                   /* zlib memLevel for compression, 1..9 (default 8) */
    int level;                       /* zlib level 0..9 (default 1: fast) */
    size_t threshold; /* messages shorter than this are sent uncompressed (default 1024) */
};

/* The negotiated parameters of one connection. */
struct deflate_params {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    int server_max_window_bits; /* 8..15 */
    int client_max_window_bits; /* 8..15 */
};

void deflate_config_default(struct deflate_config *cfg);

/* Parses the value of Sec-WebSocket-Extensions (all offers, comma separated,
 * parameters after ';', quoted values allowed) and selects the first
 * permessage-deflate offer that is acceptable under cfg.
 * Returns 1 and fills *out when one was accepted, 0 when none was offered or
 * acceptable, DEFLATE_EINVAL when the header is malformed. */
int deflate_negotiate(const char *header, size_t len, const struct deflate_config *cfg,
                      struct deflate_params *out);

/* Appends the Sec-WebSocket-Extensions response value for p (e.g.
 * "permessage-deflate; server_no_context_takeover"). */
int deflate_response_encode(const struct deflate_params *p, struct buf *out);

/* One connection's compression state. */
struct deflate_ctx;

/* Returns NULL on allocation failure. Allocates no zlib state yet. */
struct deflate_ctx *deflate_ctx_new(const struct deflate_params *p,
                                    const struct deflate_config *cfg);
void deflate_ctx_free(struct deflate_ctx *c);

/* Compresses one whole message and appends the payload to send (RFC 7692:
 * the trailing 00 00 ff ff removed). Returns DEFLATE_OK or DEFLATE_ENOMEM. */
int deflate_compress(struct deflate_ctx *c, const uint8_t *in, size_t len, struct buf *out);

/* Inflates one whole received message (the payload of a message with RSV1
 * set) and appends the result to out. Stops with DEFLATE_ETOOBIG as soon as
 * the output would exceed max_out bytes (0 = no limit), DEFLATE_EINVAL on
 * corrupt data. */
int deflate_decompress(struct deflate_ctx *c, const uint8_t *in, size_t len, size_t max_out,
                       struct buf *out);

/* Frees the zlib streams of an idle connection (they are re-created on the
 * next message). Only allowed when the direction has no context takeover;
 * otherwise a no-op. */
void deflate_ctx_trim(struct deflate_ctx *c);

const char *deflate_strerror(int result);

#endif

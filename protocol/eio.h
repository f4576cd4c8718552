/* eio: Engine.IO v4 packets and HTTP long-polling payloads.
 *
 * Text packet: one digit type (0 open .. 6 noop) followed by UTF-8 data.
 * WebSocket: one packet per frame; a binary frame is a message packet whose
 * data is the raw frame payload (no type byte) and needs no decoding here.
 * Polling payload: packets joined by the record separator 0x1e; a binary
 * message is 'b' followed by the base64 of its bytes.
 *
 * Decoders are zero-copy: packet data points into the caller's input. The
 * payload reader decodes base64 IN PLACE, so its input must be writable.
 */
#ifndef SOCKEYE_PROTOCOL_EIO_H
#define SOCKEYE_PROTOCOL_EIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum eio_packet_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
};

enum eio_result {
    EIO_OK = 0,
    EIO_END = 1,     /* eio_payload_next: no more packets */
    EIO_EINVAL = -1, /* empty packet, unknown type, bad base64 */
    EIO_ENOMEM = PROTO_ENOMEM,
};

#define EIO_SEPARATOR 0x1e

struct eio_packet {
    enum eio_packet_type type;
    bool binary;         /* a binary message (type is EIO_MESSAGE) */
    const uint8_t *data; /* the packet's data without the type character */
    size_t len;
};

/* Decodes a text packet (a WebSocket text frame, or one element of a polling
 * payload). Returns EIO_OK or EIO_EINVAL. */
int eio_packet_decode(const uint8_t *in, size_t len, struct eio_packet *out);

/* Iterates over a polling payload (a POST body). */
struct eio_payload_reader {
    uint8_t *p;   /* private */
    uint8_t *end; /* private */
    bool done;    /* private */
};

void eio_payload_reader_init(struct eio_payload_reader *r, uint8_t *body, size_t len);

/* Yields the next packet: EIO_OK with *out filled (data points into body and
 * stays valid while body does), EIO_END after the last one, EIO_EINVAL for an
 * invalid element (including an empty body or an empty element). */
int eio_payload_next(struct eio_payload_reader *r, struct eio_packet *out);

/* Appends a text packet: the type digit then data. */
int eio_packet_encode(struct buf *out, enum eio_packet_type type, const void *data, size_t len);

/* Appends one packet to a polling payload being built in out: a separator
 * first when out is not empty, then the text packet, or for a binary message
 * 'b' + base64(data). */
int eio_payload_append(struct buf *out, const struct eio_packet *p);

/* Appends the open packet "0{...}" with exactly the keys sid, upgrades,
 * pingInterval, pingTimeout and maxPayload, in that order. sid is JSON-safe
 * (base64url); each upgrades[i] is a transport name. */
int eio_open_encode(struct buf *out, const char *sid, const char *const *upgrades,
                    size_t n_upgrades, uint32_t ping_interval, uint32_t ping_timeout,
                    uint64_t max_payload);

const char *eio_strerror(int result);

#endif

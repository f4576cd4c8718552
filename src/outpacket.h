/* outpacket: one outgoing Engine.IO packet, encoded once and shared.
 *
 * The bytes are laid out as a complete server WebSocket frame (server frames
 * are unmasked, so the same frame serves every recipient):
 *
 *     [ws header][type digit, text packets only][data]
 *
 * A WebSocket transport sends the whole frame by reference
 * (evbuffer_add_reference + outpacket_ref); a polling transport copies the
 * text form (digit + data) or base64s binary data into its response.
 * Immutable after creation; reference counted; single-threaded.
 */
#ifndef SOCKEYE_OUTPACKET_H
#define SOCKEYE_OUTPACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eio.h"

struct outpacket {
    unsigned refs;
    uint8_t type;     /* enum eio_packet_type */
    bool binary;      /* a binary message */
    bool is_volatile; /* may be dropped when the transport is not writable */
    bool no_compress; /* never permessage-deflate it */
    uint8_t hdr_len;  /* WebSocket header length */
    size_t data_len;  /* data bytes (without the type digit) */
    uint8_t bytes[];  /* see above */
};

/* A packet holding a copy of data[0..len) (binary: a binary message; type
 * must then be EIO_MESSAGE). refs starts at 1. NULL on allocation failure. */
struct outpacket *outpacket_new(enum eio_packet_type type, bool binary, const void *data,
                                size_t len);

/* Like outpacket_new but the caller fills the data in place: returns the
 * packet and sets *data to its len writable data bytes. */
struct outpacket *outpacket_alloc(enum eio_packet_type type, bool binary, size_t len,
                                  uint8_t **data);

static inline struct outpacket *outpacket_ref(struct outpacket *p)
{
    p->refs++;
    return p;
}

/* Drops a reference; frees at zero. NULL is a no-op. */
void outpacket_unref(struct outpacket *p);

/* The whole WebSocket frame. */
static inline const uint8_t *outpacket_frame(const struct outpacket *p, size_t *len)
{
    *len = p->hdr_len + (p->binary ? 0 : 1) + p->data_len;
    return p->bytes;
}

/* The text form "<digit><data>" (text packets only). */
static inline const uint8_t *outpacket_text(const struct outpacket *p, size_t *len)
{
    *len = 1 + p->data_len;
    return p->bytes + p->hdr_len;
}

/* The data bytes (without type digit). */
static inline const uint8_t *outpacket_data(const struct outpacket *p)
{
    return p->bytes + p->hdr_len + (p->binary ? 0 : 1);
}

/* Size counted against output limits. */
static inline size_t outpacket_size(const struct outpacket *p)
{
    return p->hdr_len + 1 + p->data_len;
}

/* evbuffer_add_reference cleanup function: unrefs the packet in extra. */
void outpacket_evbuffer_cleanup(const void *data, size_t len, void *extra);

#endif

/* utf8: incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). The state survives across calls, so a message may
 * be validated in pieces that split a code point anywhere. */
#ifndef SOCKEYE_PROTOCOL_UTF8_H
#define SOCKEYE_PROTOCOL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 0 = at a code point boundary (UTF8_ACCEPT); UTF8_REJECT once invalid. */
#define UTF8_ACCEPT 0u
#define UTF8_REJECT 1u

struct utf8_state {
    uint32_t state;
};

static inline void utf8_init(struct utf8_state *s)
{
    s->state = UTF8_ACCEPT;
}

/* Feeds n bytes. Returns false as soon as the input cannot be valid UTF-8 (the
 * state then stays rejected); true otherwise, even when a code point is still
 * incomplete. */
bool utf8_feed(struct utf8_state *s, const uint8_t *p, size_t n);

/* True when everything fed so far is complete, valid UTF-8. */
static inline bool utf8_complete(const struct utf8_state *s)
{
    return s->state == UTF8_ACCEPT;
}

/* One-shot: true when p[0..n) is complete, valid UTF-8. */
bool utf8_valid(const uint8_t *p, size_t n);

#endif

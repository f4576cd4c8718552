/* buf: a growable byte buffer owned by its caller.
 *
 * Every encoder in protocol/ appends to a struct buf. The buffer never shrinks
 * on its own; buf_reset() keeps the allocation for reuse. A struct buf that
 * has been zero-initialised (or buf_init()ed) is empty and owns nothing.
 */
#ifndef SOCKEYE_PROTOCOL_BUF_H
#define SOCKEYE_PROTOCOL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data; /* NULL until the first append */
    size_t len;
    size_t cap;
};

/* Error code shared by every protocol/ module: allocation failed. */
#define PROTO_ENOMEM (-100)

void buf_init(struct buf *b);

/* Frees the storage; the buffer is empty and reusable afterwards. */
void buf_cleanup(struct buf *b);

/* Sets len to 0 and keeps the allocation. */
void buf_reset(struct buf *b);

/* Makes room for at least `extra` more bytes. Returns 0, or PROTO_ENOMEM
 * (also when len + extra would overflow). The contents are unchanged. */
int buf_reserve(struct buf *b, size_t extra);

/* Appends n bytes (copies them). Returns 0 or PROTO_ENOMEM; on failure the
 * buffer is unchanged. */
int buf_append(struct buf *b, const void *p, size_t n);

/* Appends one byte / a NUL-terminated string (without its NUL). */
int buf_append_byte(struct buf *b, uint8_t c);
int buf_append_str(struct buf *b, const char *s);

/* Appends the decimal form of v. */
int buf_append_u64(struct buf *b, uint64_t v);

/* Hands the storage to the caller: returns data (may be NULL when empty) and
 * leaves the buffer empty. The caller frees the result with free(). */
uint8_t *buf_steal(struct buf *b, size_t *len);

#endif

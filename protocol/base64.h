/* base64: RFC 4648 encoding (standard and URL-safe alphabets) and a strict
 * standard-alphabet decoder. Pure functions, no allocation. */
#ifndef SOCKEYE_PROTOCOL_BASE64_H
#define SOCKEYE_PROTOCOL_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BASE64_EINVAL (-1)

/* Length of the padded encoding of n bytes. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Writes the padded standard encoding of in[0..n) to out, which must have room
 * for BASE64_ENCODED_LEN(n) bytes (no NUL is written). Returns bytes written. */
size_t base64_encode(const uint8_t *in, size_t n, char *out);

/* The URL-safe alphabet ('-', '_') without padding. Returns bytes written,
 * at most BASE64_ENCODED_LEN(n). */
size_t base64url_encode(const uint8_t *in, size_t n, char *out);

/* Decodes padded or unpadded standard base64. out needs (n / 4 + 1) * 3 bytes
 * at most; out may equal in (decoding in place is safe because the output is
 * never longer than the input consumed so far). Returns the decoded length,
 * or BASE64_EINVAL for a character outside the alphabet, misplaced padding or
 * a length that cannot be valid (n % 4 == 1). */
long base64_decode(const char *in, size_t n, uint8_t *out);

#endif

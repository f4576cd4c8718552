/* json: compact JSON text of cJSON trees, written as JavaScript's
 * JSON.stringify writes it, so that values relayed to socket.io clients keep
 * their exact numbers (cJSON's own printer rounds some integers above 2^50,
 * e.g. 9007199254740991) and their key order. */
#ifndef SOCKEYE_PROTOCOL_JSON_H
#define SOCKEYE_PROTOCOL_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "buf.h"

#define JSON_EINVAL (-1) /* a node that has no JSON form (e.g. a binary node) */

/* Longest text json_number() writes, NUL included. */
#define JSON_NUMBER_MAX 32

/* Writes d as JavaScript's Number#toString does (shortest text that reads
 * back as the same double; exponent form below 1e-6 and from 1e21), "0" for
 * -0 and "null" for NaN and infinities, as JSON.stringify does. Returns the
 * length (no NUL counted). */
size_t json_number(double d, char out[JSON_NUMBER_MAX]);

/* Appends the compact JSON of item to out. Binary nodes (see sio.h) are
 * written as the JSON string binary_text, or make the call fail with
 * JSON_EINVAL when binary_text is NULL. Returns 0, JSON_EINVAL or
 * PROTO_ENOMEM; on failure out keeps its previous length. */
int json_print(const cJSON *item, struct buf *out, const char *binary_text);

/* The length of the run of bytes at the start of s[0..n) that stand for
 * themselves inside a JSON string: none is a control character (below 0x20),
 * '"' or '\\'. Looks at eight bytes at a time; reads nothing past s + n. */
size_t json_plain_run(const char *s, size_t n);

#endif

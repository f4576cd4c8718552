/* sio: Socket.IO v5 packets and binary attachments.
 *
 * Wire form: <type>[<attachments>-][<nsp>,][<ack id>][<JSON>], carried in an
 * Engine.IO message. The namespace is omitted when it is "/".
 *
 * The JSON of a packet is parsed once, by the decoder, and validated by type
 * (CONNECT: object or absent; DISCONNECT: absent; EVENT/BINARY_EVENT: a
 * non-empty array whose first element is a number or a non-reserved string;
 * ACK/BINARY_ACK: array; CONNECT_ERROR: string or object).
 *
 * Binary data inside a cJSON tree is a "binary node" made by sio_binary_new():
 * a cJSON item of base type cJSON_Invalid carrying the SIO_CJSON_BINARY flag.
 * Binary nodes must not be printed or duplicated with cJSON's own functions
 * (cJSON_Print* fails on them); cJSON_Delete frees them correctly.
 * On the wire each one becomes a placeholder {"_placeholder":true,"num":i}
 * and its bytes travel as the i-th following binary Engine.IO message.
 */
#ifndef SOCKEYE_PROTOCOL_SIO_H
#define SOCKEYE_PROTOCOL_SIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "buf.h"

enum sio_packet_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
};

enum sio_result {
    SIO_OK = 0,
    SIO_EINVAL = -1,       /* malformed packet */
    SIO_ETOOMANY = -2,     /* more attachments than allowed */
    SIO_EPLACEHOLDER = -3, /* placeholder num out of range or attachment unused */
    SIO_ENOMEM = PROTO_ENOMEM,
};

#define SIO_NO_ACK                  (-1)
#define SIO_DEFAULT_MAX_ATTACHMENTS 10
/* Flag bit set in cJSON.type on binary nodes (above cJSON's own flags). */
#define SIO_CJSON_BINARY (1 << 12)

struct sio_limits {
    size_t max_attachments; /* default SIO_DEFAULT_MAX_ATTACHMENTS */
};

struct sio_packet {
    enum sio_packet_type type;
    const char *nsp; /* slice of the input, or the static "/" */
    size_t nsp_len;
    int64_t id;         /* ack id, or SIO_NO_ACK */
    size_t attachments; /* declared count (binary types only) */
    const char *data;   /* raw JSON text, a slice of the input (len 0 if absent) */
    size_t data_len;
    cJSON *json; /* parsed data, owned by the packet; NULL when absent */
};

/* Decodes one packet from in[0..len) (the Engine.IO message data). On SIO_OK
 * *out is filled and owns out->json: release it with sio_packet_cleanup().
 * On error *out owns nothing. Ack ids must fit in 53 bits (JavaScript's safe
 * integers). */
int sio_packet_decode(const char *in, size_t len, const struct sio_limits *lim,
                      struct sio_packet *out);

/* Frees out->json. Safe on a packet that owns nothing. */
void sio_packet_cleanup(struct sio_packet *p);

/* True when name is reserved and may not be used as an event name
 * (connect, connect_error, disconnect, disconnecting, newListener,
 * removeListener). */
bool sio_event_name_reserved(const char *name, size_t len);

/* Attachments of one packet, in placeholder order. Owns its items. */
struct sio_attachments {
    cJSON **items;
    size_t n;
    size_t cap;
};

void sio_attachments_init(struct sio_attachments *a);
/* Deletes every item still held. */
void sio_attachments_cleanup(struct sio_attachments *a);
/* Appends a binary node holding a copy of data[0..len). */
int sio_attachments_add(struct sio_attachments *a, const void *data, size_t len);

/* Replaces every binary node in tree, depth-first, by a placeholder and moves
 * the node into a (appended in order). Fails with SIO_ETOOMANY past
 * max_attachments (0 = no limit); the tree is then partly deconstructed and
 * should be deleted. Returns the number of attachments moved (>= 0). */
int sio_binary_deconstruct(cJSON *tree, struct sio_attachments *a, size_t max_attachments);

/* Replaces every placeholder in tree by the attachment it names (moved out of
 * a). Fails with SIO_EPLACEHOLDER for a num out of range, a malformed
 * placeholder, an attachment named twice (which would multiply its memory)
 * or an attachment left unused. */
int sio_binary_reconstruct(cJSON *tree, struct sio_attachments *a);

/* A binary node holding a copy of data[0..len); NULL on allocation failure. */
cJSON *sio_binary_new(const void *data, size_t len);
bool sio_is_binary(const cJSON *item);
/* The bytes of a binary node (NULL, *len = 0, if item is not one). */
const uint8_t *sio_binary_data(const cJSON *item, size_t *len);
/* Like cJSON_Duplicate(item, true) but also copies binary nodes. */
cJSON *sio_json_duplicate(const cJSON *item);

/* Appends the encoded packet to out. nsp NULL means "/"; id SIO_NO_ACK means
 * none; data NULL means no JSON. When data contains binary nodes they are
 * moved into att (data keeps placeholders in their place) and an EVENT/ACK
 * becomes BINARY_EVENT/BINARY_ACK with the attachment count in the header;
 * the caller sends att's items as binary Engine.IO messages after this one.
 * att may be NULL only when data has no binary nodes. JSON is compact and
 * keeps key order; numbers are written as JSON.stringify writes them. */
int sio_packet_encode(struct buf *out, enum sio_packet_type type, const char *nsp, size_t nsp_len,
                      int64_t id, cJSON *data, struct sio_attachments *att);

const char *sio_strerror(int result);

#endif

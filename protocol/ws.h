/* ws: RFC 6455 WebSocket framing for the server side.
 *
 * Decoder: incremental, for client frames. Feed it any split of the byte
 * stream; each call consumes what it can and yields at most one event. Data
 * frames are reassembled into whole messages (fragmentation, interleaved
 * control frames), text messages are UTF-8 validated (across fragments), and
 * message size is limited before anything is allocated.
 *
 * Zero-copy: payload bytes are unmasked IN PLACE in the caller's input. When a
 * message is one unfragmented frame that is wholly inside the input of one
 * call, the event's data points into that input and stays valid until the
 * caller changes or frees the input. Otherwise the decoder assembles the
 * message in its own buffer and the event's data points there, valid until the
 * next ws_decode()/ws_decoder_cleanup() call.
 *
 * Encoder: server frames are never masked, so one encoded frame can be sent to
 * any number of connections.
 */
#ifndef SOCKEYE_PROTOCOL_WS_H
#define SOCKEYE_PROTOCOL_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "utf8.h"

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close status codes used by the server. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never sent; reported when a close has no code */
    WS_CLOSE_ABNORMAL = 1006,  /* never sent */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

/* Results of ws_decode(). */
enum ws_result {
    WS_EVENT = 1,             /* *ev is filled in */
    WS_NEED_MORE = 0,         /* all input consumed, no event yet */
    WS_EPROTO = -1,           /* protocol violation -> close 1002 */
    WS_EUTF8 = -2,            /* invalid UTF-8 in a text message or close reason -> 1007 */
    WS_ETOOBIG = -3,          /* message over max_message -> 1009 */
    WS_ENOMEM = PROTO_ENOMEM, /* -> 1011 */
};

enum ws_event_type {
    WS_EV_MESSAGE, /* a complete text or binary message */
    WS_EV_PING,
    WS_EV_PONG,
    WS_EV_CLOSE,
};

struct ws_event {
    enum ws_event_type type;
    enum ws_opcode opcode; /* WS_OP_TEXT or WS_OP_BINARY for messages */
    bool compressed;       /* RSV1 was set on the first frame (permessage-deflate);
                              such text is NOT UTF-8 validated: inflate, then check */
    const uint8_t *data;   /* message / control payload (close: the reason only) */
    size_t len;
    uint16_t close_code; /* WS_EV_CLOSE: the peer's code, or 1005 when absent */
};

struct ws_decoder_config {
    size_t max_message; /* limit on a message's total payload (0 = no limit) */
    bool allow_rsv1;    /* true once permessage-deflate was negotiated */
};

struct ws_decoder {
    /* Private: use the functions below. */
    struct ws_decoder_config cfg;
    int stage;
    int error; /* sticky negative ws_result once the stream failed */
    uint8_t hdr[14];
    size_t hdr_len, hdr_need;
    uint8_t opcode;
    bool fin, rsv1;
    uint8_t mask[4];
    uint64_t remaining; /* payload bytes of the current frame still to come */
    uint64_t frame_off; /* payload bytes of the current frame already seen */
    uint8_t msg_opcode; /* opcode of the message in progress, 0 when none */
    bool msg_compressed;
    uint64_t msg_len;
    struct utf8_state utf8;
    uint8_t *ctl; /* 125 bytes, allocated only while a control frame
                     arrives in pieces (idle connections stay small) */
    uint8_t ctl_len;
    struct buf msg; /* reassembly buffer, allocated on demand */
};

/* Never fails; allocates nothing until a message needs reassembly. */
void ws_decoder_init(struct ws_decoder *d, const struct ws_decoder_config *cfg);
void ws_decoder_cleanup(struct ws_decoder *d);

/* Consumes bytes from in[0..len) (unmasking them in place) and sets *consumed.
 * Returns WS_EVENT with *ev filled (call again with the rest of the input),
 * WS_NEED_MORE when every byte was consumed without completing an event, or a
 * negative ws_result: the stream is then unusable; close with
 * ws_result_close_code(). After a WS_EV_CLOSE event the decoder yields no more
 * events. */
int ws_decode(struct ws_decoder *d, uint8_t *in, size_t len, size_t *consumed, struct ws_event *ev);

/* The close code to send for a negative ws_result. */
uint16_t ws_result_close_code(int result);

/* A static English reason for a ws_result. */
const char *ws_strerror(int result);

/* True for a close code a peer may send (1000-1003, 1007-1011, 3000-4999). */
bool ws_close_code_valid(uint16_t code);

/* Largest frame header the encoder writes. */
#define WS_MAX_HEADER 10

/* Writes an unmasked frame header (FIN set) for a payload of len bytes into
 * out and returns its length (2, 4 or 10). rsv1 marks a compressed message. */
size_t ws_header_encode(uint8_t out[WS_MAX_HEADER], enum ws_opcode op, bool rsv1, uint64_t len);

/* Appends a whole frame (header + payload copy) to out. Returns 0 or
 * PROTO_ENOMEM. */
int ws_frame_encode(struct buf *out, enum ws_opcode op, bool rsv1, const void *payload, size_t len);

/* Appends a close frame with code and reason (reason truncated so the payload
 * fits in 125 bytes). code 0 sends an empty close frame. */
int ws_close_encode(struct buf *out, uint16_t code, const char *reason);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key. Returns false when the key is
 * not the base64 of 16 bytes (24 characters); otherwise writes 28 characters
 * and a NUL into out. */
#define WS_ACCEPT_LEN 28
bool ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

#endif

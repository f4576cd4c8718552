#include "outpacket.h"

#include <stdlib.h>
#include <string.h>

#include "ws.h"

struct outpacket *outpacket_alloc(enum eio_packet_type type, bool binary, size_t len,
                                  uint8_t **data)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t payload = len + (binary ? 0 : 1);
    size_t hdr_len = ws_header_encode(hdr, binary ? WS_OP_BINARY : WS_OP_TEXT, false, payload);
    if (len > SIZE_MAX - sizeof(struct outpacket) - WS_MAX_HEADER - 1)
        return NULL;
    struct outpacket *p = malloc(sizeof(*p) + hdr_len + payload);
    if (!p)
        return NULL;
    p->refs = 1;
    p->type = (uint8_t)type;
    p->binary = binary;
    p->is_volatile = false;
    p->no_compress = false;
    p->hdr_len = (uint8_t)hdr_len;
    p->data_len = len;
    memcpy(p->bytes, hdr, hdr_len);
    if (!binary)
        p->bytes[hdr_len] = (uint8_t)('0' + type);
    *data = p->bytes + hdr_len + (binary ? 0 : 1);
    return p;
}

struct outpacket *outpacket_new(enum eio_packet_type type, bool binary, const void *data,
                                size_t len)
{
    uint8_t *dst;
    struct outpacket *p = outpacket_alloc(type, binary, len, &dst);
    if (p && len)
        memcpy(dst, data, len);
    return p;
}

void outpacket_unref(struct outpacket *p)
{
    if (p && --p->refs == 0)
        free(p);
}

void outpacket_evbuffer_cleanup(const void *data, size_t len, void *extra)
{
    outpacket_unref(extra);
}

/* Fuzz target for the WebSocket frame decoder.
 *
 * Byte 0 configures the run: bit 0 allows RSV1 (permessage-deflate), the
 * other bits choose how the rest of the input is cut into chunks. The stream
 * is decoded twice, in one piece and in chunks, and both runs must report the
 * same events and result. Each chunk is copied to an allocation of exactly
 * its size, so the sanitizers see any read or write outside it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws.h"

#define MAX_MESSAGE (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    uint64_t hash; /* FNV-1a over every event */
    int rc;        /* 0, or the error that ended the run */
};

static void mix(uint64_t *h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ p[i]) * 0x100000001b3ull;
}

/* Contract checks on an event; a failure is a decoder bug. */
static void check_event(const struct ws_event *ev)
{
    if (ev->len && !ev->data)
        __builtin_trap();
    if (ev->type == WS_EV_MESSAGE && ev->opcode == WS_OP_TEXT && !ev->compressed &&
        !utf8_valid(ev->data, ev->len))
        __builtin_trap();
    if (ev->type != WS_EV_MESSAGE && ev->len > 125)
        __builtin_trap();
    if (ev->type == WS_EV_MESSAGE && ev->len > MAX_MESSAGE)
        __builtin_trap();
    if (ev->type == WS_EV_CLOSE && ev->close_code != WS_CLOSE_NO_STATUS &&
        !ws_close_code_valid(ev->close_code))
        __builtin_trap();
}

static void record(struct outcome *o, const struct ws_event *ev)
{
    check_event(ev);
    uint8_t h[5] = {(uint8_t)ev->type, (uint8_t)ev->opcode, ev->compressed,
                    (uint8_t)(ev->close_code >> 8), (uint8_t)ev->close_code};
    mix(&o->hash, h, sizeof(h));
    mix(&o->hash, (const uint8_t *)&ev->len, sizeof(ev->len));
    if (ev->len)
        mix(&o->hash, ev->data, ev->len);
}

/* Returns false when the run must stop (error or allocation failure). */
static bool feed(struct ws_decoder *d, const uint8_t *src, size_t n, struct outcome *o)
{
    uint8_t *chunk = malloc(n ? n : 1);
    if (!chunk) {
        o->rc = WS_ENOMEM;
        return false;
    }
    memcpy(chunk, src, n);
    size_t off = 0;
    while (off < n) {
        size_t used = 0;
        struct ws_event ev;
        int rc = ws_decode(d, chunk + off, n - off, &used, &ev);
        if (used > n - off)
            __builtin_trap();
        if (rc < 0) {
            o->rc = rc;
            break;
        }
        /* The progress guarantee: no call may leave input untouched. */
        if (used == 0 || (rc == WS_NEED_MORE && used != n - off))
            __builtin_trap();
        if (rc == WS_EVENT)
            record(o, &ev);
        off += used;
    }
    free(chunk);
    return o->rc == 0;
}

static size_t chunk_size(uint8_t seed, size_t k, const uint8_t *p, size_t left)
{
    if (seed == 0)
        return left;
    size_t n = 1 + (seed + 31 * k + p[0]) % (2u * seed + 1);
    return n < left ? n : left;
}

static struct outcome decode(const uint8_t *p, size_t n, bool rsv1, uint8_t seed)
{
    struct ws_decoder_config cfg = {.max_message = MAX_MESSAGE, .allow_rsv1 = rsv1};
    struct ws_decoder d;
    struct outcome o = {0xcbf29ce484222325ull, 0};
    ws_decoder_init(&d, &cfg);
    size_t off = 0;
    for (size_t k = 0; off < n; k++) {
        size_t c = chunk_size(seed, k, p + off, n - off);
        if (!feed(&d, p + off, c, &o))
            break;
        off += c;
    }
    ws_decoder_cleanup(&d);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool rsv1 = data[0] & 1;
    uint8_t seed = data[0] >> 1;
    struct outcome whole = decode(data + 1, size - 1, rsv1, 0);
    struct outcome cut = decode(data + 1, size - 1, rsv1, seed);
    if (whole.rc != WS_ENOMEM && cut.rc != WS_ENOMEM &&
        (whole.rc != cut.rc || whole.hash != cut.hash))
        __builtin_trap();
    return 0;
}

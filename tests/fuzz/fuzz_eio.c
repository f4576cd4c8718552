/* Fuzz target for the Engine.IO packet decoder and polling payload reader.
 *
 * The input is decoded as one text packet, then read as a polling payload
 * (from a writable copy of exactly its size, since base64 is decoded in
 * place), whole and cut in two where byte 0 says. Every packet read is
 * appended to a new payload, which must read back to the same packets; a
 * mismatch or a broken contract is a codec bug and aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "eio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *copy_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

static void check_packet(const struct eio_packet *p, const uint8_t *body, size_t n)
{
    if ((unsigned)p->type > EIO_NOOP || (p->binary && p->type != EIO_MESSAGE))
        abort();
    if (p->data < body || p->len > n || p->data - body > (ptrdiff_t)(n - p->len))
        abort();
}

static bool same_packet(const struct eio_packet *a, const struct eio_packet *b)
{
    return a->type == b->type && a->binary == b->binary && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Reads src as a payload and appends every packet to re; returns how many. */
static size_t read_payload(const uint8_t *src, size_t n, struct buf *re, bool *oom)
{
    uint8_t *body = copy_exact(src, n);
    if (!body) {
        *oom = true;
        return 0;
    }
    struct eio_payload_reader r;
    struct eio_packet p;
    size_t count = 0;
    int rc;
    eio_payload_reader_init(&r, body, n);
    while ((rc = eio_payload_next(&r, &p)) == EIO_OK) {
        check_packet(&p, body, n);
        /* A packet read from a payload never holds a separator, so it can
         * always be appended. */
        int arc = eio_payload_append(re, &p);
        if (arc == EIO_ENOMEM)
            *oom = true;
        else if (arc != EIO_OK)
            abort();
        count++;
    }
    if ((rc != EIO_END && rc != EIO_EINVAL) || eio_payload_next(&r, &p) != rc)
        abort();
    free(body);
    return count;
}

/* The first `count` packets of src and the re-encoded payload agree, and the
 * re-encoded payload holds nothing more. */
static void compare(const uint8_t *src, size_t n, const struct buf *re, size_t count)
{
    uint8_t *a = copy_exact(src, n), *b = copy_exact(re->data, re->len);
    if (a && b) {
        struct eio_payload_reader ra, rb;
        struct eio_packet pa, pb;
        eio_payload_reader_init(&ra, a, n);
        eio_payload_reader_init(&rb, b, re->len);
        for (size_t i = 0; i < count; i++) {
            if (eio_payload_next(&ra, &pa) != EIO_OK || eio_payload_next(&rb, &pb) != EIO_OK ||
                !same_packet(&pa, &pb))
                abort();
        }
        if (eio_payload_next(&rb, &pb) != (count ? EIO_END : EIO_EINVAL))
            abort();
    }
    free(a);
    free(b);
}

static void payload(const uint8_t *src, size_t n)
{
    struct buf re;
    bool oom = false;
    buf_init(&re);
    size_t count = read_payload(src, n, &re, &oom);
    if (!oom)
        compare(src, n, &re, count);
    buf_cleanup(&re);
}

static void packet(const uint8_t *data, size_t size)
{
    struct eio_packet p;
    if (eio_packet_decode(data, size, &p) != EIO_OK)
        return;
    if (p.binary || p.data != data + 1 || p.len != size - 1)
        abort();
    struct buf b;
    buf_init(&b);
    if (eio_packet_encode(&b, p.type, p.data, p.len) == EIO_OK &&
        (b.len != size || memcmp(b.data, data, size) != 0))
        abort();
    buf_cleanup(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    packet(data, size);
    payload(data, size);
    if (size) {
        size_t cut = data[0] % (size + 1);
        payload(data, cut);
        payload(data + cut, size - cut);
    }
    return 0;
}

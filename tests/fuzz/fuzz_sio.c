/* Fuzz target for protocol/sio.
 *
 * Decodes the input as a Socket.IO packet. A binary packet gets its declared
 * attachments (slices of the input) and is reconstructed. Every packet that
 * decodes is then encoded again, from the tree and from a sio_json_duplicate()
 * of it, and the encoding must decode and re-encode to the same bytes: a
 * failure there is a codec bug and aborts. Allocation failures are tolerated
 * (they cannot happen under libFuzzer without a malloc limit).
 *
 * Build with -DSIO_FUZZ_STRICT to also abort when the decoder reports
 * SIO_ENOMEM, which without real allocation failures would mean that the JSON
 * text check accepted something cJSON refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok)
{
    if (!ok)
        abort();
}

static bool is_binary_type(enum sio_packet_type t)
{
    return t == SIO_BINARY_EVENT || t == SIO_BINARY_ACK;
}

static int decode(const char *in, size_t len, const struct sio_limits *lim, struct sio_packet *p)
{
    int rc = sio_packet_decode(in, len, lim, p);
#ifdef SIO_FUZZ_STRICT
    require(rc != SIO_ENOMEM);
#endif
    return rc;
}

/* Attachment i is a short slice of the input, so its bytes vary with it. */
static int add_slices(struct sio_attachments *att, size_t n, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        size_t off = (i * 7) % size;
        size_t len = size - off < i + 1 ? size - off : i + 1;
        int rc = sio_attachments_add(att, data + off, len);
        if (rc < 0)
            return rc;
    }
    return SIO_OK;
}

static bool same_attachments(const struct sio_attachments *a, const struct sio_attachments *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        size_t la, lb;
        const uint8_t *pa = sio_binary_data(a->items[i], &la);
        const uint8_t *pb = sio_binary_data(b->items[i], &lb);
        if (!pa || !pb || la != lb || (la && memcmp(pa, pb, la) != 0))
            return false;
    }
    return true;
}

static int encode(struct buf *out, const struct sio_packet *p, cJSON *json,
                  struct sio_attachments *att)
{
    int rc = sio_packet_encode(out, p->type, p->nsp, p->nsp_len, p->id, json, att);
    require(rc == SIO_OK || rc == SIO_ENOMEM);
    return rc;
}

/* Decodes what was encoded, reconstructs it with the attachments that the
 * encoder produced, and encodes it again: the bytes must not change. */
static void check_reencoding(const struct sio_packet *p, const struct buf *enc,
                             struct sio_attachments *att)
{
    struct sio_limits unlimited = {.max_attachments = SIZE_MAX};
    struct sio_packet q;
    int rc = decode((const char *)enc->data, enc->len, &unlimited, &q);
    if (rc == SIO_ENOMEM)
        return;
    require(rc == SIO_OK);
    require(is_binary_type(q.type) == (att->n > 0));
    require(q.attachments == att->n);
    require(q.id == p->id);
    require(q.nsp_len == p->nsp_len && memcmp(q.nsp, p->nsp, q.nsp_len) == 0);
    struct sio_attachments again;
    sio_attachments_init(&again);
    struct buf out;
    buf_init(&out);
    if (is_binary_type(q.type)) {
        rc = sio_binary_reconstruct(q.json, att);
        if (rc == SIO_ENOMEM)
            goto done;
        require(rc == SIO_OK);
    }
    if (encode(&out, &q, q.json, &again) == SIO_OK)
        require(out.len == enc->len && memcmp(out.data, enc->data, out.len) == 0);
done:
    buf_cleanup(&out);
    sio_attachments_cleanup(&again);
    sio_packet_cleanup(&q);
}

static void roundtrip(struct sio_packet *p)
{
    struct buf first, second;
    struct sio_attachments att1, att2;
    buf_init(&first);
    buf_init(&second);
    sio_attachments_init(&att1);
    sio_attachments_init(&att2);
    cJSON *copy = sio_json_duplicate(p->json);
    if (encode(&first, p, p->json, &att1) != SIO_OK)
        goto done;
    if (copy || !p->json) {
        if (encode(&second, p, copy, &att2) == SIO_OK) {
            require(second.len == first.len && memcmp(second.data, first.data, first.len) == 0);
            require(same_attachments(&att1, &att2));
        }
    }
    check_reencoding(p, &first, &att1);
done:
    cJSON_Delete(copy);
    buf_cleanup(&first);
    buf_cleanup(&second);
    sio_attachments_cleanup(&att1);
    sio_attachments_cleanup(&att2);
}

/* A prefix of the input in an allocation of its own size, so that reads
 * past its end are caught. */
static void decode_prefix(const uint8_t *data, size_t size)
{
    size_t n = data[size - 1] % (size + 1);
    char *copy = malloc(n ? n : 1);
    if (!copy)
        return;
    memcpy(copy, data, n);
    struct sio_packet p;
    if (decode(copy, n, NULL, &p) == SIO_OK)
        sio_packet_cleanup(&p);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct sio_packet p;
    if (size == 0) {
        require(decode(in, size, NULL, &p) == SIO_EINVAL);
        return 0;
    }
    decode_prefix(data, size);

    struct sio_limits one = {.max_attachments = 1};
    if (decode(in, size, &one, &p) == SIO_OK)
        sio_packet_cleanup(&p);

    if (decode(in, size, NULL, &p) != SIO_OK)
        return 0;
    if (is_binary_type(p.type)) {
        struct sio_attachments att;
        sio_attachments_init(&att);
        int rc = add_slices(&att, p.attachments, data, size);
        if (rc == SIO_OK)
            rc = sio_binary_reconstruct(p.json, &att);
        sio_attachments_cleanup(&att);
        if (rc < 0) {
            sio_packet_cleanup(&p);
            return 0;
        }
    }
    roundtrip(&p);
    sio_packet_cleanup(&p);
    return 0;
}

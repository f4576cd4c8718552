#include "hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_EXACT)
        return (unsigned)v;
    /* Keep the top HIST_SUB_BITS + 1 bits: the shift picks the power of two,
     * the kept bits the sub-bucket inside it. */
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) - (1u << HIST_SUB_BITS);
    unsigned idx = HIST_EXACT + (shift - 1) * (1u << HIST_SUB_BITS) + sub;
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(unsigned idx)
{
    if (idx < HIST_EXACT)
        return idx;
    unsigned rel = idx - HIST_EXACT;
    unsigned shift = rel / (1u << HIST_SUB_BITS) + 1;
    uint64_t sub = rel % (1u << HIST_SUB_BITS) + (1u << HIST_SUB_BITS);
    return ((sub + 1) << shift) - 1;
}

void hist_add(struct hist *h, uint64_t value)
{
    h->buckets[bucket_of(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bucket_upper(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

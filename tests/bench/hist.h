/* hist.h: a fixed-size latency histogram for the load generator.
 *
 * Values are unsigned integers (microseconds in practice). Values below 1024
 * are counted exactly; larger values fall in log-linear buckets 1/512 of
 * their power of two wide, so a percentile is off by at most 0.2 %. Memory is
 * fixed (HIST_BUCKETS counters) whatever the number of samples.
 */
#ifndef SOCKEYE_BENCH_HIST_H
#define SOCKEYE_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 9                     /* 512 sub-buckets per power of two */
#define HIST_EXACT    (2u << HIST_SUB_BITS) /* values below this are exact */
#define HIST_BUCKETS  (HIST_EXACT + 54u * (1u << HIST_SUB_BITS))

struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
};

/* Empties h. */
void hist_init(struct hist *h);

/* Counts one value. */
void hist_add(struct hist *h, uint64_t value);

/* Adds every sample of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The smallest value v such that at least p percent (0 < p <= 100) of the
 * samples are <= v, rounded up to its bucket's upper bound; 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);

/* Mean of the samples, 0 when empty. */
double hist_mean(const struct hist *h);

#endif

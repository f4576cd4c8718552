#include "utf8.h"

#include <string.h>

/* States beyond ACCEPT/REJECT name what the next byte must be. A lead byte
 * fixes both how many continuation bytes follow and, for E0/ED/F0/F4, a
 * narrower range for the first of them: that one check is what rules out
 * overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points above U+10FFFF (F4 90..BF). C0, C1 and F5..FF can never start a
 * valid sequence, so they reject at once. */
enum {
    NEED1 = 2, /* one more byte, 80..BF */
    NEED2,     /* two more, the next 80..BF */
    NEED3,     /* three more, the next 80..BF */
    AFTER_E0,  /* next A0..BF, then one more */
    AFTER_ED,  /* next 80..9F, then one more */
    AFTER_F0,  /* next 90..BF, then two more */
    AFTER_F4,  /* next 80..8F, then two more */
};

struct cont_rule {
    uint8_t lo, hi;
    uint8_t next;
};

static const struct cont_rule cont_rules[] = {
    [NEED1] = {0x80, 0xBF, UTF8_ACCEPT}, /* last byte of any sequence */
    [NEED2] = {0x80, 0xBF, NEED1},       /* E1..EC, EE, EF */
    [NEED3] = {0x80, 0xBF, NEED2},       /* F1..F3 */
    [AFTER_E0] = {0xA0, 0xBF, NEED1},    /* below A0: overlong */
    [AFTER_ED] = {0x80, 0x9F, NEED1},    /* from A0: surrogate */
    [AFTER_F0] = {0x90, 0xBF, NEED2},    /* below 90: overlong */
    [AFTER_F4] = {0x80, 0x8F, NEED2},    /* from 90: above U+10FFFF */
};

static uint32_t after_lead(uint8_t c)
{
    if (c < 0x80)
        return UTF8_ACCEPT;
    if (c < 0xC2)
        return UTF8_REJECT;
    if (c < 0xE0)
        return NEED1;
    if (c == 0xE0)
        return AFTER_E0;
    if (c == 0xED)
        return AFTER_ED;
    if (c < 0xF0)
        return NEED2;
    if (c == 0xF0)
        return AFTER_F0;
    if (c < 0xF4)
        return NEED3;
    if (c == 0xF4)
        return AFTER_F4;
    return UTF8_REJECT;
}

static uint32_t step(uint32_t state, uint8_t c)
{
    if (state == UTF8_ACCEPT)
        return after_lead(c);
    const struct cont_rule *r = &cont_rules[state];
    return c >= r->lo && c <= r->hi ? r->next : UTF8_REJECT;
}

/* Most payloads (JSON) are ASCII: skip whole words of it between code
 * points instead of stepping the state machine byte by byte. */
static size_t ascii_run(const uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
            break;
    }
    return i;
}

bool utf8_feed(struct utf8_state *s, const uint8_t *p, size_t n)
{
    uint32_t state = s->state;
    size_t i = 0;
    while (i < n && state != UTF8_REJECT) {
        if (state == UTF8_ACCEPT)
            i += ascii_run(p + i, n - i);
        if (i < n)
            state = step(state, p[i++]);
    }
    s->state = state;
    return state != UTF8_REJECT;
}

bool utf8_valid(const uint8_t *p, size_t n)
{
    struct utf8_state s;
    utf8_init(&s);
    return utf8_feed(&s, p, n) && utf8_complete(&s);
}

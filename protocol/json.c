#include "json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio.h"

size_t json_number(double d, char out[JSON_NUMBER_MAX])
{
    if (!isfinite(d)) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (d == 0) {
        memcpy(out, "0", 2);
        return 1;
    }
    /* The shortest "%.*e" form that reads back as d gives the digits and the
     * decimal exponent; JavaScript's layout rules then place the point. */
    char sci[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(sci, sizeof(sci), "%.*e", p - 1, d);
        if (strtod(sci, NULL) == d)
            break;
    }
    const char *s = sci;
    size_t o = 0;
    if (*s == '-')
        out[o++] = *s++;
    char digits[20];
    size_t k = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.')
            digits[k++] = *s;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    long n = strtol(s + 1, NULL, 10) + 1; /* digits times 10^(n-k) */
    if ((long)k <= n && n <= 21) {
        memcpy(out + o, digits, k);
        o += k;
        for (long i = (long)k; i < n; i++)
            out[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + o, digits, (size_t)n);
        o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, digits + n, k - (size_t)n);
        o += k - (size_t)n;
    } else if (-6 < n && n <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (long i = 0; i < -n; i++)
            out[o++] = '0';
        memcpy(out + o, digits, k);
        o += k;
    } else {
        out[o++] = digits[0];
        if (k > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, k - 1);
            o += k - 1;
        }
        o += (size_t)snprintf(out + o, JSON_NUMBER_MAX - o, "e%c%ld", n - 1 >= 0 ? '+' : '-',
                              labs(n - 1));
    }
    out[o] = '\0';
    return o;
}

size_t json_plain_run(const char *s, size_t n)
{
    /* A word has a special byte when one of its bytes is below 0x20 or
     * equal to '"' or '\\': the usual "has a byte less than k" and "has a
     * zero byte" tests, which never miss one (they may flag a byte after a
     * real hit, which the byte loop below then settles). */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
        uint64_t hit =
            ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash);
        if (hit & highs)
            break;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            break;
    }
    return i;
}

static int put_string(struct buf *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *end = s + strlen(s);
    if (buf_append_byte(out, '"') < 0)
        return PROTO_ENOMEM;
    for (;;) {
        size_t run = json_plain_run(s, (size_t)(end - s));
        if (buf_append(out, s, run) < 0)
            return PROTO_ENOMEM;
        s += run;
        if (s == end)
            break;
        unsigned char c = (unsigned char)*s++;
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if (buf_append(out, esc, n) < 0)
            return PROTO_ENOMEM;
    }
    return buf_append_byte(out, '"') < 0 ? PROTO_ENOMEM : 0;
}

static int print_value(const cJSON *item, struct buf *out, const char *binary_text)
{
    if (sio_is_binary(item))
        return binary_text ? put_string(out, binary_text) : JSON_EINVAL;
    switch (item->type & 0xff) {
    case cJSON_NULL:
        return buf_append_str(out, "null");
    case cJSON_False:
        return buf_append_str(out, "false");
    case cJSON_True:
        return buf_append_str(out, "true");
    case cJSON_Number: {
        char num[JSON_NUMBER_MAX];
        return buf_append(out, num, json_number(item->valuedouble, num));
    }
    case cJSON_String:
        return put_string(out, item->valuestring ? item->valuestring : "");
    case cJSON_Raw:
        return item->valuestring ? buf_append_str(out, item->valuestring) : JSON_EINVAL;
    case cJSON_Array:
    case cJSON_Object: {
        bool obj = (item->type & 0xff) == cJSON_Object;
        if (buf_append_byte(out, obj ? '{' : '[') < 0)
            return PROTO_ENOMEM;
        for (const cJSON *c = item->child; c; c = c->next) {
            if (c != item->child && buf_append_byte(out, ',') < 0)
                return PROTO_ENOMEM;
            if (obj) {
                int rc = put_string(out, c->string ? c->string : "");
                if (rc < 0 || buf_append_byte(out, ':') < 0)
                    return rc < 0 ? rc : PROTO_ENOMEM;
            }
            int rc = print_value(c, out, binary_text);
            if (rc < 0)
                return rc;
        }
        return buf_append_byte(out, obj ? '}' : ']');
    }
    default:
        return JSON_EINVAL;
    }
}

int json_print(const cJSON *item, struct buf *out, const char *binary_text)
{
    size_t mark = out->len;
    int rc = print_value(item, out, binary_text);
    if (rc < 0)
        out->len = mark;
    return rc;
}

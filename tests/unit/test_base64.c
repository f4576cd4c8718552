/* Unit tests for protocol/base64 and protocol/buf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"
#include "buf.h"

static void test_rfc4648_vectors(void **state)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char out[16];
        size_t n = base64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
        assert_int_equal(n, strlen(enc[i]));
        assert_memory_equal(out, enc[i], n);
        uint8_t dec[16];
        long m = base64_decode(enc[i], strlen(enc[i]), dec);
        assert_int_equal(m, (long)strlen(plain[i]));
        assert_memory_equal(dec, plain[i], (size_t)m);
    }
}

static void test_url_safe_unpadded(void **state)
{
    const uint8_t in[] = {0xfb, 0xff, 0xbf};
    char out[8];
    size_t n = base64url_encode(in, 3, out);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "-_-_", 4);
    n = base64url_encode(in, 1, out);
    assert_int_equal(n, 2);
}

static void test_decode_rejects(void **state)
{
    static const char *bad[] = {"A", "AB=C", "A===", "Zm9v!", "Zm9v\n", "=AAA", "Zg=a"};
    uint8_t out[16];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(base64_decode(bad[i], strlen(bad[i]), out), BASE64_EINVAL);
}

static void test_decode_in_place(void **state)
{
    char s[] = "AQIDBA==";
    long n = base64_decode(s, strlen(s), (uint8_t *)s);
    assert_int_equal(n, 4);
    assert_memory_equal(s, "\x01\x02\x03\x04", 4);
}

static void test_buf_append_and_steal(void **state)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_append_str(&b, "ab"), 0);
    assert_int_equal(b.len, 2000);
    assert_int_equal(buf_append_u64(&b, 18446744073709551615ull), 0);
    assert_memory_equal(b.data + 2000, "18446744073709551615", 20);
    buf_reset(&b);
    assert_int_equal(buf_append_u64(&b, 0), 0);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], '0');
    size_t len;
    uint8_t *p = buf_steal(&b, &len);
    assert_int_equal(len, 1);
    assert_null(b.data);
    free(p);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), PROTO_ENOMEM);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),      cmocka_unit_test(test_url_safe_unpadded),
        cmocka_unit_test(test_decode_rejects),       cmocka_unit_test(test_decode_in_place),
        cmocka_unit_test(test_buf_append_and_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

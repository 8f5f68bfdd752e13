/* Sizes: parsing must be exact and strict, formatting must round-trip what people type. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <cove/cove.h>

#include "config_internal.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

struct accepted {
    const char *text;
    uint64_t bytes;
};

static void test_parse_accepts(void **state)
{
    (void)state;
    static const struct accepted cases[] = {
        {"0", 0},
        {"1048576", 1048576},
        {"18446744073709551615", UINT64_MAX},
        {"64K", 64 * KIB},
        {"64k", 64 * KIB},
        {"512M", 512 * MIB},
        {"512m", 512 * MIB},
        {"512MiB", 512 * MIB},
        {"512mib", 512 * MIB},
        {"512MB", 512 * MIB},
        {"512mb", 512 * MIB},
        {"512 MiB", 512 * MIB},
        {"2G", 2 * GIB},
        {"1T", TIB},
        {"1t", TIB},
        {"1.5G", GIB + GIB / 2},
        {"1.25g", GIB + GIB / 4},
        {"1.50G", GIB + GIB / 2},
        {"0.5K", 512},
        {"1.0", 1},
        {"100B", 100},
        {"100b", 100},
        {"15E", UINT64_C(15) << 60},
        {"1P", UINT64_C(1) << 50},
        {"1.001953125K", 1026},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t bytes = 12345;
        int rc = cove_parse_size(cases[i].text, &bytes);
        if (rc != 0 || bytes != cases[i].bytes)
            fail_msg("'%s': rc %d, %llu bytes, expected %llu", cases[i].text, rc,
                     (unsigned long long)bytes, (unsigned long long)cases[i].bytes);
    }
}

static void test_parse_rejects(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",        "M",       "-1",     "-1M",  "+1M",      "12Q",        "512Mx",  "512MiBs",
        "512iB",   "1.5",     "1.",     ".5G",  "1..5G",    "1.5.G",      " 512M",  "512M ",
        "512 ",    "0x100",   "1e3",    "1,5G", "1.0000001K", "16E",      "17179869184G",
        "18446744073709551616", "99999999999999999999999", "1 2M", "1.5 ", "M512",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t bytes = 777;
        int rc = cove_parse_size(cases[i], &bytes);
        if (rc != -EINVAL || bytes != 777)
            fail_msg("'%s' should be rejected untouched: rc %d, %llu bytes", cases[i], rc,
                     (unsigned long long)bytes);
    }
    uint64_t bytes;
    assert_int_equal(cove_parse_size(NULL, &bytes), -EINVAL);
    assert_int_equal(cove_parse_size("1M", NULL), -EINVAL);
}

struct formatted {
    uint64_t bytes;
    const char *text;
};

static void test_format(void **state)
{
    (void)state;
    static const struct formatted cases[] = {
        {0, "0 bytes"},
        {1, "1 byte"},
        {3, "3 bytes"},
        {1023, "1023 bytes"},
        {1024, "1 KiB"},
        {64 * KIB, "64 KiB"},
        {1536, "1.5 KiB"},
        {1280, "1.25 KiB"},
        {1025, "1 KiB"}, /* 1.0009...: truncated to two decimals */
        {512 * MIB, "512 MiB"},
        {32 * MIB, "32 MiB"},
        {1023 * MIB, "1023 MiB"},
        {GIB - 1, "1023.99 MiB"}, /* never rounded up past the real value */
        {GIB, "1 GiB"},
        {GIB + GIB / 2, "1.5 GiB"},
        {GIB + GIB / 4, "1.25 GiB"},
        {GIB + GIB / 3, "1.33 GiB"},
        {UINT64_C(25276502016), "23.54 GiB"},
        {2 * TIB, "2 TiB"},
        {UINT64_C(1) << 50, "1 PiB"},
        {UINT64_C(3) << 59, "1.5 EiB"},
        {UINT64_MAX, "15.99 EiB"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        cove_format_size(cases[i].bytes, buf, sizeof(buf));
        if (strcmp(buf, cases[i].text) != 0)
            fail_msg("%llu bytes: got '%s', expected '%s'", (unsigned long long)cases[i].bytes,
                     buf, cases[i].text);
    }
}

static void test_format_small_buffer(void **state)
{
    (void)state;
    char buf[4] = "xyz";
    cove_format_size(512 * MIB, buf, sizeof(buf));
    assert_string_equal(buf, "512");
    cove_format_size(512 * MIB, buf, 0); /* must not write at all */
    assert_string_equal(buf, "512");
}

/* Whatever cove_format_size writes for a whole size parses back to the same bytes. */
static void test_round_trip(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {KIB, 64 * KIB, 512 * MIB, GIB + GIB / 2, 3 * TIB, 1536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char buf[32];
        uint64_t bytes = 0;
        cove_format_size(sizes[i], buf, sizeof(buf));
        assert_int_equal(cove_parse_size(buf, &bytes), 0);
        assert_int_equal(bytes, sizes[i]);
    }
}

static void test_limits(void **state)
{
    (void)state;
    assert_int_equal(cove_min_cpus(), 1);
    assert_true(cove_max_cpus() >= cove_min_cpus());
    assert_true(cove_max_cpus() <= COVE_CPU_CAP);
    assert_true(cove_max_cpus() <= 255);
    assert_int_equal(cove_min_memory(), 32 * MIB);
    assert_true(cove_max_memory() >= cove_min_memory());
    assert_true(cove_max_memory() <= COVE_MEMORY_CAP);
    /* No cached state: asking again gives the same answer. */
    assert_int_equal(cove_max_cpus(), cove_max_cpus());
    assert_int_equal(cove_max_memory(), cove_max_memory());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts),   cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_format),          cmocka_unit_test(test_format_small_buffer),
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

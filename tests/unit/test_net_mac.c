/* MAC addresses: only the canonical form parses, multicast is refused, and a seed always gives
 * the same locally administered unicast address (different seeds, different addresses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "net/mac.h"

static void test_parse(void **state)
{
    (void)state;
    uint8_t mac[6];
    assert_int_equal(net_mac_parse("52:54:00:Ab:cD:ef", mac), 0);
    assert_memory_equal(mac, ((uint8_t[]){0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}), 6);
    const char *bad[] = {"", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:00", "1:2:3:4:5:6",
                         "52-54-00-ab-cd-ef", " 52:54:00:ab:cd:ef", "52:54:00:ab:cd:eg",
                         "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "52:54:00:ab:cd:+f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(net_mac_parse(bad[i], mac), -22);
    assert_int_equal(net_mac_parse(NULL, mac), -22);
}

static void test_from_seed(void **state)
{
    (void)state;
    uint8_t a[6], b[6], c[6];
    net_mac_from_seed("build-vm", a);
    net_mac_from_seed("build-vm", b);
    net_mac_from_seed("test-vm", c);
    assert_memory_equal(a, b, 6);
    assert_memory_not_equal(a, c, 6);
    assert_int_equal(a[0] & 3, 2);
    assert_int_equal(c[0] & 3, 2);
    /* The value is part of the contract: a VM's address must not change with a rebuild. */
    uint8_t empty[6];
    net_mac_from_seed("", empty);
    assert_memory_equal(empty, ((uint8_t[]){0x26, 0x23, 0x22, 0x84, 0xe4, 0x9c}), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_from_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

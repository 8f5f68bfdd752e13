/*
 * guest_mem: the VM's own RAM split around the PCI hole, and another VMM's RAM lent as
 * regions (vhost-user). Every guest address goes through guest_mem_ptr, so what it refuses is
 * what keeps a guest's buffer inside RAM: a range that leaves its region, crosses the hole or
 * wraps around.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "guest_mem.h"

static void test_split_ram(void **state)
{
    (void)state;
    struct guest_mem mem;
    assert_int_equal(guest_mem_create(&mem, 3 << 20, 2 << 20, 4 << 20), 0);
    uint8_t *low = guest_mem_ptr(&mem, 0, 2 << 20);
    assert_ptr_equal(low, mem.host);
    assert_ptr_equal(guest_mem_ptr(&mem, 4 << 20, 4096), mem.host + (2 << 20));
    assert_null(guest_mem_ptr(&mem, (2 << 20) - 8, 16));     /* into the hole */
    assert_null(guest_mem_ptr(&mem, 3 << 20, 1));            /* in the hole */
    assert_null(guest_mem_ptr(&mem, (5 << 20) - 8, 16));     /* past the end */
    assert_null(guest_mem_ptr(&mem, UINT64_MAX - 8, 16));    /* wraps */
    guest_mem_destroy(&mem);
}

static void test_lent_regions(void **state)
{
    (void)state;
    static uint8_t a[4096], b[8192];
    struct guest_mem mem = {.memfd = -1};
    assert_int_equal(guest_mem_add_region(&mem, 0x10000, sizeof(a), a), 0);
    assert_int_equal(guest_mem_add_region(&mem, 0x11000, sizeof(b), b), 0); /* adjacent */
    assert_ptr_equal(guest_mem_ptr(&mem, 0x10010, 16), a + 16);
    assert_ptr_equal(guest_mem_ptr(&mem, 0x12000, 4096), b + 4096);
    assert_null(guest_mem_ptr(&mem, 0x10ff8, 16)); /* crosses from one region into the next */
    assert_null(guest_mem_ptr(&mem, 0xfff0, 32));  /* starts before the first */
    assert_null(guest_mem_ptr(&mem, 0x13000, 1));  /* after the last */
    assert_null(guest_mem_ptr(&mem, 0x11000, UINT64_MAX));
    /* Overlaps, empty and wrapping regions are refused; so is a ninth. */
    assert_int_equal(guest_mem_add_region(&mem, 0x10800, 4096, a), -EINVAL);
    assert_int_equal(guest_mem_add_region(&mem, 0x20000, 0, a), -EINVAL);
    assert_int_equal(guest_mem_add_region(&mem, UINT64_MAX - 10, 4096, a), -EINVAL);
    for (uint64_t i = 0; mem.region_count < GUEST_MEM_MAX_REGIONS; i++)
        assert_int_equal(guest_mem_add_region(&mem, 0x100000 + i * 0x1000, 4096, a), 0);
    assert_int_equal(guest_mem_add_region(&mem, 0x900000, 4096, a), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_ram),
        cmocka_unit_test(test_lent_regions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

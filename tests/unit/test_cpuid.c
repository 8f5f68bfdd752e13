/* The guest's CPUID as cove adapts KVM's supported table: topology, and VMX/SVM hidden unless
 * nested virtualization is asked for. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/cpu.h"

#define VMX (1u << 5)
#define SVM (1u << 2)

#define ENTRIES 4

/* A supported-CPUID table as KVM gives it on a host with VMX (intel) or SVM (amd), or neither;
 * the caller frees it. */
static struct kvm_cpuid2 *host_table(bool vmx, bool svm)
{
    size_t size = sizeof(struct kvm_cpuid2) + ENTRIES * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *t = calloc(1, size); /* the entries are a flexible array */
    assert_non_null(t);
    t->nent = ENTRIES;
    struct kvm_cpuid_entry2 *e = t->entries;
    e[0] = (struct kvm_cpuid_entry2){.function = 0x1, .ecx = 0x1 | (vmx ? VMX : 0),
                                     .ebx = 0x00000800};
    e[1] = (struct kvm_cpuid_entry2){.function = 0x80000001, .ecx = 0x1 | (svm ? SVM : 0)};
    e[2] = (struct kvm_cpuid_entry2){.function = 0x8000000a, .eax = 1, .ebx = 8,
                                     .edx = svm ? 0x1bfu : 0};
    e[3] = (struct kvm_cpuid_entry2){.function = 0x80000008, .ecx = 0x7000};
    return t;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *t, uint32_t function)
{
    for (unsigned i = 0; i < t->nent; i++)
        if (t->entries[i].function == function)
            return &t->entries[i];
    fail_msg("no leaf 0x%x", function);
    return NULL;
}

static void test_virtualization_hidden_by_default(void **state)
{
    (void)state;
    const struct x86_cpu_options off = {.cpus = 1};
    for (int host = 0; host < 2; host++) {
        struct kvm_cpuid2 *t = host_table(host == 0, host == 1);
        assert_int_equal(x86_patch_cpuid(t, &off, 0), 0);
        assert_int_equal(leaf(t, 0x1)->ecx & VMX, 0);
        assert_int_equal(leaf(t, 0x80000001)->ecx & SVM, 0);
        const struct kvm_cpuid_entry2 *svm = leaf(t, 0x8000000a);
        assert_int_equal(svm->eax | svm->ebx | svm->ecx | svm->edx, 0);
        /* Only those bits go: the rest of both leaves stays as KVM gave it. */
        assert_int_equal(leaf(t, 0x1)->ecx & 0x1, 0x1);
        assert_int_equal(leaf(t, 0x80000001)->ecx, 0x1);
        free(t);
    }
}

static void test_nested_keeps_what_kvm_offers(void **state)
{
    (void)state;
    const struct x86_cpu_options on = {.cpus = 1, .nested_virtualization = true};
    struct kvm_cpuid2 *intel = host_table(true, false);
    assert_int_equal(x86_patch_cpuid(intel, &on, 0), 0);
    assert_int_equal(leaf(intel, 0x1)->ecx & VMX, VMX);
    free(intel);
    struct kvm_cpuid2 *amd = host_table(false, true);
    assert_int_equal(x86_patch_cpuid(amd, &on, 0), 0);
    assert_int_equal(leaf(amd, 0x80000001)->ecx & SVM, SVM);
    assert_int_equal(leaf(amd, 0x8000000a)->edx, 0x1bf);
    free(amd);
}

static void test_nested_without_host_support_fails(void **state)
{
    (void)state;
    const struct x86_cpu_options on = {.cpus = 1, .nested_virtualization = true};
    struct kvm_cpuid2 *t = host_table(false, false);
    assert_int_equal(x86_patch_cpuid(t, &on, 0), -ENOTSUP);
    free(t);
}

static void test_topology(void **state)
{
    (void)state;
    const struct x86_cpu_options four = {.cpus = 4};
    struct kvm_cpuid2 *t = host_table(false, true);
    assert_int_equal(x86_patch_cpuid(t, &four, 2), 0);
    const struct kvm_cpuid_entry2 *l1 = leaf(t, 0x1);
    assert_int_equal(l1->ebx >> 24, 2);            /* this vCPU's APIC id */
    assert_int_equal((l1->ebx >> 16) & 0xff, 4);   /* logical processors in the package */
    assert_int_equal(l1->ecx >> 31, 1);            /* the hypervisor bit */
    assert_int_equal(l1->edx & (1u << 28), 1u << 28);
    assert_int_equal(leaf(t, 0x80000008)->ecx & 0xf0ff, (2u << 12) | 3);
    free(t);
}

/* Leaves 0xb and 0x1f (extended topology, the latter preferred by Linux when present) as
 * KVM passes them from the host: the host's levels and the x2APIC ID of the CPU the caller
 * ran on. The guest must see its own: one thread per core, `cpus` cores, its own index. */
static void test_extended_topology_is_the_guests(void **state)
{
    (void)state;
    struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + 6 * sizeof(struct kvm_cpuid_entry2));
    assert_non_null(t);
    t->nent = 6;
    for (unsigned i = 0; i < 6; i++) {
        uint32_t function = i < 3 ? 0xb : 0x1f;
        unsigned level = i % 3;
        /* A 2-thread, 16-core host: SMT, core, then (0x1f) a die level. */
        t->entries[i] = (struct kvm_cpuid_entry2){
            .function = function, .index = level, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            .eax = level == 0 ? 1 : 5, .ebx = level == 0 ? 2 : 32,
            .ecx = ((level == 2 ? 5u : level + 1) << 8) | level, .edx = 37};
    }
    const struct x86_cpu_options three = {.cpus = 3};
    assert_int_equal(x86_patch_cpuid(t, &three, 1), 0);
    for (unsigned i = 0; i < 6; i++) {
        const struct kvm_cpuid_entry2 *e = &t->entries[i];
        assert_int_equal(e->edx, 1); /* this vCPU's x2APIC ID, not the host CPU's */
        switch (e->index) {
        case 0: /* SMT: one thread per core */
            assert_int_equal(e->eax, 0);
            assert_int_equal(e->ebx, 1);
            assert_int_equal(e->ecx, (1u << 8) | 0);
            break;
        case 1: /* core: three of them, two bits of APIC ID */
            assert_int_equal(e->eax, 2);
            assert_int_equal(e->ebx, 3);
            assert_int_equal(e->ecx, (2u << 8) | 1);
            break;
        default: /* nothing beyond */
            assert_int_equal(e->eax, 0);
            assert_int_equal(e->ebx, 0);
            assert_int_equal(e->ecx, e->index);
            break;
        }
    }
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_virtualization_hidden_by_default),
        cmocka_unit_test(test_nested_keeps_what_kvm_offers),
        cmocka_unit_test(test_nested_without_host_support_fails),
        cmocka_unit_test(test_topology),
        cmocka_unit_test(test_extended_topology_is_the_guests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

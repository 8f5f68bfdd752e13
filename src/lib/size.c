/*
 * Sizes as people write them ("512M", "1.5 GiB") and the host limits they are checked
 * against. Everything is computed in integers so that parsing is exact: "1.5G" is exactly
 * 1610612736 bytes, and a fraction that does not come out to whole bytes is an error rather
 * than being silently rounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cove/cove.h>

#include "config_internal.h"

/* Local APIC IDs are 8 bits in xAPIC mode and 0xff is the broadcast ID. */
#define XAPIC_MAX_CPUS 255u
_Static_assert(COVE_CPU_CAP <= XAPIC_MAX_CPUS, "vCPU cap exceeds what xAPIC IDs can address");

#define MIB (UINT64_C(1) << 20)
/* Below this a Linux guest cannot even unpack a small initramfs. */
#define COVE_MIN_MEMORY (32 * MIB)

/* The KVM API says to assume 4 when neither vCPU capability is reported. */
#define KVM_DEFAULT_VCPUS 4

unsigned cove_min_cpus(void)
{
    return 1;
}

/* What KVM allows for one VM; -1 when /dev/kvm cannot be asked. */
static int kvm_vcpu_limit(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return -1;
    int n = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (n <= 0) /* older kernels only report the recommended count */
        n = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    if (n <= 0)
        n = KVM_DEFAULT_VCPUS;
    close(kvm);
    return n;
}

unsigned cove_max_cpus(void)
{
    int kvm = kvm_vcpu_limit();
    /* Without KVM nothing can run anyway; report cove's own cap so validation stays useful. */
    if (kvm > 0 && (unsigned)kvm < COVE_CPU_CAP)
        return (unsigned)kvm;
    return COVE_CPU_CAP;
}

uint64_t cove_min_memory(void)
{
    return COVE_MIN_MEMORY;
}

uint64_t cove_max_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0)
        return COVE_MEMORY_CAP;
    uint64_t ram = (uint64_t)pages;
    if (ram > COVE_MEMORY_CAP / (uint64_t)page_size)
        return COVE_MEMORY_CAP;
    ram *= (uint64_t)page_size;
    /* Keeps min <= max even on an absurdly small host, so the range is never empty. */
    return ram < COVE_MIN_MEMORY ? COVE_MIN_MEMORY : ram;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Reads a run of decimal digits into *value; returns where it stopped, or NULL on overflow. */
static const char *parse_digits(const char *p, uint64_t *value, size_t *count)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; is_digit(*p); p++, n++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    *value = v;
    *count = n;
    return p;
}

/*
 * Parses an optional unit ("", "B", "K", "KB", "KiB", ... "E", any case) into its multiplier.
 * Returns false for anything else.
 */
static bool parse_unit(const char *p, uint64_t *multiplier)
{
    static const char prefixes[] = "kmgtpe";
    uint64_t m = 1;
    if (*p == '\0' || (lower(p[0]) == 'b' && p[1] == '\0')) {
        *multiplier = 1;
        return true;
    }
    const char *found = NULL;
    for (const char *u = prefixes; *u; u++)
        if (lower(*p) == *u)
            found = u;
    if (!found)
        return false;
    m <<= 10 * (unsigned)(found - prefixes + 1);
    p++;
    if (lower(p[0]) == 'i' && lower(p[1]) == 'b')
        p += 2;
    else if (lower(p[0]) == 'b')
        p++;
    if (*p != '\0')
        return false;
    *multiplier = m;
    return true;
}

/*
 * multiplier * 0.<digits>, when that is a whole number. Evaluated from the last digit
 * (Horner's rule divided by 10 at each step): a remainder at any step can never cancel
 * later, so a step that does not divide evenly means the result is not whole bytes.
 */
static bool fraction_bytes(const char *digits, size_t n, uint64_t multiplier, uint64_t *bytes)
{
    uint64_t t = 0;
    while (n-- > 0) {
        /* t < multiplier here, so this is at most 10 * 2^60 and fits. */
        uint64_t sum = (uint64_t)(digits[n] - '0') * multiplier + t;
        if (sum % 10 != 0)
            return false;
        t = sum / 10;
    }
    *bytes = t;
    return true;
}

int cove_parse_size(const char *text, uint64_t *bytes)
{
    if (!text || !bytes)
        return -EINVAL;
    uint64_t whole;
    size_t whole_digits, frac_digits = 0;
    const char *p = parse_digits(text, &whole, &whole_digits);
    if (!p || whole_digits == 0)
        return -EINVAL;
    const char *frac = NULL;
    if (*p == '.') {
        frac = p + 1;
        for (p = frac; is_digit(*p); p++)
            frac_digits++;
        if (frac_digits == 0)
            return -EINVAL;
    }
    /* "512 MiB" is accepted so that cove_format_size output parses back; a trailing space
     * with no unit after it is still junk. */
    if (*p == ' ') {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return -EINVAL;
    }
    uint64_t multiplier, frac_bytes = 0;
    if (!parse_unit(p, &multiplier))
        return -EINVAL;
    if (frac && !fraction_bytes(frac, frac_digits, multiplier, &frac_bytes))
        return -EINVAL;
    if (whole > UINT64_MAX / multiplier)
        return -EINVAL;
    whole *= multiplier;
    if (whole > UINT64_MAX - frac_bytes)
        return -EINVAL;
    *bytes = whole + frac_bytes;
    return 0;
}

void cove_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!buf || len == 0)
        return;
    if (bytes < 1024) {
        snprintf(buf, len, "%llu %s", (unsigned long long)bytes, bytes == 1 ? "byte" : "bytes");
        return;
    }
    unsigned i = 0;
    while (i + 1 < sizeof(units) / sizeof(units[0]) && bytes >> (10 * (i + 2)) != 0)
        i++;
    uint64_t unit = UINT64_C(1) << (10 * (i + 1));
    uint64_t whole = bytes / unit, rest = bytes % unit;
    /* Two decimals, digit by digit so rest * 10 never overflows even for EiB. Truncated, not
     * rounded: a limit shown as "23.4 GiB" must not be more than the real limit. */
    unsigned d1 = (unsigned)(rest * 10 / unit);
    rest = rest * 10 % unit;
    unsigned d2 = (unsigned)(rest * 10 / unit);
    if (d2 != 0)
        snprintf(buf, len, "%llu.%u%u %s", (unsigned long long)whole, d1, d2, units[i]);
    else if (d1 != 0)
        snprintf(buf, len, "%llu.%u %s", (unsigned long long)whole, d1, units[i]);
    else
        snprintf(buf, len, "%llu %s", (unsigned long long)whole, units[i]);
}

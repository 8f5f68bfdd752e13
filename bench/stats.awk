# awk functions shared by the benchmark drivers (bench/boot.sh, bench/disk.sh, bench/run.sh),
# which put this text in front of their own programs: awk "$th_stats"'...' (testhost-lib.sh).

# The value of NAME=VALUE among the fields of the current line (from the second on); "" if none.
function field(name,    i, kv) {
    for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == name) return kv[2]
    }
    return ""
}

# Median of the space-separated numbers in s; "" when there are none.
function median(s,    a, k, i, j, t) {
    k = split(s, a, " ")
    if (k == 0) return ""
    for (i = 2; i <= k; i++) {
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}

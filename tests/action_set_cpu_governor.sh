#!/usr/bin/env bash
# set_cpu_governor. This machine has no cpufreq, so on the real sysfs tree
# the expected result is a clear error. The writer itself is exercised
# against a STAND-IN tree (not the kernel's): a runtime drop-in points the
# installed service at it with LUMINOUS_HEALING_CPU_SYSFS and reopens it with
# ReadWritePaths=; the service's landlock ruleset follows the same variable.
source "$(dirname "$0")/lib.sh"
boot_installed 'caller_rate_limit = { max = 1000, window_secs = 300 }
[actions.set_cpu_governor]
rate_limit = { max = 1000, window_secs = 300 }'

SVC=luminous-healing-set_cpu_governor.service
DROPIN=/run/systemd/system/$SVC.d
STANDIN=/var/lib/lh-cpu-stand-in

t_real_sysfs_without_cpufreq_is_a_clear_error() {
    sb sh -c 'ls -d /sys/devices/system/cpu/cpu*/cpufreq' 2>/dev/null && fail "this machine has cpufreq: the case expects none"
    local r
    r=$(request set_cpu_governor governor=performance)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "no cpufreq on this machine"
}

t_unknown_governor_refused() {
    local r
    for g in turbo PERFORMANCE "" "performance "; do
        r=$(request set_cpu_governor governor="$g")
        assert_eq "$(jfield success <<<"$r")" false "[$g] $r"
        assert_contains "$(jfield error <<<"$r")" "is not one of performance, powersave, ondemand, conservative, schedutil"
    done
}

# docs/benchmarks.md, finding 6: a landlock rule names an inode. procfs makes
# a new inode whenever an evicted dentry is looked up again (a rule on a
# /proc/sys file then stops matching); sysfs (kernfs) finds the same inode
# again by number while the rule pins it, so the rule on the CPU tree keeps
# matching. (In the unit, ReadWritePaths= also makes the tree a mount root,
# which pins its dentry.) One process, cache drops between requests: the
# second request still lists the CPUs instead of failing with EACCES.
t_real_tree_same_process_after_cache_drops() {
    local svc=luminous-healing-set_cpu_governor.service r pid
    sb systemctl stop "$svc"
    r=$(request set_cpu_governor governor=performance)
    assert_contains "$(jfield error <<<"$r")" "no cpufreq on this machine"
    pid=$(sb systemctl show -P MainPID "$svc")
    [ "$pid" -gt 0 ] || fail "$svc has no main process"
    sb nsenter -t "$pid" -m stat /sys/devices/system/cpu/online /sys/devices/system/cpu/cpu0 >/dev/null
    # from the host: this container's /proc/sys is read-only
    for _ in 1 2 3; do echo 2 > /proc/sys/vm/drop_caches; done
    r=$(request set_cpu_governor governor=performance)
    assert_contains "$(jfield error <<<"$r")" "no cpufreq on this machine"
    assert_eq "$(sb systemctl show -P MainPID "$svc")" "$pid" "the same process served both requests"
}

use_stand_in() {
    sb sh -c "rm -rf $STANDIN && for n in 0 1 2 3; do
        mkdir -p $STANDIN/cpu\$n/cpufreq
        echo powersave > $STANDIN/cpu\$n/cpufreq/scaling_governor
        echo 'performance powersave schedutil' > $STANDIN/cpu\$n/cpufreq/scaling_available_governors
    done; mkdir -p $STANDIN/cpu4 $STANDIN/cpuidle; echo 0-4 > $STANDIN/online"
    sb mkdir -p "$DROPIN"
    printf '[Service]\nEnvironment=LUMINOUS_HEALING_CPU_SYSFS=%s\nReadWritePaths=%s\n' "$STANDIN" "$STANDIN" \
        | sb tee "$DROPIN/stand-in.conf" >/dev/null
    sb systemctl daemon-reload
    sb systemctl stop "$SVC"
}
drop_stand_in() {
    sb rm -rf "$DROPIN" "$STANDIN"
    sb systemctl daemon-reload
    sb systemctl stop "$SVC" 2>/dev/null || true
}
governors() { sb sh -c "cat $STANDIN/cpu*/cpufreq/scaling_governor | sort | uniq -c | tr -s ' '"; }

t_stand_in_tree_every_cpu_set() {
    use_stand_in
    local r
    r=$(request set_cpu_governor governor=schedutil)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "governor schedutil set on 4 CPU(s) (was: powersave)"
    assert_contains "$(jfield output <<<"$r")" "1 CPU(s) without cpufreq"
    assert_eq "$(governors)" " 4 schedutil"
    drop_stand_in
}

t_stand_in_tree_unavailable_governor_changes_nothing() {
    use_stand_in
    sb sh -c "echo 'performance powersave' > $STANDIN/cpu2/cpufreq/scaling_available_governors"
    local r
    r=$(request set_cpu_governor governor=schedutil)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "not available on cpu2"
    assert_eq "$(governors)" " 4 powersave"
    drop_stand_in
}

t_stand_in_drop_in_removed_real_tree_again() {
    sb test ! -e "$DROPIN" || fail "drop-in left behind"
    local r
    r=$(request set_cpu_governor governor=powersave)
    assert_contains "$(jfield error <<<"$r")" "under /sys/devices/system/cpu"
}

run_case real_sysfs_without_cpufreq_is_a_clear_error t_real_sysfs_without_cpufreq_is_a_clear_error
run_case unknown_governor_refused t_unknown_governor_refused
run_case real_tree_same_process_after_cache_drops t_real_tree_same_process_after_cache_drops
run_case stand_in_tree_every_cpu_set t_stand_in_tree_every_cpu_set
run_case stand_in_tree_unavailable_governor_changes_nothing t_stand_in_tree_unavailable_governor_changes_nothing
run_case stand_in_drop_in_removed_real_tree_again t_stand_in_drop_in_removed_real_tree_again
finish

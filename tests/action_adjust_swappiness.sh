#!/usr/bin/env bash
# adjust_swappiness through the dispatcher changes the kernel's value for
# real (vm.swappiness is global: the host sees it too), refuses values
# outside 0-100 without touching it, and the test puts the original back.
export SDSANDBOX_API_VFS_WRITABLE=1
source "$(dirname "$0")/lib.sh"
# vm.swappiness is one value for the whole machine: two runs of this test at
# once (two sessions, two worktrees) would each "restore" the other's
# temporary value. Serialize them before reading the original; anything
# else that changes it on purpose (scripts/bench) should take the same lock.
exec 9> /tmp/luminous-healing-swappiness.lock
flock 9
ORIGINAL=$(cat /proc/sys/vm/swappiness)
# Restored from the host side whatever happens to the container.
restore_swappiness() { echo "$ORIGINAL" > /proc/sys/vm/swappiness; }
TEARDOWN_HOOK=restore_swappiness
boot
install_project
set_config 'caller_rate_limit = { max = 1000, window_secs = 300 }
[actions.adjust_swappiness]
rate_limit = { max = 1000, window_secs = 300 }
[actions.clear_system_cache]
rate_limit = { max = 1000, window_secs = 300 }'

kernel() { cat /proc/sys/vm/swappiness; }

t_value_changes_in_the_kernel() {
    local want=$(( ORIGINAL == 37 ? 38 : 37 )) r
    r=$(request adjust_swappiness value=$want)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(jfield output <<<"$r")" "vm.swappiness $ORIGINAL -> $want"
    assert_eq "$(kernel)" "$want" "host kernel value"
    assert_eq "$(sb cat /proc/sys/vm/swappiness)" "$want" "container view"
}

t_bounds_0_and_100_accepted() {
    local r
    r=$(request adjust_swappiness value=0)
    assert_eq "$(jfield success <<<"$r")" true "$r"; assert_eq "$(kernel)" 0
    r=$(request adjust_swappiness value=100)
    assert_eq "$(jfield success <<<"$r")" true "$r"; assert_eq "$(kernel)" 100
}

t_out_of_range_refused_and_unchanged() {
    local before r
    before=$(kernel)
    for v in 101 -1 1000 abc 2.5 ""; do
        r=$(request adjust_swappiness value="$v")
        assert_eq "$(jfield success <<<"$r")" false "value [$v]: $r"
        assert_eq "$(kernel)" "$before" "after value [$v]"
    done
    r=$(request adjust_swappiness value=101)
    assert_contains "$(jfield error <<<"$r")" "swappiness 101 is outside 0-100"
    r=$(request adjust_swappiness)
    assert_contains "$(jfield error <<<"$r")" '"value" is missing'
}

t_restored_through_the_action() {
    local r
    r=$(request adjust_swappiness value="$ORIGINAL")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(kernel)" "$ORIGINAL"
}

# svc_ino PID PATH: PATH's inode as the service PID sees it (its mount
# namespace, its own procfs instance: ProtectProc= mounts a new one).
svc_ino() { sb nsenter -t "$1" -m stat -c %i "$2"; }

# docs/benchmarks.md, finding 6: a landlock rule names an inode, and procfs
# gives /proc/sys/vm/swappiness a new one each time its dentry is evicted and
# looked up again; the rule on the path then matched nothing and the running
# service answered EACCES to every request. It now holds the file open from
# before confinement (which also pins that dentry). One process serves both
# requests here, with cache drops in between (clear_system_cache, and `echo
# 2` inside the container) until a sibling sysctl the service does not hold
# has a new inode in the service's own procfs instance: the drops did evict
# there. Looking the files up from outside the service first is what made
# the old binary fail every time (5 of 5; without it, 0 of 11); with it,
# this case failed on the old binary with EACCES.
t_same_process_serves_after_cache_drops() {
    local svc=luminous-healing-adjust_swappiness.service want r pid held ctl ctl2 i
    trap restore_swappiness EXIT
    want=$(( ORIGINAL == 37 ? 38 : 37 ))
    sb systemctl stop "$svc"
    r=$(request adjust_swappiness value=$want)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    pid=$(sb systemctl show -P MainPID "$svc")
    [ "$pid" -gt 0 ] || fail "$svc has no main process"
    held=$(svc_ino "$pid" /proc/sys/vm/swappiness)
    ctl=$(svc_ino "$pid" /proc/sys/vm/overcommit_memory)
    ctl2=$ctl
    for i in 1 2 3 4 5; do
        r=$(request clear_system_cache)
        assert_eq "$(jfield success <<<"$r")" true "round $i: $r"
        sb sh -c 'for n in 1 2 3; do echo 2 > /proc/sys/vm/drop_caches; done'
        ctl2=$(svc_ino "$pid" /proc/sys/vm/overcommit_memory)
        [ "$ctl2" != "$ctl" ] && break
    done
    [ "$ctl2" != "$ctl" ] || fail "overcommit_memory kept inode $ctl through 5 rounds of drops: nothing was evicted, nothing tested"
    echo "service pid $pid: after $i round(s) of drops overcommit_memory inode $ctl -> $ctl2, held swappiness $held -> $(svc_ino "$pid" /proc/sys/vm/swappiness)"
    r=$(request adjust_swappiness value="$ORIGINAL")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(jfield output <<<"$r")" "vm.swappiness $want -> $ORIGINAL"
    assert_eq "$(sb systemctl show -P MainPID "$svc")" "$pid" "the same process served both requests"
    assert_eq "$(kernel)" "$ORIGINAL"
}

t_non_root_cannot_whatever_its_capabilities() {
    # the experiment behind "root uid, no capabilities" (docs/privileges.md)
    local out
    assert_non_root_refused "CAP_SYS_ADMIN CAP_DAC_OVERRIDE CAP_SYS_RESOURCE CAP_FOWNER" \
        'cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness && echo WROTE'
    out=$(sb systemd-run --quiet --wait --pipe --collect -p CapabilityBoundingSet= \
        sh -c 'cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness && echo WROTE' 2>&1 || true)
    assert_contains "$out" "WROTE"
    assert_eq "$(kernel)" "$ORIGINAL"
}

run_case value_changes_in_the_kernel t_value_changes_in_the_kernel
run_case bounds_0_and_100_accepted t_bounds_0_and_100_accepted
run_case out_of_range_refused_and_unchanged t_out_of_range_refused_and_unchanged
run_case restored_through_the_action t_restored_through_the_action
run_case same_process_serves_after_cache_drops t_same_process_serves_after_cache_drops
run_case non_root_cannot_whatever_its_capabilities_root_without_any_can t_non_root_cannot_whatever_its_capabilities
restore_swappiness
[ "$(kernel)" = "$ORIGINAL" ] || { echo "swappiness not restored" >&2; FAILED=$((FAILED + 1)); }
finish

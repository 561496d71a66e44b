#!/usr/bin/env bash
# clear_system_cache through the dispatcher really drops the page cache: a
# file this test reads into the cache is no longer resident afterwards
# (mincore(2)). drop_caches is global; caches refill by themselves, there is
# nothing to restore.
export SDSANDBOX_API_VFS_WRITABLE=1
source "$(dirname "$0")/lib.sh"
boot_installed 'caller_rate_limit = { max = 1000, window_secs = 300 }
[actions.clear_system_cache]
rate_limit = { max = 1000, window_secs = 300 }'

# resident PATH: percentage of PATH's pages in the page cache (mincore(2)).
resident() {
    sb python3 -c '
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
vec = (ctypes.c_ubyte * pages)()
ptr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
if libc.mincore(ptr, size, vec) != 0:
    sys.exit("mincore: errno %d" % ctypes.get_errno())
print(100 * sum(v & 1 for v in vec) // pages)
' "$1"
}

t_drops_the_page_cache_for_real() {
    # a file on a real disk filesystem (the bound build tree), not the tmpfs root
    local f=/src/target/release/luminous-healing r before after
    sb cat "$f" > /dev/null
    before=$(resident "$f")
    [ "$before" -ge 90 ] || fail "test file not cached after reading it ($before%)"
    r=$(request clear_system_cache)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "dropped page cache, dentries and inodes"
    after=$(resident "$f")
    [ "$after" -le 10 ] || fail "still $after% resident after drop_caches (before: $before%)"
    echo "resident before $before%, after $after%"
}

# svc_ino PID PATH: PATH's inode as the service PID sees it (its mount
# namespace, its own procfs instance: ProtectProc= mounts a new one).
svc_ino() { sb nsenter -t "$1" -m stat -c %i "$2"; }

# docs/benchmarks.md, finding 6: a landlock rule on /proc/sys/vm/drop_caches
# stopped matching once the kernel evicted the file's dentry (procfs makes a
# new inode at the next lookup), which this action itself causes. The file
# is now held open from before confinement: one process keeps serving while
# drops (`echo 2` inside the container, and its own) evict the service's
# procfs dentries, shown by a sysctl it does not hold getting a new inode in
# its procfs instance. With the old binary, the request after the first
# round failed with EACCES.
t_same_process_serves_after_drops() {
    local svc=luminous-healing-clear_system_cache.service r pid ctl ctl2 i
    sb systemctl stop "$svc"
    r=$(request clear_system_cache)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    pid=$(sb systemctl show -P MainPID "$svc")
    [ "$pid" -gt 0 ] || fail "$svc has no main process"
    ctl=$(svc_ino "$pid" /proc/sys/vm/overcommit_memory)
    ctl2=$ctl
    for i in 1 2 3 4 5; do
        # the look-up from outside the service before the drops, as in the
        # adjust_swappiness case: it is what made the old binary fail
        svc_ino "$pid" /proc/sys/vm/drop_caches >/dev/null
        sb sh -c 'for n in 1 2 3; do echo 2 > /proc/sys/vm/drop_caches; done'
        ctl2=$(svc_ino "$pid" /proc/sys/vm/overcommit_memory)
        r=$(request clear_system_cache)
        assert_eq "$(jfield success <<<"$r")" true "round $i: $r"
        [ "$ctl2" != "$ctl" ] && break
    done
    [ "$ctl2" != "$ctl" ] || fail "overcommit_memory kept inode $ctl through 5 rounds of drops: nothing was evicted, nothing tested"
    echo "service pid $pid: overcommit_memory inode $ctl -> $ctl2 after $i round(s) of drops"
    assert_eq "$(sb systemctl show -P MainPID "$svc")" "$pid" "the same process served every request"
}

t_parameters_refused() {
    local r
    r=$(request clear_system_cache level=1)
    assert_eq "$(jfield success <<<"$r")" false
    assert_contains "$(jfield error <<<"$r")" 'unknown parameter "level"'
}

t_non_root_cannot_whatever_its_capabilities() {
    assert_non_root_refused "CAP_SYS_ADMIN CAP_DAC_OVERRIDE" 'echo 1 > /proc/sys/vm/drop_caches && echo WROTE'
}

run_case drops_the_page_cache_for_real t_drops_the_page_cache_for_real
run_case same_process_serves_after_drops t_same_process_serves_after_drops
run_case parameters_refused t_parameters_refused
run_case non_root_cannot_whatever_its_capabilities t_non_root_cannot_whatever_its_capabilities
finish

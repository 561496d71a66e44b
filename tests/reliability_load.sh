#!/usr/bin/env bash
# Load: LH_LOAD_CLIENTS (64) clients x LH_LOAD_REQUESTS requests each, a mix
# of good, bad signature, replayed, over the limit, malformed and unknown
# action (tests/load_client.py, run inside the container). Every request gets
# one reply; the journal accounts for every one (the sum of HEALING_COUNT
# over the decision records, once the folded records are flushed); the
# dispatcher's open fds and Pss are the same before and after.
source "$(dirname "$0")/lib.sh"
CLIENTS=${LH_LOAD_CLIENTS:-64}
REQUESTS=${LH_LOAD_REQUESTS:-500}
boot
install_project
# Ids live max_clock_skew_secs: short, so the replay cache of one round is
# forgotten by the next and memory can plateau. The caller's budget is one
# request a day, spent below, so that adjust_swappiness is "over the limit"
# without ever running.
# All 64 load clients are root: the per-uid connection cap (16 by default,
# so that one caller cannot hold every slot) would refuse most of them.
set_config 'idle_timeout_secs = 3600
max_connections_per_uid = 128
max_clock_skew_secs = 5
max_ids_per_caller = 1000000
status_rate_limit = { max = 1000000, window_secs = 300 }
caller_rate_limit = { max = 1, window_secs = 86400 }'

main_pid() { sb systemctl show -P MainPID luminous-healing.service; }
fds() { sb sh -c "ls /proc/$1/fd | wc -l"; }
pss_kb() { sb sed -n 's/^Pss: *\([0-9]*\) kB/\1/p' "/proc/$1/smaps_rollup"; }
load() { sb python3 /src/tests/load_client.py --secret-file "$SECRET_IN" --clients "$CLIENTS" --requests "$REQUESTS" "$@"; }
decisions_now() { count_decisions; }
# The folded records of a second are written when it is over; wait until the
# count stops moving.
settled_decisions() {
    local a b
    sleep 2; a=$(decisions_now)
    for _ in $(seq 20); do sleep 1; b=$(decisions_now); [ "$a" = "$b" ] && break; a=$b; done
    echo "$a"
}

t_load_every_request_answered_and_accounted_memory_flat() {
    # spend the caller's one request of the day on a real, harmless action
    sb sh -c 'sleep 600 & echo $! > /tmp/victim'
    local victim r; victim=$(sb cat /tmp/victim)
    r=$(request kill_process pid="$victim" signal=TERM)
    assert_eq "$(jfield success <<<"$r")" true "spending the budget: $r"
    r=$(request adjust_swappiness value=10)
    assert_eq "$(jfield error <<<"$r")" "Rate limit exceeded"

    # round 1 warms up: threads, allocator arenas, the replay cache's table
    local out1 out2 pid fd0 pss0 fd1 pss1 d0 d1 sent
    out1=$(load)
    echo "round 1: $out1"
    sleep 6   # its ids expire (max_clock_skew_secs = 5)
    pid=$(main_pid); fd0=$(fds "$pid"); pss0=$(pss_kb "$pid")
    d0=$(settled_decisions)
    out2=$(load)
    echo "round 2: $out2"
    d1=$(settled_decisions)
    assert_eq "$(main_pid)" "$pid" "the dispatcher was not restarted during the load"
    fd1=$(fds "$pid"); pss1=$(pss_kb "$pid")
    echo "fds $fd0 -> $fd1, Pss $pss0 kB -> $pss1 kB"
    # the figures, printed after the case (docs/testing.md quotes them)
    printf '  load: %s requests, %s/s (round 2: %s s); fds %s -> %s; Pss %s kB -> %s kB\n' \
        "$(jfield sent <<<"$out2")" "$(jfield rate <<<"$out2")" "$(jfield seconds <<<"$out2")" \
        "$fd0" "$fd1" "$pss0" "$pss1" > "$FIGURES"
    sent=$(jfield sent <<<"$out2")
    assert_eq "$sent" $((CLIENTS * REQUESTS)) "requests sent"
    assert_eq "$(jfield no_reply <<<"$out2")" 0 "requests without a reply: $out2"
    assert_eq "$(jfield unexpected <<<"$out2")" 0 "replies not the expected refusal or success: $out2"
    assert_eq "$((d1 - d0))" "$sent" "decision records (sum of HEALING_COUNT) for round 2"
    # fds: idle before and after, so exactly the same set (listener, state
    # log, journal socket, notify socket)
    assert_eq "$fd1" "$fd0" "open fds"
    # Pss: after an identical warm-up round the heap has its plateau (glibc
    # keeps per-thread arenas and the replay table's capacity); a second
    # round may add allocator noise only: 10 % + 1 MiB. A leak of even 64
    # bytes per request would add 2 MB here.
    [ "$pss1" -le $(( pss0 + pss0 / 10 + 1024 )) ] || fail "Pss grew from $pss0 kB to $pss1 kB"
}

FIGURES=/tmp/lh-load-figures-$$
run_case load_every_request_answered_and_accounted_memory_flat t_load_every_request_answered_and_accounted_memory_flat
cat "$FIGURES" 2>/dev/null; rm -f "$FIGURES"
finish

#!/usr/bin/env bash
# docs/privileges.md cannot drift: scripts/check-privileges compares its
# table with every action binary's own declaration (--describe), the unit
# templates and the exposure measured by systemd-analyze, and checks the
# exposure targets. No container needed.
. "$(dirname "$0")/lib.sh"

privileges_table_matches_units_binaries_and_exposure() {
    out=$("$ROOT/scripts/check-privileges" 2>&1) || { echo "$out" | grep -v '^  ok'; return 1; }
    assert_contains "$out" " 0 failed"
}

action_binaries_refuse_to_run_by_hand_as_root() {
    # run by hand, root holds every capability: each binary must stop with a
    # clear error before it serves anything
    for a in kill_process adjust_swappiness clear_system_cache set_cpu_governor; do
        local err rc=0
        err=$("$ROOT/target/release/luminous-healing-$a" --listen "/tmp/lh-byhand-$$.sock" \
              --dispatcher-uid 65534 --config /dev/null 2>&1) || rc=$?
        rm -f "/tmp/lh-byhand-$$.sock"
        assert_eq "$rc" 1 "$a exit status"
        assert_contains "$err" "refusing to run" "$a"
        assert_contains "$err" "run by hand as root" "$a"
    done
}

run_case privileges_table_matches_units_binaries_and_exposure privileges_table_matches_units_binaries_and_exposure
run_case action_binaries_refuse_to_run_by_hand_as_root action_binaries_refuse_to_run_by_hand_as_root
finish

#!/usr/bin/env bash
# rollback_generation through the dispatcher, against a STAND-IN
# nixos-rebuild: there is no NixOS here, so a script at the configured path
# (actions.rollback_generation.nixos_rebuild) records what it was run with.
# It proves the argv is exactly `switch --rollback`, that output and exit
# status come back, that the timeout kills the whole process group, and the
# privileges the real nixos-rebuild would get. It does not prove a real
# rollback: that needs a NixOS machine (nixos/ has the VM test).
source "$(dirname "$0")/lib.sh"
boot
install_project

DIR=/run/lh-standin
STANDIN=$DIR/nixos-rebuild

# The stand-in: records argc/argv, its uid and capability sets, whether it
# can signal PID 1 (landlock's signal scope says no), then behaves as
# $DIR/mode says.
sb mkdir -p "$DIR"
sb tee "$STANDIN" >/dev/null <<'EOF'
#!/bin/sh
d=/run/lh-standin
printf '%s\n' "$#" "$@" > $d/argv
grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status > $d/status
if kill -0 1 2>/dev/null; then echo yes > $d/can-signal-pid1; else echo no > $d/can-signal-pid1; fi
env | sort > $d/env
case "$(cat $d/mode 2>/dev/null)" in
fail) echo "error: no previous generation" >&2; exit 1 ;;
hang) sleep 300 & echo $! > $d/child.pid; echo $$ > $d/self.pid; echo "switching..."; wait ;;
loud) echo FIRST; seq 1 100000 | sed 's/^/building unit line /'; echo LAST ;;
*) echo "stopping the following units: nothing"; echo "activating the configuration..." ;;
esac
EOF
sb chmod 0755 "$STANDIN"

cleanup() {
    sb rm -rf "$DIR" /etc/luminous-healing/config.toml
}
TEARDOWN_HOOK=cleanup

configure() {
    set_config "[actions.rollback_generation]
nixos_rebuild = \"$STANDIN\"
$1" 2>/dev/null
    sb systemctl stop luminous-healing-rollback_generation.service 2>/dev/null
}
configure ""

t_standin_records_exactly_switch_rollback() {
    sb rm -f "$DIR/argv"; echo ok | sb tee "$DIR/mode" >/dev/null
    local r
    r=$(request --id rb-1 rollback_generation)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    # argc then each argument on its own line: exactly two, in this order.
    assert_eq "$(sb cat "$DIR/argv")" "$(printf '2\nswitch\n--rollback')"
    assert_contains "$(jfield output <<<"$r")" "$STANDIN switch --rollback: succeeded"
    assert_contains "$(jfield output <<<"$r")" "activating the configuration..."
    assert_one_decision rb-1 success
}

t_environment_is_fixed_not_inherited() {
    assert_eq "$(sb cat "$DIR/env" | cut -d= -f1 | grep -v '^PWD$' | tr '\n' ' ')" "HOME LANG PATH "
}

t_failure_reports_exit_status_and_output() {
    echo fail | sb tee "$DIR/mode" >/dev/null
    local r
    r=$(request --id rb-fail rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "failed with exit status 1"
    assert_contains "$(jfield error <<<"$r")" "error: no previous generation"
    assert_one_decision rb-fail failure "exit status 1"
}

t_timeout_kills_the_whole_process_group() {
    configure "timeout_secs = 3"
    echo hang | sb tee "$DIR/mode" >/dev/null
    sb rm -f "$DIR/child.pid" "$DIR/self.pid"
    local r self child
    r=$(request --id rb-hang rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "did not finish within 2 s and was killed"
    assert_contains "$(jfield error <<<"$r")" "switching..."
    self=$(sb cat "$DIR/self.pid"); child=$(sb cat "$DIR/child.pid")
    # Both the script and the child it left running are gone.
    if sb test -e "/proc/$self"; then fail "stand-in $self still running"; fi
    if sb test -e "/proc/$child"; then fail "its child $child still running"; fi
    configure ""
}

t_long_output_is_cut_in_the_middle_and_fits_one_read() {
    echo loud | sb tee "$DIR/mode" >/dev/null
    local r
    r=$(request --id rb-loud rollback_generation)
    [ "${#r}" -lt 65536 ] || fail "reply of ${#r} bytes does not fit the v1 client's single read"
    assert_eq "$(jfield success <<<"$r")" true "${r:0:300}"
    # The start and the end (where nixos-rebuild's verdict is) are kept.
    assert_contains "$(jfield output <<<"$r")" "FIRST"
    assert_contains "$(jfield output <<<"$r")" "bytes of output omitted"
    assert_contains "$(jfield output <<<"$r")" "LAST"
}

t_parameters_are_refused_and_nothing_runs() {
    sb rm -f "$DIR/argv"
    local r
    r=$(request rollback_generation generation=12)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "Invalid parameters"
    if sb test -e "$DIR/argv"; then fail "the stand-in ran"; fi
}

t_runs_with_the_declared_capabilities_and_scoped_signals() {
    echo ok | sb tee "$DIR/mode" >/dev/null
    request rollback_generation >/dev/null
    # CAP_CHOWN 0, DAC_OVERRIDE 1, DAC_READ_SEARCH 2, FOWNER 3, FSETID 4,
    # SETGID 6, SETUID 7, LINUX_IMMUTABLE 9, SYS_ADMIN 21, AUDIT_WRITE 29,
    # SETFCAP 31.
    local mask st
    mask=$(printf '%016x' $(( (1<<0)|(1<<1)|(1<<2)|(1<<3)|(1<<4)|(1<<6)|(1<<7)|(1<<9)|(1<<21)|(1<<29)|(1<<31) )))
    st=$(sb cat "$DIR/status")
    assert_contains "$st" "$(printf 'Uid:\t0\t0\t0\t0')"
    assert_contains "$st" "$(printf 'CapEff:\t%s' "$mask")"
    assert_contains "$st" "$(printf 'CapBnd:\t%s' "$mask")"
    assert_contains "$st" "$(printf 'CapAmb:\t0000000000000000')"
    assert_contains "$st" "$(printf 'NoNewPrivs:\t1')"
    # landlock's signal scope: root with these capabilities still cannot
    # signal a process outside the service (here PID 1).
    assert_eq "$(sb cat "$DIR/can-signal-pid1")" no
}

run_case standin_records_exactly_switch_rollback t_standin_records_exactly_switch_rollback
run_case environment_is_fixed_not_inherited t_environment_is_fixed_not_inherited
run_case failure_reports_exit_status_and_output t_failure_reports_exit_status_and_output
run_case timeout_kills_the_whole_process_group t_timeout_kills_the_whole_process_group
run_case long_output_cut_in_the_middle_fits_one_read t_long_output_is_cut_in_the_middle_and_fits_one_read
run_case parameters_are_refused_and_nothing_runs t_parameters_are_refused_and_nothing_runs
run_case runs_with_declared_capabilities_and_scoped_signals t_runs_with_the_declared_capabilities_and_scoped_signals
finish

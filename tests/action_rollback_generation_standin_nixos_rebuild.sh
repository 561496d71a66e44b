#!/usr/bin/env bash
# rollback_generation through the dispatcher, against a STAND-IN
# nixos-rebuild: there is no NixOS here, so a script at the configured path
# (actions.rollback_generation.nixos_rebuild) records what it was run with.
# It proves the argv is exactly `switch --rollback`, that output and exit
# status come back, that the timeout kills the whole process group, and the
# privileges the real nixos-rebuild would get. The generations are stand-ins
# too: system-1-link..system-3-link to directories the test makes, in a
# profile directory and a current-system link named by the config
# (nix_profiles_dir, current_system); the stand-in moves both one generation
# back, as a real rollback would. So the policy is exercised on real files:
# refused unless enabled, one step back only, never while a GC holds the
# lock. It does not prove a real rollback: that needs a NixOS machine
# (nixos/ has the VM test).
source "$(dirname "$0")/lib.sh"
boot
install_project

DIR=/run/lh-standin
STANDIN=$DIR/nixos-rebuild
GEN=/run/lh-gen
PROFILES=$GEN/profiles

# The stand-in nixos-rebuild: records argc/argv (and one line per run), its
# uid and capability sets, whether it can signal PID 1 (landlock's signal
# scope says no), then behaves as $DIR/mode says; when it succeeds it moves
# the profile's `system` link and the running system one generation back.
sb mkdir -p "$DIR"
sb tee "$STANDIN" >/dev/null <<'EOF'
#!/bin/sh
d=/run/lh-standin
g=/run/lh-gen
back() {
    n=$(readlink $g/profiles/system | sed 's/^system-\([0-9]*\)-link$/\1/')
    ln -sfn system-$((n - 1))-link $g/profiles/system
    ln -sfn $g/store/gen-$((n - 1)) $g/current-system
}
echo run >> $d/runs
printf '%s\n' "$#" "$@" > $d/argv
grep -E '^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status > $d/status
if kill -0 1 2>/dev/null; then echo yes > $d/can-signal-pid1; else echo no > $d/can-signal-pid1; fi
env | sort > $d/env
case "$(cat $d/mode 2>/dev/null)" in
fail) echo "error: no previous generation" >&2; exit 1 ;;
hang) sleep 300 & echo $! > $d/child.pid; echo $$ > $d/self.pid; echo "switching..."; wait ;;
loud) back; echo FIRST; seq 1 100000 | sed 's/^/building unit line /'; echo LAST ;;
*) back; echo "stopping the following units: nothing"; echo "activating the configuration..." ;;
esac
EOF
sb chmod 0755 "$STANDIN"

# Three generations, the profile and the running system at the newest; no
# run of the stand-in recorded.
reset_generations() {
    sb rm -rf "$GEN" "$DIR/runs"
    sb mkdir -p "$PROFILES" "$GEN/store/gen-1" "$GEN/store/gen-2" "$GEN/store/gen-3"
    local n
    for n in 1 2 3; do sb ln -s "$GEN/store/gen-$n" "$PROFILES/system-$n-link"; done
    sb ln -s system-3-link "$PROFILES/system"
    sb ln -s "$GEN/store/gen-3" "$GEN/current-system"
}
# fresh MODE: new generations, and the stand-in's next run behaves as MODE.
fresh() { reset_generations; echo "$1" | sb tee "$DIR/mode" >/dev/null; }
runs() { sb sh -c "cat $DIR/runs 2>/dev/null | wc -l"; }

cleanup() {
    sb systemctl stop lh-gc-lock.service 2>/dev/null || true
    sb rm -rf "$DIR" "$GEN" /etc/luminous-healing/config.toml
}
TEARDOWN_HOOK=cleanup

# configure EXTRA: the stand-in and the generations; EXTRA is more keys of
# [actions.rollback_generation]. The rate limit is raised: the cases make
# more rollbacks than the default 10 per 5 minutes.
configure() {
    set_config "nix_profiles_dir = \"$PROFILES\"
current_system = \"$GEN/current-system\"
[actions.rollback_generation]
nixos_rebuild = \"$STANDIN\"
rate_limit = { max = 100, window_secs = 300 }
$1" 2>/dev/null
    sb systemctl stop luminous-healing-rollback_generation.service 2>/dev/null
}
configure "enabled = true"

t_refused_unless_enabled() {
    configure ""
    reset_generations
    local r
    r=$(request --id rb-off rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_eq "$(jfield error <<<"$r")" "Action rollback_generation not allowed"
    assert_eq "$(runs)" 0 "stand-in runs:"
    assert_one_decision rb-off denied "disabled"
    configure "enabled = true"
}

t_one_step_back_only() {
    fresh ok
    local r
    r=$(request --id rb-first rollback_generation)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "generation 3 -> 2, now running 2"
    assert_eq "$(sb readlink "$PROFILES/system")" system-2-link
    assert_eq "$(sb readlink "$GEN/current-system")" "$GEN/store/gen-2"
    # Running 2 of 3: already rolled back, and a second step is refused.
    r=$(request --id rb-second rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "(generation 2) is already older than the newest (3)"
    assert_contains "$(jfield error <<<"$r")" "(rule one-step-back)"
    assert_eq "$(runs)" 1 "stand-in runs:"
    assert_eq "$(sb readlink "$PROFILES/system")" system-2-link
    assert_one_decision rb-second denied "one-step-back"
}

t_refused_while_a_gc_holds_the_lock() {
    fresh ok
    # The lock clean_nix_store takes: flock on the profile directory.
    sb systemd-run -q --unit=lh-gc-lock flock "$PROFILES" sleep 300
    wait_for 5 sb sh -c "! flock -n '$PROFILES' true" || fail "the test's lock was not taken"
    local r
    r=$(request --id rb-busy rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "another rollback or garbage collection is running (rule one-nix-operation)"
    assert_eq "$(runs)" 0 "stand-in runs:"
    assert_one_decision rb-busy denied "one-nix-operation"
    # Released: the same request goes through.
    sb systemctl stop lh-gc-lock.service
    r=$(request rollback_generation)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(runs)" 1 "stand-in runs:"
}

t_refused_when_the_profile_is_not_the_running_generation() {
    # Running 3, but the profile was moved back to 2 (say, by nix-env
    # --rollback alone): nixos-rebuild --rollback would go to 1, two steps.
    fresh ok
    sb ln -sfn system-2-link "$PROFILES/system"
    local r
    r=$(request rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "the system profile names generation 2, not the running generation 3"
    assert_eq "$(runs)" 0 "stand-in runs:"
}

t_standin_records_exactly_switch_rollback() {
    fresh ok
    sb rm -f "$DIR/argv"
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
    fresh fail
    local r
    r=$(request --id rb-fail rollback_generation)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "failed with exit status 1"
    assert_contains "$(jfield error <<<"$r")" "error: no previous generation"
    assert_one_decision rb-fail failure "exit status 1"
}

t_timeout_kills_the_whole_process_group() {
    configure "enabled = true
timeout_secs = 3"
    fresh hang
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
    configure "enabled = true"
}

t_long_output_is_cut_in_the_middle_and_fits_one_read() {
    fresh loud
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
    fresh ok
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

run_case refused_unless_enabled t_refused_unless_enabled
run_case one_step_back_only t_one_step_back_only
run_case refused_while_a_gc_holds_the_lock t_refused_while_a_gc_holds_the_lock
run_case refused_when_the_profile_is_not_the_running_generation t_refused_when_the_profile_is_not_the_running_generation
run_case standin_records_exactly_switch_rollback t_standin_records_exactly_switch_rollback
run_case environment_is_fixed_not_inherited t_environment_is_fixed_not_inherited
run_case failure_reports_exit_status_and_output t_failure_reports_exit_status_and_output
run_case timeout_kills_the_whole_process_group t_timeout_kills_the_whole_process_group
run_case long_output_cut_in_the_middle_fits_one_read t_long_output_is_cut_in_the_middle_and_fits_one_read
run_case parameters_are_refused_and_nothing_runs t_parameters_are_refused_and_nothing_runs
run_case runs_with_declared_capabilities_and_scoped_signals t_runs_with_the_declared_capabilities_and_scoped_signals
finish

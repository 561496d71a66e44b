#!/usr/bin/env bash
# restart_service through the dispatcher against a real systemd: a test
# unit's InvocationID changes, the job result is reported (done, failed,
# timeout), and invalid, non-allow-listed and luminous-healing's own unit
# names are refused without touching anything.
source "$(dirname "$0")/lib.sh"
require dbus-daemon dbus-daemon
[ -f /lib/systemd/system/dbus.service ] || die "no dbus.service (the system bus): apt-get install -y dbus"
boot_installed

UNIT=lh-restart-target.service
FAILING=lh-restart-fails.service
SLOW=lh-restart-slow.service
OTHER=lh-restart-other.service

# Test units in /run (gone with the container, and removed at the end anyway).
sb mkdir -p /run/systemd/system
for u in "$UNIT" "$OTHER"; do
    printf '[Service]\nExecStart=/bin/sleep infinity\n' | sb tee "/run/systemd/system/$u" >/dev/null
done
printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/false\n' | sb tee "/run/systemd/system/$FAILING" >/dev/null
# Running, but slow to stop: its restart job outlives the action's timeout.
printf '[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep 20\nTimeoutStopSec=30\n' | sb tee "/run/systemd/system/$SLOW" >/dev/null
sb systemctl daemon-reload
sb systemctl start "$UNIT" "$OTHER" "$SLOW"
# A unit that failed: restart_service restarts it (RestartUnit), and reports
# that it failed again.
sb systemctl start "$FAILING" 2>/dev/null || true

cleanup_units() {
    sb systemctl stop "$UNIT" "$OTHER" "$FAILING" "$SLOW" 2>/dev/null || true
    sb rm -f /run/systemd/system/{$UNIT,$OTHER,$FAILING,$SLOW} /etc/luminous-healing/config.toml
    sb systemctl daemon-reload || true
    sb systemctl reset-failed 2>/dev/null || true
}
TEARDOWN_HOOK=cleanup_units

invocation() { sb systemctl show -P InvocationID "$1"; }

# The allow-list is read by the dispatcher and by the action service at
# start: stop both so the next request starts them with it.
configure() {
    set_config "$1" 2>/dev/null
    sb systemctl stop luminous-healing-restart_service.service 2>/dev/null
}

configure "[actions.restart_service]
allowed_units = [\"$UNIT\", \"lh-restart-fails\", \"$SLOW\", \"luminous-healing.service\"]
timeout_secs = 4"

t_restart_changes_invocation_id_and_reports_done() {
    local before after r
    before=$(invocation "$UNIT")
    [ -n "$before" ] || fail "test unit has no InvocationID"
    r=$(request --id rs-ok restart_service service="$UNIT")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    after=$(invocation "$UNIT")
    [ "$after" != "$before" ] || fail "InvocationID unchanged: $before"
    assert_contains "$(jfield output <<<"$r")" "result=done"
    assert_contains "$(jfield output <<<"$r")" "invocation_id=$after"
    assert_eq "$(sb systemctl is-active "$UNIT")" active
    assert_one_decision rs-ok success
}

t_name_without_suffix_is_allow_listed_by_normal_form_and_its_failed_job_reported() {
    # "lh-restart-fails" in the allow-list matches a request for the .service.
    local r
    assert_eq "$(sb systemctl is-active "$FAILING")" failed "before the request:"
    r=$(request --id rs-failed restart_service service=lh-restart-fails)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    # systemd's own job result, reported verbatim.
    assert_contains "$(jfield error <<<"$r")" "restart of $FAILING finished"
    assert_contains "$(jfield error <<<"$r")" "result=failed"
}

t_job_timeout_is_reported_with_the_job() {
    local r
    r=$(request --id rs-slow restart_service service="$SLOW")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "result=timeout"
    assert_contains "$(jfield error <<<"$r")" "/org/freedesktop/systemd1/job/"
}

t_invalid_names_are_refused_and_nothing_restarts() {
    local before name r
    before=$(invocation "$UNIT")
    for name in "../$UNIT" "a/b.service" "x;reboot.service" "$(printf 'lh\x01.service')" \
                "foo.device" "getty@.service" "$(head -c 300 /dev/zero | tr '\0' a).service" ""; do
        r=$(request restart_service service="$name")
        assert_eq "$(jfield success <<<"$r")" false "name [$name]: $r"
        assert_contains "$(jfield error <<<"$r")" "Invalid parameters" "name [$name]:"
    done
    # Straight to the action socket, past the dispatcher: validated again.
    r=$(as_user luminous-healing python3 /src/tests/action_client.py restart_service service="../$UNIT")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "not allow"
    assert_eq "$(invocation "$UNIT")" "$before" "InvocationID after refusals:"
}

t_not_allow_listed_is_refused_by_the_dispatcher() {
    local before r
    before=$(invocation "$OTHER")
    r=$(request --id rs-notallowed restart_service service="$OTHER")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "not allowed"
    assert_eq "$(invocation "$OTHER")" "$before"
    assert_one_decision rs-notallowed denied "allowed_units"
}

t_not_allow_listed_is_refused_by_the_action_itself() {
    # Bypassing the dispatcher (as its user, straight to the action socket):
    # the action checks the allow-list again.
    local before r
    before=$(invocation "$OTHER")
    r=$(as_user luminous-healing python3 /src/tests/action_client.py restart_service service="$OTHER")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "not in actions.restart_service.allowed_units"
    assert_eq "$(invocation "$OTHER")" "$before"
}

t_own_units_are_refused_even_when_allow_listed() {
    local before r
    before=$(sb systemctl show -P MainPID luminous-healing.service)
    r=$(request restart_service service=luminous-healing.service)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "rule protected-units"
    assert_eq "$(sb systemctl show -P MainPID luminous-healing.service)" "$before"
}

t_unknown_unit_is_refused_not_loaded() {
    configure ""   # no allow-list: any valid name may be asked for
    local r
    r=$(request --id rs-nosuch restart_service service=lh-no-such-unit.service)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "Unit lh-no-such-unit.service not restarted: systemd has no such unit loaded"
    assert_contains "$(jfield error <<<"$r")" "(rule unit-loaded)"
    assert_one_decision rs-nosuch denied "rule unit-loaded"
}

t_service_runs_as_declared() {
    # The measured privilege: root, empty capability sets, no new privileges.
    [ "$(sb systemctl show -P MainPID luminous-healing-restart_service.service)" != 0 ] \
        || request restart_service service="$UNIT" >/dev/null
    assert_root_without_capabilities luminous-healing-restart_service.service
}

run_case restart_changes_invocation_id_and_reports_done t_restart_changes_invocation_id_and_reports_done
run_case name_without_suffix_allow_listed_and_failed_job_reported t_name_without_suffix_is_allow_listed_by_normal_form_and_its_failed_job_reported
run_case job_timeout_reported t_job_timeout_is_reported_with_the_job
run_case invalid_names_refused t_invalid_names_are_refused_and_nothing_restarts
run_case not_allow_listed_refused_by_dispatcher t_not_allow_listed_is_refused_by_the_dispatcher
run_case not_allow_listed_refused_by_action t_not_allow_listed_is_refused_by_the_action_itself
run_case own_units_refused t_own_units_are_refused_even_when_allow_listed
run_case unknown_unit_refused_not_loaded t_unknown_unit_is_refused_not_loaded
run_case service_runs_as_root_without_capabilities t_service_runs_as_declared
finish

#!/usr/bin/env bash
# Least authority for restart_service, against a real systemd with units the
# test makes: a target and an inactive service are never started, a failed
# service is restarted, journald, the bus and user@UID.service are refused,
# the breaker holds the 4th restart of one unit but not another unit's, and
# a dry run changes nothing and is audited with HEALING_DRY_RUN=1.
source "$(dirname "$0")/lib.sh"
boot_installed

RUNNING=lh-pol-running.service
STOPPED=lh-pol-stopped.service
FAILED_UNIT=lh-pol-failed.service
OTHER=lh-pol-other.service
TARGET=lh-pol.target
sb mkdir -p /run/systemd/system
for u in "$STOPPED" "$OTHER"; do
    printf '[Service]\nExecStart=/bin/sleep infinity\n' | sb tee "/run/systemd/system/$u" >/dev/null
done
# The running unit refers to the stopped one, so systemd keeps it loaded
# (an unreferenced inactive unit is unloaded, and refused as not loaded).
printf '[Unit]\nBefore=%s\n[Service]\nExecStart=/bin/sleep infinity\n' "$STOPPED" \
    | sb tee "/run/systemd/system/$RUNNING" >/dev/null
# fails once, then succeeds: a restart repairs it
printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c "test -e /run/lh-pol-ok || { touch /run/lh-pol-ok; exit 1; }"\n' \
    | sb tee "/run/systemd/system/$FAILED_UNIT" >/dev/null
printf '[Unit]\nDescription=never started\n' | sb tee "/run/systemd/system/$TARGET" >/dev/null
sb systemctl daemon-reload
sb systemctl start "$RUNNING" "$OTHER"
sb systemctl start "$FAILED_UNIT" 2>/dev/null || true
# loaded but inactive: a unit that was started and stopped again
sb systemctl start "$STOPPED"; sb systemctl stop "$STOPPED"

t_unloaded_service_is_never_started() {
    local r
    r=$(request --v2 --id pol-unloaded restart_service service=lh-pol-never-loaded.service)
    assert_contains "$(jfield error <<<"$r")" "(rule unit-loaded)"
    assert_eq "$(state lh-pol-never-loaded.service)" inactive
}
set_config '[actions.restart_service]
rate_limit = { max = 100, window_secs = 300 }
breaker = { max = 3, window_secs = 900 }
[caller_rate_limit]
max = 100
window_secs = 300'
sb systemctl stop luminous-healing-restart_service.service 2>/dev/null || true

cleanup() {
    sb systemctl stop "$RUNNING" "$STOPPED" "$FAILED_UNIT" "$OTHER" 2>/dev/null || true
    sb rm -f /run/systemd/system/lh-pol-* || true
}
TEARDOWN_HOOK=cleanup

invocation() { sb systemctl show -P InvocationID "$1"; }
state() { sb systemctl is-active "$1" || true; }

t_target_is_never_started() {
    local r
    r=$(request --v2 --id pol-target restart_service service="$TARGET")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "(rule services-only)"
    assert_eq "$(state "$TARGET")" inactive
    assert_one_decision pol-target denied "rule services-only"
}

t_inactive_service_is_never_started() {
    local r
    assert_eq "$(state "$STOPPED")" inactive "before:"
    assert_eq "$(sb systemctl show -P LoadState "$STOPPED")" loaded "before:"
    r=$(request --v2 --id pol-stopped restart_service service="$STOPPED")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "it is inactive, and restart_service never starts"
    assert_contains "$(jfield error <<<"$r")" "(rule never-start)"
    assert_eq "$(state "$STOPPED")" inactive "after:"
    # refused by the action, on the facts it read: nothing ran, so a denial
    assert_one_decision pol-stopped denied "rule never-start"
}

t_failed_service_is_restarted() {
    local r
    assert_eq "$(state "$FAILED_UNIT")" failed "before:"
    r=$(request --v2 --id pol-failed restart_service service="$FAILED_UNIT")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "result=done"
    assert_eq "$(state "$FAILED_UNIT")" active "after:"
}

t_journald_bus_and_user_manager_are_refused() {
    local u r before
    for u in systemd-journald.service dbus.service user@0.service; do
        before=$(invocation "$u")
        r=$(request --v2 restart_service service="$u")
        assert_eq "$(jfield success <<<"$r")" false "$u: $r"
        assert_contains "$(jfield error <<<"$r")" "(rule protected-units)" "$u:"
        assert_eq "$(invocation "$u")" "$before" "$u InvocationID:"
    done
}

t_breaker_holds_the_fourth_restart_of_one_unit() {
    local i r
    for i in 1 2 3; do
        r=$(request --v2 --id "pol-br-$i" restart_service service="$RUNNING")
        assert_eq "$(jfield success <<<"$r")" true "restart $i: $r"
    done
    local before; before=$(invocation "$RUNNING")
    r=$(request --v2 --id pol-br-4 restart_service service="$RUNNING")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "(rule breaker)"
    assert_eq "$(invocation "$RUNNING")" "$before" "InvocationID after the 4th:"
    assert_one_decision pol-br-4 denied "rule breaker"
    # another unit is unaffected
    r=$(request --v2 --id pol-br-other restart_service service="$OTHER")
    assert_eq "$(jfield success <<<"$r")" true "$r"
}

t_dry_run_changes_nothing_and_is_audited() {
    local before r
    before=$(invocation "$OTHER")
    r=$(request --v2 --dry-run --id pol-dry restart_service service="$OTHER")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "would restart $OTHER, active since "
    assert_eq "$(invocation "$OTHER")" "$before" "InvocationID after the dry run:"
    assert_one_decision pol-dry success
    journal_json HEALING_REQUEST_ID=pol-dry | grep -q '"HEALING_DRY_RUN":"1"' \
        || fail "the decision record has no HEALING_DRY_RUN=1"
    # a dry run of a refused request says why it would be refused
    r=$(request --v2 --dry-run --id pol-dry-no restart_service service="$STOPPED")
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "(rule never-start)"
}

run_case target_is_never_started t_target_is_never_started
run_case inactive_service_is_never_started t_inactive_service_is_never_started
run_case unloaded_service_is_never_started t_unloaded_service_is_never_started
run_case failed_service_is_restarted t_failed_service_is_restarted
run_case journald_bus_and_user_manager_refused t_journald_bus_and_user_manager_are_refused
run_case breaker_holds_4th_restart_of_one_unit t_breaker_holds_the_fourth_restart_of_one_unit
run_case dry_run_changes_nothing_and_is_audited t_dry_run_changes_nothing_and_is_audited
finish

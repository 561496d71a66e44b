#!/usr/bin/env bash
# restart_network through the dispatcher: systemd-networkd in the container
# (NetworkManager is not installed there) gets a new InvocationID and the
# job result is reported; with no network manager running, nothing is
# started and the request fails saying so.
source "$(dirname "$0")/lib.sh"
require dbus-daemon dbus-daemon
[ -f /lib/systemd/system/dbus.service ] || die "no dbus.service (the system bus): apt-get install -y dbus"
boot
install_project

ND=systemd-networkd.service
invocation() { sb systemctl show -P InvocationID "$ND"; }

# Leave networkd as found: the boot target decides whether it runs.
WAS_ACTIVE=$(sb systemctl is-active "$ND" || true)
WAS_SOCKET=$(sb systemctl is-active systemd-networkd.socket || true)
restore_networkd() {
    if [ "$WAS_ACTIVE" != active ]; then sb systemctl stop "$ND" 2>/dev/null || true; fi
    if [ "$WAS_SOCKET" != active ]; then sb systemctl stop systemd-networkd.socket 2>/dev/null || true; fi
}
TEARDOWN_HOOK=restore_networkd

t_networkd_gets_a_new_invocation_id() {
    sb systemctl start "$ND"
    local before after r
    before=$(invocation)
    [ -n "$before" ] || fail "networkd has no InvocationID"
    r=$(request --id rn-1 restart_network)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    after=$(invocation)
    [ "$after" != "$before" ] || fail "InvocationID unchanged: $before"
    assert_contains "$(jfield output <<<"$r")" "restart of $ND finished"
    assert_contains "$(jfield output <<<"$r")" "result=done"
    assert_contains "$(jfield output <<<"$r")" "invocation_id=$after"
    # NetworkManager is absent here: it must not be mentioned as restarted.
    assert_not_contains "$(jfield output <<<"$r")" "NetworkManager"
    assert_eq "$(sb systemctl is-active "$ND")" active
    assert_one_decision rn-1 success
}

t_nothing_running_nothing_started() {
    sb systemctl stop "$ND" systemd-networkd.socket
    local r
    r=$(request --id rn-none restart_network)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "no network manager is running"
    # Not installed in the container: systemd has it as "not-found" (or not
    # loaded at all).
    assert_contains "$(jfield error <<<"$r")" "NetworkManager.service is not "
    assert_contains "$(jfield error <<<"$r")" "systemd-networkd.service is inactive"
    assert_eq "$(sb systemctl is-active "$ND" || true)" inactive "networkd after the refusal:"
    assert_one_decision rn-none failure "no network manager is running"
}

t_parameters_are_refused() {
    local r
    r=$(request restart_network interface=eth0)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "Invalid parameters"
}

t_service_runs_as_declared() {
    request restart_network >/dev/null
    assert_root_without_capabilities luminous-healing-restart_network.service
}

run_case networkd_gets_a_new_invocation_id t_networkd_gets_a_new_invocation_id
run_case nothing_running_nothing_started t_nothing_running_nothing_started
run_case parameters_are_refused t_parameters_are_refused
run_case service_runs_as_root_without_capabilities t_service_runs_as_declared
finish

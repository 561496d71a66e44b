#!/usr/bin/env bash
# The Varlink interface io.luminous.Healing, served by the same dispatcher on
# luminous-healing-varlink.socket, against a real systemd: introspection
# lists the interface, RestartService restarts a real running unit
# (InvocationID changes) and is audited with HEALING_PROTOCOL=varlink, a
# protected and an inactive unit come back as Varlink errors with the JSON
# protocol's reason, a bad type is org.varlink.service.InvalidParameter, a
# caller outside the socket's group cannot connect (EACCES), a member can,
# healctl --varlink works, and the JSON socket is served by the same process.
#
# The client: on systemd 257 the real varlinkctl; on 252, which has none, the
# `varlink` package from PyPI (tests/varlink_call.py), installed by
# .ci/install-deps into $LH_PYTHON_VARLINK and bound read-only.
LH_PYTHON_VARLINK=${LH_PYTHON_VARLINK:-/var/cache/luminous-healing/python-varlink}
PYV_IN=/opt/python-varlink
if [ -d "$LH_PYTHON_VARLINK/varlink" ]; then
    SDSANDBOX_BIND_RO="$LH_PYTHON_VARLINK:$PYV_IN ${SDSANDBOX_BIND_RO:-}"
fi
source "$(dirname "$0")/lib.sh"
if [ "$LH_SYSTEMD_VERSION" -lt 257 ] && [ ! -d "$LH_PYTHON_VARLINK/varlink" ]; then
    die "no Python varlink package in $LH_PYTHON_VARLINK: run .ci/install-deps (python3 -m pip install --no-deps --target $LH_PYTHON_VARLINK varlink==31.0.0)"
fi
boot
install_project

SOCK=/run/luminous-healing/io.luminous.Healing
IFACE=io.luminous.Healing
RUNNING=lh-vl-running.service
STOPPED=lh-vl-stopped.service
SLOW=lh-vl-slow.service
sb mkdir -p /run/systemd/system
# RUNNING orders itself after STOPPED: the reference keeps STOPPED loaded
# while inactive (systemd unloads an inactive unit nothing references).
printf '[Unit]\nAfter=%s\n[Service]\nExecStart=/bin/sleep infinity\n' "$STOPPED" \
    | sb tee "/run/systemd/system/$RUNNING" >/dev/null
printf '[Service]\nExecStart=/bin/sleep infinity\n' | sb tee "/run/systemd/system/$STOPPED" >/dev/null
# A restart of this one takes 2 s (its ExecStop=).
printf '[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep 2\n' | sb tee "/run/systemd/system/$SLOW" >/dev/null
sb systemctl daemon-reload
sb systemctl start "$RUNNING" "$SLOW"
add_caller lh-vl-member -G luminous-healing
add_caller lh-vl-outsider

cleanup() {
    sb systemctl stop "$RUNNING" "$STOPPED" "$SLOW" 2>/dev/null || true
    sb rm -f /run/systemd/system/lh-vl-* || true
}
TEARDOWN_HOOK=cleanup

# vl [as USER] METHOD [JSON]: one call; stdout and stderr together, the
# client's exit status. varlinkctl on 257, tests/varlink_call.py on 252.
vl() {
    local who=()
    if [ "$1" = as ]; then who=(as_user "$2"); shift 2; else who=(sb); fi
    local method=$IFACE.$1 params=${2:-"{}"}
    if [ "$LH_SYSTEMD_VERSION" -ge 257 ]; then
        "${who[@]}" varlinkctl call "$SOCK" "$method" "$params" 2>&1
    else
        "${who[@]}" env PYTHONPATH=$PYV_IN python3 /src/tests/varlink_call.py call "$SOCK" "$method" "$params" 2>&1
    fi
}
# vl_fails METHOD JSON: a call that must come back as a Varlink error.
vl_fails() {
    local r rc=0
    r=$(vl "$@") || rc=$?
    [ "$rc" != 0 ] || fail "call succeeded: $r"
    printf '%s' "$r"
}

introspect() {
    if [ "$LH_SYSTEMD_VERSION" -ge 257 ]; then
        sb varlinkctl introspect "$SOCK" "$IFACE"
    else
        sb env PYTHONPATH=$PYV_IN python3 /src/tests/varlink_call.py introspect "$SOCK" "$IFACE"
    fi
}
# jget FIELD: a field of the first JSON object in the text on stdin.
jget() { python3 -c 'import json,sys,re
t=sys.stdin.read(); i=t.index("{"); v,_=json.JSONDecoder().raw_decode(t[i:]); print(v.get(sys.argv[1], ""))' "$1"; }
invocation() { sb systemctl show -P InvocationID "$1"; }

t_socket_is_the_groups_and_listed() {
    assert_eq "$(sb stat -c '%a %U %G' "$SOCK")" "660 root luminous-healing"
    assert_contains "$(sb systemctl list-sockets --no-pager)" "$SOCK"
}

t_introspection_lists_the_interface() {
    local d; d=$(introspect)
    assert_contains "$d" "interface io.luminous.Healing"
    assert_contains "$d" "method RestartService("
    assert_contains "$d" "error Refused("
    if [ "$LH_SYSTEMD_VERSION" -ge 257 ]; then
        assert_contains "$(sb varlinkctl info "$SOCK")" "io.luminous.Healing"
    else
        assert_contains "$(sb env PYTHONPATH=$PYV_IN python3 /src/tests/varlink_call.py info "$SOCK")" "io.luminous.Healing"
    fi
}

t_restart_service_restarts_a_real_unit_and_is_audited() {
    local before r id
    before=$(invocation "$RUNNING")
    r=$(vl RestartService "{\"unit\":\"$RUNNING\"}") || fail "call failed: $r"
    id=$(jget id <<<"$r")
    [ -n "$id" ] || fail "no id in $r"
    assert_contains "$(jget output <<<"$r")" "$RUNNING"
    assert_eq "$(sb systemctl is-active "$RUNNING")" active
    [ "$(invocation "$RUNNING")" != "$before" ] || fail "InvocationID unchanged: $before"
    assert_one_decision "$id" success
    journal_json "HEALING_REQUEST_ID=$id" | grep -q '"HEALING_PROTOCOL":"varlink"' \
        || fail "the decision record of $id has no HEALING_PROTOCOL=varlink"
    journal_json "HEALING_REQUEST_ID=$id" | grep -q "\"HEALING_PARAMETERS\":\"{\\\\\"service\\\\\":\\\\\"$RUNNING\\\\\"}\"" \
        || fail "the record's parameters are not the JSON protocol's {\"service\":...}"
}

t_protected_unit_is_a_varlink_error_with_the_json_reason() {
    local before r
    before=$(invocation systemd-journald.service)
    r=$(vl_fails RestartService '{"unit":"systemd-journald.service"}')
    assert_contains "$r" "io.luminous.Healing.Refused"
    assert_contains "$r" "Refused: "
    assert_contains "$r" "(rule protected-units)"
    assert_eq "$(invocation systemd-journald.service)" "$before" "journald InvocationID:"
    assert_one_decision "$(jget id <<<"${r#*failed}")" denied "rule protected-units"
}

t_inactive_unit_is_refused_by_the_action() {
    local r
    sb systemctl start "$STOPPED"; sb systemctl stop "$STOPPED"
    r=$(vl_fails RestartService "{\"unit\":\"$STOPPED\"}")
    assert_contains "$r" "io.luminous.Healing.Refused"
    # (rule never-start) while loaded, (rule unit-loaded) once unloaded:
    # either way an inactive unit is never started
    assert_contains "$r" "never start"
    assert_eq "$(sb systemctl is-active "$STOPPED" || true)" inactive
}

t_dry_run_changes_nothing() {
    local before r id
    before=$(invocation "$RUNNING")
    r=$(vl RestartService "{\"unit\":\"$RUNNING\",\"dryRun\":true}") || fail "call failed: $r"
    assert_contains "$(jget output <<<"$r")" "would restart $RUNNING"
    assert_eq "$(invocation "$RUNNING")" "$before" "InvocationID after the dry run:"
    id=$(jget id <<<"$r")
    assert_one_decision "$id" success
    journal_json "HEALING_REQUEST_ID=$id" | grep -q '"HEALING_DRY_RUN":"1"' || fail "no HEALING_DRY_RUN=1"
}

t_parameters_are_typed() {
    local r
    r=$(vl_fails AdjustSwappiness '{"value":"ten"}')
    assert_contains "$r" "org.varlink.service.InvalidParameter"
    assert_contains "$r" "value"
    r=$(vl_fails AdjustSwappiness '{"value":101}')
    assert_contains "$r" "io.luminous.Healing.InvalidParameter"
    assert_contains "$r" "Invalid parameters: swappiness 101 is outside 0-100"
}

t_outsider_cannot_connect() {
    local r
    r=$(vl_fails as lh-vl-outsider Status)
    assert_contains "$r" "ermission denied"
}

t_member_gets_status_and_healctl_varlink_works() {
    local r
    r=$(vl as lh-vl-member Status) || fail "member: $r"
    assert_contains "$(jget output <<<"$r")" '"version"'
    r=$(sb "$PREFIX_IN/bin/healctl" --varlink status) || fail "healctl --varlink status: $r"
    assert_contains "$r" '"actions"'
    r=$(as_user lh-vl-member "$PREFIX_IN/bin/healctl" --varlink status) || fail "as member: $r"
    assert_contains "$r" '"version"'
    local rc=0
    r=$(sb "$PREFIX_IN/bin/healctl" --varlink restart-service systemd-journald.service 2>&1) || rc=$?
    assert_eq "$rc" 3 "healctl exit status of a refusal: $r"
    assert_contains "$r" "(rule protected-units)"
}

t_one_dispatcher_serves_both_sockets() {
    local pid r
    # started by a Varlink connection, it was handed the JSON socket too
    sb systemctl stop luminous-healing.service
    vl Status >/dev/null || fail "varlink status"
    pid=$(sb systemctl show -P MainPID luminous-healing.service)
    [ "$pid" -gt 0 ] || fail "no dispatcher after a Varlink call"
    r=$(request status)
    assert_eq "$(jfield success <<<"$r")" true "JSON status: $r"
    assert_eq "$(sb systemctl show -P MainPID luminous-healing.service)" "$pid" "MainPID:"
}

# Raw Varlink on the socket (python3's socket module, no package): two calls
# written at once on one connection are answered in order on it, a third
# after a pause too; then a Status on a second connection while a 2 s
# restart runs on the first is answered before the restart is.
t_one_connection_carries_several_calls_and_a_slow_one_blocks_no_other() {
    local out
    out=$(sb python3 - "$SOCK" "$SLOW" <<'PY'
import json, socket, sys, time
sock, slow = sys.argv[1], sys.argv[2]
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(sock); return s
def send(s, method, params=None):
    s.sendall(json.dumps({"method": "io.luminous.Healing." + method, "parameters": params or {}}).encode() + b"\0")
def replies(s, n, buf=b""):
    while buf.count(b"\0") < n:
        b = s.recv(65536)
        if not b: raise SystemExit("closed after %r" % buf)
        buf += b
    return [json.loads(m) for m in buf.split(b"\0")[:n]]
a = conn()
a.sendall(b"".join(json.dumps({"method": "io.luminous.Healing.Status"}).encode() + b"\0" for _ in range(2)))
two = replies(a, 2)
time.sleep(1.5)
send(a, "Status")
third = replies(a, 1)
print("pipelined", len(two), all("output" in r["parameters"] for r in two + third))
t0 = time.monotonic()
send(a, "RestartService", {"unit": slow})
time.sleep(0.3)
b = conn(); send(b, "Status")
st = replies(b, 1)[0]
status_at = time.monotonic() - t0
restart = replies(a, 1)[0]
restart_at = time.monotonic() - t0
print("status", "output" in st["parameters"], "restart", "output" in restart["parameters"], restart)
print("status_before_restart", status_at < restart_at and status_at < 1.5 and restart_at >= 2, "%.2f %.2f" % (status_at, restart_at))
PY
) || fail "client: $out"
    assert_contains "$out" "pipelined 2 True"
    assert_contains "$out" "status True restart True"
    assert_contains "$out" "status_before_restart True"
}

run_case socket_is_the_groups_and_listed t_socket_is_the_groups_and_listed
run_case introspection_lists_the_interface t_introspection_lists_the_interface
run_case restart_service_restarts_a_real_unit_and_is_audited t_restart_service_restarts_a_real_unit_and_is_audited
run_case protected_unit_is_a_varlink_error_with_the_json_reason t_protected_unit_is_a_varlink_error_with_the_json_reason
run_case inactive_unit_is_refused_by_the_action t_inactive_unit_is_refused_by_the_action
run_case dry_run_changes_nothing t_dry_run_changes_nothing
run_case parameters_are_typed t_parameters_are_typed
run_case outsider_cannot_connect t_outsider_cannot_connect
run_case member_gets_status_and_healctl_varlink_works t_member_gets_status_and_healctl_varlink_works
run_case one_connection_carries_several_calls_and_a_slow_one_blocks_no_other t_one_connection_carries_several_calls_and_a_slow_one_blocks_no_other
run_case one_dispatcher_serves_both_sockets t_one_dispatcher_serves_both_sockets
finish

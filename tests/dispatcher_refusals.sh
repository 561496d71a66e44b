#!/usr/bin/env bash
# Every refusal gets a clear error, changes nothing, and leaves exactly one
# audit decision with all its fields.
source "$(dirname "$0")/lib.sh"
boot
install_project
add_caller member
sb usermod -aG luminous-healing member
add_caller outsider
add_caller healer
sb groupadd healers
sb usermod -aG luminous-healing,healers healer

now() { date +%Y-%m-%dT%H:%M:%S.%6N; }

t_missing_signature() {
    local r; r=$(request --id ref-nosig --signature null status)
    assert_eq "$(jfield error <<<"$r")" "Invalid signature"
    assert_one_decision ref-nosig denied "no signature"
}

t_wrong_key() {
    local r; r=$(request --id ref-wrongkey --secret not-the-secret --secret-file /dev/null status 2>/dev/null || true)
    [ -n "$r" ] || r=$(sb python3 /src/tests/client.py --secret not-the-secret --id ref-wrongkey status)
    assert_eq "$(jfield error <<<"$r")" "Invalid signature"
    assert_one_decision ref-wrongkey denied "signature does not match"
}

t_bad_parameters() {
    local r
    r=$(request --id ref-pid1 kill_process pid=1 signal=TERM)
    assert_contains "$(jfield error <<<"$r")" "Invalid parameters: pid 1 refused"
    assert_one_decision ref-pid1 denied "pid 1 refused"
    r=$(request --id ref-signal kill_process pid=4242 signal=STOP)
    assert_contains "$(jfield error <<<"$r")" "signal \"STOP\" is not one of TERM, KILL, HUP, INT"
    r=$(request --id ref-swap adjust_swappiness value=101)
    assert_contains "$(jfield error <<<"$r")" "outside 0-100"
    r=$(request --id ref-unit restart_service service=../../etc/passwd)
    assert_contains "$(jfield error <<<"$r")" "Invalid parameters: unit name contains '/'"
    r=$(request --id ref-extra adjust_swappiness value=10 colour=blue)
    assert_contains "$(jfield error <<<"$r")" "unknown parameter \"colour\""
    assert_one_decision ref-extra denied "unknown parameter"
    # the dispatcher's own pid is refused before anything is forwarded
    local dpid; dpid=$(sb systemctl show -p MainPID --value luminous-healing.service)
    r=$(request --id ref-dpid kill_process pid="$dpid" signal=KILL)
    assert_contains "$(jfield error <<<"$r")" "is the dispatcher"
    assert_eq "$(sb systemctl show -p MainPID --value luminous-healing.service)" "$dpid" "dispatcher still alive:"
}

t_replayed_id() {
    local r
    r=$(request --id ref-replay status)
    assert_eq "$(jfield success <<<"$r")" true
    r=$(request --id ref-replay status)
    assert_eq "$(jfield error <<<"$r")" "Replayed request id"
    # two requests with one id: one success and one denial
    local n; n=$(decisions ref-replay | grep -c '"denied"' || true)
    assert_eq "$n" 1 "denials for the replay:"
    n=$(decisions ref-replay | grep -c '"success"' || true)
    assert_eq "$n" 1 "successes for the first use:"
}

t_stale_timestamp() {
    local r; r=$(request --id ref-stale --timestamp "$(date -d '-1 hour' +%Y-%m-%dT%H:%M:%S)" status)
    assert_eq "$(jfield error <<<"$r")" "Stale timestamp"
    assert_one_decision ref-stale denied "older than the 300 s window"
}

t_future_timestamp() {
    local r; r=$(request --id ref-future --timestamp "$(date -d '+1 hour' +%Y-%m-%dT%H:%M:%S.%6N)" status)
    assert_eq "$(jfield error <<<"$r")" "Timestamp in the future"
    assert_one_decision ref-future denied "ahead of the 300 s window"
}

t_garbage_timestamp() {
    local r; r=$(request --id ref-ts-garbage --timestamp yesterday status)
    assert_eq "$(jfield error <<<"$r")" "Invalid timestamp"
    assert_one_decision ref-ts-garbage denied "not ISO 8601"
}

t_outsider_cannot_even_connect() {
    # The socket is 0660 root:luminous-healing: the kernel refuses the connect.
    local out
    out=$(request_as outsider status 2>&1 || true)
    assert_contains "$out" "PermissionError"
}

t_member_of_socket_group_but_not_allowed_by_config() {
    set_config 'allowed_groups = ["healers"]'
    local r
    r=$(request_as member --id ref-member status)
    assert_eq "$(jfield error <<<"$r")" "Caller not allowed"
    assert_one_decision ref-member denied "is not root, an allowed user or in an allowed group"
    local uid; uid=$(sb id -u member)
    decisions ref-member | grep -q "\"HEALING_CALLER_UID\": \"$uid\"" || fail "caller uid $uid not audited"
    r=$(request_as healer --id ref-healer status)
    assert_eq "$(jfield success <<<"$r")" true "member of an allowed supplementary group:"
    assert_one_decision ref-healer success
}

t_allowed_user_by_name() {
    set_config 'allowed_groups = ["healers"]
allowed_users = ["member"]'
    local r; r=$(request_as member --id ref-byname status)
    assert_eq "$(jfield success <<<"$r")" true
}

t_disabled_action_and_unit_allow_list() {
    set_config '[actions.adjust_swappiness]
enabled = false
[actions.restart_service]
allowed_units = ["cron.service"]'
    local r
    r=$(request --id ref-disabled adjust_swappiness value=10)
    assert_eq "$(jfield error <<<"$r")" "Action adjust_swappiness not allowed"
    assert_one_decision ref-disabled denied "disabled in the configuration"
    r=$(request --id ref-notlisted restart_service service=sshd.service)
    assert_contains "$(jfield error <<<"$r")" "Unit sshd.service not allowed: not in actions.restart_service.allowed_units (rule allowed_units)"
    assert_one_decision ref-notlisted denied "not in actions.restart_service.allowed_units"
}

t_v1_disabled_by_config() {
    set_config 'protocols = ["v2"]'
    local r; r=$(request --id ref-v1off status)
    assert_eq "$(jfield error <<<"$r")" "Protocol v1 not accepted"
    assert_one_decision ref-v1off denied "disabled"
    r=$(request --v2 --id ref-v2on status)
    assert_eq "$(jfield success <<<"$r")" true
}

t_bad_config_is_a_clear_startup_error() {
    set_config 'alowed_groups = ["x"]'
    request --id ref-badconf status >/dev/null 2>&1 || true
    local i found=0
    for i in $(seq 50); do
        sb journalctl --no-pager -o cat SYSLOG_IDENTIFIER=luminous-healing | grep -q 'unknown field .alowed_groups.' && { found=1; break; }
        sleep 0.1
    done
    [ $found = 1 ] || { sb journalctl --no-pager -n 20 -u luminous-healing.service; fail "no journal message naming the bad key"; }
    assert_eq "$(sb systemctl is-active luminous-healing.service || true)" failed "service state:"
    set_config 'status_rate_limit = { max = 1000, window_secs = 300 }
[caller_rate_limit]
max = 1000
window_secs = 300'
    recover_dispatcher
    local r; r=$(request --id ref-goodconf status)
    assert_eq "$(jfield success <<<"$r")" true
}

run_case missing_signature t_missing_signature
run_case wrong_key t_wrong_key
run_case bad_parameters t_bad_parameters
run_case replayed_id t_replayed_id
run_case stale_timestamp t_stale_timestamp
run_case future_timestamp t_future_timestamp
run_case garbage_timestamp t_garbage_timestamp
run_case outsider_cannot_even_connect t_outsider_cannot_even_connect
run_case socket_group_member_not_allowed_by_config t_member_of_socket_group_but_not_allowed_by_config
run_case allowed_user_by_name t_allowed_user_by_name
run_case disabled_action_and_unit_allow_list t_disabled_action_and_unit_allow_list
run_case v1_disabled_by_config t_v1_disabled_by_config
run_case bad_config_is_a_clear_startup_error t_bad_config_is_a_clear_startup_error
finish

#!/usr/bin/env bash
# Per-caller rules and pause, against a real systemd with users the test
# makes: a caller with a rule gets exactly that (both ways), a group rule
# applies to its members, callers without a rule keep every enabled action;
# pause refuses every action with its reason until root resumes, a member
# cannot resume, and the pause survives idle exits and restarts.
source "$(dirname "$0")/lib.sh"
boot
install_project

APP=app-web.service
NGINX=lh-nginx.service
sb mkdir -p /run/systemd/system
for u in "$APP" "$NGINX"; do
    printf '[Service]\nExecStart=/bin/sleep infinity\n' | sb tee "/run/systemd/system/$u" >/dev/null
done
sb systemctl daemon-reload
sb systemctl start "$APP" "$NGINX"
sb groupadd ops
add_caller monitor -G luminous-healing
add_caller opsuser -G luminous-healing,ops
add_caller plain -G luminous-healing
set_config 'idle_timeout_secs = 1
[caller_rate_limit]
max = 100
window_secs = 300
[actions.restart_service]
rate_limit = { max = 100, window_secs = 300 }
[actions.clear_system_cache]
rate_limit = { max = 100, window_secs = 300 }
[callers.monitor]
actions = ["restart_service"]
units = ["app-*"]
[callers."@ops"]
actions = ["clear_system_cache"]'
sb systemctl stop luminous-healing-restart_service.service luminous-healing-clear_system_cache.service 2>/dev/null || true

cleanup() {
    sb systemctl stop "$APP" "$NGINX" 2>/dev/null || true
    sb rm -f "/run/systemd/system/$APP" "/run/systemd/system/$NGINX" || true
}
TEARDOWN_HOOK=cleanup

invocation() { sb systemctl show -P InvocationID "$1"; }

# assert_restarted_by USER ID UNIT: USER's request ID restarts UNIT.
assert_restarted_by() {
    local before r
    before=$(invocation "$3")
    r=$(request_as "$1" --v2 --id "$2" restart_service service="$3")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    [ "$(invocation "$3")" != "$before" ] || fail "$3 was not restarted"
}

t_user_rule_allows_what_it_lists() {
    assert_restarted_by monitor cr-allow "$APP"
}

t_user_rule_refuses_what_it_does_not_list() {
    local before r
    before=$(invocation "$NGINX")
    r=$(request_as monitor --v2 --id cr-unit restart_service service="$NGINX")
    assert_contains "$(jfield error <<<"$r")" "(rule callers.units)"
    assert_eq "$(invocation "$NGINX")" "$before"
    assert_one_decision cr-unit denied "rule callers.units"
    r=$(request_as monitor --v2 --id cr-action clear_system_cache)
    assert_contains "$(jfield error <<<"$r")" "Action clear_system_cache not allowed for uid $(sb id -u monitor)"
    assert_contains "$(jfield error <<<"$r")" "(rule callers.actions)"
}

t_group_rule_applies_to_its_members() {
    local r
    r=$(request_as opsuser --v2 --id cr-ops clear_system_cache)
    assert_eq "$(jfield request_id <<<"$r")" cr-ops
    assert_not_contains "$(jfield error <<<"$r")" "rule callers"
    r=$(request_as opsuser --v2 --id cr-ops-no restart_service service="$APP")
    assert_contains "$(jfield error <<<"$r")" 'callers."@ops" does not list it'
}

t_callers_without_a_rule_keep_every_enabled_action() {
    assert_restarted_by plain cr-plain "$NGINX"
}

t_pause_refuses_every_action_until_root_resumes() {
    local r
    r=$(request_as plain --v2 --id pa-member pause reason=mine)
    assert_contains "$(jfield error <<<"$r")" "(rule root-only)"
    r=$(request --v2 --id pa-root pause reason="host upgrade")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_one_decision pa-root success "paused by uid 0: host upgrade"
    r=$(request_as plain --v2 --id pa-refused restart_service service="$NGINX")
    assert_contains "$(jfield error <<<"$r")" "paused"
    assert_contains "$(jfield error <<<"$r")" "host upgrade"
    # status still answers, and says who paused and since when
    r=$(request_as plain --v2 status)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" '"paused":{"by_uid":0'
    assert_contains "$(jfield output <<<"$r")" '"reason":"host upgrade"'
    # a member cannot resume
    r=$(request_as plain --v2 --id pa-resume-member resume)
    assert_contains "$(jfield error <<<"$r")" "(rule root-only)"
}

t_pause_survives_idle_exit_and_restart() {
    wait_for 8 sh -c "[ \"\$('$SB' run systemctl is-active luminous-healing.service)\" = inactive ]" \
        || fail "dispatcher did not idle out"
    local r
    r=$(request_as plain --v2 restart_service service="$NGINX")
    assert_contains "$(jfield error <<<"$r")" "host upgrade" "after the idle exit:"
    sb systemctl restart luminous-healing.service
    r=$(request_as plain --v2 restart_service service="$NGINX")
    assert_contains "$(jfield error <<<"$r")" "host upgrade" "after a restart:"
}

t_root_resumes() {
    local r
    r=$(request --v2 --id pa-resume resume)
    assert_eq "$(jfield output <<<"$r")" resumed "$r"
    assert_one_decision pa-resume success "resumed by uid 0"
    r=$(request_as plain --v2 --id pa-after restart_service service="$NGINX")
    assert_eq "$(jfield success <<<"$r")" true "$r"
}

t_healctl_pause_and_resume() {
    local out
    out=$(sb /opt/luminous-healing/bin/healctl --secret-file "$SECRET_IN" pause --reason "from healctl")
    assert_contains "$out" "paused"
    out=$(sb /opt/luminous-healing/bin/healctl --secret-file "$SECRET_IN" status)
    assert_contains "$out" '"reason": "from healctl"'
    sb /opt/luminous-healing/bin/healctl --secret-file "$SECRET_IN" resume >/dev/null
    out=$(sb /opt/luminous-healing/bin/healctl --secret-file "$SECRET_IN" --dry-run restart-service "$NGINX")
    assert_contains "$out" "would restart $NGINX"
}

run_case user_rule_allows_what_it_lists t_user_rule_allows_what_it_lists
run_case user_rule_refuses_what_it_does_not_list t_user_rule_refuses_what_it_does_not_list
run_case group_rule_applies_to_its_members t_group_rule_applies_to_its_members
run_case callers_without_a_rule_keep_every_action t_callers_without_a_rule_keep_every_enabled_action
run_case pause_refuses_every_action_until_root_resumes t_pause_refuses_every_action_until_root_resumes
run_case pause_survives_idle_exit_and_restart t_pause_survives_idle_exit_and_restart
run_case root_resumes t_root_resumes
run_case healctl_pause_and_resume t_healctl_pause_and_resume
finish

#!/usr/bin/env bash
# Socket activation and lifecycle of the dispatcher on a real systemd: started
# by the first connection, listed by list-sockets, exits when idle, started
# again by the next request, and its security state survives all of that.
source "$(dirname "$0")/lib.sh"
boot
install_project

svc_state() { sb systemctl is-active luminous-healing.service || true; }
invocation() { sb systemctl show -p InvocationID --value luminous-healing.service; }

t_inactive_until_first_connection() {
    assert_eq "$(svc_state)" inactive "before any request:"
    assert_eq "$(sb systemctl is-active luminous-healing.socket)" active "socket:"
    local r; r=$(request --id act-first status)
    assert_eq "$(jfield success <<<"$r")" true
    assert_eq "$(svc_state)" active "after the first request:"
    # Type=notify: active means the dispatcher itself said READY=1
    assert_eq "$(sb systemctl show -p StatusText --value luminous-healing.service)" "1 requests handled, 0 denied"
}

t_list_sockets_shows_it() {
    sb systemctl list-sockets --no-legend --no-pager | grep -q '^/run/luminous-healing.sock .*luminous-healing.socket .*luminous-healing.service' \
        || { sb systemctl list-sockets --no-pager; fail "socket not listed"; }
    assert_eq "$(sb stat -c '%a %U %G' /run/luminous-healing.sock)" "660 root luminous-healing"
}

t_runs_unprivileged() {
    local pid; pid=$(sb systemctl show -p MainPID --value luminous-healing.service)
    local st; st=$(sb cat /proc/"$pid"/status)
    assert_contains "$st" "$(printf 'CapEff:\t0000000000000000')"
    assert_contains "$st" "$(printf 'CapBnd:\t0000000000000000')"
    assert_contains "$st" "$(printf 'NoNewPrivs:\t1')"
    assert_contains "$st" "$(printf 'Seccomp:\t2')"
    assert_eq "$(sb ps -o user= -p "$pid")" luminous-healing
}

t_idles_out_and_is_started_again() {
    set_config 'idle_timeout_secs = 2'
    request --id act-idle-1 status >/dev/null
    local first; first=$(invocation)
    assert_eq "$(svc_state)" active
    wait_for 8 sh -c "[ \"\$('$SB' run systemctl is-active luminous-healing.service)\" = inactive ]" \
        || fail "dispatcher did not exit after 2 s idle"
    # it exited cleanly, not by failure
    assert_eq "$(sb systemctl show -p Result --value luminous-healing.service)" success
    local r; r=$(request --id act-idle-2 status)
    assert_eq "$(jfield success <<<"$r")" true
    [ "$(invocation)" != "$first" ] || fail "not a new invocation"
}

remaining_status() {   # what is left of the status budget, from the dispatcher itself
    request --id "$1" status | jfield output | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["remaining"])'
}

t_state_survives_idle_exit() {
    set_config 'idle_timeout_secs = 1
status_rate_limit = { max = 50, window_secs = 300 }'
    local r left
    r=$(request --id act-keep status)
    assert_eq "$(jfield success <<<"$r")" true
    left=$(remaining_status act-keep-2)
    wait_for 8 sh -c "[ \"\$('$SB' run systemctl is-active luminous-healing.service)\" = inactive ]" \
        || fail "dispatcher did not idle out"
    sb test -s /run/luminous-healing/dispatcher/state.log
    # a new process: the id is still known and the budget still used
    r=$(request --id act-keep status)
    assert_eq "$(jfield error <<<"$r")" "Replayed request id"
    assert_eq "$(remaining_status act-keep-3)" $((left - 1)) "budget after the idle exit:"
}

t_state_survives_restart_and_stop() {
    local before after
    before=$(remaining_status act-restart-1)
    sb systemctl restart luminous-healing.service
    sb systemctl stop luminous-healing.service
    after=$(remaining_status act-restart-2)
    assert_eq "$after" $((before - 1)) "budget across restart/stop:"
    local r; r=$(request --id act-restart-1 status)
    assert_eq "$(jfield error <<<"$r")" "Replayed request id"
}

t_missing_secret_fails_with_clear_message() {
    set_config 'status_rate_limit = { max = 1000, window_secs = 300 }
caller_rate_limit = { max = 1000, window_secs = 300 }'
    sb mv /etc/luminous-healing/secret /etc/luminous-healing/secret.away
    sb systemctl stop luminous-healing.service
    sb systemctl reset-failed luminous-healing.service 2>/dev/null || true
    # (the client signs with any key: the dispatcher must not even start)
    sb python3 /src/tests/client.py --secret whatever --timeout 5 --id act-nosecret status >/dev/null 2>&1 || true
    local ok=0
    wait_for_dispatcher_log "secret file is missing" && ok=1
    local log; log=$(sb journalctl --no-pager -u luminous-healing.service -o cat)
    sb mv /etc/luminous-healing/secret.away /etc/luminous-healing/secret
    [ $ok = 1 ] || fail "no journal message about the secret: $log"
    # systemd itself refuses to start without the credential file it was told
    # to load, or the dispatcher does: either way the unit fails, loudly
    assert_contains "$log" "the secret file is missing: create /etc/luminous-healing/secret"
    wait_for 5 sh -c "[ \"\$('$SB' run systemctl is-active luminous-healing.service)\" = failed ]" \
        || fail "unit not failed: $(svc_state)"
    recover_dispatcher
}

t_empty_secret_is_refused() {
    sb cp /etc/luminous-healing/secret /etc/luminous-healing/secret.keep
    sb sh -c ': > /etc/luminous-healing/secret'
    sb systemctl stop luminous-healing.service
    sb python3 /src/tests/client.py --secret whatever --timeout 5 --id act-empty status >/dev/null 2>&1 || true
    local ok=0
    wait_for_dispatcher_log 'the credential "secret" is empty' && ok=1
    sb mv /etc/luminous-healing/secret.keep /etc/luminous-healing/secret
    [ $ok = 1 ] || fail "no 'secret is empty' message"
    recover_dispatcher
}

t_healctl_status() {
    # earlier cases used up root's default caller budget (30 per 300 s)
    set_config 'status_rate_limit = { max = 1000, window_secs = 300 }
caller_rate_limit = { max = 1000, window_secs = 300 }'
    local out
    out=$(sb /opt/luminous-healing/bin/healctl --secret-file /etc/luminous-healing/secret status)
    assert_contains "$out" '"protocols"'
    out=$(sb /opt/luminous-healing/bin/healctl --protocol v1 --json --secret-file /etc/luminous-healing/secret status)
    assert_eq "$(jfield success <<<"$out")" true
    local rc=0
    sb /opt/luminous-healing/bin/healctl --secret-file /dev/null status 2>/dev/null || rc=$?
    assert_eq "$rc" 2 "healctl with an empty secret file:"
    rc=0
    printf 'wrong' | sb tee /tmp/wrong >/dev/null
    sb /opt/luminous-healing/bin/healctl --secret-file /tmp/wrong status 2>/dev/null || rc=$?
    assert_eq "$rc" 3 "healctl with a wrong secret (refused):"
}

run_case inactive_until_first_connection t_inactive_until_first_connection
run_case list_sockets_shows_it t_list_sockets_shows_it
run_case runs_unprivileged t_runs_unprivileged
run_case idles_out_and_is_started_again t_idles_out_and_is_started_again
run_case state_survives_idle_exit t_state_survives_idle_exit
run_case state_survives_restart_and_stop t_state_survives_restart_and_stop
run_case missing_secret_fails_with_clear_message t_missing_secret_fails_with_clear_message
run_case empty_secret_is_refused t_empty_secret_is_refused
run_case healctl_status t_healctl_status
finish

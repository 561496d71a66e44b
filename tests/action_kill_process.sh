#!/usr/bin/env bash
# kill_process through the dispatcher, for real: processes this test starts
# (as another user, so CAP_KILL is what makes it work) die with exactly the
# signal asked for; refused pids and signals leave their targets alive.
source "$(dirname "$0")/lib.sh"
boot
install_project
set_config '[actions.kill_process]
rate_limit = { max = 1000, window_secs = 300 }
[caller_rate_limit]
max = 1000
window_secs = 300'
sb useradd -m -U victim >/dev/null

# spawn_victim NAME: starts `sleep 300` as user victim under a python parent
# that records how it ended; prints its pid. SIGINT is reset to default
# because background jobs of a non-interactive shell start with it ignored.
spawn_victim() {
    local name=$1
    sb rm -f "/tmp/victim-$name.pid" "/tmp/victim-$name.end"
    sb sh -c "setpriv --reuid=victim --regid=victim --clear-groups python3 -c '
import signal, subprocess, sys
p = subprocess.Popen([\"sleep\", \"300\"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
open(sys.argv[1], \"w\").write(str(p.pid))
rc = p.wait()
open(sys.argv[2], \"w\").write(str(-rc if rc < 0 else \"exit%d\" % rc))
' /tmp/victim-$name.pid /tmp/victim-$name.end >/dev/null 2>&1 &"
    wait_for 5 sb test -s "/tmp/victim-$name.pid" || { echo "victim $name did not start" >&2; return 1; }
    sb cat "/tmp/victim-$name.pid"
}
VICTIMS=()
cleanup_victims() { for p in "${VICTIMS[@]}"; do sb kill -KILL "$p" 2>/dev/null || true; done; }
TEARDOWN_HOOK=cleanup_victims

alive() { sb kill -0 "$1" 2>/dev/null; }

signal_case() {
    local sig=$1 num=$2 pid r
    pid=$(spawn_victim "$sig"); VICTIMS+=("$pid")
    [ "$(sb stat -c %U /proc/"$pid")" = victim ] || fail "victim runs as $(sb stat -c %U /proc/$pid)"
    r=$(request kill_process pid="$pid" signal="$sig")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(jfield output <<<"$r")" "sent SIG$sig ($num) to pid $pid"
    wait_for 5 sb test -s "/tmp/victim-$sig.end" || fail "victim $pid did not end"
    assert_eq "$(sb cat /tmp/victim-$sig.end)" "$num" "victim ended by signal"
}
t_term() { signal_case TERM 15; }
t_kill() { signal_case KILL 9; }
t_hup() { signal_case HUP 1; }
t_int() { signal_case INT 2; }

t_refused_pids_stay_alive() {
    local pid r dpid own
    pid=$(spawn_victim refused); VICTIMS+=("$pid")
    # pid 1, 0, negative, absent, not a number: refused by the schema
    for p in 1 0 -1 "-$pid" 99999999999; do
        r=$(request kill_process pid="$p" signal=KILL)
        assert_eq "$(jfield success <<<"$r")" false "pid $p: $r"
        assert_contains "$(jfield error <<<"$r")" "refused" "pid $p"
    done
    r=$(request kill_process signal=KILL)
    assert_contains "$(jfield error <<<"$r")" '"pid" is missing'
    # signals outside the allow-list are refused, never replaced by another
    for s in STOP SIGTERM USR1 term ""; do
        r=$(request kill_process pid="$pid" signal="$s")
        assert_eq "$(jfield success <<<"$r")" false "signal $s: $r"
        assert_contains "$(jfield error <<<"$r")" "not one of TERM, KILL, HUP, INT" "signal $s"
    done
    r=$(request kill_process pid="$pid" signal=9)   # a number, not a name
    assert_contains "$(jfield error <<<"$r")" '"signal" must be a string'
    # the dispatcher's pid: refused by the dispatcher, and by the action
    # itself for whoever is connected as the dispatcher (SO_PEERCRED pid)
    dpid=$(sb systemctl show -P MainPID luminous-healing.service)
    [ "$dpid" -gt 1 ] || fail "dispatcher not running"
    r=$(request kill_process pid="$dpid" signal=KILL)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "dispatcher"
    r=$(as_user luminous-healing python3 /src/tests/action_client.py kill_process pid=@self signal=KILL)
    assert_contains "$(jfield error <<<"$r")" "it is the luminous-healing dispatcher"
    # and so is its own
    own=$(sb systemctl show -P MainPID luminous-healing-kill_process.service)
    [ "$own" -gt 1 ] || fail "kill_process service not running"
    r=$(request kill_process pid="$own" signal=KILL)
    assert_contains "$(jfield error <<<"$r")" "it is the kill_process service itself"
    sleep 0.3
    alive 1; alive "$pid"; alive "$dpid"; alive "$own"
    assert_eq "$(sb systemctl show -P MainPID luminous-healing.service)" "$dpid" "dispatcher restarted?"
    assert_eq "$(sb systemctl show -P MainPID luminous-healing-kill_process.service)" "$own" "action restarted?"
    sb kill -KILL "$pid"
}

t_action_revalidates_pid_1_behind_the_dispatcher() {
    # defence in depth: sent straight to the action socket as the dispatcher's
    # user, pid 1 is refused by the action's own validation
    local r
    r=$(as_user luminous-healing python3 /src/tests/action_client.py kill_process pid=1 signal=KILL)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "pid 1 refused"
    alive 1
}

t_gone_process_is_a_clear_error() {
    local r
    r=$(request kill_process pid=4000000 signal=TERM)
    assert_eq "$(jfield success <<<"$r")" false
    assert_contains "$(jfield error <<<"$r")" "no process with pid 4000000"
}

run_case signal_TERM_kills_a_test_process_with_SIGTERM t_term
run_case signal_KILL_kills_a_test_process_with_SIGKILL t_kill
run_case signal_HUP_kills_a_test_process_with_SIGHUP t_hup
run_case signal_INT_kills_a_test_process_with_SIGINT t_int
run_case refused_pids_and_signals_leave_targets_alive t_refused_pids_stay_alive
run_case action_revalidates_pid_1_behind_the_dispatcher t_action_revalidates_pid_1_behind_the_dispatcher
run_case gone_process_is_a_clear_error t_gone_process_is_a_clear_error
finish

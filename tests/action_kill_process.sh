#!/usr/bin/env bash
# kill_process through the dispatcher, for real, with the owner policy: a
# caller's own processes die with exactly the signal asked for (they run as
# the caller, not as the action's dynamic user, so CAP_KILL is what makes it
# work); another user's process and a root process outside
# actions.kill_process.allowed_units survive with a refusal naming the rule;
# a process of an allowed unit dies; a protected unit's process survives even
# when every unit is allowed; a dry run leaves its target alive. Refused pids
# and signals leave their targets alive.
#
# Callers, explicitly: `owner` (in the luminous-healing group) asks with
# request_as; `request` asks as root, which owns only root's processes.
source "$(dirname "$0")/lib.sh"
boot
install_project

LIMITS='[caller_rate_limit]
max = 1000
window_secs = 300'
# kill_config ALLOWED: the config, with the action restarted as well: it
# reads the config at start, like the dispatcher.
kill_config() {
    set_config "[actions.kill_process]
rate_limit = { max = 1000, window_secs = 300 }
allowed_units = [$1]
$LIMITS"
    sb systemctl stop luminous-healing-kill_process.service
}
kill_config '"lh-victim-*"'
add_caller owner -G luminous-healing
sb useradd -m -U other >/dev/null
OWNER_UID=$(sb id -u owner)
OTHER_UID=$(sb id -u other)

# spawn_victim NAME USER: starts `sleep 300` as USER under a python parent
# that records how it ended; prints its pid. SIGINT is reset to default
# because background jobs of a non-interactive shell start with it ignored.
spawn_victim() {
    local name=$1 user=$2
    sb rm -f "/tmp/victim-$name.pid" "/tmp/victim-$name.end"
    sb sh -c "setpriv --reuid=$user --regid=$user --clear-groups python3 -c '
import signal, subprocess, sys
p = subprocess.Popen([\"sleep\", \"300\"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
open(sys.argv[1], \"w\").write(str(p.pid))
rc = p.wait()
open(sys.argv[2], \"w\").write(str(-rc if rc < 0 else \"exit%d\" % rc))
' /tmp/victim-$name.pid /tmp/victim-$name.end >/dev/null 2>&1 &"
    wait_for 5 sb test -s "/tmp/victim-$name.pid" || { echo "victim $name did not start" >&2; return 1; }
    sb cat "/tmp/victim-$name.pid"
}
# unit_victim UNIT: `sleep 300` as root in a transient service UNIT; prints its pid.
unit_victim() {
    sb systemd-run --quiet --unit="$1" sleep 300
    sb systemctl show -P MainPID "$1.service"
}
VICTIMS=()
UNITS=(lh-victim-1 lh-victim-dry lh-other-1)
cleanup_victims() {
    for p in "${VICTIMS[@]}"; do sb kill -KILL "$p" 2>/dev/null || true; done
    for u in "${UNITS[@]}"; do sb systemctl stop "$u.service" 2>/dev/null || true; done
}
TEARDOWN_HOOK=cleanup_victims

alive() { sb kill -0 "$1" 2>/dev/null; }
# ask WHO ACTION [k=v ...]: the request as root, or as the user WHO.
ask() { local who=$1; shift; if [ "$who" = root ]; then request "$@"; else request_as "$who" "$@"; fi; }
# refused_for WHO PID SIGNAL RULE TEXT: asked by WHO, refused by RULE, the error saying TEXT.
refused_for() {
    local who=$1 pid=$2 sig=$3 rule=$4 text=$5 r
    r=$(ask "$who" kill_process pid="$pid" signal="$sig")
    assert_eq "$(jfield success <<<"$r")" false "$who: $r"
    assert_contains "$(jfield error <<<"$r")" "rule $rule" "$who"
    assert_contains "$(jfield error <<<"$r")" "$text" "$who"
}
uid_of() { sb stat -c %u "/proc/$1"; }

# (a) the caller's own process dies, with exactly the signal asked for
signal_case() {
    local sig=$1 num=$2 pid r
    pid=$(spawn_victim "$sig" owner); VICTIMS+=("$pid")
    assert_eq "$(uid_of "$pid")" "$OWNER_UID" "victim's uid"
    r=$(request_as owner kill_process pid="$pid" signal="$sig")
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(jfield output <<<"$r")" "sent SIG$sig ($num) to pid $pid"
    wait_for 5 sb test -s "/tmp/victim-$sig.end" || fail "victim $pid did not end"
    assert_eq "$(sb cat /tmp/victim-$sig.end)" "$num" "victim ended by signal"
}
t_term() { signal_case TERM 15; }
t_kill() { signal_case KILL 9; }
t_hup() { signal_case HUP 1; }
t_int() { signal_case INT 2; }

# (b) another user's process survives: not the caller's, in no allowed unit.
# Root is no exception: it owns root's processes only. The refusal names the
# other uid, so the action did read the facts of a process it does not own
# (the unit does not hide other users' /proc entries).
t_other_users_process_survives() {
    local pid
    pid=$(spawn_victim other other); VICTIMS+=("$pid")
    assert_eq "$(uid_of "$pid")" "$OTHER_UID" "victim's uid"
    refused_for owner "$pid" KILL process-owner "belongs to uid $OTHER_UID"
    refused_for root "$pid" KILL process-owner "belongs to uid $OTHER_UID, not to the caller (uid 0)"
    sleep 0.3
    alive "$pid" || fail "another user's process was killed"
    sb kill -KILL "$pid"
}

# (c) a root process in a unit outside allowed_units survives
t_root_process_outside_allowed_units_survives() {
    local pid
    pid=$(unit_victim lh-other-1)
    [ "$pid" -gt 1 ] || fail "lh-other-1 has no process"
    refused_for owner "$pid" KILL process-owner \
        "belongs to uid 0, not to the caller (uid $OWNER_UID), and its unit lh-other-1.service is not in actions.kill_process.allowed_units"
    sleep 0.3
    alive "$pid" || fail "lh-other-1's process was killed"
    assert_eq "$(sb systemctl show -P MainPID lh-other-1.service)" "$pid"
    sb systemctl stop lh-other-1.service
}

# (d) a root process of a unit matched by allowed_units = ["lh-victim-*"] dies
t_root_process_in_allowed_unit_dies() {
    local pid r
    pid=$(unit_victim lh-victim-1)
    [ "$pid" -gt 1 ] || fail "lh-victim-1 has no process"
    assert_eq "$(uid_of "$pid")" 0 "victim's uid"
    r=$(request_as owner kill_process pid="$pid" signal=TERM)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(jfield output <<<"$r")" "sent SIGTERM (15) to pid $pid"
    wait_for 5 sh -c "! $SB run kill -0 $pid" || fail "lh-victim-1's process $pid survived"
}

# (e) a process of a protected unit (journald) survives even when every
# unit is allowed, and even for root, which owns it
t_protected_unit_refused_even_if_all_allowed() {
    local pid
    kill_config '"*"'
    pid=$(sb systemctl show -P MainPID systemd-journald.service)
    [ "$pid" -gt 1 ] || fail "journald not running"
    refused_for owner "$pid" TERM protected-units "it runs in systemd-journald.service"
    refused_for root "$pid" TERM protected-units "it runs in systemd-journald.service"
    sleep 0.3
    assert_eq "$(sb systemctl show -P MainPID systemd-journald.service)" "$pid" "journald restarted?"
    kill_config '"lh-victim-*"'
}

# (f) a dry run, straight to the action socket as the dispatcher's user (the
# dispatcher has no dry-run field yet): the facts are read and the policy
# weighed, nothing is sent
t_dry_run_leaves_target_alive() {
    local pid upid r
    pid=$(spawn_victim dry owner); VICTIMS+=("$pid")
    r=$(as_user luminous-healing python3 /src/tests/action_client.py --dry-run \
        --caller-uid "$OWNER_UID" --caller-gid "$OWNER_UID" kill_process pid="$pid" signal=TERM)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_eq "$(jfield output <<<"$r")" "would send SIGTERM to pid $pid (sleep, uid $OWNER_UID)"
    # in an allowed unit the plan names the unit
    upid=$(unit_victim lh-victim-dry)
    r=$(as_user luminous-healing python3 /src/tests/action_client.py --dry-run \
        --caller-uid "$OWNER_UID" --caller-gid "$OWNER_UID" kill_process pid="$upid" signal=KILL)
    assert_eq "$(jfield output <<<"$r")" "would send SIGKILL to pid $upid (sleep, uid 0, unit lh-victim-dry.service)" "$r"
    # and a refusal is a refusal, dry or not
    r=$(as_user luminous-healing python3 /src/tests/action_client.py --dry-run \
        --caller-uid "$OTHER_UID" --caller-gid "$OTHER_UID" kill_process pid="$pid" signal=TERM)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "rule process-owner"
    sleep 0.3
    alive "$pid" || fail "dry run killed $pid"
    alive "$upid" || fail "dry run killed $upid"
    sb test ! -s /tmp/victim-dry.end || fail "victim ended: $(sb cat /tmp/victim-dry.end)"
    sb kill -KILL "$pid"; sb systemctl stop lh-victim-dry.service
}

# The experiment behind the unit's ProtectProc=default (docs/privileges.md):
# the action's user, with ProtectProc=invisible, cannot see another user's
# process at all; with default (and ProcSubset=pid) it reads the three files.
t_protect_proc_invisible_hides_other_users() {
    local pid out
    pid=$(spawn_victim hidden other); VICTIMS+=("$pid")
    out=$(sb systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes -p CapabilityBoundingSet=CAP_KILL \
        -p AmbientCapabilities=CAP_KILL -p ProtectProc=invisible -p ProcSubset=pid \
        cat "/proc/$pid/status" 2>&1 || true)
    assert_contains "$out" "No such file or directory"
    out=$(sb systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes -p CapabilityBoundingSet=CAP_KILL \
        -p AmbientCapabilities=CAP_KILL -p ProtectProc=default -p ProcSubset=pid \
        cat "/proc/$pid/status" "/proc/$pid/stat" "/proc/$pid/cgroup" /proc/1/status 2>&1)
    assert_contains "$out" "Uid:	$OTHER_UID"
    assert_contains "$out" "0::/"
    sb kill -KILL "$pid"
}

t_refused_pids_stay_alive() {
    local pid r dpid own
    pid=$(spawn_victim refused owner); VICTIMS+=("$pid")
    # pid 1, 0, negative, absent, not a number: refused by the schema
    for p in 1 0 -1 "-$pid" 99999999999; do
        r=$(request_as owner kill_process pid="$p" signal=KILL)
        assert_eq "$(jfield success <<<"$r")" false "pid $p: $r"
        assert_contains "$(jfield error <<<"$r")" "refused" "pid $p"
    done
    r=$(request_as owner kill_process signal=KILL)
    assert_contains "$(jfield error <<<"$r")" '"pid" is missing'
    # signals outside the allow-list are refused, never replaced by another
    for s in STOP SIGTERM USR1 term ""; do
        r=$(request_as owner kill_process pid="$pid" signal="$s")
        assert_eq "$(jfield success <<<"$r")" false "signal $s: $r"
        assert_contains "$(jfield error <<<"$r")" "not one of TERM, KILL, HUP, INT" "signal $s"
    done
    r=$(request_as owner kill_process pid="$pid" signal=9)   # a number, not a name
    assert_contains "$(jfield error <<<"$r")" '"signal" must be a string'
    # the dispatcher's pid: refused by the action itself for whoever is
    # connected as the dispatcher (SO_PEERCRED pid), before the policy
    # (which refuses its unit too)
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

run_case signal_TERM_kills_the_callers_process_with_SIGTERM t_term
run_case signal_KILL_kills_the_callers_process_with_SIGKILL t_kill
run_case signal_HUP_kills_the_callers_process_with_SIGHUP t_hup
run_case signal_INT_kills_the_callers_process_with_SIGINT t_int
run_case other_users_process_survives_rule_process_owner t_other_users_process_survives
run_case root_process_outside_allowed_units_survives t_root_process_outside_allowed_units_survives
run_case root_process_in_allowed_unit_dies t_root_process_in_allowed_unit_dies
run_case protected_unit_refused_even_if_every_unit_allowed t_protected_unit_refused_even_if_all_allowed
run_case dry_run_reads_and_weighs_and_leaves_target_alive t_dry_run_leaves_target_alive
run_case protect_proc_invisible_would_hide_other_users t_protect_proc_invisible_hides_other_users
run_case refused_pids_and_signals_leave_targets_alive t_refused_pids_stay_alive
run_case action_revalidates_pid_1_behind_the_dispatcher t_action_revalidates_pid_1_behind_the_dispatcher
run_case gone_process_is_a_clear_error t_gone_process_is_a_clear_error
finish

#!/usr/bin/env bash
# An action whose service cannot start: clean_nix_store with /nix absent
# (removed from the container, as on a host without Nix), so the unit's
# ReadWritePaths=/nix fails its namespace set-up (226/NAMESPACE) before the
# binary runs. The caller gets a clear error naming the unit to look at,
# not "Connection reset by peer"; the action's socket comes back by itself
# (the luminous-healing-relisten@ timer); once /nix exists the next request works,
# with no reset-failed or start by anyone.
source "$(dirname "$0")/lib.sh"
require nix-store nix-bin
boot
install_project

A=clean_nix_store
SVC=luminous-healing-$A.service
SOCK=luminous-healing-$A.socket
DROPIN=/run/systemd/system/$SVC.d
WANT="Action $A unavailable: its service failed to start or crashed; see journalctl -u $SVC"

set_config "[actions.$A]
nix_collect_garbage = \"/usr/bin/nix-collect-garbage\"
rate_limit = { max = 1000, window_secs = 300 }"
# The cause, stated even if the shipped unit ever tolerates a missing /nix.
sb mkdir -p "$DROPIN"
printf '[Service]\nReadWritePaths=/nix\n' | sb tee "$DROPIN/must-have-nix.conf" >/dev/null
sb systemctl daemon-reload
# nix-setup-systemd's tmpfiles.d creates /nix/var/nix/... at boot: take it
# away again, as on a host without Nix.
sb systemctl stop nix-daemon.socket nix-daemon.service 2>/dev/null || true
sb rm -rf /nix
sb test ! -e /nix || die "could not remove the container's /nix"

listening() { [ "$(sb systemctl is-active "$SOCK")" = active ] && sb test -S /run/luminous-healing/actions/$A.sock; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }

t_failed_start_gives_a_clear_error() {
    local r t0 t1
    t0=$(ms); r=$(request --id nostart-1 $A); t1=$(ms)
    echo "reply after $((t1 - t0)) ms: $r"
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_eq "$(jfield error <<<"$r")" "$WANT"
    assert_not_contains "$r" "reset by peer"
    assert_one_decision nostart-1 failure "unavailable"
    # what the message points at shows the cause
    assert_contains "$(sb journalctl --no-pager -u "$SVC")" "NAMESPACE"
}

t_socket_listens_again_by_itself() {
    local t0; t0=$(ms)
    wait_for 20 listening || fail "$SOCK did not come back: $(sb systemctl show -P ActiveState,Result "$SOCK" | xargs)"
    echo "listening again $(( $(ms) - t0 )) ms after the failed request"
    # it went down (service-start-limit-hit, or trigger-limit-hit), and came
    # back without an admin
    assert_contains "$(sb journalctl --no-pager -u "$SOCK")" "limit-hit'."
    assert_contains "$(sb journalctl --no-pager -u "$SOCK")" "Triggering OnFailure= dependencies"
    assert_contains "$(sb journalctl --no-pager -u "luminous-healing-relisten@luminous-healing-$A.timer")" "Started"
}

t_repeated_failures_every_reply_clear_socket_comes_back() {
    local i r e
    for i in 1 2 3 4; do
        r=$(request --id "nostart-r$i" $A)
        e=$(jfield error <<<"$r")
        # while the socket is being brought back, its file is gone: also clear
        case "$e" in
            "$WANT"|"Action $A unavailable: /run/luminous-healing/actions/$A.sock does not exist"*) ;;
            *) fail "request $i: $r" ;;
        esac
        assert_not_contains "$r" "reset by peer"
    done
    wait_for 20 listening || fail "$SOCK did not come back: $(sb systemctl show -P ActiveState,Result "$SOCK" | xargs)"
}

t_cause_fixed_next_request_works() {
    local r
    wait_for 20 listening || fail "$SOCK not listening"
    # /nix appears (nix-store creates the store on first use)
    sb sh -c 'head -c 65536 /dev/urandom > /tmp/lh-g && nix-store --add /tmp/lh-g >/dev/null && rm -f /tmp/lh-g'
    r=$(request --id nostart-fixed $A)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "store paths deleted"
    assert_one_decision nostart-fixed success
}

run_case failed_start_gives_a_clear_error_not_a_reset t_failed_start_gives_a_clear_error
run_case socket_listens_again_without_an_admin t_socket_listens_again_by_itself
run_case repeated_failed_starts_all_clear_socket_comes_back t_repeated_failures_every_reply_clear_socket_comes_back
run_case once_nix_exists_the_next_request_works t_cause_fixed_next_request_works
finish

#!/usr/bin/env bash
# clean_nix_store through the dispatcher: a real `nix-collect-garbage -d`
# (Debian's nix-bin) on a real Nix store inside the container. Garbage is
# collected and its size reported; a path held by a GC root stays; -d
# removes a profile's old generation so what only it held is collected too,
# while the current generation's path stays. With real system generations
# (nix-env on the system profile, and the default /run/current-system link
# made by the test): a system rolled back to an older generation than the
# newest is collected without -d, so the newer generation survives; and no
# collection runs while the lock rollback_generation shares is held.
source "$(dirname "$0")/lib.sh"
require nix-collect-garbage nix-bin
require nix-store nix-bin
require nix-env nix-bin
# The daemon case starts Debian's nix-daemon.socket, which nix-bin does not ship.
[ -f /lib/systemd/system/nix-daemon.socket ] || die "no nix-daemon.socket: apt-get install -y nix-setup-systemd"
boot
install_project

GC=/usr/bin/nix-collect-garbage
PROFILE=/nix/var/nix/profiles/lh-test-profile
ROOT_LINK=/nix/var/nix/gcroots/lh-test-root
PROFILES=/nix/var/nix/profiles
SYSTEM=$PROFILES/system

# The container's /nix starts empty (its root is a tmpfs): nix-store creates
# the store on first use. Files are random so nothing is deduplicated.
add_file() {   # add_file NAME KIB: prints the store path
    sb sh -c "head -c $(($2 * 1024)) /dev/urandom > /tmp/$1 && nix-store --add /tmp/$1 && rm -f /tmp/$1" 2>/dev/null | tail -n 1
}

cleanup_store() {
    sb systemctl stop lh-store-holder.service lh-gc-lock.service nix-daemon.socket nix-daemon.service 2>/dev/null || true
    sb sh -c "rm -rf '$ROOT_LINK' '$PROFILE' '$PROFILE'-*-link '$SYSTEM' '$SYSTEM'-*-link /run/current-system /etc/luminous-healing/config.toml /nix/var/nix/daemon-socket"
    sb env NIX_CONFIG='build-users-group =' nix-store --gc >/dev/null 2>&1 || true
}
TEARDOWN_HOOK=cleanup_store
# The cases before the daemon's own run without one. Debian 13's
# nix-setup-systemd (in the systemd 257 root) enables nix-daemon.socket at
# install, so it listens from boot there; the 252 container has none. Its
# socket file must go too: Nix connects to any it finds (and fails).
sb systemctl stop nix-daemon.socket nix-daemon.service 2>/dev/null || true
sb rm -rf /nix/var/nix/daemon-socket

set_config "[actions.clean_nix_store]
nix_collect_garbage = \"$GC\"" 2>/dev/null

t_garbage_is_collected_and_the_freed_size_reported() {
    local garbage kept r out freed
    garbage=$(add_file lh-garbage 3072)
    kept=$(add_file lh-rooted 16)
    sb ln -sfn "$kept" "$ROOT_LINK"
    sb test -e "$garbage"
    r=$(request --id gc-1 clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    out=$(jfield output <<<"$r")
    # The first line is ours, from nix's own closing line.
    assert_contains "$(head -n 1 <<<"$out")" "freed "
    assert_contains "$out" "deleting '$garbage'"
    assert_contains "$out" "store paths deleted,"
    # The landlock ruleset lists what nix reads: nothing it wanted was refused.
    assert_not_contains "$out" "ermission denied"
    freed=$(head -n 1 <<<"$out" | sed -n 's/^freed \([0-9.]*\) MiB (\([0-9]*\) store paths deleted; .*$/\1/p')
    [ -n "$freed" ] || fail "no size in [$(head -n 1 <<<"$out")]"
    # 3 MiB of garbage: nix reports at least that much freed.
    python3 -c "import sys; sys.exit(0 if float('$freed') >= 3.0 else 1)" || fail "freed $freed MiB, expected >= 3"
    if sb test -e "$garbage"; then fail "$garbage still exists"; fi
    sb test -e "$kept" || fail "GC-rooted $kept was collected"
    assert_one_decision gc-1 success
}

t_minus_d_deletes_old_generations() {
    local old new r
    old=$(add_file lh-gen-old 64)
    new=$(add_file lh-gen-new 64)
    sb env NIX_CONFIG='build-users-group =' nix-env -p "$PROFILE" --set "$old" 2>/dev/null
    sb env NIX_CONFIG='build-users-group =' nix-env -p "$PROFILE" --set "$new" 2>/dev/null
    [ "$(sb ls "$(dirname "$PROFILE")" | grep -c "^lh-test-profile-.*-link$")" = 2 ] || fail "two generations expected"
    r=$(request clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(jfield output <<<"$r")" "removing old generations of profile $PROFILE"
    assert_eq "$(sb ls "$(dirname "$PROFILE")" | grep -c "^lh-test-profile-.*-link$")" 1 "generations left:"
    if sb test -e "$old"; then fail "old generation's $old still exists"; fi
    sb test -e "$new" || fail "current generation's $new was collected"
}

t_nothing_to_collect_reports_zero() {
    local r
    r=$(request clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    assert_contains "$(head -n 1 <<<"$(jfield output <<<"$r")")" "freed 0.00 MiB (0 store paths deleted"
    # No nix-daemon in this part: the reply says what that costs.
    assert_contains "$(head -n 1 <<<"$(jfield output <<<"$r")")" "runtime roots of running processes were not visible"
}

t_with_a_nix_daemon_runtime_roots_are_kept() {
    # A running process holds a store path open that no GC root references.
    # The confined action cannot read that process's /proc/<pid>/fd; with a
    # nix-daemon listening it hands the collection to the daemon, which can,
    # so the path survives while real garbage goes.
    local held garbage r out
    held=$(add_file lh-held 16)
    garbage=$(add_file lh-garbage2 16)
    sb mkdir -p /nix/var/nix/daemon-socket
    sb systemctl start nix-daemon.socket
    sb systemd-run -q --unit=lh-store-holder sh -c "exec 3<$held; exec sleep 300"
    wait_for 5 sb sh -c "ls -l /proc/\$(systemctl show -P MainPID lh-store-holder.service)/fd | grep -q $held"
    r=$(request --id gc-daemon clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    out=$(jfield output <<<"$r")
    assert_contains "$(head -n 1 <<<"$out")" "collected by nix-daemon"
    assert_contains "$out" "deleting '$garbage'"
    if sb test -e "$garbage"; then fail "$garbage still exists"; fi
    sb test -e "$held" || fail "$held, open in a running process, was collected"
    assert_eq "$(sb systemctl is-active nix-daemon.service)" active "the daemon did the work:"
    sb systemctl stop lh-store-holder.service nix-daemon.socket nix-daemon.service
    sb rm -rf /nix/var/nix/daemon-socket
}

nix_env() { sb env NIX_CONFIG='build-users-group =' nix-env "$@" 2>/dev/null; }
system_links() { sb ls "$PROFILES" | grep -E '^system-[0-9]+-link$' | tr '\n' ' '; }

t_rolled_back_system_keeps_every_generation() {
    local gen1 gen2 garbage r out
    gen1=$(add_file lh-system-1 16)
    gen2=$(add_file lh-system-2 16)
    garbage=$(add_file lh-garbage3 16)
    nix_env -p "$SYSTEM" --set "$gen1"
    nix_env -p "$SYSTEM" --set "$gen2"
    # Rolled back: the profile and the running system are generation 1 of 2.
    nix_env -p "$SYSTEM" --rollback
    sb ln -sfn "$gen1" /run/current-system
    assert_eq "$(system_links)" "system-1-link system-2-link "
    r=$(request --id gc-keep clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    out=$(jfield output <<<"$r")
    assert_contains "$(head -n 1 <<<"$out")" "freed "
    assert_eq "$(sed -n 2p <<<"$out")" "without -d, every generation kept: the running system is generation 1, older than 2: deleting old generations would delete the newer ones"
    assert_not_contains "$out" "removing old generations"
    # -d would have kept only the profile's generation, 1, the running one.
    assert_eq "$(system_links)" "system-1-link system-2-link " "generations left:"
    sb test -e "$gen2" || fail "the newer generation's $gen2 was collected"
    # The collection itself ran.
    assert_contains "$out" "deleting '$garbage'"
    if sb test -e "$garbage"; then fail "$garbage still exists"; fi
    assert_one_decision gc-keep success
    sb rm -f /run/current-system
}

t_refused_while_the_lock_is_held() {
    local garbage r
    garbage=$(add_file lh-garbage4 16)
    # The lock rollback_generation takes: flock on the profile directory.
    sb systemd-run -q --unit=lh-gc-lock flock "$PROFILES" sleep 300
    wait_for 5 sb sh -c "! flock -n '$PROFILES' true" || fail "the test's lock was not taken"
    r=$(request --id gc-busy clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "another rollback or garbage collection is running (rule one-nix-operation)"
    sb test -e "$garbage" || fail "$garbage was collected while the lock was held"
    assert_one_decision gc-busy denied "one-nix-operation"
    sb systemctl stop lh-gc-lock.service
    r=$(request clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" true "$r"
    if sb test -e "$garbage"; then fail "$garbage still exists after the lock was released"; fi
}

t_missing_program_is_a_clear_failure() {
    set_config '[actions.clean_nix_store]
nix_collect_garbage = "/nonexistent/nix-collect-garbage"' 2>/dev/null
    sb systemctl stop luminous-healing-clean_nix_store.service 2>/dev/null
    local r
    r=$(request clean_nix_store)
    assert_eq "$(jfield success <<<"$r")" false "$r"
    assert_contains "$(jfield error <<<"$r")" "cannot run /nonexistent/nix-collect-garbage"
    set_config "[actions.clean_nix_store]
nix_collect_garbage = \"$GC\"" 2>/dev/null
    sb systemctl stop luminous-healing-clean_nix_store.service 2>/dev/null
}

t_service_runs_as_declared() {
    request clean_nix_store >/dev/null
    assert_root_without_capabilities luminous-healing-clean_nix_store.service
}

run_case garbage_collected_and_freed_size_reported t_garbage_is_collected_and_the_freed_size_reported
run_case minus_d_deletes_old_generations t_minus_d_deletes_old_generations
run_case nothing_to_collect_reports_zero t_nothing_to_collect_reports_zero
run_case rolled_back_system_keeps_every_generation t_rolled_back_system_keeps_every_generation
run_case refused_while_the_lock_is_held t_refused_while_the_lock_is_held
run_case missing_program_is_a_clear_failure t_missing_program_is_a_clear_failure
run_case with_a_nix_daemon_runtime_roots_are_kept t_with_a_nix_daemon_runtime_roots_are_kept
run_case service_runs_as_root_without_capabilities t_service_runs_as_declared
finish

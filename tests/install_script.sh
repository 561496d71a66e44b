#!/usr/bin/env bash
# scripts/install.sh on a real systemd: installs, is idempotent (the secret
# and the files stay as they are), and --uninstall removes what it installed.
source "$(dirname "$0")/lib.sh"
boot

inst() { sb env PREFIX=$PREFIX_IN BUILD_DIR=/src/target/release /src/scripts/install.sh "$@"; }

t_first_install() {
    inst >/dev/null 2>&1
    assert_eq "$(sb stat -c '%a %U' /etc/luminous-healing/secret)" "600 root"
    assert_eq "$(sb cat /etc/luminous-healing/secret | wc -c | tr -d ' ')" 64 "secret length:"
    sb test -x $PREFIX_IN/bin/luminous-healing
    sb test -x $PREFIX_IN/bin/healctl
    sb getent passwd luminous-healing >/dev/null
    sb getent group luminous-healing >/dev/null
    # placeholders substituted
    sb grep -q "^ExecStart=$PREFIX_IN/bin/luminous-healing" /etc/systemd/system/luminous-healing.service
    ! sb grep -rl '@BINDIR@\|@LIBEXECDIR@\|@PREFIX@' /etc/systemd/system/ >/dev/null || fail "unsubstituted placeholder"
    assert_eq "$(sb systemctl is-enabled luminous-healing.socket)" enabled
    assert_eq "$(sb systemctl is-active luminous-healing.socket)" active
    # the dispatcher's Varlink socket too
    assert_eq "$(sb systemctl is-enabled luminous-healing-varlink.socket)" enabled
    assert_eq "$(sb systemctl is-active luminous-healing-varlink.socket)" active
    # every action socket shipped is enabled and listening
    local s n=0
    for s in $(sb sh -c 'ls /etc/systemd/system/ | grep "^luminous-healing-.*\.socket$" | grep -v "^luminous-healing-varlink\.socket$"'); do
        assert_eq "$(sb systemctl is-active "$s")" active "$s:"
        n=$((n + 1))
    done
    assert_eq "$n" 8 "action sockets installed and listening:"
    sb test -f $PREFIX_IN/lib/systemd/catalog/luminous-healing.catalog
    local cat; cat=$(sb journalctl --no-pager --list-catalog)
    assert_contains "$cat" "f93433f8a0d54625bb05ee63e832c15c luminous-healing: luminous-healing denied" "catalog:"
}

t_second_install_changes_nothing() {
    local before after secret
    secret=$(sb sha256sum /etc/luminous-healing/secret)
    # same content and modes, whatever the mtimes
    before=$(sb sh -c "find $PREFIX_IN /etc/systemd/system /etc/sysusers.d $PREFIX_IN/lib/systemd/catalog -type f -printf '%m %p\\n' | sort; find $PREFIX_IN /etc/systemd/system -type f | sort | xargs sha256sum")
    inst >/dev/null 2>&1
    after=$(sb sh -c "find $PREFIX_IN /etc/systemd/system /etc/sysusers.d $PREFIX_IN/lib/systemd/catalog -type f -printf '%m %p\\n' | sort; find $PREFIX_IN /etc/systemd/system -type f | sort | xargs sha256sum")
    [ -n "$after" ] || fail "nothing installed?"
    assert_eq "$(sb sha256sum /etc/luminous-healing/secret)" "$secret" "secret kept:"
    assert_eq "$after" "$before" "installed files:"
    local r; r=$(request --id inst-after status)
    assert_eq "$(jfield success <<<"$r")" true
}

t_uninstall_removes_it() {
    inst --uninstall >/dev/null 2>&1
    ! sb test -e $PREFIX_IN/bin/luminous-healing || fail "binary left behind"
    ! sb test -e /etc/systemd/system/luminous-healing.socket || fail "unit left behind"
    ! sb test -e /run/luminous-healing.sock || fail "socket left behind"
    sb test -f /etc/luminous-healing/secret || fail "--uninstall without --purge keeps the secret"
    inst --uninstall --purge >/dev/null 2>&1
    ! sb test -e /etc/luminous-healing || fail "--purge keeps /etc/luminous-healing"
    # and it installs again from scratch
    inst >/dev/null 2>&1
    local r; r=$(request --id inst-again status)
    assert_eq "$(jfield success <<<"$r")" true
}

t_refuses_without_a_build() {
    local out rc=0
    out=$(sb env PREFIX=$PREFIX_IN BUILD_DIR=/nonexistent /src/scripts/install.sh 2>&1) || rc=$?
    assert_eq "$rc" 1
    assert_contains "$out" "cargo build --release"
}

run_case first_install t_first_install
run_case second_install_changes_nothing t_second_install_changes_nothing
run_case uninstall_removes_it t_uninstall_removes_it
run_case refuses_without_a_build t_refuses_without_a_build
finish

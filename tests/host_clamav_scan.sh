#!/usr/bin/env bash
# clamav-scan.service for real: Debian's clamscan, a signature database the
# test writes (one .hdb line for the EICAR test file, no download), a home
# directory only its owner can read. Checks detection in the log and the
# journal, the designed unit result for clamscan's exit statuses (1 found
# -> failed unit, 0 clean -> success, 2 error -> failed), the /run exclusion,
# that the weekly timer is scheduled, and that a scan leaves the IPC objects
# of the clamav user (clamd's) alone. Also runs Debian's clamd under the
# clamav-daemon hardening drop-in and scans through it.
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"
require clamscan clamav
require clamdscan clamdscan
[ -f /lib/systemd/system/clamav-daemon.service ] && [ -f /etc/clamav/clamd.conf ] \
    || die "no clamav-daemon unit or /etc/clamav/clamd.conf: apt-get install -y clamav-daemon"

U=clamav-scan.service
DB=/var/lib/lh-test/eicar.hdb
prop() { sb systemctl show -P "$1" "$U"; }

# The EICAR test file, assembled at run time so that no file in the
# repository itself is a "virus" to scanners that look at the source tree.
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$'"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"'!$H+H*'

boot
# Debian's package creates the clamav user in its postinst; the container's
# /etc starts empty.
sb useradd -r -U -M -d /var/lib/clamav -s /usr/sbin/nologin clamav
sb env PREFIX=/opt/luminous-healing UNITDIR=/etc/systemd/system \
    /src/scripts/install-host-units.sh /src >/dev/null 2>&1 || die "install-host-units.sh failed"

# A user whose home only they can read: clamav needs CAP_DAC_READ_SEARCH.
sb useradd -m -U alice
sb chmod 0700 /home/alice
printf '%s' "$EICAR" | sb setpriv --reuid=alice --regid=alice --clear-groups sh -c 'cat > /home/alice/eicar.com'
echo "just a note" | sb setpriv --reuid=alice --regid=alice --clear-groups sh -c 'cat > /home/alice/clean.txt'
# The same file under /run: excluded by the unit, must not be reported.
sb mkdir -p /run/lh-scan
printf '%s' "$EICAR" | sb sh -c 'cat > /run/lh-scan/eicar.com'

md5=$(printf '%s' "$EICAR" | md5sum | cut -d' ' -f1)
sb mkdir -p /var/lib/lh-test
echo "$md5:${#EICAR}:LH-Test-EICAR" | sb sh -c "cat > $DB"

# Point the unit at the test's database and paths, the way an administrator
# would (drop-in), leaving the shipped unit untouched.
set_scan() {   # set_scan DATABASE PATHS...
    local db=$1; shift
    sb mkdir -p /etc/systemd/system/$U.d
    printf '[Service]\nEnvironment=CLAMAV_DATABASE=%s "SCAN_PATHS=%s"\n' "$db" "$*" \
        | sb sh -c "cat > /etc/systemd/system/$U.d/test.conf"
    sb systemctl daemon-reload
}

t_detects() {
    set_scan "$DB" /home /run/lh-scan
    if sb systemctl start "$U" 2>/dev/null; then fail "start succeeded although an infected file exists"; fi
    # Designed: "found" fails the unit (no SuccessExitStatus=1) so it shows up.
    assert_eq "$(prop Result)" exit-code Result
    assert_eq "$(prop ExecMainStatus)" 1 "clamscan exit status"
    local log journal
    log=$(sb cat /var/log/clamav/scan.log)
    assert_contains "$log" "/home/alice/eicar.com: LH-Test-EICAR.UNOFFICIAL FOUND" scan.log
    assert_not_contains "$log" "clean.txt" scan.log
    assert_not_contains "$log" "/run/lh-scan" "scan.log (excluded dir)"
    journal=$(sb journalctl --no-pager -o cat -u "$U")
    assert_contains "$journal" "/home/alice/eicar.com: LH-Test-EICAR.UNOFFICIAL FOUND" journal
    assert_contains "$journal" "Infected files: 1" journal
}

t_runs_sandboxed() {
    # The log is written as clamav, not root: the scan never ran as root.
    assert_eq "$(sb stat -c '%U' /var/log/clamav/scan.log)" clamav "owner of scan.log"
    assert_eq "$(prop Nice)" 19 Nice
    assert_eq "$(prop IOSchedulingClass)" 3 "IOSchedulingClass (3 = idle)"
}

t_clean_succeeds() {
    sb rm /home/alice/eicar.com
    sb systemctl start "$U"
    assert_eq "$(prop Result)" success Result
    assert_eq "$(prop ExecMainStatus)" 0 "clamscan exit status"
    assert_contains "$(sb tail -n 20 /var/log/clamav/scan.log)" "Infected files: 0" scan.log
}

t_error_fails() {
    set_scan /var/lib/lh-test/no-such.hdb /home
    if sb systemctl start "$U" 2>/dev/null; then fail "start succeeded with a missing database"; fi
    assert_eq "$(prop Result)" exit-code Result
    assert_eq "$(prop ExecMainStatus)" 2 "clamscan exit status"
}

t_weekly_timer() {
    sb systemctl start clamav-scan.timer
    local timers
    timers=$(sb systemctl list-timers --all --no-pager --no-legend)
    assert_contains "$timers" "clamav-scan.timer" list-timers
    assert_contains "$timers" "clamav-scan.service" list-timers
    assert_contains "$(sb systemctl show -P TimersCalendar clamav-scan.timer)" "OnCalendar=Mon *-*-* 00:00:00" TimersCalendar
    assert_eq "$(sb systemctl show -P RandomizedDelayUSec clamav-scan.timer)" 2h RandomizedDelaySec
    assert_eq "$(sb systemctl show -P Persistent clamav-scan.timer)" yes Persistent
    sb systemctl stop clamav-scan.timer
}

# clamd runs as clamav too, so the scan must not have RemoveIPC=yes: stopping
# the unit would delete every SysV/POSIX IPC object of the clamav user. A
# segment clamav holds outside the unit survives a scan; with RemoveIPC=yes
# (a test drop-in) the same scan deletes it, which is why the unit says no.
# (ipcs -m -i ID exits 0 even for an id that does not exist: look in the list.)
has_shm() { sb ipcs -m | awk -v id="$1" '$2 == id { found = 1 } END { exit !found }'; }
t_keeps_clamav_ipc() {
    set_scan "$DB" /home
    local id
    id=$(sb setpriv --reuid=clamav --regid=clamav --clear-groups ipcmk -M 4096 | sed -n 's/^Shared memory id: //p')
    [ -n "$id" ] || fail "could not create a segment as clamav"
    sb systemctl start "$U"
    has_shm "$id" || fail "the scan deleted clamav's shared memory segment $id"
    sb mkdir -p /etc/systemd/system/$U.d
    printf '[Service]\nRemoveIPC=yes\n' | sb sh -c "cat > /etc/systemd/system/$U.d/zz-removeipc.conf"
    sb systemctl daemon-reload
    sb systemctl start "$U"
    ! has_shm "$id" || fail "RemoveIPC=yes left the segment: the test proves nothing"
    sb rm /etc/systemd/system/$U.d/zz-removeipc.conf
    sb systemctl daemon-reload
}

# clamd under the clamav-daemon.service.d/hardening.conf drop-in: Debian's
# unit and config, the test's signatures. Only the database conditions are
# reset (there is no official database here); everything else is as shipped.
t_clamd_with_dropin() {
    tar -C /etc -cf - clamav | sb tar -C /etc -xf -
    sb sh -c "sed -i 's|^DatabaseDirectory .*|DatabaseDirectory /var/lib/lh-clamd|' /etc/clamav/clamd.conf"
    sb install -d -o clamav -g clamav /var/lib/lh-clamd /var/log/clamav
    sb cp "$DB" /var/lib/lh-clamd/eicar.hdb
    local d
    for d in clamav-daemon.service.d clamav-daemon.socket.d; do
        sb mkdir -p /etc/systemd/system/$d
        printf '[Unit]\nConditionPathExistsGlob=\n' | sb sh -c "cat > /etc/systemd/system/$d/zz-test-db.conf"
    done
    sb systemctl daemon-reload
    assert_contains "$(sb systemctl show -P DropInPaths clamav-daemon.service)" hardening.conf DropInPaths
    sb systemctl start clamav-daemon.socket clamav-daemon.service
    wait_for 30 sb test -S /run/clamav/clamd.ctl || fail "clamd socket missing"
    printf '%s' "$EICAR" | sb sh -c 'cat > /home/alice/eicar2.com'
    local out
    out=$(sb clamdscan --fdpass --no-summary /home/alice/eicar2.com 2>&1) || true
    assert_contains "$out" "/home/alice/eicar2.com: LH-Test-EICAR.UNOFFICIAL FOUND" clamdscan
    assert_eq "$(sb systemctl is-active clamav-daemon.service)" active clamav-daemon.service
    local pid; pid=$(sb systemctl show -P MainPID clamav-daemon.service)
    # Debian's clamd drops to "User clamav" itself: the drop-in lets it.
    assert_eq "$(sb stat -c %U /proc/$pid)" clamav "clamd's user"
    assert_eq "$(sb sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/$pid/status)" 1 "clamd's NoNewPrivs"
    sb systemctl stop clamav-daemon.service clamav-daemon.socket
    sb rm -f /home/alice/eicar2.com
}

run_case detects_eicar_in_a_private_home t_detects
run_case ran_as_clamav_niced_idle_io t_runs_sandboxed
run_case clean_scan_succeeds t_clean_succeeds
run_case scan_error_fails t_error_fails
run_case weekly_timer_listed t_weekly_timer
run_case scan_keeps_clamav_ipc_objects t_keeps_clamav_ipc
run_case clamd_works_under_the_dropin t_clamd_with_dropin
finish

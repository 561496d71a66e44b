#!/usr/bin/env bash
# setup-system-credentials.service in a real systemd: creates /etc/credstore
# (0700, root), a second run changes nothing at all (not even the ctime),
# a wrong mode is repaired, a foreign owner fails the unit, and a credential
# stored there reaches a service through LoadCredential=.
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"

U=setup-system-credentials.service
fingerprint() { sb stat -c 'inode=%i mode=%a owner=%u:%g mtime=%Y ctime=%Z' /etc/credstore; }
prop() { sb systemctl show -P "$1" "$U"; }

boot
sb env PREFIX=/opt/luminous-healing UNITDIR=/etc/systemd/system \
    /src/scripts/install-host-units.sh /src >/dev/null || die "install-host-units.sh failed"

t_creates() {
    [ "$(sb sh -c 'test -e /etc/credstore && echo yes || echo no')" = no ] || fail "/etc/credstore exists before the unit ran"
    sb systemctl start "$U"
    assert_eq "$(prop Result)" success Result
    assert_eq "$(sb stat -c '%F %a %U %G' /etc/credstore)" "directory 700 root root" /etc/credstore
}

t_second_run_changes_nothing() {
    local before after inv1 inv2
    before=$(fingerprint); inv1=$(prop InvocationID)
    # ctime has a one-second resolution here: make a change visible.
    sleep 1.1
    sb systemctl restart "$U"
    inv2=$(prop InvocationID)
    [ "$inv1" != "$inv2" ] || fail "the unit did not run a second time"
    assert_eq "$(prop Result)" success Result
    after=$(fingerprint)
    assert_eq "$after" "$before" "/etc/credstore after the second run"
}

t_repairs_mode() {
    sb chmod 0755 /etc/credstore
    sb systemctl restart "$U"
    assert_eq "$(sb stat -c '%a' /etc/credstore)" 700 "mode after repair"
    assert_eq "$(prop Result)" success Result
}

t_refuses_foreign_owner() {
    sb chown 65534:65534 /etc/credstore
    sb systemctl restart "$U" 2>/dev/null && fail "the unit succeeded with /etc/credstore owned by nobody"
    assert_eq "$(prop Result)" exit-code Result
    # not silently "fixed": a human has to look at who owned it
    assert_eq "$(sb stat -c '%u:%g' /etc/credstore)" "65534:65534" owner
    sb chown 0:0 /etc/credstore
    sb systemctl restart "$U"
    assert_eq "$(prop Result)" success "Result once root owns it again"
}

t_credential_reaches_a_service() {
    sb sh -c 'umask 077; printf s3cret > /etc/credstore/jupyter-token'
    # The way jupyter@.service gets its token: PID 1 reads the root-only file
    # and hands it to an unprivileged service.
    out=$(sb systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes \
        -p LoadCredential=jupyter-token:/etc/credstore/jupyter-token \
        sh -c 'cat "$CREDENTIALS_DIRECTORY/jupyter-token"; echo; cat /etc/credstore/jupyter-token 2>&1 || true')
    assert_contains "$out" s3cret "credential content"
    assert_contains "$out" "Permission denied" "direct read of /etc/credstore by the service"
    sb rm -f /etc/credstore/jupyter-token
}

run_case creates_credstore_0700 t_creates
run_case second_run_changes_nothing t_second_run_changes_nothing
run_case repairs_wrong_mode t_repairs_mode
run_case refuses_foreign_owner t_refuses_foreign_owner
run_case credential_reaches_a_service t_credential_reaches_a_service
finish

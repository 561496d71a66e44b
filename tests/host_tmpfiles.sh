#!/usr/bin/env bash
# units/tmpfiles.d/luminous-host.conf, applied by a real systemd-tmpfiles in
# a booted container: exactly the declared directories (and their parents),
# with the declared modes and owners, and the cuda-cache link; drift is
# repaired on the next run.
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"

CONF=/etc/tmpfiles.d/luminous-host.conf
# Everything the rules may create: the declared paths and missing parents.
snapshot() { sb sh -c 'find /var /srv -xdev 2>/dev/null | sort'; }

boot
# The rules name these owners; tmpfiles refuses unknown users and groups.
sb useradd -r -U -M -s /usr/sbin/nologin clamav
sb groupadd -r nvidia
sb groupadd -r libvirtd
# NO_RELOAD: install only, so the test itself runs systemd-tmpfiles.
sb env PREFIX=/opt/luminous-healing UNITDIR=/etc/systemd/system NO_RELOAD=1 \
    /src/scripts/install-host-units.sh /src >/dev/null || die "install-host-units.sh failed"

DECLARED="/var/log/clamav /var/cache/cuda /var/tmp/cuda-cache /srv/vms/shared"

t_creates_exactly() {
    local before after new p d ok
    before=$(snapshot)
    for p in $DECLARED; do
        assert_not_contains "$before" "$p" "exists before systemd-tmpfiles ran:"
    done
    sb systemd-tmpfiles --create "$CONF"
    after=$(snapshot)
    new=$(comm -13 <(echo "$before") <(echo "$after"))
    for p in $DECLARED; do assert_contains "$new" "$p" "not created:"; done
    # Anything else that appeared must be a missing parent of a declared path.
    for p in $new; do
        ok=0
        for d in $DECLARED; do case "$d/" in "$p"/*) ok=1 ;; esac; done
        [ $ok = 1 ] || fail "created $p, which no rule declares"
    done
}

t_modes_and_owners() {
    assert_eq "$(sb stat -c '%F %a %U %G' /var/log/clamav)" "directory 755 clamav clamav" /var/log/clamav
    assert_eq "$(sb stat -c '%F %a %U %G' /var/cache/cuda)" "directory 770 root nvidia" /var/cache/cuda
    assert_eq "$(sb stat -c '%F %a %U %G' /srv/vms/shared)" "directory 755 root libvirtd" /srv/vms/shared
    assert_eq "$(sb stat -c '%F' /var/tmp/cuda-cache)" "symbolic link" /var/tmp/cuda-cache
    assert_eq "$(sb readlink /var/tmp/cuda-cache)" "/var/cache/cuda" "link target"
    # The link is usable: a file written through it lands in the cache.
    sb sh -c 'echo x > /var/tmp/cuda-cache/probe'
    assert_eq "$(sb cat /var/cache/cuda/probe)" x "write through the link"
    sb rm -f /var/cache/cuda/probe
}

t_repairs_drift() {
    sb chmod 0777 /var/cache/cuda
    sb chown root:root /var/log/clamav
    # L+ replaces whatever sits at the link's path.
    sb rm /var/tmp/cuda-cache
    sb mkdir /var/tmp/cuda-cache
    sb systemd-tmpfiles --create "$CONF"
    assert_eq "$(sb stat -c '%a %U %G' /var/cache/cuda)" "770 root nvidia" "mode repaired"
    assert_eq "$(sb stat -c '%U %G' /var/log/clamav)" "clamav clamav" "owner repaired"
    assert_eq "$(sb readlink /var/tmp/cuda-cache)" "/var/cache/cuda" "directory replaced by the link"
}

run_case creates_exactly_the_declared_paths t_creates_exactly
run_case modes_owners_and_link t_modes_and_owners
run_case repairs_drift t_repairs_drift
finish

#!/usr/bin/env bash
# The sshd hardening drop-in (units/security/sshd.service.d/hardening.conf)
# on Debian's real ssh.service in a booted container, with Debian's PAM
# stack: a key-based login works under it, the session carries the sandbox
# (what SSH users lose), and every capability in the drop-in is needed:
# removing any one of them makes the login fail. That last case is the proof
# behind the capability list. CAP_AUDIT_WRITE is the exception: nspawn
# refuses audit sockets inside the container, so its use cannot show here
# (the drop-in says why it stays).
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"
require sshd openssh-server
require ssh openssh-client
require ssh-keygen openssh-client
[ -f /lib/systemd/system/ssh.service ] || die "no /lib/systemd/system/ssh.service: apt-get install -y openssh-server"
[ -f /etc/pam.d/sshd ] || die "no /etc/pam.d/sshd: apt-get install -y openssh-server"

DROPIN=/src/units/security/sshd.service.d/hardening.conf
# The capabilities the drop-in grants, read from the drop-in itself.
CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' "$ROOT/units/security/sshd.service.d/hardening.conf" | tr ' ' '\n' | grep . | sort -u)

boot
# PAM configuration and limits as Debian ships them; /etc starts empty.
tar -C /etc -cf - pam.d security | sb tar -C /etc -xf -
sb useradd -r -M -d /run/sshd -s /usr/sbin/nologin sshd
sb mkdir -p /etc/ssh
sb ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
sb sh -c 'cat > /etc/ssh/sshd_config' <<'CONF'
ListenAddress 127.0.0.1
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
LoginGraceTime 3
CONF
# sshd binds port 22 itself, as on a default Debian or NixOS host: the
# container's presets also enabled ssh.socket, which would hold the port
# for it (and hide the need for CAP_NET_BIND_SERVICE).
sb systemctl disable --now ssh.socket >/dev/null 2>&1
sb systemctl mask ssh.socket >/dev/null 2>&1
# The container boots to basic.target: lift the boot-time /run/nologin
# (pam_nologin) as multi-user.target would.
sb systemctl start systemd-user-sessions.service
sb env PREFIX=/opt/luminous-healing UNITDIR=/etc/systemd/system \
    /src/scripts/install-host-units.sh /src >/dev/null 2>&1 || die "install-host-units.sh failed"
# A user with a key, home 0700 as on a real multi-user host.
sb useradd -m -U -s /bin/bash alice
sb usermod -p '*' alice        # no password, but not a locked account
sb chmod 0700 /home/alice
sb ssh-keygen -q -t ed25519 -N '' -f /root/alice_key
sb install -d -m 0700 -o alice -g alice /home/alice/.ssh
sb install -m 0600 -o alice -g alice /root/alice_key.pub /home/alice/.ssh/authorized_keys

login() {   # login CMD... -> runs CMD in alice's SSH session, on a pty (-tt)
    sb timeout 20 ssh -tt -n -i /root/alice_key -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 alice@127.0.0.1 "$@"
}
declare -A CAPNUM=([CAP_CHOWN]=0 [CAP_DAC_OVERRIDE]=1 [CAP_DAC_READ_SEARCH]=2 [CAP_FOWNER]=3
    [CAP_FSETID]=4 [CAP_KILL]=5 [CAP_SETGID]=6 [CAP_SETUID]=7 [CAP_SETPCAP]=8
    [CAP_NET_BIND_SERVICE]=10 [CAP_NET_ADMIN]=12 [CAP_NET_RAW]=13 [CAP_IPC_LOCK]=14
    [CAP_SYS_CHROOT]=18 [CAP_SYS_PTRACE]=19 [CAP_SYS_ADMIN]=21 [CAP_SYS_NICE]=23
    [CAP_SYS_RESOURCE]=24 [CAP_SYS_TTY_CONFIG]=26 [CAP_AUDIT_WRITE]=29 [CAP_AUDIT_CONTROL]=30)
# Expected CapBnd: the drop-in's set, within what the container itself has
# (this VM lacks CAP_SYS_RESOURCE, so the container does too).
expected_capbnd() {
    local m=0 c own
    for c in $CAPS; do
        [ -n "${CAPNUM[$c]:-}" ] || { echo "unknown capability $c" >&2; return 1; }
        m=$(( m | (1 << ${CAPNUM[$c]}) ))
    done
    own=$(sb sed -n 's/^CapBnd:[[:space:]]*//p' /proc/1/status)
    printf '%016x' $(( m & 16#$own ))
}
# Seconds until sshd drops a connection that never authenticates (gives up
# after 12 s). LoginGraceTime is 3 s.
grace_drop_secs() {
    sb python3 -c '
import socket, time
s = socket.create_connection(("127.0.0.1", 22), timeout=12)
t0 = time.monotonic()
s.sendall(b"SSH-2.0-lh-grace-probe\r\n")
try:
    while s.recv(4096):
        pass
    print(int(time.monotonic() - t0))
except socket.timeout:
    print(99)'
}
restart_ssh() { sb systemctl daemon-reload; sb systemctl restart ssh.service; }

t_dropin_applies() {
    sb systemctl start ssh.service
    assert_eq "$(sb systemctl is-active ssh.service)" active ssh.service
    assert_contains "$(sb systemctl show -P DropInPaths ssh.service)" hardening.conf DropInPaths
    local pid
    pid=$(sb systemctl show -P MainPID ssh.service)
    assert_eq "$(sb sed -n 's/^CapBnd:[[:space:]]*//p' /proc/$pid/status)" "$(expected_capbnd)" "sshd's CapBnd"
    assert_eq "$(sb sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/$pid/status)" 1 "sshd's NoNewPrivs"
    assert_eq "$(sb sed -n 's/^Seccomp:[[:space:]]*//p' /proc/$pid/status)" 2 "sshd's seccomp mode"
}

t_key_login_works() {
    # pam_unix must read /etc/shadow, made mode 0000 here by useradd/sysusers
    assert_eq "$(sb stat -c %a /etc/shadow)" 0 "/etc/shadow mode"
    local out
    out=$(login 'id -un; echo loginuid=$(cat /proc/self/loginuid); tty; touch ~/written && echo home-writable')
    assert_contains "$out" alice "user"
    assert_contains "$out" /dev/pts/ "a pty"
    # pam_loginuid ran (session required): the audit login uid is alice's
    assert_contains "$out" "loginuid=$(sb id -u alice)" "loginuid"
    assert_contains "$out" home-writable "home"
}

t_session_inherits_sandbox() {
    local out
    out=$(login 'grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; touch /usr/x 2>&1; touch /etc/x 2>&1; true')
    assert_contains "$out" "NoNewPrivs:	1" "session NoNewPrivs"
    assert_contains "$out" "Seccomp:	2" "session seccomp"
    assert_contains "$out" "/etc/x': Read-only file system" "session /etc"
}

t_every_cap_needed() {
    local c rest secs unneeded=""
    # Without a working login to start from, "fails without X" proves nothing.
    assert_eq "$(login 'id -un' | tr -d '\r')" alice "baseline login with the full set"
    [ "$(grace_drop_secs)" -le 6 ] || fail "baseline: unauthenticated connection not dropped after LoginGraceTime"
    for c in $CAPS; do
        [ "$c" = CAP_AUDIT_WRITE ] && continue
        rest=$(echo "$CAPS" | grep -vx "$c" | tr '\n' ' ')
        printf '[Service]\nCapabilityBoundingSet=\nCapabilityBoundingSet=%s\n' "$rest" \
            | sb sh -c 'mkdir -p /etc/systemd/system/ssh.service.d && cat > /etc/systemd/system/ssh.service.d/zz-minus-one.conf'
        restart_ssh || true
        if [ "$(login 'id -un' 2>/dev/null | tr -d '\r')" != alice ]; then
            echo "without $c: login fails ($(sb journalctl --no-pager -o cat -n 3 -u ssh.service | tr '\n' ' '))"
        elif secs=$(grace_drop_secs) && [ "$secs" -gt 6 ]; then
            echo "without $c: login works, but an unauthenticated connection outlives LoginGraceTime (${secs}s)"
        else
            unneeded="$unneeded $c"
        fi
    done
    sb rm -f /etc/systemd/system/ssh.service.d/zz-minus-one.conf
    restart_ssh
    [ -z "$unneeded" ] || fail "login still works without:$unneeded"
}

t_chroot_syscall_needed() {
    # @system-service lacks chroot(2): the drop-in adds it. Without it the
    # pre-auth child dies of SIGSYS and nobody can log in.
    printf '[Service]\nSystemCallFilter=\nSystemCallFilter=@system-service\n' \
        | sb sh -c 'mkdir -p /etc/systemd/system/ssh.service.d && cat > /etc/systemd/system/ssh.service.d/zz-no-chroot.conf'
    restart_ssh
    local out; out=$(login 'id -un' 2>&1 | tr -d '\r') || true
    sb rm -f /etc/systemd/system/ssh.service.d/zz-no-chroot.conf
    restart_ssh
    assert_not_contains "$out" alice "login without chroot(2) allowed:"
    assert_eq "$(login 'id -un' | tr -d '\r')" alice "login with the drop-in's filter"
}

run_case dropin_applies_to_ssh_service t_dropin_applies
run_case key_login_with_pam_works t_key_login_works
run_case session_inherits_the_sandbox t_session_inherits_sandbox
run_case every_capability_is_needed t_every_cap_needed
run_case chroot_syscall_is_needed t_chroot_syscall_needed
finish

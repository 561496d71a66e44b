#!/usr/bin/env bash
# The NixOS module changes the package's units only through drop-ins (see
# nixos/luminous-healing.nix). This test checks, against a real systemd and
# the real units and binaries, that those drop-ins do what the module relies
# on. The drop-ins are written here as NixOS renders the module's settings
# into /etc/systemd/system/<unit>.d/overrides.conf (one line per list
# element; "" becomes an empty assignment, i.e. a reset); nixpkgs itself is
# not available on this machine, so the rendering is this file's, the
# systemd semantics are real:
#   - socketPath: ListenStream= reset, then the new path: listens there only;
#   - secretKeyFile: LoadCredential= reset, then secret:PATH: exactly one
#     credential, and it is the configured file, not the package default;
#   - /etc/luminous-healing/config.toml (environment.etc) is what the
#     dispatcher enforces, with no --config in ExecStart=;
#   - the host services' readiness wait (ExecStartPost=) waits for the port
#     and gives up when the backend dies.
source "$(dirname "$0")/lib.sh"
boot
install_project
add_caller member
sb usermod -aG luminous-healing member

HEALCTL=$PREFIX_IN/bin/healctl
CUSTOM_SOCK=/run/lh-nixos.sock
CREDSTORE_SECRET=/etc/credstore/luminous-healing

dropin() { # UNIT CONTENT: install a NixOS-style overrides.conf and reload
    sb mkdir -p "/etc/systemd/system/$1.d"
    printf '%s\n' "$2" | sb tee "/etc/systemd/system/$1.d/overrides.conf" >/dev/null
    sb systemctl daemon-reload
}

t_socket_path_reset() {
    # services.luminous-healing.socketPath = "/run/lh-nixos.sock"; group default.
    dropin luminous-healing.socket "[Socket]
ListenStream=
ListenStream=$CUSTOM_SOCK
SocketGroup=luminous-healing"
    sb systemctl restart luminous-healing.socket
    local listen
    listen=$(sb systemctl show -p Listen --value luminous-healing.socket)
    assert_eq "$listen" "$CUSTOM_SOCK (Stream)" "Listen="
    sb test -S "$CUSTOM_SOCK"
    # The old path may linger as a file (RemoveOnStop= acts on the paths of
    # the configuration in force when stopping), but nothing listens on it.
    local rc=0
    as_user member env LUMINOUS_HEALING_SECRET=x "$HEALCTL" --socket /run/luminous-healing.sock status >/dev/null 2>&1 || rc=$?
    assert_eq "$rc" 5 "healctl on the default path (5 = could not talk):"
    assert_eq "$(sb stat -c '%a %G' "$CUSTOM_SOCK")" "660 luminous-healing" "socket mode:"
    local key r
    key=$(sb cat "$SECRET_IN")
    r=$(as_user member env LUMINOUS_HEALING_SECRET="$key" "$HEALCTL" --socket "$CUSTOM_SOCK" --json status)
    assert_eq "$(jfield success <<<"$r")" true
}

t_credential_reset() {
    # services.luminous-healing.secretKeyFile = "/etc/credstore/luminous-healing",
    # while the package default path holds a different secret.
    sb mkdir -p -m 0700 /etc/credstore
    sb sh -c "umask 077; printf nixos-module-secret > $CREDSTORE_SECRET"
    dropin luminous-healing.service "[Service]
Group=luminous-healing
LoadCredential=
LoadCredential=secret:$CREDSTORE_SECRET
User=luminous-healing"
    sb systemctl stop luminous-healing.service
    # `systemctl show` prints LoadCredential= as [unprintable] on systemd
    # 252: read the effective unit instead, and prove it by signing below.
    local cat
    cat=$(sb systemctl cat luminous-healing.service)
    assert_eq "$(grep -c '^LoadCredential=' <<<"$cat")" 3 "LoadCredential= lines (package, reset, new):"
    assert_eq "$(grep '^LoadCredential=' <<<"$cat" | tail -n 2 | tr '\n' ' ')" "LoadCredential= LoadCredential=secret:$CREDSTORE_SECRET " "drop-in:"
    local r
    r=$(as_user member env LUMINOUS_HEALING_SECRET=nixos-module-secret "$HEALCTL" --socket "$CUSTOM_SOCK" --json status)
    assert_eq "$(jfield success <<<"$r")" true "signed with the configured secret:"
    local old; old=$(sb cat "$SECRET_IN")
    r=$(as_user member env LUMINOUS_HEALING_SECRET="$old" "$HEALCTL" --socket "$CUSTOM_SOCK" --json status || true)
    assert_eq "$(jfield error <<<"$r")" "Invalid signature" "signed with the package default secret:"
}

t_config_from_etc() {
    # environment.etc."luminous-healing/config.toml": an action disabled there
    # is refused by the dispatcher started from the package's ExecStart=.
    dropin luminous-healing.service "[Service]
LoadCredential=
LoadCredential=secret:$CREDSTORE_SECRET"
    set_config '[actions.adjust_swappiness]
enabled = false'
    local r
    r=$(as_user member env LUMINOUS_HEALING_SECRET=nixos-module-secret "$HEALCTL" --socket "$CUSTOM_SOCK" --json adjust-swappiness 10 || true)
    assert_eq "$(jfield error <<<"$r")" "Action adjust_swappiness not allowed"
    sb grep -q "^ExecStart=$PREFIX_IN/bin/luminous-healing\$" "$(sb systemctl show -p FragmentPath --value luminous-healing.service)" \
        || fail "ExecStart= is not the package's own"
}

# The readiness wait nixos/services/common.nix puts in ExecStartPost= of
# on-demand backends (llama.cpp, ollama, jupyter), rendered by Nix itself
# with the container's bash: systemd must hand $$MAINPID to bash, a backend
# must count as started only once its port answers, and one that dies while
# loading must fail the start at once.
wait_for_port() {
    nix-instantiate --eval --strict --json -E \
        '(import '"$ROOT"'/nixos/services/common.nix { pkgs.bash = "/usr"; systemd = "/usr"; }).waitForPort '"$1" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin))'
}
WAIT_18080=$(wait_for_port 18080)
WAIT_18081=$(wait_for_port 18081)

t_wait_for_port() {
    [ -n "$WAIT_18080" ] && [ -n "$WAIT_18081" ] || fail "could not render waitForPort (nix-instantiate: apt-get install -y nix-bin)"
    sb mkdir -p /run/systemd/system
    printf '%s\n' "[Service]
ExecStart=/usr/bin/python3 -c 'import socket, time; time.sleep(1.5); s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", 18080)); s.listen(); time.sleep(600)'
ExecStartPost=$WAIT_18080
TimeoutStartSec=30" | sb tee /run/systemd/system/nix-late-backend.service >/dev/null
    printf '%s\n' "[Service]
ExecStart=/bin/sh -c 'sleep 1; exit 3'
ExecStartPost=$WAIT_18081
TimeoutStartSec=30" | sb tee /run/systemd/system/nix-dying-backend.service >/dev/null
    sb systemctl daemon-reload
    local t0 t1
    t0=$(date +%s%N)
    sb systemctl start nix-late-backend.service
    t1=$(date +%s%N)
    [ $(( (t1 - t0) / 1000000 )) -ge 1400 ] || fail "started before the port answered ($(( (t1 - t0) / 1000000 )) ms)"
    sb bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080' || fail "port not answering once started"
    t0=$(date +%s%N)
    ! sb systemctl start nix-dying-backend.service 2>/dev/null || fail "a dying backend counted as started"
    t1=$(date +%s%N)
    [ $(( (t1 - t0) / 1000000 )) -lt 10000 ] || fail "a dying backend failed only after $(( (t1 - t0) / 1000000 )) ms"
    sb systemctl stop nix-late-backend.service
}

run_case socket_path_reset t_socket_path_reset
run_case credential_reset t_credential_reset
run_case config_from_etc t_config_from_etc
run_case wait_for_port t_wait_for_port
finish

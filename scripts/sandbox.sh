#!/usr/bin/env bash
# sandbox.sh - boot a REAL, throw-away systemd (as PID 1 of a
# systemd-nspawn container) on a host whose PID 1 is NOT systemd, so a test
# suite can exercise socket activation, journald, unit hardening, ...
#
#   systemd-sandbox.sh up [extra systemd-nspawn args...]   boot + wait until ready
#   systemd-sandbox.sh run <cmd...>        run a command inside (nsenter, host cgroup)
#   systemd-sandbox.sh unit-run <cmd...>   run a command inside as a transient service
#                                          (systemd-run --pipe --wait: real unit context)
#   systemd-sandbox.sh push <src...> <dir> copy host files/dirs into <dir> inside (tar)
#   systemd-sandbox.sh shell               interactive bash inside
#   systemd-sandbox.sh pid | status | logs
#   systemd-sandbox.sh down                orderly halt, then clean up cgroups/state
#   systemd-sandbox.sh root                build the Debian 13 root if missing, print its path
#   systemd-sandbox.sh version             the systemd version `up` boots (252, 257, ...)
#
# Which systemd (SDSANDBOX_SYSTEMD):
#  * 252 (default) = the host's: the root is a tmpfs with the host's /usr (below).
#  * 257 = Debian 13 (trixie): a root made with debootstrap, built when missing
#    and cached in SDSANDBOX_ROOT_CACHE (default /var/cache/luminous-healing/
#    trixie-root, outside any checkout). It is built in a temporary directory
#    beside the cache and renamed into place only when complete, under a lock,
#    so a build that died half-way is never booted and concurrent tests build
#    it once. It is booted with --volatile=overlay: every write lands in a
#    tmpfs overlay, so the cached root stays pristine and each boot is a clean
#    257 system. SDSANDBOX_ROOT=DIR boots any other prepared root the same way.
#
# How it works (and why):
#  * Container root = tmpfs, /usr = host /usr read-only (--volatile=yes), so the
#    host's /etc (enabled services such as postgresql, timers, gettys) and /var are
#    never touched; /etc is populated from presets + sysusers on every boot.
#  * --register=no --keep-unit: there is no systemd/machined on the host, so nspawn
#    must neither register the machine nor ask for a transient scope (both need the
#    host's system bus).  Consequence: `machinectl` / `systemctl -M` do NOT work;
#    use `run`, which nsenter(1)s all namespaces of the container's PID 1.
#  * nspawn itself runs in a private mount namespace with a tmpfs on /run/systemd:
#    the host's /run is an ordinary ext4 directory here, and nspawn leaves state in
#    /run/systemd/nspawn* and refuses to rm -rf it on a non-tmpfs.
#  * cgroups: we create /sys/fs/cgroup/<hier>/sdsandbox-<name> (the only change to the
#    host's cgroup trees) and start nspawn in it; nspawn creates payload/ and
#    supervisor/ below it.  `down` removes the whole subtree.
#  * SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 (default): the container gets a pure cgroup v2
#    /sys/fs/cgroup, like a stock Debian 12 machine, although the host is hybrid.
#  * --capability=all: keep the full host bounding set (minus what the host itself
#    lacks: CAP_SYS_RESOURCE on this VM) so CapabilityBoundingSet=/Ambient
#    Capabilities= tests see real results (nspawn's default set drops e.g.
#    CAP_NET_ADMIN, CAP_SYS_TIME, CAP_IPC_LOCK, CAP_BPF silently).
#  * --private-network: the container (which has CAP_NET_ADMIN) only sees its own
#    loopback, so systemd-networkd etc. can never reconfigure the host's network.
#
# Environment knobs:
#   SDSANDBOX_NAME=sdbox           instance name (= container hostname); several may run
#   SDSANDBOX_STATE_DIR=/tmp/sdsandbox-$NAME   pid files + console log (host side)
#   SDSANDBOX_BOOT_TIMEOUT=60      seconds to wait for `is-system-running`
#   SDSANDBOX_BIND_RO="src[:dst] ..."   extra read-only binds (e.g. the repo, a venv)
#   SDSANDBOX_BIND="src[:dst] ..."      extra read-write binds
#   SDSANDBOX_CAPS=all|default      --capability=all (default) or nspawn's default set
#   SDSANDBOX_PRIVATE_NETWORK=1     0 = share the host network namespace
#   SDSANDBOX_UNIFIED=1             0 = container gets the host's hybrid cgroup layout
#   SDSANDBOX_INIT_ARGS="..."       extra args for the container's systemd
#                                   (its "kernel command line", e.g. systemd.log_level=debug)
#   SDSANDBOX_PATH=...              PATH used by `run` inside the container
#   SDSANDBOX_TARGET=basic.target   the unit the container boots to
#   SDSANDBOX_SYSTEMD=252|257       the host's systemd (252) or Debian 13's (257)
#   SDSANDBOX_ROOT=DIR              boot this prepared root (volatile overlay) instead
#   SDSANDBOX_ROOT_CACHE=/var/cache/luminous-healing/trixie-root   where 257's root lives
#   SDSANDBOX_MIRROR=http://deb.debian.org/debian   debootstrap's mirror
#
# Requirements: root; apt-get install -y systemd-container (systemd-nspawn; note it
# pulls the matching systemd/libsystemd0 point release) and socat for socket tests;
# debootstrap for SDSANDBOX_SYSTEMD=257.
set -euo pipefail

NAME=${SDSANDBOX_NAME:-sdbox}
STATE=${SDSANDBOX_STATE_DIR:-/tmp/sdsandbox-$NAME}
BOOT_TIMEOUT=${SDSANDBOX_BOOT_TIMEOUT:-60}
CG=sdsandbox-$NAME
IN_PATH=${SDSANDBOX_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}

die() { echo "systemd-sandbox: $*" >&2; exit 1; }

# ---- the Debian 13 root (systemd 257) -----------------------------------
ROOT_CACHE=${SDSANDBOX_ROOT_CACHE:-/var/cache/luminous-healing/trixie-root}
MIRROR=${SDSANDBOX_MIRROR:-http://deb.debian.org/debian}
# debootstrap itself installs only what its dependency resolver handles
# well (the rest once failed to configure: nix-bin's perl bindings); apt
# inside the new root adds what the end-to-end tests use in the container:
# nss-systemd for DynamicUser= names (the host's nsswitch.conf has it too),
# socat (raw requests), ps (procps), setpriv/nsenter/ipcs (util-linux),
# capsh (libcap2-bin), a Nix store and nix-daemon.socket (nix-bin,
# nix-setup-systemd). Changing either list rebuilds the cached root.
ROOT_BASE=systemd,dbus,python3
ROOT_PACKAGES="libnss-systemd socat procps util-linux libcap2-bin nix-bin nix-setup-systemd"
ROOT_STAMP=.sdsandbox-root   # inside the root: what it was built from
ROOT_REVISION=2              # raise when build_root's fix-ups change
ROOT_ID="trixie r$ROOT_REVISION $ROOT_BASE $ROOT_PACKAGES"

root_is_current() { [ "$(cat "$1/$ROOT_STAMP" 2>/dev/null)" = "$ROOT_ID" ]; }

# in_root DIR CMD...: CMD chrooted in DIR, with /proc, /dev and /sys, in a
# private mount namespace (nothing stays mounted), no service started.
in_root() {
    local dir=$1; shift
    unshare --mount --propagation private -- sh -c 'd=$1; shift
        mount -t proc proc "$d/proc" && mount --bind /dev "$d/dev" && mount --bind /sys "$d/sys" &&
        exec chroot "$d" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"' \
        in_root "$dir" "$@"
}

# build_root: make $ROOT_CACHE if it is missing or was built from other
# package lists. Prints progress on stderr.
build_root() {
    root_is_current "$ROOT_CACHE" && return 0
    [ "$(id -u)" = 0 ] || die "building the Debian 13 root needs root"
    command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"
    local parent; parent=$(dirname "$ROOT_CACHE")
    mkdir -p "$parent"
    exec 9>"$ROOT_CACHE.lock"
    flock 9
    # someone else built it while we waited for the lock
    if root_is_current "$ROOT_CACHE"; then exec 9>&-; return 0; fi
    # leftovers of builds that died (the lock is ours: nobody is using them)
    rm -rf "$ROOT_CACHE".tmp.* "$ROOT_CACHE".old.*
    local tmp t0; tmp=$(mktemp -d "$ROOT_CACHE.tmp.XXXXXX"); t0=$(date +%s)
    echo "systemd-sandbox: building the Debian 13 root in $ROOT_CACHE (once; a few minutes)" >&2
    # shellcheck disable=SC2086
    if ! { debootstrap --variant=minbase --include="$ROOT_BASE" trixie "$tmp" "$MIRROR" &&
           printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d" && chmod +x "$tmp/usr/sbin/policy-rc.d" &&
           in_root "$tmp" apt-get install -y -q --no-install-recommends $ROOT_PACKAGES &&
           in_root "$tmp" apt-get clean; } > "$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2
        [ -f "$tmp/debootstrap/debootstrap.log" ] && tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2
        rm -rf "$tmp" "$tmp.log"; exec 9>&-
        die "building the Debian 13 root failed"
    fi
    # Every boot gets a machine id of its own (an empty file = generate one),
    # no package lists, and the stamp last: only a complete root has it.
    rm -f "$tmp/usr/sbin/policy-rc.d"
    : > "$tmp/etc/machine-id"
    # minbase has no kmod, so /etc/modules-load.d/modules.conf points at a
    # missing /etc/modules, and systemd-modules-load fails on it at every
    # boot (a degraded system): a container loads no modules anyway.
    find "$tmp/etc/modules-load.d" -xtype l -delete 2>/dev/null || true
    rm -rf "$tmp"/var/lib/apt/lists/*
    echo "$ROOT_ID" > "$tmp/$ROOT_STAMP"
    rm -f "$tmp.log"
    if [ -e "$ROOT_CACHE" ]; then
        local old; old=$(mktemp -d "$ROOT_CACHE.old.XXXXXX")
        mv -T "$ROOT_CACHE" "$old/root" && rm -rf "$old"
    fi
    mv -T "$tmp" "$ROOT_CACHE"
    exec 9>&-
    echo "systemd-sandbox: Debian 13 root ready after $(( $(date +%s) - t0 )) s" >&2
}

# The root directory `up` boots, or nothing for the host's /usr.
boot_root() {
    if [ -n "${SDSANDBOX_ROOT:-}" ]; then echo "$SDSANDBOX_ROOT"; return; fi
    case "${SDSANDBOX_SYSTEMD:-252}" in
        252|host) ;;
        257|trixie) echo "$ROOT_CACHE" ;;
        *) die "SDSANDBOX_SYSTEMD=${SDSANDBOX_SYSTEMD}: 252 (the host's) or 257 (Debian 13)" ;;
    esac
}

# systemd's major version in the root `up` boots
systemd_version() {
    local r; r=$(boot_root)
    if [ -n "$r" ]; then
        [ -z "${SDSANDBOX_ROOT:-}" ] && build_root
        r=$(ls "$r"/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-*.so "$r"/usr/lib/*/systemd/libsystemd-shared-*.so 2>/dev/null | head -n 1)
    else
        r=$(ls /usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-*.so /usr/lib/*/systemd/libsystemd-shared-*.so 2>/dev/null | head -n 1)
    fi
    r=${r##*libsystemd-shared-}; r=${r%%[!0-9]*}
    [ -n "$r" ] || die "cannot tell the systemd version"
    echo "$r"
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# cgroup hierarchies in which we create our sub-tree (never touch anything else)
cgroup_dirs() {
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
        echo /sys/fs/cgroup/$CG                       # pure v2 host
    else
        [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] && echo /sys/fs/cgroup/unified/$CG
        [ -d /sys/fs/cgroup/systemd ] && echo /sys/fs/cgroup/systemd/$CG   # name=systemd v1
    fi
    return 0
}

nspawn_pid() { [ -s "$STATE/nspawn.pid" ] && cat "$STATE/nspawn.pid"; }

# PID (in the host's pid namespace) of the container's PID 1 = the child of nspawn
# whose innermost NSpid is 1.
find_pid1() {
    local np p
    np=$(nspawn_pid) || return 1
    for p in $(ps --ppid "$np" -o pid= 2>/dev/null); do
        grep -qE '^NSpid:.*[[:space:]]1$' /proc/$p/status 2>/dev/null && { echo $p; return 0; }
    done
    return 1
}

pid1() {
    local p
    p=$(find_pid1) || die "instance '$NAME' is not running (try: $0 up)"
    echo "$p"
}

# run a command in all namespaces of the container's PID 1 with a clean environment
in_container() {
    local p; p=$(pid1)
    nsenter -t "$p" -a env -i PATH="$IN_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 "$@"
}

# boot failed: show the container console, tear everything down, exit 1
fail_up() {
    echo "---- $STATE/console.log ----" >&2; tail -n 40 "$STATE/console.log" >&2 || true
    cmd_down >&2 || true
    die "$1"
}

cmd_up() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing: apt-get install -y systemd-container"
    if find_pid1 >/dev/null 2>&1; then die "instance '$NAME' already running (pid1 $(find_pid1))"; fi
    local root; root=$(boot_root)
    [ -z "$root" ] || [ -n "${SDSANDBOX_ROOT:-}" ] || build_root
    rm -rf "$STATE"; mkdir -p "$STATE"

    local args
    if [ -z "$root" ]; then
        args=(-D / --volatile=yes)
        # /etc is an empty tmpfs: give it the host's NSS config so DynamicUser=/nss-systemd
        # names resolve (getent, id, ps) like on a normal Debian install.
        [ -f /etc/nsswitch.conf ] && args+=(--bind-ro=/etc/nsswitch.conf)
    else
        [ -x "$root/usr/lib/systemd/systemd" ] || die "$root is not a root with systemd"
        # a tmpfs overlay over the whole root: the root itself is never written
        args=(-D "$root" --volatile=overlay)
    fi
    args+=(-b -M "$NAME" --register=no --keep-unit
           --console=passive --kill-signal=SIGRTMIN+3)
    [ "${SDSANDBOX_CAPS:-all}" = all ] && args+=(--capability=all)
    [ "${SDSANDBOX_PRIVATE_NETWORK:-1}" = 1 ] && args+=(--private-network)
    # nspawn 252's own seccomp filter refuses the landlock syscalls (EPERM) to
    # everything in the container; allow them so services can sandbox themselves.
    args+=(--system-call-filter="landlock_create_ruleset landlock_add_rule landlock_restrict_self")
    local b
    for b in ${SDSANDBOX_BIND_RO:-}; do args+=("--bind-ro=$b"); done
    for b in ${SDSANDBOX_BIND:-}; do args+=("--bind=$b"); done
    # shellcheck disable=SC2206
    args+=(${SDSANDBOX_NSPAWN_ARGS:-} "$@")
    # arguments after the options go to the container's systemd = its kernel cmdline
    # shellcheck disable=SC2206
    # wait-online never finishes behind --private-network and can stall the boot.
    # Boot to basic.target (sockets, timers, D-Bus, journald) rather than the
    # host's default target: services the host happens to have installed and
    # preset-enabled (clamonacc, databases, ...) must not stall or slow the boot.
    args+=(systemd.firstboot=off systemd.mask=console-getty.service
           systemd.mask=systemd-networkd-wait-online.service
           systemd.unit=${SDSANDBOX_TARGET:-basic.target} ${SDSANDBOX_INIT_ARGS:-})

    local d dirs; dirs=$(cgroup_dirs)
    for d in $dirs; do mkdir -p "$d"; done
    printf '%s\n' $dirs > "$STATE/cgroups"

    local t0; t0=$(now_ms)
    # setsid: own session, no controlling tty, survives the calling shell.
    # The inner shell records its PID, joins our cgroups, and exec()s (same PID) into
    # unshare -> bash -> systemd-nspawn, so nspawn.pid ends up being nspawn's PID.
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=${SDSANDBOX_UNIFIED:-1} \
    setsid bash -c '
        state=$1; shift
        echo $$ > "$state/nspawn.pid"
        while read -r d; do echo $$ > "$d/cgroup.procs"; done < "$state/cgroups"
        exec unshare --mount --propagation private -- bash -c "
            mount -t tmpfs -o mode=0755,nosuid,nodev sdsandbox-run /run/systemd &&
            exec systemd-nspawn \"\$@\"" nspawn "$@"
    ' sdsandbox "$STATE" "${args[@]}" > "$STATE/console.log" 2>&1 < /dev/null &

    local deadline=$(( $(now_ms) + BOOT_TIMEOUT * 1000 )) p="" t1 state
    while :; do
        p=$(find_pid1 2>/dev/null) && break
        if [ -s "$STATE/nspawn.pid" ] && ! kill -0 "$(nspawn_pid)" 2>/dev/null; then
            fail_up "systemd-nspawn exited during startup"
        fi
        [ "$(now_ms)" -lt $deadline ] || fail_up "timeout waiting for container PID 1"
        sleep 0.05
    done
    echo "$p" > "$STATE/pid1"
    t1=$(now_ms)
    # `is-system-running --wait` blocks until boot finished; it fails until PID 1's
    # private bus (/run/systemd/private) exists, hence the loop.
    while :; do
        state=$(timeout 10 nsenter -t "$p" -a systemctl is-system-running --wait 2>/dev/null) || true
        case "$state" in running|degraded) break ;; esac
        kill -0 "$p" 2>/dev/null || fail_up "container died during boot"
        [ "$(now_ms)" -lt $deadline ] || fail_up "timeout waiting for boot (state: ${state:-no bus})"
        sleep 0.1
    done
    local t2; t2=$(now_ms)
    echo "systemd-sandbox '$NAME' is up: state=$state, PID1=$p (host pid), nspawn=$(nspawn_pid)"
    echo "  boot timing: container PID1 after $((t1 - t0)) ms, ready after $((t2 - t0)) ms"
    [ "$state" = degraded ] && in_container systemctl --failed --no-legend --no-pager || true
    echo "  reach it:  $0 run systemctl status     (or: nsenter -t $p -a <cmd>)"
    echo "  files:     $0 push <src...> <dir>       (or via /proc/$p/root/...)"
    echo "  console:   $STATE/console.log;  stop with: $0 down"
}

cmd_down() {
    local np p1 d
    np=$(nspawn_pid 2>/dev/null || true)
    p1=$(find_pid1 2>/dev/null || cat "$STATE/pid1" 2>/dev/null || true)
    if [ -n "$np" ] && kill -0 "$np" 2>/dev/null; then
        # first SIGTERM => nspawn sends SIGRTMIN+3 to PID 1 = orderly "halt"
        kill -TERM "$np"
        for _ in $(seq 1 300); do kill -0 "$np" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$np" 2>/dev/null; then
            echo "systemd-sandbox: nspawn did not exit in 30s, killing" >&2
            [ -n "$p1" ] && kill -KILL "$p1" 2>/dev/null || true   # kills the whole pid ns
            kill -KILL "$np" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    # leftovers (only ever processes inside our own cgroup sub-tree)
    for d in $(cat "$STATE/cgroups" 2>/dev/null || cgroup_dirs); do
        [ -d "$d" ] || continue
        if [ -e "$d/cgroup.kill" ] && [ -n "$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]; then
            echo 1 > "$d/cgroup.kill"; sleep 0.2
        fi
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$d" ] && echo "systemd-sandbox: could not remove $d" >&2
    done
    rm -rf "$STATE"
    echo "systemd-sandbox '$NAME' is down"
}

cmd_push() {
    [ $# -ge 2 ] || die "usage: push <src...> <dest-dir-inside>"
    local dest=${!#} srcs=("${@:1:$#-1}") s
    in_container mkdir -p "$dest"
    for s in "${srcs[@]}"; do
        tar -C "$(dirname "$s")" -cf - "$(basename "$s")" | in_container tar -C "$dest" -xf -
    done
}

cmd=${1:-}; shift || true
case "$cmd" in
    up)       cmd_up "$@" ;;
    down)     cmd_down ;;
    run)      [ $# -gt 0 ] || die "usage: run <cmd...>"; in_container "$@" ;;
    unit-run) in_container systemd-run --quiet --wait --pipe --collect --service-type=exec -- "$@" ;;
    push)     cmd_push "$@" ;;
    root)     build_root; echo "$ROOT_CACHE" ;;
    version)  systemd_version ;;
    shell)    p=$(pid1); exec nsenter -t "$p" -a env -i PATH="$IN_PATH" HOME=/root TERM="${TERM:-xterm}" bash -l ;;
    pid)      pid1 ;;
    status)   p=$(pid1); echo "nspawn=$(nspawn_pid) pid1=$p"; in_container systemctl is-system-running || true ;;
    logs)     cat "$STATE/console.log" ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac

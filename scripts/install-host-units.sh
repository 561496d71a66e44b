#!/usr/bin/env bash
# install-host-units.sh - install (or remove) the hardened host units
# (llama.cpp, ollama and jupyter extensions, ClamAV, sshd drop-in, Docker
# image pull, credentials, GPU monitor, tmpfiles rules) from units/.
#
#   PREFIX=/usr/local UNITDIR=... install-host-units.sh [options] REPO_ROOT
#
# Called by scripts/install.sh --host-units (which sets PREFIX and UNITDIR);
# can be run alone. Options:
#   --uninstall          remove what an earlier run installed
#   --on-demand=LIST     also install the on-demand drop-ins for LIST
#                        (comma separated: ollama,jupyter). llama.cpp is
#                        always on demand; its units need no opt-in.
# Environment:
#   PREFIX       default /usr/local; @PREFIX@, @BINDIR@, @LIBEXECDIR@ derive from it
#   UNITDIR      default $PREFIX/lib/systemd/system for /usr and /usr/local,
#                /etc/systemd/system otherwise (same rule as install.sh)
#   TMPFILESDIR  default /etc/tmpfiles.d
#   NO_RELOAD=1  skip systemctl daemon-reload (set automatically when
#                systemd is not running)
#
# Enables nothing: whether a host scans /home weekly, runs a GPU monitor or
# answers LLM requests is the administrator's (or the NixOS module's) choice.
# Idempotent: unchanged files are not rewritten, a second run is a no-op.
set -euo pipefail

die() { echo "install-host-units: $*" >&2; exit 1; }

UNINSTALL=0
ON_DEMAND=""
ROOT=""
for a in "$@"; do
    case "$a" in
        --uninstall) UNINSTALL=1 ;;
        --on-demand=*) ON_DEMAND=${a#--on-demand=} ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        -*) die "unknown option $a" ;;
        *) ROOT=$a ;;
    esac
done
[ -n "$ROOT" ] || ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$ROOT/units" ] || die "$ROOT has no units/ directory"

PREFIX=${PREFIX:-/usr/local}
PREFIX=${PREFIX%/}
case "$PREFIX" in
    /usr|/usr/local) DEFAULT_UNITDIR=$PREFIX/lib/systemd/system ;;
    *) DEFAULT_UNITDIR=/etc/systemd/system ;;
esac
UNITDIR=${UNITDIR:-$DEFAULT_UNITDIR}
TMPFILESDIR=${TMPFILESDIR:-/etc/tmpfiles.d}
BINDIR=$PREFIX/bin
LIBEXECDIR=$PREFIX/libexec/luminous-healing
# The manifest is how --uninstall knows exactly what an earlier run wrote,
# even if units/ has changed since.
MANIFEST_DIR=${MANIFEST_DIR:-$PREFIX/share/luminous-healing}
MANIFEST=$MANIFEST_DIR/host-units.manifest

# Only these groups are host units; units/healing belongs to install.sh.
GROUPS_DIRS=(ml development security system hardware virtualization)

systemd_running() { [ -d /run/systemd/system ] && [ "${NO_RELOAD:-0}" != 1 ]; }

wants_on_demand() {
    local svc=$1
    case ",$ON_DEMAND," in *",$svc,"*) return 0 ;; esac
    return 1
}

substitute() {
    sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@LIBEXECDIR@|$LIBEXECDIR|g" \
        -e "s|@PREFIX@|$PREFIX|g" "$1"
}

# Write SRC (substituted) to DST only when the content differs.
put() {
    local src=$1 dst=$2 tmp
    tmp=$(mktemp)
    substitute "$src" > "$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then
        rm -f "$tmp"; die "$src: unknown placeholder left after substitution"
    fi
    if [ -f "$dst" ] && cmp -s "$tmp" "$dst"; then
        rm -f "$tmp"
    else
        install -D -m 0644 "$tmp" "$dst"
        rm -f "$tmp"
        echo "installed $dst"
    fi
    echo "$dst" >> "$MANIFEST.new"
}

# List "SRC DST" pairs for everything this script installs.
plan() {
    local g f rel name dir base
    for g in "${GROUPS_DIRS[@]}"; do
        [ -d "$ROOT/units/$g" ] || continue
        while IFS= read -r f; do
            rel=${f#"$ROOT/units/$g/"}
            name=${rel%.in}
            case "$rel" in
                */*)
                    dir=${rel%%/*}; base=${name##*/}
                    case "$dir" in *.d) ;; *) continue ;; esac
                    if [ "$base" = on-demand.conf ]; then
                        local svc=${dir%.d}; svc=${svc%.service}; svc=${svc%@}
                        wants_on_demand "$svc" || continue
                    fi
                    echo "$f $UNITDIR/$dir/$base"
                    # Debian names the unit ssh.service with sshd.service as
                    # an alias; systemd reads drop-ins of an alias only when
                    # the alias symlink exists, so install under both names.
                    if [ "$dir" = sshd.service.d ] && [ -e /lib/systemd/system/ssh.service ] \
                       && [ ! -e /lib/systemd/system/sshd.service ]; then
                        echo "$f $UNITDIR/ssh.service.d/$base"
                    fi
                    ;;
                *) echo "$f $UNITDIR/$name" ;;
            esac
        done < <(find "$ROOT/units/$g" -type f \( -name '*.service' -o -name '*.socket' \
                    -o -name '*.timer' -o -name '*.path' -o -name '*.target' \
                    -o -name '*.in' -o -name '*.conf' \) | sort)
    done
    # Only the host's rules: luminous-healing's own tmpfiles.d file (if
    # any) is install.sh's.
    for f in "$ROOT"/units/tmpfiles.d/luminous-host.conf*; do
        [ -f "$f" ] || continue
        name=${f##*/}; echo "$f $TMPFILESDIR/${name%.in}"
    done
}

do_install() {
    mkdir -p "$MANIFEST_DIR"
    : > "$MANIFEST.new"
    local src dst
    while read -r src dst; do put "$src" "$dst"; done < <(plan)
    # Files a previous run installed but this one did not (e.g. an on-demand
    # drop-in no longer requested) must not linger.
    if [ -f "$MANIFEST" ]; then
        while IFS= read -r dst; do
            grep -qxF "$dst" "$MANIFEST.new" && continue
            rm -f "$dst"; echo "removed $dst"
            case "${dst%/*}" in "$UNITDIR"/*.d) rmdir "${dst%/*}" 2>/dev/null || true ;; esac
        done < "$MANIFEST"
    fi
    sort -u "$MANIFEST.new" > "$MANIFEST"; rm -f "$MANIFEST.new"
    if systemd_running; then
        systemctl daemon-reload
        # Create the directories now instead of at the next boot.
        systemd-tmpfiles --create $(grep "^$TMPFILESDIR/" "$MANIFEST" || true) || \
            echo "install-host-units: systemd-tmpfiles reported problems (missing users/groups?)" >&2
    fi
}

do_uninstall() {
    local files=() dst unit
    if [ -f "$MANIFEST" ]; then
        mapfile -t files < "$MANIFEST"
    else
        while read -r _ dst; do files+=("$dst"); done < <(ON_DEMAND=ollama,jupyter plan)
    fi
    if systemd_running; then
        # Stop and disable units we own entirely; drop-ins extend the
        # distribution's units (sshd!), which must keep running.
        for dst in "${files[@]}"; do
            case "$dst" in "$UNITDIR"/*.d/*|"$TMPFILESDIR"/*) continue ;; esac
            unit=${dst##*/}
            case "$unit" in *@.*) continue ;; esac
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
    for dst in "${files[@]}"; do
        [ -e "$dst" ] || continue
        rm -f "$dst"; echo "removed $dst"
        case "${dst%/*}" in   # empty <unit>.d/ drop-in directories only
            "$UNITDIR"/*.d) rmdir "${dst%/*}" 2>/dev/null || true ;;
        esac
    done
    rm -f "$MANIFEST"
    # Directories only this script created, removed only when empty (a
    # PREFIX shared with install.sh or /usr/local keeps its content).
    rmdir "$MANIFEST_DIR" "${MANIFEST_DIR%/*}" "$PREFIX" 2>/dev/null || true
    if systemd_running; then systemctl daemon-reload; fi
}

if [ "$UNINSTALL" = 1 ]; then do_uninstall; else do_install; fi

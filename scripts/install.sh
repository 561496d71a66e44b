#!/usr/bin/env bash
# Install luminous-healing on a systemd host, as root.
#
#   scripts/install.sh [--host-units] [--no-enable]     install or update (idempotent)
#   scripts/install.sh --uninstall [--purge]            remove (--purge: also /etc/luminous-healing)
#
# Environment: PREFIX (default /usr/local), BUILD_DIR (default target/release
# of this checkout; build first with `cargo build --release --workspace`),
# DESTDIR-free by design: it acts on the running system (daemon-reload, enable).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
BUILD_DIR=${BUILD_DIR:-$ROOT/target/release}
BINDIR=$PREFIX/bin
LIBEXECDIR=$PREFIX/libexec/luminous-healing
DOCDIR=$PREFIX/share/doc/luminous-healing
# systemd reads units from /usr/lib and /usr/local/lib, not from other prefixes.
case "$PREFIX" in
    /usr|/usr/local)
        UNITDIR=$PREFIX/lib/systemd/system
        SYSUSERSDIR=$PREFIX/lib/sysusers.d ;;
    *)
        UNITDIR=/etc/systemd/system
        SYSUSERSDIR=/etc/sysusers.d ;;
esac
# journalctl reads catalogs only from /usr/lib and /usr/local/lib; for other
# prefixes see update_catalog below.
CATALOGDIR=$PREFIX/lib/systemd/catalog
CONFDIR=/etc/luminous-healing
MANIFEST=$CONFDIR/.installed-files

HOST_UNITS=0 ENABLE=1 UNINSTALL=0 PURGE=0
for a in "$@"; do
    case "$a" in
        --host-units) HOST_UNITS=1 ;;
        --no-enable) ENABLE=0 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

die() { echo "install.sh: $*" >&2; exit 1; }

# Rebuild the journal's catalog database. Under a prefix journalctl does not
# search, build it from a scratch root holding the system's catalogs plus
# ours (journalctl --root), and install the result; a later plain
# `journalctl --update-catalog` (e.g. a systemd upgrade) drops ours again,
# which the README says.
update_catalog() {
    case "$PREFIX" in
        /usr|/usr/local) journalctl --update-catalog ;;
        *)
            local r; r=$(mktemp -d)
            mkdir -p "$r/usr/lib/systemd/catalog" "$r/var/lib/systemd/catalog"
            cp /usr/lib/systemd/catalog/*.catalog "$r/usr/lib/systemd/catalog/" 2>/dev/null || true
            cp "$CATALOGDIR"/*.catalog "$r/usr/lib/systemd/catalog/" 2>/dev/null || true
            journalctl --root="$r" --update-catalog
            mkdir -p /var/lib/systemd/catalog
            install -m 0644 "$r/var/lib/systemd/catalog/database" /var/lib/systemd/catalog/database
            rm -rf "$r" ;;
    esac
}
[ "$(id -u)" = 0 ] || die "run as root"
[ -d /run/systemd/system ] || die "systemd is not running on this host (no /run/systemd/system)"

subst() {   # template -> file, install paths substituted
    sed -e "s#@PREFIX@#$PREFIX#g" -e "s#@BINDIR@#$BINDIR#g" -e "s#@LIBEXECDIR@#$LIBEXECDIR#g" "$1"
}

sockets() {  # every luminous-healing socket unit we ship
    for f in "$ROOT"/units/healing/*.socket.in; do basename "$f" .in; done
}

uninstall() {
    local s
    for s in $(sockets); do
        systemctl disable --now "$s" >/dev/null 2>&1 || true
        systemctl stop "${s%.socket}.service" >/dev/null 2>&1 || true
    done
    if [ -f "$MANIFEST" ]; then
        while read -r f; do rm -f "$f"; done < "$MANIFEST"
        rm -f "$MANIFEST"
    fi
    rmdir "$LIBEXECDIR" "$DOCDIR" 2>/dev/null || true
    [ "$HOST_UNITS" = 1 ] && PREFIX=$PREFIX UNITDIR=$UNITDIR "$ROOT/scripts/install-host-units.sh" --uninstall "$ROOT"
    [ "$PURGE" = 1 ] && rm -rf "$CONFDIR"
    systemctl daemon-reload
    update_catalog 2>/dev/null || true
    echo "luminous-healing uninstalled"
}

if [ "$UNINSTALL" = 1 ]; then uninstall; exit 0; fi

[ -x "$BUILD_DIR/luminous-healing" ] || die "no build in $BUILD_DIR: run 'cargo build --release --workspace' first"
mkdir -p "$BINDIR" "$LIBEXECDIR" "$UNITDIR" "$SYSUSERSDIR" "$CATALOGDIR" "$DOCDIR" "$CONFDIR"
chmod 0755 "$CONFDIR"
: > "$MANIFEST.new"
put() {   # put MODE SRC DEST: install and record it for --uninstall
    install -m "$1" "$2" "$3"
    echo "$3" >> "$MANIFEST.new"
}

put 0755 "$BUILD_DIR/luminous-healing" "$BINDIR/luminous-healing"
[ -x "$BUILD_DIR/healctl" ] && put 0755 "$BUILD_DIR/healctl" "$BINDIR/healctl"
for b in "$BUILD_DIR"/luminous-healing-*; do
    [ -x "$b" ] && [ -f "$b" ] || continue
    case "$b" in *.d) continue ;; esac
    put 0755 "$b" "$LIBEXECDIR/$(basename "$b")"
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for t in "$ROOT"/units/healing/*.in; do
    u=$(basename "$t" .in)
    subst "$t" > "$tmp/$u"
    put 0644 "$tmp/$u" "$UNITDIR/$u"
done
put 0644 "$ROOT/units/sysusers.d/luminous-healing.conf" "$SYSUSERSDIR/luminous-healing.conf"
put 0644 "$ROOT/units/catalog/luminous-healing.catalog" "$CATALOGDIR/luminous-healing.catalog"
for d in "$ROOT"/docs/*.md "$ROOT"/docs/man/*.md; do [ -f "$d" ] && put 0644 "$d" "$DOCDIR/$(basename "$d")"; done
mv "$MANIFEST.new" "$MANIFEST"

systemd-sysusers "$SYSUSERSDIR/luminous-healing.conf"
# The HMAC key: random, readable by root only (systemd hands the dispatcher
# its own copy through LoadCredential=). Never overwritten once it exists.
if [ ! -s "$CONFDIR/secret" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$CONFDIR/secret")
    echo "created $CONFDIR/secret (0600): give it to the clients that should sign requests"
fi
chmod 0600 "$CONFDIR/secret"
update_catalog || echo "install.sh: could not update the journal catalog (records are still written)" >&2
[ "$HOST_UNITS" = 1 ] && PREFIX=$PREFIX UNITDIR=$UNITDIR "$ROOT/scripts/install-host-units.sh" "$ROOT"
systemctl daemon-reload
if [ "$ENABLE" = 1 ]; then
    # shellcheck disable=SC2046
    systemctl enable --now $(sockets) >/dev/null 2>&1 || systemctl enable --now $(sockets)
    # a new binary must not keep running as the old one
    for s in $(sockets); do systemctl try-restart "${s%.socket}.service" 2>/dev/null || true; done
fi
echo "luminous-healing installed under $PREFIX (units in $UNITDIR)"

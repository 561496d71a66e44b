# Builds a journal catalog database (what `journalctl -x` reads from
# /var/lib/systemd/catalog/database) from the *.catalog files of the given
# directories; missing directories are skipped.
#
#   bash journal-catalog.sh OUT DIR...
#
# journalctl --update-catalog only reads /usr/lib/systemd/catalog and
# /usr/local/lib/systemd/catalog under its --root, and NixOS has neither:
# the files are gathered in a scratch root and compiled there.
set -euo pipefail
out=$1
shift
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd/catalog" "$root/var/lib/systemd/catalog"
for dir in "$@"; do
    for f in "$dir"/*.catalog; do
        if [ -e "$f" ]; then cp "$f" "$root/usr/lib/systemd/catalog/"; fi
    done
done
journalctl --root="$root" --update-catalog
install -m 0444 "$root/var/lib/systemd/catalog/database" "$out"

# Sourced by every end-to-end test in tests/. Boots a throw-away real systemd
# (scripts/sandbox.sh), installs the project into it the way a user would
# (scripts/install.sh, PREFIX=/opt/luminous-healing), runs the test cases and
# prints one closing line "N passed, N failed". Tear-down is trapped on exit.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SB="$ROOT/scripts/sandbox.sh"
PREFIX_IN=/opt/luminous-healing
TEST_NAME=$(basename "$0" .sh)
# container names become hostnames: keep them short and unique per run
export SDSANDBOX_NAME="lh-${TEST_NAME//_/-}"
SDSANDBOX_NAME="${SDSANDBOX_NAME:0:40}-$$"
export SDSANDBOX_BIND_RO="$ROOT:/src ${SDSANDBOX_BIND_RO:-}"
export SDSANDBOX_API_VFS_WRITABLE=${SDSANDBOX_API_VFS_WRITABLE:-0}

PASSED=0
FAILED=0
FAILED_NAMES=()

die() { echo "$TEST_NAME: $*" >&2; exit 1; }

# A missing prerequisite is a failure that says what to install, never a skip.
require() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 || die "missing '$cmd': apt-get install -y $pkg"
}
require systemd-nspawn systemd-container
require socat socat
require python3 python3
[ "$(id -u)" = 0 ] || die "end-to-end tests need root (they boot a container with systemd-nspawn)"
[ "${LH_NEEDS_BUILD:-1}" = 0 ] || [ -x "$ROOT/target/release/luminous-healing" ] || die "no release build: run 'cargo build --release --workspace' first"

# Run a command inside the container.
sb() { "$SB" run "$@"; }
# Run a command inside the container as a transient service (a real unit context).
sb_unit() { "$SB" unit-run "$@"; }

teardown() {
    [ -n "${TEARDOWN_HOOK:-}" ] && eval "$TEARDOWN_HOOK" || true
    "$SB" down >/dev/null 2>&1 || true
}

# Boot and install. Extra arguments go to systemd-nspawn.
boot() {
    trap teardown EXIT
    if [ "$SDSANDBOX_API_VFS_WRITABLE" = 1 ]; then
        SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 "$SB" up "$@" >/dev/null || die "sandbox did not boot"
    else
        "$SB" up "$@" >/dev/null || die "sandbox did not boot"
    fi
}

install_project() {
    sb env PREFIX=$PREFIX_IN BUILD_DIR=/src/target/release /src/scripts/install.sh "$@" >/dev/null \
        || die "scripts/install.sh failed inside the container"
}

# Create a user in the luminous-healing group (setpriv works without PAM).
add_caller() {
    local user=$1; shift
    sb useradd -m -U "$@" "$user" >/dev/null
}

# Run a command inside the container as USER (with its supplementary groups).
as_user() {
    local user=$1; shift
    local uid; uid=$(sb id -u "$user")
    sb setpriv --reuid="$uid" --regid="$(sb id -g "$user")" --init-groups "$@"
}

# journalctl -o json for our own fields; one JSON object a line.
journal_json() { sb journalctl --no-pager -o json SYSLOG_IDENTIFIER=luminous-healing "$@"; }

# Wait until CMD succeeds (up to $1 seconds).
wait_for() {
    local secs=$1; shift
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# --- assertions: each prints what was expected and returns 1 -----------------
fail() { echo "    assertion failed: $*" >&2; return 1; }
assert_eq() { [ "$1" = "$2" ] || fail "${3:-} expected [$2] got [$1]"; }
assert_contains() { case "$1" in *"$2"*) ;; *) fail "${3:-} [$2] not in [$1]";; esac; }
assert_not_contains() { case "$1" in *"$2"*) fail "${3:-} [$2] unexpectedly in [$1]";; esac; }

# run_case NAME FUNCTION: each case runs in a subshell with errexit, so the
# first failing command or assertion fails the case and the next case runs.
run_case() {
    local name=$1 fn=$2 t0 rc
    t0=$(date +%s%N)
    ( set -e; "$fn" ) > "/tmp/lh-case-$$.log" 2>&1
    rc=$?
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ $rc = 0 ]; then
        PASSED=$((PASSED + 1)); echo "  ok   $TEST_NAME::$name (${ms} ms)"
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name"); echo "  FAIL $TEST_NAME::$name (${ms} ms)"
        sed 's/^/      | /' "/tmp/lh-case-$$.log" | tail -n 40
    fi
    rm -f "/tmp/lh-case-$$.log"
}

# Closing line, read by scripts/test; exit status says whether all passed.
finish() {
    echo "$TEST_NAME: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

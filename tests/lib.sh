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
# Which systemd the container runs: 252 (the host's /usr, the default) or 257
# (a Debian 13 root, built once and cached; see scripts/sandbox.sh).
# scripts/test runs most files on both. LH_SYSTEMD_VERSION is the major
# version booted, for the few cases whose expectations must differ.
export SDSANDBOX_SYSTEMD=${SDSANDBOX_SYSTEMD:-252}

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
# /usr/bin/python3 comes from python3-minimal; the clients need the standard
# library of python3 (json, http.server, ctypes) too.
require python3 python3-minimal
python3 -c 'import json, http.server, ctypes, urllib.request' 2>/dev/null \
    || die "python3 lacks its standard library: apt-get install -y python3"
[ "$(id -u)" = 0 ] || die "end-to-end tests need root (they boot a container with systemd-nspawn)"
[ "${LH_NEEDS_BUILD:-1}" = 0 ] || [ -x "$ROOT/target/release/luminous-healing" ] || die "no release build: run 'cargo build --release --workspace' first"
LH_SYSTEMD_VERSION=$("$SB" version) || die "cannot prepare systemd $SDSANDBOX_SYSTEMD (scripts/sandbox.sh version)"
export LH_SYSTEMD_VERSION

# Run a command inside the container.
sb() { "$SB" run "$@"; }
# Run a command inside the container as a transient service (a real unit context).
sb_unit() { "$SB" unit-run "$@"; }

teardown() {
    [ -n "${TEARDOWN_HOOK:-}" ] && eval "$TEARDOWN_HOOK" || true
    if [ "${LH_KEEP:-0}" = 1 ]; then   # debugging: leave the container up
        echo "kept: SDSANDBOX_NAME=$SDSANDBOX_NAME $SB shell; then $SB down" >&2
        return 0
    fi
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
    local out
    out=$(sb env PREFIX=$PREFIX_IN BUILD_DIR=/src/target/release /src/scripts/install.sh "$@" 2>&1) \
        || { echo "$out" >&2; die "scripts/install.sh failed inside the container"; }
}

# boot_installed [CONFIG]: boot, install the project, and give the
# dispatcher CONFIG (config.toml) when there is one: how most tests start.
boot_installed() {
    boot
    install_project
    [ $# = 0 ] || set_config "$1"
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
    echo "$TEST_NAME@$LH_SYSTEMD_VERSION: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

# --- luminous-healing requests and audit records ------------------------------
SECRET_IN=/etc/luminous-healing/secret

# request [client.py options] ACTION [k=v ...]: one request as root, prints the reply JSON.
request() { sb python3 /src/tests/client.py --secret-file "$SECRET_IN" "$@"; }
# request_as USER ...: the same as USER (the secret is read by root first).
request_as() {
    local user=$1; shift
    local key; key=$(sb cat "$SECRET_IN")
    as_user "$user" python3 /src/tests/client.py --secret "$key" "$@"
}

# jfield FIELD: a top-level field of the JSON object on stdin ("null" for null).
jfield() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("null" if v is None else (str(v).lower() if isinstance(v,bool) else v))' "$1"; }

# The decision records (records with HEALING_OUTCOME) for a request id, as JSON lines.
decisions() {
    sb journalctl --no-pager -o json SYSLOG_IDENTIFIER=luminous-healing "HEALING_REQUEST_ID=$1" \
        | python3 -c 'import json,sys
for l in sys.stdin:
    e=json.loads(l)
    if "HEALING_OUTCOME" in e: print(json.dumps(e))'
}

# assert_one_decision ID OUTCOME [REASON-SUBSTRING]: exactly one decision with
# every audit field the design lists.
# count_decisions MATCH...: the requests the matching decision records stand
# for: the sum of HEALING_COUNT, 1 where absent (docs/audit.md).
count_decisions() {
    sb journalctl --no-pager -o json SYSLOG_IDENTIFIER=luminous-healing "$@" \
        | python3 -c 'import json, sys
print(sum(int(json.loads(l).get("HEALING_COUNT", "1")) for l in sys.stdin
          if l.strip() and json.loads(l).get("HEALING_OUTCOME")))'
}

assert_one_decision() {
    local id=$1 outcome=$2 reason=${3:-} recs n
    # journald writes asynchronously: give the record a moment to land
    for _ in $(seq 50); do
        recs=$(decisions "$id")
        [ -n "$recs" ] && break
        sleep 0.1
    done
    sleep 0.2; recs=$(decisions "$id")   # and a moment for a second one to show
    n=$(printf '%s' "$recs" | grep -c . || true)
    assert_eq "$n" 1 "decisions for $id:" || return 1
    printf '%s' "$recs" | python3 -c '
import json, sys
e = json.loads(sys.stdin.read())
want = ["MESSAGE_ID", "HEALING_REQUEST_ID", "HEALING_ACTION", "HEALING_OUTCOME", "HEALING_REASON",
        "HEALING_CALLER_UID", "HEALING_CALLER_GID", "HEALING_CALLER_PID", "HEALING_DURATION_MS",
        "HEALING_PARAMETERS"]
missing = [k for k in want if k not in e]
assert not missing, "missing audit fields %s in %s" % (missing, e)
assert e["HEALING_OUTCOME"] == sys.argv[1], e
assert sys.argv[2] in e["HEALING_REASON"], (sys.argv[2], e["HEALING_REASON"])
json.loads(e["HEALING_PARAMETERS"])
ids = {"denied": "f93433f8a0d54625bb05ee63e832c15c", "success": "f35f5bd52b974b76b3886613cc06b638",
       "failure": "f35f5bd52b974b76b3886613cc06b638"}
assert e["MESSAGE_ID"] == ids[e["HEALING_OUTCOME"]], e
' "$outcome" "$reason" || fail "audit record for $id"
}

# After failed starts the socket may have hit its trigger limit: bring both
# units back the way an admin would (socket first: a connection still queued
# on it would start the service again, and systemd refuses to start a socket
# whose service is active), then wait until the dispatcher answers at all
# (any reply, even a refusal by the rate limit, proves it is serving).
recover_dispatcher() {
    sb systemctl stop luminous-healing.socket luminous-healing.service 2>/dev/null || true
    sb systemctl reset-failed luminous-healing.service luminous-healing.socket 2>/dev/null || true
    # The socket's trigger limit (20 activations per 2 s) is not reset by
    # reset-failed or a restart: started again within those 2 s, its first
    # connection hits the limit once more. Let the interval pass.
    sleep 2.2
    sb systemctl start luminous-healing.socket
    local i r=""
    for i in $(seq 40); do
        r=$(request --id "recover-$$-$RANDOM$RANDOM" status 2>/dev/null) && [ -n "$(jfield request_id <<<"$r" 2>/dev/null)" ] && return 0
        sleep 0.25
    done
    fail "dispatcher did not come back: $r"
}

# assert_root_without_capabilities SERVICE: its main process runs as uid 0
# with empty capability sets and no new privileges, the measured privilege
# of the root actions (docs/privileges.md).
assert_root_without_capabilities() {
    local pid st
    pid=$(sb systemctl show -P MainPID "$1")
    [ "$pid" != 0 ] || fail "$1 not running"
    st=$(sb cat "/proc/$pid/status")
    assert_contains "$st" "$(printf 'Uid:\t0\t0\t0\t0')"
    assert_contains "$st" "$(printf 'CapEff:\t0000000000000000')"
    assert_contains "$st" "$(printf 'CapBnd:\t0000000000000000')"
    assert_contains "$st" "$(printf 'NoNewPrivs:\t1')"
}

# assert_non_root_refused CAPS SCRIPT: a dynamic (non-root) user holding the
# ambient capabilities CAPS cannot do what sh -c SCRIPT does (it prints WROTE
# only when it could): the experiment behind "root uid, no capabilities".
assert_non_root_refused() {
    local out
    out=$(sb systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes \
        -p AmbientCapabilities="$1" sh -c "$2" 2>&1 || true)
    assert_contains "$out" "Permission denied"
    assert_not_contains "$out" "WROTE"
}

# wait_for_dispatcher_log TEXT: the dispatcher's journal says TEXT within 5 s.
wait_for_dispatcher_log() {
    wait_for 5 sh -c "'$SB' run journalctl --no-pager -u luminous-healing.service -o cat | grep -qF -- \"\$0\"" "$1"
}

# Write the dispatcher's config inside the container and restart it.
set_config() {
    sb mkdir -p /etc/luminous-healing
    printf '%s\n' "$1" | sb tee /etc/luminous-healing/config.toml >/dev/null
    sb systemctl stop luminous-healing.service
}

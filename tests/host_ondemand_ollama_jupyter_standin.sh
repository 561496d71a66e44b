#!/usr/bin/env bash
# The opt-in on-demand variants (install-host-units.sh --on-demand=ollama,jupyter)
# in a real systemd: ollama-proxy.socket -> ollama-proxy.service ->
# ollama.service, and jupyter-proxy@alice.socket -> jupyter-proxy@alice ->
# jupyter@alice.service, including jupyter's token from /etc/credstore and
# that stopping jupyter@alice leaves alice's other IPC objects alone.
#
# STAND-IN BACKENDS: neither ollama nor JupyterLab exists here. Small python
# servers take the place of the binaries at the paths the units run (the
# NixOS ollama unit of tests/fixtures/host-units/ollama.service, and
# @BINDIR@/jupyter-lab): the ollama one listens where OLLAMA_HOST says, the
# jupyter one takes --ip/--port like jupyter-lab and, like it, answers 403
# unless ?token= matches the file named by JUPYTER_TOKEN_FILE. The units
# themselves are the shipped ones; only the proxies' idle time is cut to 3 s.
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"
[ -x /usr/lib/systemd/systemd-socket-proxyd ] || die "missing /usr/lib/systemd/systemd-socket-proxyd: apt-get install -y systemd"

IDLE=3
TOKEN="tok-$$-$RANDOM"
OLLAMA_BIN=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$ROOT/tests/fixtures/host-units/ollama.service")
state() { sb systemctl is-active "$1" 2>/dev/null || true; }
get() {   # get URL -> "STATUS BODY"
    sb python3 -c 'import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=30); print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)' "$1"
}

boot
# SupplementaryGroups= of the units (NixOS's render, our video and nvidia):
# a real GPU host has them; the container's /etc starts nearly empty.
for g in video render nvidia; do sb getent group $g >/dev/null || sb groupadd -r $g; done
sb useradd -m -U alice
sb env PREFIX=/opt/luminous-healing UNITDIR=/etc/systemd/system \
    /src/scripts/install-host-units.sh --on-demand=ollama,jupyter /src >/dev/null 2>&1 \
    || die "install-host-units.sh failed"
# ollama.service is the distribution's: here, the NixOS fixture.
sb cp /src/tests/fixtures/host-units/ollama.service /etc/systemd/system/ollama.service

sb mkdir -p /srv/standin "${OLLAMA_BIN%/*}" /opt/luminous-healing/bin
# The NixOS unit's PATH names store paths (coreutils, grep, ...): let them
# exist here, backed by Debian's tools, as they would on NixOS.
for d in $(sed -n 's/^Environment="PATH=\(.*\)"$/\1/p' "$ROOT/tests/fixtures/host-units/ollama.service" | tr ':' ' '); do
    sb mkdir -p "${d%/bin}"
    sb ln -sfn /usr/bin "$d"
done
sb sh -c 'cat > /srv/standin/serve.py' <<'PY'
import http.server, os, sys, pwd, time, urllib.parse
mode = sys.argv[1]
time.sleep(2)  # a model or a kernel takes a while: the readiness wait matters
if mode == "ollama":
    host, port = os.environ["OLLAMA_HOST"].rsplit(":", 1)
    token = None
else:
    args = dict(a[2:].split("=", 1) for a in sys.argv[2:] if "=" in a)
    host, port = args["ip"], args["port"]
    token = open(os.environ["JUPYTER_TOKEN_FILE"]).read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        if token is not None and q.get("token") != [token]:
            self.send_response(403); self.end_headers(); return
        body = f"{mode}-standin user={pwd.getpwuid(os.getuid()).pw_name} listen={host}:{port}".encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((host, int(port)), H).serve_forever()
PY
printf '#!/bin/sh\nexec /usr/bin/python3 /srv/standin/serve.py ollama\n' | sb sh -c "cat > $OLLAMA_BIN"
printf '#!/bin/sh\nexec /usr/bin/python3 /srv/standin/serve.py jupyter "$@"\n' \
    | sb sh -c 'cat > /opt/luminous-healing/bin/jupyter-lab'
sb chmod 0755 "$OLLAMA_BIN" /opt/luminous-healing/bin/jupyter-lab
for p in ollama-proxy.service jupyter-proxy@.service; do
    sb mkdir -p /etc/systemd/system/$p.d
    port=11435; [ "$p" = ollama-proxy.service ] || port=8889
    printf '[Service]\nExecStart=\nExecStart=/usr/lib/systemd/systemd-socket-proxyd --exit-idle-time=%ss 127.0.0.1:%s\n' "$IDLE" "$port" \
        | sb sh -c "cat > /etc/systemd/system/$p.d/idle.conf"
done
sb systemctl daemon-reload
# The token the way an administrator stores it.
sb systemctl start setup-system-credentials.service
sb sh -c "umask 077; printf '%s\n' '$TOKEN' > /etc/credstore/jupyter-token"
sb systemctl start ollama-proxy.socket jupyter-proxy@alice.socket

t_only_sockets() {
    assert_eq "$(state ollama-proxy.socket)" active ollama-proxy.socket
    assert_eq "$(state jupyter-proxy@alice.socket)" active jupyter-proxy@alice.socket
    assert_eq "$(state ollama.service)" inactive ollama.service
    assert_eq "$(state jupyter@alice.service)" inactive jupyter@alice.service
}

t_ollama_on_demand() {
    local r
    r=$(get http://127.0.0.1:11434/api/tags)
    # the server moved to 11435 (on-demand.conf), the socket holds 11434
    assert_eq "$r" "200 ollama-standin user=ollama listen=127.0.0.1:11435" reply
    assert_eq "$(state ollama-proxy.service)" active ollama-proxy.service
    assert_eq "$(state ollama.service)" active ollama.service
    wait_for $((IDLE + 15)) sh -c "[ \"\$($SB run systemctl is-active ollama.service)\" = inactive ]" \
        || fail "ollama.service still $(state ollama.service) after the idle time"
    assert_eq "$(state ollama-proxy.service)" inactive ollama-proxy.service
    assert_eq "$(state ollama-proxy.socket)" active "ollama-proxy.socket after idle"
}

# (ipcs -m -i ID exits 0 even for an id that does not exist: look in the list.)
has_shm() { sb ipcs -m | awk -v id="$1" '$2 == id { found = 1 } END { exit !found }'; }
t_jupyter_on_demand() {
    local r ipc
    # A shared memory segment of alice's outside the unit (her desktop
    # session's, say): jupyter@alice has RemoveIPC=no, so its stop must
    # leave it alone.
    ipc=$(as_user alice ipcmk -M 4096 | sed -n 's/^Shared memory id: //p')
    [ -n "$ipc" ] || fail "could not create a segment as alice"
    r=$(get "http://127.0.0.1:8888/lab?token=wrong")
    assert_eq "$r" 403 "reply with a wrong token"
    r=$(get "http://127.0.0.1:8888/lab?token=$TOKEN")
    # runs as alice, got the root-only token through LoadCredential=
    assert_eq "$r" "200 jupyter-standin user=alice listen=127.0.0.1:8889" reply
    assert_eq "$(state jupyter@alice.service)" active jupyter@alice.service
    # the token is in no unit property and no environment variable
    assert_not_contains "$(sb systemctl show jupyter@alice.service)" "$TOKEN" "systemctl show"
    assert_not_contains "$(sb cat /proc/$(sb systemctl show -P MainPID jupyter@alice.service)/environ | tr '\0' '\n')" "$TOKEN" environ
    wait_for $((IDLE + 15)) sh -c "[ \"\$($SB run systemctl is-active jupyter@alice.service)\" = inactive ]" \
        || fail "jupyter@alice still $(state jupyter@alice.service) after the idle time"
    assert_eq "$(state jupyter-proxy@alice.service)" inactive jupyter-proxy@alice.service
    assert_eq "$(state jupyter-proxy@alice.socket)" active "jupyter-proxy@alice.socket after idle"
    has_shm "$ipc" || fail "stopping jupyter@alice deleted alice's shared memory segment"
}

run_case only_sockets_before_any_connection t_only_sockets
run_case ollama_starts_on_demand_and_stops_idle t_ollama_on_demand
run_case jupyter_token_and_on_demand t_jupyter_on_demand
finish

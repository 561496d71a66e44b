#!/usr/bin/env bash
# The on-demand chain of llama-cpp.socket -> llama-cpp-proxy.service
# (systemd-socket-proxyd) -> llama-cpp.service, in a real systemd.
#
# STAND-IN BACKEND: no llama.cpp binary exists here. A small python3 HTTP
# server sits at the path the unit runs (@BINDIR@/llama-server), takes
# --host/--port like llama-server, starts two seconds late like a loading
# model, and answers with the arguments it was given. The units are the
# shipped ones, unchanged but for the proxy's idle time (3 s).
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"
[ -x /usr/lib/systemd/systemd-socket-proxyd ] || die "missing /usr/lib/systemd/systemd-socket-proxyd: apt-get install -y systemd"

MARKER=/srv/standin/llama-server.py
IDLE=3
state() { sb systemctl is-active "$1" 2>/dev/null || true; }
# The client: python3, as a browser or an OpenAI client would connect.
request() {
    sb python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=30).read().decode(), end="")'
}
all_stopped() {
    [ "$(state llama-cpp-proxy.service)" = inactive ] && [ "$(state llama-cpp.service)" = inactive ]
}

boot
sb env PREFIX=/opt/luminous-healing UNITDIR=/etc/systemd/system \
    /src/scripts/install-host-units.sh /src >/dev/null 2>&1 || die "install-host-units.sh failed"
sb mkdir -p /srv/standin /opt/luminous-healing/bin /etc/default /etc/systemd/system/llama-cpp-proxy.service.d
sb sh -c 'cat > /srv/standin/llama-server.py' <<'PY'
import http.server, json, sys, time
argv = sys.argv[1:]
time.sleep(2)  # loading the model: the readiness wait must cover this
if "broken" in argv[argv.index("--model") + 1]:
    sys.exit("cannot load model")
host, port = argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"marker": sys.argv[0], "argv": argv}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((host, port), H).serve_forever()
PY
printf '#!/bin/sh\nexec /usr/bin/python3 /srv/standin/llama-server.py "$@"\n' \
    | sb sh -c 'cat > /opt/luminous-healing/bin/llama-server && chmod 0755 /opt/luminous-healing/bin/llama-server'
# The administrator's tunables: a two-word flag and a LoRA adapter.
printf 'LLAMA_NUMA=--numa distribute\nLLAMA_LORA=--lora /var/lib/llama-cpp/adapters/a.gguf\nLLAMA_THREADS=4\n' \
    | sb sh -c 'cat > /etc/default/llama-cpp'
sb sh -c 'cat > /etc/systemd/system/llama-cpp-proxy.service.d/idle.conf' <<UNIT
[Service]
ExecStart=
ExecStart=/usr/lib/systemd/systemd-socket-proxyd --exit-idle-time=${IDLE}s 127.0.0.1:8080
UNIT
sb systemctl daemon-reload
sb systemctl start llama-cpp.socket

t_only_socket_before() {
    assert_eq "$(state llama-cpp.socket)" active llama-cpp.socket
    assert_eq "$(state llama-cpp-proxy.service)" inactive llama-cpp-proxy.service
    assert_eq "$(state llama-cpp.service)" inactive llama-cpp.service
    assert_contains "$(sb systemctl list-sockets --no-legend --no-pager)" "127.0.0.1:8080" list-sockets
}

t_connection_starts_chain() {
    local reply
    reply=$(request) || fail "no reply through the socket"
    assert_contains "$reply" "$MARKER" "reply"
    # the shipped command line, with /etc/default/llama-cpp applied: flags
    # split into words, unset flags absent (not empty arguments)
    local args
    args=$(python3 -c 'import json, sys; print(" ".join(json.loads(sys.stdin.read())["argv"]))' <<<"$reply")
    assert_eq "$args" "--host 127.0.0.1 --port 8080 --model /var/lib/llama-cpp/models/model.gguf --threads 4 --batch-size 512 --ctx-size 4096 --temp 0.7 --top-k 40 --top-p 0.9 --repeat-penalty 1.1 --n-gpu-layers 99 --numa distribute --lora /var/lib/llama-cpp/adapters/a.gguf" "llama-server arguments"
    assert_not_contains "$reply" '""' "empty argument in"
    assert_eq "$(state llama-cpp-proxy.service)" active llama-cpp-proxy.service
    assert_eq "$(state llama-cpp.service)" active llama-cpp.service
}

t_backend_isolated() {
    # The backend listens on 8080 inside its own network namespace (the
    # socket holds 8080 outside): only the proxy, which joined it, reaches it.
    local pid ns_backend ns_host
    pid=$(sb systemctl show -P MainPID llama-cpp.service)
    ns_backend=$(sb readlink "/proc/$pid/ns/net")
    ns_host=$(sb readlink /proc/1/ns/net)
    [ "$ns_backend" != "$ns_host" ] || fail "backend shares the host's network namespace"
    pid=$(sb systemctl show -P MainPID llama-cpp-proxy.service)
    assert_eq "$(sb readlink "/proc/$pid/ns/net")" "$ns_backend" "proxy's network namespace"
    # and it runs as a dynamic user, not root
    [ "$(sb stat -c %u "/proc/$(sb systemctl show -P MainPID llama-cpp.service)")" != 0 ] || fail "backend runs as root"
}

t_idle_stops_everything() {
    local t0=$SECONDS
    wait_for $((IDLE + 15)) all_stopped || fail "still running after $((IDLE + 15)) s idle: proxy=$(state llama-cpp-proxy.service) backend=$(state llama-cpp.service)"
    # not before the idle time: the proxy must not exit at once
    [ $((SECONDS - t0)) -ge $((IDLE - 1)) ] || fail "stopped after $((SECONDS - t0)) s, before the ${IDLE}s idle time"
    assert_eq "$(state llama-cpp.socket)" active "llama-cpp.socket after idle"
    # stopped cleanly, not failed: Restart=always must not bring it back
    assert_eq "$(sb systemctl show -P Result llama-cpp.service)" success "backend Result"
    sleep 1
    assert_eq "$(state llama-cpp.service)" inactive "backend a second later"
}

t_restarts_on_demand() {
    assert_contains "$(request)" "$MARKER" "reply after an idle stop"
    assert_eq "$(state llama-cpp.service)" active llama-cpp.service
}

t_dead_server_fails_fast() {
    # A server that dies while loading must fail the start at once, not
    # leave the readiness wait spinning until the 10 min start timeout.
    wait_for $((IDLE + 15)) all_stopped || fail "server from the previous case still running"
    sb sh -c 'echo LLAMA_MODEL=/var/lib/llama-cpp/models/broken.gguf >> /etc/default/llama-cpp'
    local t0=$SECONDS
    if sb systemctl start llama-cpp.service 2>/dev/null; then fail "start succeeded with a dying server"; fi
    [ $((SECONDS - t0)) -le 8 ] || fail "start took $((SECONDS - t0)) s to fail"
    sb systemctl stop llama-cpp.service
    sb systemctl reset-failed llama-cpp.service
    sb sed -i '/broken.gguf/d' /etc/default/llama-cpp
}

run_case only_socket_active_before_any_connection t_only_socket_before
run_case connection_starts_proxy_and_backend t_connection_starts_chain
run_case backend_in_private_netns_with_proxy t_backend_isolated
run_case idle_stops_proxy_and_backend t_idle_stops_everything
run_case next_connection_starts_it_again t_restarts_on_demand
run_case server_dying_while_loading_fails_fast t_dead_server_fails_fast
finish

#!/usr/bin/env bash
# Evaluates, with Nix's builtins only, the parts of nixos/ that need no
# nixpkgs, and asserts their values:
#   - nixos/actions.nix: the action list every part is generated from;
#   - nixos/lib/config.nix: the config.toml the module generates, checked
#     key by key and then loaded by the real dispatcher (--check-config);
#   - the option declarations of every module (names, types, defaults),
#     through nixos/tests/eval/stub-lib.nix (shape only: see that file);
#   - the modules' config sections, rendered for several configurations
#     (nixos/tests/eval/render*.nix: their own logic, not the module
#     system's merging);
#   - flake.nix's outputs, with a stand-in nixpkgs input;
#   - nixos/lib/journal-catalog.sh, with the machine's journalctl;
#   - nixos/package.nix's install script, run against a fake build output
#     and the real units/ and docs/: layout, substitution, no leftovers;
#   - the VM tests' Python (nixos/tests/vm.nix, services-vm.nix) compiles.
# What is NOT evaluated here (nixpkgs cannot be fetched on this machine):
# the module system merge of the modules' config sections, the build, and
# the VM test; those are the flake's checks (`nix flake check`).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

for tool in nix-instantiate python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case $tool in
            nix-instantiate) pkg=nix-bin ;;
            python3) pkg=python3 ;;
        esac
        echo "nix_eval: $tool not found: apt-get install -y --no-install-recommends $pkg" >&2
        exit 1
    fi
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/     /'
    failed=$((failed + 1))
}

# nixeval NAME EXPR-FILE-OR--E...: strict JSON evaluation into $TMP/NAME.json
nixeval() {
    local name=$1
    shift
    local err
    if err=$(nix-instantiate --eval --strict --json "$@" 2>&1 >"$TMP/$name.json"); then
        return 0
    fi
    fail "evaluate $name" "$err"
    return 1
}

# check NAME JSON-FILE PYTHON: runs PYTHON with `d` bound to the JSON value;
# the snippet asserts, and an AssertionError's message is the failure text.
check() {
    local name=$1 file=$2 code=$3 out
    if out=$(python3 - "$file" 2>&1 <<EOF
import json, sys
d = json.load(open(sys.argv[1]))
$code
EOF
    ); then
        ok "$name"
    else
        fail "$name" "$out"
    fi
}

# --- actions.nix ------------------------------------------------------------
if nixeval actions nixos/actions.nix; then
    check "actions.nix lists the eight actions by wire name" "$TMP/actions.json" '
assert d == ["restart_service", "set_cpu_governor", "clear_system_cache",
             "adjust_swappiness", "kill_process", "restart_network",
             "clean_nix_store", "rollback_generation"], d'
fi

# --- lib/config.nix: the generated config.toml -------------------------------
# What the module passes with every option at its default.
DEFAULT_ACTIONS='builtins.listToAttrs (map (n: { name = n; value = { enable = n != "rollback_generation"; rateLimit = null; timeoutSecs = null; }
  // (if n == "restart_service" then { allowedUnits = null; breaker = null; } else { })
  // (if n == "kill_process" then { allowedUnits = [ ]; } else { })
  // (if n == "rollback_generation" then { nixosRebuild = null; } else { })
  // (if n == "clean_nix_store" then { nixCollectGarbage = null; } else { }); }) (import ./nixos/actions.nix))'

if nixeval config-default -E "import ./nixos/lib/config.nix {
      group = \"luminous-healing\"; allowedUsers = [ ]; protocols = [ \"v1\" \"v2\" ];
      idleTimeout = 60; actions = $DEFAULT_ACTIONS; }"; then
    check "config.toml with defaults: documented top-level keys and values" "$TMP/config-default.json" '
assert d["allowed_groups"] == ["luminous-healing"], d
assert d["allowed_users"] == [], d
assert d["protocols"] == ["v1", "v2"], d
assert d["idle_timeout_secs"] == 60, d
assert set(d) == {"allowed_groups", "allowed_users", "protocols", "idle_timeout_secs", "actions"}, sorted(d)'
    check "config.toml with defaults: one table per action, enabled only (binary defaults apply), rollback off" "$TMP/config-default.json" '
acts = d["actions"]
assert len(acts) == 8, sorted(acts)
for name, t in acts.items():
    assert t == {"enabled": name != "rollback_generation"}, (name, t)'
    check "config.toml with defaults: no callers, status_rate_limit, max_ids_per_caller or nix paths (binary defaults apply)" "$TMP/config-default.json" '
for k in ["callers", "status_rate_limit", "max_ids_per_caller", "nix_profiles_dir", "current_system"]:
    assert k not in d, (k, d)'
fi

if nixeval config-custom -E "import ./nixos/lib/config.nix {
      group = \"ops\"; allowedUsers = [ \"alice\" \"bob\" ]; protocols = [ \"v2\" ];
      idleTimeout = 15;
      actions = ($DEFAULT_ACTIONS) // {
        restart_service = { enable = true; rateLimit = { max = 3; windowSecs = 600; }; timeoutSecs = 20;
                            allowedUnits = [ \"nginx.service\" \"ollama.service\" ]; };
        rollback_generation = { enable = false; rateLimit = null; timeoutSecs = null; nixosRebuild = \"/opt/nr\"; };
        clean_nix_store = { enable = true; rateLimit = null; timeoutSecs = 900; nixCollectGarbage = \"/opt/ncg\"; };
        kill_process = { enable = true; rateLimit = null; timeoutSecs = null; allowedUnits = [ \"stray.service\" \"app-*\" ]; };
        adjust_swappiness = { enable = true; rateLimit = null; timeoutSecs = null;
                              allowedUnits = [ \"leak.service\" ]; breaker = { max = 1; windowSecs = 1; };
                              nixosRebuild = \"/leak\"; };
      };
      callers = { monitor = { actions = [ \"restart_service\" \"status\" ]; units = [ \"app-*\" \"worker@?\" ]; };
                  \"@ops\" = { actions = [ \"kill_process\" ]; units = null; }; };
      statusRateLimit = { max = 20; windowSecs = 30; }; maxIdsPerCaller = 500;
      nixProfilesDir = \"/nix/var/nix/profiles\"; currentSystem = \"/run/current-system\"; }"; then
    check "config.toml with options set: values land under the schema's keys" "$TMP/config-custom.json" '
assert d["allowed_groups"] == ["ops"] and d["allowed_users"] == ["alice", "bob"], d
assert d["protocols"] == ["v2"] and d["idle_timeout_secs"] == 15, d
a = d["actions"]
assert a["restart_service"] == {"enabled": True, "rate_limit": {"max": 3, "window_secs": 600},
                                "timeout_secs": 20, "allowed_units": ["nginx.service", "ollama.service"]}, a["restart_service"]
assert a["rollback_generation"] == {"enabled": False, "nixos_rebuild": "/opt/nr"}, a["rollback_generation"]
assert a["clean_nix_store"] == {"enabled": True, "timeout_secs": 900, "nix_collect_garbage": "/opt/ncg"}, a["clean_nix_store"]'
    check "config.toml: an action-specific key never leaks onto another action" "$TMP/config-custom.json" '
assert d["actions"]["adjust_swappiness"] == {"enabled": True}, d["actions"]["adjust_swappiness"]'
    check "config.toml: kill_process allowed_units (globs), per-caller rules, status_rate_limit, max_ids_per_caller, nix paths" "$TMP/config-custom.json" '
assert d["actions"]["kill_process"] == {"enabled": True, "allowed_units": ["stray.service", "app-*"]}, d["actions"]["kill_process"]
assert d["callers"] == {"monitor": {"actions": ["restart_service", "status"], "units": ["app-*", "worker@?"]},
                        "@ops": {"actions": ["kill_process"]}}, d["callers"]
assert d["status_rate_limit"] == {"max": 20, "window_secs": 30}, d
assert d["max_ids_per_caller"] == 500, d
assert d["nix_profiles_dir"] == "/nix/var/nix/profiles" and d["current_system"] == "/run/current-system", d'
fi
if nixeval config-breaker -E "import ./nixos/lib/config.nix {
      group = \"ops\"; protocols = [ \"v2\" ]; idleTimeout = 60;
      actions = ($DEFAULT_ACTIONS) // {
        restart_service = { enable = true; rateLimit = null; timeoutSecs = null; allowedUnits = null;
                            breaker = { max = 2; windowSecs = 3600; }; };
        rollback_generation = { enable = true; rateLimit = null; timeoutSecs = null; nixosRebuild = null; };
      }; }"; then
    check "config.toml: restart_service breaker, rollback_generation enabled" "$TMP/config-breaker.json" '
a = d["actions"]
assert a["restart_service"] == {"enabled": True, "breaker": {"max": 2, "window_secs": 3600}}, a["restart_service"]
assert a["rollback_generation"] == {"enabled": True}, a["rollback_generation"]'
fi

# The same generator, fed to the dispatcher's own parser. Group and user are
# ones that exist on any machine (the dispatcher resolves them at start).
# pkgs.formats.toml (remarshal) is not available here: tests/nix_eval.sh
# writes the TOML with a small emitter for this data shape instead.
toml_from_json() {
    python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def val(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return str(v)
    if isinstance(v, str): return json.dumps(v)
    if isinstance(v, list): return "[" + ", ".join(val(x) for x in v) + "]"
    if isinstance(v, dict): return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)
import re
def key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)
def table(prefix, t):
    scalars = {k: v for k, v in t.items() if not isinstance(v, dict) or k == "rate_limit"}
    tables = {k: v for k, v in t.items() if isinstance(v, dict) and k != "rate_limit"}
    if prefix and scalars:
        print(f"[{prefix}]")
    for k, v in scalars.items():
        print(f"{key(k)} = {val(v)}")
    for k, v in tables.items():
        table(f"{prefix}.{key(k)}" if prefix else key(k), v)
table("", d)
EOF
}

dispatcher_bin() {
    for b in target/release/luminous-healing target/debug/luminous-healing; do
        [ -x "$b" ] && { echo "$b"; return 0; }
    done
    command -v cargo >/dev/null 2>&1 || return 1
    cargo build -q -p luminous-healing >&2 || return 1
    echo target/debug/luminous-healing
}

# check_config NAME JSON: the JSON rendered to TOML and loaded by the real
# dispatcher; the check passes when --check-config accepts it.
check_config() {
    local name=$1 json=$2 out bin
    toml_from_json "$json" >"$TMP/$(basename "$json" .json).toml"
    if ! bin=$(dispatcher_bin); then
        fail "$name" "no dispatcher binary and no cargo to build one: run 'cargo build -p luminous-healing'"
    elif out=$(LUMINOUS_HEALING_SECRET=nix-eval-test "$bin" --check-config --config "$TMP/$(basename "$json" .json).toml" 2>&1); then
        ok "$name"
    else
        fail "$name" "$out
$(cat "$TMP/$(basename "$json" .json).toml")"
    fi
}

if nixeval config-check -E "import ./nixos/lib/config.nix {
      group = \"root\"; allowedUsers = [ \"root\" ]; protocols = [ \"v1\" \"v2\" ]; idleTimeout = 30;
      actions = ($DEFAULT_ACTIONS) // {
        restart_service = { enable = true; rateLimit = { max = 3; windowSecs = 600; }; timeoutSecs = 20;
                            allowedUnits = [ \"nginx.service\" \"app-*\" \"worker@?\" ];
                            breaker = { max = 2; windowSecs = 3600; }; };
        rollback_generation = { enable = false; rateLimit = null; timeoutSecs = null;
                                nixosRebuild = \"/run/current-system/sw/bin/nixos-rebuild\"; };
        clean_nix_store = { enable = true; rateLimit = null; timeoutSecs = 900;
                            nixCollectGarbage = \"/run/current-system/sw/bin/nix-collect-garbage\"; };
        kill_process = { enable = true; rateLimit = null; timeoutSecs = null; allowedUnits = [ \"app-*.service\" ]; };
      };
      callers = { root = { actions = [ \"restart_service\" \"status\" ]; units = [ \"app-*\" ]; };
                  \"@root\" = { actions = [ \"kill_process\" \"clean_nix_store\" ]; }; };
      statusRateLimit = { max = 60; windowSecs = 60; }; maxIdsPerCaller = 1000;
      nixProfilesDir = \"/nix/var/nix/profiles\"; currentSystem = \"/run/current-system\"; }"; then
    check_config "generated config.toml (every key: callers, globs, breaker, status_rate_limit, ...) accepted by luminous-healing --check-config" \
        "$TMP/config-check.json"
fi
if nixeval config-check-rollback -E "import ./nixos/lib/config.nix {
      group = \"root\"; protocols = [ \"v2\" ]; idleTimeout = 60;
      actions = ($DEFAULT_ACTIONS) // {
        rollback_generation = { enable = true; rateLimit = { max = 1; windowSecs = 86400; }; timeoutSecs = null; nixosRebuild = null; };
      }; }"; then
    check_config "generated config.toml with rollback_generation enabled accepted by luminous-healing --check-config" \
        "$TMP/config-check-rollback.json"
fi

# --- the module's config section, rendered for three configurations ------------
if nixeval render-default nixos/tests/eval/render.nix --arg set '{
      enable = true; secretKeyFile = "/run/secrets/lh"; allowedUsers = [ "alice" ];
      actions.restart_service.allowedUnits = [ "nginx.service" ]; }'; then
    check "module, typical configuration: sockets, drop-ins, users, policy; rollback_generation off" "$TMP/render-default.json" '
actions = ["restart_service", "set_cpu_governor", "clear_system_cache", "adjust_swappiness",
           "kill_process", "restart_network", "clean_nix_store"]
sd = d["systemd"]
assert "luminous-healing-rollback_generation" not in sd["sockets"], sorted(sd["sockets"])
main = sd["sockets"]["luminous-healing"]
assert main["listenStreams"] == ["", "/run/luminous-healing.sock"], main
assert main["wantedBy"] == ["sockets.target"] and main["socketConfig"] == {"SocketGroup": "luminous-healing"}, main
for a in actions:
    sock = sd["sockets"]["luminous-healing-" + a]
    assert sock == {"wantedBy": ["sockets.target"],
                    "socketConfig": {"SocketUser": "luminous-healing", "SocketGroup": "luminous-healing"}}, (a, sock)
for a in actions + ["rollback_generation"]:
    svc = sd["services"]["luminous-healing-" + a]
    assert set(svc) == {"restartTriggers"}, (a, svc)   # ExecStart= stays the package one
disp = sd["services"]["luminous-healing"]
assert "wantedBy" not in disp, disp
assert disp["serviceConfig"]["LoadCredential"] == ["", "secret:/run/secrets/lh"], disp
assert sd["packages"] == ["/nix/store/eval-luminous-healing"], sd["packages"]
assert d["users"]["users"]["luminous-healing"] == {"isSystemUser": True, "group": "luminous-healing",
                                                   "description": "luminous-healing dispatcher"}, d["users"]
assert d["users"]["groups"]["luminous-healing"]["members"] == ["alice"], d["users"]
toml = d["environment"]["etc"]["luminous-healing/config.toml"]["source"]["value"]
assert toml["allowed_users"] == ["alice"] and toml["actions"]["restart_service"]["allowed_units"] == ["nginx.service"], toml
assert toml["actions"]["rollback_generation"] == {"enabled": False}, toml["actions"]
assert "callers" not in toml and "status_rate_limit" not in toml, toml
assert all(x["assertion"] for x in d["assertions"]), d["assertions"]
assert d.get("warnings", []) == [], d.get("warnings")
assert "security" not in d, "the module must not touch security.* (no sudo rules)"
cat = sd["services"]["luminous-healing-journal-catalog"]
assert cat["wantedBy"] == ["multi-user.target"] and cat["after"] == ["systemd-journal-catalog-update.service"], cat'
fi

if nixeval render-legacy nixos/tests/eval/render.nix --arg uids '{ healer = 990; }' --arg set '{
      enable = true; secretKey = "inline"; socketPath = "/run/heal.sock"; user = "healer"; group = "ops";
      actions.rollback_generation.enable = false; journalCatalog = false;
      settings = { max_connections = 16; }; }'; then
    check "module, earlier-module configuration: inline secret, custom socket/user/group, disabled action" "$TMP/render-legacy.json" '
sd = d["systemd"]
main = sd["sockets"]["luminous-healing"]
assert main["listenStreams"] == ["", "/run/heal.sock"] and main["socketConfig"]["SocketGroup"] == "ops", main
assert "luminous-healing-rollback_generation" not in sd["sockets"], sorted(sd["sockets"])
actions = [n for n in sd["sockets"] if n.startswith("luminous-healing-") and n != "luminous-healing-varlink"]
assert len(actions) == 7, sorted(sd["sockets"])
assert sd["sockets"]["luminous-healing-varlink"]["socketConfig"] == {"SocketGroup": "ops"}, sd["sockets"]["luminous-healing-varlink"]
for name, sock in sd["sockets"].items():
    if name not in ("luminous-healing", "luminous-healing-varlink"):
        assert sock["socketConfig"] == {"SocketUser": "healer", "SocketGroup": "ops"}, (name, sock)
disp = sd["services"]["luminous-healing"]["serviceConfig"]
assert disp["LoadCredential"] == ["", "secret:/nix/store/eval-luminous-healing-secret"], disp
assert (disp["User"], disp["Group"]) == ("healer", "ops"), disp
for name, svc in sd["services"].items():
    if name.startswith("luminous-healing-"):
        a = name[len("luminous-healing-"):]
        assert svc["serviceConfig"]["ExecStart"] == ["",
            "/nix/store/eval-luminous-healing/libexec/luminous-healing/luminous-healing-%s --dispatcher-uid 990" % a], svc
assert "luminous-healing-journal-catalog" not in sd["services"]
assert d["users"]["users"]["healer"]["group"] == "ops", d["users"]
toml = d["environment"]["etc"]["luminous-healing/config.toml"]["source"]["value"]
assert toml["max_connections"] == 16 and toml["allowed_groups"] == ["ops"], toml
assert toml["actions"]["rollback_generation"] == {"enabled": False}, toml["actions"]
assert all(x["assertion"] for x in d["assertions"]), d["assertions"]
w = " ".join(d["warnings"])
assert "secretKey puts the secret in the world-readable" in w and "allowedUnits is unset" in w, d["warnings"]'
fi

if nixeval render-callers nixos/tests/eval/render.nix --arg set '{
      enable = true; secretKeyFile = "/run/secrets/lh"; allowedUsers = [ "monitor" ];
      callers = { monitor = { actions = [ "restart_service" "clear_system_cache" ]; units = [ "app-*" ]; };
                  "@ops".actions = [ "restart_service" "kill_process" "rollback_generation" ]; };
      actions.restart_service = { allowedUnits = [ "app-*" "nginx.service" ]; breaker = { max = 2; windowSecs = 3600; }; };
      actions.kill_process.allowedUnits = [ "app-*.service" ];
      actions.rollback_generation.enable = true;
      statusRateLimit = { max = 60; windowSecs = 60; }; maxIdsPerCaller = 1000; }'; then
    check "module, callers and rollback enabled: rules, globs, breaker, limits in config.toml; rollback socket on" "$TMP/render-callers.json" '
sd = d["systemd"]
assert "luminous-healing-rollback_generation" in sd["sockets"], sorted(sd["sockets"])
assert len([n for n in sd["sockets"] if n.startswith("luminous-healing-") and n != "luminous-healing-varlink"]) == 8, sorted(sd["sockets"])
assert sd["sockets"]["luminous-healing-varlink"] == {"wantedBy": ["sockets.target"], "socketConfig": {"SocketGroup": "luminous-healing"}}, sd["sockets"]
toml = d["environment"]["etc"]["luminous-healing/config.toml"]["source"]["value"]
assert toml["allowed_groups"] == ["luminous-healing"], toml
toml = d["environment"]["etc"]["luminous-healing/config.toml"]["source"]["value"]
assert toml["callers"] == {"monitor": {"actions": ["restart_service", "clear_system_cache"], "units": ["app-*"]},
                           "@ops": {"actions": ["restart_service", "kill_process", "rollback_generation"]}}, toml["callers"]
a = toml["actions"]
assert a["restart_service"] == {"enabled": True, "allowed_units": ["app-*", "nginx.service"],
                                "breaker": {"max": 2, "window_secs": 3600}}, a["restart_service"]
assert a["kill_process"] == {"enabled": True, "allowed_units": ["app-*.service"]}, a["kill_process"]
assert a["rollback_generation"] == {"enabled": True}, a["rollback_generation"]
assert toml["status_rate_limit"] == {"max": 60, "window_secs": 60} and toml["max_ids_per_caller"] == 1000, toml
assert all(x["assertion"] for x in d["assertions"]), d["assertions"]
assert d.get("warnings", []) == [], d.get("warnings")'
fi
if nixeval render-varlink-group nixos/tests/eval/render.nix --arg set '{
      enable = true; secretKeyFile = "/run/secrets/lh"; varlink.group = "monitoring"; }'; then
    check "module, varlink.group: the Varlink socket is that group's, which the dispatcher also admits" "$TMP/render-varlink-group.json" '
sd = d["systemd"]
assert sd["sockets"]["luminous-healing-varlink"]["socketConfig"] == {"SocketGroup": "monitoring"}, sd["sockets"]
assert sd["sockets"]["luminous-healing"]["socketConfig"]["SocketGroup"] == "luminous-healing", sd["sockets"]
toml = d["environment"]["etc"]["luminous-healing/config.toml"]["source"]["value"]
assert toml["allowed_groups"] == ["luminous-healing", "monitoring"], toml'
fi
if nixeval render-varlink-off nixos/tests/eval/render.nix --arg set '{
      enable = true; secretKeyFile = "/run/secrets/lh"; varlink = { enable = false; group = "monitoring"; }; }'; then
    check "module, varlink.enable = false: the Varlink socket is masked, its group not admitted" "$TMP/render-varlink-off.json" '
sd = d["systemd"]
assert sd["sockets"]["luminous-healing-varlink"] == {"enable": False}, sd["sockets"]["luminous-healing-varlink"]
toml = d["environment"]["etc"]["luminous-healing/config.toml"]["source"]["value"]
assert toml["allowed_groups"] == ["luminous-healing"], toml'
fi
if nixeval render-badcaller nixos/tests/eval/render.nix --arg set '{
      enable = true; secretKeyFile = "/run/secrets/lh"; callers = { "-x".actions = [ ]; "a b".actions = [ ]; ok.actions = [ ]; }; }'; then
    check "module: a callers key that is no user or @group name fails its assertion, naming it" "$TMP/render-badcaller.json" '
failed = [x["message"] for x in d["assertions"] if not x["assertion"]]
assert len(failed) == 1 and "\"-x\"" in failed[0] and "\"a b\"" in failed[0] and "\"ok\"" not in failed[0], failed'
fi

if nixeval render-nosecret nixos/tests/eval/render.nix --arg set '{ enable = true; user = "renamed"; }'; then
    check "module: no secret, or a renamed user without a uid, fail their assertions" "$TMP/render-nosecret.json" '
failed = [x["message"] for x in d["assertions"] if not x["assertion"]]
assert len(failed) == 2, failed
assert "no secret configured" in failed[0] and "Set users.users.renamed.uid" in failed[1], failed'
fi

# --- the host services' config sections, rendered ---------------------------------
ALL_SERVICES='{ ml.llama-cpp.enable = true; ml.ollama.enable = true;
  development.jupyter = { enable = true; user = "alice"; };
  security.clamav.enable = true; security.sshd.enable = true; system.credstore.enable = true;
  hardware.cudaCache.enable = true; hardware.gpuMonitor.enable = true;
  virtualization.dockerPrePull.enable = true; virtualization.vmShared.enable = true;
  monitoring.prometheus.enable = true; monitoring.grafana.enable = true; }'
if nixeval render-services nixos/tests/eval/render-services.nix --arg set "$ALL_SERVICES"; then
    check "host services: llama.cpp on demand behind a socket and systemd-socket-proxyd" "$TMP/render-services.json" '
ml = d["ml"]["systemd"]
assert d["ml"]["services"]["llama-cpp"]["enable"] is True
sock = ml["sockets"]["llama-cpp"]
assert sock["listenStreams"] == ["127.0.0.1:8080"] and sock["socketConfig"]["Service"] == "llama-cpp-proxy.service", sock
assert sock["wantedBy"] == ["sockets.target"], sock
srv = ml["services"]["llama-cpp"]
assert srv["wantedBy"] == [] and srv["unitConfig"]["StopWhenUnneeded"] is True, srv
assert srv["serviceConfig"]["PrivateNetwork"] is True and "/dev/tcp/127.0.0.1/8080" in srv["serviceConfig"]["ExecStartPost"], srv
proxy = ml["services"]["llama-cpp-proxy"]
assert proxy["serviceConfig"]["ExecStart"].endswith("systemd-socket-proxyd --exit-idle-time=5min 127.0.0.1:8080"), proxy
assert proxy["unitConfig"]["JoinsNamespaceOf"] == "llama-cpp.service" and proxy["serviceConfig"]["PrivateNetwork"] is True, proxy
assert proxy["requires"] == ["llama-cpp.socket", "llama-cpp.service"], proxy
assert d["ml"]["services"]["ollama"]["package"].endswith("ollama-cuda"), d["ml"]["services"]["ollama"]
assert ml["services"]["ollama"]["serviceConfig"]["SupplementaryGroups"] == ["video", "nvidia"], ml["services"]["ollama"]'
    check "host services: jupyter token as a credential, credential store wired" "$TMP/render-services.json" '
dev = d["development"]
j = dev["systemd"]["services"]["jupyter"]
assert j["serviceConfig"]["LoadCredential"] == ["jupyter-token:/etc/credstore/jupyter-token"], j
assert j["environment"] == {"JUPYTER_TOKEN_FILE": "%d/jupyter-token"}, j
assert j["serviceConfig"]["RemoveIPC"] is False and j["serviceConfig"]["ReadWritePaths"] == ["/home/alice"], j
assert "setup-system-credentials.service" in j["after"], j
assert dev["services"]["jupyter"]["password"] == "" and dev["services"]["jupyter"]["port"] == 8888, dev["services"]
assert dev["luminous"]["services"]["system"]["credstore"] == {"enable": True, "generate": ["jupyter-token"]}, dev["luminous"]
cs = d["system"]["systemd"]["services"]["setup-system-credentials"]
assert cs["serviceConfig"]["ConfigurationDirectory"] == "credstore" and cs["serviceConfig"]["ConfigurationDirectoryMode"] == "0700", cs
assert cs["wantedBy"] == ["sysinit.target"] and cs["unitConfig"]["DefaultDependencies"] is False, cs'
    check "host services: weekly ClamAV scan of /home as the current host runs it" "$TMP/render-services.json" '
sec = d["security"]["systemd"]
scan = sec["services"]["clamav-scan"]["serviceConfig"]
for arg in ["--max-filesize=100M", "--max-scansize=300M", "--log=/var/log/clamav/scan.log",
            "--exclude-dir=^/sys/", "--exclude-dir=^/proc/", "--exclude-dir=^/dev/",
            "--exclude-dir=^/run/", "--exclude-dir=^/nix/store/", "\"/home\""]:
    assert arg in scan["ExecStart"], (arg, scan["ExecStart"])
assert (scan["Nice"], scan["IOSchedulingClass"]) == (19, "idle"), scan
assert scan["User"] == "clamav" and scan["AmbientCapabilities"] == ["CAP_DAC_READ_SEARCH"], scan
assert sec["timers"]["clamav-scan"]["timerConfig"] == {"OnCalendar": "weekly", "RandomizedDelaySec": "2h", "Persistent": True}
assert sec["tmpfiles"]["rules"] == ["d /var/log/clamav 0755 clamav clamav -"], sec["tmpfiles"]
clamd = sec["services"]["clamav-daemon"]["serviceConfig"]
assert clamd["ProtectSystem"] == "strict" and clamd["NoNewPrivileges"] is True, clamd
ssh = d["security"]["services"]["openssh"]["settings"]
assert ssh["PermitRootLogin"] == "no" and ssh["PasswordAuthentication"] is False, ssh
assert "sshd" not in sec["services"], "sshd sandbox is opt-in"'
    check "host services: tmpfiles, Docker pre-pull, monitoring on localhost" "$TMP/render-services.json" '
hw = d["hardware"]
assert hw["systemd"]["tmpfiles"]["rules"] == ["d /var/cache/cuda 0770 root nvidia -",
                                              "L+ /var/tmp/cuda-cache - - - - /var/cache/cuda"], hw
assert hw["users"]["groups"] == {"nvidia": {}}, hw["users"]
v = d["virtualization"]
assert v["systemd"]["tmpfiles"]["rules"] == ["d /srv/vms/shared 0755 root libvirtd -"], v
pull = v["systemd"]["services"]["docker-pull-images"]
assert [c.split()[-1] for c in pull["serviceConfig"]["ExecStart"]] == [
    "nvcr.io/nvidia/pytorch:25.09-py3", "ghcr.io/huggingface/text-generation-inference:latest"], pull
assert pull["serviceConfig"]["Type"] == "oneshot" and pull["requires"] == ["docker.service"], pull
m = d["monitoring"]["services"]
p = m["prometheus"]
assert (p["listenAddress"], p["port"]) == ("127.0.0.1", 9090), p
assert (p["exporters"]["node"]["listenAddress"], p["exporters"]["node"]["port"]) == ("127.0.0.1", 9100), p
assert p["scrapeConfigs"] == [{"job_name": "node", "static_configs": [{"targets": ["127.0.0.1:9100"]}]}], p
g = m["grafana"]["settings"]
assert g["server"] == {"http_addr": "127.0.0.1", "http_port": 4000}, g
assert m["grafana"]["provision"]["datasources"]["settings"]["datasources"][0]["url"] == "http://127.0.0.1:9090", m["grafana"]'
fi

if nixeval render-services-ondemand nixos/tests/eval/render-services.nix --arg set '{
      ml.ollama = { enable = true; onDemand = true; };
      development.jupyter = { enable = true; user = "alice"; onDemand = true; tokenFile = "/run/secrets/jt"; }; }'; then
    check "host services: on-demand ollama and jupyter move behind a proxy socket" "$TMP/render-services-ondemand.json" '
ml = d["ml"]
assert ml["services"]["ollama"]["port"] == 11435, ml["services"]
assert ml["systemd"]["sockets"]["ollama-proxy"]["listenStreams"] == ["127.0.0.1:11434"], ml["systemd"]["sockets"]
assert ml["systemd"]["services"]["ollama"]["wantedBy"] == [], ml["systemd"]["services"]["ollama"]
assert ml["systemd"]["services"]["ollama-proxy"]["serviceConfig"]["ExecStart"].endswith("127.0.0.1:11435")
assert "llama-cpp" not in ml["systemd"].get("sockets", {})
dev = d["development"]
assert dev["services"]["jupyter"]["port"] == 8889, dev["services"]
assert dev["systemd"]["sockets"]["jupyter-proxy"]["listenStreams"] == ["127.0.0.1:8888"], dev["systemd"]
assert "--exit-idle-time=1h 127.0.0.1:8889" in dev["systemd"]["services"]["jupyter-proxy"]["serviceConfig"]["ExecStart"]
assert dev["systemd"]["services"]["jupyter"]["serviceConfig"]["LoadCredential"] == ["jupyter-token:/run/secrets/jt"]
# a token kept elsewhere does not switch the credential store on
assert "credstore" not in dev.get("luminous", {}).get("services", {}).get("system", {}), dev.get("luminous")'
fi

# --- the host services' hardening, NixOS vs the tested units/ ---------------------
# Every hardening setting of a units/ file (the units tests/host_*.sh run
# under a real systemd) must come out of the rendered NixOS module with the
# same value, compared as the set of words systemd would collect (an empty
# assignment resets a list). The only differences allowed are listed below,
# each with its reason (also in docs/nixos.md). Settings that are not
# hardening (command lines, environment, readiness wait, timeouts, restart
# policy) are not compared.
if nixeval render-services-all nixos/tests/eval/render-services.nix --arg set '{
      ml.llama-cpp.enable = true; ml.ollama = { enable = true; onDemand = true; };
      development.jupyter = { enable = true; user = "alice"; onDemand = true; };
      security.clamav.enable = true; security.sshd = { enable = true; sandbox = true; };
      system.credstore.enable = true; hardware.cudaCache.enable = true; hardware.gpuMonitor.enable = true;
      virtualization.dockerPrePull.enable = true; }'; then
    check "host services: NixOS hardening = the tested units/, key by key" "$TMP/render-services-all.json" '
import re
NOT_HARDENING = {"ExecStart", "ExecStartPost", "Environment", "EnvironmentFile", "WorkingDirectory",
                 "LoadCredential", "Restart", "RestartSec", "TimeoutStartSec", "Nice",
                 "IOSchedulingClass", "CPUSchedulingPolicy", "RemainAfterExit"}
def words(v):
    if isinstance(v, bool): return ["yes" if v else "no"]
    if isinstance(v, (int, float)): return [str(v)]
    if isinstance(v, list): return [w for x in v for w in words(x)]
    return {"true": ["yes"], "false": ["no"]}.get(v, v.split())
def parse(path, subst={}, into=None):
    keys = into if into is not None else {}
    section = None
    text = open(path).read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;": continue
        if line.startswith("["): section = line; continue
        if section != "[Service]": continue
        k, _, v = line.partition("=")
        for a, b in subst.items(): v = v.replace(a, b)
        if v == "": keys[k] = []
        else: keys.setdefault(k, []).extend(words(v))
    return keys
def nix(sc):
    return {k: ([] if v in ([""], "") else words(v)) for k, v in sc.items()}
def compare(name, unit, rendered, allowed):
    errs = []
    for k in sorted(set(unit) | set(rendered)):
        if k in NOT_HARDENING or k in allowed: continue
        u, r = unit.get(k), rendered.get(k)
        if u is None or r is None or sorted(set(u)) != sorted(set(r)):
            errs.append("%s: %s= units/ %s, NixOS %s" % (name, k, u, r))
    return errs
svc = {n: v for g in d.values() for n, v in g.get("systemd", {}).get("services", {}).items()}
sc = lambda n: nix(svc[n]["serviceConfig"])
errs = []
# units that exist on both sides as whole units
for name, path, allowed in [
    # PrivateTmp: implied by DynamicUser= in the units, explicit in the sandbox.
    ("llama-cpp-proxy", "units/ml/llama-cpp-proxy.service.in", {"PrivateTmp"}),
    ("ollama-proxy", "units/ml/ollama-proxy.service.in", {"PrivateTmp"}),
    ("jupyter-proxy", "units/development/jupyter-proxy@.service.in", {"PrivateTmp"}),
    # User: services.jupyter.user, set by the distribution module from our `user`.
    ("jupyter", "units/development/jupyter@.service.in", {"User"}),
    # ReadWritePaths: NixOS adds the directory of a moved scan.logFile.
    ("clamav-scan", "units/security/clamav-scan.service.in", {"ReadWritePaths"}),
    ("setup-system-credentials", "units/system/setup-system-credentials.service", {}),
    ("docker-pull-images", "units/virtualization/docker-pull-images.service", {}),
    ("gpu-monitor", "units/hardware/gpu-monitor.service", {}),
]:
    errs += compare(name, parse(path, {"%h": "/home/alice", "%i": "alice"}), sc(name), allowed)
# drop-ins: the keys they set
errs += compare("clamav-daemon", parse("units/security/clamav-daemon.service.d/hardening.conf"), sc("clamav-daemon"), {})
unit = parse("units/security/sshd.service.d/hardening.conf")
r = sc("sshd")
# NixOS generates the host keys into /etc/ssh in preStart, under the same confinement.
assert r["ReadWritePaths"] == ["-/etc/ssh"] + unit["ReadWritePaths"], r["ReadWritePaths"]
errs += compare("sshd", unit, r, {"ReadWritePaths"})
# ollama: the distribution unit (tests/fixtures/host-units/ollama.service, as
# NixOS renders it) with the drop-in vs with the module additions; list
# settings accumulate on both sides.
base = parse("tests/fixtures/host-units/ollama.service")
unit = parse("units/ml/ollama.service.d/nvidia.conf", into={k: list(v) for k, v in base.items()})
r = {k: list(v) for k, v in base.items()}
for k, v in sc("ollama").items(): r[k] = r.get(k, []) + v if k in ("DeviceAllow", "SupplementaryGroups") else v
dropin = parse("units/ml/ollama.service.d/nvidia.conf")
errs += compare("ollama", {k: unit[k] for k in dropin}, {k: r[k] for k in dropin if k in r}, {})
# llama-cpp: only what the module adds to the distribution unit (which has
# the rest; no copy of it here): ProcSubset=all, UMask, no Type=idle delay.
r = sc("llama-cpp")
unit = parse("units/ml/llama-cpp.service.in")
for k in ["PrivateNetwork", "IPAddressDeny", "IPAddressAllow", "DevicePolicy", "DeviceAllow",
          "SupplementaryGroups", "ProcSubset", "UMask", "LimitMEMLOCK"]:
    if sorted(set(unit[k])) != sorted(set(r.get(k, []))):
        errs.append("llama-cpp: %s= units/ %s, NixOS %s" % (k, unit[k], r.get(k)))
assert r["Type"] == ["simple"], r["Type"]
assert not errs, "\n".join(errs)'
fi

# --- lib/unit-name.nix: allowedUnits grammar ------------------------------------
if nixeval unit-names -E 'let r = import ./nixos/lib/unit-name.nix; in map (n: { name = n; ok = builtins.match r n != null; }) [
      "nginx.service" "nginx" "getty@tty1.service" "foo\\x2dbar.service" "sshd.socket" "backup.timer"
      "multi-user.target" "cups.path" "user:1000.service"
      "home.mount" "session-1.scope" "foo.bar" "../etc/passwd" "a b.service" "x;y.service"
      "-x.service" ".hidden.service" "" "nginx.service\n" ]'; then
    check "allowedUnits grammar: restartable names in, everything else out" "$TMP/unit-names.json" '
want_ok = {"nginx.service", "nginx", "getty@tty1.service", "foo\\x2dbar.service", "sshd.socket",
           "backup.timer", "multi-user.target", "cups.path", "user:1000.service"}
for e in d:
    assert e["ok"] == (e["name"] in want_ok), e'
fi

# --- lib/unit-glob.nix: the allowedUnits / callers.units grammar -----------------
# Each pattern is matched by the Nix regex and, one by one, given to the real
# dispatcher as actions.restart_service.allowed_units: both must agree, except
# for `**` and a `]` outside a set, which the regex refuses on purpose (see
# unit-glob.nix).
GLOBS_OK='"nginx.service" "nginx" "getty@tty1.service" "app-*" "worker@?" "app-[ab]*.service" "app-[!x].service"
    "*" "a*b*" "a*?*" "?*" "*.service" "web-*" "foo\\x2d*" "multi-user.target"'
GLOBS_BAD='"app-[x" "a b*" "x/y*" "../x" "foo.device" "[" "]*" "home.mount" "" "a;b*" "a**" "**"'
if nixeval unit-globs -E "let r = import ./nixos/lib/unit-glob.nix; in
      map (n: { name = n; ok = true; nix = builtins.match r n != null; }) [ $GLOBS_OK ]
      ++ map (n: { name = n; ok = false; nix = builtins.match r n != null; }) [ $GLOBS_BAD ]"; then
    check "allowedUnits glob grammar (Nix): names and globs in, everything else out" "$TMP/unit-globs.json" '
for e in d:
    assert e["nix"] == e["ok"], e'
    if bin=$(dispatcher_bin); then
        disagree=""
        while IFS=$'\t' read -r ok pat; do
            printf 'allowed_groups = ["root"]\n[actions.restart_service]\nallowed_units = [%s]\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$pat")" >"$TMP/glob.toml"
            if LUMINOUS_HEALING_SECRET=x "$bin" --check-config --config "$TMP/glob.toml" >/dev/null 2>&1; then rust=True; else rust=False; fi
            # stricter in Nix on purpose (unit-glob.nix): `**`, a `]` outside a set
            case "$pat" in *'**'* | ']'*) [ "$rust" = True ] && continue ;; esac
            [ "$rust" = "$ok" ] || disagree="$disagree [$pat: Nix $ok, dispatcher $rust]"
        done < <(python3 -c 'import json,sys; [print("%s\t%s" % (e["nix"], e["name"])) for e in json.load(open(sys.argv[1]))]' "$TMP/unit-globs.json")
        [ -z "$disagree" ] && ok "allowedUnits glob grammar: the dispatcher accepts exactly what Nix accepts" \
            || fail "allowedUnits glob grammar: the dispatcher accepts exactly what Nix accepts" "$disagree"
    else
        fail "allowedUnits glob grammar: the dispatcher accepts exactly what Nix accepts" "no dispatcher binary"
    fi
fi

# --- option declarations -------------------------------------------------------
if nixeval options nixos/tests/eval/options.nix; then
    check "services.luminous-healing keeps the earlier module's options and defaults" "$TMP/options.json" '
h = d["healing"]
assert h["enable"] == {"type": "bool", "default": False}, h["enable"]
assert h["socketPath"]["default"] == "/run/luminous-healing.sock", h["socketPath"]
assert h["user"] == {"type": "str", "default": "luminous-healing"}, h["user"]
assert h["group"] == {"type": "str", "default": "luminous-healing"}, h["group"]
assert h["allowedUsers"] == {"type": "listOf", "default": []}, h["allowedUsers"]
assert h["secretKey"]["type"] == "nullOr", h["secretKey"]'
    check "services.luminous-healing declares the new options" "$TMP/options.json" '
h = d["healing"]
for name in ["secretKeyFile", "package", "actions", "idleTimeout", "protocols", "settings", "journalCatalog",
             "callers", "statusRateLimit", "maxIdsPerCaller", "nixProfilesDir", "currentSystem"]:
    assert name in h, name
assert h["callers"] == {"type": "attrsOf"}, h["callers"]
for name in ["statusRateLimit", "maxIdsPerCaller", "nixProfilesDir", "currentSystem"]:
    assert h[name]["type"] == "nullOr", (name, h[name])
c = d["callerOptions"]
assert c["actions"]["type"] == "listOf" and c["actions"]["elem"] == {"enum": ["restart_service", "set_cpu_governor",
    "clear_system_cache", "adjust_swappiness", "kill_process", "restart_network", "clean_nix_store",
    "rollback_generation", "status"]}, c["actions"]
assert c["units"]["type"] == "nullOr" and c["units"]["default"] is None, c["units"]
assert h["idleTimeout"]["default"] == 60 and h["protocols"]["default"] == ["v1", "v2"], h
assert h["protocols"]["type"] == "nonEmptyListOf", h["protocols"]'
    check "every action has enable/rateLimit/timeoutSecs, and its own policy keys only" "$TMP/options.json" '
a = d["healingActions"]
assert len(a) == 8, sorted(a)
extra = {"restart_service": ["allowedUnits", "breaker"], "kill_process": ["allowedUnits"],
         "rollback_generation": ["nixosRebuild"], "clean_nix_store": ["nixCollectGarbage"]}
for name, opts in a.items():
    assert sorted(opts) == sorted(["enable", "rateLimit", "timeoutSecs"] + extra.get(name, [])), (name, opts)'
    check "every action is enabled by default except rollback_generation" "$TMP/options.json" '
e = d["healingActionEnable"]
assert e == {n: n != "rollback_generation" for n in e} and len(e) == 8, e'
    check "luminous.services.<group>.<name>.enable for every host service, off by default" "$TMP/options.json" '
s = d["services"]
expected = {"ml": ["llama-cpp", "ollama"], "development": ["jupyter"], "security": ["clamav", "sshd"],
            "system": ["credstore"], "hardware": ["cudaCache", "gpuMonitor"],
            "virtualization": ["dockerPrePull", "vmShared"], "monitoring": ["prometheus", "grafana"]}
assert sorted(s) == sorted(expected), sorted(s)
for group, names in expected.items():
    for n in names:
        assert s[group][n]["enable"] == {"type": "bool", "default": False}, (group, n, s[group][n])'
    check "host service defaults reproduce the current host" "$TMP/options.json" '
s = d["services"]
assert s["ml"]["llama-cpp"]["listenAddress"]["default"] == "127.0.0.1:8080"
scan = s["security"]["clamav"]["scan"]
assert scan["paths"]["default"] == ["/home"]
assert scan["excludeDirs"]["default"] == ["/sys", "/proc", "/dev", "/run", "/nix/store"]
assert (scan["maxFileSize"]["default"], scan["maxScanSize"]["default"]) == ("100M", "300M")
assert scan["logFile"]["default"] == "/var/log/clamav/scan.log"
assert (scan["onCalendar"]["default"], scan["randomizedDelay"]["default"]) == ("weekly", "2h")
assert s["virtualization"]["dockerPrePull"]["images"]["default"] == [
    "nvcr.io/nvidia/pytorch:25.09-py3", "ghcr.io/huggingface/text-generation-inference:latest"]
assert s["development"]["jupyter"]["tokenFile"]["default"] == "/etc/credstore/jupyter-token"
assert s["monitoring"]["listenAddress"]["default"] == "127.0.0.1"'
fi

# --- flake.nix outputs ------------------------------------------------------------
if nixeval flake nixos/tests/eval/flake.nix; then
    check "flake: packages.<system>.default, nixosModules.default/services, checks with the VM tests" "$TMP/flake.json" "
for system in ['x86_64-linux', 'aarch64-linux']:
    assert 'default' in d['packages'][system], d['packages']
    assert d['checks'][system] == {'package': 'package', 'vm': 'nixos-test', 'services-vm': 'nixos-test',
                                   'services-eval': 'text'}, d['checks'][system]
assert {'default', 'services'} <= set(d['nixosModules']), d['nixosModules']
assert d['servicesModule'] == '$ROOT/nixos/services', d['servicesModule']
assert d['vmTest'] == {'type': 'nixos-test', 'name': 'luminous-healing', 'nodes': ['legacy', 'machine']}, d['vmTest']
assert d['servicesVmTest']['nodes'] == ['host'], d['servicesVmTest']
assert d['servicesEval'].endswith('.drv'), d['servicesEval']
assert d['inputs'] == ['nixpkgs'], d['inputs']"
    check "flake: nixosModules.default imports the module and defaults the package to the flake's own, per platform" "$TMP/flake.json" "
m = d['defaultModule']
assert m['imports'] == ['$ROOT/nixos/luminous-healing.nix'], m
p = m['package']
assert p['_type'] == 'override' and p['priority'] == 1000, p
assert p['content'] == {'type': 'package', 'system': 'aarch64-linux'}, p"
fi

# --- package.nix install script -----------------------------------------------
if nixeval package nixos/tests/eval/package.nix; then
    check "package version and lock come from the workspace" "$TMP/package.json" "
import re
toml = open('Cargo.toml').read()
m = re.search(r'^version = \"([^\"]+)\"', toml, re.M)
assert m and d['version'] == m.group(1), (d['version'], m and m.group(1))
assert d['lockFile'] == '$ROOT/Cargo.lock', d['lockFile']
assert d['pname'] == 'luminous-healing' and d['mainProgram'] == 'healctl', d"

    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["postInstall"])' "$TMP/package.json" >"$TMP/postInstall.sh"
    out="$TMP/out"
    mkdir -p "$out/bin"
    # What cargo's install step leaves in $out/bin: every workspace binary.
    for b in luminous-healing healctl $(python3 -c 'import json,sys; print(" ".join("luminous-healing-" + a for a in json.load(open(sys.argv[1]))))' "$TMP/actions.json"); do
        printf '#!/bin/sh\n' >"$out/bin/$b"
        chmod +x "$out/bin/$b"
    done
    # nixpkgs' installManPage, reduced to what the script needs; pandoc is
    # the real one when installed, else a stand-in that keeps the markdown.
    if log=$(cd "$TMP" && rm -rf src && mkdir src && cp -r "$ROOT"/units "$ROOT"/docs src/ && cd src && out="$out" bash -euo pipefail -c '
        installManPage() { for p in "$@"; do s=${p##*.}; install -Dm444 "$p" "$out/share/man/man$s/$(basename "$p")"; done; }
        command -v pandoc >/dev/null || pandoc() { local o; while [ $# -gt 0 ]; do [ "$1" = --output ] && o=$2; shift; done; cat > "$o"; }
        source "$1"' _ "$TMP/postInstall.sh" 2>&1); then
        ok "package install script runs against units/ and docs/"
        missing=""
        for unit in luminous-healing.socket luminous-healing.service; do
            [ -f "$out/lib/systemd/system/$unit" ] || missing="$missing $unit"
        done
        for a in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))))' "$TMP/actions.json"); do
            [ -x "$out/libexec/luminous-healing/luminous-healing-$a" ] || missing="$missing libexec/luminous-healing-$a"
            [ -e "$out/bin/luminous-healing-$a" ] && missing="$missing (bin/luminous-healing-$a not moved)"
        done
        [ -x "$out/bin/luminous-healing" ] && [ -x "$out/bin/healctl" ] || missing="$missing bin/luminous-healing|healctl"
        [ -z "$missing" ] && ok "package layout: bin/, libexec/luminous-healing/, lib/systemd/system/" \
            || fail "package layout: bin/, libexec/luminous-healing/, lib/systemd/system/" "missing:$missing"

        # Not the catalog: @FIELD@ is its own substitution syntax.
        leftovers=$(grep -rln '@[A-Z][A-Z_]*@' "$out/lib/systemd/system" "$out/share/luminous-healing" 2>/dev/null)
        [ -z "$leftovers" ] && ok "no unsubstituted placeholder in installed units" \
            || fail "no unsubstituted placeholder in installed units" "$leftovers"

        bad=""
        for u in "$out"/lib/systemd/system/*; do
            while IFS= read -r line; do
                path=${line#*=}
                path=${path%% *}
                path=${path#[-@:+!]}
                case "$path" in
                    "$out"/*) [ -e "$path" ] || bad="$bad $(basename "$u"):$path" ;;
                    *) bad="$bad $(basename "$u"):$path(outside the package)" ;;
                esac
            done < <(grep -E '^ExecStart=' "$u")
        done
        [ -z "$bad" ] && ok "every ExecStart= of the installed units points into the package" \
            || fail "every ExecStart= of the installed units points into the package" "$bad"

        if [ -f units/sysusers.d/luminous-healing.conf ]; then
            [ -f "$out/lib/sysusers.d/luminous-healing.conf" ] && ok "sysusers.d installed" \
                || fail "sysusers.d installed"
        fi
        pages=""
        for md in docs/man/*.[1-8].md; do
            [ -f "$md" ] || continue
            base=$(basename "$md" .md)
            [ -f "$out/share/man/man${base##*.}/$base" ] || pages="$pages $base"
        done
        [ -z "$pages" ] && ok "man pages built from docs/man/*.md" || fail "man pages built from docs/man/*.md" "missing:$pages"
        if [ -f units/catalog/luminous-healing.catalog ]; then
            [ -f "$out/lib/systemd/catalog/luminous-healing.catalog" ] && ok "journal catalog installed" \
                || fail "journal catalog installed"
        fi
        hostunits=$(find units -mindepth 2 -type f -not -path 'units/healing/*' -not -path 'units/sysusers.d/*' -not -path 'units/catalog/*' | wc -l)
        shipped=$(find "$out/share/luminous-healing/units" -type f 2>/dev/null | wc -l)
        [ "$hostunits" -eq "$shipped" ] && ok "host units shipped under share/ ($shipped), none in lib/systemd/system" \
            || fail "host units shipped under share/" "units/: $hostunits, installed: $shipped"
    else
        fail "package install script runs against units/ and docs/" "$log"
    fi
fi

# --- lib/journal-catalog.sh: the catalog database the module links in -----------
if ! command -v journalctl >/dev/null 2>&1; then
    fail "journal catalog database includes the executor's entries" "journalctl not found: apt-get install -y systemd"
elif out=$(bash nixos/lib/journal-catalog.sh "$TMP/catalog.db" /usr/lib/systemd/catalog units/catalog /nonexistent 2>&1); then
    mkdir -p "$TMP/catroot/var/lib/systemd/catalog"
    cp "$TMP/catalog.db" "$TMP/catroot/var/lib/systemd/catalog/database"
    listed=$(journalctl --root="$TMP/catroot" --list-catalog 2>&1)
    missing=""
    for id in $(sed -n 's/^-- \([0-9a-f]\{32\}\).*/\1/p' units/catalog/*.catalog); do
        grep -q "^$id " <<<"$listed" || missing="$missing $id"
    done
    # and systemd's own entries survive (e.g. "unit started"), when the
    # machine has them
    if ls /usr/lib/systemd/catalog/systemd.catalog >/dev/null 2>&1; then
        grep -q '^39f53479d3a045ac8e11786248231fbf ' <<<"$listed" || missing="$missing systemd:39f53479d3a045ac8e11786248231fbf"
    fi
    [ -z "$missing" ] && ok "journal catalog database includes the executor's entries and systemd's" \
        || fail "journal catalog database includes the executor's entries and systemd's" "missing:$missing"
else
    fail "journal catalog database includes the executor's entries" "$out"
fi

# --- the VM test's Python ------------------------------------------------------
# compiles_as_python NAME PY WHAT: the string NAME evaluated to, written to
# $TMP/PY.py, compiles.
compiles_as_python() {
    python3 -c 'import json,sys; open(sys.argv[2], "w").write(json.load(open(sys.argv[1])))' \
        "$TMP/$1.json" "$TMP/$2.py"
    if err=$(python3 -m py_compile "$TMP/$2.py" 2>&1); then
        ok "$3"
    else
        fail "$3" "$err"
    fi
}
if nixeval vm-script -E '(import ./nixos/tests/vm.nix { self = null; }).testScript'; then
    compiles_as_python vm-script vm_test_script "VM test script is valid Python"
    grep -q '"rollback_generation"' "$TMP/vm_test_script.py" && ok "VM test checks the socket of every action" \
        || fail "VM test checks the socket of every action"
fi
if nixeval services-vm-script -E '(import ./nixos/tests/services-vm.nix { self = null; }).testScript {
      nodes.host.services.openssh.package = "/nix/store/eval-only-openssh"; }'; then
    compiles_as_python services-vm-script services_vm_test_script "host-services VM test script is valid Python"
fi

echo "nix_eval: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

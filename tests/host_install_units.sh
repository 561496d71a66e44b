#!/usr/bin/env bash
# scripts/install-host-units.sh against a real systemd: what it installs is
# loadable and substituted, nothing gets enabled, a second run changes
# nothing, opt-in drop-ins come and go with --on-demand, and --uninstall
# leaves the tree as it found it.
LH_NEEDS_BUILD=0
. "$(dirname "$0")/lib.sh"

# No UNITDIR: a prefix outside /usr must default to /etc/systemd/system.
inst() { sb env PREFIX=/opt/luminous-healing /src/scripts/install-host-units.sh "$@" /src 2>/dev/null; }
tree() { sb sh -c 'find /etc/systemd/system /etc/tmpfiles.d /opt -xdev 2>/dev/null | sort'; }
UNITS="llama-cpp.socket llama-cpp.service llama-cpp-proxy.service ollama-proxy.socket ollama-proxy.service
jupyter@.service jupyter-proxy@.socket jupyter-proxy@.service clamav-scan.service clamav-scan.timer
setup-system-credentials.service docker-pull-images.service gpu-monitor.service"

boot
BEFORE=$(tree)

t_installs() {
    inst >/dev/null
    local u files
    files=$(sb systemctl list-unit-files --no-legend --no-pager)
    for u in $UNITS; do
        assert_contains "$files" "$u " "list-unit-files:"
        # installed, but enabling is the administrator's decision
        case "$(sb systemctl is-enabled "$u" 2>/dev/null || true)" in
            enabled*) fail "$u was enabled by the installer" ;;
        esac
    done
    assert_contains "$(sb systemctl show -P DropInPaths clamav-daemon.service)" \
        /etc/systemd/system/clamav-daemon.service.d/hardening.conf "clamav-daemon drop-in"
    assert_eq "$(sb test -f /etc/tmpfiles.d/luminous-host.conf && echo yes)" yes tmpfiles.d
    [ -z "$(sb grep -rl '@[A-Z]*@' /etc/systemd/system /etc/tmpfiles.d)" ] || fail "placeholders left"
    assert_contains "$(sb systemctl show -P ExecStart llama-cpp.service)" "/opt/luminous-healing/bin/llama-server" "@BINDIR@ substituted"
    # no on-demand drop-ins unless asked for
    sb test ! -e /etc/systemd/system/ollama.service.d/on-demand.conf
}

t_second_run_noop() {
    local before after out
    before=$(sb sh -c 'find /etc/systemd/system /etc/tmpfiles.d -type f -newer /proc/1 -printf "%p %T@\n" | sort')
    out=$(inst)
    assert_eq "$out" "" "output of the second run"
    after=$(sb sh -c 'find /etc/systemd/system /etc/tmpfiles.d -type f -newer /proc/1 -printf "%p %T@\n" | sort')
    assert_eq "$after" "$before" "files and mtimes"
}

t_on_demand_optin() {
    inst --on-demand=ollama,jupyter >/dev/null
    sb test -f /etc/systemd/system/ollama.service.d/on-demand.conf
    sb test -f /etc/systemd/system/jupyter@.service.d/on-demand.conf
    inst >/dev/null
    sb test ! -e /etc/systemd/system/ollama.service.d/on-demand.conf || fail "on-demand.conf left behind"
    sb test ! -e /etc/systemd/system/jupyter@.service.d || fail "empty jupyter@.service.d left behind"
    sb test -f /etc/systemd/system/ollama.service.d/nvidia.conf
}

t_uninstall() {
    sb systemctl start llama-cpp.socket
    inst --uninstall >/dev/null
    assert_eq "$(sb systemctl is-active llama-cpp.socket 2>/dev/null || true)" inactive "llama-cpp.socket after uninstall"
    assert_not_contains "$(sb systemctl list-unit-files --no-legend --no-pager)" "llama-cpp" "list-unit-files"
    # /etc/tmpfiles.d and /opt may stay: standard directories, not ours
    assert_eq "$(comm -13 <(echo "$BEFORE") <(tree) | grep -vxE "/etc/tmpfiles.d|/opt")" "" "left after uninstall:"
    assert_eq "$(comm -23 <(echo "$BEFORE") <(tree))" "" "removed by uninstall but not ours:"
    # and again: nothing to do, no error
    inst --uninstall >/dev/null
}

run_case installs_loadable_substituted_not_enabled t_installs
run_case second_run_changes_nothing t_second_run_noop
run_case on_demand_dropins_opt_in t_on_demand_optin
run_case uninstall_restores_the_tree t_uninstall
finish

# NixOS VM test of the host services (luminous.services.*), run by
# `nix flake check` (checks.<system>.services-vm). The GPU and model
# services (llama.cpp, ollama, the GPU monitor) and the Docker pre-pull need
# hardware, weights or a registry a VM does not have; they are covered by
# the evaluation check (services-eval). Everything else runs here for real.
{ self }:
{
  name = "luminous-services";

  nodes.host =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.services ];

      users.users.alice.isNormalUser = true;

      luminous.services = {
        system.credstore.enable = true;
        development.jupyter = {
          enable = true;
          user = "alice";
        };
        security.clamav.enable = true;
        security.sshd.enable = true;
        hardware.cudaCache.enable = true;
        virtualization.vmShared.enable = true;
        monitoring.prometheus.enable = true;
        monitoring.grafana.enable = true;
      };

      # The smallest Jupyter that serves the API: the token mechanism is
      # what is under test, not the notebook front-end.
      services.jupyter = {
        package = pkgs.python3.pkgs.jupyter-server;
        command = "jupyter server";
      };

      # No network in the VM, so no signature download: a one-line database
      # for the EICAR test file stands in for the real signatures.
      services.clamav.updater.enable = false;
      systemd.tmpfiles.rules = [
        "f /var/lib/clamav/eicar.hdb 0644 clamav clamav - 44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature"
      ];

      # Test-only: the API check below logs in with it.
      services.grafana.settings.security.admin_password = "vm-test-admin";

      environment.systemPackages = [ pkgs.curl ];
      virtualisation.memorySize = 2048;
    };

  testScript =
    { nodes, ... }:
    ''
      import json

      EICAR_B64 = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="


      def stat(path, fmt="%a %U %G"):
          return host.succeed(f"stat -c '{fmt}' {path}").strip()


      start_all()
      host.wait_for_unit("multi-user.target")

      with subtest("credential store: 0700 root, generated token kept across runs"):
          host.wait_for_unit("setup-system-credentials.service")
          assert stat("/etc/credstore") == "700 root root", stat("/etc/credstore")
          assert stat("/etc/credstore/jupyter-token", "%a %U") == "600 root"
          token = host.succeed("cat /etc/credstore/jupyter-token")
          assert len(token) >= 32 and "\n" not in token, repr(token)
          host.succeed("systemctl restart setup-system-credentials.service")
          assert host.succeed("cat /etc/credstore/jupyter-token") == token

      with subtest("jupyter takes its token from the credential, and only that"):
          host.wait_for_unit("jupyter.service")
          host.wait_for_open_port(8888)
          host.succeed(f"curl -sf 'http://127.0.0.1:8888/api/status?token={token}'")
          code = host.succeed("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8888/api/status")
          assert code == "403", code
          pid = host.succeed("systemctl show -p MainPID --value jupyter.service").strip()
          assert host.succeed(f"ps -o user= -p {pid}").strip() == "alice"
          # The token is in none of the places other processes can read.
          for where in ["systemctl cat jupyter.service", f"tr '\\0' '\\n' < /proc/{pid}/environ",
                        f"tr '\\0' ' ' < /proc/{pid}/cmdline"]:
              assert token not in host.succeed(where), where

      with subtest("tmpfiles rules"):
          assert stat("/var/log/clamav") == "755 clamav clamav"
          assert stat("/var/cache/cuda") == "770 root nvidia"
          assert host.succeed("readlink /var/tmp/cuda-cache").strip() == "/var/cache/cuda"
          assert stat("/srv/vms/shared") == "755 root libvirtd"

      with subtest("clamd runs under the added confinement"):
          host.succeed("systemctl start clamav-daemon.service")
          host.wait_for_unit("clamav-daemon.service")
          assert host.succeed("systemctl show -p ProtectSystem --value clamav-daemon.service").strip() == "strict"
          assert host.succeed("systemctl show -p NoNewPrivileges --value clamav-daemon.service").strip() == "yes"

      with subtest("weekly scan: scheduled, and a detection fails the unit"):
          timer = host.succeed("systemctl cat clamav-scan.timer")
          for line in ["OnCalendar=weekly", "RandomizedDelaySec=2h", "Persistent=true"]:
              assert line in timer, (line, timer)
          host.succeed("systemctl is-active clamav-scan.timer")
          unit = host.succeed("systemctl cat clamav-scan.service")
          for arg in ["--max-filesize=100M", "--max-scansize=300M", "--log=/var/log/clamav/scan.log",
                      "--exclude-dir=^/nix/store/", "/home"]:
              assert arg in unit, (arg, unit)
          host.succeed("systemctl start clamav-scan.service")   # clean /home: success
          host.succeed(f"echo {EICAR_B64} | base64 -d > /home/alice/eicar.com && chown alice /home/alice/eicar.com")
          host.fail("systemctl start clamav-scan.service")
          assert host.succeed("systemctl show -p ExecMainStatus --value clamav-scan.service").strip() == "1"
          host.succeed("grep -q 'eicar.com: Eicar-Test-Signature.UNOFFICIAL FOUND' /var/log/clamav/scan.log")
          host.succeed("systemctl is-failed clamav-scan.service")

      with subtest("sshd: keys only, no root login"):
          host.wait_for_unit("sshd.service")
          effective = host.succeed("${nodes.host.services.openssh.package}/bin/sshd -T")
          for line in ["permitrootlogin no", "passwordauthentication no",
                       "kbdinteractiveauthentication no", "x11forwarding no", "maxauthtries 3"]:
              assert line in effective.splitlines(), (line, effective)

      with subtest("Prometheus, node exporter and Grafana on localhost"):
          for unit, port in [("prometheus.service", 9090), ("prometheus-node-exporter.service", 9100),
                             ("grafana.service", 4000)]:
              host.wait_for_unit(unit)
              host.wait_for_open_port(port)
          listening = host.succeed("ss -ltnH")
          for port in (9090, 9100, 4000):
              assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening, (port, listening)
          host.wait_until_succeeds(
              "curl -sf 'http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22node%22%7D' | grep -q '\"1\"\\]'",
              timeout=120,
          )
          host.succeed("curl -sf http://127.0.0.1:4000/api/health")
          sources = json.loads(host.succeed("curl -sf -u admin:vm-test-admin http://127.0.0.1:4000/api/datasources"))
          assert any(s["type"] == "prometheus" and s["url"] == "http://127.0.0.1:9090" for s in sources), sources
          assert stat("/var/lib/grafana/secret_key", "%a %U") == "600 grafana"
    '';
}

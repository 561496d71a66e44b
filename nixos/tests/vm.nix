# NixOS VM test of services.luminous-healing, run by `nix flake check`
# (checks.<system>.vm). It boots a machine with the module enabled exactly
# as a user would configure it, and talks to it the way clients do: through
# healctl, as an allowed user and as a user outside the group.
{ self }:
{
  name = "luminous-healing";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];

      services.luminous-healing = {
        enable = true;
        secretKeyFile = "/etc/luminous-healing/secret";
        allowedUsers = [ "alice" ];
        # Short, so the test can watch the dispatcher exit when idle.
        idleTimeout = 5;
        actions.restart_service.allowedUnits = [ "healing-target.service" ];
        # Off by default; on here so that every action's socket is checked.
        actions.rollback_generation.enable = true;
      };

      # A throw-away secret for a throw-away VM: environment.etc with a mode
      # copies the file, but its text is still in the store. A real host
      # keeps the file out of the store (sops-nix, agenix, or by hand).
      environment.etc."luminous-healing/secret" = {
        text = "vm-test-secret";
        mode = "0640";
        group = "luminous-healing";
      };

      users.users.alice.isNormalUser = true;
      users.users.mallory.isNormalUser = true;

      # Something harmless for restart_service to restart.
      systemd.services.healing-target = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
      };
    };

  # A configuration written for the earlier module (inline secretKey, which
  # still works with a warning), plus a custom socket path and an action
  # switched off: its socket must not be started at all.
  nodes.legacy =
    { ... }:
    {
      imports = [ self.nixosModules.default ];
      services.luminous-healing = {
        enable = true;
        socketPath = "/run/heal.sock";
        secretKey = "legacy-inline-secret";
        allowedUsers = [ "alice" ];
        actions.rollback_generation.enable = false;
      };
      users.users.alice.isNormalUser = true;
    };

  testScript = ''
    import json

    ACTIONS = ${builtins.toJSON (import ../actions.nix)}
    SECRET = "--secret-file /etc/luminous-healing/secret"


    # From the system profile, as a user's shell finds it; absolute, because
    # su without --login may reset PATH.
    HEALCTL = "/run/current-system/sw/bin/healctl"


    def as_user(user, cmd):
        return f"su -s /bin/sh {user} -c '{cmd}'"


    def journal(matches):
        """Audit records matching journalctl field matches (ANDed)."""
        out = machine.succeed(f"journalctl --no-pager -o json {matches}")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


    def audit(matches):
        # The dispatcher may answer before journald has indexed the entry.
        machine.wait_until_succeeds(
            f"journalctl --no-pager -o json {matches} | grep -q HEALING_OUTCOME", timeout=30
        )
        return journal(matches)


    start_all()
    machine.wait_for_unit("sockets.target")
    machine.wait_for_unit("luminous-healing.socket")

    with subtest("every socket is listening"):
        sockets = machine.succeed("systemctl list-sockets --all --full --no-legend --no-pager")
        print(sockets)
        assert "/run/luminous-healing.sock" in sockets
        assert "luminous-healing.socket" in sockets
        assert "/run/luminous-healing/io.luminous.Healing" in sockets
        for action in ACTIONS:
            assert f"luminous-healing-{action}.socket" in sockets, action
            assert f"/run/luminous-healing/actions/{action}.sock" in sockets, action

    with subtest("socket modes, credential and policy as configured"):
        assert machine.succeed("stat -c '%a %G' /run/luminous-healing.sock").split() == ["660", "luminous-healing"]
        for action in ACTIONS:
            mode = machine.succeed(f"stat -c '%a %U' /run/luminous-healing/actions/{action}.sock").split()
            assert mode == ["600", "luminous-healing"], (action, mode)
        # The drop-in resets the package's credential before naming its own
        # (`systemctl show` may print LoadCredential= as [unprintable]).
        unit = machine.succeed("systemctl cat luminous-healing.service")
        creds = [l for l in unit.splitlines() if l.startswith("LoadCredential=")]
        assert creds[-2:] == ["LoadCredential=", "LoadCredential=secret:/etc/luminous-healing/secret"], creds
        machine.succeed("grep -F healing-target.service /etc/luminous-healing/config.toml")
        # journalctl -x can explain the audit records (catalog compiled in).
        catalog = machine.succeed("journalctl --list-catalog")
        for message_id in ["f35f5bd52b974b76b3886613cc06b638", "f93433f8a0d54625bb05ee63e832c15c"]:
            assert message_id in catalog, message_id
        # The executor needs no sudo, and the module must not add any.
        machine.fail("grep -rq luminous-healing /etc/sudoers")

    with subtest("nothing runs before the first request"):
        machine.fail("systemctl is-active luminous-healing.service")

    with subtest("an allowed user gets status, and it is audited"):
        response = json.loads(machine.succeed(as_user("alice", f"{HEALCTL} {SECRET} --json status")))
        assert response["success"] is True, response
        uid = machine.succeed("id -u alice").strip()
        entries = audit(f"HEALING_REQUEST_ID={response['request_id']}")
        assert any(
            e.get("SYSLOG_IDENTIFIER") == "luminous-healing"
            and e.get("HEALING_ACTION") == "status"
            and e.get("HEALING_OUTCOME") == "success"
            and e.get("HEALING_CALLER_UID") == uid
            for e in entries
        ), entries

    with subtest("restart_service restarts an allowed unit"):
        show = "systemctl show -p InvocationID --value healing-target.service"
        before = machine.succeed(show).strip()
        response = json.loads(
            machine.succeed(as_user("alice", f"{HEALCTL} {SECRET} --json restart-service healing-target.service"))
        )
        assert response["success"] is True, response
        machine.wait_for_unit("healing-target.service")
        assert machine.succeed(show).strip() != before
        entries = audit(f"HEALING_REQUEST_ID={response['request_id']} HEALING_ACTION=restart_service")
        assert any(e.get("HEALING_OUTCOME") == "success" for e in entries), entries

    # healctl's exit status: 3 refused (authentication, policy,
    # parameters), 5 could not talk to the service.
    with subtest("a unit outside the allow-list is denied, and audited"):
        status, out = machine.execute(as_user("alice", f"{HEALCTL} {SECRET} restart-service sshd.service 2>&1"))
        assert status == 3 and "Unit sshd.service not allowed" in out, (status, out)
        entries = audit("HEALING_ACTION=restart_service HEALING_OUTCOME=denied")
        assert any("sshd.service" in e.get("HEALING_PARAMETERS", "") for e in entries), entries

    with subtest("a wrong secret is refused as an invalid signature"):
        machine.succeed("echo not-the-secret > /tmp/wrong && chmod 0644 /tmp/wrong")
        status, out = machine.execute(as_user("alice", f"{HEALCTL} --secret-file /tmp/wrong status 2>&1"))
        assert status == 3 and "Invalid signature" in out, (status, out)
        entries = audit("HEALING_ACTION=status HEALING_OUTCOME=denied")
        assert any("signature" in e.get("HEALING_REASON", "").lower() for e in entries), entries

    with subtest("a user outside the group is refused"):
        machine.fail(as_user("mallory", "cat /etc/luminous-healing/secret"))
        # Even holding the secret, mallory cannot reach the dispatcher: the
        # socket is 0660 root:luminous-healing.
        machine.succeed("install -m 0644 /etc/luminous-healing/secret /tmp/leaked")
        status, out = machine.execute(as_user("mallory", f"{HEALCTL} --secret-file /tmp/leaked status 2>&1"))
        assert status == 5 and "Permission denied" in out, (status, out)
        machine.succeed("rm /tmp/leaked")

    with subtest("the dispatcher exits when idle and comes back on demand"):
        machine.wait_until_fails("systemctl is-active luminous-healing.service", timeout=60)
        machine.succeed("systemctl is-active luminous-healing.socket")
        machine.succeed(as_user("alice", f"{HEALCTL} {SECRET} status"))

    print(machine.succeed("systemd-analyze security --no-pager luminous-healing.service | tail -n 1"))

    with subtest("earlier module's options: inline secret, custom socket, disabled action"):
        legacy.wait_for_unit("sockets.target")
        sockets = legacy.succeed("systemctl list-sockets --all --full --no-legend --no-pager")
        assert "/run/heal.sock" in sockets, sockets
        assert "/run/luminous-healing.sock" not in sockets, sockets
        assert "luminous-healing-rollback_generation.socket" not in sockets, sockets
        for action in ACTIONS:
            if action != "rollback_generation":
                assert f"luminous-healing-{action}.socket" in sockets, action
        env = "LUMINOUS_HEALING_SECRET=legacy-inline-secret"
        response = json.loads(legacy.succeed(f"su -s /bin/sh alice -c '{env} {HEALCTL} --socket /run/heal.sock --json status'"))
        assert response["success"] is True, response
        status, out = legacy.execute(
            f"su -s /bin/sh alice -c '{env} {HEALCTL} --socket /run/heal.sock rollback-generation 2>&1'"
        )
        assert status == 3 and "Action rollback_generation not allowed" in out, (status, out)
  '';
}

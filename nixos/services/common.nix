# Shared pieces of the host-service modules: the sandbox every service here
# starts from, and the readiness wait that on-demand backends need.
#
# The values mirror units/ (the non-NixOS units, tested against a real
# systemd by tests/host_*.sh), so a service configured through NixOS gets
# the same confinement as the one installed from units/.
{ pkgs, systemd }:

let
  # What every host-service unit of units/ sets, the drop-ins for the
  # distribution's daemons (clamav-daemon, sshd, ollama) included: no new
  # privileges, read-only system, private /tmp and mount namespace, no
  # kernel or clock access, native syscalls only.
  baseline = {
    NoNewPrivileges = true;
    PrivateMounts = true;
    PrivateTmp = true;
    ProtectSystem = "strict";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
  };

  sandbox = baseline // {
    CapabilityBoundingSet = [ "" ];
    ProtectHome = true;
    RemoveIPC = true;
    UMask = "0077";
  };
in
{
  # The hardening every unit of units/* shares, for the drop-ins that
  # confine a daemon the distribution's module runs: these choose their own
  # capabilities, home access, IPC and umask.
  inherit baseline;

  # The common hardening of units/* for the services defined here: the
  # baseline, and no capabilities, no home, IPC and files private to the
  # service.
  # Services add what they need on top (devices, writable paths, address
  # families) or override an entry with their own reason.
  inherit sandbox;

  # systemd-socket-proxyd connects to its backend once and does not retry,
  # so a backend behind it must count as started only once its port
  # answers. As ExecStartPost= it delays the unit's "active" state, and the
  # proxy (After= the backend) waits for exactly that. A backend that dies
  # while loading fails the start at once instead of at TimeoutStartSec=.
  # ($$ leaves MAINPID for bash, which finds it in its environment.)
  waitForPort =
    port:
    "${pkgs.bash}/bin/bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/${toString port}) 2>/dev/null; do kill -0 $$MAINPID || exit 1; sleep 0.2; done'";

  # The on-demand front of a backend service: systemd-socket-proxyd, started
  # by a socket, exits after `idle` without traffic; the backend, marked
  # StopWhenUnneeded=, then stops with it and frees its memory (GPU memory
  # included). With `joinNamespace` the proxy runs in the backend's private
  # network namespace, so the backend needs no network of its own at all.
  proxyService =
    {
      description,
      backend,
      socket,
      port,
      idle,
      joinNamespace ? false,
    }:
    {
      inherit description;
      requires = [
        socket
        backend
      ];
      after = [
        socket
        backend
      ];
      unitConfig = if joinNamespace then { JoinsNamespaceOf = backend; } else { };
      serviceConfig =
        sandbox
        // {
          # Not "notify": systemd-socket-proxyd sends no READY=1, so the
          # proxy would hang in "activating" until the start timeout kills
          # it (seen under systemd 252; units/*-proxy*.service use exec).
          # Nothing waits for it: PID 1 holds the listening socket, and the
          # backend is ready (waitForPort) before the proxy starts.
          Type = "exec";
          ExecStart = "${systemd}/lib/systemd/systemd-socket-proxyd --exit-idle-time=${idle} 127.0.0.1:${toString port}";
          DynamicUser = true;
          PrivateDevices = true;
          PrivateUsers = true;
          ProcSubset = "pid";
          MemoryDenyWriteExecute = true;
          # As the tested units: AF_UNIX only for the proxy in a backend's
          # namespace (llama-cpp-proxy.service), the others forward TCP only.
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
          ] ++ (if joinNamespace then [ "AF_UNIX" ] else [ ]);
          SystemCallFilter = [
            "@system-service"
            "~@privileged @resources"
          ];
        }
        // (
          if joinNamespace then
            { PrivateNetwork = true; }
          else
            {
              IPAddressDeny = "any";
              IPAddressAllow = "localhost";
            }
        );
    };

  # The device nodes CUDA opens; nothing else from /dev.
  nvidiaDevices = [
    "/dev/nvidia0 rw"
    "/dev/nvidiactl rw"
    "/dev/nvidia-uvm rw"
    "/dev/nvidia-uvm-tools rw"
  ];
}

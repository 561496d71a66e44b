# Shared pieces of the host-service modules: the sandbox every service here
# starts from, and the on-demand scheme (socket, proxy, readiness wait) of
# the backends that are started only when used.
#
# The values mirror units/ (the non-NixOS units, tested against a real
# systemd by tests/host_*.sh), so a service configured through NixOS gets
# the same confinement as the one installed from units/.
#
# lib (nixpkgs' lib) is needed by onDemand only.
{
  pkgs,
  systemd,
  lib ? null,
}:

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

  # The readiness wait above (onDemand puts it in the backend;
  # tests/nix_dropins.sh runs it under a real systemd).
  inherit waitForPort;

  # A backend service started on demand and stopped when idle: a socket
  # that clients connect to at `listenAddress`, the proxy it starts
  # (proxyService above), which forwards to the backend at `port`, and the
  # backend itself, which now only the proxy starts, stops with it
  # (StopWhenUnneeded=) and counts as started once its port answers
  # (waitForPort). `name` is the backend's unit name; the proxy is
  # `name`-proxy, and so is the socket unless `socketName` names it
  # otherwise (it then hands its connections to the proxy with Service=).
  # A configuration fragment, for mkMerge next to the backend's own.
  onDemand =
    {
      name,
      port,
      listenAddress,
      idle,
      socketDescription,
      proxyDescription,
      socketName ? "${name}-proxy",
      joinNamespace ? false,
    }:
    {
      systemd.services = {
        ${name} = {
          # Started by the proxy only, never at boot.
          wantedBy = lib.mkForce [ ];
          unitConfig.StopWhenUnneeded = true;
          serviceConfig.ExecStartPost = waitForPort port;
        };
        "${name}-proxy" = proxyService {
          description = proxyDescription;
          backend = "${name}.service";
          socket = "${socketName}.socket";
          inherit port idle joinNamespace;
        };
      };
      systemd.sockets.${socketName} = {
        description = socketDescription;
        wantedBy = [ "sockets.target" ];
        listenStreams = [ listenAddress ];
        socketConfig =
          {
            FreeBind = true;
          }
          // (if socketName == "${name}-proxy" then { } else { Service = "${name}-proxy.service"; });
      };
    };

  # The device nodes CUDA opens; nothing else from /dev.
  nvidiaDevices = [
    "/dev/nvidia0 rw"
    "/dev/nvidiactl rw"
    "/dev/nvidia-uvm rw"
    "/dev/nvidia-uvm-tools rw"
  ];
}

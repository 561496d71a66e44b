# The host services, all under one namespace:
#
#   luminous.services.<group>.<name>.enable
#
#   ml              llama-cpp, ollama
#   development     jupyter
#   security        clamav (with its weekly scan), sshd
#   system          credstore
#   hardware        cudaCache, gpuMonitor
#   virtualization  dockerPrePull, vmShared
#   monitoring      prometheus, grafana
#
# Every one is off until enabled; once enabled, its defaults are the host
# this project was written for (see docs/nixos.md). Each extends the
# distribution's own module where there is one, so updates of that module
# still reach the host. Independent of services.luminous-healing: import
# either, or both.
{
  imports = [
    ./ml.nix
    ./development.nix
    ./security.nix
    ./system.nix
    ./hardware.nix
    ./virtualization.nix
    ./monitoring.nix
  ];
}

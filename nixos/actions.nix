# The actions the executor knows, by wire name. One list, imported by the
# package (which refuses to build if a binary is missing), the module (one
# socket and one option set per action) and the tests, so that adding an
# action is a one-line change that none of them can miss.
#
# Plain data on purpose: it must evaluate with builtins alone
# (tests/nix_eval.sh reads it without nixpkgs).
[
  "restart_service"
  "set_cpu_governor"
  "clear_system_cache"
  "adjust_swappiness"
  "kill_process"
  "restart_network"
  "clean_nix_store"
  "rollback_generation"
]

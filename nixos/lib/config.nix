# Turns the module's option values into the attribute set that becomes
# /etc/luminous-healing/config.toml.
#
# Kept free of nixpkgs `lib` (builtins only) so that tests/nix_eval.sh can
# evaluate it on a machine that has Nix but no nixpkgs, and assert the exact
# keys the dispatcher will read. The dispatcher rejects unknown keys and bad
# values at start-up, so this function only ever emits keys from the
# documented schema, and leaves a key out (rather than writing a default)
# whenever the option is null: the binaries' own defaults then apply, and
# there is one source of truth for them.
{
  group,
  # groups admitted besides `group` (the Varlink socket's, when it differs)
  extraGroups ? [ ],
  allowedUsers ? [ ],
  protocols,
  idleTimeout,
  # attrset: wire name -> { enable, rateLimit, timeoutSecs, ... }
  actions,
  # attrset: user name or "@group" -> { actions, units ? null }
  callers ? { },
  # { max, windowSecs } or null
  statusRateLimit ? null,
  maxIdsPerCaller ? null,
  nixProfilesDir ? null,
  currentSystem ? null,
}:

let
  # Drops null-valued keys; TOML has no null and the parser would refuse one.
  compact = attrs: builtins.removeAttrs attrs (builtins.filter (n: attrs.${n} == null) (builtins.attrNames attrs));

  # { max, windowSecs } -> { max, window_secs }; null stays null.
  limit =
    l:
    if l == null then
      null
    else
      {
        max = l.max;
        window_secs = l.windowSecs;
      };

  actionTable =
    name: a:
    compact {
      enabled = a.enable;
      rate_limit = limit (a.rateLimit or null);
      timeout_secs = a.timeoutSecs or null;
      # Action-specific keys: only the action that owns a key may carry it,
      # so a value set on the wrong action cannot reach the parser (which
      # would reject it as unknown).
      allowed_units =
        if name == "restart_service" then
          a.allowedUnits or null
        # kill_process: an empty list and no list mean the same (no unit's
        # processes are open to every caller); only a non-empty one is written.
        else if name == "kill_process" && (a.allowedUnits or [ ]) != [ ] then
          a.allowedUnits
        else
          null;
      breaker = if name == "restart_service" then limit (a.breaker or null) else null;
      nixos_rebuild = if name == "rollback_generation" then a.nixosRebuild or null else null;
      nix_collect_garbage = if name == "clean_nix_store" then a.nixCollectGarbage or null else null;
    };
  callerTable =
    _: c:
    compact {
      inherit (c) actions;
      units = c.units or null;
    };
in
compact {
  status_rate_limit = limit statusRateLimit;
  max_ids_per_caller = maxIdsPerCaller;
  nix_profiles_dir = nixProfilesDir;
  current_system = currentSystem;
  # Written only when some rule exists: no table and an empty one mean the
  # same to the dispatcher.
  callers = if callers == { } then null else builtins.mapAttrs callerTable callers;
}
// {
  allowed_groups = [ group ] ++ builtins.filter (g: g != group) extraGroups;
  # allowedUsers are also put in the group (the socket is 0660 to it), but
  # the dispatcher re-checks every caller (SO_PEERCRED, SO_PEERGROUPS), and
  # group membership takes effect only in sessions started after it was
  # granted: naming them here admits them by uid, whatever their session's
  # groups.
  allowed_users = allowedUsers;
  inherit protocols;
  idle_timeout_secs = idleTimeout;
  actions = builtins.mapAttrs actionTable actions;
}

# The module-system constructors (mkIf, mkMerge, priorities) as data,
# and a structural resolver for them, on top of stub-lib.nix. Used by
# render.nix and render-services.nix; see render.nix for what this is and
# is not.
let
  stub = import ./stub-lib.nix;

  # The module-system constructors, as data, and a resolver for them.
  lib = stub // {
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkForce = stub.mkOverride 50;
    mkBefore = content: { _type = "order"; priority = 500; inherit content; };
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };
    inherit (builtins) mapAttrs concatStringsSep;
    optionals = cond: list: if cond then list else [ ];
    unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
    recursiveUpdate =
      a: b:
      a
      // builtins.mapAttrs (
        n: v: if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then lib.recursiveUpdate a.${n} v else v
      ) b;
  };

  isType = t: v: builtins.isAttrs v && (v._type or null) == t;
  # Merges resolved definitions the way list- and attrset-typed options do.
  merge =
    a: b:
    if builtins.isAttrs a && builtins.isAttrs b then
      a // builtins.mapAttrs (n: v: if a ? ${n} then merge a.${n} v else v) b
    else if builtins.isList a && builtins.isList b then
      a ++ b
    else
      b;
  absent = { _type = "absent"; };
  resolve =
    v:
    if isType "if" v then
      (if v.condition then resolve v.content else absent)
    else if isType "merge" v then
      builtins.foldl' (acc: c: let r = resolve c; in if isType "absent" r then acc else merge acc r) { } v.contents
    else if isType "override" v || isType "order" v then
      resolve v.content
    else if builtins.isAttrs v && !(v ? _type) then
      let
        resolved = builtins.mapAttrs (_: resolve) v;
      in
      builtins.removeAttrs resolved (builtins.filter (n: isType "absent" resolved.${n}) (builtins.attrNames resolved))
    else if builtins.isList v then
      map resolve v
    else
      v;


  # Declared defaults of an option tree (submodules expanded).
  defaults =
    o:
    if (o._type or null) == "option" then
      (
        if o.type.name == "submodule" then
          let
            m = o.type.module;
          in
          defaults (if builtins.isFunction m then m { } else m).options
        else
          o.default or null
      )
    else
      builtins.mapAttrs (_: defaults) o;
in
{
  inherit lib resolve defaults merge;
}

# Builds the whole workspace (dispatcher, healctl, one binary per action)
# and installs it in the layout the unit templates expect, with the unit
# templates rendered against this store path. The NixOS module takes its
# units from here (systemd.packages), so what a NixOS host runs is exactly
# what the tests under tests/ run, placeholders aside.
{
  lib,
  rustPlatform,
  installShellFiles,
  pandoc,
}:

let
  fs = lib.fileset;
  workspace = lib.importTOML ../Cargo.toml;
  actions = import ./actions.nix;
in
rustPlatform.buildRustPackage {
  pname = "luminous-healing";
  inherit (workspace.workspace.package) version;

  # Only what the build, its tests and the install step read (docs/ too:
  # the protocol test vectors are read from docs/protocol.md). Editing
  # nixos/, tests/ or scripts/ must not change the package's hash and force
  # a rebuild of every host.
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../services
      (fs.maybeMissing ../.cargo)
      (fs.maybeMissing ../units)
      (fs.maybeMissing ../docs)
    ];
  };

  # Every dependency comes from crates.io, so the lock file alone pins the
  # vendored sources: no cargoHash to keep in step with Cargo.lock.
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    installShellFiles
    # The man pages are written in markdown (docs/man/NAME.SECTION.md).
    pandoc
  ];

  postInstall = ''
    # Every directory below is optional (units/ and docs/ grow as the
    # project does); an unmatched glob must expand to nothing, not to itself.
    shopt -s nullglob

    # Action binaries are started only by their own .socket units, never by
    # a person, so they live in libexec and stay out of PATH.
    libexec=$out/libexec/luminous-healing
    install -d "$libexec"
    for action in ${lib.escapeShellArgs actions}; do
      bin=luminous-healing-$action
      if [ ! -x "$out/bin/$bin" ]; then
        echo "action binary $bin was not built; nixos/actions.nix and the workspace disagree" >&2
        exit 1
      fi
      mv "$out/bin/$bin" "$libexec/$bin"
    done

    # Renders one *.in template. Fails on any placeholder left over, so a
    # new placeholder added to units/ cannot ship unsubstituted.
    render() {
      install -d "$(dirname "$2")"
      sed -e "s|@PREFIX@|$out|g" \
          -e "s|@BINDIR@|$out/bin|g" \
          -e "s|@LIBEXECDIR@|$libexec|g" \
          "$1" > "$2"
      if grep -n '@[A-Z][A-Z_]*@' "$2" >&2; then
        echo "unsubstituted placeholder in $1" >&2
        exit 1
      fi
    }

    # The executor's own units go where systemd.packages looks for them.
    for t in units/healing/*.in; do
      render "$t" "$out/lib/systemd/system/$(basename "$t" .in)"
    done
    # The module only adds drop-ins; a drop-in for a unit the package lacks
    # would become a unit of its own with nothing but the override in it.
    # So a missing unit is a build failure here, not a broken host later.
    for unit in luminous-healing.socket luminous-healing-varlink.socket luminous-healing.service \
        ${lib.concatMapStringsSep " " (a: "luminous-healing-${a}.socket luminous-healing-${a}.service") actions}; do
      if [ ! -f "$out/lib/systemd/system/$unit" ]; then
        echo "unit $unit missing from units/healing" >&2
        exit 1
      fi
    done

    # The host-service units (llama.cpp, ollama, clamav scan, ...) are for
    # non-NixOS installs, shipped under share/ for reference. Not in
    # lib/systemd/system: through systemd.packages a packaged
    # llama-cpp.service would become the base unit and the distribution's
    # services.llama-cpp a mere drop-in on top of it. On NixOS the services
    # tree (nixos/services/) configures the same services through the
    # distribution's modules instead.
    for group in units/*/; do
      group=$(basename "$group")
      case "$group" in
        healing|sysusers.d|catalog) continue ;;
      esac
      # Recursive: drop-in directories (ollama.service.d/, ...) come along.
      while read -r rel; do
        render "units/$rel" "$out/share/luminous-healing/units/''${rel%.in}"
      done < <(cd units && find "$group" -type f)
    done

    for f in units/sysusers.d/*.conf; do
      install -Dm444 -t "$out/lib/sysusers.d" "$f"
    done
    for f in units/catalog/*.catalog; do
      install -Dm444 -t "$out/lib/systemd/catalog" "$f"
    done
    for f in docs/*.md docs/man/*.md; do
      install -Dm444 -t "$out/share/doc/luminous-healing" "$f"
    done
    # docs/man/healctl.1.md -> healctl.1. The page's first line
    # ("# healctl(1) — what it does") becomes the NAME section that whatis
    # and apropos read; its "##" sections become the page's sections.
    for page in docs/man/*.[1-8].md; do
      base=$(basename "$page" .md)
      name=''${base%.*}
      section=''${base##*.}
      desc=$(sed -n '1s/^# [^ ]* — //p' "$page")
      { printf '## NAME\n\n%s - %s\n\n' "$name" "$desc"; tail -n +2 "$page"; } \
        | pandoc --standalone --from markdown --to man --shift-heading-level-by=-1 \
            --metadata title="$name" --metadata section="$section" --output "$base"
      installManPage "$base"
    done

    shopt -u nullglob
  '';

  meta = {
    description = "Least-privilege executor of repairs for NixOS/systemd hosts";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "healctl";
  };
}

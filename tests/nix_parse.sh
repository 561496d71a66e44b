#!/usr/bin/env bash
# Parses every .nix file of the repository with the real Nix parser.
# nixpkgs cannot be fetched where this runs, so parsing (and the builtins-only
# evaluations of tests/nix_eval.sh) is what can be checked here; the module
# system evaluation runs in `nix flake check` (see docs/nixos.md).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v nix-instantiate >/dev/null 2>&1; then
    echo "nix_parse: nix-instantiate not found: apt-get install -y --no-install-recommends nix-bin" >&2
    exit 1
fi

passed=0
failed=0
# Tracked and untracked-but-not-ignored files: build output under target/
# and vendored sources are never the project's own Nix code.
mapfile -t files < <(cd "$ROOT" && git ls-files --cached --others --exclude-standard -- '*.nix' 2>/dev/null | sort -u)
if [ "${#files[@]}" -eq 0 ]; then
    mapfile -t files < <(cd "$ROOT" && find . -name '*.nix' -not -path './target/*' -not -path './.git/*' | sed 's|^\./||' | sort)
fi

for f in "${files[@]}"; do
    [ -f "$ROOT/$f" ] || continue
    if err=$(nix-instantiate --parse "$ROOT/$f" 2>&1 >/dev/null); then
        echo "ok   $f"
        passed=$((passed + 1))
    else
        echo "FAIL $f"
        printf '%s\n' "$err" | sed 's/^/     /'
        failed=$((failed + 1))
    fi
done

if [ $((passed + failed)) -eq 0 ]; then
    echo "nix_parse: no .nix files found under $ROOT" >&2
    failed=1
fi

echo "nix_parse: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

# Sourced by the scripts that run as root and build with cargo (scripts/try,
# scripts/test, scripts/ci-in-clean-root).
#
# `sudo` resets PATH (Debian's secure_path), which hides a rustup toolchain
# in the invoking user's home, so `sudo scripts/test` used to stop at
# "cargo missing" on a machine that has Rust. rustup's proxies there would
# also look for their toolchains in root's home. So, when cargo is not on
# PATH and the script runs under sudo, put the invoking user's default
# toolchain itself first on PATH: its sysroot's bin (cargo, rustc,
# cargo-clippy, cargo-fmt; no proxy), asked of the user's own rustc, run as
# that user. CARGO_HOME stays root's: crates fetched as root land in root's
# home, never as root-owned files in the user's.
use_invoking_users_rust() {
    command -v cargo >/dev/null && return 0
    [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] || return 0
    local home rustc sysroot
    home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    [ -n "$home" ] || return 0
    rustc="$home/.cargo/bin/rustc"
    [ -x "$rustc" ] || return 0
    sysroot=$(sudo -u "$SUDO_USER" env "HOME=$home" "$rustc" --print sysroot 2>/dev/null) || return 0
    [ -x "$sysroot/bin/cargo" ] || return 0
    PATH="$sysroot/bin:$PATH"
    export PATH
}

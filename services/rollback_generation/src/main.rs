//! `rollback_generation`: runs `<nixos-rebuild> switch --rollback`, the path
//! from the config (default /run/current-system/sw/bin/nixos-rebuild). The
//! argv is fixed: no request parameter reaches it.
//!
//! This is the one broad action, and cannot be otherwise: switching to the
//! previous generation rewrites the system profile, runs the activation
//! script (which writes /etc, /bin/sh, /usr/bin/env, /var, /run/wrappers with
//! setuid and capability wrappers, mounts, chowns state directories and may
//! create home directories), installs the boot loader, and starts, stops and
//! restarts units. docs/privileges.md lists the capabilities and why each is
//! kept, and what still limits the action.
//!
//! Landlock therefore allows the whole filesystem; what it still enforces
//! is the scopes (no signals to processes outside this service's domain, no
//! abstract Unix sockets made outside it) and no TCP.
//!
//! Under the lock it shares with clean_nix_store (busy: refused, rule
//! one-nix-operation), the system generations are the facts: only a system
//! running the newest generation goes back, one step (rule one-step-back).
//! `nixos-rebuild --rollback` steps back from the generation the `system`
//! link names, so that must be the running one too, or it would go further
//! back than the plan says. Afterwards the running system must be the
//! planned generation, or the reply is a failure saying which it is.

use healing_activation::worker::{run_worker, Env, Gate, Job};
use healing_exec::generations;
use healing_policy::params::RollbackGeneration;
use healing_policy::{ActionName, Config, Facts, Plan};
use healing_protocol::ActionReply;
use std::process::ExitCode;
use std::time::Duration;

const ENV: [(&str, &str); 3] = [
    ("PATH", "/run/current-system/sw/bin:/usr/bin:/bin"),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
];

/// Exactly what is run, and the only thing: the stand-in test checks it.
const ARGS: [&str; 2] = ["switch", "--rollback"];

/// Runs the rollback planned from `from` to `to`, then checks where the
/// running system is.
fn rollback(config: &Config, from: u32, to: u32) -> ActionReply {
    let program = config.nixos_rebuild();
    // A second under the worker's limit: we kill the whole process group
    // ourselves and say so, before the worker gives up on the handler.
    let secs = config.action_timeout_secs(ActionName::RollbackGeneration);
    let timeout = Duration::from_secs(secs.saturating_sub(1).max(1));
    let shown = format!("{} {}", program.display(), ARGS.join(" "));
    match healing_exec::run(&program, &ARGS, &ENV, timeout) {
        Ok(f) if f.success() => {
            let now = generations::read(&config.nix_profiles_dir(), &config.current_system())
                .map(|g| g.current);
            match now {
                Ok(Some(n)) if n == to => ActionReply::ok(format!(
                    "{shown}: succeeded in {} ms; generation {from} -> {to}, now running {to}\n{}",
                    f.elapsed.as_millis(),
                    f.output
                )),
                Ok(n) => ActionReply::failed(format!(
                    "{shown} exited 0, but the running system is {}, not the planned {to} (from {from}):\n{}",
                    n.map_or("no generation of the profile".into(), |n| format!("generation {n}")),
                    f.output
                )),
                Err(e) => ActionReply::failed(format!(
                    "{shown} exited 0, but the generations cannot be read: {e}\n{}",
                    f.output
                )),
            }
        }
        other => ActionReply::failed(healing_exec::failure(
            &shown,
            other,
            " (the system may be between generations: check `nixos-rebuild list-generations`)",
        )),
    }
}

fn handle(job: &Job<RollbackGeneration>, env: &Env) -> ActionReply {
    let config = &env.config;
    // Held until nixos-rebuild has finished: no GC starts meanwhile.
    let (_lock, gens, facts) =
        match generations::permit_and_lock(&env.policy, &job.caller_info(), &job.action, config) {
            Ok(r) => r,
            Err(e) => return ActionReply::failed(e),
        };
    let (from, to) = match env.gate(job, &Facts::Generations(facts)) {
        Gate::Reply(r) => return r,
        Gate::Act(Plan::Rollback { from, to }) => (from, to),
        Gate::Act(other) => return ActionReply::failed(format!("unexpected plan: {other}")),
    };
    if let Err(e) = profile_names(&gens, from, to) {
        return ActionReply::failed(e);
    }
    rollback(config, from, to)
}

/// `nixos-rebuild --rollback` goes to the generation before the one the
/// `system` link names: only when that is the running one does it go where
/// the plan says.
fn profile_names(gens: &generations::Generations, from: u32, to: u32) -> Result<(), String> {
    match gens.profile {
        Some(p) if p == from => Ok(()),
        p => Err(format!(
            "refused: the system profile names {}, not the running generation {from}; \
             nixos-rebuild --rollback would not go to {to}",
            p.map_or("no generation".into(), |p| format!("generation {p}"))
        )),
    }
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn the_profile_must_name_the_running_generation() {
        let mut g = generations::Generations {
            profile: Some(3),
            ..Default::default()
        };
        assert_eq!(profile_names(&g, 3, 2), Ok(()));
        g.profile = Some(2);
        let e = profile_names(&g, 3, 2).unwrap_err();
        assert!(
            e.contains("names generation 2, not the running generation 3"),
            "{e}"
        );
        g.profile = None;
        assert!(profile_names(&g, 3, 2)
            .unwrap_err()
            .contains("names no generation"));
    }

    /// A stand-in that records its argv and, as a real rollback would, moves
    /// the profile and the running system from generation 2 to 1.
    #[test]
    fn stand_in_nixos_rebuild_gets_exactly_switch_rollback() {
        let dir = std::env::temp_dir().join(format!("lh-rb-{}", std::process::id()));
        let (profiles, store) = (dir.join("profiles"), dir.join("store"));
        std::fs::create_dir_all(&profiles).unwrap();
        for n in [1, 2] {
            std::fs::create_dir_all(store.join(n.to_string())).unwrap();
            symlink(
                store.join(n.to_string()),
                profiles.join(format!("system-{n}-link")),
            )
            .unwrap();
        }
        let current = dir.join("current-system");
        symlink(store.join("2"), &current).unwrap();
        let prog = dir.join("nixos-rebuild");
        let log = dir.join("argv");
        std::fs::write(
            &prog,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > {log}\nln -sfn {s}/1 {c}\necho rolled back\n",
                log = log.display(),
                s = store.display(),
                c = current.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = Config::parse(&format!(
            "nix_profiles_dir = {:?}\ncurrent_system = {:?}\n[actions.rollback_generation]\nnixos_rebuild = {:?}",
            profiles.display().to_string(),
            current.display().to_string(),
            prog.display().to_string()
        ))
        .unwrap();
        let r = rollback(&c, 2, 1);
        assert!(r.success, "{r:?}");
        let out = r.output.unwrap();
        assert!(out.contains("generation 2 -> 1, now running 1\n"), "{out}");
        assert!(out.ends_with("rolled back\n"));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "2\nswitch\n--rollback\n"
        );
        // It exits 0 but the running system is not the planned one.
        let r = rollback(&c, 3, 2);
        assert!(r
            .error
            .unwrap()
            .contains("the running system is generation 1, not the planned 2"));
        std::fs::remove_dir_all(&dir).unwrap();
        let r = rollback(&c, 2, 1);
        assert!(!r.success);
        assert!(r.error.unwrap().contains("cannot run"));
    }
}

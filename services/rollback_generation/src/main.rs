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

use healing_activation::worker::{run_worker, Capability, Env, Job, PathRule, Ruleset, WorkerSpec};
use healing_exec::ExecError;
use healing_policy::{Action, ActionName, Config};
use healing_protocol::ActionReply;
use std::process::ExitCode;
use std::time::Duration;

/// Must equal the unit's CapabilityBoundingSet= (the worker refuses to run
/// with more, or with less). Why each is needed: docs/privileges.md.
static CAPABILITIES: [Capability; 11] = [
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_LINUX_IMMUTABLE,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_ADMIN,
];

static SPEC: WorkerSpec = WorkerSpec {
    action: ActionName::RollbackGeneration,
    capabilities: &CAPABILITIES,
    landlock: ruleset,
};

fn ruleset(_: &Config) -> Ruleset {
    Ruleset::new(vec![PathRule::full("/")])
}

const ENV: [(&str, &str); 3] = [
    ("PATH", "/run/current-system/sw/bin:/usr/bin:/bin"),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
];

/// Exactly what is run, and the only thing: the stand-in test checks it.
const ARGS: [&str; 2] = ["switch", "--rollback"];

fn rollback(config: &Config) -> ActionReply {
    let program = config.nixos_rebuild();
    // A second under the worker's limit: we kill the whole process group
    // ourselves and say so, before the worker gives up on the handler.
    let secs = config.action_timeout_secs(ActionName::RollbackGeneration);
    let timeout = Duration::from_secs(secs.saturating_sub(1).max(1));
    let shown = format!("{} {}", program.display(), ARGS.join(" "));
    match healing_exec::run(&program, &ARGS, &ENV, timeout) {
        Ok(f) if f.success() => {
            ActionReply::ok(format!("{shown}: succeeded in {} ms\n{}", f.elapsed.as_millis(), f.output))
        }
        Ok(f) => ActionReply::failed(format!(
            "{shown} failed with {}:\n{}",
            f.describe_status(),
            f.output
        )),
        Err(ExecError::Timeout { after, output }) => ActionReply::failed(format!(
            "{shown} did not finish within {} s and was killed (the system may be between generations: check `nixos-rebuild list-generations`):\n{output}",
            after.as_secs()
        )),
        Err(e) => ActionReply::failed(e.to_string()),
    }
}

fn handle(job: &Job, env: &Env) -> ActionReply {
    let action = &job.action;
    if let Err(r) = healing_policy::permit(&env.policy, &job.caller_info(), action) {
        return ActionReply::failed(r.to_string());
    }
    let config = &env.config;
    if *action != Action::RollbackGeneration {
        return ActionReply::failed(format!(
            "rollback_generation cannot perform {:?}",
            action.name()
        ));
    }
    rollback(config)
}

fn main() -> ExitCode {
    run_worker(&SPEC, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stand_in_nixos_rebuild_gets_exactly_switch_rollback() {
        let dir = std::env::temp_dir().join(format!("lh-rb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join("nixos-rebuild");
        let log = dir.join("argv");
        std::fs::write(
            &prog,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > {}\necho rolled back\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = Config::parse(&format!(
            "[actions.rollback_generation]\nnixos_rebuild = {:?}",
            prog.display().to_string()
        ))
        .unwrap();
        let r = rollback(&c);
        assert!(r.success, "{r:?}");
        assert!(r.output.unwrap().ends_with("rolled back\n"));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "2\nswitch\n--rollback\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let r = rollback(&c);
        assert!(!r.success);
        assert!(r.error.unwrap().contains("cannot run"));
    }
}

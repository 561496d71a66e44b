//! `clean_nix_store`: runs `nix-collect-garbage -d` (the path comes from the
//! config) and reports how much it freed.
//!
//! Under the lock it shares with rollback_generation (a busy lock refuses,
//! rule one-nix-operation), with the system generations as facts: when the
//! running system is older than the newest generation (it was rolled back),
//! `-d` would delete the generations it came from, so the plan is
//! `nix-collect-garbage` without `-d`, and the reply says so.
//!
//! Privilege: root uid with no capabilities. The store, the profiles and the
//! GC roots are root's own files, so uid 0 writes them without
//! CAP_DAC_OVERRIDE or CAP_FOWNER; the unit makes /nix the only writable
//! tree. What it cannot do without CAP_SYS_PTRACE is read /proc/<pid>/maps,
//! environ, fd of other users' processes, so runtime roots held only by
//! another user's process are not seen (docs/privileges.md says why that is
//! the chosen trade-off).
//!
//! Environment, set explicitly (nothing is inherited):
//! - `HOME=/var/empty`: nix aborts when HOME is missing or unreadable, and
//!   the unit hides /root (ProtectHome=tmpfs).
//! - `NIX_CONFIG=build-users-group =`: a collection builds nothing, and the
//!   Debian package's default names a group that may not exist, which makes
//!   nix warn on every run. (The space before `=` is required.)

use healing_activation::worker::{run_worker, Env, Gate, Job};
use healing_exec::generations;
use healing_policy::params::CleanNixStore;
use healing_policy::{ActionName, Config, Facts, Plan};
use healing_protocol::ActionReply;
use std::process::ExitCode;
use std::time::Duration;

const ENV: [(&str, &str); 4] = [
    ("PATH", "/run/current-system/sw/bin:/usr/bin:/bin"),
    ("HOME", "/var/empty"),
    ("NIX_CONFIG", "build-users-group ="),
    ("LANG", "C.UTF-8"),
];

const DAEMON_SOCKET: &str = "/nix/var/nix/daemon-socket/socket";

/// Where the collection itself happens.
///
/// Runtime roots (store paths open, mapped or executed by running
/// processes) are found by reading /proc/<pid>/{fd,maps,environ,exe}. This
/// process cannot read them for any process outside its own landlock domain
/// (landlock denies ptrace-mode access across domains, whatever the
/// capabilities), nor, without CAP_SYS_PTRACE, for processes holding more
/// capabilities than it does (measured: a root process's open store path
/// counted as dead). So when a nix-daemon listens (NixOS always has one) the
/// daemon, which runs unconfined as root, collects and finds the runtime
/// roots; `-d` still removes old generations here, in /nix/var/nix/profiles.
/// Without a daemon the store is collected locally and runtime roots are
/// missed: say so in the reply.
fn use_daemon(socket: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket())
}

/// nix's closing line, e.g. "3 store paths deleted, 0.12 MiB freed".
#[derive(Debug, PartialEq)]
struct Freed {
    paths: u64,
    amount: String,
}

/// Finds the last summary line. nix formats it as
/// `"%d store paths deleted, %s freed"` with a size such as "0.12 MiB".
fn parse_freed(output: &str) -> Option<Freed> {
    output.lines().rev().find_map(|line| {
        let line = line.trim();
        let (count, rest) = line.split_once(" store path")?;
        let paths = count.trim().parse::<u64>().ok()?;
        let rest = rest
            .strip_prefix("s deleted, ")
            .or_else(|| rest.strip_prefix(" deleted, "))?;
        let amount = rest.strip_suffix(" freed")?.trim();
        let mut words = amount.split_whitespace();
        let number = words.next()?;
        let unit = words.next()?;
        let ok = words.next().is_none()
            && number.parse::<f64>().is_ok()
            && ["B", "bytes", "KiB", "MiB", "GiB", "TiB"].contains(&unit);
        ok.then(|| Freed {
            paths,
            amount: amount.to_string(),
        })
    })
}

/// `-d` when the plan deletes old generations; without it every generation
/// is kept, and the reply says why (`note`).
fn collect(config: &Config, delete_generations: bool, note: Option<&str>) -> ActionReply {
    let program = config.nix_collect_garbage();
    let args: &[&str] = if delete_generations { &["-d"] } else { &[] };
    let shown = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let kept = match (delete_generations, note) {
        (true, _) => String::new(),
        (false, Some(n)) => format!("without -d, every generation kept: {n}\n"),
        (false, None) => "without -d, every generation kept\n".into(),
    };
    // A second under the worker's limit, so the child is killed by us (and
    // the caller learns that) before the worker gives up on the handler.
    let secs = config.action_timeout_secs(ActionName::CleanNixStore);
    let timeout = Duration::from_secs(secs.saturating_sub(1).max(1));
    let daemon = use_daemon(std::path::Path::new(DAEMON_SOCKET));
    let mut env = ENV.to_vec();
    let via = if daemon {
        env.push(("NIX_REMOTE", "daemon"));
        "collected by nix-daemon"
    } else {
        env.push(("NIX_REMOTE", "local"));
        "collected locally, no nix-daemon: runtime roots of running processes were not visible"
    };
    match healing_exec::run(&program, args, &env, timeout) {
        Ok(f) if f.success() => match parse_freed(&f.output) {
            Some(freed) => ActionReply::ok(format!(
                "freed {} ({} store paths deleted; {via})\n{kept}{}",
                freed.amount, freed.paths, f.output
            )),
            None => ActionReply::failed(format!(
                "{shown} succeeded but printed no \"N store paths deleted, X freed\" line:\n{}",
                f.output
            )),
        },
        other => ActionReply::failed(healing_exec::failure(&shown, other, "")),
    }
}

fn handle(job: &Job<CleanNixStore>, env: &Env) -> ActionReply {
    let config = &env.config;
    // Held until the collection has finished: no rollback starts meanwhile.
    let (_lock, _, facts) =
        match generations::permit_and_lock(&env.policy, &job.caller_info(), &job.action, config) {
            Ok(r) => r,
            Err(e) => return ActionReply::failed(e),
        };
    match env.gate(job, &Facts::Generations(facts)) {
        Gate::Reply(r) => r,
        Gate::Act(Plan::CollectGarbage {
            delete_generations,
            note,
        }) => collect(config, delete_generations, note.as_deref()),
        Gate::Act(other) => ActionReply::failed(format!("unexpected plan: {other}")),
    }
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_found_and_checked() {
        let out = "removing old generations of profile /nix/var/nix/profiles/default\n\
                   deleting '/nix/store/abc-x'\n\
                   deleting unused links...\n\
                   note: currently hard linking saves 0.00 MiB\n\
                   2 store paths deleted, 0.05 MiB freed\n";
        assert_eq!(
            parse_freed(out),
            Some(Freed {
                paths: 2,
                amount: "0.05 MiB".into()
            })
        );
        assert_eq!(
            parse_freed("0 store paths deleted, 0.00 MiB freed")
                .unwrap()
                .paths,
            0
        );
        assert_eq!(
            parse_freed("1 store path deleted, 1.5 KiB freed")
                .unwrap()
                .amount,
            "1.5 KiB"
        );
        for bad in [
            "",
            "store paths deleted, 1 MiB freed",
            "x store paths deleted, 1 MiB freed",
            "2 store paths deleted, lots freed",
            "2 store paths deleted, 1 MiB",
        ] {
            assert_eq!(parse_freed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stand_in_program_output_is_reported_with_the_size_first() {
        let dir = std::env::temp_dir().join(format!("lh-gc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join("nix-collect-garbage");
        std::fs::write(
            &prog,
            "#!/bin/sh\n[ \"$*\" = -d ] || exit 9\n[ \"$NIX_CONFIG\" = 'build-users-group =' ] || exit 8\necho '3 store paths deleted, 1.25 MiB freed'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = Config::parse(&format!(
            "[actions.clean_nix_store]\nnix_collect_garbage = {:?}",
            prog.display().to_string()
        ))
        .unwrap();
        let r = collect(&c, true, None);
        assert!(r.success, "{r:?}");
        assert!(!use_daemon(std::path::Path::new("/dev/null")));
        let out = r.output.unwrap();
        assert!(out.starts_with("freed 1.25 MiB (3 store paths deleted; "));
        assert!(!out.contains("every generation kept"));
        // Without -d the stand-in exits 9: the argv really has no -d.
        let r = collect(&c, false, Some("the running system is older"));
        assert!(r
            .error
            .unwrap()
            .contains(&format!("{} failed with exit status 9", prog.display())));
        std::fs::write(
            &prog,
            "#!/bin/sh\n[ $# = 0 ] || exit 9\necho '0 store paths deleted, 0.00 MiB freed'\n",
        )
        .unwrap();
        let out = collect(&c, false, Some("the running system is older"))
            .output
            .unwrap();
        let second = out.lines().nth(1).unwrap();
        assert_eq!(
            second,
            "without -d, every generation kept: the running system is older"
        );
        std::fs::write(&prog, "#!/bin/sh\necho broken >&2; exit 1\n").unwrap();
        let r = collect(&c, true, None);
        assert!(!r.success);
        assert!(r
            .error
            .unwrap()
            .contains("-d failed with exit status 1:\nbroken"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

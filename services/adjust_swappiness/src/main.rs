//! `adjust_swappiness`: writes `vm.swappiness` (0-100, checked by the schema).
//!
//! Privilege: root uid with no capabilities: the sysctl file is root's 0644,
//! so root's ownership is enough and nothing else is. Landlock: that one
//! file, read-write.

use healing_activation::worker::{run_worker, PathRule, Ruleset, WorkerSpec};
use healing_auth::Peer;
use healing_policy::{Action, ActionName, Config};
use healing_protocol::{ActionReply, Caller};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

const SWAPPINESS: &str = "/proc/sys/vm/swappiness";

static SPEC: WorkerSpec = WorkerSpec {
    action: ActionName::AdjustSwappiness,
    capabilities: &[],
    landlock: ruleset,
};

fn ruleset(_: &Config) -> Ruleset {
    Ruleset::new(vec![PathRule::rw(SWAPPINESS)])
}

fn read_value(path: &Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("{} holds {:?}, not a number", path.display(), text.trim()))
}

/// Sets the value at `path` (the sysctl file, or a stand-in in tests) and
/// reports old → new as read back from the kernel.
fn set(path: &Path, value: u8) -> Result<String, String> {
    let old = read_value(path)?;
    // One write(2) of the whole number: a sysctl parses each write on its own.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {} for writing: {e}", path.display()))?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))?;
    drop(f);
    let new = read_value(path)?;
    if new != u32::from(value) {
        return Err(format!(
            "wrote {value} to {} but it reads back {new}",
            path.display()
        ));
    }
    Ok(format!("vm.swappiness {old} -> {new}"))
}

fn handle(action: &Action, _: &Caller, _: &Peer, _: &Config) -> ActionReply {
    match action {
        Action::AdjustSwappiness { value } => match set(Path::new(SWAPPINESS), *value) {
            Ok(out) => ActionReply::ok(out),
            Err(e) => ActionReply::failed(e),
        },
        other => ActionReply::failed(format!(
            "adjust_swappiness cannot perform {:?}",
            other.name()
        )),
    }
}

fn main() -> ExitCode {
    run_worker(&SPEC, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_old_and_new_on_a_stand_in_file() {
        let p = std::env::temp_dir().join(format!("lh-swappiness-{}", std::process::id()));
        std::fs::write(&p, "60\n").unwrap();
        assert_eq!(set(&p, 10).unwrap(), "vm.swappiness 60 -> 10");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "10\n");
        std::fs::write(&p, "junk").unwrap();
        assert!(set(&p, 10).unwrap_err().contains("not a number"));
        std::fs::remove_file(&p).unwrap();
        assert!(set(&p, 10).unwrap_err().contains("cannot read"));
    }
}

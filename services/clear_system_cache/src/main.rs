//! `clear_system_cache`: sync(2), then writes 3 to `/proc/sys/vm/drop_caches`
//! (page cache, dentries and inodes).
//!
//! Privilege: root uid with no capabilities: the kernel checks only the
//! file's mode (root's 0200), found by experiment in the container.
//! Landlock: that one file, read-write (write-only is not a landlock right
//! distinct enough to matter: the file cannot be read by anyone).

use healing_activation::worker::{run_worker, PathRule, Ruleset, WorkerSpec};
use healing_auth::Peer;
use healing_policy::{Action, ActionName, Config};
use healing_protocol::{ActionReply, Caller};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

static SPEC: WorkerSpec = WorkerSpec {
    action: ActionName::ClearSystemCache,
    capabilities: &[],
    landlock: ruleset,
};

fn ruleset(_: &Config) -> Ruleset {
    Ruleset::new(vec![PathRule::rw(DROP_CACHES)])
}

/// Syncs, then asks the kernel (or a stand-in file in tests) to drop clean
/// caches. Without the sync, dirty pages would stay cached.
fn clear(path: &Path) -> Result<String, String> {
    let t0 = Instant::now();
    nix::unistd::sync();
    let synced = t0.elapsed();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {} for writing: {e}", path.display()))?;
    f.write_all(b"3\n")
        .map_err(|e| format!("cannot write 3 to {}: {e}", path.display()))?;
    Ok(format!(
        "synced in {} ms; dropped page cache, dentries and inodes (3 > {}) in {} ms",
        synced.as_millis(),
        path.display(),
        (t0.elapsed() - synced).as_millis()
    ))
}

fn handle(action: &Action, _: &Caller, _: &Peer, _: &Config) -> ActionReply {
    match action {
        Action::ClearSystemCache => match clear(Path::new(DROP_CACHES)) {
            Ok(out) => ActionReply::ok(out),
            Err(e) => ActionReply::failed(e),
        },
        other => ActionReply::failed(format!(
            "clear_system_cache cannot perform {:?}",
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
    fn writes_3_to_a_stand_in_file() {
        let p = std::env::temp_dir().join(format!("lh-drop-caches-{}", std::process::id()));
        std::fs::write(&p, "").unwrap();
        assert!(clear(&p).unwrap().contains("dropped page cache"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "3\n");
        std::fs::remove_file(&p).unwrap();
        assert!(clear(&p).unwrap_err().contains("cannot open"));
    }
}

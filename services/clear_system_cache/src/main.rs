//! `clear_system_cache`: sync(2), then writes 3 to `/proc/sys/vm/drop_caches`
//! (page cache, dentries and inodes).
//!
//! Privilege: root uid with no capabilities: the kernel checks only the
//! file's mode (root's 0200), found by experiment in the container.
//! Landlock: no path at all. The file is opened write-only once, before
//! confinement, and each request writes that descriptor at offset 0
//! (pwrite): a landlock rule on a procfs file stops matching once the kernel
//! evicts its dentry, which this very action makes it do (docs/benchmarks.md,
//! finding 6).

use healing_activation::worker::{run_worker, with_held_file, Env, Job};
use healing_policy::params::ClearSystemCache;
use healing_protocol::ActionReply;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Syncs, then asks the kernel, through `f` (the held sysctl file, or a
/// stand-in in tests; `path` names it), to drop clean caches. Without the
/// sync, dirty pages would stay cached.
fn clear(f: &File, path: &Path) -> Result<String, String> {
    let t0 = Instant::now();
    nix::unistd::sync();
    let synced = t0.elapsed();
    match f.write_at(b"3\n", 0) {
        Ok(2) => {}
        Ok(n) => return Err(format!("short write to {}: {n} of 2 bytes", path.display())),
        Err(e) => return Err(format!("cannot write 3 to {}: {e}", path.display())),
    }
    Ok(format!(
        "synced in {} ms; dropped page cache, dentries and inodes (3 > {}) in {} ms",
        synced.as_millis(),
        path.display(),
        (t0.elapsed() - synced).as_millis()
    ))
}

fn handle(job: &Job<ClearSystemCache>, env: &Env) -> ActionReply {
    with_held_file(job, env, DROP_CACHES, clear)
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use healing_activation::worker::Ruleset;

    #[test]
    fn writes_3_to_a_stand_in_file() {
        let p = std::env::temp_dir().join(format!("lh-drop-caches-{}", std::process::id()));
        std::fs::write(&p, "").unwrap();
        // one descriptor, several requests: each writes at offset 0
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert!(clear(&f, &p).unwrap().contains("dropped page cache"));
        assert!(clear(&f, &p).unwrap().contains("dropped page cache"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "3\n");
        let read_only = File::open(&p).unwrap();
        assert!(clear(&read_only, &p)
            .unwrap_err()
            .contains("cannot write 3"));
        std::fs::remove_file(&p).unwrap();
        assert!(Ruleset::held_file(Path::new(DROP_CACHES))
            .unwrap_err()
            .contains("not opened before confinement"));
    }
}

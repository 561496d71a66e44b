//! `adjust_swappiness`: writes `vm.swappiness` (0-100, checked by the schema).
//!
//! Privilege: root uid with no capabilities: the sysctl file is root's 0644,
//! so root's ownership is enough and nothing else is. Landlock: no path at
//! all. The file is opened read-write once, before confinement, and the
//! action reads and writes that descriptor at offset 0 (pread/pwrite): a
//! landlock rule on a procfs file stops matching once the kernel evicts its
//! dentry (cache drops, memory pressure), which made a long-running instance
//! answer EACCES (docs/benchmarks.md, finding 6).

use healing_activation::worker::{run_worker, with_held_file, Env, Job};
use healing_policy::params::AdjustSwappiness;
use healing_protocol::ActionReply;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;

const SWAPPINESS: &str = "/proc/sys/vm/swappiness";

/// The whole value, read from offset 0 (a sysctl file reads as empty from
/// any other offset, which ends the loop).
fn read_value(f: &File, path: &Path) -> Result<u32, String> {
    let mut buf = [0u8; 64];
    let mut n = 0;
    loop {
        if n == buf.len() {
            return Err(format!("{} holds more than {n} bytes", path.display()));
        }
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    text.trim()
        .parse()
        .map_err(|_| format!("{} holds {:?}, not a number", path.display(), text.trim()))
}

/// Sets the value through `f` (the held sysctl file, or a stand-in in
/// tests; `path` names it in messages) and reports old → new as read back
/// from the kernel.
fn set(f: &File, path: &Path, value: u8) -> Result<String, String> {
    let old = read_value(f, path)?;
    // One write(2) of the whole number at offset 0: a sysctl parses each
    // write on its own, and ignores one at a later offset.
    let text = format!("{value}\n");
    match f.write_at(text.as_bytes(), 0) {
        Ok(n) if n == text.len() => {}
        Ok(n) => {
            return Err(format!(
                "short write of {value} to {}: {n} of {} bytes",
                path.display(),
                text.len()
            ))
        }
        Err(e) => return Err(format!("cannot write {value} to {}: {e}", path.display())),
    }
    let new = read_value(f, path)?;
    if new != u32::from(value) {
        return Err(format!(
            "wrote {value} to {} but it reads back {new}",
            path.display()
        ));
    }
    Ok(format!("vm.swappiness {old} -> {new}"))
}

fn handle(job: &Job<AdjustSwappiness>, env: &Env) -> ActionReply {
    with_held_file(job, env, SWAPPINESS, |f, path| {
        set(f, path, job.params.value)
    })
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use healing_activation::worker::Ruleset;

    #[test]
    fn reports_old_and_new_on_a_stand_in_file() {
        let p = std::env::temp_dir().join(format!("lh-swappiness-{}", std::process::id()));
        std::fs::write(&p, "60\n").unwrap();
        let rw = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap()
        };
        // one descriptor, several requests: each reads and writes at offset 0
        let f = rw();
        assert_eq!(set(&f, &p, 10).unwrap(), "vm.swappiness 60 -> 10");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "10\n");
        assert_eq!(set(&f, &p, 20).unwrap(), "vm.swappiness 10 -> 20");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "20\n");
        std::fs::write(&p, "junk").unwrap();
        assert!(set(&rw(), &p, 10).unwrap_err().contains("not a number"));
        std::fs::write(&p, "60\n").unwrap();
        let write_only = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert!(set(&write_only, &p, 10)
            .unwrap_err()
            .contains("cannot read"));
        let read_only = File::open(&p).unwrap();
        assert!(set(&read_only, &p, 10)
            .unwrap_err()
            .contains("cannot write 10"));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn without_a_held_file_the_request_fails_clearly() {
        // no ruleset was applied in this test process
        let e = Ruleset::held_file(Path::new(SWAPPINESS)).unwrap_err();
        assert!(e.contains("not opened before confinement"), "{e}");
    }
}

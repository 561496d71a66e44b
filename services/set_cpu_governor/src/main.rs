//! `set_cpu_governor`: writes the cpufreq scaling governor of every CPU.
//!
//! Privilege: root uid with no capabilities (sysfs attributes are root's
//! 0644). Landlock: the CPU sysfs tree, read-write; `cpuN/cpufreq` links
//! into `cpufreq/policyN` inside the same tree. A path rule is safe here,
//! unlike on procfs (docs/benchmarks.md, finding 6): sysfs (kernfs) looks a
//! node's inode up again by number, so the inode the rule pins is the one
//! every later lookup finds, even after the kernel evicts the dentries
//! (checked: a landlocked process kept reading `cpu/online` through cache
//! drops that made its rule on `/proc/sys/vm/swappiness` stop matching).
//!
//! All CPUs are checked before any is changed: the governor must be listed
//! in every CPU's `scaling_available_governors`, so a request either applies
//! everywhere or nowhere. A machine without cpufreq (VMs, containers: this
//! project's test machines) gets a clear error, not a silent success.
//!
//! `LUMINOUS_HEALING_CPU_SYSFS` replaces the tree's root for tests against a
//! stand-in tree; it is read from the service's own environment, which only
//! root can set, and the landlock ruleset follows it.

use healing_activation::worker::{run_worker, Env, Gate, Job};
use healing_policy::params::SetCpuGovernor;
use healing_policy::{Facts, Governor};
use healing_protocol::ActionReply;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const CPU_SYSFS: &str = "/sys/devices/system/cpu";
const ROOT_ENV: &str = "LUMINOUS_HEALING_CPU_SYSFS";

fn sysfs_root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(CPU_SYSFS),
    }
}

/// `cpu0`, `cpu12`, ... sorted numerically.
fn cpus(root: &Path) -> Result<Vec<(u32, PathBuf)>, String> {
    let rd = std::fs::read_dir(root).map_err(|e| format!("cannot list {}: {e}", root.display()))?;
    let mut v = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", root.display()))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("cpu"))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        v.push((n, entry.path()));
    }
    v.sort();
    Ok(v)
}

fn read_trimmed(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", p.display()))
}

/// Sets `governor` on every CPU under `root` (`/sys/devices/system/cpu`, or a
/// stand-in tree). Returns what changed.
pub fn set_governor(root: &Path, governor: Governor) -> Result<String, String> {
    let g = governor.as_str();
    let all = cpus(root)?;
    let with_freq: Vec<_> = all
        .iter()
        .filter(|(_, p)| p.join("cpufreq/scaling_governor").exists())
        .collect();
    if with_freq.is_empty() {
        return Err(format!(
            "no cpufreq on this machine: none of the {} CPUs under {} has cpufreq/scaling_governor \
             (no frequency scaling driver; common in VMs and containers)",
            all.len(),
            root.display()
        ));
    }
    // Check everything first: either every CPU can take the governor, or none is touched.
    let mut before = Vec::new();
    for (n, p) in &with_freq {
        let available = read_trimmed(&p.join("cpufreq/scaling_available_governors"))?;
        if !available.split_whitespace().any(|a| a == g) {
            return Err(format!(
                "governor {g} is not available on cpu{n} (available: {available}); nothing changed"
            ));
        }
        before.push(read_trimmed(&p.join("cpufreq/scaling_governor"))?);
    }
    for (n, p) in &with_freq {
        let file = p.join("cpufreq/scaling_governor");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .map_err(|e| format!("cannot open {} for writing: {e}", file.display()))?;
        f.write_all(format!("{g}\n").as_bytes())
            .map_err(|e| format!("cannot set governor {g} on cpu{n}: {e}"))?;
    }
    let mut was = before.clone();
    was.sort();
    was.dedup();
    let skipped = all.len() - with_freq.len();
    Ok(format!(
        "governor {g} set on {} CPU(s) (was: {}){}",
        with_freq.len(),
        was.join(", "),
        if skipped > 0 {
            format!("; {skipped} CPU(s) without cpufreq (offline?) left alone")
        } else {
            String::new()
        }
    ))
}

fn handle(job: &Job<SetCpuGovernor>, env: &Env) -> ActionReply {
    if let Gate::Reply(r) = env.gate(job, &Facts::None) {
        return r;
    }
    set_governor(&sysfs_root(), job.params.governor).into()
}

fn main() -> ExitCode {
    run_worker(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for /sys/devices/system/cpu: `cpus` CPUs with cpufreq, one
    /// without (offline), and the non-CPU entries the real tree has.
    fn stand_in(name: &str, cpus: u32, available: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("lh-cpu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for n in 0..cpus {
            let d = root.join(format!("cpu{n}/cpufreq"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("scaling_governor"), "powersave\n").unwrap();
            std::fs::write(d.join("scaling_available_governors"), available).unwrap();
        }
        std::fs::create_dir_all(root.join(format!("cpu{cpus}"))).unwrap();
        std::fs::create_dir_all(root.join("cpufreq")).unwrap();
        std::fs::create_dir_all(root.join("cpuidle")).unwrap();
        std::fs::write(root.join("online"), "0-3\n").unwrap();
        root
    }

    #[test]
    fn stand_in_tree_every_cpu_is_set() {
        let root = stand_in("ok", 3, "performance powersave schedutil\n");
        let out = set_governor(&root, Governor::Performance).unwrap();
        assert!(
            out.contains("performance set on 3 CPU(s) (was: powersave)"),
            "{out}"
        );
        assert!(out.contains("1 CPU(s) without cpufreq"), "{out}");
        for n in 0..3 {
            let p = root.join(format!("cpu{n}/cpufreq/scaling_governor"));
            assert_eq!(std::fs::read_to_string(p).unwrap(), "performance\n");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn stand_in_tree_unavailable_governor_changes_nothing() {
        let root = stand_in("unavail", 2, "performance powersave\n");
        let e = set_governor(&root, Governor::Schedutil).unwrap_err();
        assert!(
            e.contains("not available on cpu0") && e.contains("nothing changed"),
            "{e}"
        );
        let p = root.join("cpu1/cpufreq/scaling_governor");
        assert_eq!(std::fs::read_to_string(p).unwrap(), "powersave\n");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn stand_in_tree_without_cpufreq_is_a_clear_error() {
        let root = stand_in("none", 0, "");
        let e = set_governor(&root, Governor::Powersave).unwrap_err();
        assert!(e.starts_with("no cpufreq on this machine"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
        assert!(set_governor(&root, Governor::Powersave)
            .unwrap_err()
            .contains("cannot list"));
    }
}

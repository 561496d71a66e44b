//! Self-confinement of the action binaries: the capability assertion and the
//! landlock ruleset. The unit's hardening is the first fence; these two are
//! the binary's own, so a unit edited by mistake (or a binary started by hand)
//! cannot quietly run with more than the action needs.
//!
//! # Capabilities: which set must equal what
//!
//! An action declares the set `D` it needs (often empty). At start,
//! [`assert_capabilities`] reads the process's five sets and refuses to run
//! unless
//!
//! * **effective = permitted = bounding = `D`** exactly. systemd's
//!   `CapabilityBoundingSet=D` makes the bounding set `D`; a root service then
//!   gets permitted = effective = `D`, and a non-root service with
//!   `AmbientCapabilities=D` gets the same through the ambient set. More than
//!   `D` is the privilege leak this check exists for; *less* than `D` is also
//!   refused, because the action would only fail later on a request, with a
//!   vaguer error.
//! * **ambient ⊆ `D`** and **inheritable ⊆ `D`**: ambient is `D` for a
//!   non-root service and empty for root; either is fine, anything else is not.
//!
//! A binary run by hand as root holds every capability, so it fails here with
//! an error that names the extra capabilities and the unit settings that
//! would have removed them. (To try one by hand, drop them first, e.g.
//! `setpriv --bounding-set=-all,+kill --inh-caps=-all,+kill --ambient-caps=+kill`.)
//!
//! # Landlock: what is allowed, and what "enforced" means
//!
//! [`Ruleset`] lists paths, each read-only, read+execute, read-write or full.
//! Everything else in the filesystem is denied: the ruleset handles every
//! filesystem right up to [`TARGET_ABI`] (Linux 6.10), all TCP bind/connect
//! (no action speaks TCP; no rule allows any port), connecting to abstract
//! Unix sockets created outside the sandbox, and, unless the action must
//! signal other processes (`kill_process`), sending signals outside it.
//!
//! The ABI is negotiated with the landlock crate's best-effort mode, but the
//! outcome is checked: where the running kernel's ABI is at least
//! [`TARGET_ABI`] the status must be `FullyEnforced`; on an older kernel with
//! landlock, `PartiallyEnforced` (the newer rights dropped) is accepted and
//! reported; a kernel without landlock (not built, or not in `lsm=`) is an
//! error, as is `NotEnforced`: the third fence is not optional.
//!
//! A path in the ruleset that does not exist is an **error** (the ruleset is
//! the action's exact file list, so a missing entry is a mistake worth
//! stopping for), unless the rule is marked [`PathRule::optional`], for paths
//! that legitimately come and go (hardware-dependent sysfs trees).
//!
//! Landlock confines the calling thread and every thread and child created
//! after it, so [`Ruleset::restrict_self`] must run before the process spawns
//! any thread; the worker runtime does exactly that.

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath,
    PathFd, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::fmt;
use std::path::{Path, PathBuf};

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

// ---------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------

/// An error that stops the action from starting; the text is for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxError(pub String);

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SandboxError {}

/// The five capability sets of a process, as sorted capability names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapSets {
    pub effective: Vec<Capability>,
    pub permitted: Vec<Capability>,
    pub bounding: Vec<Capability>,
    pub ambient: Vec<Capability>,
    pub inheritable: Vec<Capability>,
}

fn sorted(set: CapsHashSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.into_iter().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// `CAP_A CAP_B`, or `(none)`.
pub fn cap_names(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "(none)".into();
    }
    caps.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kernel's bit mask of a set, as `/proc/<pid>/status` prints it.
pub fn cap_mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

/// Reads this thread's capability sets.
pub fn read_capabilities() -> Result<CapSets, SandboxError> {
    let read = |set: CapSet, name: &str| {
        caps::read(None, set)
            .map(sorted)
            .map_err(|e| SandboxError(format!("cannot read the {name} capability set: {e}")))
    };
    Ok(CapSets {
        effective: read(CapSet::Effective, "effective")?,
        permitted: read(CapSet::Permitted, "permitted")?,
        bounding: read(CapSet::Bounding, "bounding")?,
        ambient: read(CapSet::Ambient, "ambient")?,
        inheritable: read(CapSet::Inheritable, "inheritable")?,
    })
}

/// Checks `actual` against the declared set (see the module doc for the
/// rules). Pure, so the rules are unit-tested without changing the process.
pub fn check_capabilities(declared: &[Capability], actual: &CapSets) -> Result<(), SandboxError> {
    let mut want = declared.to_vec();
    want.sort_by_key(|c| c.index());
    want.dedup();
    let mut problems = Vec::new();
    for (name, set) in [
        ("effective", &actual.effective),
        ("permitted", &actual.permitted),
        ("bounding", &actual.bounding),
    ] {
        let extra: Vec<_> = set.iter().filter(|c| !want.contains(c)).copied().collect();
        let missing: Vec<_> = want.iter().filter(|c| !set.contains(c)).copied().collect();
        if !extra.is_empty() {
            problems.push(format!("{name} set holds more: {}", cap_names(&extra)));
        }
        if !missing.is_empty() {
            problems.push(format!("{name} set lacks {}", cap_names(&missing)));
        }
    }
    for (name, set) in [
        ("ambient", &actual.ambient),
        ("inheritable", &actual.inheritable),
    ] {
        let extra: Vec<_> = set.iter().filter(|c| !want.contains(c)).copied().collect();
        if !extra.is_empty() {
            problems.push(format!("{name} set holds more: {}", cap_names(&extra)));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let hint = if actual.bounding.len() > want.len() + 8 {
        " (is it being run by hand as root? Start it through its systemd unit, or drop \
         capabilities first, e.g. with setpriv --bounding-set=-all)"
    } else {
        ""
    };
    Err(SandboxError(format!(
        "refusing to run: declared capabilities are {} (CapabilityBoundingSet= in the unit), \
         but the {}{hint}",
        cap_names(&want),
        problems.join("; the ")
    )))
}

/// Reads this process's capabilities and checks them against `declared`.
pub fn assert_capabilities(declared: &[Capability]) -> Result<CapSets, SandboxError> {
    let actual = read_capabilities()?;
    check_capabilities(declared, &actual)?;
    Ok(actual)
}

// ---------------------------------------------------------------------------
// Landlock
// ---------------------------------------------------------------------------

/// The newest landlock ABI whose filesystem rights this ruleset handles
/// (ABI 5, Linux 6.10: up to `IoctlDev`), and ABI 6 (Linux 6.12) for the
/// scopes. Kernels at or above [`FULL_ABI`] must enforce everything.
pub const TARGET_ABI: ABI = ABI::V5;
/// The ABI from which every requested right is supported.
pub const FULL_ABI: ABI = ABI::V6;

/// What a rule grants beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathAccess {
    /// Open files for reading, list directories.
    Read,
    /// `Read` plus execute (programs and the libraries they map).
    ReadExec,
    /// Everything but execute: read, write, truncate, create, remove.
    ReadWrite,
    /// Every filesystem right.
    Full,
}

impl PathAccess {
    fn rights(self) -> BitFlags<AccessFs> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        match self {
            PathAccess::Read => read,
            PathAccess::ReadExec => read | AccessFs::Execute,
            PathAccess::ReadWrite => AccessFs::from_all(TARGET_ABI) & !AccessFs::Execute,
            PathAccess::Full => AccessFs::from_all(TARGET_ABI),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathAccess::Read => "ro",
            PathAccess::ReadExec => "rx",
            PathAccess::ReadWrite => "rw",
            PathAccess::Full => "full",
        }
    }
}

/// One path of a ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: PathAccess,
    /// A missing path is skipped instead of being an error.
    pub optional: bool,
}

impl PathRule {
    pub fn new(path: impl Into<PathBuf>, access: PathAccess) -> Self {
        PathRule {
            path: path.into(),
            access,
            optional: false,
        }
    }
    pub fn ro(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::Read)
    }
    pub fn rx(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::ReadExec)
    }
    pub fn rw(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::ReadWrite)
    }
    pub fn full(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::Full)
    }
    /// Marks the rule as skipped when its path does not exist.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// The landlock ruleset of one action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub paths: Vec<PathRule>,
    /// Allow signals to processes outside the sandbox (kill_process only).
    pub allow_signals: bool,
}

/// What [`Ruleset::restrict_self`] achieved, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockReport {
    /// The kernel's landlock ABI (as far as the crate knows it).
    pub kernel_abi: i32,
    /// `FullyEnforced` or `PartiallyEnforced`.
    pub status: String,
    /// Paths that were optional and absent.
    pub skipped: Vec<PathBuf>,
}

impl fmt::Display for LandlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "landlock ABI {}: {}", self.kernel_abi, self.status)?;
        if !self.skipped.is_empty() {
            let s: Vec<_> = self
                .skipped
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            write!(f, " (absent, skipped: {})", s.join(", "))?;
        }
        Ok(())
    }
}

fn ll_err(what: &str) -> impl Fn(landlock::RulesetError) -> SandboxError + '_ {
    move |e| SandboxError(format!("landlock: {what}: {e}"))
}

impl Ruleset {
    pub fn new(paths: Vec<PathRule>) -> Self {
        Ruleset {
            paths,
            allow_signals: false,
        }
    }

    /// Confines this process (its calling thread and everything it starts
    /// afterwards) to the ruleset. Call it before spawning any thread.
    pub fn restrict_self(&self) -> Result<LandlockReport, SandboxError> {
        // Open every path first: a missing required path must stop us before
        // anything is enforced, with its name in the error.
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        for r in &self.paths {
            if !r.path.is_absolute() {
                return Err(SandboxError(format!(
                    "landlock: rule path {} is not absolute",
                    r.path.display()
                )));
            }
            let fd = match PathFd::new(&r.path) {
                Ok(fd) => fd,
                Err(_) if r.optional && !r.path.exists() => {
                    skipped.push(r.path.clone());
                    continue;
                }
                Err(e) => {
                    return Err(SandboxError(format!(
                        "landlock: cannot open {} for the ruleset: {e}",
                        r.path.display()
                    )))
                }
            };
            // Directory-only rights on a file make the kernel refuse the rule.
            let is_dir = std::fs::metadata(&r.path)
                .map(|m| m.is_dir())
                .map_err(|e| {
                    SandboxError(format!("landlock: cannot stat {}: {e}", r.path.display()))
                })?;
            let mut rights = r.access.rights();
            if !is_dir {
                rights &= AccessFs::from_file(TARGET_ABI);
            }
            rules.push(PathBeneath::new(fd, rights));
        }

        let mut scopes: BitFlags<Scope> = Scope::AbstractUnixSocket.into();
        if !self.allow_signals {
            scopes |= Scope::Signal;
        }
        let created = landlock::Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(TARGET_ABI))
            .map_err(ll_err("filesystem rights"))?
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(ll_err("network rights"))?
            .scope(scopes)
            .map_err(ll_err("scopes"))?
            .create()
            .map_err(ll_err("creating the ruleset"))?
            .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))
            .map_err(ll_err("adding a path rule"))?;
        let status = created
            .restrict_self()
            .map_err(ll_err("restricting this process"))?;
        let kernel_abi = match status.landlock {
            LandlockStatus::Available {
                effective_abi,
                kernel_abi,
            } => kernel_abi.unwrap_or(effective_abi as i32),
            LandlockStatus::NotEnabled => {
                return Err(SandboxError(
                    "landlock is built into this kernel but not enabled (add it to the lsm= \
                     boot parameter); refusing to run without it"
                        .into(),
                ))
            }
            LandlockStatus::NotImplemented => {
                return Err(SandboxError(
                    "this kernel has no landlock (or a seccomp filter refuses its syscalls: \
                     list landlock_create_ruleset landlock_add_rule landlock_restrict_self in \
                     SystemCallFilter=); refusing to run without it"
                        .into(),
                ))
            }
        };
        if !status.no_new_privs {
            return Err(SandboxError(
                "landlock: no_new_privs could not be set".into(),
            ));
        }
        let label = match status.ruleset {
            RulesetStatus::FullyEnforced => "fully enforced",
            RulesetStatus::PartiallyEnforced if kernel_abi < FULL_ABI as i32 => {
                "partially enforced (this kernel predates some requested rights)"
            }
            RulesetStatus::PartiallyEnforced => {
                return Err(SandboxError(format!(
                    "landlock: only partially enforced although the kernel's ABI {kernel_abi} \
                     supports every requested right; refusing to run"
                )))
            }
            RulesetStatus::NotEnforced => {
                return Err(SandboxError(format!(
                    "landlock: ruleset not enforced (kernel ABI {kernel_abi}); refusing to run"
                )))
            }
        };
        Ok(LandlockReport {
            kernel_abi,
            status: label.into(),
            skipped,
        })
    }
}

/// The self-test: after confinement, opening `path` (outside the ruleset)
/// must fail with EACCES. `Ok` carries the line to print; `Err` says what
/// happened instead.
pub fn landlock_self_test(path: &Path) -> Result<String, String> {
    match std::fs::File::open(path) {
        Ok(_) => Err(format!(
            "landlock self-test FAILED: {} could be opened, the ruleset does not confine this process",
            path.display()
        )),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(format!(
            "landlock self-test: open({}) refused with EACCES",
            path.display()
        )),
        Err(e) => Err(format!(
            "landlock self-test inconclusive: open({}) failed with {e}, not EACCES (does the path exist?)",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability::*;

    fn sets(e: &[Capability], p: &[Capability], b: &[Capability], a: &[Capability]) -> CapSets {
        CapSets {
            effective: e.to_vec(),
            permitted: p.to_vec(),
            bounding: b.to_vec(),
            ambient: a.to_vec(),
            inheritable: a.to_vec(),
        }
    }

    #[test]
    fn systemd_shapes_pass() {
        // root with CapabilityBoundingSet= (empty)
        assert!(check_capabilities(&[], &sets(&[], &[], &[], &[])).is_ok());
        // non-root with AmbientCapabilities=CAP_KILL
        let k = [CAP_KILL];
        assert!(check_capabilities(&k, &sets(&k, &k, &k, &k)).is_ok());
        // root with CapabilityBoundingSet=CAP_KILL, no ambient
        assert!(check_capabilities(&k, &sets(&k, &k, &k, &[])).is_ok());
    }

    #[test]
    fn extra_or_missing_is_refused_and_named() {
        let k = [CAP_KILL];
        let e = check_capabilities(&[], &sets(&k, &k, &k, &[]))
            .unwrap_err()
            .0;
        assert!(e.contains("effective set holds more: CAP_KILL"), "{e}");
        let e = check_capabilities(&k, &sets(&[], &[], &k, &[]))
            .unwrap_err()
            .0;
        assert!(e.contains("effective set lacks CAP_KILL"), "{e}");
        // a bounding set that still holds something is a leak even if unused
        let e = check_capabilities(&[], &sets(&[], &[], &[CAP_SYS_ADMIN], &[]))
            .unwrap_err()
            .0;
        assert!(e.contains("bounding set holds more: CAP_SYS_ADMIN"), "{e}");
        let e = check_capabilities(&k, &sets(&k, &k, &k, &[CAP_KILL, CAP_CHOWN]))
            .unwrap_err()
            .0;
        assert!(e.contains("ambient set holds more: CAP_CHOWN"), "{e}");
    }

    #[test]
    fn run_by_hand_as_root_gets_the_hint() {
        let all: Vec<_> = caps::all().into_iter().collect();
        let e = check_capabilities(&[CAP_KILL], &sets(&all, &all, &all, &[]))
            .unwrap_err()
            .0;
        assert!(e.contains("run by hand as root"), "{e}");
    }

    #[test]
    fn masks_match_proc_status() {
        assert_eq!(cap_mask(&[CAP_KILL]), 0x20);
        assert_eq!(cap_mask(&[CAP_SYS_ADMIN]), 1 << 21);
        assert_eq!(cap_names(&[]), "(none)");
    }

    #[test]
    fn missing_required_path_is_an_error_before_enforcing() {
        let r = Ruleset::new(vec![PathRule::ro("/nonexistent/luminous-healing")]);
        let e = r.restrict_self().unwrap_err().0;
        assert!(e.contains("/nonexistent/luminous-healing"), "{e}");
        let r = Ruleset::new(vec![PathRule::ro("relative")]);
        assert!(r.restrict_self().unwrap_err().0.contains("not absolute"));
    }

    /// Confines a child thread only (landlock is per thread until a later
    /// ABI), so the test process stays free.
    #[test]
    fn confined_thread_reads_its_paths_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("lh-sandbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("allowed"), "x").unwrap();
        std::fs::write(dir.join("outside"), "y").unwrap();
        let allowed = dir.join("allowed");
        let outside = dir.join("outside");
        let outside2 = outside.clone();
        let t = std::thread::spawn(move || {
            let r = Ruleset::new(vec![
                PathRule::ro(allowed.clone()),
                PathRule::rw("/nonexistent/optional").optional(),
            ]);
            // A kernel without landlock fails here, by design: the
            // services refuse to run there too.
            let report = r.restrict_self().unwrap();
            let read_ok = std::fs::read_to_string(&allowed).is_ok();
            let denied = landlock_self_test(&outside2);
            (report, read_ok, denied)
        });
        let (report, read_ok, denied) = t.join().unwrap();
        assert_eq!(report.skipped.len(), 1);
        assert!(report.status.contains("enforced"), "{report}");
        assert!(read_ok);
        assert!(denied.unwrap().contains("EACCES"));
        // the rest of the process is not confined
        assert!(std::fs::read_to_string(&outside).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

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
//! # procfs: held descriptors instead of rules
//!
//! A landlock rule names an *inode*: the kernel attaches the rule to the
//! inode open when it was added (and pins that inode), and a later access
//! matches only if it reaches the same inode. procfs does not keep its
//! inodes: `/proc/sys/...` and `/proc/<pid>/...` entries get a new inode each
//! time their dentry is looked up again after being evicted (memory
//! pressure, `echo 2 > /proc/sys/vm/drop_caches`, which `clear_system_cache`
//! itself does). From then on the rule matches nothing and a long-running
//! confined process gets EACCES on the file it was built to use. (sysfs and
//! other kernfs trees are not affected: their inodes are found again by
//! number while the rule pins them.)
//!
//! So a rule on a procfs path is refused unless that path is a mount root
//! (a mount pins its root dentry, hence its inode: `/proc` itself, or a
//! `ReadWritePaths=` bind mount). An action that needs a procfs file uses
//! [`PathRule::held_rw`] (or `held_ro`, `held_wo`) instead: the file is
//! opened once, before confinement, no rule is added for it (its path stays
//! denied like every other path), and the action uses the descriptor, from
//! [`Ruleset::held_file`], with pread/pwrite at offset 0 (a sysctl file
//! takes a whole value at offset 0 on every write, and reads it from
//! offset 0).
//!
//! Landlock confines the calling thread and every thread and child created
//! after it, so [`Ruleset::restrict_self`] must run before the process spawns
//! any thread; the worker runtime does exactly that.

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath,
    PathFd, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::fmt;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Not a landlock rule: the file is opened once, with this mode, before
    /// confinement, and the descriptor is kept ([`Ruleset::held_file`]). No
    /// rule is added, so the path itself is denied afterwards. For procfs
    /// files, whose inodes a rule cannot follow (see the module doc).
    Held(FdMode),
}

/// How a held file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdMode {
    Read,
    Write,
    ReadWrite,
}

impl PathAccess {
    /// The rule's rights (none for a held file, which gets no rule).
    fn rights(self) -> BitFlags<AccessFs> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        match self {
            PathAccess::Read => read,
            PathAccess::ReadExec => read | AccessFs::Execute,
            PathAccess::ReadWrite => AccessFs::from_all(TARGET_ABI) & !AccessFs::Execute,
            PathAccess::Full => AccessFs::from_all(TARGET_ABI),
            PathAccess::Held(_) => BitFlags::empty(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathAccess::Read => "ro",
            PathAccess::ReadExec => "rx",
            PathAccess::ReadWrite => "rw",
            PathAccess::Full => "full",
            PathAccess::Held(FdMode::Read) => "ro (fd opened before landlock, no rule)",
            PathAccess::Held(FdMode::Write) => "wo (fd opened before landlock, no rule)",
            PathAccess::Held(FdMode::ReadWrite) => "rw (fd opened before landlock, no rule)",
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
    /// A file opened read-only before confinement and kept; no rule.
    pub fn held_ro(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::Held(FdMode::Read))
    }
    /// A file opened write-only before confinement and kept; no rule.
    pub fn held_wo(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::Held(FdMode::Write))
    }
    /// A file opened read-write before confinement and kept; no rule.
    pub fn held_rw(path: impl Into<PathBuf>) -> Self {
        Self::new(path, PathAccess::Held(FdMode::ReadWrite))
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
    /// Files opened before confinement and kept ([`PathAccess::Held`]).
    pub held: Vec<PathBuf>,
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
        if !self.held.is_empty() {
            let s: Vec<_> = self.held.iter().map(|p| p.display().to_string()).collect();
            write!(f, "; held open, no rule: {}", s.join(", "))?;
        }
        Ok(())
    }
}

fn ll_err(what: &str) -> impl Fn(landlock::RulesetError) -> SandboxError + '_ {
    move |e| SandboxError(format!("landlock: {what}: {e}"))
}

/// The files held by the last successful [`Ruleset::restrict_self`].
static HELD: Mutex<Vec<(PathBuf, Arc<File>)>> = Mutex::new(Vec::new());

fn held_files() -> std::sync::MutexGuard<'static, Vec<(PathBuf, Arc<File>)>> {
    // Nothing panics while holding the lock; a poisoned list is still whole.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_held(path: &Path, mode: FdMode) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    match mode {
        FdMode::Read => o.read(true),
        FdMode::Write => o.write(true),
        FdMode::ReadWrite => o.read(true).write(true),
    };
    // Not following a symbolic link: the held file is the one named.
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
    o.open(path)
}

/// Whether a rule on `path` would stop matching once the kernel evicts its
/// dentry: procfs makes a new inode for every fresh lookup, except for a
/// mount's root, which the mount pins. `Err` when it cannot tell.
fn unstable_inode(path: &Path) -> std::io::Result<bool> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: zeroed plain C structs, filled by the kernel; `c` outlives the calls.
    let (fs, stx) = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut fs) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stx: libc::statx = std::mem::zeroed();
        if libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        (fs, stx)
    };
    // f_type and the magic are `long` here, but not on every libc target.
    #[allow(clippy::unnecessary_cast)]
    let procfs = fs.f_type as i64 == libc::PROC_SUPER_MAGIC as i64;
    let mount_root_known = stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    let mount_root = stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok(procfs && !(mount_root_known && mount_root))
}

impl Ruleset {
    pub fn new(paths: Vec<PathRule>) -> Self {
        Ruleset {
            paths,
            allow_signals: false,
        }
    }

    /// The descriptor of a file held by [`Ruleset::restrict_self`]
    /// ([`PathRule::held_rw`] and the like). `Err` (the text names the path)
    /// if no applied ruleset holds it.
    pub fn held_file(path: &Path) -> Result<Arc<File>, String> {
        held_files()
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, f)| Arc::clone(f))
            .ok_or_else(|| {
                format!(
                    "{} was not opened before confinement (no held-file rule for it)",
                    path.display()
                )
            })
    }

    /// Confines this process (its calling thread and everything it starts
    /// afterwards) to the ruleset. Call it before spawning any thread.
    /// Held files are opened first and kept for [`Ruleset::held_file`].
    pub fn restrict_self(&self) -> Result<LandlockReport, SandboxError> {
        // Open every path first: a missing required path must stop us before
        // anything is enforced, with its name in the error.
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        let mut held = Vec::new();
        for r in &self.paths {
            if !r.path.is_absolute() {
                return Err(SandboxError(format!(
                    "landlock: rule path {} is not absolute",
                    r.path.display()
                )));
            }
            if let PathAccess::Held(mode) = r.access {
                match open_held(&r.path, mode) {
                    Ok(f) => held.push((r.path.clone(), Arc::new(f))),
                    Err(_) if r.optional && !r.path.exists() => skipped.push(r.path.clone()),
                    Err(e) => {
                        return Err(SandboxError(format!(
                            "landlock: cannot open {} to hold it ({}): {e}",
                            r.path.display(),
                            r.access.as_str()
                        )))
                    }
                }
                continue;
            }
            match unstable_inode(&r.path) {
                Ok(false) => {}
                Ok(true) => {
                    return Err(SandboxError(format!(
                        "landlock: {} is on procfs, whose inodes are replaced when the kernel \
                         evicts their dentries: a rule on it would stop matching (EACCES) while \
                         the action runs; hold the file open instead (PathRule::held_*)",
                        r.path.display()
                    )))
                }
                Err(_) if r.optional && !r.path.exists() => {}
                Err(e) => {
                    return Err(SandboxError(format!(
                        "landlock: cannot stat {}: {e}",
                        r.path.display()
                    )))
                }
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
        let held_paths = held.iter().map(|(p, _)| p.clone()).collect();
        {
            let mut list = held_files();
            for (p, f) in held {
                list.retain(|(q, _)| *q != p);
                list.push((p, f));
            }
        }
        Ok(LandlockReport {
            kernel_abi,
            status: label.into(),
            skipped,
            held: held_paths,
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

    #[test]
    fn rule_on_a_procfs_file_is_refused_before_enforcing() {
        // /proc/self/status gets a new inode whenever its dentry is looked
        // up afresh: a rule on it would stop matching.
        let r = Ruleset::new(vec![PathRule::ro("/proc/self/status")]);
        let e = r.restrict_self().unwrap_err().0;
        assert!(e.contains("is on procfs") && e.contains("held"), "{e}");
        // the procfs mount's root is pinned by the mount: fine
        assert!(!unstable_inode(Path::new("/proc")).unwrap());
        assert!(unstable_inode(Path::new("/proc/self/status")).unwrap());
        assert!(!unstable_inode(&std::env::temp_dir()).unwrap());
        // a held file that cannot be opened stops us, named
        let r = Ruleset::new(vec![PathRule::held_rw("/nonexistent/luminous-healing")]);
        let e = r.restrict_self().unwrap_err().0;
        assert!(
            e.contains("cannot open /nonexistent/luminous-healing to hold it"),
            "{e}"
        );
        assert_eq!(
            PathAccess::Held(FdMode::Write).as_str(),
            "wo (fd opened before landlock, no rule)"
        );
    }

    /// A held file: usable through its descriptor after confinement, while
    /// its path is denied like any other (no rule was added for it).
    #[test]
    fn held_file_is_usable_through_its_descriptor_only() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("lh-sandbox-held-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = dir.join("held");
        std::fs::write(&held, "60\n").unwrap();
        let held2 = held.clone();
        let t = std::thread::spawn(move || {
            let r = Ruleset::new(vec![PathRule::held_rw(held2.clone())]);
            let report = r.restrict_self().unwrap();
            let f = Ruleset::held_file(&held2).unwrap();
            let mut buf = [0u8; 8];
            let n = f.read_at(&mut buf, 0).unwrap();
            let before = String::from_utf8_lossy(&buf[..n]).to_string();
            f.write_at(b"10\n", 0).unwrap();
            let by_path = landlock_self_test(&held2);
            (report, before, by_path)
        });
        let (report, before, by_path) = t.join().unwrap();
        assert_eq!(report.held, vec![held.clone()]);
        assert!(
            report.to_string().contains("held open, no rule"),
            "{report}"
        );
        assert_eq!(before, "60\n");
        assert!(by_path.unwrap().contains("EACCES"));
        assert_eq!(std::fs::read_to_string(&held).unwrap(), "10\n");
        assert!(Ruleset::held_file(Path::new("/nonexistent/x"))
            .unwrap_err()
            .contains("not opened before confinement"));
        std::fs::remove_dir_all(&dir).unwrap();
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

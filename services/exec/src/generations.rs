//! The system profile's generations and the one lock that keeps a rollback
//! and a garbage collection from running side by side.
//!
//! The profile directory (`nix_profiles_dir`, default
//! `/nix/var/nix/profiles`) holds `system -> system-N-link` and each
//! `system-N-link -> /nix/store/...`. The running system is the generation
//! whose store path is the one `current_system` (default
//! `/run/current-system`) resolves to.
//!
//! The lock is `flock(LOCK_EX|LOCK_NB)` on the profile directory itself,
//! opened `O_RDONLY|O_DIRECTORY`: both action units can open it (for
//! clean_nix_store it is under `/nix`, which its unit and landlock ruleset
//! allow; rollback_generation's ruleset is `/`), it needs no file of its
//! own, and nix locks other files (`gc.lock`, `<profile>.lock`), so nix
//! itself never waits for it. It is held from before the facts are read
//! until the program has finished.

use healing_policy::GenerationFacts;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The profile whose generations count.
const PROFILE: &str = "system";

/// Held while the guard lives; released when it is dropped (the descriptor
/// is closed).
#[derive(Debug)]
pub struct ProfileLock {
    _lock: Flock<File>,
}

/// What trying the lock found.
#[derive(Debug)]
pub enum Lock {
    Held(ProfileLock),
    /// Another rollback or garbage collection holds it.
    Busy,
    /// There is no profile directory: no generation exists, so no rollback
    /// can run either, and there is nothing to lock.
    NoProfiles,
}

/// Tries the lock once, without waiting.
pub fn try_lock(profiles_dir: &Path) -> Result<Lock, String> {
    let dir = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(profiles_dir)
    {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::NoProfiles),
        Err(e) => return Err(format!("cannot open {}: {e}", profiles_dir.display())),
    };
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Lock::Held(ProfileLock { _lock: l })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(Lock::Busy),
        Err((_, e)) => Err(format!("cannot lock {}: {e}", profiles_dir.display())),
    }
}

/// The generations as read from the profile directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generations {
    /// N -> the store path `system-N-link` resolves to (`None`: dangling).
    pub links: BTreeMap<u32, Option<PathBuf>>,
    /// The generation the `system` link points at.
    pub profile: Option<u32>,
    /// The generation the running system is.
    pub current: Option<u32>,
}

impl Generations {
    pub fn newest(&self) -> Option<u32> {
        self.links.keys().next_back().copied()
    }

    /// The newest generation older than the running one.
    pub fn previous(&self) -> Option<u32> {
        let current = self.current?;
        self.links.range(..current).next_back().map(|(n, _)| *n)
    }

    pub fn facts(&self, busy: bool) -> GenerationFacts {
        GenerationFacts {
            current: self.current,
            newest: self.newest(),
            previous: self.previous(),
            busy,
        }
    }
}

/// `system-N-link` -> N.
fn generation_number(name: &str) -> Option<u32> {
    let n = name.strip_prefix(PROFILE)?.strip_prefix('-')?;
    let n = n.strip_suffix("-link")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Reads the generations. A missing profile directory or `current_system`
/// is no error: there is then no generation, or no running one.
pub fn read(profiles_dir: &Path, current_system: &Path) -> Result<Generations, String> {
    let mut g = Generations::default();
    let entries = match std::fs::read_dir(profiles_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(g),
        Err(e) => return Err(format!("cannot read {}: {e}", profiles_dir.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", profiles_dir.display()))?;
        let Some(n) = entry.file_name().to_str().and_then(generation_number) else {
            continue;
        };
        // Only links count: nix makes every generation a symbolic link.
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        g.links.insert(n, std::fs::canonicalize(entry.path()).ok());
    }
    g.profile = std::fs::read_link(profiles_dir.join(PROFILE))
        .ok()
        .and_then(|t| t.file_name()?.to_str().and_then(generation_number))
        .filter(|n| g.links.contains_key(n));
    let running = std::fs::canonicalize(current_system).ok();
    let matching: Vec<u32> = g
        .links
        .iter()
        .filter(|(_, p)| p.is_some() && *p == &running)
        .map(|(n, _)| *n)
        .collect();
    // Two generations can hold the same store path (a configuration built
    // again after a rollback): the one the profile points at is the running
    // one if it is among them, else the newest.
    g.current = match g.profile {
        Some(p) if matching.contains(&p) => Some(p),
        _ => matching.last().copied(),
    };
    Ok(g)
}

/// The lock and the facts, in that order: facts read under the lock cannot
/// change under a rollback or GC of ours. `Ok((None, facts))` with
/// `facts.busy` when someone else holds it; `Ok((None, facts))` without a
/// profile directory.
pub fn lock_and_read(
    profiles_dir: &Path,
    current_system: &Path,
) -> Result<(Option<ProfileLock>, Generations, GenerationFacts), String> {
    let (lock, busy) = match try_lock(profiles_dir)? {
        Lock::Held(l) => (Some(l), false),
        Lock::Busy => (None, true),
        Lock::NoProfiles => (None, false),
    };
    let g = read(profiles_dir, current_system)?;
    let facts = g.facts(busy);
    Ok((lock, g, facts))
}

/// For the Nix actions, before anything else: the authorization rules that
/// need no facts, then the lock and the generations under it, the facts of
/// the rest. The lock is held as long as the first element lives.
pub fn permit_and_lock(
    policy: &healing_policy::Policy,
    caller: &healing_policy::CallerInfo,
    action: &healing_policy::Action,
    config: &healing_policy::Config,
) -> Result<(Option<ProfileLock>, Generations, GenerationFacts), String> {
    healing_policy::permit(policy, caller, action).map_err(|r| r.to_string())?;
    lock_and_read(&config.nix_profiles_dir(), &config.current_system())
        .map_err(|e| format!("cannot read the generations: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A profile directory with generations `gens` (each linking to its own
    /// store directory), `system` -> `profile`, and the running system
    /// linking to `running`'s store directory.
    fn setup(
        tag: &str,
        gens: &[u32],
        profile: Option<u32>,
        running: Option<u32>,
    ) -> (Tmp, PathBuf, PathBuf) {
        let root = std::env::temp_dir().join(format!("lh-gens-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let profiles = root.join("profiles");
        let store = root.join("store");
        std::fs::create_dir_all(&profiles).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        for n in gens {
            let s = store.join(format!("gen-{n}"));
            std::fs::create_dir_all(&s).unwrap();
            symlink(&s, profiles.join(format!("system-{n}-link"))).unwrap();
        }
        if let Some(p) = profile {
            symlink(format!("system-{p}-link"), profiles.join("system")).unwrap();
        }
        let current = root.join("current-system");
        if let Some(r) = running {
            symlink(store.join(format!("gen-{r}")), &current).unwrap();
        }
        (Tmp(root), profiles, current)
    }

    #[test]
    fn numbers_of_generation_links_only() {
        assert_eq!(generation_number("system-12-link"), Some(12));
        for bad in [
            "system",
            "system-link",
            "system--link",
            "system-+1-link",
            "system-1-link.tmp",
            "default-1-link",
            "system-99999999999-link",
        ] {
            assert_eq!(generation_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn running_newest_has_a_previous() {
        let (_t, profiles, current) = setup("newest", &[1, 2, 3], Some(3), Some(3));
        // Not links, or other profiles: ignored.
        std::fs::create_dir(profiles.join("system-9-link")).unwrap();
        symlink("/nonexistent", profiles.join("default-7-link")).unwrap();
        let g = read(&profiles, &current).unwrap();
        assert_eq!(g.links.len(), 3);
        assert_eq!(g.profile, Some(3));
        assert_eq!(
            g.facts(false),
            GenerationFacts {
                current: Some(3),
                newest: Some(3),
                previous: Some(2),
                busy: false
            }
        );
    }

    #[test]
    fn rolled_back_system_is_older_than_the_newest() {
        let (_t, profiles, current) = setup("older", &[1, 2, 5], Some(2), Some(2));
        let f = read(&profiles, &current).unwrap().facts(true);
        assert_eq!(
            f,
            GenerationFacts {
                current: Some(2),
                newest: Some(5),
                previous: Some(1),
                busy: true
            }
        );
    }

    #[test]
    fn running_system_outside_the_profile_or_missing() {
        let (t, profiles, current) = setup("outside", &[1, 2], Some(2), None);
        let g = read(&profiles, &current).unwrap();
        assert_eq!((g.current, g.newest(), g.previous()), (None, Some(2), None));
        std::fs::create_dir(t.0.join("elsewhere")).unwrap();
        symlink(t.0.join("elsewhere"), &current).unwrap();
        assert_eq!(read(&profiles, &current).unwrap().current, None);
        // No profile directory at all: no generations, no error.
        let g = read(&t.0.join("none"), &current).unwrap();
        assert_eq!(g, Generations::default());
        assert!(matches!(try_lock(&t.0.join("none")), Ok(Lock::NoProfiles)));
    }

    #[test]
    fn same_store_path_twice_prefers_the_profile_then_the_newest() {
        let (t, profiles, current) = setup("twice", &[1, 2, 3], Some(1), Some(1));
        symlink(t.0.join("store/gen-1"), profiles.join("system-4-link")).unwrap();
        assert_eq!(read(&profiles, &current).unwrap().current, Some(1));
        std::fs::remove_file(profiles.join("system")).unwrap();
        symlink("system-3-link", profiles.join("system")).unwrap();
        assert_eq!(read(&profiles, &current).unwrap().current, Some(4));
    }

    #[test]
    fn second_lock_while_held_is_busy_and_free_after() {
        let (_t, profiles, current) = setup("lock", &[1, 2], Some(2), Some(2));
        let (held, _, f) = lock_and_read(&profiles, &current).unwrap();
        assert!(held.is_some() && !f.busy);
        // A second open file description: flock refuses it while held, in
        // this process as in any other.
        assert!(matches!(try_lock(&profiles), Ok(Lock::Busy)));
        let (none, _, f) = lock_and_read(&profiles, &current).unwrap();
        assert!(none.is_none() && f.busy);
        assert_eq!(f.current, Some(2));
        drop(held);
        assert!(matches!(try_lock(&profiles), Ok(Lock::Held(_))));
    }
}

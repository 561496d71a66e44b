//! The facts about a process, read from `/proc/PID`: its uids (`status`),
//! its name, kernel-thread flag and start time (`stat`), and the systemd
//! unit of its cgroup (`cgroup`). The parsers are pure; [`read`] does the
//! reading.

use healing_policy::ProcessFacts;
use std::io::ErrorKind;
use std::path::Path;

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat` (include/linux/sched.h).
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// Why the facts could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// `/proc/PID` is gone: the process exited (or never was).
    Gone,
    /// Anything else, with a message naming the file.
    Other(String),
}

/// What `/proc/PID/stat` says that the policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub flags: u64,
    /// Field 22: clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    pub fn kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// The real, effective and saved uid from the `Uid:` line of
/// `/proc/PID/status` (the fourth number, the filesystem uid, is not used).
pub fn parse_status_uids(text: &str) -> Result<[u32; 3], String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .ok_or("no Uid line")?;
    let mut ids = line.split_whitespace().map(|f| f.parse::<u32>());
    let mut next = |what: &str| match ids.next() {
        Some(Ok(u)) => Ok(u),
        Some(Err(_)) => Err(format!("the {what} uid in {line:?} is not a number")),
        None => Err(format!("the Uid line {line:?} has no {what} uid")),
    };
    Ok([next("real")?, next("effective")?, next("saved")?])
}

/// Parses `/proc/PID/stat`. The name sits between the first `(` and the
/// *last* `)`, since the name itself may contain spaces and parentheses;
/// the numbered fields are counted after that last `)`.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let open = text.find('(').ok_or("no '(' before the name")?;
    let close = text.rfind(')').ok_or("no ')' after the name")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let comm = text[open + 1..close].to_string();
    // Field 3 (state) is the first after the name.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64, String> {
        let s = rest
            .get(n - 3)
            .ok_or_else(|| format!("field {n} is missing"))?;
        s.parse::<u64>()
            .map_err(|_| format!("field {n} ({s:?}) is not a number"))
    };
    Ok(Stat {
        comm,
        flags: field(9)?,
        start_time: field(22)?,
    })
}

/// The cgroup v2 path: the `0::` line of `/proc/PID/cgroup`. The lines of
/// cgroup v1 hierarchies (a hybrid setup: `1:name=systemd:/...`) are ignored.
pub fn parse_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The unit a cgroup path belongs to, the way `sd_pid_get_unit` answers:
/// the first component that is not a slice, if it is a unit name.
/// `/system.slice/nginx.service` gives `nginx.service`;
/// `/user.slice/user-1000.slice/user@1000.service/app.slice/x.service` gives
/// `user@1000.service` (the user's manager, not the unit it runs). A path
/// outside this cgroup namespace (`/../..`) or the root gives none.
pub fn unit_of_cgroup(path: &str) -> Option<String> {
    let first = path
        .split('/')
        .filter(|c| !c.is_empty())
        .find(|c| !c.ends_with(".slice"))?;
    is_process_unit(first).then(|| first.to_string())
}

/// A unit name of a type that holds processes.
fn is_process_unit(name: &str) -> bool {
    let Some((stem, kind)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(kind, "service" | "scope" | "socket" | "mount" | "swap")
        && !stem.is_empty()
        && name.len() <= 255
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.-@\\".contains(c))
}

fn read_text(proc_root: &Path, pid: i32, file: &str) -> Result<String, ReadError> {
    let path = proc_root.join(pid.to_string()).join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        // ESRCH: the directory was still there but the task is gone.
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            Err(ReadError::Gone)
        }
        Err(e) => Err(ReadError::Other(format!(
            "cannot read /proc/{pid}/{file}: {e}"
        ))),
    }
}

/// `/proc/PID/stat`, parsed.
pub fn read_stat(proc_root: &Path, pid: i32) -> Result<Stat, ReadError> {
    let text = read_text(proc_root, pid, "stat")?;
    parse_stat(&text).map_err(|e| ReadError::Other(format!("/proc/{pid}/stat: {e}")))
}

/// Every fact the policy weighs, read from `proc_root/PID` (`/proc`, or a
/// test's stand-in). The caller must make sure the pid still names the same
/// process afterwards (a pidfd, and the start time read again).
pub fn read(proc_root: &Path, pid: i32) -> Result<ProcessFacts, ReadError> {
    let status = read_text(proc_root, pid, "status")?;
    let uids = parse_status_uids(&status)
        .map_err(|e| ReadError::Other(format!("/proc/{pid}/status: {e}")))?;
    let stat = read_stat(proc_root, pid)?;
    let cgroup = read_text(proc_root, pid, "cgroup")?;
    Ok(ProcessFacts {
        pid,
        uids,
        unit: parse_cgroup(&cgroup).and_then(unit_of_cgroup),
        start_time: stat.start_time,
        kernel_thread: stat.kernel_thread(),
        comm: stat.comm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
Pid:\t4242\nPPid:\t1\nUid:\t1000\t1001\t1002\t1003\nGid:\t1000\t1000\t1000\t1000\n";

    #[test]
    fn status_uids_are_real_effective_saved() {
        assert_eq!(parse_status_uids(STATUS), Ok([1000, 1001, 1002]));
        assert_eq!(parse_status_uids("Uid:\t0\t0\t0\t0\n"), Ok([0, 0, 0]));
        assert!(parse_status_uids("Name:\tx\n")
            .unwrap_err()
            .contains("no Uid"));
        assert!(parse_status_uids("Uid:\t0\t0\n")
            .unwrap_err()
            .contains("no saved"));
        assert!(parse_status_uids("Uid:\t0\tx\t0\t0\n")
            .unwrap_err()
            .contains("effective"));
        // "Uid:" only at the start of a line counts
        assert!(parse_status_uids("Name:\tUid:\t1 2 3\n").is_err());
    }

    /// A stat line with the fields numbered by their value where it matters:
    /// flags (9) and start time (22).
    fn stat_line(comm: &str, flags: u64, start: u64) -> String {
        let mut f: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        f[0] = "S".into();
        f[9 - 3] = flags.to_string();
        f[22 - 3] = start.to_string();
        format!("4242 ({comm}) {}\n", f.join(" "))
    }

    #[test]
    fn stat_name_may_hold_spaces_and_parentheses() {
        let s = parse_stat(&stat_line("a) (b", 0x400100, 98765)).unwrap();
        assert_eq!(s.comm, "a) (b");
        assert_eq!(s.flags, 0x400100);
        assert_eq!(s.start_time, 98765);
        assert!(!s.kernel_thread());
        let s = parse_stat(&stat_line(") 1 2 3 (", 0, 7)).unwrap();
        assert_eq!((s.comm.as_str(), s.start_time), (") 1 2 3 (", 7));
        let s = parse_stat(&stat_line("kthreadd", 0x00208040, 0)).unwrap();
        assert!(s.kernel_thread());
        assert_eq!(parse_stat(&stat_line("", 0, 5)).unwrap().comm, "");
    }

    #[test]
    fn stat_line_from_a_real_kernel() {
        let line = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 5 0 0 20 0 1 0 12 0 0 \
18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.comm.as_str(), s.flags, s.start_time),
            ("kthreadd", 2129984, 12)
        );
        assert!(s.kernel_thread());
    }

    #[test]
    fn stat_errors_name_the_field() {
        assert!(parse_stat("4242 sleep S 1").unwrap_err().contains("'('"));
        assert!(parse_stat("4242 (sleep S 1").unwrap_err().contains("')'"));
        assert!(parse_stat(")4242 (x").unwrap_err().contains("before"));
        assert!(parse_stat("4242 (sleep) S 1 2")
            .unwrap_err()
            .contains("field 9 is missing"));
        let bad = stat_line("x", 0, 1).replacen(" 0 ", " zz ", 1);
        assert!(parse_stat(&bad).unwrap_err().contains("field 9"));
    }

    #[test]
    fn cgroup_v2_line_only() {
        assert_eq!(
            parse_cgroup("0::/system.slice/nginx.service\n"),
            Some("/system.slice/nginx.service")
        );
        let hybrid = "12:pids:/system.slice/nginx.service\n\
1:name=systemd:/system.slice/nginx.service\n\
0::/system.slice/postgresql.service\n";
        assert_eq!(
            parse_cgroup(hybrid),
            Some("/system.slice/postgresql.service")
        );
        // v1 only (legacy): no unit from us, rather than a guess
        assert_eq!(
            parse_cgroup("1:name=systemd:/system.slice/a.service\n"),
            None
        );
        assert_eq!(parse_cgroup("10:0::/x.service\n"), None);
        assert_eq!(parse_cgroup(""), None);
    }

    #[test]
    fn unit_is_the_first_component_that_is_not_a_slice() {
        let u = |p: &str| unit_of_cgroup(p);
        for (path, unit) in [
            ("/system.slice/nginx.service", "nginx.service"),
            (
                "/user.slice/user-1000.slice/session-3.scope",
                "session-3.scope",
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service",
                "user@1000.service",
            ),
            (
                "/system.slice/system-getty.slice/getty@tty1.service",
                "getty@tty1.service",
            ),
            // a sub-cgroup of the service is still the service
            ("/system.slice/docker.service/payload", "docker.service"),
        ] {
            assert_eq!(u(path).as_deref(), Some(unit), "{path}");
        }
        assert_eq!(u("/init.scope").as_deref(), Some("init.scope"));
        assert_eq!(u("/"), None);
        assert_eq!(u("/system.slice"), None);
        assert_eq!(u("/../../user.slice/x.service"), None);
        assert_eq!(u("/machine.slice/not-a-unit"), None);
        assert_eq!(u("/system.slice/.service"), None);
        assert_eq!(u("/system.slice/a b.service"), None);
    }

    #[test]
    fn stand_in_proc_tree() {
        let root = std::env::temp_dir().join(format!("lh-kill-proc-{}", std::process::id()));
        let dir = root.join("4242");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("status"), STATUS).unwrap();
        std::fs::write(dir.join("stat"), stat_line("my (app)", 0, 555)).unwrap();
        std::fs::write(
            dir.join("cgroup"),
            "1:name=systemd:/\n0::/system.slice/lh-victim-1.service\n",
        )
        .unwrap();
        let f = read(&root, 4242).unwrap();
        assert_eq!(f.uids, [1000, 1001, 1002]);
        assert_eq!(f.comm, "my (app)");
        assert_eq!(f.start_time, 555);
        assert!(!f.kernel_thread);
        assert_eq!(f.unit.as_deref(), Some("lh-victim-1.service"));
        assert_eq!(read(&root, 4243), Err(ReadError::Gone));
        std::fs::write(dir.join("status"), "Name:\tx\n").unwrap();
        match read(&root, 4242) {
            Err(ReadError::Other(e)) => assert!(e.contains("/proc/4242/status"), "{e}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}

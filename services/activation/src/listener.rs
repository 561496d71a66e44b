use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerSource {
    /// Passed by systemd (LISTEN_FDS).
    Activated,
    /// Bound by this process (run by hand).
    Bound,
}

/// The first socket systemd passed, or, when started by hand, `fallback`
/// bound with `mode`. A stale socket file at `fallback` is replaced; any
/// other file there is an error, never deleted.
pub fn take_listener(
    fallback: Option<&Path>,
    mode: u32,
) -> io::Result<(UnixListener, ListenerSource)> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        if let Some(l) = fds.take_unix_listener(0)? {
            l.set_nonblocking(false)?;
            return Ok((l, ListenerSource::Activated));
        }
        return Err(io::Error::other(
            "systemd passed a socket that is not a listening Unix stream socket",
        ));
    }
    let Some(path) = fallback else {
        return Err(io::Error::other(
            "not socket-activated (no LISTEN_FDS) and no --listen PATH given",
        ));
    };
    Ok((bind_path(path, mode)?, ListenerSource::Bound))
}

/// The sockets systemd passed, by their `FileDescriptorName=`
/// (`LISTEN_FDNAMES`), for a service behind more than one socket unit.
/// Empty when not socket-activated. Without `LISTEN_FDNAMES` (or with
/// fewer names than fds) an fd is named by its position, `"0"`, `"1"`, ...;
/// systemd's default name is the socket unit's name.
pub fn take_named_listeners() -> io::Result<Vec<(String, UnixListener)>> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    let mut names = names.split(':').filter(|n| !n.is_empty());
    for i in 0..fds.len() {
        let name = names.next().map_or_else(|| i.to_string(), str::to_string);
        let Some(l) = fds.take_unix_listener(i)? else {
            return Err(io::Error::other(format!(
                "systemd passed a socket ({name}) that is not a listening Unix stream socket"
            )));
        };
        l.set_nonblocking(false)?;
        out.push((name, l));
    }
    std::env::remove_var("LISTEN_FDNAMES");
    Ok(out)
}

/// Binds `path` with `mode`. A stale socket file there is replaced; any
/// other file is an error, never deleted.
pub fn bind_path(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    // Bound under a temporary name, given its mode, then renamed into place:
    // nobody can connect while it still has the umask's mode.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)?;
    Ok(l)
}

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The connecting process as the kernel recorded it at connect(2) time, which
/// the peer cannot forge (unlike anything inside the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// Supplementary groups (SO_PEERGROUPS), so membership by a secondary
    /// group counts without reading the peer's /proc entry.
    pub groups: Vec<u32>,
}

pub fn peer_credentials(s: &UnixStream) -> io::Result<Peer> {
    let fd = s.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(SO_PEERCRED) writes at most `len` bytes into `cred`,
    // a properly aligned ucred that lives for the call; fd is open (borrowed
    // from `s`).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0u32; 64];
    loop {
        let bytes = groups.len().saturating_mul(std::mem::size_of::<u32>());
        let mut glen = libc::socklen_t::try_from(bytes).unwrap_or(libc::socklen_t::MAX);
        // SAFETY: the buffer holds `glen` bytes of u32 slots and outlives the
        // call; on ERANGE the kernel stores the size it needs in `glen`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut glen,
            )
        };
        let n = (glen as usize)
            .checked_div(std::mem::size_of::<u32>())
            .unwrap_or(0);
        if rc == 0 {
            groups.truncate(n);
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
    Ok(Peer {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid,
        groups,
    })
}

/// SO_PEERPIDFD (Linux 6.5): not in every libc crate yet.
const SO_PEERPIDFD: libc::c_int = 77;

/// A pidfd for the connecting process (SO_PEERPIDFD), taken by the kernel
/// at connect(2) time: unlike the pid in SO_PEERCRED it can never come to
/// name another process once the caller exits. `None` where the kernel
/// lacks the option (before 6.5).
pub fn peer_pidfd(s: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(SO_PEERPIDFD) writes one int into `fd`, which lives
    // for the call; the socket fd is borrowed from `s`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOPROTOOPT) | Some(libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    if fd < 0 {
        return Ok(None);
    }
    // SAFETY: the kernel just gave us this new fd; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the process a pidfd holds has exited (a zombie included): a
/// pidfd polls readable then, and its pid may already name another
/// process. One poll(2), where reading the pid back from
/// `/proc/self/fdinfo` costs an open, a read and a close on procfs.
pub fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfd_of_a_live_peer_has_not_exited() {
        let (a, _b) = UnixStream::pair().unwrap();
        if let Some(fd) = peer_pidfd(&a).unwrap() {
            // the peer of a socketpair is this very process: alive
            assert!(!pidfd_exited(&fd));
        }
    }

    #[test]
    fn socketpair_peer_is_ourselves() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer_credentials(&a).unwrap();
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((p.uid, p.gid, p.pid), (uid, gid, std::process::id() as i32));
    }
}

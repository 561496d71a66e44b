use std::io;
use std::os::fd::AsRawFd;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketpair_peer_is_ourselves() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer_credentials(&a).unwrap();
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((p.uid, p.gid, p.pid), (uid, gid, std::process::id() as i32));
    }
}

//! Which callers are allowed, resolved once at start from names to ids.

use healing_auth::Peer;
use nix::unistd::{Group, User};

#[derive(Debug, Clone, Default)]
pub struct Allowed {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Allowed {
    /// A name that does not resolve is an error: a typo in the config must
    /// not silently lock everyone out or, worse, be ignored.
    pub fn resolve(groups: &[String], users: &[String]) -> Result<Allowed, String> {
        let mut a = Allowed::default();
        for g in groups {
            match Group::from_name(g) {
                Ok(Some(gr)) => a.gids.push(gr.gid.as_raw()),
                Ok(None) => return Err(format!("allowed_groups: no group named {g:?}")),
                Err(e) => return Err(format!("allowed_groups: cannot look up {g:?}: {e}")),
            }
        }
        for u in users {
            match User::from_name(u) {
                Ok(Some(us)) => a.uids.push(us.uid.as_raw()),
                Ok(None) => return Err(format!("allowed_users: no user named {u:?}")),
                Err(e) => return Err(format!("allowed_users: cannot look up {u:?}: {e}")),
            }
        }
        Ok(a)
    }

    pub fn permits(&self, p: &Peer) -> bool {
        p.uid == 0
            || self.uids.contains(&p.uid)
            || self.gids.contains(&p.gid)
            || p.groups.iter().any(|g| self.gids.contains(g))
    }
}

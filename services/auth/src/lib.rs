//! Who is asking and whether they may: peer credentials from the kernel, the
//! shared secret from a systemd credential, HMAC signatures and timestamps.

// Every byte of a request flows through this crate: no index may panic and
// no arithmetic may overflow on what a caller sends.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

mod peer;
mod secret;
mod signature;
mod timestamp;

pub use peer::{peer_credentials, peer_pidfd, pidfd_exited, Peer};
pub use secret::{Secret, SecretSource};
pub use signature::{sign, verify};
pub use timestamp::{check_freshness, parse_timestamp, Freshness};

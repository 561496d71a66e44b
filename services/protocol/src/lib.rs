//! The luminous-healing wire protocol, shared by the dispatcher, the action
//! binaries and `healctl`. See `docs/protocol.md` for the normative text.
//!
//! Two client-facing versions exist. v1 is byte-compatible with the existing
//! Python client: one JSON object, no framing, no newline, no write shutdown,
//! one read of the reply. v2 is the same envelope plus `"version": 2`, with a
//! signature that also covers the parameters.

// Every byte of a request flows through this crate: no index may panic and
// no arithmetic may overflow on what a caller sends.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

mod codec;
mod id;
mod internal;
mod refusal;
mod request;
mod response;

pub use codec::{read_one_object, Decoder, Progress, ReadError};
pub use id::uuid4;
pub use internal::{ActionReply, ActionRequest, Caller};
pub use refusal::{ErrorKind, Refusal};
pub use request::{canonical_parameters, parse_request, signing_message, Request, Version};
pub use response::{encode_response, truncate_output, Response};

/// Largest request the dispatcher reads, and the size of the client's single read.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The strings existing clients match on. Changing one breaks them.
pub mod errors {
    pub const INVALID_FORMAT: &str = "Invalid request format";
    pub const INVALID_SIGNATURE: &str = "Invalid signature";
    pub const RATE_LIMITED: &str = "Rate limit exceeded";
    pub fn not_allowed(action: &str) -> String {
        format!("Action {action} not allowed")
    }
    /// `request_id` of a reply to a request whose id could not be read.
    pub const UNKNOWN_ID: &str = "unknown";
}

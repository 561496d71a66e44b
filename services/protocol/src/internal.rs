//! Dispatcher-to-action messages on `/run/luminous-healing/actions/<action>.sock`.
//! One JSON object, newline-terminated, each way; then the action closes.
//! Only the dispatcher's uid can connect, so this side carries no signature.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// Supplementary groups (SO_PEERGROUPS): per-caller rules may name a group.
    #[serde(default)]
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub id: String,
    pub action: String,
    pub parameters: Map<String, Value>,
    /// Who asked the dispatcher: the action authorizes the request again,
    /// with the facts it reads about its target, for this caller.
    pub caller: Caller,
    /// Check everything, read the facts, act on nothing: the reply says what
    /// would be done.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionReply {
    pub success: bool,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// An action's result as its reply: the `Ok` text is the output, the `Err`
/// text the error.
impl From<Result<String, String>> for ActionReply {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(out) => ActionReply::ok(out),
            Err(e) => ActionReply::failed(e),
        }
    }
}

impl ActionReply {
    pub fn ok(output: impl Into<String>) -> Self {
        ActionReply {
            success: true,
            output: Some(output.into()),
            error: None,
        }
    }
    pub fn failed(error: impl Into<String>) -> Self {
        ActionReply {
            success: false,
            output: None,
            error: Some(error.into()),
        }
    }
}

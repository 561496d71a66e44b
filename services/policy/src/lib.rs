//! What may be asked, and with which parameters: the config file and the one
//! parameter schema that the dispatcher and every action binary validate with.

mod config;
mod schema;

pub use config::{ActionConfig, Config, ConfigError, Protocol, RateLimit, DEFAULT_CONFIG_PATH};
pub use schema::{validate_unit_name, Action, ActionName, Governor, Signal, ALL_ACTIONS};

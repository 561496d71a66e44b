//! What may be asked, and by whom: the config file, the one parameter schema
//! that the dispatcher and every action binary validate with, and the
//! authorization rules both apply.

pub mod authorize;
mod config;
pub mod params;
mod schema;
mod units;

pub use authorize::{
    permit, plan, CallerInfo, Facts, GenerationFacts, Plan, Policy, ProcessFacts, Refusal, Rule,
    UnitFacts,
};
pub use config::{
    ActionConfig, CallerConfig, CallerKey, Config, ConfigError, Protocol, RateLimit,
    DEFAULT_CONFIG_PATH,
};
pub use params::Params;
pub use schema::{validate_unit_name, Action, ActionName, Governor, Signal, ALL_ACTIONS};
pub use units::{protected_reason, protected_units, UnitPattern, PROTECTED_UNITS};

//! The parameter schema every action validates with (see checks/schema.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../checks/schema.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));

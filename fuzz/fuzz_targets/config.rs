//! The configuration parser: any text gives a config or an error, never a
//! panic.
#![no_main]
use healing_policy::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
});

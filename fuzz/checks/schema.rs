// The schema target's check, shared by fuzz_targets/schema.rs and the plain
// `cargo test` of its regression inputs (services/policy/tests/fuzz_regressions.rs):
// never a panic, and what is accepted is within the documented bounds (a
// unit name of at most 255 bytes without `..` or `/`, a pid above 1, a
// swappiness of at most 100).
use healing_policy::{validate_unit_name, Action, ALL_ACTIONS};

pub fn check(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = validate_unit_name(s) {
            assert!(
                u.len() <= 255 && !u.contains("..") && !u.contains('/'),
                "{s:?} accepted as {u:?}"
            );
        }
    }
    let Ok(p) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) else {
        return;
    };
    for name in ALL_ACTIONS {
        match Action::parse(name, &p) {
            Ok(Action::KillProcess { pid, .. }) => assert!(pid > 1),
            Ok(Action::AdjustSwappiness { value }) => assert!(value <= 100),
            Ok(Action::RestartService { unit }) => {
                assert!(unit.len() <= 255 && !unit.contains(".."))
            }
            Ok(a) => assert_eq!(a.name(), name),
            Err(_) => {}
        }
    }
}

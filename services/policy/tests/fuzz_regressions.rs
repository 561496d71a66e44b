#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: a failed unwrap is a failed test
//! Inputs the schema fuzz target found (fuzz/regressions/schema/), fed to
//! the same check under plain `cargo test`.
use std::path::Path;

#[path = "../../../fuzz/checks/schema.rs"]
mod checks;

#[test]
fn every_schema_regression_input_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/schema");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        checks::check(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}

#[test]
fn a_template_whose_instance_ends_in_a_dot_is_refused() {
    // found by fuzzing: "1.@." + ".service" was accepted as "1.@..service"
    for name in ["1.@.", "a@.", "a@b."] {
        assert!(healing_policy::validate_unit_name(name).is_err(), "{name}");
    }
    assert_eq!(
        healing_policy::validate_unit_name("a@b").unwrap(),
        "a@b.service"
    );
}

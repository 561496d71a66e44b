#![allow(clippy::unwrap_used, clippy::panic)]
//! docs/policy.md is the prose of authorize.rs: every protected pattern (with
//! its reason) and every rule name must appear in it, so the document cannot
//! drift from the code that refuses.

use healing_policy::{protected_units, Rule};

const DOC: &str = include_str!("../../../docs/policy.md");

/// Every rule the refusals name. The match makes a new variant a compile
/// error here until it is added (and documented).
fn all_rules() -> Vec<Rule> {
    let all = vec![
        Rule::Disabled,
        Rule::CallerActions,
        Rule::CallerUnits,
        Rule::RootOnly,
        Rule::ServicesOnly,
        Rule::Protected,
        Rule::AllowedUnits,
        Rule::NotLoaded,
        Rule::NotRunning,
        Rule::KernelThread,
        Rule::NotOwned,
        Rule::Busy,
        Rule::AlreadyRolledBack,
        Rule::NoGeneration,
        Rule::FactsUnread,
    ];
    for r in &all {
        match r {
            Rule::Disabled
            | Rule::CallerActions
            | Rule::CallerUnits
            | Rule::RootOnly
            | Rule::ServicesOnly
            | Rule::Protected
            | Rule::AllowedUnits
            | Rule::NotLoaded
            | Rule::NotRunning
            | Rule::KernelThread
            | Rule::NotOwned
            | Rule::Busy
            | Rule::AlreadyRolledBack
            | Rule::NoGeneration
            | Rule::FactsUnread => {}
        }
    }
    all
}

#[test]
fn every_protected_pattern_is_in_the_table_with_its_reason() {
    let mut missing = Vec::new();
    for (pattern, reason) in protected_units() {
        let row = format!("| `{pattern}` | {reason} |");
        if !DOC.lines().any(|l| l.trim() == row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/policy.md lacks these rows of the protected-units table:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_table_lists_no_pattern_the_code_does_not_protect() {
    let start = DOC
        .find("<!-- protected-units -->")
        .expect("the table's start marker");
    let end = start
        + DOC[start..]
            .find("<!-- /protected-units -->")
            .expect("the table's end marker");
    let documented: Vec<&str> = DOC[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(p, _)| p))
        .collect();
    let code: Vec<&str> = protected_units().map(|(p, _)| p).collect();
    assert_eq!(documented, code, "the table and PROTECTED_UNITS differ");
}

#[test]
fn every_rule_has_its_own_heading() {
    for r in all_rules() {
        let heading = format!("### `{}`", r.as_str());
        assert!(
            DOC.lines().any(|l| l.trim() == heading),
            "docs/policy.md has no heading {heading}"
        );
    }
    // The dispatcher's own rule (the breaker is counted in its state).
    assert!(DOC.lines().any(|l| l.trim() == "### `breaker`"));
}

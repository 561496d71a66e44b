//! `scripts/generate`: writes every file derived from the table of actions
//! (`services/actions/src/table.rs`); with `--check`, writes nothing and
//! fails naming each file that is not what the table makes of it.
//!
//!     healing-generate [--check] [REPO_ROOT]

use healing_actions::generate::{expected, outputs, SOURCE};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut root = PathBuf::from(".");
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!(
                    "usage: scripts/generate [--check]   (writes the files derived from {SOURCE})"
                );
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => {
                eprintln!("generate: unknown option {s}");
                return ExitCode::from(2);
            }
            _ => root = PathBuf::from(a),
        }
    }
    let mut stale = 0;
    for (rel, out) in outputs() {
        let path = root.join(&rel);
        let current = std::fs::read_to_string(&path).ok();
        let want = match expected(&out, &rel, current.as_deref()) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("generate: {e}");
                return ExitCode::FAILURE;
            }
        };
        if current.as_deref() == Some(want.as_str()) {
            continue;
        }
        if check {
            stale += 1;
            eprintln!("generate: {} is stale", rel.display());
        } else if let Err(e) = std::fs::write(&path, want) {
            eprintln!("generate: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", rel.display());
        }
    }
    if stale > 0 {
        eprintln!("generate: {stale} file(s) differ from {SOURCE}: run scripts/generate and commit the result");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

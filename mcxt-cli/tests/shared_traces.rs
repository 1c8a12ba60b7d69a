//! Every trace of the shared trace folder (`../../shared/traces` from this
//! crate, and its subfolders), replayed in check mode with every
//! allocator, and its compiled program compared with its operations.
//! Slow (tens of millions of operations): ignored by default, run with
//! `cargo test --release -p mcxt-cli -- --ignored`.

mod common;

use std::path::{Path, PathBuf};

use mcxt_cli::bench::check;
use mcxt_cli::replay::{Allocator, ValidTrace};

fn traces_in(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            traces_in(&p, out);
        } else if p.to_string_lossy().ends_with(".trace.gz") {
            out.push(p);
        }
    }
}

/// The shared traces, sorted; empty (with a note) if there are none.
fn shared_traces() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    if !dir.is_dir() {
        eprintln!("skipped: no shared trace folder at {}", dir.display());
        return Vec::new();
    }
    let mut files = Vec::new();
    traces_in(&dir, &mut files);
    files.sort();
    if files.is_empty() {
        eprintln!("skipped: no *.trace.gz in {}", dir.display());
    }
    files
}

#[test]
#[ignore = "slow: compiles and replays every shared trace; run with --ignored"]
fn every_shared_trace_program_is_the_trace() {
    for f in shared_traces() {
        let t = ValidTrace::parse_file(&f).unwrap_or_else(|e| panic!("{e}"));
        common::assert_program_is_the_trace(&t);
        let p = t.program();
        eprintln!(
            "{}: {} operations, {} escaped, {} MB compiled",
            t.name,
            p.len(),
            p.escaped().len(),
            p.heap_bytes() >> 20
        );
    }
}

#[test]
#[ignore = "slow: replays every shared trace in check mode; run with --ignored"]
fn every_shared_trace_checks_clean() {
    let files = shared_traces();
    let mut failures = Vec::new();
    for f in &files {
        let t = ValidTrace::parse_file(f).unwrap_or_else(|e| panic!("{e}"));
        for a in [
            Allocator::Mcxt,
            Allocator::Malloc,
            Allocator::Mimalloc,
            Allocator::Null,
        ] {
            let r = check(&t, a);
            eprintln!("{} {a}: {}", t.name, r.display(&t));
            if !r.ok() {
                failures.push(format!("{} {a}: {}", t.name, r.display(&t)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

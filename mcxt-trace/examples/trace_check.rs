//! Validates trace files like `trace-check.py` and prints their statistics
//! and the parse time.
//!
//! usage: `cargo run --release -p mcxt-trace --example trace_check -- FILE...`

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut ok = true;
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: trace_check FILE.trace.gz...");
        return ExitCode::from(2);
    }
    for f in files {
        let t0 = Instant::now();
        match mcxt_trace::parse_file(Path::new(&f)) {
            Ok(trace) => {
                let dt = t0.elapsed();
                print!("== {f}: PASS\n{}", trace.stats);
                println!(
                    "  parsed {} ops in {:.3} s ({:.1} ns/op)",
                    trace.ops.len(),
                    dt.as_secs_f64(),
                    dt.as_nanos() as f64 / trace.ops.len().max(1) as f64
                );
            }
            Err(e) => {
                ok = false;
                println!("== {f}: FAIL: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
